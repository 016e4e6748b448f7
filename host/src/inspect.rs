//! What a component is: its hash, size, package, exports and imports.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::budget::{self, CompileBudget};
use crate::error::LoadError;

/// A description of a component, as `quota policy inspect` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Lowercase hex sha256 of the bytes.
    pub sha256: String,
    /// Size of the bytes.
    pub size_bytes: usize,
    /// The WIT package of the first exported interface, e.g.
    /// `quota:policy@0.1.0`; `None` when no export names one.
    pub package: Option<String>,
    /// Exported functions (and components or modules; types are left out);
    /// an exported interface's functions appear as `interface#function`,
    /// e.g. `quota:policy/engine@0.1.0#decide`.
    pub exports: Vec<String>,
    /// Imported items; empty for a policy.
    pub imports: Vec<String>,
}

/// The package of an interface name: `ns:pkg/iface@1.0` gives `ns:pkg@1.0`.
fn package_of(interface: &str) -> Option<String> {
    let (path, version) = match interface.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (interface, None),
    };
    let (package, _) = path.split_once('/')?;
    if !package.contains(':') {
        return None;
    }
    Some(match version {
        Some(v) => format!("{package}@{v}"),
        None => package.to_owned(),
    })
}

/// Compiles `bytes` as a component, if it keeps the compile budget.
pub(crate) fn compile(
    engine: &Engine,
    budget: &CompileBudget,
    bytes: &[u8],
) -> Result<Component, LoadError> {
    budget::check(bytes, budget).map_err(LoadError::TooCostly)?;
    Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))
}

/// What a compiled component is; `bytes` are the component it came from
/// and `sha256` their hash (computed once by the caller).
pub(crate) fn describe(
    engine: &Engine,
    component: &Component,
    bytes: &[u8],
    sha256: String,
) -> ComponentInfo {
    let ty = component.component_type();
    let imports = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut exports = Vec::new();
    let mut package = None;
    for (name, item) in ty.exports(engine) {
        match &item.ty {
            ComponentItem::ComponentInstance(instance) => {
                if package.is_none() {
                    package = package_of(name);
                }
                let funcs = instance
                    .exports(engine)
                    .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)));
                exports.extend(funcs.map(|(f, _)| format!("{name}#{f}")));
            }
            ComponentItem::ComponentFunc(_)
            | ComponentItem::Component(_)
            | ComponentItem::Module(_)
            | ComponentItem::CoreFunc(_) => exports.push(name.to_owned()),
            _ => {}
        }
    }
    ComponentInfo {
        sha256,
        size_bytes: bytes.len(),
        package,
        exports,
        imports,
    }
}

#[cfg(test)]
mod tests {
    use super::package_of;

    #[test]
    fn package_comes_from_the_interface_name() {
        assert_eq!(
            package_of("quota:policy/engine@0.1.0").as_deref(),
            Some("quota:policy@0.1.0")
        );
        assert_eq!(package_of("a:b/c").as_deref(), Some("a:b"));
        assert_eq!(package_of("plain-name"), None);
    }
}

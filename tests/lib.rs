//! Shared fixtures for the end-to-end tests: the policy components under
//! test, the conformance corpus and the storage backends.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use quota_host::{Limits, PolicyModule, Runtime};
use quota_store::Location;

/// The storage backends the suites run on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A fresh, empty database as `--db` takes it: a file in `dir`, or
    /// the URL of a new database on the tests' own PostgreSQL (started on
    /// first use; its tools are waited for).
    pub fn database(self, dir: &Path) -> String {
        match self {
            Backend::Sqlite => dir.join("quota.db").to_string_lossy().into_owned(),
            Backend::Postgres => quota_throwaway_pg::shared().fresh_database(),
        }
    }

    /// The same as a [`Location`].
    pub fn fresh(self, dir: &Path) -> Location {
        #[allow(clippy::expect_used, reason = "a test helper fails the test")]
        Location::parse(&self.database(dir)).expect("a file name or the cluster's URL")
    }
}

/// The reference policy component (built by `quota-reference-policy`).
pub const REFERENCE: &[u8] = quota_reference_policy::COMPONENT;

/// The percent-grace example policy component (see `examples/percent-grace`).
pub const PERCENT_GRACE: &[u8] = quota_example_policies::PERCENT_GRACE;

/// The hostile test policy component (see `tests/guests/hostile`).
pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile-policy.wasm"));

/// `on_both_backends!(test, …)`: each `fn test(backend: Backend)` of the
/// calling module as two tests, `sqlite::test` and `postgres::test`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::Backend::Sqlite);
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::Backend::Postgres);
                }
            )+
        }
    };
}

/// A runtime with default limits, shared by the tests of one binary.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| match Runtime::new(Limits::default()) {
        Ok(runtime) => runtime,
        Err(e) => unreachable!("the default limits are valid: {e}"),
    })
}

/// The reference policy, loaded once per test binary.
pub fn reference() -> &'static PolicyModule {
    static MODULE: OnceLock<PolicyModule> = OnceLock::new();
    MODULE.get_or_init(|| match runtime().load(REFERENCE) {
        Ok(module) => module,
        Err(e) => unreachable!("the reference policy loads: {e}"),
    })
}

/// The percent-grace example policy, loaded once per test binary.
pub fn percent_grace() -> &'static PolicyModule {
    static MODULE: OnceLock<PolicyModule> = OnceLock::new();
    MODULE.get_or_init(|| match runtime().load(PERCENT_GRACE) {
        Ok(module) => module,
        Err(e) => unreachable!("the percent-grace policy loads: {e}"),
    })
}

/// The conformance case files, sorted.
pub fn conformance_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
}

/// A policy component that holds `policy` unchanged and, beside it, `extra`
/// instances of the core module `module` (which imports nothing): the
/// outer component instantiates both and exports the policy's interface.
/// It is still a policy; what it adds runs when it is instantiated (a start
/// function, memories, tables). The kind of component a hostile author
/// builds by hand against `wit/policy.wit`.
pub fn beside_policy(policy: &[u8], module: &[u8], extra: u32) -> Vec<u8> {
    use wasm_encoder::{
        Alias, Component, ComponentAliasSection, ComponentExportKind, ComponentExportSection,
        ComponentInstanceSection, ComponentSectionId, InstanceSection, ModuleArg, RawSection,
    };
    let mut outer = Component::new();
    outer.section(&RawSection {
        id: ComponentSectionId::Component.into(),
        data: policy,
    });
    outer.section(&RawSection {
        id: ComponentSectionId::CoreModule.into(),
        data: module,
    });
    let mut core = InstanceSection::new();
    for _ in 0..extra {
        core.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    }
    outer.section(&core);
    let mut instances = ComponentInstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ComponentExportKind, u32)>::new());
    outer.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::InstanceExport {
        instance: 0,
        kind: ComponentExportKind::Instance,
        name: quota_host::INTERFACE,
    });
    outer.section(&aliases);
    let mut exports = ComponentExportSection::new();
    exports.export(
        quota_host::INTERFACE,
        ComponentExportKind::Instance,
        1,
        None,
    );
    outer.section(&exports);
    outer.finish()
}

/// A core module with one linear memory of `pages` 64 KiB pages, every
/// page written by its start function.
pub fn memory_filler(pages: u32) -> Vec<u8> {
    let text = format!(
        r#"(module
            (memory {pages})
            (func $fill (local $at i32)
              (loop $next
                (i32.store (local.get $at) (i32.const 1))
                (local.set $at (i32.add (local.get $at) (i32.const 65536)))
                (br_if $next (i32.lt_u (local.get $at) (i32.const {bytes})))))
            (start $fill))"#,
        bytes = u64::from(pages) * 65536
    );
    match wat::parse_str(text) {
        Ok(bytes) => bytes,
        Err(e) => unreachable!("the filler is valid text: {e}"),
    }
}

/// A component of one core module with `functions` functions, each with
/// `locals` locals read after `ifs` `if`s that may set them: every join
/// needs a value for every local, the shape that makes Cranelift slow (with
/// 4,000 locals and 14,000 ifs, minutes). Not a policy: a load compiles it
/// (when the budget admits it) and then refuses it at the world check.
pub fn locals_across_ifs(functions: usize, locals: usize, ifs: usize) -> Vec<u8> {
    use std::fmt::Write;
    let mut text = String::from("(component (core module\n");
    for _ in 0..functions {
        let _ = writeln!(
            text,
            "(func (param i64) (result i64) (local {})",
            "i64 ".repeat(locals)
        );
        for i in 1..=locals {
            let _ = writeln!(text, "local.get 0 local.set {i}");
        }
        for b in 0..ifs {
            let i = 1 + b % locals.max(1);
            let _ = writeln!(
                text,
                "(if (i64.eqz (local.get {i})) (then (local.set {i} (i64.add (local.get 0) (local.get {i})))))"
            );
        }
        text.push_str("local.get 0\n");
        for i in (1..=locals).rev() {
            let _ = writeln!(text, "local.get {i} i64.add");
        }
        text.push_str(")\n");
    }
    text.push_str("))");
    match wat::parse_str(text) {
        Ok(bytes) => bytes,
        Err(e) => unreachable!("the generated text is valid: {e}"),
    }
}

use quota_host::LoadError;
use quota_tests::{REFERENCE, reference, runtime};

fn load_error(bytes: &[u8]) -> LoadError {
    match runtime().load(bytes) {
        Ok(module) => panic!("loaded as a policy: {module:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_reference_policy_imports_nothing_and_exports_the_engine() {
    let info = reference().info();
    assert!(info.imports.is_empty(), "{:?}", info.imports);
    assert_eq!(info.package.as_deref(), Some("quota:policy@0.1.0"));
    assert_eq!(
        info.exports,
        [
            "quota:policy/engine@0.1.0#usage-key",
            "quota:policy/engine@0.1.0#decide"
        ]
    );
    assert_eq!(info.size_bytes, REFERENCE.len());
}

#[test]
fn the_reference_policy_stays_small() {
    assert!(REFERENCE.len() < 64 * 1024, "{} bytes", REFERENCE.len());
}

#[test]
fn the_policy_version_is_the_sha256_of_the_bytes() {
    let sha = reference().sha256();
    assert_eq!(sha.len(), 64);
    assert!(
        sha.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let again = runtime().load(REFERENCE).unwrap();
    assert_eq!(again.sha256(), sha);
    assert_ne!(runtime().load(quota_tests::HOSTILE).unwrap().sha256(), sha);
}

#[test]
fn random_bytes_are_not_a_component() {
    let bytes: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(matches!(load_error(&bytes), LoadError::Invalid(_)));
}

#[test]
fn a_core_module_is_not_a_component() {
    let module = wat::parse_str("(module (func (export \"decide\")))").unwrap();
    assert!(matches!(load_error(&module), LoadError::Invalid(_)));
}

#[test]
fn an_empty_component_is_the_wrong_world() {
    let component = wat::parse_str("(component)").unwrap();
    let err = load_error(&component);
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert!(
        err.to_string().contains("quota:policy/policy@0.1.0"),
        "{err}"
    );
}

#[test]
fn a_component_with_imports_is_refused_naming_them() {
    let component =
        wat::parse_str(r#"(component (import "wasi:cli/stderr@0.2.0" (instance)))"#).unwrap();
    let err = load_error(&component);
    match &err {
        LoadError::Imports(names) => assert_eq!(names, &["wasi:cli/stderr@0.2.0"]),
        other => panic!("expected an import error, got {other}"),
    }
    assert!(err.to_string().contains("`wasi:cli/stderr@0.2.0`"));
}

#[test]
fn an_export_with_the_wrong_signature_is_the_wrong_world() {
    let component = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $decide (canon lift (core func $i "f")))
            (func $usage-key (canon lift (core func $i "f")))
            (instance $engine (export "decide" (func $decide)) (export "usage-key" (func $usage-key)))
            (export "quota:policy/engine@0.1.0" (instance $engine)))"#,
    )
    .unwrap();
    let info = runtime().inspect(&component).unwrap();
    assert_eq!(info.package.as_deref(), Some("quota:policy@0.1.0"));
    assert!(matches!(
        load_error(&component),
        LoadError::WrongWorld { .. }
    ));
}

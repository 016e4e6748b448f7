//! Shared fixtures for the end-to-end tests: the policy components under
//! test and the conformance corpus.

use std::path::PathBuf;
use std::sync::OnceLock;

use quota_host::{Limits, PolicyModule, Runtime};

/// The reference policy component (built by `quota-reference-policy`).
pub const REFERENCE: &[u8] = quota_reference_policy::COMPONENT;

/// The percent-grace example policy component (see `examples/percent-grace`).
pub const PERCENT_GRACE: &[u8] = quota_example_policies::PERCENT_GRACE;

/// The hostile test policy component (see `tests/guests/hostile`).
pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile-policy.wasm"));

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

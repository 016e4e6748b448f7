//! Precompiled artifacts: a second load of a component skips compilation;
//! an artifact that is not byte-for-byte what this cache wrote is ignored.

use quota_host::{ArtifactCache, CacheOutcome};
use quota_tests::{PERCENT_GRACE, REFERENCE, runtime};

fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

#[test]
fn a_known_component_loads_from_its_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path()).unwrap();
    let (first, outcome) = runtime().load_cached(REFERENCE, &cache).unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    let (second, outcome) = runtime().load_cached(REFERENCE, &cache).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(first.sha256(), second.sha256());
    assert_eq!(second.info().imports.len(), 0);
    assert_eq!(second.bytes(), REFERENCE);
    // The deserialized policy decides like the compiled one.
    let input = quota_policy_core::json::input_from_value(&serde_json::json!({
        "user_id": "u", "plan_id": "p", "entitlement_key": "drafts.max", "requested": 1,
        "now_ms": 0, "usage": 3, "plan": {"limit": 3, "enforcement_enabled": true, "grace_count": 1},
        "grace_used": 0
    }))
    .unwrap();
    assert_eq!(
        first.evaluator().unwrap().decide(&input).unwrap(),
        second.evaluator().unwrap().decide(&input).unwrap()
    );
    // A reopened cache (same key file) still hits; another component misses.
    let reopened = ArtifactCache::open(dir.path()).unwrap();
    assert_eq!(
        runtime().load_cached(REFERENCE, &reopened).unwrap().1,
        CacheOutcome::Hit
    );
    assert_eq!(
        runtime().load_cached(PERCENT_GRACE, &reopened).unwrap().1,
        CacheOutcome::Miss
    );
    assert_eq!(artifacts(dir.path()).len(), 2);
}

#[test]
fn a_tampered_artifact_is_compiled_again_not_deserialized() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path()).unwrap();
    runtime().load_cached(REFERENCE, &cache).unwrap();
    let [artifact] = artifacts(dir.path()).try_into().unwrap();
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    let (module, outcome) = runtime().load_cached(REFERENCE, &cache).unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    assert!(module.evaluator().is_ok());
    // The recompiled artifact replaced the tampered one and hits again.
    assert_eq!(
        runtime().load_cached(REFERENCE, &cache).unwrap().1,
        CacheOutcome::Hit
    );
}

#[test]
fn an_artifact_written_by_another_cache_is_not_trusted() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let their_cache = ArtifactCache::open(theirs.path()).unwrap();
    runtime().load_cached(REFERENCE, &their_cache).unwrap();
    let our_cache = ArtifactCache::open(ours.path()).unwrap();
    // Their artifact and tag, under the right name, but tagged with their key.
    for entry in std::fs::read_dir(theirs.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".cwasm") {
            std::fs::copy(&path, ours.path().join(name)).unwrap();
        }
    }
    assert_eq!(
        runtime().load_cached(REFERENCE, &our_cache).unwrap().1,
        CacheOutcome::Miss
    );
}

#[test]
fn the_self_test_passes_the_reference_and_reports_a_different_policy() {
    let reference = quota_host::selftest::self_test(quota_tests::reference()).unwrap();
    assert_eq!(reference.differs_from_reference, 0);
    assert!(reference.cases > 100, "{reference:?}");
    let percent = quota_host::selftest::self_test(quota_tests::percent_grace()).unwrap();
    assert_eq!(percent.cases, reference.cases);
    assert!(percent.differs_from_reference > 0);
    assert!(!percent.examples.is_empty());
}

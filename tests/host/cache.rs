//! Precompiled artifacts: a second load of a component skips compilation;
//! an artifact that is not byte-for-byte what this cache wrote is ignored.

use quota_host::{ArtifactCache, CacheKey, CacheOutcome};
use quota_tests::{PERCENT_GRACE, REFERENCE, runtime};

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn open_cache(dir: &std::path::Path) -> ArtifactCache {
    ArtifactCache::open(dir, key(1)).unwrap()
}

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
    let cache = open_cache(dir.path());
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
    // A reopened cache (same key) still hits; another component misses.
    let reopened = open_cache(dir.path());
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
    let cache = open_cache(dir.path());
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
    let their_cache = ArtifactCache::open(theirs.path(), key(2)).unwrap();
    runtime().load_cached(REFERENCE, &their_cache).unwrap();
    let our_cache = open_cache(ours.path());
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

/// The attack of the audit: whoever can write the cache folder (but not
/// the service's own key, kept elsewhere) puts another component's
/// artifact under the reference's name, tagged with a key of their own,
/// and leaves that key where older versions kept it. The service must
/// compile the reference again and decide like the reference.
#[test]
fn a_planted_artifact_under_anothers_name_never_runs() {
    let ours = tempfile::tempdir().unwrap();
    let cache = open_cache(ours.path());
    runtime().load_cached(REFERENCE, &cache).unwrap();
    let [reference_artifact] = artifacts(ours.path()).try_into().unwrap();

    // The attacker's cache, keyed with their key: percent-grace's artifact.
    let theirs = tempfile::tempdir().unwrap();
    let their_key = key(9);
    let their_cache = ArtifactCache::open(theirs.path(), their_key.clone()).unwrap();
    runtime().load_cached(PERCENT_GRACE, &their_cache).unwrap();
    let [planted] = artifacts(theirs.path()).try_into().unwrap();
    std::fs::copy(&planted, &reference_artifact).unwrap();
    let mut tag = planted.as_os_str().to_owned();
    tag.push(".tag");
    let mut our_tag = reference_artifact.as_os_str().to_owned();
    our_tag.push(".tag");
    std::fs::copy(tag, &our_tag).unwrap();
    std::fs::write(ours.path().join("cache-key"), their_key.to_bytes()).unwrap();

    let reopened = ArtifactCache::open(ours.path(), key(1)).unwrap();
    assert!(
        !ours.path().join("cache-key").exists(),
        "no key may stay inside the cache"
    );
    let (module, outcome) = runtime().load_cached(REFERENCE, &reopened).unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    // The reference's decision, not percent-grace's: limit 10 gives grace 1
    // from the plan (percent-grace would give 2).
    let input = quota_policy_core::json::input_from_value(&serde_json::json!({
        "user_id": "u", "plan_id": "p", "entitlement_key": "drafts.max", "requested": 1,
        "now_ms": 0, "usage": 11, "plan": {"limit": 10, "enforcement_enabled": true, "grace_count": 1},
        "grace_used": 1
    }))
    .unwrap();
    let decision = module.evaluator().unwrap().decide(&input).unwrap().unwrap();
    assert_eq!(decision.status, quota_policy_core::Status::Block);
    assert_eq!(module.sha256(), quota_host::sha256_hex(REFERENCE));
}

/// Artifacts are never read through a symbolic link, and writing one
/// replaces a link planted at its name rather than writing through it.
#[cfg(unix)]
#[test]
fn links_planted_in_the_cache_are_neither_read_nor_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    runtime().load_cached(REFERENCE, &cache).unwrap();
    let [artifact] = artifacts(dir.path()).try_into().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("artifact");
    std::fs::rename(&artifact, &target).unwrap();
    std::os::unix::fs::symlink(&target, &artifact).unwrap();
    // The linked artifact is valid, but is not read through the link.
    assert_eq!(
        runtime().load_cached(REFERENCE, &cache).unwrap().1,
        CacheOutcome::Miss
    );
    assert!(
        !std::fs::symlink_metadata(&artifact)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let target_bytes = std::fs::read(&target).unwrap();
    assert_eq!(std::fs::read(&artifact).unwrap(), target_bytes);
    assert_eq!(
        runtime().load_cached(REFERENCE, &cache).unwrap().1,
        CacheOutcome::Hit
    );
}

#[test]
fn the_self_test_passes_the_reference_and_reports_a_different_policy() {
    let reference = quota_engine::selftest::self_test(quota_tests::reference()).unwrap();
    assert_eq!(reference.differs_from_reference, 0);
    assert!(reference.cases > 100, "{reference:?}");
    let percent = quota_engine::selftest::self_test(quota_tests::percent_grace()).unwrap();
    assert_eq!(percent.cases, reference.cases);
    assert!(percent.differs_from_reference > 0);
    assert!(!percent.examples.is_empty());
}

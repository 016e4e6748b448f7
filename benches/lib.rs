//! Shared set-up for the benchmarks in `benches/`.

use std::path::Path;

use quota_host::{Engine, Limits, Runtime};
use quota_store::{PlanChange, SqliteOptions, SqliteStore, Synchronous};

/// A fresh database in `dir` with plan `bench` (`drafts.max` unlimited, so
/// every guarded create is admitted) and user `u1` on it.
pub fn store(
    dir: &Path,
    synchronous: Synchronous,
) -> Result<SqliteStore, Box<dyn std::error::Error>> {
    let options = SqliteOptions {
        synchronous,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.join("bench.db"), options)?;
    let plan = PlanChange {
        limits: vec![("drafts.max".into(), -1)],
        enforcement_enabled: Some(true),
        ..PlanChange::default()
    };
    store.set_plan("bench", "bench", &plan, 0)?;
    store.create_user("bench", "u1", "bench", 0)?;
    Ok(store)
}

/// An engine with the reference policy over `store`.
pub fn engine(store: SqliteStore) -> Result<Engine<SqliteStore>, Box<dyn std::error::Error>> {
    let runtime = Runtime::new(Limits::default())?;
    let policy = runtime.load(quota_reference_policy::COMPONENT)?;
    Ok(Engine::new(store, policy))
}

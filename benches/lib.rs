//! Shared set-up for the benchmarks in `benches/`.

pub mod inputs;
pub mod peers;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use quota_engine::Engine;
use quota_host::{Evaluator, Limits, Runtime};
use quota_policy_core::DecisionInput;
use quota_store::prelude::*;
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

/// The benchmark fixture `benches/floor` as a component: the policy
/// contract with a `decide` that does no work, and calls of other shapes
/// (`benches/floor/wit/floor.wit`).
pub const FLOOR_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/floor-policy.wasm"));

/// Criterion's median for `<group>/<name>` in nanoseconds, if this run
/// measured it (its estimate was written at or after `since`).
pub fn criterion_median_ns(group: &str, name: &str, since: SystemTime) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("criterion/{group}/{name}/new/estimates.json"));
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// An evaluator (one live instance) of the reference policy component.
pub fn evaluator() -> Result<Evaluator, Box<dyn std::error::Error>> {
    let runtime = Runtime::new(Limits::default())?;
    let policy = runtime.load(quota_reference_policy::COMPONENT)?;
    Ok(policy.evaluator()?)
}

/// Checks that every engine decides every input alike, before anything is
/// timed: the wasm component gives exactly the native decision (every
/// field, the reason included); Rego, in each regorus mode, every field but
/// the reason; Cedar the same status. Returns one line per disagreement.
pub fn check_agreement(
    inputs: &[DecisionInput],
    evaluator: &mut Evaluator,
    rego: &mut peers::Rego,
    cedar: &peers::Cedar,
) -> Result<(), String> {
    let mut failures = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let native = match quota_policy_core::decide(input) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("input {i}: native policy error {e}"));
                continue;
            }
        };
        match evaluator.decide(input) {
            Ok(Ok(wasm)) if wasm == native => {}
            other => failures.push(format!("input {i}: wasm {other:?}, native {native:?}")),
        }
        let rego_input = peers::rego_input(input);
        for mode in peers::RegoMode::ALL {
            let outcome = rego
                .eval(mode, &rego_input)
                .map_err(|e| e.to_string())
                .and_then(|v| peers::rego_agrees(&v, &native));
            if let Err(e) = outcome {
                failures.push(format!("input {i}: {}: {e}", mode.name()));
            }
        }
        let cedar_status = peers::Cedar::request(input)
            .map_err(|e| e.to_string())
            .and_then(|r| cedar.decide(&r));
        if cedar_status.as_ref() != Ok(&native.status) {
            failures.push(format!(
                "input {i}: cedar {cedar_status:?}, native {:?}",
                native.status
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

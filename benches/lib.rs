//! Shared set-up for the benchmarks in `benches/`.

pub mod inputs;
pub mod peers;

use std::path::Path;

use quota_host::{Engine, Evaluator, Limits, Runtime};
use quota_policy_core::DecisionInput;
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

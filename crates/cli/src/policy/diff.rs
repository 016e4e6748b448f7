//! `quota policy diff`: how a policy decides differently from another (by
//! default the built-in reference), over the conformance corpus and
//! generated inputs, before it is uploaded anywhere.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use quota_policy_core::json::{CaseFile, input_from_value, input_to_value};
use quota_policy_core::{DecisionInput, Override, PlanInfo};
use serde_json::Value;

use super::compare::Comparison;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policy to look at (a component file).
    a: PathBuf,
    /// The policy to compare it with; default: the built-in reference.
    b: Option<PathBuf>,
    /// Generated inputs, besides the conformance corpus.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    inputs: usize,
    /// The generator's seed: the same seed gives the same inputs.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Examples kept per status transition.
    #[arg(long, value_name = "N", default_value_t = 3)]
    examples: usize,
}

/// The sample cases beside the conformance corpus (the engine's, built in).
const EXAMPLES: &str = include_str!("../../../../examples/cases.json");

fn corpus() -> anyhow::Result<Vec<Value>> {
    let mut inputs = Vec::new();
    let texts = quota_engine::selftest::CORPUS.iter().map(|(_, text)| *text);
    for text in texts.chain([EXAMPLES]) {
        let file = CaseFile::parse(text).map_err(anyhow::Error::msg)?;
        inputs.extend(file.cases.into_iter().map(|c| c.input));
    }
    Ok(inputs)
}

/// A decision input drawn at random: plans with and without limits,
/// grace and enforcement, overrides active and expired, the table's keys
/// and others, usage around the limit.
fn generate(rng: &mut fastrand::Rng) -> DecisionInput {
    const KEYS: [&str; 6] = [
        "drafts.max",
        "segments.max",
        "collaborators.max",
        "api.calls.max",
        "exports",
        "seats.max",
    ];
    let now_ms = 1_700_000_000_000 + rng.i64(0..1_000_000_000);
    let limit = if rng.u8(0..10) == 0 {
        -1
    } else {
        rng.i64(0..50)
    };
    let plan = (rng.u8(0..10) != 0).then(|| PlanInfo {
        limit: (rng.u8(0..6) != 0).then_some(limit),
        enforcement_enabled: rng.u8(0..4) != 0,
        grace_count: rng.i64(0..6),
        rollout_percent: [100, 100, 100, 0, 50, 90][rng.usize(0..6)],
    });
    let r#override = (rng.u8(0..4) == 0).then(|| Override {
        value: rng.i64(-1..60),
        expires_at_ms: match rng.u8(0..3) {
            0 => None,
            1 => Some(now_ms + rng.i64(1..86_400_000)),
            _ => Some(now_ms - rng.i64(0..86_400_000)),
        },
    });
    let around = limit.max(3);
    DecisionInput {
        user_id: format!("user-{}", rng.u32(0..100_000)),
        plan_id: ["free", "pro", "team", "enterprise"][rng.usize(0..4)].to_owned(),
        entitlement_key: KEYS[rng.usize(0..KEYS.len())].to_owned(),
        requested: if rng.u8(0..8) == 0 { rng.i64(2..20) } else { 1 },
        now_ms,
        usage: rng.i64(0..around.saturating_mul(2).saturating_add(2)),
        r#override,
        plan,
        default_limit: (rng.u8(0..3) == 0).then(|| rng.i64(-1..30)),
        grace_used: rng.i64(0..6),
    }
}

pub fn run(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let a = super::load_policy(Some(&args.a))?;
    let b = super::load_policy(args.b.as_deref())?;
    let (mut ea, mut eb) = (a.evaluator()?, b.evaluator()?);
    let mut inputs = corpus()?;
    let from_corpus = inputs.len();
    let mut rng = fastrand::Rng::with_seed(args.seed);
    inputs.extend((0..args.inputs).map(|_| input_to_value(&generate(&mut rng))));
    let mut comparison = Comparison::new(args.examples);
    for input in &inputs {
        let (out_a, out_b) = match input_from_value(input) {
            Ok(parsed) => (
                ea.evaluate(&parsed).to_value(),
                eb.evaluate(&parsed).to_value(),
            ),
            Err(e) => {
                let refused = quota_policy_core::json::policy_error_value(&e);
                (refused.clone(), refused)
            }
        };
        comparison.add(input, &out_b, &out_a, ["b", "a"]);
    }
    let mut head = serde_json::Map::new();
    head.insert("a_sha256".into(), a.sha256().into());
    head.insert("b_sha256".into(), b.sha256().into());
    head.insert("corpus_inputs".into(), from_corpus.into());
    head.insert("generated_inputs".into(), args.inputs.into());
    head.insert("seed".into(), args.seed.into());
    println!(
        "{}",
        serde_json::to_string_pretty(&comparison.report(head))?
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_corpus_is_every_conformance_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
        let on_disk = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert_eq!(
            on_disk,
            quota_engine::selftest::CORPUS.len(),
            "list every tests/conformance file in the engine's CORPUS"
        );
        assert!(corpus().unwrap().len() >= 100);
    }

    #[test]
    fn generated_inputs_reach_every_status_and_repeat_by_seed() {
        let mut rng = fastrand::Rng::with_seed(7);
        let inputs: Vec<_> = (0..2_000).map(|_| generate(&mut rng)).collect();
        let mut statuses = std::collections::BTreeSet::new();
        for input in &inputs {
            if let Ok(d) = quota_policy_core::decide(input) {
                statuses.insert(d.status.as_str());
            }
        }
        assert_eq!(statuses.len(), 4, "{statuses:?}");
        let mut again = fastrand::Rng::with_seed(7);
        assert_eq!(generate(&mut again), inputs[0]);
    }
}

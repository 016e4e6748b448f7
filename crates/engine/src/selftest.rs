//! The self-test a policy passes before it may become active: every input
//! of the conformance corpus, twice.
//!
//! A candidate policy may decide differently from the reference (that is
//! why one swaps policies), so differences from the corpus's expectations
//! are reported, not refused. What is refused is a policy that cannot be
//! trusted to decide at all:
//!
//! - a call that fails (trap, deadline, memory cap, stack) or a decision
//!   that breaks the contract's invariants;
//! - an error for an input the contract calls valid, or a decision for one
//!   it calls invalid;
//! - a different answer the second time for the same input;
//! - taking longer than its budget in all (each call has its own deadline
//!   too, but a policy just under it on every call would hold an upload
//!   for minutes).

use std::time::{Duration, Instant};

use quota_policy_core::json::{CaseFile, Evaluated, input_from_value, mismatches};
use serde_json::Value;

use quota_host::PolicyModule;

/// The conformance corpus, built in: (file name, case file text).
pub const CORPUS: &[(&str, &str)] = &[
    (
        "enforcement-rollout.json",
        include_str!("../../../tests/conformance/enforcement-rollout.json"),
    ),
    (
        "grace.json",
        include_str!("../../../tests/conformance/grace.json"),
    ),
    (
        "invalid-input.json",
        include_str!("../../../tests/conformance/invalid-input.json"),
    ),
    (
        "limit-resolution.json",
        include_str!("../../../tests/conformance/limit-resolution.json"),
    ),
    (
        "overrides.json",
        include_str!("../../../tests/conformance/overrides.json"),
    ),
    (
        "saturation.json",
        include_str!("../../../tests/conformance/saturation.json"),
    ),
    (
        "usage-keys.json",
        include_str!("../../../tests/conformance/usage-keys.json"),
    ),
];

/// A passed self-test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestReport {
    /// Corpus cases whose input reached the policy (each run twice).
    pub cases: usize,
    /// Cases whose input the host's JSON reader refuses before any policy
    /// sees it; not run.
    pub not_run: usize,
    /// Cases where the policy decided otherwise than the reference policy.
    pub differs_from_reference: usize,
    /// The names of the first few such cases.
    pub examples: Vec<String>,
}

/// Why a policy failed its self-test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("self-test case `{case}`: {reason}")]
pub struct SelfTestFailure {
    /// The corpus case.
    pub case: String,
    /// What the policy did wrong.
    pub reason: String,
}

/// How many differing case names a report keeps.
const EXAMPLES: usize = 5;

/// The time a self-test may take in all by default: the reference takes
/// about a millisecond.
pub const BUDGET: Duration = Duration::from_secs(2);

/// Runs the corpus through `module` within [`BUDGET`]; stops at the first
/// failure.
pub fn self_test(module: &PolicyModule) -> Result<SelfTestReport, SelfTestFailure> {
    self_test_within(module, BUDGET)
}

/// [`self_test`] within `budget`: past it, the self-test fails at the case
/// it had reached.
pub fn self_test_within(
    module: &PolicyModule,
    budget: Duration,
) -> Result<SelfTestReport, SelfTestFailure> {
    let started = Instant::now();
    let fail = |case: &str, reason: String| SelfTestFailure {
        case: case.to_owned(),
        reason,
    };
    let mut evaluator = module
        .evaluator()
        .map_err(|e| fail("(instantiation)", e.to_string()))?;
    let mut report = SelfTestReport {
        cases: 0,
        not_run: 0,
        differs_from_reference: 0,
        examples: Vec::new(),
    };
    let mut first_pass: Vec<Value> = Vec::new();
    for pass in 0..2 {
        let mut ran = 0;
        for (file, text) in CORPUS {
            let cases = CaseFile::parse(text).map_err(|e| fail(file, e))?;
            for case in &cases.cases {
                let Ok(input) = input_from_value(&case.input) else {
                    if pass == 0 {
                        report.not_run += 1;
                    }
                    continue;
                };
                if started.elapsed() > budget {
                    return Err(fail(
                        &case.name,
                        format!("the self-test took longer than its budget of {budget:?}"),
                    ));
                }
                let expects_error = case.expect.contains_key("error");
                let evaluated = evaluator.evaluate(&input);
                let output = evaluated.to_value();
                match &evaluated {
                    Evaluated::Unavailable(why) => {
                        return Err(fail(&case.name, format!("the policy failed: {why}")));
                    }
                    Evaluated::PolicyError(e) if !expects_error => {
                        return Err(fail(
                            &case.name,
                            format!("rejected a valid input: {}", e.message),
                        ));
                    }
                    Evaluated::Decision(..) if expects_error => {
                        return Err(fail(
                            &case.name,
                            "decided an input the contract calls invalid".to_owned(),
                        ));
                    }
                    _ => {}
                }
                if pass == 0 {
                    report.cases += 1;
                    if !mismatches(&case.expect, &output).is_empty() {
                        report.differs_from_reference += 1;
                        if report.examples.len() < EXAMPLES {
                            report.examples.push(case.name.clone());
                        }
                    }
                    first_pass.push(output);
                } else if first_pass.get(ran) != Some(&output) {
                    return Err(fail(
                        &case.name,
                        "answered differently the second time".to_owned(),
                    ));
                }
                ran += 1;
            }
        }
    }
    Ok(report)
}

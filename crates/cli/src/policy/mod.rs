//! `quota policy ...`: evaluate, test and inspect policy components.

mod eval;
mod inspect;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use quota_host::{Evaluator, Limits, PolicyModule, Runtime};
use quota_policy_core::DecisionInput;
use quota_policy_core::json::Evaluated;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Evaluate decision inputs: one JSON object, or JSON Lines, in; one JSON line out per input.
    Eval(eval::EvalArgs),
    /// Run case files against a policy; prints failing cases and `N passed, M failed`.
    Test(test::TestArgs),
    /// Describe a component: sha256, size, package, exports and imports, as JSON.
    Inspect(inspect::InspectArgs),
}

/// Which policy component to use.
#[derive(Debug, Args)]
pub struct ModuleArg {
    /// A policy component file; default: the reference policy built into this binary.
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
}

impl ModuleArg {
    /// The component's bytes.
    fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        match &self.module {
            Some(path) => read(path),
            None => Ok(quota_reference_policy::COMPONENT.to_vec()),
        }
    }

    /// The component, loaded as a policy.
    fn load(&self) -> anyhow::Result<PolicyModule> {
        let runtime = Runtime::new(Limits::default())?;
        let bytes = self.bytes()?;
        let module = runtime.load(&bytes).with_context(|| match &self.module {
            Some(path) => format!("cannot load `{}` as a policy", path.display()),
            None => "cannot load the built-in reference policy".to_owned(),
        })?;
        Ok(module)
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Eval(args) => eval::run(args),
        PolicyCommand::Test(args) => test::run(args),
        PolicyCommand::Inspect(args) => inspect::run(args),
    }
}

/// Evaluates one parsed input with the component: the decision with its
/// usage key, the policy's error, or why the policy could not be run.
fn evaluate(evaluator: &mut Evaluator, input: &DecisionInput) -> Evaluated {
    let decided = evaluator.decide(input).and_then(|outcome| match outcome {
        Ok(decision) => evaluator
            .usage_key(&input.entitlement_key)
            .map(|key| Evaluated::Decision(decision, key)),
        Err(policy_error) => Ok(Evaluated::PolicyError(policy_error)),
    });
    decided.unwrap_or_else(|e| Evaluated::Unavailable(e.to_string()))
}

/// Evaluates one JSON input with the component.
fn evaluate_value(evaluator: &mut Evaluator, value: &serde_json::Value) -> serde_json::Value {
    match quota_policy_core::json::input_from_value(value) {
        Ok(input) => evaluate(evaluator, &input).to_value(),
        Err(e) => Evaluated::PolicyError(e).to_value(),
    }
}

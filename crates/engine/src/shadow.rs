//! The shadow policy: the same question, compared with the active answer.

use quota_policy_core::DecisionInput;

use crate::loaded::Loaded;
use crate::record::{ShadowOutcome, ShadowVerdict};
use crate::request::Outcome;

/// Asks the shadow policy the same question and compares its decision
/// with the active one's, the reason text aside.
pub(crate) fn shadow_verdict(
    shadow: &Loaded,
    input: &DecisionInput,
    active: &Outcome,
) -> ShadowVerdict {
    let mut evaluator = match shadow.take() {
        Ok(evaluator) => evaluator,
        Err(e) => return ShadowVerdict::Failed(e.to_string()),
    };
    let evaluated = evaluator.evaluate(input);
    shadow.give_back(evaluator);
    let (mut decision, key) = match evaluated {
        quota_policy_core::json::Evaluated::Decision(decision, key) => (decision, key),
        quota_policy_core::json::Evaluated::PolicyError(e) => {
            return ShadowVerdict::Failed(e.message);
        }
        quota_policy_core::json::Evaluated::Unavailable(why) => {
            return ShadowVerdict::Failed(why);
        }
    };
    // Compared as values with the active reason in place of theirs.
    let reason = std::mem::replace(&mut decision.reason, active.decision.reason.clone());
    if key == active.usage_key && decision == active.decision {
        ShadowVerdict::Same
    } else {
        decision.reason = reason;
        ShadowVerdict::Diverged {
            decision: Box::new(decision),
            usage_key: key,
        }
    }
}

pub(crate) fn log_shadow(outcome: &Outcome, shadow: &ShadowOutcome) {
    match &shadow.verdict {
        ShadowVerdict::Same => {}
        ShadowVerdict::Diverged {
            decision,
            usage_key,
        } => tracing::warn!(
            target: "quota::shadow",
            user_id = %outcome.user_id,
            entitlement_key = %outcome.entitlement_key,
            active_sha256 = %outcome.policy_sha256,
            shadow_sha256 = %shadow.policy_sha256,
            active = %quota_policy_core::json::DecisionJson::new(&outcome.decision, &outcome.usage_key).to_value(),
            shadow = %quota_policy_core::json::DecisionJson::new(decision, usage_key).to_value(),
            "shadow policy diverged"
        ),
        ShadowVerdict::Failed(why) => tracing::warn!(
            target: "quota::shadow",
            shadow_sha256 = %shadow.policy_sha256,
            error = %why,
            "shadow policy failed"
        ),
    }
}

//! What the engine tells the outside of each decision: the record a
//! decision log keeps, and the shadow policy's verdict beside it.

use quota_policy_core::{Decision, DecisionInput, UsageKeyInfo};

use crate::request::Outcome;

/// What the shadow policy made of a decision the active policy made.
#[derive(Debug, Clone, PartialEq)]
pub enum ShadowVerdict {
    /// The same decision (the reason text aside).
    Same,
    /// A different decision: the shadow's.
    Diverged {
        /// What the shadow decided.
        decision: Box<Decision>,
        /// The usage counter it named.
        usage_key: UsageKeyInfo,
    },
    /// The shadow could not decide; why.
    Failed(String),
}

/// A shadow evaluation beside an active decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowOutcome {
    /// The shadow policy's sha256.
    pub policy_sha256: String,
    /// What it decided, compared with the active policy.
    pub verdict: ShadowVerdict,
}

/// One enforce decision, for the decision log.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    /// When it was made (engine clock, Unix ms).
    pub at_ms: i64,
    /// The policy's input.
    pub input: DecisionInput,
    /// The decision and the policy that made it.
    pub outcome: Outcome,
    /// The shadow policy's verdict, when one is set.
    pub shadow: Option<ShadowOutcome>,
}

/// Where an engine sends each enforce decision (e.g. a decision log). It
/// is called on the request path: it must not block.
pub trait DecisionSink: Send + Sync {
    /// Takes one decision.
    fn record(&self, record: DecisionRecord);
}

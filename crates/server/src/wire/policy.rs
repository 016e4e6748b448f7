//! The policy lifecycle's answers: its state, an accepted upload, the
//! decision log.

use serde::Serialize;
use utoipa::ToSchema;

use super::admin::json_text;

/// Something that happened to a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyEvent {
    /// Increasing id.
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// `activate`, `rollback`, `shadow`, `clear_shadow` or `reject`.
    pub action: String,
    /// The component's sha256 (null for `clear_shadow`).
    pub sha256: Option<String>,
    /// A rejection's stage and reason, a self-test summary.
    pub detail: String,
}

impl From<&quota_store::PolicyEvent> for PolicyEvent {
    fn from(e: &quota_store::PolicyEvent) -> Self {
        PolicyEvent {
            id: e.id,
            at_ms: e.at_ms,
            actor: e.actor.clone(),
            action: e.action.clone(),
            sha256: e.sha256.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// The policy deciding now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActivePolicy {
    /// Its sha256.
    pub sha256: String,
    /// The event that made it active (null: the built-in reference policy).
    pub since: Option<PolicyEvent>,
    /// Who signed it.
    pub signed_by: SignedBy,
}

/// The policy evaluated beside the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ShadowPolicy {
    /// Its sha256.
    pub sha256: String,
    /// The event that set it.
    pub since: Option<PolicyEvent>,
    /// Who signed it.
    pub signed_by: SignedBy,
}

/// Who signed a policy (docs/signing.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct SignedBy {
    /// `built_in`: the reference policy in this binary, trusted as part
    /// of it; `trusted_key`: a valid signature by a trusted key;
    /// `unverified`: signed, but this host trusts no keys; `unsigned`: no
    /// signature, or one that does not verify now (see `problem`).
    pub kind: String,
    /// The signing key's id.
    pub key_id: Option<String>,
    /// The signed name.
    pub name: Option<String>,
    /// The signed version.
    pub version: Option<String>,
    /// When it was signed (RFC 3339).
    pub signed_at: Option<String>,
    /// Why a stored signature does not verify with the keys trusted now.
    pub problem: Option<String>,
}

impl From<quota_engine::signatures::Signer> for SignedBy {
    fn from(signer: quota_engine::signatures::Signer) -> Self {
        use quota_engine::signatures::Signer;
        let signed = |kind: &str, m: quota_signing::Manifest| SignedBy {
            kind: kind.to_owned(),
            key_id: Some(m.key_id),
            name: Some(m.name),
            version: Some(m.version),
            signed_at: Some(m.signed_at),
            problem: None,
        };
        match signer {
            Signer::BuiltIn => SignedBy {
                kind: "built_in".into(),
                ..SignedBy::default()
            },
            Signer::Verified(m) => signed("trusted_key", m),
            Signer::Unverified(m) => signed("unverified", m),
            Signer::Unsigned(problem) => SignedBy {
                kind: "unsigned".into(),
                problem,
                ..SignedBy::default()
            },
        }
    }
}

/// Whether this host requires signed policies, and whom it trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SignaturePolicy {
    /// Whether an upload, a shadow, a rollback and a restore need a
    /// trusted key's signature (`quota serve --trusted-keys`). False:
    /// signatures are not required, and one that comes along is kept
    /// unverified.
    pub required: bool,
    /// The trusted keys' ids.
    pub trusted_keys: Vec<String>,
    /// A recorded policy this host refused at start or when following its
    /// fleet (e.g. its signing key is no longer trusted): it decides with
    /// the built-in reference policy, or its last good one, instead.
    pub refused: Option<RefusedPolicy>,
}

/// Where the policy lifecycle stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyState {
    /// The active policy.
    pub active: ActivePolicy,
    /// The sha256 a rollback would restore.
    pub previous: Option<String>,
    /// The shadow policy, if one is set.
    pub shadow: Option<ShadowPolicy>,
    /// The most recent rejected upload.
    pub last_load_error: Option<PolicyEvent>,
    /// The sha256 of the upload being compiled and self-tested now.
    pub vetting: Option<String>,
    /// The most recent events, newest first.
    pub history: Vec<PolicyEvent>,
    /// Whether signatures are required, and whom this host trusts.
    pub signatures: SignaturePolicy,
    /// On a database shared by a fleet (PostgreSQL): the policy the fleet
    /// records beside this host's; null on SQLite.
    pub fleet: Option<FleetPolicy>,
}

/// The policy a fleet sharing one database records, and whether this host
/// decides with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FleetPolicy {
    /// The active policy the shared database records.
    pub recorded_sha256: Option<String>,
    /// The shadow policy the shared database records.
    pub recorded_shadow_sha256: Option<String>,
    /// Whether this host decides with the recorded active policy and
    /// shadows with the recorded shadow.
    pub in_sync: bool,
    /// A recorded policy this host refused to load (it keeps its last good
    /// one), and why.
    pub refused: Option<RefusedPolicy>,
}

/// A recorded policy this host would not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RefusedPolicy {
    /// Its sha256.
    pub sha256: String,
    /// Why.
    pub reason: String,
}

impl FleetPolicy {
    /// What `following` knows, beside the policies this host has now.
    pub fn new(
        following: &quota_engine::lifecycle::Following,
        active_sha256: &str,
        shadow_sha256: Option<&str>,
    ) -> Self {
        FleetPolicy {
            recorded_sha256: following.recorded_active.clone(),
            recorded_shadow_sha256: following.recorded_shadow.clone(),
            in_sync: following
                .recorded_active
                .as_deref()
                .is_none_or(|r| r == active_sha256)
                && following.recorded_shadow.as_deref() == shadow_sha256,
            refused: following.refused.as_ref().map(|r| RefusedPolicy {
                sha256: r.sha256.clone(),
                reason: r.reason.clone(),
            }),
        }
    }
}

impl PolicyState {
    /// The state `recorded` by the store, with the policies loaded now
    /// and the upload being vetted.
    pub fn new(
        recorded: &quota_store::PolicyState,
        active: (String, SignedBy),
        shadow: Option<(String, SignedBy)>,
        vetting: Option<String>,
        signatures: SignaturePolicy,
        fleet: Option<FleetPolicy>,
    ) -> Self {
        let event = |e: &Option<quota_store::PolicyEvent>| e.as_ref().map(PolicyEvent::from);
        PolicyState {
            active: ActivePolicy {
                sha256: active.0,
                since: event(&recorded.active),
                signed_by: active.1,
            },
            previous: recorded.previous.clone(),
            shadow: shadow.map(|(sha256, signed_by)| ShadowPolicy {
                sha256,
                since: event(&recorded.shadow),
                signed_by,
            }),
            last_load_error: event(&recorded.last_rejection),
            vetting,
            history: recorded.history.iter().map(PolicyEvent::from).collect(),
            signatures,
            fleet,
        }
    }
}

/// Whether a precompiled artifact was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheResult {
    /// A valid artifact was loaded; nothing was compiled.
    Hit,
    /// The component was compiled.
    Miss,
}

/// What the self-test of an upload found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SelfTest {
    /// Conformance cases run (each twice).
    pub cases: usize,
    /// Cases whose input the host refuses before any policy sees it.
    pub not_run: usize,
    /// Cases the policy decided otherwise than the reference.
    pub differs_from_reference: usize,
    /// The first few such cases.
    pub examples: Vec<String>,
}

/// A component that passed every stage.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Accepted {
    /// Its sha256.
    pub sha256: String,
    /// Whether a precompiled artifact was used.
    pub cache: CacheResult,
    /// Time to compile (or load) and type-check, ms.
    pub load_ms: f64,
    /// Time for the self-test, ms.
    pub self_test_ms: f64,
    /// From receiving the bytes to the switch, ms.
    pub total_ms: f64,
    /// What the self-test found.
    pub self_test: SelfTest,
}

impl From<&quota_engine::lifecycle::Accepted> for Accepted {
    fn from(a: &quota_engine::lifecycle::Accepted) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Accepted {
            sha256: a.sha256.clone(),
            cache: match a.cache {
                quota_host::CacheOutcome::Hit => CacheResult::Hit,
                quota_host::CacheOutcome::Miss => CacheResult::Miss,
            },
            load_ms: ms(a.load_time),
            self_test_ms: ms(a.self_test_time),
            total_ms: ms(a.total_time),
            self_test: SelfTest {
                cases: a.self_test.cases,
                not_run: a.self_test.not_run,
                differs_from_reference: a.self_test.differs_from_reference,
                examples: a.self_test.examples.clone(),
            },
        }
    }
}

/// A policy made active, by upload or rollback.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Activated {
    /// The policy now active.
    pub activated: Accepted,
    /// The lifecycle after the switch.
    pub policy: PolicyState,
}

/// A policy set as the shadow.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Shadowed {
    /// The shadow policy now set.
    pub shadow: Accepted,
    /// The lifecycle after the switch.
    pub policy: PolicyState,
}

/// One logged enforce decision.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DecisionLogEntry {
    /// Increasing id.
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The user.
    pub user_id: String,
    /// The user's plan then.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// `allow`, `allow_grace`, `warn_only` or `block`.
    pub status: String,
    /// The deciding policy.
    pub policy_sha256: String,
    /// The policy's input (docs/contract.md §2.1).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// The decision (docs/contract.md §2.1 output).
    #[schema(value_type = Object)]
    pub output: serde_json::Value,
    /// The shadow policy's verdict, when one was set.
    pub shadow: Option<ShadowVerdict>,
}

/// What the shadow policy made of a logged decision.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ShadowVerdict {
    /// The shadow policy.
    pub policy_sha256: String,
    /// `same`, `diverged` or `failed`.
    pub verdict: Option<String>,
    /// Its decision when it diverged, or `{"error"}` when it failed.
    #[schema(value_type = Object, nullable)]
    pub output: Option<serde_json::Value>,
}

impl From<&quota_store::DecisionLogEntry> for DecisionLogEntry {
    fn from(e: &quota_store::DecisionLogEntry) -> Self {
        DecisionLogEntry {
            id: e.id,
            at_ms: e.at_ms,
            user_id: e.user_id.clone(),
            plan_id: e.plan_id.clone(),
            entitlement_key: e.entitlement_key.clone(),
            status: e.status.clone(),
            policy_sha256: e.policy_sha256.clone(),
            input: json_text(Some(&e.input_json)),
            output: json_text(Some(&e.output_json)),
            shadow: e.shadow_sha256.as_ref().map(|sha256| ShadowVerdict {
                policy_sha256: sha256.clone(),
                verdict: e.shadow_verdict.clone(),
                output: e.shadow_json.as_deref().map(|t| json_text(Some(t))),
            }),
        }
    }
}

/// The decision log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DecisionLog {
    /// The entries.
    pub entries: Vec<DecisionLogEntry>,
}

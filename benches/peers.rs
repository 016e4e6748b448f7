//! The same quota rule in the policy engines people would otherwise use:
//! Rego (evaluated by `regorus`, in each of its API styles) and Cedar
//! (`cedar-policy`). The policy texts and how they map the contract are in
//! `benches/policies/`.
//!
//! Everything here that is not evaluation (compiling a policy, building an
//! input, a request or the entities) happens before the timed part.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression,
};
use quota_policy_core::{Decision, DecisionInput, Status, rollout_bucket};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;

type Error = Box<dyn std::error::Error>;

/// The Rego policy (package `quota`).
pub const REGO_POLICY: &str = include_str!("policies/quota.rego");
/// The rule every Rego evaluation asks for.
pub const REGO_RULE: &str = "data.quota.decision";
/// The Cedar policy set.
pub const CEDAR_POLICIES: &str = include_str!("policies/quota.cedar");

/// The Rego input for `input`: its JSON form (docs/contract.md §2.1) plus the rollout
/// bucket, which Rego cannot compute (see `policies/quota.rego`).
pub fn rego_input(input: &DecisionInput) -> regorus::Value {
    let mut json = quota_policy_core::json::input_to_value(input);
    if let Some(object) = json.as_object_mut() {
        object.insert(
            "rollout_bucket".into(),
            rollout_bucket(&input.plan_id, &input.user_id).into(),
        );
    }
    regorus::Value::from(json)
}

/// The policy loaded once into every regorus API style.
pub struct Rego {
    /// The interpreter, for [`regorus::Engine::eval_rule`] and
    /// [`regorus::Engine::eval_query`].
    engine: regorus::Engine,
    /// The policy compiled for one entry point ([`regorus::CompiledPolicy`]).
    compiled: regorus::CompiledPolicy,
    /// The RVM bytecode VM with the program loaded.
    vm: RegoVM,
}

impl std::fmt::Debug for Rego {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rego").finish_non_exhaustive()
    }
}

/// The regorus API styles the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegoMode {
    /// The tree-walking interpreter: `set_input`, then `eval_rule`.
    EvalRule,
    /// The interpreter through an OPA-style query: `set_input`, then `eval_query`.
    EvalQuery,
    /// `CompiledPolicy::eval_with_input` (a fresh engine over the compiled policy per call).
    Compiled,
    /// The RVM bytecode VM: `set_input`, then `execute`.
    Rvm,
}

impl RegoMode {
    /// Every mode, in the order the benchmark reports them.
    pub const ALL: [RegoMode; 4] = [
        RegoMode::EvalRule,
        RegoMode::EvalQuery,
        RegoMode::Compiled,
        RegoMode::Rvm,
    ];

    /// The benchmark id of the mode.
    pub fn name(self) -> &'static str {
        match self {
            RegoMode::EvalRule => "regorus_eval_rule",
            RegoMode::EvalQuery => "regorus_eval_query",
            RegoMode::Compiled => "regorus_compiled_policy",
            RegoMode::Rvm => "regorus_rvm",
        }
    }
}

impl Rego {
    /// Parses and compiles the policy for every mode.
    pub fn new() -> Result<Self, Error> {
        let mut engine = regorus::Engine::new();
        engine.add_policy("quota.rego".into(), REGO_POLICY.into())?;
        let compiled = engine.compile_with_entrypoint(&REGO_RULE.into())?;
        let program: Arc<Program> = Compiler::compile_from_policy(&compiled, &[REGO_RULE])?;
        let mut vm = RegoVM::new();
        vm.load_program(program);
        Ok(Rego {
            engine,
            compiled,
            vm,
        })
    }

    /// Evaluates the decision for a prepared input in `mode`.
    pub fn eval(
        &mut self,
        mode: RegoMode,
        input: &regorus::Value,
    ) -> Result<regorus::Value, Error> {
        Ok(match mode {
            RegoMode::EvalRule => {
                self.engine.set_input(input.clone());
                self.engine.eval_rule(REGO_RULE.into())?
            }
            RegoMode::EvalQuery => {
                self.engine.set_input(input.clone());
                let results = self.engine.eval_query(REGO_RULE.into(), false)?;
                results
                    .result
                    .into_iter()
                    .next()
                    .and_then(|r| r.expressions.into_iter().next())
                    .map_or(regorus::Value::Undefined, |e| e.value)
            }
            RegoMode::Compiled => self.compiled.eval_with_input(input.clone())?,
            RegoMode::Rvm => {
                self.vm.set_input(input.clone());
                self.vm.execute()?
            }
        })
    }
}

/// Compares a Rego decision with the reference decision, field by field
/// (every field but `reason`, which the Rego policy does not build).
pub fn rego_agrees(value: &regorus::Value, expected: &Decision) -> Result<(), String> {
    let int = |field: &str| value[field].as_i64().map_err(|e| format!("{field}: {e}"));
    let boolean = |field: &str| {
        value[field]
            .as_bool()
            .copied()
            .map_err(|e| format!("{field}: {e}"))
    };
    let string = |field: &str| {
        value[field]
            .as_string()
            .map(|s| s.to_string())
            .map_err(|e| format!("{field}: {e}"))
    };
    let got = (
        string("status")?,
        int("limit")?,
        string("limit_source")?,
        boolean("override_applied")?,
        boolean("override_expired")?,
        int("projected_usage")?,
        int("overage")?,
        boolean("enforced")?,
        int("grace_to_consume")?,
        int("grace_remaining")?,
    );
    let want = (
        expected.status.as_str().to_owned(),
        expected.limit,
        expected.limit_source.as_str().to_owned(),
        expected.override_applied,
        expected.override_expired,
        expected.projected_usage,
        expected.overage,
        expected.enforced,
        expected.grace_to_consume,
        expected.grace_remaining,
    );
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "(status, limit, source, override_applied, override_expired, projected, overage, enforced, grace_to_consume, grace_remaining): rego {got:?}, reference {want:?}"
        ))
    }
}

/// The Cedar policy set, its entities and the ids of its three policies.
pub struct Cedar {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    within: PolicyId,
    not_enforced: PolicyId,
    grace: PolicyId,
}

impl std::fmt::Debug for Cedar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cedar").finish_non_exhaustive()
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, Error> {
    let escaped = id.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(EntityUid::from_str(&format!("{kind}::\"{escaped}\""))?)
}

fn long(n: i64) -> RestrictedExpression {
    RestrictedExpression::new_long(n)
}

impl Cedar {
    /// Parses the policy set and builds the entities of `inputs` (every
    /// user and entitlement, no attributes).
    pub fn new(inputs: &[DecisionInput]) -> Result<Self, Error> {
        let policies = PolicySet::from_str(CEDAR_POLICIES)?;
        let by_annotation = |name: &str| -> Result<PolicyId, Error> {
            policies
                .policies()
                .find(|p| p.annotation("id") == Some(name))
                .map(|p| p.id().clone())
                .ok_or_else(|| format!("no policy @id(\"{name}\")").into())
        };
        let within = by_annotation("within")?;
        let not_enforced = by_annotation("not_enforced")?;
        let grace = by_annotation("grace")?;
        let mut uids = HashSet::new();
        for input in inputs {
            uids.insert(uid("User", &input.user_id)?);
            uids.insert(uid("Entitlement", &input.entitlement_key)?);
        }
        let entities = Entities::from_entities(
            uids.into_iter()
                .map(|u| Entity::new_no_attrs(u, HashSet::new())),
            None,
        )?;
        Ok(Cedar {
            authorizer: Authorizer::new(),
            policies,
            entities,
            within,
            not_enforced,
            grace,
        })
    }

    /// The request for `input`: principal, action, resource and a context
    /// carrying the numbers (see `policies/quota.cedar`).
    pub fn request(input: &DecisionInput) -> Result<Request, Error> {
        let mut context = vec![
            ("now_ms".to_owned(), long(input.now_ms)),
            ("usage".to_owned(), long(input.usage)),
            ("requested".to_owned(), long(input.requested)),
            ("grace_used".to_owned(), long(input.grace_used)),
            (
                "rollout_bucket".to_owned(),
                long(i64::from(rollout_bucket(&input.plan_id, &input.user_id))),
            ),
        ];
        if let Some(o) = &input.r#override {
            let mut fields = vec![("value".to_owned(), long(o.value))];
            if let Some(expires) = o.expires_at_ms {
                fields.push(("expires_at_ms".to_owned(), long(expires)));
            }
            context.push((
                "override".to_owned(),
                RestrictedExpression::new_record(fields)?,
            ));
        }
        if let Some(p) = &input.plan {
            let mut fields = vec![
                (
                    "enforcement_enabled".to_owned(),
                    RestrictedExpression::new_bool(p.enforcement_enabled),
                ),
                ("grace_count".to_owned(), long(p.grace_count)),
                ("rollout_percent".to_owned(), long(p.rollout_percent)),
            ];
            if let Some(limit) = p.limit {
                fields.push(("limit".to_owned(), long(limit)));
            }
            context.push(("plan".to_owned(), RestrictedExpression::new_record(fields)?));
        }
        if let Some(limit) = input.default_limit {
            context.push(("default_limit".to_owned(), long(limit)));
        }
        Ok(Request::new(
            uid("User", &input.user_id)?,
            uid("Action", "consume")?,
            uid("Entitlement", &input.entitlement_key)?,
            Context::from_pairs(context)?,
            None,
        )?)
    }

    /// Authorizes `request` and reads the status class from the policies
    /// that determined the decision. An evaluation error is an error.
    pub fn decide(&self, request: &Request) -> Result<Status, String> {
        let response = self
            .authorizer
            .is_authorized(request, &self.policies, &self.entities);
        let diagnostics = response.diagnostics();
        if let Some(e) = diagnostics.errors().next() {
            return Err(e.to_string());
        }
        let applied = |id: &PolicyId| diagnostics.reason().any(|r| r == id);
        Ok(match response.decision() {
            cedar_policy::Decision::Deny => Status::Block,
            cedar_policy::Decision::Allow if applied(&self.within) => Status::Allow,
            cedar_policy::Decision::Allow if applied(&self.not_enforced) => Status::WarnOnly,
            cedar_policy::Decision::Allow if applied(&self.grace) => Status::AllowGrace,
            cedar_policy::Decision::Allow => {
                return Err("allowed by no known policy".to_owned());
            }
        })
    }
}

//! Metered entitlements and leases over HTTP (docs/leases.md): a guarded
//! consume of any key by a user or a node on a user's behalf, and the
//! grants and settles of nodes deciding at the edge.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use quota_engine::Outcome;
use quota_metering::{
    GrantRequest, Granted, MIN_LEASE_MS, Refusal, SettleRequest, Settled, Settlement,
};
use quota_policy_core::DecisionInput;
use quota_store::{Lease, LeaseStore};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, Json, Node, Path};
use crate::idempotency::{Idempotency, Replies, Reply};
use crate::wire;

/// A metered consume.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumeBody {
    /// Units to consume: 1 or more.
    #[schema(minimum = 1)]
    requested: i64,
    /// The user whose units: required with a node credential; a user may
    /// name only themself.
    user_id: Option<String>,
}

/// Consume units of a metered entitlement (API calls, exports, tokens): the policy's decision on usage plus the units open leases hold, usage and grace recorded in one transaction. A user consumes for themself; a node credential for the user it names.
#[utoipa::path(post, path = "/v1/usage/{entitlement_key}", tag = "metering", request_body = ConsumeBody,
    params(("entitlement_key" = String, Path, description = "The metered entitlement (not `drafts.max`, `segments.max` or `collaborators.max`)")),
    security(("bearer" = [])),
    responses((status = 200, description = "Consumed, with the decision", body = crate::wire::Consumed),
              (status = 403, description = "`quota_exceeded`, or a user naming another user", body = crate::wire::ErrorBody),
              (status = 409, description = "`conflict`: the key is counted by a domain action", body = crate::wire::ErrorBody)))]
async fn consume(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ConsumeBody>,
) -> Result<Reply, ApiError> {
    quota_policy_core::names::check_entitlement_key(&key)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let (user, owner) = match &caller {
        Caller::User(user) => {
            if body.user_id.as_ref().is_some_and(|named| named != user) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "a user consumes only their own units; `user_id` is for node credentials",
                ));
            }
            (user.clone(), user.clone())
        }
        Caller::Node(node) => {
            let user = body
                .user_id
                .clone()
                .ok_or_else(|| ApiError::invalid("`user_id` is required with a node credential"))?;
            crate::extract::id("user_id", &user)?;
            (user, node.idempotency_owner())
        }
    };
    let idem =
        Idempotency::from_headers(&headers, &owner, &format!("POST /v1/usage/{key}"), &body)?;
    let replies = Replies::new(idem, StatusCode::OK);
    state
        .blocking(move |engine| {
            if let Some(reply) = replies.stored(engine.store())? {
                return Ok(reply);
            }
            let now = engine.now_ms();
            let consumed = engine.guarded(|g| {
                let mut admitted = quota_metering::consume(g, &user, &key, body.requested)?;
                let reply = replies.reply(&wire::Consumed {
                    user_id: user.clone(),
                    entitlement_key: key.clone(),
                    requested: body.requested,
                    outcome: admitted.outcome().into(),
                })?;
                replies.store(admitted.tx(), &reply, now)?;
                admitted.commit()?;
                Ok(reply)
            });
            replies.answer(engine.store(), consumed)
        })
        .await
}

/// A node asks for units.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The user whose units.
    user_id: String,
    /// The metered entitlement.
    entitlement_key: String,
    /// The most units wanted.
    #[schema(minimum = 1)]
    units: i64,
    /// The lease's time to live, ms (default and most: the service's
    /// `--lease-max-ms`; least 1000).
    ttl_ms: Option<i64>,
}

/// The lease time asked for, within what the service allows.
fn ttl(state: &AppState, asked: Option<i64>) -> Result<i64, ApiError> {
    let most = state.lease_max_ms();
    match asked {
        None => Ok(most),
        Some(ms) if (MIN_LEASE_MS..=most).contains(&ms) => Ok(ms),
        Some(ms) => Err(ApiError::invalid(format!(
            "`ttl_ms` must be from {MIN_LEASE_MS} to {most}, got {ms}"
        ))),
    }
}

/// A lease's answer when it holds units.
fn holding(
    lease: &Lease,
    outcome: &Outcome,
    input: &DecisionInput,
    ttl_ms: i64,
    settled: Option<Settlement>,
) -> wire::LeaseGrant {
    wire::LeaseGrant {
        id: Some(lease.id),
        seq: lease.seq,
        granted: lease.reserved,
        grace_granted: lease.reserved_grace,
        expires_at_ms: Some(lease.expires_at_ms),
        // Shorter than asked when the lease ends with its usage period.
        ttl_ms: ttl_ms.min(lease.expires_at_ms.saturating_sub(input.now_ms).max(0)),
        refused: None,
        revoked: settled.is_some_and(|s| s.revoked),
        ended: false,
        settled: settled.map(settlement),
        input: Some(quota_policy_core::json::input_to_value(input)),
        outcome: Some(outcome.into()),
    }
}

/// A lease's answer when it holds nothing: refused, or ended.
fn holding_nothing(
    lease: Option<&Lease>,
    refusal: Option<&Refusal>,
    settled: Option<Settlement>,
) -> wire::LeaseGrant {
    let (refused, outcome) = match refusal {
        Some(Refusal::Blocked(outcome)) => {
            (Some(wire::Refused::Blocked), Some((&**outcome).into()))
        }
        Some(Refusal::NodeFull { .. }) => (Some(wire::Refused::NodeFull), None),
        None => (None, None),
    };
    wire::LeaseGrant {
        id: lease.map(|l| l.id),
        seq: lease.map_or(0, |l| l.seq),
        granted: 0,
        grace_granted: 0,
        expires_at_ms: None,
        ttl_ms: 0,
        refused,
        revoked: settled.is_some_and(|s| s.revoked),
        ended: lease.is_some(),
        settled: settled.map(settlement),
        input: None,
        outcome,
    }
}

fn settlement(s: Settlement) -> wire::Settlement {
    wire::Settlement {
        spent: s.spent,
        grace_spent: s.grace_spent,
        returned: s.returned,
    }
}

/// Grant a lease (node credential): up to `units` of the user's entitlement that the policy admits (limit and grace), within the node's `max_outstanding`, reserved until settled or expired. 201 with the lease; 200 with `granted: 0` and `refused` when nothing was reserved. A retry with the same `Idempotency-Key` reserves once.
#[utoipa::path(post, path = "/v1/leases", tag = "metering", request_body = GrantBody, security(("bearer" = [])),
    responses((status = 201, description = "Granted: the lease, its decision and the input to decide locally with", body = crate::wire::LeaseGrant),
              (status = 200, description = "Nothing reserved (`refused`: `blocked` or `node_full`)", body = crate::wire::LeaseGrant),
              (status = 401, description = "Not a node credential", body = crate::wire::ErrorBody)))]
async fn grant(
    State(state): State<AppState>,
    node: Node,
    headers: HeaderMap,
    Json(body): Json<GrantBody>,
) -> Result<Reply, ApiError> {
    crate::extract::id("user_id", &body.user_id)?;
    quota_policy_core::names::check_entitlement_key(&body.entitlement_key)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let ttl_ms = ttl(&state, body.ttl_ms)?;
    let idem = Idempotency::from_headers(
        &headers,
        &node.idempotency_owner(),
        "POST /v1/leases",
        &body,
    )?;
    let replies = Replies::new(idem, StatusCode::CREATED);
    let request = GrantRequest {
        node_id: node.0,
        user_id: body.user_id,
        entitlement_key: body.entitlement_key,
        units: body.units,
        ttl_ms,
    };
    state
        .blocking(move |engine| {
            if let Some(reply) = replies.stored(engine.store())? {
                return Ok(reply);
            }
            let now = engine.now_ms();
            let granted = engine.guarded(|g| match quota_metering::grant(g, &request, now)? {
                Granted::Lease(mut admitted, lease) => {
                    let answer =
                        holding(&lease, admitted.outcome(), admitted.input(), ttl_ms, None);
                    let reply = replies.reply(&answer)?;
                    replies.store(admitted.tx(), &reply, now)?;
                    admitted.commit_reserved()?;
                    Ok(reply)
                }
                Granted::Refused(pending, refusal) => {
                    pending.commit()?;
                    replies.reply_with(StatusCode::OK, &holding_nothing(None, Some(&refusal), None))
                }
            });
            replies.answer(engine.store(), granted)
        })
        .await
}

/// A node settles a lease.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleBody {
    /// One more than the last settle applied (the grant is 0). A retry
    /// sends the same `seq` and values and counts once.
    #[schema(minimum = 1)]
    seq: i64,
    /// Units spent since the last settle.
    #[schema(minimum = 0)]
    spent: i64,
    /// Units wanted again: the lease is renewed on a fresh decision.
    /// Absent or 0: the lease ends.
    #[serde(default)]
    #[schema(minimum = 0)]
    more: i64,
    /// The renewed lease's time to live, ms.
    ttl_ms: Option<i64>,
}

/// Settle a lease (node credential): spent units become usage (and grace, for units granted on grace), the rest return, and with `more` the lease is renewed on a fresh decision. Settles are numbered: a retry of the last one (same `seq` and values) gets the same answer and counts once.
#[utoipa::path(post, path = "/v1/leases/{lease_id}/settle", tag = "metering", request_body = SettleBody,
    params(("lease_id" = i64, Path, description = "The lease")), security(("bearer" = [])),
    responses((status = 200, description = "Settled; renewed (`granted` > 0) or ended", body = crate::wire::LeaseGrant),
              (status = 404, description = "No such lease of this node", body = crate::wire::ErrorBody),
              (status = 409, description = "`conflict`: out of order, more spent than held, or the lease has ended (expired leases counted as fully spent)", body = crate::wire::ErrorBody)))]
async fn settle(
    State(state): State<AppState>,
    node: Node,
    Path(lease_id): Path<i64>,
    Json(body): Json<SettleBody>,
) -> Result<Reply, ApiError> {
    let ttl_ms = ttl(&state, body.ttl_ms)?;
    let request = SettleRequest {
        node_id: node.0,
        lease_id,
        seq: body.seq,
        spent: body.spent,
        more: body.more,
        ttl_ms,
    };
    state
        .blocking(move |engine| {
            let now = engine.now_ms();
            let answer = |tx: &mut _, lease: &mut Lease, answer: &wire::LeaseGrant| {
                let json =
                    serde_json::to_string(answer).map_err(|e| ApiError::internal(e.to_string()))?;
                quota_metering::keep_answer(tx, lease, request.spent, request.more, json.clone())?;
                Ok::<_, ApiError>(Reply::kept(StatusCode::OK, json))
            };
            engine.guarded(|g| match quota_metering::settle(g, &request, now)? {
                Settled::Replay(json) => Ok(Reply::kept(StatusCode::OK, json)),
                Settled::Renewed(mut admitted, mut lease, settled) => {
                    let body = holding(
                        &lease,
                        admitted.outcome(),
                        admitted.input(),
                        ttl_ms,
                        Some(settled),
                    );
                    let reply = answer(admitted.tx(), &mut lease, &body)?;
                    admitted.commit_reserved()?;
                    Ok(reply)
                }
                Settled::Ended(mut pending, mut lease, settled, refusal) => {
                    let body = holding_nothing(Some(&lease), refusal.as_ref(), Some(settled));
                    let reply = answer(pending.tx(), &mut lease, &body)?;
                    pending.commit()?;
                    Ok(reply)
                }
            })
        })
        .await
}

/// Ends expired leases as fully spent every `every`, forever.
pub(crate) async fn expire_forever(state: AppState, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let result = state
            .blocking(|engine| Ok(engine.store().expire_leases(engine.now_ms())?))
            .await;
        match result {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "expired leases counted as fully spent"),
            Err(e) => tracing::warn!(error = ?e.body, "expiring leases failed"),
        }
    }
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(consume))
        .routes(routes!(grant))
        .routes(routes!(settle))
}

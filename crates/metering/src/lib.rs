//! Metered entitlements and leases (docs/leases.md).
//!
//! - [`consume`]: a guarded consume of any entitlement key (API calls,
//!   exports, tokens), with the same decision, grace and block as the
//!   domain actions. Keys a domain action counts are refused.
//! - [`grant`] and [`settle`]: the escrow method. A node is granted a
//!   lease: up to the units the policy admits, reserved, so that they
//!   count as used until they are settled. The node decides locally
//!   within them. A settle turns the units it spent into usage (and grace,
//!   for units granted on grace), returns the rest, and may renew the
//!   lease with a fresh decision on the state as it is then.
//!
//! Like the domain actions, each function works inside one
//! [`Guard`] attempt and returns the transaction open, so that the caller
//! can store its answer in it before committing.

use quota_engine::{Admitted, EnforceError, Guard, Most, Outcome, Pending, QuotaRequest};
use quota_store::{Conflict, Crossing, Lease, LeaseTx, NewLease, QuotaStore, QuotaTx, StoreError};

/// The longest a lease lives without being renewed, in ms: the bound on
/// how stale a node's view of a plan change or override can be.
pub const MAX_LEASE_MS: i64 = 300_000;

/// The shortest lease time a node may ask for, in ms.
pub const MIN_LEASE_MS: i64 = 1_000;

/// Refuses keys a domain action counts, and keys that would read their
/// usage counters (their usage must match their rows).
pub fn check_metered(entitlement_key: &str) -> Result<(), StoreError> {
    // Their usage counters too: a key without `.max` reads itself.
    // Same counter covers the key itself and its counter's own name.
    let counter = |key: &str| quota_policy_core::usage_key(key).usage_key;
    let reads = counter(entitlement_key);
    if quota_domain::OWNED_KEYS
        .iter()
        .any(|owned| counter(owned) == reads)
    {
        return Err(StoreError::Conflict(Conflict::OwnedKey(
            entitlement_key.to_owned(),
        )));
    }
    Ok(())
}

/// Consumes `requested` units of a metered key for `user_id`: admitted by
/// the policy on usage plus the units open leases hold. The transaction
/// is left open; [`Admitted::commit`] records the usage and grace.
pub fn consume<'g, S: QuotaStore>(
    guard: &'g Guard<'_, S>,
    user_id: &str,
    entitlement_key: &str,
    requested: i64,
) -> Result<Admitted<'g, S>, EnforceError> {
    check_metered(entitlement_key)?;
    guard.admit(&QuotaRequest::new(user_id, entitlement_key, requested))
}

/// A node asks for units of a user's entitlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// The node asking.
    pub node_id: String,
    /// The user whose units.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The most units wanted: 1 or more.
    pub units: i64,
    /// How long the lease lives, ms, from [`MIN_LEASE_MS`] to the
    /// service's maximum.
    pub ttl_ms: i64,
}

/// Why a grant or a renewal reserved nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The policy admits not even one unit: its decision.
    Blocked(Box<Outcome>),
    /// The node's open leases hold its `max_outstanding` already.
    NodeFull {
        /// Units its other open, unexpired leases hold.
        outstanding: i64,
        /// Its limit.
        max_outstanding: i64,
    },
}

/// What a grant did.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and matched at once: a box would only add an allocation"
)]
pub enum Granted<'g, S: QuotaStore> {
    /// Units reserved: the lease, written in the open transaction, and
    /// its decision. Commit with [`Admitted::commit_reserved`].
    Lease(Admitted<'g, S>, Lease),
    /// Nothing reserved, and why. Commit the transaction (nothing was
    /// written) before answering: it waits for what it read to be durable.
    Refused(Pending<'g, S>, Refusal),
}

fn check_units(field: &str, units: i64, least: i64) -> Result<(), EnforceError> {
    if units < least {
        return Err(EnforceError::InvalidRequest(format!(
            "`{field}` must be at least {least}, got {units}"
        )));
    }
    Ok(())
}

/// The time to judge expiry by: the store's clock where it has one.
fn store_now<S: QuotaStore<Tx: LeaseTx>>(
    pending: &mut Pending<'_, S>,
    engine_now_ms: i64,
) -> Result<i64, EnforceError> {
    Ok(pending.tx().store_now_ms()?.unwrap_or(engine_now_ms))
}

/// Reserves up to `units` for the node, within what its `max_outstanding`
/// leaves, on the policy's decision (limit and grace included).
pub fn grant<'g, S: QuotaStore<Tx: LeaseTx>>(
    guard: &'g Guard<'_, S>,
    request: &GrantRequest,
    now_ms: i64,
) -> Result<Granted<'g, S>, EnforceError> {
    check_metered(&request.entitlement_key)?;
    check_units("units", request.units, 1)?;
    let mut pending = guard.begin()?;
    let node = pending.tx().lock_node(&request.node_id)?;
    let now_ms = store_now(&mut pending, now_ms)?;
    let outstanding = pending.tx().node_outstanding(&node.id, now_ms, None)?;
    let room = node.max_outstanding - outstanding;
    if room < 1 {
        return Ok(Granted::Refused(
            pending,
            Refusal::NodeFull {
                outstanding,
                max_outstanding: node.max_outstanding,
            },
        ));
    }
    let ask = QuotaRequest::new(
        request.user_id.clone(),
        request.entitlement_key.clone(),
        request.units.min(room),
    );
    match pending.admit_most(&ask)? {
        Most::Blocked(pending, outcome) => Ok(Granted::Refused(pending, Refusal::Blocked(outcome))),
        Most::Admitted(mut admitted) => {
            let now_ms = admitted.input().now_ms;
            let new = new_lease(
                &node.id,
                admitted.outcome(),
                admitted.input(),
                now_ms,
                request.ttl_ms,
            );
            let lease = admitted.tx().insert_lease(&new)?;
            Ok(Granted::Lease(admitted, lease))
        }
    }
}

fn new_lease(
    node_id: &str,
    outcome: &Outcome,
    input: &quota_policy_core::DecisionInput,
    now_ms: i64,
    ttl_ms: i64,
) -> NewLease {
    NewLease {
        node_id: node_id.to_owned(),
        user_id: outcome.user_id.clone(),
        entitlement_key: outcome.entitlement_key.clone(),
        usage_key: outcome.usage_key.usage_key.clone(),
        plan_id: outcome.plan_id.clone(),
        reserved: input.requested,
        reserved_grace: outcome.decision.grace_to_consume.clamp(0, input.requested),
        now_ms,
        // A lease never outlives the period it reserves in.
        expires_at_ms: now_ms
            .saturating_add(ttl_ms)
            .min(outcome.period.map_or(i64::MAX, |p| p.end_ms)),
        period: outcome.period,
        limit: outcome.decision.limit,
    }
}

/// A node settles a lease: what it spent since the last settle, and
/// whether it wants more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleRequest {
    /// The node settling.
    pub node_id: String,
    /// The lease.
    pub lease_id: i64,
    /// The settle's number: one more than the last one applied. A retry
    /// sends the same number and values, and counts once.
    pub seq: i64,
    /// Units spent since the last settle (or the grant).
    pub spent: i64,
    /// Units wanted for a renewal; 0 ends the lease.
    pub more: i64,
    /// The renewed lease's time to live, ms.
    pub ttl_ms: i64,
}

/// What a settle did, besides the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Units that became usage.
    pub spent: i64,
    /// Of those, units that became grace.
    pub grace_spent: i64,
    /// Units that went back.
    pub returned: i64,
    /// An admin change had touched what the lease was granted on.
    pub revoked: bool,
}

/// What a settle did.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and matched at once: a box would only add an allocation"
)]
pub enum Settled<'g, S: QuotaStore> {
    /// A retry of the settle last applied: its answer, as sent. Nothing
    /// changed.
    Replay(String),
    /// Applied, and the lease renewed with a fresh decision: commit with
    /// [`Admitted::commit_reserved`].
    Renewed(Admitted<'g, S>, Lease, Settlement),
    /// Applied, and the lease ended: not renewed when asked, then why.
    /// Commit the transaction.
    Ended(Pending<'g, S>, Lease, Settlement, Option<Refusal>),
}

/// Settles a lease: its spent units become usage and grace (units granted
/// within the limit are spent first), the rest return, and with `more` it
/// is renewed on a fresh decision, as a grant would be. A settle arriving
/// after the lease expired is refused: the lease counted as fully spent.
pub fn settle<'g, S: QuotaStore<Tx: LeaseTx>>(
    guard: &'g Guard<'_, S>,
    request: &SettleRequest,
    now_ms: i64,
) -> Result<Settled<'g, S>, EnforceError> {
    check_units("spent", request.spent, 0)?;
    check_units("more", request.more, 0)?;
    check_units("seq", request.seq, 1)?;
    let mut pending = guard.begin()?;
    // Locks in the one order: node, user, lease.
    let node = pending.tx().lock_node(&request.node_id)?;
    let mut lease = pending.tx().lease(&node.id, request.lease_id)?;
    if request.seq == lease.seq
        && let Some(last) = &lease.last_settle
    {
        if last.spent == request.spent && last.more == request.more {
            let answer = last.response.clone();
            // Answered only once what it read is durable (a group commit).
            pending.commit()?;
            return Ok(Settled::Replay(answer));
        }
        return Err(StoreError::Conflict(Conflict::SettleMismatch {
            lease: lease.id,
            seq: request.seq,
        })
        .into());
    }
    if let Some((_, why)) = lease.ended {
        return Err(StoreError::Conflict(Conflict::LeaseEnded {
            lease: lease.id,
            reason: why.as_str(),
        })
        .into());
    }
    if request.seq != lease.seq + 1 {
        return Err(StoreError::Conflict(Conflict::LeaseSeq {
            lease: lease.id,
            expected: lease.seq + 1,
            got: request.seq,
        })
        .into());
    }
    let now_ms = store_now(&mut pending, now_ms)?;
    if lease.expires_at_ms <= now_ms {
        // Counted as fully spent; the expiry sweep records it.
        return Err(StoreError::Conflict(Conflict::LeaseEnded {
            lease: lease.id,
            reason: quota_store::LeaseEnd::Expired.as_str(),
        })
        .into());
    }
    if request.spent > lease.reserved {
        return Err(StoreError::Conflict(Conflict::Overspent {
            lease: lease.id,
            spent: request.spent,
            reserved: lease.reserved,
        })
        .into());
    }
    let settlement = spend(&mut pending, &mut lease, request.spent, now_ms)?;
    lease.seq = request.seq;
    if request.more == 0 {
        return ended(pending, lease, settlement, None, now_ms);
    }
    // The lease holds nothing now: the renewal is decided without it.
    pending.tx().update_lease(&lease)?;
    let outstanding = pending
        .tx()
        .node_outstanding(&node.id, now_ms, Some(lease.id))?;
    let room = node.max_outstanding - outstanding;
    if room < 1 {
        let refusal = Refusal::NodeFull {
            outstanding,
            max_outstanding: node.max_outstanding,
        };
        return ended(pending, lease, settlement, Some(refusal), now_ms);
    }
    let ask = QuotaRequest::new(
        lease.user_id.clone(),
        lease.entitlement_key.clone(),
        request.more.min(room),
    );
    match pending.admit_most(&ask)? {
        Most::Blocked(pending, outcome) => {
            let refusal = Refusal::Blocked(outcome);
            ended(pending, lease, settlement, Some(refusal), now_ms)
        }
        Most::Admitted(mut admitted) => {
            let now_ms = admitted.input().now_ms;
            let renewed = new_lease(
                &node.id,
                admitted.outcome(),
                admitted.input(),
                now_ms,
                request.ttl_ms,
            );
            lease.usage_key = renewed.usage_key;
            lease.plan_id = renewed.plan_id;
            lease.reserved = renewed.reserved;
            lease.reserved_grace = renewed.reserved_grace;
            lease.granted_total += renewed.reserved;
            lease.expires_at_ms = renewed.expires_at_ms;
            lease.period = renewed.period;
            lease.limit = renewed.limit;
            lease.revoked_at_ms = None;
            admitted.tx().update_lease(&lease)?;
            Ok(Settled::Renewed(admitted, lease, settlement))
        }
    }
}

/// Ends the lease as settled (not renewed when asked: `refusal` says why).
fn ended<'g, S: QuotaStore<Tx: LeaseTx>>(
    mut pending: Pending<'g, S>,
    mut lease: Lease,
    settlement: Settlement,
    refusal: Option<Refusal>,
    now_ms: i64,
) -> Result<Settled<'g, S>, EnforceError> {
    lease.ended = Some((now_ms, quota_store::LeaseEnd::Settled));
    pending.tx().update_lease(&lease)?;
    Ok(Settled::Ended(pending, lease, settlement, refusal))
}

/// Records `spent` of the lease's units as usage (the units within the
/// limit first, then grace) and returns the rest.
fn spend<S: QuotaStore<Tx: LeaseTx>>(
    pending: &mut Pending<'_, S>,
    lease: &mut Lease,
    spent: i64,
    now_ms: i64,
) -> Result<Settlement, EnforceError> {
    let within_limit = lease.reserved - lease.reserved_grace;
    let grace_spent = (spent - within_limit).max(0);
    let tx = pending.tx();
    // Into the period the units were reserved in.
    let period = lease.period.map(|p| p.start_ms);
    if spent > 0 {
        let after = tx.add_usage(&lease.user_id, &lease.usage_key, period, spent)?;
        tx.record_thresholds(&Crossing::settled(lease, after - spent, after, now_ms))?;
    }
    if grace_spent > 0 {
        tx.add_grace(
            &lease.user_id,
            &lease.plan_id,
            &lease.entitlement_key,
            period,
            grace_spent,
            now_ms,
        )?;
    }
    let settlement = Settlement {
        spent,
        grace_spent,
        returned: lease.reserved - spent,
        revoked: lease.revoked_at_ms.is_some(),
    };
    lease.spent_total += spent;
    lease.reserved = 0;
    lease.reserved_grace = 0;
    Ok(settlement)
}

/// Keeps a settle's answer on the lease, in the settle's transaction, so
/// that a retry gets it and changes nothing.
pub fn keep_answer<T: LeaseTx>(
    tx: &mut T,
    lease: &mut Lease,
    spent: i64,
    more: i64,
    answer: String,
) -> Result<(), StoreError> {
    lease.last_settle = Some(quota_store::LastSettle {
        spent,
        more,
        response: answer,
    });
    tx.update_lease(lease)
}

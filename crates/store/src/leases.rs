//! What both backends share about leases: the columns read, which open
//! leases an admin change revokes, and the checks on a new node.

use crate::checks::id;
use crate::error::StoreError;
use crate::model::{LastSettle, Lease, LeaseEnd};
use crate::period::Period;

/// The columns of `leases`, in the order the backends read them (a
/// macro, so that statements can be `concat!`ed into `&'static str`).
macro_rules! lease_columns {
    () => {
        "id, node_id, user_id, entitlement_key, usage_key, plan_id, reserved, reserved_grace, \
         granted_total, spent_total, seq, last_spent, last_more, last_response, created_at_ms, \
         expires_at_ms, revoked_at_ms, ended_at_ms, end_reason, period_kind, \
         period_start_ms, period_end_ms, decided_limit"
    };
}
pub(crate) use lease_columns;

/// The open leases an admin change touches: their next renewal is
/// decided on the changed state, and says that it was revoked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Revoke<'a> {
    /// Every lease of a user (moved to another plan).
    User(&'a str),
    /// A user's leases of one entitlement (an override set or cleared).
    UserKey(&'a str, &'a str),
    /// Leases of the users on a plan (the plan changed).
    Plan(&'a str),
    /// Leases of one entitlement (its default changed).
    Key(&'a str),
}

/// A node's id and `max_outstanding`, by the rules every edge applies.
pub(crate) fn check_node(node_id: &str, max_outstanding: i64) -> Result<(), StoreError> {
    id("node_id", node_id)?;
    if max_outstanding < 1 {
        return Err(StoreError::invalid(
            "max_outstanding",
            format!("`max_outstanding` must be 1 or more, got {max_outstanding}"),
        ));
    }
    Ok(())
}

/// The last settle from its three columns (all set, or none).
pub(crate) fn last_settle(
    spent: Option<i64>,
    more: Option<i64>,
    response: Option<String>,
) -> Option<LastSettle> {
    match (spent, more, response) {
        (Some(spent), Some(more), Some(response)) => Some(LastSettle {
            spent,
            more,
            response,
        }),
        _ => None,
    }
}

/// How a lease ended, from its two columns.
pub(crate) fn ended(at_ms: Option<i64>, reason: Option<&str>) -> Option<(i64, LeaseEnd)> {
    at_ms.zip(reason.and_then(LeaseEnd::parse))
}

/// The end and the last settle of a lease as its columns hold them.
pub(crate) struct Columns<'a> {
    pub(crate) ended_at_ms: Option<i64>,
    pub(crate) end_reason: Option<&'static str>,
    pub(crate) last_spent: Option<i64>,
    pub(crate) last_more: Option<i64>,
    pub(crate) last_response: Option<&'a str>,
}

/// `lease`'s end and last settle, as columns.
pub(crate) fn columns(lease: &Lease) -> Columns<'_> {
    let last = lease.last_settle.as_ref();
    Columns {
        ended_at_ms: lease.ended.map(|(at, _)| at),
        end_reason: lease.ended.map(|(_, why)| why.as_str()),
        last_spent: last.map(|l| l.spent),
        last_more: last.map(|l| l.more),
        last_response: last.map(|l| l.response.as_str()),
    }
}

/// A lease's period from its three columns (all set, or none).
pub(crate) fn period(
    kind: Option<&str>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
) -> Option<Period> {
    let kind = kind?.parse().ok()?;
    let (start_ms, end_ms) = start_ms.zip(end_ms)?;
    Some(Period {
        kind,
        start_ms,
        end_ms,
    })
}

/// Marks an open lease ended as fully spent, holding nothing; returns
/// what the backend adds: (usage, grace), on the lease's usage counter and
/// the plan it was granted on.
pub(crate) fn end_as_spent(lease: &mut Lease, why: LeaseEnd, now_ms: i64) -> (i64, i64) {
    let spent = (lease.reserved, lease.reserved_grace);
    lease.spent_total += lease.reserved;
    lease.reserved = 0;
    lease.reserved_grace = 0;
    lease.ended = Some((now_ms, why));
    spent
}

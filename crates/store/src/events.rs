//! Threshold events (docs/events.md): which thresholds a consume
//! crossed, and the event each becomes in the outbox. Both backends write
//! them in the consuming transaction through [`crate::QuotaTx::record_thresholds`],
//! and the outbox's unique key (user, key, period, threshold) keeps one
//! event per threshold per period however requests race or retry.

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::StoreError;
use crate::model::Lease;
use crate::period::Period;

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Usage reached a threshold percentage of the limit.
    ThresholdReached,
    /// A request was blocked (403 `quota_exceeded`).
    QuotaBlocked,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 2] = [EventKind::ThresholdReached, EventKind::QuotaBlocked];

    /// The event type webhooks subscribe to.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ThresholdReached => "threshold.reached",
            EventKind::QuotaBlocked => "quota.blocked",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kinds `names` name, each once, in their order: what a webhook
    /// subscribes to.
    pub fn parse_list(names: &[String]) -> Result<Vec<EventKind>, EventKindError> {
        if names.is_empty() {
            return Err(EventKindError::Empty);
        }
        let mut kinds = Vec::new();
        for name in names {
            let kind =
                EventKind::parse(name).ok_or_else(|| EventKindError::Unknown(name.clone()))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }
}

/// Why a list of event types is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventKindError {
    /// No type named.
    #[error("name at least one of threshold.reached, quota.blocked")]
    Empty,
    /// A name that is no event type.
    #[error("`{0}` is not an event type; use threshold.reached or quota.blocked")]
    Unknown(String),
}

/// What a consuming transaction did to one (user, key), for its
/// thresholds: usage went from `before` to `after` against `limit` (the
/// limit the decision used), or the request was blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    /// The user.
    pub user_id: String,
    /// The user's plan: its thresholds apply.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The period counted, when the key has one.
    pub period: Option<Period>,
    /// The limit the decision used (`-1` unlimited: no threshold).
    pub limit: i64,
    /// Settled usage before (outstanding lease reservations not counted).
    pub before: i64,
    /// Settled usage after.
    pub after: i64,
    /// The request was blocked: a `quota.blocked` event, no usage change.
    pub blocked: bool,
    /// When, Unix ms.
    pub at_ms: i64,
}

impl Crossing {
    /// Settling `lease`'s units took its user's usage from `before` to
    /// `after`: judged against the limit of the decision that granted it,
    /// by the thresholds of the plan it was granted on.
    pub fn settled(lease: &Lease, before: i64, after: i64, now_ms: i64) -> Crossing {
        Crossing {
            user_id: lease.user_id.clone(),
            plan_id: lease.plan_id.clone(),
            entitlement_key: lease.entitlement_key.clone(),
            period: lease.period,
            limit: lease.limit,
            before,
            after,
            blocked: false,
            at_ms: now_ms,
        }
    }
}

/// An event in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id, the same in every delivery (`webhook-id`).
    pub event_id: String,
    /// What it reports.
    pub kind: EventKind,
    /// The user.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The start of the period it belongs to; `None`: the key has none.
    pub period_start_ms: Option<i64>,
    /// The threshold: a percentage, or `blocked`.
    pub threshold: String,
    /// The JSON body a webhook receives.
    pub payload: String,
    /// When it happened, Unix ms.
    pub created_at_ms: i64,
}

/// A webhook endpoint (its secret is never read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventKind>,
    /// When it was registered, Unix ms.
    pub created_at_ms: i64,
    /// Since when its deliveries have been failing, if they are.
    pub failing_since_ms: Option<i64>,
    /// Failing for a day or more: marked failing.
    pub failing: bool,
}

/// A delivery claimed for sending: what to send, where, and how to sign it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The delivery.
    pub delivery_id: i64,
    /// The event's id (`webhook-id`, the same in every attempt).
    pub event_id: String,
    /// The body to send.
    pub payload: String,
    /// The endpoint's URL.
    pub url: String,
    /// The endpoint's secret (`whsec_…`).
    pub secret: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Until when this claim holds it: the claim's token.
    pub locked_until_ms: i64,
}

impl Claimed {
    /// What names this claim when its attempt is recorded.
    pub fn claim(&self) -> Claim {
        Claim {
            delivery_id: self.delivery_id,
            locked_until_ms: self.locked_until_ms,
        }
    }
}

/// A claim on a delivery: recording its attempt needs the claim to be the
/// delivery's current one (a sender too slow for its claim lost it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The delivery.
    pub delivery_id: i64,
    /// The claim's `locked_until_ms`.
    pub locked_until_ms: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_attempt_at_ms`.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every retry failed.
    Failed,
}

impl DeliveryState {
    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<Self, StoreError> {
        match name {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(StoreError::Database(format!(
                "unknown delivery state `{other}`"
            ))),
        }
    }
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it started, Unix ms.
    pub at_ms: i64,
    /// The HTTP status the endpoint answered, if it answered.
    pub status: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took, ms.
    pub duration_ms: i64,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It was delivered.
    Delivered,
    /// It failed; try again at this instant (Unix ms).
    RetryAt(i64),
    /// It failed and there is no retry left.
    GiveUp,
}

impl Next {
    /// The delivery's state, next attempt and delivery time after an
    /// attempt at `at_ms`, as stored.
    pub(crate) fn columns(self, at_ms: i64) -> (&'static str, i64, Option<i64>) {
        match self {
            Next::Delivered => (DeliveryState::Delivered.as_str(), at_ms, Some(at_ms)),
            Next::RetryAt(at) => (DeliveryState::Pending.as_str(), at, None),
            Next::GiveUp => (DeliveryState::Failed.as_str(), at_ms, None),
        }
    }
}

/// A delivery of one event to one endpoint, with its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery's id.
    pub id: i64,
    /// The endpoint.
    pub webhook_id: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// The next attempt, while pending (Unix ms).
    pub next_attempt_at_ms: i64,
    /// When it was delivered.
    pub delivered_at_ms: Option<i64>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

/// An event type list as stored: a JSON array of names.
pub(crate) fn kinds_column(kinds: &[EventKind]) -> String {
    serde_json::Value::from(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()).to_string()
}

/// The stored event type list read back.
pub(crate) fn read_kinds(column: &str) -> Result<Vec<EventKind>, StoreError> {
    let names: Vec<String> = serde_json::from_str(column)
        .map_err(|e| StoreError::Database(format!("webhook events: {e}")))?;
    names.iter().map(|n| read_kind(n)).collect()
}

/// The `LIKE` pattern that finds endpoints subscribed to `kind`.
pub(crate) fn subscribed(kind: EventKind) -> String {
    format!("%\"{}\"%", kind.as_str())
}

/// An event kind as stored.
pub(crate) fn read_kind(name: &str) -> Result<EventKind, StoreError> {
    EventKind::parse(name)
        .ok_or_else(|| StoreError::Database(format!("unknown event type `{name}`")))
}

/// Thresholds a plan may hold per key.
pub const MAX_THRESHOLDS: usize = 10;

/// The highest threshold percentage (usage may pass the limit with grace
/// or enforcement off).
pub const MAX_PERCENT: i64 = 1000;

/// A plan's thresholds as stored, one (key, percent) row each in key and
/// percent order, grouped by key.
pub(crate) fn group_thresholds(rows: Vec<(String, i64)>) -> Vec<(String, Vec<i64>)> {
    let mut grouped: Vec<(String, Vec<i64>)> = Vec::new();
    for (key, percent) in rows {
        match grouped.last_mut() {
            Some((last, percents)) if *last == key => percents.push(percent),
            _ => grouped.push((key, vec![percent])),
        }
    }
    grouped
}

/// The thresholds of `percents` that `crossing` crossed: previous <
/// threshold ≤ new, judged in integers (`usage × 100 ≥ pct × limit`).
pub(crate) fn crossed(crossing: &Crossing, percents: &[i64]) -> Vec<i64> {
    if crossing.blocked || crossing.limit < 0 {
        return Vec::new();
    }
    let reached = |usage: i64, pct: i64| {
        i128::from(usage) * 100 >= i128::from(pct) * i128::from(crossing.limit)
    };
    percents
        .iter()
        .copied()
        .filter(|&pct| !reached(crossing.before, pct) && reached(crossing.after, pct))
        .collect()
}

/// The events `crossing` gives, with `percents` the plan's thresholds for
/// the key (empty: the key has none, and nothing is written).
pub(crate) fn events(crossing: &Crossing, percents: &[i64]) -> Result<Vec<Event>, StoreError> {
    if percents.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    if crossing.blocked {
        out.push(event(
            crossing,
            EventKind::QuotaBlocked,
            "blocked".to_owned(),
            None,
        )?);
    }
    for pct in crossed(crossing, percents) {
        out.push(event(
            crossing,
            EventKind::ThresholdReached,
            pct.to_string(),
            Some(pct),
        )?);
    }
    Ok(out)
}

fn event(
    c: &Crossing,
    kind: EventKind,
    threshold: String,
    percent: Option<i64>,
) -> Result<Event, StoreError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    let event_id = format!("msg_{}", hex::encode(id));
    let timestamp = OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let period = c
        .period
        .map(|p| json!({"kind": p.kind.as_str(), "start_ms": p.start_ms, "end_ms": p.end_ms}));
    let payload = json!({
        "type": kind.as_str(),
        "timestamp": timestamp,
        "data": {
            "event_id": event_id,
            "user_id": c.user_id,
            "plan_id": c.plan_id,
            "entitlement_key": c.entitlement_key,
            "threshold": percent,
            "usage": c.after,
            "limit": c.limit,
            "period": period,
            "at_ms": c.at_ms,
        }
    });
    Ok(Event {
        event_id,
        kind,
        user_id: c.user_id.clone(),
        entitlement_key: c.entitlement_key.clone(),
        period_start_ms: c.period.map(|p| p.start_ms),
        threshold,
        payload: payload.to_string(),
        created_at_ms: c.at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossing(before: i64, after: i64, limit: i64) -> Crossing {
        Crossing {
            user_id: "ann".into(),
            plan_id: "pro".into(),
            entitlement_key: "api.max".into(),
            period: None,
            limit,
            before,
            after,
            blocked: false,
            at_ms: 0,
        }
    }

    #[test]
    fn a_threshold_is_crossed_when_previous_is_below_and_new_reaches_it() {
        let pcts = [80, 100];
        assert_eq!(crossed(&crossing(7, 8, 10), &pcts), [80]);
        assert_eq!(crossed(&crossing(8, 9, 10), &pcts), Vec::<i64>::new());
        assert_eq!(crossed(&crossing(0, 10, 10), &pcts), [80, 100]);
        assert_eq!(crossed(&crossing(9, 12, 10), &pcts), [100]);
    }

    #[test]
    fn crossing_is_judged_in_integers() {
        // 80% of 3 is 2.4: reached at 3, not at 2.
        assert_eq!(crossed(&crossing(1, 2, 3), &[80]), Vec::<i64>::new());
        assert_eq!(crossed(&crossing(2, 3, 3), &[80]), [80]);
        // No overflow near the top of i64.
        let big = crossing(i64::MAX - 1, i64::MAX, i64::MAX);
        assert_eq!(crossed(&big, &[100]), [100]);
    }

    #[test]
    fn unlimited_and_blocked_cross_no_threshold() {
        assert!(crossed(&crossing(0, 100, -1), &[80]).is_empty());
        let mut blocked = crossing(10, 10, 10);
        blocked.blocked = true;
        let events = events(&blocked, &[80]).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::QuotaBlocked);
        assert_eq!(events[0].threshold, "blocked");
    }

    #[test]
    fn a_key_without_thresholds_gives_no_event() {
        assert!(events(&crossing(0, 10, 10), &[]).unwrap().is_empty());
    }

    #[test]
    fn the_payload_names_the_event_and_its_threshold() {
        let events = events(&crossing(7, 8, 10), &[80]).unwrap();
        let body: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(body["type"], "threshold.reached");
        assert_eq!(body["data"]["threshold"], 80);
        assert_eq!(body["data"]["event_id"], events[0].event_id.as_str());
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00Z");
        assert!(events[0].event_id.starts_with("msg_"));
    }
}

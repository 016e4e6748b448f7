//! Enforce decisions counted per minute, plan, entitlement and status,
//! for the dashboard's overview. Counted in memory on the request path
//! and added to the shared store by [`DecisionStats::flush`] (every few
//! seconds in `quota serve`), so the counts survive a restart and cover
//! every host of a fleet.
//!
//! A key no plan, default or override configures is counted as `other`
//! (as the metrics do), so a client sending made-up keys cannot grow the
//! table. A killed process loses the counts since its last flush; a
//! flush that fails keeps them for the next one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use quota_store::{DecisionCountStore, DecisionMinute, StoreError};

use crate::record::{DecisionRecord, DecisionSink};

/// One minute in ms.
pub const MINUTE_MS: i64 = 60_000;

/// The label of keys nothing configures.
const OTHER_KEY: &str = "other";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Slot {
    minute_ms: i64,
    plan_id: String,
    entitlement_key: String,
    status: &'static str,
}

/// The counts not yet in the store. Give it to
/// [`crate::Engine::with_decision_sink`] and flush it now and then.
#[derive(Debug, Default)]
pub struct DecisionStats {
    pending: Mutex<HashMap<Slot, i64>>,
}

impl DecisionStats {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Slot, i64>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the counts gathered so far to `store`, in one transaction;
    /// how many rows it wrote. When the store refuses, the counts are
    /// kept for the next flush.
    pub fn flush(&self, store: &impl DecisionCountStore) -> Result<usize, StoreError> {
        let taken = std::mem::take(&mut *self.pending());
        if taken.is_empty() {
            return Ok(0);
        }
        let mut rows: Vec<DecisionMinute> = taken
            .iter()
            .map(|(slot, count)| DecisionMinute {
                minute_ms: slot.minute_ms,
                plan_id: slot.plan_id.clone(),
                entitlement_key: slot.entitlement_key.clone(),
                status: slot.status.to_owned(),
                count: *count,
            })
            .collect();
        // In key order, so that hosts adding the same rows at once take
        // their row locks in one order (no deadlock on PostgreSQL).
        rows.sort_unstable_by(|a, b| {
            (a.minute_ms, &a.plan_id, &a.entitlement_key, &a.status).cmp(&(
                b.minute_ms,
                &b.plan_id,
                &b.entitlement_key,
                &b.status,
            ))
        });
        match store.add_decision_minutes(&rows) {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                let mut pending = self.pending();
                for (slot, count) in taken {
                    *pending.entry(slot).or_default() += count;
                }
                Err(e)
            }
        }
    }
}

impl DecisionSink for DecisionStats {
    fn record(&self, record: DecisionRecord) {
        let input = &record.input;
        let configured = input.r#override.is_some()
            || input.default_limit.is_some()
            || input.plan.as_ref().is_some_and(|p| p.limit.is_some());
        let outcome = record.outcome;
        let slot = Slot {
            minute_ms: record.at_ms.div_euclid(MINUTE_MS) * MINUTE_MS,
            plan_id: outcome.plan_id,
            entitlement_key: if configured {
                outcome.entitlement_key
            } else {
                OTHER_KEY.to_owned()
            },
            status: outcome.decision.status.as_str(),
        };
        *self.pending().entry(slot).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::cell::RefCell;

    use quota_policy_core::{Decision, DecisionInput, PlanInfo, Status, UsageKeyInfo};

    use super::*;
    use crate::request::Outcome;

    /// A store that refuses the first `fail` flushes, then keeps rows.
    #[derive(Default)]
    struct Counts {
        fail: RefCell<usize>,
        rows: RefCell<Vec<DecisionMinute>>,
    }

    impl DecisionCountStore for Counts {
        fn add_decision_minutes(&self, counts: &[DecisionMinute]) -> Result<(), StoreError> {
            if *self.fail.borrow() > 0 {
                *self.fail.borrow_mut() -= 1;
                return Err(StoreError::Database("down".into()));
            }
            self.rows.borrow_mut().extend_from_slice(counts);
            Ok(())
        }
        fn decision_minutes(&self, _: i64) -> Result<Vec<DecisionMinute>, StoreError> {
            Ok(self.rows.borrow().clone())
        }
        fn prune_decision_minutes(&self, _: i64) -> Result<usize, StoreError> {
            Ok(0)
        }
    }

    fn decision(at_ms: i64, key: &str, configured: bool, status: Status) -> DecisionRecord {
        let input = DecisionInput {
            user_id: "u".into(),
            plan_id: "free".into(),
            entitlement_key: key.into(),
            requested: 1,
            now_ms: at_ms,
            usage: 0,
            r#override: None,
            plan: configured.then_some(PlanInfo {
                limit: Some(3),
                enforcement_enabled: true,
                grace_count: 0,
                rollout_percent: 100,
            }),
            default_limit: None,
            grace_used: 0,
        };
        let outcome = Outcome {
            user_id: "u".into(),
            plan_id: "free".into(),
            entitlement_key: key.into(),
            usage_key: UsageKeyInfo {
                usage_key: key.into(),
                fallback: false,
            },
            decision: Decision {
                status,
                ..quota_policy_core::decide(&input).unwrap()
            },
            policy_sha256: String::new(),
            failed_open: false,
            reserved: 0,
            period: None,
            has_thresholds: false,
        };
        DecisionRecord {
            at_ms,
            input,
            outcome,
            shadow: None,
        }
    }

    #[test]
    fn decisions_are_counted_per_minute_and_unconfigured_keys_as_other() {
        let stats = DecisionStats::new();
        stats.record(decision(60_000, "drafts.max", true, Status::Allow));
        stats.record(decision(119_999, "drafts.max", true, Status::Allow));
        stats.record(decision(120_000, "drafts.max", true, Status::Block));
        stats.record(decision(61_000, "made.up", false, Status::Allow));
        let store = Counts::default();
        assert_eq!(stats.flush(&store).unwrap(), 3);
        let mut rows = store.decision_minutes(0).unwrap();
        rows.sort_by_key(|r| (r.minute_ms, r.entitlement_key.clone(), r.status.clone()));
        let seen: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.minute_ms,
                    r.entitlement_key.as_str(),
                    r.status.as_str(),
                    r.count,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (60_000, "drafts.max", "allow", 2),
                (60_000, "other", "allow", 1),
                (120_000, "drafts.max", "block", 1),
            ]
        );
        assert_eq!(stats.flush(&store).unwrap(), 0, "nothing twice");
    }

    #[test]
    fn a_refused_flush_keeps_the_counts_for_the_next() {
        let stats = DecisionStats::new();
        stats.record(decision(60_000, "drafts.max", true, Status::Allow));
        let store = Counts {
            fail: RefCell::new(1),
            ..Counts::default()
        };
        assert!(stats.flush(&store).is_err());
        stats.record(decision(60_500, "drafts.max", true, Status::Allow));
        assert_eq!(stats.flush(&store).unwrap(), 1);
        assert_eq!(store.decision_minutes(0).unwrap()[0].count, 2);
    }
}

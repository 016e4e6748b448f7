//! The enforcement engine with the reference component: the report's
//! walk, overrides, plan changes, atomicity, concurrency across threads
//! and processes, and crash safety.
//!
//! A test that takes a [`Backend`] runs on SQLite and on PostgreSQL (the
//! tests' own), as `sqlite::name` and `postgres::name`
//! (`on_both_backends!` at the end of its module). The others are about
//! SQLite itself (its group commit, several processes on one file, a
//! process killed mid-write) or move the engine's clock, which PostgreSQL
//! replaces with the database's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly too"
)]

mod atomicity;
mod concurrency;
mod crash;
mod domain;
mod lifecycle;
mod observability;
mod periods;
mod thresholds;
mod walk;
mod whatif;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use quota_engine::Engine;
#[allow(unused_imports)]
use quota_store::prelude::*;
use quota_store::{AnyStore, PlanChange, UserStore};
pub use quota_tests::Backend;

/// A fixed start time; tests move the clock explicitly.
pub const T0: i64 = 1_700_000_000_000;

/// A settable clock.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn at(ms: i64) -> Self {
        Clock(Arc::new(AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// An engine over a fresh database on `backend` (a file in `dir` for
/// SQLite) with the reference policy.
pub fn engine(backend: Backend, dir: &Path, clock: &Clock) -> Engine<AnyStore> {
    let store = AnyStore::open(&backend.fresh(dir)).unwrap();
    let clock = clock.clone();
    Engine::new(store, quota_tests::reference().clone())
        .with_clock(quota_engine::Clock::from_fn(move || clock.get()))
}

/// Creates `plan` with one `drafts.max` limit and the user on it.
pub fn plan_with_user(
    store: &(impl PlanStore + UserStore),
    plan: &str,
    limit: i64,
    grace: i64,
    enforce: bool,
    user: &str,
) {
    let change = PlanChange {
        limits: vec![("drafts.max".into(), limit)],
        enforcement_enabled: Some(enforce),
        grace_count: Some(grace),
        ..PlanChange::default()
    };
    store.set_plan("test", plan, &change, T0).unwrap();
    store.create_user("test", user, plan, T0).unwrap();
}

/// Rows in `table`.
pub fn count(store: &impl quota_store::testing::CountRows, table: &str) -> i64 {
    quota_store::testing::count_rows(store, table).unwrap()
}

/// The user's usage counter value (0 when absent).
pub fn usage(store: &impl UserStore, user: &str, key: &str) -> i64 {
    store
        .usage(user)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .map_or(0, |(_, v)| v)
}

/// Grace used by the user on a plan for a key (0 when absent).
pub fn grace(store: &impl UserStore, user: &str, plan: &str, key: &str) -> i64 {
    store
        .grace(user)
        .unwrap()
        .into_iter()
        .find(|g| g.plan_id == plan && g.entitlement_key == key)
        .map_or(0, |g| g.used)
}

//! The admitted transaction.
//!
//! The engine opens the write transaction and decides in it; on admission
//! the caller gets an [`Admitted`]: the open transaction and the decision.
//! The caller performs its mutation through [`Admitted::tx`];
//! [`Admitted::commit`] records the usage and the grace the decision
//! consumes and commits; dropping it rolls everything back. A block is
//! [`EnforceError::QuotaExceeded`] before any mutation.
//!
//! Where transactions commit in groups, a transaction may read work that
//! its group has not committed yet. So an answer that does not commit (a
//! block, a refused or failed mutation) is given only once that group has
//! committed; if the group failed, what the transaction read was never
//! true. Inside [`Engine::guarded`] the whole attempt then runs again from
//! the start; outside it the caller gets [`StoreError::Commit`]. The same
//! holds when a shared database was unavailable during the transaction
//! (a lost connection, a serialization failure or deadlock) before its
//! commit was sent: nothing was kept, and a fresh transaction may succeed.
//!
//! The values live inside one blocking call: they own a write transaction
//! and must never be held across an `.await`. The decision is counted,
//! logged, compared with the shadow policy and sent to the decision log
//! after the transaction ends, outside the writer.
//!
//! ```
//! # use quota_engine::{Engine, EnforceError, QuotaRequest};
//! # use quota_host::{Limits, Runtime};
//! # use quota_store::{PlanChange, SqliteStore};
//! # use quota_store::prelude::*;
//! # let dir = tempfile::tempdir()?;
//! # let store = SqliteStore::open(dir.path().join("quota.db"))?;
//! # let plan = PlanChange { limits: vec![("drafts.max".into(), 1)], enforcement_enabled: Some(true), ..PlanChange::default() };
//! # store.set_plan("admin", "free", &plan, 0)?;
//! # store.create_user("admin", "alice", "free", 0)?;
//! # let policy = Runtime::new(Limits::default())?.load(quota_reference_policy::COMPONENT)?;
//! let engine = Engine::new(store, policy);
//! let request = QuotaRequest::new("alice", "drafts.max", 1);
//! let draft = engine.guarded(|guard| {
//!     let mut admitted = guard.admit(&request)?;
//!     let draft = admitted.tx().insert_draft("alice", "First", 0)?;
//!     admitted.commit()?;
//!     Ok::<_, EnforceError>(draft)
//! })?;
//! assert_eq!(draft.title, "First");
//! assert!(matches!(engine.admit(&request), Err(EnforceError::QuotaExceeded(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;

use quota_policy_core::Status;
use quota_store::{Crossing, QuotaStore, QuotaTx, StoreError};

use crate::engine::{ATTEMPTS, Decided, Engine};
use crate::error::{EnforceError, QuotaExceeded};
use crate::metrics::Mode;
use crate::request::{Outcome, QuotaRequest};

/// One attempt of [`Engine::guarded`]: what it admits reports here when the
/// transaction ended with a failure a fresh one may not meet (the group
/// commit it read from failed, or the database was unavailable).
pub struct Guard<'e, S: QuotaStore> {
    engine: &'e Engine<S>,
    retry: Retry,
}

/// Why the attempt should run again, if it should.
type Retry = Cell<Option<StoreError>>;

impl<S: QuotaStore> std::fmt::Debug for Guard<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

impl<'e, S: QuotaStore> Guard<'e, S> {
    /// The engine.
    pub fn engine(&self) -> &'e Engine<S> {
        self.engine
    }

    /// Opens a write transaction, to read what decides the request.
    pub fn begin(&self) -> Result<Pending<'_, S>, EnforceError> {
        Pending::open(self.engine, Some(&self.retry))
    }

    /// Opens a write transaction and decides `request` in it.
    pub fn admit(&self, request: &QuotaRequest) -> Result<Admitted<'_, S>, EnforceError> {
        self.begin()?.admit(request)
    }
}

impl<S: QuotaStore> Engine<S> {
    /// Runs `attempt` (which admits, mutates and commits through the
    /// [`Guard`] it gets) and runs it again, up to [`ATTEMPTS`] times in
    /// all, when it failed having read a group commit that then failed
    /// (its answer was based on work that never became true), or when the
    /// database was unavailable before or at the commit and kept nothing.
    /// So `attempt` may run more than once, each time from a fresh
    /// transaction. When every attempt failed so, the last reason is the
    /// error.
    pub fn guarded<T, E: From<EnforceError>>(
        &self,
        mut attempt: impl FnMut(&Guard<'_, S>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut n = 1;
        loop {
            let guard = Guard {
                engine: self,
                retry: Cell::new(None),
            };
            let result = attempt(&guard);
            match (result, guard.retry.take()) {
                (Err(_), Some(why)) if n < ATTEMPTS => {
                    tracing::warn!(attempt = n, error = %why, "deciding again in a fresh transaction");
                    n += 1;
                }
                (Err(_), Some(StoreError::Commit(_))) => {
                    return Err(EnforceError::Store(StoreError::Commit(
                        "the group commits this request read from kept failing".to_owned(),
                    ))
                    .into());
                }
                (Err(_), Some(why)) => return Err(EnforceError::Store(why).into()),
                (done, _) => return done,
            }
        }
    }

    /// Opens a write transaction, to read what decides a request. Outside
    /// [`Engine::guarded`], an answer read from a failed group commit is
    /// [`StoreError::Commit`].
    pub fn begin(&self) -> Result<Pending<'_, S>, EnforceError> {
        Pending::open(self, None)
    }

    /// Opens a write transaction and decides `request` in it.
    pub fn admit(&self, request: &QuotaRequest) -> Result<Admitted<'_, S>, EnforceError> {
        self.begin()?.admit(request)
    }
}

/// Rolls `tx` back and waits for the group it read from; tells `retry`
/// when that group failed or the database was unavailable. The error, if
/// any, says so.
fn roll_back<T: QuotaTx>(tx: T, retry: Option<&Retry>) -> Result<(), StoreError> {
    let rolled = tx.rollback();
    if let (Err(e), Some(retry)) = (&rolled, retry) {
        retry.set(Some(e.clone()));
    }
    rolled
}

/// An open write transaction before the decision: for reading what decides
/// the request ([`Pending::tx`]), then [`Pending::admit`]. Dropped, it
/// rolls back.
pub struct Pending<'a, S: QuotaStore> {
    engine: &'a Engine<S>,
    tx: Option<S::Tx>,
    retry: Option<&'a Retry>,
}

impl<S: QuotaStore> std::fmt::Debug for Pending<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl<'a, S: QuotaStore> Pending<'a, S> {
    fn open(engine: &'a Engine<S>, retry: Option<&'a Retry>) -> Result<Self, EnforceError> {
        Ok(Pending {
            engine,
            tx: Some(engine.store().begin_write()?),
            retry,
        })
    }

    fn take(&mut self) -> S::Tx {
        match self.tx.take() {
            Some(tx) => tx,
            None => unreachable!("a pending transaction holds its transaction until it ends"),
        }
    }

    /// The open transaction.
    pub fn tx(&mut self) -> &mut S::Tx {
        match &mut self.tx {
            Some(tx) => tx,
            None => unreachable!("a pending transaction holds its transaction until it ends"),
        }
    }

    /// Commits what was done in the transaction (an action that uses no
    /// quota).
    pub fn commit(mut self) -> Result<(), EnforceError> {
        Ok(self.take().commit()?)
    }

    /// Decides `request` in this transaction. Admitted: the transaction
    /// and the decision, for the mutation. Blocked: rolled back, and
    /// [`EnforceError::QuotaExceeded`] once the group it read from has
    /// committed.
    pub fn admit(mut self, request: &QuotaRequest) -> Result<Admitted<'a, S>, EnforceError> {
        let decided = self.engine.decide(self.tx(), request, Mode::Enforce)?;
        self.admitted(request, decided)
    }

    /// Decides the most units, up to `request.requested`, that the policy
    /// admits, in this transaction (for a lease: the units it may hold).
    /// Admitted: the decision names the units in `decision.requested`.
    /// Blocked even for one unit: the transaction stays open, for what
    /// else the caller does in it (commit it before answering). The policy is
    /// asked for the largest amount first and then by binary search; a
    /// failing policy fails closed here whatever the engine's fail mode.
    pub fn admit_most(mut self, request: &QuotaRequest) -> Result<Most<'a, S>, EnforceError> {
        let decided = self.engine.decide_most(self.tx(), request)?;
        if decided.outcome.decision.status == Status::Block {
            let outcome = decided.outcome.clone();
            let now_ms = decided.input.now_ms;
            self.engine.report(decided);
            if outcome.has_thresholds {
                self.tx().record_thresholds(&blocked(&outcome, now_ms))?;
            }
            return Ok(Most::Blocked(self, Box::new(outcome)));
        }
        let mut request = request.clone();
        request.requested = decided.input.requested;
        Ok(Most::Admitted(self.admitted(&request, decided)?))
    }

    fn admitted(
        mut self,
        request: &QuotaRequest,
        decided: Decided,
    ) -> Result<Admitted<'a, S>, EnforceError> {
        if decided.outcome.decision.status == Status::Block {
            let outcome = decided.outcome.clone();
            let ended = self.end_blocked(&outcome, decided.input.now_ms);
            self.engine.report(decided);
            ended?;
            return Err(EnforceError::QuotaExceeded(Box::new(QuotaExceeded {
                outcome,
            })));
        }
        Ok(Admitted {
            engine: self.engine,
            tx: Some(self.take()),
            request: request.clone(),
            decided: Some(decided),
            retry: self.retry,
        })
    }
}

impl<S: QuotaStore> Pending<'_, S> {
    /// Ends the transaction of a blocked request: the `quota.blocked`
    /// event, when the key has thresholds and this period has none yet, is
    /// committed; otherwise nothing was written and it rolls back. Callers
    /// only read in a pending transaction before deciding, so the event is
    /// all a blocked request commits.
    fn end_blocked(&mut self, outcome: &Outcome, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.take();
        if !outcome.has_thresholds {
            return roll_back(tx, self.retry);
        }
        match tx.record_thresholds(&blocked(outcome, now_ms)) {
            Ok(0) => roll_back(tx, self.retry),
            Ok(_) => {
                let committed = tx.commit();
                if let (Err(e), Some(retry)) = (&committed, self.retry) {
                    retry.set(Some(e.clone()));
                }
                committed
            }
            Err(e) => {
                let _ = roll_back(tx, self.retry);
                Err(e)
            }
        }
    }
}

/// What a decision that admitted `outcome` did to its thresholds: settled
/// usage from `before` to `after`.
fn crossing(outcome: &Outcome, before: i64, after: i64, now_ms: i64) -> Crossing {
    Crossing {
        user_id: outcome.user_id.clone(),
        plan_id: outcome.plan_id.clone(),
        entitlement_key: outcome.entitlement_key.clone(),
        period: outcome.period,
        limit: outcome.decision.limit,
        before,
        after,
        blocked: false,
        at_ms: now_ms,
    }
}

/// A blocked request, for its `quota.blocked` event.
fn blocked(outcome: &Outcome, now_ms: i64) -> Crossing {
    let settled = outcome.decision.usage - outcome.reserved;
    Crossing {
        blocked: true,
        ..crossing(outcome, settled, settled, now_ms)
    }
}

impl<S: QuotaStore> Drop for Pending<'_, S> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = roll_back(tx, self.retry);
        }
    }
}

/// What [`Pending::admit_most`] decided.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and matched at once: a box would only add an allocation"
)]
pub enum Most<'a, S: QuotaStore> {
    /// Some units admitted: the decision names them.
    Admitted(Admitted<'a, S>),
    /// Not even one unit: the transaction, still open, and the decision.
    Blocked(Pending<'a, S>, Box<Outcome>),
}

/// An admitted request: the open write transaction it was decided in and
/// the decision. Mutate through [`Admitted::tx`], then
/// [`Admitted::commit`]; dropped, everything rolls back.
pub struct Admitted<'a, S: QuotaStore> {
    engine: &'a Engine<S>,
    tx: Option<S::Tx>,
    request: QuotaRequest,
    decided: Option<Decided>,
    retry: Option<&'a Retry>,
}

impl<S: QuotaStore> std::fmt::Debug for Admitted<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl<S: QuotaStore> Admitted<'_, S> {
    /// The decision that admitted the request.
    pub fn outcome(&self) -> &Outcome {
        match &self.decided {
            Some(decided) => &decided.outcome,
            None => unreachable!("an admitted request keeps its decision until it ends"),
        }
    }

    /// The open transaction, for the mutation the decision guards.
    pub fn tx(&mut self) -> &mut S::Tx {
        match &mut self.tx {
            Some(tx) => tx,
            None => unreachable!("an admitted request holds its transaction until it ends"),
        }
    }

    /// What the policy was asked: the state as read (reserved units
    /// included in `usage`) and the units requested.
    pub fn input(&self) -> &quota_policy_core::DecisionInput {
        match &self.decided {
            Some(decided) => &decided.input,
            None => unreachable!("an admitted request keeps its decision until it ends"),
        }
    }

    /// Commits without recording usage or grace: the caller holds the
    /// admitted units as a reservation (a lease) written in this
    /// transaction, which counts as used until it is settled. Returns the
    /// decision once it is durable.
    pub fn commit_reserved(mut self) -> Result<Outcome, EnforceError> {
        let outcome = self.outcome().clone();
        match self.tx.take() {
            Some(tx) => tx.commit()?,
            None => unreachable!("an admitted request holds its transaction until it ends"),
        }
        Ok(outcome)
    }

    /// Records the usage (`requested` on the usage counter, and on its
    /// period's when the key has one) and the grace the decision consumes,
    /// and commits with the mutation; returns the
    /// decision once it is durable.
    pub fn commit(mut self) -> Result<Outcome, EnforceError> {
        let outcome = self.outcome().clone();
        let request = self.request.clone();
        // The time the decision was made at, by the clock it used.
        let now_ms = match &self.decided {
            Some(decided) => decided.input.now_ms,
            None => unreachable!("an admitted request keeps its decision until it ends"),
        };
        let period = outcome.period.map(|p| p.start_ms);
        let usage_key = &outcome.usage_key.usage_key;
        let tx = self.tx();
        if outcome.has_thresholds {
            let after = tx.add_usage(&request.user_id, usage_key, period, request.requested)?;
            // Thresholds are crossed by settled usage: reservations left out.
            let before = after - request.requested;
            tx.record_thresholds(&crossing(&outcome, before, after, now_ms))?;
        } else {
            // Nothing here needs the new value: it may go with the commit.
            tx.record_usage(&request.user_id, usage_key, period, request.requested)?;
        }
        if outcome.decision.grace_to_consume > 0 {
            tx.add_grace(
                &request.user_id,
                &outcome.plan_id,
                &request.entitlement_key,
                period,
                outcome.decision.grace_to_consume,
                now_ms,
            )?;
        }
        let committed = match self.tx.take() {
            Some(tx) => tx.commit(),
            None => unreachable!("an admitted request holds its transaction until it ends"),
        };
        // Refused at the commit with nothing kept (what went with it met an
        // unavailable database): a fresh transaction may succeed.
        if let (Err(e @ StoreError::Unavailable(_)), Some(retry)) = (&committed, self.retry) {
            retry.set(Some(e.clone()));
        }
        committed?;
        Ok(outcome)
    }
}

impl<S: QuotaStore> Drop for Admitted<'_, S> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = roll_back(tx, self.retry);
        }
        if let Some(decided) = self.decided.take() {
            self.engine.report(decided);
        }
    }
}

//! The storage contract, written once against the traits: what every
//! backend must do, whatever it stores in. A backend runs the whole suite
//! by adding one line at the bottom of this file:
//! `backend_suite!(name, || a fresh, empty store)`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod admin;
mod dashboard;
mod guarded;
mod policy;
mod web;

use quota_store::prelude::*;

/// Everything a backend implements.
pub trait Backend:
    QuotaStore<Tx: DomainTx + IdempotencyTx>
    + PlanStore
    + UserStore
    + OverrideStore
    + AuditStore
    + SessionStore
    + DecisionCountStore
    + PolicyStore
    + DecisionLogStore
    + IdempotencyStore
{
}

impl<S> Backend for S where
    S: QuotaStore<Tx: DomainTx + IdempotencyTx>
        + PlanStore
        + UserStore
        + OverrideStore
        + AuditStore
        + SessionStore
        + DecisionCountStore
        + PolicyStore
        + DecisionLogStore
        + IdempotencyStore
{
}

/// One `#[test]` per suite test, each on a new store from `$fresh`.
macro_rules! tests {
    ($fresh:expr; $($module:ident::$test:ident),* $(,)?) => {$(
        #[test]
        fn $test() {
            let (_keep, store) = ($fresh)();
            crate::$module::$test(&store);
        }
    )*};
}

/// Runs every test of the suite on the stores `$fresh` makes (a new, empty
/// store per test; anything it must keep alive comes along in the tuple).
macro_rules! backend_suite {
    ($name:ident, $fresh:expr) => {
        mod $name {
            tests!(
                $fresh;
                admin::bad_admin_values_are_refused_and_write_nothing,
                admin::plan_changes_touch_only_the_fields_given_and_are_audited,
                dashboard::a_session_is_found_until_it_expires,
                dashboard::creating_a_session_deletes_the_expired_ones,
                dashboard::sessions_are_deleted_one_or_by_admin_token,
                dashboard::decision_minutes_add_up_list_and_prune,
                dashboard::a_user_search_matches_the_prefix_literally,
                dashboard::every_plan_is_counted_with_its_users,
                guarded::a_write_is_seen_by_nobody_else_until_it_commits,
                guarded::a_rolled_back_write_leaves_nothing,
                guarded::a_counter_overflow_is_invalid_and_keeps_nothing,
                guarded::recorded_usage_is_read_back_and_committed,
                guarded::recorded_usage_refused_at_the_commit_keeps_nothing,
                guarded::a_second_writer_waits_and_sees_the_first,
                guarded::the_domain_keeps_its_rules,
                policy::the_active_and_shadow_versions_are_kept_however_old,
                policy::a_release_rises_only_from_the_version_it_was_read_at,
                policy::the_previous_active_version_is_never_pruned,
                policy::only_a_verified_signature_replaces_a_stored_one,
                policy::the_decision_log_filters_and_prunes,
                policy::a_replay_reads_every_decision_of_its_plan_across_pages,
                web::an_idempotent_response_is_stored_once,
                web::a_token_names_its_user,
            );
        }
    };
}

backend_suite!(sqlite, || {
    let dir = tempfile::tempdir().unwrap();
    let store = quota_store::SqliteStore::open(dir.path().join("quota.db")).unwrap();
    (dir, store)
});

backend_suite!(postgres, || {
    let url: quota_store::PgUrl = quota_throwaway_pg::shared()
        .fresh_database()
        .parse()
        .unwrap();
    ((), quota_store::PgStore::open(&url).unwrap())
});

/// A PostgreSQL that cannot be reached is named with its reason (the
/// driver's own text is only "db error" or "error connecting to server").
#[test]
fn postgres_says_why_it_cannot_connect() {
    let cluster = quota_throwaway_pg::shared();
    let url = cluster.fresh_database();
    let missing = format!("{}-missing", url);
    let options = quota_store::PgOptions {
        connect_timeout: std::time::Duration::from_millis(500),
        ..quota_store::PgOptions::default()
    };
    let Err(error) = quota_store::PgStore::open_with(&missing.parse().unwrap(), options) else {
        panic!("opened a database that does not exist");
    };
    let text = error.to_string();
    assert!(text.contains("does not exist"), "{text}");
    let closed = "postgres://quota@127.0.0.1:1/quota".parse().unwrap();
    let Err(error) = quota_store::PgStore::open_with(&closed, options) else {
        panic!("opened a database nobody serves");
    };
    let text = error.to_string();
    assert!(text.contains("refused"), "{text}");
}

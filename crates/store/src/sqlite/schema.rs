//! The schema: versioned SQL migrations, applied at open.

use rusqlite_migration::{M, Migrations};

const STEPS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/sqlite/01-quota-state.sql")),
    M::up(include_str!("../../migrations/sqlite/02-audit-log.sql")),
    M::up(include_str!("../../migrations/sqlite/03-domain.sql")),
    M::up(include_str!(
        "../../migrations/sqlite/04-tokens-idempotency.sql"
    )),
    M::up(include_str!(
        "../../migrations/sqlite/05-policy-lifecycle.sql"
    )),
    M::up(include_str!("../../migrations/sqlite/06-leases.sql")),
    M::up(include_str!("../../migrations/sqlite/07-periods.sql")),
    M::up(include_str!("../../migrations/sqlite/08-thresholds.sql")),
    M::up(include_str!("../../migrations/sqlite/09-webhooks.sql")),
    M::up(include_str!(
        "../../migrations/sqlite/10-signed-policies.sql"
    )),
    M::up(include_str!(
        "../../migrations/sqlite/11-decision-periods.sql"
    )),
    M::up(include_str!("../../migrations/sqlite/12-dashboard.sql")),
];

/// Every migration, in order. The database's `user_version` records how
/// many have run; opening applies the rest, and opening a current database
/// changes nothing.
pub const MIGRATIONS: Migrations<'static> = Migrations::from_slice(STEPS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }
}

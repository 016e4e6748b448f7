//! Node credentials and leases on PostgreSQL. Locks are taken in one
//! order everywhere: the node's row, then the user's, then the lease's, so
//! grants, settles, expiry and node deletion cannot deadlock each other.
//! Every change of a user's usage or grace holds the user's row lock, as
//! the guarded transaction does.

use serde_json::json;
use tokio_postgres::Row;

use super::audit::audit;
use super::{Conn, LOCK_USER_SQL, PgStore, PgTx, add_grace, add_usage, record_thresholds};
use crate::error::StoreError;
use crate::events::Crossing;
use crate::leases::{self, Revoke, check_node, lease_columns};
use crate::model::{Lease, LeaseEnd, NewLease, Node};
use crate::traits::{LeaseStore, LeaseTx};

fn read_lease(row: &Row) -> Lease {
    let last_spent: Option<i64> = row.get(11);
    let last_more: Option<i64> = row.get(12);
    let last_response: Option<String> = row.get(13);
    let ended_at: Option<i64> = row.get(17);
    let reason: Option<String> = row.get(18);
    let period_kind: Option<String> = row.get(19);
    Lease {
        id: row.get(0),
        node_id: row.get(1),
        user_id: row.get(2),
        entitlement_key: row.get(3),
        usage_key: row.get(4),
        plan_id: row.get(5),
        reserved: row.get(6),
        reserved_grace: row.get(7),
        granted_total: row.get(8),
        spent_total: row.get(9),
        seq: row.get(10),
        last_settle: leases::last_settle(last_spent, last_more, last_response),
        created_at_ms: row.get(14),
        expires_at_ms: row.get(15),
        revoked_at_ms: row.get(16),
        period: leases::period(period_kind.as_deref(), row.get(20), row.get(21)),
        limit: row.get(22),
        ended: leases::ended(ended_at, reason.as_deref()),
    }
}

fn read_node(row: &Row) -> Node {
    Node {
        id: row.get(0),
        max_outstanding: row.get(1),
        created_at_ms: row.get(2),
    }
}

/// The node, its row locked until the transaction ends.
fn lock_node(conn: &mut Conn, node_id: &str) -> Result<Option<Node>, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT id, max_outstanding, created_at_ms FROM nodes WHERE id = $1 FOR UPDATE",
            &[&node_id],
        )?
        .as_ref()
        .map(read_node))
}

fn update_lease(conn: &mut Conn, lease: &Lease) -> Result<(), StoreError> {
    let c = leases::columns(lease);
    conn.execute(
        "UPDATE leases SET usage_key = $2, plan_id = $3, reserved = $4, reserved_grace = $5,
             granted_total = $6, spent_total = $7, seq = $8, last_spent = $9, last_more = $10,
             last_response = $11, expires_at_ms = $12, revoked_at_ms = $13, ended_at_ms = $14,
             end_reason = $15, period_kind = $16, period_start_ms = $17, period_end_ms = $18,
             decided_limit = $19
         WHERE id = $1",
        &[
            &lease.id,
            &lease.usage_key,
            &lease.plan_id,
            &lease.reserved,
            &lease.reserved_grace,
            &lease.granted_total,
            &lease.spent_total,
            &lease.seq,
            &c.last_spent,
            &c.last_more,
            &c.last_response,
            &lease.expires_at_ms,
            &lease.revoked_at_ms,
            &c.ended_at_ms,
            &c.end_reason,
            &lease.period.map(|p| p.kind.as_str()),
            &lease.period.map(|p| p.start_ms),
            &lease.period.map(|p| p.end_ms),
            &lease.limit,
        ],
    )?;
    Ok(())
}

/// Ends an open lease as fully spent; the caller holds the user's lock.
fn end_as_spent(
    conn: &mut Conn,
    mut lease: Lease,
    why: LeaseEnd,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (usage, grace) = leases::end_as_spent(&mut lease, why, now_ms);
    if usage > 0 {
        let period = lease.period.map(|p| p.start_ms);
        let after = add_usage(conn, &lease.user_id, &lease.usage_key, period, usage)?;
        record_thresholds(
            conn,
            &Crossing::settled(&lease, after - usage, after, now_ms),
        )?;
    }
    if grace > 0 {
        let (key, period) = (&lease.entitlement_key, lease.period.map(|p| p.start_ms));
        add_grace(
            conn,
            &lease.user_id,
            &lease.plan_id,
            key,
            period,
            grace,
            now_ms,
        )?;
    }
    update_lease(conn, &lease)
}

/// The open lease `id` with its user's row and its own locked (in that
/// order), or `None` when it has ended meanwhile.
fn lock_open_lease(conn: &mut Conn, user_id: &str, id: i64) -> Result<Option<Lease>, StoreError> {
    conn.query_opt(LOCK_USER_SQL, &[&user_id])?;
    Ok(conn
        .query_opt(
            concat!(
                "SELECT ",
                lease_columns!(),
                " FROM leases WHERE id = $1 AND ended_at_ms IS NULL FOR UPDATE"
            ),
            &[&id],
        )?
        .as_ref()
        .map(read_lease))
}

/// Marks the open leases an admin change touches as revoked at `now_ms`.
pub(crate) fn revoke(conn: &mut Conn, scope: Revoke<'_>, now_ms: i64) -> Result<(), StoreError> {
    match scope {
        Revoke::User(user) => conn.execute(
            "UPDATE leases SET revoked_at_ms = $1 WHERE ended_at_ms IS NULL AND user_id = $2",
            &[&now_ms, &user],
        )?,
        Revoke::UserKey(user, key) => conn.execute(
            "UPDATE leases SET revoked_at_ms = $1
             WHERE ended_at_ms IS NULL AND user_id = $2 AND entitlement_key = $3",
            &[&now_ms, &user, &key],
        )?,
        Revoke::Plan(plan) => conn.execute(
            "UPDATE leases SET revoked_at_ms = $1
             WHERE ended_at_ms IS NULL AND user_id IN (SELECT id FROM users WHERE plan_id = $2)",
            &[&now_ms, &plan],
        )?,
        Revoke::Key(key) => conn.execute(
            "UPDATE leases SET revoked_at_ms = $1 WHERE ended_at_ms IS NULL AND entitlement_key = $2",
            &[&now_ms, &key],
        )?,
    };
    Ok(())
}

impl LeaseTx for PgTx {
    fn lock_node(&mut self, node_id: &str) -> Result<Node, StoreError> {
        self.run(|conn| lock_node(conn, node_id))?
            .ok_or_else(|| StoreError::UnknownNode(node_id.to_owned()))
    }

    fn node_outstanding(
        &mut self,
        node_id: &str,
        now_ms: i64,
        except: Option<i64>,
    ) -> Result<i64, StoreError> {
        let row = self.run(|conn| {
            conn.query_one(
                "SELECT COALESCE(SUM(reserved), 0)::bigint FROM leases
                 WHERE node_id = $1 AND ended_at_ms IS NULL AND expires_at_ms > $2
                   AND ($3::bigint IS NULL OR id <> $3)",
                &[&node_id, &now_ms, &except],
            )
        })?;
        Ok(row.get(0))
    }

    fn insert_lease(&mut self, new: &NewLease) -> Result<Lease, StoreError> {
        let row = self.run(|conn| {
            conn.query_one(
                "INSERT INTO leases (node_id, user_id, entitlement_key, usage_key, plan_id, reserved,
                     reserved_grace, granted_total, spent_total, seq, created_at_ms, expires_at_ms,
                     period_kind, period_start_ms, period_end_ms, decided_limit)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $6, 0, 0, $8, $9, $10, $11, $12, $13)
                 RETURNING id",
                &[
                    &new.node_id,
                    &new.user_id,
                    &new.entitlement_key,
                    &new.usage_key,
                    &new.plan_id,
                    &new.reserved,
                    &new.reserved_grace,
                    &new.now_ms,
                    &new.expires_at_ms,
                    &new.period.map(|p| p.kind.as_str()),
                    &new.period.map(|p| p.start_ms),
                    &new.period.map(|p| p.end_ms),
                    &new.limit,
                ],
            )
        })?;
        Ok(Lease::new(row.get(0), new))
    }

    fn lease(&mut self, node_id: &str, lease_id: i64) -> Result<Lease, StoreError> {
        let found = self.run(|conn| {
            let Some(owner) = conn.query_opt(
                "SELECT user_id FROM leases WHERE id = $1 AND node_id = $2",
                &[&lease_id, &node_id],
            )?
            else {
                return Ok(None);
            };
            let user_id: String = owner.get(0);
            conn.query_opt(LOCK_USER_SQL, &[&user_id])?;
            conn.query_opt(
                concat!(
                    "SELECT ",
                    lease_columns!(),
                    " FROM leases WHERE id = $1 FOR UPDATE"
                ),
                &[&lease_id],
            )
        })?;
        found
            .as_ref()
            .map(read_lease)
            .ok_or(StoreError::UnknownLease(lease_id))
    }

    fn update_lease(&mut self, lease: &Lease) -> Result<(), StoreError> {
        self.run(|conn| update_lease(conn, lease))
    }

    fn store_now_ms(&mut self) -> Result<Option<i64>, StoreError> {
        let row = self.run(|conn| {
            conn.query_one(
                "SELECT (floor(extract(epoch FROM statement_timestamp()) * 1000))::bigint",
                &[],
            )
        })?;
        Ok(Some(row.get(0)))
    }
}

impl LeaseStore for PgStore {
    fn create_node(
        &self,
        actor: &str,
        node_id: &str,
        max_outstanding: i64,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<Node, StoreError> {
        check_node(node_id, max_outstanding)?;
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO nodes (id, token_sha256, max_outstanding, created_at_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                &[&node_id, &token_sha256, &max_outstanding, &now_ms],
            )?;
            if inserted == 0 {
                return Err(StoreError::NodeExists(node_id.to_owned()));
            }
            audit(
                tx,
                actor,
                "node.create",
                &format!("node:{node_id}"),
                None,
                Some(json!({ "id": node_id, "max_outstanding": max_outstanding })),
                now_ms,
            )?;
            Ok(Node {
                id: node_id.to_owned(),
                max_outstanding,
                created_at_ms: now_ms,
            })
        })
    }

    fn delete_node(
        &self,
        actor: &str,
        node_id: &str,
        now_ms: i64,
    ) -> Result<(Node, usize), StoreError> {
        self.write(|tx| {
            let gone = lock_node(tx, node_id)?
                .ok_or_else(|| StoreError::UnknownNode(node_id.to_owned()))?;
            let open = tx.query(
                "SELECT id, user_id FROM leases WHERE node_id = $1 AND ended_at_ms IS NULL
                 ORDER BY user_id, id",
                &[&node_id],
            )?;
            let mut ended = 0;
            for row in open {
                if let Some(lease) = lock_open_lease(tx, row.get(1), row.get(0))? {
                    end_as_spent(tx, lease, LeaseEnd::NodeDeleted, now_ms)?;
                    ended += 1;
                }
            }
            tx.execute("DELETE FROM nodes WHERE id = $1", &[&node_id])?;
            audit(
                tx,
                actor,
                "node.delete",
                &format!("node:{node_id}"),
                Some(json!({ "id": node_id, "max_outstanding": gone.max_outstanding })),
                Some(json!({ "leases_ended_as_spent": ended })),
                now_ms,
            )?;
            Ok((gone.clone(), ended))
        })
    }

    fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query(
                    "SELECT id, max_outstanding, created_at_ms FROM nodes ORDER BY id",
                    &[],
                )?
                .iter()
                .map(read_node)
                .collect())
        })
    }

    fn node_for_token(&self, token_sha256: &str) -> Result<Option<Node>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT id, max_outstanding, created_at_ms FROM nodes WHERE token_sha256 = $1",
                    &[&token_sha256],
                )?
                .as_ref()
                .map(read_node))
        })
    }

    fn open_leases(
        &self,
        user_id: Option<&str>,
        node_id: Option<&str>,
    ) -> Result<Vec<Lease>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query(
                    concat!(
                        "SELECT ",
                        lease_columns!(),
                        " FROM leases WHERE ended_at_ms IS NULL
                           AND ($1::text IS NULL OR user_id = $1)
                           AND ($2::text IS NULL OR node_id = $2) ORDER BY id"
                    ),
                    &[&user_id, &node_id],
                )?
                .iter()
                .map(read_lease)
                .collect())
        })
    }

    /// Judged by the database's clock; `now_ms` is not used.
    fn expire_leases(&self, _now_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let now_ms: i64 = tx
                .query_one(
                    "SELECT (floor(extract(epoch FROM statement_timestamp()) * 1000))::bigint",
                    &[],
                )?
                .get(0);
            let expired = tx.query(
                "SELECT id, user_id FROM leases WHERE ended_at_ms IS NULL AND expires_at_ms <= $1
                 ORDER BY user_id, id LIMIT 1000",
                &[&now_ms],
            )?;
            let mut ended = 0;
            for row in expired {
                // Renewed meanwhile: no longer expired.
                if let Some(lease) = lock_open_lease(tx, row.get(1), row.get(0))?
                    && lease.expires_at_ms <= now_ms
                {
                    end_as_spent(tx, lease, LeaseEnd::Expired, now_ms)?;
                    ended += 1;
                }
            }
            Ok(ended)
        })
    }
}

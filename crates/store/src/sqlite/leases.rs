//! Node credentials and leases on SQLite. The guarded transaction holds
//! the one write lock, so what a grant or a settle reads stays true until
//! it commits.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::audit::audit;
use super::{SqliteStore, SqliteTx, add_grace, add_usage, record_thresholds};
use crate::error::StoreError;
use crate::events::Crossing;
use crate::leases::{self, Revoke, check_node, lease_columns};
use crate::model::{Lease, LeaseEnd, NewLease, Node};
use crate::traits::{LeaseStore, LeaseTx};

fn read_lease(row: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    let last_spent: Option<i64> = row.get(11)?;
    let last_more: Option<i64> = row.get(12)?;
    let last_response: Option<String> = row.get(13)?;
    let ended_at: Option<i64> = row.get(17)?;
    let reason: Option<String> = row.get(18)?;
    let period_kind: Option<String> = row.get(19)?;
    Ok(Lease {
        id: row.get(0)?,
        node_id: row.get(1)?,
        user_id: row.get(2)?,
        entitlement_key: row.get(3)?,
        usage_key: row.get(4)?,
        plan_id: row.get(5)?,
        reserved: row.get(6)?,
        reserved_grace: row.get(7)?,
        granted_total: row.get(8)?,
        spent_total: row.get(9)?,
        seq: row.get(10)?,
        last_settle: leases::last_settle(last_spent, last_more, last_response),
        created_at_ms: row.get(14)?,
        expires_at_ms: row.get(15)?,
        revoked_at_ms: row.get(16)?,
        period: leases::period(period_kind.as_deref(), row.get(20)?, row.get(21)?),
        limit: row.get(22)?,
        ended: leases::ended(ended_at, reason.as_deref()),
    })
}

fn read_node(row: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        id: row.get(0)?,
        max_outstanding: row.get(1)?,
        created_at_ms: row.get(2)?,
    })
}

fn node(conn: &Connection, node_id: &str) -> Result<Option<Node>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, max_outstanding, created_at_ms FROM nodes WHERE id = ?1")?
        .query_row([node_id], read_node)
        .optional()?)
}

/// Writes back the fields of a lease a settle or an expiry changes.
fn update_lease(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let c = leases::columns(lease);
    conn.prepare_cached(
        "UPDATE leases SET usage_key = ?2, plan_id = ?3, reserved = ?4, reserved_grace = ?5,
             granted_total = ?6, spent_total = ?7, seq = ?8, last_spent = ?9, last_more = ?10,
             last_response = ?11, expires_at_ms = ?12, revoked_at_ms = ?13, ended_at_ms = ?14,
             end_reason = ?15, period_kind = ?16, period_start_ms = ?17, period_end_ms = ?18,
             decided_limit = ?19
         WHERE id = ?1",
    )?
    .execute(params![
        lease.id,
        lease.usage_key,
        lease.plan_id,
        lease.reserved,
        lease.reserved_grace,
        lease.granted_total,
        lease.spent_total,
        lease.seq,
        c.last_spent,
        c.last_more,
        c.last_response,
        lease.expires_at_ms,
        lease.revoked_at_ms,
        c.ended_at_ms,
        c.end_reason,
        lease.period.map(|p| p.kind.as_str()),
        lease.period.map(|p| p.start_ms),
        lease.period.map(|p| p.end_ms),
        lease.limit,
    ])?;
    Ok(())
}

/// Ends an open lease as fully spent: its units become usage, its grace
/// units grace on the plan it was granted on.
fn end_as_spent(
    conn: &Connection,
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

fn open_leases_where(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Lease>, StoreError> {
    let sql = format!(
        "SELECT {} FROM leases WHERE ended_at_ms IS NULL AND {filter} ORDER BY id",
        lease_columns!()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt
        .query_map(args, read_lease)?
        .collect::<Result<_, _>>()?)
}

/// Marks the open leases an admin change touches as revoked at `now_ms`.
pub(crate) fn revoke(conn: &Connection, scope: Revoke<'_>, now_ms: i64) -> Result<(), StoreError> {
    const OPEN: &str = "UPDATE leases SET revoked_at_ms = ?1 WHERE ended_at_ms IS NULL AND ";
    match scope {
        Revoke::User(user) => conn
            .prepare_cached(&format!("{OPEN} user_id = ?2"))?
            .execute(params![now_ms, user])?,
        Revoke::UserKey(user, key) => conn
            .prepare_cached(&format!("{OPEN} user_id = ?2 AND entitlement_key = ?3"))?
            .execute(params![now_ms, user, key])?,
        Revoke::Plan(plan) => conn
            .prepare_cached(&format!(
                "{OPEN} user_id IN (SELECT id FROM users WHERE plan_id = ?2)"
            ))?
            .execute(params![now_ms, plan])?,
        Revoke::Key(key) => conn
            .prepare_cached(&format!("{OPEN} entitlement_key = ?2"))?
            .execute(params![now_ms, key])?,
    };
    Ok(())
}

impl LeaseTx for SqliteTx {
    fn lock_node(&mut self, node_id: &str) -> Result<Node, StoreError> {
        node(self.conn(), node_id)?.ok_or_else(|| StoreError::UnknownNode(node_id.to_owned()))
    }

    fn node_outstanding(
        &mut self,
        node_id: &str,
        now_ms: i64,
        except: Option<i64>,
    ) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COALESCE(SUM(reserved), 0) FROM leases
                 WHERE node_id = ?1 AND ended_at_ms IS NULL AND expires_at_ms > ?2
                   AND (?3 IS NULL OR id <> ?3)",
            )?
            .query_row(params![node_id, now_ms, except], |row| row.get(0))?)
    }

    fn insert_lease(&mut self, new: &NewLease) -> Result<Lease, StoreError> {
        let id: i64 = self
            .conn()
            .prepare_cached(
                "INSERT INTO leases (node_id, user_id, entitlement_key, usage_key, plan_id, reserved,
                     reserved_grace, granted_total, spent_total, seq, created_at_ms, expires_at_ms,
                     period_kind, period_start_ms, period_end_ms, decided_limit)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, 0, 0, ?8, ?9, ?10, ?11, ?12, ?13)
                 RETURNING id",
            )?
            .query_row(
                params![
                    new.node_id,
                    new.user_id,
                    new.entitlement_key,
                    new.usage_key,
                    new.plan_id,
                    new.reserved,
                    new.reserved_grace,
                    new.now_ms,
                    new.expires_at_ms,
                    new.period.map(|p| p.kind.as_str()),
                    new.period.map(|p| p.start_ms),
                    new.period.map(|p| p.end_ms),
                    new.limit,
                ],
                |row| row.get(0),
            )?;
        Ok(Lease::new(id, new))
    }

    fn lease(&mut self, node_id: &str, lease_id: i64) -> Result<Lease, StoreError> {
        self.conn()
            .prepare_cached(concat!(
                "SELECT ",
                lease_columns!(),
                " FROM leases WHERE id = ?1 AND node_id = ?2"
            ))?
            .query_row(params![lease_id, node_id], read_lease)
            .optional()?
            .ok_or(StoreError::UnknownLease(lease_id))
    }

    fn update_lease(&mut self, lease: &Lease) -> Result<(), StoreError> {
        update_lease(self.conn(), lease)
    }

    fn store_now_ms(&mut self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
}

impl LeaseStore for SqliteStore {
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
            if node(tx, node_id)?.is_some() {
                return Err(StoreError::NodeExists(node_id.to_owned()));
            }
            tx.prepare_cached(
                "INSERT INTO nodes (id, token_sha256, max_outstanding, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![node_id, token_sha256, max_outstanding, now_ms])?;
            let created = Node {
                id: node_id.to_owned(),
                max_outstanding,
                created_at_ms: now_ms,
            };
            audit(
                tx,
                actor,
                "node.create",
                &format!("node:{node_id}"),
                None,
                Some(json!({ "id": node_id, "max_outstanding": max_outstanding })),
                now_ms,
            )?;
            Ok(created)
        })
    }

    fn delete_node(
        &self,
        actor: &str,
        node_id: &str,
        now_ms: i64,
    ) -> Result<(Node, usize), StoreError> {
        self.write(|tx| {
            let gone =
                node(tx, node_id)?.ok_or_else(|| StoreError::UnknownNode(node_id.to_owned()))?;
            let open = open_leases_where(tx, "node_id = ?1", [node_id])?;
            let ended = open.len();
            for lease in open {
                end_as_spent(tx, lease, LeaseEnd::NodeDeleted, now_ms)?;
            }
            tx.prepare_cached("DELETE FROM nodes WHERE id = ?1")?
                .execute([node_id])?;
            audit(
                tx,
                actor,
                "node.delete",
                &format!("node:{node_id}"),
                Some(json!({ "id": node_id, "max_outstanding": gone.max_outstanding })),
                Some(json!({ "leases_ended_as_spent": ended })),
                now_ms,
            )?;
            Ok((gone, ended))
        })
    }

    fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, max_outstanding, created_at_ms FROM nodes ORDER BY id",
            )?;
            Ok(stmt.query_map([], read_node)?.collect::<Result<_, _>>()?)
        })
    }

    fn node_for_token(&self, token_sha256: &str) -> Result<Option<Node>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, max_outstanding, created_at_ms FROM nodes WHERE token_sha256 = ?1",
                )?
                .query_row([token_sha256], read_node)
                .optional()?)
        })
    }

    fn open_leases(
        &self,
        user_id: Option<&str>,
        node_id: Option<&str>,
    ) -> Result<Vec<Lease>, StoreError> {
        self.read(|conn| {
            open_leases_where(
                conn,
                "(?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR node_id = ?2)",
                params![user_id, node_id],
            )
        })
    }

    fn expire_leases(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let expired = open_leases_where(
                tx,
                // At most 1000 per sweep: the writer is not held long.
                "id IN (SELECT id FROM leases WHERE ended_at_ms IS NULL AND expires_at_ms <= ?1
                        ORDER BY id LIMIT 1000)",
                [now_ms],
            )?;
            let ended = expired.len();
            for lease in expired {
                end_as_spent(tx, lease, LeaseEnd::Expired, now_ms)?;
            }
            Ok(ended)
        })
    }
}

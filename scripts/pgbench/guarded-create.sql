-- The transaction one guarded create (POST /v1/drafts) runs on PostgreSQL,
-- statement for statement (crates/store/src/postgres: LOCK_PERIOD_SQL,
-- QUOTA_STATE_SQL, the draft insert, ADD_USAGE_SQL), with the same
-- parameters (`:none`, 0, stands for the period start $4, NULL: no period),
-- one statement per round trip. quota sends the same statements
-- in three round trips (scripts/bench-pg.sh makes that variant of this
-- script, `pgbench-pipelined`, with pgbench's \startpipeline). Run with -M prepared
-- (quota's driver prepares each statement once per connection) and
-- -D lo=… -D hi=… (user ids drawn from lo..hi), -D ent=drafts.max
-- -D ukey=drafts.created -D title=bench -D now=<ms>.
\set uid random(:lo, :hi)
\set one 1
\set none 0
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT pp.period, pp.since_ms, u.plan_started_at_ms,
       (floor(extract(epoch FROM statement_timestamp()) * 1000))::bigint
FROM users u
LEFT JOIN plan_periods pp ON pp.plan_id = u.plan_id AND pp.entitlement_key = :ent
WHERE u.id = :uid FOR NO KEY UPDATE OF u;
SELECT u.plan_id, p.enforcement_enabled, p.grace_count, p.rollout_percent,
       (SELECT limit_value FROM plan_entitlements WHERE plan_id = u.plan_id AND entitlement_key = :ent),
       o.value, o.expires_at_ms,
       (SELECT limit_value FROM entitlement_defaults WHERE entitlement_key = :ent),
       CASE WHEN NULLIF(:none, 0)::bigint IS NULL
            THEN COALESCE((SELECT value FROM usage_counters WHERE user_id = u.id AND usage_key = :ukey), 0)
            ELSE COALESCE((SELECT value FROM period_usage
                           WHERE user_id = u.id AND usage_key = :ukey AND period_start_ms = NULLIF(:none, 0)), 0)
       END,
       CASE WHEN NULLIF(:none, 0)::bigint IS NULL
            THEN COALESCE((SELECT used FROM grace_usage
                           WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = :ent), 0)
            ELSE COALESCE((SELECT used FROM period_grace
                           WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = :ent
                             AND period_start_ms = NULLIF(:none, 0)), 0)
       END,
       (floor(extract(epoch FROM statement_timestamp()) * 1000))::bigint,
       COALESCE((SELECT SUM(reserved) FROM leases
                 WHERE user_id = u.id AND usage_key = :ukey AND ended_at_ms IS NULL
                   AND period_start_ms IS NOT DISTINCT FROM NULLIF(:none, 0)), 0)::bigint,
       COALESCE((SELECT SUM(reserved_grace) FROM leases
                 WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = :ent
                   AND ended_at_ms IS NULL AND period_start_ms IS NOT DISTINCT FROM NULLIF(:none, 0)), 0)::bigint,
       EXISTS (SELECT 1 FROM plan_thresholds WHERE plan_id = u.plan_id AND entitlement_key = :ent)
FROM users u
JOIN plans p ON p.id = u.plan_id
LEFT JOIN overrides o ON o.user_id = u.id AND o.entitlement_key = :ent
WHERE u.id = :uid;
INSERT INTO drafts (owner_id, title, created_at_ms) VALUES (:uid, :title, :now) RETURNING id;
INSERT INTO usage_counters (user_id, usage_key, value) VALUES (:uid, :ukey, :one)
     ON CONFLICT (user_id, usage_key) DO UPDATE SET value = usage_counters.value + excluded.value
     RETURNING value;
COMMIT;

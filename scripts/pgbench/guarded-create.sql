-- The transaction one guarded create (POST /v1/drafts) runs on PostgreSQL,
-- statement for statement (crates/store/src/postgres: LOCK_USER_SQL,
-- QUOTA_STATE_SQL, the draft insert, the usage upsert), with the same
-- parameters. Run with -M prepared (quota's driver prepares each statement
-- once per connection) and -D lo=… -D hi=… (user ids drawn from lo..hi),
-- -D ent=drafts.max -D ukey=drafts.created -D title=bench -D now=<ms>.
\set uid random(:lo, :hi)
\set one 1
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT 1 FROM users WHERE id = :uid FOR NO KEY UPDATE;
SELECT u.plan_id, p.enforcement_enabled, p.grace_count, p.rollout_percent,
       (SELECT limit_value FROM plan_entitlements WHERE plan_id = u.plan_id AND entitlement_key = :ent),
       o.value, o.expires_at_ms,
       (SELECT limit_value FROM entitlement_defaults WHERE entitlement_key = :ent),
       COALESCE((SELECT value FROM usage_counters WHERE user_id = u.id AND usage_key = :ukey), 0),
       COALESCE((SELECT used FROM grace_usage
                 WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = :ent), 0),
       (floor(extract(epoch FROM statement_timestamp()) * 1000))::bigint
FROM users u
JOIN plans p ON p.id = u.plan_id
LEFT JOIN overrides o ON o.user_id = u.id AND o.entitlement_key = :ent
WHERE u.id = :uid;
INSERT INTO drafts (owner_id, title, created_at_ms) VALUES (:uid, :title, :now) RETURNING id;
INSERT INTO usage_counters (user_id, usage_key, value) VALUES (:uid, :ukey, :one)
ON CONFLICT (user_id, usage_key) DO UPDATE SET value = usage_counters.value + excluded.value
RETURNING value;
COMMIT;

-- The other shape as one statement on its own (autocommit): the conditional
-- UPDATE … RETURNING of update-returning.sql and the draft insert in one
-- round trip. Same variables as guarded-create.sql.
\set uid random(:lo, :hi)
WITH admitted AS (
    UPDATE usage_counters c SET value = c.value + 1
    FROM users u
    JOIN plans p ON p.id = u.plan_id
    LEFT JOIN plan_entitlements e ON e.plan_id = u.plan_id AND e.entitlement_key = :ent
    WHERE c.user_id = :uid AND c.usage_key = :ukey AND u.id = c.user_id
      AND (NOT p.enforcement_enabled OR e.limit_value IS NULL OR e.limit_value = -1 OR c.value < e.limit_value)
    RETURNING c.user_id
)
INSERT INTO drafts (owner_id, title, created_at_ms)
SELECT user_id, :title, :now FROM admitted
RETURNING id;

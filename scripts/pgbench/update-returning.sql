-- The other shape: no lock-then-read; one conditional UPDATE … RETURNING
-- admits (the counter below the plan's limit, or no limit) and counts,
-- then the draft insert, in one transaction. It needs the counter row to
-- exist and leaves out overrides, grace and defaults, so it is a lower
-- bound on what this shape would cost. Same variables as guarded-create.sql.
\set uid random(:lo, :hi)
BEGIN ISOLATION LEVEL READ COMMITTED;
UPDATE usage_counters c SET value = c.value + 1
FROM users u
JOIN plans p ON p.id = u.plan_id
LEFT JOIN plan_entitlements e ON e.plan_id = u.plan_id AND e.entitlement_key = :ent
WHERE c.user_id = :uid AND c.usage_key = :ukey AND u.id = c.user_id
  AND (NOT p.enforcement_enabled OR e.limit_value IS NULL OR e.limit_value = -1 OR c.value < e.limit_value)
RETURNING c.value;
INSERT INTO drafts (owner_id, title, created_at_ms) VALUES (:uid, :title, :now) RETURNING id;
COMMIT;

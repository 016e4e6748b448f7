-- What-if replays of a plan change read one plan's logged decisions in
-- order, carrying usage and grace forward within each usage period: the
-- period each decision counted in, and an index by plan.
ALTER TABLE decision_log ADD COLUMN period_start_ms BIGINT;
CREATE INDEX decision_log_by_plan ON decision_log (plan_id, id);

-- Every admin change: who, what, on what, before and after (JSON).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
) STRICT;
CREATE INDEX audit_log_by_subject ON audit_log (subject, id);

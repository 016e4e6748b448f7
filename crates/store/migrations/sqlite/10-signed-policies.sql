-- Signed policy components: the detached signature that came with each
-- stored version (checked again at rollback and at start), and the highest
-- version activated per signed policy name, so that an older signed
-- component cannot be uploaded again.
ALTER TABLE policy_versions ADD COLUMN signature TEXT;

CREATE TABLE policy_releases (
    name     TEXT PRIMARY KEY,
    version  TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    at_ms    INTEGER NOT NULL
) STRICT;

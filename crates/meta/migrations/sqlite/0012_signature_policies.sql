-- Signature policies: one per scope, a namespace (`org`) or a repository (`org/repo`); a
-- repository's replaces its namespace's. `formats` and `signers` are comma-separated
-- (`dct,cosign,notation`; `user:NAME`, `team:ORG/TEAM`, `key:ID`), checked by `core`.
CREATE TABLE signature_policies (
    scope      TEXT    NOT NULL PRIMARY KEY,
    mode       TEXT    NOT NULL CHECK (mode IN ('off', 'audit', 'enforce')),
    formats    TEXT    NOT NULL,
    all_of     INTEGER NOT NULL,
    signers    TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Bumped by every change a policy decision depends on (a policy, the signed targets), in
-- the same transaction: replicas compare it to drop their cached decisions.
CREATE TABLE policy_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
) STRICT;
INSERT INTO policy_revision (id, revision) VALUES (1, 0);

-- A repository deleted takes its signed targets along (their foreign key): the decisions
-- cached about it are stale.
CREATE TRIGGER policy_repository_gone AFTER DELETE ON repositories BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;

-- As sqlite/0012_signature_policies.sql (which says what each table is for), in PostgreSQL's dialect.
CREATE TABLE signature_policies (
    scope      TEXT    NOT NULL PRIMARY KEY,
    mode       TEXT    NOT NULL CHECK (mode IN ('off', 'audit', 'enforce')),
    formats    TEXT    NOT NULL,
    all_of     BIGINT  NOT NULL,
    signers    TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE policy_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO policy_revision (id, revision) VALUES (1, 0);

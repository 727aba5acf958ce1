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

CREATE FUNCTION policy_repository_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER policy_repository_gone AFTER DELETE ON repositories
    FOR EACH STATEMENT EXECUTE FUNCTION policy_repository_gone();

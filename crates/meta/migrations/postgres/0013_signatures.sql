-- As sqlite/0013_signatures.sql (which says what each table is for), in PostgreSQL's dialect.
CREATE TABLE registered_keys (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL CHECK (kind IN ('public-key', 'certificate')),
    name       TEXT   NOT NULL,
    pem        TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX registered_keys_by_account ON registered_keys (account_id);

CREATE TABLE registered_keys_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO registered_keys_revision (id, revision) VALUES (1, 0);

CREATE TABLE signature_facts (
    repo_id       BIGINT NOT NULL,
    signature     TEXT COLLATE "C" NOT NULL,
    layer         BIGINT NOT NULL,
    key_id        TEXT COLLATE "C" NOT NULL,
    subject       TEXT COLLATE "C" NOT NULL,
    format        TEXT   NOT NULL CHECK (format IN ('cosign', 'notation')),
    via_tag       TEXT COLLATE "C" NOT NULL,
    valid         BIGINT NOT NULL,
    reason        TEXT   NOT NULL,
    expires_at    BIGINT NOT NULL,
    keys_revision BIGINT NOT NULL,
    PRIMARY KEY (repo_id, signature, via_tag, layer, key_id),
    FOREIGN KEY (repo_id, signature) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX signature_facts_by_subject ON signature_facts (repo_id, subject);
CREATE INDEX signature_facts_by_keys_revision ON signature_facts (keys_revision);

CREATE FUNCTION registered_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registered_keys_revision SET revision = revision + 1 WHERE id = 1;
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER policy_keys_changed AFTER INSERT OR DELETE ON registered_keys
    FOR EACH STATEMENT EXECUTE FUNCTION registered_keys_changed();

-- policy_repository_gone() (0012) moves the policy revision on.
CREATE TRIGGER policy_facts_changed AFTER INSERT OR DELETE ON signature_facts
    FOR EACH STATEMENT EXECUTE FUNCTION policy_repository_gone();
CREATE TRIGGER policy_teams_changed AFTER INSERT OR DELETE ON team_members
    FOR EACH STATEMENT EXECUTE FUNCTION policy_repository_gone();

-- As sqlite/0011_trust_targets.sql (which says what each table is for), in PostgreSQL's dialect.
CREATE TABLE trust_signers (
    repo       TEXT    NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    key_id     TEXT    NOT NULL,
    account_id BIGINT  NOT NULL,
    PRIMARY KEY (repo, key_id)
);

CREATE TABLE trust_targets (
    repo       TEXT    NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    tag        TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    role       TEXT    NOT NULL,
    key_ids    TEXT    NOT NULL,
    PRIMARY KEY (repo, tag, digest, role)
);
CREATE INDEX trust_targets_by_digest ON trust_targets (repo, digest);

CREATE FUNCTION gc_signed_target_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_candidate('manifest', r.id, OLD.digest) FROM repositories r
        WHERE r.name = OLD.repo;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_signed_target_gone AFTER DELETE ON trust_targets
    FOR EACH ROW EXECUTE FUNCTION gc_signed_target_gone();

CREATE FUNCTION gc_signed_tag_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', OLD.repo_id, s.digest
        FROM trust_targets s JOIN repositories r ON r.name = s.repo
        WHERE r.id = OLD.repo_id AND s.tag = OLD.name
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_signed_tag_gone AFTER DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION gc_signed_tag_gone();

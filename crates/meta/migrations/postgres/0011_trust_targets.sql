-- The signed targets of each repository's current trust data: tag -> manifest digest, from
-- the targets role and its delegations, replaced with every trust update that changes them.
-- GC keeps a manifest that a signed target names while the repository has the tag, so a
-- trusted pull of the tag (which asks for the signed digest) finds it even after the tag
-- was pushed over without trust.
-- Deleting the repository deletes them (the foreign key).
CREATE TABLE trust_targets (
    repo   TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, tag, digest)
);
CREATE INDEX trust_targets_by_digest ON trust_targets (repo, digest);

-- A target no longer signed: the manifest it kept may be garbage now.
CREATE FUNCTION gc_signed_target_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_candidate('manifest', r.id, OLD.digest) FROM repositories r
        WHERE r.name = OLD.repo;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_signed_target_gone AFTER DELETE ON trust_targets
    FOR EACH ROW EXECUTE FUNCTION gc_signed_target_gone();

-- A tag gone: the manifests its signed targets kept may be garbage now.
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

-- Garbage collection (issue 4), PostgreSQL dialect. Mirrors ../sqlite/0003_gc.sql, whose
-- comments explain the columns and tables.
ALTER TABLE blobs ADD COLUMN claimed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN live SMALLINT NOT NULL DEFAULT 1 CHECK (live IN (0, 1));
ALTER TABLE blobs ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN deleting BIGINT;
UPDATE blobs SET claimed_at = created_at;
ALTER TABLE repo_blobs ADD COLUMN claimed_at BIGINT NOT NULL DEFAULT 0;
UPDATE repo_blobs SET claimed_at = created_at;
ALTER TABLE manifests ADD COLUMN claimed_at BIGINT NOT NULL DEFAULT 0;
UPDATE manifests SET claimed_at = created_at;

CREATE TABLE gc_candidates (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('manifest', 'link', 'blob')),
    repo_id  BIGINT NOT NULL,
    digest   TEXT COLLATE "C" NOT NULL,
    UNIQUE (kind, repo_id, digest)
);

INSERT INTO gc_candidates (kind, repo_id, digest)
    SELECT 'manifest', repo_id, digest FROM manifests ON CONFLICT DO NOTHING;
INSERT INTO gc_candidates (kind, repo_id, digest)
    SELECT 'link', repo_id, digest FROM repo_blobs ON CONFLICT DO NOTHING;
INSERT INTO gc_candidates (kind, repo_id, digest)
    SELECT 'blob', 0, digest FROM blobs ON CONFLICT DO NOTHING;

CREATE FUNCTION gc_candidate(k TEXT, r BIGINT, d TEXT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_candidates (kind, repo_id, digest) VALUES (k, r, d) ON CONFLICT DO NOTHING
$$;

CREATE FUNCTION gc_blob_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_candidate('blob', 0, NEW.digest);
    RETURN NULL;
END $$;
CREATE TRIGGER gc_blob_new AFTER INSERT ON blobs FOR EACH ROW EXECUTE FUNCTION gc_blob_new();

CREATE FUNCTION gc_link_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_candidate('link', NEW.repo_id, NEW.digest);
    RETURN NULL;
END $$;
CREATE TRIGGER gc_link_new AFTER INSERT ON repo_blobs FOR EACH ROW EXECUTE FUNCTION gc_link_new();

CREATE FUNCTION gc_link_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_candidate('blob', 0, OLD.digest);
    RETURN NULL;
END $$;
CREATE TRIGGER gc_link_gone AFTER DELETE ON repo_blobs FOR EACH ROW EXECUTE FUNCTION gc_link_gone();

CREATE FUNCTION gc_manifest_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_candidate('manifest', NEW.repo_id, NEW.digest);
    RETURN NULL;
END $$;
CREATE TRIGGER gc_manifest_new AFTER INSERT ON manifests FOR EACH ROW EXECUTE FUNCTION gc_manifest_new();

CREATE FUNCTION gc_manifest_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', repo_id, digest FROM manifests
        WHERE repo_id = OLD.repo_id AND subject = OLD.digest
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_manifest_gone AFTER DELETE ON manifests FOR EACH ROW EXECUTE FUNCTION gc_manifest_gone();

CREATE FUNCTION gc_ref_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_candidate(CASE OLD.kind WHEN 'blob' THEN 'link' ELSE 'manifest' END,
                         OLD.repo_id, OLD.referenced);
    IF OLD.kind = 'blob' THEN
        PERFORM gc_candidate('blob', 0, OLD.referenced);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_ref_gone AFTER DELETE ON manifest_refs FOR EACH ROW EXECUTE FUNCTION gc_ref_gone();

CREATE FUNCTION gc_untagged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.manifest = NEW.manifest THEN
        RETURN NULL;
    END IF;
    PERFORM gc_candidate('manifest', OLD.repo_id, OLD.manifest);
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', repo_id, subject FROM manifests
        WHERE repo_id = OLD.repo_id AND digest = OLD.manifest AND subject IS NOT NULL
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_tag_gone AFTER DELETE OR UPDATE OF manifest ON tags
    FOR EACH ROW EXECUTE FUNCTION gc_untagged();

CREATE TABLE gc_lease (
    name        TEXT NOT NULL PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE gc_settings (
    id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    schedule        TEXT,
    read_only_since BIGINT,
    read_only_by    TEXT
);
INSERT INTO gc_settings (id) VALUES (1);

CREATE TABLE gc_runs (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    holder            TEXT NOT NULL,
    started_by        TEXT NOT NULL,
    mode              TEXT NOT NULL,
    dry_run           BOOLEAN NOT NULL,
    status            TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    finished_at       BIGINT,
    manifests_deleted BIGINT NOT NULL DEFAULT 0,
    links_deleted     BIGINT NOT NULL DEFAULT 0,
    blobs_deleted     BIGINT NOT NULL DEFAULT 0,
    blob_bytes        BIGINT NOT NULL DEFAULT 0,
    uploads_purged    BIGINT NOT NULL DEFAULT 0,
    orphans_deleted   BIGINT NOT NULL DEFAULT 0,
    orphan_bytes      BIGINT NOT NULL DEFAULT 0,
    errors            TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX gc_runs_by_start ON gc_runs (started_at);

CREATE TABLE gc_orphans (
    digest     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    first_seen BIGINT NOT NULL
);

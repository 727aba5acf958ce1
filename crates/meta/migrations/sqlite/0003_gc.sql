-- Garbage collection (issue 4), SQLite dialect. Mirrors ../postgres/0003_gc.sql.
--
-- Claims: `blobs.claimed_at` is the last time an upload declared it was about to commit
-- these bytes (or linked them); `generation` identifies one life of the row, so that an
-- upload whose row was collected and re-created meanwhile notices. `live = 0` is a claim
-- whose bytes may not be committed yet. `deleting` (unix ms) is a tombstone: GC decided
-- the blob is garbage and deletes its bytes; the row goes only after the bytes, and a
-- tombstone is never lifted.
ALTER TABLE blobs ADD COLUMN claimed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN live INTEGER NOT NULL DEFAULT 1 CHECK (live IN (0, 1));
ALTER TABLE blobs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN deleting INTEGER;
UPDATE blobs SET claimed_at = created_at;
-- A link is claimed by its creation and by a HEAD that found it (a client about to rely
-- on it in a manifest).
ALTER TABLE repo_blobs ADD COLUMN claimed_at INTEGER NOT NULL DEFAULT 0;
UPDATE repo_blobs SET claimed_at = created_at;
-- A manifest is claimed by its creation and by every re-put.
ALTER TABLE manifests ADD COLUMN claimed_at INTEGER NOT NULL DEFAULT 0;
UPDATE manifests SET claimed_at = created_at;

-- What may have become garbage: filled by the triggers below in the transaction that
-- removed a reference (or created something nothing references yet), emptied by GC.
-- A run examines these rows only, so its cost follows the churn, not the registry's size.
-- kind 'manifest' and 'link' are per repository; 'blob' has repo_id 0.
CREATE TABLE gc_candidates (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT    NOT NULL CHECK (kind IN ('manifest', 'link', 'blob')),
    repo_id  INTEGER NOT NULL,
    digest   TEXT    NOT NULL,
    UNIQUE (kind, repo_id, digest)
) STRICT;

-- Everything that exists when GC arrives is examined once.
INSERT OR IGNORE INTO gc_candidates (kind, repo_id, digest)
    SELECT 'manifest', repo_id, digest FROM manifests;
INSERT OR IGNORE INTO gc_candidates (kind, repo_id, digest)
    SELECT 'link', repo_id, digest FROM repo_blobs;
INSERT OR IGNORE INTO gc_candidates (kind, repo_id, digest)
    SELECT 'blob', 0, digest FROM blobs;

-- `ON CONFLICT DO NOTHING` rather than `INSERT OR IGNORE`: inside a trigger an OR clause
-- gives way to the outer statement's conflict policy (an upsert's is ABORT).
CREATE TRIGGER gc_blob_new AFTER INSERT ON blobs BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest) VALUES ('blob', 0, NEW.digest)
        ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_link_new AFTER INSERT ON repo_blobs BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        VALUES ('link', NEW.repo_id, NEW.digest)
        ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_link_gone AFTER DELETE ON repo_blobs BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest) VALUES ('blob', 0, OLD.digest)
        ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_manifest_new AFTER INSERT ON manifests BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        VALUES ('manifest', NEW.repo_id, NEW.digest)
        ON CONFLICT DO NOTHING;
END;
-- Referrers of a deleted manifest may follow it.
CREATE TRIGGER gc_manifest_gone AFTER DELETE ON manifests BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', repo_id, digest FROM manifests
        WHERE repo_id = OLD.repo_id AND subject = OLD.digest
        ON CONFLICT DO NOTHING;
END;
-- A blob reference gone: the link, and the blob itself (it may have been unlinked while
-- referenced).
CREATE TRIGGER gc_ref_gone AFTER DELETE ON manifest_refs BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        VALUES (CASE OLD.kind WHEN 'blob' THEN 'link' ELSE 'manifest' END,
                OLD.repo_id, OLD.referenced)
        ON CONFLICT DO NOTHING;
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'blob', 0, OLD.referenced WHERE OLD.kind = 'blob'
        ON CONFLICT DO NOTHING;
END;
-- An untagged manifest, and the subject a tagged referrer was keeping.
CREATE TRIGGER gc_tag_gone AFTER DELETE ON tags BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        VALUES ('manifest', OLD.repo_id, OLD.manifest)
        ON CONFLICT DO NOTHING;
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', repo_id, subject FROM manifests
        WHERE repo_id = OLD.repo_id AND digest = OLD.manifest AND subject IS NOT NULL
        ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_tag_moved AFTER UPDATE OF manifest ON tags
    WHEN OLD.manifest <> NEW.manifest BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        VALUES ('manifest', OLD.repo_id, OLD.manifest)
        ON CONFLICT DO NOTHING;
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', repo_id, subject FROM manifests
        WHERE repo_id = OLD.repo_id AND digest = OLD.manifest AND subject IS NOT NULL
        ON CONFLICT DO NOTHING;
END;

-- Which process runs GC: one row, taken when free or expired, renewed while running.
CREATE TABLE gc_lease (
    name        TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

-- Settings every replica reads: the schedule set through the API (overrides the
-- configuration file) and the read-only flag of a running read-only GC.
CREATE TABLE gc_settings (
    id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    schedule        TEXT,
    read_only_since INTEGER,
    read_only_by    TEXT
) STRICT;
INSERT INTO gc_settings (id) VALUES (1);

-- One row per run.
CREATE TABLE gc_runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    holder            TEXT    NOT NULL,
    started_by        TEXT    NOT NULL,
    mode              TEXT    NOT NULL,
    dry_run           INTEGER NOT NULL,
    status            TEXT    NOT NULL,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    manifests_deleted INTEGER NOT NULL DEFAULT 0,
    links_deleted     INTEGER NOT NULL DEFAULT 0,
    blobs_deleted     INTEGER NOT NULL DEFAULT 0,
    blob_bytes        INTEGER NOT NULL DEFAULT 0,
    uploads_purged    INTEGER NOT NULL DEFAULT 0,
    orphans_deleted   INTEGER NOT NULL DEFAULT 0,
    orphan_bytes      INTEGER NOT NULL DEFAULT 0,
    errors            TEXT    NOT NULL DEFAULT '[]'
) STRICT;
CREATE INDEX gc_runs_by_start ON gc_runs (started_at);

-- Blob files metadata does not know, as first seen by `berth gc --verify-storage`:
-- removed by a later verification once older than the grace period.
CREATE TABLE gc_orphans (
    digest     TEXT    NOT NULL PRIMARY KEY,
    first_seen INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

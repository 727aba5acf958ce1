-- Berth metadata, PostgreSQL dialect. Mirrors ../sqlite/0001_initial.sql table for table.
-- Timestamps are unix milliseconds. Names and digests use COLLATE "C" so that ordering and
-- `>` comparisons are byte-wise, whatever the database's locale: the catalog and tag lists
-- must page identically on SQLite and PostgreSQL.

-- A repository exists from its first linked blob, upload or manifest.
CREATE TABLE repositories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- A row means blob storage holds the blob. Rows outlive their links: garbage collection
-- removes a row (and then the bytes) once nothing links or references it.
CREATE TABLE blobs (
    digest      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    size        BIGINT NOT NULL CHECK (size >= 0),
    created_at  BIGINT NOT NULL
);

-- Which blobs a repository may serve and reference. The foreign key to blobs has no
-- cascade: a blob that is still linked cannot be forgotten.
CREATE TABLE repo_blobs (
    repo_id     BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest      TEXT COLLATE "C" NOT NULL REFERENCES blobs (digest),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
-- "Does any repository link this blob?" (mounts, garbage collection, blob row deletion).
CREATE INDEX repo_blobs_by_digest ON repo_blobs (digest);

-- Manifests with their bytes exactly as received.
CREATE TABLE manifests (
    repo_id       BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT,
    subject       TEXT COLLATE "C",
    annotations   TEXT,
    size          BIGINT NOT NULL CHECK (size >= 0),
    bytes         BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
-- The referrers API: manifests of a repository whose subject is a digest, by digest.
CREATE INDEX manifests_by_subject ON manifests (repo_id, subject, digest) WHERE subject IS NOT NULL;

-- What each manifest references: its blobs (config, layers) and child manifests (index).
-- Deleting a manifest deletes its references.
CREATE TABLE manifest_refs (
    repo_id     BIGINT NOT NULL,
    manifest    TEXT COLLATE "C" NOT NULL,
    referenced  TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo_id, manifest, kind, referenced),
    FOREIGN KEY (repo_id, manifest) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
);
-- Garbage collection: "is this blob (or manifest) referenced by any manifest, in any or
-- in one repository".
CREATE INDEX manifest_refs_by_referenced ON manifest_refs (referenced, kind, repo_id);

-- A tag always points at a manifest of its repository: deleting the manifest deletes it.
CREATE TABLE tags (
    repo_id     BIGINT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    manifest    TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, manifest) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_by_manifest ON tags (repo_id, manifest);

-- Upload sessions: enough to continue an upload on any replica after a restart.
CREATE TABLE uploads (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    repo_id     BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    "offset"    BIGINT NOT NULL CHECK ("offset" >= 0),
    hash_state  BYTEA NOT NULL,
    store_state TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX uploads_by_repo ON uploads (repo_id);
-- Expiry of abandoned sessions.
CREATE INDEX uploads_by_updated_at ON uploads (updated_at);

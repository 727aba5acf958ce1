-- Docker Content Trust (Notary) data of a repository, by repository name (the GUN's
-- host part maps to this registry, so it is not stored). Every version of every role file
-- is kept, its bytes as received or as the server signed them: clients fetch by version
-- and by checksum as well as the current one.
CREATE TABLE trust_files (
    repo       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT    NOT NULL,
    data       BYTEA    NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo, role, version)
);
CREATE INDEX trust_files_by_checksum ON trust_files (repo, role, sha256);

-- The server's private keys (snapshot and timestamp roles), sealed with the key-encryption
-- key, which is never in the database. Every key made is kept: the root names the one in use.
CREATE TABLE trust_keys (
    repo       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    public     BYTEA    NOT NULL,
    sealed     BYTEA    NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo, key_id)
);

-- Notary's changefeed: a row per stored timestamp version ('update') and per deletion.
CREATE TABLE trust_changes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo       TEXT    NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX trust_changes_by_repo ON trust_changes (repo, id);

-- Docker Content Trust (Notary) data of a repository, by repository name (the GUN's
-- host part maps to this registry, so it is not stored). Every version of every role file
-- is kept, its bytes as received or as the server signed them: clients fetch by version
-- and by checksum as well as the current one.
CREATE TABLE trust_files (
    repo       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repo, role, version)
) STRICT;
CREATE INDEX trust_files_by_checksum ON trust_files (repo, role, sha256);

-- The server's private keys (snapshot and timestamp roles), sealed with the key-encryption
-- key, which is never in the database. Every key made is kept: the root names the one in use.
CREATE TABLE trust_keys (
    repo       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    public     BLOB    NOT NULL,
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repo, key_id)
) STRICT;

-- Notary's changefeed: a row per stored timestamp version ('update') and per deletion.
CREATE TABLE trust_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    repo       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX trust_changes_by_repo ON trust_changes (repo, id);

-- Deleting a repository deletes its trust data (files and keys), in the same transaction,
-- and records the deletion in the changefeed when there was a timestamp.
CREATE TRIGGER repositories_delete_trust AFTER DELETE ON repositories BEGIN
    INSERT INTO trust_changes (repo, version, sha256, category, created_at)
        SELECT OLD.name, version, sha256, 'deletion',
               CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
        FROM trust_files WHERE repo = OLD.name AND role = 'timestamp'
        ORDER BY version DESC LIMIT 1;
    DELETE FROM trust_files WHERE repo = OLD.name;
    DELETE FROM trust_keys WHERE repo = OLD.name;
END;

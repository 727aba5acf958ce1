-- Identity and access, SQLite dialect. Mirrors ../postgres/0002_identity.sql.
-- Timestamps are unix milliseconds; booleans are 0 / 1.

-- Users and organisations share one namespace of names: a repository's first path
-- component is the name of one of them. One table, so uniqueness across both kinds is a
-- plain UNIQUE constraint. Columns of the other kind keep their defaults.
CREATE TABLE accounts (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE CHECK (name = lower(name)),
    kind               TEXT    NOT NULL CHECK (kind IN ('user', 'org')),
    full_name          TEXT    NOT NULL DEFAULT '',
    -- Users.
    email              TEXT,
    password           TEXT,   -- argon2id PHC string; NULL for directory users
    origin             TEXT    NOT NULL DEFAULT 'local' CHECK (origin IN ('local', 'directory')),
    directory_dn       TEXT,
    active             INTEGER NOT NULL DEFAULT 1,
    system_admin       INTEGER NOT NULL DEFAULT 0,
    service_account    INTEGER NOT NULL DEFAULT 0,
    -- Namespace settings (organisations; users keep the defaults).
    members_can_create INTEGER NOT NULL DEFAULT 0,
    default_visibility TEXT    NOT NULL DEFAULT 'private' CHECK (default_visibility IN ('public', 'private')),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE org_members (
    org_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    is_owner    INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX org_members_by_user ON org_members (user_id);

CREATE TABLE teams (
    id              INTEGER PRIMARY KEY,
    org_id          INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    directory_group TEXT,   -- DN or name of the directory group mapped to this team
    created_at      INTEGER NOT NULL,
    UNIQUE (org_id, name)
) STRICT;

CREATE TABLE team_members (
    team_id     INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX team_members_by_user ON team_members (user_id);

-- Repository settings. Existing repositories become private.
ALTER TABLE repositories ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'
    CHECK (visibility IN ('public', 'private'));
ALTER TABLE repositories ADD COLUMN created_by INTEGER REFERENCES accounts (id) ON DELETE SET NULL;

-- A team's role on one repository (of its organisation) ...
CREATE TABLE repo_grants (
    team_id     INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    repo_id     INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    role        TEXT    NOT NULL CHECK (role IN ('read-only', 'read-write', 'admin')),
    PRIMARY KEY (team_id, repo_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX repo_grants_by_repo ON repo_grants (repo_id);

-- ... or on its organisation's whole namespace (at most one role per team).
CREATE TABLE namespace_grants (
    team_id     INTEGER NOT NULL PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    role        TEXT    NOT NULL CHECK (role IN ('read-only', 'read-write', 'admin'))
) STRICT;

-- Access tokens and refresh (offline) tokens: the id is public, only a hash is kept.
CREATE TABLE tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('access', 'refresh')),
    user_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    description  TEXT    NOT NULL,
    hash         TEXT    NOT NULL,  -- SHA-256 of the whole token, lowercase hex
    expires_at   INTEGER,
    restriction  TEXT,              -- JSON of berth_auth::rbac::Restriction
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX tokens_by_user ON tokens (user_id, kind);

-- The token service's ES256 keys, shared by replicas; retired keys stay to verify tokens
-- issued before the rotation until they expire.
CREATE TABLE signing_keys (
    kid          TEXT    NOT NULL PRIMARY KEY,
    pem          TEXT    NOT NULL,  -- PKCS#8 PEM of the private key
    created_at   INTEGER NOT NULL,
    retired      INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Append-only audit log. The actor is not a foreign key: entries outlive accounts.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_id    INTEGER,
    source      TEXT,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    detail      TEXT    NOT NULL    -- JSON
) STRICT;
CREATE INDEX audit_by_actor ON audit_log (actor_id, id);
CREATE INDEX audit_by_action ON audit_log (action, id);
CREATE INDEX audit_by_at ON audit_log (at);

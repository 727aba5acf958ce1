-- Identity and access, PostgreSQL dialect. Mirrors ../sqlite/0002_identity.sql.
-- Timestamps are unix milliseconds. Names use COLLATE "C" (byte order, as in SQLite).

-- Users and organisations share one namespace of names: a repository's first path
-- component is the name of one of them. One table, so uniqueness across both kinds is a
-- plain UNIQUE constraint. Columns of the other kind keep their defaults.
CREATE TABLE accounts (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               TEXT COLLATE "C" NOT NULL UNIQUE CHECK (name = lower(name)),
    kind               TEXT NOT NULL CHECK (kind IN ('user', 'org')),
    full_name          TEXT NOT NULL DEFAULT '',
    -- Users.
    email              TEXT,
    password           TEXT,   -- argon2id PHC string; NULL for directory users
    origin             TEXT NOT NULL DEFAULT 'local' CHECK (origin IN ('local', 'directory')),
    directory_dn       TEXT,
    active             BOOLEAN NOT NULL DEFAULT TRUE,
    system_admin       BOOLEAN NOT NULL DEFAULT FALSE,
    service_account    BOOLEAN NOT NULL DEFAULT FALSE,
    -- Namespace settings (organisations; users keep the defaults).
    members_can_create BOOLEAN NOT NULL DEFAULT FALSE,
    default_visibility TEXT NOT NULL DEFAULT 'private' CHECK (default_visibility IN ('public', 'private')),
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE org_members (
    org_id      BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    is_owner    BOOLEAN NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_by_user ON org_members (user_id);

CREATE TABLE teams (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            TEXT COLLATE "C" NOT NULL,
    directory_group TEXT,   -- DN or name of the directory group mapped to this team
    created_at      BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id     BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_by_user ON team_members (user_id);

-- Repository settings. Existing repositories become private.
ALTER TABLE repositories ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'
    CHECK (visibility IN ('public', 'private'));
ALTER TABLE repositories ADD COLUMN created_by BIGINT REFERENCES accounts (id) ON DELETE SET NULL;

-- A team's role on one repository (of its organisation) ...
CREATE TABLE repo_grants (
    team_id     BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    repo_id     BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('read-only', 'read-write', 'admin')),
    PRIMARY KEY (team_id, repo_id)
);
CREATE INDEX repo_grants_by_repo ON repo_grants (repo_id);

-- ... or on its organisation's whole namespace (at most one role per team).
CREATE TABLE namespace_grants (
    team_id     BIGINT NOT NULL PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('read-only', 'read-write', 'admin'))
);

-- Access tokens and refresh (offline) tokens: the id is public, only a hash is kept.
CREATE TABLE tokens (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    user_id      BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    description  TEXT NOT NULL,
    hash         TEXT NOT NULL,  -- SHA-256 of the whole token, lowercase hex
    expires_at   BIGINT,
    restriction  TEXT,           -- JSON of berth_auth::rbac::Restriction
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX tokens_by_user ON tokens (user_id, kind);

-- The token service's ES256 keys, shared by replicas; retired keys stay to verify tokens
-- issued before the rotation until they expire.
CREATE TABLE signing_keys (
    kid          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    pem          TEXT NOT NULL,  -- PKCS#8 PEM of the private key
    created_at   BIGINT NOT NULL,
    retired      BOOLEAN NOT NULL DEFAULT FALSE
);

-- Append-only audit log. The actor is not a foreign key: entries outlive accounts.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_id    BIGINT,
    source      TEXT,
    action      TEXT COLLATE "C" NOT NULL,
    target      TEXT COLLATE "C" NOT NULL,
    detail      TEXT NOT NULL    -- JSON
);
CREATE INDEX audit_by_actor ON audit_log (actor_id, id);
CREATE INDEX audit_by_action ON audit_log (action, id);
CREATE INDEX audit_by_at ON audit_log (at);

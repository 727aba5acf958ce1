-- The signed targets of each repository's current trust data: tag -> manifest digest, by
-- the role (targets or a delegation) that signs it, with the keys whose signatures on that
-- role's file verify and when the role (or an ancestor) expires; replaced with every trust
-- update that changes a targets role, deleted with the repository (the foreign key).
-- GC keeps a manifest that a signed target names while the repository has the tag, so a
-- trusted pull of the tag (which asks for the signed digest) finds it even after the tag
-- was pushed over without trust; signature policies read them as Docker Content Trust
-- signatures.
CREATE TABLE trust_targets (
    repo       TEXT    NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    tag        TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    key_ids    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (repo, tag, digest, role)
) STRICT, WITHOUT ROWID;
CREATE INDEX trust_targets_by_digest ON trust_targets (repo, digest);

-- Whom a trust key signs for: the account that brought it into the repository's trust data
-- (the targets key: who created the trust data; a delegation's key: who added it). The
-- first to bring a key keeps it; account 0: no account (`berth admin`).
CREATE TABLE trust_signers (
    repo       TEXT    NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    key_id     TEXT    NOT NULL,
    account_id INTEGER NOT NULL,
    PRIMARY KEY (repo, key_id)
) STRICT, WITHOUT ROWID;

-- A target no longer signed: the manifest it kept may be garbage now.
CREATE TRIGGER gc_signed_target_gone AFTER DELETE ON trust_targets BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', id, OLD.digest FROM repositories WHERE name = OLD.repo
        ON CONFLICT DO NOTHING;
END;
-- A tag gone: the manifests its signed targets kept may be garbage now.
CREATE TRIGGER gc_signed_tag_gone AFTER DELETE ON tags BEGIN
    INSERT INTO gc_candidates (kind, repo_id, digest)
        SELECT 'manifest', OLD.repo_id, s.digest
        FROM trust_targets s JOIN repositories r ON r.name = s.repo
        WHERE r.id = OLD.repo_id AND s.tag = OLD.name
        ON CONFLICT DO NOTHING;
END;

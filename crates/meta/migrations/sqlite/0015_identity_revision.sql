-- Moved on by every change an access decision depends on: an account's state (active,
-- password, administrator, credential epoch) or deletion, organisation membership, team
-- membership, grants, a repository's visibility, owner or deletion, a token revoked or
-- deleted. Each replica reads it (at most once a second) and, when it moved, decides again
-- what it had decided for bearer tokens: a change made through one replica applies on all.
CREATE TABLE identity_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
) STRICT;
INSERT INTO identity_revision (id, revision) VALUES (1, 0);

CREATE TRIGGER identity_account_changed
    AFTER UPDATE OF active, password, system_admin, credential_epoch ON accounts
    WHEN OLD.active IS NOT NEW.active OR OLD.password IS NOT NEW.password
        OR OLD.system_admin IS NOT NEW.system_admin
        OR OLD.credential_epoch IS NOT NEW.credential_epoch BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_account_gone AFTER DELETE ON accounts BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_org_joined AFTER INSERT ON org_members BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_org_changed AFTER UPDATE ON org_members BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_org_left AFTER DELETE ON org_members BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_team_joined AFTER INSERT ON team_members BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_team_left AFTER DELETE ON team_members BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_repo_grant_added AFTER INSERT ON repo_grants BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_repo_grant_changed AFTER UPDATE ON repo_grants BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_repo_grant_gone AFTER DELETE ON repo_grants BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_namespace_grant_added AFTER INSERT ON namespace_grants BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_namespace_grant_changed AFTER UPDATE ON namespace_grants BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_namespace_grant_gone AFTER DELETE ON namespace_grants BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_repository_changed
    AFTER UPDATE OF visibility, owner_id ON repositories
    WHEN OLD.visibility IS NOT NEW.visibility OR OLD.owner_id IS NOT NEW.owner_id BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_repository_gone AFTER DELETE ON repositories BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_token_revoked AFTER UPDATE OF revoked ON tokens
    WHEN OLD.revoked IS NOT NEW.revoked BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER identity_token_gone AFTER DELETE ON tokens BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
END;

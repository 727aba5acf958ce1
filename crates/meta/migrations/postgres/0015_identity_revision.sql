-- As sqlite/0015_identity_revision.sql (which says what it is for), in PostgreSQL's
-- dialect: statement-level triggers, and row-level ones where only a changed value counts.
CREATE TABLE identity_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO identity_revision (id, revision) VALUES (1, 0);

CREATE FUNCTION identity_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE identity_revision SET revision = revision + 1 WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER identity_account_changed
    AFTER UPDATE OF active, password, system_admin, credential_epoch ON accounts FOR EACH ROW
    WHEN (OLD.active IS DISTINCT FROM NEW.active OR OLD.password IS DISTINCT FROM NEW.password
        OR OLD.system_admin IS DISTINCT FROM NEW.system_admin
        OR OLD.credential_epoch IS DISTINCT FROM NEW.credential_epoch)
    EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_accounts_gone AFTER DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_org_members_changed AFTER INSERT OR UPDATE OR DELETE ON org_members
    FOR EACH STATEMENT EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_team_members_changed AFTER INSERT OR DELETE ON team_members
    FOR EACH STATEMENT EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_repo_grants_changed AFTER INSERT OR UPDATE OR DELETE ON repo_grants
    FOR EACH STATEMENT EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_namespace_grants_changed
    AFTER INSERT OR UPDATE OR DELETE ON namespace_grants
    FOR EACH STATEMENT EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_repository_changed
    AFTER UPDATE OF visibility, owner_id ON repositories FOR EACH ROW
    WHEN (OLD.visibility IS DISTINCT FROM NEW.visibility OR OLD.owner_id IS DISTINCT FROM NEW.owner_id)
    EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_repositories_gone AFTER DELETE ON repositories
    FOR EACH STATEMENT EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_token_revoked AFTER UPDATE OF revoked ON tokens FOR EACH ROW
    WHEN (OLD.revoked IS DISTINCT FROM NEW.revoked)
    EXECUTE FUNCTION identity_changed();
CREATE TRIGGER identity_tokens_gone AFTER DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION identity_changed();

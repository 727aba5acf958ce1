-- Repositories belong to their namespace's account by identity (issue 10), SQLite dialect.
-- Mirrors ../postgres/0004_namespace_owner.sql.
--
-- `owner_id` is the account (user or organisation) whose namespace held the repository
-- when it was created, or that claimed it; NULL when no account owns it: pushed by a
-- system administrator into a namespace without an account (`library/...`), or left by
-- a deleted user or organisation (ON DELETE SET NULL). The access decision reads the
-- namespace's kind through this id, so an account created later with the same name does
-- not inherit the repositories; creating an account whose name still holds repositories
-- is refused unless a system administrator claims them.
ALTER TABLE repositories ADD COLUMN owner_id INTEGER REFERENCES accounts (id) ON DELETE SET NULL;
-- Deleting an account sets its repositories' owner to NULL; without the index that is a
-- scan of every repository.
CREATE INDEX repositories_by_owner ON repositories (owner_id);

-- Existing repositories whose namespace has an account belong to it.
UPDATE repositories SET owner_id = (
    SELECT a.id FROM accounts a WHERE a.name = CASE
        WHEN instr(repositories.name, '/') > 0
        THEN substr(repositories.name, 1, instr(repositories.name, '/') - 1)
        ELSE repositories.name END);

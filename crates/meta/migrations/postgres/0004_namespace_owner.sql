-- Repositories belong to their namespace's account by identity (issue 10), PostgreSQL
-- dialect. Mirrors ../sqlite/0004_namespace_owner.sql, whose comments explain the column.
ALTER TABLE repositories ADD COLUMN owner_id BIGINT REFERENCES accounts (id) ON DELETE SET NULL;
CREATE INDEX repositories_by_owner ON repositories (owner_id);

UPDATE repositories r SET owner_id = a.id FROM accounts a
    WHERE a.name = split_part(r.name, '/', 1);

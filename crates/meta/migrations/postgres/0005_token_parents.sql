-- Refresh tokens end with the credential that minted them (issue 10), PostgreSQL
-- dialect. Mirrors ../sqlite/0005_token_parents.sql, whose comments explain the columns.
ALTER TABLE accounts ADD COLUMN credential_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN parent_id TEXT COLLATE "C" REFERENCES tokens (id) ON DELETE CASCADE;
ALTER TABLE tokens ADD COLUMN credential_epoch BIGINT;
CREATE INDEX tokens_by_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
UPDATE tokens SET revoked = TRUE WHERE kind = 'refresh';

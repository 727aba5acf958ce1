-- Refresh tokens end with the credential that minted them (issue 10).
--
-- A user's credential epoch moves when the password changes or the account is
-- deactivated. A refresh token issued at a password (or directory) login records the
-- epoch it was issued under and is refused once the epoch moves; one issued against an
-- access token (used as a password) records that token as its parent and ends with it
-- (revoked, expired, or deleted).
ALTER TABLE accounts ADD COLUMN credential_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN parent_id TEXT REFERENCES tokens (id) ON DELETE CASCADE;
ALTER TABLE tokens ADD COLUMN credential_epoch INTEGER;
CREATE INDEX tokens_by_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
-- Refresh tokens issued before this migration record no parent: nobody can tell which
-- credential they outlive, so they end here (their clients log in again).
UPDATE tokens SET revoked = 1 WHERE kind = 'refresh';

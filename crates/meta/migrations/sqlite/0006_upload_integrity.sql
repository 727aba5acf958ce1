-- Upload integrity (issue 10).
--
-- The write lease of an upload session: a request takes it (a compare-and-swap on the row)
-- before it writes a byte, renews it while it writes, and gives it up with the offset it
-- advances; another request, on any replica, finds the session busy until then or until
-- `lease_until` (unix ms) has passed.
ALTER TABLE uploads ADD COLUMN lease TEXT;
ALTER TABLE uploads ADD COLUMN lease_until INTEGER;
-- Whether the bytes stored under this digest were committed by an upload that hashed them
-- (1). A commit deduplicates onto existing bytes only when they were; bytes of older rows
-- (and crash or lost-claim leftovers, which have no live row) are replaced by the
-- committing upload's own verified bytes.
ALTER TABLE blobs ADD COLUMN verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1));

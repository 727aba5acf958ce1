-- Leases of background jobs, any job name: which process runs the job, until when. A lease
-- is taken when free or expired, renewed by its holder while it lives, released when it
-- stops; a holder that dies loses it at `expires_at` (unix ms). Replaces `gc_lease`, whose
-- one row (the GC run's lease, named 'gc') is carried over.
CREATE TABLE leases (
    name        TEXT   NOT NULL PRIMARY KEY,
    holder      TEXT   NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
INSERT INTO leases (name, holder, acquired_at, expires_at)
    SELECT name, holder, acquired_at, expires_at FROM gc_lease;
DROP TABLE gc_lease;

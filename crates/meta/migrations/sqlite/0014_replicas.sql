-- The replicas of the registry: each `berth serve` writes its row at start and every
-- heartbeat, and deletes it when it stops cleanly. A row whose heartbeat is older than the
-- configured number of missed heartbeats is a replica that is down (or cut off from the
-- database); cluster status lists every row. `read_only`: the replica refuses writes (a
-- read-only GC, or `registry.read_only`).
CREATE TABLE replicas (
    id           TEXT    NOT NULL PRIMARY KEY,
    address      TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    read_only    INTEGER NOT NULL
) STRICT;

-- As sqlite/0014_replicas.sql (which says what the table is for), in PostgreSQL's dialect.
CREATE TABLE replicas (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    address      TEXT   NOT NULL,
    version      TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    read_only    BIGINT NOT NULL
);

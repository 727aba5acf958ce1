-- As sqlite/0016_login_failures.sql (which says what the table is for), in PostgreSQL's dialect.
CREATE TABLE login_failures (
    key          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
CREATE INDEX login_failures_by_start ON login_failures (window_start);

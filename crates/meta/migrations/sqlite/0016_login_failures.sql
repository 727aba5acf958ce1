-- Refused logins, counted per key (`u:<user>`, `a:<user>|<source>`, `s:<source>`) in a
-- window that starts at the first failure: shared by every replica, so a guesser spreading
-- attempts over replicas meets the same limits. Rows older than the window are deleted
-- with each new failure.
CREATE TABLE login_failures (
    key          TEXT    NOT NULL PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start INTEGER NOT NULL
) STRICT;
CREATE INDEX login_failures_by_start ON login_failures (window_start);

-- A row per connection that syncs a log: a sync writes to the write-ahead log (so that
-- PostgreSQL waits for the flush at its commit), and several nodes syncing at once each update
-- a row of their own, so their flushes are shared by PostgreSQL instead of taking turns on one
-- row's lock. Keyed by the connection's backend process id, which no two open connections share.
CREATE TABLE naast_log_syncs (
    backend integer PRIMARY KEY,
    syncs bigint NOT NULL
);

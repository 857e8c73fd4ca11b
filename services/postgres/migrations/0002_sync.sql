-- One row the writer updates to make everything written before durable: a transaction must
-- write to the write-ahead log for PostgreSQL to wait for its flush at commit (one that only
-- takes a transaction id commits asynchronously, whatever synchronous_commit says).
CREATE TABLE naast_log_sync (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    syncs bigint NOT NULL
);
INSERT INTO naast_log_sync (one, syncs) VALUES (true, 0)

-- Log tables retired (an audit year past its retention): no node opens them any more, and every
-- node lets go of those it has open at its next listing of the years (within a minute). Each is
-- dropped, with its row, once it has been retired long enough that no node can still be
-- reading it.
CREATE TABLE naast_retired_logs (
    log_table text PRIMARY KEY,
    retired_at timestamptz NOT NULL
)

-- A row here while a restore into the database has not finished: no naast process but the
-- restore opens the database's logs until the restore removes it (one run again after a cut
-- starts over on what the cut one left).
CREATE TABLE naast_restoring (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    since timestamptz NOT NULL DEFAULT now()
)

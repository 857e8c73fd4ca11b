-- The event log's entries, as its engine on sled keeps them: the records by global position, the
-- index of each stream's revisions and the index of event ids, one ordered keyspace of byte keys
-- (bytea compares byte by byte, as sled orders its keys).
CREATE TABLE naast_log (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
)

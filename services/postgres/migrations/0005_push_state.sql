-- The push adapter's state (the endpoints' checkpoints, ledgers and dead letters; the FHIR
-- Subscriptions, their numbered events and how far each was delivered), kept here so every node
-- serves the subscriptions and the node that takes the push lease over goes on where the last
-- holder stopped. One row per entry of the store's trees; keys compare byte by byte, as in sled.
CREATE TABLE naast_push (
    tree text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);
-- Dead letters' numbers: never handed out twice, also after the highest letter was removed.
CREATE SEQUENCE naast_push_ids

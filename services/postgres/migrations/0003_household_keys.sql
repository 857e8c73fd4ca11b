-- The household data keys, each wrapped with the master key (which is never here), so any node
-- can serve any household. Erasing a household deletes its row; see the operations guide on
-- what that means for PostgreSQL's own copies (dead rows until vacuumed, WAL, backups).
CREATE TABLE naast_household_keys (
    household uuid PRIMARY KEY,
    wrapped bytea NOT NULL
);
-- A constant sealed with the master key: a wrong master key is refused when the store opens.
CREATE TABLE naast_master_key_check (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    sealed bytea NOT NULL
);
-- Households erased: never given a key again (a node deciding on a household it has not yet
-- seen erased cannot make it readable anew). Ids only.
CREATE TABLE naast_erased_households (
    household uuid PRIMARY KEY
)

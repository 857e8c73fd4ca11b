//! Where the push store's trees are: a sled database beside the event log, or the table
//! `naast_push` in the PostgreSQL database the event log is in (one row per entry, keyed by tree
//! and key), so that every node on that database sees the same push state.
//!
//! Both keep keys in byte order and offer the few operations the store needs: read, write,
//! remove, compare-and-swap (a read-modify-write of one entry, safe between processes), and
//! ordered scans. On sled a write is durable after [`Place::flush`]; on PostgreSQL each write is
//! its own durable commit (the connection asks for `synchronous_commit`), so `flush` has nothing
//! left to do.

use crate::store::StoreError;
use std::sync::Arc;
use tokio_postgres::Client;

/// An entry: key and value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// The database the trees are in.
#[derive(Clone)]
pub(crate) enum Place {
    /// A sled database of the data directory.
    Sled(sled::Db),
    /// The shared table.
    Postgres(Arc<Table>),
}

impl Place {
    /// The tree `name`.
    pub(crate) fn tree(&self, name: &'static str) -> Result<Tree, StoreError> {
        Ok(match self {
            Place::Sled(db) => Tree::Sled(db.open_tree(name)?),
            Place::Postgres(table) => Tree::Postgres {
                table: table.clone(),
                name,
            },
        })
    }

    /// Makes every write before it durable.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        if let Place::Sled(db) = self {
            db.flush()?;
        }
        Ok(())
    }

    /// [`Place::flush`], without blocking the runtime's thread.
    pub(crate) async fn flush_async(&self) -> Result<(), StoreError> {
        if let Place::Sled(db) = self {
            db.flush_async().await?;
        }
        Ok(())
    }

    /// A number never handed out before by this database (sled's id counter, or the sequence
    /// `naast_push_ids`).
    pub(crate) fn generate_id(&self) -> Result<u64, StoreError> {
        match self {
            Place::Sled(db) => Ok(db.generate_id()?),
            Place::Postgres(table) => {
                let id: i64 = table.run(|client| async move {
                    Ok(client
                        .query_one("SELECT nextval('naast_push_ids')", &[])
                        .await?
                        .get(0))
                })?;
                Ok(u64::try_from(id).unwrap_or(0))
            }
        }
    }

    /// Every entry of every tree, tree by tree, for a backup.
    pub(crate) fn entries(&self) -> Result<Vec<naast_eventlog::storage::TreeEntry>, StoreError> {
        match self {
            Place::Sled(db) => {
                let mut entries = Vec::new();
                for name in db.tree_names() {
                    // sled's default tree: the store keeps nothing there.
                    if name.as_ref() == b"__sled__default" {
                        continue;
                    }
                    entries.extend(naast_eventlog::storage::tree_entries(&db.open_tree(name)?)?);
                }
                Ok(entries)
            }
            Place::Postgres(table) => table.run(|client| async move {
                Ok(client
                    .query(
                        "SELECT tree, key, value FROM naast_push ORDER BY tree, key",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|row| (row.get(0), row.get(1), row.get(2)))
                    .collect())
            }),
        }
    }
}

impl Table {
    /// Writes the entries whose tree and key the table does not hold yet (those it holds are
    /// left as they are), in one durable commit per thousand; how many were written.
    pub(crate) fn insert_missing(
        &self,
        entries: &[naast_eventlog::storage::TreeEntry],
    ) -> Result<u64, StoreError> {
        let mut written = 0;
        for chunk in entries.chunks(1000) {
            let trees: Vec<String> = chunk.iter().map(|(t, _, _)| t.clone()).collect();
            let keys: Vec<Vec<u8>> = chunk.iter().map(|(_, k, _)| k.clone()).collect();
            let values: Vec<Vec<u8>> = chunk.iter().map(|(_, _, v)| v.clone()).collect();
            written += self.run(move |client| async move {
                client
                    .execute(
                        "INSERT INTO naast_push (tree, key, value) \
                         SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) \
                         ON CONFLICT (tree, key) DO NOTHING",
                        &[&trees, &keys, &values],
                    )
                    .await
            })?;
        }
        Ok(written)
    }
}

/// One tree of the store.
#[derive(Clone)]
pub(crate) enum Tree {
    /// A sled tree.
    Sled(sled::Tree),
    /// The rows of the shared table with this tree's name.
    Postgres {
        /// The table.
        table: Arc<Table>,
        /// The tree's name.
        name: &'static str,
    },
}

/// The first key after every key starting with `prefix` (`None`: there is none, every key from
/// `prefix` on starts with it).
pub(crate) fn after_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Tree {
    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Tree::Sled(tree) => Ok(tree.get(key)?.map(|v| v.to_vec())),
            Tree::Postgres { table, name } => {
                let name = *name;
                let key = key.to_vec();
                table.run(move |client| async move {
                    Ok(client
                        .query_opt(
                            "SELECT value FROM naast_push WHERE tree = $1 AND key = $2",
                            &[&name, &key],
                        )
                        .await?
                        .map(|row| row.get(0)))
                })
            }
        }
    }

    /// Sets `key` to `value`.
    pub(crate) fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match self {
            Tree::Sled(tree) => {
                tree.insert(key, value)?;
                Ok(())
            }
            Tree::Postgres { table, name } => {
                let name = *name;
                let (key, value) = (key.to_vec(), value.to_vec());
                table.run(move |client| async move {
                    client
                        .execute(
                            "INSERT INTO naast_push (tree, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                            &[&name, &key, &value],
                        )
                        .await
                        .map(drop)
                })
            }
        }
    }

    /// Removes `key`; whether it was there.
    pub(crate) fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        match self {
            Tree::Sled(tree) => Ok(tree.remove(key)?.is_some()),
            Tree::Postgres { table, name } => {
                let name = *name;
                let key = key.to_vec();
                table.run(move |client| async move {
                    Ok(client
                        .execute(
                            "DELETE FROM naast_push WHERE tree = $1 AND key = $2",
                            &[&name, &key],
                        )
                        .await?
                        > 0)
                })
            }
        }
    }

    /// Sets `key` to `new` (removes it for `None`) if its value is `old` (absent for `None`);
    /// whether it was.
    pub(crate) fn compare_and_swap(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        match self {
            Tree::Sled(tree) => Ok(tree.compare_and_swap(key, old, new)?.is_ok()),
            Tree::Postgres { table, name } => {
                let name = *name;
                let (key, old, new) = (
                    key.to_vec(),
                    old.map(<[u8]>::to_vec),
                    new.map(<[u8]>::to_vec),
                );
                table.run(move |client| async move {
                    let changed =
                        match (old, new) {
                            (None, None) => {
                                return Ok(client
                                    .query_opt(
                                        "SELECT 1 FROM naast_push WHERE tree = $1 AND key = $2",
                                        &[&name, &key],
                                    )
                                    .await?
                                    .is_none());
                            }
                            (None, Some(new)) => client
                                .execute(
                                    "INSERT INTO naast_push (tree, key, value) VALUES ($1, $2, $3) \
                                     ON CONFLICT (tree, key) DO NOTHING",
                                    &[&name, &key, &new],
                                )
                                .await?,
                            (Some(old), Some(new)) => {
                                client
                                    .execute(
                                        "UPDATE naast_push SET value = $4 \
                                     WHERE tree = $1 AND key = $2 AND value = $3",
                                        &[&name, &key, &old, &new],
                                    )
                                    .await?
                            }
                            (Some(old), None) => {
                                client
                                    .execute(
                                        "DELETE FROM naast_push \
                                     WHERE tree = $1 AND key = $2 AND value = $3",
                                        &[&name, &key, &old],
                                    )
                                    .await?
                            }
                        };
                    Ok(changed == 1)
                })
            }
        }
    }

    /// [`Tree::compare_and_swap`] of `key` from `old` to `new` (both present), writing `also`
    /// (an entry of `other`) with it: on PostgreSQL in the same statement, so `also` is written
    /// if and only if the swap is made; on sled (one process) first, so a crash between the two
    /// leaves `also` without the swap that refers to it, never the reverse.
    pub(crate) fn swap_writing(
        &self,
        key: &[u8],
        old: &[u8],
        new: &[u8],
        other: &Tree,
        also: Entry,
    ) -> Result<bool, StoreError> {
        match (self, other) {
            (Tree::Postgres { table, name }, Tree::Postgres { name: other, .. }) => {
                let (name, other) = (*name, *other);
                let (key, old, new) = (key.to_vec(), old.to_vec(), new.to_vec());
                let (also_key, also_value) = also;
                table.run(move |client| async move {
                    let swapped = client
                        .query_one(
                            "WITH swapped AS (UPDATE naast_push SET value = $4 \
                             WHERE tree = $1 AND key = $2 AND value = $3 RETURNING 1), \
                             written AS (INSERT INTO naast_push (tree, key, value) \
                             SELECT $5, $6, $7 FROM swapped \
                             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value \
                             RETURNING 1) \
                             SELECT count(*) FROM swapped",
                            &[&name, &key, &old, &new, &other, &also_key, &also_value],
                        )
                        .await?
                        .get::<_, i64>(0);
                    Ok(swapped == 1)
                })
            }
            _ => {
                other.insert(&also.0, &also.1)?;
                self.compare_and_swap(key, Some(old), Some(new))
            }
        }
    }

    /// The entries from `start` (inclusive) to `end` (exclusive; `None`: to the last), in key
    /// order, at most `limit`.
    pub(crate) fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        match self {
            Tree::Sled(tree) => {
                let entries = match end {
                    Some(end) => tree.range(start..end),
                    None => tree.range(start..),
                };
                entries
                    .take(limit)
                    .map(|item| {
                        let (k, v) = item?;
                        Ok((k.to_vec(), v.to_vec()))
                    })
                    .collect()
            }
            Tree::Postgres { table, name } => {
                let name = *name;
                let (start, end) = (start.to_vec(), end.map(<[u8]>::to_vec));
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                table.run(move |client| async move {
                    Ok(client
                        .query(
                            "SELECT key, value FROM naast_push WHERE tree = $1 AND key >= $2 \
                             AND ($3::bytea IS NULL OR key < $3) ORDER BY key LIMIT $4",
                            &[&name, &start, &end, &limit],
                        )
                        .await?
                        .iter()
                        .map(|row| (row.get(0), row.get(1)))
                        .collect())
                })
            }
        }
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.range(prefix, after_prefix(prefix).as_deref(), usize::MAX)
    }

    /// Every entry whose key starts with any of `prefixes`, in key order, each once: one round
    /// trip on PostgreSQL, however many prefixes.
    pub(crate) fn scan_prefixes(&self, prefixes: &[Vec<u8>]) -> Result<Vec<Entry>, StoreError> {
        let mut found = match self {
            Tree::Sled(_) => {
                let mut found = Vec::new();
                for prefix in prefixes {
                    found.extend(self.scan_prefix(prefix)?);
                }
                found
            }
            Tree::Postgres { table, name } => {
                if prefixes.is_empty() {
                    return Ok(Vec::new());
                }
                let name = *name;
                let (starts, ends): (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) = prefixes
                    .iter()
                    .map(|prefix| (prefix.clone(), after_prefix(prefix)))
                    .unzip();
                table.run(move |client| async move {
                    Ok(client
                        .query(
                            "SELECT k.key, k.value FROM unnest($2::bytea[], $3::bytea[]) \
                             AS p(start, stop) JOIN naast_push k ON k.tree = $1 \
                             AND k.key >= p.start AND (p.stop IS NULL OR k.key < p.stop)",
                            &[&name, &starts, &ends],
                        )
                        .await?
                        .iter()
                        .map(|row| (row.get(0), row.get(1)))
                        .collect())
                })?
            }
        };
        found.sort();
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found)
    }

    /// The last entry whose key starts with `prefix`.
    pub(crate) fn last_with_prefix(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        match self {
            Tree::Sled(tree) => Ok(tree
                .scan_prefix(prefix)
                .next_back()
                .transpose()?
                .map(|(k, v)| (k.to_vec(), v.to_vec()))),
            Tree::Postgres { table, name } => {
                let name = *name;
                let (start, end) = (prefix.to_vec(), after_prefix(prefix));
                table.run(move |client| async move {
                    Ok(client
                        .query_opt(
                            "SELECT key, value FROM naast_push WHERE tree = $1 AND key >= $2 \
                             AND ($3::bytea IS NULL OR key < $3) ORDER BY key DESC LIMIT 1",
                            &[&name, &start, &end],
                        )
                        .await?
                        .map(|row| (row.get(0), row.get(1))))
                })
            }
        }
    }

    /// How many keys start with `prefix`.
    pub(crate) fn count_prefix(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        match self {
            Tree::Sled(tree) => Ok(tree.scan_prefix(prefix).count() as u64),
            Tree::Postgres { table, name } => {
                let name = *name;
                let (start, end) = (prefix.to_vec(), after_prefix(prefix));
                let counted: i64 = table.run(move |client| async move {
                    Ok(client
                        .query_one(
                            "SELECT count(*) FROM naast_push WHERE tree = $1 AND key >= $2 \
                             AND ($3::bytea IS NULL OR key < $3)",
                            &[&name, &start, &end],
                        )
                        .await?
                        .get(0))
                })?;
                Ok(u64::try_from(counted).unwrap_or(0))
            }
        }
    }
}

/// The table `naast_push`, over one connection (opened again when PostgreSQL closed it); each
/// write is durable when it returns, so a checkpoint is written only after what it covers.
pub(crate) struct Table {
    connection: naast_postgres::Durable,
}

fn failed(e: String) -> StoreError {
    StoreError::Database(e)
}

impl Table {
    /// Connects to the database at `url` and applies the migrations it lacks.
    pub(crate) fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            connection: naast_postgres::Durable::open(url).map_err(failed)?,
        })
    }

    /// Runs `work` with the connection.
    fn run<T: Send + 'static, F>(
        &self,
        work: impl FnOnce(Arc<Client>) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        self.connection.run(work).map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::after_prefix;

    #[test]
    fn the_end_of_a_prefix_is_the_first_key_past_it() {
        assert_eq!(after_prefix(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(after_prefix(&[1, 0xff]), Some(vec![2]));
        assert_eq!(after_prefix(&[0xff, 0xff]), None);
        assert_eq!(after_prefix(b""), None);
    }
}

//! The household keys in PostgreSQL (`naast_household_keys`), beside an event log kept there, so
//! every naast node on the database can serve every household.
//!
//! Each row holds one household's data key wrapped with the master key, which is never in the
//! database: a copy of the database alone opens nothing. A key is made by the first node that
//! needs it (`INSERT … ON CONFLICT DO NOTHING`, then whichever key is stored is used, so two nodes
//! never seal one household's data under two keys), committed durably before it seals anything.
//! Erasing a household deletes its row and records its id in `naast_erased_households`, in one
//! durable commit; a household recorded there is never given a key again, so a node that decides
//! on a household before it has seen the erasure cannot make it readable anew.
//!
//! PostgreSQL keeps a deleted row's bytes until the table is vacuumed, and in its write-ahead log
//! and backups for as long as those are kept: the operations guide says how erasure is made
//! complete there.

use crate::{MasterKey, VaultError};
use std::future::Future;
use std::sync::Arc;
use tokio_postgres::Client;
use uuid::Uuid;

/// The keys' table, over one connection (opened again when PostgreSQL closed it); a key is used
/// only once it is durable.
pub(crate) struct KeyTable {
    connection: naast_postgres::Durable,
}

fn failed(e: String) -> VaultError {
    VaultError::Database(e)
}

impl KeyTable {
    /// Connects to the database at `url` and applies the migrations it lacks.
    pub(crate) fn open(url: &str) -> Result<Self, VaultError> {
        Ok(Self {
            connection: naast_postgres::Durable::open(url).map_err(failed)?,
        })
    }

    /// Runs `work` with the connection.
    fn run<T: Send + 'static, F>(
        &self,
        work: impl FnOnce(Arc<Client>) -> F + Send + 'static,
    ) -> Result<T, VaultError>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        self.connection.run(work).map_err(failed)
    }

    /// The household's wrapped key, if it has one.
    pub(crate) fn read(&self, household: Uuid) -> Result<Option<Vec<u8>>, VaultError> {
        let id = household.to_string();
        self.run(move |client| async move { wrapped_of(&client, &id).await })
    }

    /// Stores `wrapped` as the household's key unless it has one (made meanwhile by another
    /// node), durably: the key stored is returned. `Erased` when the household was erased.
    pub(crate) fn create(&self, household: Uuid, wrapped: Vec<u8>) -> Result<Vec<u8>, VaultError> {
        let id = household.to_string();
        let stored: Option<Vec<u8>> = self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO naast_household_keys (household, wrapped) \
                     SELECT $1::text::uuid, $2 WHERE NOT EXISTS \
                     (SELECT 1 FROM naast_erased_households WHERE household = $1::text::uuid) \
                     ON CONFLICT (household) DO NOTHING",
                    &[&id, &wrapped],
                )
                .await?;
            wrapped_of(&client, &id).await
        })?;
        stored.ok_or(VaultError::Erased(household))
    }

    /// Deletes the household's key and records it erased, in one durable commit.
    pub(crate) fn erase(&self, household: Uuid) -> Result<(), VaultError> {
        // A uuid's text is hex digits and dashes: safe to put in the statement's text.
        let id = household.hyphenated().to_string();
        self.run(move |client| async move {
            client
                .batch_execute(&format!(
                    "BEGIN; \
                     DELETE FROM naast_household_keys WHERE household = '{id}'; \
                     INSERT INTO naast_erased_households (household) VALUES ('{id}') \
                     ON CONFLICT (household) DO NOTHING; \
                     COMMIT"
                ))
                .await
        })
    }

    /// The households that have a key.
    pub(crate) fn households(&self) -> Result<Vec<Uuid>, VaultError> {
        let ids: Vec<String> = self.run(|client| async move {
            Ok(client
                .query(
                    "SELECT household::text FROM naast_household_keys ORDER BY household",
                    &[],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })?;
        ids.iter()
            .map(|id| Uuid::parse_str(id).map_err(|e| failed(e.to_string())))
            .collect()
    }

    /// Every household's wrapped key.
    pub(crate) fn all(&self) -> Result<Vec<(Uuid, Vec<u8>)>, VaultError> {
        let rows: Vec<(String, Vec<u8>)> = self.run(|client| async move {
            Ok(client
                .query(
                    "SELECT household::text, wrapped FROM naast_household_keys ORDER BY household",
                    &[],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })?;
        rows.into_iter()
            .map(|(id, wrapped)| {
                Uuid::parse_str(&id)
                    .map(|id| (id, wrapped))
                    .map_err(|e| failed(e.to_string()))
            })
            .collect()
    }

    /// The master key check, if the table has one.
    pub(crate) fn check(&self) -> Result<Option<Vec<u8>>, VaultError> {
        self.run(|client| async move {
            Ok(client
                .query_opt("SELECT sealed FROM naast_master_key_check", &[])
                .await?
                .map(|row| row.get(0)))
        })
    }

    /// Stores the master key check, unless there is one already.
    pub(crate) fn set_check(&self, sealed: Vec<u8>) -> Result<(), VaultError> {
        self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO naast_master_key_check (one, sealed) VALUES (true, $1) \
                     ON CONFLICT (one) DO NOTHING",
                    &[&sealed],
                )
                .await
                .map(drop)
        })
    }

    /// Replaces every household key with its rewrapping and the check with `check`, in one
    /// transaction, if the check is still `expected` (else nothing is changed and `false`
    /// returned: another rotation got there first).
    pub(crate) fn replace_all(
        &self,
        expected: Vec<u8>,
        rewrapped: Vec<(Uuid, Vec<u8>)>,
        check: Vec<u8>,
    ) -> Result<bool, VaultError> {
        let (ids, keys): (Vec<String>, Vec<Vec<u8>>) = rewrapped
            .into_iter()
            .map(|(id, wrapped)| (id.to_string(), wrapped))
            .unzip();
        self.run(move |client| async move {
            committed_if(&client, async {
                let current: Option<Vec<u8>> = client
                    .query_opt("SELECT sealed FROM naast_master_key_check FOR UPDATE", &[])
                    .await?
                    .map(|row| row.get(0));
                if current.as_deref() != Some(expected.as_slice()) {
                    return Ok(false);
                }
                client
                    .execute(
                        "UPDATE naast_household_keys AS k SET wrapped = n.wrapped \
                         FROM unnest($1::text[], $2::bytea[]) AS n(household, wrapped) \
                         WHERE k.household = n.household::uuid",
                        &[&ids, &keys],
                    )
                    .await?;
                client
                    .execute("UPDATE naast_master_key_check SET sealed = $1", &[&check])
                    .await?;
                Ok(true)
            })
            .await
        })
    }
}

impl KeyTable {
    /// Stores `keys` and the master key `check` of a backup, in one transaction, into a table
    /// that holds no key, check or erased household (else nothing is written).
    pub(crate) fn restore(
        &self,
        keys: Vec<(Uuid, Vec<u8>)>,
        check: Option<Vec<u8>>,
    ) -> Result<(), VaultError> {
        let (ids, wrapped): (Vec<String>, Vec<Vec<u8>>) = keys
            .into_iter()
            .map(|(id, key)| (id.to_string(), key))
            .unzip();
        let written = self.run(move |client| async move {
            committed_if(&client, async {
                let held: bool = client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM naast_household_keys) \
                         OR EXISTS (SELECT 1 FROM naast_master_key_check) \
                         OR EXISTS (SELECT 1 FROM naast_erased_households)",
                        &[],
                    )
                    .await?
                    .get(0);
                if held {
                    return Ok(false);
                }
                client
                    .execute(
                        "INSERT INTO naast_household_keys (household, wrapped) \
                         SELECT household::uuid, wrapped FROM unnest($1::text[], $2::bytea[]) \
                         AS n(household, wrapped)",
                        &[&ids, &wrapped],
                    )
                    .await?;
                if let Some(check) = &check {
                    client
                        .execute(
                            "INSERT INTO naast_master_key_check (one, sealed) VALUES (true, $1)",
                            &[check],
                        )
                        .await?;
                }
                Ok(true)
            })
            .await
        })?;
        if !written {
            return Err(VaultError::Corrupt {
                what: "the keys' tables in PostgreSQL hold keys, a master key check or erased households already".into(),
            });
        }
        Ok(())
    }
}

/// Runs `work` in a transaction on `client`: committed when it answers `true`, rolled back when
/// it answers `false` (what it says is returned) or fails.
async fn committed_if(
    client: &Client,
    work: impl Future<Output = Result<bool, tokio_postgres::Error>>,
) -> Result<bool, tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    match work.await {
        Ok(true) => client.batch_execute("COMMIT").await.map(|()| true),
        Ok(false) => client.batch_execute("ROLLBACK").await.map(|()| false),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// The wrapped key of household `id` (its text), if it has one.
async fn wrapped_of(client: &Client, id: &str) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT wrapped FROM naast_household_keys WHERE household = $1::text::uuid",
            &[&id],
        )
        .await?
        .map(|row| row.get(0)))
}

/// Rewraps every household key in the database at `url` from `old` to `new`, in one transaction:
/// a crash leaves all under the old key or all under the new. Keys made by a node still running
/// on the old key meanwhile would be under the old one, so the nodes are stopped first (as for a
/// rotation in a key folder). The check tells which key the table is under: a rotation run again
/// after it finished says so.
pub fn rotate_master_key_in_postgres(
    url: &str,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<crate::Rotated, VaultError> {
    if old.0 == new.0 {
        return Err(VaultError::MasterKey(
            "the new master key is the one in use".into(),
        ));
    }
    let table = KeyTable::open(url)?;
    let check = match table.check()? {
        Some(check) => check,
        None => {
            crate::rotate::check_on_open_table(&table, old)?;
            table
                .check()?
                .ok_or_else(|| failed("the master key check is missing".into()))?
        }
    };
    if crate::rotate::checks(new, &check) {
        // Finished before: every key is under the new one.
        return Ok(crate::Rotated {
            rewrapped: 0,
            already: table.households()?.len(),
        });
    }
    if !crate::rotate::checks(old, &check) {
        return Err(VaultError::WrongMasterKey);
    }
    let (old_cipher, new_cipher) = (crate::cipher(old), crate::cipher(new));
    let mut rewrapped = Vec::new();
    for (household, wrapped) in table.all()? {
        let key = crate::unwrap(&old_cipher, household, &wrapped)?;
        rewrapped.push((household, crate::wrap(&new_cipher, household, &key)?));
    }
    let count = rewrapped.len();
    if !table.replace_all(check, rewrapped, crate::rotate::check_value(new)?)? {
        return Err(VaultError::RotatingToAnotherKey);
    }
    Ok(crate::Rotated {
        rewrapped: count,
        already: 0,
    })
}

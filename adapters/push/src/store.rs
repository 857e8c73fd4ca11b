//! What each endpoint has been sent, kept in its own sled database beside the event log (or, with
//! the event log in PostgreSQL, in a table there shared by every node: see [`crate::trees`]): the
//! position in the log up to which every household is synchronised (the checkpoint), a ledger of
//! every resource written (its id on the platform's server and a hash of what was written), and
//! the dead letters.
//!
//! The ledger, not the log, is what a withdrawal deletes: whatever was written and not yet
//! withdrawn is in it. A ledger entry is written after the platform answered, the checkpoint
//! after every household up to it was synchronised and the ledger flushed; a crash in between
//! repeats writes that the platform already has, which conditional update makes harmless.

use crate::trees::{Place, Table, Tree, after_prefix};
use naast_domain::ids::HouseholdId;
use serde::{Deserialize, Serialize};
use std::path::Path;
use uuid::Uuid;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("push store: {0}")]
    Sled(#[from] sled::Error),
    /// The store could not be opened.
    #[error("push store: {0}")]
    Open(#[from] naast_eventlog::StorageError),
    /// PostgreSQL failed.
    #[error("push store: {0}")]
    Database(String),
    /// A stored value could not be read.
    #[error("push store: a stored value is damaged: {0}")]
    Damaged(String),
}

/// One resource as last written to an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its id on the platform's server, once known.
    pub remote: Option<String>,
    /// SHA-256 (hex) of the body last written, or last refused.
    pub hash: String,
    /// The dead letter when the last attempt was refused; the resource is tried again when it
    /// changes, or when the dead letter is replayed.
    pub dead: Option<u64>,
}

/// A write the platform refused for good (a 4xx other than 408, 409 and 429).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its number, per endpoint.
    pub id: u64,
    /// The household.
    pub household: HouseholdId,
    /// The resource type.
    pub resource_type: String,
    /// naast's id of the resource.
    pub resource_id: Uuid,
    /// `PUT` or `DELETE`.
    pub method: String,
    /// The HTTP status.
    pub status: u16,
    /// The platform's answer (up to [`MAX_BODY`] bytes).
    pub body: String,
    /// When (µs since 1970).
    pub at_micros: u64,
    /// A webhook's notice as it was sent, to be sent again (with its message id) on replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

/// A webhook's notice, kept with its dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Its `webhook-id`.
    pub id: String,
    /// Its body.
    pub body: String,
}

/// The most of a refusal's body kept in a dead letter.
pub const MAX_BODY: usize = 16 * 1024;

/// The push store of one data directory, or of every node on one PostgreSQL database.
#[derive(Clone)]
pub struct Store {
    db: Place,
    checkpoints: Tree,
    ledger: Tree,
    dead: Tree,
    /// FHIR Subscriptions by id.
    subscriptions: Tree,
    /// Household ‖ subscription id: who follows a household.
    following: Tree,
    /// Subscription id ‖ event number: its numbered events.
    subscription_events: Tree,
    /// Subscription id: the number of the last event delivered.
    delivered: Tree,
}

type Subscription = naast_fhir_http::subscriptions::Subscription;

/// What a change of a subscription does.
enum Change {
    /// Nothing: the subscription stays as it is.
    Leave,
    /// Stores the subscription as changed.
    Swap,
    /// Stores it as changed, writing this entry of its events with it.
    SwapWriting(crate::trees::Entry),
}
use naast_fhir_http::subscriptions::Status;
type NotificationEvent = naast_fhir_http::subscriptions::NotificationEvent;

fn damaged(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Damaged(format!("{what}: {e}"))
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // The event log's way of opening sled: segments large enough that no record goes to an
        // unsynced blob file, and a reopen in the same process waits out sled's lock.
        let db = naast_eventlog::storage::open_sled(dir, 16 * 1024 * 1024)?;
        Self::in_place(Place::Sled(db))
    }

    /// Opens the store in the PostgreSQL database at `url` (the one the event log is in),
    /// applying the migrations it lacks.
    pub fn open_postgres(url: &str) -> Result<Self, StoreError> {
        Self::in_place(Place::Postgres(std::sync::Arc::new(Table::open(url)?)))
    }

    fn in_place(db: Place) -> Result<Self, StoreError> {
        Ok(Self {
            checkpoints: db.tree("checkpoints")?,
            ledger: db.tree("ledger")?,
            dead: db.tree("dead")?,
            subscriptions: db.tree("subscriptions")?,
            following: db.tree("following")?,
            subscription_events: db.tree("subscription_events")?,
            delivered: db.tree("delivered")?,
            db,
        })
    }

    /// Whether the store is shared by several nodes (in PostgreSQL): another node may make or
    /// end a subscription, so the dispatcher looks again now and then.
    pub fn is_shared(&self) -> bool {
        matches!(self.db, Place::Postgres(_))
    }

    /// Takes `entries` (a backup's, or a data directory's store's) into this store shared in
    /// PostgreSQL, each unless the store holds its key already; how many it took. Taking the same
    /// entries in again takes none.
    pub fn take_in(
        &self,
        entries: &[naast_eventlog::storage::TreeEntry],
    ) -> Result<u64, StoreError> {
        match &self.db {
            Place::Postgres(table) => table.insert_missing(entries),
            Place::Sled(_) => Err(StoreError::Database(
                "only a store in PostgreSQL takes entries in".to_owned(),
            )),
        }
    }

    /// Every entry of the store, tree by tree (each tree it has, so none is left out), for a
    /// backup (see `naast_eventlog::storage::restore_trees`).
    pub fn backup_entries(&self) -> Result<Vec<naast_eventlog::storage::TreeEntry>, StoreError> {
        self.db.entries()
    }

    /// The position in the event log from which `endpoint` still has to look (0: from the start).
    pub fn checkpoint(&self, endpoint: &str) -> Result<u64, StoreError> {
        match self.checkpoints.get(endpoint.as_bytes())? {
            None => Ok(0),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Damaged(format!("checkpoint of {endpoint}"))),
        }
    }

    /// Sets the checkpoint, after making everything written before it durable.
    pub async fn set_checkpoint(&self, endpoint: &str, position: u64) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        self.checkpoints
            .insert(endpoint.as_bytes(), &position.to_be_bytes())?;
        self.db.flush_async().await?;
        Ok(())
    }

    fn household_prefix(endpoint: &str, household: HouseholdId) -> Vec<u8> {
        let mut key = Vec::with_capacity(endpoint.len() + 17);
        key.extend_from_slice(endpoint.as_bytes());
        key.push(0);
        key.extend_from_slice(household.0.as_bytes());
        key
    }

    fn key(endpoint: &str, household: HouseholdId, resource_type: &str, id: Uuid) -> Vec<u8> {
        let mut key = Self::household_prefix(endpoint, household);
        key.extend_from_slice(resource_type.as_bytes());
        key.push(0);
        key.extend_from_slice(id.as_bytes());
        key
    }

    /// Every resource of `household` written to `endpoint` and not withdrawn: type, id, entry.
    pub fn ledger(
        &self,
        endpoint: &str,
        household: HouseholdId,
    ) -> Result<Vec<(String, Uuid, Entry)>, StoreError> {
        let prefix = Self::household_prefix(endpoint, household);
        let mut out = Vec::new();
        for (key, value) in self.ledger.scan_prefix(&prefix)? {
            let rest = &key[prefix.len()..];
            let damaged = || StoreError::Damaged(format!("ledger key of {endpoint}"));
            let split = rest.iter().position(|b| *b == 0).ok_or_else(damaged)?;
            let resource_type = std::str::from_utf8(&rest[..split]).map_err(|_| damaged())?;
            let id = Uuid::from_slice(&rest[split + 1..]).map_err(|_| damaged())?;
            let entry: Entry = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Damaged(format!("ledger entry: {e}")))?;
            out.push((resource_type.to_owned(), id, entry));
        }
        Ok(out)
    }

    /// What was written of one resource, if anything.
    pub fn entry(
        &self,
        endpoint: &str,
        household: HouseholdId,
        resource_type: &str,
        id: Uuid,
    ) -> Result<Option<Entry>, StoreError> {
        let Some(value) = self
            .ledger
            .get(&Self::key(endpoint, household, resource_type, id))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|e| StoreError::Damaged(format!("ledger entry: {e}")))
    }

    /// Records what was written of one resource.
    pub fn put(
        &self,
        endpoint: &str,
        household: HouseholdId,
        resource_type: &str,
        id: Uuid,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let value =
            serde_json::to_vec(entry).map_err(|e| StoreError::Damaged(format!("entry: {e}")))?;
        self.ledger
            .insert(&Self::key(endpoint, household, resource_type, id), &value)?;
        Ok(())
    }

    /// Forgets a withdrawn resource.
    pub fn remove(
        &self,
        endpoint: &str,
        household: HouseholdId,
        resource_type: &str,
        id: Uuid,
    ) -> Result<(), StoreError> {
        self.ledger
            .remove(&Self::key(endpoint, household, resource_type, id))?;
        Ok(())
    }

    /// Every household `endpoint` holds something of.
    pub fn households(&self, endpoint: &str) -> Result<Vec<HouseholdId>, StoreError> {
        let mut prefix = endpoint.as_bytes().to_vec();
        prefix.push(0);
        let mut out: Vec<HouseholdId> = Vec::new();
        for (key, _) in self.ledger.scan_prefix(&prefix)? {
            let id = key
                .get(prefix.len()..prefix.len() + 16)
                .and_then(|b| Uuid::from_slice(b).ok())
                .ok_or_else(|| StoreError::Damaged(format!("ledger key of {endpoint}")))?;
            if out.last() != Some(&HouseholdId(id)) {
                out.push(HouseholdId(id));
            }
        }
        Ok(out)
    }

    /// Files a dead letter; returns its number.
    pub fn add_dead_letter(
        &self,
        endpoint: &str,
        mut letter: DeadLetter,
    ) -> Result<u64, StoreError> {
        let mut key = endpoint.as_bytes().to_vec();
        key.push(0);
        // sled's id counter lives outside the trees, so a store restored from a backup starts
        // it afresh: the numbers go on past the endpoint's last letter all the same.
        let last = self
            .dead
            .last_with_prefix(&key)?
            .and_then(|(k, _)| <[u8; 8]>::try_from(&k[key.len()..]).ok())
            .map(u64::from_be_bytes);
        letter.id = self
            .db
            .generate_id()?
            .max(last.map_or(0, |last| last.saturating_add(1)));
        let prefix = key.len();
        // A number is taken only if it is free: two letters filed at once never share one.
        loop {
            key.truncate(prefix);
            key.extend_from_slice(&letter.id.to_be_bytes());
            let value = serde_json::to_vec(&letter)
                .map_err(|e| StoreError::Damaged(format!("dead letter: {e}")))?;
            if self.dead.compare_and_swap(&key, None, Some(&value))? {
                return Ok(letter.id);
            }
            letter.id = letter.id.saturating_add(1);
        }
    }

    /// The dead letters of `endpoint`, oldest first.
    pub fn dead_letters(&self, endpoint: &str) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters_after(endpoint, None, usize::MAX)
    }

    /// At most `limit` dead letters of `endpoint` numbered after `after`, oldest first.
    pub fn dead_letters_after(
        &self,
        endpoint: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut prefix = endpoint.as_bytes().to_vec();
        prefix.push(0);
        let mut start = prefix.clone();
        if let Some(after) = after {
            start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        }
        self.dead
            .range(&start, after_prefix(&prefix).as_deref(), limit)?
            .into_iter()
            .map(|(_, value)| {
                serde_json::from_slice(&value)
                    .map_err(|e| StoreError::Damaged(format!("dead letter: {e}")))
            })
            .collect()
    }

    /// One dead letter of `endpoint`.
    pub fn dead_letter(&self, endpoint: &str, id: u64) -> Result<Option<DeadLetter>, StoreError> {
        let mut key = endpoint.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&id.to_be_bytes());
        self.dead
            .get(&key)?
            .map(|value| {
                serde_json::from_slice(&value)
                    .map_err(|e| StoreError::Damaged(format!("dead letter: {e}")))
            })
            .transpose()
    }

    /// How many households and resources `endpoint` holds, and how many dead letters wait.
    pub fn counts(&self, endpoint: &str) -> Result<(u64, u64, u64), StoreError> {
        let mut prefix = endpoint.as_bytes().to_vec();
        prefix.push(0);
        let (mut households, mut resources, mut last) = (0, 0, None);
        for (key, _) in self.ledger.scan_prefix(&prefix)? {
            resources += 1;
            let household = key.get(prefix.len()..prefix.len() + 16).map(<[u8]>::to_vec);
            if household != last {
                households += 1;
                last = household;
            }
        }
        let dead = self.dead.count_prefix(&prefix)?;
        Ok((households, resources, dead))
    }

    /// Takes a dead letter up again: removed from the list, its resource's ledger entry marked
    /// unwritten so the next synchronisation of its household writes (or withdraws) it anew.
    /// Whether there was such a dead letter.
    pub fn revive(&self, endpoint: &str, letter: &DeadLetter) -> Result<bool, StoreError> {
        if !self.remove_dead_letter(endpoint, letter.id)? {
            return Ok(false);
        }
        let key = Self::key(
            endpoint,
            letter.household,
            &letter.resource_type,
            letter.resource_id,
        );
        if let Some(value) = self.ledger.get(&key)? {
            let mut entry: Entry = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Damaged(format!("ledger entry: {e}")))?;
            entry.hash = String::new();
            entry.dead = None;
            let value = serde_json::to_vec(&entry)
                .map_err(|e| StoreError::Damaged(format!("entry: {e}")))?;
            self.ledger.insert(&key, &value)?;
        }
        Ok(true)
    }

    /// Removes a dead letter (it was replayed, or its resource was written since).
    pub fn remove_dead_letter(&self, endpoint: &str, id: u64) -> Result<bool, StoreError> {
        let mut key = endpoint.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&id.to_be_bytes());
        self.dead.remove(&key)
    }
}

impl Store {
    fn subscription_bytes(subscription: &Subscription) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(subscription).map_err(|e| damaged("subscription", e))
    }

    /// Keeps a new subscription, and that it follows its household.
    pub fn put_subscription(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let mut following = subscription.household.0.as_bytes().to_vec();
        following.extend_from_slice(subscription.id.as_bytes());
        self.following.insert(&following, &[])?;
        self.subscriptions.insert(
            subscription.id.as_bytes(),
            &Self::subscription_bytes(subscription)?,
        )?;
        self.db.flush()?;
        Ok(())
    }

    /// One subscription, and its stored bytes.
    fn subscription_as_stored(
        &self,
        id: Uuid,
    ) -> Result<Option<(Subscription, Vec<u8>)>, StoreError> {
        self.subscriptions
            .get(id.as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map(|s| (s, v))
                    .map_err(|e| damaged("subscription", e))
            })
            .transpose()
    }

    /// One subscription.
    pub fn subscription(&self, id: Uuid) -> Result<Option<Subscription>, StoreError> {
        Ok(self.subscription_as_stored(id)?.map(|(s, _)| s))
    }

    /// Every subscription.
    pub fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.subscriptions
            .scan_prefix(&[])?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| damaged("subscription", e)))
            .collect()
    }

    /// The subscriptions following `household`.
    pub fn subscriptions_of(
        &self,
        household: HouseholdId,
    ) -> Result<Vec<Subscription>, StoreError> {
        Ok(self
            .subscriptions_following(&[household])?
            .remove(&household)
            .unwrap_or_default())
    }

    /// The subscriptions following each of `households` that any follows: one look at the index
    /// for all of them (one round trip on PostgreSQL), then each subscription followed.
    pub fn subscriptions_following(
        &self,
        households: &[HouseholdId],
    ) -> Result<std::collections::HashMap<HouseholdId, Vec<Subscription>>, StoreError> {
        let prefixes: Vec<Vec<u8>> = households.iter().map(|h| h.0.as_bytes().to_vec()).collect();
        let mut out: std::collections::HashMap<HouseholdId, Vec<Subscription>> =
            std::collections::HashMap::new();
        for (key, _) in self.following.scan_prefixes(&prefixes)? {
            let (Some(household), Some(id)) = (
                key.get(..16).and_then(|b| Uuid::from_slice(b).ok()),
                key.get(16..32).and_then(|b| Uuid::from_slice(b).ok()),
            ) else {
                return Err(damaged("following", "a key of the wrong length"));
            };
            if let Some(subscription) = self.subscription(id)? {
                out.entry(HouseholdId(household))
                    .or_default()
                    .push(subscription);
            }
        }
        Ok(out)
    }

    /// Changes the subscription `id` with `change`, which says whether to change it and what
    /// entry of its events to write with the change. A compare-and-swap of the
    /// stored subscription, tried again when another change (of this process or another node) got
    /// there first, so no change is lost; the event is written with the swap that counts it
    /// (on PostgreSQL in one statement: an event is never written over by a count that lost its
    /// race). Durable before it returns.
    fn change_subscription(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut Subscription) -> Result<Change, StoreError>,
    ) -> Result<(), StoreError> {
        loop {
            let Some((mut subscription, stored)) = self.subscription_as_stored(id)? else {
                return Ok(());
            };
            let also = match change(&mut subscription)? {
                Change::Leave => return Ok(()),
                Change::Swap => None,
                Change::SwapWriting(event) => Some(event),
            };
            let changed = Self::subscription_bytes(&subscription)?;
            let swapped = match also {
                Some(event) => self.subscriptions.swap_writing(
                    id.as_bytes(),
                    &stored,
                    &changed,
                    &self.subscription_events,
                    event,
                )?,
                None => self.subscriptions.compare_and_swap(
                    id.as_bytes(),
                    Some(&stored),
                    Some(&changed),
                )?,
            };
            if swapped {
                self.db.flush()?;
                return Ok(());
            }
        }
    }

    /// Changes a subscription with `f` (no change of another is lost meanwhile).
    pub fn update_subscription(
        &self,
        id: Uuid,
        f: impl Fn(&mut Subscription),
    ) -> Result<(), StoreError> {
        self.change_subscription(id, |subscription| {
            f(subscription);
            Ok(Change::Swap)
        })
    }

    /// Numbers `event` (of the log's `position`) next for the subscription, unless it counted
    /// that position already or has ended (`off`, `error`); durable before it returns.
    pub fn count_subscription_event(
        &self,
        id: Uuid,
        position: u64,
        event: NotificationEvent,
    ) -> Result<(), StoreError> {
        self.change_subscription(id, |subscription| {
            if position < subscription.from_position
                || matches!(subscription.status, Status::Off | Status::Error)
            {
                return Ok(Change::Leave);
            }
            let mut event = event.clone();
            event.number = subscription.events + 1;
            subscription.events = event.number;
            subscription.from_position = position + 1;
            let mut key = id.as_bytes().to_vec();
            key.extend_from_slice(&event.number.to_be_bytes());
            let value = serde_json::to_vec(&event).map_err(|e| damaged("event", e))?;
            Ok(Change::SwapWriting((key, value)))
        })
    }

    /// The subscription's events numbered `since..=until`.
    pub fn subscription_events(
        &self,
        id: Uuid,
        since: u64,
        until: u64,
    ) -> Result<Vec<NotificationEvent>, StoreError> {
        let key = |n: u64| {
            let mut key = id.as_bytes().to_vec();
            key.extend_from_slice(&n.to_be_bytes());
            key
        };
        if since > until {
            return Ok(Vec::new());
        }
        // Keys of one subscription are all as long: the first key past `until`'s is its own
        // followed by a zero byte.
        let mut end = key(until);
        end.push(0);
        self.subscription_events
            .range(&key(since), Some(&end), usize::MAX)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| damaged("event", e)))
            .collect()
    }

    /// The number of the subscription's last event delivered (0: none).
    pub fn subscription_delivered(&self, id: Uuid) -> Result<u64, StoreError> {
        match self.delivered.get(id.as_bytes())? {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| damaged("delivered", "not a number")),
        }
    }

    /// Notes the number of the subscription's last event delivered; it only goes forward (a
    /// late note of an earlier number, from a node that sent it again, is ignored).
    pub fn set_subscription_delivered(&self, id: Uuid, number: u64) -> Result<(), StoreError> {
        loop {
            let stored = self.delivered.get(id.as_bytes())?;
            let current = match &stored {
                None => 0,
                Some(v) => <[u8; 8]>::try_from(v.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| damaged("delivered", "not a number"))?,
            };
            if stored.is_some() && number <= current {
                return Ok(());
            }
            if self.delivered.compare_and_swap(
                id.as_bytes(),
                stored.as_deref(),
                Some(&number.to_be_bytes()),
            )? {
                self.db.flush()?;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ledger_checkpoint_and_dead_letters_survive_reopening() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Damaged(e.to_string()))?;
        let (a, b) = (HouseholdId(Uuid::now_v7()), HouseholdId(Uuid::now_v7()));
        let goal = Uuid::now_v7();
        {
            let store = Store::open(dir.path())?;
            assert_eq!(store.checkpoint("jo")?, 0);
            let entry = Entry {
                remote: Some("r1".into()),
                hash: "h".into(),
                dead: None,
            };
            store.put("jo", a, "Goal", goal, &entry)?;
            store.put("jo", b, "Patient", goal, &entry)?;
            store.put("other", a, "Goal", goal, &entry)?;
            let letter = DeadLetter {
                id: 0,
                household: a,
                resource_type: "Goal".into(),
                resource_id: goal,
                method: "PUT".into(),
                status: 422,
                body: "no".into(),
                at_micros: 1,
                notice: None,
            };
            store.add_dead_letter("jo", letter)?;
            store.set_checkpoint("jo", 42).await?;
        }
        let store = Store::open(dir.path())?;
        assert_eq!(store.checkpoint("jo")?, 42);
        assert_eq!(store.checkpoint("other")?, 0);
        let ledger = store.ledger("jo", a)?;
        assert_eq!(ledger.len(), 1);
        assert_eq!((ledger[0].0.as_str(), ledger[0].1), ("Goal", goal));
        let mut households = store.households("jo")?;
        households.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(households, expected);
        let letters = store.dead_letters("jo")?;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].status, 422);
        assert!(store.dead_letters("other")?.is_empty());
        store.remove("jo", a, "Goal", goal)?;
        assert!(store.ledger("jo", a)?.is_empty());
        assert!(store.remove_dead_letter("jo", letters[0].id)?);
        assert!(store.dead_letters("jo")?.is_empty());
        Ok(())
    }

    #[test]
    fn a_restored_store_numbers_new_dead_letters_after_the_restored_ones() -> Result<(), StoreError>
    {
        let (from, to) = (
            tempfile::tempdir().map_err(|e| StoreError::Damaged(e.to_string()))?,
            tempfile::tempdir().map_err(|e| StoreError::Damaged(e.to_string()))?,
        );
        let letter = |status| DeadLetter {
            id: 0,
            household: HouseholdId(Uuid::now_v7()),
            resource_type: "Goal".into(),
            resource_id: Uuid::now_v7(),
            method: "PUT".into(),
            status,
            body: String::new(),
            at_micros: 1,
            notice: None,
        };
        let source = Store::open(from.path())?;
        for status in [400, 409, 422] {
            source.add_dead_letter("jo", letter(status))?;
        }
        naast_eventlog::storage::restore_trees(to.path(), &source.backup_entries()?)?;
        let restored = Store::open(to.path())?;
        restored.add_dead_letter("jo", letter(500))?;
        let statuses: Vec<u16> = restored
            .dead_letters("jo")?
            .iter()
            .map(|l| l.status)
            .collect();
        assert_eq!(
            statuses,
            [400, 409, 422, 500],
            "none overwritten, oldest first"
        );
        Ok(())
    }

    #[test]
    fn a_subscription_counts_each_position_once_and_numbers_without_gaps() -> Result<(), StoreError>
    {
        use naast_fhir_http::subscriptions::{Content, Owner, Status};
        let dir = tempfile::tempdir().map_err(|e| StoreError::Damaged(e.to_string()))?;
        let store = Store::open(dir.path())?;
        let household = HouseholdId(Uuid::now_v7());
        let subscription = Subscription {
            id: Uuid::now_v7(),
            household,
            filter: format!("Group?_id={household}"),
            owner: Owner {
                identity: naast_domain::event::Identity {
                    issuer: "i".into(),
                    subject: "s".into(),
                },
                role: naast_domain::vocab::PrincipalRole::Platform,
                organisation: None,
                client_id: Some("c".into()),
                acting_for: None,
            },
            endpoint: "http://h/hooks".into(),
            headers: Vec::new(),
            content: Content::IdOnly,
            reason: String::new(),
            status: Status::Active,
            events: 0,
            error: None,
            from_position: 10,
        };
        store.put_subscription(&subscription)?;
        let event = |at| NotificationEvent {
            number: 0,
            at_micros: at,
            focus: format!("Group/{household}"),
        };
        // Before it was made: not counted. Then 12, 15, and 15 again (a batch read again after
        // a crash): two events.
        store.count_subscription_event(subscription.id, 9, event(1))?;
        store.count_subscription_event(subscription.id, 12, event(2))?;
        store.count_subscription_event(subscription.id, 15, event(3))?;
        store.count_subscription_event(subscription.id, 15, event(4))?;
        let kept = store.subscription(subscription.id)?.map(|s| s.events);
        assert_eq!(kept, Some(2));
        let events = store.subscription_events(subscription.id, 1, 10)?;
        let numbers: Vec<(u64, u64)> = events.iter().map(|e| (e.number, e.at_micros)).collect();
        assert_eq!(numbers, [(1, 2), (2, 3)]);
        assert_eq!(store.subscriptions_of(household)?.len(), 1);
        assert!(
            store
                .subscriptions_of(HouseholdId(Uuid::now_v7()))?
                .is_empty()
        );
        store.set_subscription_delivered(subscription.id, 2)?;
        assert_eq!(store.subscription_delivered(subscription.id)?, 2);
        Ok(())
    }
}

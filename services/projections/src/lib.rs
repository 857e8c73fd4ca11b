//! Read models of naast, kept in sled and fed by the event log: the unified timeline of every
//! household. (Plans, goals and agreements are read from the household's state, on which each
//! read is also decided.)
//!
//! # Layout
//! - [`Projections`]: the store, its checkpoint, the projector loop ([`Projections::run`]),
//!   queries, and [`Projections::reset`] for a rebuild (`naast replay`).
//!
//! # How it stays right
//! The projector follows the whole log from its checkpoint (the next position to process). Each
//! batch of timeline entries is written together with the new checkpoint in one atomic sled
//! batch, so after a crash the store holds exactly the entries up to its checkpoint and the
//! projector resumes there. Everything here can be thrown away and rebuilt from the log.
//!
//! Keys (one sled tree, `timeline`, so one batch covers them all): `c` → checkpoint (u64 BE);
//! `v` → the format of the store (u64 BE; a store of another format is rebuilt at open);
//! `d` + household id (16 bytes) + the entry's day (Julian day, sign bit flipped, u32 BE) +
//! revision (u64 BE) → a timeline entry, so the keys hold the timeline in the order people read
//! it (by the day things happened, then as recorded) and a page is one range read. One key an
//! entry: each key costs the projector about as much as sealing and encoding the row together
//! (sled writes a key's change to its own log). An entry is found by its event through the
//! event's day (the day it names, or the day it was recorded). Entries are JSON, sealed
//! with the household's key when the store has a vault (the same key as its events, bound to the
//! row's key), so that erasing a household makes every copy of its rows unreadable, whatever
//! old segments sled keeps on disk.
//!
//! The store also finds a household by the id of anything in it (a member, goal, agreement, …),
//! for transports that address things by their own id (FHIR's `Goal/{id}`): `i` + id (16 bytes)
//! → household id (16 bytes), and `r` + household id + id → nothing, so an erasure removes its
//! household's ids too. These rows hold two random ids each and nothing else, so they are not
//! sealed.
//!
//! Each household that counts in effect reports has one row with what it contributes
//! (`naast_domain::report::Row`: member ids, answers, goals with their days, minutes; no names or
//! texts): `f` + household id → the row, sealed like the entries, replaced at each event that
//! changes it and removed when the family objects or the household is erased.
//!
//! It also finds the households someone may be involved in (a supporter's caseload, a
//! family's own households): `w` + who (32 bytes) + household id → nothing, and `W` + household
//! id + who → nothing for erasure, where "who" is a SHA-256 of an identity (issuer and subject)
//! or of an organisation's id, never the identity itself. A row is added when an identity or
//! organisation is linked to a member or contact, is granted access, or registers the household;
//! rows are not removed when that ends (a revoked grant, say): they name candidates, and every
//! household found is decided on again before anything of it is shown.

use naast_domain::ids::HouseholdId;
use naast_domain::timeline::{self, TimelineEntry};
use naast_domain::{DomainEvent, Household};
use naast_eventlog::{Direction, EventLog, RecordedEvent};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CHECKPOINT_KEY: &[u8] = b"c";
const FORMAT_KEY: &[u8] = b"v";
/// The store's format: 2 has sealed rows and the by-day index; 3 no longer keeps the current
/// plans, goals and agreements (reads are decided and served from the household's state); 4
/// finds households by the ids of what they hold; 5 by the ids of notes and logbook entries too;
/// 6 finds the households someone is involved in; 7 keeps what each household contributes to the
/// effect report; 8 keeps each entry under its day key only (no separate index).
const FORMAT: u64 = 8;
const DAY_PREFIX: u8 = b'd';
const ID_PREFIX: u8 = b'i';
const ID_OF_HOUSEHOLD_PREFIX: u8 = b'r';
const INVOLVED_PREFIX: u8 = b'w';
const INVOLVED_OF_HOUSEHOLD_PREFIX: u8 = b'W';
const REPORT_ROW_PREFIX: u8 = b'f';
/// A household as the projector keeps it between events: its state, the days the report needs,
/// and the revision of its next event.
struct Folded {
    state: Household,
    dates: naast_domain::report::Dates,
    next: u64,
}

type States = HashMap<HouseholdId, Folded>;

/// Households whose state the projector keeps between events.
const MAX_STATES: usize = 10_000;
/// Most events projected in one sled batch.
const MAX_BATCH: usize = 1_000;

/// What can go wrong with the read models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// sled failed.
    #[error("projection store: {0}")]
    Store(String),
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] naast_eventlog::Error),
    /// A stored entry cannot be read back.
    #[error("projection entry is damaged: {0}")]
    Damaged(String),
    /// The projection did not reach the position in time.
    #[error("the read model has not reached position {position} within {waited:?}")]
    NotReached {
        /// The position waited for.
        position: u64,
        /// How long.
        waited: Duration,
    },
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Self::Store(e.to_string())
    }
}

/// One entry of a household's timeline as stored, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// Global position of the event behind it.
    pub position: u64,
    /// Its revision in the household's stream.
    pub revision: u64,
    /// Its event type.
    pub event_type: String,
    /// When it was recorded (µs since 1970).
    pub recorded_at_micros: u64,
    /// Who recorded it.
    pub actor: Option<String>,
    /// The entry.
    pub entry: TimelineEntry,
}

/// The read-model store. Cheap to clone.
#[derive(Clone)]
pub struct Projections {
    _db: sled::Db,
    tree: sled::Tree,
    checkpoint: Arc<watch::Sender<u64>>,
    vault: Option<naast_vault::Vault>,
    /// Whether the projector's last attempt failed in its store (it is retrying from its
    /// checkpoint).
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Projections {
    /// Opens (or creates) the store in `dir`. The caller owns the data directory's lock.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let db = naast_eventlog::storage::open_sled(dir, 32 * 1024 * 1024)
            .map_err(|e| Error::Store(e.to_string()))?;
        let tree = db.open_tree("timeline")?;
        let format = tree.get(FORMAT_KEY)?.map(|v| u64_from(&v)).transpose()?;
        if format != Some(FORMAT) {
            if !tree.is_empty() {
                tracing::info!(
                    found = format.unwrap_or(1),
                    format = FORMAT,
                    "read models of an older format: rebuilding them from the event log"
                );
            }
            tree.clear()?;
            tree.insert(FORMAT_KEY, FORMAT.to_be_bytes().to_vec())?;
            tree.flush()?;
        }
        let checkpoint = match tree.get(CHECKPOINT_KEY)? {
            Some(value) => u64_from(&value)?,
            None => 0,
        };
        Ok(Self {
            _db: db,
            tree,
            checkpoint: Arc::new(watch::channel(checkpoint).0),
            vault: None,
            failing: Arc::default(),
        })
    }

    /// Opens sealed household payloads with `vault`, and destroys an erased household's key
    /// when its tombstone passes (so a crash between the tombstone and the key's destruction is
    /// finished here).
    pub fn with_vault(mut self, vault: naast_vault::Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The next log position the projector will process: everything before it is projected.
    pub fn checkpoint(&self) -> u64 {
        *self.checkpoint.borrow()
    }

    /// Throws every entry away, to rebuild from position 0.
    pub fn reset(&self) -> Result<(), Error> {
        self.tree.clear()?;
        self.tree
            .insert(FORMAT_KEY, FORMAT.to_be_bytes().to_vec())?;
        self.tree.flush()?;
        self.checkpoint.send_replace(0);
        Ok(())
    }

    /// Waits until everything before `position + 1` is projected, at most `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), Error> {
        let mut checkpoint = self.checkpoint.subscribe();
        let reached = tokio::time::timeout(timeout, checkpoint.wait_for(|c| *c > position)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            // The sender lives as long as `self`: a closed channel cannot happen here.
            Ok(Err(_)) | Err(_) => Err(Error::NotReached {
                position,
                waited: timeout,
            }),
        }
    }

    /// Entries of `household` in the order people read a timeline, by the day things happened
    /// and then in the order recorded (an entry recorded late about an earlier day stands on
    /// that day), from `from` on up to and including day `until`, that `keep` accepts: at most
    /// `limit`, and where to continue when there are more.
    pub fn timeline(
        &self,
        household: HouseholdId,
        from: TimelinePosition,
        until: Option<time::Date>,
        keep: impl Fn(&StoredEntry) -> bool,
        limit: usize,
    ) -> Result<(Vec<StoredEntry>, Option<TimelinePosition>), Error> {
        let start = day_key(household, from.day, from.revision);
        let end = day_key(household, until.unwrap_or(time::Date::MAX), u64::MAX);
        let mut entries = Vec::new();
        for item in self.tree.range(start..=end) {
            let (key, value) = item?;
            let Some(entry) = self.open_row::<StoredEntry>(household, &key, &value)? else {
                continue; // erased meanwhile
            };
            if !keep(&entry) {
                continue;
            }
            if entries.len() == limit {
                // Its key's day and revision.
                let next = TimelinePosition {
                    day: entry.entry.date,
                    revision: entry.revision,
                };
                return Ok((entries, Some(next)));
            }
            entries.push(entry);
        }
        Ok((entries, None))
    }

    /// The entry of household event `recorded`, once projected; `None` when it has none (it
    /// cannot be read, or its household was erased).
    pub fn entry_of(&self, recorded: &RecordedEvent) -> Result<Option<StoredEntry>, Error> {
        let Some(household) = HouseholdId::of_stream(&recorded.stream_id) else {
            return Ok(None);
        };
        let stored = match decode(self.vault.as_ref(), household, recorded) {
            Ok(stored) => stored,
            Err(Unreadable::Unavailable(e)) => return Err(Error::Store(e)),
            Err(Unreadable::Erased | Unreadable::Bad(_)) => return Ok(None),
        };
        let day = stored.happened_on.unwrap_or_else(|| recorded_on(recorded));
        // The projector keyed the entry by its date, which is the event's alone.
        let key = day_key(
            household,
            timeline::date_of(&stored.event, day),
            recorded.revision,
        );
        match self.tree.get(&key)? {
            Some(value) => self.open_row(household, &key, &value),
            None => Ok(None),
        }
    }

    /// A row as stored: opened with the household's key when sealed; `None` when that key is
    /// gone (the household was erased and its rows are being purged).
    fn open_row<T: serde::de::DeserializeOwned>(
        &self,
        household: HouseholdId,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<T>, Error> {
        let plain = match naast_vault::Vault::open_with(
            self.vault.as_ref(),
            household.0,
            row_id(household, key),
            value,
        ) {
            Ok(plain) => plain,
            Err(naast_vault::VaultError::Erased(_)) => return Ok(None),
            Err(e) => return Err(Error::Damaged(e.to_string())),
        };
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| Error::Damaged(e.to_string()))
    }

    /// `row` as it is stored under `key`: sealed with the household's key when there is a vault.
    /// `create` lets the key be made (a household whose events predate encryption has none);
    /// otherwise a household whose key is gone (erased meanwhile) gets `None`: nothing of it is
    /// written readable again.
    fn seal_row(
        &self,
        household: HouseholdId,
        key: &[u8],
        row: &[u8],
        create: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        let Some(vault) = &self.vault else {
            return Ok(Some(row.to_vec()));
        };
        let id = row_id(household, key);
        let sealed = if create {
            vault.seal(household.0, id, row)
        } else {
            vault.seal_derived(household.0, id, row)
        };
        match sealed {
            Ok(sealed) => Ok(Some(sealed)),
            Err(naast_vault::VaultError::Erased(_)) => Ok(None),
            Err(e) => Err(Error::Store(e.to_string())),
        }
    }

    /// The household that holds the member, contact, plan, goal, agreement, indication or
    /// grant `id` (or that is `id`), as far as the projector has come; `None` when no household
    /// does (or did: an erased household's ids are forgotten with it).
    pub fn household_holding(&self, id: uuid::Uuid) -> Result<Option<HouseholdId>, Error> {
        let mut key = vec![ID_PREFIX];
        key.extend_from_slice(id.as_bytes());
        match self.tree.get(key)? {
            Some(value) => uuid::Uuid::from_slice(&value)
                .map(|id| Some(HouseholdId(id)))
                .map_err(|_| Error::Damaged("a household id of the wrong length".into())),
            None => Ok(None),
        }
    }

    /// The households `identity`, or the organisation `organisation` (its professionals and
    /// supporters), may be involved in: linked to a member or contact, granted access, or having
    /// registered it. Candidates only: whether they may still see anything of one is decided on
    /// the household itself.
    pub fn households_involving(
        &self,
        identity: &naast_domain::Identity,
        organisation: Option<&str>,
    ) -> Result<Vec<HouseholdId>, Error> {
        let mut whos = vec![who_of_identity(identity)];
        whos.extend(organisation.map(who_of_organisation));
        let mut found = std::collections::BTreeSet::new();
        for who in whos {
            let mut start = vec![INVOLVED_PREFIX];
            start.extend_from_slice(&who);
            for key in self.tree.scan_prefix(&start).keys() {
                let key = key?;
                let id = key
                    .get(33..49)
                    .and_then(|id| uuid::Uuid::from_slice(id).ok())
                    .ok_or_else(|| {
                        Error::Damaged("an involvement key of the wrong length".into())
                    })?;
                found.insert(HouseholdId(id));
            }
        }
        Ok(found.into_iter().collect())
    }

    /// What every household that counts in effect reports contributes, as far as the projector
    /// has come (households that object, and erased ones, have no row).
    pub fn report_rows(&self) -> Result<Vec<(HouseholdId, naast_domain::report::Row)>, Error> {
        let mut rows = Vec::new();
        for item in self.tree.scan_prefix([REPORT_ROW_PREFIX]) {
            let (key, value) = item?;
            let household = key
                .get(1..17)
                .and_then(|id| uuid::Uuid::from_slice(id).ok())
                .map(HouseholdId)
                .ok_or_else(|| Error::Damaged("a report row key of the wrong length".into()))?;
            if let Some(row) = self.open_row(household, &key, &value)? {
                rows.push((household, row));
            }
        }
        Ok(rows)
    }

    /// Whether the household has any entry.
    pub fn has_household(&self, household: HouseholdId) -> Result<bool, Error> {
        let start = household_key(DAY_PREFIX, household);
        Ok(self.tree.scan_prefix(start).next().transpose()?.is_some())
    }

    /// Whether the projector's last attempt failed in its own store (sled), so that it is
    /// retrying from its checkpoint: a store that keeps failing, on a full or failing disk.
    /// Other failures (a damaged entry, the log) are not counted: reopening would not heal them.
    pub fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Projects the log from the checkpoint on, then follows it live, until the log closes.
    pub async fn run(&self, log: EventLog) -> Result<(), Error> {
        if self.checkpoint() > log.head() {
            // The store is ahead of the log it is meant to follow: it belongs to other data.
            tracing::warn!("read models are ahead of the event log; rebuilding them");
            self.reset()?;
        }
        let mut states: States = HashMap::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow(&log, &mut states).await {
                Ok(()) => return Ok(()),
                // The log is closed: there is nothing more to wait for, and a store that keeps
                // failing (a full disk) must not keep the process from stopping.
                Err(e) if log.is_closed() => return Err(e),
                Err(e) => {
                    // Only a failing store is what a restart can heal (see `failing`).
                    self.failing.store(
                        matches!(e, Error::Store(_)),
                        std::sync::atomic::Ordering::SeqCst,
                    );
                    // A read model that stops is worse than one that is late: report at once,
                    // then start again from the checkpoint (which is always consistent).
                    tracing::error!(error = %e, retry_in = ?backoff, "projector failed; restarting from its checkpoint");
                    states.clear();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Follows the log from the checkpoint until it closes (`Ok`) or something fails.
    async fn follow(&self, log: &EventLog, states: &mut States) -> Result<(), Error> {
        let mut subscription = log.subscribe_all(self.checkpoint());
        loop {
            let first = match subscription.next().await {
                Ok(event) => event,
                Err(naast_eventlog::Error::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let mut events = vec![first];
            events.extend(subscription.ready(MAX_BATCH - 1));
            self.project(log, &events, states)?;
            self.failing
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Projects until the checkpoint has reached the log's head; for rebuilds.
    pub async fn catch_up(&self, log: &EventLog) -> Result<u64, Error> {
        let head = log.head();
        let mut states = HashMap::new();
        while self.checkpoint() < head {
            let events = log.read_all(self.checkpoint(), Direction::Forwards, MAX_BATCH)?;
            if events.is_empty() {
                break;
            }
            self.project(log, &events, &mut states)?;
        }
        Ok(self.checkpoint())
    }

    fn project(
        &self,
        log: &EventLog,
        events: &[RecordedEvent],
        states: &mut States,
    ) -> Result<(), Error> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        // Households are forgotten between batches only, so every one this batch touches is
        // still known at its end.
        if states.len() + events.len() > MAX_STATES {
            states.clear();
        }
        let mut batch = sled::Batch::default();
        // The households whose report row this batch changes, each written once at its end
        // (with whether its key may be made, as for its entries).
        let mut report_rows: std::collections::BTreeMap<HouseholdId, bool> =
            std::collections::BTreeMap::new();
        for recorded in events {
            let Some(household) = HouseholdId::of_stream(&recorded.stream_id) else {
                continue; // not a household stream: raw integrator events have no timeline
            };
            let stored = match decode(self.vault.as_ref(), household, recorded) {
                Ok(stored) => stored,
                Err(Unreadable::Erased) => continue, // forgotten: nothing to show
                Err(Unreadable::Unavailable(e)) => return Err(Error::Store(e)),
                Err(Unreadable::Bad(e)) => {
                    tracing::error!(position = recorded.position, error = %e, "household event cannot be read; left off the timeline");
                    continue;
                }
            };
            if matches!(stored.event, DomainEvent::HouseholdErased { .. }) {
                // Everything before the tombstone is committed first, then the household's key
                // is destroyed and all its rows go, with the checkpoint past the tombstone.
                batch.insert(CHECKPOINT_KEY, recorded.position.to_be_bytes().to_vec());
                self.tree.apply_batch(std::mem::take(&mut batch))?;
                self.checkpoint.send_replace(recorded.position);
                if let Some(vault) = &self.vault
                    && let Err(e) = vault.erase(household.0)
                {
                    // The household is forgotten in this process either way; the key file goes
                    // at the next start (`naast serve` destroys the key of every household whose
                    // stream ends in a tombstone). Stopping here would stop every household's
                    // read models.
                    tracing::error!(%household, error = %e, "erased, but the key file could not be destroyed yet");
                }
                for prefix in [
                    DAY_PREFIX,
                    REPORT_ROW_PREFIX,
                    ID_OF_HOUSEHOLD_PREFIX,
                    INVOLVED_OF_HOUSEHOLD_PREFIX,
                ] {
                    for key in self
                        .tree
                        .scan_prefix(household_key(prefix, household))
                        .keys()
                    {
                        let key = key?;
                        if prefix == ID_OF_HOUSEHOLD_PREFIX
                            && let Some(id) = key.get(17..33)
                        {
                            let mut forward = vec![ID_PREFIX];
                            forward.extend_from_slice(id);
                            batch.remove(forward);
                        }
                        if prefix == INVOLVED_OF_HOUSEHOLD_PREFIX
                            && let Some(who) = key.get(17..49)
                        {
                            batch.remove(involved_keys(who, household).0);
                        }
                        batch.remove(key);
                    }
                }
                states.remove(&household);
                report_rows.remove(&household);
                continue;
            }
            let folded = state_before(
                log,
                states,
                household,
                recorded.revision,
                self.vault.as_ref(),
            )?;
            // Rows are sealed with the key the event was sealed with; an event stored in the
            // clear (written before encryption) may have its household's key made now.
            let create_key = !naast_vault::Vault::is_sealed(&recorded.payload);
            let introduced = match &stored.event {
                DomainEvent::HouseholdRegistered { .. } => Some(household.0),
                event => event.introduces(),
            };
            if let Some(id) = introduced {
                let (forward, reverse) = id_keys(household, id);
                batch.insert(forward, household.0.as_bytes().to_vec());
                batch.insert(reverse, Vec::new());
            }
            for who in involved(&stored.event) {
                let (forward, reverse) = involved_keys(&who, household);
                batch.insert(forward, Vec::new());
                batch.insert(reverse, Vec::new());
            }
            let day = stored.happened_on.unwrap_or_else(|| recorded_on(recorded));
            let entry = timeline::entry(&folded.state, &stored.event, day);
            folded.state.apply(&stored.event);
            folded.dates.apply(&stored.event, day);
            folded.next = recorded.revision + 1;
            if naast_domain::report::concerns(&stored.event) {
                *report_rows.entry(household).or_default() |= create_key;
            }
            let value = StoredEntry {
                position: recorded.position,
                revision: recorded.revision,
                event_type: recorded.event_type.clone(),
                recorded_at_micros: recorded.recorded_at_micros,
                actor: recorded.metadata.actor.clone(),
                entry,
            };
            // Keyed by the entry's day, which `entry_of` finds from the event alone.
            let key = day_key(household, value.entry.date, recorded.revision);
            // Plain data: serialising cannot fail.
            let row = serde_json::to_vec(&value).unwrap_or_default();
            if let Some(row) = self.seal_row(household, &key, &row, create_key)? {
                batch.insert(key, row);
            }
        }
        for (household, create_key) in report_rows {
            let key = report_row_key(household);
            let row = states
                .get(&household)
                .and_then(|f| naast_domain::report::Row::of(&f.state, &f.dates));
            match row {
                Some(row) => {
                    // Plain data: serialising cannot fail.
                    let row = serde_json::to_vec(&row).unwrap_or_default();
                    if let Some(row) = self.seal_row(household, &key, &row, create_key)? {
                        batch.insert(key, row);
                    }
                }
                None => batch.remove(key),
            }
        }
        let checkpoint = last.position + 1;
        batch.insert(CHECKPOINT_KEY, checkpoint.to_be_bytes().to_vec());
        self.tree.apply_batch(batch)?;
        self.checkpoint.send_replace(checkpoint);
        Ok(())
    }
}

/// Why a household event is left off the timeline.
enum Unreadable {
    /// Its household was erased.
    Erased,
    /// It is damaged.
    Bad(String),
    /// Its key cannot be read right now (try again: nothing is skipped for that).
    Unavailable(String),
}

/// The household event `recorded`, opened with `vault` when sealed.
fn decode(
    vault: Option<&naast_vault::Vault>,
    household: HouseholdId,
    recorded: &RecordedEvent,
) -> Result<naast_domain::event::Stored, Unreadable> {
    let payload = naast_vault::Vault::open_with(vault, household.0, recorded.id, &recorded.payload)
        .map_err(|e| match e {
            naast_vault::VaultError::Erased(_) => Unreadable::Erased,
            naast_vault::VaultError::Io { .. } | naast_vault::VaultError::Poisoned(_) => {
                Unreadable::Unavailable(e.to_string())
            }
            e => Unreadable::Bad(e.to_string()),
        })?;
    DomainEvent::from_payload(&payload).map_err(|e| Unreadable::Bad(e.to_string()))
}

/// The state of `household` just before `revision`, from memory or rebuilt from its stream.
fn state_before<'a>(
    log: &EventLog,
    states: &'a mut States,
    household: HouseholdId,
    revision: u64,
    vault: Option<&naast_vault::Vault>,
) -> Result<&'a mut Folded, Error> {
    let fresh = states.get(&household).is_some_and(|f| f.next == revision);
    if !fresh {
        let mut folded = Folded {
            state: Household::default(),
            dates: naast_domain::report::Dates::default(),
            next: revision,
        };
        let stream = household.stream_id();
        let mut next = 0;
        while next < revision {
            let limit = usize::try_from(revision - next)
                .unwrap_or(usize::MAX)
                .min(MAX_BATCH);
            let events = log.read_stream(&stream, next, Direction::Forwards, limit)?;
            let Some(last) = events.last() else { break };
            next = last.revision + 1;
            for event in &events {
                if let Ok(stored) = decode(vault, household, event) {
                    let day = stored.happened_on.unwrap_or_else(|| recorded_on(event));
                    folded.state.apply(&stored.event);
                    folded.dates.apply(&stored.event, day);
                }
            }
        }
        states.insert(household, folded);
    }
    // Inserted just above when missing or stale.
    states
        .get_mut(&household)
        .ok_or_else(|| Error::Damaged("household state vanished".into()))
}

/// The day (in the Netherlands) the log recorded an event.
pub fn recorded_on(event: &RecordedEvent) -> time::Date {
    let nanos = i128::from(event.recorded_at_micros) * 1_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(naast_domain::calendar::dutch_date)
        .unwrap_or(time::Date::MIN)
}

/// Where a timeline listing starts or continues: a day, and a revision within that day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimelinePosition {
    /// The day.
    pub day: time::Date,
    /// The first revision of that day to include.
    pub revision: u64,
}

impl TimelinePosition {
    /// The start of every timeline.
    pub const START: Self = Self {
        day: time::Date::MIN,
        revision: 0,
    };

    /// The start of day `day`.
    pub fn day(day: time::Date) -> Self {
        Self { day, revision: 0 }
    }

    /// As a page token: `d<julian day>.<revision>`.
    pub fn token(self) -> String {
        format!("d{}.{}", self.day.to_julian_day(), self.revision)
    }

    /// From a page token; `None` when it is not one.
    pub fn parse(token: &str) -> Option<Self> {
        let (day, revision) = token.strip_prefix('d')?.split_once('.')?;
        Some(Self {
            day: time::Date::from_julian_day(day.parse().ok()?).ok()?,
            revision: revision.parse().ok()?,
        })
    }
}

/// The id a row is sealed under: its key, in the household's own namespace.
fn row_id(household: HouseholdId, key: &[u8]) -> uuid::Uuid {
    uuid::Uuid::new_v5(&household.0, key)
}

/// The rows finding `household` by `id`: forwards, and back for erasure.
fn id_keys(household: HouseholdId, id: uuid::Uuid) -> (Vec<u8>, Vec<u8>) {
    let mut forward = Vec::with_capacity(17);
    forward.push(ID_PREFIX);
    forward.extend_from_slice(id.as_bytes());
    let mut reverse = Vec::with_capacity(33);
    reverse.push(ID_OF_HOUSEHOLD_PREFIX);
    reverse.extend_from_slice(household.0.as_bytes());
    reverse.extend_from_slice(id.as_bytes());
    (forward, reverse)
}

/// Who `event` involves in its household: identities and organisations, as hashed for the
/// involvement rows.
fn involved(event: &DomainEvent) -> Vec<[u8; 32]> {
    use naast_domain::Grantee;
    match event {
        DomainEvent::HouseholdRegistered {
            registered_by: Some(identity),
            ..
        } => vec![who_of_identity(identity)],
        DomainEvent::IdentityLinked {
            identity,
            organisation_id,
            ..
        } => identity
            .iter()
            .map(who_of_identity)
            .chain(organisation_id.as_deref().map(who_of_organisation))
            .collect(),
        DomainEvent::AccessGranted { grantee, .. } => match grantee {
            Grantee::Person { identity } => vec![who_of_identity(identity)],
            Grantee::Organisation { id } => vec![who_of_organisation(id)],
            Grantee::Platform { .. } => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn who_of_identity(identity: &naast_domain::Identity) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(b"identity\0");
    hash.update(identity.issuer.as_bytes());
    hash.update(b"\0");
    hash.update(identity.subject.as_bytes());
    hash.finalize().into()
}

fn who_of_organisation(id: &str) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(b"organisation\0");
    hash.update(id.as_bytes());
    hash.finalize().into()
}

/// The rows finding `household` by `who`: forwards, and back for erasure.
fn involved_keys(who: &[u8], household: HouseholdId) -> (Vec<u8>, Vec<u8>) {
    let mut forward = Vec::with_capacity(49);
    forward.push(INVOLVED_PREFIX);
    forward.extend_from_slice(who);
    forward.extend_from_slice(household.0.as_bytes());
    let mut reverse = Vec::with_capacity(49);
    reverse.push(INVOLVED_OF_HOUSEHOLD_PREFIX);
    reverse.extend_from_slice(household.0.as_bytes());
    reverse.extend_from_slice(who);
    (forward, reverse)
}

fn report_row_key(household: HouseholdId) -> Vec<u8> {
    household_key(REPORT_ROW_PREFIX, household)
}

/// `prefix` + household id: a household's report row, and where its keys of a kind start.
fn household_key(prefix: u8, household: HouseholdId) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(prefix);
    key.extend_from_slice(household.0.as_bytes());
    key
}

fn day_key(household: HouseholdId, day: time::Date, revision: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(29);
    key.push(DAY_PREFIX);
    key.extend_from_slice(household.0.as_bytes());
    // Flipping the sign bit orders negative Julian days (before 4713 BC) before positive ones.
    key.extend_from_slice(&(day.to_julian_day().cast_unsigned() ^ 0x8000_0000).to_be_bytes());
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

fn u64_from(value: &[u8]) -> Result<u64, Error> {
    value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Damaged("checkpoint is not a u64".into()))
}

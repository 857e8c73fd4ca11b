//! The [`EventLog`] handle: opening, appending, reading, verifying, closing.

use crate::keys;
use crate::limits;
use crate::record::{self, GENESIS_HASH, RecordedEvent};
use crate::storage::{SledStorage, Storage};
use crate::subscription::{Subscription, Target};
use crate::writer::{AppendRequest, Command, Writer};
use crate::{Error, NewEvent, Result};
use std::collections::HashMap;
use std::fmt;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What the caller expects of a stream before appending to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedRevision {
    /// Append whatever the stream's state.
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(u64),
}

impl ExpectedRevision {
    /// The integer coding used on the wire (as EventStoreDB does): `-1` any, `-2` no stream,
    /// `-3` stream exists, `0` or more an exact revision.
    pub fn to_raw(self) -> i64 {
        match self {
            Self::Any => -1,
            Self::NoStream => -2,
            Self::StreamExists => -3,
            Self::Exact(r) => i64::try_from(r).unwrap_or(i64::MAX),
        }
    }

    /// Whether a stream whose last revision is `actual` (`None`: no events) meets this.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual.is_none(),
            Self::StreamExists => actual.is_some(),
            Self::Exact(r) => actual == Some(r),
        }
    }
}

impl TryFrom<i64> for ExpectedRevision {
    type Error = Error;

    /// Decodes the wire coding of [`ExpectedRevision::to_raw`]; any other negative value is an
    /// `InvalidInput` error naming `expected_revision`.
    fn try_from(raw: i64) -> Result<Self> {
        match raw {
            -1 => Ok(Self::Any),
            -2 => Ok(Self::NoStream),
            -3 => Ok(Self::StreamExists),
            r => u64::try_from(r)
                .map(Self::Exact)
                .map_err(|_| Error::InvalidInput {
                    field: "expected_revision".into(),
                    reason: format!(
                        "{r} is not a revision (0 or more) nor -1 (any), -2 (no stream) or -3 (stream exists)"
                    ),
                }),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(r) => write!(f, "revision {r}"),
        }
    }
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Stream revision of the first event appended.
    pub first_revision: u64,
    /// Stream revision of the last event appended: the stream's revision after the append.
    pub last_revision: u64,
    /// Global position of the first event appended.
    pub first_position: u64,
    /// Global position of the last event appended.
    pub last_position: u64,
    /// True when these events had been appended by an identical earlier call, and this call wrote
    /// nothing but returns that call's outcome.
    pub replayed: bool,
}

/// Which way a read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From lower to higher revisions or positions.
    Forwards,
    /// From higher to lower revisions or positions.
    Backwards,
}

/// Read backwards from the end: pass as `from` with [`Direction::Backwards`].
pub const END: u64 = u64::MAX;

/// When an append counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged only after the storage has synced it to disk. Concurrent appends share one
    /// sync (group commit). The production mode.
    Durable,
    /// Acknowledged once written to the storage's memory; the engine flushes in the background
    /// (sled: every 500 ms). A crash can lose the last acknowledged appends, never leave half an
    /// append, nor break the hash chain. For tests and bulk imports only.
    Async,
}

/// How to open the log.
#[derive(Clone, Debug)]
pub struct Options {
    /// When an append is acknowledged.
    pub durability: Durability,
    /// sled's page cache, in bytes. sled's memory grows with it; 64 MiB serves a region.
    pub cache_capacity_bytes: u64,
    /// How many committed batches the live broadcast holds for subscribers. A subscriber that falls
    /// further behind is switched back to reading from storage, so memory stays bounded.
    pub live_buffer_batches: usize,
    /// Most events the writer commits in one batch (one sync).
    pub max_group_events: usize,
    /// How many appends may wait for the writer before callers wait to enqueue.
    pub write_queue: usize,
    /// The `log` label of this log's metrics (`events`, `audit`, …).
    pub metrics_name: &'static str,
    /// Appends are refused ([`Error::DiskFull`]) while the disk holding the log has less free
    /// than this, so that the space left serves what must go on (see `crate::space`); 0 (the
    /// default) keeps no reserve. Only for a log opened on a directory.
    pub min_free_bytes: u64,
    /// On PostgreSQL: this process is the log's only writer while it is open, and an open by
    /// any other process is refused (else several processes may write it; see
    /// [`crate::PgStorage`]). Ignored on a directory, which only one process can open anyway.
    pub sole_writer: bool,
    /// On PostgreSQL: opened by a restore (`naast restore --storage`), which may open a database
    /// that the mark of an unfinished restore keeps every other process off.
    pub restoring: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::Durable,
            cache_capacity_bytes: 64 * 1024 * 1024,
            live_buffer_batches: 1024,
            max_group_events: 4096,
            write_queue: 4096,
            metrics_name: "events",
            min_free_bytes: 0,
            sole_writer: false,
            restoring: false,
        }
    }
}

/// Result of [`EventLog::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked before the end or the first break.
    pub events: u64,
    /// Distinct streams seen in them.
    pub streams: u64,
    /// The first broken or missing link, if any.
    pub first_break: Option<BrokenLink>,
    /// Index entries pointing at or past the head (debris of a write that never finished, or
    /// of one still being committed): lookups ignore them.
    pub debris: u64,
    /// Such entries that opening the log found and removed.
    pub swept_debris: u64,
}

/// A place where the log is not what it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// Global position where the problem starts.
    pub position: u64,
    /// What is wrong there.
    pub reason: String,
}

/// Asks the writer to read what other processes committed, unless it was asked already and has
/// not done so yet (`pending`).
fn ask_to_follow(pending: &std::sync::atomic::AtomicBool, queue: &mpsc::Sender<Command>) {
    if pending.swap(true, Ordering::AcqRel) {
        return; // one is queued already
    }
    if queue.try_send(Command::Follow).is_err() {
        // A full queue: the groups in it follow anyway.
        pending.store(false, Ordering::Release);
    }
}

/// Creates `dir` if need be and takes its `LOCK`, held for as long as the file is: fails with
/// [`Error::Locked`] when another process has it.
fn lock_dir(dir: &Path) -> Result<File> {
    let io = |e: std::io::Error| Error::Storage(crate::StorageError::new("open", e));
    std::fs::create_dir_all(dir).map_err(io)?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

/// State shared by the handle, the writer and subscriptions.
pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn Storage>,
    /// Number of events committed (durable in [`Durability::Durable`]): the next position to
    /// write. Reads never return an event at or beyond it, so a reader never sees an event that
    /// a crash could still take away.
    pub(crate) committed: AtomicU64,
    /// Told each new head after `committed` moved (see [`EventLog::read_the_others`]).
    pub(crate) head_moved: tokio::sync::watch::Sender<u64>,
    /// Where subscribers join the writer's broadcast of committed batches; `None` once the writer
    /// has stopped, which ends every subscription after its catch-up.
    pub(crate) live: Mutex<Option<broadcast::Sender<Arc<[RecordedEvent]>>>>,
    /// Set when a write or sync failed: what is on disk is unknown until the log is reopened.
    pub(crate) poisoned: std::sync::OnceLock<String>,
    /// Written when the log closes cleanly (after its final sync), removed when it opens: a log
    /// opened without it may hold index entries of a write that never finished.
    pub(crate) clean_marker: Option<std::path::PathBuf>,
    /// Index entries past the head that opening found and removed.
    pub(crate) swept_debris: u64,
    /// The `log` label of its metrics.
    pub(crate) metrics_name: &'static str,
    /// The reserve of free disk space the log keeps, when it keeps one.
    pub(crate) space: Option<crate::space::Space>,
    /// Set while a [`Command::Follow`] waits in the writer's queue (shared engines), so a burst
    /// of wakes queues one.
    pub(crate) follow_pending: Arc<std::sync::atomic::AtomicBool>,
    /// Held for the life of the log: the data directory's lock.
    _lock: Option<File>,
}

/// The event log: streams of events with per-stream revisions and one global order, durable
/// before acknowledged, hash-chained, subscribable. Cheap to clone; all clones share one log.
///
/// Appends from all clones go to one writer thread that commits them in groups; reads run on the
/// caller's thread straight against storage.
#[derive(Clone)]
pub struct EventLog {
    pub(crate) shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

impl EventLog {
    /// Opens (or creates) the log in `dir` on sled.
    ///
    /// The directory holds a `LOCK` file, locked while the log is open, and sled's files under
    /// `sled/`. Fails with [`Error::Locked`] if another process has it open.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        let io = |e: std::io::Error| Error::Storage(crate::StorageError::new("open", e));
        let lock = lock_dir(dir)?;
        let storage = SledStorage::open(&dir.join("sled"), options.cache_capacity_bytes)?;
        let marker = dir.join(CLEAN_MARKER);
        let clean = marker.exists();
        if clean {
            std::fs::remove_file(&marker).map_err(io)?;
        }
        // `LOCK`, `sled/` and the marker's removal in the directory, and the directory in its
        // parent (an audit year in `audit/`, say), must survive a power cut too.
        let parent = dir.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        for made in [Some(dir), parent].into_iter().flatten() {
            crate::storage::sync_dir(made)?;
        }
        let space = (options.min_free_bytes > 0).then(|| {
            crate::space::Space::new(dir.to_owned(), options.min_free_bytes, options.metrics_name)
        });
        Self::start(
            Arc::new(storage),
            options,
            Some(lock),
            Some(marker),
            clean,
            space,
        )
    }

    /// Opens (or creates) the log in the PostgreSQL database at `url` ([`crate::PgStorage`]):
    /// the schema is migrated, and the writer's lock taken, waiting up to ten seconds for a
    /// process that just died to let it go. Fails when another process keeps it.
    pub fn open_postgres(url: &str, options: Options) -> Result<Self> {
        Self::postgres(url, options, None)
    }

    /// As [`EventLog::open_postgres`], holding `dir`'s `LOCK` too while the log is open (the
    /// data directory of the stores kept beside it): a second process on that directory fails
    /// with [`Error::Locked`].
    pub fn open_postgres_in(url: &str, dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let lock = lock_dir(dir.as_ref())?;
        Self::postgres(url, options, Some(lock))
    }

    /// As [`EventLog::open_postgres`], for a log in a table of its own (made when missing): a
    /// year of the audit log, say. Its writers take turns under a lock of its own.
    pub fn open_postgres_table(url: &str, table: &str, options: Options) -> Result<Self> {
        let storage = crate::PgStorage::connect_table(url, table, &options)?;
        Self::start(Arc::new(storage), options, None, None, true, None)
    }

    fn postgres(url: &str, options: Options, lock: Option<File>) -> Result<Self> {
        let storage = crate::PgStorage::connect(url, &options)?;
        // A group is one statement, so a write that failed left nothing behind: there is no
        // debris past the head to look for (which would read every index entry over the
        // network at each open).
        Self::start(Arc::new(storage), options, lock, None, true, None)
    }

    /// Opens the log at `location`: a PostgreSQL database when it is a `postgres://` or
    /// `postgresql://` URL, else a directory on sled.
    pub fn open_at(location: &str, options: Options) -> Result<Self> {
        if crate::postgres::is_url(location) {
            Self::open_postgres(location, options)
        } else {
            Self::open(location, options)
        }
    }

    /// Opens the log on any [`Storage`], e.g. [`crate::MemoryStorage`].
    pub fn with_storage(storage: Arc<dyn Storage>, options: Options) -> Result<Self> {
        Self::start(storage, options, None, None, false, None)
    }

    fn start(
        storage: Arc<dyn Storage>,
        options: Options,
        lock: Option<File>,
        clean_marker: Option<std::path::PathBuf>,
        clean: bool,
        space: Option<crate::space::Space>,
    ) -> Result<Self> {
        // What recovery found may include groups written but never synced (the process died
        // before their sync, so they were never acknowledged). Make them durable before anyone
        // can read them, so nothing read can vanish in a later power cut. (After a *failed*
        // sync, reopening in the same boot may still see data that never reached the disk; no
        // sync can tell.)
        storage.sync()?;
        let (next_position, last_hash) = recover_tail(storage.as_ref())?;
        // After a crash or a failed write (sled has no rollback), index entries may point at
        // positions no record holds: left, a later record at that position would seem to be
        // theirs. Lookups ignore them; here they go.
        let swept_debris = if clean {
            0
        } else {
            let debris = index_debris(storage.as_ref(), next_position)?;
            let count = debris.len() as u64;
            if count > 0 {
                tracing::warn!(
                    count,
                    head = next_position,
                    "index entries past the log's head (left by a write that never finished) removed"
                );
                storage.remove(debris)?;
                storage.sync()?;
            }
            count
        };
        let (live, _) = broadcast::channel(options.live_buffer_batches.max(1));
        let shared = Arc::new(Shared {
            storage,
            committed: AtomicU64::new(next_position),
            head_moved: tokio::sync::watch::Sender::new(next_position),
            live: Mutex::new(Some(live.clone())),
            poisoned: std::sync::OnceLock::new(),
            clean_marker,
            swept_debris,
            metrics_name: options.metrics_name,
            space,
            follow_pending: Arc::default(),
            _lock: lock,
        });
        let (commands, receiver) = mpsc::channel(options.write_queue.max(1));
        let writer = Writer::new(shared.clone(), live, &options, next_position, last_hash)
            .map_err(|e| Error::Storage(crate::StorageError::new("open", e)))?;
        std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| Error::Storage(crate::StorageError::new("open", e)))?;
        if shared.storage.is_shared() {
            // Weak: the engine's watch must not keep the writer's queue open after the log.
            let (queue, pending) = (commands.downgrade(), shared.follow_pending.clone());
            shared.storage.watch(Box::new(move || {
                if let Some(queue) = queue.upgrade() {
                    ask_to_follow(&pending, &queue);
                }
            }));
        }
        Ok(Self { shared, commands })
    }

    /// Appends `events` to `stream_id` if the stream is where `expected` says, all of them or
    /// none. Returns once they are committed (durable, in [`Durability::Durable`]).
    ///
    /// If every event id of this append is already in the log, in the same order, one after the
    /// other in this stream (as when a call is retried), nothing is written and the outcome of
    /// those events is returned with `replayed` set, so retries are safe. As in EventStoreDB,
    /// the events' contents and the expectation are not compared. Errors:
    /// [`Error::InvalidInput`] (see [`crate::limits`]), [`Error::WrongExpectedRevision`],
    /// [`Error::DuplicateEventId`], [`Error::DiskFull`], [`Error::Storage`],
    /// [`Error::Poisoned`], [`Error::Closed`].
    pub async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome> {
        self.append_with(stream_id, expected, events, true).await
    }

    /// As [`EventLog::append`], but answered once the events are written to the storage's
    /// memory (and visible to readers), without waiting for them to be durable: they become
    /// durable with the next sync of the log (a durable append's, [`EventLog::sync`]'s, or
    /// sled's own flush, every 500 ms). A crash can lose them, never half of them, nor break
    /// the hash chain. For copies whose durable original is elsewhere (the audit log's copy of
    /// a record carried by a command's events).
    pub async fn append_deferred(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome> {
        self.append_with(stream_id, expected, events, false).await
    }

    /// Makes everything appended so far durable (one sync, shared with the appends being
    /// committed). Errors: [`Error::Storage`], [`Error::Poisoned`], [`Error::Closed`].
    pub async fn sync(&self) -> Result<()> {
        let (waiter, done) = oneshot::channel();
        self.commands
            .send(Command::Sync(waiter))
            .await
            .map_err(|_| Error::Closed)?;
        done.await.map_err(|_| Error::Closed)?
    }

    async fn append_with(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        sync: bool,
    ) -> Result<AppendOutcome> {
        limits::check_append(stream_id, &events)?;
        if let Some(space) = &self.shared.space {
            space.admit()?;
        }
        let started = std::time::Instant::now();
        let (reply, outcome) = oneshot::channel();
        let request = AppendRequest {
            stream_id: stream_id.to_owned(),
            expected,
            events,
            reply,
            sync,
        };
        self.commands
            .send(Command::Append(request))
            .await
            .map_err(|_| Error::Closed)?;
        let outcome = outcome.await.map_err(|_| Error::Closed)?;
        let result = if outcome.is_ok() { "ok" } else { "refused" };
        metrics::histogram!(
            "naast_log_append_seconds",
            "log" => self.shared.metrics_name,
            "durable" => if sync { "yes" } else { "no" },
            "result" => result,
        )
        .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Up to `limit` events of `stream_id`, starting at revision `from` (inclusive) and going in
    /// `direction`; [`END`] with [`Direction::Backwards`] starts at the last event. A stream without
    /// events reads as empty.
    pub fn read_stream(
        &self,
        stream_id: &str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.shared.read_stream(stream_id, from, direction, limit)
    }

    /// Up to `limit` events of the whole log, starting at global position `from` (inclusive) and
    /// going in `direction`; [`END`] with [`Direction::Backwards`] starts at the last event.
    pub fn read_all(
        &self,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.shared.read_all(from, direction, limit)
    }

    /// The event with this id, if it was committed.
    pub fn read_event(&self, id: uuid::Uuid) -> Result<Option<RecordedEvent>> {
        let Some(value) = self.shared.storage.get(&keys::event_id(id))? else {
            return Ok(None);
        };
        let position = keys::parse_position_value(&value).ok_or_else(|| Error::Corrupt {
            position: 0,
            reason: format!("index entry of event {id} is not a position"),
        })?;
        if position >= self.head() {
            return Ok(None);
        }
        let event = self.shared.record_at(position)?;
        if event.id != id {
            return Err(Error::Corrupt {
                position,
                reason: format!("the id index of {id} points at event {}", event.id),
            });
        }
        Ok(Some(event))
    }

    /// The revision of the stream's last committed event; `None` if it has none.
    pub fn stream_revision(&self, stream_id: &str) -> Result<Option<u64>> {
        limits::check_stream_id(stream_id)?;
        self.shared.last_revision(stream_id, self.head())
    }

    /// Why the log stopped accepting appends after a failed write or sync, if it did: then only
    /// reopening it (a restart) tells what is on disk.
    pub fn failure(&self) -> Option<String> {
        self.shared.poisoned.get().cloned()
    }

    /// Whether the log has been closed (its writer has stopped): nothing more will be committed.
    pub fn is_closed(&self) -> bool {
        self.shared.live_sender().is_none()
    }

    /// Whether other processes may write this log too (PostgreSQL behind several nodes): what a
    /// process keeps of the log in memory may then be behind it.
    pub fn is_shared(&self) -> bool {
        self.shared.storage.is_shared()
    }

    /// On a log other processes write too: returns once this handle's reads see everything they
    /// had committed when it was called (one read of the log's tail; when that is past this
    /// process's head, its writer reads the rest first). A read or a decision made after it rests
    /// on no older view than the call's moment. At once on a log no other process writes.
    pub async fn read_the_others(&self) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let last = self
            .shared
            .storage
            .scan(&keys::log(0), &keys::log_end(), true, 1)?;
        let Some(tail) = last
            .first()
            .and_then(|(key, _)| keys::log_position(key))
            .map(|position| position + 1)
        else {
            return Ok(());
        };
        let mut head = self.shared.head_moved.subscribe();
        if *head.borrow() >= tail {
            return Ok(());
        }
        ask_to_follow(&self.shared.follow_pending, &self.commands);
        match tokio::time::timeout(
            crate::postgres::ANSWER_WITHIN,
            head.wait_for(|head| *head >= tail),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Storage(crate::StorageError::new(
                "read",
                format!(
                    "the other nodes' commits up to position {tail} were not read within {} s",
                    crate::postgres::ANSWER_WITHIN.as_secs()
                ),
            ))),
        }
    }

    /// Number of committed events, which is also the position the next event will get.
    pub fn head(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// Every event from position `from` on, in order: first those already stored, then live
    /// ones as they are committed, with no gap and no duplicate between the two.
    pub fn subscribe_all(&self, from: u64) -> Subscription {
        Subscription::new(self.shared.clone(), Target::All, from)
    }

    /// Every event of `stream_id` from revision `from` on, as [`EventLog::subscribe_all`] does.
    pub fn subscribe_stream(&self, stream_id: &str, from: u64) -> Result<Subscription> {
        limits::check_stream_id(stream_id)?;
        Ok(Subscription::new(
            self.shared.clone(),
            Target::Stream(stream_id.to_owned()),
            from,
        ))
    }

    /// Walks the whole log and checks every link: positions gap-free from 0, each record decodes,
    /// its hash chains to the previous one, its stream revision follows the stream's previous
    /// one, and the stream and event-id indexes point at it. Reports the first break.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.shared.verify()
    }

    /// Stops accepting appends, commits those already queued, syncs and stops the writer.
    /// Appends after this fail with [`Error::Closed`]; reads keep working. Returns when the writer
    /// has let go of the storage; the directory lock goes with the last clone and subscription.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// Marks a log closed cleanly (see `Shared::clean_marker`).
const CLEAN_MARKER: &str = "CLOSED";

/// Index entries whose position is at or past `head`: debris of a write that never finished.
fn index_debris(storage: &dyn Storage, head: u64) -> Result<Vec<Vec<u8>>> {
    const CHUNK: usize = 4096;
    let mut debris = Vec::new();
    for (start, end) in keys::index_ranges() {
        let mut from = start;
        loop {
            let chunk = storage.scan(&from, &end, false, CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            let mut next = last.clone();
            next.push(0);
            for (key, value) in chunk {
                if keys::parse_position_value(&value).is_none_or(|p| p >= head) {
                    debris.push(key);
                }
            }
            from = next;
        }
    }
    Ok(debris)
}

/// Position to write next and the hash to chain to, from the last stored record.
fn recover_tail(storage: &dyn Storage) -> Result<(u64, [u8; 32])> {
    let last = storage.scan(&keys::log(0), &keys::log_end(), true, 1)?;
    let Some((key, value)) = last.into_iter().next() else {
        return Ok((0, GENESIS_HASH));
    };
    let position = keys::log_position(&key).ok_or_else(|| Error::Corrupt {
        position: 0,
        reason: "a log key of the wrong length".into(),
    })?;
    let decoded = record::decode(&value).map_err(|e| Error::Corrupt {
        position,
        reason: e.0.into(),
    })?;
    if decoded.event.position != position {
        return Err(Error::Corrupt {
            position,
            reason: format!(
                "the record stored here says position {}",
                decoded.event.position
            ),
        });
    }
    let next = position.checked_add(1).ok_or_else(|| Error::Corrupt {
        position,
        reason: "the log claims the last possible position".into(),
    })?;
    Ok((next, decoded.event.hash))
}

impl Shared {
    /// A receiver of committed batches from now on; `None` once the writer has stopped.
    pub(crate) fn subscribe_live(&self) -> Option<broadcast::Receiver<Arc<[RecordedEvent]>>> {
        self.live_sender()
            .as_ref()
            .map(broadcast::Sender::subscribe)
    }

    pub(crate) fn live_sender(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Arc<[RecordedEvent]>>>> {
        // The guarded value is replaced whole, so a poisoned lock still holds a valid one.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn head(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub(crate) fn record_at(&self, position: u64) -> Result<RecordedEvent> {
        let value = self
            .storage
            .get(&keys::log(position))?
            .ok_or_else(|| Error::Corrupt {
                position,
                reason: "an index points at a missing record".into(),
            })?;
        decode_at(position, value)
    }

    pub(crate) fn read_all(
        &self,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let head = self.head();
        let (start, end, reverse) = match direction {
            Direction::Forwards => (keys::log(from), keys::log(head), false),
            Direction::Backwards => (
                keys::log(0),
                keys::log(from.saturating_add(1).min(head)),
                true,
            ),
        };
        // Each record is decoded from the engine's buffer as the scan passes it (catch-up reads
        // the whole log through here): no copy of the keys or the records first.
        let mut events = Vec::with_capacity(limit.min(1024));
        let mut damaged = None;
        self.storage
            .scan_each(&start, &end, reverse, limit, &mut |key, value| {
                let position = keys::log_position(key).unwrap_or(u64::MAX);
                match decode_slice_at(position, value) {
                    Ok(event) => {
                        events.push(event);
                        true
                    }
                    Err(e) => {
                        damaged = Some(e);
                        false
                    }
                }
            })?;
        match damaged {
            Some(e) => Err(e),
            None => Ok(events),
        }
    }

    pub(crate) fn read_stream(
        &self,
        stream_id: &str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        limits::check_stream_id(stream_id)?;
        let index = match direction {
            Direction::Forwards => {
                let head = self.head();
                let index = self.storage.scan(
                    &keys::stream(stream_id, from),
                    &keys::stream_end(stream_id),
                    false,
                    limit,
                )?;
                // Positions grow with revisions, so uncommitted entries can only be a tail.
                let mut committed = Vec::with_capacity(index.len());
                for (key, value) in index {
                    match keys::parse_position_value(&value) {
                        Some(position) if position < head => committed.push((key, value)),
                        Some(_) => break,
                        None => return Err(corrupt_index(stream_id)),
                    }
                }
                committed
            }
            Direction::Backwards => {
                let Some(last) = self.last_revision(stream_id, self.head())? else {
                    return Ok(Vec::new());
                };
                let mut end = keys::stream(stream_id, from.min(last));
                end.push(0); // just above that revision: an inclusive upper bound
                self.storage
                    .scan(&keys::stream(stream_id, 0), &end, true, limit)?
            }
        };
        index
            .iter()
            .map(|(key, value)| {
                let position = keys::parse_position_value(value).ok_or_else(|| Error::Corrupt {
                    position: 0,
                    reason: format!("stream index entry of {stream_id} is not a position"),
                })?;
                let event = self.record_at(position)?;
                if event.stream_id != stream_id
                    || Some(event.revision) != keys::stream_revision(key)
                {
                    return Err(Error::Corrupt {
                        position,
                        reason: format!(
                            "the stream index of {stream_id} points at an event of {} revision {}",
                            event.stream_id, event.revision
                        ),
                    });
                }
                Ok(event)
            })
            .collect()
    }

    /// The last revision of a stream among its events before position `head`, skipping index
    /// entries of groups still being committed.
    pub(crate) fn last_revision(&self, stream_id: &str, head: u64) -> Result<Option<u64>> {
        let start = keys::stream(stream_id, 0);
        let mut end = keys::stream_end(stream_id);
        loop {
            let entries = self.storage.scan(&start, &end, true, 64)?;
            let Some((last_key, _)) = entries.last() else {
                return Ok(None);
            };
            for (key, value) in &entries {
                let position =
                    keys::parse_position_value(value).ok_or_else(|| corrupt_index(stream_id))?;
                if position < head {
                    return Ok(keys::stream_revision(key));
                }
            }
            end = last_key.clone();
        }
    }

    fn verify(&self) -> Result<VerifyReport> {
        const CHUNK: usize = 4096;
        let head = self.head();
        let mut report = VerifyReport {
            events: 0,
            streams: 0,
            first_break: None,
            swept_debris: self.swept_debris,
            debris: index_debris(self.storage.as_ref(), head)?.len() as u64,
        };
        let mut prev_hash = GENESIS_HASH;
        let mut next_revision: HashMap<String, u64> = HashMap::new();
        let mut position = 0u64;
        let broken = |position: u64, reason: String| Some(BrokenLink { position, reason });
        'walk: while position < head {
            let chunk = self
                .storage
                .scan(&keys::log(position), &keys::log(head), false, CHUNK)?;
            if chunk.is_empty() {
                report.first_break = broken(position, "record missing".into());
                break;
            }
            for (key, value) in chunk {
                if keys::log_position(&key) != Some(position) {
                    report.first_break = broken(position, "record missing".into());
                    break 'walk;
                }
                let decoded = match record::decode(&value) {
                    Ok(decoded) => decoded,
                    Err(e) => {
                        report.first_break = broken(position, format!("undecodable: {}", e.0));
                        break 'walk;
                    }
                };
                let event = &decoded.event;
                if let Some(reason) =
                    self.check_links(event, &next_revision, &prev_hash, &decoded, position)?
                {
                    report.first_break = broken(position, reason);
                    break 'walk;
                }
                prev_hash = event.hash;
                next_revision.insert(event.stream_id.clone(), event.revision + 1);
                report.events += 1;
                position += 1;
            }
        }
        report.streams = next_revision.len() as u64;
        Ok(report)
    }

    /// What is wrong with the links of one record, if anything.
    fn check_links(
        &self,
        event: &RecordedEvent,
        next_revision: &HashMap<String, u64>,
        prev_hash: &[u8; 32],
        decoded: &record::Decoded<'_>,
        position_of_key: u64,
    ) -> Result<Option<String>> {
        let position = event.position;
        let expected_revision = next_revision.get(&event.stream_id).copied().unwrap_or(0);
        let points_here = |value: Option<Vec<u8>>| {
            value.and_then(|v| keys::parse_position_value(&v)) == Some(position)
        };
        Ok(if event.position != position_of_key {
            Some(format!(
                "the record stored here says position {}",
                event.position
            ))
        } else if record::chain_hash(prev_hash, decoded.body) != event.hash {
            Some("hash does not chain to the previous record".into())
        } else if event.revision != expected_revision {
            Some(format!(
                "stream {} jumps from revision {expected_revision} to {}",
                event.stream_id, event.revision
            ))
        } else if !points_here(
            self.storage
                .get(&keys::stream(&event.stream_id, event.revision))?,
        ) {
            Some("stream index does not point at this record".into())
        } else if !points_here(self.storage.get(&keys::event_id(event.id))?) {
            Some("event id index does not point at this record".into())
        } else {
            None
        })
    }
}

fn corrupt_index(stream_id: &str) -> Error {
    Error::Corrupt {
        position: 0,
        reason: format!("a stream index entry of {stream_id} is not a position"),
    }
}

fn decode_at(position: u64, value: Vec<u8>) -> Result<RecordedEvent> {
    let event = record::decode_owned(value).map_err(|e| Error::Corrupt {
        position,
        reason: e.0.into(),
    })?;
    at_position(position, event)
}

/// [`decode_at`] of a borrowed record (its payload copied out).
pub(crate) fn decode_slice_at(position: u64, value: &[u8]) -> Result<RecordedEvent> {
    let event = record::decode(value)
        .map_err(|e| Error::Corrupt {
            position,
            reason: e.0.into(),
        })?
        .event;
    at_position(position, event)
}

fn at_position(position: u64, event: RecordedEvent) -> Result<RecordedEvent> {
    if event.position != position {
        return Err(Error::Corrupt {
            position,
            reason: format!("the record stored here says position {}", event.position),
        });
    }
    Ok(event)
}

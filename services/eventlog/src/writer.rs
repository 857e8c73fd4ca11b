//! The single writer: takes every queued append, checks it against the log's state, and writes
//! all accepted ones in one storage batch (group commit). A second thread, the syncer, makes
//! written groups durable with one sync for all groups waiting, then publishes them to live
//! subscribers and answers the callers, in order.
//!
//! One writer keeps positions and hash links trivially ordered and sidesteps sled's process-wide
//! batch lock; throughput comes from groups growing with the number of waiting callers, and from
//! the writer preparing and writing the next group while the syncer waits for the disk.
//!
//! The writer's own view (next position, last hash, stream revisions) runs ahead of what is
//! committed by the groups in the syncer's hands. If their sync fails, the log is poisoned and
//! nothing built on that view is ever acknowledged.
//!
//! # On a storage other processes write too
//! On a shared engine ([`crate::storage::Storage::is_shared`]: PostgreSQL behind several naast
//! nodes) each process has a writer like this one, and their commits take turns under the
//! engine's lock. A group is then: take the lock; read what the others committed past this
//! writer's view and take it into the view (positions, the hash to chain from, stream revisions);
//! check and stage the group's appends against that; write, which commits and lets go (without
//! waiting for the flush); then the syncer syncs, as on one writer, before anything is answered.
//! So positions stay gapless and in commit order, and an expected revision is checked against
//! every process's appends. What the others committed is published to this process's
//! subscribers, in order, before anything of its own, and only once a sync here has flushed past
//! it; between groups the writer follows their commits when the engine wakes it
//! ([`Command::Follow`]).

use crate::keys;
use crate::log::{AppendOutcome, Durability, ExpectedRevision, Options, Shared};
use crate::record::{self, RecordedEvent};
use crate::{Error, NewEvent, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

/// Streams whose last revision the writer remembers; beyond this the memory is dropped and
/// refilled from storage as needed.
const MAX_CACHED_STREAMS: usize = 100_000;

pub(crate) struct AppendRequest {
    pub stream_id: String,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<AppendOutcome>>,
    /// Answered only once durable (else once written to the storage's memory).
    pub sync: bool,
}

pub(crate) enum Command {
    Append(AppendRequest),
    /// Make everything written so far durable, then answer.
    Sync(oneshot::Sender<Result<()>>),
    /// Read what other processes committed (shared engines): sent when the engine says they did.
    Follow,
    Close(oneshot::Sender<()>),
}

type Reply = oneshot::Sender<Result<AppendOutcome>>;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    max_group_events: usize,
    next_position: u64,
    last_hash: [u8; 32],
    /// Last written revision of recently used streams.
    revisions: HashMap<String, u64>,
    /// Written groups on their way to the syncer.
    to_sync: std::sync::mpsc::SyncSender<Written>,
    syncer: Option<std::thread::JoinHandle<()>>,
}

/// A group written to storage, waiting to be made durable and published.
struct Written {
    records: Vec<RecordedEvent>,
    replies: Vec<(Reply, AppendOutcome)>,
    /// Appends refused against the writer's view, answered once that view is committed.
    rejected: Vec<(Reply, Error)>,
    /// Callers waiting for everything written to be durable.
    waiters: Vec<oneshot::Sender<Result<()>>>,
    /// Whether a caller of this group waits for a sync.
    sync: bool,
}

/// Makes written groups durable, then publishes them and answers their callers.
struct Syncer {
    shared: Arc<Shared>,
    live: broadcast::Sender<Arc<[RecordedEvent]>>,
    durable: bool,
}

/// Where an already appended event is.
struct Located {
    stream_id: String,
    revision: u64,
    position: u64,
}

enum Prepared {
    /// Append with this first revision.
    New { first_revision: u64 },
    /// Identical to an earlier call: answer with its outcome.
    Replay(AppendOutcome),
}

/// What one group adds on top of the committed state, until it is committed.
#[derive(Default)]
struct Group {
    entries: Vec<crate::storage::Entry>,
    records: Vec<RecordedEvent>,
    /// Last revision per stream written by this group.
    revisions: HashMap<String, u64>,
    /// Event id → index in `records`.
    ids: HashMap<Uuid, usize>,
    /// The id index's entries of the group's event ids, read in one go before the group is
    /// prepared (`None`: not indexed).
    indexed: HashMap<Uuid, Option<Vec<u8>>>,
    replies: Vec<(Reply, AppendOutcome)>,
    rejected: Vec<(Reply, Error)>,
    /// Whether a caller waits for a sync.
    sync: bool,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        live: broadcast::Sender<Arc<[RecordedEvent]>>,
        options: &Options,
        next_position: u64,
        last_hash: [u8; 32],
    ) -> std::io::Result<Self> {
        // A rendezvous: while the syncer syncs one group, the writer writes the next and then
        // waits, so appends arriving meanwhile gather into one larger group instead of many
        // small ones (measured: larger groups, fewer syncs, higher throughput).
        let (to_sync, written) = std::sync::mpsc::sync_channel(0);
        let syncer = Syncer {
            shared: shared.clone(),
            live,
            durable: options.durability == Durability::Durable,
        };
        let syncer = std::thread::Builder::new()
            .name("eventlog-syncer".into())
            .spawn(move || syncer.run(written))?;
        Ok(Self {
            shared,
            max_group_events: options.max_group_events.max(1),
            next_position,
            last_hash,
            revisions: HashMap::new(),
            to_sync,
            syncer: Some(syncer),
        })
    }

    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut closing = Vec::new();
        while let Some(first) = commands.blocking_recv() {
            let mut group = Vec::new();
            let mut waiters = Vec::new();
            let mut events = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(request) => {
                        events += request.events.len();
                        group.push(request);
                    }
                    Command::Sync(waiter) => waiters.push(waiter),
                    // Every group follows on a shared engine; a wake after this reads again.
                    Command::Follow => self.shared.follow_pending.store(false, Ordering::Release),
                    Command::Close(done) => {
                        closing.push(done);
                        break;
                    }
                }
                if events < self.max_group_events {
                    next = commands.try_recv().ok();
                }
            }
            self.commit(group, waiters);
            if !closing.is_empty() {
                break;
            }
        }
        // Whatever is still queued arrived after the close.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Append(request) => {
                    let _ = request.reply.send(Err(Error::Closed));
                }
                Command::Sync(waiter) => {
                    let _ = waiter.send(Err(Error::Closed));
                }
                Command::Follow => {}
                Command::Close(done) => closing.push(done),
            }
        }
        // The syncer finishes the groups it has, and stops when this writer's sender is gone.
        let Self {
            shared,
            to_sync,
            syncer,
            ..
        } = self;
        drop(to_sync);
        if let Some(syncer) = syncer
            && syncer.join().is_err()
        {
            tracing::error!("the event log's syncer thread panicked");
        }
        // After a failed write or sync the log syncs no more here. (That cannot promise that
        // nothing of it reaches the disk: sled flushes in the background, and reopening syncs
        // what recovery finds. So callers are told such an append's outcome is unknown, not
        // that it failed.)
        if shared.poisoned.get().is_none() {
            match shared.storage.sync() {
                Ok(()) => {
                    // Closed cleanly: the next open need not look for debris.
                    if let Some(marker) = &shared.clean_marker
                        && let Err(e) = mark_clean(marker)
                    {
                        tracing::warn!(error = %e, "cannot mark the event log closed cleanly");
                    }
                }
                Err(e) => tracing::error!(error = %e, "final sync of the event log failed"),
            }
        }
        // End the broadcast, so subscriptions end once caught up, and let go of the storage
        // before telling the closer we are done.
        shared.live_sender().take();
        drop(shared);
        for done in closing {
            let _ = done.send(());
        }
    }

    fn commit(
        &mut self,
        mut requests: Vec<AppendRequest>,
        waiters: Vec<oneshot::Sender<Result<()>>>,
    ) {
        let mut group = Group {
            sync: !waiters.is_empty(),
            ..Group::default()
        };
        let recorded_at = record::now_micros();
        // On a shared engine: the others' commits first, under the lock when there is
        // something to write (so the tail stays where it was read until this group commits).
        let (foreign, locked) = if self.shared.storage.is_shared() {
            self.begin_shared(&mut requests)
        } else {
            (Vec::new(), false)
        };
        // Every id of the group looked up at once: one round trip to an engine across a
        // network, not one per event.
        if self.shared.poisoned.get().is_none() {
            let ids: Vec<Uuid> = requests
                .iter()
                .flat_map(|r| r.events.iter().map(|e| e.id))
                .collect();
            let keys: Vec<Vec<u8>> = ids.iter().map(|id| keys::event_id(*id)).collect();
            // A failed lookup is left to `locate`, which asks again and reports it per request.
            if let Ok(values) = self.shared.storage.get_many(&keys) {
                group.indexed = ids.into_iter().zip(values).collect();
            }
        }
        for request in requests {
            if let Some(reason) = self.shared.poisoned.get() {
                let _ = request.reply.send(Err(Error::Poisoned(reason.clone())));
                continue;
            }
            match self.prepare(&request, &group) {
                // Refusals can reflect groups still being synced: they are answered in order,
                // after those groups are committed.
                // A durable append refused on the strength of deferred groups waits for them
                // to be durable too.
                Err(e) => {
                    group.sync |= request.sync;
                    group.rejected.push((request.reply, e));
                }
                // A durable append (or its replay: the original may have been deferred) waits
                // for the sync, which covers every group written before too.
                Ok(Prepared::Replay(outcome)) => {
                    group.sync |= request.sync;
                    group.replies.push((request.reply, outcome));
                }
                Ok(Prepared::New { first_revision }) => {
                    group.sync |= request.sync;
                    self.stage(request, first_revision, recorded_at, &mut group);
                }
            }
        }
        if !group.entries.is_empty() {
            let entries = std::mem::take(&mut group.entries);
            match self.shared.storage.write(entries) {
                Ok(()) => {
                    if let Some(last) = group.records.last() {
                        self.next_position = last.position + 1;
                        self.last_hash = last.hash;
                    }
                    if self.revisions.len() + group.revisions.len() > MAX_CACHED_STREAMS {
                        self.revisions.clear();
                    }
                    self.revisions.extend(std::mem::take(&mut group.revisions));
                }
                Err(e) => {
                    // sled has no rollback: part of the group may be in storage. What is stored
                    // is unknown, so the log refuses every append until it is reopened (lookups
                    // ignore anything at or past `next_position`, which stays where it was).
                    self.poison("a write", &e.to_string());
                    for (reply, _) in std::mem::take(&mut group.replies) {
                        let _ = reply.send(Err(e.clone().into()));
                    }
                    group.records.clear();
                }
            }
        } else if locked && let Err(e) = self.shared.storage.end_shared_group() {
            self.poison("letting go of the commit lock", &e.to_string());
        }
        if foreign.is_empty()
            && group.replies.is_empty()
            && group.rejected.is_empty()
            && waiters.is_empty()
        {
            return;
        }
        // Published in order: the others' commits, then this group's. The others' commits are
        // shown to no one before a sync here has flushed past them (see `follow`).
        let followed = !foreign.is_empty();
        let mut records = foreign;
        records.append(&mut group.records);
        // Even a group of replays goes through the syncer: what it replays may still be on its
        // way to disk in an earlier group.
        let written = Written {
            records,
            replies: group.replies,
            rejected: group.rejected,
            waiters,
            sync: group.sync || followed,
        };
        if let Err(std::sync::mpsc::SendError(written)) = self.to_sync.send(written) {
            // The syncer is gone (it panicked): nothing can be made durable any more.
            for (reply, _) in written.replies {
                let _ = reply.send(Err(Error::Closed));
            }
            for (reply, _) in written.rejected {
                let _ = reply.send(Err(Error::Closed));
            }
            for waiter in written.waiters {
                let _ = waiter.send(Err(Error::Closed));
            }
        }
    }

    /// On a shared engine, before a group: reads what the other processes committed past this
    /// writer's view, under the commit lock when there are `requests` (then `true` comes back:
    /// the group's write, or `end_shared_group`, lets go of it). When the lock cannot be taken or
    /// the read fails, every request is answered with the failure and taken out.
    fn begin_shared(&mut self, requests: &mut Vec<AppendRequest>) -> (Vec<RecordedEvent>, bool) {
        if self.shared.poisoned.get().is_some() {
            return (Vec::new(), false);
        }
        if requests.is_empty() {
            // Woken: a read that fails is tried again at the next wake (within a second).
            return match self.follow() {
                Ok(records) => (records, false),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read what the other nodes committed; trying again");
                    (Vec::new(), false)
                }
            };
        }
        let failure = match self.shared.storage.begin_shared_group() {
            Ok(()) => match self.follow() {
                Ok(records) => return (records, true),
                Err(e) => {
                    // Nothing of the group was written and the view is as it was: its appends
                    // fail, the log goes on (unless the lock may still be held).
                    if let Err(end) = self.shared.storage.end_shared_group() {
                        self.poison("letting go of the commit lock", &end.to_string());
                    }
                    e.to_string()
                }
            },
            Err(refused) => {
                if !refused.recoverable {
                    // The writing connection is gone or in an unknown state: this process can
                    // write nothing more until the log is reopened.
                    self.poison("beginning a group", &refused.error.to_string());
                }
                refused.error.to_string()
            }
        };
        let failure = crate::StorageError::new("commit", failure);
        for request in std::mem::take(requests) {
            let _ = request.reply.send(Err(failure.clone().into()));
        }
        (Vec::new(), false)
    }

    /// Poisons the log: `what` failed, so what is stored is unknown until it is reopened.
    fn poison(&self, what: &str, error: &str) {
        tracing::error!(
            error,
            "{what} failed; the event log refuses appends until reopened"
        );
        metrics::counter!("naast_log_failures_total", "log" => self.shared.metrics_name)
            .increment(1);
        let _ = self.shared.poisoned.set(format!("{what} failed: {error}"));
    }

    /// What other processes committed past this writer's view (a shared engine), read in order
    /// and taken into the view: the next position, the hash to chain from, the streams'
    /// revisions. Their commits may not be flushed yet when read here (they commit without
    /// waiting for it, and sync after): what is read is published only after this process's
    /// syncer has synced, which flushes past them, so nothing shown can vanish in a crash.
    fn follow(&mut self) -> Result<Vec<RecordedEvent>> {
        let mut found: Vec<RecordedEvent> = Vec::new();
        let mut failed = None;
        let start = keys::log(self.next_position);
        let next = self.next_position;
        self.shared.storage.scan_each(
            &start,
            &keys::log_end(),
            false,
            usize::MAX,
            &mut |key, value| {
                let expected = next + found.len() as u64;
                let decoded = match keys::log_position(key) {
                    Some(position) if position == expected => {
                        crate::log::decode_slice_at(position, value)
                    }
                    other => Err(Error::Corrupt {
                        position: expected,
                        reason: format!(
                            "the next record another writer committed is at {other:?}, not at {expected}"
                        ),
                    }),
                };
                match decoded {
                    Ok(event) => {
                        found.push(event);
                        true
                    }
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            },
        )?;
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(last) = found.last() {
            self.next_position = last.position + 1;
            self.last_hash = last.hash;
            if self.revisions.len() + found.len() > MAX_CACHED_STREAMS {
                self.revisions.clear();
            }
            for event in &found {
                self.revisions
                    .insert(event.stream_id.clone(), event.revision);
            }
        }
        Ok(found)
    }

    fn prepare(&mut self, request: &AppendRequest, group: &Group) -> Result<Prepared> {
        let mut located = Vec::with_capacity(request.events.len());
        for event in &request.events {
            located.push(self.locate(event.id, group)?);
        }
        if let Some(first_found) = located.iter().position(Option::is_some) {
            return replay(request, &located).map(Prepared::Replay).ok_or(
                Error::DuplicateEventId {
                    id: request.events[first_found].id,
                },
            );
        }
        let actual = match group.revisions.get(&request.stream_id) {
            Some(revision) => Some(*revision),
            None => self.last_revision(&request.stream_id)?,
        };
        if !request.expected.admits(actual) {
            return Err(Error::WrongExpectedRevision {
                stream_id: request.stream_id.clone(),
                expected: request.expected,
                actual,
            });
        }
        Ok(Prepared::New {
            first_revision: actual.map_or(0, |r| r + 1),
        })
    }

    fn stage(
        &mut self,
        request: AppendRequest,
        first_revision: u64,
        recorded_at: u64,
        group: &mut Group,
    ) {
        let first_position = self.next_position + group.records.len() as u64;
        let mut prev_hash = group.records.last().map_or(self.last_hash, |r| r.hash);
        let count = request.events.len() as u64;
        for (i, event) in (0u64..).zip(request.events) {
            let position = first_position + i;
            let revision = first_revision + i;
            let mut recorded = RecordedEvent {
                id: event.id,
                stream_id: request.stream_id.clone(),
                revision,
                position,
                event_type: event.event_type,
                schema_version: event.schema_version,
                recorded_at_micros: recorded_at,
                metadata: event.metadata,
                payload: event.payload,
                hash: [0; 32],
            };
            let bytes = record::seal(&mut recorded, &prev_hash);
            prev_hash = recorded.hash;
            let at = keys::position_value(position);
            group
                .entries
                .push((keys::stream(&request.stream_id, revision), at.clone()));
            group.entries.push((keys::event_id(event.id), at));
            group.entries.push((keys::log(position), bytes));
            group.ids.insert(event.id, group.records.len());
            group.records.push(recorded);
        }
        let last_revision = first_revision + count - 1;
        group.revisions.insert(request.stream_id, last_revision);
        group.replies.push((
            request.reply,
            AppendOutcome {
                first_revision,
                last_revision,
                first_position,
                last_position: first_position + count - 1,
                replayed: false,
            },
        ));
    }

    /// Where an event id was appended, in this group or before.
    fn locate(&self, id: Uuid, group: &Group) -> Result<Option<Located>> {
        if let Some(&index) = group.ids.get(&id) {
            let r = &group.records[index];
            return Ok(Some(Located {
                stream_id: r.stream_id.clone(),
                revision: r.revision,
                position: r.position,
            }));
        }
        let value = match group.indexed.get(&id) {
            Some(value) => value.clone(),
            None => self.shared.storage.get(&keys::event_id(id))?,
        };
        let Some(value) = value else {
            return Ok(None);
        };
        let position = keys::parse_position_value(&value).ok_or_else(|| Error::Corrupt {
            position: 0,
            reason: format!("index entry of event {id} is not a position"),
        })?;
        if position >= self.next_position {
            // Debris of a write that failed (or never finished): not in the log.
            return Ok(None);
        }
        let event = self.shared.record_at(position)?;
        if event.id != id {
            return Err(Error::Corrupt {
                position,
                reason: format!("the id index of {id} points at event {}", event.id),
            });
        }
        Ok(Some(Located {
            stream_id: event.stream_id,
            revision: event.revision,
            position,
        }))
    }

    fn last_revision(&mut self, stream_id: &str) -> Result<Option<u64>> {
        if let Some(revision) = self.revisions.get(stream_id) {
            return Ok(Some(*revision));
        }
        // Bounded by what the writer has written (not by the committed head: it builds on groups
        // still being synced), never by debris past it.
        let revision = self.shared.last_revision(stream_id, self.next_position)?;
        if let Some(revision) = revision {
            if self.revisions.len() >= MAX_CACHED_STREAMS {
                self.revisions.clear();
            }
            self.revisions.insert(stream_id.to_owned(), revision);
        }
        Ok(revision)
    }
}

impl Syncer {
    fn run(self, written: std::sync::mpsc::Receiver<Written>) {
        while let Ok(first) = written.recv() {
            let mut groups = vec![first];
            groups.extend(written.try_iter());
            self.commit(groups);
        }
    }

    fn commit(&self, groups: Vec<Written>) {
        // Synced when a caller waits for it (deferred appends become durable with the next
        // sync, or sled's own flush every 500 ms).
        let wanted = groups.iter().any(|g| g.sync);
        let log = self.shared.metrics_name;
        if self.durable && wanted && self.shared.poisoned.get().is_none() {
            let started = std::time::Instant::now();
            let synced = self.shared.storage.sync();
            metrics::histogram!("naast_log_sync_seconds", "log" => log)
                .record(started.elapsed().as_secs_f64());
            if let Err(e) = synced {
                tracing::error!(error = %e, "sync failed; the event log refuses appends until reopened");
                metrics::counter!("naast_log_failures_total", "log" => log).increment(1);
                let _ = self.shared.poisoned.set(e.to_string());
            }
        }
        let events: usize = groups.iter().map(|g| g.records.len()).sum();
        if events > 0 && self.shared.poisoned.get().is_none() {
            metrics::histogram!("naast_log_commit_events", "log" => log).record(events as f64);
            metrics::counter!("naast_log_committed_events_total", "log" => log)
                .increment(events as u64);
        }
        if let Some(reason) = self.shared.poisoned.get() {
            for group in groups {
                let replies = group.replies.into_iter().map(|(reply, _)| reply);
                for reply in replies.chain(group.rejected.into_iter().map(|(reply, _)| reply)) {
                    let _ = reply.send(Err(Error::Poisoned(reason.clone())));
                }
                for waiter in group.waiters {
                    let _ = waiter.send(Err(Error::Poisoned(reason.clone())));
                }
            }
            return;
        }
        let last = groups.iter().rev().find_map(|g| g.records.last());
        if let Some(last) = last {
            self.shared
                .committed
                .store(last.position + 1, Ordering::Release);
            self.shared.head_moved.send_replace(last.position + 1);
        }
        for group in groups {
            if !group.records.is_empty() {
                // No subscriber is not an error.
                let _ = self.live.send(group.records.into());
            }
            for (reply, outcome) in group.replies {
                let _ = reply.send(Ok(outcome));
            }
            for (reply, error) in group.rejected {
                let _ = reply.send(Err(error));
            }
            for waiter in group.waiters {
                let _ = waiter.send(Ok(()));
            }
        }
    }
}

/// Writes the clean-close marker durably.
fn mark_clean(marker: &std::path::Path) -> std::result::Result<(), crate::StorageError> {
    std::fs::File::create(marker)
        .and_then(|file| file.sync_all())
        .map_err(|e| crate::StorageError::new("sync", e))?;
    match marker.parent() {
        Some(dir) => crate::storage::sync_dir(dir),
        None => Ok(()),
    }
}

/// The earlier call's outcome if every event of `request` was appended, in this order, to the
/// same stream by one earlier call (one call's events are contiguous in the log).
fn replay(request: &AppendRequest, located: &[Option<Located>]) -> Option<AppendOutcome> {
    let first = located.first()?.as_ref()?;
    for (i, found) in (0u64..).zip(located) {
        let found = found.as_ref()?;
        if found.stream_id != request.stream_id
            || found.position != first.position + i
            || found.revision != first.revision + i
        {
            return None;
        }
    }
    let count = located.len() as u64;
    Some(AppendOutcome {
        first_revision: first.revision,
        last_revision: first.revision + count - 1,
        first_position: first.position,
        last_position: first.position + count - 1,
        replayed: true,
    })
}

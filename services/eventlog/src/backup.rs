//! Copies of a log for backup and restore: its stored records exactly as they are (so the hash
//! chain travels with them), read up to a position while the log keeps taking appends, and
//! written into an empty log with every link checked on the way.

use crate::record::{self, GENESIS_HASH};
use crate::{Error, EventLog, Options, RecordedEvent, Result, keys};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use uuid::Uuid;

impl EventLog {
    /// Up to `limit` stored records from position `from` on and before `until`, as the bytes
    /// the log keeps (see [`crate::record`]), never past the committed head: what a backup
    /// copies.
    pub fn raw_records(&self, from: u64, until: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
        let until = until.min(self.head());
        if from >= until || limit == 0 {
            return Ok(Vec::new());
        }
        let entries =
            self.shared
                .storage
                .scan(&keys::log(from), &keys::log(until), false, limit)?;
        Ok(entries.into_iter().map(|(_, value)| value).collect())
    }
}

/// Checks a copy of a log record by record, in order, as [`EventLog::verify`] checks a log:
/// positions from 0 without a gap, each record decodes, its hash chains to the one before, its
/// stream revision follows the stream's last one, and no event id comes twice.
#[derive(Debug)]
pub struct ChainCheck {
    next: u64,
    last_hash: [u8; 32],
    revisions: HashMap<String, u64>,
    ids: HashSet<Uuid>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self {
            next: 0,
            last_hash: GENESIS_HASH,
            revisions: HashMap::new(),
            ids: HashSet::new(),
        }
    }
}

impl ChainCheck {
    /// A check of a log from its first record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next record of the copy, decoded once it checks out; [`Error::Corrupt`] names the
    /// position of the first that does not.
    pub fn check(&mut self, bytes: &[u8]) -> Result<RecordedEvent> {
        let position = self.next;
        let corrupt = |reason: String| Error::Corrupt { position, reason };
        let decoded = record::decode(bytes).map_err(|e| corrupt(e.0.into()))?;
        let event = decoded.event;
        if event.position != position {
            return Err(corrupt(format!(
                "the record says position {}, the copy is at {position}",
                event.position
            )));
        }
        if record::chain_hash(&self.last_hash, decoded.body) != event.hash {
            return Err(corrupt(
                "its hash does not chain to the record before it".into(),
            ));
        }
        let expected = self
            .revisions
            .get(&event.stream_id)
            .map_or(0, |last| last + 1);
        if event.revision != expected {
            return Err(corrupt(format!(
                "stream {} goes from revision {expected} to {}",
                event.stream_id, event.revision
            )));
        }
        if !self.ids.insert(event.id) {
            return Err(corrupt(format!("event id {} comes twice", event.id)));
        }
        self.revisions
            .insert(event.stream_id.clone(), event.revision);
        self.last_hash = event.hash;
        self.next = position + 1;
        Ok(event)
    }

    /// Records checked so far.
    pub fn events(&self) -> u64 {
        self.next
    }

    /// The hash of the last record checked (32 zero bytes before the first): the head of the
    /// chain, which a backup's manifest names.
    pub fn last_hash(&self) -> [u8; 32] {
        self.last_hash
    }
}

/// Records written per storage batch while restoring.
const RESTORE_BATCH: usize = 1024;

/// Writes `records` (a log's stored records from position 0, as [`EventLog::raw_records`] gives
/// them) into a new log in `dir`, checking each as [`ChainCheck`] does and building the indexes,
/// then syncs and closes it. `dir` must hold no events ([`Error::InvalidInput`] on `dir`). A
/// record that does not check out stops the restore with [`Error::Corrupt`]; what was written
/// before it stays, so restore into a directory of its own and remove it on failure.
pub async fn restore(
    dir: &Path,
    options: Options,
    records: impl IntoIterator<Item = Result<Vec<u8>>>,
) -> Result<ChainCheck> {
    restore_into(EventLog::open(dir, options)?, records).await
}

/// As [`restore`], into `log`, opened for it alone (on PostgreSQL, with
/// [`Options::sole_writer`]): it must hold no events. The log is closed after.
pub async fn restore_into(
    log: EventLog,
    records: impl IntoIterator<Item = Result<Vec<u8>>>,
) -> Result<ChainCheck> {
    let outcome = write_all(&log, records);
    // Nothing appends meanwhile: this restore holds the only handle (and the directory lock,
    // or the database's sole writer's lock), and the writer thread stays idle until it is
    // closed here.
    log.close().await;
    outcome
}

fn write_all(
    log: &EventLog,
    records: impl IntoIterator<Item = Result<Vec<u8>>>,
) -> Result<ChainCheck> {
    if log.head() != 0 {
        return Err(Error::InvalidInput {
            field: "dir".into(),
            reason: format!(
                "{} events are there already; restore into an empty directory",
                log.head()
            ),
        });
    }
    let storage = &log.shared.storage;
    let mut check = ChainCheck::new();
    let mut batch = Vec::with_capacity(RESTORE_BATCH * 3);
    for bytes in records {
        let bytes = bytes?;
        let event = check.check(&bytes)?;
        let at = keys::position_value(event.position);
        batch.push((keys::stream(&event.stream_id, event.revision), at.clone()));
        batch.push((keys::event_id(event.id), at));
        batch.push((keys::log(event.position), bytes));
        if batch.len() >= RESTORE_BATCH * 3 {
            storage.write(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        storage.write(batch)?;
    }
    storage.sync()?;
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, ExpectedRevision, NewEvent};

    async fn filled(dir: &Path, events: usize) -> EventLog {
        let log = EventLog::open(dir, Options::default()).unwrap();
        for i in 0..events {
            let stream = format!("stream-{}", i % 3);
            log.append(
                &stream,
                ExpectedRevision::Any,
                vec![NewEvent::new(
                    "Noted",
                    format!("{{\"i\":{i}}}").into_bytes(),
                )],
            )
            .await
            .unwrap();
        }
        log
    }

    fn copy(log: &EventLog) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        loop {
            let page = log.raw_records(records.len() as u64, u64::MAX, 7).unwrap();
            if page.is_empty() {
                return records;
            }
            records.extend(page);
        }
    }

    #[tokio::test]
    async fn a_restored_copy_reads_and_verifies_as_the_original() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let original = filled(from.path(), 20).await;
        let records = copy(&original);
        assert_eq!(records.len(), 20);
        let check = restore(to.path(), Options::default(), records.into_iter().map(Ok))
            .await
            .unwrap();
        assert_eq!(check.events(), 20);
        let restored = EventLog::open(to.path(), Options::default()).unwrap();
        assert_eq!(restored.head(), 20);
        assert_eq!(
            restored.read_all(0, Direction::Forwards, 100).unwrap(),
            original.read_all(0, Direction::Forwards, 100).unwrap()
        );
        assert_eq!(restored.verify().unwrap().first_break, None);
        assert_eq!(
            restored.stream_revision("stream-1").unwrap(),
            original.stream_revision("stream-1").unwrap()
        );
        // And it goes on from where the copy ended, chained to it.
        restored
            .append(
                "stream-1",
                ExpectedRevision::Exact(6),
                vec![NewEvent::new("Noted", b"{}".to_vec())],
            )
            .await
            .unwrap();
        assert_eq!(restored.verify().unwrap().first_break, None);
    }

    #[tokio::test]
    async fn a_copy_with_a_changed_missing_or_swapped_record_is_refused() {
        let from = tempfile::tempdir().unwrap();
        let original = filled(from.path(), 6).await;
        let records = copy(&original);
        let mut flipped = records.clone();
        let last = flipped[3].len() - 40;
        flipped[3][last] ^= 1;
        let mut missing = records.clone();
        missing.remove(2);
        let mut swapped = records.clone();
        swapped.swap(1, 2);
        for (bad, at) in [(flipped, 3), (missing, 2), (swapped, 1)] {
            let to = tempfile::tempdir().unwrap();
            let refused = restore(to.path(), Options::default(), bad.into_iter().map(Ok)).await;
            assert!(
                matches!(refused, Err(Error::Corrupt { position, .. }) if position == at),
                "{refused:?}"
            );
        }
    }

    /// Records of a small log in memory, for the properties below.
    fn memory_records(payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut prev = GENESIS_HASH;
        payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                let mut event = RecordedEvent {
                    id: Uuid::now_v7(),
                    stream_id: format!("stream-{}", i % 2),
                    revision: (i / 2) as u64,
                    position: i as u64,
                    event_type: "Noted".into(),
                    schema_version: 1,
                    recorded_at_micros: 1_700_000_000_000_000 + i as u64,
                    metadata: crate::Metadata::default(),
                    payload: payload.clone().into(),
                    hash: [0; 32],
                };
                let bytes = record::seal(&mut event, &prev);
                prev = event.hash;
                bytes
            })
            .collect()
    }

    proptest::proptest! {
        /// Any bytes at all, as a stored record: an error or a record, never a panic.
        #[test]
        fn any_bytes_decode_to_a_record_or_an_error(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = record::decode(&bytes);
            let _ = ChainCheck::new().check(&bytes);
        }

        /// A copy of a log with any one byte of any record changed, or any record cut short,
        /// fails the check at that record: a backup cannot be damaged unnoticed.
        #[test]
        fn any_changed_byte_of_a_copy_is_caught_at_its_record(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..6),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
            cut in proptest::prelude::any::<bool>(),
        ) {
            let mut records = memory_records(&payloads);
            let at = pick.index(records.len());
            if cut {
                let len = records[at].len();
                records[at].truncate(byte.index(len));
            } else {
                let len = records[at].len();
                records[at][byte.index(len)] ^= flip;
            }
            let mut check = ChainCheck::new();
            let mut failed_at = None;
            for (i, bytes) in records.iter().enumerate() {
                if check.check(bytes).is_err() {
                    failed_at = Some(i);
                    break;
                }
            }
            proptest::prop_assert_eq!(failed_at, Some(at));
        }
    }

    #[tokio::test]
    async fn restore_refuses_a_log_with_events() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let original = filled(from.path(), 2).await;
        filled(to.path(), 1).await.close().await;
        let refused = restore(
            to.path(),
            Options::default(),
            copy(&original).into_iter().map(Ok),
        )
        .await;
        assert!(matches!(refused, Err(Error::InvalidInput { field, .. }) if field == "dir"));
        let kept = EventLog::open(to.path(), Options::default()).unwrap();
        assert_eq!(kept.head(), 1);
    }
}

//! Appending, reading, expectations, idempotent retries, bad input, reopening and faults.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

mod common;

use bytes::Bytes;
use common::{event, events, memory_log, sled_log};
use naast_eventlog::{
    Direction, Durability, END, Error, EventLog, ExpectedRevision, MemoryStorage, NewEvent,
    Options, Storage, StorageError, limits, storage::Entry,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[tokio::test]
async fn revisions_and_positions_start_at_zero_without_gaps() {
    let (log, _dir) = sled_log(Durability::Durable);
    let a = log
        .append("household-a", ExpectedRevision::NoStream, events(3))
        .await
        .expect("first append");
    assert_eq!((a.first_revision, a.last_revision), (0, 2));
    assert_eq!((a.first_position, a.last_position), (0, 2));
    let b = log
        .append("household-b", ExpectedRevision::Any, events(2))
        .await
        .expect("second stream");
    assert_eq!((b.first_revision, b.last_revision), (0, 1));
    assert_eq!((b.first_position, b.last_position), (3, 4));
    let c = log
        .append("household-a", ExpectedRevision::Exact(2), events(1))
        .await
        .expect("exact expectation");
    assert_eq!((c.first_revision, c.first_position), (3, 5));

    let all = log.read_all(0, Direction::Forwards, 100).expect("read all");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![0, 1, 2, 3, 4, 5]);
    let a_events = log
        .read_stream("household-a", 0, Direction::Forwards, 100)
        .expect("read a");
    let revisions: Vec<u64> = a_events.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, vec![0, 1, 2, 3]);
    assert!(a_events.iter().all(|e| e.stream_id == "household-a"));
    assert_eq!(log.head(), 6);
    assert_eq!(
        log.stream_revision("household-a").expect("revision"),
        Some(3)
    );
    assert_eq!(log.stream_revision("nobody").expect("revision"), None);
}

#[tokio::test]
async fn reads_page_forwards_and_backwards() {
    let log = memory_log();
    log.append("s", ExpectedRevision::Any, events(10))
        .await
        .expect("append");
    log.append("other", ExpectedRevision::Any, events(5))
        .await
        .expect("append");
    let revs =
        |v: Vec<naast_eventlog::RecordedEvent>| v.iter().map(|e| e.revision).collect::<Vec<_>>();
    assert_eq!(
        revs(
            log.read_stream("s", 4, Direction::Forwards, 3)
                .expect("read")
        ),
        vec![4, 5, 6]
    );
    assert_eq!(
        revs(
            log.read_stream("s", 4, Direction::Backwards, 3)
                .expect("read")
        ),
        vec![4, 3, 2]
    );
    assert_eq!(
        revs(
            log.read_stream("s", END, Direction::Backwards, 2)
                .expect("read")
        ),
        vec![9, 8]
    );
    assert_eq!(
        revs(
            log.read_stream("s", 100, Direction::Backwards, 2)
                .expect("read")
        ),
        vec![9, 8]
    );
    assert!(
        log.read_stream("s", 10, Direction::Forwards, 5)
            .expect("read")
            .is_empty()
    );
    assert!(
        log.read_stream("none", 0, Direction::Forwards, 5)
            .expect("read")
            .is_empty()
    );
    let positions =
        |v: Vec<naast_eventlog::RecordedEvent>| v.iter().map(|e| e.position).collect::<Vec<_>>();
    assert_eq!(
        positions(log.read_all(12, Direction::Forwards, 10).expect("read")),
        vec![12, 13, 14]
    );
    assert_eq!(
        positions(log.read_all(END, Direction::Backwards, 2).expect("read")),
        vec![14, 13]
    );
    assert_eq!(
        positions(log.read_all(1, Direction::Backwards, 5).expect("read")),
        vec![1, 0]
    );
}

#[tokio::test]
async fn the_record_keeps_everything_it_was_given() {
    let (log, _dir) = sled_log(Durability::Durable);
    let mut new = event("AgreementProposed", "{\"what\":\"logeeropvang\"}");
    new.schema_version = 3;
    new.metadata.correlation_id = Some(uuid::Uuid::now_v7());
    new.metadata.causation_id = Some(uuid::Uuid::now_v7());
    new.metadata.actor = Some("bondgenoot:7".into());
    log.append("household-5", ExpectedRevision::Any, vec![new.clone()])
        .await
        .expect("append");
    let stored = log.read_event(new.id).expect("read").expect("present");
    assert_eq!(stored.id, new.id);
    assert_eq!(stored.event_type, new.event_type);
    assert_eq!(stored.schema_version, 3);
    assert_eq!(stored.metadata, new.metadata);
    assert_eq!(stored.payload, new.payload);
    assert_eq!(stored.stream_id, "household-5");
    let age = std::time::SystemTime::now()
        .duration_since(stored.recorded_at())
        .expect("recorded in the past");
    assert!(age.as_secs() < 3600, "recorded-at is the append time");
    assert_eq!(
        stored.id.get_version_num(),
        7,
        "NewEvent::new makes UUID v7 ids"
    );
}

#[tokio::test]
async fn a_wrong_expectation_is_a_conflict_with_the_actual_revision_and_writes_nothing() {
    let log = memory_log();
    log.append("s", ExpectedRevision::Any, events(2))
        .await
        .expect("append");
    let cases = [
        (ExpectedRevision::NoStream, Some(1)),
        (ExpectedRevision::Exact(0), Some(1)),
        (ExpectedRevision::Exact(5), Some(1)),
    ];
    for (expected, actual) in cases {
        let err = log
            .append("s", expected, events(1))
            .await
            .expect_err("must conflict");
        assert_eq!(
            err,
            Error::WrongExpectedRevision {
                stream_id: "s".into(),
                expected,
                actual
            }
        );
    }
    for expected in [ExpectedRevision::StreamExists, ExpectedRevision::Exact(0)] {
        let err = log
            .append("new", expected, events(1))
            .await
            .expect_err("must conflict");
        assert!(
            matches!(err, Error::WrongExpectedRevision { actual: None, .. }),
            "{err:?}"
        );
    }
    assert_eq!(log.head(), 2, "nothing written for rejected appends");
    log.append("s", ExpectedRevision::StreamExists, events(1))
        .await
        .expect("stream exists");
}

#[tokio::test]
async fn a_retry_with_the_same_ids_returns_the_original_outcome_and_writes_nothing() {
    let (log, _dir) = sled_log(Durability::Durable);
    let batch = events(3);
    let first = log
        .append("s", ExpectedRevision::NoStream, batch.clone())
        .await
        .expect("append");
    log.append("s", ExpectedRevision::Any, events(1))
        .await
        .expect("another");
    // The retry carries the original expectation, which no longer holds: still a replay.
    let again = log
        .append("s", ExpectedRevision::NoStream, batch.clone())
        .await
        .expect("retry");
    assert!(again.replayed);
    assert_eq!(
        (
            again.first_revision,
            again.last_revision,
            again.first_position,
            again.last_position
        ),
        (
            first.first_revision,
            first.last_revision,
            first.first_position,
            first.last_position
        )
    );
    assert_eq!(log.head(), 4);

    // Reusing one id in a different call is not a retry.
    let mut mixed = events(1);
    mixed.push(batch[1].clone());
    let err = log
        .append("s", ExpectedRevision::Any, mixed)
        .await
        .expect_err("duplicate id");
    assert_eq!(err, Error::DuplicateEventId { id: batch[1].id });
    let err = log
        .append("other", ExpectedRevision::Any, batch.clone())
        .await
        .expect_err("same ids, other stream");
    assert_eq!(err, Error::DuplicateEventId { id: batch[0].id });
    let reordered = vec![batch[1].clone(), batch[0].clone()];
    assert!(matches!(
        log.append("s", ExpectedRevision::Any, reordered).await,
        Err(Error::DuplicateEventId { .. })
    ));
    assert_eq!(log.head(), 4);
}

#[tokio::test]
async fn concurrent_retries_of_one_append_write_it_once() {
    let log = memory_log();
    let batch = events(2);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (log, batch) = (log.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            log.append("s", ExpectedRevision::NoStream, batch).await
        }));
    }
    let mut written = 0;
    for task in tasks {
        let outcome = task.await.expect("task").expect("append or replay");
        assert_eq!((outcome.first_position, outcome.last_position), (0, 1));
        written += usize::from(!outcome.replayed);
    }
    assert_eq!(written, 1);
    assert_eq!(log.head(), 2);
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let log = memory_log();
    let long = |n: usize| "x".repeat(n);
    let with = |f: &dyn Fn(&mut NewEvent)| {
        let mut e = event("T", "{}");
        f(&mut e);
        vec![e]
    };
    let one = events(1);
    let cases: Vec<(String, Vec<NewEvent>, &str)> = vec![
        (String::new(), one.clone(), "stream_id"),
        (
            long(limits::MAX_STREAM_ID_BYTES + 1),
            one.clone(),
            "stream_id",
        ),
        ("a\nb".into(), one.clone(), "stream_id"),
        ("s".into(), vec![], "events"),
        (
            "s".into(),
            events(limits::MAX_EVENTS_PER_APPEND + 1),
            "events",
        ),
        (
            "s".into(),
            with(&|e| e.event_type.clear()),
            "events[0].event_type",
        ),
        (
            "s".into(),
            with(&|e| e.event_type = long(limits::MAX_EVENT_TYPE_BYTES + 1)),
            "events[0].event_type",
        ),
        (
            "s".into(),
            with(&|e| e.schema_version = 0),
            "events[0].schema_version",
        ),
        (
            "s".into(),
            with(&|e| e.id = uuid::Uuid::nil()),
            "events[0].id",
        ),
        (
            "s".into(),
            with(&|e| e.metadata.actor = Some(String::new())),
            "events[0].metadata.actor",
        ),
        (
            "s".into(),
            with(&|e| e.payload = Bytes::from(vec![0; limits::MAX_PAYLOAD_BYTES + 1])),
            "events[0].payload",
        ),
        (
            "s".into(),
            {
                let e = event("T", "x");
                vec![e.clone(), e]
            },
            "events[1].id",
        ),
        (
            "s".into(),
            (0..70)
                .map(|_| NewEvent::new("T", vec![0u8; limits::MAX_PAYLOAD_BYTES]))
                .collect(),
            "events",
        ),
    ];
    for (stream, batch, field) in cases {
        match log.append(&stream, ExpectedRevision::Any, batch).await {
            Err(Error::InvalidInput { field: got, .. }) => {
                assert_eq!(got, field, "stream {stream:?}")
            }
            other => panic!("expected InvalidInput on {field}, got {other:?}"),
        }
    }
    assert_eq!(log.head(), 0, "nothing written");
    for raw in [-4, -100, i64::MIN] {
        match ExpectedRevision::try_from(raw) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "expected_revision"),
            other => panic!("{raw} decoded as {other:?}"),
        }
    }
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::StreamExists,
        ExpectedRevision::Exact(9),
    ] {
        assert_eq!(ExpectedRevision::try_from(expected.to_raw()), Ok(expected));
    }
    // The largest allowed payload is accepted.
    log.append(
        "s",
        ExpectedRevision::Any,
        vec![NewEvent::new("T", vec![7u8; limits::MAX_PAYLOAD_BYTES])],
    )
    .await
    .expect("payload at the limit");
}

#[tokio::test]
async fn everything_survives_a_reopen_and_appends_continue_the_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = {
        let log = EventLog::open(dir.path(), Options::default()).expect("open");
        for i in 0..20 {
            log.append(
                &format!("s{}", i % 3),
                ExpectedRevision::Any,
                events(1 + i % 4),
            )
            .await
            .expect("append");
        }
        // The largest payloads there are.
        log.append(
            "big",
            ExpectedRevision::Any,
            (0..4)
                .map(|_| NewEvent::new("Big", vec![9u8; limits::MAX_PAYLOAD_BYTES]))
                .collect(),
        )
        .await
        .expect("big append");
        let all = log.read_all(0, Direction::Forwards, 1000).expect("read");
        log.close().await;
        all
    };
    let log = EventLog::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(
        log.read_all(0, Direction::Forwards, 1000).expect("read"),
        written
    );
    assert_eq!(log.head(), written.len() as u64);
    let next = log
        .append("s1", ExpectedRevision::Any, events(1))
        .await
        .expect("append after reopen");
    assert_eq!(next.first_position, written.len() as u64);
    let report = log.verify().expect("verify");
    assert_eq!(report.first_break, None);
    assert_eq!(report.events, written.len() as u64 + 1);
    assert_eq!(report.streams, 4);
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let (_log, dir) = sled_log(Durability::Durable);
    match EventLog::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("opened a locked directory"),
    }
}

#[tokio::test]
async fn appends_after_close_fail_and_reads_keep_working() {
    let log = memory_log();
    log.append("s", ExpectedRevision::Any, events(2))
        .await
        .expect("append");
    log.close().await;
    assert_eq!(
        log.append("s", ExpectedRevision::Any, events(1)).await,
        Err(Error::Closed)
    );
    assert_eq!(
        log.read_all(0, Direction::Forwards, 10)
            .expect("read")
            .len(),
        2
    );
}

/// A storage whose writes or syncs fail on demand: a disk fault cannot be caused for real here,
/// so this stands in for the engine reporting one. A failing write first stores every entry
/// before the first record, as sled (which has no rollback) does when a record's write fails
/// after the index entries ahead of it in the batch went in.
struct FaultyStorage {
    inner: MemoryStorage,
    fail_write: AtomicBool,
    fail_sync: AtomicBool,
}

impl Storage for FaultyStorage {
    fn write(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        if self.fail_write.load(Ordering::SeqCst) {
            let before_first_record = entries
                .into_iter()
                .take_while(|(key, _)| key.first() != Some(&b'g'))
                .collect();
            self.inner.write(before_first_record)?;
            return Err(StorageError::new("write", "injected I/O error"));
        }
        self.inner.write(entries)
    }
    fn remove(&self, keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        self.inner.remove(keys)
    }
    fn sync(&self) -> Result<(), StorageError> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(StorageError::new("sync", "injected I/O error"));
        }
        self.inner.sync()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.inner.scan(start, end, reverse, limit)
    }
}

#[tokio::test]
async fn a_failed_write_poisons_the_log_and_its_debris_is_never_trusted() {
    let storage = Arc::new(FaultyStorage {
        inner: MemoryStorage::new(),
        fail_write: AtomicBool::new(false),
        fail_sync: AtomicBool::new(false),
    });
    let log = EventLog::with_storage(storage.clone(), Options::default()).expect("open");
    log.append("s", ExpectedRevision::Any, events(2))
        .await
        .expect("append");
    storage.fail_write.store(true, Ordering::SeqCst);
    let failed = events(3);
    let err = log
        .append("s", ExpectedRevision::Exact(1), failed.clone())
        .await
        .expect_err("fault");
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    storage.fail_write.store(false, Ordering::SeqCst);

    // What is stored is unknown: no append is taken until the log is reopened, and the index
    // entries the failed write left are not believed.
    assert!(matches!(
        log.append("s", ExpectedRevision::Any, events(1)).await,
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(
        log.append("s", ExpectedRevision::Any, failed.clone()).await,
        Err(Error::Poisoned(_))
    ));
    assert_eq!(log.read_event(failed[0].id).expect("read"), None);
    assert_eq!(log.stream_revision("s").expect("revision"), Some(1));
    assert_eq!(
        log.read_stream("s", 0, Direction::Forwards, 10)
            .expect("read")
            .len(),
        2
    );
    let report = log.verify().expect("verify");
    assert_eq!(report.first_break, None);
    assert_eq!(
        report.debris, 2,
        "the failed write's first stream and id entries"
    );
    log.close().await;

    // Reopened: the debris is swept, and the retry of the failed append is a new append, not
    // a replay of something that never was.
    let log = EventLog::with_storage(storage.clone(), Options::default()).expect("reopen");
    let retried = log
        .append("s", ExpectedRevision::Exact(1), failed)
        .await
        .expect("retry");
    assert!(!retried.replayed);
    assert_eq!((retried.first_position, retried.last_position), (2, 4));
    let report = log.verify().expect("verify");
    assert_eq!(
        (report.first_break, report.debris, report.swept_debris),
        (None, 0, 2)
    );
    log.close().await;
}

#[tokio::test]
async fn a_failed_sync_poisons_the_log() {
    let storage = Arc::new(FaultyStorage {
        inner: MemoryStorage::new(),
        fail_write: AtomicBool::new(false),
        fail_sync: AtomicBool::new(false),
    });
    let log = EventLog::with_storage(storage.clone(), Options::default()).expect("open");
    log.append("s", ExpectedRevision::Any, events(3))
        .await
        .expect("append");

    // A failed sync leaves the disk state unknown: the log stops taking appends, and what it
    // could not make durable is not visible to readers.
    storage.fail_sync.store(true, Ordering::SeqCst);
    assert!(matches!(
        log.append("s", ExpectedRevision::Any, events(1)).await,
        Err(Error::Poisoned(_))
    ));
    storage.fail_sync.store(false, Ordering::SeqCst);
    assert!(matches!(
        log.append("s", ExpectedRevision::Any, events(1)).await,
        Err(Error::Poisoned(_))
    ));
    assert_eq!(log.head(), 3);
    assert_eq!(
        log.read_all(0, Direction::Forwards, 10)
            .expect("read")
            .len(),
        3
    );
    assert_eq!(log.stream_revision("s").expect("revision"), Some(2));
}

#[tokio::test]
async fn verify_finds_a_tampered_record_and_a_redirected_index() {
    let storage = Arc::new(MemoryStorage::new());
    let log = EventLog::with_storage(storage.clone(), Options::default()).expect("open");
    for i in 0..5 {
        log.append(&format!("s{}", i % 2), ExpectedRevision::Any, events(1))
            .await
            .expect("append");
    }
    assert_eq!(log.verify().expect("verify").first_break, None);

    // Change one byte of the payload of the record at position 2 (key `g` + position, as the
    // storage layout documents).
    let key = |position: u64| [&[b'g'][..], &position.to_be_bytes()].concat();
    let original = storage.get(&key(2)).expect("get").expect("record 2");
    let mut tampered = original.clone();
    let at = tampered.len() - 33; // the last payload byte, just before the 32-byte hash
    tampered[at] ^= 1;
    storage.write(vec![(key(2), tampered)]).expect("write");
    let report = log.verify().expect("verify");
    let broken = report.first_break.expect("a broken link");
    assert_eq!(broken.position, 2);
    assert!(broken.reason.contains("hash"), "{}", broken.reason);
    assert_eq!(report.events, 2, "the two records before it are intact");

    // Restore it, then point the stream index of s1 revision 0 (position 1) at position 3.
    storage.write(vec![(key(2), original)]).expect("write");
    let index = [&[b's', 2][..], b"s1", &0u64.to_be_bytes()].concat();
    storage
        .write(vec![(index, 3u64.to_be_bytes().to_vec())])
        .expect("write");
    let broken = log
        .verify()
        .expect("verify")
        .first_break
        .expect("a broken link");
    assert_eq!(broken.position, 1);
    assert!(broken.reason.contains("stream index"), "{}", broken.reason);
}

/// Files in `dir`, if it is a directory.
fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// A payload that does not compress: a different byte pattern per event.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_never_writes_a_blob_file_not_even_for_the_largest_records() {
    // sled writes a message over a quarter of its segment to a file of its own under `blobs/`,
    // never syncs it and never rolls back its failed write. With our segment size and payload
    // cap, no record and no leaf of records ever gets there: shown here by writing the largest
    // records there are, and then by making `blobs/` impossible to write into.
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = dir.path().join("sled").join("blobs");
    let log = EventLog::open(dir.path(), Options::default()).expect("open");
    let mut seed = 0;
    let mut append = |log: &EventLog, stream: String, count: usize| {
        let batch: Vec<NewEvent> = (0..count)
            .map(|_| {
                seed += 1;
                NewEvent::new("Big", noise(seed, limits::MAX_PAYLOAD_BYTES))
            })
            .collect();
        let log = log.clone();
        async move { log.append(&stream, ExpectedRevision::Any, batch).await }
    };
    for round in 0..6 {
        for stream in 0..3 {
            append(&log, format!("s{stream}"), 20)
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    assert_eq!(
        files_in(&blobs),
        Vec::<std::path::PathBuf>::new(),
        "sled wrote blobs"
    );

    // `blobs/` made a file: a blob write would fail now (for root too). Every append succeeds.
    std::fs::remove_dir(&blobs).expect("remove blobs/");
    std::fs::write(&blobs, b"not a directory").expect("blobs as a file");
    for round in 0..3 {
        for stream in 0..3 {
            append(&log, format!("s{stream}"), 20)
                .await
                .unwrap_or_else(|e| panic!("round {round} with blobs/ unwritable: {e}"));
        }
    }
    let head = log.head();
    log.close().await;
    drop(log);
    std::fs::remove_file(&blobs).expect("remove the file");
    std::fs::create_dir(&blobs).expect("blobs/ again");

    let log = EventLog::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(log.head(), head);
    let report = log.verify().expect("verify");
    assert_eq!(
        (report.first_break, report.events, report.debris),
        (None, head, 0)
    );
    log.close().await;
}

#[tokio::test]
async fn a_database_made_with_sleds_default_segments_still_opens() {
    // Logs created before the segment size was raised keep the size sled recorded for them (its
    // `conf` file ends in a checksum that need not be UTF-8).
    let dir = tempfile::tempdir().expect("temp dir");
    let sled_dir = dir.path().join("sled");
    {
        let db = sled::Config::new().path(&sled_dir).open().expect("sled");
        db.flush().expect("flush");
    }
    let log = EventLog::open(dir.path(), Options::default()).expect("open an older database");
    log.append("s", ExpectedRevision::Any, events(2))
        .await
        .expect("append");
    log.close().await;
}

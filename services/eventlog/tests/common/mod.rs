//! Helpers shared by the event log's tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use naast_eventlog::{Durability, EventLog, MemoryStorage, NewEvent, Options};
use std::sync::Arc;

/// A log on sled in a fresh temporary directory (kept alive by the returned guard).
pub fn sled_log(durability: Durability) -> (EventLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EventLog::open(
        dir.path(),
        Options {
            durability,
            ..Options::default()
        },
    )
    .expect("open log");
    (log, dir)
}

pub fn memory_log() -> EventLog {
    EventLog::with_storage(Arc::new(MemoryStorage::new()), Options::default()).expect("open log")
}

pub fn event(kind: &str, body: &str) -> NewEvent {
    NewEvent::new(kind, body.as_bytes().to_vec())
}

pub fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("GoalSet", &format!("goal {i}")))
        .collect()
}

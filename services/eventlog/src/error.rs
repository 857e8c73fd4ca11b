//! The errors of the event log.

use crate::ExpectedRevision;
use std::path::PathBuf;
use uuid::Uuid;

/// What can go wrong with the event log. Every variant leaves the log consistent: an append that
/// fails has written nothing.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A caller-supplied value is unacceptable; `field` names it (e.g. `stream_id`, `events[2].payload`).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// The stream is not where the caller expected it; nothing was written.
    #[error("wrong expected revision on stream {stream_id}: expected {expected}, actual {}", display_actual(*.actual))]
    WrongExpectedRevision {
        /// The stream appended to.
        stream_id: String,
        /// What the caller expected.
        expected: ExpectedRevision,
        /// The stream's current last revision; `None` when the stream has no events.
        actual: Option<u64>,
    },
    /// An event id of this append was already used, but not by an identical earlier append to
    /// the same stream (so this is not a retry); nothing was written.
    #[error("event id {id} was already appended by a different call")]
    DuplicateEventId {
        /// The first id found already in the log.
        id: Uuid,
    },
    /// Another process holds the data directory.
    #[error("data directory {} is locked by another process", .path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The storage engine failed; for an append, nothing of it was written.
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// A stored record cannot be decoded or does not match its index.
    #[error("corrupt record at position {position}: {reason}")]
    Corrupt {
        /// Global position of the record.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A durable flush failed after the write, so the log can no longer tell what is on disk; it
    /// refuses further appends until it is reopened (and recovery tells).
    #[error("the event log stopped accepting appends after a failed flush: {0}")]
    Poisoned(String),
    /// The disk holding the log has less free space than the log keeps in reserve
    /// ([`crate::Options::min_free_bytes`]); nothing was written, and appends are accepted again
    /// once space is made.
    #[error("the disk of the data directory has {} MiB free, less than the {} MiB kept in reserve: nothing was written; writes resume once space is made", free_bytes / MIB, min_free_bytes / MIB)]
    DiskFull {
        /// What the file system said was free.
        free_bytes: u64,
        /// The reserve.
        min_free_bytes: u64,
    },
    /// The log was shut down.
    #[error("the event log is closed")]
    Closed,
}

const MIB: u64 = 1024 * 1024;

fn display_actual(actual: Option<u64>) -> String {
    actual.map_or_else(|| "no stream".to_owned(), |r| r.to_string())
}

/// A failure of the storage engine behind the log, with the engine's own message.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{operation}: {message}")]
pub struct StorageError {
    /// What the log asked the engine to do (`write`, `sync`, `read`, `open`).
    pub operation: &'static str,
    /// The engine's description of the failure.
    pub message: String,
}

impl StorageError {
    /// A failure of `operation` described by `err`.
    pub fn new(operation: &'static str, err: impl std::fmt::Display) -> Self {
        Self {
            operation,
            message: err.to_string(),
        }
    }
}

/// Result with the event log's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The event log of naast: the single source of truth for every household's timeline.
//!
//! Streams (one per household) hold events with revisions 0, 1, 2, … without gaps; the whole log
//! has one global position per event, strictly increasing and gap-free. An append is
//! all-or-nothing, checked against an expected revision, idempotent when retried with the same
//! event ids, and acknowledged only once durable. Every record is hash-chained to the one before
//! it, so tampering or loss shows up in [`EventLog::verify`]. Subscriptions catch up from storage
//! and then follow live appends with no gap and no duplicate.
//!
//! # Layout
//! - [`log`]: the [`EventLog`] handle, its options and the read side;
//! - `writer`: the single writer thread doing group commit;
//! - [`subscription`]: catch-up then live subscriptions;
//! - [`record`]: event types, the record format and its hash chain;
//! - `keys`: the key layout in the ordered keyspace;
//! - [`storage`]: the small storage trait, sled and in-memory engines;
//! - [`postgres`]: the engine on PostgreSQL, for a log shared beyond one machine;
//! - [`limits`]: what may be appended;
//! - [`space`]: the reserve of free disk space a log keeps.
//!
//! # Promises
//! - *Durable*: with [`Durability::Durable`], an acknowledged append survives a crash of the
//!   process or machine. Reads and subscriptions never return an event before it is committed.
//! - *Atomic*: after a crash, each append is entirely present or entirely absent.
//! - *Ordered*: positions and revisions are assigned in commit order, without gaps.
//! - *Consistent on error*: a failed append writes nothing; a failed sync stops all further
//!   appends ([`Error::Poisoned`]) until the log is reopened, since what is on disk is then unknown.

pub mod backup;
mod error;
mod keys;
pub mod limits;
pub mod log;
pub mod postgres;
pub mod record;
pub mod space;
pub mod storage;
pub mod subscription;
mod writer;

pub use error::{Error, Result, StorageError};
pub use log::{
    AppendOutcome, BrokenLink, Direction, Durability, END, EventLog, ExpectedRevision, Options,
    VerifyReport,
};
pub use postgres::PgStorage;
pub use record::{Metadata, NewEvent, RecordedEvent};
pub use storage::{MemoryStorage, SledStorage, Storage};
pub use subscription::Subscription;

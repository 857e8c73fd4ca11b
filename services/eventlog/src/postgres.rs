//! The event log on PostgreSQL ([`PgStorage`]): the same ordered keyspace the log keeps on sled
//! (records by position, the stream and id indexes), as rows of one table, so every promise the
//! log makes above its engine (per-stream revisions, one gapless global order, idempotent
//! appends, the hash chain, `verify`) holds unchanged.
//!
//! # Several writers, one order
//! Several processes (naast nodes) may write one database's log. Each has the log's writer, which
//! commits a group of commands at a time, and their groups take turns under one lock:
//! - a group begins a transaction and takes a transaction-level advisory lock
//!   ([`COMMIT_LOCK`]); the writer then reads what the others committed past its view (their
//!   records, from its next position on) and checks and stages its appends on top;
//! - its entries go in with one `INSERT`, a notification goes to the others (`naast_log`), and
//!   the transaction commits without waiting for the write-ahead log's flush (`synchronous_commit`
//!   off), which lets go of the lock at once;
//! - then the log's syncer makes it durable on a connection of its own: a transaction that
//!   writes a row of its own (`naast_log_syncs`) and commits with `synchronous_commit` on, so it
//!   returns once the write-ahead log is flushed past it (and, with synchronous standbys
//!   configured, received by them), and with it past every commit before it. No durable append
//!   is acknowledged before that.
//!
//! So positions are gapless and in commit order whoever writes, and every expected revision is
//! checked against everyone's appends. The nodes' flushes overlap, each a moment after its
//! commit, instead of taking turns under the lock. Another process may read a record before it
//! is flushed, but shows it to no one (no read, no subscriber) before its own next sync, which
//! flushes past it: the write-ahead log is one sequence, so a crash of PostgreSQL that takes a
//! record back takes everything after it too, none of which was shown. Between groups,
//! [`Storage::watch`] wakes the writer to read the others' commits: on their notification, and
//! every second in case one was missed, so a lost notification costs latency, never an event.
//!
//! A process whose connection is lost can write nothing more: its log is poisoned by the first
//! failed write, and the service restarts in place. A process that dies holding the lock holds
//! it until PostgreSQL notices the connection is gone (keepalives); the others wait up to
//! [`COMMIT_LOCK_WAIT`] for it, after which their group fails and the next one tries again.
//!
//! Every process holds [`SOLE_WRITER_LOCK`] on its writing connection for the life of the log:
//! shared, or exclusive with [`crate::Options::sole_writer`] (a master key rotation, which must
//! not run beside a node making keys). So a sole writer opens only when no other process has the
//! log open, and keeps every other out while it has.
//!
//! # When PostgreSQL does not answer
//! Connections are opened with a timeout and kept alive with TCP keepalives and a TCP user
//! timeout; every call waits at most [`ANSWER_WITHIN`]. A write or sync that fails or times out
//! poisons the log (what is stored is then unknown), and the service restarts in place. A
//! reading connection that PostgreSQL closed is opened again on the next read.
//!
//! # Schema
//! The log's tables are part of naast's schema in PostgreSQL, migrated at open by
//! [`naast_postgres::migrate`].

use crate::StorageError;
use crate::storage::{Entry, Storage};
pub use naast_postgres::{ANSWER_WITHIN, check_url, is_url};
use naast_postgres::{Database, error_text};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_postgres::{Client, Statement};

/// The advisory lock (transaction level) a group of the log in `naast_log` holds from before it
/// reads the log's tail until it has committed (a log in another table has its own:
/// [`commit_lock`]).
pub const COMMIT_LOCK: i64 = 0x6e61_6173_745f_636d;
/// The table of the event log; other logs (the audit log's years) have tables of their own.
pub const LOG_TABLE: &str = "naast_log";

/// The commit lock of the log in `table`.
pub fn commit_lock(table: &str) -> i64 {
    if table == LOG_TABLE {
        return COMMIT_LOCK;
    }
    // FNV-1a: the same number in every process, whatever its build.
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::from_be_bytes(hash.to_be_bytes())
}

/// Whether `table` may name a log's table: `naast_` and lower-case letters, digits and
/// underscores, as PostgreSQL takes a name unquoted (at most 63 bytes).
pub fn is_table_name(table: &str) -> bool {
    table.len() <= 63
        && table.starts_with("naast_")
        && table
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
/// How long a group waits for the commit lock before it fails.
pub const COMMIT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// The advisory lock every process holds (session level) while its log is open: exclusive for a
/// sole writer, else shared, so a sole writer and any other process never have it open at once.
pub const SOLE_WRITER_LOCK: i64 = 0x6e61_6173_745f_6c67;
/// How long an open waits for the writer's lock: a process that just died lets it go once
/// PostgreSQL notices its connection is gone.
const LOCK_WAIT_SECONDS: u64 = 10;
/// Rows fetched per round trip of a long scan.
const PAGE: usize = 1_000;
/// Connections that serve reads (each pipelines the reads sent to it).
const READERS: usize = 2;

/// The statements of a reading connection.
struct Reader {
    client: Arc<Client>,
    get: Statement,
    get_many: Statement,
    forwards: Statement,
    backwards: Statement,
}

/// The event log's engine on PostgreSQL (see the module's documentation).
pub struct PgStorage {
    /// Runs the connections' tasks.
    db: Database,
    writer: Arc<Client>,
    /// The writing connection's process id at PostgreSQL: its own notifications are ignored.
    writer_pid: i32,
    /// The log's table, which is also the channel its commits are told on.
    table: String,
    insert: Statement,
    /// A group's insert: a key already there (which the commit lock makes impossible) fails it,
    /// rather than replacing what another process wrote.
    insert_new: Statement,
    delete: Statement,
    /// Whether a group's transaction is open on the writing connection.
    in_group: std::sync::atomic::AtomicBool,
    /// The syncing connection (`synchronous_commit` on): a sync there flushes the write-ahead
    /// log past everything committed before it. Its own, so that a sync never lands inside a
    /// group's transaction on the writing connection.
    syncer: Arc<Client>,
    /// The reading connections, each replaced when PostgreSQL closed it.
    readers: Vec<naast_postgres::Reopening<Reader>>,
    next_reader: AtomicUsize,
}

impl PgStorage {
    /// Connects to the database at `url` (`postgres://user@host/db`, or a Unix socket's
    /// directory percent-encoded as the host) and applies the migrations it lacks. With
    /// [`crate::Options::sole_writer`], takes the sole writer's lock for as long as it lives;
    /// either way fails when a sole writer holds it (after waiting ten seconds for one that just
    /// died to let go), and when a restore into the database has not finished (unless
    /// [`crate::Options::restoring`]).
    pub fn connect(url: &str, options: &crate::Options) -> Result<Self, StorageError> {
        Self::connect_table(url, LOG_TABLE, options)
    }

    /// As [`PgStorage::connect`], for a log kept in `table` (made when missing; see
    /// [`is_table_name`]), which has its own commit lock and notifications.
    pub fn connect_table(
        url: &str,
        table: &str,
        options: &crate::Options,
    ) -> Result<Self, StorageError> {
        let (sole, restoring) = (options.sole_writer, options.restoring);
        if !is_table_name(table) {
            return Err(StorageError::new(
                "open",
                format!("{table:?} cannot name a log's table"),
            ));
        }
        let table = table.to_owned();
        let for_open = table.clone();
        let db = Database::new(url).map_err(|e| StorageError::new("open", e))?;
        let config = db.settings().clone();
        let opened = db.block(
            std::time::Duration::from_secs(LOCK_WAIT_SECONDS) + ANSWER_WITHIN,
            async move {
                let table = for_open;
                let writer = connect(&config).await?;
                // The lock first: a process that may not write must not change the schema under
                // the one that does.
                writer
                    .batch_execute(&format!("SET lock_timeout TO '{LOCK_WAIT_SECONDS}s'"))
                    .await
                    .map_err(|e| error_text(&e))?;
                let take = if sole {
                    "SELECT pg_advisory_lock($1)"
                } else {
                    "SELECT pg_advisory_lock_shared($1)"
                };
                if let Err(e) = writer.query_one(take, &[&SOLE_WRITER_LOCK]).await {
                    let held =
                        e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE);
                    return Err(if held {
                        format!(
                            "another naast process has this database's log open, and one of the two must be its sole writer (the lock was held for {LOCK_WAIT_SECONDS} s)"
                        )
                    } else {
                        error_text(&e)
                    });
                }
                writer
                    .batch_execute("SET lock_timeout TO 0")
                    .await
                    .map_err(|e| error_text(&e))?;
                naast_postgres::migrate(&writer).await.map_err(|e| error_text(&e))?;
                // Looked at under the lock: a restore marks the database while it holds the
                // lock alone, so no process opens a log between its mark and its first record.
                if !restoring
                    && naast_postgres::restoring::unfinished(&writer)
                        .await
                        .map_err(|e| error_text(&e))?
                {
                    return Err(UNFINISHED_RESTORE.to_owned());
                }
                if table != LOG_TABLE {
                    naast_postgres::create_table(
                        &writer,
                        &format!(
                            "CREATE TABLE IF NOT EXISTS {table} (key bytea PRIMARY KEY, value bytea NOT NULL)"
                        ),
                    )
                    .await
                    .map_err(|e| error_text(&e))?;
                }
                // Outside a group, writes are visible at once and made durable by `sync`.
                writer
                    .batch_execute("SET synchronous_commit TO off")
                    .await
                    .map_err(|e| error_text(&e))?;
                let writer_pid: i32 = writer
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map_err(|e| error_text(&e))?
                    .get(0);
                let insert = writer
                .prepare(
                    &format!("INSERT INTO {table} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
                )
                .await
                .map_err(|e| error_text(&e))?;
                let insert_new = writer
                    .prepare(
                        &format!("INSERT INTO {table} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])"),
                    )
                    .await
                    .map_err(|e| error_text(&e))?;
                let delete = writer
                    .prepare(&format!("DELETE FROM {table} WHERE key = ANY($1::bytea[])"))
                    .await
                    .map_err(|e| error_text(&e))?;
                let mut readers = Vec::with_capacity(READERS);
                for _ in 0..READERS {
                    readers.push(naast_postgres::Reopening::new(
                        Reader::connect(&config, &table).await?,
                    ));
                }
                let syncer = connect(&config).await?;
                syncer
                    .batch_execute("SET synchronous_commit TO on")
                    .await
                    .map_err(|e| error_text(&e))?;
                Ok((
                    Arc::new(writer),
                    writer_pid,
                    insert,
                    insert_new,
                    delete,
                    readers,
                    Arc::new(syncer),
                ))
            },
        );
        let (writer, writer_pid, insert, insert_new, delete, readers, syncer) =
            opened.map_err(|e| StorageError::new("open", e))?;
        Ok(Self {
            db,
            writer,
            writer_pid,
            table,
            insert,
            insert_new,
            delete,
            in_group: std::sync::atomic::AtomicBool::new(false),
            syncer,
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn block<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.db
            .block(ANSWER_WITHIN, async move {
                work.await.map_err(|e| error_text(&e))
            })
            .map_err(|e| StorageError::new(operation, e))
    }

    /// A reading connection, opened again when PostgreSQL closed it.
    fn reader(&self) -> Result<Arc<Reader>, StorageError> {
        let at = self.next_reader.fetch_add(1, Ordering::Relaxed) % READERS;
        let Some(slot) = self.readers.get(at) else {
            return Err(StorageError::new("read", "no reading connection"));
        };
        slot.get(
            &self.db,
            |reader| reader.client.is_closed(),
            || {
                let (config, table) = (self.db.settings().clone(), self.table.clone());
                async move { Reader::connect(&config, &table).await }
            },
        )
        .map_err(|e| StorageError::new("read", e))
    }

    /// One page of a scan: at most `limit` (≤ [`PAGE`]) rows.
    fn page(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let reader = self.reader()?;
        let client = reader.client.clone();
        let statement = if reverse {
            reader.backwards.clone()
        } else {
            reader.forwards.clone()
        };
        let (start, end) = (start.to_vec(), end.to_vec());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.block("read", async move {
            let rows = client.query(&statement, &[&start, &end, &limit]).await?;
            Ok(rows
                .into_iter()
                .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }
}

impl Reader {
    async fn connect(config: &naast_postgres::Settings, table: &str) -> Result<Self, String> {
        let client = connect(config).await?;
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await.map_err(|e| error_text(&e)) }
        };
        let get = prepare(format!("SELECT value FROM {table} WHERE key = $1")).await?;
        let get_many = prepare(format!(
            "SELECT key, value FROM {table} WHERE key = ANY($1::bytea[])"
        ))
        .await?;
        let forwards = prepare(format!(
            "SELECT key, value FROM {table} WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3"
        ))
        .await?;
        let backwards = prepare(format!(
            "SELECT key, value FROM {table} WHERE key >= $1 AND key < $2 ORDER BY key DESC LIMIT $3"
        ))
        .await?;
        Ok(Self {
            client: Arc::new(client),
            get,
            get_many,
            forwards,
            backwards,
        })
    }
}

async fn connect(config: &naast_postgres::Settings) -> Result<Client, String> {
    Database::connect(config).await.map_err(|e| error_text(&e))
}

/// Wakes the writer whenever another process's group committed (its notification on
/// `naast_log`), and every second in case one was missed; listens again on a new connection when
/// one is lost. Runs until the engine's runtime stops.
async fn watch(
    config: naast_postgres::Settings,
    table: String,
    own_pid: i32,
    wake: Box<dyn Fn() + Send + Sync>,
) {
    let mut every_second = tokio::time::interval(std::time::Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0_u32;
    loop {
        match config.connect().await {
            Ok((client, mut connection)) => {
                let (told, mut notifications) = tokio::sync::mpsc::unbounded_channel();
                let messages = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(note)) => {
                                if told.send(note.process_id()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {table}"))
                    .await
                    .is_ok()
                {
                    if failures > 0 {
                        tracing::info!("listening to the other nodes' commits again");
                    }
                    failures = 0;
                    // Whatever was committed while nobody listened.
                    wake();
                    loop {
                        tokio::select! {
                            note = notifications.recv() => match note {
                                Some(pid) if pid == own_pid => {}
                                Some(_) => wake(),
                                None => break, // the connection ended
                            },
                            _ = every_second.tick() => wake(),
                        }
                    }
                }
                messages.abort();
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %error_text(&e), "cannot listen to the other nodes' commits; reading every second until it can");
                }
            }
        }
        failures = failures.saturating_add(1);
        // Meanwhile the log is read every second all the same.
        for _ in 0..2 {
            every_second.tick().await;
            wake();
        }
    }
}

/// Why a process is refused a database a restore into which has not finished.
pub const UNFINISHED_RESTORE: &str = "a restore into this database did not finish (naast_restoring holds its mark); run naast restore again, which starts over";

/// The advisory lock a restore holds from its beginning to its end (session level), so that a
/// second restore started meanwhile is refused rather than taking the first one's mark for that
/// of a restore cut short.
pub const RESTORE_LOCK: i64 = 0x6e61_6173_745f_7273;

/// A restore into a database under way ([`Restore::begin`]): its session holds
/// [`RESTORE_LOCK`] until [`Restore::finish`], or until it is dropped (a failed restore, whose
/// mark stays).
pub struct Restore {
    db: Database,
    client: Client,
}

impl Restore {
    /// Begins a restore into the database at `url`: no other restore may be under way, and,
    /// with no naast process on it (the sole writer's lock, held just for this), it must hold
    /// nothing of naast's, or what a restore cut short left (which is then emptied); then its
    /// mark keeps every other process off until [`Restore::finish`]. `Err` names the tables that
    /// hold data, or why it cannot begin.
    pub fn begin(url: &str) -> Result<Self, StorageError> {
        let db = Database::new(url).map_err(|e| StorageError::new("open", e))?;
        let config = db.settings().clone();
        let client = db
            .block(
                std::time::Duration::from_secs(LOCK_WAIT_SECONDS) + ANSWER_WITHIN,
                async move {
                    let client = connect(&config).await?;
                    let text = |e: tokio_postgres::Error| error_text(&e);
                    naast_postgres::migrate(&client).await.map_err(text)?;
                    let alone: bool = client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&RESTORE_LOCK])
                        .await
                        .map_err(text)?
                        .get(0);
                    if !alone {
                        return Err("another naast restore into this database is under way".to_owned());
                    }
                    client
                        .batch_execute(&format!("SET lock_timeout TO '{LOCK_WAIT_SECONDS}s'"))
                        .await
                        .map_err(text)?;
                    if let Err(e) = client
                        .query_one("SELECT pg_advisory_lock($1)", &[&SOLE_WRITER_LOCK])
                        .await
                    {
                        return Err(
                            if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                                "a naast process has this database open: stop every node before restoring into it".to_owned()
                            } else {
                                error_text(&e)
                            },
                        );
                    }
                    if naast_postgres::restoring::unfinished(&client)
                        .await
                        .map_err(text)?
                    {
                        tracing::warn!("a restore into this database did not finish: emptying what it wrote and starting over");
                        naast_postgres::restoring::empty(&client).await.map_err(text)?;
                    } else {
                        let holding = naast_postgres::restoring::tables_with_data(&client)
                            .await
                            .map_err(text)?;
                        if !holding.is_empty() {
                            return Err(format!(
                                "the database holds naast data already (in {}); restore into an empty database",
                                holding.join(", ")
                            ));
                        }
                        naast_postgres::restoring::mark(&client).await.map_err(text)?;
                    }
                    // The logs the restore opens take the sole writer's lock themselves, one at
                    // a time; the mark keeps everyone else off meanwhile.
                    client
                        .query_one("SELECT pg_advisory_unlock($1)", &[&SOLE_WRITER_LOCK])
                        .await
                        .map_err(text)?;
                    Ok(client)
                },
            )
            .map_err(|e| StorageError::new("restore", e))?;
        Ok(Self { db, client })
    }

    /// Ends the restore: its mark goes, durably, and the nodes may start.
    pub fn finish(self) -> Result<(), StorageError> {
        let Self { db, client } = self;
        db.block(ANSWER_WITHIN, async move {
            naast_postgres::restoring::finish(&client)
                .await
                .map_err(|e| error_text(&e))
        })
        .map_err(|e| StorageError::new("restore", e))
    }
}

/// The log tables in the database at `url` whose names start with `prefix` (the audit log's
/// years), by name; retired ones ([`retire_table`]) are not among them.
pub fn tables_starting(url: &str, prefix: &str) -> Result<Vec<String>, StorageError> {
    // Asked before any log opened (an audit log opened first): `Durable` migrates the schema.
    let prefix = prefix.to_owned();
    naast_postgres::Durable::open(url)
        .and_then(|db| {
            db.run(move |client| async move {
                let retired: Vec<String> = client
                    .query("SELECT log_table FROM naast_retired_logs", &[])
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let mut tables = naast_postgres::tables_starting(&client, &prefix).await?;
                tables.retain(|table| !retired.contains(table));
                Ok(tables)
            })
        })
        .map_err(|e| StorageError::new("read", e))
}

/// Retires the log table `table` (an audit year past its retention), durably: from then on no
/// process lists it ([`tables_starting`]), and each lets go of it at its next listing. It is
/// dropped by [`drop_retired_tables`] once it has been retired long enough that none can still
/// be reading it. (Dropped at once, it would fail the reads of the nodes that still had it open
/// until their next listing.) The time it was retired is the database's, as is the time it is
/// compared with: the nodes' clocks need not agree.
pub fn retire_table(url: &str, table: &str) -> Result<(), StorageError> {
    if !is_table_name(table) || table == LOG_TABLE {
        return Err(StorageError::new(
            "remove",
            format!("{table:?} is not a table naast retires"),
        ));
    }
    let table = table.to_owned();
    naast_postgres::Durable::open(url)
        .and_then(|db| {
            db.run(move |client| async move {
                client
                    .execute(
                        "INSERT INTO naast_retired_logs (log_table, retired_at) VALUES ($1, now()) \
                         ON CONFLICT (log_table) DO NOTHING",
                        &[&table],
                    )
                    .await
                    .map(drop)
            })
        })
        .map_err(|e| StorageError::new("remove", e))
}

/// Drops the retired log tables whose names start with `prefix` that were retired more than
/// `kept` ago (by the database's clock), each with its row in one transaction: every copy of it
/// in the database goes at once. One still in use (a read that began long ago) is left for a
/// later call. Returns the tables dropped.
pub fn drop_retired_tables(
    url: &str,
    prefix: &str,
    kept: std::time::Duration,
) -> Result<Vec<String>, StorageError> {
    let (kept_seconds, prefix) = (kept.as_secs_f64(), prefix.to_owned());
    naast_postgres::Durable::open(url)
        .and_then(|db| {
            db.run(move |client| async move {
                let due: Vec<String> = client
                    .query(
                        "SELECT log_table FROM naast_retired_logs WHERE starts_with(log_table, $1) \
                         AND retired_at < now() - make_interval(secs => $2) ORDER BY log_table",
                        &[&prefix, &kept_seconds],
                    )
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let mut dropped = Vec::new();
                for table in due {
                    // A name stored by `retire_table`, which took only log table names: safe to
                    // put in the statement's text (and checked again).
                    if !is_table_name(&table) || table == LOG_TABLE {
                        continue;
                    }
                    let dropping = client
                        .batch_execute(&format!(
                            "BEGIN; SET LOCAL lock_timeout TO '5s'; DROP TABLE IF EXISTS \"{table}\"; \
                             DELETE FROM naast_retired_logs WHERE log_table = '{table}'; COMMIT"
                        ))
                        .await;
                    match dropping {
                        Ok(()) => dropped.push(table),
                        Err(e)
                            if e.code()
                                == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
                        {
                            client.batch_execute("ROLLBACK").await?;
                            tracing::info!(%table, "a retired log table is still in use; dropped later");
                        }
                        Err(e) => {
                            let _ = client.batch_execute("ROLLBACK").await;
                            return Err(e);
                        }
                    }
                }
                Ok(dropped)
            })
        })
        .map_err(|e| StorageError::new("remove", e))
}

impl Storage for PgStorage {
    fn write(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        // One statement may not set a key twice; as on sled, the later value wins.
        let mut last = HashMap::with_capacity(entries.len());
        for (at, (key, _)) in entries.iter().enumerate() {
            last.insert(key.as_slice(), at);
        }
        let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = if last.len() == entries.len() {
            entries.into_iter().unzip()
        } else {
            let keep: std::collections::HashSet<usize> = last.into_values().collect();
            entries
                .into_iter()
                .enumerate()
                .filter(|(at, _)| keep.contains(at))
                .map(|(_, entry)| entry)
                .unzip()
        };
        if self.in_group.swap(false, Ordering::AcqRel) {
            let (client, statement) = (self.writer.clone(), self.insert_new.clone());
            // The group's entries, the others told, and the commit that lets go of the lock:
            // sent together, answered without waiting for the flush (the sync waits for it).
            let commit = format!("SELECT pg_notify('{}', ''); COMMIT", self.table);
            return self.block("write", async move {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&keys, &values];
                let insert = client.execute(&statement, &params);
                let commit = client.batch_execute(&commit);
                let (inserted, committed) = tokio::join!(insert, commit);
                if inserted.is_err() || committed.is_err() {
                    // An aborted transaction would hold the commit lock until the connection
                    // closes: let go of it (the log is poisoned by the failed write anyway).
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                inserted?;
                committed
            });
        }
        let (client, statement) = (self.writer.clone(), self.insert.clone());
        self.block("write", async move {
            client
                .execute(&statement, &[&keys, &values])
                .await
                .map(drop)
        })
    }

    fn sync(&self) -> Result<(), StorageError> {
        // Commits (groups and writes outside them) do not wait for the flush: this does, past
        // all of them. A transaction that wrote nothing would commit without waiting, whatever
        // `synchronous_commit` says, so it writes a row: its connection's own, so that syncs of
        // several nodes do not queue on one row's lock.
        let client = self.syncer.clone();
        self.block("sync", async move {
            client
                .batch_execute(
                    "INSERT INTO naast_log_syncs (backend, syncs) VALUES (pg_backend_pid(), 1) \
                     ON CONFLICT (backend) DO UPDATE SET syncs = naast_log_syncs.syncs + 1",
                )
                .await
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn begin_shared_group(&self) -> Result<(), crate::storage::GroupRefused> {
        let client = self.writer.clone();
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout TO '{}s'; \
             SELECT pg_advisory_xact_lock({})",
            COMMIT_LOCK_WAIT.as_secs(),
            commit_lock(&self.table)
        );
        // Err(timed out waiting for the lock?, what went wrong)
        let began = self.db.block(ANSWER_WITHIN, async move {
            Ok(match client.batch_execute(&begin).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let waited =
                        e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE);
                    // The transaction that began is rolled back, so the next group can begin.
                    let rolled_back = client.batch_execute("ROLLBACK").await.is_ok();
                    Err((waited && rolled_back, error_text(&e)))
                }
            })
        });
        match began {
            Ok(Ok(())) => {
                self.in_group.store(true, Ordering::Release);
                Ok(())
            }
            Ok(Err((recoverable, e))) => Err(crate::storage::GroupRefused {
                error: StorageError::new("commit", e),
                recoverable,
            }),
            // No answer: what the connection holds is unknown.
            Err(e) => Err(crate::storage::GroupRefused {
                error: StorageError::new("commit", e),
                recoverable: false,
            }),
        }
    }

    fn end_shared_group(&self) -> Result<(), StorageError> {
        if !self.in_group.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let client = self.writer.clone();
        self.block(
            "commit",
            async move { client.batch_execute("ROLLBACK").await },
        )
    }

    fn watch(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.db.spawn(watch(
            self.db.settings().clone(),
            self.table.clone(),
            self.writer_pid,
            wake,
        ));
    }

    fn remove(&self, keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (client, statement) = (self.writer.clone(), self.delete.clone());
        self.block("write", async move {
            client.execute(&statement, &[&keys]).await.map(drop)
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let reader = self.reader()?;
        let (client, statement, key) = (reader.client.clone(), reader.get.clone(), key.to_vec());
        self.block("read", async move {
            Ok(client
                .query_opt(&statement, &[&key])
                .await?
                .map(|row| row.get::<_, Vec<u8>>(0)))
        })
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let reader = self.reader()?;
        let (client, statement) = (reader.client.clone(), reader.get_many.clone());
        let wanted = keys.to_vec();
        let found: HashMap<Vec<u8>, Vec<u8>> = self.block("read", async move {
            Ok(client
                .query(&statement, &[&wanted])
                .await?
                .into_iter()
                .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
                .collect())
        })?;
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut found = Vec::new();
        self.scan_each(start, end, reverse, limit, &mut |key, value| {
            found.push((key.to_vec(), value.to_vec()));
            true
        })?;
        Ok(found)
    }

    fn scan_each(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let (mut start, mut end) = (start.to_vec(), end.to_vec());
        let mut left = limit;
        while left > 0 && start < end {
            let page = self.page(&start, &end, reverse, left.min(PAGE))?;
            let full = page.len() == left.min(PAGE);
            left -= page.len();
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            // The next page starts just past the last key seen.
            if reverse {
                end = last.clone();
            } else {
                start = last.clone();
                start.push(0);
            }
            for (key, value) in &page {
                if !visit(key, value) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
        Ok(())
    }
}

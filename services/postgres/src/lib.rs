//! naast's connection to PostgreSQL, shared by the stores kept there (the event log, the
//! household keys, the push state): one schema with its migrations, and connections that notice
//! a database that stops answering.
//!
//! # Schema
//! Migrations (`migrations/*.sql`, embedded) are applied when a store opens, each once, in
//! order, under an advisory lock of their own (several processes starting at once apply each
//! once), and recorded in `naast_migrations`.
//!
//! # When PostgreSQL does not answer
//! Connections are opened with a timeout and kept alive with TCP keepalives and a TCP user
//! timeout; every call made through [`Database::block`] waits at most the time it is given.

use std::future::Future;
use tokio_postgres::{Client, NoTls};

/// The schema's migrations: version, name, SQL. Applied in this order, each once.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "the event log's entries",
        include_str!("../migrations/0001_event_log.sql"),
    ),
    (
        2,
        "the row a sync updates",
        include_str!("../migrations/0002_sync.sql"),
    ),
    (
        3,
        "the household keys",
        include_str!("../migrations/0003_household_keys.sql"),
    ),
    (
        4,
        "a sync row per connection",
        include_str!("../migrations/0004_log_syncs.sql"),
    ),
    (
        5,
        "the push state",
        include_str!("../migrations/0005_push_state.sql"),
    ),
];

/// The advisory lock held while migrations are applied.
const MIGRATION_LOCK: i64 = 0x6e61_6173_745f_6d67;
/// How long a call waits for PostgreSQL's answer, unless it says otherwise.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// A database naast keeps a store in: its connection settings and the runtime its connections'
/// tasks run on (one thread of its own, so a store can be used from any thread, inside an async
/// context or not).
pub struct Database {
    /// `None` only while being dropped.
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
}

impl Database {
    /// The database at `url` (`postgres://user@host/db`, or a Unix socket's directory
    /// percent-encoded as the host); nothing is connected yet. `Err` says what is wrong with the
    /// URL, never repeating it (it may hold a password).
    pub fn new(url: &str) -> Result<Self, String> {
        check_url(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("the PostgreSQL URL: {e}"))?;
        // A database that stops answering is noticed: connecting, and on an open connection.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(ANSWER_WITHIN);
        }
        if config.get_keepalives_idle() > std::time::Duration::from_secs(30) {
            config.keepalives_idle(std::time::Duration::from_secs(30));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("naast-postgres")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start PostgreSQL's connection thread: {e}"))?;
        Ok(Self {
            runtime: Some(runtime),
            config,
        })
    }

    /// The connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A new connection (its task runs on this database's runtime); call from within
    /// [`Database::block`] or [`Database::spawn`].
    pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %error_text(&e), "a PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Runs `work` on this database's runtime and waits for it on this thread (any thread: the
    /// wait is a plain channel, never a runtime's), at most `within`.
    pub fn block<T: Send + 'static>(
        &self,
        within: std::time::Duration,
        work: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let Some(runtime) = &self.runtime else {
            return Err("the connection to PostgreSQL is closing".to_owned());
        };
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = done.send(work.await);
        });
        match beside_the_runtime(|| answer.recv_timeout(within)) {
            Ok(answered) => answered,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "PostgreSQL did not answer within {} s",
                within.as_secs()
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err("the connection to PostgreSQL stopped before answering".to_owned())
            }
        }
    }

    /// Runs `work` on this database's runtime until it ends or the database is dropped.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(work);
        }
    }
}

/// Blocks this thread on `wait`. On a worker of a multi-threaded tokio runtime (a server's
/// request handlers), the runtime first hands this worker's other tasks to another thread, so a
/// round trip to PostgreSQL holds up only the call waiting for it, not every call sharing the
/// worker. Elsewhere (a plain thread, a blocking task, a current-thread runtime, where tokio
/// allows no such hand-over) it just waits.
fn beside_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Dropped anywhere, an async context included: its tasks end without waiting.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A session-level advisory lock held for as long as this lives: a role only one node may have
/// at a time (pushing to the platforms, say). Lost when the connection holding it is lost:
/// [`Lease::lost`] then ends, and the holder must stop acting on it.
pub struct Lease {
    /// Runs the connection that holds the lock.
    _db: Database,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl Lease {
    /// Takes the lease `key` in the database at `url` if nobody holds it (`None` when someone
    /// does); waits at most [`ANSWER_WITHIN`].
    pub fn try_take(url: &str, key: i64) -> Result<Option<Self>, String> {
        let db = Database::new(url)?;
        let config = db.config().clone();
        let (tell, lost) = tokio::sync::watch::channel(false);
        let taken = db.block(ANSWER_WITHIN, async move {
            let (client, connection) = config.connect(NoTls).await.map_err(|e| error_text(&e))?;
            let held = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::error!(error = %error_text(&e), "the connection holding a lease ended");
                }
                let _ = tell.send(true);
            });
            let taken: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(|e| error_text(&e))?
                .get(0);
            if taken {
                // The client must live as long as the connection: kept by its task.
                tokio::spawn(async move {
                    let _client = client;
                    std::future::pending::<()>().await;
                });
            } else {
                held.abort();
            }
            Ok(taken)
        })?;
        Ok(taken.then_some(Self { _db: db, lost }))
    }

    /// Ends when the lease is lost (its connection ended).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|lost| *lost).await;
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

/// A connection, or what is made on one (its prepared statements), opened again when PostgreSQL
/// closed it. Cheap to share: the one open is handed out as an `Arc`.
pub struct Reopening<T> {
    current: std::sync::Mutex<std::sync::Arc<T>>,
}

impl<T: Send + Sync + 'static> Reopening<T> {
    /// Starting with `first`.
    pub fn new(first: T) -> Self {
        Self {
            current: std::sync::Mutex::new(std::sync::Arc::new(first)),
        }
    }

    /// The one open now; when `closed` says PostgreSQL closed it, a new one made by `open` (run
    /// on `db`, waiting at most [`ANSWER_WITHIN`]), kept for the calls after.
    pub fn get<F>(
        &self,
        db: &Database,
        closed: impl Fn(&T) -> bool,
        open: impl FnOnce() -> F,
    ) -> Result<std::sync::Arc<T>, String>
    where
        F: Future<Output = Result<T, String>> + Send + 'static,
    {
        // Only an `Arc` is replaced under the lock: a panic cannot leave it half done.
        let lock = || {
            self.current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let current = lock().clone();
        if !closed(&current) {
            return Ok(current);
        }
        let fresh = std::sync::Arc::new(db.block(ANSWER_WITHIN, open())?);
        tracing::warn!("a connection to PostgreSQL was closed; opened again");
        *lock() = fresh.clone();
        Ok(fresh)
    }
}

/// Applies the migrations `client`'s database lacks, each in its own transaction, under the
/// migration lock (several processes starting at once apply each once).
pub async fn migrate(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS naast_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
        let done: Vec<i32> = client
            .query("SELECT version FROM naast_migrations", &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            // One transaction: the migration and its record (nothing else uses this
            // connection meanwhile).
            client.batch_execute(&format!("BEGIN; {sql};")).await?;
            let recorded = client
                .execute(
                    "INSERT INTO naast_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await;
            if let Err(e) = recorded {
                client.batch_execute("ROLLBACK").await?;
                return Err(e);
            }
            client.batch_execute("COMMIT").await?;
            tracing::info!(version, name, "PostgreSQL migration applied");
        }
        Ok::<_, tokio_postgres::Error>(())
    }
    .await;
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    applied?;
    unlocked?;
    Ok(())
}

/// Runs `ddl` (a `CREATE TABLE IF NOT EXISTS` of a table made on demand, such as an audit
/// year's) under the migration lock, so processes making it at once do not collide.
pub async fn create_table(client: &Client, ddl: &str) -> Result<(), tokio_postgres::Error> {
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let made = client.batch_execute(ddl).await;
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    made?;
    unlocked.map(drop)
}

/// The tables of the current schema whose names start with `prefix`.
pub async fn tables_starting(
    client: &Client,
    prefix: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
             AND starts_with(tablename::text, $1) ORDER BY tablename",
            &[&prefix],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Whether `url` is a PostgreSQL URL naast can connect with: `Err` says what is wrong (never
/// repeating the URL, which may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    if !is_url(url) {
        return Err("give a postgres:// or postgresql:// URL".to_owned());
    }
    let config = url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(
            "sslmode=require: naast does not speak TLS to PostgreSQL; reach it over a Unix socket or a private network".to_owned(),
        );
    }
    Ok(())
}

/// Whether `location` names a PostgreSQL database rather than a directory.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The error with the server's own message, when it sent one.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

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
//!
//! # TLS
//! With `sslmode=require` (or libpq's `verify-ca`, `verify-full`) in the URL, every connection
//! is encrypted with rustls, and the server's certificate is checked as libpq's `verify-full`
//! does: its chain up to a trusted CA and the host name. The CAs trusted are those of the file
//! `sslrootcert=` names (PEM), or else the public ones (Mozilla's list). Without `sslmode`, or
//! with `disable`, the connection is not encrypted (a Unix socket, a private network);
//! `prefer`, which would fall back to an unencrypted connection unnoticed, is refused, as are
//! client certificates (`sslcert`, `sslkey`).

pub mod restoring;

use std::future::Future;
use std::sync::Arc;
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

type TlsStream =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// A connection's task, encrypted or not: drives it until it closes (await it, or take its
/// messages with [`Connection::poll_message`]).
pub enum Connection {
    /// Unencrypted (boxed, as the other).
    Plain(
        Box<tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>>,
    ),
    /// With TLS (its buffers make it large: boxed).
    Encrypted(Box<tokio_postgres::Connection<tokio_postgres::Socket, TlsStream>>),
}

impl Connection {
    /// The next message from the server (a notification, a notice), as tokio-postgres's
    /// `Connection::poll_message`.
    pub fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>> {
        match self {
            Connection::Plain(connection) => connection.poll_message(cx),
            Connection::Encrypted(connection) => connection.poll_message(cx),
        }
    }
}

impl Future for Connection {
    type Output = Result<(), tokio_postgres::Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Connection::Plain(connection) => std::pin::Pin::new(&mut **connection).poll(cx),
            Connection::Encrypted(connection) => std::pin::Pin::new(&mut **connection).poll(cx),
        }
    }
}

/// How naast connects to a database: tokio-postgres's settings, and TLS as the URL asks.
#[derive(Clone)]
pub struct Settings {
    config: tokio_postgres::Config,
    /// `None`: unencrypted (TLS is not even set up: a Unix socket has no host name to check).
    tls: Option<MakeRustlsConnect>,
}

impl Settings {
    /// The settings of `url`; `Err` says what is wrong with it, never repeating it (it may hold
    /// a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        if !is_url(url) {
            return Err("give a postgres:// or postgresql:// URL".to_owned());
        }
        let (url, ca_file) = take_tls_options(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        // Without `sslmode` tokio-postgres would prefer TLS: naast then does not encrypt (an
        // explicit `prefer` was refused above; one that reached tokio-postgres all the same was
        // read differently there than here: refused rather than taken as no TLS).
        if config.get_ssl_mode() == SslMode::Prefer && url.contains("sslmode") {
            return Err("sslmode: read differently than given; put it in the query (after the host and database), as require or disable".to_owned());
        }
        let encrypted = config.get_ssl_mode() == SslMode::Require;
        if !encrypted {
            config.ssl_mode(SslMode::Disable);
            if ca_file.is_some() {
                return Err(
                    "sslrootcert is given but the connection is not encrypted: add sslmode=require"
                        .to_owned(),
                );
            }
        }
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
        let tls = if encrypted {
            Some(MakeRustlsConnect::new(tls_config(ca_file.as_deref())?))
        } else {
            None
        };
        Ok(Self { config, tls })
    }

    /// tokio-postgres's settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A new connection and the task that drives it (run it on the runtime it is used from).
    pub async fn connect(&self) -> Result<(Client, Connection), tokio_postgres::Error> {
        Ok(match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                (client, Connection::Encrypted(Box::new(connection)))
            }
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                (client, Connection::Plain(Box::new(connection)))
            }
        })
    }
}

/// `url` without the TLS options tokio-postgres does not know (`sslrootcert`; libpq's
/// `verify-ca` and `verify-full` become `require`, which naast checks as `verify-full`), and the
/// CA file named.
fn take_tls_options(url: &str) -> Result<(String, Option<String>), String> {
    // The query starts after the user info (a password may hold a `?`, unencoded).
    let after_user = url.rfind('@').map_or(0, |at| at + 1);
    let Some(start) = url[after_user..].find('?').map(|q| after_user + q) else {
        return Ok((url.to_owned(), None));
    };
    let (base, query) = (&url[..start], &url[start + 1..]);
    let mut kept = Vec::new();
    let mut ca_file = None;
    for piece in query.split('&') {
        // Percent-decoded only, as libpq does (a `+` stays a `+`).
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (key, value) = match piece.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(piece), String::new()),
        };
        match (key.as_str(), value.as_str()) {
            ("sslrootcert", file) => ca_file = Some(file.to_owned()),
            ("sslmode", "verify-ca" | "verify-full") => kept.push("sslmode=require".to_owned()),
            ("sslmode", mode @ ("allow" | "prefer")) => {
                return Err(format!(
                    "sslmode={mode} would go on unencrypted when TLS fails: say sslmode=require (encrypted, the server's certificate checked) or sslmode=disable"
                ));
            }
            ("sslmode", "disable" | "require") => kept.push(piece.to_owned()),
            ("sslmode", mode) => {
                return Err(format!(
                    "sslmode={mode}: give require (or verify-full, verify-ca: the same here) or disable"
                ));
            }
            ("sslcert" | "sslkey" | "sslpassword", _) => {
                return Err(format!(
                    "{key}: client certificates are not supported; authenticate with a password or over a Unix socket"
                ));
            }
            _ => kept.push(piece.to_owned()),
        }
    }
    Ok((
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        },
        ca_file,
    ))
}

/// rustls's client settings: the CAs of `ca_file` (PEM), or else the public ones.
fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            let certificates = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("sslrootcert: cannot read {file}: {e}"))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| format!("sslrootcert: {file}: {e}"))?;
                roots
                    .add(certificate)
                    .map_err(|e| format!("sslrootcert: {file}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert: {file} holds no certificate"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

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
    (
        6,
        "the mark of an unfinished restore",
        include_str!("../migrations/0006_restoring.sql"),
    ),
    (
        7,
        "retired log tables",
        include_str!("../migrations/0007_retired_logs.sql"),
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
    settings: Settings,
}

impl Database {
    /// The database at `url` (`postgres://user@host/db`, or a Unix socket's directory
    /// percent-encoded as the host); nothing is connected yet. `Err` says what is wrong with the
    /// URL, never repeating it (it may hold a password).
    pub fn new(url: &str) -> Result<Self, String> {
        let settings = Settings::parse(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("naast-postgres")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start PostgreSQL's connection thread: {e}"))?;
        Ok(Self {
            runtime: Some(runtime),
            settings,
        })
    }

    /// The connection settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A new connection (its task runs on this database's runtime); call from within
    /// [`Database::block`] or [`Database::spawn`].
    pub async fn connect(settings: &Settings) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = settings.connect().await?;
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

/// The one connection of a store that writes little and needs each write durable when it
/// returns (`synchronous_commit` on, whatever the server's default), opened again when
/// PostgreSQL closed it; the migrations are applied when it opens.
pub struct Durable {
    db: Database,
    client: Reopening<Client>,
}

impl Durable {
    /// Connects to the database at `url` and applies the migrations it lacks.
    pub fn open(url: &str) -> Result<Self, String> {
        let db = Database::new(url)?;
        let settings = db.settings().clone();
        let client = db.block(ANSWER_WITHIN, async move {
            let client = Self::connect(&settings).await?;
            migrate(&client).await.map_err(|e| error_text(&e))?;
            Ok(client)
        })?;
        Ok(Self {
            db,
            client: Reopening::new(client),
        })
    }

    async fn connect(settings: &Settings) -> Result<Client, String> {
        let client = Database::connect(settings)
            .await
            .map_err(|e| error_text(&e))?;
        client
            .batch_execute("SET synchronous_commit TO on")
            .await
            .map_err(|e| error_text(&e))?;
        Ok(client)
    }

    /// Runs `work` with the connection (opened again first when PostgreSQL closed it), waiting
    /// at most [`ANSWER_WITHIN`].
    pub fn run<T: Send + 'static, F>(
        &self,
        work: impl FnOnce(std::sync::Arc<Client>) -> F + Send + 'static,
    ) -> Result<T, String>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let client = self.client.get(&self.db, Client::is_closed, || {
            let settings = self.db.settings().clone();
            async move { Self::connect(&settings).await }
        })?;
        self.db.block(ANSWER_WITHIN, async move {
            work(client).await.map_err(|e| error_text(&e))
        })
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
        let settings = db.settings().clone();
        let (tell, lost) = tokio::sync::watch::channel(false);
        let taken = db.block(ANSWER_WITHIN, async move {
            let (client, connection) = settings.connect().await.map_err(|e| error_text(&e))?;
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

/// Waits until the database at `url` takes a connection that may write (with several hosts in
/// the URL and `target_session_attrs=read-write`, whichever is the primary now), trying every
/// second, at most `within`; says so once while it waits. `Err`: the last reason it did not.
pub fn wait_for_writes(url: &str, within: std::time::Duration) -> Result<(), String> {
    let db = Database::new(url)?;
    let deadline = std::time::Instant::now() + within;
    let mut said = false;
    loop {
        let settings = db.settings().clone();
        let tried = db.block(ANSWER_WITHIN, async move {
            let client = Database::connect(&settings)
                .await
                .map_err(|e| error_text(&e))?;
            let read_only: String = client
                .query_one("SHOW transaction_read_only", &[])
                .await
                .map_err(|e| error_text(&e))?
                .get(0);
            if read_only == "on" {
                return Err("the database takes no writes (a standby)".to_owned());
            }
            Ok(())
        });
        match tried {
            Ok(()) => {
                if said {
                    tracing::info!("PostgreSQL takes writes again");
                }
                return Ok(());
            }
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                if !said {
                    tracing::warn!(error = %e, "waiting for PostgreSQL to take writes again");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// Whether `url` is a PostgreSQL URL naast can connect with: `Err` says what is wrong (never
/// repeating the URL, which may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    Settings::parse(url).map(drop)
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

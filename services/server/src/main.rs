//! The `naast` command line: parses arguments, starts tracing, and hands over to the library.

use clap::{Parser, Subcommand};
use naast_eventlog::{EventLog, Options};
use naast_projections::Projections;
use naast_server::audit::Auditor;
use naast_server::auth::dev::{DEV_ISSUER, DEV_TOKEN_LIFETIME, DevIssuer, PERSONAS};
use naast_server::auth::layer::Guard;
use naast_server::auth::{AuthSettings, Authenticator};
use naast_server::config::{Config, Overrides};
use naast_server::grpc;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

// mimalloc rather than glibc's malloc: measured faster catch-up and a lower, steadier RSS
// under the event log's many short-lived record buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// naast: one shared timeline of care plans, goals and agreements for a family, its supporter
/// and its care providers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written on stderr: `human` (text) or `json` (one object per line, with
    /// the call's method and request id). Which lines: NAAST_LOG (e.g. `info`, `naast=debug`).
    #[arg(long, global = true, env = "NAAST_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// Text for people.
    Human,
    /// One JSON object per line, for a log collector.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API over the event log in the data directory.
    Serve(ServeArgs),
    /// Rebuild the read models (the timelines) from the event log, then exit.
    Replay(ServeArgs),
    /// Check the event log's hash chain and indexes from the first event to the last, then exit:
    /// 0 when intact, 1 with the first broken link.
    Verify(ServeArgs),
    /// Rewrap every household's data key under a new master key, the server stopped; then
    /// start it with the new key. Crash-safe: until it has finished, the server refuses to start;
    /// after an interruption, run it again with the same two keys.
    RotateMasterKey(RotateArgs),
    /// Copy a running server's data into DIR (new or empty): the event log, the audit log, the
    /// wrapped household keys, the record of disclosed reports and the push state, consistent
    /// while the server keeps writing, and checked (every part's SHA-256, every hash chain)
    /// before the manifest is written. The master key is not copied: keep it apart.
    Backup(BackupArgs),
    /// Runs a platform-like mixed workload against a running server over gRPC (writers of notes,
    /// logbook entries, goals and agreements; timeline readers; live subscribers) and prints its
    /// throughput, latency percentiles, errors and the server's memory as JSON; fails when a call
    /// failed or a subscriber missed an entry.
    Load(naast_server::load::Args),
    /// Put the backup in DIR into an empty data directory, after checking all of it; then
    /// start naast on it with the master key the backup was made under (the read models are
    /// rebuilt at the first start).
    Restore(RestoreArgs),
    /// Start the server, enact the five pilot scenarios through the gRPC API and print each
    /// family's unified timeline.
    Demo(DemoArgs),
    /// Measure throughput and latency; prints one JSON object per line.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:50051]; port 0 picks a free one.
    #[arg(long, env = "NAAST_LISTEN")]
    listen: Option<String>,
    /// Address of the FHIR facade's HTTP listener, base `/fhir` (off unless set); port 0 picks
    /// a free one.
    #[arg(long, env = "NAAST_FHIR_LISTEN")]
    fhir_listen: Option<String>,
    /// Address of the Prometheus metrics listener, path `/metrics` (off unless set); port 0
    /// picks a free one.
    #[arg(long, env = "NAAST_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Address of the web timeline for people (sign-in, timeline, access), off unless set; port
    /// 0 picks a free one. Sign-in is configured in the config file's `[web]` table.
    #[arg(long, env = "NAAST_WEB_LISTEN")]
    web_listen: Option<String>,
    /// Directory of the event log and the other stores [default: ./data].
    #[arg(long, env = "NAAST_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The event log in PostgreSQL instead of the data directory: `postgres://user@host/db`
    /// (several nodes may share one database).
    #[arg(long, env = "NAAST_STORAGE")]
    storage: Option<String>,
    /// TOML file with `listen`, `data_dir` and an `[auth]` table; flags and environment
    /// override it.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// A trusted OpenID issuer URL, exactly as its tokens' `iss` (repeatable; the environment
    /// takes a comma-separated list).
    #[arg(long = "issuer", env = "NAAST_ISSUERS", value_delimiter = ',')]
    issuers: Vec<String>,
    /// The audience tokens must name [default: naast].
    #[arg(long, env = "NAAST_AUDIENCE")]
    audience: Option<String>,
    /// Run the built-in development issuer and print tokens for the demo personas. NOT FOR
    /// PRODUCTION: anyone with the data directory can sign in as anyone.
    /// `--dev=false` (or `NAAST_DEV=false`) turns off a config file's `dev = true`.
    #[arg(
        long,
        env = "NAAST_DEV",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    dev: Option<bool>,
    /// Clock skew tolerated on token expiry, in seconds [default: 60].
    #[arg(long, env = "NAAST_LEEWAY_SECONDS")]
    leeway_seconds: Option<u64>,
    /// Least seconds between two fetches of an issuer's keys caused by an unknown key id
    /// [default: 10].
    #[arg(long, env = "NAAST_JWKS_MIN_REFRESH_SECONDS")]
    jwks_min_refresh_seconds: Option<u64>,
    /// Seconds an issuer's keys are used before they are fetched again (in the background; a
    /// withdrawn key stops being trusted then) [default: 600].
    #[arg(long, env = "NAAST_JWKS_TTL_SECONDS")]
    jwks_ttl_seconds: Option<u64>,
    /// A file holding the master key that wraps every household's data key: 32 random bytes as
    /// base64 (`openssl rand -base64 32`). The key itself may instead be given in the
    /// environment as NAAST_MASTER_KEY (never as a flag: flags show in the process list); this
    /// flag beats it, NAAST_MASTER_KEY_FILE with it is refused. The file must be readable by its
    /// owner alone (mode 600).
    #[arg(long)]
    master_key_file: Option<std::path::PathBuf>,
    /// Days audit records are kept at least [default: 1827, five years]; a year's records go
    /// together once the year ended that long ago.
    #[arg(long, env = "NAAST_AUDIT_RETENTION_DAYS")]
    audit_retention_days: Option<u64>,
    /// What an hour of a client supporter costs, in euro cents, for the effect report's yearly
    /// cost per household [default: 7500]
    #[arg(long, env = "NAAST_SUPPORTER_HOURLY_RATE_CENTS")]
    supporter_hourly_rate_cents: Option<u32>,
    /// A TOML file of `[[push]]` tables: the PGO platforms' endpoints the shared plan is pushed
    /// to (added to the config file's; see the README).
    #[arg(long, env = "NAAST_PUSH_CONFIG")]
    push_config: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct RotateArgs {
    /// The data directory and the key in use, as for `serve` (`--master-key-file`,
    /// NAAST_MASTER_KEY or the config file).
    #[command(flatten)]
    serve: ServeArgs,
    /// A file holding the new master key: 32 random bytes as base64, readable by its owner alone.
    #[arg(long)]
    new_master_key_file: std::path::PathBuf,
}

#[derive(clap::Args)]
struct BackupArgs {
    /// Directory to write the backup to; it must not exist yet or be empty.
    dir: std::path::PathBuf,
    /// The server's gRPC address.
    #[arg(long, env = "NAAST_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// A file holding an administrator's access token; else NAAST_TOKEN.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// Directory of the backup (as `naast backup` wrote it).
    dir: std::path::PathBuf,
    /// The data directory to restore into; it must not exist yet or be empty.
    #[arg(long, env = "NAAST_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Restore into this PostgreSQL database instead (`postgres://user@host/db`): it must hold
    /// nothing of naast's, and every node on it must be stopped. Start the nodes on empty data
    /// directories then (their read models are rebuilt from the restored log).
    #[arg(long, env = "NAAST_STORAGE")]
    storage: Option<String>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Keep serving the demo data afterwards (until SIGINT/SIGTERM), for a PGO or a gRPC tool.
    #[arg(long)]
    serve: bool,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Address of the FHIR facade with `--serve` [default: a free port on 127.0.0.1].
    #[arg(long)]
    fhir_listen: Option<String>,
    /// Address of the web timeline with `--serve`, where the demo personas sign in with one
    /// click [default: a free port on 127.0.0.1].
    #[arg(long)]
    web_listen: Option<String>,
    /// Directory for the demo's event log [default: a fresh temporary one, removed afterwards].
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum BenchTarget {
    /// The event log: durable appends, catch-up, stream reads.
    Eventlog(naast_server::bench::EventlogArgs),
    /// The gRPC API: durable commands from many clients, timeline pages.
    Api(naast_server::bench::ApiArgs),
    /// The FHIR facade: mapping, the household Bundle, a read next to gRPC's.
    Fhir(naast_server::bench_fhir::FhirArgs),
    /// Push to a PGO platform's FHIR server: resources per second, and the lag from commit to
    /// delivery while commands come in.
    Push(naast_server::bench_push::PushArgs),
    /// Signals: every household's computed from its state, next to replaying that state; the
    /// update after one new event.
    Signals(naast_server::bench_signals::SignalsArgs),
    /// The honest clients of `bench api --load-process`, in a process of their own.
    #[command(hide = true)]
    ApiLoad(naast_server::bench::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Everything naast writes (the event log, read models, audit log, keys) is for its own user
    // alone: files 0600, directories 0700, whatever the caller's umask.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // The demo's output is the timelines; the server's own notes would only get in the way.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NAAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // One JSON object per line, each with its call's span (method, request id): for a log
        // collector.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    let outcome = match cli.command {
        Command::Serve(args) => match config(args, true).and_then(|c| block_on(serve_with(c))) {
            Ok(Served::Stopped) => Ok(()),
            Ok(Served::Restart { held }) => {
                // Held until the exec, which closes its connection: the new run asks for it
                // first thing, before the other nodes' next ask (every 5 s).
                let error = naast_server::recovery::restart_in_place();
                drop(held);
                Err(failed(format!("cannot restart in place: {error}")))
            }
            Err(e) => Err(e),
        },
        Command::Demo(args) => block_on(demo_with(args)),
        Command::Replay(args) => config(args, false).and_then(|c| block_on(replay_with(c))),
        Command::Verify(args) => config(args, false).and_then(verify),
        Command::RotateMasterKey(args) => rotate_master_key(args),
        Command::Backup(args) => backup(args),
        Command::Load(args) => naast_server::load::run(&args).map_err(failed),
        Command::Restore(args) => block_on(restore(args)),
        Command::Bench { target } => match target {
            BenchTarget::Eventlog(args) => naast_server::bench::eventlog(&args).map_err(failed),
            BenchTarget::Api(args) => naast_server::bench::api(&args).map_err(failed),
            BenchTarget::Fhir(args) => naast_server::bench_fhir::fhir(&args).map_err(failed),
            BenchTarget::Push(args) => naast_server::bench_push::push(&args).map_err(failed),
            BenchTarget::Signals(args) => {
                naast_server::bench_signals::signals(&args).map_err(failed)
            }
            BenchTarget::ApiLoad(args) => naast_server::bench::api_load(&args).map_err(failed),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("naast: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Why a command ends without success, and its exit code.
struct Failure {
    code: u8,
    message: String,
}

/// Exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

/// The settings of `serve`, `replay` and `verify`, checked before anything is opened. Only a
/// server that `serves` needs someone to trust: the offline commands sign nobody in.
fn config(args: ServeArgs, serves: bool) -> Result<Config, Failure> {
    let overrides = Overrides {
        listen: args.listen,
        fhir_listen: args.fhir_listen,
        metrics_listen: args.metrics_listen,
        web_listen: args.web_listen,
        data_dir: args.data_dir,
        storage: args.storage,
        issuers: args.issuers,
        audience: args.audience,
        dev: args.dev,
        leeway_seconds: args.leeway_seconds,
        jwks_min_refresh_seconds: args.jwks_min_refresh_seconds,
        jwks_ttl_seconds: args.jwks_ttl_seconds,
        master_key: std::env::var("NAAST_MASTER_KEY").ok(),
        master_key_file_is_flag: args.master_key_file.is_some(),
        master_key_file: args
            .master_key_file
            .or_else(|| std::env::var_os("NAAST_MASTER_KEY_FILE").map(Into::into)),
        audit_retention_days: args.audit_retention_days,
        supporter_hourly_rate_cents: args.supporter_hourly_rate_cents,
        push_config: args.push_config,
    };
    let config =
        Config::resolve(overrides, args.config.as_deref(), serves).map_err(|e| Failure {
            code: EXIT_CONFIG,
            message: e.to_string(),
        })?;
    // Every command that opens a data directory comes here: none may use one that an
    // unfinished restore left half written.
    naast_server::backup::refuse_unfinished_restore(&config.data_dir).map_err(failed)?;
    Ok(config)
}

/// How long a node restarting in place waits for its PostgreSQL database to take writes again
/// (a failover: the old primary gone, a standby being promoted).
const RESTART_WAITS_FOR_DATABASE: std::time::Duration = std::time::Duration::from_secs(120);

/// The advisory lock of the push lease: of several nodes on one PostgreSQL database, the one
/// holding it pushes to the platforms.
const PUSH_LEASE: i64 = 0x6e61_6173_745f_7073;

/// How often a node without the push lease asks for it again.
const PUSH_LEASE_ASKED_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The push lease of the database at `url`, once it is free (never, for `None`: a node not on
/// PostgreSQL, or one holding it already). Asked for every [`PUSH_LEASE_ASKED_EVERY`]; a
/// database that does not answer is asked again.
async fn take_push_lease_when_free(url: Option<String>) -> naast_postgres::Lease {
    let Some(url) = url else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(PUSH_LEASE_ASKED_EVERY).await;
        match ask_for_push_lease(url.clone()).await {
            Ok(Some(lease)) => return lease,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot ask for the push lease"),
        }
    }
}

/// The push lease of the database at `url` if no node holds it (`None` when one does).
async fn ask_for_push_lease(url: String) -> Result<Option<naast_postgres::Lease>, String> {
    tokio::task::spawn_blocking(move || naast_postgres::Lease::try_take(&url, PUSH_LEASE))
        .await
        .map_err(|e| e.to_string())?
}

/// The file of the development master key in a data directory.
const DEV_MASTER_KEY_FILE: &str = "dev-master-key";

/// The key store of `data_dir` (in the PostgreSQL database `storage` when the event log is
/// there), unlocked by the configured master key; in `dev` mode without one, by a development key
/// kept in the data directory (made on first use). `None` when there is no key at all (an offline
/// command on data of a server given its key elsewhere).
fn vault(
    data_dir: &std::path::Path,
    storage: Option<&naast_server::config::Secret>,
    master_key: Option<&naast_server::config::Secret>,
    dev: bool,
) -> Result<Option<naast_vault::Vault>, Box<dyn std::error::Error + Send + Sync>> {
    let Some(key) = master(data_dir, master_key, dev)? else {
        return Ok(None);
    };
    Ok(Some(match storage {
        Some(url) => naast_vault::Vault::open_postgres(&url.0, &key)?,
        None => naast_vault::Vault::open(&data_dir.join("keys"), &key)?,
    }))
}

/// The master key: configured, or in `dev` mode the development key of the data directory
/// (made on first use); `None` when there is none.
fn master(
    data_dir: &std::path::Path,
    master_key: Option<&naast_server::config::Secret>,
    dev: bool,
) -> Result<Option<naast_vault::MasterKey>, Box<dyn std::error::Error + Send + Sync>> {
    let dev_file = data_dir.join(DEV_MASTER_KEY_FILE);
    let text = match master_key {
        Some(secret) => secret.0.clone(),
        None if dev_file.exists() => std::fs::read_to_string(&dev_file)?,
        None if dev => {
            std::fs::create_dir_all(data_dir)?;
            let key = naast_vault::MasterKey::generate_base64();
            naast_server::auth::dev::write_private(&dev_file, key.as_bytes())?;
            key
        }
        None => return Ok(None),
    };
    Ok(Some(naast_vault::MasterKey::from_base64(&text)?))
}

/// With the event log in PostgreSQL: takes the keys and audit years a data directory still
/// holds into the database (see `naast_server::adopt`).
async fn adopt(
    config: &Config,
    vault: Option<&naast_vault::Vault>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Some(url) = &config.storage else {
        return Ok(());
    };
    let master = master(&config.data_dir, config.master_key.as_ref(), config.dev)?;
    naast_server::adopt::into_postgres(&config.data_dir, &url.0, vault, master.as_ref()).await?;
    Ok(())
}

/// Authentication, audit and encryption at rest for a server on `data_dir`: the trusted issuers
/// of `auth`, and with `dev` the development issuer (its persona tokens are printed on stdout).
fn guard(
    data_dir: &std::path::Path,
    storage: Option<&naast_server::config::Secret>,
    auth: &AuthSettings,
    dev: bool,
    vault: Option<naast_vault::Vault>,
    audit_retention: std::time::Duration,
    limits: naast_app::auth::limits::LimitSettings,
) -> Result<(Guard, Option<DevIssuer>), Box<dyn std::error::Error + Send + Sync>> {
    let auditor = match storage {
        Some(url) => Auditor::open_postgres(&url.0, &data_dir.join("audit"), audit_retention)?,
        None => Auditor::open(&data_dir.join("audit"), audit_retention)?,
    };
    let dev = if dev {
        Some(DevIssuer::open(data_dir, &auth.audience)?)
    } else {
        None
    };
    let builtin = dev
        .iter()
        .map(|d| (DEV_ISSUER.to_owned(), d.jwks()))
        .collect();
    let authenticator = Authenticator::new(auth, builtin)?;
    Ok((
        Guard {
            authenticator,
            auditor,
            vault,
            failures: Default::default(),
            limits: naast_app::auth::limits::Limits::new(limits),
        },
        dev,
    ))
}

/// Prints a token for each demo persona, loudly marked.
fn print_dev_tokens(dev: &DevIssuer) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    println!(
        "naast: DEVELOPMENT ISSUER {DEV_ISSUER} IS ON. NOT FOR PRODUCTION: these tokens sign in as demo personas."
    );
    for persona in PERSONAS {
        println!(
            "naast dev token {} {}",
            persona.key,
            dev.mint(persona, DEV_TOKEN_LIFETIME)?
        );
    }
    Ok(())
}

fn block_on<T, E: std::fmt::Display>(
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Failure> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(work).map_err(failed)
}

async fn replay_with(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    naast_server::config::private_data_dir(&config.data_dir)?;
    let log = config.open_log(Options::default())?;
    let mut projections = Projections::open(&config.data_dir.join("projections"))?;
    let vault = vault(
        &config.data_dir,
        config.storage.as_ref(),
        config.master_key.as_ref(),
        false,
    )?;
    adopt(&config, vault.as_ref()).await?;
    match vault {
        Some(vault) => projections = projections.with_vault(vault),
        None => eprintln!(
            "naast replay: no master key given: sealed household events are left off the timelines"
        ),
    }
    let started = std::time::Instant::now();
    projections.reset()?;
    let events = projections.catch_up(&log).await?;
    log.close().await;
    println!(
        "naast replay: {events} events projected in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn rotate_master_key(args: RotateArgs) -> Result<(), Failure> {
    let usage = |message: String| Failure {
        code: EXIT_CONFIG,
        message,
    };
    let new = naast_server::config::master_key_from_file(&args.new_master_key_file)
        .map_err(|e| usage(e.to_string()))?;
    let config = config(args.serve, false)?;
    let old = config
        .master_key
        .as_ref()
        .ok_or_else(|| {
            usage(
                "rotate-master-key: give the master key in use (--master-key-file, NAAST_MASTER_KEY or master_key_file in the config file)".into(),
            )
        })
        .and_then(|secret| {
            naast_vault::MasterKey::from_base64(&secret.0).map_err(|e| usage(e.to_string()))
        })?;
    // The server must be stopped (it keeps keys in memory and makes new ones): holding the
    // data directory's lock (and on PostgreSQL the log as its sole writer, which no node may
    // have open meanwhile) for the whole rotation shows it is, and keeps it so.
    let log = config
        .open_log(Options {
            sole_writer: true,
            ..Options::default()
        })
        .map_err(failed)?;
    let rotated = match &config.storage {
        Some(url) => naast_vault::rotate_master_key_in_postgres(&url.0, &old, &new),
        None => naast_vault::rotate_master_key(&config.data_dir.join("keys"), &old, &new),
    };
    block_on(async {
        log.close().await;
        Ok::<(), String>(())
    })?;
    let rotated = rotated.map_err(failed)?;
    println!(
        "naast rotate-master-key: {} household keys rewrapped under the new master key ({} already were); start naast with the new key",
        rotated.rewrapped, rotated.already
    );
    Ok(())
}

fn backup(args: BackupArgs) -> Result<(), Failure> {
    let token = match &args.token_file {
        Some(file) => std::fs::read_to_string(file).map_err(|e| Failure {
            code: EXIT_CONFIG,
            message: format!("backup: {}: {e}", file.display()),
        })?,
        None => std::env::var("NAAST_TOKEN").map_err(|_| Failure {
            code: EXIT_CONFIG,
            message: "backup: give an administrator's access token (--token-file or NAAST_TOKEN)"
                .into(),
        })?,
    };
    let started = std::time::Instant::now();
    let manifest = block_on(naast_server::backup::receive(
        &args.server,
        token.trim(),
        &args.dir,
    ))
    .map_err(|e| failed(format!("backup: {}", e.message)))?;
    let bytes: u64 = manifest.parts.iter().map(|p| p.bytes).sum();
    println!(
        "naast backup: {} events, {} audit records, {} keys in {} ({:.1} MB, {:.1} s); checked",
        manifest.events.events,
        manifest.audit.iter().map(|a| a.log.events).sum::<u64>(),
        manifest.keys.as_ref().map_or(0, |k| k.entries),
        args.dir.display(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn restore(args: RestoreArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (manifest, into) = match (&args.storage, &args.data_dir) {
        (Some(_), Some(_)) => {
            return Err(
                "say where to restore into: --data-dir DIR or --storage postgres://…, not both (NAAST_DATA_DIR and NAAST_STORAGE count too)".into(),
            );
        }
        (Some(url), None) => {
            naast_eventlog::postgres::check_url(url).map_err(|e| format!("--storage: {e}"))?;
            let manifest = naast_server::backup::restore_into_postgres(&args.dir, url).await?;
            (manifest, "the PostgreSQL database".to_owned())
        }
        (None, Some(data_dir)) => {
            let manifest = naast_server::backup::restore(&args.dir, data_dir).await?;
            (manifest, data_dir.display().to_string())
        }
        (None, None) => {
            return Err(
                "say where to restore into: --data-dir DIR, or --storage postgres://… (or NAAST_DATA_DIR, NAAST_STORAGE)".into(),
            );
        }
    };
    println!(
        "naast restore: {} events and {} audit records restored into {into}; start naast there with the master key of the backup (the read models are rebuilt then)",
        manifest.events.events,
        manifest.audit.iter().map(|a| a.log.events).sum::<u64>(),
    );
    Ok(())
}

fn verify(config: Config) -> Result<(), Failure> {
    // The log first: in PostgreSQL its open refuses a database an unfinished restore marked,
    // before anything below writes to it (the key store's check, keys taken in).
    let log = config.open_log(Options::default()).map_err(failed)?;
    if config.storage.is_some() {
        let vault = vault(
            &config.data_dir,
            config.storage.as_ref(),
            config.master_key.as_ref(),
            false,
        )
        .map_err(failed)?;
        block_on(adopt(&config, vault.as_ref()))?;
    }
    let audit = config.data_dir.join("audit");
    if audit.exists() || config.storage.is_some() {
        // Each year's partition is a chain of its own.
        let auditor = match &config.storage {
            Some(url) => Auditor::open_postgres(&url.0, &audit, config.audit_retention),
            None => Auditor::open(&audit, config.audit_retention),
        }
        .map_err(failed)?;
        for (year, log) in auditor.partitions() {
            let report = log.verify().map_err(failed)?;
            if let Some(broken) = report.first_break {
                return Err(failed(format!(
                    "verify: audit log of {year} BROKEN at position {}: {} ({} records intact before it)",
                    broken.position, broken.reason, report.events
                )));
            }
            println!(
                "naast verify: audit log of {year} intact: {} records",
                report.events
            );
        }
        block_on(async {
            auditor.close().await;
            Ok::<(), String>(())
        })?;
    }
    let report = log.verify().map_err(failed);
    // Closed cleanly, so the next open need not look for debris again.
    block_on(async {
        log.close().await;
        Ok::<(), String>(())
    })?;
    let report = report?;
    if report.swept_debris > 0 {
        println!(
            "naast verify: {} index entries past the log's end (left by a write that never finished) were found and removed",
            report.swept_debris
        );
    }
    if report.debris > 0 {
        println!(
            "naast verify: {} index entries point past the log's end; reads ignore them",
            report.debris
        );
    }
    match report.first_break {
        None => {
            println!(
                "naast verify: intact: {} events in {} streams",
                report.events, report.streams
            );
            Ok(())
        }
        Some(broken) => Err(failed(format!(
            "verify: BROKEN at position {}: {} ({} events intact before it)",
            broken.position, broken.reason, report.events
        ))),
    }
}

async fn demo_with(args: DemoArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listen: std::net::SocketAddr = args.listen.parse().map_err(|_| {
        format!(
            "listen address {:?} is not an IP address and port",
            args.listen
        )
    })?;
    let scratch = tempfile::Builder::new().prefix("naast-demo-").tempdir()?;
    let data_dir = args.data_dir.unwrap_or_else(|| scratch.path().to_owned());
    let log = EventLog::open(&data_dir, Options::default())?;
    let vault = vault(&data_dir, None, None, true)?;
    let mut projections = Projections::open(&data_dir.join("projections"))?;
    if let Some(vault) = &vault {
        projections = projections.with_vault(vault.clone());
    }
    let auth = AuthSettings {
        issuers: Vec::new(),
        audience: naast_server::config::DEFAULT_AUDIENCE.to_owned(),
        leeway: naast_server::auth::DEFAULT_LEEWAY,
        jwks_min_refresh: naast_server::auth::DEFAULT_JWKS_MIN_REFRESH,
        jwks_ttl: naast_server::auth::DEFAULT_JWKS_TTL,
        claims: Default::default(),
    };
    let retention =
        std::time::Duration::from_secs(naast_server::audit::DEFAULT_RETENTION_DAYS * 86_400);
    let (guard, dev) = guard(
        &data_dir,
        None,
        &auth,
        true,
        vault,
        retention,
        Default::default(),
    )?;
    let dev = dev.ok_or("the development issuer did not start")?;
    let parent = naast_server::auth::dev::Persona::named("ouder")
        .ok_or("the demo persona `ouder` is missing")?;
    let token = dev.mint(parent, DEV_TOKEN_LIFETIME)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    // With --serve, the FHIR facade too: on the address given, else on a free port.
    let fhir = match (&args.fhir_listen, args.serve) {
        (Some(fhir), _) => {
            let fhir: std::net::SocketAddr = fhir.parse().map_err(|_| {
                format!("FHIR listen address {fhir:?} is not an IP address and port")
            })?;
            Some(tokio::net::TcpListener::bind(fhir).await?)
        }
        (None, true) => Some(tokio::net::TcpListener::bind((listen.ip(), 0)).await?),
        (None, false) => None,
    };
    let fhir_address = fhir.as_ref().map(|l| l.local_addr()).transpose()?;
    // With --serve, the web timeline too, where the demo personas sign in with one click.
    let web = match (&args.web_listen, args.serve) {
        (Some(web), _) => Some(
            web.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("web listen address {web:?} is not an IP address and port"))?,
        ),
        (None, true) => Some(std::net::SocketAddr::new(listen.ip(), 0)),
        (None, false) => None,
    };
    let web = match web {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at).await?;
            let settings = naast_server::web::WebSettings {
                listen: listener.local_addr()?,
                public_url: None,
                oidc: None,
            };
            Some((listener, settings))
        }
        None => None,
    };
    let web_address = web.as_ref().map(|(_, settings)| settings.listen);
    let dev = std::sync::Arc::new(dev);
    let web = web.map(|(listener, settings)| naast_server::web::Setup {
        listener,
        settings,
        dev: Some(dev.clone()),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(grpc::run(
        listener,
        grpc::Doors {
            fhir,
            metrics: None,
            web,
        },
        None,
        grpc::Stores::in_dir(log, projections, &data_dir),
        Some(guard),
        async move {
            let _ = stopped.await;
        },
    ));
    naast_server::demo::run(format!("http://{address}"), &token, &mut std::io::stdout()).await?;
    if args.serve {
        println!();
        print_dev_tokens(&dev)?;
        println!("\nnaast listening on {address} with the demo data; Ctrl-C stops it");
        if let Some(fhir) = fhir_address {
            println!("naast FHIR facade on http://{fhir}/fhir");
        }
        if let Some(web) = web_address {
            println!(
                "naast web timeline on http://{web}/ (demo personas sign in there: NOT FOR PRODUCTION)"
            );
        }
        let _ = std::io::stdout().flush();
        grpc::shutdown_signal().await;
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// How `naast serve` ended.
enum Served {
    /// On SIGTERM or SIGINT.
    Stopped,
    /// A store failed and the disk has room again, or the push lease was lost or became free:
    /// the process runs itself anew. `held`: the push lease this node took, held until then.
    Restart {
        held: Option<Box<naast_postgres::Lease>>,
    },
}

async fn serve_with(config: Config) -> Result<Served, Box<dyn std::error::Error + Send + Sync>> {
    naast_server::config::private_data_dir(&config.data_dir)?;
    // The push store holds the endpoints' state and the FHIR Subscriptions, so it is there
    // even without endpoints. With the event log in PostgreSQL it is there too, shared: every
    // node makes and serves subscriptions, and the one holding the push lease pushes and sends
    // the notifications, going on where the last holder stopped.
    // Asked for first thing: a node that restarted to push (the lease went with its old run)
    // takes it again before another node's next ask.
    let push_lease = match &config.storage {
        Some(url) => {
            let lease = ask_for_push_lease(url.0.clone()).await?;
            if lease.is_none() {
                tracing::info!(
                    "another node holds the push lease: this one does not push, nor send the FHIR Subscriptions' notifications"
                );
            }
            Some(lease)
        }
        None => None,
    };
    let min_free_bytes = config.limits.min_free_disk_mb.saturating_mul(1024 * 1024);
    // (The disk reserve guards the data directory's disk; PostgreSQL guards its own.)
    let log = config.open_log(Options {
        min_free_bytes,
        ..Options::default()
    })?;
    if config.storage.is_some() {
        tracing::info!("the event log is in PostgreSQL");
    }
    let vault = vault(
        &config.data_dir,
        config.storage.as_ref(),
        config.master_key.as_ref(),
        config.dev,
    )?
    .ok_or("no master key")?;
    adopt(&config, Some(&vault)).await?;
    let projections =
        Projections::open(&config.data_dir.join("projections"))?.with_vault(vault.clone());
    let (guard, dev) = guard(
        &config.data_dir,
        config.storage.as_ref(),
        &config.auth,
        config.dev,
        Some(vault),
        config.audit_retention,
        config.limits,
    )?;
    if let Some(dev) = &dev {
        print_dev_tokens(dev)?;
    }
    let dev = dev.map(std::sync::Arc::new);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr()?;
    let fhir = match config.fhir_listen {
        Some(fhir) => Some(
            tokio::net::TcpListener::bind(fhir)
                .await
                .map_err(|e| format!("cannot listen on {fhir} for FHIR: {e}"))?,
        ),
        None => None,
    };
    let web = match config.web {
        Some(settings) => {
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .map_err(|e| {
                    format!(
                        "cannot listen on {} for the web timeline: {e}",
                        settings.listen
                    )
                })?;
            Some(naast_server::web::Setup {
                settings: naast_server::web::WebSettings {
                    listen: listener.local_addr()?,
                    ..settings
                },
                listener,
                dev: dev.clone(),
            })
        }
        None => None,
    };
    let metrics = match config.metrics_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| format!("cannot listen on {at} for metrics: {e}"))?;
            let handle = naast_server::metrics::install()
                .map_err(|e| format!("cannot start the metrics recorder: {e}"))?;
            Some((listener, handle))
        }
        None => None,
    };
    // One line on stdout that tools and tests can wait for (the FHIR and metrics lines first,
    // when there are, so that all are known once this one is read).
    if let Some(fhir) = &fhir {
        println!("naast FHIR facade on http://{}/fhir", fhir.local_addr()?);
    }
    if let Some((metrics, _)) = &metrics {
        println!("naast metrics on http://{}/metrics", metrics.local_addr()?);
    }
    if let Some(web) = &web {
        println!(
            "naast web timeline on {}/",
            web.settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", web.settings.listen))
        );
    }
    println!("naast listening on {address}");
    let _ = std::io::stdout().flush();
    tracing::info!(%address, data_dir = %config.data_dir.display(), "serving");
    let push = naast_push::Setup {
        store: match &config.storage {
            Some(url) => naast_push::Store::open_postgres(&url.0)?,
            None => naast_push::Store::open(&config.data_dir.join("push"))?,
        },
        endpoints: config.push,
        delivers: !matches!(push_lease, Some(None)),
    };
    if push.delivers && push.store.is_shared() {
        naast_server::adopt::push_state(&config.data_dir, &push.store)?;
    }
    // A node without the lease asks for it again every few seconds: once the node holding it
    // is gone (its connection with it), one of the others takes it and runs anew to push.
    let lease_wanted = match (&config.storage, &push_lease) {
        (Some(url), Some(None)) => Some(url.0.clone()),
        _ => None,
    };
    let push_lease = push_lease.flatten();
    let taken = std::sync::Arc::new(std::sync::Mutex::new(None));
    // With the log in PostgreSQL, the record of disclosed reports is there too, for every node.
    let shared_disclosures = match &config.storage {
        Some(url) => Some(naast_app::evaluation::open_shared_disclosures(&url.0)?),
        None => None,
    };
    // A store that failed on a full disk is reopened by a restart in place once there is room;
    // a log in PostgreSQL whose connection was lost, too.
    let watch = naast_server::recovery::Watch {
        log: log.clone(),
        others: shared_disclosures
            .iter()
            .map(|log| ("the record of disclosed reports", log.clone()))
            .collect(),
        auditor: Some(guard.auditor.clone()),
        projections: projections.clone(),
        data_dir: config.data_dir.clone(),
        min_free_bytes,
    };
    let restart = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = {
        let restart = restart.clone();
        let taken = taken.clone();
        async move {
            let lease_lost = async {
                match &push_lease {
                    Some(lease) => lease.lost().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = grpc::shutdown_signal() => {}
                () = lease_lost => {
                    // Another node may take it now: this one must stop pushing at once.
                    tracing::error!("the push lease was lost with its connection to PostgreSQL: restarting in place");
                    restart.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                failed = watch.failed_with_room_again() => {
                    tracing::error!(store = %failed, "a store failed and the disk has room again: restarting in place");
                    restart.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                lease = take_push_lease_when_free(lease_wanted) => {
                    tracing::warn!("the push lease was free (the node that held it is gone): restarting in place to push");
                    *taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(lease);
                    restart.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    grpc::run(
        listener,
        grpc::Doors { fhir, metrics, web },
        Some(push),
        grpc::Stores {
            disclosures: config.data_dir.join("disclosures"),
            shared_disclosures,
            hourly_rate_cents: config.supporter_hourly_rate_cents,
            log,
            projections,
        },
        Some(guard),
        shutdown,
    )
    .await?;
    Ok(if restart.load(std::sync::atomic::Ordering::SeqCst) {
        // A connection lost as PostgreSQL fails over (its standby being promoted): the new run
        // could not open the log until the database takes writes again, so wait for that here
        // rather than exit for want of it.
        if let Some(url) = &config.storage {
            let url = url.0.clone();
            let waited = tokio::task::spawn_blocking(move || {
                naast_postgres::wait_for_writes(&url, RESTART_WAITS_FOR_DATABASE)
            })
            .await;
            let failed = match waited {
                Ok(waited) => waited.err(),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failed {
                tracing::error!(error = %e, "PostgreSQL takes no writes yet; restarting all the same");
            }
        }
        Served::Restart {
            held: taken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .map(Box::new),
        }
    } else {
        Served::Stopped
    })
}

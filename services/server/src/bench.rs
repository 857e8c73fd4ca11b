//! Benchmarks. Each prints one JSON object per line with its figures next to a ceiling measured
//! in the same run on the same disk, so the ratio means something on any machine.
//!
//! `naast bench eventlog` measures:
//! - `eventlog.append`: durable appends of one event each from many concurrent writers, each on
//!   its own stream with an exact expected revision; ceiling: the same number of records of the
//!   same size written by one thread straight into a sled tree in batches of 64, one flush per
//!   batch (sled's own flush, without the extra `sync_data` the log adds for real durability),
//!   and a durable ceiling that adds that `sync_data` per batch;
//! - `eventlog.append_single_writer`: the latency of one writer alone; ceiling: one thread
//!   inserting into sled and flushing after each record;
//! - `eventlog.catchup`: a subscription reading the whole log from position 0 after a bulk
//!   import; ceiling: a raw scan over the same sled tree;
//! - `eventlog.read_stream`: reading one household's stream of 10,000 events in pages of 100.

use bytes::Bytes;
use naast_eventlog::{
    Direction, Durability, EventLog, ExpectedRevision, Metadata, NewEvent, Options, SledStorage,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] naast_eventlog::Error),
    /// sled failed while measuring the ceiling.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The scratch directory or the runtime could not be set up.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A writer task died.
    #[error("writer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The benchmark saw something other than what it wrote.
    #[error("benchmark check failed: {0}")]
    Check(String),
}

/// A failed step of a benchmark's setup or check, as a [`BenchError::Check`].
pub(crate) fn fail(e: &dyn std::fmt::Display) -> BenchError {
    BenchError::Check(e.to_string())
}

/// Options of `naast bench eventlog`.
#[derive(Clone, Debug, clap::Args)]
pub struct EventlogArgs {
    /// Durable appends in the concurrent append benchmark.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Concurrent writers in the append benchmark.
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Appends of the single-writer benchmark.
    #[arg(long, default_value_t = 3_000)]
    pub single_writer_events: usize,
    /// Events imported before the catch-up benchmark reads them all.
    #[arg(long, default_value_t = 1_000_000)]
    pub catchup_events: usize,
    /// Events of the stream read page by page in the read benchmark.
    #[arg(long, default_value_t = 10_000)]
    pub stream_events: usize,
    /// Payload bytes per event (the stored record adds ~130 bytes).
    #[arg(long, default_value_t = 350)]
    pub payload_bytes: usize,
    /// Where to put the scratch data (removed afterwards). Defaults to a fresh folder in the
    /// current directory rather than the system's temp folder, which may live in memory and
    /// would make every sync free.
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
    /// Also measure the log on PostgreSQL: an empty database it may fill (`postgres://…`),
    /// next to PostgreSQL as a plain events table in the same database.
    #[arg(long)]
    pub storage: Option<String>,
}

/// Runs `naast bench eventlog`.
pub fn eventlog(args: &EventlogArgs) -> Result<(), BenchError> {
    let scratch = scratch_dir(args.scratch_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let payload = payload(args.payload_bytes);
    runtime.block_on(async {
        append_concurrent(scratch.path(), args, &payload).await?;
        if let Some(url) = &args.storage {
            append_postgres(url, args, &payload).await?;
        }
        append_single_writer(scratch.path(), args, &payload).await?;
        catchup_and_read(scratch.path(), args, &payload).await
    })
}

/// A JSON-ish body of `len` bytes, like an agreement's.
fn payload(len: usize) -> Bytes {
    let head = br#"{"kind":"AgreementProposed","text":"logeeropvang twee weekenden per maand (Wlz, PGB)","filler":""#;
    let mut body = head.to_vec();
    body.resize(len.saturating_sub(2).max(head.len()), b'x');
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

fn event(payload: &Bytes) -> NewEvent {
    NewEvent {
        metadata: Metadata {
            correlation_id: Some(uuid::Uuid::now_v7()),
            causation_id: None,
            actor: Some("bench:supporter".into()),
        },
        ..NewEvent::new("AgreementProposed", payload.clone())
    }
}

/// Size of the record the log stores for `event(payload)`, to write ceilings of the same size.
pub(crate) fn record_size(log: &EventLog) -> Result<usize, BenchError> {
    let last = log.read_all(naast_eventlog::END, Direction::Backwards, 1)?;
    last.first()
        .map(naast_eventlog::RecordedEvent::encoded_len)
        .ok_or_else(|| BenchError::Check("no event to size".into()))
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The CPU time this process has used so far, all threads, user and system, in seconds (0 where
/// there is no /proc).
pub(crate) fn cpu_seconds() -> f64 {
    process_cpu_seconds("self").unwrap_or(0.0)
}

/// The CPU time of process `pid` (a number, or `self`), all threads, user and system, in
/// seconds, from /proc in its ticks of 1/100 s.
pub(crate) fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, which may hold spaces): state is the first
    // field, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Resident memory of process `pid` (a number, or `self`) in bytes, from /proc.
pub(crate) fn resident_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resident memory of this process in MiB, from /proc (0 where there is none).
fn rss_mb() -> f64 {
    resident_bytes("self").map_or(0.0, |bytes| round(bytes as f64 / (1024.0 * 1024.0), 1))
}

async fn append_concurrent(
    scratch: &Path,
    args: &EventlogArgs,
    payload: &Bytes,
) -> Result<(), BenchError> {
    let dir = scratch.join("append");
    let log = EventLog::open(&dir, Options::default())?;
    let writers = args.writers.max(1);
    let per_writer = (args.events / writers).max(1);
    let (latencies, elapsed) = timed_appends(&log, writers, per_writer, payload).await?;
    let events = latencies.len();
    let size = record_size(&log)?;
    let rss = rss_mb();
    log.close().await;
    drop(log);
    let ceiling = sled_batched_ceiling(&scratch.join("ceiling-batched"), events, size, false)?;
    let durable_ceiling =
        sled_batched_ceiling(&scratch.join("ceiling-durable"), events, size, true)?;
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "{}",
        json!({
            "bench": "eventlog.append",
            "writers": writers,
            "events": events,
            "record_bytes": size,
            "events_per_sec": round(rate, 0),
            "p50_us": round(percentile(&latencies, 0.50), 0),
            "p99_us": round(percentile(&latencies, 0.99), 0),
            "ceiling": "sled 0.34.7, one thread, batches of 64, one flush per batch",
            "ceiling_events_per_sec": round(ceiling, 0),
            "ratio_to_ceiling": round(rate / ceiling, 3),
            "durable_ceiling": "the same, plus an fdatasync of sled's data file per batch",
            "durable_ceiling_events_per_sec": round(durable_ceiling, 0),
            "ratio_to_durable_ceiling": round(rate / durable_ceiling, 3),
            "rss_mb": rss,
        })
    );
    Ok(())
}

/// [`appends`], checked to have stored every event: the latencies sorted, and the time taken.
async fn timed_appends(
    log: &EventLog,
    writers: usize,
    per_writer: usize,
    payload: &Bytes,
) -> Result<(Vec<Duration>, Duration), BenchError> {
    let started = Instant::now();
    let mut latencies = appends(log, writers, per_writer, payload).await?;
    let elapsed = started.elapsed();
    latencies.sort();
    if log.head() != latencies.len() as u64 {
        return Err(BenchError::Check(format!(
            "{} events stored, {} appended",
            log.head(),
            latencies.len()
        )));
    }
    Ok((latencies, elapsed))
}

/// `writers` tasks, each appending `per_writer` events one by one to a stream of its own: the
/// latency of each append.
async fn appends(
    log: &EventLog,
    writers: usize,
    per_writer: usize,
    payload: &Bytes,
) -> Result<Vec<Duration>, BenchError> {
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let (log, payload) = (log.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let stream = format!("household-{w}");
            let mut latencies = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let expected = match i {
                    0 => ExpectedRevision::NoStream,
                    i => ExpectedRevision::Exact(i as u64 - 1),
                };
                let t = Instant::now();
                log.append(&stream, expected, vec![event(&payload)]).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, naast_eventlog::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(per_writer * writers);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

/// The concurrent append benchmark on PostgreSQL (`--storage`), next to PostgreSQL used as a
/// plain events table by as many clients in the same database: each client appends to its own
/// stream with the next revision computed in the `INSERT` (a unique stream and revision, as
/// `pg-events-anchor.sh` does), one synchronous commit per append.
async fn append_postgres(
    url: &str,
    args: &EventlogArgs,
    payload: &Bytes,
) -> Result<(), BenchError> {
    let writers = args.writers.max(1);
    let per_writer = (args.events / writers).max(1);
    let opened = {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || EventLog::open_postgres(&url, Options::default()))
            .await
            .map_err(|e| fail(&e))??
    };
    let log = opened;
    if log.head() != 0 {
        return Err(BenchError::Check(
            "--storage: give an empty database (the benchmark fills it)".into(),
        ));
    }
    let (latencies, elapsed) = timed_appends(&log, writers, per_writer, payload).await?;
    let events = latencies.len();
    let size = record_size(&log)?;
    log.close().await;
    drop(log);
    let rate = events as f64 / elapsed.as_secs_f64();
    let table = plain_table(url, writers, per_writer, size).await?;
    println!(
        "{}",
        json!({
            "bench": "eventlog.append_postgres",
            "writers": writers,
            "events": events,
            "record_bytes": size,
            "events_per_sec": round(rate, 0),
            "p50_us": round(percentile(&latencies, 0.50), 0),
            "p99_us": round(percentile(&latencies, 0.99), 0),
            "peer": "PostgreSQL as a plain events table in the same database: as many clients, each appending to its own stream, next revision computed in the INSERT, synchronous commit",
            "peer_events_per_sec": round(table, 0),
            "ratio_to_peer": round(rate / table, 3),
        })
    );
    Ok(())
}

/// PostgreSQL as a plain events table at `url`: `clients` connections append `per_client`
/// events of `size` bytes each; appends per second.
pub(crate) async fn plain_table(
    url: &str,
    clients: usize,
    per_client: usize,
    size: usize,
) -> Result<f64, BenchError> {
    let settings = naast_postgres::Settings::parse(url).map_err(|e| fail(&e))?;
    let connect = || async {
        let (client, connection) = settings.connect().await.map_err(|e| fail(&e))?;
        tokio::spawn(connection);
        Ok::<_, BenchError>(client)
    };
    let setup = connect().await?;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS naast_bench_plain_events;
             CREATE TABLE naast_bench_plain_events (
                 position bigserial PRIMARY KEY,
                 stream_id text NOT NULL,
                 revision bigint NOT NULL,
                 event_type text NOT NULL,
                 payload bytea NOT NULL,
                 recorded_at timestamptz NOT NULL DEFAULT now(),
                 UNIQUE (stream_id, revision)
             )",
        )
        .await
        .map_err(|e| fail(&e))?;
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        sessions.push(connect().await?);
    }
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (c, client) in sessions.into_iter().enumerate() {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let insert = client
                .prepare(
                    "INSERT INTO naast_bench_plain_events (stream_id, revision, event_type, payload) \
                     SELECT $1, coalesce(max(revision), -1) + 1, 'AgreementProposed', $2 \
                     FROM naast_bench_plain_events WHERE stream_id = $1",
                )
                .await?;
            let stream = format!("household-{c}");
            for _ in 0..per_client {
                client.execute(&insert, &[&stream, &payload]).await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| fail(&e))?.map_err(|e| fail(&e))?;
    }
    let rate = (clients * per_client) as f64 / started.elapsed().as_secs_f64();
    setup
        .batch_execute("DROP TABLE naast_bench_plain_events")
        .await
        .map_err(|e| fail(&e))?;
    Ok(rate)
}

async fn append_single_writer(
    scratch: &Path,
    args: &EventlogArgs,
    payload: &Bytes,
) -> Result<(), BenchError> {
    let log = EventLog::open(scratch.join("single"), Options::default())?;
    let mut latencies = Vec::with_capacity(args.single_writer_events);
    let started = Instant::now();
    for _ in 0..args.single_writer_events.max(1) {
        let t = Instant::now();
        log.append("household", ExpectedRevision::Any, vec![event(payload)])
            .await?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let events = latencies.len();
    let size = record_size(&log)?;
    log.close().await;
    drop(log);
    let ceiling = sled_flush_each_ceiling(&scratch.join("ceiling-single"), events, size)?;
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "{}",
        json!({
            "bench": "eventlog.append_single_writer",
            "writers": 1,
            "events": events,
            "events_per_sec": round(rate, 0),
            "p50_us": round(percentile(&latencies, 0.50), 0),
            "p99_us": round(percentile(&latencies, 0.99), 0),
            "ceiling": "sled 0.34.7, one thread, one flush per record",
            "ceiling_events_per_sec": round(ceiling, 0),
            "ratio_to_ceiling": round(rate / ceiling, 3),
        })
    );
    Ok(())
}

async fn catchup_and_read(
    scratch: &Path,
    args: &EventlogArgs,
    payload: &Bytes,
) -> Result<(), BenchError> {
    let dir = scratch.join("catchup");
    // Bulk import, as a migration would: async durability, large appends.
    {
        let log = EventLog::open(
            &dir,
            Options {
                durability: Durability::Async,
                ..Options::default()
            },
        )?;
        let stream_events = args.stream_events.min(args.catchup_events);
        import(&log, "household-read", stream_events, payload).await?;
        let rest = args.catchup_events - stream_events;
        let households = 1_000;
        let mut tasks = Vec::new();
        for h in 0..4 {
            let (log, payload) = (log.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let mut written = 0;
                let mut n = 0usize;
                while written < rest / 4 + usize::from(h < rest % 4) {
                    let count = 500.min(rest / 4 + usize::from(h < rest % 4) - written);
                    let stream = format!("household-{}", (n * 4 + h) % households);
                    let batch = (0..count).map(|_| event(&payload)).collect();
                    log.append(&stream, ExpectedRevision::Any, batch).await?;
                    written += count;
                    n += 1;
                }
                Ok::<_, naast_eventlog::Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        log.close().await;
    }

    let log = EventLog::open(&dir, Options::default())?;
    let total = log.head();
    let mut subscription = log.subscribe_all(0);
    let started = Instant::now();
    let mut bytes = 0usize;
    for expected in 0..total {
        let event = subscription.next().await?;
        if event.position != expected {
            return Err(BenchError::Check(format!(
                "catch-up gave position {} for {expected}",
                event.position
            )));
        }
        bytes += event.payload.len();
    }
    let elapsed = started.elapsed();
    drop(subscription);
    let rss = rss_mb();

    // Reading one household's stream page by page.
    let mut pages = Vec::new();
    let read_started = Instant::now();
    let mut from = 0;
    let mut read = 0;
    loop {
        let t = Instant::now();
        let page = log.read_stream("household-read", from, Direction::Forwards, 100)?;
        pages.push(t.elapsed());
        let Some(last) = page.last() else { break };
        from = last.revision + 1;
        read += page.len();
    }
    let read_elapsed = read_started.elapsed();
    pages.sort();
    log.close().await;
    drop(log);

    let ceiling = raw_scan_ceiling(&dir.join("sled"), total)?;
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "{}",
        json!({
            "bench": "eventlog.catchup",
            "events": total,
            "payload_mb": round(bytes as f64 / 1048576.0, 1),
            "events_per_sec": round(rate, 0),
            "seconds": round(elapsed.as_secs_f64(), 3),
            "ceiling": "raw sled 0.34.7 scan of the same records",
            "ceiling_events_per_sec": round(ceiling, 0),
            "ratio_to_ceiling": round(rate / ceiling, 3),
            "rss_mb": rss,
        })
    );
    println!(
        "{}",
        json!({
            "bench": "eventlog.read_stream",
            "stream_events": read,
            "page_size": 100,
            "events_per_sec": round(read as f64 / read_elapsed.as_secs_f64(), 0),
            "page_p50_us": round(percentile(&pages, 0.50), 0),
            "page_p99_us": round(percentile(&pages, 0.99), 0),
        })
    );
    Ok(())
}

async fn import(
    log: &EventLog,
    stream: &str,
    events: usize,
    payload: &Bytes,
) -> Result<(), BenchError> {
    let mut written = 0;
    while written < events {
        let count = 500.min(events - written);
        let batch = (0..count).map(|_| event(payload)).collect();
        log.append(stream, ExpectedRevision::Any, batch).await?;
        written += count;
    }
    Ok(())
}

fn open_raw_sled(dir: &Path) -> Result<sled::Tree, BenchError> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(64 * 1024 * 1024)
        .open()?;
    Ok(db.open_tree("ceiling")?)
}

/// One thread, batches of 64, one sled flush per batch; with `sync_data`, also an fdatasync of
/// sled's data file per batch, as the log needs for real durability.
fn sled_batched_ceiling(
    dir: &Path,
    events: usize,
    record_size: usize,
    sync_data: bool,
) -> Result<f64, BenchError> {
    let tree = open_raw_sled(dir)?;
    let data_file = std::fs::File::open(dir.join("db"))?;
    let value = vec![0x5a_u8; record_size];
    let started = Instant::now();
    let mut position = 0u64;
    while (position as usize) < events {
        let mut batch = sled::Batch::default();
        for _ in 0..64.min(events - position as usize) {
            let mut key = vec![b'g'];
            key.extend_from_slice(&position.to_be_bytes());
            batch.insert(key, value.clone());
            position += 1;
        }
        tree.apply_batch(batch)?;
        tree.flush()?;
        if sync_data {
            data_file.sync_data()?;
        }
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// One thread, one sled flush after every record.
fn sled_flush_each_ceiling(
    dir: &Path,
    events: usize,
    record_size: usize,
) -> Result<f64, BenchError> {
    let tree = open_raw_sled(dir)?;
    let value = vec![0x5a_u8; record_size];
    let started = Instant::now();
    for position in 0..events as u64 {
        let mut key = vec![b'g'];
        key.extend_from_slice(&position.to_be_bytes());
        tree.insert(key, value.clone())?;
        tree.flush()?;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Scans the log's records straight out of sled, copying each value once, as catch-up must.
fn raw_scan_ceiling(dir: &Path, expected: u64) -> Result<f64, BenchError> {
    let storage = SledStorage::open(dir, 64 * 1024 * 1024).map_err(naast_eventlog::Error::from)?;
    let tree = storage.tree();
    let started = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    for item in tree.scan_prefix(b"g") {
        let (_, value) = item?;
        bytes += value.to_vec().len();
        count += 1;
    }
    let elapsed = started.elapsed();
    if count != expected || bytes == 0 {
        return Err(BenchError::Check(format!(
            "raw scan found {count} records, expected {expected}"
        )));
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Options of `naast bench api`.
#[derive(Clone, Debug, clap::Args)]
pub struct ApiArgs {
    /// Concurrent gRPC clients, each with its own connection and household.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Commands in all, over gRPC (and again through the library for the ceiling).
    #[arg(long, default_value_t = 40_000)]
    pub commands: usize,
    /// Events of the household whose timeline pages are read.
    #[arg(long, default_value_t = 10_000)]
    pub timeline_events: usize,
    /// Timeline pages read for the latency figures.
    #[arg(long, default_value_t = 500)]
    pub pages: usize,
    /// Calls a second with a token that is no good, from the same address, while the honest
    /// clients run again (0: no such run).
    #[arg(long, default_value_t = 1_000)]
    pub flood_per_sec: u32,
    /// Run the honest clients in a process of their own (`naast bench api-load`, started from
    /// this binary) instead of in the server's runtime, so that the server's figures are not
    /// shared with the load's own scheduling (on one machine they still share its cores).
    #[arg(long)]
    pub load_process: bool,
    /// Where to put the scratch data (removed afterwards); defaults to the current directory.
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
    /// Run the service with its stores in this PostgreSQL database (`postgres://…`, an empty
    /// one: the benchmark fills it) as several nodes (`--nodes`), next to the same service on
    /// sled and PostgreSQL as a plain events table, in the same run.
    #[arg(long)]
    pub storage: Option<String>,
    /// With `--storage`: measure with 1, 2, … up to this many nodes on the database.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
}

/// Options of `naast bench api-load`: the honest clients of `naast bench api --load-process`.
/// The bearer token comes in the environment (`NAAST_BENCH_TOKEN`; none: unguarded).
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The server's gRPC address (`http://host:port`).
    #[arg(long)]
    pub url: String,
    /// Concurrent clients, each with its own connection and household.
    #[arg(long)]
    pub clients: usize,
    /// Notes each client writes after registering its household.
    #[arg(long)]
    pub per_client: usize,
}

/// Runs `naast bench api-load`: prints one JSON line with the seconds the load took and every
/// command's latency in microseconds.
pub fn api_load(args: &LoadArgs) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let token = std::env::var("NAAST_BENCH_TOKEN").unwrap_or_default();
    let (seconds, latencies) = runtime.block_on(async {
        let bearer = bearer_of(&token)?;
        honest_load(&args.url, bearer, args.clients, args.per_client)
            .await
            .map_err(BenchError::Check)
    })?;
    let micros: Vec<u64> = latencies.iter().map(|d| d.as_micros() as u64).collect();
    println!(
        "{}",
        json!({"seconds": seconds, "cpu_seconds": cpu_seconds(), "latencies_us": micros})
    );
    Ok(())
}

/// Runs `naast bench api`: durable commands over gRPC from many clients next to the same
/// commands through the library, and the latency of the first timeline page.
pub fn api(args: &ApiArgs) -> Result<(), BenchError> {
    let scratch = scratch_dir(args.scratch_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match &args.storage {
        Some(url) => runtime.block_on(crate::bench_nodes::nodes(scratch.path(), url, args)),
        None => runtime.block_on(api_benches(scratch.path(), args)),
    }
}

pub(crate) fn scratch_dir(dir: Option<&Path>) -> Result<tempfile::TempDir, BenchError> {
    Ok(match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::tempdir_in(dir)?
        }
        None => tempfile::Builder::new()
            .prefix(".naast-bench-")
            .tempdir_in(".")?,
    })
}

fn note(text: String, domain: naast_domain::vocab::LifeDomain) -> naast_domain::Command {
    naast_domain::Command::AddNote {
        note: naast_domain::ids::EntryId::new(),
        about: None,
        text,
        life_domains: vec![domain],
    }
}

async fn api_benches(scratch: &Path, args: &ApiArgs) -> Result<(), BenchError> {
    use crate::households::{CommandContext, Households};
    use naast_domain::ids::HouseholdId;
    use naast_domain::vocab::LifeDomain;

    let clients = args.clients.max(1);
    let per_client = (args.commands / clients).max(1);

    // The ceiling: the same commands through the library, no gRPC, on their own log.
    let ceiling = {
        let log = EventLog::open(scratch.join("library"), Options::default())?;
        let households = Households::new(log.clone(), None);
        let started = Instant::now();
        let cpu = cpu_seconds();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let households = households.clone();
            tasks.push(tokio::spawn(async move {
                let id = HouseholdId::new();
                let context = CommandContext::unguarded();
                households
                    .execute(
                        id,
                        naast_domain::Command::RegisterHousehold {
                            name: format!("gezin {c}"),
                            registered_by: None,
                        },
                        &context,
                    )
                    .await?;
                for i in 0..per_client {
                    households
                        .execute(
                            id,
                            note(
                                format!("notitie {i}"),
                                LifeDomain::ALL[i % LifeDomain::ALL.len()],
                            ),
                            &context,
                        )
                        .await?;
                }
                Ok::<_, crate::households::AppError>(())
            }));
        }
        for task in tasks {
            task.await?.map_err(|e| fail(&e))?;
        }
        let commands = (clients * (per_client + 1)) as f64;
        let rate = commands / started.elapsed().as_secs_f64();
        let cpu_us = (cpu_seconds() - cpu) * 1e6 / commands;
        log.close().await;
        (rate, cpu_us)
    };
    let (ceiling, ceiling_cpu_us) = ceiling;
    // The transport's own ceiling: the same calls from the same clients, answered at once by a
    // gRPC server that does nothing else.
    let transport = transport_ceiling(args, clients, per_client).await?;

    // The service on loopback: as it runs (every call authenticated, authorised against the
    // family's consent and recorded in the audit log), and again with all of that switched off.
    let run = |name: &str, mode, flood| {
        served(scratch.join(name), mode, args, clients, per_client, flood)
    };
    let open = run("served-open", Mode::Open, 0).await?;
    // With everything but encryption, to tell the cost of sealing from the rest.
    let plain = run("served-plain", Mode::Guarded { sealed: false }, 0).await?;
    let guarded = run("served", Mode::Guarded { sealed: true }, 0).await?;
    // And once more under a flood of bad tokens from the address the honest clients use too.
    let flooded = if args.flood_per_sec > 0 {
        Some(
            run(
                "served-flooded",
                Mode::Guarded { sealed: true },
                args.flood_per_sec,
            )
            .await?,
        )
    } else {
        None
    };
    let ms = |sorted: &[Duration], p| round(percentile(sorted, p) / 1000.0, 2);
    println!(
        "{}",
        json!({
            "bench": "api.commands",
            "clients": clients,
            "commands": clients * (per_client + 1),
            "auth": "bearer token checked, consent decided, audit record durable before the answer, payload sealed with the household's key",
            "commands_per_sec": round(guarded.rate, 0),
            "p50_ms": ms(&guarded.latencies, 0.50),
            "p99_ms": ms(&guarded.latencies, 0.99),
            "ceiling": "the same commands through the library, without gRPC or auth, in the same run",
            "ceiling_commands_per_sec": round(ceiling, 0),
            "ratio_to_ceiling": round(guarded.rate / ceiling, 3),
        })
    );
    for (name, pages) in &guarded.pages {
        println!(
            "{}",
            json!({
                "bench": name,
                "events": args.timeline_events,
                "page_size": 50,
                "filter": if name.ends_with("filtered") { "life_domain = safety (1 in 14 entries)" } else { "none" },
                "requests": pages.len(),
                "p50_ms": ms(pages, 0.50),
                "p99_ms": ms(pages, 0.99),
            })
        );
    }
    let page_p99 = |run: &Served| ms(&run.pages[0].1, 0.99);
    println!(
        "{}",
        json!({
            "bench": "api.auth_cost",
            "commands_per_sec_with_auth": round(guarded.rate, 0),
            "commands_per_sec_without_auth": round(open.rate, 0),
            "throughput_loss": round(1.0 - guarded.rate / open.rate, 3),
            "command_p99_ms_with_auth": ms(&guarded.latencies, 0.99),
            "command_p99_ms_without_auth": ms(&open.latencies, 0.99),
            "timeline_page_p99_ms_with_auth": page_p99(&guarded),
            "timeline_page_p99_ms_without_auth": page_p99(&open),
            "target_throughput_loss": 0.15,
        })
    );
    // Where the way from the library to the service with everything on goes, factor by factor,
    // each a ratio of two runs of this one.
    println!(
        "{}",
        json!({
            "bench": "api.factors",
            "load": if args.load_process { "a process of its own" } else { "the server's process" },
            "library_commands_per_sec": round(ceiling, 0),
            "transport": "the same calls from the same clients, decoded and answered at once by a gRPC server (tonic, TCP_NODELAY) doing nothing else: what no service on this transport and machine can pass",
            "transport_calls_per_sec": round(transport.rate, 0),
            "transport_to_library": round(transport.rate / ceiling, 3),
            "everything_to_transport": round(guarded.rate / transport.rate, 3),
            "grpc_commands_per_sec": round(open.rate, 0),
            "grpc_auth_consent_audit_commands_per_sec": round(plain.rate, 0),
            "grpc_everything_commands_per_sec": round(guarded.rate, 0),
            "grpc_to_library": round(open.rate / ceiling, 3),
            "auth_consent_audit_to_grpc": round(plain.rate / open.rate, 3),
            "sealing_to_auth_consent_audit": round(guarded.rate / plain.rate, 3),
            "everything_to_library": round(guarded.rate / ceiling, 3),
            "target_everything_to_library": 0.5,
            "cpu": "CPU time per command (µs, all threads) of the server's process while the commands ran, and of the load's process when it has one of its own",
            "library_cpu_us_per_command": round(ceiling_cpu_us, 1),
            "transport_cpu_us_per_call": round(transport.cpu_us, 1),
            "grpc_cpu_us_per_command": round(open.cpu_us, 1),
            "grpc_auth_consent_audit_cpu_us_per_command": round(plain.cpu_us, 1),
            "grpc_everything_cpu_us_per_command": round(guarded.cpu_us, 1),
            "load_cpu_us_per_command": guarded.load_cpu_us.map(|us| round(us, 1)),
        })
    );
    if let Some((run, flood)) = flooded.as_ref().and_then(|run| Some((run, run.flood?))) {
        println!(
            "{}",
            json!({
                "bench": "api.flood",
                "what": "the commands with everything on again, while one client sends calls with a token that is no good from the same address (127.0.0.1)",
                "bad_tokens_per_sec": round(flood.sent as f64 / flood.seconds, 0),
                "bad_tokens_sent": flood.sent,
                "bad_tokens_refused_unauthenticated": flood.unauthenticated,
                "bad_tokens_refused_limited": flood.limited,
                "commands_per_sec_flooded": round(run.rate, 0),
                "commands_per_sec": round(guarded.rate, 0),
                "ratio": round(run.rate / guarded.rate, 3),
                "target_ratio": 0.8,
            })
        );
    }
    Ok(())
}

/// What the calls with a bad token got.
#[derive(Clone, Copy, Debug)]
struct Flood {
    sent: u64,
    /// Refused as not authenticated (each recorded in the audit log).
    unauthenticated: u64,
    /// Refused by the sign-in limit (recorded once per address and minute).
    limited: u64,
    seconds: f64,
}

/// How a run of the served API is guarded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// No authentication, consent, audit or encryption.
    Open,
    /// Every call authenticated, decided against the family's consent and audited; `sealed`:
    /// payloads encrypted with the household's key too.
    Guarded { sealed: bool },
}

/// What one run of the served API measured.
pub(crate) struct Served {
    pub(crate) rate: f64,
    /// CPU time of this process per command while the commands ran (µs).
    cpu_us: f64,
    /// CPU time of the load's process per command, when it has one of its own (µs).
    load_cpu_us: Option<f64>,
    pub(crate) latencies: Vec<Duration>,
    pages: Vec<(&'static str, Vec<Duration>)>,
    flood: Option<Flood>,
}

/// Commands from `clients` gRPC clients, then timeline pages, against a server on `data`,
/// guarded as `mode` says (the dev issuer signs the clients' tokens); `flood`: calls a second
/// with a bad token while the commands run (0: none).
pub(crate) async fn served(
    data: PathBuf,
    mode: Mode,
    args: &ApiArgs,
    clients: usize,
    per_client: usize,
    flood: u32,
) -> Result<Served, BenchError> {
    use crate::households::{CommandContext, Households};
    use naast_domain::ids::HouseholdId;
    use naast_domain::vocab::LifeDomain;
    use naast_proto::client::Bearer;
    use naast_proto::pb;

    let data = data.as_path();
    let guarded = matches!(mode, Mode::Guarded { .. });
    // Guarded, the log keeps the disk reserve `naast serve` keeps by default (a free-space
    // check on every append), so that "everything on" is what a deployment runs.
    let min_free_bytes = if guarded {
        naast_app::auth::limits::LimitSettings::default().min_free_disk_mb * 1024 * 1024
    } else {
        0
    };
    let log = EventLog::open(
        data,
        Options {
            min_free_bytes,
            ..Options::default()
        },
    )?;
    let vault = if let Mode::Guarded { sealed: true } = mode {
        let key = naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64())
            .map_err(|e| fail(&e))?;
        Some(naast_vault::Vault::open(&data.join("keys"), &key).map_err(|e| fail(&e))?)
    } else {
        None
    };
    let mut projections =
        naast_projections::Projections::open(&data.join("projections")).map_err(|e| fail(&e))?;
    if let Some(vault) = &vault {
        projections = projections.with_vault(vault.clone());
    }
    let (guard, token, registrant) = if guarded {
        let (guard, token, parent) = dev_guard(data, vault.clone())?;
        (Some(guard), token, Some(parent))
    } else {
        (None, String::new(), None)
    };
    let bearer = bearer_of(&token)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::grpc::run(
        listener,
        crate::grpc::Doors::default(),
        None,
        crate::grpc::Stores::in_dir(log.clone(), projections, data),
        guard,
        async move {
            let _ = stopped.await;
        },
    ));

    // One client with a token that is no good, at `flood` calls a second (each on its own task,
    // so a slow answer does not slow the flood), for as long as the honest clients write.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flooder = (flood > 0).then(|| {
        let (url, flooding) = (url.clone(), flooding.clone());
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            let bearer = Bearer::new("no.good.token").map_err(|e| e.to_string())?;
            let api = connect(&url, bearer).await?;
            let mut tick = tokio::time::interval(Duration::from_secs(1) / flood);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut calls = tokio::task::JoinSet::new();
            let mut counts = Flood {
                sent: 0,
                unauthenticated: 0,
                limited: 0,
                seconds: 0.0,
            };
            let mut count = |done: Result<Option<tonic::Code>, tokio::task::JoinError>| match done {
                Ok(Some(tonic::Code::Unauthenticated)) => counts.unauthenticated += 1,
                Ok(Some(tonic::Code::ResourceExhausted)) => counts.limited += 1,
                _ => {}
            };
            let started = Instant::now();
            while flooding.load(Ordering::Relaxed) {
                tick.tick().await;
                let mut api = api.clone();
                calls.spawn(async move {
                    api.create_note(pb::CreateNoteRequest {
                        household_id: HouseholdId::new().to_string(),
                        text: "overspoeld".into(),
                        life_domains: vec![1],
                        ..Default::default()
                    })
                    .await
                    .err()
                    .map(|status| status.code())
                });
                counts.sent += 1;
                while let Some(done) = calls.try_join_next() {
                    count(done);
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            while let Some(done) = calls.join_next().await {
                count(done);
            }
            Ok::<_, String>(Flood { seconds, ..counts })
        })
    });

    let Loaded {
        rate,
        cpu_us,
        load_cpu_us,
        mut latencies,
    } = load(&url, &token, args, clients, per_client).await?;
    latencies.sort();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let flood = match flooder {
        Some(task) => Some(task.await?.map_err(|e| fail(&e))?),
        None => None,
    };

    // A household with a long history, written through the library into the served log.
    let mut households = Households::new(log.clone(), None);
    if let Some(vault) = vault {
        households = households.with_vault(vault);
    }
    let big = HouseholdId::new();
    let context = CommandContext::unguarded();
    households
        .execute(
            big,
            naast_domain::Command::RegisterHousehold {
                name: "gezin met een lange geschiedenis".into(),
                registered_by: registrant,
            },
            &context,
        )
        .await
        .map_err(|e| fail(&e))?;
    for i in 1..args.timeline_events.max(2) {
        households
            .execute(
                big,
                note(
                    format!("notitie {i}"),
                    LifeDomain::ALL[i % LifeDomain::ALL.len()],
                ),
                &context,
            )
            .await
            .map_err(|e| fail(&e))?;
    }
    let mut api = connect(&url, bearer).await.map_err(|e| fail(&e))?;
    // Note i (from 1) is tagged with life domain i mod 14; safety is the 14th.
    let events = args.timeline_events.max(2);
    let expected_page = |domains: &Vec<i32>| {
        let matching = if domains.is_empty() {
            events
        } else {
            (1..events)
                .filter(|i| i % LifeDomain::ALL.len() == LifeDomain::ALL.len() - 1)
                .count()
        };
        matching.min(50)
    };
    let mut measured = Vec::new();
    for (name, domains) in [
        ("api.timeline_page", vec![]),
        (
            "api.timeline_page_filtered",
            vec![pb::LifeDomain::Safety as i32],
        ),
    ] {
        let mut pages = Vec::with_capacity(args.pages);
        for _ in 0..args.pages.max(1) {
            let t = Instant::now();
            let page = api
                .list_timeline_entries(pb::ListTimelineEntriesRequest {
                    household_id: big.to_string(),
                    life_domains: domains.clone(),
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .map_err(|e| fail(&e))?
                .into_inner();
            pages.push(t.elapsed());
            if page.entries.len() != expected_page(&domains) {
                return Err(BenchError::Check(format!(
                    "{name}: a page of {} entries",
                    page.entries.len()
                )));
            }
        }
        pages.sort();
        measured.push((name, pages));
    }
    let _ = stop.send(());
    server.await?.map_err(|e| fail(&e))?;
    Ok(Served {
        rate,
        cpu_us,
        load_cpu_us,
        latencies,
        pages: measured,
        flood,
    })
}

/// The calls of the API runs (a household each, then its notes), from the same clients (in
/// their own process with `--load-process`), answered at once by a gRPC server with the same
/// transport settings that does nothing else: no log, no read models, no guard. The most any
/// service on tonic can do on this machine with this load.
async fn transport_ceiling(
    args: &ApiArgs,
    clients: usize,
    per_client: usize,
) -> Result<Loaded, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Answering)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            }),
    );
    let loaded = load(&url, "", args, clients, per_client).await?;
    let _ = stop.send(());
    server.await?.map_err(|e| fail(&e))?;
    Ok(loaded)
}

/// What the honest clients measured against one server.
struct Loaded {
    /// Calls a second.
    rate: f64,
    /// CPU time of this process per call while they ran (µs).
    cpu_us: f64,
    /// CPU time of the load's process per call, when it has one of its own (µs).
    load_cpu_us: Option<f64>,
    /// Each note's latency.
    latencies: Vec<Duration>,
}

/// The honest clients against the server at `url`, sending `token` (none when empty): in a
/// process of their own with `--load-process`, else in this one.
async fn load(
    url: &str,
    token: &str,
    args: &ApiArgs,
    clients: usize,
    per_client: usize,
) -> Result<Loaded, BenchError> {
    let cpu = cpu_seconds();
    let (seconds, latencies, load_cpu) = if args.load_process {
        let (seconds, latencies, load_cpu) = load_process(url, token, clients, per_client).await?;
        (seconds, latencies, Some(load_cpu))
    } else {
        let (seconds, latencies) = honest_load(url, bearer_of(token)?, clients, per_client)
            .await
            .map_err(BenchError::Check)?;
        (seconds, latencies, None)
    };
    let calls = (clients * (per_client + 1)) as f64;
    Ok(Loaded {
        rate: calls / seconds,
        cpu_us: (cpu_seconds() - cpu) * 1e6 / calls,
        load_cpu_us: load_cpu.map(|cpu| cpu * 1e6 / calls),
        latencies,
    })
}

/// The household service's two calls of the API runs, answered at once with a fresh id and
/// nothing else done ([`transport_ceiling`]); any other call is UNIMPLEMENTED.
#[derive(Clone)]
struct Answering;

impl tonic::server::NamedService for Answering {
    const NAME: &'static str = "naast.v1.HouseholdService";
}

/// A unary call answered by `F`, at once.
struct AnswerWith<F>(F);

impl<Req, Resp, F> tonic::server::UnaryService<Req> for AnswerWith<F>
where
    F: Fn(Req) -> Resp,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Future = std::future::Ready<Result<tonic::Response<Resp>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new((self.0)(request.into_inner()))))
    }
}

impl tower::Service<tonic::codegen::http::Request<tonic::body::Body>> for Answering {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        use naast_proto::codec::StrictCodec;
        use naast_proto::pb;
        Box::pin(async move {
            Ok(match request.uri().path() {
                "/naast.v1.HouseholdService/CreateHousehold" => {
                    tonic::server::Grpc::new(StrictCodec::default())
                        .unary(
                            AnswerWith(|_: pb::CreateHouseholdRequest| {
                                pb::CreateHouseholdResponse {
                                    household_id: uuid::Uuid::now_v7().to_string(),
                                    ..Default::default()
                                }
                            }),
                            request,
                        )
                        .await
                }
                "/naast.v1.HouseholdService/CreateNote" => {
                    tonic::server::Grpc::new(StrictCodec::default())
                        .unary(
                            AnswerWith(|_: pb::CreateNoteRequest| pb::CreateNoteResponse {
                                note_id: uuid::Uuid::now_v7().to_string(),
                                ..Default::default()
                            }),
                            request,
                        )
                        .await
                }
                _ => tonic::Status::unimplemented("not answered here").into_http(),
            })
        })
    }
}

/// What sends `token` with every call (none when it is empty: an unguarded run).
pub(crate) fn bearer_of(token: &str) -> Result<naast_proto::client::Bearer, BenchError> {
    if token.is_empty() {
        return Ok(naast_proto::client::Bearer::none());
    }
    naast_proto::client::Bearer::new(token).map_err(|e| BenchError::Check(e.to_string()))
}

/// A client of the household service at `url`, sending `bearer`'s token.
pub(crate) async fn connect(
    url: &str,
    bearer: naast_proto::client::Bearer,
) -> Result<
    naast_proto::pb::household_service_client::HouseholdServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            naast_proto::client::Bearer,
        >,
    >,
    String,
> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(
        naast_proto::pb::household_service_client::HouseholdServiceClient::with_interceptor(
            channel, bearer,
        ),
    )
}

/// The honest clients: `clients` of them, each on its own connection, registering a household
/// and writing `per_client` notes in it, one at a time; the seconds it took and each note's
/// latency.
async fn honest_load(
    url: &str,
    bearer: naast_proto::client::Bearer,
    clients: usize,
    per_client: usize,
) -> Result<(f64, Vec<Duration>), String> {
    honest_load_spread(&[url.to_owned()], bearer, clients, per_client).await
}

/// [`honest_load`] against several servers (nodes): client `c` calls `urls[c % urls.len()]`.
pub(crate) async fn honest_load_spread(
    urls: &[String],
    bearer: naast_proto::client::Bearer,
    clients: usize,
    per_client: usize,
) -> Result<(f64, Vec<Duration>), String> {
    use naast_proto::pb;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = urls
            .get(c % urls.len().max(1))
            .cloned()
            .ok_or("no server to call")?;
        let bearer = bearer.clone();
        tasks.push(tokio::spawn(async move {
            let mut api = connect(&url, bearer).await?;
            let household = api
                .create_household(pb::CreateHouseholdRequest {
                    name: format!("gezin {c}"),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner()
                .household_id;
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                api.create_note(pb::CreateNoteRequest {
                    household_id: household.clone(),
                    text: format!("notitie {i}"),
                    life_domains: vec![1 + (i % 14) as i32],
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
                latencies.push(t.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok((started.elapsed().as_secs_f64(), latencies))
}

/// [`honest_load`] in a process of its own: this binary's `bench api-load`.
async fn load_process(
    url: &str,
    token: &str,
    clients: usize,
    per_client: usize,
) -> Result<(f64, Vec<Duration>, f64), BenchError> {
    let exe = std::env::current_exe()?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["bench", "api-load", "--url", url])
        .args(["--clients", &clients.to_string()])
        .args(["--per-client", &per_client.to_string()])
        .env("NAAST_BENCH_TOKEN", token)
        .stderr(std::process::Stdio::inherit());
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    if !output.status.success() {
        return Err(BenchError::Check(format!(
            "the load process failed: {}",
            output.status
        )));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| BenchError::Check(format!("the load process's report: {e}")))?;
    let seconds = report["seconds"]
        .as_f64()
        .ok_or_else(|| BenchError::Check("the load process reported no seconds".into()))?;
    let latencies = report["latencies_us"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(serde_json::Value::as_u64)
                .map(Duration::from_micros)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if latencies.len() != clients * per_client {
        return Err(BenchError::Check(format!(
            "the load process reported {} latencies, not {}",
            latencies.len(),
            clients * per_client
        )));
    }
    let cpu = report["cpu_seconds"].as_f64().unwrap_or(0.0);
    Ok((seconds, latencies, cpu))
}

/// Authentication, consent and audit as `naast serve` runs them, with the development issuer in
/// `data` signing the benchmark's tokens: the guard, the token of the demo parent, and the
/// parent's identity (who registers the benchmark's households, so the token may use them).
pub(crate) fn dev_guard(
    data: &Path,
    vault: Option<naast_vault::Vault>,
) -> Result<(crate::auth::layer::Guard, String, naast_domain::Identity), BenchError> {
    let parent = crate::auth::dev::Persona::named("ouder")
        .ok_or_else(|| BenchError::Check("no dev persona `ouder`".into()))?;
    let dev = crate::auth::dev::DevIssuer::open(data, crate::config::DEFAULT_AUDIENCE)
        .map_err(|e| fail(&e))?;
    let authenticator = dev_authenticator(&dev)?;
    let auditor = crate::audit::Auditor::open(
        &data.join("audit"),
        Duration::from_secs(crate::audit::DEFAULT_RETENTION_DAYS * 86_400),
    )
    .map_err(|e| fail(&e))?;
    let token = dev
        .mint(parent, crate::auth::dev::DEV_TOKEN_LIFETIME)
        .map_err(|e| fail(&e))?;
    Ok((
        bench_guard(authenticator, auditor, vault),
        token,
        parent.identity(),
    ))
}

/// An authenticator trusting the development issuer `dev` alone, as `naast serve --dev` does.
pub(crate) fn dev_authenticator(
    dev: &crate::auth::dev::DevIssuer,
) -> Result<crate::auth::Authenticator, BenchError> {
    let settings = crate::auth::AuthSettings {
        issuers: Vec::new(),
        audience: crate::config::DEFAULT_AUDIENCE.to_owned(),
        leeway: crate::auth::DEFAULT_LEEWAY,
        jwks_min_refresh: crate::auth::DEFAULT_JWKS_MIN_REFRESH,
        jwks_ttl: crate::auth::DEFAULT_JWKS_TTL,
        claims: Default::default(),
    };
    crate::auth::Authenticator::new(
        &settings,
        vec![(crate::auth::dev::DEV_ISSUER.to_owned(), dev.jwks())],
    )
    .map_err(|e| fail(&e))
}

/// The guard of a benchmark's server: limits counted as in a deployment, set where the
/// benchmark's load never reaches them.
pub(crate) fn bench_guard(
    authenticator: crate::auth::Authenticator,
    auditor: crate::audit::Auditor,
    vault: Option<naast_vault::Vault>,
) -> crate::auth::layer::Guard {
    crate::auth::layer::Guard {
        authenticator,
        auditor,
        vault,
        failures: Default::default(),
        limits: naast_app::auth::limits::Limits::new(
            naast_app::auth::limits::LimitSettings::generous(),
        ),
    }
}

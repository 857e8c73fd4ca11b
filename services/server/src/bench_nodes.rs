//! `naast bench api --storage postgres://… --nodes N`: the service with everything on
//! (authentication, consent, the audit log, encryption) and its stores in one PostgreSQL
//! database, as 1, 2, … N nodes, each with its own event log writer, key store, audit log, read
//! models and gRPC server; the honest clients spread over the nodes. Next to it, in the same run:
//! the same service on sled (one node, as `bench api` runs it) and PostgreSQL as a plain events
//! table with as many clients. The nodes share this process and its cores, as well as the
//! machine with PostgreSQL: what more nodes add here is what one machine's cores allow.

use crate::bench::{
    BenchError, Mode, fail, honest_load_spread, percentile, plain_table, record_size, round, served,
};
use naast_eventlog::{EventLog, Options};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// What one run with `nodes` nodes measured.
struct NodesRun {
    rate: f64,
    latencies: Vec<Duration>,
    record_bytes: usize,
}

/// One node: its log, and the means to stop its server.
struct Node {
    log: EventLog,
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), crate::grpc::ServeError>>,
}

pub(crate) async fn nodes(
    scratch: &Path,
    url: &str,
    args: &crate::bench::ApiArgs,
) -> Result<(), BenchError> {
    let clients = args.clients.max(1);
    let per_client = (args.commands / clients).max(1);
    let nodes = args.nodes.max(1);
    {
        let url = url.to_owned();
        let log =
            tokio::task::spawn_blocking(move || EventLog::open_postgres(&url, Options::default()))
                .await??;
        let empty = log.head() == 0;
        log.close().await;
        if !empty {
            return Err(BenchError::Check(
                "--storage: give an empty database (the benchmark fills it)".into(),
            ));
        }
    }
    let master = naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64())
        .map_err(|e| fail(&e))?;
    let mut runs = Vec::new();
    for n in 1..=nodes {
        let run = run_nodes(
            &scratch.join(format!("nodes-{n}")),
            url,
            &master,
            n,
            clients,
            per_client,
        )
        .await?;
        let ms = |p| round(percentile(&run.latencies, p) / 1000.0, 2);
        println!(
            "{}",
            json!({
                "bench": "api.postgres_nodes",
                "nodes": n,
                "clients": clients,
                "commands": clients * (per_client + 1),
                "auth": "bearer token checked, consent decided, audit record durable before the answer, payload sealed with the household's key",
                "commands_per_sec": round(run.rate, 0),
                "p50_ms": ms(0.50),
                "p99_ms": ms(0.99),
            })
        );
        runs.push(run);
    }
    // The same service on sled, and PostgreSQL as a plain events table, in this run.
    let sled = served(
        scratch.join("sled"),
        Mode::Guarded { sealed: true },
        args,
        clients,
        per_client,
        0,
    )
    .await?;
    let record_bytes = runs.first().map_or(0, |r| r.record_bytes);
    let table = plain_table(url, clients, per_client, record_bytes).await?;
    let one = runs.first().map_or(0.0, |r| r.rate);
    let by_nodes: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"nodes": i + 1, "commands_per_sec": round(r.rate, 0), "ratio_to_one_node": round(r.rate / one, 3)}))
        .collect();
    println!(
        "{}",
        json!({
            "bench": "api.postgres",
            "one_node_commands_per_sec": round(one, 0),
            "peer": "PostgreSQL as a plain events table in the same database: as many clients, each appending to its own stream, next revision computed in the INSERT, synchronous commit, records of the size one node's log stores",
            "peer_events_per_sec": round(table, 0),
            "one_node_to_peer": round(one / table, 3),
            "target_one_node_to_peer": 0.8,
            "sled_commands_per_sec": round(sled.rate, 0),
            "one_node_to_sled": round(one / sled.rate, 3),
            "by_nodes": by_nodes,
        })
    );
    Ok(())
}

/// `n` nodes on the database at `url`, the clients spread over them.
async fn run_nodes(
    dir: &Path,
    url: &str,
    master: &naast_vault::MasterKey,
    n: usize,
    clients: usize,
    per_client: usize,
) -> Result<NodesRun, BenchError> {
    std::fs::create_dir_all(dir)?;
    // One development issuer for every node, so a token is good on each.
    let issuer =
        naast_app::auth::dev::DevIssuer::open(&dir.join("issuer"), crate::config::DEFAULT_AUDIENCE)
            .map_err(|e| fail(&e))?;
    let parent = crate::auth::dev::Persona::named("ouder")
        .ok_or_else(|| BenchError::Check("no dev persona `ouder`".into()))?;
    let token = issuer
        .mint(parent, crate::auth::dev::DEV_TOKEN_LIFETIME)
        .map_err(|e| fail(&e))?;
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        nodes.push(start_node(&dir.join(format!("node-{i}")), url, master, &issuer).await?);
    }
    let urls: Vec<String> = nodes.iter().map(|node| node.url.clone()).collect();
    let (seconds, mut latencies) =
        honest_load_spread(&urls, crate::bench::bearer_of(&token)?, clients, per_client)
            .await
            .map_err(BenchError::Check)?;
    latencies.sort();
    let record_bytes = match nodes.first() {
        Some(node) => record_size(&node.log)?,
        None => 0,
    };
    for node in nodes {
        let _ = node.stop.send(());
        node.server.await?.map_err(|e| fail(&e))?;
        node.log.close().await;
    }
    Ok(NodesRun {
        rate: (clients * (per_client + 1)) as f64 / seconds,
        latencies,
        record_bytes,
    })
}

/// A node as `naast serve --storage` runs one: its stores in the database, its read models in
/// `dir`, every call guarded.
async fn start_node(
    dir: &Path,
    url: &str,
    master: &naast_vault::MasterKey,
    issuer: &naast_app::auth::dev::DevIssuer,
) -> Result<Node, BenchError> {
    std::fs::create_dir_all(dir)?;
    let opened = {
        let (url, master, audit) = (url.to_owned(), master.clone(), dir.join("audit"));
        tokio::task::spawn_blocking(move || {
            let log = EventLog::open_postgres(&url, Options::default())?;
            let vault = naast_vault::Vault::open_postgres(&url, &master).map_err(|e| fail(&e))?;
            let auditor = crate::audit::Auditor::open_postgres(
                &url,
                &audit,
                Duration::from_secs(crate::audit::DEFAULT_RETENTION_DAYS * 86_400),
            )
            .map_err(|e| fail(&e))?;
            Ok::<_, BenchError>((log, vault, auditor))
        })
        .await??
    };
    let (log, vault, auditor) = opened;
    let projections = naast_projections::Projections::open(&dir.join("projections"))
        .map_err(|e| fail(&e))?
        .with_vault(vault.clone());
    let guard = crate::bench::bench_guard(
        crate::bench::dev_authenticator(issuer)?,
        auditor,
        Some(vault),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stores = crate::grpc::Stores::in_dir(log.clone(), projections, dir);
    stores.shared_disclosures = Some(
        naast_app::evaluation::open_shared_disclosures(url).map_err(|e| crate::bench::fail(&e))?,
    );
    let server = tokio::spawn(crate::grpc::run(
        listener,
        crate::grpc::Doors::default(),
        None,
        stores,
        Some(guard),
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(Node {
        log,
        url: address,
        stop,
        server,
    })
}

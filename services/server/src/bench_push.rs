//! `naast bench push`: push to a FHIR server on loopback, one JSON line
//! `{"bench":"push.delivery", "resources_per_sec", "lag_p50_ms", "lag_p99_ms", …}`:
//!
//! - **throughput**: households written beforehand (each granted to the platform), then the
//!   push started: resources delivered per second until the platform holds them all, next to
//!   the ceiling of the same run, plain PUTs of the same bodies to the same receiver at the same
//!   concurrency without naast in between;
//! - **lag**: with push running, goals set at a steady rate (the API benchmark's, by default)
//!   over the households; for each, the time from the command's acknowledgement (durable) to
//!   the moment its `Goal` reached the receiver.
//!
//! The receiver runs in this process (a minimal FHIR endpoint answering conditional updates,
//! so the figure is naast's side of the exchange); everything shares the machine's cores.
//! The audit log and encryption at rest are on, as in every deployment: each request is
//! recorded before it is sent.

use crate::bench::{BenchError, fail, percentile, round, scratch_dir};
use crate::households::{CommandContext, Households};
use naast_domain::Command;
use naast_domain::event::{GrantTerms, Grantee, MemberDetails};
use naast_domain::ids::{GoalId, GrantId, HouseholdId, MemberId};
use naast_domain::vocab::{AccessScope, LifeDomain, MemberRole};
use naast_eventlog::{EventLog, Options};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `naast bench push`.
#[derive(Clone, Debug, clap::Args)]
pub struct PushArgs {
    /// Households granted to the platform.
    #[arg(long, default_value_t = 200)]
    pub households: usize,
    /// Goals of each household written before the push starts.
    #[arg(long, default_value_t = 5)]
    pub goals: usize,
    /// Commands per second while the lag is measured (the API benchmark's rate on a machine
    /// like this one).
    #[arg(long, default_value_t = 4_000)]
    pub rate: u64,
    /// Seconds commands come in while the lag is measured.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Households the push synchronises at once (the endpoint's `concurrency`).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Where to put the scratch data (removed afterwards); defaults to the current directory.
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
}

const PLATFORM_ISSUER: &str = "https://bench.naast.invalid";
const PLATFORM_CLIENT: &str = "bench-pgo";
/// A deadline for everything to arrive.
const ARRIVAL: Duration = Duration::from_secs(600);

/// Runs `naast bench push`.
pub fn push(args: &PushArgs) -> Result<(), BenchError> {
    let scratch = scratch_dir(args.scratch_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(scratch.path(), args))
}

/// What the receiver saw: when each resource first arrived, and how many requests came.
#[derive(Default)]
struct Seen {
    first: HashMap<(String, String), Instant>,
    requests: u64,
    by_type: std::collections::BTreeMap<String, u64>,
}

type Received = Arc<Mutex<Seen>>;

/// A minimal FHIR endpoint: a conditional update (`PUT /fhir/{type}?identifier=…`) is read,
/// parsed and answered with the resource's id; a `DELETE` is answered.
async fn receiver() -> Result<(String, Received), BenchError> {
    use axum::extract::{Path as UrlPath, RawQuery, State};
    use axum::routing::put;
    let seen: Received = Arc::default();
    async fn write(
        State(seen): State<Received>,
        UrlPath(resource_type): UrlPath<String>,
        RawQuery(query): RawQuery,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, String) {
        let at = Instant::now();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = query
            .as_deref()
            .and_then(|q| q.split("urn%3Auuid%3A").nth(1))
            .unwrap_or_default()
            .to_owned();
        {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.requests += 1;
            *seen.by_type.entry(resource_type.clone()).or_default() += 1;
            seen.first
                .entry((resource_type.clone(), id.clone()))
                .or_insert(at);
        }
        let answer = json!({"resourceType": resource_type, "id": id, "meta": parsed.get("meta")});
        (axum::http::StatusCode::OK, answer.to_string())
    }
    async fn delete() -> axum::http::StatusCode {
        axum::http::StatusCode::OK
    }
    let app = axum::Router::new()
        .route("/fhir/{resource_type}", put(write).delete(delete))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/fhir", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

/// The ceiling: plain PUTs of `body` to the receiver at `concurrency`, for two seconds.
async fn ceiling(url: &str, body: &[u8], concurrency: usize) -> Result<f64, BenchError> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..concurrency {
        let (client, body) = (client.clone(), bytes::Bytes::copy_from_slice(body));
        let url = format!("{url}/Goal");
        tasks.spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(2) {
                let target = format!(
                    "{url}?identifier=urn%3Aietf%3Arfc%3A3986%7Curn%3Auuid%3Aceiling-{task}-{n}"
                );
                let sent = client
                    .put(target)
                    .header("content-type", "application/fhir+json")
                    .body(body.clone())
                    .send()
                    .await;
                if let Ok(response) = sent {
                    let _ = response.bytes().await;
                }
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn bench(scratch: &Path, args: &PushArgs) -> Result<(), BenchError> {
    let data = scratch.join("data");
    let log = EventLog::open(&data, Options::default())?;
    let key = naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64())
        .map_err(|e| fail(&e))?;
    let vault = naast_vault::Vault::open(&data.join("keys"), &key).map_err(|e| fail(&e))?;
    let auditor = crate::audit::Auditor::open(
        &data.join("audit"),
        Duration::from_secs(crate::audit::DEFAULT_RETENTION_DAYS * 86_400),
    )
    .map_err(|e| fail(&e))?;
    let households = Households::new(log.clone(), Some(auditor.clone())).with_vault(vault);
    let context = CommandContext::unguarded();

    // The households, each with a client, a grant to the platform and some goals.
    let mut homes = Vec::new();
    for h in 0..args.households {
        let id = HouseholdId::new();
        let client = MemberId::new();
        let commands = [
            Command::RegisterHousehold {
                name: format!("gezin {h}"),
                registered_by: None,
            },
            Command::AddMember {
                member: client,
                details: MemberDetails {
                    name: "Noor".into(),
                    role: MemberRole::Client,
                    relation: None,
                    birth_date: None,
                },
            },
            Command::GrantAccess {
                grant: GrantId::new(),
                grantee: Grantee::Platform {
                    issuer: PLATFORM_ISSUER.into(),
                    client_id: PLATFORM_CLIENT.into(),
                },
                terms: GrantTerms {
                    scopes: vec![AccessScope::ReadTimeline],
                    life_domains: Vec::new(),
                    funding_domains: Vec::new(),
                    until: None,
                },
                request: None,
            },
        ];
        for command in commands {
            households
                .execute(id, command, &context)
                .await
                .map_err(|e| fail(&e))?;
        }
        for g in 0..args.goals {
            households
                .execute(id, goal(client, g), &context)
                .await
                .map_err(|e| fail(&e))?;
        }
        homes.push((id, client));
    }
    let today = naast_domain::calendar::dutch_today();

    let (url, seen) = receiver().await?;
    let endpoint = naast_push::Endpoint {
        name: "bench".into(),
        kind: naast_push::endpoint::EndpointKind::Fhir,
        url: url.clone(),
        platform: naast_push::endpoint::Platform {
            issuer: PLATFORM_ISSUER.into(),
            client_id: PLATFORM_CLIENT.into(),
        },
        auth: naast_push::endpoint::Auth::None,
        secret_file: None,
        resource_types: Vec::new(),
        profiles: Default::default(),
        timeout_seconds: 10,
        max_backoff_seconds: 1,
        concurrency: args.concurrency,
    };
    let mut expected = 0usize;
    let mut sample = Vec::new();
    for (id, _) in &homes {
        let (state, _) = households.state(*id).await.map_err(|e| fail(&e))?;
        let wanted = naast_push::render::wanted(&endpoint, *id, &state, today, None)
            .map_err(|e| fail(&e))?;
        expected += wanted.len();
        if sample.is_empty()
            && let Some(goal) = wanted.iter().find(|w| w.resource_type == "Goal")
        {
            sample =
                serde_json::to_vec(&naast_push::render::body(&endpoint, goal, &HashMap::new()))
                    .map_err(|e| fail(&e))?;
        }
    }
    let ceiling = ceiling(&url, &sample, endpoint.concurrency).await?;
    *seen.lock().unwrap_or_else(|p| p.into_inner()) = Seen::default();

    // Throughput: everything written so far, from the start of the log.
    let store = naast_push::Store::open(&data.join("push")).map_err(|e| fail(&e))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let (_pusher, workers) = naast_push::Pusher::start(
        naast_push::Setup {
            endpoints: vec![endpoint.clone()],
            store,
            delivers: true,
        },
        &households,
        Some(&auditor),
        &stopped,
    );
    let arrived = |n: usize| {
        let seen = seen.clone();
        async move {
            let deadline = Instant::now() + ARRIVAL;
            loop {
                let count = seen.lock().unwrap_or_else(|p| p.into_inner()).first.len();
                if count >= n {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(fail(&format!("only {count} of {n} resources arrived")));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    arrived(expected).await?;
    let elapsed = started.elapsed();
    let resources_per_sec = expected as f64 / elapsed.as_secs_f64();

    // Lag: goals set at a steady rate while push runs.
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = usize::try_from(args.rate.saturating_mul(args.seconds)).unwrap_or(usize::MAX);
    let tick = Duration::from_millis(10);
    let per_tick = usize::try_from((args.rate / 100).max(1)).unwrap_or(1);
    let mut ticker = tokio::time::interval(tick);
    let mut tasks = tokio::task::JoinSet::new();
    let issuing = Instant::now();
    let mut issued = 0usize;
    while issued < total {
        ticker.tick().await;
        for _ in 0..per_tick.min(total - issued) {
            let (id, client) = homes[issued % homes.len()];
            let (households, acknowledged) = (households.clone(), acknowledged.clone());
            let goal_id = GoalId::new();
            let command = Command::SetGoal {
                goal: goal_id,
                owner: client,
                title: format!("doel {issued}"),
                description: String::new(),
                life_domains: vec![LifeDomain::ALL[issued % LifeDomain::ALL.len()]],
                plan: None,
            };
            tasks.spawn(async move {
                let done = households
                    .execute(id, command, &CommandContext::unguarded())
                    .await;
                if done.is_ok() {
                    acknowledged
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(goal_id.to_string(), Instant::now());
                }
                done.map(|_| ()).map_err(|e| e.to_string())
            });
            issued += 1;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done?.map_err(|e| fail(&e))?;
    }
    let commands_per_sec = total as f64 / issuing.elapsed().as_secs_f64();
    arrived(expected + total).await?;
    let _ = stop.send(true);
    for worker in workers {
        let _ = worker.await;
    }
    let mut lags: Vec<Duration> = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let acknowledged = acknowledged.lock().unwrap_or_else(|p| p.into_inner());
        acknowledged
            .iter()
            .filter_map(|(goal, at)| {
                let arrived = seen.first.get(&("Goal".to_owned(), goal.clone()))?;
                Some(arrived.saturating_duration_since(*at))
            })
            .collect()
    };
    if lags.len() != total {
        return Err(fail(&format!("{} of {total} goals arrived", lags.len())));
    }
    lags.sort();
    let (requests, by_type) = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.requests, seen.by_type.clone())
    };
    log.close().await;
    auditor.close().await;
    println!(
        "{}",
        json!({
            "bench": "push.delivery",
            "households": args.households,
            "resources": expected,
            "resources_per_sec": round(resources_per_sec, 0),
            "ceiling_puts_per_sec": round(ceiling, 0),
            "ratio_to_ceiling": round(resources_per_sec / ceiling, 2),
            "commands_per_sec": round(commands_per_sec, 0),
            "lag_p50_ms": round(percentile(&lags, 0.50) / 1000.0, 1),
            "lag_p99_ms": round(percentile(&lags, 0.99) / 1000.0, 1),
            "lag_max_ms": round(percentile(&lags, 1.0) / 1000.0, 1),
            "requests": requests,
            "requests_by_type": by_type,
            "concurrency": endpoint.concurrency,
            "targets": {"resources_per_sec": 1000, "lag_p99_ms": 1000},
            "what": "FHIR push to an in-process receiver on loopback, audit log and encryption on: resources delivered per second from a standing start (the ceiling: plain PUTs of the same bodies at the same concurrency), then the lag from a command's acknowledgement to its Goal's arrival while commands come in at `commands_per_sec`",
        })
    );
    Ok(())
}

fn goal(owner: MemberId, n: usize) -> Command {
    Command::SetGoal {
        goal: GoalId::new(),
        owner,
        title: format!("doel {n}"),
        description: String::new(),
        life_domains: vec![LifeDomain::ALL[n % LifeDomain::ALL.len()]],
        plan: None,
    }
}

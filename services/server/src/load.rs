//! `naast load`: a platform-like mixed workload against a running server over real gRPC, in a
//! process of its own, that checks what it reads and prints one JSON object of figures.
//!
//! Over `--households` households it sets up (a client, a care provider, a supporter each), for
//! `--seconds`:
//! - *writers* record what a family and its supporters record: notes (40 %), logbook entries
//!   (25 %), goals (20 %, with progress noted on them later) and agreements (15 %, proposed and
//!   then accepted);
//! - *readers* do what a PGO platform's screens do: the first timeline page (60 %), the household
//!   (20 %), its goals (10 %) and its agreements (10 %);
//! - *subscribers* follow the timelines of households live, from their first entry.
//!
//! Every answer's latency is kept by kind; failures are counted by gRPC code. At the end each
//! subscriber must have received exactly the entries its household's timeline holds (read
//! through `ListTimelineEntries` at the revision of the last write), in revision order, without
//! a gap or a duplicate. With `--server-pid` the server's resident memory (highest and last,
//! sampled every 250 ms) and CPU time are read from `/proc`. The process exits non-zero when any
//! call failed or a subscriber's timeline differs.

use naast_proto::client::{Bearer, Signed};
use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// `naast load`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The server's gRPC address.
    #[arg(long, env = "NAAST_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// A file holding the access token of the principal the load acts as (it creates the
    /// households, so it owns them); else NAAST_TOKEN; without either, no token is sent.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
    /// Households to spread the load over.
    #[arg(long, default_value_t = 50)]
    pub households: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// Concurrent timeline readers.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Live timeline subscribers (each on a household of its own while there are enough).
    #[arg(long, default_value_t = 8)]
    pub subscribers: usize,
    /// How long the load runs, after the households are set up.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// The server's process id, to read its memory and CPU time (same machine only).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seed of the choices the writers and readers make.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What went wrong with the load itself (not a refused call: those are counted).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A token or address that cannot be used.
    #[error("{0}")]
    Setup(String),
    /// The households could not be set up.
    #[error("setting up the households: {0}")]
    Households(tonic::Status),
    /// The run finished, but a check failed; the figures were printed.
    #[error("{0}")]
    Check(String),
    /// No runtime.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

type Api = HouseholdServiceClient<Signed>;

/// A household set up for the load.
#[derive(Clone)]
struct Home {
    id: String,
    client: String,
    provider: String,
    supporter: String,
}

/// Latencies by kind and failures by code, shared by the tasks.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    failures: BTreeMap<String, u64>,
    /// One example message per code, for the report.
    examples: BTreeMap<String, String>,
    /// Per household, the highest global position a command's answer gave.
    written: BTreeMap<usize, u64>,
}

type Shared = Arc<Mutex<Tally>>;

fn tally(shared: &Shared) -> std::sync::MutexGuard<'_, Tally> {
    // A task that panicked left the tally as it was between two whole updates.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tally {
    fn ok(&mut self, kind: &'static str, took: Duration) {
        self.latencies.entry(kind).or_default().push(took);
    }

    fn failed(&mut self, status: &tonic::Status) {
        let code = format!("{:?}", status.code());
        *self.failures.entry(code.clone()).or_default() += 1;
        self.examples
            .entry(code)
            .or_insert_with(|| status.message().chars().take(200).collect());
    }

    fn wrote(&mut self, household: usize, result: Option<&pb::CommandResult>) {
        if let Some(result) = result {
            let seen = self.written.entry(household).or_default();
            *seen = (*seen).max(result.position);
        }
    }
}

/// splitmix64: small, fast and good enough to spread choices; the same seed makes the same ones.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % bound.max(1) as u64) as usize
    }
}

/// Runs `naast load`: prints the figures as one JSON object, then fails if a check failed.
pub fn run(args: &Args) -> Result<(), LoadError> {
    let token = match &args.token_file {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| LoadError::Setup(format!("{}: {e}", file.display())))?,
        None => std::env::var("NAAST_TOKEN").unwrap_or_default(),
    };
    let bearer =
        crate::bench::bearer_of(token.trim()).map_err(|e| LoadError::Setup(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(load(args, bearer))?;
    println!("{}", report.figures);
    match report.failed {
        Some(why) => Err(LoadError::Check(why)),
        None => Ok(()),
    }
}

struct Report {
    figures: serde_json::Value,
    failed: Option<String>,
}

async fn connect(url: &str, bearer: &Bearer) -> Result<Api, LoadError> {
    crate::bench::connect(url, bearer.clone())
        .await
        .map_err(|e| LoadError::Setup(format!("cannot reach {url}: {e}")))
}

async fn load(args: &Args, bearer: Bearer) -> Result<Report, LoadError> {
    let api = connect(&args.server, &bearer).await?;
    let homes = set_up(&api, args.households.max(1)).await?;
    let shared: Shared = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);

    // Subscribers first, so that they follow the writes from the start.
    let mut subscribers = Vec::new();
    for s in 0..args.subscribers {
        let household = s % homes.len();
        let api = connect(&args.server, &bearer).await?;
        subscribers.push((
            household,
            follow(&api, &homes[household].id, stopped.clone()),
        ));
    }
    let memory = args.server_pid.map(|pid| {
        let stopped = stopped.clone();
        tokio::spawn(sample_memory(pid, stopped))
    });
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let server_cpu_before = server_pid
        .as_deref()
        .and_then(crate::bench::process_cpu_seconds);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let (api, homes, shared) = (
            connect(&args.server, &bearer).await?,
            homes.clone(),
            shared.clone(),
        );
        let rng = Rng(args.seed.wrapping_mul(1000).wrapping_add(w as u64));
        tasks.push(tokio::spawn(write(api, homes, shared, rng, deadline)));
    }
    for r in 0..args.readers {
        let (api, homes, shared) = (
            connect(&args.server, &bearer).await?,
            homes.clone(),
            shared.clone(),
        );
        let rng = Rng(args.seed.wrapping_mul(1000).wrapping_add(500 + r as u64));
        tasks.push(tokio::spawn(read(api, homes, shared, rng, deadline)));
    }
    for task in tasks {
        task.await
            .map_err(|e| LoadError::Check(format!("a load task failed: {e}")))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = server_pid
        .as_deref()
        .and_then(crate::bench::process_cpu_seconds)
        .zip(server_cpu_before)
        .map(|(after, before)| after - before);

    // What each subscribed household's timeline holds at its last write, next to what its
    // subscribers received.
    let written = tally(&shared).written.clone();
    let mut problems = Vec::new();
    let mut expected: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut reader = api.clone();
    for (household, _) in &subscribers {
        if !expected.contains_key(household) {
            match timeline_revisions(&mut reader, &homes[*household].id, written.get(household))
                .await
            {
                Ok(revisions) => {
                    expected.insert(*household, revisions);
                }
                Err(status) => problems.push(format!(
                    "the timeline of household {} could not be read to check its subscribers: {status}",
                    homes[*household].id
                )),
            }
        }
    }
    let mut received_total = 0usize;
    let mut delays = Vec::new();
    let mut subscriptions_equal = true;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (household, subscriber) in &subscribers {
        let Some(want) = expected.get(household) else {
            subscriptions_equal = false;
            continue;
        };
        // Wait (boundedly) until the subscriber has reached the last expected entry.
        loop {
            let (got, done) = {
                let state = subscriber.state();
                (state.revisions.last().copied(), state.ended.clone())
            };
            if want
                .last()
                .is_none_or(|last| got.is_some_and(|g| g >= *last))
                || done.is_some()
                || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let state = subscriber.state();
        received_total += state.revisions.len();
        delays.extend(state.delays.iter().copied());
        // Entries past the expected ones may be there (a write that failed at the client but
        // was committed); up to the last expected one they must be equal.
        let upto: Vec<u64> = state
            .revisions
            .iter()
            .copied()
            .take_while(|r| want.last().is_some_and(|last| r <= last))
            .collect();
        if &upto != want {
            subscriptions_equal = false;
            problems.push(format!(
                "a subscriber of household {} received {} entries (last revision {:?}), its timeline holds {} (last revision {:?}){}",
                homes[*household].id,
                upto.len(),
                upto.last(),
                want.len(),
                want.last(),
                state
                    .ended
                    .as_ref()
                    .map(|e| format!("; its stream ended: {e}"))
                    .unwrap_or_default()
            ));
        }
        if state.revisions.windows(2).any(|w| w[0] >= w[1]) {
            subscriptions_equal = false;
            problems.push(format!(
                "a subscriber of household {} received entries out of order or twice",
                homes[*household].id
            ));
        }
    }
    let _ = stop.send(true);
    let memory = match memory {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };

    let tally = tally(&shared);
    let failures: u64 = tally.failures.values().sum();
    if failures > 0 {
        problems.push(format!("{failures} calls failed: {:?}", tally.examples));
    }
    let mut commands = Vec::new();
    let mut reads = Vec::new();
    let mut by_kind = serde_json::Map::new();
    for (kind, latencies) in &tally.latencies {
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        by_kind.insert((*kind).to_owned(), summary(&sorted, elapsed));
        if kind.starts_with("read_") {
            reads.extend(sorted);
        } else {
            commands.extend(sorted);
        }
    }
    commands.sort_unstable();
    reads.sort_unstable();
    delays.sort_unstable();
    let figures = json!({
        "load": "naast load",
        "households": homes.len(),
        "writers": args.writers,
        "readers": args.readers,
        "subscribers": args.subscribers,
        "seconds": crate::bench::round(elapsed, 2),
        "commands": summary(&commands, elapsed),
        "reads": summary(&reads, elapsed),
        "by_kind": by_kind,
        "subscriptions": {
            "entries_received": received_total,
            "delay_p50_us": crate::bench::round(crate::bench::percentile(&delays, 0.5), 0),
            "delay_p99_us": crate::bench::round(crate::bench::percentile(&delays, 0.99), 0),
            "equal_to_the_timelines": subscriptions_equal,
        },
        "errors": {
            "total": failures,
            "by_code": tally.failures,
            "examples": tally.examples,
        },
        "server": {
            "rss_max_bytes": memory.map(|m| m.0),
            "rss_end_bytes": memory.map(|m| m.1),
            "cpu_seconds": server_cpu.map(|c| crate::bench::round(c, 2)),
        },
        "load_cpu_seconds": crate::bench::round(crate::bench::cpu_seconds(), 2),
        "problems": problems,
    });
    Ok(Report {
        figures,
        failed: (!problems.is_empty()).then(|| problems.join("; ")),
    })
}

/// Count, rate and percentiles (microseconds) of `sorted` latencies over `seconds`.
fn summary(sorted: &[Duration], seconds: f64) -> serde_json::Value {
    json!({
        "count": sorted.len(),
        "per_second": crate::bench::round(sorted.len() as f64 / seconds.max(1e-9), 1),
        "p50_us": crate::bench::round(crate::bench::percentile(sorted, 0.5), 0),
        "p90_us": crate::bench::round(crate::bench::percentile(sorted, 0.9), 0),
        "p99_us": crate::bench::round(crate::bench::percentile(sorted, 0.99), 0),
        "max_us": crate::bench::round(crate::bench::percentile(sorted, 1.0), 0),
    })
}

/// Sets up `count` households, eight at a time.
async fn set_up(api: &Api, count: usize) -> Result<Vec<Home>, LoadError> {
    let mut homes = Vec::with_capacity(count);
    let mut next = 0;
    while next < count {
        let batch: Vec<_> = (next..count.min(next + 8))
            .map(|i| {
                let mut api = api.clone();
                tokio::spawn(async move { home(&mut api, i).await })
            })
            .collect();
        for task in batch {
            let home = task
                .await
                .map_err(|e| LoadError::Check(format!("setting up a household: {e}")))?
                .map_err(LoadError::Households)?;
            homes.push(home);
        }
        next += 8;
    }
    Ok(homes)
}

async fn home(api: &mut Api, i: usize) -> Result<Home, tonic::Status> {
    let id = api
        .create_household(pb::CreateHouseholdRequest {
            name: format!("Belastinggezin {i}"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .household_id;
    let client = api
        .create_member(pb::CreateMemberRequest {
            household_id: id.clone(),
            details: Some(pb::MemberDetails {
                name: format!("Cliënt {i}"),
                role: pb::MemberRole::Client as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .member_id;
    let mut contact = async |details: pb::ContactDetails| {
        api.create_contact(pb::CreateContactRequest {
            household_id: id.clone(),
            details: Some(details),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().contact_id)
    };
    let provider = contact(pb::ContactDetails {
        kind: pb::ContactKind::CareProvider as i32,
        name: "Zorgaanbieder De Linde".into(),
        ..Default::default()
    })
    .await?;
    let supporter = contact(pb::ContactDetails {
        kind: pb::ContactKind::Supporter as i32,
        name: "Anja".into(),
        organisation: "Stichting Copiloot".into(),
        supporter_kind: pb::SupporterKind::Copilot as i32,
        ..Default::default()
    })
    .await?;
    Ok(Home {
        id,
        client,
        provider,
        supporter,
    })
}

/// One writer: commands on random households until `deadline`.
async fn write(mut api: Api, homes: Vec<Home>, shared: Shared, mut rng: Rng, deadline: Instant) {
    // Goals this writer made, to note progress on.
    let mut goals: Vec<(usize, String)> = Vec::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let h = rng.below(homes.len());
        let home = &homes[h];
        let domain = 1 + rng.below(14) as i32;
        let started = Instant::now();
        let roll = rng.below(100);
        let (kind, answer): (
            &'static str,
            Result<Option<pb::CommandResult>, tonic::Status>,
        ) = if roll < 40 {
            let answer = api
                .create_note(pb::CreateNoteRequest {
                    household_id: home.id.clone(),
                    about_member_id: home.client.clone(),
                    text: format!("Vandaag ging het goed; notitie {n}"),
                    life_domains: vec![domain],
                    ..Default::default()
                })
                .await;
            ("note", answer.map(|r| r.into_inner().result))
        } else if roll < 65 {
            let answer = api
                .create_logbook_entry(pb::CreateLogbookEntryRequest {
                    household_id: home.id.clone(),
                    supporter_contact_id: home.supporter.clone(),
                    date: "2026-11-30".into(),
                    minutes: 30 + rng.below(90) as u32,
                    contact_mode: pb::ContactMode::HomeVisit as i32,
                    tasks: vec![pb::SupporterTask::CoordinateCare as i32],
                    life_domains: vec![domain],
                    summary: format!("Huisbezoek, afspraken doorgenomen ({n})"),
                    ..Default::default()
                })
                .await;
            ("logbook_entry", answer.map(|r| r.into_inner().result))
        } else if roll < 85 {
            match goals.iter().position(|(g, _)| *g == h) {
                Some(at) if rng.below(2) == 0 => {
                    let goal = goals[at].1.clone();
                    let answer = api
                        .note_goal_progress(pb::NoteGoalProgressRequest {
                            household_id: home.id.clone(),
                            goal_id: goal,
                            date: "2026-11-30".into(),
                            note: format!("Een stap verder ({n})"),
                            ..Default::default()
                        })
                        .await;
                    ("goal_progress", answer.map(|r| r.into_inner().result))
                }
                _ => {
                    let answer = api
                        .create_goal(pb::CreateGoalRequest {
                            household_id: home.id.clone(),
                            owner_member_id: home.client.clone(),
                            title: format!("Zelfstandig naar de dagbesteding ({n})"),
                            life_domains: vec![domain],
                            ..Default::default()
                        })
                        .await
                        .map(|r| r.into_inner());
                    if let Ok(created) = &answer {
                        goals.push((h, created.goal_id.clone()));
                    }
                    ("goal", answer.map(|r| r.result))
                }
            }
        } else {
            let proposed = api
                .propose_agreement(pb::ProposeAgreementRequest {
                    household_id: home.id.clone(),
                    terms: Some(pb::AgreementTerms {
                        title: format!("Logeeropvang, twee weekenden per maand ({n})"),
                        parties: vec![pb::Party {
                            party: Some(pb::party::Party::ContactId(home.provider.clone())),
                        }],
                        funding_domain: pb::FundingDomain::Wlz as i32,
                        start_date: "2026-12-01".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await;
            match proposed {
                Ok(proposed) => {
                    let agreement = proposed.into_inner().agreement_id;
                    let answer = api
                        .accept_agreement(pb::AcceptAgreementRequest {
                            household_id: home.id.clone(),
                            agreement_id: agreement,
                            ..Default::default()
                        })
                        .await;
                    ("agreement", answer.map(|r| r.into_inner().result))
                }
                Err(status) => ("agreement", Err(status)),
            }
        };
        settle(&shared, kind, started.elapsed(), answer, Some(h)).await;
    }
}

/// Counts a call of `kind` that took `took` (a command's result raising what `household` is known
/// to hold); after a failure, waits a moment before the next call, as a real client would.
async fn settle(
    shared: &Shared,
    kind: &'static str,
    took: Duration,
    answer: Result<Option<pb::CommandResult>, tonic::Status>,
    household: Option<usize>,
) {
    let failed = {
        let mut tally = tally(shared);
        match answer {
            Ok(result) => {
                tally.ok(kind, took);
                if let Some(household) = household {
                    tally.wrote(household, result.as_ref());
                }
                false
            }
            Err(status) => {
                tally.failed(&status);
                true
            }
        }
    };
    if failed {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One reader: reads of random households until `deadline`.
async fn read(mut api: Api, homes: Vec<Home>, shared: Shared, mut rng: Rng, deadline: Instant) {
    while Instant::now() < deadline {
        let home = &homes[rng.below(homes.len())];
        let started = Instant::now();
        let roll = rng.below(100);
        let (kind, answer): (&'static str, Result<(), tonic::Status>) = if roll < 60 {
            let answer = api
                .list_timeline_entries(pb::ListTimelineEntriesRequest {
                    household_id: home.id.clone(),
                    page_size: 50,
                    ..Default::default()
                })
                .await;
            ("read_timeline_page", answer.map(drop))
        } else if roll < 80 {
            let answer = api
                .get_household(pb::GetHouseholdRequest {
                    household_id: home.id.clone(),
                    ..Default::default()
                })
                .await;
            ("read_household", answer.map(drop))
        } else if roll < 90 {
            let answer = api
                .list_goals(pb::ListGoalsRequest {
                    household_id: home.id.clone(),
                    ..Default::default()
                })
                .await;
            ("read_goals", answer.map(drop))
        } else {
            let answer = api
                .list_agreements(pb::ListAgreementsRequest {
                    household_id: home.id.clone(),
                    ..Default::default()
                })
                .await;
            ("read_agreements", answer.map(drop))
        };
        settle(
            &shared,
            kind,
            started.elapsed(),
            answer.map(|()| None),
            None,
        )
        .await;
    }
}

/// What a subscriber received.
#[derive(Default)]
struct Followed {
    revisions: Vec<u64>,
    /// From an entry's recording to its arrival here.
    delays: Vec<Duration>,
    /// Why the stream ended early, if it did.
    ended: Option<String>,
}

/// A subscriber task and what it has received so far.
struct Follower {
    state: Arc<Mutex<Followed>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Follower {
    fn state(&self) -> std::sync::MutexGuard<'_, Followed> {
        // Updated whole under the lock: a panic elsewhere leaves a consistent value.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Subscribes to `household`'s timeline from its first entry until `stopped`.
fn follow(api: &Api, household: &str, stopped: tokio::sync::watch::Receiver<bool>) -> Follower {
    let state: Arc<Mutex<Followed>> = Arc::default();
    let kept = state.clone();
    let mut api = api.clone();
    let household = household.to_owned();
    let task = tokio::spawn(async move {
        let mut stopped = stopped;
        let stream = api
            .subscribe_timeline(pb::SubscribeTimelineRequest {
                household_id: household,
                start_revision: Some(0),
            })
            .await;
        let mut stream = match stream {
            Ok(stream) => stream.into_inner(),
            Err(status) => {
                kept.lock().unwrap_or_else(PoisonError::into_inner).ended =
                    Some(status.to_string());
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                message = stream.message() => match message {
                    Ok(Some(message)) => {
                        let Some(entry) = message.entry else { continue };
                        let delay = entry.recorded_at.and_then(|at| {
                            let at = std::time::UNIX_EPOCH
                                + Duration::new(u64::try_from(at.seconds).ok()?, u32::try_from(at.nanos).ok()?);
                            std::time::SystemTime::now().duration_since(at).ok()
                        });
                        let mut state = kept.lock().unwrap_or_else(PoisonError::into_inner);
                        state.revisions.push(entry.revision);
                        state.delays.extend(delay);
                    }
                    Ok(None) => {
                        kept.lock().unwrap_or_else(PoisonError::into_inner).ended =
                            Some("the server ended the stream".into());
                        return;
                    }
                    Err(status) => {
                        kept.lock().unwrap_or_else(PoisonError::into_inner).ended =
                            Some(status.to_string());
                        return;
                    }
                },
            }
        }
    });
    Follower { state, _task: task }
}

/// The revisions of every entry of `household`'s timeline once the read models have reached
/// `position` (its last write: read your writes), in revision order.
async fn timeline_revisions(
    api: &mut Api,
    household: &str,
    position: Option<&u64>,
) -> Result<Vec<u64>, tonic::Status> {
    let min_position = position.copied().unwrap_or(0);
    let mut revisions = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .list_timeline_entries(pb::ListTimelineEntriesRequest {
                household_id: household.into(),
                page_size: 1000,
                page_token: token,
                min_position,
                ..Default::default()
            })
            .await?
            .into_inner();
        revisions.extend(page.entries.iter().map(|e| e.revision));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    revisions.sort_unstable();
    Ok(revisions)
}

/// Samples the resident memory of `pid` every 250 ms until `stopped`: the highest and the last,
/// in bytes.
async fn sample_memory(
    pid: u32,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Option<(u64, u64)> {
    let mut highest = 0;
    let mut last = None;
    loop {
        if let Some(rss) = crate::bench::resident_bytes(&pid.to_string()) {
            highest = highest.max(rss);
            last = Some(rss);
        }
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    last.map(|last| (highest, last))
}

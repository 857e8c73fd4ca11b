//! `naast bench fhir`: the FHIR facade's figures, one JSON object a line, each next to what it is
//! compared with in the same run:
//! - `fhir.map`: resources mapped and serialised per second from a household's state;
//! - `fhir.bundle`: the `$everything` Bundle of a household with 10,000 events, over HTTP with
//!   authentication, consent and audit on;
//! - `fhir.read`: a FHIR read of a goal next to the gRPC read of the same goal, both guarded.

use crate::bench::{BenchError, fail, percentile, round, scratch_dir};
use crate::households::{CommandContext, Households};
use naast_domain::Command;
use naast_domain::event::{AgreementTerms, MemberDetails, Party};
use naast_domain::ids::{AgreementId, EntryId, GoalId, HouseholdId, MemberId};
use naast_domain::vocab::{FundingDomain, LifeDomain, MemberRole};
use naast_eventlog::{EventLog, Options};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of `naast bench fhir`.
#[derive(Clone, Debug, clap::Args)]
pub struct FhirArgs {
    /// Events of the household whose `$everything` Bundle is read.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
    /// Bundles read for the Bundle figures.
    #[arg(long, default_value_t = 10)]
    pub bundles: usize,
    /// Reads of each kind (FHIR and gRPC) for the read latencies.
    #[arg(long, default_value_t = 1_000)]
    pub reads: usize,
    /// Where to put the scratch data (removed afterwards); defaults to the current directory.
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
}

/// Runs `naast bench fhir`.
pub fn fhir(args: &FhirArgs) -> Result<(), BenchError> {
    let scratch = scratch_dir(args.scratch_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(benches(scratch.path(), args))
}

/// Writes a household of `events` events through `households`: a client, then a goal, an
/// agreement serving it and notes, in turn (one goal and one agreement in every 50 events); its
/// first goal.
async fn long_history(
    households: &Households,
    id: HouseholdId,
    events: usize,
    registrant: naast_domain::Identity,
) -> Result<GoalId, BenchError> {
    let context = CommandContext::unguarded();
    let run = |command| households.execute(id, command, &context);
    run(Command::RegisterHousehold {
        name: "gezin met een lange geschiedenis".into(),
        registered_by: Some(registrant),
    })
    .await
    .map_err(|e| fail(&e))?;
    let client = MemberId::new();
    run(Command::AddMember {
        member: client,
        details: MemberDetails {
            name: "Noor".into(),
            role: MemberRole::Client,
            relation: None,
            birth_date: None,
        },
    })
    .await
    .map_err(|e| fail(&e))?;
    let mut goal = GoalId::new();
    let mut first = None;
    for i in 2..events.max(3) {
        let domain = LifeDomain::ALL[i % LifeDomain::ALL.len()];
        let command = match i % 50 {
            2 => {
                goal = GoalId::new();
                first.get_or_insert(goal);
                Command::SetGoal {
                    goal,
                    owner: client,
                    title: format!("doel {i}"),
                    description: String::new(),
                    life_domains: vec![domain],
                    plan: None,
                }
            }
            3 => Command::ProposeAgreement {
                agreement: AgreementId::new(),
                terms: AgreementTerms {
                    title: format!("afspraak {i}"),
                    description: String::new(),
                    parties: vec![Party::Member(client)],
                    responsible: None,
                    funding: FundingDomain::Wmo,
                    pgb: false,
                    start: time::macros::date!(2026 - 01 - 01),
                    end: None,
                    frequency: None,
                    goals: vec![goal],
                    review_on: None,
                    plan: None,
                },
            },
            _ => Command::AddNote {
                note: EntryId::new(),
                about: Some(client),
                text: format!("notitie {i}"),
                life_domains: vec![domain],
            },
        };
        run(command).await.map_err(|e| fail(&e))?;
    }
    // The first goal is set at event 2 whatever `events` says.
    first.ok_or_else(|| fail(&"no goal was set"))
}

async fn benches(scratch: &Path, args: &FhirArgs) -> Result<(), BenchError> {
    use naast_proto::client::Bearer;
    use naast_proto::pb;
    use naast_proto::pb::household_service_client::HouseholdServiceClient;

    let data = scratch.join("served");
    let log = EventLog::open(&data, Options::default())?;
    let key = naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64())
        .map_err(|e| fail(&e))?;
    let vault = naast_vault::Vault::open(&data.join("keys"), &key).map_err(|e| fail(&e))?;
    let projections = naast_projections::Projections::open(&data.join("projections"))
        .map_err(|e| fail(&e))?
        .with_vault(vault.clone());
    let (guard, token, parent) = crate::bench::dev_guard(&data, Some(vault.clone()))?;

    // The households, written through the library into the log the server serves.
    let households = Households::new(log.clone(), None).with_vault(vault.clone());
    let big = HouseholdId::new();
    long_history(&households, big, args.events, parent.clone()).await?;
    let small = HouseholdId::new();
    let goal = long_history(&households, small, 3, parent).await?;

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let fhir = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc_url = format!("http://{}", grpc.local_addr()?);
    let base = format!("http://{}/fhir", fhir.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::grpc::run(
        grpc,
        crate::grpc::Doors {
            fhir: Some(fhir),
            ..Default::default()
        },
        None,
        crate::grpc::Stores::in_dir(log.clone(), projections.clone(), &data),
        Some(guard),
        async move {
            let _ = stopped.await;
        },
    ));
    // The FHIR facade finds households by the ids of what they hold: once projected.
    projections
        .wait_for(log.head().saturating_sub(1), Duration::from_secs(600))
        .await
        .map_err(|e| fail(&e))?;

    // fhir.map: a household's resources mapped and serialised, from its state.
    let (resources, per_sec) = households
        .inspect(big, |state, _| {
            let today = naast_domain::calendar::dutch_today();
            let started = Instant::now();
            let mut mapped = 0usize;
            let mut rounds = 0;
            while started.elapsed() < Duration::from_secs(2) || rounds == 0 {
                let resources =
                    naast_fhir::household_resources(big, state, today).map_err(|e| fail(&e))?;
                for resource in &resources {
                    let json = serde_json::to_vec(resource).map_err(|e| fail(&e))?;
                    std::hint::black_box(json);
                }
                mapped += resources.len();
                rounds += 1;
            }
            Ok::<_, BenchError>((
                mapped / rounds,
                mapped as f64 / started.elapsed().as_secs_f64(),
            ))
        })
        .await
        .map_err(|e| fail(&e))??;
    println!(
        "{}",
        json!({
            "bench": "fhir.map",
            "household_resources": resources,
            "resources_per_sec": round(per_sec, 0),
            "what": "members, household, network, plans, goals, agreements and their tasks, indications and consents mapped from the household's state and serialised to JSON, one thread",
        })
    );

    // fhir.bundle: the household's $everything over HTTP, guarded.
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    let mut bytes = 0;
    let mut entries = 0;
    for _ in 0..args.bundles.max(1) {
        let started = Instant::now();
        let response = http
            .get(format!("{base}/Group/{big}/$everything"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| fail(&e))?;
        if !response.status().is_success() {
            return Err(fail(&format!("$everything answered {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| fail(&e))?;
        times.push(started.elapsed());
        bytes = body.len();
        let bundle: serde_json::Value = serde_json::from_slice(&body).map_err(|e| fail(&e))?;
        entries = bundle["entry"].as_array().map_or(0, Vec::len);
    }
    if entries < args.events / 2 {
        return Err(fail(&format!("a Bundle of {entries} entries")));
    }
    times.sort();
    // Where a Bundle's time goes: opening the household's notes from the log, and turning the
    // whole Bundle into JSON, each measured apart on one thread, on the same data (the facade
    // does both on two threads at once).
    let revision = households
        .inspect(big, |_, revision| revision)
        .await
        .map_err(|e| fail(&e))?
        .unwrap_or(0);
    let started = Instant::now();
    let mut opened = 0usize;
    households
        .events_of(
            big,
            0,
            revision,
            &["NoteAdded", "LogbookEntryAdded"],
            |_, stored| {
                opened += usize::from(matches!(
                    stored.event,
                    naast_domain::DomainEvent::NoteAdded { .. }
                ));
            },
        )
        .map_err(|e| fail(&e))?;
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    let body = http
        .get(format!("{base}/Group/{big}/$everything"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| fail(&e))?
        .bytes()
        .await
        .map_err(|e| fail(&e))?;
    let parsed: fhir_sdk::r4b::resources::Resource =
        serde_json::from_slice(&body).map_err(|e| fail(&e))?;
    let started = Instant::now();
    let json_bytes = serde_json::to_vec(&parsed).map_err(|e| fail(&e))?.len();
    let serialise_ms = started.elapsed().as_secs_f64() * 1000.0;
    let ms = |sorted: &[Duration], p| round(percentile(sorted, p) / 1000.0, 2);
    println!(
        "{}",
        json!({
            "bench": "fhir.bundle",
            "events": args.events,
            "entries": entries,
            "ms": ms(&times, 0.50),
            "p99_ms": ms(&times, 0.99),
            "bytes": bytes,
            "requests": times.len(),
            "target_ms": 100,
            "opening_notes_on_one_thread_ms": round(open_ms, 1),
            "notes_opened": opened,
            "serialising_on_one_thread_ms": round(serialise_ms, 1),
            "serialised_bytes": json_bytes,
            "auth": "bearer token checked, consent decided, audit record durable before the answer",
        })
    );

    // fhir.read: one goal over FHIR, and the same goal over gRPC, both guarded.
    let url = format!("{base}/Goal/{goal}");
    let mut fhir_times = Vec::new();
    for _ in 0..args.reads.max(1) {
        let started = Instant::now();
        let response = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| fail(&e))?;
        let ok = response.status().is_success();
        let _ = response.bytes().await.map_err(|e| fail(&e))?;
        fhir_times.push(started.elapsed());
        if !ok {
            return Err(fail(&"a FHIR read failed"));
        }
    }
    let channel = tonic::transport::Channel::from_shared(grpc_url)
        .map_err(|e| fail(&e))?
        .connect()
        .await
        .map_err(|e| fail(&e))?;
    let mut api = HouseholdServiceClient::with_interceptor(
        channel,
        Bearer::new(&token).map_err(|e| fail(&e))?,
    );
    let mut grpc_times = Vec::new();
    for _ in 0..args.reads.max(1) {
        let started = Instant::now();
        let goals = api
            .list_goals(pb::ListGoalsRequest {
                household_id: small.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|e| fail(&e))?
            .into_inner()
            .goals;
        grpc_times.push(started.elapsed());
        if goals.len() != 1 {
            return Err(fail(&format!("{} goals read over gRPC", goals.len())));
        }
    }
    fhir_times.sort();
    grpc_times.sort();
    let (fhir_p99, grpc_p99) = (ms(&fhir_times, 0.99), ms(&grpc_times, 0.99));
    println!(
        "{}",
        json!({
            "bench": "fhir.read",
            "reads": fhir_times.len(),
            "p50_ms": ms(&fhir_times, 0.50),
            "p99_ms": fhir_p99,
            "grpc_p50_ms": ms(&grpc_times, 0.50),
            "grpc_p99_ms": grpc_p99,
            "ratio_to_grpc": round(fhir_p99 / grpc_p99.max(0.001), 2),
            "target_ratio": 2,
            "what": "GET /fhir/Goal/{id} next to ListGoals of the same household (its one goal), one client each, both with auth, consent and audit on",
        })
    );
    let _ = stop.send(());
    server.await?.map_err(|e| fail(&e))?;
    Ok(())
}

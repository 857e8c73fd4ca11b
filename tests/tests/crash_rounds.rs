//! The crash harness: `naast serve` with authentication, consent, the audit log and encryption
//! on, under writers on several households and a live timeline subscriber, is SIGKILLed at
//! random moments, round after round, and restarted on the same data. After every round: `naast
//! verify` passes, every acknowledged note is on its family's timeline exactly once, and the
//! audit log holds each acknowledged command's record. At the end the views equal those rebuilt
//! by `naast replay`.
//!
//! `NAAST_CRASH_ROUNDS` sets the rounds (10 here; `ops/crash-harness.sh` runs 100) and
//! `NAAST_CRASH_SEED` the seed of how long each round runs before its kill, printed so a failing
//! run can be repeated as nearly as a shared machine allows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Rng, Server, search_audit, workspace_bin};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 4;
const HOUSEHOLDS: usize = 3;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn verify(data: &Path) {
    let verified = std::process::Command::new(workspace_bin("naast"))
        .args(["verify", "--data-dir"])
        .arg(data)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "naast verify: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// An acknowledged note: its household, text and command request id.
#[derive(Clone, Debug)]
struct Note {
    household: String,
    text: String,
    request_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_the_service_loses_nothing_it_acknowledged() {
    let rounds = env_number("NAAST_CRASH_ROUNDS", 10);
    let seed = env_number("NAAST_CRASH_SEED", 20_261_202);
    eprintln!("crash harness: {rounds} rounds, seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut server = Server::start(&data);
    let mut households = Vec::new();
    {
        let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
        for i in 0..HOUSEHOLDS {
            let (household, _, _) =
                naast_tests::household_with_client(&mut api, &format!("Familie {i}")).await;
            households.push(household);
        }
    }
    let mut acked: Vec<Note> = Vec::new();
    let mut rounds_with_acks = 0;
    for round in 0..rounds {
        // Writers on every household, and a subscriber following the first one live.
        let done = Arc::new(Mutex::new(Vec::<Note>::new()));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let channel = server.signed("ouder").await;
            let (done, households) = (done.clone(), households.clone());
            tasks.push(tokio::spawn(async move {
                let mut api = HouseholdServiceClient::new(channel);
                for n in 0.. {
                    let household = households[(writer + n) % households.len()].clone();
                    // Ends in a full stop, so that no note's text is part of another's.
                    let text = format!("Ronde {round}, schrijver {writer}, notitie {n}.");
                    let request_id = uuid::Uuid::now_v7().to_string();
                    let written = api
                        .create_note(pb::CreateNoteRequest {
                            household_id: household.clone(),
                            options: Some(pb::CommandOptions {
                                request_id: request_id.clone(),
                                ..Default::default()
                            }),
                            text: text.clone(),
                            ..Default::default()
                        })
                        .await;
                    match written {
                        Ok(_) => done.lock().unwrap().push(Note {
                            household,
                            text,
                            request_id,
                        }),
                        // The kill: what was not acknowledged may or may not be there.
                        Err(_) => return,
                    }
                }
            }));
        }
        let subscriber = {
            let channel = server.signed("ouder").await;
            let household = households[0].clone();
            tokio::spawn(async move {
                let mut api = HouseholdServiceClient::new(channel);
                if let Ok(stream) = api
                    .subscribe_timeline(pb::SubscribeTimelineRequest {
                        household_id: household,
                        ..Default::default()
                    })
                    .await
                {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(_)) = stream.message().await {}
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100 + rng.below(500))).await;
        server.kill();
        for task in tasks {
            task.await.unwrap();
        }
        subscriber.await.unwrap();
        let this_round = done.lock().unwrap().clone();
        rounds_with_acks += usize::from(!this_round.is_empty());
        acked.extend(this_round);

        verify(&data);
        server = Server::start(&data);
        // Every note acknowledged so far is on its timeline exactly once.
        let mut shown: HashMap<(String, String), usize> = HashMap::new();
        for household in &households {
            for entry in naast_tests::full_timeline(&server, household).await {
                // A note's line holds its text: from "Ronde" to the full stop.
                if let Some(text) = entry.summary.find("Ronde ").and_then(|at| {
                    let rest = &entry.summary[at..];
                    rest.find('.').map(|end| rest[..=end].to_owned())
                }) {
                    *shown.entry((household.clone(), text)).or_default() += 1;
                }
            }
        }
        for note in &acked {
            let times = shown
                .get(&(note.household.clone(), note.text.clone()))
                .copied()
                .unwrap_or(0);
            assert_eq!(times, 1, "round {round}: {note:?} shown {times} times");
        }
        // And its command's audit record is there.
        let records: std::collections::HashSet<String> = search_audit(
            server.signed("beheerder").await,
            pb::SearchAuditLogRequest {
                subject: "dev-ouder".into(),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .filter(|r| r.operation == "/naast.v1.HouseholdService/CreateNote")
        .map(|r| r.request_id)
        .collect();
        for note in &acked {
            assert!(
                records.contains(&note.request_id),
                "round {round}: no audit record of {note:?}"
            );
        }
    }
    // Most rounds must have had acknowledged writes to lose, or the harness checks little.
    assert!(
        rounds_with_acks as u64 * 2 >= rounds,
        "only {rounds_with_acks} of {rounds} rounds acknowledged a note"
    );

    // The views equal what a replay of the log rebuilds.
    let mut before = Vec::new();
    for household in &households {
        before.push(naast_tests::full_timeline(&server, household).await);
    }
    assert!(server.terminate().success());
    naast_tests::replay(&data);
    let server = Server::start(&data);
    for (household, before) in households.iter().zip(before) {
        assert_eq!(
            naast_tests::full_timeline(&server, household).await,
            before,
            "{household}"
        );
    }
    eprintln!(
        "crash harness: {rounds} rounds, {} acknowledged notes, all present once with their audit records",
        acked.len()
    );
}

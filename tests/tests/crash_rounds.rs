//! The crash harness: `naast serve` with authentication, consent, the audit log and encryption
//! on, under writers on several households and a live timeline subscriber, is SIGKILLed at
//! random moments, round after round, and restarted on the same data. After every round: `naast
//! verify` passes, every acknowledged note is on its family's timeline exactly once, and the
//! audit log holds each acknowledged command's record. At the end the views equal those rebuilt
//! by `naast replay`.
//!
//! The checks after a round read only what that round added, so that a long run costs each round
//! the same: the log up to the head checked after the previous round must be unchanged (the
//! record at that head has the same hash, and `naast verify` checks every link before it, so
//! every record before it is unchanged too), each household's timeline from the revision checked
//! last holds this round's acknowledged notes once each and nothing of earlier rounds, and the
//! audit records since the round began hold each acknowledged command's.
//!
//! `NAAST_CRASH_ROUNDS` sets the rounds (10 here; `ops/crash-harness.sh` runs 100) and
//! `NAAST_CRASH_SEED` the seed of how long each round runs before its kill, printed so a failing
//! run can be repeated as nearly as a shared machine allows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Rng, Server, search_audit};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::StreamExt as _;

const WRITERS: usize = 4;
const HOUSEHOLDS: usize = 3;

/// An acknowledged note: its household, text and command request id.
#[derive(Clone, Debug)]
struct Note {
    household: String,
    text: String,
    request_id: String,
}

/// The first record read from `start` (the end when `None`) in `direction`: its position and
/// hash.
async fn record(
    server: &Server,
    start: Option<u64>,
    direction: pb::ReadDirection,
) -> Option<(u64, Vec<u8>)> {
    let mut log =
        pb::event_log_service_client::EventLogServiceClient::new(server.signed("beheerder").await);
    let found = log
        .list_events(pb::ListEventsRequest {
            start_position: start,
            direction: direction as i32,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    found.into_iter().next().map(|e| (e.position, e.hash))
}

/// The last record of the log: its position and hash.
async fn head(server: &Server) -> Option<(u64, Vec<u8>)> {
    record(server, None, pb::ReadDirection::Backwards).await
}

/// The hash of the record at `position`.
async fn hash_at(server: &Server, position: u64) -> Option<Vec<u8>> {
    record(server, Some(position), pb::ReadDirection::Forwards)
        .await
        .filter(|(at, _)| *at == position)
        .map(|(_, hash)| hash)
}

/// The timeline entries of `household` after revision `after` (all with `None`), up to its
/// present revision, read through a timeline subscription that starts there.
async fn entries_after(
    api: &mut HouseholdServiceClient<naast_proto::client::Signed>,
    household: &str,
    after: Option<u64>,
) -> (Vec<pb::TimelineEntry>, u64) {
    let now = naast_tests::household(api, household).await.revision;
    let from = after.map_or(0, |r| r + 1);
    let mut entries = Vec::new();
    if from > now {
        return (entries, now);
    }
    let mut stream = api
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: household.into(),
            start_revision: Some(from),
        })
        .await
        .unwrap()
        .into_inner();
    // Every event of these households after their set-up is a note, so an entry comes for each
    // revision up to the present one.
    while entries
        .last()
        .is_none_or(|e: &pb::TimelineEntry| e.revision < now)
    {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{household}: no entry up to revision {now} in 30 s"))
            .unwrap_or_else(|| panic!("{household}: the subscription ended"))
            .unwrap();
        entries.extend(next.entry);
    }
    (entries, now)
}

/// A note's text as its timeline line holds it: from "Ronde" to the full stop.
fn note_text(entry: &pb::TimelineEntry) -> Option<String> {
    entry.summary.find("Ronde ").and_then(|at| {
        let rest = &entry.summary[at..];
        rest.find('.').map(|end| rest[..=end].to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_the_service_loses_nothing_it_acknowledged() {
    let rounds = naast_tests::env_number("NAAST_CRASH_ROUNDS", 10);
    let seed = naast_tests::env_number("NAAST_CRASH_SEED", 20_261_202);
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
    let mut acked = 0usize;
    let mut rounds_with_acks = 0;
    // What the checks of the previous round covered: each household's revision, and the log's
    // head.
    let mut checked: HashMap<String, u64> = HashMap::new();
    {
        let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
        for household in &households {
            let revision = naast_tests::household(&mut api, household).await.revision;
            checked.insert(household.clone(), revision);
        }
    }
    let mut checked_head = head(&server).await;
    for round in 0..rounds {
        let began = std::time::SystemTime::now() - Duration::from_secs(1);
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
        acked += this_round.len();

        let checks = std::time::Instant::now();
        naast_tests::verify(&data, &[]);
        server = Server::start(&data);
        // The log the previous checks covered is unchanged.
        if let Some((position, hash)) = &checked_head {
            assert_eq!(
                hash_at(&server, *position).await.as_ref(),
                Some(hash),
                "round {round}: the record at {position}, checked before, changed or is gone"
            );
        }
        // Every note acknowledged this round is on its timeline exactly once, and nothing of an
        // earlier round came after what was checked.
        let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
        let mut shown: HashMap<(String, String), usize> = HashMap::new();
        for household in &households {
            let (entries, now) =
                entries_after(&mut api, household, checked.get(household).copied()).await;
            for entry in &entries {
                let text = note_text(entry)
                    .unwrap_or_else(|| panic!("round {round}: not a note: {entry:?}"));
                assert!(
                    text.starts_with(&format!("Ronde {round},")),
                    "round {round}: a note of an earlier round again: {text}"
                );
                *shown.entry((household.clone(), text)).or_default() += 1;
            }
            checked.insert(household.clone(), now);
        }
        assert!(shown.values().all(|&n| n == 1), "round {round}: {shown:?}");
        for note in &this_round {
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
                from_time: Some(began.into()),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .filter(|r| r.operation == "/naast.v1.HouseholdService/CreateNote")
        .map(|r| r.request_id)
        .collect();
        for note in &this_round {
            assert!(
                records.contains(&note.request_id),
                "round {round}: no audit record of {note:?}"
            );
        }
        checked_head = head(&server).await;
        eprintln!(
            "crash harness: round {round}: {} notes acknowledged, checked in {:.1} s",
            this_round.len(),
            checks.elapsed().as_secs_f64()
        );
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
        "crash harness: {rounds} rounds, {acked} acknowledged notes, all present once with their audit records"
    );
}

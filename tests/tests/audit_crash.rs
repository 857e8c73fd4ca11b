//! A command's events and its audit record are durable together. `naast serve`, with
//! authentication against a real OpenID provider, consent, the audit log and encryption at rest
//! on (as every deployment runs), is SIGKILLed while several callers write; after the restart
//! every acknowledged command has its events and its audit record, no event is without the
//! record of the command that caused it, and no allowed command's record is without its events.
//! Before the kill, the audit log already shows the acknowledged commands (their copies are
//! written as they go, not only repaired at the next start); a household erased just before
//! the kill keeps its erasure's record whole, and the records of its commands too (the key
//! that opens what its events carry is gone after the erasure).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_eventlog::{Direction, EventLog, Options, RecordedEvent};
use naast_proto::pb;
use naast_proto::pb::consent_service_client::ConsentServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Idp, master_key_file, search_audit, server_with_key, signed};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 8;
const HOUSEHOLDS: usize = 4;
const OPERATION: &str = "/naast.v1.HouseholdService/CreateNote";
const ERASE: &str = "/naast.v1.ConsentService/EraseHousehold";
/// The reason the start gives a record it writes again.
const REPAIRED: &str = "recorded at the next start";

fn note(household: &str, text: String, request_id: String) -> pb::CreateNoteRequest {
    pb::CreateNoteRequest {
        household_id: household.into(),
        options: Some(pb::CommandOptions {
            request_id,
            ..Default::default()
        }),
        text,
        life_domains: vec![pb::LifeDomain::Housing as i32],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_under_load_leaves_every_command_with_its_events_and_its_audit_record() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let key = master_key_file(dir.path());
    let mut server = server_with_key(dir.path(), &key, &idp, &[]);
    let parent = idp.token("ouder-a").await;
    let mut api = HouseholdServiceClient::new(signed(&server.url(), &parent).await);
    let mut households = Vec::new();
    for i in 0..HOUSEHOLDS {
        let created = api
            .create_household(pb::CreateHouseholdRequest {
                name: format!("Gezin {i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        households.push(created.household_id);
    }
    // A household with a few notes of its own, erased just before the kill.
    let erased = api
        .create_household(pb::CreateHouseholdRequest {
            name: "Gezin Vergeten".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household_id;
    let mut erased_notes = Vec::new();
    for n in 0..5 {
        let request_id = uuid::Uuid::now_v7().to_string();
        api.create_note(note(&erased, format!("Vergeten {n}"), request_id.clone()))
            .await
            .unwrap();
        erased_notes.push(request_id);
    }

    // Writers add notes, each under a request id of its own, until the server is gone.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let channel = signed(&server.url(), &parent).await;
        let (household, acked) = (households[w % HOUSEHOLDS].clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut api = HouseholdServiceClient::new(channel);
            for n in 0.. {
                let request_id = uuid::Uuid::now_v7().to_string();
                let written = api
                    .create_note(note(
                        &household,
                        format!("Notitie {w}.{n}"),
                        request_id.clone(),
                    ))
                    .await;
                match written {
                    Ok(_) => acked.lock().unwrap().push(request_id),
                    Err(_) => return,
                }
            }
        }));
    }
    let wait_for = |count: usize| {
        let acked = acked.clone();
        async move {
            let started = std::time::Instant::now();
            while acked.lock().unwrap().len() < count && started.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Under way, the audit log shows every command acknowledged so far.
    wait_for(100).await;
    let admin = idp.token("beheerder").await;
    let so_far: Vec<String> = acked.lock().unwrap().clone();
    let shown: HashSet<String> = search_audit(
        signed(&server.url(), &admin).await,
        pb::SearchAuditLogRequest::default(),
    )
    .await
    .into_iter()
    .map(|r| r.request_id)
    .collect();
    for request_id in &so_far {
        assert!(
            shown.contains(request_id),
            "the audit log shows {request_id} once it is acknowledged"
        );
    }
    // Killed once the writers are well under way, right after an erasure.
    wait_for(300).await;
    let erase_request = uuid::Uuid::now_v7().to_string();
    ConsentServiceClient::new(signed(&server.url(), &parent).await)
        .erase_household(pb::EraseHouseholdRequest {
            household_id: erased.clone(),
            options: Some(pb::CommandOptions {
                request_id: erase_request.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    server.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() >= 300,
        "the writers got under way: {} commands acknowledged",
        acked.len()
    );

    // Restarted (the start writes lost copies of records again), asked for every audit record,
    // then stopped, so that the log itself can be read: household streams are not shown over
    // the raw event-log API, and their metadata, unlike their payloads, is not sealed.
    let mut server = server_with_key(dir.path(), &key, &idp, &[]);
    let records = search_audit(
        signed(&server.url(), &admin).await,
        pb::SearchAuditLogRequest::default(),
    )
    .await;
    assert!(server.terminate().success(), "a clean stop");
    let log = EventLog::open(dir.path().join("data"), Options::default()).unwrap();
    let events = log.read_all(0, Direction::Forwards, usize::MAX).unwrap();
    let household_events: Vec<_> = events
        .iter()
        .filter(|e| e.stream_id.starts_with("household-"))
        .collect();
    let records_by_id: HashMap<&str, &pb::AuditRecord> =
        records.iter().map(|r| (r.event_id.as_str(), r)).collect();
    let cause = |e: &RecordedEvent| {
        e.metadata
            .causation_id
            .map(|c| c.to_string())
            .unwrap_or_default()
    };

    // Every acknowledged command: its events, and its record, named by them as their cause.
    for request_id in &acked {
        let event = household_events
            .iter()
            .find(|e| {
                e.metadata
                    .correlation_id
                    .is_some_and(|c| c.to_string() == *request_id)
            })
            .unwrap_or_else(|| panic!("the acknowledged command {request_id} has its event"));
        let record = records_by_id
            .get(cause(event).as_str())
            .unwrap_or_else(|| panic!("the acknowledged command {request_id} has its record"));
        assert_eq!(record.request_id, *request_id);
        assert_eq!(record.operation, OPERATION);
        let user = record.user.as_ref().expect("the record names who wrote");
        assert_eq!(user.subject, "burger-ouder-a");
    }
    // No event without the record of the command that caused it.
    for event in &household_events {
        assert!(
            records_by_id.contains_key(cause(event).as_str()),
            "event {} at {} has the record of its command",
            event.id,
            event.position
        );
    }
    // No allowed command's record without its events (whether or not the kill let the caller
    // hear of it).
    let causes: HashSet<String> = household_events.iter().map(|e| cause(e)).collect();
    let notes: Vec<&pb::AuditRecord> = records
        .iter()
        .filter(|r| r.operation == OPERATION)
        .collect();
    for record in &notes {
        assert_eq!(record.outcome, pb::AuditOutcome::Allowed as i32);
        assert!(
            causes.contains(&record.event_id),
            "the record {} of request {} has its events",
            record.event_id,
            record.request_id
        );
    }
    assert!(notes.len() >= acked.len());

    // The erasure's record is whole (written before the answer, not rebuilt at the start), and
    // so are those of the erased household's commands.
    let erase = records
        .iter()
        .find(|r| r.request_id == erase_request)
        .expect("the erasure has its record");
    assert_eq!(erase.operation, ERASE);
    assert_eq!(erase.household_id, erased);
    assert!(!erase.outcome_reason.starts_with(REPAIRED), "{erase:?}");
    for request_id in &erased_notes {
        let record = records
            .iter()
            .find(|r| r.request_id == *request_id)
            .unwrap_or_else(|| panic!("the erased household's note {request_id} has its record"));
        assert_eq!(record.operation, OPERATION);
    }
}

//! A command's events and its audit record are durable together. `naast serve`, with
//! authentication against a real OpenID provider, consent, the audit log and encryption at rest
//! on (as every deployment runs), is SIGKILLed while several callers write; after the restart
//! every acknowledged command has its events and its audit record, no event is without the
//! record of the command that caused it, and no allowed command's record is without its events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_eventlog::{Direction, EventLog, Options, RecordedEvent};
use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Idp, master_key_file, search_audit, server_with_key, signed};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 8;
const HOUSEHOLDS: usize = 4;
const OPERATION: &str = "/naast.v1.HouseholdService/CreateNote";

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
                    .create_note(pb::CreateNoteRequest {
                        household_id: household.clone(),
                        options: Some(pb::CommandOptions {
                            request_id: request_id.clone(),
                            ..Default::default()
                        }),
                        text: format!("Notitie {w}.{n}"),
                        life_domains: vec![pb::LifeDomain::Housing as i32],
                        ..Default::default()
                    })
                    .await;
                match written {
                    Ok(_) => acked.lock().unwrap().push(request_id),
                    Err(_) => return,
                }
            }
        }));
    }
    // Killed once the writers are well under way.
    let started = std::time::Instant::now();
    while acked.lock().unwrap().len() < 300 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let admin = idp.token("beheerder").await;
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
}

//! A command's audit record is written once, in the command's own commit: its first event
//! carries it, and the audit log lists it from there. So nothing a crash can cut between two
//! writes: an audit log that never received anything (as after a crash, or with its partitions
//! failing) lists the record as complete as it was written: who, from where, which method,
//! which request id, under the id the events name as their cause. A call cut off at any moment
//! leaves no event without its record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_app::audit::{Auditor, Cursor, Filter};
use naast_app::auth::caller::{Caller, Calling};
use naast_app::households::{CommandContext, Households};
use naast_domain::Command;
use naast_domain::access::Principal;
use naast_domain::event::Identity;
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::PrincipalRole;
use naast_eventlog::{EventLog, Options};
use std::sync::Arc;
use std::time::Duration;

const RETENTION: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// A citizen signed in as `subject`, through the PGO `jouw-omgeving`, calling `operation`.
fn citizen(subject: &str, name: Option<&str>, operation: &str) -> (Identity, Calling) {
    let identity = Identity {
        issuer: "https://login.example.nl".into(),
        subject: subject.into(),
    };
    let calling = Calling::Caller(Arc::new(Caller {
        principal: Principal {
            identity: identity.clone(),
            role: PrincipalRole::Citizen,
            name: name.map(str::to_owned),
            organisation: None,
            client_id: Some("jouw-omgeving".into()),
            acting_for: None,
        },
        operation: operation.into(),
        peer: Some("192.0.2.7:50123".parse().unwrap()),
        request_id: None,
        purpose: "care".into(),
        valid_until: None,
        limits: None,
    }));
    (identity, calling)
}

#[tokio::test]
async fn a_record_lost_in_a_crash_comes_back_as_complete_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path().join("sled"), Options::default()).unwrap();
    let master =
        naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64()).unwrap();
    let vault = naast_vault::Vault::open(&dir.path().join("keys"), &master).unwrap();
    let audited = Auditor::open(&dir.path().join("audit"), RETENTION).unwrap();
    let households = Households::new(log.clone(), Some(audited.clone())).with_vault(vault.clone());

    let (identity, calling) = citizen(
        "moeder-42",
        Some("Ingrid Bakker"),
        "/naast.v1.HouseholdService/CreateHousehold",
    );
    let request = uuid::Uuid::now_v7();
    let household = HouseholdId::new();
    households
        .execute(
            household,
            Command::RegisterHousehold {
                name: "Familie Bakker".into(),
                registered_by: Some(identity),
            },
            &CommandContext {
                calling,
                request_id: Some(request),
                ..CommandContext::unguarded()
            },
        )
        .await
        .unwrap();

    let everything = Filter::default();
    let (written, _) = households
        .search_audit_log(Cursor::default(), 10, &everything)
        .unwrap();
    assert_eq!(written.len(), 1);
    let original = &written[0];
    assert_eq!(original.record.request_id, Some(request.to_string()));
    assert_eq!(original.record.reason, None);
    let events = log
        .read_all(0, naast_eventlog::Direction::Forwards, 10)
        .unwrap();
    assert_eq!(
        events[0].metadata.causation_id,
        Some(original.id),
        "the events name it as their cause"
    );
    // Listed from the events: not written a second time, to the partitions.
    assert!(!audited.contains(original.id).unwrap());

    // The same log, an audit log that never received anything: as after a crash.
    let after_crash = Auditor::open(&dir.path().join("audit-after-crash"), RETENTION).unwrap();
    let (found, _) = after_crash
        .search(&log, Some(&vault), Cursor::default(), 10, &everything)
        .unwrap();
    assert_eq!(found, written, "the same record, as complete");
    let (of_household, _) = after_crash
        .household(
            &log,
            Some(&vault),
            household,
            Cursor::default(),
            10,
            &everything,
        )
        .unwrap();
    assert_eq!(of_household, written);
    // Nothing is missing, so nothing is written at the start.
    assert_eq!(
        after_crash.reconcile(&log, 0, Some(&vault)).await.unwrap(),
        0
    );
    // Without the household's key the record cannot be read (an erased household's records
    // are copied to the partitions before its key goes).
    let keyless = Auditor::open(&dir.path().join("audit-keyless"), RETENTION).unwrap();
    let (unreadable, _) = keyless
        .search(&log, None, Cursor::default(), 10, &everything)
        .unwrap();
    assert!(unreadable.is_empty());
    // Copied before an erasure: then listed once, from the partitions.
    assert_eq!(
        after_crash
            .reconcile_household(&log, household, Some(&vault))
            .await
            .unwrap(),
        1
    );
    assert!(after_crash.contains(original.id).unwrap());
    let (found, _) = after_crash
        .search(&log, Some(&vault), Cursor::default(), 10, &everything)
        .unwrap();
    assert_eq!(found.len(), 1, "listed once: {found:?}");
    assert_eq!(
        (found[0].id, &found[0].record),
        (original.id, &original.record)
    );
    log.close().await;
    audited.close().await;
    after_crash.close().await;
    keyless.close().await;
}

#[tokio::test]
async fn a_command_done_while_the_audit_log_fails_is_answered_done_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path().join("sled"), Options::default()).unwrap();
    let master =
        naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64()).unwrap();
    let vault = naast_vault::Vault::open(&dir.path().join("keys"), &master).unwrap();
    let failing = Auditor::open(&dir.path().join("audit"), RETENTION).unwrap();
    let households = Households::new(log.clone(), Some(failing.clone())).with_vault(vault.clone());
    // This year's partition, closed: the audit log refuses every write from now on.
    failing
        .partition(time::OffsetDateTime::now_utc().year())
        .unwrap();
    failing.close().await;

    let (identity, calling) = citizen(
        "vader-7",
        None,
        "/naast.v1.HouseholdService/CreateHousehold",
    );
    let household = HouseholdId::new();
    // The events are durable, so the command is answered as done (a client retrying without a
    // request id would otherwise do it twice) ...
    let done = households
        .execute(
            household,
            Command::RegisterHousehold {
                name: "Familie Smit".into(),
                registered_by: Some(identity),
            },
            &CommandContext {
                calling,
                ..CommandContext::unguarded()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.revision, 0);
    assert!(
        !failing.had_failures(),
        "the command wrote nothing but its own commit"
    );
    // ... and its record is there, in what the events kept.
    let next = Auditor::open(&dir.path().join("audit-next-start"), RETENTION).unwrap();
    assert_eq!(next.reconcile(&log, 0, Some(&vault)).await.unwrap(), 0);
    let (found, _) = next
        .search(
            &log,
            Some(&vault),
            Cursor::default(),
            10,
            &Filter::default(),
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].record.operation,
        "/naast.v1.HouseholdService/CreateHousehold"
    );
    log.close().await;
    next.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_its_client_cancels_never_leaves_events_without_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path().join("sled"), Options::default()).unwrap();
    // An audit log whose write queue holds one record: records of commands waiting for room in
    // it, while the commands' events go ahead, is the moment a cancelled call used to lose.
    let auditor = Auditor::open_with(
        &dir.path().join("audit"),
        RETENTION,
        Options {
            write_queue: 1,
            ..Options::default()
        },
    )
    .unwrap();
    let households = Households::new(log.clone(), Some(auditor.clone()));
    let (identity, calling) = citizen("ouder-3", None, "/naast.v1.HouseholdService/CreateNote");
    let context = CommandContext {
        calling,
        ..CommandContext::unguarded()
    };
    let homes: Vec<HouseholdId> = (0..32).map(|_| HouseholdId::new()).collect();
    for home in &homes {
        households
            .execute(
                *home,
                Command::RegisterHousehold {
                    name: "Familie Afgebroken".into(),
                    registered_by: Some(identity.clone()),
                },
                &context,
            )
            .await
            .unwrap();
    }
    // Rounds of commands on every household at once, each cut off after a while (a client's
    // deadline, a dropped connection) from at once to after it is done: each either did nothing
    // or did everything, its record included.
    for round in 0..20u64 {
        let calls: Vec<_> = homes
            .iter()
            .map(|home| {
                let (households, context, home) = (households.clone(), context.clone(), *home);
                tokio::spawn(async move {
                    let note = Command::AddNote {
                        note: naast_domain::ids::EntryId::new(),
                        about: None,
                        text: "afgebroken of niet".into(),
                        life_domains: vec![naast_domain::vocab::LifeDomain::Meaning],
                    };
                    let wait = Duration::from_micros(round * round * 25);
                    let _ =
                        tokio::time::timeout(wait, households.execute(home, note, &context)).await;
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    }
    auditor.settled().await;
    let events = log
        .read_all(0, naast_eventlog::Direction::Forwards, 10_000)
        .unwrap();
    assert!(events.len() > homes.len(), "some notes got through");
    // Every record the audit log lists, a page at a time.
    let mut listed = std::collections::HashSet::new();
    let mut cursor = Cursor::default();
    loop {
        let (page, next) = households
            .search_audit_log(cursor, 7, &Filter::default())
            .unwrap();
        for stored in page {
            assert!(listed.insert(stored.id), "{} listed twice", stored.id);
        }
        match next {
            Some(next) => cursor = Cursor::parse(&next.token()).unwrap(),
            None => break,
        }
    }
    for event in events {
        let cause = event
            .metadata
            .causation_id
            .expect("every command names its record");
        assert!(
            listed.contains(&cause),
            "event {} at {} has no audit record",
            event.event_type,
            event.position
        );
    }
    log.close().await;
    auditor.close().await;
}

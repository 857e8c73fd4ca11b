//! A command's audit record lost in a crash (its events durable, the record not) is written
//! again at the next start as complete as the one that was lost: who, from where, which method,
//! which request id. The crash is modelled by reconciling the same event log into an audit log
//! that never received the record; a failing audit log by closing it before the command.

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

#[tokio::test]
async fn a_record_lost_in_a_crash_comes_back_as_complete_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path().join("sled"), Options::default()).unwrap();
    let master =
        naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64()).unwrap();
    let vault = naast_vault::Vault::open(&dir.path().join("keys"), &master).unwrap();
    let audited = Auditor::open(&dir.path().join("audit"), RETENTION).unwrap();
    let households = Households::new(log.clone(), Some(audited.clone())).with_vault(vault.clone());

    let identity = Identity {
        issuer: "https://login.example.nl".into(),
        subject: "moeder-42".into(),
    };
    let calling = Calling::Caller(Arc::new(Caller {
        principal: Principal {
            identity: identity.clone(),
            role: PrincipalRole::Citizen,
            name: Some("Ingrid Bakker".into()),
            organisation: None,
            client_id: Some("jouw-omgeving".into()),
            acting_for: None,
        },
        operation: "/naast.v1.HouseholdService/CreateHousehold".into(),
        peer: Some("192.0.2.7:50123".parse().unwrap()),
        request_id: None,
        purpose: "care".into(),
        valid_until: None,
    }));
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
    let (written, _) = audited.search(Cursor::default(), 10, &everything).unwrap();
    assert_eq!(written.len(), 1);
    let original = &written[0];
    assert_eq!(original.record.request_id, Some(request.to_string()));

    // The same log, an audit log without the record: as after a crash between the two writes.
    let after_crash = Auditor::open(&dir.path().join("audit-after-crash"), RETENTION).unwrap();
    let recovered = after_crash.reconcile(&log, 0, Some(&vault)).await.unwrap();
    assert_eq!(recovered, 1);
    let (found, _) = after_crash
        .search(Cursor::default(), 10, &everything)
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].id, original.id,
        "the events name it as their cause"
    );
    let mut record = found[0].record.clone();
    assert!(record.reason.take().unwrap().contains("next start"));
    assert_eq!(record, original.record);

    // Nothing is written twice.
    assert_eq!(
        after_crash.reconcile(&log, 0, Some(&vault)).await.unwrap(),
        0
    );
    log.close().await;
    audited.close().await;
    after_crash.close().await;
}

#[tokio::test]
async fn a_command_done_while_the_audit_log_fails_is_answered_done_and_its_record_follows() {
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

    let identity = Identity {
        issuer: "https://login.example.nl".into(),
        subject: "vader-7".into(),
    };
    let calling = Calling::Caller(Arc::new(Caller {
        principal: Principal {
            identity: identity.clone(),
            role: PrincipalRole::Citizen,
            name: None,
            organisation: None,
            client_id: Some("jouw-omgeving".into()),
            acting_for: None,
        },
        operation: "/naast.v1.HouseholdService/CreateHousehold".into(),
        peer: None,
        request_id: None,
        purpose: "care".into(),
        valid_until: None,
    }));
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
    assert!(failing.had_failures(), "the failure is noted");
    // ... and its record is written at the next start, from what the events kept.
    let next = Auditor::open(&dir.path().join("audit-next-start"), RETENTION).unwrap();
    assert_eq!(next.reconcile(&log, 0, Some(&vault)).await.unwrap(), 1);
    let (found, _) = next
        .search(Cursor::default(), 10, &Filter::default())
        .unwrap();
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
    let auditor = Auditor::open(&dir.path().join("audit"), RETENTION).unwrap();
    let households = Households::new(log.clone(), Some(auditor.clone()));
    let identity = Identity {
        issuer: "https://login.example.nl".into(),
        subject: "ouder-3".into(),
    };
    let calling = Calling::Caller(Arc::new(Caller {
        principal: Principal {
            identity: identity.clone(),
            role: PrincipalRole::Citizen,
            name: None,
            organisation: None,
            client_id: Some("jouw-omgeving".into()),
            acting_for: None,
        },
        operation: "/naast.v1.HouseholdService/CreateNote".into(),
        peer: None,
        request_id: None,
        purpose: "care".into(),
        valid_until: None,
    }));
    let context = CommandContext {
        calling,
        ..CommandContext::unguarded()
    };
    let household = HouseholdId::new();
    households
        .execute(
            household,
            Command::RegisterHousehold {
                name: "Familie Afgebroken".into(),
                registered_by: Some(identity),
            },
            &context,
        )
        .await
        .unwrap();
    // Calls cut off at every moment from at once to after they are done (a client's deadline,
    // a dropped connection): each either did nothing or did everything, its record included.
    // (The worst moment, a record waiting for room in a full audit queue, cannot be brought
    // about here; this checks the promise at all the moments that can.)
    for wait in (0..40).map(|i| Duration::from_micros(i * i * 10)) {
        let note = Command::AddNote {
            note: naast_domain::ids::EntryId::new(),
            about: None,
            text: "afgebroken of niet".into(),
            life_domains: vec![naast_domain::vocab::LifeDomain::Meaning],
        };
        let _ = tokio::time::timeout(wait, households.execute(household, note, &context)).await;
    }
    auditor.settled().await;
    let events = log
        .read_all(0, naast_eventlog::Direction::Forwards, 1_000)
        .unwrap();
    assert!(events.len() > 1);
    for event in events {
        let cause = event
            .metadata
            .causation_id
            .expect("every command names its record");
        assert!(
            auditor.contains(cause).unwrap(),
            "event {} at {} has no audit record",
            event.event_type,
            event.position
        );
    }
    log.close().await;
    auditor.close().await;
}

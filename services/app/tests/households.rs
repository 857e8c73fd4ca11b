//! Executing household commands over a real event log: revisions, idempotent retries,
//! conflicts, concurrent writers, and damaged events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_app::households::{AppError, CommandContext, Households};
use naast_domain::ids::{EntryId, HouseholdId, MemberId};
use naast_domain::vocab::{LifeDomain, MemberRole};
use naast_domain::{Command, DomainError, MemberDetails};
use naast_eventlog::{EventLog, ExpectedRevision, MemoryStorage, NewEvent, Options};
use std::sync::Arc;

fn households() -> Households {
    Households::new(
        EventLog::with_storage(Arc::new(MemoryStorage::new()), Options::default()).unwrap(),
        None,
    )
}

fn note(text: &str) -> Command {
    Command::AddNote {
        note: EntryId::new(),
        about: None,
        text: text.into(),
        life_domains: vec![LifeDomain::Meaning],
    }
}

async fn registered(h: &Households) -> HouseholdId {
    let id = HouseholdId::new();
    h.execute(
        id,
        Command::RegisterHousehold {
            name: "Familie Visser".into(),
            registered_by: None,
        },
        &CommandContext::unguarded(),
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn commands_advance_the_revision_and_report_their_position() {
    let h = households();
    let id = registered(&h).await;
    let member = MemberId::new();
    let out = h
        .execute(
            id,
            Command::AddMember {
                member,
                details: MemberDetails {
                    name: "Jan".into(),
                    role: MemberRole::Client,
                    relation: None,
                    birth_date: None,
                },
            },
            &CommandContext::unguarded(),
        )
        .await
        .unwrap();
    assert_eq!((out.revision, out.position, out.replayed), (1, 1, false));
    let (state, revision) = h.state(id).await.unwrap();
    assert_eq!(revision, Some(1));
    assert_eq!(state.members[&member].details.name, "Jan");
    // An unknown household refuses everything but registration.
    assert!(matches!(
        h.execute(HouseholdId::new(), note("x"), &CommandContext::unguarded())
            .await,
        Err(AppError::Domain(DomainError::NotFound {
            what: "household",
            ..
        }))
    ));
}

#[tokio::test]
async fn a_retried_request_acts_once_and_answers_the_same() {
    let h = households();
    let id = registered(&h).await;
    let context = CommandContext {
        request_id: Some(uuid::Uuid::now_v7()),
        ..CommandContext::unguarded()
    };
    let command = note("gesprek met school");
    let first = h.execute(id, command.clone(), &context).await.unwrap();
    // The retry would fail in the domain (the note exists) if it were decided again.
    let again = h.execute(id, command, &context).await.unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.revision, again.position),
        (first.revision, first.position)
    );
    assert_eq!(h.state(id).await.unwrap().1, Some(1));
    let other = registered(&h).await;
    assert!(matches!(
        h.execute(other, note("x"), &context).await,
        Err(AppError::RequestIdReused(_))
    ));
}

#[tokio::test]
async fn a_stale_expected_revision_is_a_conflict_and_writes_nothing() {
    let h = households();
    let id = registered(&h).await;
    h.execute(id, note("een"), &CommandContext::unguarded())
        .await
        .unwrap();
    let stale = CommandContext {
        expected_revision: Some(0),
        ..CommandContext::unguarded()
    };
    assert!(matches!(
        h.execute(id, note("twee"), &stale).await,
        Err(AppError::Conflict {
            expected: 0,
            actual: Some(1)
        })
    ));
    let fresh = CommandContext {
        expected_revision: Some(1),
        ..CommandContext::unguarded()
    };
    assert_eq!(
        h.execute(id, note("twee"), &fresh).await.unwrap().revision,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_are_decided_again_or_refused_as_asked() {
    let h = households();
    let id = registered(&h).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.execute(
                id,
                note(&format!("notitie {i}")),
                &CommandContext::unguarded(),
            )
            .await
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(out) => revisions.push(out.revision),
            Err(AppError::Contended) => {}
            Err(e) => panic!("{e}"),
        }
    }
    revisions.sort();
    revisions.dedup();
    let (state, revision) = h.state(id).await.unwrap();
    assert_eq!(
        state.entries.len(),
        revisions.len(),
        "every success is stored once"
    );
    assert_eq!(revision, Some(revisions.len() as u64));

    // With an expected revision, only one of the racers wins.
    let base = revision.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let context = CommandContext {
                expected_revision: Some(base),
                ..CommandContext::unguarded()
            };
            h.execute(id, note(&format!("race {i}")), &context).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AppError::Conflict { expected, .. }) => assert_eq!(expected, base),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn a_damaged_event_is_an_error_not_a_panic() {
    let h = households();
    let id = registered(&h).await;
    h.log()
        .append(
            &id.stream_id(),
            ExpectedRevision::Any,
            vec![NewEvent::new("GoalSet", b"{not json".to_vec())],
        )
        .await
        .unwrap();
    assert!(matches!(
        h.state(id).await,
        Err(AppError::BadEvent { position: 1, .. })
    ));
    assert!(matches!(
        h.execute(id, note("x"), &CommandContext::unguarded()).await,
        Err(AppError::BadEvent { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_copies_of_one_request_act_once() {
    let h = households();
    let id = registered(&h).await;
    let context = CommandContext {
        request_id: Some(uuid::Uuid::now_v7()),
        ..CommandContext::unguarded()
    };
    // Copies of one request are one command: the same note id (the gRPC layer derives the ids a
    // client leaves empty from the request id).
    let command = note("één keer");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (h, context, command) = (h.clone(), context.clone(), command.clone());
        tasks.push(tokio::spawn(async move {
            h.execute(id, command, &context).await
        }));
    }
    let mut acted = 0;
    for task in tasks {
        let out = task.await.unwrap().unwrap();
        assert_eq!(out.revision, 1);
        acted += usize::from(!out.replayed);
    }
    assert_eq!(acted, 1);
    // Another command under the same request id is no copy: refused, nothing written.
    let other = h.execute(id, note("één keer"), &context).await;
    assert!(
        matches!(other, Err(AppError::RequestIdReused(_))),
        "{other:?}"
    );
    let (state, revision) = h.state(id).await.unwrap();
    assert_eq!((state.entries.len(), revision), (1, Some(1)));
}

//! The timeline read model: projected live from the log, persisted with its checkpoint, and
//! identical when rebuilt from scratch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::ids::{EntryId, GoalId, HouseholdId, MemberId};
use naast_domain::timeline::EntryKind;
use naast_domain::vocab::{LifeDomain, MemberRole};
use naast_domain::{Command, Household, MemberDetails, decide};
use naast_eventlog::{EventLog, ExpectedRevision, NewEvent, Options};
use naast_projections::{Projections, StoredEntry, TimelinePosition};
use std::time::Duration;
use time::macros::date;

/// Decides and appends a command, as the service does.
async fn execute(
    log: &EventLog,
    household: HouseholdId,
    state: &mut Household,
    command: Command,
    on: Option<time::Date>,
) -> u64 {
    let events = decide(state, command).unwrap();
    let new: Vec<NewEvent> = events
        .iter()
        .map(|e| NewEvent::new(e.event_type(), e.to_payload(on)))
        .collect();
    let out = log
        .append(&household.stream_id(), ExpectedRevision::Any, new)
        .await
        .unwrap();
    for e in &events {
        state.apply(e);
    }
    out.last_position
}

fn all(p: &Projections, h: HouseholdId) -> Vec<StoredEntry> {
    p.timeline(h, TimelinePosition::START, None, |_| true, usize::MAX)
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_follows_the_log_survives_a_reopen_and_rebuilds_identically() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path().join("log"), Options::default()).unwrap();
    let projections = Projections::open(&dir.path().join("projections")).unwrap();
    let projector = {
        let (p, log) = (projections.clone(), log.clone());
        tokio::spawn(async move { p.run(log).await })
    };
    let h = HouseholdId::new();
    let mut state = Household::default();
    execute(
        &log,
        h,
        &mut state,
        Command::RegisterHousehold {
            name: "Familie Kok".into(),
            registered_by: None,
        },
        Some(date!(2024 - 05 - 01)),
    )
    .await;
    let member = MemberId::new();
    execute(
        &log,
        h,
        &mut state,
        Command::AddMember {
            member,
            details: MemberDetails {
                name: "Bo".into(),
                role: MemberRole::Client,
                relation: None,
                birth_date: None,
            },
        },
        None,
    )
    .await;
    // Raw events of another stream and a damaged household event are left off the timeline.
    log.append(
        "integrator-x",
        ExpectedRevision::Any,
        vec![NewEvent::new("Whatever", b"{}".to_vec())],
    )
    .await
    .unwrap();
    log.append(
        &h.stream_id(),
        ExpectedRevision::Any,
        vec![NewEvent::new("GoalSet", b"{broken".to_vec())],
    )
    .await
    .unwrap();
    let goal = GoalId::new();
    execute(
        &log,
        h,
        &mut state,
        Command::SetGoal {
            goal,
            owner: member,
            title: "vrienden maken".into(),
            description: String::new(),
            life_domains: vec![LifeDomain::SocialNetwork],
            plan: None,
        },
        None,
    )
    .await;
    let last = execute(
        &log,
        h,
        &mut state,
        Command::AddNote {
            note: EntryId::new(),
            about: Some(member),
            text: "eerste gesprek".into(),
            life_domains: vec![LifeDomain::SocialNetwork],
        },
        None,
    )
    .await;

    projections
        .wait_for(last, Duration::from_secs(10))
        .await
        .unwrap();
    let live = all(&projections, h);
    let revisions: Vec<u64> = live.iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        vec![0, 1, 3, 4],
        "the damaged event (revision 2) is left out"
    );
    assert_eq!(
        live[0].entry.date,
        date!(2024 - 05 - 01),
        "a backfilled event is dated by the day it happened"
    );
    assert_eq!(live[0].entry.kind, EntryKind::Household);
    assert_eq!(live[3].entry.members, vec![member]);
    assert!(live[3].entry.summary.contains("eerste gesprek"));
    assert_eq!(live[3].position, last);
    let (page, next) = projections
        .timeline(
            h,
            TimelinePosition::START,
            None,
            |e| e.entry.kind == EntryKind::Household,
            1,
        )
        .unwrap();
    assert_eq!((page.len(), next.map(|n| n.revision)), (1, Some(1)));
    assert!(!projections.has_household(HouseholdId::new()).unwrap());
    // The household is found by its own id and by the ids of what it holds.
    for id in [h.0, member.0, goal.0] {
        assert_eq!(projections.household_holding(id).unwrap(), Some(h));
    }
    assert_eq!(
        projections.household_holding(uuid::Uuid::now_v7()).unwrap(),
        None
    );

    // Another household, erased: its ids are forgotten with it; the first one's stay. So is
    // who was involved in it: its registrant, and an organisation it let in.
    let other = HouseholdId::new();
    let mut other_state = Household::default();
    let other_member = MemberId::new();
    let registrant = naast_domain::Identity {
        issuer: "https://idp.example".into(),
        subject: "ouder-smit".into(),
    };
    let nobody = naast_domain::Identity {
        issuer: "https://idp.example".into(),
        subject: "niemand".into(),
    };
    for command in [
        Command::RegisterHousehold {
            name: "Familie Smit".into(),
            registered_by: Some(registrant.clone()),
        },
        Command::GrantAccess {
            grant: naast_domain::ids::GrantId::new(),
            grantee: naast_domain::Grantee::Organisation {
                id: "AGB-01234567".into(),
            },
            terms: naast_domain::GrantTerms {
                scopes: vec![naast_domain::vocab::AccessScope::ReadTimeline],
                life_domains: Vec::new(),
                funding_domains: Vec::new(),
                until: None,
            },
            request: None,
        },
        Command::AddMember {
            member: other_member,
            details: MemberDetails {
                name: "Sam".into(),
                role: MemberRole::Client,
                relation: None,
                birth_date: None,
            },
        },
    ] {
        execute(&log, other, &mut other_state, command, None).await;
    }
    projections
        .wait_for(log.head() - 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        projections.household_holding(other_member.0).unwrap(),
        Some(other)
    );
    assert_eq!(
        projections.households_involving(&registrant, None).unwrap(),
        vec![other]
    );
    assert_eq!(
        projections
            .households_involving(&nobody, Some("AGB-01234567"))
            .unwrap(),
        vec![other]
    );
    assert!(
        projections
            .households_involving(&nobody, None)
            .unwrap()
            .is_empty()
    );
    let erased = execute(&log, other, &mut other_state, Command::EraseHousehold, None).await;
    projections
        .wait_for(erased, Duration::from_secs(10))
        .await
        .unwrap();
    for id in [other.0, other_member.0] {
        assert_eq!(projections.household_holding(id).unwrap(), None, "erased");
    }
    assert!(
        projections
            .households_involving(&registrant, Some("AGB-01234567"))
            .unwrap()
            .is_empty(),
        "erased"
    );
    assert_eq!(projections.household_holding(member.0).unwrap(), Some(h));
    log.close().await;
    projector.await.unwrap().unwrap();
    let checkpoint = projections.checkpoint();
    assert_eq!(checkpoint, log.head());
    drop(projections);

    let reopened = Projections::open(&dir.path().join("projections")).unwrap();
    assert_eq!(reopened.checkpoint(), checkpoint);
    assert_eq!(all(&reopened, h), live);
    reopened.reset().unwrap();
    assert!(all(&reopened, h).is_empty());
    assert_eq!(reopened.catch_up(&log).await.unwrap(), checkpoint);
    assert_eq!(
        all(&reopened, h),
        live,
        "a rebuild from the log gives the same timeline"
    );
}

#[tokio::test]
async fn waiting_for_a_position_never_reached_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let projections = Projections::open(dir.path()).unwrap();
    let err = projections
        .wait_for(5, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        naast_projections::Error::NotReached { position: 5, .. }
    ));
}

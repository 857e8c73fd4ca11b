//! Deciding commands against a household's state: lifecycles, illegal transitions, the
//! 18th-birthday transition, and refused input naming its field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::ids::{AgreementId, ContactId, EntryId, GoalId, IndicationId, MemberId, PlanId};
use naast_domain::state::{AgreementStatus, GoalStatus, PlanStatus};
use naast_domain::testing::{run, scenario_two};
use naast_domain::vocab::*;
use naast_domain::{
    AgreementTerms, Command, ContactDetails, DomainError, DomainEvent, Household, MemberDetails,
    Party, decide,
};
use time::macros::date;

fn terms(
    (teen, provider): (MemberId, ContactId),
    funding: FundingDomain,
    goals: Vec<GoalId>,
) -> AgreementTerms {
    AgreementTerms {
        title: "begeleiding twee middagen per week".into(),
        description: String::new(),
        parties: vec![Party::Member(teen), Party::Contact(provider)],
        responsible: Some(provider),
        funding,
        pgb: false,
        start: date!(2025 - 09 - 01),
        end: None,
        frequency: Some("2 middagen per week".into()),
        goals,
        review_on: Some(date!(2026 - 03 - 01)),
        plan: None,
    }
}

#[test]
fn a_goal_goes_from_set_to_achieved_and_back_only_by_reopening() {
    let mut f = scenario_two();
    let goal = GoalId::new();
    run(
        &mut f.household,
        Command::SetGoal {
            goal,
            owner: f.teen,
            title: "structuur in de week".into(),
            description: "vaste tijden voor school en eten".into(),
            life_domains: vec![LifeDomain::Education, LifeDomain::SelfDetermination],
            plan: None, // pilot 2 works without a plan
        },
    );
    run(
        &mut f.household,
        Command::NoteGoalProgress {
            goal,
            on: date!(2025 - 10 - 01),
            note: "weekplanner werkt".into(),
        },
    );
    run(
        &mut f.household,
        Command::AchieveGoal {
            goal,
            on: date!(2025 - 12 - 01),
            note: String::new(),
        },
    );
    assert_eq!(f.household.goals[&goal].status, GoalStatus::Achieved);
    for command in [
        Command::AchieveGoal {
            goal,
            on: date!(2025 - 12 - 02),
            note: String::new(),
        },
        Command::AbandonGoal {
            goal,
            on: date!(2025 - 12 - 02),
            reason: "x".into(),
        },
        Command::NoteGoalProgress {
            goal,
            on: date!(2025 - 12 - 02),
            note: "x".into(),
        },
    ] {
        assert!(matches!(
            decide(&f.household, command),
            Err(DomainError::FailedPrecondition(_))
        ));
    }
    run(
        &mut f.household,
        Command::ReopenGoal {
            goal,
            reason: "na de zomer terugval".into(),
        },
    );
    assert_eq!(f.household.goals[&goal].status, GoalStatus::Active);
    assert_eq!(f.household.goals[&goal].progress_notes, 1);
    assert!(matches!(
        decide(
            &f.household,
            Command::ReopenGoal {
                goal,
                reason: "again".into()
            }
        ),
        Err(DomainError::FailedPrecondition(_))
    ));
}

#[test]
fn a_plan_is_drafted_revised_activated_evaluated_and_closed_in_that_order() {
    let mut f = scenario_two();
    let plan = PlanId::new();
    run(
        &mut f.household,
        Command::DraftPlan {
            plan,
            kind: PlanKind::SupportPlan,
            title: "ondersteuningsplan".into(),
            summary: String::new(),
        },
    );
    run(
        &mut f.household,
        Command::RevisePlan {
            plan,
            title: "ondersteuningsplan 2025".into(),
            summary: "met school".into(),
        },
    );
    assert_eq!(f.household.plans[&plan].version, 2);
    assert!(matches!(
        decide(
            &f.household,
            Command::EvaluatePlan {
                plan,
                on: date!(2025 - 10 - 01),
                evaluation: "x".into()
            }
        ),
        Err(DomainError::FailedPrecondition(_))
    ));
    run(
        &mut f.household,
        Command::ActivatePlan {
            plan,
            on: date!(2025 - 09 - 01),
        },
    );
    assert!(matches!(
        decide(
            &f.household,
            Command::ActivatePlan {
                plan,
                on: date!(2025 - 09 - 02)
            }
        ),
        Err(DomainError::FailedPrecondition(_))
    ));
    run(
        &mut f.household,
        Command::EvaluatePlan {
            plan,
            on: date!(2026 - 01 - 10),
            evaluation: "doelen grotendeels gehaald".into(),
        },
    );
    run(
        &mut f.household,
        Command::ClosePlan {
            plan,
            on: date!(2026 - 06 - 30),
            reason: "waakvlam".into(),
        },
    );
    assert_eq!(f.household.plans[&plan].status, PlanStatus::Closed);
    for command in [
        Command::RevisePlan {
            plan,
            title: "x".into(),
            summary: String::new(),
        },
        Command::ClosePlan {
            plan,
            on: date!(2026 - 07 - 01),
            reason: "x".into(),
        },
        Command::SetGoal {
            goal: GoalId::new(),
            owner: f.teen,
            title: "x".into(),
            description: String::new(),
            life_domains: vec![LifeDomain::Housing],
            plan: Some(plan),
        },
    ] {
        assert!(matches!(
            decide(&f.household, command),
            Err(DomainError::FailedPrecondition(_))
        ));
    }
}

#[test]
fn an_agreement_not_delivered_is_under_review_until_amended() {
    let mut f = scenario_two();
    let agreement = AgreementId::new();
    run(
        &mut f.household,
        Command::ProposeAgreement {
            agreement,
            terms: terms((f.teen, f.provider), FundingDomain::Jeugdwet, vec![]),
        },
    );
    assert!(matches!(
        decide(
            &f.household,
            Command::EndAgreement {
                agreement,
                on: date!(2025 - 10 - 01),
                reason: "x".into()
            }
        ),
        Err(DomainError::FailedPrecondition(_))
    ));
    run(&mut f.household, Command::AcceptAgreement { agreement });
    assert!(
        matches!(
            decide(&f.household, Command::ReportNotDelivered { agreement, on: date!(2025 - 08 - 01), description: "x".into() }),
            Err(DomainError::InvalidArgument { field, .. }) if field == "date"
        ),
        "a report before the agreement started"
    );
    run(
        &mut f.household,
        Command::ReportNotDelivered {
            agreement,
            on: date!(2025 - 10 - 07),
            description: "twee weken geen begeleider".into(),
        },
    );
    assert!(f.household.agreements[&agreement].under_review);
    let mut changed = terms((f.teen, f.provider), FundingDomain::Jeugdwet, vec![]);
    changed.frequency = Some("3 middagen per week".into());
    run(
        &mut f.household,
        Command::AmendAgreement {
            agreement,
            terms: changed,
            reason: "inhaalafspraak".into(),
        },
    );
    let now = &f.household.agreements[&agreement];
    assert!(!now.under_review);
    assert_eq!(now.terms.frequency.as_deref(), Some("3 middagen per week"));
    assert!(matches!(
        decide(&f.household, Command::EndAgreement { agreement, on: date!(2025 - 08 - 01), reason: "x".into() }),
        Err(DomainError::InvalidArgument { field, .. }) if field == "date"
    ));
    run(
        &mut f.household,
        Command::EndAgreement {
            agreement,
            on: date!(2026 - 01 - 31),
            reason: "doel bereikt".into(),
        },
    );
    assert_eq!(
        f.household.agreements[&agreement].status,
        AgreementStatus::Ended
    );
    assert!(matches!(
        decide(&f.household, Command::AcceptAgreement { agreement }),
        Err(DomainError::FailedPrecondition(_))
    ));
}

#[test]
fn turning_18_moves_jeugdwet_agreements_to_wmo_and_keeps_goals_and_coach() {
    let mut f = scenario_two();
    let goal = GoalId::new();
    run(
        &mut f.household,
        Command::SetGoal {
            goal,
            owner: f.teen,
            title: "zelfstandig reizen naar de mbo".into(),
            description: String::new(),
            life_domains: vec![LifeDomain::Mobility, LifeDomain::Education],
            plan: None,
        },
    );
    let (youth, school, ended) = (AgreementId::new(), AgreementId::new(), AgreementId::new());
    run(
        &mut f.household,
        Command::ProposeAgreement {
            agreement: youth,
            terms: terms((f.teen, f.provider), FundingDomain::Jeugdwet, vec![goal]),
        },
    );
    run(
        &mut f.household,
        Command::AcceptAgreement { agreement: youth },
    );
    run(
        &mut f.household,
        Command::ProposeAgreement {
            agreement: school,
            terms: terms((f.teen, f.provider), FundingDomain::Participatiewet, vec![]),
        },
    );
    let mut old = terms((f.teen, f.provider), FundingDomain::Jeugdwet, vec![]);
    old.end = Some(date!(2025 - 12 - 31));
    run(
        &mut f.household,
        Command::ProposeAgreement {
            agreement: ended,
            terms: old,
        },
    );

    run(
        &mut f.household,
        Command::ReportNotDelivered {
            agreement: youth,
            on: date!(2026 - 02 - 02),
            description: "begeleider niet gekomen".into(),
        },
    );
    let events = run(
        &mut f.household,
        Command::RecordFundingTransition {
            member: f.teen,
            from: FundingDomain::Jeugdwet,
            to: FundingDomain::Wmo,
            on: date!(2026 - 03 - 14),
            reason: "18 jaar".into(),
        },
    );
    assert!(matches!(
        events[0],
        DomainEvent::FundingTransitionRecorded {
            from: FundingDomain::Jeugdwet,
            to: FundingDomain::Wmo,
            ..
        }
    ));
    assert_eq!(
        events.len(),
        2,
        "only the running Jeugdwet agreement carries over: {events:?}"
    );
    assert!(
        matches!(events[1], DomainEvent::AgreementCarriedOver { agreement, from: FundingDomain::Jeugdwet, to: FundingDomain::Wmo, .. } if agreement == youth)
    );
    let carried = &f.household.agreements[&youth];
    assert_eq!(carried.terms.funding, FundingDomain::Wmo);
    assert_eq!(
        carried.funding_on(date!(2026 - 03 - 13)),
        FundingDomain::Jeugdwet,
        "before the birthday"
    );
    assert_eq!(
        carried.funding_on(date!(2026 - 03 - 14)),
        FundingDomain::Wmo
    );
    assert!(
        carried.under_review,
        "an open not-delivered report stays open across the transition"
    );
    assert_eq!(carried.status, AgreementStatus::Accepted);
    assert_eq!(carried.terms.goals, vec![goal], "linked goals carry on");
    assert_eq!(
        f.household.agreements[&school].terms.funding,
        FundingDomain::Participatiewet
    );
    assert_eq!(
        f.household.agreements[&ended].terms.funding,
        FundingDomain::Jeugdwet
    );
    assert_eq!(f.household.goals[&goal].status, GoalStatus::Active);
    assert!(f.household.contact(f.coach).is_some(), "the same coach");
    assert!(matches!(
        decide(&f.household, Command::RecordFundingTransition { member: f.teen, from: FundingDomain::Wmo, to: FundingDomain::Wmo, on: date!(2026 - 03 - 14), reason: "x".into() }),
        Err(DomainError::InvalidArgument { field, .. }) if field == "to_funding_domain"
    ));
}

#[test]
fn the_logbook_takes_entries_by_supporters_only() {
    let mut f = scenario_two();
    let entry = EntryId::new();
    let command = |supporter| Command::AddLogbookEntry {
        entry,
        supporter,
        on: date!(2025 - 09 - 03),
        minutes: 90,
        mode: ContactMode::HomeVisit,
        tasks: vec![SupporterTask::ClarifyRequest, SupporterTask::ListeningEar],
        life_domains: vec![LifeDomain::FamilyLifeAndRelationships],
        summary: "kennismaking thuis".into(),
    };
    assert!(matches!(
        decide(&f.household, command(f.provider)),
        Err(DomainError::InvalidArgument { field, .. }) if field == "supporter_contact_id"
    ));
    run(&mut f.household, command(f.coach));
    assert!(matches!(
        decide(&f.household, command(f.coach)),
        Err(DomainError::AlreadyExists { .. })
    ));
}

#[test]
fn refused_commands_name_the_field() {
    let f = scenario_two();
    let long = "x".repeat(201);
    let goal = |owner, title: &str, domains: Vec<LifeDomain>| Command::SetGoal {
        goal: GoalId::new(),
        owner,
        title: title.into(),
        description: String::new(),
        life_domains: domains,
        plan: None,
    };
    let mut bad_period = terms((f.teen, f.provider), FundingDomain::Wmo, vec![]);
    bad_period.end = Some(date!(2025 - 01 - 01));
    let mut far_future = terms((f.teen, f.provider), FundingDomain::Wmo, vec![]);
    far_future.start = date!(2500 - 01 - 01);
    let mut no_parties = terms((f.teen, f.provider), FundingDomain::Wmo, vec![]);
    no_parties.parties.clear();
    let mut twice = terms((f.teen, f.provider), FundingDomain::Wmo, vec![]);
    twice.parties.push(Party::Member(f.teen));
    let mut ghost_goal = terms((f.teen, f.provider), FundingDomain::Wmo, vec![]);
    ghost_goal.goals = vec![GoalId::new()];
    let mut ghost_party = terms((f.teen, f.provider), FundingDomain::Wmo, vec![]);
    ghost_party.parties.push(Party::Contact(ContactId::new()));
    let cases: Vec<(Command, &str)> = vec![
        (
            Command::AddContact {
                contact: ContactId::new(),
                details: ContactDetails {
                    kind: ContactKind::Institution,
                    name: "CIZ".into(),
                    organisation: None,
                    supporter_kind: Some(SupporterKind::Ally),
                    institution_kind: Some(InstitutionKind::Ciz),
                },
            },
            "details.supporter_kind",
        ),
        (
            Command::AddContact {
                contact: ContactId::new(),
                details: ContactDetails {
                    kind: ContactKind::Supporter,
                    name: "Joost".into(),
                    organisation: None,
                    supporter_kind: Some(SupporterKind::Ally),
                    institution_kind: Some(InstitutionKind::Ciz),
                },
            },
            "details.institution_kind",
        ),
        (goal(f.teen, "", vec![LifeDomain::Housing]), "title"),
        (goal(f.teen, "   ", vec![LifeDomain::Housing]), "title"),
        (goal(f.teen, &long, vec![LifeDomain::Housing]), "title"),
        (
            goal(f.teen, "tab\there", vec![LifeDomain::Housing]),
            "title",
        ),
        (goal(f.teen, "ok", vec![]), "life_domains"),
        (
            goal(f.teen, "ok", vec![LifeDomain::Housing, LifeDomain::Housing]),
            "life_domains[1]",
        ),
        (
            goal(MemberId::new(), "ok", vec![LifeDomain::Housing]),
            "owner_member_id",
        ),
        (
            Command::ProposeAgreement {
                agreement: AgreementId::new(),
                terms: bad_period,
            },
            "terms.end_date",
        ),
        (
            Command::ProposeAgreement {
                agreement: AgreementId::new(),
                terms: far_future,
            },
            "terms.start_date",
        ),
        (
            Command::ProposeAgreement {
                agreement: AgreementId::new(),
                terms: no_parties,
            },
            "terms.parties",
        ),
        (
            Command::ProposeAgreement {
                agreement: AgreementId::new(),
                terms: twice,
            },
            "terms.parties[2]",
        ),
        (
            Command::ProposeAgreement {
                agreement: AgreementId::new(),
                terms: ghost_goal,
            },
            "terms.goal_ids[0]",
        ),
        (
            Command::ProposeAgreement {
                agreement: AgreementId::new(),
                terms: ghost_party,
            },
            "terms.parties[2]",
        ),
        (
            Command::AddMember {
                member: MemberId::new(),
                details: MemberDetails {
                    name: "Oma".into(),
                    role: MemberRole::Relative,
                    relation: None,
                    birth_date: None,
                },
            },
            "details.relation",
        ),
        (
            Command::AddMember {
                member: f.teen,
                details: MemberDetails {
                    name: "dup".into(),
                    role: MemberRole::Client,
                    relation: None,
                    birth_date: None,
                },
            },
            "member_id",
        ),
        (
            Command::AddContact {
                contact: ContactId::new(),
                details: ContactDetails {
                    kind: ContactKind::Supporter,
                    name: "x".into(),
                    organisation: None,
                    supporter_kind: None,
                    institution_kind: None,
                },
            },
            "details.supporter_kind",
        ),
        (
            Command::AddContact {
                contact: ContactId::new(),
                details: ContactDetails {
                    kind: ContactKind::Institution,
                    name: "CIZ".into(),
                    organisation: None,
                    supporter_kind: None,
                    institution_kind: None,
                },
            },
            "details.institution_kind",
        ),
        (
            Command::RecordIndication {
                indication: IndicationId::new(),
                member: f.teen,
                kind: IndicationKind::WlzIndication,
                care_profile: Some("VG6".into()),
                valid_from: date!(2026 - 01 - 01),
                valid_until: Some(date!(2025 - 01 - 01)),
            },
            "valid_until",
        ),
        (
            Command::RecordCheckIn {
                check_in: EntryId::new(),
                member: f.teen,
                respondent: f.teen,
                on: date!(2025 - 01 - 01),
                rating: 11,
                note: String::new(),
            },
            "rating",
        ),
        (
            Command::RecordCheckIn {
                check_in: EntryId::new(),
                member: f.teen,
                respondent: MemberId::new(),
                on: date!(2025 - 01 - 01),
                rating: 7,
                note: String::new(),
            },
            "respondent_member_id",
        ),
        (Command::SetCheckInThreshold { threshold: 0 }, "threshold"),
        (
            Command::ChangeSupportPhase {
                phase: SupportPhase::PilotLight,
                hours_per_week: None,
                on: date!(2025 - 01 - 01),
                contact_every_days: Some(0),
            },
            "contact_every_days",
        ),
        (
            Command::ChangeSupportPhase {
                phase: SupportPhase::Crisis,
                hours_per_week: Some(169),
                on: date!(2025 - 01 - 01),
                contact_every_days: None,
            },
            "hours_per_week",
        ),
        (
            Command::AddNote {
                note: EntryId::new(),
                about: Some(MemberId::new()),
                text: "x".into(),
                life_domains: vec![],
            },
            "about_member_id",
        ),
        (
            Command::AddNote {
                note: EntryId::new(),
                about: None,
                text: "x".repeat(4001),
                life_domains: vec![],
            },
            "text",
        ),
        (
            Command::AddLogbookEntry {
                entry: EntryId::new(),
                supporter: f.coach,
                on: date!(2025 - 01 - 01),
                minutes: 0,
                mode: ContactMode::Phone,
                tasks: vec![SupporterTask::Advocacy],
                life_domains: vec![],
                summary: "x".into(),
            },
            "minutes",
        ),
        (
            Command::AddLogbookEntry {
                entry: EntryId::new(),
                supporter: f.coach,
                on: date!(2025 - 01 - 01),
                minutes: 10,
                mode: ContactMode::Phone,
                tasks: vec![],
                life_domains: vec![],
                summary: "x".into(),
            },
            "tasks",
        ),
        (
            Command::RemoveMember {
                member: f.mother,
                reason: String::new(),
            },
            "reason",
        ),
        (
            Command::RegisterHousehold {
                name: "again".into(),
                registered_by: None,
            },
            "household_id",
        ),
    ];
    for (command, field) in cases {
        match decide(&f.household, command.clone()) {
            Err(DomainError::InvalidArgument { field: got, .. })
            | Err(DomainError::NotFound { field: got, .. })
            | Err(DomainError::AlreadyExists { field: got, .. }) => {
                assert_eq!(got, field, "{command:?}")
            }
            Err(DomainError::FailedPrecondition(_)) => assert_eq!(field, "", "{command:?}"),
            Ok(events) => panic!("{command:?} was accepted: {events:?}"),
        }
    }
    assert!(matches!(
        decide(
            &Household::default(),
            Command::AddNote {
                note: EntryId::new(),
                about: None,
                text: "x".into(),
                life_domains: vec![]
            }
        ),
        Err(DomainError::NotFound {
            what: "household",
            ..
        })
    ));
}

#[test]
fn every_event_survives_its_payload_and_names_its_type() {
    let mut f = scenario_two();
    let goal = GoalId::new();
    let mut events: Vec<DomainEvent> = Vec::new();
    events.extend(run(
        &mut f.household,
        Command::SetGoal {
            goal,
            owner: f.teen,
            title: "t".into(),
            description: "d".into(),
            life_domains: vec![LifeDomain::Meaning],
            plan: None,
        },
    ));
    let agreement = AgreementId::new();
    events.extend(run(
        &mut f.household,
        Command::ProposeAgreement {
            agreement,
            terms: terms((f.teen, f.provider), FundingDomain::Wlz, vec![goal]),
        },
    ));
    events.extend(run(
        &mut f.household,
        Command::RecordIndication {
            indication: IndicationId::new(),
            member: f.teen,
            kind: IndicationKind::WlzIndication,
            care_profile: Some("VG6".into()),
            valid_from: date!(2026 - 01 - 01),
            valid_until: None,
        },
    ));
    events.extend(run(
        &mut f.household,
        Command::ChangeSupportPhase {
            phase: SupportPhase::PilotLight,
            hours_per_week: Some(1),
            on: date!(2026 - 02 - 01),
            contact_every_days: Some(30),
        },
    ));
    events.extend(run(
        &mut f.household,
        Command::RecordCheckIn {
            check_in: EntryId::new(),
            member: f.teen,
            respondent: f.mother,
            on: date!(2026 - 02 - 02),
            rating: 4,
            note: "slecht geslapen".into(),
        },
    ));
    events.extend(run(
        &mut f.household,
        Command::SetCheckInThreshold { threshold: 6 },
    ));
    for event in events {
        let payload = event.to_payload(None);
        let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(json["type"], event.event_type());
        let stored = DomainEvent::from_payload(&payload).unwrap();
        assert_eq!((stored.event, stored.happened_on), (event.clone(), None));
        let backfilled =
            DomainEvent::from_payload(&event.to_payload(Some(date!(2024 - 05 - 01)))).unwrap();
        assert_eq!(
            (backfilled.event, backfilled.happened_on),
            (event, Some(date!(2024 - 05 - 01)))
        );
    }
    let json: serde_json::Value = serde_json::from_slice(
        &DomainEvent::AgreementProposed {
            agreement,
            terms: terms((f.teen, f.provider), FundingDomain::Wlz, vec![]),
        }
        .to_payload(None),
    )
    .unwrap();
    assert_eq!(json["terms"]["start"], "2025-09-01", "dates are ISO 8601");
    assert_eq!(json["terms"]["funding"], "wlz");
}

#[test]
fn an_agreement_is_upcoming_active_under_review_and_ended_as_the_days_pass() {
    use naast_domain::state::AgreementPhase as Phase;
    let mut f = scenario_two();
    let agreement = AgreementId::new();
    let mut t = terms((f.teen, f.provider), FundingDomain::Wmo, vec![]);
    t.end = Some(date!(2026 - 08 - 31));
    t.review_on = Some(date!(2026 - 03 - 01));
    run(
        &mut f.household,
        Command::ProposeAgreement {
            agreement,
            terms: t,
        },
    );
    let phase = |h: &Household, day| h.agreements[&agreement].phase(day);
    assert_eq!(phase(&f.household, date!(2025 - 10 - 01)), Phase::Proposed);
    run(&mut f.household, Command::AcceptAgreement { agreement });
    assert_eq!(phase(&f.household, date!(2025 - 08 - 01)), Phase::Upcoming);
    assert_eq!(phase(&f.household, date!(2025 - 10 - 01)), Phase::Active);
    assert_eq!(
        phase(&f.household, date!(2026 - 03 - 01)),
        Phase::UnderReview
    );
    assert_eq!(phase(&f.household, date!(2026 - 09 - 01)), Phase::Ended);
    run(
        &mut f.household,
        Command::ReportNotDelivered {
            agreement,
            on: date!(2025 - 11 - 01),
            description: "uitgevallen".into(),
        },
    );
    assert_eq!(
        phase(&f.household, date!(2025 - 11 - 02)),
        Phase::UnderReview
    );
}

#[test]
fn an_erasure_names_the_platforms_to_tell_and_no_one_else() {
    use naast_domain::event::{GrantTerms, Grantee, Identity, PlatformClient};
    use naast_domain::ids::GrantId;
    let naast_domain::testing::ScenarioTwo { mut household, .. } = scenario_two();
    let terms = GrantTerms {
        scopes: vec![AccessScope::ReadTimeline],
        life_domains: Vec::new(),
        funding_domains: Vec::new(),
        until: None,
    };
    let platform = |client_id: &str| Grantee::Platform {
        issuer: "https://login.example.nl".into(),
        client_id: client_id.into(),
    };
    let revoked = GrantId::new();
    for (grant, grantee) in [
        (GrantId::new(), platform("jouw-omgeving")),
        (GrantId::new(), platform("jouw-omgeving")),
        (revoked, platform("ingetrokken")),
        (
            GrantId::new(),
            Grantee::Person {
                identity: Identity {
                    issuer: "https://login.example.nl".into(),
                    subject: "opa".into(),
                },
            },
        ),
    ] {
        run(
            &mut household,
            Command::GrantAccess {
                grant,
                grantee,
                terms: terms.clone(),
                request: None,
            },
        );
    }
    run(
        &mut household,
        Command::RevokeAccess {
            grant: revoked,
            reason: "gestopt".into(),
        },
    );
    let events = run(&mut household, Command::EraseHousehold);
    assert_eq!(
        events,
        [DomainEvent::HouseholdErased {
            platforms: vec![PlatformClient {
                issuer: "https://login.example.nl".into(),
                client_id: "jouw-omgeving".into(),
            }]
        }]
    );
    // The tombstone stays readable, and an older one without platforms still reads.
    let old: DomainEvent = serde_json::from_str(r#"{"type":"HouseholdErased"}"#).unwrap();
    assert_eq!(
        old,
        DomainEvent::HouseholdErased {
            platforms: Vec::new()
        }
    );
}

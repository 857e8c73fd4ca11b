//! Properties of deciding commands, over random command sequences with random texts, dates and
//! references: deciding never panics; a refused command changes nothing; the state folded from
//! all events equals the state built command by command; every event survives its payload.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::ids::{AgreementId, ContactId, EntryId, GoalId, IndicationId, MemberId, PlanId};
use naast_domain::vocab::*;
use naast_domain::{
    AgreementTerms, Command, ContactDetails, DomainEvent, Household, MemberDetails, Party, decide,
};
use proptest::prelude::*;
use time::Date;

/// A few ids of each kind, so commands refer to each other (and sometimes to nothing).
struct Ids {
    members: Vec<MemberId>,
    contacts: Vec<ContactId>,
    goals: Vec<GoalId>,
    agreements: Vec<AgreementId>,
    plans: Vec<PlanId>,
}

fn ids() -> Ids {
    Ids {
        members: (0..3).map(|_| MemberId::new()).collect(),
        contacts: (0..3).map(|_| ContactId::new()).collect(),
        goals: (0..3).map(|_| GoalId::new()).collect(),
        agreements: (0..3).map(|_| AgreementId::new()).collect(),
        plans: (0..2).map(|_| PlanId::new()).collect(),
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z ]{1,20}",
        1 => Just(String::new()),
        1 => Just("x".repeat(4_001)),
        1 => "[\\x00-\\x1f]{1,3}",
        1 => "\\PC{0,30}",
    ]
}

fn day() -> impl Strategy<Value = Date> {
    prop_oneof![
        8 => (2020i32..2028, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| Date::from_calendar_date(y, m.try_into().unwrap(), d).unwrap()),
        1 => Just(Date::MIN),
        1 => Just(Date::MAX),
    ]
}

fn pick<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> proptest::sample::Select<T> {
    proptest::sample::select(items)
}

fn terms(ids: &Ids) -> impl Strategy<Value = AgreementTerms> + use<> {
    let party = prop_oneof![
        pick(ids.members.clone()).prop_map(Party::Member),
        pick(ids.contacts.clone()).prop_map(Party::Contact),
    ];
    (
        text(),
        proptest::collection::vec(party, 0..3),
        pick(FundingDomain::ALL.to_vec()),
        any::<bool>(),
        day(),
        proptest::option::of(day()),
        proptest::collection::vec(pick(ids.goals.clone()), 0..2),
        proptest::option::of(pick(ids.plans.clone())),
    )
        .prop_map(
            |(title, parties, funding, pgb, start, end, goals, plan)| AgreementTerms {
                title,
                description: String::new(),
                parties,
                responsible: None,
                funding,
                pgb,
                start,
                end,
                frequency: None,
                goals,
                review_on: None,
                plan,
            },
        )
}

fn command(ids: &Ids) -> impl Strategy<Value = Command> + use<> {
    let m = pick(ids.members.clone());
    let c = pick(ids.contacts.clone());
    let g = pick(ids.goals.clone());
    let a = pick(ids.agreements.clone());
    let p = pick(ids.plans.clone());
    let domains = proptest::collection::vec(pick(LifeDomain::ALL.to_vec()), 0..3);
    let funding = pick(FundingDomain::ALL.to_vec());
    prop_oneof![
        text().prop_map(|name| Command::RegisterHousehold {
            name,
            registered_by: None,
        }),
        (
            m.clone(),
            text(),
            pick(MemberRole::ALL.to_vec()),
            proptest::option::of(pick(Relation::ALL.to_vec())),
            proptest::option::of(day())
        )
            .prop_map(
                |(member, name, role, relation, birth_date)| Command::AddMember {
                    member,
                    details: MemberDetails {
                        name,
                        role,
                        relation,
                        birth_date
                    }
                }
            ),
        (m.clone(), text()).prop_map(|(member, reason)| Command::RemoveMember { member, reason }),
        (
            c.clone(),
            text(),
            pick(ContactKind::ALL.to_vec()),
            proptest::option::of(pick(SupporterKind::ALL.to_vec()))
        )
            .prop_map(
                |(contact, name, kind, supporter_kind)| Command::AddContact {
                    contact,
                    details: ContactDetails {
                        kind,
                        name,
                        organisation: None,
                        supporter_kind,
                        institution_kind: None
                    }
                }
            ),
        (p.clone(), pick(PlanKind::ALL.to_vec()), text()).prop_map(|(plan, kind, title)| {
            Command::DraftPlan {
                plan,
                kind,
                title,
                summary: String::new(),
            }
        }),
        (p.clone(), day()).prop_map(|(plan, on)| Command::ActivatePlan { plan, on }),
        (p.clone(), day(), text()).prop_map(|(plan, on, reason)| Command::ClosePlan {
            plan,
            on,
            reason
        }),
        (
            g.clone(),
            m.clone(),
            text(),
            domains.clone(),
            proptest::option::of(p.clone())
        )
            .prop_map(
                |(goal, owner, title, life_domains, plan)| Command::SetGoal {
                    goal,
                    owner,
                    title,
                    description: String::new(),
                    life_domains,
                    plan
                }
            ),
        (g.clone(), day(), text()).prop_map(|(goal, on, note)| Command::NoteGoalProgress {
            goal,
            on,
            note
        }),
        (g.clone(), day()).prop_map(|(goal, on)| Command::AchieveGoal {
            goal,
            on,
            note: String::new()
        }),
        (g.clone(), day(), text()).prop_map(|(goal, on, reason)| Command::AbandonGoal {
            goal,
            on,
            reason
        }),
        (g.clone(), text()).prop_map(|(goal, reason)| Command::ReopenGoal { goal, reason }),
        (a.clone(), terms(ids))
            .prop_map(|(agreement, terms)| Command::ProposeAgreement { agreement, terms }),
        a.clone()
            .prop_map(|agreement| Command::AcceptAgreement { agreement }),
        (a.clone(), terms(ids), text()).prop_map(|(agreement, terms, reason)| {
            Command::AmendAgreement {
                agreement,
                terms,
                reason,
            }
        }),
        (a.clone(), day(), text()).prop_map(|(agreement, on, reason)| Command::EndAgreement {
            agreement,
            on,
            reason
        }),
        (a.clone(), day(), text()).prop_map(|(agreement, on, description)| {
            Command::ReportNotDelivered {
                agreement,
                on,
                description,
            }
        }),
        (
            m.clone(),
            pick(IndicationKind::ALL.to_vec()),
            day(),
            proptest::option::of(day())
        )
            .prop_map(|(member, kind, valid_from, valid_until)| {
                Command::RecordIndication {
                    indication: IndicationId::new(),
                    member,
                    kind,
                    care_profile: None,
                    valid_from,
                    valid_until,
                }
            }),
        (m.clone(), funding.clone(), funding, day(), text()).prop_map(
            |(member, from, to, on, reason)| Command::RecordFundingTransition {
                member,
                from,
                to,
                on,
                reason
            }
        ),
        (
            c,
            day(),
            0u32..2000,
            proptest::collection::vec(pick(SupporterTask::ALL.to_vec()), 0..3),
            text()
        )
            .prop_map(|(supporter, on, minutes, tasks, summary)| {
                Command::AddLogbookEntry {
                    entry: EntryId::new(),
                    supporter,
                    on,
                    minutes,
                    mode: ContactMode::Phone,
                    tasks,
                    life_domains: vec![],
                    summary,
                }
            }),
        (proptest::option::of(m), text(), domains).prop_map(|(about, text, life_domains)| {
            Command::AddNote {
                note: EntryId::new(),
                about,
                text,
                life_domains,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn deciding_random_commands_keeps_state_and_events_in_step(
        commands in proptest::collection::vec(command(&ids()), 1..60)
    ) {
        let mut state = Household::default();
        let mut all_events: Vec<DomainEvent> = Vec::new();
        for command in commands {
            let before = state.clone();
            match decide(&state, command) {
                Ok(events) => {
                    prop_assert!(!events.is_empty());
                    for event in &events {
                        let stored = DomainEvent::from_payload(&event.to_payload(None)).unwrap();
                        prop_assert_eq!(&stored.event, event);
                        state.apply(event);
                    }
                    all_events.extend(events);
                }
                Err(_) => prop_assert_eq!(&state, &before, "a refused command changed nothing"),
            }
        }
        prop_assert_eq!(Household::from_events(&all_events), state);
    }
}

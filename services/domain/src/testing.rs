//! For tests (feature `testing`): random commands for property tests (a few ids of each kind so
//! that commands refer to each other, and sometimes to nothing, with random texts and dates,
//! including empty, over-long and control-character texts and the extreme dates); and scenario
//! 2's family built by real commands.

#![allow(clippy::unwrap_used)] // dates and months built from ranges that are always valid
#![allow(clippy::panic)] // `run` fails the test that gave a refused command

use crate::ids::{AgreementId, ContactId, EntryId, GoalId, IndicationId, MemberId, PlanId};
use crate::vocab::*;
use crate::{
    AgreementTerms, Command, ContactDetails, DomainEvent, Household, MemberDetails, Party,
};
use proptest::prelude::*;
use time::Date;
use time::macros::date;

/// Decides and applies, as the service does; panics on refusal.
pub fn run(household: &mut Household, command: Command) -> Vec<DomainEvent> {
    let events = crate::decide(household, command.clone())
        .unwrap_or_else(|e| panic!("{command:?} refused: {e}"));
    for event in &events {
        household.apply(event);
    }
    events
}

/// Scenario 2's family, as its commands leave it.
pub struct ScenarioTwo {
    /// The household.
    pub household: Household,
    /// Sam, 16 (born 14 March 2008), with autism: the client.
    pub teen: MemberId,
    /// His mother, legal representative.
    pub mother: MemberId,
    /// The life-course coach.
    pub coach: ContactId,
    /// A youth-care provider.
    pub provider: ContactId,
}

/// Scenario 2's family: a 16-year-old with autism, mother, a life-course coach, a provider.
pub fn scenario_two() -> ScenarioTwo {
    let mut household = Household::default();
    run(
        &mut household,
        Command::RegisterHousehold {
            name: "Familie Bakker".into(),
            registered_by: None,
        },
    );
    let (teen, mother) = (MemberId::new(), MemberId::new());
    run(
        &mut household,
        Command::AddMember {
            member: teen,
            details: MemberDetails {
                name: "Sam".into(),
                role: MemberRole::Client,
                relation: None,
                birth_date: Some(date!(2008 - 03 - 14)),
            },
        },
    );
    run(
        &mut household,
        Command::AddMember {
            member: mother,
            details: MemberDetails {
                name: "Ingrid".into(),
                role: MemberRole::LegalRepresentative,
                relation: Some(Relation::Parent),
                birth_date: None,
            },
        },
    );
    let (coach, provider) = (ContactId::new(), ContactId::new());
    run(
        &mut household,
        Command::AddContact {
            contact: coach,
            details: ContactDetails {
                kind: ContactKind::Supporter,
                name: "Mirjam".into(),
                organisation: Some("Levensloop".into()),
                supporter_kind: Some(SupporterKind::LifeCourseCoach),
                institution_kind: None,
            },
        },
    );
    run(
        &mut household,
        Command::AddContact {
            contact: provider,
            details: ContactDetails {
                kind: ContactKind::CareProvider,
                name: "Jeugdzorg Oost".into(),
                organisation: None,
                supporter_kind: None,
                institution_kind: None,
            },
        },
    );
    ScenarioTwo {
        household,
        teen,
        mother,
        coach,
        provider,
    }
}

/// A few ids of each kind, so commands refer to each other (and sometimes to nothing).
#[derive(Clone, Debug)]
pub struct Ids {
    /// Members.
    pub members: Vec<MemberId>,
    /// Network contacts.
    pub contacts: Vec<ContactId>,
    /// Goals.
    pub goals: Vec<GoalId>,
    /// Agreements.
    pub agreements: Vec<AgreementId>,
    /// Plans.
    pub plans: Vec<PlanId>,
}

/// A fresh set of ids.
pub fn ids() -> Ids {
    Ids {
        members: (0..3).map(|_| MemberId::new()).collect(),
        contacts: (0..3).map(|_| ContactId::new()).collect(),
        goals: (0..3).map(|_| GoalId::new()).collect(),
        agreements: (0..3).map(|_| AgreementId::new()).collect(),
        plans: (0..2).map(|_| PlanId::new()).collect(),
    }
}

/// A text: mostly plain, sometimes empty, over-long or control characters.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z ]{1,20}",
        1 => Just(String::new()),
        1 => Just("x".repeat(4_001)),
        1 => "[\\x00-\\x1f]{1,3}",
        1 => "\\PC{0,30}",
    ]
}

/// A day: mostly in the 2020s, sometimes the extremes.
pub fn day() -> impl Strategy<Value = Date> {
    prop_oneof![
        8 => (2020i32..2028, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| Date::from_calendar_date(y, m.try_into().unwrap(), d).unwrap()),
        1 => Just(Date::MIN),
        1 => Just(Date::MAX),
    ]
}

/// One of `items`.
pub fn pick<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> proptest::sample::Select<T> {
    proptest::sample::select(items)
}

/// An agreement's terms among `ids`.
pub fn terms(ids: &Ids) -> impl Strategy<Value = AgreementTerms> + use<> {
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

/// A command among `ids`.
pub fn command(ids: &Ids) -> impl Strategy<Value = Command> + use<> {
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
        (proptest::option::of(m.clone()), text(), domains).prop_map(
            |(about, text, life_domains)| {
                Command::AddNote {
                    note: EntryId::new(),
                    about,
                    text,
                    life_domains,
                }
            }
        ),
        (m.clone(), m.clone(), day(), 0u8..=12, text()).prop_map(
            |(member, respondent, on, rating, note)| Command::RecordCheckIn {
                check_in: EntryId::new(),
                member,
                respondent,
                on,
                rating,
                note,
            }
        ),
        (0u8..=12).prop_map(|threshold| Command::SetCheckInThreshold { threshold }),
        proptest::option::of(pick(FamilyType::ALL.to_vec()))
            .prop_map(|family_type| Command::SetFamilyType { family_type }),
        proptest::bool::ANY.prop_map(|objects| Command::ObjectToEvaluation { objects }),
        (
            m.clone(),
            m,
            pick(crate::measure::seed()),
            proptest::option::of(pick(MeasurementMoment::ALL.to_vec())),
            day(),
            proptest::collection::vec(
                (
                    pick(vec![
                        "leven",
                        "structuur",
                        "tevredenheid-wonen",
                        "situatie",
                        "x"
                    ]),
                    0u8..=11,
                    proptest::option::of(proptest::bool::ANY),
                ),
                0..4,
            ),
        )
            .prop_map(|(member, respondent, instrument, moment, on, answers)| {
                Command::RecordMeasurement {
                    measurement: EntryId::new(),
                    member,
                    respondent: Party::Member(respondent),
                    instrument,
                    moment,
                    on,
                    answers: answers
                        .into_iter()
                        .map(|(item, value, wants_change)| crate::measure::Answer {
                            item: item.into(),
                            value,
                            wants_change,
                        })
                        .collect(),
                }
            }),
    ]
}

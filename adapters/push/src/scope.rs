//! What of a household a batch of its events may have changed, as a platform sees it, so that a
//! pass renders only those resources and not the whole household again.
//!
//! The rules follow what each resource is made of (see `naast-fhir`) and what decides whether
//! a platform may see it ([`naast_domain::access`]):
//! - a `Goal` shows the goal and its owner's name; it is visible by its life domains, and by
//!   the funding and parties of the agreements that serve it;
//! - a plan's `CarePlan` lists the goals that belong to it, with their titles;
//! - an agreement's `CarePlan` and its `Task` show the agreement (its goals by reference, its
//!   parties' names); they are visible by the life domains of its goals, its funding and its
//!   parties.
//!
//! So the events of a goal change the goal, every plan (a goal may have moved between plans)
//! and the agreements serving it; the events of an agreement whose goals stay the same change
//! the agreement, its task, its goals (their visibility) and every plan (which refer to those
//! goals, now visible or not). Notes and logbook entries change nothing pushed. Any other
//! event, and any event that cannot be read, is [`Scope::All`]: everything is rendered again
//! and compared with what the platform holds, as on a full synchronisation. The property test
//! below checks these rules against full renderings over random histories.

use crate::render::Key;
use naast_domain::Household;
use naast_domain::event::DomainEvent;
use naast_domain::ids::{AgreementId, GoalId};
use std::collections::{BTreeSet, HashSet};

/// What of a household may have changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Anything.
    All,
    /// Only what these goals and agreements make (and the plans, which list goals).
    Some {
        /// Goals whose events were seen.
        goals: BTreeSet<GoalId>,
        /// Agreements whose events were seen.
        agreements: BTreeSet<AgreementId>,
    },
}

impl Scope {
    /// Nothing changed (yet).
    pub fn none() -> Self {
        Self::Some {
            goals: BTreeSet::new(),
            agreements: BTreeSet::new(),
        }
    }

    /// What an event of type `event_type` may have changed, when its type alone says so
    /// (without opening it); `None` for the events of goals and agreements, whose ids are in
    /// them ([`Scope::of`]).
    pub fn of_type(event_type: &str) -> Option<Self> {
        const NAMED: [&str; 11] = [
            "GoalSet",
            "GoalUpdated",
            "GoalProgressNoted",
            "GoalAchieved",
            "GoalAbandoned",
            "GoalReopened",
            "AgreementProposed",
            "AgreementAccepted",
            "AgreementRejected",
            "AgreementEnded",
            "AgreementNotDelivered",
        ];
        match event_type {
            t if NAMED.contains(&t) => None,
            // Notes, logbook entries and check-ins change no plan, goal or agreement.
            "NoteAdded" | "LogbookEntryAdded" | "CheckInRecorded" | "CheckInThresholdSet" => {
                Some(Self::none())
            }
            _ => Some(Self::All),
        }
    }

    /// What `event` may have changed.
    pub fn of(event: &DomainEvent) -> Self {
        use DomainEvent as E;
        let mut scope = Self::none();
        match event {
            E::GoalSet { goal, .. }
            | E::GoalUpdated { goal, .. }
            | E::GoalProgressNoted { goal, .. }
            | E::GoalAchieved { goal, .. }
            | E::GoalAbandoned { goal, .. }
            | E::GoalReopened { goal, .. } => {
                if let Self::Some { goals, .. } = &mut scope {
                    goals.insert(*goal);
                }
            }
            // Not `AgreementAmended` (its goals may change, and those it served before are
            // not named) nor `AgreementCarriedOver` (its funding moves).
            E::AgreementProposed { agreement, .. }
            | E::AgreementAccepted { agreement }
            | E::AgreementRejected { agreement, .. }
            | E::AgreementEnded { agreement, .. }
            | E::AgreementNotDelivered { agreement, .. } => {
                if let Self::Some { agreements, .. } = &mut scope {
                    agreements.insert(*agreement);
                }
            }
            E::NoteAdded { .. }
            | E::LogbookEntryAdded { .. }
            | E::CheckInRecorded { .. }
            | E::CheckInThresholdSet { .. } => {}
            _ => scope = Self::All,
        }
        scope
    }

    /// This and `other` together.
    pub fn merge(&mut self, other: Self) {
        match (&mut *self, other) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (
                Self::Some { goals, agreements },
                Self::Some {
                    goals: more_goals,
                    agreements: more_agreements,
                },
            ) => {
                goals.extend(more_goals);
                agreements.extend(more_agreements);
            }
        }
    }

    /// The resources this may have changed in `state` (the household as it stands after the
    /// events); `None`: any of them.
    pub fn keys(&self, state: &Household) -> Option<HashSet<Key>> {
        let Self::Some { goals, agreements } = self else {
            return None;
        };
        let mut keys = HashSet::new();
        if goals.is_empty() && agreements.is_empty() {
            return Some(keys);
        }
        let mut add = |resource_type: &str, id: uuid::Uuid| {
            keys.insert((resource_type.to_owned(), id));
        };
        for goal in goals {
            add("Goal", goal.0);
            for (id, agreement) in &state.agreements {
                if agreement.terms.goals.contains(goal) {
                    add("CarePlan", id.0);
                    add("Task", id.0);
                }
            }
        }
        for id in agreements {
            add("CarePlan", id.0);
            add("Task", id.0);
            if let Some(agreement) = state.agreements.get(id) {
                for goal in &agreement.terms.goals {
                    add("Goal", goal.0);
                }
            }
        }
        for plan in state.plans.keys() {
            add("CarePlan", plan.0);
        }
        Some(keys)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

    use super::*;
    use crate::endpoint::{Auth, Endpoint, EndpointKind, Platform};
    use crate::render;
    use naast_domain::event::{GrantTerms, Grantee};
    use naast_domain::ids::{GrantId, HouseholdId};
    use naast_domain::testing::{Ids, command, ids};
    use naast_domain::vocab::{
        AccessScope, ContactKind, FundingDomain, LifeDomain, MemberRole, PlanKind, Relation,
    };
    use naast_domain::{AgreementTerms, Command, ContactDetails, MemberDetails, Party, decide};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use time::macros::date;

    const ISSUER: &str = "https://pgo.example";
    const CLIENT: &str = "pgo";

    fn endpoint() -> Endpoint {
        Endpoint {
            name: "pgo".into(),
            kind: EndpointKind::Fhir,
            url: "http://127.0.0.1:1/fhir".into(),
            platform: Platform {
                issuer: ISSUER.into(),
                client_id: CLIENT.into(),
            },
            auth: Auth::None,
            secret_file: None,
            resource_types: Vec::new(),
            profiles: std::collections::BTreeMap::new(),
            timeout_seconds: 1,
            max_backoff_seconds: 1,
            concurrency: 1,
        }
    }

    /// Every resource the platform should hold, each with its body.
    fn rendered(
        state: &Household,
        household: HouseholdId,
        today: time::Date,
    ) -> HashMap<Key, String> {
        render::wanted(&endpoint(), household, state, today, None)
            .unwrap()
            .into_iter()
            .map(|w| ((w.resource_type.to_owned(), w.id), w.json.to_string()))
            .collect()
    }

    fn member(name: &str, role: MemberRole) -> MemberDetails {
        let relation = (role != MemberRole::Client).then_some(Relation::Parent);
        MemberDetails {
            name: name.into(),
            role,
            relation,
            birth_date: None,
        }
    }

    fn contact(name: &str) -> ContactDetails {
        ContactDetails {
            kind: ContactKind::CareProvider,
            name: name.into(),
            organisation: None,
            supporter_kind: None,
            institution_kind: None,
        }
    }

    /// Terms an agreement may have (mostly accepted when proposed): its parties, funding,
    /// period, goals and plan at random among `ids`.
    fn valid_terms(ids: &Ids) -> impl Strategy<Value = AgreementTerms> + use<> {
        let parties = vec![
            Party::Member(ids.members[0]),
            Party::Member(ids.members[1]),
            Party::Contact(ids.contacts[0]),
        ];
        (
            proptest::sample::subsequence(parties, 1..3),
            proptest::sample::select(FundingDomain::ALL.to_vec()),
            prop_oneof![
                Just(None),
                Just(Some(date!(2026 - 03 - 01))),
                Just(Some(date!(2026 - 12 - 31))),
            ],
            proptest::sample::subsequence(ids.goals.clone(), 0..3),
            proptest::option::of(Just(ids.plans[0])),
        )
            .prop_map(|(parties, funding, end, goals, plan)| AgreementTerms {
                title: "Afspraak".into(),
                description: String::new(),
                parties,
                responsible: None,
                funding,
                pgb: false,
                start: date!(2026 - 01 - 01),
                end,
                frequency: None,
                goals,
                review_on: None,
                plan,
            })
    }

    /// A command about the goals and agreements among `ids`, mostly accepted, or any command.
    fn push_command(ids: &Ids) -> impl Strategy<Value = Command> + use<> {
        let goal = proptest::sample::select(ids.goals.clone());
        let agreement = proptest::sample::select(ids.agreements.clone());
        let domains = proptest::sample::subsequence(LifeDomain::ALL.to_vec(), 1..3);
        let plan = proptest::option::of(Just(ids.plans[0]));
        let on = Just(date!(2026 - 02 - 01));
        let reason = Just("Omdat".to_owned());
        prop_oneof![
            (goal.clone(), domains, plan).prop_map(|(goal, life_domains, plan)| {
                Command::UpdateGoal {
                    goal,
                    title: "Ander doel".into(),
                    description: String::new(),
                    life_domains,
                    plan,
                }
            }),
            (goal.clone(), on).prop_map(|(goal, on)| Command::AchieveGoal {
                goal,
                on,
                note: String::new()
            }),
            (goal.clone(), on, reason.clone())
                .prop_map(|(goal, on, reason)| { Command::AbandonGoal { goal, on, reason } }),
            (goal, reason.clone()).prop_map(|(goal, reason)| Command::ReopenGoal { goal, reason }),
            (agreement.clone(), valid_terms(ids))
                .prop_map(|(agreement, terms)| Command::ProposeAgreement { agreement, terms }),
            agreement
                .clone()
                .prop_map(|agreement| Command::AcceptAgreement { agreement }),
            (agreement.clone(), reason.clone())
                .prop_map(|(agreement, reason)| Command::RejectAgreement { agreement, reason }),
            (agreement.clone(), valid_terms(ids), reason.clone()).prop_map(
                |(agreement, terms, reason)| Command::AmendAgreement {
                    agreement,
                    terms,
                    reason
                }
            ),
            (agreement.clone(), on, reason).prop_map(|(agreement, on, reason)| {
                Command::EndAgreement {
                    agreement,
                    on,
                    reason,
                }
            }),
            (agreement, on).prop_map(|(agreement, on)| Command::ReportNotDelivered {
                agreement,
                on,
                description: "Niet gekomen".into()
            }),
            command(ids),
            command(ids),
        ]
    }

    /// The platform's grant: everything, or only some life domains and funding.
    fn grant() -> impl Strategy<Value = (Vec<LifeDomain>, Vec<FundingDomain>)> {
        prop_oneof![
            Just((Vec::new(), Vec::new())),
            (
                proptest::sample::subsequence(LifeDomain::ALL.to_vec(), 1..3),
                proptest::sample::subsequence(FundingDomain::ALL.to_vec(), 0..2),
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Whatever an event changes of what a platform should hold (a resource written,
        /// changed or no longer visible) is within the event's scope: over random histories of
        /// a household that starts with members, contacts, a plan, goals and an agreement.
        #[test]
        fn an_events_scope_covers_every_resource_it_changes(
            (life_domains, funding) in grant(),
            (ids, domains, commands) in Just(ids()).prop_flat_map(|ids| {
                let domains = proptest::collection::vec(
                    proptest::sample::subsequence(LifeDomain::ALL.to_vec(), 1..3),
                    3,
                );
                let commands = proptest::collection::vec(push_command(&ids), 1..40);
                (Just(ids), domains, commands)
            }),
        ) {
            let household = HouseholdId::new();
            let today = date!(2026 - 06 - 15);
            let mut state = Household::default();
            let register = Command::RegisterHousehold { name: "Gezin".into(), registered_by: None };
            for event in decide(&state, register).unwrap() {
                state.apply(&event);
            }
            let grant = Command::GrantAccess {
                grant: GrantId::new(),
                grantee: Grantee::Platform { issuer: ISSUER.into(), client_id: CLIENT.into() },
                terms: GrantTerms {
                    scopes: vec![AccessScope::ReadTimeline],
                    life_domains,
                    funding_domains: funding,
                    until: None,
                },
                request: None,
            };
            for event in decide(&state, grant).unwrap() {
                state.apply(&event);
            }
            let mut prelude = vec![
                Command::AddMember { member: ids.members[0], details: member("Sam", MemberRole::Client) },
                Command::AddMember { member: ids.members[1], details: member("Ria", MemberRole::Relative) },
                Command::AddContact { contact: ids.contacts[0], details: contact("Wijkteam") },
                Command::DraftPlan {
                    plan: ids.plans[0],
                    kind: PlanKind::FamilyPlan,
                    title: "Gezinsplan".into(),
                    summary: String::new(),
                },
            ];
            for (goal, life_domains) in ids.goals.iter().zip(domains) {
                prelude.push(Command::SetGoal {
                    goal: *goal,
                    owner: ids.members[0],
                    title: "Doel".into(),
                    description: String::new(),
                    life_domains,
                    plan: Some(ids.plans[0]),
                });
            }
            for command in prelude {
                for event in decide(&state, command).unwrap() {
                    state.apply(&event);
                }
            }
            for command in commands {
                let Ok(events) = decide(&state, command) else { continue };
                for event in events {
                    let before = rendered(&state, household, today);
                    state.apply(&event);
                    let after = rendered(&state, household, today);
                    // The type alone decides it, or its ids are needed, and then it is narrow.
                    match Scope::of_type(event.event_type()) {
                        Some(scope) => prop_assert_eq!(&scope, &Scope::of(&event)),
                        None => prop_assert_ne!(Scope::of(&event), Scope::All),
                    }
                    let Some(keys) = Scope::of(&event).keys(&state) else { continue };
                    for (key, body) in &after {
                        prop_assert!(
                            keys.contains(key) || before.get(key) == Some(body),
                            "{event:?} changed {key:?} outside its scope"
                        );
                    }
                    for key in before.keys() {
                        prop_assert!(
                            keys.contains(key) || after.contains_key(key),
                            "{event:?} withdrew {key:?} outside its scope"
                        );
                    }
                }
            }
        }
    }
}

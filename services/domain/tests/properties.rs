//! Properties of deciding commands, over random command sequences with random texts, dates and
//! references: deciding never panics; a refused command changes nothing; the state folded from
//! all events equals the state built command by command; every event survives its payload; an
//! event the report says does not concern it leaves a household's report row as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::testing::{command, ids};
use naast_domain::{DomainEvent, Household, decide};
use proptest::prelude::*;

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

    #[test]
    fn an_event_the_report_ignores_leaves_the_report_row_as_it_was(
        (ids, commands) in Just(ids()).prop_flat_map(|ids| {
            let commands = proptest::collection::vec(command(&ids), 1..60);
            (Just(ids), commands)
        })
    ) {
        use naast_domain::report::{Dates, Row, concerns};
        let day = time::macros::date!(2026 - 12 - 02);
        let (mut state, mut dates) = (Household::default(), Dates::default());
        // A household with its members and goals first, so that random commands find them.
        for event in setup(&ids) {
            state.apply(&event);
            dates.apply(&event, day);
        }
        for command in commands {
            let Ok(events) = decide(&state, command) else { continue };
            for event in &events {
                let before = Row::of(&state, &dates);
                state.apply(event);
                dates.apply(event, day);
                if !concerns(event) {
                    prop_assert_eq!(
                        Row::of(&state, &dates),
                        before,
                        "{} changed the row",
                        event.event_type()
                    );
                }
            }
        }
    }
}

/// A registered household with each member of `ids` (a client first, then relatives) and each
/// goal of `ids` set for one of them.
fn setup(ids: &naast_domain::testing::Ids) -> Vec<DomainEvent> {
    use naast_domain::vocab::{LifeDomain, MemberRole};
    use naast_domain::{Command, MemberDetails};
    let mut state = Household::default();
    let mut events = naast_domain::testing::run(
        &mut state,
        Command::RegisterHousehold {
            name: "Familie Jansen".into(),
            registered_by: None,
        },
    );
    for (i, member) in ids.members.iter().enumerate() {
        let details = MemberDetails {
            name: format!("lid {i}"),
            role: if i == 0 {
                MemberRole::Client
            } else {
                MemberRole::Relative
            },
            relation: (i > 0).then_some(naast_domain::vocab::Relation::Sibling),
            birth_date: None,
        };
        events.extend(naast_domain::testing::run(
            &mut state,
            Command::AddMember {
                member: *member,
                details,
            },
        ));
    }
    for (i, goal) in ids.goals.iter().enumerate() {
        events.extend(naast_domain::testing::run(
            &mut state,
            Command::SetGoal {
                goal: *goal,
                owner: ids.members[i % ids.members.len()],
                title: format!("doel {i}"),
                description: String::new(),
                life_domains: vec![LifeDomain::Housing],
                plan: None,
            },
        ));
    }
    events
}

//! Properties of deciding commands, over random command sequences with random texts, dates and
//! references: deciding never panics; a refused command changes nothing; the state folded from
//! all events equals the state built command by command; every event survives its payload.

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
}

//! Identifiers of the things in a household's record. Each is a UUID, chosen by whoever creates
//! the thing (a client or the server), so a retried command creates nothing twice.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id!(
    /// A household: the family, its network, and its one timeline (one event stream).
    HouseholdId
);
id!(
    /// A person in the household: client, relative or legal representative.
    MemberId
);
id!(
    /// A contact of the household's network: supporter, provider, professional, institution.
    ContactId
);
id!(
    /// A plan.
    PlanId
);
id!(
    /// A goal.
    GoalId
);
id!(
    /// An agreement.
    AgreementId
);
id!(
    /// An indication or decision.
    IndicationId
);
id!(
    /// A logbook entry or note.
    EntryId
);

id!(
    /// A consent grant: who may see or do what in a household.
    GrantId
);
id!(
    /// A request for access, awaiting the family's answer.
    AccessRequestId
);

impl HouseholdId {
    /// The event stream holding this household's events.
    pub fn stream_id(&self) -> String {
        format!("household-{}", self.0)
    }

    /// The household whose event stream `stream_id` is ([`HouseholdId::stream_id`]), if it is
    /// one: only the canonical spelling (`household-<UPPERCASE>` or braced forms are other
    /// streams).
    pub fn of_stream(stream_id: &str) -> Option<Self> {
        let id: Self = stream_id.strip_prefix("household-")?.parse().ok()?;
        (id.stream_id() == stream_id).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;

    #[test]
    fn a_household_is_found_by_its_canonical_stream_only() {
        let id = HouseholdId::new();
        assert_eq!(HouseholdId::of_stream(&id.stream_id()), Some(id));
        let upper = format!("household-{}", id.0.to_string().to_uppercase());
        assert_eq!(HouseholdId::of_stream(&upper), None);
        let braced = format!("household-{{{}}}", id.0);
        assert_eq!(HouseholdId::of_stream(&braced), None);
        assert_eq!(HouseholdId::of_stream(&format!("audit-{}", id.0)), None);
        assert_eq!(HouseholdId::of_stream("household-"), None);
    }
}

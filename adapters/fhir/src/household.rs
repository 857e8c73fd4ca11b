//! The household as a FHIR `Group` of persons: the subject of what concerns the family as a
//! whole (a family plan, anything of a household without a client). R4 lets only patients (not
//! related persons) be a group's members, so its members are the clients; the relatives relate to
//! them as `RelatedPerson`, and `quantity` counts the whole family.

use crate::MapError;
use fhir_sdk::r4b::codes::GroupType;
use fhir_sdk::r4b::resources::{Group, GroupMember};
use fhir_sdk::r4b::types::Reference;
use naast_domain::Household;
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::MemberRole;

/// A reference to the household's `Group`.
pub fn reference(household: HouseholdId, state: &Household) -> Result<Reference, MapError> {
    Reference::builder()
        .reference(format!("Group/{household}"))
        .display(state.name.clone())
        .build()
        .map_err(|e| MapError::build("Reference", e))
}

/// The household as a `Group` (its id is the household's).
pub fn group(household: HouseholdId, state: &Household) -> Result<Group, MapError> {
    let failed = |e| MapError::build("Group", e);
    let current = state.members.iter().filter(|(_, m)| !m.removed);
    let members = current
        .clone()
        .filter(|(_, m)| m.details.role == MemberRole::Client)
        .map(|(id, m)| {
            GroupMember::builder()
                .entity(
                    Reference::builder()
                        .reference(format!("Patient/{id}"))
                        .display(m.details.name.clone())
                        .build()
                        .map_err(failed)?,
                )
                .build()
                .map(Some)
                .map_err(failed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Group::builder()
        .id(household.to_string())
        .identifier(vec![Some(crate::uuid_identifier(household)?)])
        .active(!state.erased)
        .r#type(GroupType::Person)
        .actual(true)
        .name(state.name.clone())
        .quantity(u32::try_from(current.count()).unwrap_or(u32::MAX))
        .member(members)
        .build()
        .map_err(failed)
}

//! The family's network as one FHIR `CareTeam` (nl-core-CareTeam): the family members (the
//! client as `Patient`, the others as `RelatedPerson`) and every contact: supporters, care
//! providers, professionals and institutions, with their kind as role.

use crate::MapError;
use crate::codes::{Vocabulary, concept};
use crate::members::first_client;
use fhir_sdk::r4b::codes::CareTeamStatus;
use fhir_sdk::r4b::resources::{CareTeam, CareTeamParticipant};
use fhir_sdk::r4b::types::{CodeableConcept, Reference};
use naast_domain::Household;
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::MemberRole;

/// The zib CareTeam profile.
pub const PROFILE: &str = "http://nictiz.nl/fhir/StructureDefinition/nl-core-CareTeam";

/// The network of `household` as its `CareTeam` (its id is the household's). Contacts are
/// named, not referenced: naast keeps no Practitioner or Organization of them, so each carries
/// its naast id as the reference's identifier.
pub fn care_team(household: HouseholdId, state: &Household) -> Result<CareTeam, MapError> {
    let failed = |e| MapError::build("CareTeam", e);
    let mut participants = Vec::new();
    let client = first_client(state);
    for (id, member) in state.members.iter().filter(|(_, m)| !m.removed) {
        let target = match member.details.role {
            MemberRole::Client => format!("Patient/{id}"),
            // Relatives map as related persons only when there is a client to relate to.
            _ if client.is_some() => format!("RelatedPerson/{id}"),
            _ => continue,
        };
        participants.push(Some(
            CareTeamParticipant::builder()
                .member(
                    Reference::builder()
                        .reference(target)
                        .display(member.details.name.clone())
                        .build()
                        .map_err(failed)?,
                )
                .build()
                .map_err(failed)?,
        ));
    }
    for (id, contact) in state.contacts.iter().filter(|(_, c)| !c.removed) {
        let details = &contact.details;
        let mut codes = vec![(
            Vocabulary::ContactKind,
            details.kind.wire_name(),
            details.kind.display_name(),
        )];
        if let Some(kind) = details.supporter_kind {
            // The supporter's own name for their work first: copiloot, bondgenoot, …
            codes.insert(
                0,
                (
                    Vocabulary::SupporterKind,
                    kind.wire_name(),
                    kind.display_name(),
                ),
            );
        }
        let role: CodeableConcept = concept(&codes)?;
        let display = match &details.organisation {
            Some(organisation) => format!("{} ({organisation})", details.name),
            None => details.name.clone(),
        };
        participants.push(Some(
            CareTeamParticipant::builder()
                .role(vec![Some(role)])
                .member(
                    Reference::builder()
                        .identifier(crate::uuid_identifier(id)?)
                        .display(display)
                        .build()
                        .map_err(failed)?,
                )
                .build()
                .map_err(failed)?,
        ));
    }
    let mut team = CareTeam::builder()
        .id(household.to_string())
        .meta(crate::profiled(PROFILE)?)
        .identifier(vec![Some(crate::uuid_identifier(household)?)])
        .status(if state.erased {
            CareTeamStatus::Inactive
        } else {
            CareTeamStatus::Active
        })
        .name(format!("Netwerk van {}", state.name))
        .participant(participants)
        .build()
        .map_err(failed)?;
    if let Some(client) = client {
        team.subject = Some(
            Reference::builder()
                .reference(format!("Patient/{client}"))
                .build()
                .map_err(failed)?,
        );
    }
    Ok(team)
}

//! The members of a family: clients as FHIR `Patient` (nl-core-Patient), relatives and legal
//! representatives as `RelatedPerson` (nl-core-ContactPerson), related to the household's
//! first client.

use crate::MapError;
use fhir_sdk::Date;
use fhir_sdk::r4b::resources::{Patient, RelatedPerson, Resource};
use fhir_sdk::r4b::types::{CodeableConcept, Coding, HumanName, Reference};
use naast_domain::Household;
use naast_domain::ids::{HouseholdId, MemberId};
use naast_domain::state::Member;
use naast_domain::vocab::MemberRole;

/// The zib Patient profile.
pub const PATIENT_PROFILE: &str = "http://nictiz.nl/fhir/StructureDefinition/nl-core-Patient";
/// The zib ContactPerson profile.
pub const CONTACT_PERSON_PROFILE: &str =
    "http://nictiz.nl/fhir/StructureDefinition/nl-core-ContactPerson";
/// The zib's RolCodelijst (COD472-VEKT): the role a contact person has for the patient.
const ROLE_CODE: &str = "urn:oid:2.16.840.1.113883.2.4.3.11.22.472";

/// The members of `household` that map: clients as patients, then the others as related persons
/// of the first client (left out when the household has no client).
pub fn resources(household: HouseholdId, state: &Household) -> Result<Vec<Resource>, MapError> {
    let _ = household;
    let mut resources = Vec::new();
    for (id, member) in &state.members {
        if member.details.role == MemberRole::Client {
            resources.push(patient(*id, member)?.into());
        }
    }
    if let Some(client) = first_client(state) {
        for (id, member) in &state.members {
            if member.details.role != MemberRole::Client {
                resources.push(related_person(*id, member, client)?.into());
            }
        }
    }
    Ok(resources)
}

/// The household's first client (in id order, so the same one each time).
pub fn first_client(state: &Household) -> Option<MemberId> {
    state
        .members
        .iter()
        .find(|(_, m)| m.details.role == MemberRole::Client)
        .map(|(id, _)| *id)
}

/// A member as the subject of something: `Patient/<id>` for a client; for anyone else the first
/// client's `Patient` (FHIR lets only patients, groups and organisations be a goal's subject),
/// named in the display; the household's `Group` when it has no client.
pub fn reference_to(
    household: HouseholdId,
    state: &Household,
    member: MemberId,
) -> Result<Reference, MapError> {
    let failed = |e| MapError::build("Reference", e);
    let found = state.members.get(&member);
    let name = found.map_or_else(|| "?".to_owned(), |m| m.details.name.clone());
    let target = match found {
        Some(m) if m.details.role == MemberRole::Client => Some(member),
        _ => first_client(state),
    };
    match target {
        Some(id) => Reference::builder()
            .reference(format!("Patient/{id}"))
            .display(name)
            .build()
            .map_err(failed),
        // No client to point at: the household as a whole.
        None => crate::household::reference(household, state),
    }
}

fn name(member: &Member) -> Result<HumanName, MapError> {
    // The family uses one name; naast does not split it into given and family names.
    HumanName::builder()
        .text(member.details.name.clone())
        .build()
        .map_err(|e| MapError::build("HumanName", e))
}

/// A client as a `Patient`.
pub fn patient(id: MemberId, member: &Member) -> Result<Patient, MapError> {
    let mut patient = Patient::builder()
        .id(id.to_string())
        .meta(crate::profiled(PATIENT_PROFILE)?)
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        .active(!member.removed)
        .name(vec![Some(name(member)?)])
        .build()
        .map_err(|e| MapError::build("Patient", e))?;
    patient.birth_date = member.details.birth_date.map(Date::Date);
    Ok(patient)
}

/// A relative or legal representative as a `RelatedPerson` of the client `client`. A legal
/// representative carries the zib role *Wettelijke vertegenwoordiger* (RolCodelijst, code 24).
/// The relation goes as text: the zib's RelatieCodelijst has gendered codes only (mother,
/// father, brother, …) and naast records no gender.
pub fn related_person(
    id: MemberId,
    member: &Member,
    client: MemberId,
) -> Result<RelatedPerson, MapError> {
    let failed = |e| MapError::build("RelatedPerson", e);
    let mut relationship = Vec::new();
    if member.details.role == MemberRole::LegalRepresentative {
        relationship.push(Some(
            CodeableConcept::builder()
                .coding(vec![Some(role_code("24", "Wettelijke vertegenwoordiger")?)])
                .build()
                .map_err(failed)?,
        ));
    }
    if let Some(relation) = member.details.relation {
        relationship.push(Some(
            CodeableConcept::builder()
                .text(relation.display_name().to_owned())
                .build()
                .map_err(failed)?,
        ));
    }
    let mut person = RelatedPerson::builder()
        .id(id.to_string())
        .meta(crate::profiled(CONTACT_PERSON_PROFILE)?)
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        .active(!member.removed)
        .patient(
            Reference::builder()
                .reference(format!("Patient/{client}"))
                .build()
                .map_err(failed)?,
        )
        .relationship(relationship)
        .name(vec![Some(name(member)?)])
        .build()
        .map_err(failed)?;
    person.birth_date = member.details.birth_date.map(Date::Date);
    Ok(person)
}

fn role_code(code: &str, display: &str) -> Result<Coding, MapError> {
    Coding::builder()
        .system(ROLE_CODE.to_owned())
        .code(code.to_owned())
        .display(display.to_owned())
        .build()
        .map_err(|e| MapError::build("Coding", e))
}

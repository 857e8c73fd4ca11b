//! Who recorded what, on whose behalf, as FHIR `Provenance`: for each version of a resource
//! (each revision of its household at which it changed), the person or system whose command
//! changed it, the member a PGO platform acted for, and when. It is read off the command's own
//! stamp in the log (the audit record sealed with its events), so it is exactly what the service
//! decided on, not a later reconstruction.

use crate::MapError;
use fhir_sdk::Instant;
use fhir_sdk::r4b::resources::{Provenance, ProvenanceAgent};
use fhir_sdk::r4b::types::{CodeableConcept, Coding, Identifier, Reference};
use naast_app::audit::{Record, User};

/// FHIR's provenance participant types.
const PARTICIPANT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
/// HL7 v3 data operations.
const DATA_OPERATION: &str = "http://terminology.hl7.org/CodeSystem/v3-DataOperation";

fn who(user: &User) -> Result<Reference, MapError> {
    let failed = |e| MapError::build("Provenance.agent", e);
    let mut who = Reference::builder()
        .identifier(
            Identifier::builder()
                .system(user.identity.issuer.clone())
                .value(user.identity.subject.clone())
                .build()
                .map_err(failed)?,
        )
        .build()
        .map_err(failed)?;
    who.display = user.name.clone().or_else(|| user.organisation.clone());
    Ok(who)
}

/// The provenance of version `target` (`Type/id/_history/n`) written by the event `event_id` at
/// `recorded_micros`; `created` when that version is the resource's first. `command` is the
/// audit record stamped on the command (`None` for events written without one: embedded use, or
/// before stamps existed, when `actor` is all the log knows).
pub fn provenance(
    event_id: uuid::Uuid,
    target: String,
    recorded_micros: u64,
    created: bool,
    command: Option<&Record>,
    actor: Option<&str>,
) -> Result<Provenance, MapError> {
    let failed = |e: fhir_sdk::BuilderError| MapError::build("Provenance", e);
    let recorded =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(recorded_micros) * 1_000)
            .map_err(|e| MapError::build("Provenance.recorded", e))?;
    let kind = CodeableConcept::builder()
        .coding(vec![Some(
            Coding::builder()
                .system(PARTICIPANT_TYPE.to_owned())
                .code("author".to_owned())
                .display("Author".to_owned())
                .build()
                .map_err(failed)?,
        )])
        .build()
        .map_err(failed)?;
    let mut agent = match command.and_then(|r| r.user.as_ref()) {
        Some(user) => ProvenanceAgent::builder()
            .r#type(kind)
            .who(who(user)?)
            .build()
            .map_err(failed)?,
        None => ProvenanceAgent::builder()
            .r#type(kind)
            .who(
                Reference::builder()
                    .display(actor.map_or_else(|| "onbekend".to_owned(), str::to_owned))
                    .build()
                    .map_err(failed)?,
            )
            .build()
            .map_err(failed)?,
    };
    if let Some(member) = command.and_then(|r| r.responsible.as_ref()) {
        agent.on_behalf_of = Some(who(member)?);
    }
    let (code, display) = if created {
        ("CREATE", "create")
    } else {
        ("UPDATE", "revise")
    };
    let activity = CodeableConcept::builder()
        .coding(vec![Some(
            Coding::builder()
                .system(DATA_OPERATION.to_owned())
                .code(code.to_owned())
                .display(display.to_owned())
                .build()
                .map_err(failed)?,
        )])
        .build()
        .map_err(failed)?;
    Provenance::builder()
        .id(event_id.to_string())
        .target(vec![Some(
            Reference::builder()
                .reference(target)
                .build()
                .map_err(failed)?,
        )])
        .recorded(Instant(recorded))
        .activity(activity)
        .agent(vec![Some(agent)])
        .build()
        .map_err(failed)
}

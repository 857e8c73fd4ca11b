//! The family's access log as FHIR `AuditEvent`: each NEN 7513 record (who, on whose behalf,
//! what, when, from where, why, allowed or refused, on what basis) as the event FHIR defines for
//! exactly that.

use crate::MapError;
use fhir_sdk::Instant;
use fhir_sdk::r4b::codes::{AuditEventAction, AuditEventAgentNetworkType, AuditEventOutcome};
use fhir_sdk::r4b::resources::{
    AuditEvent, AuditEventAgent, AuditEventAgentNetwork, AuditEventEntity, AuditEventSource,
};
use fhir_sdk::r4b::types::{CodeableConcept, Coding, Identifier, Reference};
use naast_app::audit::{Action, Outcome, Stored, User};

const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

fn coding(system: &str, code: &str, display: &str) -> Result<Coding, MapError> {
    Coding::builder()
        .system(system.to_owned())
        .code(code.to_owned())
        .display(display.to_owned())
        .build()
        .map_err(|e| MapError::build("Coding", e))
}

fn agent(
    user: &User,
    network: Option<&str>,
    client: Option<&str>,
) -> Result<AuditEventAgent, MapError> {
    let failed = |e| MapError::build("AuditEvent.agent", e);
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
    who.display = user.name.clone();
    let mut role = CodeableConcept::builder()
        .text(user.role.display_name().to_owned())
        .build()
        .map_err(failed)?;
    if let Some(organisation) = &user.organisation {
        role.text = Some(format!("{} ({organisation})", user.role.display_name()));
    }
    let mut agent = AuditEventAgent::builder()
        .who(who)
        .requestor(user.requestor)
        .role(vec![Some(role)])
        .build()
        .map_err(failed)?;
    agent.name = user.name.clone();
    agent.alt_id = client.map(str::to_owned);
    if let Some(address) = network {
        // The machine's address, without the port: what FHIR's network type 2 (IP) names.
        let ip = address
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| address.to_owned(), |a| a.ip().to_string());
        agent.network = Some(
            AuditEventAgentNetwork::builder()
                .address(ip)
                .r#type(AuditEventAgentNetworkType::N2)
                .build()
                .map_err(failed)?,
        );
    }
    Ok(agent)
}

/// The audit record `stored` as an `AuditEvent` (its id the record's).
pub fn audit_event(stored: &Stored) -> Result<AuditEvent, MapError> {
    let failed = |e| MapError::build("AuditEvent", e);
    let record = &stored.record;
    let recorded = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(stored.recorded_at_micros) * 1_000,
    )
    .map_err(|e| MapError::build("AuditEvent.recorded", e))?;
    let mut agents = Vec::new();
    if let Some(user) = &record.user {
        agents.push(Some(agent(
            user,
            record.network_access_point.as_deref(),
            record.source_system.as_deref(),
        )?));
    }
    if let Some(responsible) = &record.responsible {
        agents.push(Some(agent(responsible, None, None)?));
    }
    if agents.is_empty() {
        // A refusal before anyone could be identified (no valid token): the caller is unknown,
        // but where the call came from is not.
        let mut unknown = AuditEventAgent::builder()
            .requestor(true)
            .build()
            .map_err(failed)?;
        unknown.name = Some("onbekend (niet aangemeld)".to_owned());
        unknown.network = record
            .network_access_point
            .as_ref()
            .map(|address| {
                AuditEventAgentNetwork::builder()
                    .address(address.clone())
                    .r#type(AuditEventAgentNetworkType::N2)
                    .build()
            })
            .transpose()
            .map_err(failed)?;
        agents.push(Some(unknown));
    }
    let mut purposes = Vec::new();
    let mut purpose = CodeableConcept::builder()
        .text(record.purpose.clone())
        .build()
        .map_err(failed)?;
    if record.purpose == "care" {
        purpose.coding = vec![Some(coding(ACT_REASON, "TREAT", "treatment")?)];
    }
    purposes.push(Some(purpose));
    if record.emergency {
        purposes.push(Some(
            CodeableConcept::builder()
                .coding(vec![Some(coding(
                    ACT_REASON,
                    "ETREAT",
                    "Emergency Treatment",
                )?)])
                .build()
                .map_err(failed)?,
        ));
    }
    let mut entities = Vec::new();
    if let Some(household) = record.household {
        let mut entity = AuditEventEntity::builder()
            .what(
                Reference::builder()
                    .reference(format!("Group/{household}"))
                    .build()
                    .map_err(failed)?,
            )
            .build()
            .map_err(failed)?;
        if !record.basis.is_empty() {
            entity.description = Some(format!("grondslag: {}", record.basis.join(", ")));
        }
        entities.push(Some(entity));
    }
    for object in &record.objects {
        let mut entity = AuditEventEntity::builder().build().map_err(failed)?;
        entity.what = Some(
            Reference::builder()
                .identifier(crate::uuid_identifier(object)?)
                .build()
                .map_err(failed)?,
        );
        entities.push(Some(entity));
    }
    let mut event = AuditEvent::builder()
        .id(stored.id.to_string())
        .r#type(coding(EVENT_TYPE, "rest", "RESTful Operation")?)
        .subtype(vec![Some(
            Coding::builder()
                .code(record.operation.clone())
                .build()
                .map_err(failed)?,
        )])
        .action(match record.action {
            Action::Create => AuditEventAction::C,
            Action::Read => AuditEventAction::R,
            Action::Update => AuditEventAction::U,
            Action::Delete => AuditEventAction::D,
            Action::Execute => AuditEventAction::E,
        })
        .recorded(Instant(recorded))
        .outcome(match record.outcome {
            Outcome::Allowed => AuditEventOutcome::N0,
            // Refused: the caller's request failed (as an HTTP 4xx would), not the service.
            Outcome::Denied => AuditEventOutcome::N4,
        })
        .purpose_of_event(purposes)
        .agent(agents)
        .source(
            AuditEventSource::builder()
                .observer(
                    Reference::builder()
                        .display("naast".to_owned())
                        .build()
                        .map_err(failed)?,
                )
                .build()
                .map_err(failed)?,
        )
        .entity(entities)
        .build()
        .map_err(failed)?;
    event.outcome_desc = record.reason.clone();
    Ok(event)
}

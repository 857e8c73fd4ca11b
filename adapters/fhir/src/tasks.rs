//! The accept/reject workflow of an agreement as a FHIR `Task`: each agreement has one response
//! task, with the agreement's id (ids are per resource type in FHIR), that asks its parties to
//! approve the proposal (`code` = `approve`, `focus` = the agreement's `CarePlan`). It is
//! `requested` while the agreement is proposed, `accepted` once accepted (and stays so when the
//! agreement later ends), `rejected` with the reason once rejected. A provider's system answers a
//! proposal by writing the task's status (see the facade), which becomes the same
//! `AcceptAgreement` or `RejectAgreement` command as over gRPC.

use crate::MapError;
use crate::members::{first_client, reference_to};
use fhir_sdk::r4b::codes::{TaskIntent, TaskStatus};
use fhir_sdk::r4b::resources::Task;
use fhir_sdk::r4b::types::{CodeableConcept, Coding, Reference};
use naast_domain::Household;
use naast_domain::event::Party;
use naast_domain::ids::{AgreementId, HouseholdId};
use naast_domain::state::{Agreement, AgreementStatus};

/// FHIR's task codes.
pub const TASK_CODE: &str = "http://hl7.org/fhir/CodeSystem/task-code";
/// The task code of an agreement's response: approve the focal resource.
pub const APPROVE: &str = "approve";

/// The response task of the agreement `id` of `household`.
pub fn task(
    household: HouseholdId,
    state: &Household,
    id: AgreementId,
    agreement: &Agreement,
) -> Result<Task, MapError> {
    let failed = |e| MapError::build("Task", e);
    let status = match agreement.status {
        AgreementStatus::Proposed => TaskStatus::Requested,
        AgreementStatus::Accepted | AgreementStatus::Ended => TaskStatus::Accepted,
        AgreementStatus::Rejected => TaskStatus::Rejected,
    };
    let code = CodeableConcept::builder()
        .coding(vec![Some(
            Coding::builder()
                .system(TASK_CODE.to_owned())
                .code(APPROVE.to_owned())
                .display("Activate/approve the focal resource".to_owned())
                .build()
                .map_err(failed)?,
        )])
        .text("Afspraak accepteren of afwijzen".to_owned())
        .build()
        .map_err(failed)?;
    let focus = Reference::builder()
        .reference(format!("CarePlan/{id}"))
        .display(agreement.terms.title.clone())
        .build()
        .map_err(failed)?;
    let client = agreement
        .terms
        .parties
        .iter()
        .find_map(|party| match party {
            Party::Member(member) => Some(*member),
            Party::Contact(_) => None,
        })
        .or_else(|| first_client(state));
    let subject = match client {
        Some(member) => reference_to(household, state, member)?,
        None => crate::household::reference(household, state)?,
    };
    let mut task = Task::builder()
        .id(id.to_string())
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        .status(status)
        // The model lists only `unknown` of task-intent (its other codes are in RequestIntent).
        .intent(TaskIntent::_Custom("order".to_owned()))
        .code(code)
        .focus(focus)
        .r#for(subject)
        .build()
        .map_err(failed)?;
    if let Some(reason) = &agreement.rejection {
        task.status_reason = Some(
            CodeableConcept::builder()
                .text(reason.clone())
                .build()
                .map_err(failed)?,
        );
    }
    if let Some(contact) = agreement.terms.responsible {
        let name = state
            .contacts
            .get(&contact)
            .map_or_else(|| "?".to_owned(), |c| c.details.name.clone());
        task.owner = Some(
            Reference::builder()
                .identifier(crate::uuid_identifier(contact)?)
                .display(name)
                .build()
                .map_err(failed)?,
        );
    }
    Ok(task)
}

//! Plans as FHIR `CarePlan`. zib2020 profiles CarePlan only for nursing interventions and help
//! from others (each with a fixed SNOMED category), neither of which a family's support plan is,
//! so a plan is a base R4 `CarePlan`: marked as a plan (naast's `zorgplansoort`, as agreements
//! are marked as agreements), its kind as category (`plansoort`), its goals, and its version
//! (the plan's own numbering: versie 1, 2, …) in a note. `meta.versionId` is the facade's: the
//! revision of the household the resource was read at.

use crate::MapError;
use crate::codes::{PLAN, Vocabulary, concept};
use crate::members::{first_client, reference_to};
use fhir_sdk::r4b::codes::RequestStatus;
use fhir_sdk::r4b::resources::CarePlan;
use fhir_sdk::r4b::types::{Annotation, Reference};
use naast_domain::Household;
use naast_domain::ids::{HouseholdId, PlanId};
use naast_domain::state::{Plan, PlanStatus};
use naast_domain::vocab::PlanKind;

/// The plan `id` of `household` as a `CarePlan`.
pub fn care_plan(
    household: HouseholdId,
    state: &Household,
    id: PlanId,
    plan: &Plan,
) -> Result<CarePlan, MapError> {
    let failed = |e| MapError::build("CarePlan", e);
    let status = match plan.status {
        PlanStatus::Draft => RequestStatus::Draft,
        PlanStatus::Active => RequestStatus::Active,
        // Closed when its work is done or no longer needed; never "entered in error".
        PlanStatus::Closed => RequestStatus::Completed,
    };
    let goals = state
        .goals
        .iter()
        .filter(|(_, g)| g.plan == Some(id))
        .map(|(goal, g)| {
            Reference::builder()
                .reference(format!("Goal/{goal}"))
                .display(g.title.clone())
                .build()
                .map(Some)
                .map_err(failed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A family plan is the whole household's; another plan is its first client's.
    let subject = match (plan.kind, first_client(state)) {
        (PlanKind::FamilyPlan, _) | (_, None) => crate::household::reference(household, state)?,
        (_, Some(client)) => reference_to(household, state, client)?,
    };
    let mut care_plan = CarePlan::builder()
        .id(id.to_string())
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        .status(status)
        .intent("plan".to_owned())
        .category(vec![
            Some(concept(&[(Vocabulary::CarePlanKind, PLAN, "plan")])?),
            Some(concept(&[(
                Vocabulary::PlanKind,
                plan.kind.wire_name(),
                plan.kind.display_name(),
            )])?),
        ])
        .title(plan.title.clone())
        .subject(subject)
        .goal(goals)
        .note(vec![Some(
            Annotation::builder()
                .text(format!("Versie {} van het plan.", plan.version))
                .build()
                .map_err(failed)?,
        )])
        .build()
        .map_err(failed)?;
    if !plan.summary.trim().is_empty() {
        care_plan.description = Some(plan.summary.clone());
    }
    Ok(care_plan)
}

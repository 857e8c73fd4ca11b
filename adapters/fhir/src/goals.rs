//! Goals as FHIR `Goal`, shaped as the zib TreatmentObjective (nl-core-TreatmentObjective): what
//! a member of the family works towards, about which life domains, and where it stands.

use crate::MapError;
use crate::codes::life_domain;
use crate::members::reference_to;
use fhir_sdk::r4b::codes::GoalLifecycleStatus;
use fhir_sdk::r4b::resources::Goal;
use fhir_sdk::r4b::types::{Annotation, CodeableConcept, Coding};
use naast_domain::Household;
use naast_domain::ids::{GoalId, HouseholdId};
use naast_domain::state::{self, GoalStatus};

/// The zib TreatmentObjective profile.
pub const PROFILE: &str = "http://nictiz.nl/fhir/StructureDefinition/nl-core-TreatmentObjective";
/// FHIR's goal achievement codes.
const ACHIEVEMENT: &str = "http://terminology.hl7.org/CodeSystem/goal-achievement";

/// The goal `id` of `household` as a FHIR `Goal`.
pub fn goal(
    household: HouseholdId,
    state: &Household,
    id: GoalId,
    goal: &state::Goal,
) -> Result<Goal, MapError> {
    let failed = |e| MapError::build("Goal", e);
    let (lifecycle, achievement) = match goal.status {
        GoalStatus::Active => (GoalLifecycleStatus::Active, "in-progress"),
        GoalStatus::Achieved => (GoalLifecycleStatus::Completed, "achieved"),
        // Given up: no longer pursued, not recorded in error.
        GoalStatus::Abandoned => (GoalLifecycleStatus::Cancelled, "not-achieved"),
    };
    let achievement = CodeableConcept::builder()
        .coding(vec![Some(
            Coding::builder()
                .system(ACHIEVEMENT.to_owned())
                .code(achievement.to_owned())
                .build()
                .map_err(failed)?,
        )])
        .build()
        .map_err(failed)?;
    let description = CodeableConcept::builder()
        .text(goal.title.clone())
        .build()
        .map_err(failed)?;
    let categories = goal
        .life_domains
        .iter()
        .map(|d| life_domain(*d).map(Some))
        .collect::<Result<Vec<_>, _>>()?;
    let notes = if goal.description.trim().is_empty() {
        Vec::new()
    } else {
        vec![Some(
            Annotation::builder()
                .text(goal.description.clone())
                .build()
                .map_err(failed)?,
        )]
    };
    Goal::builder()
        .id(id.to_string())
        .meta(crate::profiled(PROFILE)?)
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        .lifecycle_status(lifecycle)
        .achievement_status(achievement)
        .category(categories)
        .description(description)
        .subject(reference_to(household, state, goal.owner)?)
        .note(notes)
        .build()
        .map_err(failed)
}

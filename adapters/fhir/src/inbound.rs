//! The other way: FHIR resources written by care providers' systems, read back into the
//! domain's terms. Only what the facade accepts is read: an agreement as a `CarePlan` (shaped as
//! [`crate::agreements`] writes it) and the response to a proposal as a `Task` (shaped as
//! [`crate::tasks`] writes it). Whatever does not fit is refused with the FHIRPath of the element
//! at fault; nothing is guessed.

use crate::codes::{AGREEMENT, Vocabulary};
use crate::tasks::{APPROVE, TASK_CODE};
use fhir_sdk::r4b::codes::TaskStatus;
use fhir_sdk::r4b::resources::{CarePlan, CarePlanActivityDetailScheduled, Resource, Task};
use fhir_sdk::r4b::types::{Identifier, Reference};
use fhir_sdk::{Date, DateTime};
use naast_domain::event::{AgreementTerms, Party};
use naast_domain::ids::{AgreementId, ContactId, GoalId, MemberId, PlanId};
use naast_domain::vocab::FundingDomain;
use serde_json::Value;
use uuid::Uuid;

/// Why a resource cannot be taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{expression}: {reason}")]
pub struct Invalid {
    /// The element at fault, as FHIRPath (`CarePlan.period.start`).
    pub expression: String,
    /// What is wrong with it.
    pub reason: String,
    /// Whether the resource is malformed (not FHIR, or elements FHIR does not define: `400`)
    /// rather than well-formed but not acceptable here (`422`).
    pub malformed: bool,
}

impl Invalid {
    fn new(expression: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            expression: expression.into(),
            reason: reason.into(),
            malformed: false,
        }
    }

    fn malformed(expression: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            malformed: true,
            ..Self::new(expression, reason)
        }
    }
}

/// The resource `json` holds, refused when it is not JSON, not a FHIR resource, or has elements
/// (or values) the R4 model does not define: a resource is taken in whole or not at all.
pub fn parse(json: &[u8]) -> Result<Resource, Invalid> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| Invalid::malformed("", format!("not JSON: {e}")))?;
    let kind = value
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| Invalid::malformed("resourceType", "a resource names its resourceType"))?
        .to_owned();
    let resource: Resource = serde_json::from_value(value.clone())
        .map_err(|e| Invalid::malformed(kind.clone(), format!("not a valid {kind}: {e}")))?;
    let again = serde_json::to_value(&resource)
        .map_err(|e| Invalid::malformed(kind.clone(), e.to_string()))?;
    if let Some(path) = first_unknown(&value, &again, &kind) {
        return Err(Invalid::malformed(
            path,
            "element unknown to FHIR R4 (or empty, or null, which FHIR does not allow)",
        ));
    }
    Ok(resource)
}

/// The first element of `given` that did not survive the round trip through the model.
fn first_unknown(given: &Value, kept: &Value, path: &str) -> Option<String> {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => given.iter().find_map(|(key, value)| {
            let at = format!("{path}.{key}");
            match kept.get(key) {
                Some(other) => first_unknown(value, other, &at),
                None => Some(at),
            }
        }),
        (Value::Array(given), Value::Array(kept)) if given.len() == kept.len() => given
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (value, other))| first_unknown(value, other, &format!("{path}[{i}]"))),
        (Value::Array(_), _) | (Value::Object(_), _) => Some(path.to_owned()),
        // Numbers may be written differently (1.0 and 1); strings and the rest are kept.
        _ => None,
    }
}

/// naast's id in `identifier`s (`urn:ietf:rfc:3986`, `urn:uuid:…`), if one is there.
pub fn naast_id(identifiers: &[Option<Identifier>]) -> Option<Uuid> {
    identifiers.iter().flatten().find_map(|identifier| {
        if identifier.system.as_deref() != Some(crate::UUID_SYSTEM) {
            return None;
        }
        identifier
            .value
            .as_deref()?
            .strip_prefix("urn:uuid:")
            .and_then(|id| Uuid::parse_str(id).ok())
    })
}

/// The id of `reference` if it is `Kind/{uuid}` (relative, as the facade writes them).
fn referenced(reference: &Reference, kind: &str) -> Option<Uuid> {
    let text = reference.reference.as_deref()?;
    let id = text.strip_prefix(kind)?.strip_prefix('/')?;
    Uuid::parse_str(id).ok()
}

/// A day (`YYYY-MM-DD`), the only precision an agreement's period takes.
fn day_of(value: &DateTime, expression: &str) -> Result<time::Date, Invalid> {
    match value {
        DateTime::Date(Date::Date(day)) => Ok(*day),
        _ => Err(Invalid::new(
            expression,
            "give a whole day (YYYY-MM-DD): an agreement runs from day to day",
        )),
    }
}

/// The terms of the agreement that `care_plan` describes. What FHIR does not carry (`pgb`,
/// frequency, review day) comes from `current` (the agreement's terms before an update), or is
/// left out on a create. Whether the members, goals, contacts and plan referred to are the
/// household's is the domain's to decide (after the access decision, so that a refusal tells
/// nothing about what a household holds); [`fhir_path`] names its fields as FHIR elements.
pub fn agreement_terms(
    care_plan: &CarePlan,
    current: Option<&AgreementTerms>,
) -> Result<AgreementTerms, Invalid> {
    let categories: Vec<_> = care_plan
        .category
        .iter()
        .flatten()
        .flat_map(|c| c.coding.iter().flatten())
        .collect();
    let kind_system = Vocabulary::CarePlanKind.system();
    if !categories
        .iter()
        .any(|c| c.system.as_deref() == Some(&kind_system) && c.code.as_deref() == Some(AGREEMENT))
    {
        return Err(Invalid::new(
            "CarePlan.category",
            format!("a CarePlan written here is an agreement: category {kind_system}|{AGREEMENT}"),
        ));
    }
    let funding_system = Vocabulary::FundingDomain.system();
    // The current funding domain comes first (a carried-over agreement names its earlier one
    // after it).
    let funding = categories
        .iter()
        .find(|c| c.system.as_deref() == Some(&funding_system))
        .ok_or_else(|| {
            Invalid::new(
                "CarePlan.category",
                format!("name the funding domain: a category from {funding_system}"),
            )
        })?;
    let funding = funding
        .code
        .as_deref()
        .and_then(FundingDomain::from_wire)
        .ok_or_else(|| {
            Invalid::new(
                "CarePlan.category",
                format!(
                    "{:?} is not a funding domain of {funding_system}",
                    funding.code.as_deref().unwrap_or_default()
                ),
            )
        })?;
    let title = care_plan
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Invalid::new("CarePlan.title", "an agreement has a title"))?;
    let mut parties = Vec::new();
    match (
        referenced(&care_plan.subject, "Patient"),
        referenced(&care_plan.subject, "Group"),
    ) {
        (Some(member), _) => parties.push(Party::Member(MemberId(member))),
        (None, Some(_)) => {}
        (None, None) => {
            return Err(Invalid::new(
                "CarePlan.subject",
                "the subject is Patient/{id} (a client) or Group/{id} (the household)",
            ));
        }
    }
    let period = care_plan
        .period
        .as_ref()
        .ok_or_else(|| Invalid::new("CarePlan.period", "an agreement has a period"))?;
    let start = period
        .start
        .as_ref()
        .ok_or_else(|| Invalid::new("CarePlan.period.start", "an agreement has a first day"))?;
    let start = day_of(start, "CarePlan.period.start")?;
    let end = period
        .end
        .as_ref()
        .map(|end| day_of(end, "CarePlan.period.end"))
        .transpose()?;
    let mut goals = Vec::new();
    for (i, goal) in care_plan.goal.iter().enumerate() {
        let at = format!("CarePlan.goal[{i}]");
        let id = goal
            .as_ref()
            .and_then(|g| referenced(g, "Goal"))
            .ok_or_else(|| Invalid::new(at, "a goal is referred to as Goal/{id}"))?;
        goals.push(GoalId(id));
    }
    let plan = match care_plan.part_of.as_slice() {
        [] => None,
        [Some(part)] => {
            let id = referenced(part, "CarePlan").ok_or_else(|| {
                Invalid::new(
                    "CarePlan.partOf[0]",
                    "the plan is referred to as CarePlan/{id}",
                )
            })?;
            Some(PlanId(id))
        }
        _ => {
            return Err(Invalid::new(
                "CarePlan.partOf",
                "an agreement belongs to one plan at most",
            ));
        }
    };
    let mut responsible = None;
    match care_plan.activity.as_slice() {
        [] => {}
        [Some(activity)] => {
            if let Some(detail) = &activity.detail {
                if let Some(scheduled) = &detail.scheduled
                    && !matches!(scheduled, CarePlanActivityDetailScheduled::Period(_))
                {
                    return Err(Invalid::new(
                        "CarePlan.activity[0].detail.scheduled",
                        "an agreement's activity is scheduled by its period",
                    ));
                }
                match detail.performer.as_slice() {
                    [] => {}
                    [Some(performer)] => {
                        let id = performer
                            .identifier
                            .as_ref()
                            .and_then(|i| naast_id(std::slice::from_ref(&Some(i.clone()))))
                            .ok_or_else(|| {
                                Invalid::new(
                                    "CarePlan.activity[0].detail.performer[0]",
                                    "the performer is a contact of this household's network, \
                                     named by its identifier (urn:ietf:rfc:3986|urn:uuid:…)",
                                )
                            })?;
                        responsible = Some(ContactId(id));
                        parties.push(Party::Contact(ContactId(id)));
                    }
                    _ => {
                        return Err(Invalid::new(
                            "CarePlan.activity[0].detail.performer",
                            "one provider is responsible for an agreement",
                        ));
                    }
                }
            }
        }
        _ => {
            return Err(Invalid::new(
                "CarePlan.activity",
                "an agreement has one activity",
            ));
        }
    }
    Ok(AgreementTerms {
        title,
        description: care_plan.description.clone().unwrap_or_default(),
        parties,
        responsible,
        funding,
        pgb: current.is_some_and(|c| c.pgb),
        start,
        end,
        frequency: current.and_then(|c| c.frequency.clone()),
        goals,
        review_on: current.and_then(|c| c.review_on),
        plan,
    })
}

/// An answer to a proposal: the agreement it is about, and accept (`None`) or reject with a
/// reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The agreement (the task's focus).
    pub agreement: AgreementId,
    /// `None` to accept; the reason to reject.
    pub rejection: Option<String>,
}

/// The answer `task` gives.
pub fn response(task: &Task) -> Result<Response, Invalid> {
    let approve = task.code.as_ref().is_some_and(|code| {
        code.coding
            .iter()
            .flatten()
            .any(|c| c.system.as_deref() == Some(TASK_CODE) && c.code.as_deref() == Some(APPROVE))
    });
    if !approve {
        return Err(Invalid::new(
            "Task.code",
            format!("a task written here answers a proposed agreement: code {TASK_CODE}|{APPROVE}"),
        ));
    }
    let agreement = task
        .focus
        .as_ref()
        .and_then(|f| referenced(f, "CarePlan"))
        .ok_or_else(|| Invalid::new("Task.focus", "the focus is the agreement, CarePlan/{id}"))?;
    let rejection = match task.status {
        TaskStatus::Accepted => None,
        TaskStatus::Rejected => Some(
            task.status_reason
                .as_ref()
                .and_then(|r| r.text.clone())
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    Invalid::new(
                        "Task.statusReason.text",
                        "a rejection says why, in statusReason.text",
                    )
                })?,
        ),
        other => {
            return Err(Invalid::new(
                "Task.status",
                format!("{other}: answer a proposal with accepted or rejected"),
            ));
        }
    };
    Ok(Response {
        agreement: AgreementId(agreement),
        rejection,
    })
}

/// The FHIR element a field of the domain's agreement commands stands for (`terms.goals[1]` →
/// `CarePlan.goal[1]`), so that a refusal of the domain names what the writer sent.
pub fn fhir_path(field: &str) -> String {
    let mapped = [
        ("terms.title", "CarePlan.title"),
        ("terms.description", "CarePlan.description"),
        ("terms.start_date", "CarePlan.period.start"),
        ("terms.end_date", "CarePlan.period.end"),
        ("terms.funding_domain", "CarePlan.category"),
        ("terms.plan_id", "CarePlan.partOf[0]"),
        (
            "terms.responsible_contact_id",
            "CarePlan.activity[0].detail.performer[0]",
        ),
        ("terms.parties", "CarePlan.subject"),
        ("agreement_id", "CarePlan.identifier"),
        ("reason", "Task.statusReason.text"),
    ];
    if let Some(rest) = field.strip_prefix("terms.goal_ids") {
        return format!("CarePlan.goal{rest}");
    }
    mapped
        .iter()
        .find(|(prefix, _)| field.starts_with(prefix))
        .map_or_else(|| field.to_owned(), |(_, path)| (*path).to_owned())
}

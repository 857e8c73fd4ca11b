//! Agreements (afspraken) as FHIR `CarePlan`: zib2020 has no care-agreement profile, so an
//! agreement is a base R4 `CarePlan` marked as one (naast's `zorgplansoort`), with its single
//! activity: who delivers what, how often, over which period, funded by which care law.
//!
//! A proposal is a `CarePlan` with intent `proposal` until the parties accept it (`plan`); a
//! rejected one is `revoked`, an ended one `completed`. An agreement carried over from one care
//! law to another (the 18th birthday: Jeugdwet → Wmo) names both, with the day, in its note.

use crate::MapError;
use crate::codes::{AGREEMENT, Vocabulary, concept};
use crate::members::{first_client, reference_to};
use fhir_sdk::r4b::codes::{CarePlanActivityStatus, RequestStatus};
use fhir_sdk::r4b::resources::{
    CarePlan, CarePlanActivity, CarePlanActivityDetail, CarePlanActivityDetailScheduled,
};
use fhir_sdk::r4b::types::{Annotation, Period, Reference};
use fhir_sdk::{Date, DateTime};
use naast_domain::Household;
use naast_domain::event::Party;
use naast_domain::ids::{AgreementId, HouseholdId};
use naast_domain::state::{Agreement, AgreementStatus};

/// The agreement `id` of `household` as a `CarePlan`, as it stands on `today`.
pub fn care_plan(
    household: HouseholdId,
    state: &Household,
    id: AgreementId,
    agreement: &Agreement,
    today: time::Date,
) -> Result<CarePlan, MapError> {
    let failed = |e| MapError::build("CarePlan", e);
    let terms = &agreement.terms;
    let (status, intent, activity) = match agreement.status {
        AgreementStatus::Proposed => (
            RequestStatus::Active,
            "proposal",
            CarePlanActivityStatus::NotStarted,
        ),
        AgreementStatus::Accepted if terms.start > today => (
            RequestStatus::Active,
            "plan",
            CarePlanActivityStatus::Scheduled,
        ),
        AgreementStatus::Accepted if terms.end.is_some_and(|end| end < today) => (
            RequestStatus::Completed,
            "plan",
            CarePlanActivityStatus::Completed,
        ),
        AgreementStatus::Accepted => (
            RequestStatus::Active,
            "plan",
            CarePlanActivityStatus::InProgress,
        ),
        AgreementStatus::Rejected => (
            RequestStatus::Revoked,
            "proposal",
            CarePlanActivityStatus::Cancelled,
        ),
        AgreementStatus::Ended => (
            RequestStatus::Completed,
            "plan",
            CarePlanActivityStatus::Stopped,
        ),
    };
    let funding = agreement.funding_on(today);
    let mut categories = vec![
        Some(concept(&[(
            Vocabulary::CarePlanKind,
            AGREEMENT,
            "afspraak",
        )])?),
        Some(concept(&[(
            Vocabulary::FundingDomain,
            funding.wire_name(),
            funding.display_name(),
        )])?),
    ];
    let mut notes = Vec::new();
    if let Some((before, from)) = agreement.funded_before {
        // The carry-over stays visible: both domains, and the day it moved.
        categories.push(Some(concept(&[(
            Vocabulary::FundingDomain,
            before.wire_name(),
            before.display_name(),
        )])?));
        notes.push(format!(
            "Tot {from} gefinancierd uit {before}, vanaf {from} uit {}.",
            terms.funding
        ));
    }
    if terms.pgb {
        notes.push("Betaald uit een persoonsgebonden budget (PGB).".to_owned());
    }
    if agreement.under_review {
        notes.push("Gemeld als niet geleverd zoals afgesproken: wordt herzien.".to_owned());
    }
    if let Some(review) = terms.review_on {
        notes.push(format!("Evaluatie op {review}."));
    }
    let goals = terms
        .goals
        .iter()
        .map(|goal| {
            Reference::builder()
                .reference(format!("Goal/{goal}"))
                .build()
                .map(Some)
                .map_err(failed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let performer = terms
        .responsible
        .map(|contact| {
            let name = state
                .contacts
                .get(&contact)
                .map_or_else(|| "?".to_owned(), |c| c.details.name.clone());
            Reference::builder()
                .identifier(crate::uuid_identifier(contact)?)
                .display(name)
                .build()
                .map_err(failed)
        })
        .transpose()?;
    let mut period = Period::builder()
        .start(DateTime::Date(Date::Date(terms.start)))
        .build()
        .map_err(failed)?;
    period.end = terms.end.map(|end| DateTime::Date(Date::Date(end)));
    let mut detail = CarePlanActivityDetail::builder()
        .status(activity)
        .description(match &terms.frequency {
            Some(frequency) => format!("{} ({frequency})", terms.title),
            None => terms.title.clone(),
        })
        .goal(goals.clone())
        .build()
        .map_err(failed)?;
    detail.scheduled = Some(CarePlanActivityDetailScheduled::Period(period.clone()));
    detail.performer = performer.into_iter().map(Some).collect();
    // The subject: the first client among the parties, else the household's first client.
    let client = terms
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
    let mut care_plan = CarePlan::builder()
        .id(id.to_string())
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        .status(status)
        .intent(intent.to_owned())
        .category(categories)
        .title(terms.title.clone())
        .subject(subject)
        .period(period)
        .goal(goals)
        .activity(vec![Some(
            CarePlanActivity::builder()
                .detail(detail)
                .build()
                .map_err(failed)?,
        )])
        .note(
            notes
                .into_iter()
                .map(|text| Annotation::builder().text(text).build().map(Some))
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?,
        )
        .build()
        .map_err(failed)?;
    if !terms.description.trim().is_empty() {
        care_plan.description = Some(terms.description.clone());
    }
    if let Some(plan) = terms.plan {
        care_plan.part_of = vec![Some(
            Reference::builder()
                .reference(format!("CarePlan/{plan}"))
                .build()
                .map_err(failed)?,
        )];
    }
    Ok(care_plan)
}

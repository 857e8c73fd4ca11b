//! Indications and decisions (Wlz-indicatie, Wmo- en Jeugdwet-beschikking, Zvw-indicatie) as FHIR
//! `Coverage`: the member's access to care under one care law, from the gatekeeper of that law,
//! over a period, with the Wlz care profile as its class.

use crate::MapError;
use crate::codes::{Vocabulary, concept};
use crate::members::reference_to;
use fhir_sdk::r4b::resources::{Coverage, CoverageClass};
use fhir_sdk::r4b::types::{CodeableConcept, Coding, Period, Reference};
use fhir_sdk::{Date, DateTime};
use naast_domain::Household;
use naast_domain::ids::{HouseholdId, IndicationId};
use naast_domain::state::Indication;
use naast_domain::vocab::IndicationKind;

/// FHIR's coverage class types.
const COVERAGE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/coverage-class";

/// Who decides on access to care under each law (named: naast keeps no Organization of them).
fn gatekeeper(kind: IndicationKind) -> &'static str {
    match kind {
        IndicationKind::WlzIndication => "zorgkantoor (indicatie van het CIZ)",
        IndicationKind::WmoDecision | IndicationKind::JeugdwetDecision => "gemeente",
        IndicationKind::ZvwNursingIndication => "zorgverzekeraar",
    }
}

/// The indication `id` of `household` as a `Coverage`.
pub fn coverage(
    household: HouseholdId,
    state: &Household,
    id: IndicationId,
    indication: &Indication,
) -> Result<Coverage, MapError> {
    let failed = |e| MapError::build("Coverage", e);
    let funding = indication.kind.funding_domain();
    let kind: CodeableConcept = concept(&[
        (
            Vocabulary::IndicationKind,
            indication.kind.wire_name(),
            indication.kind.display_name(),
        ),
        (
            Vocabulary::FundingDomain,
            funding.wire_name(),
            funding.display_name(),
        ),
    ])?;
    let mut period = Period::builder()
        .start(DateTime::Date(Date::Date(indication.valid_from)))
        .build()
        .map_err(failed)?;
    period.end = indication
        .valid_until
        .map(|until| DateTime::Date(Date::Date(until)));
    let classes = indication
        .care_profile
        .iter()
        .map(|profile| {
            CoverageClass::builder()
                .r#type(
                    CodeableConcept::builder()
                        .coding(vec![Some(
                            Coding::builder()
                                .system(COVERAGE_CLASS.to_owned())
                                .code("class".to_owned())
                                .build()
                                .map_err(failed)?,
                        )])
                        .build()
                        .map_err(failed)?,
                )
                .value(profile.clone())
                .name(format!("zorgprofiel {profile}"))
                .build()
                .map(Some)
                .map_err(failed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Coverage::builder()
        .id(id.to_string())
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        // A decision stays in force over its period; one that expired keeps its end date.
        .status("active".to_owned())
        .r#type(kind)
        .beneficiary(reference_to(household, state, indication.member)?)
        .period(period)
        .payor(vec![Some(
            Reference::builder()
                .display(gatekeeper(indication.kind).to_owned())
                .build()
                .map_err(failed)?,
        )])
        .class(classes)
        .build()
        .map_err(failed)
}

//! The family's consent as FHIR `Consent`: each grant (to a person, an organisation or a PGO
//! platform) is a privacy consent of the household's first client that permits its holder what
//! the grant allows, over its period, about the life and funding domains it names.

use crate::MapError;
use crate::codes::{Vocabulary, concept};
use crate::members::{first_client, reference_to};
use fhir_sdk::r4b::codes::{ConsentProvisionType, ConsentState};
use fhir_sdk::r4b::resources::{Consent, ConsentProvision, ConsentProvisionActor};
use fhir_sdk::r4b::types::{CodeableConcept, Coding, Identifier, Period, Reference};
use fhir_sdk::{Date, DateTime};
use naast_domain::Household;
use naast_domain::event::Grantee;
use naast_domain::ids::{GrantId, HouseholdId};
use naast_domain::state::Grant;
use naast_domain::vocab::AccessScope;

const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const LOINC: &str = "http://loinc.org";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const CONSENT_ACTION: &str = "http://terminology.hl7.org/CodeSystem/consentaction";

fn coded(system: &str, code: &str, display: &str) -> Result<CodeableConcept, MapError> {
    let failed = |e| MapError::build("CodeableConcept", e);
    CodeableConcept::builder()
        .coding(vec![Some(
            Coding::builder()
                .system(system.to_owned())
                .code(code.to_owned())
                .display(display.to_owned())
                .build()
                .map_err(failed)?,
        )])
        .build()
        .map_err(failed)
}

/// The grant `id` of `household` as a `Consent`, as it stands on `today`.
pub fn consent(
    household: HouseholdId,
    state: &Household,
    id: GrantId,
    grant: &Grant,
    today: time::Date,
) -> Result<Consent, MapError> {
    let failed = |e| MapError::build("Consent", e);
    // Whoever holds it, named with how naast knows them.
    let (holder, identifier) = match &grant.grantee {
        Grantee::Person { identity } => (
            identity.subject.clone(),
            Identifier::builder()
                .system(identity.issuer.clone())
                .value(identity.subject.clone())
                .build(),
        ),
        Grantee::Organisation { id } => (
            format!("organisatie {id}"),
            Identifier::builder().value(id.clone()).build(),
        ),
        Grantee::Platform { issuer, client_id } => (
            format!("PGO-platform {client_id}"),
            Identifier::builder()
                .system(issuer.clone())
                .value(client_id.clone())
                .build(),
        ),
    };
    let actor = ConsentProvisionActor::builder()
        // The information recipient.
        .role(coded(PARTICIPATION, "IRCP", "information recipient")?)
        .reference(
            Reference::builder()
                .identifier(identifier.map_err(failed)?)
                .display(holder)
                .build()
                .map_err(failed)?,
        )
        .build()
        .map_err(failed)?;
    // What it allows: naast's own scope, with the nearest FHIR consent action beside it.
    let actions = grant
        .terms
        .scopes
        .iter()
        .map(|scope| {
            let (code, display) = match scope {
                AccessScope::ReadTimeline => ("access", "Access"),
                _ => ("correct", "Access and Correct"),
            };
            let mut action = concept(&[(
                Vocabulary::AccessScope,
                scope.wire_name(),
                scope.display_name(),
            )])?;
            action.coding.push(Some(
                Coding::builder()
                    .system(CONSENT_ACTION.to_owned())
                    .code(code.to_owned())
                    .display(display.to_owned())
                    .build()
                    .map_err(failed)?,
            ));
            Ok(Some(action))
        })
        .collect::<Result<Vec<_>, MapError>>()?;
    // The domains it is limited to: the data it concerns carries one of these codes.
    let mut codes = Vec::new();
    for domain in &grant.terms.life_domains {
        codes.push(Some(concept(&[(
            Vocabulary::LifeDomain,
            domain.wire_name(),
            domain.display_name(),
        )])?));
    }
    for domain in &grant.terms.funding_domains {
        codes.push(Some(concept(&[(
            Vocabulary::FundingDomain,
            domain.wire_name(),
            domain.display_name(),
        )])?));
    }
    let mut provision = ConsentProvision::builder()
        .r#type(ConsentProvisionType::Permit)
        .actor(vec![Some(actor)])
        .action(actions)
        .code(codes)
        .build()
        .map_err(failed)?;
    if let Some(until) = grant.terms.until {
        provision.period = Some(
            Period::builder()
                .end(DateTime::Date(Date::Date(until)))
                .build()
                .map_err(failed)?,
        );
    }
    let patient = match first_client(state) {
        Some(client) => reference_to(household, state, client)?,
        None => crate::household::reference(household, state)?,
    };
    Consent::builder()
        .id(id.to_string())
        .identifier(vec![Some(crate::uuid_identifier(id)?)])
        .status(if grant.holds_on(today) {
            ConsentState::Active
        } else {
            ConsentState::Inactive
        })
        .scope(coded(CONSENT_SCOPE, "patient-privacy", "Privacy Consent")?)
        .category(vec![Some(coded(LOINC, "59284-0", "Patient Consent")?)])
        .patient(patient)
        // The family opts in: nothing is shared that it did not allow.
        .policy_rule(coded(ACT_CODE, "OPTIN", "opt-in")?)
        .provision(provision)
        .build()
        .map_err(failed)
}

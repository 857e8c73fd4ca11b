//! The shared plan of naast as FHIR R4 resources, following the Dutch zib2020 profiles (Nictiz
//! nl-core) where one exists. A pure mapping from the domain's state: no network, no storage.
//! The models are `fhir-sdk`'s R4B ones, which equal R4 element for element for the resources
//! mapped here, so their JSON serves R4 clients. See `README.md` beside this crate for the mapping
//! table and why each choice was made.
//!
//! # Layout
//! - [`codes`]: naast's own CodeSystems (life domains, funding domains, supporter kinds, the 18
//!   supporter tasks), with Dutch display names, and codings from them;
//! - [`members`]: members as `Patient` (clients) and `RelatedPerson` (relatives, legal
//!   representatives);
//! - [`goals`]: goals as `Goal` shaped as nl-core-TreatmentObjective;
//! - [`plans`]: plans as `CarePlan`;
//! - [`agreements`]: agreements (afspraken) as `CarePlan` too, with their activity;
//! - [`indications`]: indications and decisions as `Coverage`;
//! - [`consent`]: the family's grants as `Consent`;
//! - [`audit`]: the access log's NEN 7513 records as `AuditEvent`;
//! - [`network`]: the family's network as one `CareTeam` (nl-core-CareTeam);
//! - [`household`]: the household as a `Group`, the subject of what concerns the whole family;
//! - [`communications`]: notes and logbook entries as `Communication`;
//! - [`provenance`]: who recorded each version, on whose behalf, as `Provenance`;
//! - [`tasks`]: the accept/reject workflow of an agreement as a `Task`;
//! - [`inbound`]: the other way: agreements (`CarePlan`) and answers to proposals (`Task`)
//!   written by care providers, read back into the domain's terms;
//! - [`household_resources`]: every resource of one household mapped so far.

pub mod agreements;
pub mod audit;
pub mod codes;
pub mod communications;
pub mod consent;
pub mod goals;
pub mod household;
pub mod inbound;
pub mod indications;
pub mod members;
pub mod network;
pub mod plans;
pub mod provenance;
pub mod tasks;

use fhir_sdk::r4b::resources::Resource;
use naast_domain::Household;
use naast_domain::ids::HouseholdId;

/// The canonical base of naast's own definitions (CodeSystems, ValueSets). A canonical URL
/// names a definition; the facade serves them under its own `/fhir` base whatever this says.
pub const CANONICAL: &str = "https://naast.nl/fhir";

/// The identifier system of naast's ids: every id is a UUID, written `urn:uuid:…` (RFC 4122 as a
/// URI, as FHIR advises for UUIDs).
pub const UUID_SYSTEM: &str = "urn:ietf:rfc:3986";

/// Why a piece of the domain cannot be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// A resource could not be built (a required element missing): a bug in the mapping.
    #[error("building a {resource}: {reason}")]
    Build {
        /// The resource type.
        resource: &'static str,
        /// What the builder said.
        reason: String,
    },
}

/// naast's id `id` as an identifier (`urn:ietf:rfc:3986`, `urn:uuid:…`).
pub(crate) fn uuid_identifier(
    id: impl std::fmt::Display,
) -> Result<fhir_sdk::r4b::types::Identifier, MapError> {
    fhir_sdk::r4b::types::Identifier::builder()
        .system(UUID_SYSTEM.to_owned())
        .value(format!("urn:uuid:{id}"))
        .build()
        .map_err(|e| MapError::build("Identifier", e))
}

/// A `meta` claiming `profile`.
pub(crate) fn profiled(profile: &str) -> Result<fhir_sdk::r4b::types::Meta, MapError> {
    fhir_sdk::r4b::types::Meta::builder()
        .profile(vec![Some(profile.to_owned())])
        .build()
        .map_err(|e| MapError::build("Meta", e))
}

impl MapError {
    fn build(resource: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Build {
            resource,
            reason: error.to_string(),
        }
    }
}

/// Every resource of `household` mapped so far, as it stands on `today`: members, the household,
/// the network, plans, goals, agreements, indications, consents. Members removed from the
/// record are kept (inactive), as their history is; a relative of a household without a
/// client has no patient to relate to and is left out.
pub fn household_resources(
    household: HouseholdId,
    state: &Household,
    today: time::Date,
) -> Result<Vec<Resource>, MapError> {
    let mut resources = members::resources(household, state)?;
    resources.push(household::group(household, state)?.into());
    resources.push(network::care_team(household, state)?.into());
    for (id, plan) in &state.plans {
        resources.push(plans::care_plan(household, state, *id, plan)?.into());
    }
    for (id, goal) in &state.goals {
        resources.push(goals::goal(household, state, *id, goal)?.into());
    }
    for (id, agreement) in &state.agreements {
        resources.push(agreements::care_plan(household, state, *id, agreement, today)?.into());
        resources.push(tasks::task(household, state, *id, agreement)?.into());
    }
    for (id, indication) in &state.indications {
        resources.push(indications::coverage(household, state, *id, indication)?.into());
    }
    for (id, grant) in &state.grants {
        resources.push(consent::consent(household, state, *id, grant, today)?.into());
    }
    Ok(resources)
}

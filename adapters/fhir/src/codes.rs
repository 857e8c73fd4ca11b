//! naast's own CodeSystems: the vocabularies of the domain that no national code system covers,
//! with their stable wire names as codes and the Dutch terms the families and supporters use as
//! displays.

use crate::{CANONICAL, MapError};
use fhir_sdk::r4b::codes::{CodeSystemContentMode, PublicationStatus};
use fhir_sdk::r4b::resources::{
    CodeSystem, CodeSystemConcept, ValueSet, ValueSetCompose, ValueSetComposeInclude,
};
use fhir_sdk::r4b::types::{CodeableConcept, Coding};
use naast_domain::vocab::{
    AccessScope, ContactKind, FundingDomain, IndicationKind, LifeDomain, PlanKind, SupporterKind,
    SupporterTask,
};

/// The [`Vocabulary::CarePlanKind`] of a plan.
pub const PLAN: &str = "plan";
/// The [`Vocabulary::CarePlanKind`] of an agreement.
pub const AGREEMENT: &str = "agreement";

/// One of naast's vocabularies as a CodeSystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vocabulary {
    /// Leefgebieden.
    LifeDomain,
    /// Financieringsdomeinen: the care laws and schemes.
    FundingDomain,
    /// Soorten cliëntondersteuners, by pilot.
    SupporterKind,
    /// The 18 tasks of the specialised client supporter.
    SupporterTask,
    /// Soorten plannen.
    PlanKind,
    /// Soorten contacten in het netwerk.
    ContactKind,
    /// What a `CarePlan` of naast holds: a plan or an agreement (afspraak).
    CarePlanKind,
    /// Soorten indicaties en beschikkingen.
    IndicationKind,
    /// Wat een toestemming toestaat.
    AccessScope,
}

impl Vocabulary {
    /// Every vocabulary.
    pub const ALL: [Vocabulary; 9] = [
        Vocabulary::LifeDomain,
        Vocabulary::FundingDomain,
        Vocabulary::SupporterKind,
        Vocabulary::SupporterTask,
        Vocabulary::PlanKind,
        Vocabulary::ContactKind,
        Vocabulary::CarePlanKind,
        Vocabulary::IndicationKind,
        Vocabulary::AccessScope,
    ];

    /// The CodeSystem's id and the last part of its canonical URL.
    pub fn id(self) -> &'static str {
        match self {
            Vocabulary::LifeDomain => "leefgebied",
            Vocabulary::FundingDomain => "financieringsdomein",
            Vocabulary::SupporterKind => "ondersteunerssoort",
            Vocabulary::SupporterTask => "ondersteunerstaak",
            Vocabulary::PlanKind => "plansoort",
            Vocabulary::ContactKind => "contactsoort",
            Vocabulary::CarePlanKind => "zorgplansoort",
            Vocabulary::IndicationKind => "indicatiesoort",
            Vocabulary::AccessScope => "toegangsrecht",
        }
    }

    /// Its canonical URL: the `system` of its codings.
    pub fn system(self) -> String {
        format!("{CANONICAL}/CodeSystem/{}", self.id())
    }

    /// The canonical URL of the value set of all its codes.
    pub fn value_set(self) -> String {
        format!("{CANONICAL}/ValueSet/{}", self.id())
    }

    fn title(self) -> &'static str {
        match self {
            Vocabulary::LifeDomain => "Leefgebieden",
            Vocabulary::FundingDomain => "Financieringsdomeinen (zorgwetten en regelingen)",
            Vocabulary::SupporterKind => "Soorten cliëntondersteuners",
            Vocabulary::SupporterTask => "Taken van de specialistische cliëntondersteuner",
            Vocabulary::PlanKind => "Soorten plannen",
            Vocabulary::ContactKind => "Soorten contacten in het netwerk",
            Vocabulary::CarePlanKind => "Plan of afspraak",
            Vocabulary::IndicationKind => "Soorten indicaties en beschikkingen",
            Vocabulary::AccessScope => "Wat een toestemming van het gezin toestaat",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Vocabulary::LifeDomain => "LifeDomain",
            Vocabulary::FundingDomain => "FundingDomain",
            Vocabulary::SupporterKind => "SupporterKind",
            Vocabulary::SupporterTask => "SupporterTask",
            Vocabulary::PlanKind => "PlanKind",
            Vocabulary::ContactKind => "ContactKind",
            Vocabulary::CarePlanKind => "CarePlanKind",
            Vocabulary::IndicationKind => "IndicationKind",
            Vocabulary::AccessScope => "AccessScope",
        }
    }

    /// Its codes and displays, in the domain's order.
    pub fn concepts(self) -> Vec<(&'static str, &'static str)> {
        fn all<T: Copy>(
            values: &[T],
            wire: fn(T) -> &'static str,
            display: fn(T) -> &'static str,
        ) -> Vec<(&'static str, &'static str)> {
            values.iter().map(|v| (wire(*v), display(*v))).collect()
        }
        match self {
            Vocabulary::LifeDomain => all(
                LifeDomain::ALL,
                LifeDomain::wire_name,
                LifeDomain::display_name,
            ),
            Vocabulary::FundingDomain => all(
                FundingDomain::ALL,
                FundingDomain::wire_name,
                FundingDomain::display_name,
            ),
            Vocabulary::SupporterKind => all(
                SupporterKind::ALL,
                SupporterKind::wire_name,
                SupporterKind::display_name,
            ),
            Vocabulary::SupporterTask => all(
                SupporterTask::ALL,
                SupporterTask::wire_name,
                SupporterTask::display_name,
            ),
            Vocabulary::PlanKind => all(PlanKind::ALL, PlanKind::wire_name, PlanKind::display_name),
            Vocabulary::ContactKind => all(
                ContactKind::ALL,
                ContactKind::wire_name,
                ContactKind::display_name,
            ),
            Vocabulary::CarePlanKind => vec![(PLAN, "plan"), (AGREEMENT, "afspraak")],
            Vocabulary::IndicationKind => all(
                IndicationKind::ALL,
                IndicationKind::wire_name,
                IndicationKind::display_name,
            ),
            Vocabulary::AccessScope => all(
                AccessScope::ALL,
                AccessScope::wire_name,
                AccessScope::display_name,
            ),
        }
    }
}

/// The vocabulary as a complete CodeSystem resource.
pub fn code_system(vocabulary: Vocabulary) -> Result<CodeSystem, MapError> {
    let concepts = vocabulary
        .concepts()
        .into_iter()
        .map(|(code, display)| {
            CodeSystemConcept::builder()
                .code(code.to_owned())
                .display(display.to_owned())
                .build()
                .map(Some)
                .map_err(|e| MapError::build("CodeSystem.concept", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    CodeSystem::builder()
        .id(vocabulary.id().to_owned())
        .url(vocabulary.system())
        .name(vocabulary.name().to_owned())
        .title(vocabulary.title().to_owned())
        .status(PublicationStatus::Active)
        .language("nl".to_owned())
        .case_sensitive(true)
        .content(CodeSystemContentMode::Complete)
        .count(u32::try_from(concepts.len()).unwrap_or(u32::MAX))
        .concept(concepts)
        .build()
        .map_err(|e| MapError::build("CodeSystem", e))
}

/// The value set of every code of `vocabulary` (what a coded element bound to it may hold), at
/// `https://naast.nl/fhir/ValueSet/{id}`.
pub fn value_set(vocabulary: Vocabulary) -> Result<ValueSet, MapError> {
    let failed = |e| MapError::build("ValueSet", e);
    ValueSet::builder()
        .id(vocabulary.id().to_owned())
        .url(vocabulary.value_set())
        .name(vocabulary.name().to_owned())
        .title(vocabulary.title().to_owned())
        .status(PublicationStatus::Active)
        .language("nl".to_owned())
        .immutable(false)
        .compose(
            ValueSetCompose::builder()
                .include(vec![Some(
                    ValueSetComposeInclude::builder()
                        .system(vocabulary.system())
                        .build()
                        .map_err(failed)?,
                )])
                .build()
                .map_err(failed)?,
        )
        .build()
        .map_err(failed)
}

/// A coding of `code` (with its display) from `vocabulary`.
pub fn coding(vocabulary: Vocabulary, code: &str, display: &str) -> Result<Coding, MapError> {
    Coding::builder()
        .system(vocabulary.system())
        .code(code.to_owned())
        .display(display.to_owned())
        .build()
        .map_err(|e| MapError::build("Coding", e))
}

/// A concept of one or more codes (`vocabulary`, wire name, display), its text the first display.
pub fn concept(codes: &[(Vocabulary, &str, &str)]) -> Result<CodeableConcept, MapError> {
    let codings = codes
        .iter()
        .map(|(vocabulary, code, display)| coding(*vocabulary, code, display).map(Some))
        .collect::<Result<Vec<_>, _>>()?;
    let mut concept = CodeableConcept::builder()
        .coding(codings)
        .build()
        .map_err(|e| MapError::build("CodeableConcept", e))?;
    concept.text = codes.first().map(|(_, _, display)| (*display).to_owned());
    Ok(concept)
}

/// A life domain as a concept.
pub fn life_domain(domain: LifeDomain) -> Result<CodeableConcept, MapError> {
    concept(&[(
        Vocabulary::LifeDomain,
        domain.wire_name(),
        domain.display_name(),
    )])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;

    #[test]
    fn every_vocabulary_is_a_complete_code_system_with_dutch_displays() {
        for vocabulary in Vocabulary::ALL {
            let system = code_system(vocabulary).unwrap();
            let json = serde_json::to_value(&system).unwrap();
            assert_eq!(json["resourceType"], "CodeSystem");
            assert_eq!(json["content"], "complete");
            assert_eq!(json["url"], vocabulary.system());
            let concepts = json["concept"].as_array().unwrap();
            assert_eq!(concepts.len(), vocabulary.concepts().len());
            assert_eq!(json["count"], concepts.len());
        }
        let domains = serde_json::to_value(code_system(Vocabulary::LifeDomain).unwrap()).unwrap();
        assert!(
            domains["concept"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["code"] == "housing" && c["display"] == "wonen")
        );
        let tasks = code_system(Vocabulary::SupporterTask).unwrap();
        assert_eq!(tasks.concept.len(), 18, "the 18 supporter tasks");
    }
}

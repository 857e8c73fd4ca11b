//! The `CapabilityStatement` at `/fhir/metadata`: what the facade serves, and nothing more.

use crate::outcome::Failure;
use crate::resources::Kind;
use fhir_sdk::r4b::codes::ResourceType;
use fhir_sdk::r4b::codes::{
    CapabilityStatementKind, FHIRVersion, PublicationStatus, ResourceVersionPolicy,
    RestfulCapabilityMode, SearchParamType,
};
use fhir_sdk::r4b::resources::{
    CapabilityStatement, CapabilityStatementImplementation, CapabilityStatementRest,
    CapabilityStatementRestResource, CapabilityStatementRestResourceInteraction,
    CapabilityStatementRestResourceOperation, CapabilityStatementRestResourceSearchParam,
    CapabilityStatementRestSecurity, CapabilityStatementSoftware,
};
use fhir_sdk::r4b::types::{CodeableConcept, Coding};

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::internal("building the CapabilityStatement", e)
}

/// The search parameters of `kind`, with their types and what they do here.
fn search_params(kind: Kind) -> Vec<(&'static str, SearchParamType, &'static str)> {
    use SearchParamType as T;
    let mut params = vec![
        (
            "_id",
            T::Token,
            "The resource's id (names the household searched in).",
        ),
        (
            "identifier",
            T::Token,
            "urn:ietf:rfc:3986|urn:uuid:… (names the household searched in).",
        ),
        (
            "_lastUpdated",
            T::Date,
            "When the household's record last changed (versions are household revisions).",
        ),
    ];
    let subject = (
        "patient",
        T::Reference,
        "Patient/… (or a Group, the household): the household searched in.",
    );
    match kind {
        Kind::Goal => params.extend([
            subject,
            ("subject", T::Reference, "Patient/… or Group/…."),
            ("lifecycle-status", T::Token, "Goal.lifecycleStatus."),
            ("category", T::Token, "Life domain (leefgebied)."),
        ]),
        Kind::CarePlan => params.extend([
            subject,
            ("subject", T::Reference, "Patient/… or Group/…."),
            ("status", T::Token, "CarePlan.status."),
            (
                "category",
                T::Token,
                "Plan or agreement, and the plan kind.",
            ),
            (
                "date",
                T::Date,
                "Days the period covers: [eq|gt|ge|lt|le]YYYY-MM-DD (an open end runs on).",
            ),
        ]),
        Kind::CareTeam => params.extend([
            subject,
            ("subject", T::Reference, "Patient/… or Group/…."),
            ("status", T::Token, "CareTeam.status."),
            ("category", T::Token, "CareTeam.category."),
        ]),
        Kind::Coverage => params.extend([subject, ("status", T::Token, "Coverage.status.")]),
        Kind::Consent => params.extend([
            subject,
            ("status", T::Token, "Consent.status."),
            ("category", T::Token, "Consent.category."),
        ]),
        Kind::RelatedPerson => params.push(subject),
        Kind::Communication => {
            params.extend([subject, ("subject", T::Reference, "Patient/… or Group/….")])
        }
        Kind::Provenance => {
            return vec![(
                "target",
                T::Reference,
                "The resource whose versions' provenance is read (Type/id); required.",
            )];
        }
        Kind::Task => params.extend([
            subject,
            (
                "status",
                T::Token,
                "requested (a proposal awaiting an answer), accepted, rejected.",
            ),
        ]),
        Kind::Patient | Kind::Group => {}
    }
    params
}

/// The statement, with `base` as the implementation's address.
pub fn statement(base: &str) -> Result<CapabilityStatement, Failure> {
    let interaction = |code: &str, documentation: &str| {
        CapabilityStatementRestResourceInteraction::builder()
            .code(code.to_owned())
            .documentation(documentation.to_owned())
            .build()
            .map(Some)
            .map_err(failed)
    };
    let everything = CapabilityStatementRestResourceOperation::builder()
        .name("everything".to_owned())
        .definition("http://hl7.org/fhir/OperationDefinition/Patient-everything".to_owned())
        .documentation(
            "Everything of the household the caller may see, as one searchset Bundle.".to_owned(),
        )
        .build()
        .map(Some)
        .map_err(failed)?;
    let mut resources = Vec::new();
    for kind in Kind::ALL
        .into_iter()
        .chain([Kind::Communication, Kind::Provenance])
    {
        let params = search_params(kind)
            .into_iter()
            .map(|(name, r#type, documentation)| {
                CapabilityStatementRestResourceSearchParam::builder()
                    .name(name.to_owned())
                    .r#type(r#type)
                    .documentation(documentation.to_owned())
                    .build()
                    .map(Some)
                    .map_err(failed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let r#type: ResourceType = kind.name().parse().map_err(failed)?;
        let mut resource = CapabilityStatementRestResource::builder()
            .r#type(r#type)
            .interaction(vec![
                interaction("read", "The resource as its household stands now.")?,
                interaction("vread", "The resource at a revision of its household.")?,
                interaction(
                    "history-instance",
                    "The revisions of the household at which the resource changed.",
                )?,
                interaction(
                    "search-type",
                    "Within one household, named by patient, subject, _id or identifier.",
                )?,
            ])
            .versioning(ResourceVersionPolicy::Versioned)
            .read_history(true)
            .update_create(false)
            .search_param(params)
            .build()
            .map_err(failed)?;
        match kind {
            // Notes and entries never change: read and search.
            Kind::Communication => resource.interaction.retain(|i| {
                i.as_ref()
                    .is_some_and(|i| i.code == "read" || i.code == "search-type")
            }),
            // Searched by its target only.
            Kind::Provenance => resource
                .interaction
                .retain(|i| i.as_ref().is_some_and(|i| i.code == "search-type")),
            _ => {}
        }
        if matches!(kind, Kind::Communication | Kind::Provenance) {
            resource.read_history = Some(false);
        }
        if matches!(kind, Kind::CarePlan | Kind::Task) {
            let (create, update) = match kind {
                Kind::CarePlan => (
                    "A care provider proposes an agreement (ProposeAgreement); the identifier \
                     (urn:uuid) it carries is the agreement's id, so a retry does nothing twice; \
                     If-None-Exist on that identifier is honoured.",
                    "An agreement's terms change (AmendAgreement); If-Match names the household \
                     revision read (412 when it moved on).",
                ),
                _ => (
                    "Answers a proposed agreement: status accepted or rejected (with \
                     statusReason.text), focus CarePlan/{id}.",
                    "The same, at Task/{id of the agreement}.",
                ),
            };
            resource.interaction.push(interaction("create", create)?);
            resource.interaction.push(interaction("update", update)?);
            resource.conditional_create = Some(kind == Kind::CarePlan);
        }
        if matches!(kind, Kind::Group | Kind::Patient) {
            resource.operation = vec![everything.clone()];
        }
        resources.push(Some(resource));
    }
    let param = |name: &str, r#type, documentation: &str| {
        CapabilityStatementRestResourceSearchParam::builder()
            .name(name.to_owned())
            .r#type(r#type)
            .documentation(documentation.to_owned())
            .build()
            .map(Some)
            .map_err(failed)
    };
    let audit_events = CapabilityStatementRestResource::builder()
        .r#type(ResourceType::AuditEvent)
        .documentation(
            "The family's access log (NEN 7513), for the household's owners; reading it is \
             recorded too."
                .to_owned(),
        )
        .interaction(vec![interaction(
            "search-type",
            "Oldest first, paged by a cursor later records do not move.",
        )?])
        .search_param(vec![
            param("entity", SearchParamType::Reference, "Group/{household}.")?,
            param(
                "patient",
                SearchParamType::Reference,
                "Patient/{client}: their household's log.",
            )?,
            param(
                "date",
                SearchParamType::Date,
                "geYYYY-MM-DD and ltYYYY-MM-DD (UTC days).",
            )?,
        ])
        .build()
        .map_err(failed)?;
    resources.push(Some(audit_events));
    let operation = |name: &str, definition: &str, documentation: &str| {
        CapabilityStatementRestResourceOperation::builder()
            .name(name.to_owned())
            .definition(definition.to_owned())
            .documentation(documentation.to_owned())
            .build()
            .map(Some)
            .map_err(failed)
    };
    let subscriptions = CapabilityStatementRestResource::builder()
        .r#type(ResourceType::Subscription)
        .supported_profile(vec![Some(
            "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
                .to_owned(),
        )])
        .documentation(format!(
            "Subscriptions Backport (R5 topics on R4): topic {}, one household per subscription              (backport-filter-criteria Group?_id= or Patient?_id=), rest-hook, id-only or empty.              Notifications are numbered without gaps (events-since-subscription-start).",
            crate::subscriptions::TOPIC
        ))
        .interaction(vec![
            interaction("create", "For whoever may read the household's timeline.")?,
            interaction("read", "Its owner's only.")?,
            interaction("delete", "Turns it off.")?,
        ])
        .operation(vec![
            operation(
                "status",
                "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
                "Its SubscriptionStatus.",
            )?,
            operation(
                "events",
                "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
                "Its events again, by number (eventsSinceNumber, eventsUntilNumber).",
            )?,
        ])
        .build()
        .map_err(failed)?;
    resources.push(Some(subscriptions));
    let code_system = CapabilityStatementRestResource::builder()
        .r#type(ResourceType::CodeSystem)
        .interaction(vec![
            interaction("read", "naast's vocabularies, with Dutch display names.")?,
            interaction("search-type", "By url.")?,
        ])
        .search_param(vec![Some(
            CapabilityStatementRestResourceSearchParam::builder()
                .name("url".to_owned())
                .r#type(SearchParamType::Uri)
                .build()
                .map_err(failed)?,
        )])
        .build()
        .map_err(failed)?;
    resources.push(Some(code_system));
    let value_set = CapabilityStatementRestResource::builder()
        .r#type(ResourceType::ValueSet)
        .interaction(vec![
            interaction("read", "All codes of one of naast's CodeSystems.")?,
            interaction("search-type", "By url.")?,
        ])
        .search_param(vec![param(
            "url",
            SearchParamType::Uri,
            "The canonical URL.",
        )?])
        .build()
        .map_err(failed)?;
    resources.push(Some(value_set));
    let security = CapabilityStatementRestSecurity::builder()
        .service(vec![Some(
            CodeableConcept::builder()
                .coding(vec![Some(
                    Coding::builder()
                        .system(
                            "http://terminology.hl7.org/CodeSystem/restful-security-service"
                                .to_owned(),
                        )
                        .code("OAuth".to_owned())
                        .build()
                        .map_err(failed)?,
                )])
                .build()
                .map_err(failed)?,
        )])
        .description(
            "Bearer tokens of the trusted OpenID issuers, as for naast's gRPC API. Every access \
             is decided on the family's consent and recorded in the NEN 7513 audit log."
                .to_owned(),
        )
        .build()
        .map_err(failed)?;
    let rest = CapabilityStatementRest::builder()
        .mode(RestfulCapabilityMode::Server)
        .security(security)
        .resource(resources)
        .build()
        .map_err(failed)?;
    let today = naast_domain::calendar::dutch_today();
    CapabilityStatement::builder()
        .status(PublicationStatus::Active)
        .date(fhir_sdk::DateTime::Date(fhir_sdk::Date::Date(today)))
        .publisher("naast".to_owned())
        .kind(CapabilityStatementKind::Instance)
        .software(
            CapabilityStatementSoftware::builder()
                .name("naast".to_owned())
                .version(env!("CARGO_PKG_VERSION").to_owned())
                .build()
                .map_err(failed)?,
        )
        .implementation(
            CapabilityStatementImplementation::builder()
                .description(
                    "naast: one shared timeline of care plans, goals and agreements".to_owned(),
                )
                .url(base.to_owned())
                .build()
                .map_err(failed)?,
        )
        .fhir_version(FHIRVersion::N401)
        .format(vec![
            Some("json".to_owned()),
            Some("application/fhir+json".to_owned()),
        ])
        .rest(vec![Some(rest)])
        .build()
        .map_err(failed)
}

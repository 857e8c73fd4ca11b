//! Writes by care providers' systems: an agreement proposed (`POST CarePlan`) or amended
//! (`PUT CarePlan/{id}`), and a proposal answered (`POST Task`, `PUT Task/{id}`). Each becomes
//! the same domain command as over gRPC (`ProposeAgreement`, `AmendAgreement`,
//! `AcceptAgreement`, `RejectAgreement`), executed, authorised and audited by the application
//! layer; a refused or invalid write writes nothing.
//!
//! - `If-Match: W/"n"` is the household revision the writer saw (`expected_revision`): `412`
//!   when the household moved on.
//! - A create names its agreement by its identifier (`urn:ietf:rfc:3986|urn:uuid:…`, chosen by
//!   the writer), so a retry is the same command under the same request id and is answered with
//!   the first outcome; `If-None-Exist: identifier=…` answers `200` with the existing agreement
//!   instead of writing.

use crate::handlers::{base, id_of, json, kind_of, quote, stamp};
use crate::outcome::Failure;
use crate::resources::{self, Kind, Sight};
use crate::{FHIR_JSON, Facade};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_sdk::r4b::codes::IssueType;
use fhir_sdk::r4b::resources::Resource;
use naast_app::auth::caller::Calling;
use naast_app::households::{AppError, CommandContext};
use naast_domain::ids::{AgreementId, HouseholdId};
use naast_domain::{Command, DomainError};
use naast_fhir::inbound::{self, Invalid};
use uuid::Uuid;

/// Largest resource accepted: an agreement is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The reason recorded with an amendment written over FHIR.
const AMENDED: &str = "gewijzigd via FHIR";

type Answer = Result<Response, Failure>;

/// `POST /fhir/{kind}`.
pub async fn create(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    body: Body,
) -> Answer {
    let kind = writable(kind_of(&kind)?)?;
    let resource = resource_of(&headers, body, kind).await?;
    match resource {
        Resource::CarePlan(care_plan) => {
            let agreement =
                inbound::naast_id(&care_plan.identifier).map_or_else(AgreementId::new, AgreementId);
            if let Some(condition) = headers.get("if-none-exist") {
                let named = if_none_exist(condition)?;
                if named != agreement.0 {
                    return Err(Failure::bad_request(
                        "If-None-Exist names another identifier than the CarePlan carries",
                    )
                    .at("If-None-Exist"));
                }
                if let Some(existing) = facade.existing(&calling, &headers, agreement).await? {
                    return Ok(existing);
                }
            }
            let (anchor_kind, anchor) = subject_of(&care_plan.subject)?;
            let household = facade
                .household_holding(&calling, anchor_kind, anchor)
                .await?;
            let terms = inbound::agreement_terms(&care_plan, None).map_err(invalid)?;
            let command = Command::ProposeAgreement { agreement, terms };
            let request = Uuid::new_v5(&agreement.0, b"fhir:create CarePlan");
            facade
                .write(
                    &calling,
                    &headers,
                    household,
                    command,
                    request,
                    Kind::CarePlan,
                    agreement,
                )
                .await
                .map(|(response, replayed)| {
                    // A retry of a create that was done: the first outcome, not a new resource.
                    if replayed {
                        response
                    } else {
                        with_status(response, StatusCode::CREATED)
                    }
                })
        }
        Resource::Task(task) => {
            let answer = inbound::response(&task).map_err(invalid)?;
            facade.answer(&calling, &headers, answer, true).await
        }
        _ => Err(not_writable(kind)),
    }
}

/// `PUT /fhir/{kind}/{id}`.
pub async fn update(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let (kind, id) = (writable(kind_of(&kind)?)?, id_of(&id)?);
    let resource = resource_of(&headers, body, kind).await?;
    let body_id = resource.as_base_resource().id().clone().unwrap_or_default();
    if body_id != id.to_string() {
        return Err(Failure::bad_request(format!(
            "the resource's id {} is not the id in the URL",
            quote(&body_id)
        ))
        .at(format!("{}.id", kind.name())));
    }
    match resource {
        Resource::CarePlan(care_plan) => {
            let household = facade.household_holding(&calling, kind, id).await?;
            let agreement = AgreementId(id);
            let current = facade
                .households
                .inspect(household, |state, _| {
                    if state.plans.contains_key(&naast_domain::ids::PlanId(id)) {
                        return Err(Failure::new(
                            StatusCode::METHOD_NOT_ALLOWED,
                            IssueType::NotSupported,
                            "plans are not written over FHIR; only agreements are",
                        ));
                    }
                    Ok(state.agreements.get(&agreement).map(|a| a.terms.clone()))
                })
                .await??;
            // Whether it exists is decided with the command, after the access decision.
            let terms = inbound::agreement_terms(&care_plan, current.as_ref()).map_err(invalid)?;
            let command = Command::AmendAgreement {
                agreement,
                terms,
                reason: AMENDED.to_owned(),
            };
            // An update is not idempotent by request id (the same body twice is two
            // amendments); If-Match makes a retry safe.
            facade
                .write(
                    &calling,
                    &headers,
                    household,
                    command,
                    Uuid::now_v7(),
                    kind,
                    agreement,
                )
                .await
                .map(|(response, _)| response)
        }
        Resource::Task(task) => {
            let answer = inbound::response(&task).map_err(invalid)?;
            if answer.agreement.0 != id {
                return Err(Failure::bad_request(
                    "a task answers the agreement of its own id: focus CarePlan/{id}",
                )
                .at("Task.focus"));
            }
            facade.answer(&calling, &headers, answer, false).await
        }
        _ => Err(not_writable(kind)),
    }
}

impl Facade {
    /// Executes the answer to a proposal.
    async fn answer(
        &self,
        calling: &Calling,
        headers: &HeaderMap,
        answer: inbound::Response,
        created: bool,
    ) -> Answer {
        let agreement = answer.agreement;
        let household = self
            .household_holding(calling, Kind::CarePlan, agreement.0)
            .await?;
        let (command, request) = match answer.rejection {
            None => (
                Command::AcceptAgreement { agreement },
                Uuid::new_v5(&agreement.0, b"fhir:accept"),
            ),
            Some(reason) => (
                Command::RejectAgreement { agreement, reason },
                Uuid::new_v5(&agreement.0, b"fhir:reject"),
            ),
        };
        let (response, replayed) = self
            .write(
                calling,
                headers,
                household,
                command,
                request,
                Kind::Task,
                agreement,
            )
            .await?;
        Ok(if created && !replayed {
            with_status(response, StatusCode::CREATED)
        } else {
            response
        })
    }

    /// Executes `command` in `household` for `calling`, and answers with the resource
    /// `kind`/`agreement` as it stands after it (when the caller may see it), its version and
    /// its address; and whether the command had been executed before.
    #[allow(clippy::too_many_arguments)] // one write's parts, each named
    async fn write(
        &self,
        calling: &Calling,
        headers: &HeaderMap,
        household: HouseholdId,
        command: Command,
        request: Uuid,
        kind: Kind,
        agreement: AgreementId,
    ) -> Result<(Response, bool), Failure> {
        let context = CommandContext {
            calling: calling.clone(),
            request_id: Some(request),
            expected_revision: if_match(headers)?,
            actor: match calling {
                Calling::Unguarded => None,
                Calling::Caller(caller) => Some(caller.principal.identity.subject.clone()),
            },
            happened_on: None,
        };
        let executed = self
            .households
            .execute(household, command, &context)
            .await
            .map_err(write_error)?;
        let today = naast_domain::calendar::dutch_today();
        // The writer's own write, shown as far as they may see it (no second audit record: the
        // command's is the record of this call).
        let shown = self
            .households
            .inspect(household, |state, _| {
                let sight = Sight::of(calling, state);
                resources::one(household, state, kind, agreement.0, &sight, today).ok()
            })
            .await
            .map_err(Failure::from)?;
        let at = self.recorded_at(household, Some(executed.revision))?;
        let location = format!(
            "{}/{}/{}/_history/{}",
            base(headers),
            kind.name(),
            agreement.0,
            executed.revision
        );
        let mut response = match shown {
            Some(resource) => json(StatusCode::OK, &stamp(resource, executed.revision, at)),
            None => StatusCode::OK.into_response(),
        };
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, location.clone());
            headers.insert(header::CONTENT_LOCATION, location);
        }
        if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", executed.revision)) {
            headers.insert(header::ETAG, etag);
        }
        Ok((response, executed.replayed))
    }

    /// The agreement `agreement` when it exists already (for `If-None-Exist`): its `CarePlan`,
    /// read as any read (decided and recorded).
    async fn existing(
        &self,
        calling: &Calling,
        headers: &HeaderMap,
        agreement: AgreementId,
    ) -> Result<Option<Response>, Failure> {
        let Some(household) = self
            .projections
            .household_holding(agreement.0)
            .map_err(|e| Failure::internal("the read models failed", e))?
        else {
            return Ok(None);
        };
        let today = naast_domain::calendar::dutch_today();
        let (resource, revision) = self
            .decided(
                calling,
                household,
                Kind::CarePlan,
                agreement.0,
                |state, revision, sight| {
                    resources::one(household, state, Kind::CarePlan, agreement.0, sight, today)
                        .map(|r| (r, revision))
                },
            )
            .await?;
        let at = self.recorded_at(household, revision)?;
        let version = revision.unwrap_or(0);
        let mut response = json(StatusCode::OK, &stamp(resource, version, at));
        if let Ok(location) = HeaderValue::from_str(&format!(
            "{}/CarePlan/{}/_history/{version}",
            base(headers),
            agreement.0
        )) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(Some(response))
    }
}

/// The resource of a write's body: FHIR JSON, at most [`MAX_BODY_BYTES`], of the type the URL
/// names, with nothing FHIR does not define.
async fn resource_of(headers: &HeaderMap, body: Body, kind: Kind) -> Result<Resource, Failure> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        media.as_str(),
        "application/fhir+json" | "application/json" | "application/json+fhir"
    ) {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!(
                "Content-Type {}: send {}",
                quote(&media),
                FHIR_JSON.split(';').next().unwrap_or_default()
            ),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueType::TooLong,
                format!("a resource written here is at most {MAX_BODY_BYTES} bytes"),
            )
        })?;
    let resource = inbound::parse(&bytes).map_err(invalid)?;
    let sent = resource.resource_type().to_string();
    if sent != kind.name() {
        return Err(Failure::bad_request(format!(
            "a {} was sent to /{}",
            quote(&sent),
            kind.name()
        ))
        .at("resourceType"));
    }
    Ok(resource)
}

/// The household a `CarePlan`'s subject names: a client (`Patient/{id}`) or the household
/// itself (`Group/{id}`).
fn subject_of(subject: &fhir_sdk::r4b::types::Reference) -> Result<(Kind, Uuid), Failure> {
    let text = subject.reference.as_deref().unwrap_or_default();
    let parsed = text.split_once('/').and_then(|(kind, id)| {
        let kind = Kind::parse(kind).filter(|k| matches!(k, Kind::Patient | Kind::Group))?;
        Some((kind, id_of(id).ok()?))
    });
    parsed.ok_or_else(|| {
        Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::Invalid,
            "the subject is Patient/{id} (a client) or Group/{id} (the household)",
        )
        .at("CarePlan.subject")
    })
}

/// The agreement id an `If-None-Exist` condition names: only `identifier=` is understood.
fn if_none_exist(condition: &HeaderValue) -> Result<Uuid, Failure> {
    let bad = || {
        Failure::bad_request(
            "If-None-Exist: give identifier=urn:ietf:rfc:3986|urn:uuid:… (the CarePlan's own)",
        )
        .at("If-None-Exist")
    };
    let text = condition.to_str().map_err(|_| bad())?;
    let text = text
        .replace("%7C", "|")
        .replace("%7c", "|")
        .replace("%3A", ":");
    let value = text.strip_prefix("identifier=").ok_or_else(bad)?;
    let value = value
        .strip_prefix(&format!("{}|", naast_fhir::UUID_SYSTEM))
        .unwrap_or(value);
    value
        .strip_prefix("urn:uuid:")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(bad)
}

/// The household revision `If-Match` names (`W/"n"` or `"n"`), if given.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Failure> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let inner = text.strip_prefix("W/").unwrap_or(text);
    inner
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            Failure::bad_request(format!(
                "If-Match {}: give the version read, as W/\"n\"",
                quote(text)
            ))
            .at("If-Match")
        })
}

/// A resource that cannot be taken in, as answered: `400` when malformed, `422` when well-formed
/// but not acceptable.
fn invalid(e: Invalid) -> Failure {
    let status = if e.malformed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let code = if e.malformed {
        IssueType::Structure
    } else {
        IssueType::Invalid
    };
    let mut failure = Failure::new(status, code, e.to_string());
    if !e.expression.is_empty() {
        failure = failure.at(e.expression);
    }
    failure
}

/// A refusal of the domain, with its field named as the FHIR element it came from.
fn write_error(e: AppError) -> Failure {
    let path = match &e {
        AppError::Domain(
            DomainError::InvalidArgument { field, .. }
            | DomainError::NotFound { field, .. }
            | DomainError::AlreadyExists { field, .. },
        ) => Some(inbound::fhir_path(field)),
        _ => None,
    };
    let not_found = matches!(&e, AppError::Domain(DomainError::NotFound { .. }));
    let mut failure = Failure::from(e);
    if not_found {
        // A reference to something the household does not hold: the resource is not
        // acceptable (422), the URL was fine.
        failure.status = StatusCode::UNPROCESSABLE_ENTITY;
        failure.code = IssueType::Invalid;
    }
    match path {
        Some(path) => failure.at(path),
        None => failure,
    }
}

fn writable(kind: Kind) -> Result<Kind, Failure> {
    match kind {
        Kind::CarePlan | Kind::Task => Ok(kind),
        _ => Err(not_writable(kind)),
    }
}

fn not_writable(kind: Kind) -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        format!(
            "{} is read-only here; care providers write agreements (CarePlan) and answer proposals (Task)",
            kind.name()
        ),
    )
}

fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}

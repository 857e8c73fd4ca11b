//! The interactions: read, vread, history, search, `$everything`, and the CodeSystems.

use crate::outcome::Failure;
use crate::resources::{self, Kind, Sight, Unseen};
use crate::{FHIR_JSON, Facade};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_sdk::r4b::codes::{BundleType, HTTPVerb, SearchEntryMode};
use fhir_sdk::r4b::resources::{
    Bundle, BundleEntry, BundleEntryRequest, BundleEntryResponse, BundleEntrySearch, BundleLink,
    Resource,
};
use fhir_sdk::r4b::types::Meta;
use fhir_sdk::time::OffsetDateTime;
use naast_app::auth::caller::Calling;
use naast_domain::Household;
use naast_domain::access::Denied;
use naast_domain::ids::HouseholdId;
use naast_fhir::codes::{self, Vocabulary};
use std::time::Duration;
use uuid::Uuid;

/// Results per page when the caller names no `_count`.
pub(crate) const DEFAULT_COUNT: usize = 50;
/// Most results per page.
const MAX_COUNT: usize = 500;
/// Longest a read waits for the read models to catch up with a write just acknowledged.
const CATCH_UP: Duration = Duration::from_secs(5);
/// What a refusal says when the resource is unknown or the caller may not see its household:
/// the same words either way, so refusals tell nothing about what exists (as over gRPC).
const NO_ACCESS: &str = "no such resource, or no access to it";

type Answer = Result<Response, Failure>;

/// `GET /fhir/metadata`.
pub async fn capabilities(headers: HeaderMap) -> Answer {
    let statement = crate::capability::statement(&base(&headers))?;
    Ok(json(StatusCode::OK, &statement.into()))
}

/// naast's vocabularies as FHIR serves them: each as a CodeSystem, and as a ValueSet of all
/// its codes.
#[derive(Clone, Copy)]
pub enum Terminology {
    /// `CodeSystem`.
    CodeSystem,
    /// `ValueSet`.
    ValueSet,
}

impl Terminology {
    fn name(self) -> &'static str {
        match self {
            Terminology::CodeSystem => "CodeSystem",
            Terminology::ValueSet => "ValueSet",
        }
    }

    fn url(self, vocabulary: Vocabulary) -> String {
        match self {
            Terminology::CodeSystem => vocabulary.system(),
            Terminology::ValueSet => vocabulary.value_set(),
        }
    }

    fn resource(self, vocabulary: Vocabulary) -> Result<Resource, Failure> {
        let mapped = match self {
            Terminology::CodeSystem => codes::code_system(vocabulary).map(Resource::from),
            Terminology::ValueSet => codes::value_set(vocabulary).map(Resource::from),
        };
        mapped.map_err(|e| Failure::internal("mapping a vocabulary", e))
    }
}

/// `GET /fhir/{CodeSystem|ValueSet}/{id}`.
pub async fn terminology(kind: Terminology, Path(id): Path<String>) -> Answer {
    let vocabulary = Vocabulary::ALL
        .into_iter()
        .find(|v| v.id() == id)
        .ok_or_else(|| Failure::not_found(format!("no {} {}", kind.name(), quote(&id))))?;
    Ok(json(StatusCode::OK, &kind.resource(vocabulary)?))
}

/// `GET /fhir/{CodeSystem|ValueSet}[?url=…]`: every one of naast's, or the one with that
/// canonical URL.
pub async fn terminologies(
    kind: Terminology,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Answer {
    let mut url = None;
    for (name, value) in params {
        match name.as_str() {
            "url" => url = Some(value),
            "_format" => {}
            other => return Err(unknown_parameter(other, kind.name())),
        }
    }
    let mut entries = Vec::new();
    for vocabulary in Vocabulary::ALL {
        if url.as_ref().is_none_or(|u| *u == kind.url(vocabulary)) {
            entries.push((
                format!("{}/{}", kind.name(), vocabulary.id()),
                kind.resource(vocabulary)?,
            ));
        }
    }
    let base = base(&headers);
    let total = entries.len();
    let own = format!("{base}/{}", kind.name());
    let bundle = searchset(&base, entries, total, &own, None)?;
    Ok(json(StatusCode::OK, &bundle.into()))
}

/// A method the route does not take (`DELETE`, `PATCH`, a write of a read-only type).
pub async fn method_not_allowed() -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        fhir_sdk::r4b::codes::IssueType::NotSupported,
        "not supported here; see /fhir/metadata for the interactions served",
    )
}

/// Anything else under `/fhir`, and anything outside it.
pub async fn unknown() -> Failure {
    Failure::not_found("no such FHIR interaction here; see /fhir/metadata for what is served")
}

/// `GET /fhir/{kind}/{id}`.
pub async fn read(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    Path((kind, id)): Path<(String, String)>,
) -> Answer {
    let (kind, id) = (kind_of(&kind)?, id_of(&id)?);
    if kind == Kind::Provenance {
        return Err(Failure::not_found(
            "provenance is searched by its target: Provenance?target=Type/id",
        ));
    }
    let household = facade.household_holding(&calling, kind, id).await?;
    let today = naast_domain::calendar::dutch_today();
    let (resource, revision) = facade
        .decided(&calling, household, kind, id, |state, revision, sight| {
            if kind == Kind::Communication {
                let entry = naast_domain::ids::EntryId(id);
                return match facade.communications(household, state, revision, sight, Some(id)) {
                    Ok(found) => match found.into_iter().next() {
                        Some(found) => Ok(Ok((found.resource, revision))),
                        None if state.entries.contains(&entry) => Err(Unseen::Denied(Denied::new(
                            "your access to this household does not show this note",
                        ))),
                        None => Err(Unseen::Missing),
                    },
                    Err(failure) => Ok(Err(failure)),
                };
            }
            resources::one(household, state, kind, id, sight, today).map(|r| Ok((r, revision)))
        })
        .await??;
    let (resource, version) = facade.versioned(household, resource, revision)?;
    Ok(with_version(json(StatusCode::OK, &resource), version))
}

/// `GET /fhir/{kind}/{id}/_history/{version}`: the resource as it stood at that revision of its
/// household (decided on what the caller may see today).
pub async fn vread(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    Path((kind, id, version)): Path<(String, String, String)>,
) -> Answer {
    let (kind, id) = (kind_of(&kind)?, id_of(&id)?);
    let version: u64 = version.parse().map_err(|_| {
        Failure::not_found(format!(
            "version {}: versions are revisions of the household, whole numbers",
            quote(&version)
        ))
    })?;
    let household = facade.household_holding(&calling, kind, id).await?;
    let (sight, current) = facade
        .decided(&calling, household, kind, id, |state, revision, sight| {
            // The resource must exist, and be visible, today.
            let today = naast_domain::calendar::dutch_today();
            resources::one(household, state, kind, id, sight, today)?;
            Ok((sight.clone(), revision))
        })
        .await?;
    if current.is_none_or(|c| version > c) {
        return Err(Failure::not_found(format!(
            "no version {version} of this resource"
        )));
    }
    let mut found = None;
    facade
        .households
        .replay(household, version, |recorded, _, state| {
            if recorded.revision == version {
                let day = naast_projections::recorded_on(recorded);
                found = Some((
                    resources::one(household, state, kind, id, &sight, day),
                    recorded.recorded_at_micros,
                ));
            }
        })?;
    match found {
        Some((Ok(resource), at)) => {
            let resource = stamp(resource, version, at);
            Ok(with_version(json(StatusCode::OK, &resource), (version, at)))
        }
        Some((Err(Unseen::Map(e)), _)) => Err(Failure::internal("mapping a resource", e)),
        Some((Err(Unseen::Denied(d)), _)) => Err(Failure::forbidden(d.reason)),
        _ => Err(Failure::not_found(format!(
            "this resource did not exist yet at version {version}"
        ))),
    }
}

/// `GET /fhir/{kind}/{id}/_history`: every version of the resource, newest first; a version is
/// each revision of the household at which the resource changed.
pub async fn history(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Answer {
    let (kind, id) = (kind_of(&kind)?, id_of(&id)?);
    let mut count = None;
    for (name, value) in &params {
        match name.as_str() {
            "_count" => count = Some(count_of(value)?),
            "_format" => {}
            other => return Err(unknown_parameter(other, "_history")),
        }
    }
    let household = facade.household_holding(&calling, kind, id).await?;
    let (sight, current) = facade
        .decided(&calling, household, kind, id, |state, revision, sight| {
            let today = naast_domain::calendar::dutch_today();
            resources::one(household, state, kind, id, sight, today)?;
            Ok((sight.clone(), revision))
        })
        .await?;
    let mut versions: Vec<(u64, u64, Resource)> = Vec::new();
    facade.changes(household, kind, id, current, &sight, |change| {
        versions.push((change.revision, change.at, change.resource));
    })?;
    let total = versions.len();
    let first = versions.first().map(|(revision, ..)| *revision);
    let base = base(&headers);
    let entries = versions
        .into_iter()
        .rev()
        .take(count.unwrap_or(usize::MAX))
        .map(|(revision, at, resource)| {
            let method = if Some(revision) == first {
                HTTPVerb::Post
            } else {
                HTTPVerb::Put
            };
            let url = format!("{}/{id}", kind.name());
            let created = method == HTTPVerb::Post;
            let request = BundleEntryRequest::builder()
                .method(method)
                .url(url.clone())
                .build()
                .map_err(|e| Failure::internal("building a history entry", e))?;
            let mut response = BundleEntryResponse::builder()
                .status(if created { "201 Created" } else { "200 OK" }.to_owned())
                .etag(format!("W/\"{revision}\""))
                .build()
                .map_err(|e| Failure::internal("building a history entry", e))?;
            response.last_modified = instant(at);
            BundleEntry::builder()
                .full_url(format!("{base}/{url}"))
                .resource(stamp(resource, revision, at))
                .request(request)
                .response(response)
                .build()
                .map(Some)
                .map_err(|e| Failure::internal("building a history entry", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = Bundle::builder()
        .r#type(BundleType::History)
        .total(u32::try_from(total).unwrap_or(u32::MAX))
        .link(vec![Some(link(
            "self",
            format!("{base}/{}/{id}/_history", kind.name()),
        )?)])
        .entry(entries)
        .build()
        .map_err(|e| Failure::internal("building a history", e))?;
    Ok(json(StatusCode::OK, &bundle.into()))
}

/// `GET /fhir/{kind}/{id}/$everything` (on `Group` and `Patient`): everything of the household
/// the caller may see, as one searchset `Bundle`.
pub async fn operation(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    headers: HeaderMap,
    Path((kind, id, operation)): Path<(String, String, String)>,
) -> Answer {
    let (kind, id) = (kind_of(&kind)?, id_of(&id)?);
    if operation != "$everything" || !matches!(kind, Kind::Group | Kind::Patient) {
        return Err(Failure::not_found(format!(
            "no operation {} on {}: $everything is served on Group and Patient",
            quote(&operation),
            kind.name()
        )));
    }
    let household = facade.household_holding(&calling, kind, id).await?;
    let today = naast_domain::calendar::dutch_today();
    let (all, revision) = facade
        .decided(&calling, household, kind, id, |state, revision, sight| {
            resources::one(household, state, kind, id, sight, today)?;
            let mut all = resources::visible(household, state, &Kind::ALL, sight, today)
                .map_err(Unseen::Map)?;
            match facade.communications(household, state, revision, sight, None) {
                Ok(found) => all.extend(
                    found
                        .into_iter()
                        .map(|f| (Kind::Communication, f.id, f.resource)),
                ),
                Err(failure) => return Ok(Err(failure)),
            }
            Ok(Ok((all, revision)))
        })
        .await??;
    let at = facade.recorded_at(household, revision)?;
    let base = base(&headers);
    let total = all.len();
    let entries = all
        .into_iter()
        .map(|(kind, id, resource)| {
            (
                format!("{}/{id}", kind.name()),
                stamp(resource, revision.unwrap_or(0), at),
            )
        })
        .collect();
    let bundle = searchset(
        &base,
        entries,
        total,
        &format!("{base}/{}/{id}/$everything", kind.name()),
        None,
    )?;
    Ok(bundle_json(bundle))
}

/// `GET /fhir/{kind}?…`: a search within one household, named by `patient`, `subject`, `_id`
/// or `identifier`.
pub async fn search(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Answer {
    if kind == "AuditEvent" {
        return crate::access_log::search(&facade, &calling, &headers, &params).await;
    }
    let kind = kind_of(&kind)?;
    if kind == Kind::Provenance {
        return provenance_search(&facade, &calling, &headers, &params).await;
    }
    let search = crate::search::Search::parse(kind, &params)?;
    let (anchor_kind, anchor) = search.anchor().ok_or_else(|| {
        Failure::bad_request(
            "a search runs within one household: name it with patient, subject, _id or identifier",
        )
    })?;
    let household = facade
        .household_holding(&calling, anchor_kind, anchor)
        .await?;
    let today = naast_domain::calendar::dutch_today();
    let (found, revision) = facade
        .decided(
            &calling,
            household,
            kind,
            anchor,
            |state, revision, sight| {
                if kind == Kind::Communication {
                    return Ok(facade
                        .communications(household, state, revision, sight, None)
                        .map(|found| {
                            let all = found
                                .into_iter()
                                .map(|f| (kind, f.id, f.resource))
                                .collect::<Vec<_>>();
                            (all, revision)
                        }));
                }
                resources::visible(household, state, &[kind], sight, today)
                    .map(|all| Ok((all, revision)))
                    .map_err(Unseen::Map)
            },
        )
        .await??;
    let at = facade.recorded_at(household, revision)?;
    let matching: Vec<(Uuid, Resource)> = found
        .into_iter()
        .map(|(_, id, resource)| (id, stamp(resource, revision.unwrap_or(0), at)))
        .filter(|(_, resource)| search.matches(resource, at))
        .collect();
    let total = matching.len();
    let page: Vec<(Uuid, Resource)> = matching
        .into_iter()
        .filter(|(id, _)| search.after.is_none_or(|after| *id > after))
        .take(search.count + 1)
        .collect();
    let base = base(&headers);
    // A next page when there is more after this one (`_count=0` asks only for the total).
    let next = match search.count.checked_sub(1) {
        Some(last) if page.len() > search.count => page
            .get(last)
            .map(|(id, _)| format!("{base}/{}?{}", kind.name(), search.query_after(*id))),
        _ => None,
    };
    let entries = page
        .into_iter()
        .take(search.count)
        .map(|(id, resource)| (format!("{}/{id}", kind.name()), resource))
        .collect();
    let own = format!("{base}/{}?{}", kind.name(), search.query());
    let bundle = searchset(&base, entries, total, &own, next)?;
    Ok(json(StatusCode::OK, &bundle.into()))
}

impl Facade {
    /// The household holding `kind`/`id`. An id no household holds is refused exactly as one
    /// the caller may not see, and recorded, so that refusals say nothing about what exists.
    pub(crate) async fn household_holding(
        &self,
        calling: &Calling,
        kind: Kind,
        id: Uuid,
    ) -> Result<HouseholdId, Failure> {
        let find = || {
            self.projections
                .household_holding(id)
                .map_err(|e| Failure::internal("the read models failed", e))
        };
        if let Some(household) = find()? {
            return Ok(household);
        }
        // A write just acknowledged may not be in the read models yet.
        let head = self.households.log().head();
        if head > 0 && self.projections.checkpoint() < head {
            let _ = self.projections.wait_for(head - 1, CATCH_UP).await;
            if let Some(household) = find()? {
                return Ok(household);
            }
        }
        match calling {
            Calling::Unguarded => Err(Failure::not_found(NO_ACCESS)),
            Calling::Caller(caller) => {
                let mut record = caller.record(naast_app::audit::Outcome::Denied);
                record.objects = vec![format!("{}/{id}", kind.name())];
                record.reason = Some(NO_ACCESS.to_owned());
                if let Some(guard) = &self.guard {
                    guard
                        .auditor
                        .record(&record)
                        .await
                        .map_err(|e| Failure::from(naast_app::households::AppError::Audit(e)))?;
                }
                Err(Failure::forbidden(NO_ACCESS))
            }
        }
    }

    /// Decides the read of `kind`/`id` in `household` (on its current state) and records it;
    /// `f` picks what the caller sees. A resource the household does not hold is `404`, one the
    /// caller may not see is refused and recorded as refused.
    pub(crate) async fn decided<R>(
        &self,
        calling: &Calling,
        household: HouseholdId,
        kind: Kind,
        id: Uuid,
        f: impl FnOnce(&Household, Option<u64>, &Sight) -> Result<R, Unseen>,
    ) -> Result<R, Failure> {
        let (_, seen) = self
            .households
            .guard_read_checked(
                calling,
                household,
                kind.action(),
                vec![format!("{}/{id}", kind.name())],
                |state, revision, _| {
                    let sight = Sight::of(calling, state);
                    match f(state, revision, &sight) {
                        Ok(seen) => Ok(Ok(seen)),
                        Err(Unseen::Denied(denied)) => Err(denied),
                        Err(Unseen::Missing) => Ok(Err(Failure::not_found(format!(
                            "no {} {id} in this household",
                            kind.name()
                        )))),
                        Err(Unseen::Map(e)) => Ok(Err(Failure::internal("mapping a resource", e))),
                    }
                },
            )
            .await
            .map_err(|e| match e {
                naast_app::households::AppError::Denied(reason)
                    if reason == Denied::no_access().reason =>
                {
                    Failure::forbidden(NO_ACCESS)
                }
                e => Failure::from(e),
            })?;
        seen
    }

    /// When the household's revision `revision` was recorded (µs since 1970).
    pub(crate) fn recorded_at(
        &self,
        household: HouseholdId,
        revision: Option<u64>,
    ) -> Result<u64, Failure> {
        let Some(revision) = revision else {
            return Ok(0);
        };
        let event = self
            .households
            .log()
            .read_stream(
                &household.stream_id(),
                revision,
                naast_eventlog::Direction::Forwards,
                1,
            )
            .map_err(|e| Failure::internal("the event log failed", e))?;
        Ok(event.first().map_or(0, |e| e.recorded_at_micros))
    }

    /// `resource` with its version: the household revision it was read at, and when that was.
    fn versioned(
        &self,
        household: HouseholdId,
        resource: Resource,
        revision: Option<u64>,
    ) -> Result<(Resource, (u64, u64)), Failure> {
        let at = self.recorded_at(household, revision)?;
        let version = revision.unwrap_or(0);
        Ok((stamp(resource, version, at), (version, at)))
    }
}

/// `resource` with `meta.versionId` = `version` and `meta.lastUpdated` = `at` (µs since 1970).
pub(crate) fn stamp(mut resource: Resource, version: u64, at: u64) -> Resource {
    let instant = instant(at);
    let meta = resource.as_base_resource_mut().meta_mut();
    match meta {
        Some(meta) => {
            meta.version_id = Some(version.to_string());
            meta.last_updated = instant;
        }
        None => {
            *meta = Meta::builder()
                .version_id(version.to_string())
                .build()
                .ok()
                .map(|mut m| {
                    m.last_updated = instant;
                    m
                });
        }
    }
    resource
}

fn instant(micros: u64) -> Option<fhir_sdk::Instant> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()?;
    // FHIR instants carry at most milliseconds in most clients' parsers.
    let at = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .ok()?;
    Some(fhir_sdk::Instant(at))
}

/// A searchset `Bundle` of `entries` (each with its `Type/id`), `total` matches in all.
pub(crate) fn searchset(
    base: &str,
    entries: Vec<(String, Resource)>,
    total: usize,
    own: &str,
    next: Option<String>,
) -> Result<Bundle, Failure> {
    let failed = |e| Failure::internal("building a Bundle", e);
    let mut links = vec![Some(link("self", own.to_owned())?)];
    if let Some(next) = next {
        links.push(Some(link("next", next)?));
    }
    let entries = entries
        .into_iter()
        .map(|(reference, resource)| {
            BundleEntry::builder()
                .full_url(format!("{base}/{reference}"))
                .resource(resource)
                .search(
                    BundleEntrySearch::builder()
                        .mode(SearchEntryMode::Match)
                        .build()
                        .map_err(failed)?,
                )
                .build()
                .map(Some)
                .map_err(failed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Bundle::builder()
        .r#type(BundleType::Searchset)
        .timestamp(fhir_sdk::Instant(OffsetDateTime::now_utc()))
        .total(u32::try_from(total).unwrap_or(u32::MAX))
        .link(links)
        .entry(entries)
        .build()
        .map_err(failed)
}

fn link(relation: &str, url: String) -> Result<BundleLink, Failure> {
    BundleLink::builder()
        .relation(relation.to_owned())
        .url(url)
        .build()
        .map_err(|e| Failure::internal("building a Bundle link", e))
}

/// The FHIR base the caller reached: `http://{Host}/fhir` (or the scheme a proxy in front says
/// with `X-Forwarded-Proto`).
pub(crate) fn base(headers: &HeaderMap) -> String {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let host = text(header::HOST.as_str())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = match text("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}/fhir")
}

/// Bundles with at least this many entries are serialised on two threads.
const PARALLEL_ENTRIES: usize = 1_000;

/// `bundle` as FHIR JSON (`200`). A large one is serialised in two halves at once, one per core:
/// each half of its entries by the model, then the Bundle's own elements by the model, its
/// `entry` array joined from the halves.
pub(crate) fn bundle_json(mut bundle: Bundle) -> Response {
    if bundle.entry.len() < PARALLEL_ENTRIES {
        return json(StatusCode::OK, &bundle.into());
    }
    let entries = std::mem::take(&mut bundle.entry);
    let (first, second) = entries.split_at(entries.len() / 2);
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| serde_json::to_vec(first));
        (first.join(), serde_json::to_vec(second))
    });
    let head = serde_json::to_vec(&Resource::from(bundle));
    match (head, first, second) {
        (Ok(mut body), Ok(Ok(first)), Ok(second)) if body.ends_with(b"}") => {
            // `{…}` + `,"entry":` + `[a,…` + `,` + `…,z]` + `}`.
            body.pop();
            body.reserve(first.len() + second.len() + 12);
            body.extend_from_slice(b",\"entry\":");
            body.extend_from_slice(first.strip_suffix(b"]").unwrap_or(&first));
            body.push(b',');
            body.extend_from_slice(second.strip_prefix(b"[").unwrap_or(&second));
            body.push(b'}');
            let mut response = (StatusCode::OK, body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            response
        }
        _ => Failure::internal("serialising a Bundle", "a half failed").into_response(),
    }
}

/// `resource` as FHIR JSON with `status`.
pub(crate) fn json(status: StatusCode, resource: &Resource) -> Response {
    match serde_json::to_vec(resource) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            response
        }
        Err(e) => Failure::internal("serialising a resource", e).into_response(),
    }
}

/// `response` with the version headers of (`version`, recorded at µs).
fn with_version(mut response: Response, (version, at): (u64, u64)) -> Response {
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    let modified = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .map(|t| t.replace("+0000", "GMT"))
        .and_then(|t| HeaderValue::from_str(&t).ok());
    if let Some(modified) = modified {
        response
            .headers_mut()
            .insert(header::LAST_MODIFIED, modified);
    }
    response
}

pub(crate) fn kind_of(name: &str) -> Result<Kind, Failure> {
    Kind::parse(name).ok_or_else(|| {
        Failure::not_found(format!(
            "resource type {} is not served here; see /fhir/metadata",
            quote(name)
        ))
    })
}

pub(crate) fn id_of(id: &str) -> Result<Uuid, Failure> {
    match Uuid::parse_str(id) {
        Ok(uuid) if !uuid.is_nil() => Ok(uuid),
        _ => Err(
            Failure::bad_request(format!("id {} is not a naast id (a UUID)", quote(id))).at("id"),
        ),
    }
}

pub(crate) fn count_of(value: &str) -> Result<usize, Failure> {
    value
        .parse::<usize>()
        .ok()
        .filter(|c| *c <= MAX_COUNT)
        .ok_or_else(|| {
            Failure::bad_request(format!(
                "_count {} is not a whole number from 0 to {MAX_COUNT}",
                quote(value)
            ))
            .at("_count")
        })
}

pub(crate) fn unknown_parameter(name: &str, on: &str) -> Failure {
    Failure::bad_request(format!(
        "search parameter {} is not supported on {on}; see /fhir/metadata",
        quote(name)
    ))
    .at(name.chars().take(40).collect::<String>())
}

/// A caller's value quoted back: at most 40 characters.
pub(crate) fn quote(value: &str) -> String {
    let mut quoted: String = value.chars().take(40).collect();
    if quoted.len() < value.len() {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

/// `GET /fhir/Provenance?target=Type/id`: who recorded each version of that resource, decided
/// and recorded as a read of the resource itself.
async fn provenance_search(
    facade: &Facade,
    calling: &Calling,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Answer {
    let mut target = None;
    for (name, value) in params {
        match name.as_str() {
            "_format" | "_total" | "_totalMethod" => {}
            "target" => {
                let parsed = value.split_once('/').and_then(|(kind, id)| {
                    let kind = Kind::parse(kind).filter(|k| *k != Kind::Provenance)?;
                    Some((kind, id_of(id).ok()?))
                });
                target = Some(parsed.ok_or_else(|| {
                    Failure::bad_request(format!(
                        "target {}: name a resource served here, Type/id",
                        quote(value)
                    ))
                    .at("target")
                })?);
            }
            other => return Err(unknown_parameter(other, "Provenance")),
        }
    }
    let (kind, id) = target.ok_or_else(|| {
        Failure::bad_request("provenance is searched by its target: Provenance?target=Type/id")
            .at("target")
    })?;
    let household = facade.household_holding(calling, kind, id).await?;
    let today = naast_domain::calendar::dutch_today();
    let found = facade
        .decided(calling, household, kind, id, |state, revision, sight| {
            if kind != Kind::Communication {
                resources::one(household, state, kind, id, sight, today)?;
            } else if !state.entries.contains(&naast_domain::ids::EntryId(id)) {
                return Err(Unseen::Missing);
            }
            Ok(facade.provenance(household, kind, id, revision, sight))
        })
        .await??;
    let base = base(headers);
    let total = found.len();
    let entries = found
        .into_iter()
        .map(|f| (format!("Provenance/{}", f.id), f.resource))
        .collect();
    let own = format!("{base}/Provenance?target={}/{id}", kind.name());
    let bundle = searchset(&base, entries, total, &own, None)?;
    Ok(json(StatusCode::OK, &bundle.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bundle serialised in two halves is the same JSON as one serialised whole.
    #[tokio::test]
    async fn a_large_bundle_serialised_in_halves_is_the_same_bundle() {
        for count in [
            PARALLEL_ENTRIES - 1,
            PARALLEL_ENTRIES,
            2 * PARALLEL_ENTRIES + 1,
        ] {
            let entries: Vec<(String, Resource)> = (0..count)
                .map(|i| {
                    let mut group = fhir_sdk::r4b::resources::Group::builder()
                        .r#type(fhir_sdk::r4b::codes::GroupType::Person)
                        .actual(true)
                        .build()
                        .unwrap_or_else(|e| panic!("a group: {e}"));
                    group.id = Some(format!("g{i}"));
                    group.name = Some(format!("gezin \"{i}\""));
                    (format!("Group/g{i}"), group.into())
                })
                .collect();
            let bundle = searchset("http://x/fhir", entries, count, "http://x/fhir/Group", None)
                .unwrap_or_else(|e| panic!("a bundle: {e:?}"));
            let whole = serde_json::to_value(Resource::from(bundle.clone()))
                .unwrap_or_else(|e| panic!("{e}"));
            let response = bundle_json(bundle);
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let halves: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON: {e}"));
            assert_eq!(halves, whole, "{count} entries");
            assert_eq!(halves["entry"].as_array().map(Vec::len), Some(count));
        }
    }
}

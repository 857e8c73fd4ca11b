//! The FHIR R4 REST facade of naast: the households' shared plans as FHIR resources over HTTP
//! (`/fhir`), for PGO platforms and care providers' systems. It is a transport like the gRPC
//! one and sits on the same application layer (`naast_app`): the same authentication (bearer
//! tokens of the trusted issuers), the same access decisions per household, the same NEN 7513
//! audit record of every call, whichever door a call comes in by. The mapping itself is
//! `naast_fhir`'s.
//!
//! # Layout
//! - [`Facade`]: the application's households and read models, and [`Facade::router`]: the
//!   routes, content negotiation and authentication;
//! - [`serve`]: the facade on a listener until shutdown;
//! - `resources`: which resource types answer to which access decision, and what a caller may
//!   see of a household;
//! - `handlers`: read, vread, history, search, `$everything`, the CodeSystems;
//! - `capability`: the `CapabilityStatement` (`/fhir/metadata`);
//! - [`outcome`]: errors as `OperationOutcome`s;
//! - [`subscriptions`]: FHIR Subscriptions after the R5 Backport IG (`$status`, `$events`).
//!
//! # Versions
//! A resource's `meta.versionId` is the revision of its household's stream that it was read at
//! (its `meta.lastUpdated` the moment that revision was recorded): every version is the resource
//! as it stood at a real point of the log, and `/_history/{vid}` rebuilds exactly that state.
//! The history of a resource lists the revisions at which it changed. `If-Match` on a write names
//! the household revision the writer saw, as `expected_revision` does over gRPC.

mod access_log;
mod capability;
mod events;
mod handlers;
pub mod outcome;
pub mod resources;
mod search;
pub mod subscriptions;
mod write;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use handlers::Terminology;
use naast_app::auth::caller::{
    Arrival, Calling, Guard, PURPOSE_HEADER, REQUEST_ID_HEADER, Refused, request_id,
};
use naast_app::households::Households;
use naast_projections::Projections;
use outcome::Failure;
use std::net::SocketAddr;
use tracing::Instrument as _;

/// The media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The facade's view of the application: households (reads decided and audited there), the
/// read models (to find a household by a resource's id), and the guard (tokens and audit).
#[derive(Clone)]
pub struct Facade {
    households: Households,
    projections: Projections,
    guard: Option<Guard>,
    subscriptions: Option<std::sync::Arc<dyn subscriptions::SubscriptionStore>>,
}

impl Facade {
    /// A facade over `households` and `projections`; with a `guard`, every call but the
    /// capability statement and the CodeSystems needs a valid token and is recorded in the audit
    /// log (without one everything is open: embedded use and benchmarks only).
    pub fn new(households: Households, projections: Projections, guard: Option<Guard>) -> Self {
        Self {
            households,
            projections,
            guard,
            subscriptions: None,
        }
    }

    /// Keeps FHIR Subscriptions in `store` (without one, creating a Subscription is answered
    /// `501`).
    pub fn with_subscriptions(
        mut self,
        store: std::sync::Arc<dyn subscriptions::SubscriptionStore>,
    ) -> Self {
        self.subscriptions = Some(store);
        self
    }

    /// The facade's routes under `/fhir`.
    pub fn router(self) -> Router {
        let fhir = Router::new()
            .route("/metadata", get(handlers::capabilities))
            .route(
                "/CodeSystem",
                get(|h, q| handlers::terminologies(Terminology::CodeSystem, h, q)),
            )
            .route(
                "/CodeSystem/{id}",
                get(|id| handlers::terminology(Terminology::CodeSystem, id)),
            )
            .route(
                "/ValueSet",
                get(|h, q| handlers::terminologies(Terminology::ValueSet, h, q)),
            )
            .route(
                "/ValueSet/{id}",
                get(|id| handlers::terminology(Terminology::ValueSet, id)),
            )
            .route(
                "/Subscription",
                axum::routing::post(subscriptions::create).fallback(handlers::method_not_allowed),
            )
            .route(
                "/Subscription/{id}",
                get(subscriptions::read)
                    .delete(subscriptions::delete)
                    .fallback(handlers::method_not_allowed),
            )
            .route("/Subscription/{id}/$status", get(subscriptions::status))
            .route("/Subscription/{id}/$events", get(subscriptions::events))
            .route(
                "/{kind}",
                get(handlers::search)
                    .post(write::create)
                    .fallback(handlers::method_not_allowed),
            )
            .route(
                "/{kind}/{id}",
                get(handlers::read)
                    .put(write::update)
                    .fallback(handlers::method_not_allowed),
            )
            .route("/{kind}/{id}/_history", get(handlers::history))
            .route("/{kind}/{id}/_history/{version}", get(handlers::vread))
            .route("/{kind}/{id}/{operation}", get(handlers::operation))
            .fallback(handlers::unknown)
            .layer(middleware::from_fn_with_state(self.clone(), authenticate))
            .layer(middleware::from_fn(negotiate));
        Router::new()
            .nest("/fhir", fhir)
            .fallback(handlers::unknown)
            .with_state(self)
    }
}

/// The FHIR interaction a request is, as the audit log names its operation:
/// `FHIR read Goal`, `FHIR search-type CarePlan`, `FHIR everything Group`, ….
fn interaction(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path
        .trim_start_matches("/fhir")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let name = match (method, parts.as_slice()) {
        (_, ["metadata"]) => "capabilities".to_owned(),
        (&Method::GET, [kind]) => format!("search-type {kind}"),
        (&Method::POST, [kind]) => format!("create {kind}"),
        (&Method::GET, [kind, _]) => format!("read {kind}"),
        (&Method::PUT, [kind, _]) => format!("update {kind}"),
        (&Method::DELETE, [kind, _]) => format!("delete {kind}"),
        (_, [kind, _, "_history"]) => format!("history-instance {kind}"),
        (_, [kind, _, "_history", _]) => format!("vread {kind}"),
        (_, [kind, _, operation]) => format!("{} {kind}", operation.trim_start_matches('$')),
        _ => "unknown".to_owned(),
    };
    // Path parts come from the caller: keep the recorded name short.
    format!("FHIR {}", name.chars().take(80).collect::<String>())
}

/// Paths open without a token: what the service can do, and its code systems and value sets (no
/// one's data).
fn is_open(path: &str) -> bool {
    path == "/fhir/metadata"
        || path == "/fhir/CodeSystem"
        || path.starts_with("/fhir/CodeSystem/")
        || path == "/fhir/ValueSet"
        || path.starts_with("/fhir/ValueSet/")
}

/// The authentication of every call: a [`Calling`] in the request's extensions, or `401` with
/// the refusal recorded, through the same [`Guard::admit`] as the gRPC transport's layer.
async fn authenticate(State(facade): State<Facade>, mut request: Request, next: Next) -> Response {
    let Some(guard) = &facade.guard else {
        request.extensions_mut().insert(Calling::Unguarded);
        return next.run(request).await;
    };
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path().to_owned(), |u| u.path().to_owned());
    if is_open(&path) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = request_id(headers.get(REQUEST_ID_HEADER).map(|v| v.as_bytes()));
    let operation = interaction(request.method(), &path);
    let span = tracing::info_span!("fhir", operation = %operation, request_id = %request_id);
    let arrival = Arrival {
        operation,
        peer: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        authorization: text(header::AUTHORIZATION.as_str()),
        request_id: Some(request_id.clone()),
        purpose: text(PURPOSE_HEADER),
    };
    let mut response = match guard.admit(arrival).instrument(span.clone()).await {
        Ok(caller) => {
            request.extensions_mut().insert(Calling::Caller(caller));
            next.run(request).instrument(span).await
        }
        Err(Refused::Unauthenticated(reason)) => {
            let mut response = Failure::new(
                axum::http::StatusCode::UNAUTHORIZED,
                fhir_sdk::r4b::codes::IssueType::Login,
                reason,
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            response
        }
        Err(refused @ (Refused::Limited | Refused::Busy(_))) => {
            let mut response = Failure::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                fhir_sdk::r4b::codes::IssueType::Throttled,
                refused.to_string(),
            )
            .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            response
        }
        Err(Refused::AuditUnavailable) => Failure::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            fhir_sdk::r4b::codes::IssueType::Transient,
            "the audit log is unavailable",
        )
        .into_response(),
    };
    // Visible ASCII (a UUID, or the client's own checked id): always a header value.
    if let Ok(id) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    response
}

/// Content negotiation as FHIR says: `_format` wins over `Accept`; JSON is served, and a request
/// for anything else (XML, Turtle) is answered `406` before anything is read.
async fn negotiate(request: Request, next: Next) -> Response {
    let format = request.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "_format")
            .map(|(_, value)| value.replace("%2B", "+").replace("%2F", "/"))
    });
    let acceptable = match format {
        Some(format) => is_json(&format),
        None => accepts_json(request.headers()),
    };
    if !acceptable {
        return Failure::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            fhir_sdk::r4b::codes::IssueType::NotSupported,
            "only JSON is served (application/fhir+json); ask for it with Accept or _format=json",
        )
        .at("_format")
        .into_response();
    }
    next.run(request).await
}

fn is_json(format: &str) -> bool {
    let media = format.split(';').next().unwrap_or_default().trim();
    matches!(
        media,
        "json" | "application/json" | "application/fhir+json" | "application/json+fhir"
    )
}

fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or_default().trim();
        is_json(media) || matches!(media, "*/*" | "application/*" | "")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactions_are_named_as_fhir_names_them() {
        let cases = [
            (Method::GET, "/fhir/Goal/1", "FHIR read Goal"),
            (Method::GET, "/fhir/Goal", "FHIR search-type Goal"),
            (
                Method::GET,
                "/fhir/Goal/1/_history",
                "FHIR history-instance Goal",
            ),
            (Method::GET, "/fhir/Goal/1/_history/3", "FHIR vread Goal"),
            (
                Method::GET,
                "/fhir/Group/1/$everything",
                "FHIR everything Group",
            ),
            (Method::POST, "/fhir/CarePlan", "FHIR create CarePlan"),
            (Method::PUT, "/fhir/CarePlan/1", "FHIR update CarePlan"),
        ];
        for (method, path, name) in cases {
            assert_eq!(interaction(&method, path), name, "{method} {path}");
        }
        assert_eq!(
            naast_app::audit::Action::of_operation("FHIR search-type Goal"),
            naast_app::audit::Action::Read
        );
        assert_eq!(
            naast_app::audit::Action::of_operation("FHIR update CarePlan"),
            naast_app::audit::Action::Update
        );
    }

    #[test]
    fn json_is_negotiated_and_nothing_else() {
        let mut headers = HeaderMap::new();
        assert!(accepts_json(&headers), "no Accept: JSON");
        for (accept, ok) in [
            ("application/fhir+json", true),
            ("application/json;q=0.9", true),
            ("text/html, */*", true),
            ("application/fhir+xml", false),
            ("text/turtle", false),
        ] {
            headers.insert(
                header::ACCEPT,
                accept.parse().unwrap_or_else(|_| unreachable!()),
            );
            assert_eq!(accepts_json(&headers), ok, "{accept}");
        }
        assert!(is_json("json") && is_json("application/fhir+json; fhirVersion=4.0"));
        assert!(!is_json("xml"));
    }
}

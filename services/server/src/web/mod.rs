//! The web timeline: server-rendered pages for the people naast is for (a parent, a client, a
//! supporter), on a listener of its own (`--web-listen`). It is a door like the gRPC and FHIR
//! ones: every page is answered by the same service implementations the gRPC door serves,
//! called in process with the signed-in person's [`Calling`], so a page gets exactly the access
//! decisions, the limits and the NEN 7513 audit record a gRPC call of that person gets. The
//! audit log names a page's call `web <method>` (`web ListTimelineEntries`).
//!
//! # Sign-in
//! OpenID Connect authorization code flow with PKCE at the configured issuer ([`signin`]): the
//! ID token identifies the person (its signature, issuer, audience and nonce checked); the
//! access token that comes with it is what every call of the session is admitted with, by the
//! same [`Guard::admit`] as a bearer token on gRPC, and must be the same person's. With the
//! development issuer on (`naast demo --serve`, `naast serve --dev`), the demo personas can sign
//! in with one click instead, under a banner saying it is not for production.
//!
//! # Sessions
//! A session is a random 256-bit id in a cookie (`HttpOnly`, `SameSite=Lax`, `Secure` and
//! `__Host-` when served over https), held in memory only: a restart signs everyone out. It
//! ends on sign-out, after [`SESSION_IDLE`] without a request, after [`SESSION_MAX`], or when
//! its access token expires, whichever comes first.
//!
//! # Safe by default
//! Every form carries the session's CSRF token (and a request from another origin is refused);
//! every response says `Cache-Control: no-store` and a Content-Security-Policy without inline
//! scripts or styles and without third-party sources; URLs hold ids and dates only, never
//! names; the web door writes no request lines to the log.

mod assets;
mod live;
mod pages;
pub mod signin;

use crate::auth::layer::Calling;
use crate::grpc::{AuditApi, HouseholdApi};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use naast_app::auth::caller::{Arrival, Guard, REQUEST_ID_HEADER, Refused, request_id};
use naast_app::auth::dev::DevIssuer;
use naast_domain::vocab::PrincipalRole;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, whatever happens.
pub const SESSION_MAX: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at most; past it the oldest idle ones go first.
const MAX_SESSIONS: usize = 100_000;
/// Sessions one person may hold at once (browsers, devices); past it their own oldest goes.
const SESSIONS_PER_PERSON: usize = 20;

/// How the web door is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSettings {
    /// The address it listens on.
    pub listen: SocketAddr,
    /// The URL browsers reach it at (no trailing slash); `None`: `http://` and the address it
    /// is bound to. Redirects after sign-in go to `<public_url>/aanmelden/terug`.
    pub public_url: Option<String>,
    /// Sign-in at an OpenID issuer (`None`: only the demo personas, in dev mode).
    pub oidc: Option<signin::OidcSettings>,
}

/// The web door's listener and settings, and the development issuer when it is on (its demo
/// personas may then sign in with one click).
pub struct Setup {
    /// Bound listener.
    pub listener: tokio::net::TcpListener,
    /// Settings.
    pub settings: WebSettings,
    /// The development issuer, in dev mode.
    pub dev: Option<Arc<DevIssuer>>,
}

/// A signed-in person's session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The access token every call of the session is admitted with.
    bearer: String,
    /// The ID token it began with (the hint when signing out at the issuer).
    id_token: Option<String>,
    /// The token every form of the session must carry.
    csrf: String,
    /// Who, for the page header.
    name: String,
    /// Their role.
    role: PrincipalRole,
    /// The issuer they signed in at (a grant to a person names a subject there).
    issuer: String,
    /// Their subject there.
    subject: String,
    started: Instant,
    seen: Instant,
    /// When the access token is refused as expired (seconds since 1970).
    valid_until: i64,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.seen) > SESSION_IDLE
            || now.duration_since(self.started) > SESSION_MAX
            || chrono::Utc::now().timestamp() >= self.valid_until
    }
}

/// The web door's state.
#[derive(Clone)]
pub(crate) struct Web(Arc<Inner>);

pub(crate) struct Inner {
    households: HouseholdApi,
    audit: AuditApi,
    guard: Guard,
    dev: Option<Arc<DevIssuer>>,
    oidc: Option<signin::Oidc>,
    /// The public base URL, without a trailing slash.
    base: String,
    secure: bool,
    sessions: Mutex<HashMap<String, Session>>,
    shutdown: watch::Receiver<bool>,
    /// The Content-Security-Policy of every answer.
    csp: HeaderValue,
}

impl std::ops::Deref for Web {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The origin browsers send for `url` (`https://naast.example.nl`: scheme and host in lower
/// case, no default port, no trailing slash), when `url` is the http(s) address of a site
/// alone (no path, query, fragment or user).
pub fn site_origin(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let alone = matches!(parsed.scheme(), "http" | "https")
        && parsed.host().is_some()
        && parsed.path() == "/"
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none();
    alone.then(|| parsed.origin().ascii_serialization())
}

/// Serves the web door of `setup` until `shutdown` turns true, on the same service
/// implementations and guard as the gRPC door, with at most `max_connections` open at once;
/// `Ok(true)` when every request in flight at the stop finished.
pub(crate) async fn serve(
    setup: Setup,
    max_connections: usize,
    header_read: Duration,
    households: HouseholdApi,
    audit: AuditApi,
    guard: Guard,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<bool> {
    let bound = setup.listener.local_addr()?;
    // Compared byte for byte with the `Origin` of every form: its canonical spelling.
    let base = match &setup.settings.public_url {
        Some(url) => site_origin(url).ok_or_else(|| {
            std::io::Error::other(format!(
                "the web timeline's public URL {url:?} is not the address of a site alone"
            ))
        })?,
        None => format!("http://{bound}"),
    };
    let oidc = setup
        .settings
        .oidc
        .clone()
        .map(|settings| signin::Oidc::new(settings, &base))
        .transpose()?;
    // Forms lead to naast itself, and (signing out) to the issuer.
    let issuer = oidc.as_ref().and_then(signin::Oidc::issuer_origin);
    let csp = HeaderValue::from_str(&csp(issuer.as_deref(), None))
        .map_err(|e| std::io::Error::other(format!("the web timeline's CSP: {e}")))?;
    let web = Web(Arc::new(Inner {
        households,
        audit,
        guard,
        dev: setup.dev,
        oidc,
        secure: base.starts_with("https://"),
        base,
        sessions: Mutex::default(),
        shutdown: shutdown.clone(),
        csp,
    }));
    let listener = crate::grpc::connections::LimitedListener::new(setup.listener, max_connections);
    crate::grpc::connections::serve_http(listener, router(web), header_read, shutdown).await
}

fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(signin::start_page))
        .route("/aanmelden", get(signin::begin))
        .route("/aanmelden/terug", get(signin::callback))
        .route("/aanmelden/demo", post(signin::demo))
        .route("/afmelden", post(signin::sign_out))
        .route("/huishoudens", get(pages::households))
        .route("/huishoudens/{id}/tijdlijn", get(pages::timeline))
        .route("/huishoudens/{id}/tijdlijn/live", get(live::timeline))
        .route("/huishoudens/{id}/afdrukken", get(pages::print))
        .route("/huishoudens/{id}/plan", get(pages::plan))
        .route(
            "/huishoudens/{id}/toegang",
            get(pages::access).post(pages::grant),
        )
        .route(
            "/huishoudens/{id}/toegang/{grant}/intrekken",
            post(pages::revoke),
        )
        .route(
            "/huishoudens/{id}/verzoeken/{request}/afwijzen",
            post(pages::decline),
        )
        .route("/huishoudens/{id}/inzage", get(pages::access_log))
        .route("/static/naast.css", get(assets::css))
        .route("/static/live.js", get(assets::live_js))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(web.clone(), same_origin))
        .layer(middleware::from_fn_with_state(web.clone(), safe_headers))
        .with_state(web)
}

/// The Content-Security-Policy of the pages: no script, style or image but naast's own, and
/// forms that lead only to naast, the `issuer`'s origin and the origin of its end-session
/// endpoint (`end_session`; signing out there too).
fn csp(issuer: Option<&str>, end_session: Option<&str>) -> String {
    let mut form_action = "'self'".to_owned();
    for origin in [issuer, end_session.filter(|e| Some(*e) != issuer)]
        .into_iter()
        .flatten()
    {
        form_action.push(' ');
        form_action.push_str(origin);
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The headers every answer carries: nothing personal is cached, no script or style but the
/// service's own runs, the pages are not framed, and no address leaks in a referrer.
async fn safe_headers(State(web): State<Web>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CACHE_CONTROL, "no-store");
    headers.insert(header::CONTENT_SECURITY_POLICY, web.csp());
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    // `same-origin`, not `no-referrer`: with the latter browsers send `Origin: null` on forms,
    // which the origin check would refuse; no address leaves the site either way.
    set(headers, header::REFERRER_POLICY, "same-origin");
    response
}

/// A form posted from another origin is refused before anything is read (the CSRF token is
/// checked too, per form; this holds even where a token could leak).
async fn same_origin(State(web): State<Web>, request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST
        && let Some(origin) = request.headers().get(header::ORIGIN)
        && origin.as_bytes() != web.base.as_bytes()
    {
        return refusal_page(
            StatusCode::FORBIDDEN,
            "Niet verstuurd",
            "Dit formulier kwam niet van deze website en is niet verwerkt.",
        );
    }
    next.run(request).await
}

async fn not_found() -> Response {
    refusal_page(
        StatusCode::NOT_FOUND,
        "Pagina niet gevonden",
        "Deze pagina bestaat niet.",
    )
}

impl Web {
    /// The Content-Security-Policy of an answer: the issuer's end-session endpoint is let in
    /// once its metadata names one on another origin.
    fn csp(&self) -> HeaderValue {
        let Some(oidc) = &self.oidc else {
            return self.csp.clone();
        };
        match oidc.end_session_origin() {
            Some(end) if Some(&end) != oidc.issuer_origin().as_ref() => {
                HeaderValue::from_str(&csp(oidc.issuer_origin().as_deref(), Some(&end)))
                    .unwrap_or_else(|_| self.csp.clone())
            }
            _ => self.csp.clone(),
        }
    }

    fn session_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-naast-sessie"
        } else {
            "naast-sessie"
        }
    }

    fn pending_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-naast-aanmelden"
        } else {
            "naast-aanmelden"
        }
    }

    /// The cookie binding the demo personas' form to the browser (dev mode only).
    fn demo_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-naast-demo"
        } else {
            "naast-demo"
        }
    }

    fn cookie_attributes(&self) -> &'static str {
        if self.secure {
            "; Path=/; HttpOnly; SameSite=Lax; Secure"
        } else {
            "; Path=/; HttpOnly; SameSite=Lax"
        }
    }

    /// The session the request's cookie names, if it is still valid (its last use is moved
    /// on).
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, self.session_cookie())?;
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(&id)?;
        if session.expired(now) {
            sessions.remove(&id);
            return None;
        }
        session.seen = now;
        Some((id, session.clone()))
    }

    /// Keeps `session` under a new random id; the `Set-Cookie` value that names it. A person
    /// holding [`SESSIONS_PER_PERSON`] open sessions already loses the one they used longest
    /// ago (their ended ones are dropped first); when all sessions are taken, the one idle
    /// longest goes.
    fn start_session(&self, session: Session) -> String {
        let id = random_token();
        let mut sessions = lock(&self.sessions);
        make_room(&mut sessions, &session, Instant::now());
        sessions.insert(id.clone(), session);
        format!("{}={id}{}", self.session_cookie(), self.cookie_attributes())
    }

    fn end_session(&self, id: &str) -> String {
        lock(&self.sessions).remove(id);
        format!(
            "{}={}; Max-Age=0",
            self.session_cookie(),
            self.cookie_attributes()
        )
    }

    /// Whether the session `id` is still open (a live page ends once it is not).
    fn is_open(&self, id: &str) -> bool {
        lock(&self.sessions)
            .get(id)
            .is_some_and(|s| !s.expired(Instant::now()))
    }

    /// The signed-in person's call of `method`, admitted by the guard as a gRPC call with their
    /// token would be; without a valid session, the way to sign in.
    async fn admit(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        method: &str,
    ) -> Result<(Signed, Calling), Response> {
        let Some((id, session)) = self.session(headers) else {
            return Err(Redirect::to("/").into_response());
        };
        match self.let_in(&session.bearer, peer, headers, method).await {
            Ok(caller) => Ok((Signed { id, session }, Calling::Caller(caller))),
            Err(Refused::Unauthenticated(_)) => {
                // The token no longer holds (expired, its key withdrawn): sign in again.
                let mut response = Redirect::to("/").into_response();
                set_cookie(&mut response, &self.end_session(&id));
                Err(response)
            }
            Err(refused) => Err(refused_page(&refused)),
        }
    }

    /// Admits a request with `bearer` that will make calls of `method`, as the guard admits any
    /// bearer token: counted once against the person's rate (each service call it then makes
    /// counts once more, in [`Web::ask`], so a page that only looks something up counts too).
    async fn let_in(
        &self,
        bearer: &str,
        peer: SocketAddr,
        headers: &HeaderMap,
        method: &str,
    ) -> Result<Arc<naast_app::auth::caller::Caller>, Refused> {
        let arrival = Arrival {
            operation: format!("web {method}"),
            peer: Some(peer),
            authorization: Some(format!("Bearer {bearer}")),
            request_id: Some(request_id(
                headers.get(REQUEST_ID_HEADER).map(|v| v.as_bytes()),
            )),
            purpose: None,
        };
        self.guard.admit(arrival).await
    }

    /// The service implementation's answer to `call` of `method` with `message` on behalf of
    /// `calling`, counted against the person's rate as a gRPC call is (a page that makes three
    /// calls counts three, besides its admission) and recorded under its own name
    /// (`web GetHousehold`).
    pub(crate) async fn ask<T, R, F>(
        &self,
        calling: &Calling,
        method: &str,
        message: T,
        call: impl FnOnce(tonic::Request<T>) -> F,
    ) -> Result<tonic::Response<R>, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        if let Calling::Caller(caller) = calling {
            self.guard
                .count_call(caller)
                .await
                .map_err(|refused| match refused {
                    Refused::AuditUnavailable => {
                        tonic::Status::unavailable("the audit log is unavailable")
                    }
                    other => tonic::Status::resource_exhausted(other.to_string()),
                })?;
        }
        call(request(calling, method, message)).await
    }
}

/// Makes room among `sessions` for `new`: that person's ended sessions go; if they still hold
/// [`SESSIONS_PER_PERSON`], the one they used longest ago goes too; and when all sessions are
/// taken, the ended ones go and then the one idle longest.
fn make_room(sessions: &mut HashMap<String, Session>, new: &Session, now: Instant) {
    let theirs = |s: &Session| s.issuer == new.issuer && s.subject == new.subject;
    sessions.retain(|_, s| !(theirs(s) && s.expired(now)));
    let open: Vec<(Instant, String)> = sessions
        .iter()
        .filter(|(_, s)| theirs(s))
        .map(|(id, s)| (s.seen, id.clone()))
        .collect();
    if open.len() >= SESSIONS_PER_PERSON
        && let Some((_, least_recent)) = open.into_iter().min()
    {
        sessions.remove(&least_recent);
    }
    if sessions.len() >= MAX_SESSIONS {
        sessions.retain(|_, s| !s.expired(now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
    }
}

/// The page for a call the guard let not in for a reason other than its token.
fn refused_page(refused: &Refused) -> Response {
    match refused {
        Refused::Limited | Refused::Busy(_) => refusal_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Even wachten",
            "Er kwamen te veel verzoeken tegelijk. Probeer het over een paar seconden opnieuw.",
        ),
        Refused::AuditUnavailable | Refused::Unauthenticated(_) => unavailable(),
    }
}

/// A signed-in request: its session and id.
pub(crate) struct Signed {
    id: String,
    session: Session,
}

/// A request of `method` to a service implementation on behalf of `calling`: the call is
/// recorded under its own name (`web GetHousehold`), whichever page makes it.
fn request<T>(calling: &Calling, method: &str, message: T) -> tonic::Request<T> {
    let calling = match calling {
        Calling::Caller(caller) => Calling::Caller(Arc::new(naast_app::auth::caller::Caller {
            operation: format!("web {method}"),
            ..(**caller).clone()
        })),
        Calling::Unguarded => Calling::Unguarded,
    };
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(calling);
    request
}

/// A gRPC status as a page: what the person can do about it, in Dutch.
pub(crate) fn status_page(status: &tonic::Status) -> Response {
    use tonic::Code;
    match status.code() {
        Code::PermissionDenied => refusal_page(
            StatusCode::FORBIDDEN,
            "Geen toegang",
            "U heeft (nu) geen toegang tot deze gegevens. Vraag het gezin om toegang als u die nodig heeft.",
        ),
        Code::NotFound => refusal_page(
            StatusCode::NOT_FOUND,
            "Niet gevonden",
            "Dit huishouden of onderdeel bestaat niet (meer).",
        ),
        Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
            use tonic_types::StatusExt as _;
            let mut fields: Vec<&str> = status
                .get_details_bad_request()
                .map(|bad| {
                    bad.field_violations
                        .iter()
                        .filter_map(|v| dutch_field(&v.field))
                        .collect()
                })
                .unwrap_or_default();
            fields.dedup();
            let text = if fields.is_empty() {
                "Wat u invulde kon niet worden verwerkt; er is niets opgeslagen.".to_owned()
            } else {
                format!(
                    "Wat u invulde kon niet worden verwerkt; er is niets opgeslagen. Kijk nog eens naar: {}.",
                    fields.join(", ")
                )
            };
            page_with_detail(
                StatusCode::BAD_REQUEST,
                "Niet verwerkt",
                &text,
                status.message(),
            )
        }
        Code::ResourceExhausted => refusal_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Even wachten",
            "Er kwamen te veel verzoeken tegelijk, of de opslag is vol. Probeer het later opnieuw.",
        ),
        Code::Unauthenticated => Redirect::to("/").into_response(),
        _ => unavailable(),
    }
}

/// The field of a refused command as its form names it, for the fields the web's forms fill.
fn dutch_field(field: &str) -> Option<&'static str> {
    // `terms.scopes[0]` is about `terms.scopes`.
    let field = field.split('[').next().unwrap_or(field);
    Some(match field {
        "grantee" | "grantee.person" | "grantee.person.subject" | "grantee.person.issuer" => {
            "aan wie"
        }
        "grantee.organisation_id" => "de code van de organisatie",
        "terms" | "terms.scopes" => "wat die mag doen",
        "terms.life_domains" => "de leefgebieden",
        "terms.funding_domains" => "de financiering",
        "terms.until" => "tot en met",
        "access_request_id" => "het verzoek",
        "grant_id" => "de toegang",
        "member_id" => "het gezinslid",
        "start_date" | "end_date" => "de periode",
        _ => return None,
    })
}

fn unavailable() -> Response {
    refusal_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Tijdelijk niet beschikbaar",
        "naast kan dit nu niet tonen. Probeer het over enkele minuten opnieuw.",
    )
}

pub(crate) fn refusal_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! { h1 { (title) } p { (text) } p { a href="/huishoudens" { "Naar mijn huishoudens" } } };
    (status, Html(layout(title, None, body).into_string())).into_response()
}

fn page_with_detail(status: StatusCode, title: &str, text: &str, detail: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p { (text) }
        p { "Toelichting van de dienst: " span lang="en" { (detail) } }
        p { a href="/huishoudens" { "Naar mijn huishoudens" } }
    };
    (status, Html(layout(title, None, body).into_string())).into_response()
}

/// A whole page: the header with who is signed in and sign-out, then `body` in `main`.
pub(crate) fn layout(title: &str, signed: Option<&Signed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="nl" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — naast" }
                link rel="stylesheet" href="/static/naast.css";
                script src="/static/live.js" defer {}
            }
            body {
                a class="skip" href="#inhoud" { "Naar de inhoud" }
                header class="top" {
                    p class="brand" { a href="/huishoudens" { "naast" } }
                    @if let Some(signed) = signed {
                        nav aria-label="Account" {
                            span class="who" { "Aangemeld als " strong { (signed.session.name) } }
                            form method="post" action="/afmelden" class="inline" {
                                input type="hidden" name="csrf" value=(signed.session.csrf);
                                button type="submit" { "Afmelden" }
                            }
                        }
                    }
                }
                main id="inhoud" { (body) }
            }
        }
    }
}

/// An HTML answer.
pub(crate) fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

pub(crate) fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// 256 random bits, URL-safe.
pub(crate) fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The pairs of a form body (repeated names kept, as checkboxes send them).
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `name` in `pairs`.
pub(crate) fn form_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a form of `signed`'s session carries its CSRF token.
pub(crate) fn csrf_ok(signed: &Signed, pairs: &[(String, String)]) -> bool {
    form_value(pairs, "csrf").is_some_and(|token| same_secret(token, &signed.session.csrf))
}

/// The answer to a form without its session's token: refused, nothing written.
pub(crate) fn csrf_refused() -> Response {
    refusal_page(
        StatusCode::FORBIDDEN,
        "Formulier niet verwerkt",
        "Dit formulier was verlopen of kwam niet van deze pagina; er is niets opgeslagen. Open de pagina opnieuw en probeer het nog eens.",
    )
}

/// The peer of a request.
pub(crate) type Peer = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x-naast-sessie=wrong; naast-sessie=right; other=1"),
        );
        assert_eq!(cookie(&headers, "naast-sessie").as_deref(), Some("right"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn sessions_end_when_idle_too_long_too_old_or_their_token_expired() {
        let base = Instant::now();
        let session = |seen: Duration, token_left: i64| Session {
            bearer: String::new(),
            id_token: None,
            csrf: String::new(),
            name: String::new(),
            role: PrincipalRole::Citizen,
            issuer: String::new(),
            subject: String::new(),
            started: base,
            seen: base + seen,
            valid_until: chrono::Utc::now().timestamp() + token_left,
        };
        let minute = Duration::from_secs(60);
        // In use, young, its token valid: open.
        assert!(!session(minute, 3600).expired(base + 2 * minute));
        // Idle past the limit.
        assert!(session(minute, 3600).expired(base + minute + SESSION_IDLE + minute));
        // Used a moment ago, but started too long ago.
        let late = SESSION_MAX + minute;
        assert!(session(late - minute, 3600).expired(base + late));
        // Its access token has expired.
        assert!(session(minute, -1).expired(base + 2 * minute));
    }

    fn someones(subject: &str, started: Instant, seen: Instant) -> Session {
        Session {
            bearer: String::new(),
            id_token: None,
            csrf: String::new(),
            name: String::new(),
            role: PrincipalRole::Citizen,
            issuer: "https://login.example.nl".into(),
            subject: subject.into(),
            started,
            seen,
            valid_until: i64::MAX,
        }
    }

    #[test]
    fn a_persons_sessions_past_the_cap_lose_the_ended_then_the_least_recently_used() {
        let base = Instant::now();
        let now = base + SESSION_IDLE + Duration::from_secs(600);
        let mut sessions = HashMap::new();
        // One ended (idle too long), and the cap filled with open ones; the earliest started
        // is the one used last.
        sessions.insert("ended".to_owned(), someones("anna", base, base));
        for n in 0..SESSIONS_PER_PERSON - 1 {
            let seen = now - Duration::from_secs(100 - n as u64);
            sessions.insert(format!("open{n}"), someones("anna", base, seen));
        }
        sessions.insert("in-use".to_owned(), someones("anna", base, now));
        sessions.insert("other".to_owned(), someones("bram", base, base));
        let new = someones("anna", now, now);
        make_room(&mut sessions, &new, now);
        // The ended one went, and with it the least recently used open one.
        assert!(!sessions.contains_key("ended"));
        assert!(!sessions.contains_key("open0"));
        assert!(sessions.contains_key("in-use"));
        assert!(sessions.contains_key("open1"));
        // Another person's sessions are not theirs to lose.
        assert!(sessions.contains_key("other"));
        let annas = sessions.values().filter(|s| s.subject == "anna").count();
        assert_eq!(annas, SESSIONS_PER_PERSON - 1);
    }

    #[test]
    fn forms_may_lead_to_the_issuer_and_its_end_session_origin_alone() {
        let only = csp(None, None);
        assert!(only.contains("form-action 'self';"), "{only}");
        let issuer = csp(Some("https://login.example.nl"), None);
        assert!(
            issuer.contains("form-action 'self' https://login.example.nl;"),
            "{issuer}"
        );
        let both = csp(
            Some("https://login.example.nl"),
            Some("https://logout.example.com"),
        );
        assert!(
            both.contains(
                "form-action 'self' https://login.example.nl https://logout.example.com;"
            ),
            "{both}"
        );
        let same = csp(
            Some("https://login.example.nl"),
            Some("https://login.example.nl"),
        );
        assert_eq!(same, issuer);
        assert!(issuer.starts_with("default-src 'none';"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn random_tokens_are_long_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn form_pairs_keep_repeated_names() {
        let pairs = form_pairs(b"leefgebied=housing&leefgebied=safety&csrf=a%2Bb");
        assert_eq!(pairs.len(), 3);
        assert_eq!(form_value(&pairs, "csrf"), Some("a+b"));
        assert_eq!(form_value(&pairs, "leefgebied"), Some("housing"));
    }
}

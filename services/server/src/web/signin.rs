//! Signing in to the web timeline: OpenID Connect authorization code flow with PKCE at the
//! configured issuer, or (in dev mode only) one of the demo personas; and signing out.
//!
//! The flow, as the browser sees it:
//! 1. `GET /aanmelden`: naast makes a `state` (the moment and 256 random bits), puts it in a
//!    cookie (so the answer can only complete a sign-in this browser began), and sends the
//!    browser to the issuer with a nonce and a PKCE challenge derived from the `state` with a key
//!    only this process holds (HMAC-SHA256). naast keeps nothing per begun sign-in, so no flood
//!    of begun sign-ins can crowd out a real one.
//! 2. The person signs in at the issuer, which sends the browser to `GET /aanmelden/terug`
//!    with a code and the `state`.
//! 3. naast checks the `state` against the cookie and its age (at most [`PENDING_FOR`]),
//!    derives the verifier and nonce again, exchanges the code (with the PKCE verifier, and the
//!    client secret when one is configured), checks the ID token (signature by the issuer's
//!    published keys, issuer, audience, expiry, nonce), and admits the access token through the
//!    guard as any call is admitted. The access token must be the ID token's person's (a
//!    mismatch is recorded in the audit log). A session is then started under a new id.

use super::{Peer, Session, Signed, Web, layout, page, random_token, same_secret, set_cookie};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::Mac as _;
use maud::html;
use naast_app::auth::caller::Refused;
use naast_app::auth::error_chain;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    Scope, TokenResponse,
};
use std::time::{Duration, Instant};

/// How long a begun sign-in may take at the issuer.
pub const PENDING_FOR: Duration = Duration::from_secs(10 * 60);
/// How long the issuer's discovery document and keys are used before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(600);
/// How soon an issuer that could not be reached is tried again (its metadata used meanwhile).
const METADATA_RETRY: Duration = Duration::from_secs(30);

/// Sign-in at an OpenID issuer (`[web]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer, exactly as its tokens' `iss`; one of the trusted issuers.
    pub issuer: String,
    /// naast's client id there.
    pub client_id: String,
    /// Its client secret, when it is a confidential client (PKCE is used either way).
    pub client_secret: Option<crate::config::Secret>,
    /// Scopes asked for besides `openid` and `profile`.
    pub scopes: Vec<String>,
    /// The resource indicator (RFC 8707) access tokens are asked for, when the issuer needs
    /// one to issue tokens for naast's audience.
    pub resource: Option<String>,
}

/// What naast reads of an issuer's discovery document beyond the core: where a person signs
/// out at the issuer too (OpenID Connect RP-Initiated Logout).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub(crate) struct LogoutMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for LogoutMetadata {}

/// An issuer's discovery document.
type CoreProviderMetadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The client of the sign-in, as openidconnect types it once made from the issuer's metadata.
type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A sign-in at an issuer: its settings, once fetched its metadata, and the key the nonce and
/// PKCE verifier of a sign-in are derived from its `state` with.
pub(crate) struct Oidc {
    settings: OidcSettings,
    redirect: String,
    /// Where the issuer sends a person back after signing out there.
    home: String,
    http: openidconnect::reqwest::Client,
    /// The issuer's metadata and until when it is used before being fetched again.
    metadata: std::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
    /// Held by the one request fetching the metadata; the others use what is held meanwhile.
    fetching: tokio::sync::Mutex<()>,
    key: [u8; 32],
}

impl Oidc {
    pub(crate) fn new(settings: OidcSettings, base: &str) -> std::io::Result<Self> {
        let http = openidconnect::reqwest::Client::builder()
            // As openidconnect advises: never follow redirects (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| std::io::Error::other(format!("the web sign-in's HTTP client: {e}")))?;
        Ok(Self {
            settings,
            redirect: format!("{base}/aanmelden/terug"),
            home: format!("{base}/"),
            http,
            metadata: std::sync::Mutex::default(),
            fetching: tokio::sync::Mutex::default(),
            key: rand::random(),
        })
    }

    /// A secret derived from `state` for `purpose` (`pkce`, `nonce`): 43 URL-safe characters.
    fn derived(&self, purpose: &str, state: &str) -> String {
        use base64::Engine as _;
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC takes a key of any length")
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(state.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The issuer's metadata: as held while it is fresh, else fetched again. One request
    /// fetches at a time and the others use what is held meanwhile, so a slow issuer holds up
    /// only the requests that have no metadata at all (they wait for that one fetch); when it cannot be reached, the metadata held
    /// is used on (and fetched again after [`METADATA_RETRY`]).
    async fn metadata(&self) -> Result<CoreProviderMetadata, String> {
        let held = super::lock(&self.metadata).clone();
        if let Some((metadata, fresh_until)) = &held
            && Instant::now() < *fresh_until
        {
            return Ok(metadata.clone());
        }
        let _fetching = match self.fetching.try_lock() {
            Ok(fetching) => fetching,
            Err(_) => {
                // Another request is fetching: what is held meanwhile, or wait for it.
                if let Some((metadata, _)) = held {
                    return Ok(metadata);
                }
                let _waited = self.fetching.lock().await;
                return super::lock(&self.metadata)
                    .as_ref()
                    .map(|(metadata, _)| metadata.clone())
                    .ok_or_else(|| "the issuer's metadata could not be fetched".to_owned());
            }
        };
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| e.to_string())?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                *super::lock(&self.metadata) =
                    Some((metadata.clone(), Instant::now() + METADATA_TTL));
                Ok(metadata)
            }
            Err(e) => {
                let why = error_chain(&e);
                let Some((metadata, _)) = held else {
                    return Err(why);
                };
                tracing::warn!(error = %why, "the issuer's metadata could not be fetched again; using what was fetched before");
                *super::lock(&self.metadata) =
                    Some((metadata.clone(), Instant::now() + METADATA_RETRY));
                Ok(metadata)
            }
        }
    }

    /// The issuer's end-session endpoint, when it names one naast may send a browser to: over
    /// https, or on the issuer's own origin.
    fn end_session_endpoint(
        &self,
        metadata: &CoreProviderMetadata,
    ) -> Option<openidconnect::url::Url> {
        let end = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()?;
        let url = openidconnect::url::Url::parse(end).ok()?;
        let own = self.issuer_origin().as_deref() == Some(&url.origin().ascii_serialization());
        (url.scheme() == "https" || own).then_some(url)
    }

    /// The origin of the end-session endpoint, when it is known and may be used (the sign-out
    /// form leads there).
    pub(crate) fn end_session_origin(&self) -> Option<String> {
        let held = super::lock(&self.metadata);
        let (metadata, _) = held.as_ref()?;
        self.end_session_endpoint(metadata)
            .map(|url| url.origin().ascii_serialization())
    }

    /// Where to send a person who signs out, to sign out at the issuer too (when it says where):
    /// its end-session endpoint with the ID token as hint and naast's start page to come back
    /// to.
    pub(crate) async fn end_session(&self, id_token: &str) -> Option<String> {
        let metadata = self.metadata().await.ok()?;
        let mut url = self.end_session_endpoint(&metadata)?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", &self.home)
            .append_pair("client_id", &self.settings.client_id);
        Some(url.to_string())
    }

    /// The origin of the issuer (forms may lead there: signing out at the issuer).
    pub(crate) fn issuer_origin(&self) -> Option<String> {
        let url = openidconnect::url::Url::parse(&self.settings.issuer).ok()?;
        Some(url.origin().ascii_serialization())
    }

    /// The client, from the issuer's metadata (fetched when not held or too old).
    async fn client(&self) -> Result<Client, String> {
        let metadata = self.metadata().await?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.0.clone())),
        )
        .set_redirect_uri(RedirectUrl::new(self.redirect.clone()).map_err(|e| e.to_string())?))
    }
}

/// `/`: the way to sign in, or on to the households when signed in.
pub(crate) async fn start_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    if web.session(&headers).is_some() {
        return Redirect::to("/huishoudens").into_response();
    }
    // The personas' form (dev mode only) is bound to this browser by a cookie of its own
    // holding its token; a sign-in at the issuer begun in another tab is left alone.
    let token = random_token();
    let body = html! {
        h1 { "Aanmelden bij naast" }
        p { "naast toont de afspraken, doelen en zorg van uw gezin op één tijdlijn, voor u en voor wie u toegang geeft." }
        @if web.oidc.is_some() {
            p { a class="button" href="/aanmelden" { "Aanmelden" } }
        }
        @if web.dev.is_some() {
            section class="dev" aria-labelledby="dev-kop" {
                h2 id="dev-kop" { "Ontwikkelmodus: NIET VOOR PRODUCTIE" }
                p { strong { "Hier kan iedereen zich als iedereen aanmelden." } " Gebruik dit alleen met demogegevens." }
                form method="post" action="/aanmelden/demo" {
                    input type="hidden" name="csrf" value=(token);
                    fieldset {
                        legend { "Meld u aan als demopersoon" }
                        @for persona in naast_app::auth::dev::PERSONAS {
                            button type="submit" name="persona" value=(persona.key) { (persona.name) }
                        }
                    }
                }
            }
        }
        @if web.oidc.is_none() && web.dev.is_none() {
            p { "Aanmelden is op deze server niet ingesteld." }
        }
    };
    let mut response = page(layout("Aanmelden", None, body));
    if web.dev.is_some() {
        set_cookie(
            &mut response,
            &format!("{}={token}{}", web.demo_cookie(), web.cookie_attributes()),
        );
    }
    response
}

/// `GET /aanmelden`: to the issuer.
pub(crate) async fn begin(State(web): State<Web>) -> Response {
    let Some(oidc) = &web.oidc else {
        return Redirect::to("/").into_response();
    };
    let client = match oidc.client().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the web sign-in cannot reach its issuer");
            return super::refusal_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Aanmelden lukt nu niet",
                "De aanmeldvoorziening is nu niet bereikbaar. Probeer het over enkele minuten opnieuw.",
            );
        }
    };
    let state = format!("{}.{}", chrono::Utc::now().timestamp(), random_token());
    let verifier = PkceCodeVerifier::new(oidc.derived("pkce", &state));
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
    let nonce = Nonce::new(oidc.derived("nonce", &state));
    let given = state.clone();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(given),
            move || nonce,
        )
        .add_scope(Scope::new("profile".to_owned()))
        .set_pkce_challenge(challenge);
    for scope in &oidc.settings.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    if let Some(resource) = &oidc.settings.resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let (url, _, _) = request.url();
    let mut response = Redirect::to(url.as_str()).into_response();
    set_cookie(
        &mut response,
        &format!(
            "{}={state}{}",
            web.pending_cookie(),
            web.cookie_attributes()
        ),
    );
    response
}

/// What the issuer sends back.
#[derive(serde::Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /aanmelden/terug`: the issuer's answer.
pub(crate) async fn callback(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let failed = |why: &str| {
        tracing::warn!(reason = why, "a web sign-in failed");
        super::refusal_page(
            StatusCode::BAD_REQUEST,
            "Aanmelden niet gelukt",
            "Het aanmelden kon niet worden afgerond. Begin opnieuw bij de startpagina.",
        )
    };
    let Some(oidc) = &web.oidc else {
        return Redirect::to("/").into_response();
    };
    if let Some(error) = &answer.error {
        // The issuer's error code only (a short word from RFC 6749), never its free text.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        return failed(&format!("the issuer answered {code}"));
    }
    let (Some(code), Some(state)) = (answer.code, answer.state) else {
        return failed("no code or state");
    };
    // The state must be the one this browser was sent off with, and recent.
    if !super::cookie(&headers, web.pending_cookie()).is_some_and(|c| same_secret(&c, &state)) {
        return failed("the state is not this browser's");
    }
    let began = state
        .split_once('.')
        .and_then(|(at, _)| at.parse::<i64>().ok());
    let age = began.map(|at| chrono::Utc::now().timestamp().saturating_sub(at));
    let limit = i64::try_from(PENDING_FOR.as_secs()).unwrap_or(i64::MAX);
    if !age.is_some_and(|age| (0..limit).contains(&age)) {
        return failed("the sign-in was begun too long ago, or not by naast");
    }
    let client = match oidc.client().await {
        Ok(client) => client,
        Err(e) => return failed(&format!("issuer unreachable: {e}")),
    };
    let exchange = match client.exchange_code(AuthorizationCode::new(code)) {
        Ok(exchange) => exchange,
        Err(e) => return failed(&e.to_string()),
    };
    let mut exchange =
        exchange.set_pkce_verifier(PkceCodeVerifier::new(oidc.derived("pkce", &state)));
    if let Some(resource) = &oidc.settings.resource {
        exchange = exchange.add_extra_param("resource", resource.clone());
    }
    let tokens = match exchange.request_async(&oidc.http).await {
        Ok(tokens) => tokens,
        Err(e) => return failed(&format!("code exchange: {}", error_chain(&e))),
    };
    let Some(id_token) = tokens.id_token() else {
        return failed("no ID token");
    };
    let nonce = Nonce::new(oidc.derived("nonce", &state));
    let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
        Ok(claims) => claims,
        Err(e) => return failed(&format!("ID token: {e}")),
    };
    let person = (claims.issuer().to_string(), claims.subject().to_string());
    let bearer = tokens.access_token().secret().clone();
    let caller = match web.let_in(&bearer, peer.0, &headers, "SignIn").await {
        Ok(caller) => caller,
        Err(Refused::Unauthenticated(why)) => {
            return failed(&format!("the access token is not accepted: {why}"));
        }
        Err(refused) => return super::refused_page(&refused),
    };
    let identity = &caller.principal.identity;
    if (&identity.issuer, &identity.subject) != (&person.0, &person.1) {
        // Someone's access token with someone else's ID token: recorded, as a refused call is.
        let record = naast_app::audit::Record {
            reason: Some(
                "web sign-in refused: the access token is not the ID token's person's".into(),
            ),
            ..caller.record(naast_app::audit::Outcome::Denied)
        };
        if let Err(e) = web.guard.auditor.record(&record).await {
            tracing::error!(error = %e, "cannot record a refused web sign-in");
            return super::unavailable();
        }
        return failed("the access token is someone else's than the ID token");
    }
    let mut response = Redirect::to("/huishoudens").into_response();
    let cookie = web.start_session(session_of(&caller, bearer, Some(id_token.to_string())));
    set_cookie(&mut response, &cookie);
    set_cookie(
        &mut response,
        &format!(
            "{}=; Max-Age=0{}",
            web.pending_cookie(),
            web.cookie_attributes()
        ),
    );
    response
}

fn session_of(
    caller: &naast_app::auth::caller::Caller,
    bearer: String,
    id_token: Option<String>,
) -> Session {
    let now = Instant::now();
    let principal = &caller.principal;
    Session {
        bearer,
        id_token,
        csrf: random_token(),
        name: principal
            .name
            .clone()
            .unwrap_or_else(|| principal.identity.subject.clone()),
        role: principal.role,
        issuer: principal.identity.issuer.clone(),
        subject: principal.identity.subject.clone(),
        started: now,
        seen: now,
        valid_until: caller.valid_until.unwrap_or(i64::MAX),
    }
}

/// `POST /aanmelden/demo`: a demo persona signs in (dev mode only).
pub(crate) async fn demo(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(dev) = &web.dev else {
        return super::not_found().await;
    };
    let pairs = super::form_pairs(&body);
    let bound = super::cookie(&headers, web.demo_cookie());
    let sent = super::form_value(&pairs, "csrf");
    if !matches!((bound, sent), (Some(b), Some(s)) if same_secret(&b, s)) {
        return super::csrf_refused();
    }
    let Some(persona) =
        super::form_value(&pairs, "persona").and_then(naast_app::auth::dev::Persona::named)
    else {
        return super::refusal_page(
            StatusCode::BAD_REQUEST,
            "Onbekende demopersoon",
            "Kies een van de demopersonen.",
        );
    };
    let bearer = match dev.mint(persona, naast_app::auth::dev::DEV_TOKEN_LIFETIME) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "cannot mint a demo token");
            return super::unavailable();
        }
    };
    let caller = match web.let_in(&bearer, peer.0, &headers, "SignIn").await {
        Ok(caller) => caller,
        Err(refused) => return super::refused_page(&refused),
    };
    let mut response = Redirect::to("/huishoudens").into_response();
    let cookie = web.start_session(session_of(&caller, bearer, None));
    set_cookie(&mut response, &cookie);
    response
}

/// `POST /afmelden`: the session ends (its live pages too), and the person is sent to sign out
/// at the issuer as well when it offers that.
pub(crate) async fn sign_out(
    State(web): State<Web>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some((id, session)) = web.session(&headers) else {
        return Redirect::to("/").into_response();
    };
    let signed = Signed { id, session };
    if !super::csrf_ok(&signed, &super::form_pairs(&body)) {
        return super::csrf_refused();
    }
    // Signed out here; then at the issuer too, so that on a shared computer the next person
    // cannot sign in as this one without a password.
    let cookie = web.end_session(&signed.id);
    let at_issuer = match (&web.oidc, &signed.session.id_token) {
        (Some(oidc), Some(id_token)) => oidc.end_session(id_token).await,
        _ => None,
    };
    let mut response = Redirect::to(at_issuer.as_deref().unwrap_or("/")).into_response();
    set_cookie(&mut response, &cookie);
    response
}

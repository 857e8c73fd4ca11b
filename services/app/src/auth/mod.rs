//! Authentication: every call but health carries `authorization: Bearer <access token>`, a JWT
//! from a trusted OpenID issuer, which becomes a [`Principal`].
//!
//! # What is checked
//! - The issuer (`iss`, read before anything else) is one of the configured trusted issuers.
//!   Their keys come from the discovery document and JWKS, fetched on first use and cached for
//!   `jwks_ttl`, then fetched again in the background (a token never waits for that): the set
//!   fetched replaces the old one whole, so a key the issuer withdrew stops being trusted, and a
//!   token verified with it before is verified again. A token signed with a key id the cache
//!   does not hold makes naast fetch at once. Fetches of one issuer happen one at a time and at
//!   most once per `jwks_min_refresh`, failed ones included; no lock is held during one but the
//!   fetch's own, which only tokens that need it wait for. When fetches keep failing, cached keys
//!   serve for at most [`MAX_KEY_AGE`].
//! - The signature, with an allow-list of asymmetric algorithms (RS256/384/512, PS256/384/512,
//!   ES256/384, EdDSA). `alg: none` and shared-secret algorithms are refused.
//! - The JOSE type, when given: `JWT` or `at+jwt` (RFC 9068).
//! - `aud` holds the configured audience; `exp` has not passed and `nbf` has come, each with a
//!   small leeway for clock skew.
//! - It is an access token: it names its `client_id` (RFC 9068), which ID tokens do not.
//!
//! # Claims used
//! | claim | meaning |
//! |---|---|
//! | `iss`, `sub` | who: the identity consent grants and linked members name |
//! | `naast_role` | `citizen`, `supporter`, `professional`, `pgo`, `evaluator` or `admin` (default `citizen`) |
//! | `naast_org` | the organisation a professional or supporter acts for (AGB/URA code) |
//! | `naast_acting_for` | for `pgo`: the subject (same issuer) of the member the platform acts for |
//! | `client_id` | the OAuth client (the source system in the audit log) |
//! | `name` | display name for the audit log |

pub mod caller;
pub mod dev;
pub mod limits;

use naast_domain::Identity;
use naast_domain::access::Principal;
use naast_domain::vocab::PrincipalRole;
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, ClaimsVerificationError, ClientId, IdToken, IdTokenVerifier, IssuerUrl,
    JsonWebTokenType, Nonce, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Least time between two JWKS fetches of one issuer, failed ones included.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
/// How long fetched keys are used before they are fetched again (in the background).
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(600);
/// Longest fetched keys serve while fetching them again keeps failing: past it, the issuer's
/// tokens are refused until its keys can be fetched (a withdrawn key must not live for ever).
pub const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 3600);
/// Longest a discovery or JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted token, in bytes (a JWT in a header).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Verified tokens remembered (by their SHA-256) so a client's every call does not verify its
/// signature again; when full, the memory starts afresh.
const MAX_CACHED_TOKENS: usize = 10_000;

/// The claims naast reads beyond the standard ones.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NaastClaims {
    /// Role; `citizen` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naast_role: Option<String>,
    /// Organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naast_org: Option<String>,
    /// The member a PGO platform acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naast_acting_for: Option<String>,
    /// OAuth client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Not before (seconds since 1970).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl AdditionalClaims for NaastClaims {}

/// An access token as openidconnect reads it (its ID-token type fits any JWT with `iss`,
/// `sub`, `aud`, `exp` and `iat`).
pub type AccessJwt = IdToken<
    NaastClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// How tokens are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// Issuer URLs trusted, exactly as in their tokens' `iss`.
    pub issuers: Vec<String>,
    /// The audience tokens must name.
    pub audience: String,
    /// Clock skew tolerated.
    pub leeway: Duration,
    /// Least time between two JWKS fetches of one issuer, failed ones included.
    pub jwks_min_refresh: Duration,
    /// How long fetched keys are used before they are fetched again.
    pub jwks_ttl: Duration,
    /// What each issuer may assert, by issuer URL. With one trusted issuer, an issuer left out
    /// may assert every role and organisation; with several, an issuer left out signs in
    /// citizens only (no other role, no organisation), so that no issuer vouches for what
    /// another one's users are.
    pub claims: std::collections::BTreeMap<String, IssuerClaims>,
}

/// What an issuer's tokens may assert beyond a citizen's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerClaims {
    /// Roles (`naast_role` wire names) its tokens may carry besides `citizen`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Organisations (`naast_org`) its tokens may name: exact codes, or a prefix ending in `*`
    /// (`"AGB-*"`).
    #[serde(default)]
    pub organisations: Vec<String>,
}

impl IssuerClaims {
    /// Whether a token may carry `role`.
    pub fn allows_role(&self, role: PrincipalRole) -> bool {
        role == PrincipalRole::Citizen || self.roles.iter().any(|r| r == role.wire_name())
    }

    /// Whether a token may name `organisation`.
    pub fn allows_organisation(&self, organisation: &str) -> bool {
        self.organisations
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => organisation.starts_with(prefix),
                None => organisation == pattern,
            })
    }
}

/// Why a call is not authenticated (answered `UNAUTHENTICATED`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` header.
    #[error("no bearer token: send `authorization: Bearer <access token>`")]
    Missing,
    /// Not a JWT, or not readable.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Issued by an issuer naast does not trust.
    #[error("token issuer {0:?} is not trusted")]
    UnknownIssuer(String),
    /// The issuer's keys could not be fetched.
    #[error("cannot fetch the keys of issuer {issuer}: {reason}")]
    Keys {
        /// Issuer.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// Signature, algorithm, audience, expiry or another check failed.
    #[error("token refused: {0}")]
    Invalid(String),
}

/// A trusted issuer and its cached keys.
struct Issuer {
    url: IssuerUrl,
    /// Keys of a built-in issuer never change; others are fetched.
    fixed: bool,
    /// Held only for moments, never across a fetch.
    keys: Mutex<Keys>,
    /// One fetch at a time; held across the fetch, waited for only by tokens that need it.
    fetching: tokio::sync::Mutex<()>,
    /// What its tokens may assert (`None`: anything).
    claims: Option<IssuerClaims>,
}

/// A token verified before: who it stands for, its validity (seconds since 1970), and the keys
/// it was verified with (its issuer's, at a generation).
struct Verified {
    principal: Principal,
    expires: i64,
    not_before: Option<i64>,
    issuer: String,
    generation: u64,
}

#[derive(Default)]
struct Keys {
    set: Option<Arc<CoreJsonWebKeySet>>,
    /// When the set was fetched.
    fetched: Option<Instant>,
    /// When a fetch last began, whatever came of it.
    attempted: Option<Instant>,
    /// Why the last fetch failed, if it did.
    failure: Option<String>,
    /// Counts the sets fetched: a token verified with an older one is verified again.
    generation: u64,
}

/// Turns bearer tokens into principals. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: HashMap<String, Issuer>,
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
    audience: String,
    leeway: Duration,
    jwks_min_refresh: Duration,
    jwks_ttl: Duration,
    http: openidconnect::reqwest::Client,
}

impl Authenticator {
    /// Trusts `settings.issuers`, plus `builtin` issuers whose keys are given (the dev issuer).
    pub fn new(
        settings: &AuthSettings,
        builtin: Vec<(String, CoreJsonWebKeySet)>,
    ) -> Result<Self, String> {
        let http = openidconnect::reqwest::Client::builder()
            // Discovery must not follow redirects (SSRF), as openidconnect advises.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut issuers = HashMap::new();
        // With several issuers, each asserts only what it is configured to.
        let several = settings.issuers.len() > 1;
        for url in &settings.issuers {
            let parsed = IssuerUrl::new(url.clone())
                .map_err(|e| format!("issuer {url:?} is not a URL: {e}"))?;
            issuers.insert(
                url.clone(),
                Issuer {
                    url: parsed,
                    fixed: false,
                    keys: Mutex::default(),
                    fetching: tokio::sync::Mutex::default(),
                    claims: match settings.claims.get(url) {
                        Some(claims) => Some(claims.clone()),
                        None if several => Some(IssuerClaims::default()),
                        None => None,
                    },
                },
            );
        }
        for (url, set) in builtin {
            let parsed = IssuerUrl::new(url.clone())
                .map_err(|e| format!("issuer {url:?} is not a URL: {e}"))?;
            issuers.insert(
                url,
                Issuer {
                    url: parsed,
                    fixed: true,
                    keys: Mutex::new(Keys {
                        set: Some(Arc::new(set)),
                        fetched: Some(Instant::now()),
                        ..Keys::default()
                    }),
                    fetching: tokio::sync::Mutex::default(),
                    claims: None,
                },
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                issuers,
                verified: std::sync::Mutex::default(),
                audience: settings.audience.clone(),
                leeway: settings.leeway,
                jwks_min_refresh: settings.jwks_min_refresh,
                jwks_ttl: settings.jwks_ttl,
                http,
            }),
        })
    }

    /// The principal an `authorization` header value stands for.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.authenticate_until(header)
            .await
            .map(|(principal, _)| principal)
    }

    /// As [`Authenticator::authenticate`], with the moment (seconds since 1970) from which the
    /// token is refused as expired (`exp` plus the leeway): a stream opened with it ends then.
    pub async fn authenticate_until(
        &self,
        header: Option<&str>,
    ) -> Result<(Principal, i64), AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Malformed("the header is not `Bearer <token>`".into()))?
            .trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(self.inner.leeway.as_secs()).unwrap_or(i64::MAX);
        let remembered = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
            .filter(|known| self.current_generation(&known.issuer) == Some(known.generation))
            .map(|known| {
                (
                    known.principal.clone(),
                    known.expires,
                    known.not_before,
                    known.issuer.clone(),
                )
            });
        if let Some((principal, expires, not_before, issuer)) = remembered {
            // Keys past their time-to-live are fetched again for remembered tokens too: a
            // withdrawn key must not stay trusted because its tokens are well known.
            self.keep_fresh(&issuer);
            // The signature was checked when it was first seen, with the issuer's keys as they
            // still are; time moves on, so the times are checked again.
            if now >= expires.saturating_add(leeway) {
                return Err(AuthError::Invalid("the token has expired".into()));
            }
            if not_before.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
                return Err(AuthError::Invalid(format!(
                    "the token is not valid before {} (seconds since 1970)",
                    not_before.unwrap_or_default()
                )));
            }
            return Ok((principal, expires.saturating_add(leeway)));
        }
        let issuer_url = unverified_issuer(token)?;
        let issuer = self.inner.issuers.get(&issuer_url).ok_or_else(|| {
            // Echo no more of an untrusted claim than it takes to recognise it.
            AuthError::UnknownIssuer(issuer_url.chars().take(100).collect())
        })?;
        let jwt = AccessJwt::from_str(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let mut refreshed = false;
        loop {
            let (set, generation) = self.keys(&issuer_url, issuer, refreshed).await?;
            match self.verify(issuer, &jwt, (*set).clone()) {
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refreshed && !issuer.fixed => {
                    // Perhaps the issuer rotated its keys: fetch them again, once.
                    refreshed = true;
                }
                Ok((principal, expires, not_before)) => {
                    let mut verified = self
                        .inner
                        .verified
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if verified.len() >= MAX_CACHED_TOKENS {
                        verified.clear();
                    }
                    verified.insert(
                        digest,
                        Verified {
                            principal: principal.clone(),
                            expires,
                            not_before,
                            issuer: issuer_url.clone(),
                            generation,
                        },
                    );
                    return Ok((principal, expires.saturating_add(leeway)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The principal a token stands for, with its `exp` and `nbf`, once its signature and
    /// claims are checked.
    fn verify(
        &self,
        issuer: &Issuer,
        jwt: &AccessJwt,
        keys: CoreJsonWebKeySet,
    ) -> Result<(Principal, i64, Option<i64>), ClaimsVerificationError> {
        let leeway = chrono::Duration::from_std(self.inner.leeway).unwrap_or_default();
        let verifier = IdTokenVerifier::new_public_client(
            ClientId::new(self.inner.audience.clone()),
            issuer.url.clone(),
            keys,
        )
        .set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::RsaSsaPssSha384,
            CoreJwsSigningAlgorithm::RsaSsaPssSha512,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            CoreJwsSigningAlgorithm::EdDsa,
        ])
        .set_allowed_jose_types(
            ["JWT", "at+jwt", "application/jwt", "application/at+jwt"]
                .into_iter()
                .filter_map(|t| JsonWebTokenType::new(t.to_owned()).normalize().ok()),
        )
        // `exp` is compared with this clock: running it behind by the leeway accepts a token
        // that expired that long ago.
        .set_time_fn(move || chrono::Utc::now() - leeway);
        let claims = jwt.claims(&verifier, |_: Option<&Nonce>| Ok(()))?;
        let extra = claims.additional_claims();
        if let Some(nbf) = extra.nbf
            && nbf > chrono::Utc::now().timestamp() + leeway.num_seconds()
        {
            return Err(ClaimsVerificationError::Expired(format!(
                "not valid before {nbf} (seconds since 1970)"
            )));
        }
        if extra.client_id.is_none() {
            // RFC 9068: an access token names the client it was issued to; an ID token does
            // not, and is no bearer token for naast.
            return Err(ClaimsVerificationError::Other(
                "not an access token: it has no client_id claim".into(),
            ));
        }
        let role = match extra.naast_role.as_deref() {
            None => PrincipalRole::Citizen,
            Some(role) => PrincipalRole::from_wire(role).ok_or_else(|| {
                ClaimsVerificationError::Other(format!(
                    "naast_role {} is not a known role",
                    naast_domain::validate::quote(role)
                ))
            })?,
        };
        if let Some(allowed) = &issuer.claims {
            if !allowed.allows_role(role) {
                return Err(ClaimsVerificationError::Other(format!(
                    "issuer {} may not assert naast_role {}",
                    issuer.url.as_str(),
                    role.wire_name()
                )));
            }
            if let Some(organisation) = &extra.naast_org
                && !allowed.allows_organisation(organisation)
            {
                return Err(ClaimsVerificationError::Other(format!(
                    "issuer {} may not assert naast_org {}",
                    issuer.url.as_str(),
                    naast_domain::validate::quote(organisation)
                )));
            }
        }
        let issuer_url = claims.issuer().to_string();
        // Only a platform acts for someone else.
        let acting_for = extra
            .naast_acting_for
            .as_ref()
            .filter(|_| role == PrincipalRole::Platform)
            .map(|subject| Identity {
                issuer: issuer_url.clone(),
                subject: subject.clone(),
            });
        let principal = Principal {
            identity: Identity {
                issuer: issuer_url,
                subject: claims.subject().to_string(),
            },
            role,
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            organisation: extra.naast_org.clone(),
            client_id: extra.client_id.clone(),
            acting_for,
        };
        Ok((principal, claims.expiration().timestamp(), extra.nbf))
    }

    /// The generation of `issuer`'s keys now, if they may still be used (`None`: not a trusted
    /// issuer, or its keys are past [`MAX_KEY_AGE`], so a token remembered with them is verified
    /// again).
    fn current_generation(&self, issuer: &str) -> Option<u64> {
        let issuer = self.inner.issuers.get(issuer)?;
        let keys = lock(&issuer.keys);
        let usable = issuer.fixed || keys.fetched.is_some_and(|at| at.elapsed() < MAX_KEY_AGE);
        usable.then_some(keys.generation)
    }

    /// The keys to verify a token of `issuer` with, and their generation: the cached ones at
    /// once; fetched first only when there are none (or they are past [`MAX_KEY_AGE`]), or when
    /// the token names a key they lack (`refresh`), and then only if the last fetch, failed or
    /// not, began at least `jwks_min_refresh` ago. Keys past their time-to-live are fetched again
    /// in the background while the cached ones serve.
    async fn keys(
        &self,
        url: &str,
        issuer: &Issuer,
        refresh: bool,
    ) -> Result<(Arc<CoreJsonWebKeySet>, u64), AuthError> {
        let (cached, generation, age, may_fetch, failure) = {
            let keys = lock(&issuer.keys);
            (
                keys.set.clone(),
                keys.generation,
                keys.fetched.map(|at| at.elapsed()),
                keys.attempted
                    .is_none_or(|at| at.elapsed() >= self.inner.jwks_min_refresh),
                keys.failure.clone(),
            )
        };
        if issuer.fixed {
            return cached
                .map(|set| (set, generation))
                .ok_or_else(|| self.no_keys(issuer, "no keys".into()));
        }
        let usable = cached.filter(|_| age.is_some_and(|age| age < MAX_KEY_AGE));
        if let Some(set) = &usable
            && !refresh
        {
            if age.is_some_and(|age| age >= self.inner.jwks_ttl) && may_fetch {
                self.refresh_in_background(url);
            }
            return Ok((set.clone(), generation));
        }
        if !may_fetch {
            // Fetched (or tried) too recently: the token is verified with what there is.
            if let Some(set) = usable {
                return Ok((set, generation));
            }
            // None yet: a fetch may be under way (a node's first burst of calls), whose outcome
            // this token waits for rather than be refused while the keys arrive.
            drop(issuer.fetching.lock().await);
            let keys = lock(&issuer.keys);
            return match (&keys.set, keys.fetched.map(|at| at.elapsed())) {
                (Some(set), Some(age)) if age < MAX_KEY_AGE => Ok((set.clone(), keys.generation)),
                _ => Err(self.no_keys(
                    issuer,
                    keys.failure
                        .clone()
                        .or(failure)
                        .unwrap_or_else(|| "no keys fetched yet".into()),
                )),
            };
        }
        self.fetch(issuer).await
    }

    /// Fetches `issuer`'s keys, one fetch at a time: a caller that waited for another's fetch
    /// takes its outcome instead of fetching again.
    async fn fetch(&self, issuer: &Issuer) -> Result<(Arc<CoreJsonWebKeySet>, u64), AuthError> {
        let asked = Instant::now();
        let _one = issuer.fetching.lock().await;
        {
            let mut keys = lock(&issuer.keys);
            if keys.attempted.is_some_and(|at| at >= asked) {
                return match (&keys.set, &keys.failure) {
                    (Some(set), None) => Ok((set.clone(), keys.generation)),
                    (_, failure) => {
                        Err(self
                            .no_keys(issuer, failure.clone().unwrap_or_else(|| "no keys".into())))
                    }
                };
            }
            keys.attempted = Some(Instant::now());
        }
        let fetched = CoreProviderMetadata::discover_async(issuer.url.clone(), &self.inner.http)
            .await
            .map(|metadata| metadata.jwks().clone());
        let mut keys = lock(&issuer.keys);
        match fetched {
            Ok(set) => {
                tracing::info!(issuer = %issuer.url.as_str(), keys = set.keys().len(), "fetched issuer keys");
                let set = Arc::new(set);
                keys.set = Some(set.clone());
                keys.fetched = Some(Instant::now());
                keys.failure = None;
                keys.generation += 1;
                Ok((set, keys.generation))
            }
            Err(e) => {
                let reason = error_chain(&e);
                tracing::warn!(issuer = %issuer.url.as_str(), error = %reason, "cannot fetch issuer keys");
                keys.failure = Some(reason.clone());
                Err(self.no_keys(issuer, reason))
            }
        }
    }

    /// Fetches the keys of the issuer at `url` in the background when they are past their
    /// time-to-live and the last fetch began long enough ago.
    fn keep_fresh(&self, url: &str) {
        let Some(issuer) = self.inner.issuers.get(url) else {
            return;
        };
        if issuer.fixed {
            return;
        }
        let stale = {
            let keys = lock(&issuer.keys);
            keys.fetched
                .is_some_and(|at| at.elapsed() >= self.inner.jwks_ttl)
                && keys
                    .attempted
                    .is_none_or(|at| at.elapsed() >= self.inner.jwks_min_refresh)
        };
        if stale {
            self.refresh_in_background(url);
        }
    }

    /// Fetches `issuer`'s keys on a task of its own, unless a fetch is under way.
    fn refresh_in_background(&self, url: &str) {
        let (authenticator, url) = (self.clone(), url.to_owned());
        tokio::spawn(async move {
            let Some(issuer) = authenticator.inner.issuers.get(&url) else {
                return;
            };
            // Another task may have fetched since this one was spawned.
            let due = lock(&issuer.keys)
                .attempted
                .is_none_or(|at| at.elapsed() >= authenticator.inner.jwks_min_refresh);
            if due && issuer.fetching.try_lock().is_ok() {
                // Failures are logged and noted by `fetch`; the cached keys serve meanwhile.
                let _ = authenticator.fetch(issuer).await;
            }
        });
    }

    fn no_keys(&self, issuer: &Issuer, reason: String) -> AuthError {
        AuthError::Keys {
            issuer: issuer.url.to_string(),
            reason,
        }
    }
}

/// A lock that a panic elsewhere does not poison for good: the keys are plain data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl From<ClaimsVerificationError> for AuthError {
    fn from(e: ClaimsVerificationError) -> Self {
        // With its cause: "signature verification failed" alone does not say what to mend.
        AuthError::Invalid(error_chain(&e))
    }
}

/// The `iss` claim of a JWT, read without verifying anything (to choose whose keys verify it).
fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "a JWT has three dot-separated parts".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| AuthError::Malformed(format!("payload is not base64url: {e}")))?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let iss: Iss = serde_json::from_slice(&bytes)
        .map_err(|e| AuthError::Malformed(format!("payload is not a JSON object: {e}")))?;
    iss.iss
        .ok_or_else(|| AuthError::Malformed("no `iss` claim".into()))
}

/// An error with its causes, one after another (`a: b: c`), as logs and refusals say it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

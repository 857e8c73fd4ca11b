//! Authentication: every call but health carries `authorization: Bearer <access token>`, a JWT
//! from a trusted OpenID issuer, which becomes a [`Principal`].
//!
//! # What is checked
//! - The issuer (`iss`, read before anything else) is one of the configured trusted issuers.
//!   Their keys come from the discovery document and JWKS, fetched on first use and cached;
//!   a token signed with a key id the cache does not hold makes naast fetch the JWKS again (at
//!   most once per `jwks_min_refresh`), so an issuer's key rotation needs no restart.
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

pub mod dev;
pub mod layer;

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
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Least time between two JWKS fetches of one issuer caused by unknown key ids.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
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
    /// Least time between JWKS fetches caused by unknown key ids.
    pub jwks_min_refresh: Duration,
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
    keys: Mutex<Keys>,
}

/// A token verified before: who it stands for, and its validity (seconds since 1970).
struct Verified {
    principal: Principal,
    expires: i64,
    not_before: Option<i64>,
}

#[derive(Default)]
struct Keys {
    set: Option<CoreJsonWebKeySet>,
    fetched: Option<Instant>,
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
        for url in &settings.issuers {
            let parsed = IssuerUrl::new(url.clone())
                .map_err(|e| format!("issuer {url:?} is not a URL: {e}"))?;
            issuers.insert(
                url.clone(),
                Issuer {
                    url: parsed,
                    fixed: false,
                    keys: Mutex::default(),
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
                        set: Some(set),
                        fetched: Some(Instant::now()),
                    }),
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
        if let Some(known) = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
        {
            // The signature was checked when it was first seen; time moves on, so the times
            // are checked again.
            if now >= known.expires.saturating_add(leeway) {
                return Err(AuthError::Invalid("the token has expired".into()));
            }
            if known
                .not_before
                .is_some_and(|nbf| nbf > now.saturating_add(leeway))
            {
                return Err(AuthError::Invalid(format!(
                    "the token is not valid before {} (seconds since 1970)",
                    known.not_before.unwrap_or_default()
                )));
            }
            return Ok((
                known.principal.clone(),
                known.expires.saturating_add(leeway),
            ));
        }
        let issuer_url = unverified_issuer(token)?;
        let issuer = self.inner.issuers.get(&issuer_url).ok_or_else(|| {
            // Echo no more of an untrusted claim than it takes to recognise it.
            AuthError::UnknownIssuer(issuer_url.chars().take(100).collect())
        })?;
        let jwt = AccessJwt::from_str(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let mut refreshed = false;
        loop {
            let set = self.keys(issuer, refreshed).await?;
            match self.verify(issuer, &jwt, set) {
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

    /// The issuer's keys: cached, or fetched when none are cached or `refresh` asks for it
    /// (no more often than `jwks_min_refresh`).
    async fn keys(&self, issuer: &Issuer, refresh: bool) -> Result<CoreJsonWebKeySet, AuthError> {
        let mut keys = issuer.keys.lock().await;
        let stale = keys.set.is_none()
            || (refresh
                && keys
                    .fetched
                    .is_none_or(|at| at.elapsed() >= self.inner.jwks_min_refresh));
        if stale && !issuer.fixed {
            let failed = |reason: String| AuthError::Keys {
                issuer: issuer.url.to_string(),
                reason,
            };
            let metadata =
                CoreProviderMetadata::discover_async(issuer.url.clone(), &self.inner.http)
                    .await
                    .map_err(|e| failed(error_chain(&e)))?;
            keys.set = Some(metadata.jwks().clone());
            keys.fetched = Some(Instant::now());
            tracing::info!(issuer = %issuer.url.as_str(), keys = metadata.jwks().keys().len(), "fetched issuer keys");
        }
        keys.set.clone().ok_or_else(|| AuthError::Keys {
            issuer: issuer.url.to_string(),
            reason: "no keys".into(),
        })
    }
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

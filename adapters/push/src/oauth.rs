//! OAuth2 `client_credentials` with `private_key_jwt` client authentication, as SMART Backend
//! Services and Koppeltaal 2.0 ask of a system that writes to a platform's FHIR server: naast
//! signs a short-lived JWT assertion with its own private key (RS384 or ES384), trades it at the
//! platform's token endpoint for an access token, keeps that token until shortly before it
//! expires (or until the platform refuses it), and then asks again.

use base64::Engine as _;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long before its expiry a token is no longer used.
const MARGIN: Duration = Duration::from_secs(30);
/// How long an assertion is valid (SMART: at most five minutes).
const ASSERTION_LIFETIME: u64 = 300;
/// The assertion type of `private_key_jwt`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The algorithms of SMART Backend Services' client assertions.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-384 (an RSA key).
    #[default]
    RS384,
    /// ECDSA on P-384 with SHA-384 (an EC key).
    ES384,
}

impl SigningAlgorithm {
    fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::RS384 => "RS384",
            SigningAlgorithm::ES384 => "ES384",
        }
    }
}

/// The settings of `auth = { kind = "client_credentials", … }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentials {
    /// The platform's token endpoint.
    pub token_url: String,
    /// naast's client id there.
    pub client_id: String,
    /// naast's private key (PKCS#8 PEM: RSA for RS384, P-384 for ES384), readable by naast alone.
    pub private_key_file: PathBuf,
    /// The key's id (`kid`) in the JWKS the platform knows naast by.
    pub key_id: String,
    /// The assertion's algorithm.
    #[serde(default)]
    pub algorithm: SigningAlgorithm,
    /// The scope asked for (e.g. `system/*.write`), if the platform wants one.
    #[serde(default)]
    pub scope: Option<String>,
    /// The resource (RFC 8707) the token is for, if the platform wants one.
    #[serde(default)]
    pub resource: Option<String>,
}

enum Key {
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha384>>),
    Ec(Box<p384::ecdsa::SigningKey>),
}

/// A token source: the key, and the token last obtained.
pub struct TokenSource {
    settings: ClientCredentials,
    key: Key,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    /// Reads the key of `settings`.
    pub fn new(settings: &ClientCredentials) -> Result<Self, String> {
        let pem = std::fs::read_to_string(&settings.private_key_file).map_err(|e| {
            format!(
                "reading the private key {}: {e}",
                settings.private_key_file.display()
            )
        })?;
        let key = match settings.algorithm {
            SigningAlgorithm::RS384 => {
                use rsa::pkcs8::DecodePrivateKey as _;
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
                    .map_err(|e| format!("the private key is not an RSA PKCS#8 PEM key: {e}"))?;
                Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
            }
            SigningAlgorithm::ES384 => {
                use p384::pkcs8::DecodePrivateKey as _;
                let key = p384::ecdsa::SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|e| format!("the private key is not a P-384 PKCS#8 PEM key: {e}"))?;
                Key::Ec(Box::new(key))
            }
        };
        Ok(Self {
            settings: settings.clone(),
            key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The signed client assertion for a token request now.
    fn assertion(&self) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = crate::deliver::now_micros() / 1_000_000;
        let header = serde_json::json!({
            "alg": self.settings.algorithm.name(),
            "typ": "JWT",
            "kid": self.settings.key_id,
        });
        let claims = serde_json::json!({
            "iss": self.settings.client_id,
            "sub": self.settings.client_id,
            "aud": self.settings.token_url,
            "jti": uuid::Uuid::now_v7().to_string(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match &self.key {
            Key::Rsa(key) => {
                use rsa::signature::{SignatureEncoding as _, Signer as _};
                key.sign(input.as_bytes()).to_vec()
            }
            Key::Ec(key) => {
                use p384::ecdsa::signature::Signer as _;
                // JOSE wants the raw r‖s (96 bytes), not DER.
                let signature: p384::ecdsa::Signature = key.sign(input.as_bytes());
                signature.to_bytes().to_vec()
            }
        };
        format!("{input}.{}", b64(&signature))
    }

    /// A valid access token: the one kept, or a new one from the token endpoint.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, String> {
        let mut kept = self.token.lock().await;
        if let Some((token, until)) = kept.as_ref()
            && Instant::now() + MARGIN < *until
        {
            return Ok(token.clone());
        }
        let assertion = self.assertion();
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        if let Some(scope) = &self.settings.scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = &self.settings.resource {
            form.push(("resource", resource));
        }
        let body = serde_urlencoded_form(&form);
        let response = http
            .post(&self.settings.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("token endpoint {}: {e}", self.settings.token_url))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let end = text.len().min(512);
            return Err(format!(
                "token endpoint {} answered {status}: {}",
                self.settings.token_url,
                text.get(..end).unwrap_or_default()
            ));
        }
        let answer: TokenResponse = serde_json::from_str(&text).map_err(|e| {
            format!(
                "token endpoint {}: not a token response: {e}",
                self.settings.token_url
            )
        })?;
        // Without a lifetime the token is used until the platform refuses it.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        *kept = Some((answer.access_token.clone(), Instant::now() + lifetime));
        Ok(answer.access_token)
    }

    /// Forgets the token kept (the platform refused it).
    pub async fn forget(&self) {
        *self.token.lock().await = None;
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn serde_urlencoded_form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

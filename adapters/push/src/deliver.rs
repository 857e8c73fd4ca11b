//! Requests to a platform's FHIR server, retried until they are answered for good.
//!
//! - **Retried**, with exponential backoff and full jitter up to the endpoint's longest wait:
//!   a 5xx, 408, 409, 429 (after its `Retry-After`, seconds or an HTTP date), a timeout, a
//!   refused or dropped connection. There is no limit on retries: a platform that is down for a
//!   day gets everything when it comes back, in order.
//! - **Refused for good**: any other 4xx (a 401 only after the token was read again and still
//!   refused). The worker files a dead letter with the answer's body.
//! - Before every attempt the caller's `before` hook runs (the audit record of what is about to
//!   leave naast); if it fails, nothing is sent and the attempt is retried later.

use crate::endpoint::{Auth, Endpoint};
use bytes::Bytes;
use rand::Rng;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The first wait between retries.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The content type of FHIR R4 JSON.
const FHIR_JSON: &str = "application/fhir+json";

/// What the platform finally said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Written (or deleted, or already gone); the server's id of the resource, when it said.
    Done {
        /// The server's id.
        remote: Option<String>,
        /// The HTTP status.
        status: u16,
    },
    /// Refused for good.
    Refused {
        /// The HTTP status.
        status: u16,
        /// What it said, cut to [`crate::store::MAX_BODY`] bytes.
        body: String,
    },
}

/// The delivery was abandoned because naast is stopping.
#[derive(Debug, thiserror::Error)]
#[error("naast is stopping")]
pub struct Stopping;

/// Why a client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token file cannot be read.
    #[error("push endpoint {endpoint}: reading the token file {file}: {reason}")]
    TokenFile {
        /// The endpoint.
        endpoint: String,
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The webhook's signing secret cannot be read or is not `whsec_` and base64.
    #[error("push endpoint {endpoint}: the signing secret in {file}: {reason}")]
    Secret {
        /// The endpoint.
        endpoint: String,
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The OAuth2 client credentials cannot be used.
    #[error("push endpoint {endpoint}: auth: {reason}")]
    Credentials {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client cannot be built.
    #[error("push endpoint {endpoint}: {reason}")]
    Http {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// One request: its method and URL, and its body (for a write).
#[derive(Clone, Debug)]
pub struct Request {
    /// `PUT`, `DELETE` (FHIR) or `POST` (a webhook).
    pub method: reqwest::Method,
    /// The URL.
    pub url: reqwest::Url,
    /// The JSON body of a write.
    pub body: Option<Bytes>,
    /// A webhook's message id: the request is signed (Standard Webhooks) at each attempt, with
    /// the time of that attempt.
    pub webhook_id: Option<String>,
    /// More headers (a FHIR Subscription's `channel.header`).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A FHIR request.
    pub fn fhir(method: reqwest::Method, url: reqwest::Url, body: Option<Bytes>) -> Self {
        Self {
            method,
            url,
            body,
            webhook_id: None,
            headers: Vec::new(),
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Answered(Answer),
    Retry {
        after: Option<Duration>,
        why: String,
    },
    Unauthorized {
        body: String,
    },
}

/// How an endpoint's deliveries have gone since naast started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Requests answered for good (written, deleted, or refused).
    pub delivered: u64,
    /// Attempts that are retried.
    pub retried: u64,
    /// The last failure; `None` once a request succeeds again.
    pub last_error: Option<String>,
    /// When the platform last accepted a request (µs since 1970).
    pub last_delivered_micros: Option<u64>,
}

/// The HTTP client of one endpoint.
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    token: Mutex<Option<String>>,
    status: std::sync::Arc<Mutex<Status>>,
    /// A webhook's signing key (the secret's bytes).
    secret: Option<Vec<u8>>,
    /// Access tokens from the platform's token endpoint, for `client_credentials`.
    oauth: Option<crate::oauth::TokenSource>,
}

/// The least bytes of a webhook secret (the Standard Webhooks advice: 24 to 64).
const MIN_SECRET_BYTES: usize = 24;

/// A webhook's signing key from its secret, written `whsec_` and base64.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let encoded = secret
        .trim()
        .strip_prefix("whsec_")
        .ok_or("it does not start with whsec_")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("not base64 after whsec_: {e}"))?;
    if key.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{} bytes; use at least {MIN_SECRET_BYTES} random bytes",
            key.len()
        ));
    }
    Ok(key)
}

/// The `webhook-signature` of a message (Standard Webhooks `v1`): base64 of the HMAC-SHA256,
/// under `key`, of `{id}.{timestamp}.{body}`.
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

impl Client {
    /// A client for `endpoint`, its token read if it has one, keeping `status`.
    pub fn new(
        endpoint: &Endpoint,
        status: std::sync::Arc<Mutex<Status>>,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(endpoint.timeout())
            .connect_timeout(endpoint.timeout().min(Duration::from_secs(5)))
            .user_agent(concat!("naast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http {
                endpoint: endpoint.name.clone(),
                reason: e.to_string(),
            })?;
        let secret = match &endpoint.secret_file {
            None => None,
            Some(file) => {
                let failed = |reason: String| ClientError::Secret {
                    endpoint: endpoint.name.clone(),
                    file: file.display().to_string(),
                    reason,
                };
                let text = std::fs::read_to_string(file).map_err(|e| failed(e.to_string()))?;
                Some(signing_key(&text).map_err(failed)?)
            }
        };
        let oauth = match &endpoint.auth {
            Auth::ClientCredentials(settings) => {
                Some(crate::oauth::TokenSource::new(settings).map_err(|reason| {
                    ClientError::Credentials {
                        endpoint: endpoint.name.clone(),
                        reason,
                    }
                })?)
            }
            _ => None,
        };
        let client = Self {
            http,
            endpoint: endpoint.clone(),
            token: Mutex::new(None),
            status,
            secret,
            oauth,
        };
        client.reload_token()?;
        Ok(client)
    }

    fn reload_token(&self) -> Result<(), ClientError> {
        let token = match &self.endpoint.auth {
            Auth::None | Auth::ClientCredentials(_) => None,
            Auth::Bearer { token_file } => {
                let text =
                    std::fs::read_to_string(token_file).map_err(|e| ClientError::TokenFile {
                        endpoint: self.endpoint.name.clone(),
                        file: token_file.display().to_string(),
                        reason: e.to_string(),
                    })?;
                Some(text.trim().to_owned())
            }
        };
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
        Ok(())
    }

    /// The URL of `resource_type` with naast's identifier `id` (for conditional update and
    /// delete).
    pub fn by_identifier(&self, resource_type: &str, id: uuid::Uuid) -> Option<reqwest::Url> {
        let mut url =
            reqwest::Url::parse(&format!("{}/{resource_type}", self.endpoint.base())).ok()?;
        url.query_pairs_mut().append_pair(
            "identifier",
            &format!("{}|urn:uuid:{id}", naast_fhir::UUID_SYSTEM),
        );
        Some(url)
    }

    /// The URL of the server's resource `resource_type/remote`.
    pub fn by_remote_id(&self, resource_type: &str, remote: &str) -> Option<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}/", self.endpoint.base())).ok()?;
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .push(resource_type)
            .push(remote);
        Some(url)
    }

    /// Sends `request` until it is answered for good, calling `before(attempt)` ahead of each
    /// attempt (numbered from 1); gives up only when `stop` turns true.
    pub async fn send<F, Fut>(
        &self,
        request: &Request,
        stop: &mut watch::Receiver<bool>,
        mut before: F,
    ) -> Result<Answer, Stopping>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut reloaded = false;
        for attempt in 1.. {
            if *stop.borrow() {
                return Err(Stopping);
            }
            let outcome = match before(attempt).await {
                Err(why) => Attempt::Retry {
                    after: None,
                    why: format!("not sent: {why}"),
                },
                Ok(()) => tokio::select! {
                    outcome = self.attempt(request) => outcome,
                    _ = stop.wait_for(|s| *s) => return Err(Stopping),
                },
            };
            let wait = match outcome {
                Attempt::Answered(answer) => {
                    self.note(|status| {
                        status.delivered += 1;
                        match &answer {
                            Answer::Done { .. } => {
                                status.last_error = None;
                                status.last_delivered_micros = Some(now_micros());
                            }
                            Answer::Refused { status: code, .. } => {
                                status.last_error = Some(format!(
                                    "{} {} refused for good: {code}",
                                    request.method, request.url
                                ));
                            }
                        }
                    });
                    return Ok(answer);
                }
                Attempt::Unauthorized { body } => {
                    // The token may have been rotated or revoked: read it again (or ask for a
                    // new one) once, then the refusal stands.
                    if let Some(oauth) = &self.oauth {
                        oauth.forget().await;
                    }
                    if reloaded || self.reload_token().is_err() {
                        return Ok(Answer::Refused { status: 401, body });
                    }
                    reloaded = true;
                    continue;
                }
                Attempt::Retry { after, why } => {
                    self.note(|status| {
                        status.retried += 1;
                        status.last_error =
                            Some(format!("{} {}: {why}", request.method, request.url));
                    });
                    let jittered = rand::thread_rng().gen_range(backoff / 2..=backoff);
                    backoff = (backoff * 2).min(self.endpoint.max_backoff());
                    let wait = after.map_or(jittered, |a| a.min(MAX_RETRY_AFTER));
                    tracing::warn!(
                        endpoint = %self.endpoint.name,
                        method = %request.method,
                        url = %request.url,
                        attempt,
                        retry_in = ?wait,
                        "push not delivered: {why}"
                    );
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return Err(Stopping),
            }
        }
        Err(Stopping)
    }

    fn note(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    async fn attempt(&self, request: &Request) -> Attempt {
        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone());
        let content_type = match &request.webhook_id {
            None => {
                builder = builder.header(reqwest::header::ACCEPT, FHIR_JSON);
                FHIR_JSON
            }
            Some(id) => {
                let timestamp = now_micros() / 1_000_000;
                let body = request.body.as_deref().unwrap_or_default();
                let signature = self
                    .secret
                    .as_deref()
                    .map(|key| signature(key, id, timestamp, body))
                    .unwrap_or_default();
                builder = builder
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature);
                "application/json"
            }
        };
        let bearer = match &self.oauth {
            Some(oauth) => match oauth.token(&self.http).await {
                Ok(token) => Some(token),
                Err(why) => {
                    return Attempt::Retry {
                        after: None,
                        why: format!("no access token: {why}"),
                    };
                }
            },
            None => self.token.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        if let Some(token) = bearer {
            builder = builder.bearer_auth(token);
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    why: naast_app::auth::error_chain(&e),
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    why: format!("reading the answer: {}", naast_app::auth::error_chain(&e)),
                };
            }
        };
        let code = status.as_u16();
        let deleting = request.method == reqwest::Method::DELETE;
        if status.is_success() || (deleting && matches!(code, 404 | 410)) {
            let remote = if deleting {
                None
            } else {
                remote_id(&body, location.as_deref())
            };
            return Attempt::Answered(Answer::Done {
                remote,
                status: code,
            });
        }
        if status.is_server_error() || matches!(code, 408 | 409 | 429) {
            return Attempt::Retry {
                after: retry_after,
                why: format!("{status}"),
            };
        }
        let body = cut(&body);
        if code == 401 {
            return Attempt::Unauthorized { body };
        }
        Attempt::Answered(Answer::Refused { status: code, body })
    }
}

/// The server's id of the resource written: the body's `id`, else the `Location` header's
/// `…/Type/id[/_history/v]`.
fn remote_id(body: &[u8], location: Option<&str>) -> Option<String> {
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
    from_body.or_else(|| {
        let path = location?.split('?').next()?;
        let mut parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        if parts.len() >= 2 && parts[parts.len() - 2] == "_history" {
            parts.truncate(parts.len() - 2);
        }
        parts.last().map(|s| (*s).to_owned())
    })
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Now, in µs since 1970.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn cut(body: &[u8]) -> String {
    let end = body.len().min(crate::store::MAX_BODY);
    String::from_utf8_lossy(&body[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_id_comes_from_the_body_or_the_location() {
        assert_eq!(
            remote_id(br#"{"resourceType":"Goal","id":"abc"}"#, None),
            Some("abc".into())
        );
        assert_eq!(
            remote_id(b"", Some("http://h/fhir/Goal/xyz/_history/2")),
            Some("xyz".into())
        );
        assert_eq!(
            remote_id(b"", Some("http://h/fhir/Goal/xyz")),
            Some("xyz".into())
        );
        assert_eq!(remote_id(b"", None), None);
    }

    #[test]
    fn webhook_signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(signing_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(
            signing_key("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("at least")
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        headers.insert(
            reqwest::header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let wait = retry_after(&headers).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }
}

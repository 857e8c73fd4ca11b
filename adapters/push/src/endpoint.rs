//! A push endpoint: a PGO platform's receiving side, as the configuration names it.
//!
//! ```toml
//! [[push]]
//! name = "jouw-omgeving"
//! kind = "fhir"
//! url = "https://fhir.example.jouwomgeving.nl/fhir"
//! # The platform whose consent grants decide which households are pushed, and what of them.
//! platform = { issuer = "https://login.example.nl", client_id = "jouw-omgeving" }
//! auth = { kind = "bearer", token_file = "/etc/naast/jouw-omgeving.token" }
//! ```
//!
//! A Koppeltaal 2.0 participant is the same kind with its own settings: SMART backend
//! authentication (`auth = { kind = "client_credentials", … }`), the resource types it takes
//! (`resource_types`) and the profiles its server expects (`profiles`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Resource types naast pushes, in the order they are written (what is referred to first).
pub const PUSHED_TYPES: [&str; 8] = [
    "Patient",
    "RelatedPerson",
    "Group",
    "CareTeam",
    "Goal",
    "CarePlan",
    "Coverage",
    "Task",
];

/// One configured endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Its name: lowercase letters, digits and `-`; it keys the endpoint's checkpoint, so
    /// renaming an endpoint starts it over.
    pub name: String,
    /// What it receives.
    pub kind: EndpointKind,
    /// The base URL: a FHIR server's base (`…/fhir`), or the webhook's address.
    pub url: String,
    /// The platform the family grants access to.
    pub platform: Platform,
    /// How naast authenticates to it.
    #[serde(default)]
    pub auth: Auth,
    /// For a webhook: the file holding the signing secret (`whsec_` and base64 of at least 24
    /// random bytes), shared with the receiver.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The resource types it takes (empty: every type in [`PUSHED_TYPES`]).
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// A profile to claim in `meta.profile` per resource type (e.g. Koppeltaal's).
    #[serde(default)]
    pub profiles: BTreeMap<String, String>,
    /// How long one request may take before it is retried.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// The longest wait between retries.
    #[serde(default = "default_max_backoff_seconds")]
    pub max_backoff_seconds: u64,
    /// Households synchronised at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

/// The kinds of endpoint.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// A FHIR R4 server: resources written with conditional update, withdrawn with `DELETE`.
    Fhir,
    /// A small signed notice per change (Standard Webhooks), after which the platform reads
    /// over gRPC or FHIR.
    Webhook,
}

impl EndpointKind {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            EndpointKind::Fhir => "fhir",
            EndpointKind::Webhook => "webhook",
        }
    }
}

/// A PGO platform as consent grants name it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The issuer of the platform's tokens.
    pub issuer: String,
    /// Its OAuth client id.
    pub client_id: String,
}

/// How naast authenticates to an endpoint.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// No credentials (a receiver on a private network).
    #[default]
    None,
    /// A static bearer token read from a file (read again when the endpoint answers 401, so a
    /// rotated token is picked up).
    Bearer {
        /// The file holding the token.
        token_file: PathBuf,
    },
    /// OAuth2 `client_credentials` with `private_key_jwt` (SMART Backend Services, Koppeltaal
    /// 2.0): naast signs an assertion with its own key and trades it for access tokens.
    ClientCredentials(crate::oauth::ClientCredentials),
}

fn default_timeout_seconds() -> u64 {
    10
}

fn default_max_backoff_seconds() -> u64 {
    60
}

fn default_concurrency() -> usize {
    4
}

/// Why an endpoint's configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// A field holds a value that cannot work.
    #[error("push endpoint {endpoint:?}: {field}: {reason}")]
    Invalid {
        /// The endpoint's name.
        endpoint: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Endpoint {
    /// Checks what deserialising cannot: names, URLs, types and limits.
    pub fn validate(&self) -> Result<(), EndpointError> {
        let invalid = |field, reason: &str| EndpointError::Invalid {
            endpoint: self.name.clone(),
            field,
            reason: reason.to_owned(),
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(
                "name",
                "use lowercase letters, digits and '-', at least one",
            ));
        }
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => return Err(invalid("url", "not an http(s) URL")),
        }
        if self.platform.issuer.is_empty() {
            return Err(invalid("platform.issuer", "must not be empty"));
        }
        if self.platform.client_id.is_empty() {
            return Err(invalid("platform.client_id", "must not be empty"));
        }
        for t in self.resource_types.iter().chain(self.profiles.keys()) {
            if !PUSHED_TYPES.contains(&t.as_str()) {
                return Err(invalid(
                    "resource_types",
                    &format!("{t} is not pushed; choose from {}", PUSHED_TYPES.join(", ")),
                ));
            }
        }
        match (self.kind, &self.secret_file) {
            (EndpointKind::Webhook, None) => {
                return Err(invalid(
                    "secret_file",
                    "a webhook needs a signing secret (whsec_ and base64 of random bytes)",
                ));
            }
            (EndpointKind::Fhir, Some(_)) => {
                return Err(invalid("secret_file", "only a webhook signs its notices"));
            }
            _ => {}
        }
        if self.kind == EndpointKind::Webhook
            && (!self.resource_types.is_empty() || !self.profiles.is_empty())
        {
            return Err(invalid(
                "resource_types",
                "a webhook sends notices, not resources: resource_types and profiles are for fhir endpoints",
            ));
        }
        if let Auth::ClientCredentials(oauth) = &self.auth {
            match reqwest::Url::parse(&oauth.token_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => return Err(invalid("auth.token_url", "not an http(s) URL")),
            }
            if oauth.client_id.is_empty() {
                return Err(invalid("auth.client_id", "must not be empty"));
            }
            if oauth.key_id.is_empty() {
                return Err(invalid("auth.key_id", "must not be empty"));
            }
        }
        if self.timeout_seconds == 0 {
            return Err(invalid("timeout_seconds", "must be at least 1"));
        }
        if self.max_backoff_seconds == 0 {
            return Err(invalid("max_backoff_seconds", "must be at least 1"));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(invalid("concurrency", "must be between 1 and 64"));
        }
        Ok(())
    }

    /// Whether resources of `resource_type` go to this endpoint.
    pub fn takes(&self, resource_type: &str) -> bool {
        self.resource_types.is_empty() || self.resource_types.iter().any(|t| t == resource_type)
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    /// The longest wait between retries.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.max_backoff_seconds)
    }

    /// The base URL without a trailing `/`.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }
}

/// Checks a list of endpoints: each valid, no name twice.
pub fn validate_all(endpoints: &[Endpoint]) -> Result<(), EndpointError> {
    let mut names = std::collections::BTreeSet::new();
    for endpoint in endpoints {
        endpoint.validate()?;
        if !names.insert(endpoint.name.as_str()) {
            return Err(EndpointError::Invalid {
                endpoint: endpoint.name.clone(),
                field: "name",
                reason: "two endpoints have this name".to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Endpoint>, String> {
        #[derive(Deserialize)]
        struct File {
            push: Vec<Endpoint>,
        }
        let file: File = toml_like(text)?;
        validate_all(&file.push).map_err(|e| e.to_string())?;
        Ok(file.push)
    }

    /// The tests write endpoints as JSON (this crate has no TOML parser; the server's
    /// configuration reads the same shapes from TOML).
    fn toml_like<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_endpoint_with_defaults_and_one_with_everything() {
        let endpoints = parse(
            r#"{"push": [
                {"name": "jo", "kind": "fhir", "url": "https://fhir.example.nl/fhir/",
                 "platform": {"issuer": "https://login.example.nl", "client_id": "jo"}},
                {"name": "kt2-test", "kind": "fhir", "url": "http://127.0.0.1:8080/fhir",
                 "platform": {"issuer": "https://idp", "client_id": "kt"},
                 "auth": {"kind": "client_credentials", "token_url": "https://idp/token",
                          "client_id": "naast", "private_key_file": "/run/secrets/kt.pem",
                          "key_id": "naast-1", "algorithm": "ES384", "scope": "system/*.write"},
                 "resource_types": ["Patient", "CarePlan"],
                 "profiles": {"Patient": "http://koppeltaal.nl/fhir/StructureDefinition/KT2Patient"},
                 "timeout_seconds": 3, "max_backoff_seconds": 5, "concurrency": 2}
            ]}"#,
        )
        .map_err(|e| format!("should parse: {e}"));
        let Ok(endpoints) = endpoints else {
            panic!("{endpoints:?}");
        };
        assert_eq!(endpoints[0].base(), "https://fhir.example.nl/fhir");
        assert_eq!(endpoints[0].auth, Auth::None);
        assert!(endpoints[0].takes("Goal"));
        assert_eq!(endpoints[0].concurrency, 4);
        assert!(endpoints[1].takes("CarePlan"));
        assert!(!endpoints[1].takes("Goal"));
        assert_eq!(endpoints[1].timeout(), Duration::from_secs(3));
        let Auth::ClientCredentials(oauth) = &endpoints[1].auth else {
            panic!("{:?}", endpoints[1].auth);
        };
        assert_eq!(oauth.algorithm, crate::oauth::SigningAlgorithm::ES384);
        assert_eq!(oauth.scope.as_deref(), Some("system/*.write"));
    }

    #[test]
    fn bad_endpoints_are_refused_naming_the_field() {
        let cases = [
            (r#""name": "Jo Omgeving""#, "name"),
            (r#""name": "jo", "url": "ftp://x""#, "url"),
            (
                r#""name": "jo", "resource_types": ["Consent"]"#,
                "resource_types",
            ),
            (r#""name": "jo", "concurrency": 0"#, "concurrency"),
            (
                r#""name": "jo", "auth": {"kind": "client_credentials", "token_url": "idp",
                   "client_id": "n", "private_key_file": "k", "key_id": "1"}"#,
                "auth.token_url",
            ),
            (
                r#""name": "jo", "auth": {"kind": "client_credentials", "token_url": "https://i/t",
                   "client_id": "n", "private_key_file": "k", "key_id": "1", "algorithm": "HS256"}"#,
                "HS256",
            ),
        ];
        for (fields, field) in cases {
            let text = format!(
                r#"{{"push": [{{"kind": "fhir", "url": "http://h/fhir",
                    "platform": {{"issuer": "i", "client_id": "c"}}, {fields}}}]}}"#
            );
            let error = parse(&text).err().unwrap_or_default();
            assert!(error.contains(field), "{fields}: {error}");
        }
        let twice = r#"{"push": [
            {"name": "a", "kind": "fhir", "url": "http://h/", "platform": {"issuer": "i", "client_id": "c"}},
            {"name": "a", "kind": "fhir", "url": "http://g/", "platform": {"issuer": "i", "client_id": "c"}}]}"#;
        assert!(
            parse(twice)
                .err()
                .unwrap_or_default()
                .contains("two endpoints")
        );
        let unknown = r#"{"push": [{"name": "a", "kind": "fhir", "url": "http://h/",
            "platform": {"issuer": "i", "client_id": "c"}, "retries": 3}]}"#;
        assert!(parse(unknown).err().unwrap_or_default().contains("retries"));
    }
}

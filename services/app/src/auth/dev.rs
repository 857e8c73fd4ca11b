//! The built-in development issuer of `naast serve --dev` and `naast demo`: it signs tokens for
//! a fixed set of demo personas with an Ed25519 key kept in the data directory (so tokens stay
//! valid across restarts). NOT FOR PRODUCTION: anyone who can read the data directory can sign
//! in as anyone.

use super::{AccessJwt, NaastClaims};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use naast_domain::Identity;
use naast_domain::vocab::PrincipalRole;
use openidconnect::core::{CoreEdDsaPrivateSigningKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{
    Audience, EndUserName, IdTokenClaims, IssuerUrl, JsonWebKeyId, LocalizedClaim,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The dev issuer's URL (`.invalid`: it resolves nowhere, and no real issuer can be it).
pub const DEV_ISSUER: &str = "https://dev.naast.invalid";
/// The key file in the data directory.
pub const KEY_FILE: &str = "dev-issuer-key.pem";
/// How long a dev token lasts.
pub const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const KEY_ID: &str = "naast-dev-1";

/// A demo persona the dev issuer signs tokens for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persona {
    /// Short name, as printed.
    pub key: &'static str,
    /// Subject.
    pub subject: &'static str,
    /// Role.
    pub role: PrincipalRole,
    /// Display name.
    pub name: &'static str,
    /// Organisation.
    pub organisation: Option<&'static str>,
    /// OAuth client.
    pub client_id: &'static str,
    /// For the PGO persona: the subject of the member it acts for.
    pub acting_for: Option<&'static str>,
}

impl Persona {
    /// The persona's identity at the dev issuer.
    pub fn identity(&self) -> Identity {
        Identity {
            issuer: DEV_ISSUER.to_owned(),
            subject: self.subject.to_owned(),
        }
    }

    /// The persona with this short name.
    pub fn named(key: &str) -> Option<&'static Persona> {
        PERSONAS.iter().find(|p| p.key == key)
    }
}

/// The demo personas.
pub const PERSONAS: &[Persona] = &[
    Persona {
        key: "ouder",
        subject: "dev-ouder",
        role: PrincipalRole::Citizen,
        name: "Ouder (demo)",
        organisation: None,
        client_id: "naast-dev",
        acting_for: None,
    },
    Persona {
        key: "ondersteuner",
        subject: "dev-ondersteuner",
        role: PrincipalRole::Supporter,
        name: "Cliëntondersteuner (demo)",
        organisation: Some("dev-ondersteuning"),
        client_id: "naast-dev",
        acting_for: None,
    },
    Persona {
        key: "zorgverlener",
        subject: "dev-zorgverlener",
        role: PrincipalRole::Professional,
        name: "Zorgverlener (demo)",
        organisation: Some("dev-zorgaanbieder"),
        client_id: "naast-dev",
        acting_for: None,
    },
    Persona {
        key: "pgo",
        subject: "dev-pgo",
        role: PrincipalRole::Platform,
        name: "PGO (demo)",
        organisation: None,
        client_id: "dev-pgo",
        acting_for: Some("dev-ouder"),
    },
    Persona {
        key: "evaluator",
        subject: "dev-evaluator",
        role: PrincipalRole::Evaluator,
        name: "Evaluator (demo)",
        organisation: None,
        client_id: "naast-dev",
        acting_for: None,
    },
    Persona {
        key: "beheerder",
        subject: "dev-beheerder",
        role: PrincipalRole::Administrator,
        name: "Beheerder (demo)",
        organisation: None,
        client_id: "naast-dev",
        acting_for: None,
    },
];

/// The dev issuer's signing key.
pub struct DevIssuer {
    key: CoreEdDsaPrivateSigningKey,
    audience: String,
}

/// Why the dev issuer cannot start or sign.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The key file could not be read or written.
    #[error("dev issuer key {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The key file holds no Ed25519 key.
    #[error("dev issuer key {}: {reason}", .path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Signing failed.
    #[error("cannot sign a dev token: {0}")]
    Sign(String),
}

impl DevIssuer {
    /// The dev issuer of `data_dir`, whose key is created there on first use; its tokens name
    /// `audience`.
    pub fn open(data_dir: &Path, audience: &str) -> Result<Self, DevError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| DevError::Io {
            path: path.clone(),
            source,
        };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let seed: [u8; 32] = rand::random();
                let pem = ed25519_dalek::SigningKey::from_bytes(&seed)
                    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map_err(|e| DevError::BadKey {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                write_private(&path, pem.as_bytes()).map_err(io)?;
                pem.to_string()
            }
            Err(e) => return Err(io(e)),
        };
        let key = CoreEdDsaPrivateSigningKey::from_ed25519_pem(
            &pem,
            Some(JsonWebKeyId::new(KEY_ID.to_owned())),
        )
        .map_err(|reason| DevError::BadKey { path, reason })?;
        Ok(Self {
            key,
            audience: audience.to_owned(),
        })
    }

    /// The public keys that verify its tokens.
    pub fn jwks(&self) -> CoreJsonWebKeySet {
        CoreJsonWebKeySet::new(vec![self.key.as_verification_key()])
    }

    /// A token for `persona`, valid for `lifetime` from now.
    pub fn mint(&self, persona: &Persona, lifetime: Duration) -> Result<String, DevError> {
        self.mint_with(persona, lifetime, |_| {})
    }

    /// A token for `persona` whose claims `change` alters first (for tests of what is refused).
    pub fn mint_with(
        &self,
        persona: &Persona,
        lifetime: Duration,
        change: impl FnOnce(&mut NaastClaims),
    ) -> Result<String, DevError> {
        let issuer =
            IssuerUrl::new(DEV_ISSUER.to_owned()).map_err(|e| DevError::Sign(e.to_string()))?;
        let now = chrono::Utc::now();
        let lifetime =
            chrono::Duration::from_std(lifetime).map_err(|e| DevError::Sign(e.to_string()))?;
        let mut name = LocalizedClaim::new();
        name.insert(None, EndUserName::new(persona.name.to_owned()));
        let claims = IdTokenClaims::new(
            issuer,
            vec![Audience::new(self.audience.clone())],
            now + lifetime,
            now,
            StandardClaims::new(SubjectIdentifier::new(persona.subject.to_owned()))
                .set_name(Some(name)),
            {
                let mut claims = NaastClaims {
                    naast_role: Some(persona.role.wire_name().to_owned()),
                    naast_org: persona.organisation.map(str::to_owned),
                    naast_acting_for: persona.acting_for.map(str::to_owned),
                    client_id: Some(persona.client_id.to_owned()),
                    nbf: None,
                };
                change(&mut claims);
                claims
            },
        );
        let token = AccessJwt::new(
            claims,
            &self.key,
            CoreJwsSigningAlgorithm::EdDsa,
            None,
            None,
        )
        .map_err(|e| DevError::Sign(e.to_string()))?;
        Ok(token.to_string())
    }
}

/// Writes a new file only its owner may read, synced (a dev key; refuses to overwrite one).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;
    use crate::auth::{AuthError, AuthSettings, Authenticator};

    async fn authenticator(dev: &DevIssuer) -> Authenticator {
        let settings = AuthSettings {
            issuers: Vec::new(),
            audience: "naast".into(),
            leeway: Duration::from_secs(0),
            jwks_min_refresh: Duration::from_secs(0),
            jwks_ttl: crate::auth::DEFAULT_JWKS_TTL,
            claims: Default::default(),
        };
        Authenticator::new(&settings, vec![(DEV_ISSUER.to_owned(), dev.jwks())]).unwrap()
    }

    #[tokio::test]
    async fn dev_tokens_sign_in_their_persona_and_nothing_but_access_tokens_pass() {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevIssuer::open(dir.path(), "naast").unwrap();
        let auth = authenticator(&dev).await;
        let platform = Persona::named("pgo").unwrap();
        let token = dev.mint(platform, Duration::from_secs(60)).unwrap();
        let principal = auth
            .authenticate(Some(&format!("Bearer {token}")))
            .await
            .unwrap();
        assert_eq!(principal.role, PrincipalRole::Platform);
        assert_eq!(principal.acting_for.unwrap().subject, "dev-ouder");
        // The key survives a restart.
        let again = DevIssuer::open(dir.path(), "naast").unwrap();
        assert_eq!(again.jwks(), dev.jwks());

        // An ID token (no client_id) is no bearer token.
        let parent = Persona::named("ouder").unwrap();
        let id_token = dev
            .mint_with(parent, Duration::from_secs(60), |c| c.client_id = None)
            .unwrap();
        let refused = auth
            .authenticate(Some(&format!("Bearer {id_token}")))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("client_id"), "{refused}");
        // Only a platform acts for someone, and only professionals and supporters are read
        // for their organisation (in the policy).
        let sneaky = dev
            .mint_with(parent, Duration::from_secs(60), |c| {
                c.naast_acting_for = Some("dev-ondersteuner".into());
            })
            .unwrap();
        let principal = auth
            .authenticate(Some(&format!("Bearer {sneaky}")))
            .await
            .unwrap();
        assert_eq!(principal.acting_for, None);
        // A cached token is refused once it expires. (Two seconds: `exp` is whole seconds, so a
        // token of one second minted just before a second's end would expire at once.)
        let short = dev.mint(parent, Duration::from_secs(2)).unwrap();
        auth.authenticate(Some(&format!("Bearer {short}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let expired = auth
            .authenticate(Some(&format!("Bearer {short}")))
            .await
            .unwrap_err();
        assert!(matches!(expired, AuthError::Invalid(_)), "{expired}");
        // A role naast does not know is refused, not guessed.
        let odd = dev
            .mint_with(parent, Duration::from_secs(60), |c| {
                c.naast_role = Some("root".into());
            })
            .unwrap();
        assert!(
            auth.authenticate(Some(&format!("Bearer {odd}")))
                .await
                .is_err()
        );
    }
}

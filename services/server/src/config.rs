//! Configuration of `naast serve`: defaults, overridden by a TOML file (`--config`), overridden by
//! environment variables (`NAAST_LISTEN`, `NAAST_FHIR_LISTEN`, `NAAST_DATA_DIR`, `NAAST_ISSUERS`, `NAAST_AUDIENCE`,
//! `NAAST_DEV`, `NAAST_PUSH_CONFIG`), overridden by flags. Push endpoints come from the config
//! file's `[[push]]` tables and from a file of more such tables (`--push-config`). Validated before any port is bound or any file opened: a
//! server that is not in dev mode refuses to start without a trusted issuer.

use crate::auth::{AuthSettings, DEFAULT_JWKS_MIN_REFRESH, DEFAULT_JWKS_TTL, DEFAULT_LEEWAY};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the service listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Where the service keeps its data when nothing else is said.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The audience tokens must name when nothing else is said.
pub const DEFAULT_AUDIENCE: &str = "naast";

/// The settings of a running service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address of the gRPC listener; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// Address of the FHIR facade's HTTP listener (`/fhir`); off unless set.
    pub fhir_listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics listener (`/metrics`); off unless set.
    pub metrics_listen: Option<SocketAddr>,
    /// The web timeline for people (`--web-listen`, `[web]`); off unless a listen address is
    /// set.
    pub web: Option<crate::web::WebSettings>,
    /// Directory of the event log (unless `storage` puts it in PostgreSQL) and of the other
    /// stores: read models, audit log, household keys, push state.
    pub data_dir: PathBuf,
    /// The event log in a PostgreSQL database (`--storage postgres://…`) instead of on sled in
    /// `data_dir`; a secret, since the URL may hold a password.
    pub storage: Option<Secret>,
    /// How tokens are checked.
    pub auth: AuthSettings,
    /// Run the built-in development issuer (not for production).
    pub dev: bool,
    /// The master key wrapping every household's data key (base64); in dev mode without one,
    /// a key kept in the data directory.
    pub master_key: Option<Secret>,
    /// How long audit records are kept at least.
    pub audit_retention: Duration,
    /// The PGO platforms' endpoints the family's shared plan is pushed to.
    pub push: Vec<naast_push::Endpoint>,
    /// What an hour of a client supporter costs, in euro cents, for the effect report.
    pub supporter_hourly_rate_cents: u32,
    /// What one caller may use: calls per second, open streams (`[limits]`).
    pub limits: naast_app::auth::limits::LimitSettings,
}

impl Config {
    /// Opens the event log where it is configured: in PostgreSQL (`storage`), else on sled in
    /// the data directory. Either way the data directory's `LOCK` is held while it is open, and
    /// a data directory is tied to where its log is: one whose log is in PostgreSQL (a marker
    /// file says so) is not opened with an empty log on sled, nor one with a log on sled with
    /// PostgreSQL.
    pub fn open_log(
        &self,
        options: naast_eventlog::Options,
    ) -> naast_eventlog::Result<naast_eventlog::EventLog> {
        let refused = |why: String| {
            naast_eventlog::Error::Storage(naast_eventlog::StorageError::new("open", why))
        };
        let marker = self.data_dir.join(IN_POSTGRES_MARKER);
        match &self.storage {
            Some(url) => {
                if self.data_dir.join("sled").exists() {
                    return Err(refused(format!(
                        "{} keeps its event log on sled (sled/); naast does not move it to PostgreSQL: use another data directory",
                        self.data_dir.display()
                    )));
                }
                let log =
                    naast_eventlog::EventLog::open_postgres_in(&url.0, &self.data_dir, options)?;
                if !marker.exists() {
                    let io = |e: std::io::Error| {
                        naast_eventlog::Error::Storage(naast_eventlog::StorageError::new("open", e))
                    };
                    std::fs::write(
                        &marker,
                        "The event log of this data directory is in PostgreSQL (naast --storage).\n",
                    )
                    .map_err(io)?;
                    std::fs::File::open(&self.data_dir)
                        .and_then(|dir| dir.sync_all())
                        .map_err(io)?;
                }
                Ok(log)
            }
            None if marker.exists() => Err(refused(format!(
                "the event log of {} is in PostgreSQL: give --storage (NAAST_STORAGE, or storage in the config file)",
                self.data_dir.display()
            ))),
            None => naast_eventlog::EventLog::open(&self.data_dir, options),
        }
    }
}

/// The file in a data directory that says its event log is in PostgreSQL.
pub const IN_POSTGRES_MARKER: &str = "EVENTLOG-IN-POSTGRES";

/// What an hour of a client supporter costs unless configured: EUR 75, the middle of what the
/// meta-analysis of the five pilots gives (EUR 4,200 to 11,000 a year per family for one to three
/// hours a week, EUR 70 to 81 an hour).
pub const DEFAULT_SUPPORTER_HOURLY_RATE_CENTS: u32 = 7_500;

/// A secret setting: compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What flags and environment said (clap merges the two, flags first).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Listen address.
    pub listen: Option<String>,
    /// FHIR listen address.
    pub fhir_listen: Option<String>,
    /// Metrics listen address.
    pub metrics_listen: Option<String>,
    /// Web timeline listen address.
    pub web_listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Where the event log lives, when not in the data directory (`postgres://…`).
    pub storage: Option<String>,
    /// Trusted issuers.
    pub issuers: Vec<String>,
    /// Audience.
    pub audience: Option<String>,
    /// Dev mode, when a flag or the environment says (`Some(false)` turns off a config file's
    /// `dev = true`).
    pub dev: Option<bool>,
    /// Clock skew tolerated, in seconds.
    pub leeway_seconds: Option<u64>,
    /// Least seconds between JWKS fetches caused by unknown key ids.
    pub jwks_min_refresh_seconds: Option<u64>,
    /// Seconds keys are used before they are fetched again.
    pub jwks_ttl_seconds: Option<u64>,
    /// The master key itself (base64), e.g. from `NAAST_MASTER_KEY`.
    pub master_key: Option<String>,
    /// A file holding the master key (base64), from a flag or the environment.
    pub master_key_file: Option<PathBuf>,
    /// Whether `master_key_file` was given as a flag (which beats `master_key` from the
    /// environment) rather than in the environment (where giving both is refused).
    pub master_key_file_is_flag: bool,
    /// Days audit records are kept at least.
    pub audit_retention_days: Option<u64>,
    /// What an hour of a supporter costs, in euro cents.
    pub supporter_hourly_rate_cents: Option<u32>,
    /// A TOML file of `[[push]]` tables, added to the config file's.
    pub push_config: Option<PathBuf>,
}

/// The settings a TOML config file may hold; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:50051"`
    pub listen: Option<String>,
    /// `fhir_listen = "127.0.0.1:8080"` (the FHIR facade; off unless set)
    pub fhir_listen: Option<String>,
    /// `metrics_listen = "127.0.0.1:9464"` (Prometheus metrics; off unless set)
    pub metrics_listen: Option<String>,
    /// `web_listen = "127.0.0.1:8443"` (the web timeline; off unless set)
    pub web_listen: Option<String>,
    /// `[web]`: how people sign in to the web timeline.
    #[serde(default)]
    pub web: FileWeb,
    /// `data_dir = "/var/lib/naast"`
    pub data_dir: Option<PathBuf>,
    /// `storage = "postgres://naast@db.example.nl/naast"` (the event log in PostgreSQL; default:
    /// on sled in `data_dir`)
    pub storage: Option<String>,
    /// `master_key_file = "/etc/naast/master.key"` (base64 of 32 bytes, readable by naast only)
    pub master_key_file: Option<PathBuf>,
    /// `audit_retention_days = 1827`
    pub audit_retention_days: Option<u64>,
    /// `supporter_hourly_rate_cents = 7500` (the effect report's cost of supporters' time)
    pub supporter_hourly_rate_cents: Option<u32>,
    /// `[auth]`
    #[serde(default)]
    pub auth: FileAuth,
    /// `[[push]]`: an endpoint of a PGO platform each (see [`naast_push::endpoint`]).
    #[serde(default)]
    pub push: Vec<naast_push::Endpoint>,
    /// `[limits]`: `calls_per_second`, `call_burst`, `streams_per_caller`, `max_streams`,
    /// `max_connections`, `header_read_seconds`, `slow_stream_seconds`, `min_free_disk_mb` (see
    /// `naast_app::auth::limits`).
    #[serde(default)]
    pub limits: naast_app::auth::limits::LimitSettings,
}

/// The `[web]` table: the web timeline's address as browsers see it, and its sign-in at an
/// OpenID issuer (authorization code flow with PKCE).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWeb {
    /// `public_url = "https://naast.example.nl"` (default: `http://` and the bound address)
    pub public_url: Option<String>,
    /// `issuer = "https://login.example.nl"`: where people sign in (default: the first trusted
    /// issuer; it must be a trusted one)
    pub issuer: Option<String>,
    /// `client_id = "naast-web"` (naast's client id at the issuer; the default)
    pub client_id: Option<String>,
    /// `client_secret_file = "/etc/naast/web-client-secret"` (readable by naast only; none for
    /// a public client, which PKCE protects)
    pub client_secret_file: Option<PathBuf>,
    /// `scopes = ["naast"]`: scopes asked for besides `openid` and `profile`
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `resource = "https://naast.example.nl/api"`: the resource indicator (RFC 8707) access
    /// tokens for naast are asked for with, when the issuer needs one
    pub resource: Option<String>,
}

/// The client id the web timeline signs in with unless configured.
pub const DEFAULT_WEB_CLIENT_ID: &str = "naast-web";

/// A file of push endpoints alone (`--push-config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushFile {
    /// `[[push]]`
    #[serde(default)]
    pub push: Vec<naast_push::Endpoint>,
}

/// The `[auth]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    /// `issuers = ["https://login.example.nl"]`
    #[serde(default)]
    pub issuers: Vec<String>,
    /// `audience = "naast"`
    pub audience: Option<String>,
    /// `dev = true` (not for production)
    #[serde(default)]
    pub dev: bool,
    /// `leeway_seconds = 60`
    pub leeway_seconds: Option<u64>,
    /// `jwks_min_refresh_seconds = 10`
    pub jwks_min_refresh_seconds: Option<u64>,
    /// `jwks_ttl_seconds = 600`
    pub jwks_ttl_seconds: Option<u64>,
    /// What each trusted issuer may assert:
    /// `[auth.issuer_claims."https://login.example.nl"]` with `roles = ["supporter"]` and
    /// `organisations = ["AGB-*"]`. Needed when several issuers are trusted (see
    /// [`AuthSettings::claims`]).
    #[serde(default)]
    pub issuer_claims: std::collections::BTreeMap<String, crate::auth::IssuerClaims>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("config file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's description, with line and column.
        message: String,
    },
    /// The listen address is not `host:port`.
    #[error("listen address {value:?} is not an IP address and port such as {DEFAULT_LISTEN}")]
    Listen {
        /// The value given.
        value: String,
    },
    /// The data directory is empty.
    #[error("data_dir must not be empty")]
    EmptyDataDir,
    /// The storage is not a PostgreSQL URL.
    #[error("storage: {0}")]
    Storage(String),
    /// No issuer is trusted and dev mode is off: nobody could sign in.
    #[error(
        "no trusted token issuer: give --issuer URL (or NAAST_ISSUERS, or auth.issuers in the config file), or --dev for the built-in development issuer"
    )]
    NoIssuer,
    /// An issuer is not an http(s) URL.
    #[error("issuer {value:?} is not an http(s) URL")]
    Issuer {
        /// The value given.
        value: String,
    },
    /// What an issuer may assert is set wrongly.
    #[error("auth.issuer_claims.\"{issuer}\": {reason}")]
    IssuerClaims {
        /// The issuer.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// The audience is empty.
    #[error("audience must not be empty")]
    EmptyAudience,
    /// No master key and dev mode is off: household data could not be encrypted.
    #[error(
        "no master key: give --master-key-file FILE (or NAAST_MASTER_KEY, or master_key_file in the config file) holding 32 random bytes as base64, e.g. from `openssl rand -base64 32`; or --dev"
    )]
    NoMasterKey,
    /// The audit retention is zero.
    #[error("audit_retention_days must be at least 1")]
    AuditRetention,
    /// A push endpoint is configured wrongly.
    #[error(transparent)]
    Push(#[from] naast_push::EndpointError),
    /// The web timeline is configured wrongly.
    #[error("web: {0}")]
    Web(String),
    /// The master key cannot be used.
    #[error("master key{}: {reason}", .file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default())]
    MasterKey {
        /// The file it came from.
        file: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Resolves the settings: `overrides` are what flags or environment gave (clap merges the
    /// two, flags first), the file fills what they left open, defaults the rest. A server that
    /// `serves` needs someone to trust and a master key (or dev mode); the offline commands
    /// sign nobody in.
    pub fn resolve(
        overrides: Overrides,
        file: Option<&Path>,
        serves: bool,
    ) -> Result<Self, ConfigError> {
        let Overrides {
            listen,
            fhir_listen,
            metrics_listen,
            web_listen,
            data_dir,
            storage,
            issuers,
            audience,
            dev,
            leeway_seconds,
            jwks_min_refresh_seconds,
            jwks_ttl_seconds,
            master_key,
            master_key_file,
            master_key_file_is_flag,
            audit_retention_days,
            supporter_hourly_rate_cents,
            push_config,
        } = overrides;
        let file: FileConfig = match file {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let mut push = file.push;
        if let Some(path) = push_config {
            let more: PushFile = load(&path)?;
            push.extend(more.push);
        }
        naast_push::endpoint::validate_all(&push)?;
        let listen = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen
            .parse()
            .map_err(|_| ConfigError::Listen { value: listen })?;
        let fhir_listen = match fhir_listen.or(file.fhir_listen) {
            Some(value) => Some(value.parse().map_err(|_| ConfigError::Listen { value })?),
            None => None,
        };
        let metrics_listen = match metrics_listen.or(file.metrics_listen) {
            Some(value) => Some(value.parse().map_err(|_| ConfigError::Listen { value })?),
            None => None,
        };
        let web_listen: Option<SocketAddr> = match web_listen.or(file.web_listen) {
            Some(value) => Some(value.parse().map_err(|_| ConfigError::Listen { value })?),
            None => None,
        };
        let data_dir = data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::EmptyDataDir);
        }
        let storage = match storage.or(file.storage).filter(|s| !s.is_empty()) {
            Some(url) => {
                naast_eventlog::postgres::check_url(&url).map_err(ConfigError::Storage)?;
                Some(Secret(url))
            }
            None => None,
        };
        let issuers = if issuers.is_empty() {
            file.auth.issuers
        } else {
            issuers
        };
        let issuers: Vec<String> = issuers
            .into_iter()
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .collect();
        if let Some(bad) = issuers
            .iter()
            .find(|i| !(i.starts_with("https://") || i.starts_with("http://")))
        {
            return Err(ConfigError::Issuer { value: bad.clone() });
        }
        // A flag or the environment decides, either way; the file only when they are silent.
        let dev = dev.unwrap_or(file.auth.dev);
        if issuers.is_empty() && !dev && serves {
            return Err(ConfigError::NoIssuer);
        }
        // Flags beat the environment, which beats the file; the environment giving both the
        // key and a file is ambiguous.
        let from_file = |path: PathBuf| -> Result<(String, Option<PathBuf>), ConfigError> {
            let key = read_private(&path).map_err(|reason| ConfigError::MasterKey {
                file: Some(path.clone()),
                reason,
            })?;
            Ok((key, Some(path)))
        };
        let master_key = match (master_key, master_key_file) {
            (_, Some(path)) if master_key_file_is_flag => Some(from_file(path)?),
            (Some(_), Some(path)) => {
                return Err(ConfigError::MasterKey {
                    file: Some(path),
                    reason: "NAAST_MASTER_KEY and NAAST_MASTER_KEY_FILE are both set; keep one"
                        .into(),
                });
            }
            (Some(key), None) => Some((key, None)),
            (None, Some(path)) => Some(from_file(path)?),
            (None, None) => file.master_key_file.map(from_file).transpose()?,
        };
        let master_key = match master_key {
            Some((key, file)) => {
                naast_vault::MasterKey::from_base64(&key).map_err(|e| ConfigError::MasterKey {
                    file,
                    reason: e.to_string(),
                })?;
                Some(Secret(key.trim().to_owned()))
            }
            None if serves && !dev => return Err(ConfigError::NoMasterKey),
            None => None,
        };
        let audience = audience
            .or(file.auth.audience)
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        if audience.trim().is_empty() {
            return Err(ConfigError::EmptyAudience);
        }
        for (issuer, claims) in &file.auth.issuer_claims {
            let wrong = |reason: String| ConfigError::IssuerClaims {
                issuer: issuer.clone(),
                reason,
            };
            if !issuers.contains(issuer) {
                return Err(wrong("is not one of the trusted issuers".into()));
            }
            if let Some(role) = claims
                .roles
                .iter()
                .find(|r| naast_domain::vocab::PrincipalRole::from_wire(r).is_none())
            {
                return Err(wrong(format!("{role:?} is not a role")));
            }
        }
        let auth = AuthSettings {
            claims: file.auth.issuer_claims,
            issuers,
            audience,
            leeway: leeway_seconds
                .or(file.auth.leeway_seconds)
                .map_or(DEFAULT_LEEWAY, Duration::from_secs),
            jwks_min_refresh: jwks_min_refresh_seconds
                .or(file.auth.jwks_min_refresh_seconds)
                .map_or(DEFAULT_JWKS_MIN_REFRESH, Duration::from_secs),
            jwks_ttl: jwks_ttl_seconds
                .or(file.auth.jwks_ttl_seconds)
                .map_or(DEFAULT_JWKS_TTL, Duration::from_secs),
        };
        let web = match web_listen {
            Some(listen) => Some(web_settings(listen, file.web, &auth.issuers, dev)?),
            None => None,
        };
        let retention_days = audit_retention_days
            .or(file.audit_retention_days)
            .unwrap_or(crate::audit::DEFAULT_RETENTION_DAYS);
        if retention_days == 0 {
            return Err(ConfigError::AuditRetention);
        }
        Ok(Self {
            listen,
            fhir_listen,
            metrics_listen,
            web,
            data_dir,
            storage,
            auth,
            dev,
            master_key,
            audit_retention: Duration::from_secs(retention_days.saturating_mul(86_400)),
            push,
            supporter_hourly_rate_cents: supporter_hourly_rate_cents
                .or(file.supporter_hourly_rate_cents)
                .unwrap_or(DEFAULT_SUPPORTER_HOURLY_RATE_CENTS),
            limits: file.limits,
        })
    }
}

/// The web timeline's settings: sign-in at `web.issuer` (else the first trusted issuer), or the
/// demo personas alone in dev mode without one.
fn web_settings(
    listen: SocketAddr,
    web: FileWeb,
    issuers: &[String],
    dev: bool,
) -> Result<crate::web::WebSettings, ConfigError> {
    let public_url = match &web.public_url {
        Some(url) => Some(crate::web::site_origin(url).ok_or_else(|| {
            ConfigError::Web(format!(
                "public_url {url:?} must be an http(s) URL of a host (and port) alone, such as https://naast.example.nl"
            ))
        })?),
        None => None,
    };
    if public_url.is_none() && listen.ip().is_unspecified() {
        return Err(ConfigError::Web(format!(
            "web_listen {listen} listens on every address: give [web] public_url, the URL browsers reach it at"
        )));
    }

    let issuer = match web.issuer {
        Some(issuer) if issuers.contains(&issuer) => Some(issuer),
        Some(issuer) => {
            return Err(ConfigError::Web(format!(
                "issuer {issuer:?} is not one of the trusted issuers (auth.issuers)"
            )));
        }
        None => issuers.first().cloned(),
    };
    let oidc = match issuer {
        Some(issuer) => Some(crate::web::signin::OidcSettings {
            issuer,
            client_id: web
                .client_id
                .unwrap_or_else(|| DEFAULT_WEB_CLIENT_ID.to_owned()),
            client_secret: web
                .client_secret_file
                .map(|path| {
                    read_private(&path)
                        .map(|secret| Secret(secret.trim().to_owned()))
                        .map_err(|reason| {
                            ConfigError::Web(format!(
                                "client_secret_file {}: {reason}",
                                path.display()
                            ))
                        })
                })
                .transpose()?,
            scopes: web.scopes,
            resource: web.resource,
        }),
        None if dev => None,
        None => {
            return Err(ConfigError::Web(
                "people cannot sign in: no trusted issuer (auth.issuers) and no --dev".into(),
            ));
        }
    };
    Ok(crate::web::WebSettings {
        listen,
        public_url,
        oidc,
    })
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// A master key from a file that its owner alone may read (`rotate-master-key`'s new key).
pub fn master_key_from_file(path: &Path) -> Result<naast_vault::MasterKey, ConfigError> {
    let error = |reason: String| ConfigError::MasterKey {
        file: Some(path.to_owned()),
        reason,
    };
    let text = read_private(path).map_err(error)?;
    naast_vault::MasterKey::from_base64(&text).map_err(|e| error(e.to_string()))
}

/// The contents of a secret file, refused when anyone but its owner may read it (a master key
/// readable by other local users protects nothing).
fn read_private(path: &Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "it may be read by group or others (mode {:o}); make it readable by naast alone: chmod 600 {}",
                mode & 0o777,
                path.display()
            ));
        }
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Makes `dir` the data directory of one user: created `0700`, and anything in it that an older
/// version (or a hand) left readable by group or others made private (directories `0700`,
/// files `0600`). New files are private through the process's umask (see `naast`'s `main`).
pub fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // The directory itself must survive a power cut.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
        let mut pending = vec![dir.to_owned()];
        while let Some(path) = pending.pop() {
            let metadata = std::fs::symlink_metadata(&path)?;
            if metadata.file_type().is_symlink() {
                continue;
            }
            let mode = metadata.permissions().mode();
            let private = if metadata.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    pending.push(entry?.path());
                }
                mode & !0o077 | 0o700
            } else {
                mode & !0o077
            };
            if private != mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(private))?;
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_timeline_signs_in_at_a_trusted_issuer_or_offers_personas_in_dev_mode() {
        let trusted = Overrides {
            issuers: vec!["https://login.example.nl".into()],
            master_key: Some(naast_vault::MasterKey::generate_base64()),
            web_listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let web = Config::resolve(trusted.clone(), None, true)
            .unwrap()
            .web
            .unwrap();
        let oidc = web.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://login.example.nl");
        assert_eq!(oidc.client_id, DEFAULT_WEB_CLIENT_ID);
        assert_eq!(
            Config::resolve(
                Overrides {
                    web_listen: None,
                    ..trusted.clone()
                },
                None,
                true
            )
            .unwrap()
            .web,
            None
        );

        // An issuer naast does not trust cannot be the web's.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naast.toml");
        std::fs::write(&file, "[web]\nissuer = \"https://elsewhere.example\"\n").unwrap();
        let refused = Config::resolve(trusted, Some(&file), true).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("not one of the trusted issuers"),
            "{refused}"
        );

        // Dev mode without an issuer: the personas only.
        let dev = Overrides {
            dev: Some(true),
            web_listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve(dev, None, true).unwrap().web.unwrap().oidc,
            None
        );

        // A public URL is a site's address alone; listening everywhere needs one.
        for (text, why) in [
            (
                "[web]\npublic_url = \"https://naast.example.nl/pad\"\n",
                "host (and port) alone",
            ),
            (
                "[web]\npublic_url = \"ftp://naast.example.nl\"\n",
                "host (and port) alone",
            ),
            ("web_listen = \"0.0.0.0:8443\"\n", "give [web] public_url"),
        ] {
            std::fs::write(&file, text).unwrap();
            let overrides = Overrides {
                issuers: vec!["https://login.example.nl".into()],
                master_key: Some(naast_vault::MasterKey::generate_base64()),
                web_listen: text.starts_with("[web]").then(|| "127.0.0.1:0".into()),
                ..Overrides::default()
            };
            let refused = Config::resolve(overrides, Some(&file), true).unwrap_err();
            assert!(refused.to_string().contains(why), "{text}: {refused}");
        }

        // The event log in PostgreSQL: a URL of it, never anything else.
        std::fs::write(
            &file,
            "storage = \"postgresql://naast@db.example.nl/naast\"\n",
        )
        .unwrap();
        let in_postgres = Config::resolve(Overrides::default(), Some(&file), false).unwrap();
        assert_eq!(
            in_postgres.storage.map(|s| s.0).as_deref(),
            Some("postgresql://naast@db.example.nl/naast")
        );
        for wrong in ["/var/lib/naast", "postgres://naast@db/x?sslmode=sometimes"] {
            let overrides = Overrides {
                storage: Some(wrong.into()),
                ..Overrides::default()
            };
            let refused = Config::resolve(overrides, None, false).unwrap_err();
            assert!(refused.to_string().starts_with("storage: "), "{refused}");
        }

        // A public URL is kept as browsers send it in `Origin`: whatever its spelling, forms
        // from it are recognised and cookies are `Secure` over https.
        std::fs::write(
            &file,
            "[web]\npublic_url = \"HTTPS://Naast.Example.NL:443/\"\n",
        )
        .unwrap();
        let overrides = Overrides {
            issuers: vec!["https://login.example.nl".into()],
            master_key: Some(naast_vault::MasterKey::generate_base64()),
            web_listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let web = Config::resolve(overrides, Some(&file), true)
            .unwrap()
            .web
            .unwrap();
        assert_eq!(web.public_url.as_deref(), Some("https://naast.example.nl"));
        assert_eq!(
            crate::web::site_origin("https://user@naast.example.nl"),
            None
        );
        assert_eq!(
            crate::web::site_origin("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naast.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:7000\"\nfhir_listen = \"0.0.0.0:8080\"\ndata_dir = \"/srv/naast\"\nsupporter_hourly_rate_cents = 8100\n[limits]\ncalls_per_second = 50\nstreams_per_caller = 4\n[auth]\nissuers = [\"https://login.example.nl\"]\naudience = \"naast-test\"\n",
        )
        .unwrap();
        let dev = Overrides {
            dev: Some(true),
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve(dev.clone(), None, true).unwrap(),
            Config {
                listen: DEFAULT_LISTEN.parse().unwrap(),
                fhir_listen: None,
                metrics_listen: None,
                web: None,
                data_dir: DEFAULT_DATA_DIR.into(),
                storage: None,
                auth: AuthSettings {
                    issuers: Vec::new(),
                    audience: DEFAULT_AUDIENCE.into(),
                    leeway: DEFAULT_LEEWAY,
                    jwks_min_refresh: DEFAULT_JWKS_MIN_REFRESH,
                    jwks_ttl: DEFAULT_JWKS_TTL,
                    claims: Default::default(),
                },
                dev: true,
                master_key: None,
                audit_retention: Duration::from_secs(crate::audit::DEFAULT_RETENTION_DAYS * 86_400),
                push: Vec::new(),
                supporter_hourly_rate_cents: DEFAULT_SUPPORTER_HOURLY_RATE_CENTS,
                limits: Default::default(),
            }
        );
        let from_file = Config::resolve(
            Overrides {
                master_key: Some(naast_vault::MasterKey::generate_base64()),
                ..Overrides::default()
            },
            Some(&file),
            true,
        )
        .unwrap();
        assert_eq!(from_file.listen, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(from_file.fhir_listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(from_file.data_dir, PathBuf::from("/srv/naast"));
        assert_eq!(from_file.supporter_hourly_rate_cents, 8_100);
        assert_eq!(from_file.limits.calls_per_second, 50);
        assert_eq!(from_file.limits.streams_per_caller, 4);
        assert_eq!(
            from_file.limits.call_burst,
            naast_app::auth::limits::LimitSettings::default().call_burst
        );
        assert_eq!(from_file.auth.issuers, ["https://login.example.nl"]);
        assert_eq!(from_file.auth.audience, "naast-test");
        assert!(!from_file.dev);
        let flags = Config::resolve(
            Overrides {
                listen: Some("127.0.0.1:9".into()),
                fhir_listen: Some("127.0.0.1:10".into()),
                issuers: vec!["http://127.0.0.1:4000".into()],
                master_key: Some(naast_vault::MasterKey::generate_base64()),
                ..Overrides::default()
            },
            Some(&file),
            true,
        )
        .unwrap();
        assert_eq!(flags.listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!(flags.fhir_listen, Some("127.0.0.1:10".parse().unwrap()));
        assert_eq!(flags.data_dir, PathBuf::from("/srv/naast"));
        assert_eq!(flags.auth.issuers, ["http://127.0.0.1:4000"]);
    }

    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naast.toml");
        let dev = || Overrides {
            dev: Some(true),
            ..Overrides::default()
        };
        std::fs::write(&file, "fhir_listen = \"there\"\n").unwrap();
        assert!(matches!(
            Config::resolve(dev(), Some(&file), true),
            Err(ConfigError::Listen { value }) if value == "there"
        ));
        std::fs::write(&file, "listen = \"here\"\n").unwrap();
        assert!(matches!(
            Config::resolve(dev(), Some(&file), true),
            Err(ConfigError::Listen { value }) if value == "here"
        ));
        std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::resolve(dev(), Some(&file), true).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        assert!(matches!(
            Config::resolve(dev(), Some(&dir.path().join("missing.toml")), true),
            Err(ConfigError::Read { .. })
        ));
        assert!(matches!(
            Config::resolve(
                Overrides {
                    data_dir: Some(PathBuf::new()),
                    ..dev()
                },
                None,
                true
            ),
            Err(ConfigError::EmptyDataDir)
        ));
        // Nobody could sign in: refused.
        assert!(matches!(
            Config::resolve(Overrides::default(), None, true),
            Err(ConfigError::NoIssuer)
        ));
        // Offline commands need no issuer.
        assert!(Config::resolve(Overrides::default(), None, false).is_ok());
        // Nor could household data be encrypted without a master key.
        let trusted = || Overrides {
            issuers: vec!["https://login.example.nl".into()],
            ..Overrides::default()
        };
        assert!(matches!(
            Config::resolve(trusted(), None, true),
            Err(ConfigError::NoMasterKey)
        ));
        let short = Overrides {
            master_key: Some("c2hvcnQ=".into()),
            ..trusted()
        };
        assert!(matches!(
            Config::resolve(short, None, true),
            Err(ConfigError::MasterKey { .. })
        ));
        let secret = naast_vault::MasterKey::generate_base64();
        let config = Config::resolve(
            Overrides {
                master_key: Some(secret.clone()),
                ..trusted()
            },
            None,
            true,
        )
        .unwrap();
        assert!(
            !format!("{config:?}").contains(&secret),
            "the key is never printed"
        );
        assert!(matches!(
            Config::resolve(
                Overrides {
                    issuers: vec!["login.example.nl".into()],
                    ..Overrides::default()
                },
                None,
                true
            ),
            Err(ConfigError::Issuer { value }) if value == "login.example.nl"
        ));
    }

    #[cfg(unix)]
    fn private_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn flags_beat_the_environment_which_beats_the_file_for_dev_mode_and_the_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = naast_vault::MasterKey::generate_base64();
        let second = naast_vault::MasterKey::generate_base64();
        let third = naast_vault::MasterKey::generate_base64();
        let key_file = private_file(dir.path(), "file.key", &first, 0o600);
        let config = private_file(
            dir.path(),
            "naast.toml",
            &format!(
                "master_key_file = \"{}\"\n[auth]\ndev = true\nissuers = [\"https://login.example.nl\"]\n",
                private_file(dir.path(), "config.key", &third, 0o600).display()
            ),
            0o600,
        );
        let resolve = |overrides| Config::resolve(overrides, Some(&config), true);
        let key = |c: Config| c.master_key.unwrap().0;

        // A stray `dev = true` in the file is turned off by NAAST_DEV=false (or --dev=false).
        let off = resolve(Overrides {
            dev: Some(false),
            ..Overrides::default()
        })
        .unwrap();
        assert!(!off.dev);
        assert!(
            resolve(Overrides::default()).unwrap().dev,
            "the file's word"
        );

        // The flag's file beats NAAST_MASTER_KEY, which beats the config file's key file.
        let flag = resolve(Overrides {
            master_key: Some(second.clone()),
            master_key_file: Some(key_file.clone()),
            master_key_file_is_flag: true,
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(key(flag), first);
        let environment = resolve(Overrides {
            master_key: Some(second.clone()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(key(environment), second);
        assert_eq!(key(resolve(Overrides::default()).unwrap()), third);
        // The environment naming both is ambiguous.
        let both = resolve(Overrides {
            master_key: Some(second),
            master_key_file: Some(key_file),
            master_key_file_is_flag: false,
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(both.to_string().contains("both set"), "{both}");

        // A key file others may read is refused, naming its mode.
        let open = private_file(dir.path(), "open.key", &first, 0o644);
        let refused = resolve(Overrides {
            master_key_file: Some(open),
            master_key_file_is_flag: true,
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(refused.to_string().contains("mode 644"), "{refused}");
    }

    #[test]
    fn what_an_issuer_may_assert_names_a_trusted_issuer_and_known_roles() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naast.toml");
        let resolve = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::resolve(
                Overrides {
                    master_key: Some(naast_vault::MasterKey::generate_base64()),
                    ..Overrides::default()
                },
                Some(&file),
                true,
            )
        };
        let trusted = "[auth]\nissuers = [\"https://a.example.nl\", \"https://b.example.nl\"]\n";
        let good = resolve(&format!(
            "{trusted}[auth.issuer_claims.\"https://a.example.nl\"]\nroles = [\"professional\"]\norganisations = [\"AGB-*\"]\n"
        ))
        .unwrap();
        let claims = &good.auth.claims["https://a.example.nl"];
        assert!(claims.allows_role(naast_domain::vocab::PrincipalRole::Professional));
        assert!(!claims.allows_role(naast_domain::vocab::PrincipalRole::Administrator));
        assert!(claims.allows_organisation("AGB-01234567"));
        assert!(!claims.allows_organisation("URA-1"));
        let stranger = resolve(&format!(
            "{trusted}[auth.issuer_claims.\"https://c.example.nl\"]\nroles = []\n"
        ))
        .unwrap_err();
        assert!(
            stranger.to_string().contains("not one of the trusted"),
            "{stranger}"
        );
        let role = resolve(&format!(
            "{trusted}[auth.issuer_claims.\"https://a.example.nl\"]\nroles = [\"koning\"]\n"
        ))
        .unwrap_err();
        assert!(role.to_string().contains("koning"), "{role}");
    }

    #[test]
    fn push_endpoints_from_the_config_file_and_a_push_file() {
        let dir = tempfile::tempdir().unwrap();
        let (file, more) = (dir.path().join("naast.toml"), dir.path().join("push.toml"));
        std::fs::write(
            &file,
            r#"
[auth]
dev = true

[[push]]
name = "jouw-omgeving"
kind = "fhir"
url = "https://fhir.example.nl/fhir"
platform = { issuer = "https://login.example.nl", client_id = "jo" }
auth = { kind = "bearer", token_file = "/etc/naast/jo.token" }
"#,
        )
        .unwrap();
        std::fs::write(
            &more,
            r#"
[[push]]
name = "kt2"
kind = "fhir"
url = "http://127.0.0.1:9000/fhir"
platform = { issuer = "https://idp", client_id = "kt" }
resource_types = ["Patient", "CarePlan"]
"#,
        )
        .unwrap();
        let overrides = Overrides {
            push_config: Some(more.clone()),
            ..Overrides::default()
        };
        let config = Config::resolve(overrides, Some(&file), true).unwrap();
        let names: Vec<&str> = config.push.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["jouw-omgeving", "kt2"]);
        assert_eq!(
            config.push[0].auth,
            naast_push::endpoint::Auth::Bearer {
                token_file: "/etc/naast/jo.token".into()
            }
        );
        // The same name twice, and a type naast does not push, are refused by name.
        std::fs::write(
            &more,
            "[[push]]\nname = \"jouw-omgeving\"\nkind = \"fhir\"\nurl = \"http://h/fhir\"\nplatform = { issuer = \"i\", client_id = \"c\" }\n",
        )
        .unwrap();
        let overrides = Overrides {
            push_config: Some(more.clone()),
            ..Overrides::default()
        };
        let error = Config::resolve(overrides.clone(), Some(&file), true).unwrap_err();
        assert!(error.to_string().contains("two endpoints"), "{error}");
        std::fs::write(
            &more,
            "[[push]]\nname = \"x\"\nkind = \"fhir\"\nurl = \"http://h/fhir\"\nplatform = { issuer = \"i\", client_id = \"c\" }\nresource_types = [\"AuditEvent\"]\n",
        )
        .unwrap();
        let error = Config::resolve(overrides, Some(&file), true).unwrap_err();
        assert!(error.to_string().contains("resource_types"), "{error}");
    }

    proptest::proptest! {
        /// Any text as the config file: a configuration or an error naming what is wrong,
        /// never a panic.
        #[test]
        fn any_config_file_is_read_or_refused_never_a_panic(text in "(?s).{0,200}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("naast.toml");
            std::fs::write(&path, &text).unwrap();
            let _ = Config::resolve(Overrides::default(), Some(&path), true);
        }

        /// Any mix of known settings with any values: the same.
        #[test]
        fn any_values_of_known_settings_are_read_or_refused(
            listen in "[0-9a-z.:\\[\\]]{0,24}",
            days in proptest::prelude::any::<i64>(),
            rate in proptest::prelude::any::<i64>(),
            issuer in "[ -~]{0,30}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("naast.toml");
            std::fs::write(
                &path,
                format!(
                    "listen = {listen:?}\naudit_retention_days = {days}\n[limits]\ncalls_per_second = {rate}\n[auth]\nissuers = [{issuer:?}]\n"
                ),
            )
            .unwrap();
            let _ = Config::resolve(Overrides::default(), Some(&path), true);
        }
    }
}

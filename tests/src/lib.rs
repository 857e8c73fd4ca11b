//! End-to-end tests of naast against real processes, and the helper programs they run.
//!
//! # Layout
//! - `src/bin/eventlog-crash-writer.rs`: a child process that appends to an event log without
//!   pause and reports each acknowledged append on stdout, to be killed at random moments;
//! - `tests/eventlog_crash.rs`: kills that child again and again and checks what survived;
//! - `tests/eventlog_lock.rs`: a data directory held by one process is refused to another;
//! - `tests/bench_cli.rs`: `naast bench eventlog` and `naast bench api` print their figures;
//! - `tests/api_event_log.rs`: the real `naast serve` process on loopback, through a tonic client:
//!   appends, pages, conflicts, retries, bad requests, subscriptions, health, reflection;
//! - `tests/api_households.rs`: the household API — scenario 2 with the 18th birthday, the
//!   timeline, retries, conflicts, a table of bad requests, subscriptions, the views, a kill, a
//!   restart and a replay;
//! - `tests/serve_lifecycle.rs`: configuration, SIGTERM with open subscriptions, SIGKILL under
//!   load and restart;
//! - `tests/demo_cli.rs`: `naast demo` and `naast verify`;
//! - `tests/independent_client.rs`: Python's grpcio against the server (`python/`);
//! - `tests/auth_oidc.rs`: tokens from a real OpenID provider (`idp/`, oidc-provider on Node):
//!   what is refused and how, consent (grants, requests, revocation mid-stream, life domains,
//!   parties, platforms), and the audit log of it all;
//! - `tests/push_fhir.rs`: push to a real FHIR server (`node/fhir_receiver.mjs`, Medplum's FHIR
//!   router) through faults and a SIGKILL, withdrawals on revocation and erasure; dead letters;
//! - `tests/push_feed.rs`: the platforms' change feed over gRPC;
//! - `tests/push_webhook.rs`: signed webhook notices (`node/webhook_receiver.mjs`, the Standard
//!   Webhooks library) through faults and a SIGKILL, each change once after deduplication.
//!
//! The helpers below find binaries of this workspace that cargo built beside the test, and run
//! the server as a child process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Path of a binary of another package of this workspace, built into the same target folder as
/// the running test (the test command builds all binaries first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --bins` (ops/test.sh does)",
        path.display()
    );
    path
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound.max(1)
    }
}

/// A `naast serve` child process on a free loopback port; killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    /// Where its FHIR facade listens, when started with `--fhir-listen`.
    pub fhir: Option<SocketAddr>,
    /// Where its metrics are served, when started with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
    /// The web timeline's base URL (`http://…`, no trailing slash), when started with
    /// `--web-listen`.
    pub web: Option<String>,
    /// Tokens the development issuer printed, by persona (`ouder`, `ondersteuner`,
    /// `zorgverlener`, `pgo`, `evaluator`, `beheerder`).
    pub tokens: HashMap<String, String>,
    /// Lines it printed on stdout after its address (read on, so that it can always print).
    later: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `naast serve --dev` on `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &["--dev"])
    }

    /// Starts `naast serve` with extra arguments (on a port of its choosing unless they give
    /// `--listen`).
    pub fn start_with(data_dir: &Path, args: &[&str]) -> Self {
        Self::start_logging(data_dir, args, Stdio::inherit())
    }

    /// As [`Server::start_with`], its log (stderr) going to `log`.
    pub fn start_logging(data_dir: &Path, args: &[&str], log: impl Into<Stdio>) -> Self {
        let mut command = Command::new(workspace_bin("naast"));
        command.arg("serve");
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("NAAST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start naast serve: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("stdout is piped"));
        // Dev tokens come first, then the address.
        let mut tokens = HashMap::new();
        let mut fhir = None;
        let mut metrics = None;
        let mut web = None;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let address = loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("naast serve ended before it reported its address");
            }
            if let Some(rest) = line.trim().strip_prefix("naast dev token ") {
                if let Some((persona, token)) = rest.split_once(' ') {
                    tokens.insert(persona.to_owned(), token.to_owned());
                }
                continue;
            }
            if let Some(rest) = line.trim().strip_prefix("naast FHIR facade on http://") {
                fhir = rest.trim_end_matches("/fhir").parse().ok();
                continue;
            }
            if let Some(rest) = line.trim().strip_prefix("naast web timeline on ") {
                web = Some(rest.trim_end_matches('/').to_owned());
                continue;
            }
            if let Some(rest) = line.trim().strip_prefix("naast metrics on http://") {
                metrics = rest.trim_end_matches("/metrics").parse().ok();
                continue;
            }
            if let Some(address) = line.trim().strip_prefix("naast listening on ") {
                break address.parse().unwrap_or_else(|_| {
                    let _ = child.kill();
                    panic!("naast serve reported a bad address: {line:?}")
                });
            }
        };
        let later = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = later.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                kept.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        Self {
            child,
            address,
            fhir,
            metrics,
            web,
            tokens,
            later,
        }
    }

    /// What it printed on stdout since it reported its address (a restart in place prints its
    /// tokens and addresses again).
    pub fn printed_later(&self) -> Vec<String> {
        self.later
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The development issuer's token for `persona`.
    pub fn token(&self, persona: &str) -> &str {
        self.tokens.get(persona).unwrap_or_else(|| {
            panic!("no dev token for {persona}: was the server started with --dev?")
        })
    }

    /// A channel to the server whose calls carry `persona`'s token.
    pub async fn signed(&self, persona: &str) -> naast_proto::client::Signed {
        signed(&self.url(), self.token(persona)).await
    }

    /// The URL a tonic client connects to.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The FHIR base URL (`http://…/fhir`) of a server started with `--fhir-listen`.
    pub fn fhir_base(&self) -> String {
        let address = self
            .fhir
            .unwrap_or_else(|| panic!("the server was not started with --fhir-listen"));
        format!("http://{address}/fhir")
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for naast: {e}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A channel to `url` whose calls carry `token`.
pub async fn signed(url: &str, token: &str) -> naast_proto::client::Signed {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .unwrap_or_else(|e| panic!("bad url {url}: {e}"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tonic::service::interceptor::InterceptedService::new(
        channel,
        naast_proto::client::Bearer::new(token).unwrap_or_else(|e| panic!("bad token: {e}")),
    )
}

/// A real OpenID provider (oidc-provider, `tests/idp/idp.mjs`) on a free loopback port; killed
/// when dropped. The test command installs its npm packages.
pub struct Idp {
    child: Child,
    /// Its issuer URL.
    pub issuer: String,
    keys: tempfile::TempDir,
    http: reqwest::Client,
}

impl Idp {
    /// Starts the provider and waits until it listens.
    pub fn start() -> Self {
        let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/idp/idp.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(keys.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {script}: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("stdout is piped"));
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(issuer) = line.trim().strip_prefix("idp listening on ") else {
            let _ = child.kill();
            panic!(
                "the test identity provider did not start (printed {line:?}); \
                 install it with `npm ci` in tests/idp (ops/test.sh does)"
            );
        };
        Self {
            issuer: issuer.to_owned(),
            child,
            keys,
            http: reqwest::Client::new(),
        }
    }

    /// An access token for the persona client `client_id` (client_secret_basic) for
    /// `resource`, or the provider's refusal.
    pub async fn token_for(&self, client_id: &str, resource: &str) -> String {
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(format!("secret-{client_id}")))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("token request: {e}"));
        access_token(response).await
    }

    /// Registers `redirect_uri` for the web timeline's client `naast-web` (authorization code
    /// flow with PKCE, secret `secret-naast-web`).
    pub async fn register_web_client(&self, redirect_uri: &str) {
        self.test_call_with("web-client", redirect_uri).await;
    }

    /// The private key (PKCS#8 PEM) the provider made for its system client `client_id`.
    pub fn key_file(&self, client_id: &str) -> PathBuf {
        self.keys.path().join(format!("{client_id}.pem"))
    }

    /// An access token for a persona at naast (`https://naast.test/api`).
    pub async fn token(&self, client_id: &str) -> String {
        self.token_for(client_id, "https://naast.test/api").await
    }

    /// An access token for the system client `client_id`, which authenticates with a JWT
    /// assertion signed with its own private key (private_key_jwt), acting for `acting_for`.
    pub async fn system_token(&self, client_id: &str, acting_for: &str) -> String {
        use base64::Engine as _;
        use rsa::pkcs8::DecodePrivateKey as _;
        use rsa::signature::{SignatureEncoding as _, Signer as _};
        let pem = std::fs::read_to_string(self.keys.path().join(format!("{client_id}.pem")))
            .unwrap_or_else(|e| panic!("key of {client_id}: {e}"));
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
            .unwrap_or_else(|e| panic!("key of {client_id}: {e}"));
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let endpoint = format!("{}/token", self.issuer);
        let header =
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": format!("{client_id}-1")});
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": endpoint,
            "jti": uuid::Uuid::now_v7().to_string(), "iat": now, "exp": now + 60,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = signer.sign(input.as_bytes()).to_bytes();
        let assertion = format!("{input}.{}", b64(&signature));
        let response = self
            .http
            .post(endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", "https://naast.test/api"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
                ("acting_for", acting_for),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("token request: {e}"));
        access_token(response).await
    }

    /// Makes the provider sign with a new key (the old one stays published).
    pub async fn rotate_keys(&self) {
        self.test_call("rotate").await;
    }

    /// Makes the provider sign with a new key and withdraw the first: it is no longer
    /// published.
    pub async fn withdraw_first_key(&self) {
        self.test_call("withdraw").await;
    }

    /// How the provider answers fetches of its discovery document and keys: `serve`, `hold`
    /// (no answer until `serve` again) or `fail` (503).
    pub async fn key_endpoints(&self, mode: &str) {
        self.test_call(&format!("keys/{mode}")).await;
    }

    /// How often its discovery document and keys were fetched.
    pub async fn key_fetches(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/test/fetches", self.issuer))
            .send()
            .await
            .unwrap_or_else(|e| panic!("fetches: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("fetches: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("fetches: {text:?}"))
    }

    async fn test_call(&self, what: &str) {
        self.test_call_with(what, "").await;
    }

    /// `POST /test/{what}` with `body` to the provider's test controls.
    async fn test_call_with(&self, what: &str, body: &str) {
        let response = self
            .http
            .post(format!("{}/test/{what}", self.issuer))
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            response.status().is_success(),
            "{what}: {}",
            response.status()
        );
    }
}

async fn access_token(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("token response: {e}"));
    assert!(status.is_success(), "the provider refused: {status} {body}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("token response {body}: {e}"));
    json["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_owned()
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `naast serve` (not in dev mode) on `dir/data` trusting the issuer `idp`, with a master key
/// in `dir`, no clock leeway (so expiry is exact), and `extra` flags.
pub fn server_trusting(dir: &Path, idp: &Idp, extra: &[&str]) -> Server {
    server_with_key(dir, &master_key_file(dir), idp, extra)
}

/// `naast serve` on `dir`'s `data`, with the master key in `key`, trusting `idp` (with `extra`
/// arguments): as [`server_trusting`], to start again on the same data and key.
pub fn server_with_key(dir: &Path, key: &Path, idp: &Idp, extra: &[&str]) -> Server {
    let key = key
        .to_str()
        .unwrap_or_else(|| panic!("the key's path is not UTF-8: {}", key.display()));
    let mut args = vec![
        "--master-key-file",
        key,
        "--issuer",
        &idp.issuer,
        "--leeway-seconds",
        "0",
    ];
    args.extend_from_slice(extra);
    Server::start_with(&dir.join("data"), &args)
}

/// A master key file (32 random bytes, base64) in `dir`, for a server that is not in dev mode.
pub fn master_key_file(dir: &Path) -> PathBuf {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    // A test key: it need not be secret, only the one this server is given.
    bytes[..16].copy_from_slice(uuid::Uuid::now_v7().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::now_v7().as_bytes());
    let path = dir.join("master.key");
    // naast refuses a master key other local users can read.
    private_file(
        &path,
        &base64::engine::general_purpose::STANDARD.encode(bytes),
    );
    path
}

/// Writes `text` to `path`, readable by its owner only (as naast wants its key and secret
/// files).
pub fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
    }
}

/// Every audit record `search` finds, page after page, searched through `channel` (an
/// administrator's).
pub async fn search_audit(
    channel: naast_proto::client::Signed,
    search: naast_proto::pb::SearchAuditLogRequest,
) -> Vec<naast_proto::pb::AuditRecord> {
    let mut client = naast_proto::pb::audit_service_client::AuditServiceClient::new(channel);
    let mut records = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .search_audit_log(naast_proto::pb::SearchAuditLogRequest {
                page_size: 1000,
                page_token: token,
                ..search.clone()
            })
            .await
            .unwrap_or_else(|e| panic!("audit search: {e}"))
            .into_inner();
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            return records;
        }
        token = page.next_page_token;
    }
}

/// The household `id` as `api`'s caller sees it now.
pub async fn household(
    api: &mut naast_proto::pb::household_service_client::HouseholdServiceClient<
        naast_proto::client::Signed,
    >,
    id: &str,
) -> naast_proto::pb::Household {
    api.get_household(naast_proto::pb::GetHouseholdRequest {
        household_id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("reading household {id}: {e:?}"))
    .into_inner()
    .household
    .unwrap_or_else(|| panic!("household {id} came without its view"))
}

/// Registers a household called `name` through `api` and adds its client, Noor: the household's
/// id, the client's member id, and the position the member was written at.
pub async fn household_with_client(
    api: &mut naast_proto::pb::household_service_client::HouseholdServiceClient<
        naast_proto::client::Signed,
    >,
    name: &str,
) -> (String, String, u64) {
    use naast_proto::pb;
    let household = api
        .create_household(pb::CreateHouseholdRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner()
        .household_id;
    let added = api
        .create_member(pb::CreateMemberRequest {
            household_id: household.clone(),
            details: Some(pb::MemberDetails {
                name: "Noor".into(),
                role: pb::MemberRole::Client as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner();
    let position = added
        .result
        .map(|r| r.position)
        .unwrap_or_else(|| panic!("a command answers with its result"));
    (household, added.member_id, position)
}

/// A real FHIR server receiving pushes: Medplum's FHIR router with its in-memory repository on
/// Node (`node/fhir_receiver.mjs`), optionally behind a proxy that injects faults; it ends when
/// dropped (its stdin closes).
pub struct FhirReceiver {
    child: Child,
    /// The receiver's FHIR base (`http://…/fhir`).
    pub base: String,
    /// The fault proxy's FHIR base, when started with `--faults`.
    pub proxy: Option<String>,
}

impl FhirReceiver {
    /// Starts the receiver with `args` (see `node/fhir_receiver.mjs`).
    pub fn start(args: &[&str]) -> Self {
        let (child, started) = start_node("fhir_receiver.mjs", args);
        let base = started["receiver"].as_str().unwrap_or_default().to_owned();
        let proxy = started["proxy"].as_str().map(str::to_owned);
        Self { child, base, proxy }
    }

    /// GET `url`, with `token` as bearer token when given: the status and the JSON body.
    pub async fn get(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new()
            .get(url)
            .header("accept", "application/fhir+json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// POST to the proxy's control path `path` (e.g. `/_faults/off`).
    pub async fn control(&self, path: &str) -> serde_json::Value {
        let proxy = self
            .proxy
            .as_deref()
            .unwrap_or_else(|| panic!("the receiver was started without --faults"));
        let url = format!("{}{path}", proxy.trim_end_matches("/fhir"));
        let response = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let body = response.bytes().await.unwrap_or_default();
        serde_json::from_slice(&body).unwrap_or_default()
    }
}

/// Starts the Node program `node/{script}` with `args` and reads the one JSON line it prints
/// when it listens.
fn start_node(script: &str, args: &[&str]) -> (Child, serde_json::Value) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("node")
        .arg(format!("{root}/node/{script}"))
        .args(args)
        .current_dir(format!("{root}/node"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("node runs {script} (ops/test.sh installs it): {e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("stdout is piped"));
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line).unwrap_or(0);
    let started = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{script} did not start ({read} bytes: {line:?}): {e}")
    });
    (child, started)
}

/// A webhook receiver that checks every signature with the Standard Webhooks library
/// (`node/webhook_receiver.mjs`), optionally failing at random; it ends when dropped.
pub struct WebhookReceiver {
    child: Child,
    /// Where it receives (`http://…/hooks`).
    pub url: String,
}

impl WebhookReceiver {
    /// Starts the receiver with `args` (see `node/webhook_receiver.mjs`).
    pub fn start(args: &[&str]) -> Self {
        let (child, started) = start_node("webhook_receiver.mjs", args);
        let url = started["url"].as_str().unwrap_or_default().to_owned();
        Self { child, url }
    }

    fn control_url(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches("/hooks"))
    }

    /// What it received: `{"notices": [{id, timestamp, payload}…], "rejected": n, "requests": n}`.
    pub async fn notices(&self) -> serde_json::Value {
        FhirReceiver::get(&self.control_url("/_notices"), None)
            .await
            .1
    }

    /// Its fault counts (`GET /_faults`).
    pub async fn faults(&self) -> serde_json::Value {
        FhirReceiver::get(&self.control_url("/_faults"), None)
            .await
            .1
    }

    /// Switches faults off.
    pub async fn faults_off(&self) {
        self.faults_to("/_faults/off").await;
    }

    /// Switches faults on at `rate`, of `kinds` (comma-separated).
    pub async fn faults_on(&self, rate: f64, kinds: &str) {
        self.faults_to(&format!("/_faults/on?rate={rate}&kinds={kinds}"))
            .await;
    }

    async fn faults_to(&self, path: &str) {
        let url = self.control_url(path);
        reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FhirReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The family grants the PGO platform `issuer`/`client_id` to read its whole timeline, through
/// `consent` (an owner's): the grant's id.
pub async fn grant_platform(
    consent: &mut naast_proto::pb::consent_service_client::ConsentServiceClient<
        naast_proto::client::Signed,
    >,
    household: &str,
    issuer: &str,
    client_id: &str,
) -> String {
    use naast_proto::pb;
    consent
        .grant_access(pb::GrantAccessRequest {
            household_id: household.into(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::Platform(pb::PlatformClient {
                    issuer: issuer.into(),
                    client_id: client_id.into(),
                })),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner()
        .grant_id
}

/// A goal about housing for `owner` (a member) in `household`, through `api`: its id.
pub async fn create_goal(
    api: &mut naast_proto::pb::household_service_client::HouseholdServiceClient<
        naast_proto::client::Signed,
    >,
    household: &str,
    owner: &str,
    title: &str,
) -> String {
    use naast_proto::pb;
    api.create_goal(pb::CreateGoalRequest {
        household_id: household.into(),
        owner_member_id: owner.into(),
        title: title.into(),
        life_domains: vec![pb::LifeDomain::Housing as i32],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e:?}"))
    .into_inner()
    .goal_id
}

/// Runs `naast replay` on `data_dir` (the server stopped), checks it succeeded, and returns
/// what it said.
pub fn replay(data_dir: &Path) -> String {
    let replay = Command::new(workspace_bin("naast"))
        .args(["replay", "--data-dir"])
        .arg(data_dir)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run naast replay: {e}"));
    assert!(
        replay.status.success(),
        "naast replay failed: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    String::from_utf8_lossy(&replay.stdout).into_owned()
}

/// Runs `naast verify` on `data_dir` (with `args`), which must pass: what it printed.
pub fn verify(data_dir: &Path, args: &[&str]) -> String {
    let verified = Command::new(workspace_bin("naast"))
        .arg("verify")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run naast verify: {e}"));
    let said = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verified.status.success(),
        "naast verify: {said}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    said
}

/// A number from the environment variable `name`, or `default` when it is unset or not one.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The change feed of the `pgo` persona's platform after `after` (from the start when `None`),
/// until nothing comes for two seconds.
pub async fn platform_changes(
    server: &Server,
    after: Option<u64>,
) -> Vec<naast_proto::pb::SubscribeChangesResponse> {
    use tokio_stream::StreamExt as _;
    let mut push =
        naast_proto::pb::push_service_client::PushServiceClient::new(server.signed("pgo").await);
    let mut stream = push
        .subscribe_changes(naast_proto::pb::SubscribeChangesRequest {
            after_cursor: after,
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner();
    let mut out = Vec::new();
    while let Ok(Some(change)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), stream.next()).await
    {
        out.push(change.unwrap_or_else(|e| panic!("{e:?}")));
    }
    out
}

/// Every event of the log as an administrator's raw API lists it (household events left out),
/// page after page.
pub async fn all_events(server: &Server) -> Vec<naast_proto::pb::Event> {
    use naast_proto::pb;
    let mut api =
        pb::event_log_service_client::EventLogServiceClient::new(server.signed("beheerder").await)
            .max_decoding_message_size(64 * 1024 * 1024);
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .list_events(pb::ListEventsRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        token = page.next_page_token;
    }
}

/// The whole timeline of `household` as the parent (`ouder`) sees it, page after page.
pub async fn full_timeline(
    server: &Server,
    household: &str,
) -> Vec<naast_proto::pb::TimelineEntry> {
    use naast_proto::pb;
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .list_timeline_entries(pb::ListTimelineEntriesRequest {
                household_id: household.into(),
                page_size: 500,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        token = page.next_page_token;
    }
}

/// Each sample of the scrape: name with its labels sorted (`name{a="1",b="2"}`) → value.
pub async fn scrape_metrics(server: &Server) -> std::collections::BTreeMap<String, f64> {
    let url = format!(
        "http://{}/metrics",
        server
            .metrics
            .unwrap_or_else(|| panic!("the server was not started with --metrics-listen"))
    );
    let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or_else(|e| panic!("{e:?}"))
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap_or_else(|e| panic!("{e:?}"));
    let mut samples = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("a sample without a value: {line}"));
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        samples.insert(key, value.parse().unwrap_or_else(|e| panic!("{e:?}")));
    }
    samples
}

/// The FHIR call `method url` with `token` as bearer token (and a JSON body): the status and the
/// JSON answer (`null` when there is none).
pub async fn fhir_call(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .header("accept", "application/fhir+json")
        .timeout(std::time::Duration::from_secs(10));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A parameter of a FHIR SubscriptionStatus.
pub fn status_parameter<'a>(
    status: &'a serde_json::Value,
    name: &str,
) -> Option<&'a serde_json::Value> {
    status["parameter"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// The type of a notification or `$events` Bundle, and the event numbers it carries.
pub fn notification_numbers(bundle: &serde_json::Value) -> (String, Vec<u64>) {
    let status = &bundle["entry"][0]["resource"];
    let kind = status_parameter(status, "type")
        .and_then(|p| p["valueCode"].as_str())
        .unwrap_or_default()
        .to_owned();
    let numbers = status["parameter"]
        .as_array()
        .unwrap_or_else(|| panic!("a SubscriptionStatus without parameters: {bundle}"))
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .map(|p| {
            p["part"]
                .as_array()
                .and_then(|parts| parts.iter().find(|part| part["name"] == "event-number"))
                .and_then(|part| part["valueString"].as_str())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a notification event without its number: {p}"))
        })
        .collect();
    (kind, numbers)
}

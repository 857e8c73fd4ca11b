//! The web timeline, end to end: the real `naast serve` with `--web-listen`, the real OpenID
//! provider of the auth tests (its own login page, authorization code flow with PKCE), and a
//! real browser (headless Chromium from the Debian packages, driven by Python selenium through
//! Debian's chromedriver; `tests/python/web_browser.py`). The test command installs all three.
//!
//! The demo families are registered through gRPC by Ouder A, who then signs in in the browser;
//! a supporter signs in in a second browser. What each of them may see, the live updates, the
//! revocation, the CSRF refusal, the access log and an axe-core check of every page are
//! checked there; the screenshots stay in `target/test-artifacts/web`.

use naast_proto::pb;
use naast_tests::{Idp, server_trusting};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

/// The provider's login name (the subject) of the parent and the supporter (their claims are
/// the personas `ouder-a` and `ondersteuner` of the provider).
const PARENT: &str = "burger-ouder-a";
const SUPPORTER: &str = "ondersteuner-1";
const SUPPORTER_NAME: &str = "Cliëntondersteuner";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_grants_a_supporter_one_life_domain_and_takes_it_back_in_a_real_browser() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let secret = dir.path().join("web-client-secret");
    naast_tests::private_file(&secret, "secret-naast-web");
    let config = dir.path().join("naast.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nclient_id = \"naast-web\"\nclient_secret_file = {:?}\nscopes = [\"naast\"]\n",
            secret.display().to_string()
        ),
    )
    .unwrap_or_else(|e| panic!("config: {e}"));
    let config = config.display().to_string();
    let server = server_trusting(
        dir.path(),
        &idp,
        &["--config", &config, "--web-listen", "127.0.0.1:0"],
    );
    let web = server
        .web
        .clone()
        .unwrap_or_else(|| panic!("naast serve did not print its web timeline's address"));
    idp.register_web_client(&format!("{web}/aanmelden/terug"))
        .await;

    // Every answer of the web door is uncacheable and runs no inline or foreign script.
    let start = reqwest::get(format!("{web}/"))
        .await
        .unwrap_or_else(|e| panic!("GET /: {e}"));
    let header = |name: &str| {
        start
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("cache-control"), "no-store");
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header("x-frame-options"), "DENY");

    // The demo families, registered by the parent.
    let token = idp.token("ouder-a").await;
    naast_server::demo::run(server.url(), &token, &mut Vec::new())
        .await
        .unwrap_or_else(|e| panic!("the demo families: {e}"));
    let channel = naast_tests::signed(&server.url(), &token).await;
    let mut api = pb::household_service_client::HouseholdServiceClient::new(channel);
    let caseload = api
        .list_caseload(pb::ListCaseloadRequest::default())
        .await
        .unwrap_or_else(|e| panic!("the parent's households: {e:?}"))
        .into_inner();
    let family = caseload
        .entries
        .iter()
        .find(|e| e.name.starts_with("Familie De Vries"))
        .unwrap_or_else(|| panic!("no De Vries family among {:?}", caseload.entries));
    let household = family.household_id.clone();
    let (domain, label) = a_domain_of_some_entries(&mut api, &household).await;

    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-artifacts/web");
    let axe = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/node/node_modules/axe-core/axe.min.js"
    );
    let mut browser = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/web_browser.py"
        ))
        .env("NAAST_WEB", &web)
        .env("NAAST_HOUSEHOLD", &household)
        .env("NAAST_PARENT_LOGIN", PARENT)
        .env("NAAST_SUPPORTER_LOGIN", SUPPORTER)
        .env("NAAST_SUPPORTER_NAME", SUPPORTER_NAME)
        .env("NAAST_DOMAIN", domain.wire_name())
        .env("NAAST_DOMAIN_LABEL", label)
        .env("NAAST_AXE", axe)
        .env("NAAST_ARTIFACTS", artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python3 web_browser.py: {e}"));
    let mut to_browser = browser
        .stdin
        .take()
        .unwrap_or_else(|| panic!("stdin is piped"));
    let from_browser = BufReader::new(
        browser
            .stdout
            .take()
            .unwrap_or_else(|| panic!("stdout is piped")),
    );
    let mut done = false;
    let mut notes = 0;
    for line in from_browser.lines() {
        let line = line.unwrap_or_else(|e| panic!("reading the browser script: {e}"));
        if line == "DONE" {
            done = true;
        } else if let Some(rest) = line.strip_prefix("NOTE ") {
            // The family writes a note (over gRPC) while the pages are open.
            let (wire, text) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("a note without text: {line:?}"));
            let domain = naast_domain::vocab::LifeDomain::from_wire(wire)
                .unwrap_or_else(|| panic!("not a life domain: {wire:?}"));
            api.create_note(pb::CreateNoteRequest {
                household_id: household.clone(),
                text: text.to_owned(),
                life_domains: vec![proto_life_domain(domain)],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("writing a note: {e:?}"));
            notes += 1;
            writeln!(to_browser, "OK").unwrap_or_else(|e| panic!("answering the browser: {e}"));
        } else {
            println!("web_browser.py: {line}");
        }
    }
    let status = browser
        .wait()
        .unwrap_or_else(|e| panic!("waiting for the browser script: {e}"));
    assert!(
        status.success() && done,
        "the browser checks failed ({status}); see above"
    );
    assert_eq!(
        notes, 2,
        "the script asked for the live note and the one after revoking"
    );
    for page in ["02-tijdlijn-ouder", "08-tijdlijn-ondersteuner", "09-inzage"] {
        let shot = std::path::Path::new(artifacts).join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1_000),
            "no screenshot {}",
            shot.display()
        );
    }
}

/// A life domain that some of the household's timeline entries name and others do not, with
/// its Dutch name.
async fn a_domain_of_some_entries(
    api: &mut pb::household_service_client::HouseholdServiceClient<naast_proto::client::Signed>,
    household: &str,
) -> (naast_domain::vocab::LifeDomain, &'static str) {
    let entries = api
        .list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: household.to_owned(),
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("the timeline: {e:?}"))
        .into_inner()
        .entries;
    naast_domain::vocab::LifeDomain::ALL
        .iter()
        .map(|domain| {
            let n = entries
                .iter()
                .filter(|e| e.life_domains.contains(&proto_life_domain(*domain)))
                .count();
            (n, *domain)
        })
        .filter(|(n, _)| *n >= 2 && *n < entries.len())
        .max_by_key(|(n, _)| *n)
        .map(|(_, domain)| (domain, domain.display_name()))
        .unwrap_or_else(|| panic!("no life domain names some entries: {entries:?}"))
}

fn proto_life_domain(domain: naast_domain::vocab::LifeDomain) -> i32 {
    let name = format!("LIFE_DOMAIN_{}", domain.wire_name().to_ascii_uppercase());
    pb::LifeDomain::from_str_name(&name).unwrap_or_else(|| panic!("no proto value {name}")) as i32
}

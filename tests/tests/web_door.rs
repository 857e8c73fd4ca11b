//! The web timeline's door, spoken to over plain HTTP against the real `naast serve` (the
//! browser test in `web_timeline.rs` covers what people do; this covers what an attacker or a
//! stray request does): pages need a session, a session needs a sign-in, a form needs its
//! session's CSRF token and this site's origin, a bad choice is named and writes nothing, the
//! cookies are `HttpOnly` and `SameSite`, every answer is `no-store`, URLs carry no names, and a
//! page's call is in the audit log under its web name. The demo personas sign in only in dev
//! mode; an answer from the issuer that this browser did not ask for starts no session.

use naast_proto::pb;
use naast_tests::{Idp, Server, server_trusting};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

/// A refused form: what is wrong with it, its origin, its fields, the answer's status.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Vec<(&'a str, &'a str)>,
    StatusCode,
);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

fn web(server: &Server) -> String {
    server
        .web
        .clone()
        .unwrap_or_else(|| panic!("naast serve did not print its web timeline's address"))
}

/// The value of cookie `name` that `headers` set, and the whole `Set-Cookie` line.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|line| {
            let value = line[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned();
            (value, line.to_owned())
        })
}

/// The `value` of the hidden `csrf` input of a page.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF token in {page}"));
    page[at + 19..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn get(http: &reqwest::Client, url: &str, cookie: &str) -> Answer {
    let response = http
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    answer(response).await
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> Answer {
    let mut request = http.post(url).header("cookie", cookie).body(
        form.iter()
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
            .collect::<Vec<_>>()
            .join("&"),
    );
    request = request.header("content-type", "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    answer(response).await
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    assert_eq!(
        headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        "no-store",
        "every answer is no-store"
    );
    let body = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

/// `naast serve --dev` with its web timeline, and a family (with its client, Noor) registered
/// over gRPC by the demo parent.
struct Family {
    _dir: tempfile::TempDir,
    server: Server,
    web: String,
    http: reqwest::Client,
    api: pb::household_service_client::HouseholdServiceClient<naast_proto::client::Signed>,
    household: String,
}

async fn dev_family(name: &str) -> Family {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--dev", "--web-listen", "127.0.0.1:0"],
    );
    let web = web(&server);
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, _, _) = naast_tests::household_with_client(&mut api, name).await;
    Family {
        _dir: dir,
        server,
        web,
        http: client(),
        api,
        household,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_forms_their_token_and_origin() {
    let Family {
        _dir,
        server,
        web,
        http,
        mut api,
        household,
    } = dev_family("Familie Zichtbaar").await;
    let revision = naast_tests::household(&mut api, &household).await.revision;

    // No session: to the start page.
    let refused = get(
        &http,
        &format!("{web}/huishoudens/{household}/tijdlijn"),
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(
        refused.headers.get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/")
    );

    // The start page binds its persona form to this browser.
    let start = get(&http, &format!("{web}/"), "").await;
    assert_eq!(start.status, StatusCode::OK);
    assert!(
        start.body.contains("NIET VOOR PRODUCTIE"),
        "dev mode is said loudly"
    );
    let (bound, line) = set_cookie(&start.headers, "naast-demo")
        .unwrap_or_else(|| panic!("no sign-in cookie: {:?}", start.headers));
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Lax"),
        "{line}"
    );
    assert_eq!(csrf_of(&start.body), bound);
    let pre = format!("naast-demo={bound}");

    // A persona form without the browser's token starts no session.
    let forged = post(
        &http,
        &format!("{web}/aanmelden/demo"),
        &pre,
        None,
        &[("csrf", "forged"), ("persona", "ouder")],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&forged.headers, "naast-sessie").is_none());

    let signed = post(
        &http,
        &format!("{web}/aanmelden/demo"),
        &pre,
        None,
        &[("csrf", &bound), ("persona", "ouder")],
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let (session, line) = set_cookie(&signed.headers, "naast-sessie")
        .unwrap_or_else(|| panic!("no session cookie: {:?}", signed.headers));
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Lax"),
        "{line}"
    );
    assert!(
        !line.contains("Secure"),
        "plain http: no Secure flag ({line})"
    );
    assert_eq!(session.len(), 43, "256 random bits");
    let cookie = format!("naast-sessie={session}");

    let timeline = get(
        &http,
        &format!("{web}/huishoudens/{household}/tijdlijn"),
        &cookie,
    )
    .await;
    assert_eq!(timeline.status, StatusCode::OK);
    assert!(timeline.body.contains("Familie Zichtbaar") && timeline.body.contains("Noor"));
    // No name in any address of the page.
    for href in timeline.body.split("href=\"").skip(1) {
        let href = href.split('"').next().unwrap_or_default();
        assert!(
            !href.contains("Noor") && !href.contains("Zichtbaar"),
            "{href}"
        );
    }
    let csrf = csrf_of(&timeline.body);

    // A bad filter is named, with a 400.
    let bad = get(
        &http,
        &format!("{web}/huishoudens/{household}/tijdlijn?leefgebied=maan"),
        &cookie,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("leefgebied"), "{}", bad.body);

    // Forms: without the token, from another origin, or with a bad choice, nothing is written.
    let grant = format!("{web}/huishoudens/{household}/toegang");
    let w = web.as_str();
    let cases: [Case; 4] = [
        (
            "no token",
            Some(w),
            vec![("persoon", "iemand"), ("recht", "lezen")],
            StatusCode::FORBIDDEN,
        ),
        (
            "a wrong token",
            Some(w),
            vec![("csrf", "x"), ("persoon", "iemand"), ("recht", "lezen")],
            StatusCode::FORBIDDEN,
        ),
        (
            "another origin",
            Some("http://elders.example"),
            vec![("csrf", &csrf), ("persoon", "iemand"), ("recht", "lezen")],
            StatusCode::FORBIDDEN,
        ),
        (
            "an unknown life domain",
            Some(w),
            vec![
                ("csrf", &csrf),
                ("persoon", "iemand"),
                ("recht", "lezen"),
                ("leefgebied", "maan"),
            ],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (case, origin, form, status) in &cases {
        let refused = post(&http, &grant, &cookie, *origin, form).await;
        assert_eq!(refused.status, *status, "{case}: {}", refused.body);
        assert_eq!(
            naast_tests::household(&mut api, &household).await.revision,
            revision,
            "{case}: nothing is written"
        );
    }
    // A grant that allows nothing is refused by the service, and the page says which part of
    // the form to look at, in Dutch.
    let nothing = post(
        &http,
        &grant,
        &cookie,
        Some(w),
        &[("csrf", &csrf), ("persoon", "iemand")],
    )
    .await;
    assert_eq!(nothing.status, StatusCode::BAD_REQUEST, "{}", nothing.body);
    assert!(
        nothing.body.contains("wat die mag doen"),
        "{}",
        nothing.body
    );
    assert_eq!(
        naast_tests::household(&mut api, &household).await.revision,
        revision
    );
    // With all of it, the grant is written.
    let granted = post(
        &http,
        &grant,
        &cookie,
        Some(&web),
        &[
            ("csrf", &csrf),
            ("persoon", "iemand"),
            ("recht", "lezen"),
            ("leefgebied", "housing"),
        ],
    )
    .await;
    assert_eq!(granted.status, StatusCode::SEE_OTHER, "{}", granted.body);
    assert_eq!(
        naast_tests::household(&mut api, &household).await.revision,
        revision + 1
    );

    // The page's read is in the audit log under its web name, as a read of this household.
    let records = naast_tests::search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: household.clone(),
            ..Default::default()
        },
    )
    .await;
    // One view of the timeline page: its listing and the family's names, each under its own
    // name (the filtered view was refused before anything was read).
    let views: Vec<&str> = records
        .iter()
        .filter(|r| r.operation == "web ListTimelineEntries" || r.operation == "web GetHousehold")
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(
        views,
        ["web ListTimelineEntries", "web GetHousehold"],
        "{records:?}"
    );
    let read = records
        .iter()
        .find(|r| r.operation == "web ListTimelineEntries")
        .unwrap_or_else(|| panic!("no web read among {records:?}"));
    assert_eq!(read.action, pb::AuditAction::Read as i32);
    assert_eq!(read.outcome, pb::AuditOutcome::Allowed as i32);
    assert!(records.iter().any(|r| r.operation == "web GrantAccess" && r.action == pb::AuditAction::Create as i32));

    // Signing out ends the session.
    sign_out(&http, &web, &cookie, &csrf).await;
    let after = get(&http, &format!("{web}/huishoudens"), &cookie).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(
        after.headers.get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_dev_mode_only_the_issuer_signs_people_in() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let server = server_trusting(dir.path(), &idp, &["--web-listen", "127.0.0.1:0"]);
    let web = web(&server);
    let http = client();

    let start = get(&http, &format!("{web}/"), "").await;
    assert!(
        !start.body.contains("demopersoon"),
        "no personas outside dev mode"
    );
    // Nor their cookie: the start page sets none, so opening it while a sign-in at the
    // issuer is under way (another tab) leaves that sign-in's state cookie alone.
    assert!(
        start.headers.get(SET_COOKIE).is_none(),
        "{:?}",
        start.headers
    );
    // Forms lead to naast and to the issuer (signing out there), nowhere else.
    let csp = start
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains(&format!("form-action 'self' {};", idp.issuer)),
        "{csp}"
    );
    let personas = post(
        &http,
        &format!("{web}/aanmelden/demo"),
        "",
        Some(&web),
        &[("persona", "ouder")],
    )
    .await;
    assert_eq!(personas.status, StatusCode::NOT_FOUND);

    // Sign-in goes to the trusted issuer, with PKCE (S256) and a state bound to this browser.
    let begun = get(&http, &format!("{web}/aanmelden"), "").await;
    assert_eq!(begun.status, StatusCode::SEE_OTHER);
    let to = begun
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(to.starts_with(&format!("{}/auth?", idp.issuer)), "{to}");
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "client_id=naast-web",
        "response_type=code",
    ] {
        assert!(to.contains(part), "{part} in {to}");
    }
    let state = to
        .split("state=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap_or_else(|| panic!("no state in {to}"))
        .to_owned();
    let (bound, _) =
        set_cookie(&begun.headers, "naast-aanmelden").unwrap_or_else(|| panic!("no state cookie"));
    assert_eq!(bound, state);

    // An answer with this state from a browser that did not begin it, with a state naast
    // never gave out, or with one begun too long ago, starts no session.
    let cases = [
        (String::new(), state.clone()),
        (
            "naast-aanmelden=elsewhere".to_owned(),
            "elsewhere".to_owned(),
        ),
        (
            "naast-aanmelden=1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            "1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ),
    ];
    for (cookie, state) in cases {
        let answer = get(
            &http,
            &format!("{web}/aanmelden/terug?code=stolen&state={state}"),
            &cookie,
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{cookie} {state}");
        assert!(set_cookie(&answer.headers, "naast-sessie").is_none());
    }
}

/// Signs the session of `cookie` out with its form (token `csrf`), as its page does.
async fn sign_out(http: &reqwest::Client, web: &str, cookie: &str, csrf: &str) {
    let out = post(
        http,
        &format!("{web}/afmelden"),
        cookie,
        Some(web),
        &[("csrf", csrf)],
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
}

/// Signs `persona` in through the start page's form (dev mode): the session cookie.
async fn persona_session(http: &reqwest::Client, web: &str, persona: &str) -> String {
    let start = get(http, &format!("{web}/"), "").await;
    let (bound, _) =
        set_cookie(&start.headers, "naast-demo").unwrap_or_else(|| panic!("no sign-in cookie"));
    let signed = post(
        http,
        &format!("{web}/aanmelden/demo"),
        &format!("naast-demo={bound}"),
        None,
        &[("csrf", &bound), ("persona", persona)],
    )
    .await;
    let (session, _) = set_cookie(&signed.headers, "naast-sessie")
        .unwrap_or_else(|| panic!("{persona} got no session: {}", signed.body));
    format!("naast-sessie={session}")
}

/// Reads an event stream until `needle` has come, the stream ends, or 20 s pass: what came.
async fn read_events(stream: &mut reqwest::Response, needle: &str) -> (String, bool) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains(needle) {
                    return (text, false);
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => return (text, true),
            Err(_) => return (text, false),
        }
    }
}

/// Whether the stream ends (within 20 s) without another `entry` event.
async fn ends_without_entries(stream: &mut reqwest::Response) -> String {
    let (text, ended) = read_events(stream, "event: entry").await;
    assert!(ended, "the stream went on: {text}");
    assert!(
        !text.contains("event: entry"),
        "an entry after the end: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_stop_at_revocation_and_at_sign_out_on_the_server() {
    let Family {
        _dir,
        server: _server,
        web,
        http,
        mut api,
        household,
    } = dev_family("Familie Live").await;
    let parent = persona_session(&http, &web, "ouder").await;
    let supporter = persona_session(&http, &web, "ondersteuner").await;

    // The parent grants the demo supporter one life domain (the grant names the supporter's
    // subject at the parent's own sign-in service, the development issuer here).
    let page = get(
        &http,
        &format!("{web}/huishoudens/{household}/toegang"),
        &parent,
    )
    .await;
    let csrf = csrf_of(&page.body);
    let granted = post(
        &http,
        &format!("{web}/huishoudens/{household}/toegang"),
        &parent,
        Some(&web),
        &[
            ("csrf", &csrf),
            ("persoon", "dev-ondersteuner"),
            ("recht", "lezen"),
            ("leefgebied", "housing"),
        ],
    )
    .await;
    assert_eq!(granted.status, StatusCode::SEE_OTHER, "{}", granted.body);

    let note = |text: &str, domain: pb::LifeDomain| pb::CreateNoteRequest {
        household_id: household.clone(),
        text: text.to_owned(),
        life_domains: vec![domain as i32],
        ..Default::default()
    };
    let live = format!("{web}/huishoudens/{household}/tijdlijn/live?vanaf=0");
    let mut stream = http
        .get(&live)
        .header("cookie", &supporter)
        .send()
        .await
        .unwrap_or_else(|e| panic!("live: {e}"));
    assert_eq!(stream.status(), StatusCode::OK);
    api.create_note(note("Over de woning", pb::LifeDomain::Housing))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    api.create_note(note("Over geld", pb::LifeDomain::FinancesAndIncome))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    api.create_note(note("Weer over de woning", pb::LifeDomain::Housing))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (text, _) = read_events(&mut stream, "Weer over de woning").await;
    assert!(text.contains("Over de woning"), "{text}");
    assert!(
        !text.contains("Over geld"),
        "another domain reached the supporter: {text}"
    );

    // The parent revokes: the supporter's stream says so and ends.
    let grants = get(
        &http,
        &format!("{web}/huishoudens/{household}/toegang"),
        &parent,
    )
    .await;
    let grant = grants
        .body
        .split("data-grant=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .find(|id| {
            grants.body.contains(&format!("/toegang/{id}/intrekken"))
                && grants.body.contains("dev-ondersteuner")
        })
        .unwrap_or_else(|| panic!("the supporter's grant is not listed: {}", grants.body));
    let revoked = post(
        &http,
        &format!("{web}/huishoudens/{household}/toegang/{grant}/intrekken"),
        &parent,
        Some(&web),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    api.create_note(note("Na het intrekken", pb::LifeDomain::Housing))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let text = ends_without_entries(&mut stream).await;
    assert!(
        text.contains("event: end") && text.contains("geen toegang"),
        "{text}"
    );
    let again = get(&http, &live, &supporter).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);

    // The parent's own open page ends when the parent signs out, with no write needed.
    let mut stream = http
        .get(live.replace("vanaf=0", "vanaf=1000"))
        .header("cookie", &parent)
        .send()
        .await
        .unwrap_or_else(|e| panic!("live: {e}"));
    assert_eq!(stream.status(), StatusCode::OK);
    sign_out(&http, &web, &parent, &csrf).await;
    let text = ends_without_entries(&mut stream).await;
    assert!(text.contains("afgemeld"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_a_page_makes_counts_against_the_persons_rate() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let config = dir.path().join("naast.toml");
    std::fs::write(&config, "[limits]\ncalls_per_second = 1\ncall_burst = 16\n")
        .unwrap_or_else(|e| panic!("config: {e}"));
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--dev",
            "--web-listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap_or_default(),
        ],
    );
    let web = web(&server);
    let http = client();
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, _, _) = naast_tests::household_with_client(&mut api, "Familie Teller").await;
    let parent = persona_session(&http, &web, "ouder").await;

    // A timeline page counts its admission and its two calls (the household, its entries): ten
    // pages count thirty, past a burst of sixteen, so some page is refused. Were a page counted
    // once, ten pages, the sign-in and the two calls of the registration would all fit.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let page = get(
            &http,
            &format!("{web}/huishoudens/{household}/tijdlijn"),
            &parent,
        )
        .await;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(page.body.contains("Even wachten"), "{}", page.body);
        }
        statuses.push(page.status);
    }
    assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

//! The FHIR facade of a real `naast serve` process over HTTP: what is written over gRPC is read
//! over FHIR (read, vread, history, search with paging, `$everything`), with the same access
//! decisions and audit records as gRPC, and bad requests answered with an `OperationOutcome`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::audit_service_client::AuditServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use serde_json::Value;
use std::collections::HashSet;

/// An answer of the facade: status, headers, JSON body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn get(url: &str, token: Option<&str>) -> Answer {
    get_with(url, token, &[]).await
}

async fn get_with(url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(url, request.send().await.unwrap()).await
}

/// The facade's answer to a request to `url`: its status, headers and JSON body (`null` when
/// there is none).
async fn answer(url: &str, response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("{url}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
        })
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// The `next` link of a searchset Bundle, if it has one.
fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

fn fhir_server(dir: &std::path::Path) -> Server {
    Server::start_with(dir, &["--dev", "--fhir-listen", "127.0.0.1:0"])
}

async fn create_goal(
    api: &mut HouseholdServiceClient<naast_proto::client::Signed>,
    home: &str,
    owner: &str,
    title: &str,
) -> (String, u64) {
    let created = api
        .create_goal(pb::CreateGoalRequest {
            household_id: home.into(),
            owner_member_id: owner.into(),
            title: title.into(),
            life_domains: vec![pb::LifeDomain::SocialNetwork as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (created.goal_id, created.result.unwrap().revision)
}

fn entries(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|entry| &entry["resource"]).collect())
        .unwrap_or_default()
}

fn issue(answer: &Answer) -> &Value {
    assert_eq!(
        answer.body["resourceType"], "OperationOutcome",
        "{}",
        answer.body
    );
    assert_eq!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .split(';')
            .next(),
        Some("application/fhir+json")
    );
    &answer.body["issue"][0]
}

#[tokio::test]
async fn what_is_written_over_grpc_is_read_over_fhir_with_versions_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let ouder = server.token("ouder").to_owned();
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, noor, _) = naast_tests::household_with_client(&mut family, "Familie Visser").await;
    let (goal, created_at) = create_goal(&mut family, &home, &noor, "vrienden maken").await;

    // What the service can do is open to all, and tells the truth.
    let metadata = get(&format!("{base}/metadata"), None).await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.body["resourceType"], "CapabilityStatement");
    assert_eq!(metadata.body["fhirVersion"], "4.0.1");
    let served: Vec<&str> = metadata.body["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    for kind in [
        "Patient", "Goal", "CarePlan", "Group", "CareTeam", "Consent", "Coverage",
    ] {
        assert!(served.contains(&kind), "{kind} in {served:?}");
    }

    // A read: the resource, its version (the household's revision) and the version headers.
    let patient = get(&format!("{base}/Patient/{noor}"), Some(&ouder)).await;
    assert_eq!(patient.status, 200, "{}", patient.body);
    assert_eq!(patient.body["resourceType"], "Patient");
    assert_eq!(patient.body["id"], noor.as_str());
    assert_eq!(patient.body["name"][0]["text"], "Noor");
    let version = patient.body["meta"]["versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(version, created_at.to_string());
    assert_eq!(patient.headers["etag"], format!("W/\"{version}\"").as_str());
    assert!(patient.body["meta"]["lastUpdated"].is_string());

    // The goal is reworded over gRPC: two versions in its history, each a real past state.
    family
        .update_goal(pb::UpdateGoalRequest {
            household_id: home.clone(),
            goal_id: goal.clone(),
            title: "vrienden maken op school".into(),
            life_domains: vec![pb::LifeDomain::SocialNetwork as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    let read = get(&format!("{base}/Goal/{goal}"), Some(&ouder)).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["description"]["text"], "vrienden maken op school");
    let history = get(&format!("{base}/Goal/{goal}/_history"), Some(&ouder)).await;
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.body["type"], "history");
    let versions = entries(&history.body);
    assert_eq!(versions.len(), 2, "{}", history.body);
    assert_eq!(
        versions[0]["description"]["text"],
        "vrienden maken op school"
    );
    assert_eq!(versions[1]["description"]["text"], "vrienden maken");
    let first = versions[1]["meta"]["versionId"].as_str().unwrap();
    assert_eq!(first, created_at.to_string());
    let old = get(
        &format!("{base}/Goal/{goal}/_history/{first}"),
        Some(&ouder),
    )
    .await;
    assert_eq!(old.status, 200, "{}", old.body);
    assert_eq!(old.body["description"]["text"], "vrienden maken");
    assert_eq!(old.body["meta"]["versionId"], first);
    // Before the goal existed, and after the household's last revision: no such version.
    let before = get(&format!("{base}/Goal/{goal}/_history/1"), Some(&ouder)).await;
    assert_eq!(before.status, 404, "{}", before.body);
    issue(&before);
    let later = get(&format!("{base}/Goal/{goal}/_history/999"), Some(&ouder)).await;
    assert_eq!(later.status, 404);

    // A search within the household, by the client.
    let found = get(&format!("{base}/Goal?patient=Patient/{noor}"), Some(&ouder)).await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["type"], "searchset");
    assert_eq!(found.body["total"], 1);
    assert_eq!(entries(&found.body)[0]["id"], goal.as_str());
    let none = get(
        &format!("{base}/Goal?patient=Patient/{noor}&lifecycle-status=completed"),
        Some(&ouder),
    )
    .await;
    assert_eq!(none.body["total"], 0, "{}", none.body);
    let by_domain = get(
        &format!("{base}/Goal?patient={noor}&category=social_network"),
        Some(&ouder),
    )
    .await;
    assert_eq!(by_domain.body["total"], 1, "{}", by_domain.body);
    // Only the total: no entries, no next page.
    let counted = get(
        &format!("{base}/Goal?patient={noor}&_count=0"),
        Some(&ouder),
    )
    .await;
    assert_eq!(counted.status, 200, "{}", counted.body);
    assert_eq!(counted.body["total"], 1);
    assert!(counted.body.get("entry").is_none(), "{}", counted.body);
    assert_eq!(next_link(&counted.body), None);

    // The household as one Bundle.
    let everything = get(&format!("{base}/Group/{home}/$everything"), Some(&ouder)).await;
    assert_eq!(everything.status, 200, "{}", everything.body);
    let kinds: HashSet<&str> = entries(&everything.body)
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    for kind in ["Group", "Patient", "CareTeam", "Goal"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
}

#[tokio::test]
async fn pages_of_a_search_stay_valid_while_writes_happen() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let ouder = server.token("ouder").to_owned();
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, noor, _) = naast_tests::household_with_client(&mut family, "Familie Kok").await;
    let mut goals = HashSet::new();
    for i in 0..5 {
        goals.insert(
            create_goal(&mut family, &home, &noor, &format!("doel {i}"))
                .await
                .0,
        );
    }
    let mut seen = Vec::new();
    let mut next = Some(format!("{base}/Goal?patient=Patient/{noor}&_count=2"));
    let mut pages = 0;
    while let Some(url) = next {
        let page = get(&url, Some(&ouder)).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        assert!(entries(&page.body).len() <= 2);
        seen.extend(
            entries(&page.body)
                .iter()
                .map(|g| g["id"].as_str().unwrap().to_owned()),
        );
        next = next_link(&page.body);
        pages += 1;
        // A write between pages: the next page goes on where this one ended.
        create_goal(&mut family, &home, &noor, &format!("tussendoor {pages}")).await;
    }
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "no resource twice: {seen:?}");
    for goal in &goals {
        assert!(seen.contains(goal), "{goal} was skipped: {seen:?}");
    }
    assert!(pages >= 3);
}

#[tokio::test]
async fn refusals_over_fhir_are_decided_and_recorded_as_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, noor, _) = naast_tests::household_with_client(&mut family, "Familie Bos").await;

    // No token: 401 with an OperationOutcome and a challenge; recorded.
    let anonymous = get(&format!("{base}/Patient/{noor}"), None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(issue(&anonymous)["code"], "login");
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
    let forged = get(&format!("{base}/Patient/{noor}"), Some("not-a-token")).await;
    assert_eq!(forged.status, 401);

    // A professional the family gave no access: refused, and the family's access log says so.
    let stranger = get(
        &format!("{base}/Patient/{noor}"),
        Some(server.token("zorgverlener")),
    )
    .await;
    assert_eq!(stranger.status, 403, "{}", stranger.body);
    assert_eq!(issue(&stranger)["code"], "forbidden");
    let everything = get(
        &format!("{base}/Group/{home}/$everything"),
        Some(server.token("zorgverlener")),
    )
    .await;
    assert_eq!(everything.status, 403);
    // An id no household holds is refused in the same words.
    let unknown = get(
        &format!("{base}/Patient/{}", uuid::Uuid::now_v7()),
        Some(server.token("zorgverlener")),
    )
    .await;
    assert_eq!(unknown.status, 403);
    assert_eq!(
        issue(&unknown)["diagnostics"],
        issue(&stranger)["diagnostics"]
    );

    let log = AuditServiceClient::new(server.signed("ouder").await)
        .list_access_log(pb::ListAccessLogRequest {
            household_id: home.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let refused: Vec<&pb::AuditRecord> = log
        .iter()
        .filter(|r| {
            r.operation.starts_with("FHIR ") && r.outcome == pb::AuditOutcome::Denied as i32
        })
        .collect();
    assert_eq!(refused.len(), 2, "{log:#?}");
    assert!(refused.iter().any(|r| {
        r.operation == "FHIR read Patient"
            && r.user
                .as_ref()
                .is_some_and(|u| u.subject == "dev-zorgverlener")
            && r.action == pb::AuditAction::Read as i32
    }));
    assert!(
        refused
            .iter()
            .any(|r| r.operation == "FHIR everything Group")
    );
    // The family's own FHIR reads are in its access log too, allowed.
    get(
        &format!("{base}/Patient/{noor}"),
        Some(server.token("ouder")),
    )
    .await;
    let allowed = naast_tests::search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: home.clone(),
            outcome: pb::AuditOutcome::Allowed as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(
        allowed.iter().any(|r| r.operation == "FHIR read Patient"
            && r.object_ids.contains(&format!("Patient/{noor}"))),
        "{allowed:#?}"
    );
    let unauthenticated = naast_tests::search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            outcome: pb::AuditOutcome::Denied as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        unauthenticated
            .iter()
            .filter(|r| r.operation == "FHIR read Patient" && r.user.is_none())
            .count(),
        2,
        "both refused sign-ins recorded"
    );
}

#[tokio::test]
async fn bad_requests_get_an_operation_outcome_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let ouder = server.token("ouder").to_owned();
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (_, noor, _) = naast_tests::household_with_client(&mut family, "Familie Mulder").await;
    // URL, extra headers, status, issue code, expression.
    type Case<'a> = (
        String,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            format!("{base}/Patient/{noor}?_format=xml"),
            vec![],
            406,
            "not-supported",
            Some("_format"),
        ),
        (
            format!("{base}/Patient/{noor}"),
            vec![("accept", "application/fhir+xml")],
            406,
            "not-supported",
            None,
        ),
        (
            format!("{base}/Patient/not-a-uuid"),
            vec![],
            400,
            "invalid",
            Some("id"),
        ),
        (
            format!("{base}/Patient/00000000-0000-0000-0000-000000000000"),
            vec![],
            400,
            "invalid",
            Some("id"),
        ),
        (
            format!("{base}/Observation/{noor}"),
            vec![],
            404,
            "not-found",
            None,
        ),
        (format!("{base}/Goal"), vec![], 400, "invalid", None),
        (
            format!("{base}/Goal?patient=Patient/{noor}&colour=red"),
            vec![],
            400,
            "invalid",
            Some("colour"),
        ),
        (
            format!("{base}/Goal?patient=Patient/{noor}&_count=lots"),
            vec![],
            400,
            "invalid",
            Some("_count"),
        ),
        (
            format!("{base}/Goal?patient=Patient/{noor}&_count=100000"),
            vec![],
            400,
            "invalid",
            Some("_count"),
        ),
        (
            format!("{base}/Goal?patient=Practitioner/{noor}"),
            vec![],
            400,
            "invalid",
            Some("patient"),
        ),
        (
            format!("{base}/Goal?patient=Patient/{noor}&_page=x"),
            vec![],
            400,
            "invalid",
            Some("_page"),
        ),
        (
            format!("{base}/Goal?patient=Patient/{noor}&_lastUpdated=yesterday"),
            vec![],
            400,
            "invalid",
            Some("_lastUpdated"),
        ),
        (
            format!("{base}/Goal?identifier=12345"),
            vec![],
            400,
            "invalid",
            Some("identifier"),
        ),
        (
            format!("{base}/Patient?status=active&_id={noor}"),
            vec![],
            400,
            "invalid",
            Some("status"),
        ),
        (
            format!("{base}/Patient/{noor}/_history/abc"),
            vec![],
            404,
            "not-found",
            None,
        ),
        (
            format!("{base}/Patient/{noor}/$purge"),
            vec![],
            404,
            "not-found",
            None,
        ),
        (
            format!("{base}/Goal/{noor}"),
            vec![],
            404,
            "not-found",
            None,
        ),
        (
            format!("{base}/nothing/here/at/all/really"),
            vec![],
            404,
            "not-found",
            None,
        ),
        (
            format!("{base}/CodeSystem/onbekend"),
            vec![],
            404,
            "not-found",
            None,
        ),
    ];
    for (url, headers, status, code, expression) in cases {
        let answer = get_with(&url, Some(&ouder), &headers).await;
        assert_eq!(answer.status, status, "{url}: {}", answer.body);
        let issue = issue(&answer);
        assert_eq!(issue["code"], code, "{url}: {}", answer.body);
        assert!(issue["diagnostics"].as_str().is_some_and(|d| !d.is_empty()));
        if let Some(expression) = expression {
            assert_eq!(issue["expression"][0], expression, "{url}: {}", answer.body);
        }
    }
    // A long hostile value is quoted back short.
    let long = "x".repeat(5_000);
    let answer = get(&format!("{base}/Patient/{long}"), Some(&ouder)).await;
    assert_eq!(answer.status, 400);
    assert!(issue(&answer)["diagnostics"].as_str().unwrap().len() < 200);
    // The code systems are served openly, with Dutch display names.
    let life = get(&format!("{base}/CodeSystem/leefgebied"), None).await;
    assert_eq!(life.status, 200);
    assert_eq!(life.body["resourceType"], "CodeSystem");
    assert!(
        life.body["concept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["display"] == "sociaal netwerk")
    );
}

/// A household with client Noor and a care provider in its network, linked to the demo
/// professional's organisation, which the family allowed to read and propose agreements:
/// (household, Noor, the provider's contact id).
async fn household_with_provider(server: &Server) -> (String, String, String) {
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, noor, _) = naast_tests::household_with_client(&mut family, "Familie de Wit").await;
    let contact = family
        .create_contact(pb::CreateContactRequest {
            household_id: home.clone(),
            details: Some(pb::ContactDetails {
                kind: pb::ContactKind::CareProvider as i32,
                name: "Zorgaanbieder De Linde".into(),
                organisation: "De Linde".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    let mut consent =
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
    consent
        .link_identity(pb::LinkIdentityRequest {
            household_id: home.clone(),
            party: Some(pb::link_identity_request::Party::ContactId(contact.clone())),
            organisation_id: "dev-zorgaanbieder".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    consent
        .grant_access(pb::GrantAccessRequest {
            household_id: home.clone(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::OrganisationId(
                    "dev-zorgaanbieder".into(),
                )),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![
                    pb::AccessScope::ReadTimeline as i32,
                    pb::AccessScope::ProposeAgreements as i32,
                ],
                until: "2099-12-31".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    (home, noor, contact)
}

/// An agreement as a provider's system writes it.
fn agreement(id: &str, noor: &str, contact: &str, title: &str) -> Value {
    serde_json::json!({
        "resourceType": "CarePlan",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{id}")}],
        "status": "active",
        "intent": "proposal",
        "category": [
            {"coding": [{"system": "https://naast.nl/fhir/CodeSystem/zorgplansoort", "code": "agreement"}]},
            {"coding": [{"system": "https://naast.nl/fhir/CodeSystem/financieringsdomein", "code": "wlz"}]}
        ],
        "title": title,
        "subject": {"reference": format!("Patient/{noor}")},
        "period": {"start": "2027-01-01"},
        "activity": [{"detail": {
            "status": "not-started",
            "performer": [{"identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{contact}")}}]
        }}]
    })
}

async fn send(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(url, request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_provider_proposes_over_fhir_the_family_amends_over_grpc_and_accepts_over_fhir() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let (home, noor, contact) = household_with_provider(&server).await;
    let provider = server.token("zorgverlener").to_owned();
    let id = uuid::Uuid::now_v7().to_string();
    let body = agreement(
        &id,
        &noor,
        &contact,
        "logeeropvang twee weekenden per maand",
    );

    // Proposed over FHIR: 201, where it is, and what it is.
    let created = send(
        reqwest::Method::POST,
        &format!("{base}/CarePlan"),
        &provider,
        body.to_string(),
        &[],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["id"], id.as_str());
    assert_eq!(created.body["intent"], "proposal");
    let location = created.headers["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{base}/CarePlan/{id}/_history/")),
        "{location}"
    );
    // A retry: the first outcome, nothing new.
    let retried = send(
        reqwest::Method::POST,
        &format!("{base}/CarePlan"),
        &provider,
        body.to_string(),
        &[],
    )
    .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.headers["location"], location.as_str());
    // A conditional create of what exists: the existing agreement, nothing written.
    let conditional = send(
        reqwest::Method::POST,
        &format!("{base}/CarePlan"),
        &provider,
        body.to_string(),
        &[(
            "if-none-exist",
            &format!("identifier=urn:ietf:rfc:3986|urn:uuid:{id}"),
        )],
    )
    .await;
    assert_eq!(conditional.status, 200, "{}", conditional.body);

    // Read over gRPC: the same agreement, proposed, once.
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let listed = family
        .list_agreements(pb::ListAgreementsRequest {
            household_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agreements;
    assert_eq!(listed.len(), 1, "one agreement, however often it was sent");
    let view = &listed[0];
    assert_eq!(view.phase, pb::AgreementPhase::Proposed as i32);
    let terms = view.agreement.as_ref().unwrap().terms.clone().unwrap();
    assert_eq!(terms.title, "logeeropvang twee weekenden per maand");
    assert_eq!(terms.responsible_contact_id, contact);
    assert_eq!(terms.funding_domain, pb::FundingDomain::Wlz as i32);
    assert_eq!(terms.start_date, "2027-01-01");

    // Amended over gRPC (with a frequency and a PGB, which FHIR does not carry); read over FHIR.
    let amended = family
        .amend_agreement(pb::AmendAgreementRequest {
            household_id: home.clone(),
            agreement_id: id.clone(),
            terms: Some(pb::AgreementTerms {
                title: "logeeropvang drie weekenden per maand".into(),
                frequency: "3 weekenden per maand".into(),
                pgb: true,
                ..terms.clone()
            }),
            reason: "meer nodig".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    let read = get(&format!("{base}/CarePlan/{id}"), Some(&provider)).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["title"], "logeeropvang drie weekenden per maand");
    let version = read.body["meta"]["versionId"].as_str().unwrap().to_owned();
    assert_eq!(version, amended.revision.to_string());

    // Amended over FHIR: a stale If-Match is refused (412) and writes nothing; the current one
    // is taken, and what FHIR does not carry is kept.
    let mut changed = read.body.clone();
    changed["title"] = "logeeropvang vier weekenden per maand".into();
    let stale = send(
        reqwest::Method::PUT,
        &format!("{base}/CarePlan/{id}"),
        &provider,
        changed.to_string(),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(issue(&stale)["code"], "conflict");
    let put = send(
        reqwest::Method::PUT,
        &format!("{base}/CarePlan/{id}"),
        &provider,
        changed.to_string(),
        &[("if-match", &format!("W/\"{version}\""))],
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["title"], "logeeropvang vier weekenden per maand");
    let terms = family
        .list_agreements(pb::ListAgreementsRequest {
            household_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agreements[0]
        .agreement
        .clone()
        .unwrap()
        .terms
        .unwrap();
    assert_eq!(terms.title, "logeeropvang vier weekenden per maand");
    assert_eq!(terms.frequency, "3 weekenden per maand", "kept");
    assert!(terms.pgb, "kept");

    // By the days its period covers (from 2027-01-01, open-ended).
    for (date, found) in [
        ("2027-03-01", 1),
        ("2026-12-31", 0),
        ("ge2026-12-31", 1),
        ("lt2027-01-01", 0),
        ("le2027-01-01", 1),
    ] {
        let by_date = get(
            &format!("{base}/CarePlan?patient=Patient/{noor}&date={date}"),
            Some(&provider),
        )
        .await;
        assert_eq!(
            by_date.body["total"], found,
            "date={date}: {}",
            by_date.body
        );
    }

    // The proposal's task awaits an answer; the family accepts it over FHIR.
    let task = get(&format!("{base}/Task/{id}"), Some(&provider)).await;
    assert_eq!(task.status, 200, "{}", task.body);
    assert_eq!(task.body["status"], "requested");
    let waiting = get(
        &format!("{base}/Task?patient=Patient/{noor}&status=requested"),
        Some(&provider),
    )
    .await;
    assert_eq!(waiting.body["total"], 1, "{}", waiting.body);
    let mut answer = task.body.clone();
    answer["status"] = "accepted".into();
    let accepted = send(
        reqwest::Method::PUT,
        &format!("{base}/Task/{id}"),
        server.token("ouder"),
        answer.to_string(),
        &[],
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body["status"], "accepted");
    let plan = get(&format!("{base}/CarePlan/{id}"), Some(&provider)).await;
    assert_eq!(plan.body["intent"], "plan");
    let listed = family
        .list_agreements(pb::ListAgreementsRequest {
            household_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agreements;
    assert_ne!(listed[0].phase, pb::AgreementPhase::Proposed as i32);

    // Each write is in the family's access log, under its FHIR name.
    let log = AuditServiceClient::new(server.signed("ouder").await)
        .list_access_log(pb::ListAccessLogRequest {
            household_id: home.clone(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    for operation in [
        "FHIR create CarePlan",
        "FHIR update CarePlan",
        "FHIR update Task",
    ] {
        assert!(
            log.iter()
                .any(|r| r.operation == operation && r.outcome == pb::AuditOutcome::Allowed as i32),
            "{operation} in {log:#?}"
        );
    }
    assert!(log.iter().any(
        |r| r.operation == "FHIR update CarePlan" && r.action == pb::AuditAction::Update as i32
    ));
}

#[tokio::test]
async fn bad_writes_are_refused_with_an_operation_outcome_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let (home, noor, contact) = household_with_provider(&server).await;
    let provider = server.token("zorgverlener").to_owned();
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (goal, _) = create_goal(&mut family, &home, &noor, "zelf koken").await;
    // Another household's goal and client, which the provider has no business with.
    let (other_home, other_client, _) =
        naast_tests::household_with_client(&mut family, "Familie Smit").await;
    let (other_goal, _) = create_goal(&mut family, &other_home, &other_client, "rust").await;
    let good = agreement(
        &uuid::Uuid::now_v7().to_string(),
        &noor,
        &contact,
        "dagbesteding",
    );
    let created = send(
        reqwest::Method::POST,
        &format!("{base}/CarePlan"),
        &provider,
        good.to_string(),
        &[],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let existing = created.body["id"].as_str().unwrap().to_owned();
    let revision = |home: String| {
        let base = base.clone();
        let token = server.token("ouder").to_owned();
        async move {
            get(&format!("{base}/Group/{home}"), Some(&token))
                .await
                .body["meta"]["versionId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let before = (
        revision(home.clone()).await,
        revision(other_home.clone()).await,
    );

    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = agreement(&uuid::Uuid::now_v7().to_string(), &noor, &contact, "x");
        change(&mut body);
        body.to_string()
    };
    let huge = with(&|b| b["description"] = "x".repeat(400_000).into());
    // Method, path, content type, body, extra headers, status, issue code, expression.
    type Case = (
        reqwest::Method,
        String,
        &'static str,
        String,
        Vec<(&'static str, String)>,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;
    let fhir = "application/fhir+json";
    let cases: Vec<Case> = vec![
        (post.clone(), "/CarePlan".into(), "text/plain", good.to_string(), vec![], 415, "not-supported", None),
        (post.clone(), "/CarePlan".into(), "application/xml", "<CarePlan/>".into(), vec![], 415, "not-supported", None),
        (post.clone(), "/CarePlan".into(), fhir, "{\"resourceType\": \"CarePlan\",".into(), vec![], 400, "structure", None),
        (post.clone(), "/CarePlan".into(), fhir, "[]".into(), vec![], 400, "structure", Some("resourceType")),
        (post.clone(), "/CarePlan".into(), fhir, "{}".into(), vec![], 400, "structure", Some("resourceType")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["resourceType"] = "Goal".into()), vec![], 400, "structure", None),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["resourceType"] = "Spaceship".into()), vec![], 400, "structure", None),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["colour"] = "red".into()), vec![], 400, "structure", Some("CarePlan.colour")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["period"]["begin"] = "2027-01-01".into()), vec![], 400, "structure", Some("CarePlan.period.begin")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["title"] = Value::Null), vec![], 400, "structure", Some("CarePlan.title")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["status"] = "sleeping".into()), vec![], 400, "structure", None),
        (post.clone(), "/CarePlan".into(), fhir, huge, vec![], 413, "too-long", None),
        (post.clone(), "/Goal".into(), fhir, "{\"resourceType\":\"Goal\"}".into(), vec![], 405, "not-supported", None),
        (reqwest::Method::DELETE, format!("/CarePlan/{existing}"), fhir, String::new(), vec![], 405, "not-supported", None),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b.as_object_mut().unwrap().remove("title").map(|_| ()).unwrap_or(())), vec![], 422, "invalid", Some("CarePlan.title")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["category"] = serde_json::json!([{"text": "afspraak"}])), vec![], 422, "invalid", Some("CarePlan.category")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["category"][1]["coding"][0]["code"] = "lottery".into()), vec![], 422, "invalid", Some("CarePlan.category")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["period"]["start"] = "2027-01".into()), vec![], 422, "invalid", Some("CarePlan.period.start")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["period"]["end"] = "2026-01-01".into()), vec![], 422, "invalid", Some("CarePlan.period.end")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["subject"]["reference"] = "Practitioner/1".into()), vec![], 422, "invalid", Some("CarePlan.subject")),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["goal"] = serde_json::json!([{"reference": "Observation/1"}])), vec![], 422, "invalid", Some("CarePlan.goal[0]")),
        // Another household's goal: the domain refuses what this household does not hold.
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["goal"] = serde_json::json!([{"reference": format!("Goal/{other_goal}")}])), vec![], 422, "invalid", Some("CarePlan.goal[0]")),
        // Into another household, where the provider has no access: refused as any read.
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["subject"]["reference"] = format!("Patient/{other_client}").into()), vec![], 403, "forbidden", None),
        (post.clone(), "/CarePlan".into(), fhir, with(&|b| b["activity"][0]["detail"]["performer"][0]["identifier"]["value"] = "urn:uuid:nope".into()), vec![], 422, "invalid", Some("CarePlan.activity[0].detail.performer[0]")),
        (post.clone(), "/CarePlan".into(), fhir, good.to_string(), vec![("if-none-exist", "status=active".into())], 400, "invalid", Some("If-None-Exist")),
        (put.clone(), format!("/CarePlan/{existing}"), fhir, good.to_string(), vec![], 400, "invalid", Some("CarePlan.id")),
        (put.clone(), format!("/CarePlan/{existing}"), fhir, with(&|b| b["id"] = existing.clone().into()), vec![("if-match", "yesterday".into())], 400, "invalid", Some("If-Match")),
        (put.clone(), format!("/CarePlan/{goal}"), fhir, with(&|b| b["id"] = goal.clone().into()), vec![], 422, "invalid", Some("CarePlan.identifier")),
        (post.clone(), "/Task".into(), fhir, serde_json::json!({"resourceType": "Task", "status": "rejected", "intent": "order", "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "approve"}]}, "focus": {"reference": format!("CarePlan/{existing}")}}).to_string(), vec![], 422, "invalid", Some("Task.statusReason.text")),
        (post.clone(), "/Task".into(), fhir, serde_json::json!({"resourceType": "Task", "status": "in-progress", "intent": "order", "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "approve"}]}, "focus": {"reference": format!("CarePlan/{existing}")}}).to_string(), vec![], 422, "invalid", Some("Task.status")),
        (post.clone(), "/Task".into(), fhir, serde_json::json!({"resourceType": "Task", "status": "accepted", "intent": "order", "focus": {"reference": format!("CarePlan/{existing}")}}).to_string(), vec![], 422, "invalid", Some("Task.code")),
        (post.clone(), "/Task".into(), fhir, serde_json::json!({"resourceType": "Task", "status": "accepted", "intent": "order", "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "approve"}]}, "focus": {"reference": "Goal/x"}}).to_string(), vec![], 422, "invalid", Some("Task.focus")),
    ];
    // The same agreement sent again by someone else: the identifier is taken (409).
    let taken = send(
        reqwest::Method::POST,
        &format!("{base}/CarePlan"),
        server.token("ouder"),
        good.to_string(),
        &[],
    )
    .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert_eq!(issue(&taken)["code"], "duplicate");
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (method, path, content_type, body, headers, status, code, expression) in cases {
        let mut request = reqwest::Client::new()
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&provider)
            .header("content-type", content_type)
            .body(body.clone());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let answer = answer(&path, request.send().await.unwrap()).await;
        let shown: String = body.chars().take(120).collect();
        assert_eq!(
            answer.status, status,
            "{method} {path} {shown}: {}",
            answer.body
        );
        let issue = issue(&answer);
        assert_eq!(
            issue["code"], code,
            "{method} {path} {shown}: {}",
            answer.body
        );
        if let Some(expression) = expression {
            assert_eq!(
                issue["expression"][0], expression,
                "{method} {path} {shown}: {}",
                answer.body
            );
        }
    }
    let after = (
        revision(home.clone()).await,
        revision(other_home.clone()).await,
    );
    assert_eq!(before, after, "nothing was written by a refused request");
}

#[tokio::test]
async fn a_python_fhir_client_reads_searches_pages_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let (home, noor, contact) = household_with_provider(&server).await;
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    for i in 0..5 {
        create_goal(&mut family, &home, &noor, &format!("doel {i}")).await;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = std::process::Command::new("python3")
        .arg(format!("{root}/tests/python/fhir_client.py"))
        .arg(server.fhir_base())
        .arg(server.token("zorgverlener"))
        .arg(server.token("ouder"))
        .arg(&noor)
        .arg(&contact)
        .arg("5")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !said.contains("No module named"),
        "fhirpy is missing: pip install -r tests/python/requirements.txt (ops/test.sh does)\n{said}"
    );
    assert!(output.status.success(), "{said}");
    assert!(said.contains("all checks passed"), "{said}");
}

/// The family grants the supporter (the demo persona `ondersteuner`, as a person) `scopes`
/// limited to `life_domains`: the grant's id.
async fn grant_supporter(
    server: &Server,
    home: &str,
    scopes: &[pb::AccessScope],
    life_domains: &[pb::LifeDomain],
) -> String {
    pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await)
        .grant_access(pb::GrantAccessRequest {
            household_id: home.into(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::Person(pb::Identity {
                    issuer: "https://dev.naast.invalid".into(),
                    subject: "dev-ondersteuner".into(),
                })),
            }),
            terms: Some(pb::GrantTerms {
                scopes: scopes.iter().map(|s| *s as i32).collect(),
                life_domains: life_domains.iter().map(|d| *d as i32).collect(),
                until: "2099-12-31".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_id
}

#[tokio::test]
async fn what_a_grant_shows_over_fhir_is_what_it_shows_over_grpc_and_each_refusal_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let supporter = server.token("ondersteuner").to_owned();
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, noor, _) = naast_tests::household_with_client(&mut family, "Familie Jansen").await;
    let housing = family
        .create_goal(pb::CreateGoalRequest {
            household_id: home.clone(),
            owner_member_id: noor.clone(),
            title: "zelfstandig wonen".into(),
            life_domains: vec![pb::LifeDomain::Housing as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .goal_id;
    let (friends, _) = create_goal(&mut family, &home, &noor, "vrienden maken").await;
    let grant = grant_supporter(
        &server,
        &home,
        &[pb::AccessScope::ReadTimeline],
        &[pb::LifeDomain::Housing],
    )
    .await;

    // The grant shows goals about housing, and nothing else: over gRPC and over FHIR alike.
    let grpc: Vec<String> = HouseholdServiceClient::new(server.signed("ondersteuner").await)
        .list_goals(pb::ListGoalsRequest {
            household_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .goals
        .into_iter()
        .map(|g| g.goal_id)
        .collect();
    assert_eq!(grpc, vec![housing.clone()]);
    let searched = get(
        &format!("{base}/Goal?patient=Patient/{noor}"),
        Some(&supporter),
    )
    .await;
    assert_eq!(searched.status, 200, "{}", searched.body);
    let fhir: Vec<&str> = entries(&searched.body)
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(fhir, vec![housing.as_str()]);
    assert_eq!(
        get(&format!("{base}/Goal/{housing}"), Some(&supporter))
            .await
            .status,
        200
    );
    // A goal outside it, read by id: refused, and recorded as refused.
    let outside = get(&format!("{base}/Goal/{friends}"), Some(&supporter)).await;
    assert_eq!(outside.status, 403, "{}", outside.body);
    // A limited grant shows neither the family's names nor its consents.
    for path in [
        format!("Patient/{noor}"),
        format!("Group/{home}/$everything"),
        format!("Consent/{grant}"),
        format!("Consent?patient=Patient/{noor}"),
    ] {
        let refused = get(&format!("{base}/{path}"), Some(&supporter)).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
    }
    // The family sees its consent as a Consent.
    let consent = get(
        &format!("{base}/Consent/{grant}"),
        Some(server.token("ouder")),
    )
    .await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert_eq!(consent.body["status"], "active");

    // Revoked: every read ends, over FHIR as over gRPC.
    pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await)
        .revoke_access(pb::RevokeAccessRequest {
            household_id: home.clone(),
            grant_id: grant.clone(),
            reason: "niet meer nodig".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = get(&format!("{base}/Goal/{housing}"), Some(&supporter)).await;
    assert_eq!(after.status, 403, "{}", after.body);
    let grpc = HouseholdServiceClient::new(server.signed("ondersteuner").await)
        .list_goals(pb::ListGoalsRequest {
            household_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), tonic::Code::PermissionDenied);
    let revoked = get(
        &format!("{base}/Consent/{grant}"),
        Some(server.token("ouder")),
    )
    .await;
    assert_eq!(revoked.body["status"], "inactive", "{}", revoked.body);

    // The family's access log: the supporter's FHIR reads, allowed on the grant and refused.
    let log = AuditServiceClient::new(server.signed("ouder").await)
        .list_access_log(pb::ListAccessLogRequest {
            household_id: home.clone(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let theirs: Vec<&pb::AuditRecord> = log
        .iter()
        .filter(|r| {
            r.operation.starts_with("FHIR ")
                && r.user
                    .as_ref()
                    .is_some_and(|u| u.subject == "dev-ondersteuner")
        })
        .collect();
    let allowed = theirs
        .iter()
        .filter(|r| r.outcome == pb::AuditOutcome::Allowed as i32)
        .count();
    let refused = theirs
        .iter()
        .filter(|r| r.outcome == pb::AuditOutcome::Denied as i32)
        .count();
    assert_eq!((allowed, refused), (2, 6), "{theirs:#?}");
    assert!(theirs.iter().any(|r| r.operation == "FHIR read Goal"
        && r.outcome == pb::AuditOutcome::Allowed as i32
        && r.basis.contains(&format!("grant:{grant}"))));
    assert!(theirs.iter().any(|r| r.operation == "FHIR read Goal"
        && r.outcome == pb::AuditOutcome::Denied as i32
        && r.object_ids.contains(&format!("Goal/{friends}"))));

    // The same log as FHIR AuditEvents, for the family only, paged.
    let events = get(
        &format!("{base}/AuditEvent?entity=Group/{home}&_count=5"),
        Some(server.token("ouder")),
    )
    .await;
    assert_eq!(events.status, 200, "{}", events.body);
    assert_eq!(entries(&events.body).len(), 5);
    let mut all = Vec::new();
    let mut next = Some(format!("{base}/AuditEvent?patient=Patient/{noor}&_count=7"));
    while let Some(url) = next {
        let page = get(&url, Some(server.token("ouder"))).await;
        assert_eq!(page.status, 200, "{}", page.body);
        all.extend(entries(&page.body).into_iter().cloned());
        next = next_link(&page.body);
    }
    assert!(
        all.len() >= log.len(),
        "{} events, {} records",
        all.len(),
        log.len()
    );
    let refused_event = all
        .iter()
        .find(|e| {
            e["outcome"] == "4"
                && e["entity"]
                    .as_array()
                    .is_some_and(|es| es.iter().any(|x| x.to_string().contains(&friends)))
        })
        .unwrap_or_else(|| panic!("the refused read of {friends} as an AuditEvent: {all:#?}"));
    assert_eq!(refused_event["resourceType"], "AuditEvent");
    let theirs = get(
        &format!("{base}/AuditEvent?entity=Group/{home}"),
        Some(&supporter),
    )
    .await;
    assert_eq!(theirs.status, 403, "only the family reads who looked");
}

#[tokio::test]
async fn notes_are_communications_and_every_version_has_its_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let ouder = server.token("ouder").to_owned();
    let (home, noor, contact) = household_with_provider(&server).await;
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let note = family
        .create_note(pb::CreateNoteRequest {
            household_id: home.clone(),
            about_member_id: noor.clone(),
            text: "Noor sliep goed na het logeren".into(),
            life_domains: vec![pb::LifeDomain::SocialNetwork as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .note_id;
    let read = get(&format!("{base}/Communication/{note}"), Some(&ouder)).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.body["payload"][0]["contentString"],
        "Noor sliep goed na het logeren"
    );
    assert_eq!(
        read.body["subject"]["reference"],
        format!("Patient/{noor}").as_str()
    );
    assert!(read.body["sent"].is_string());
    let found = get(
        &format!("{base}/Communication?patient=Patient/{noor}"),
        Some(&ouder),
    )
    .await;
    assert_eq!(found.body["total"], 1, "{}", found.body);
    let everything = get(&format!("{base}/Group/{home}/$everything"), Some(&ouder)).await;
    assert!(
        entries(&everything.body)
            .iter()
            .any(|r| r["resourceType"] == "Communication" && r["id"] == note.as_str())
    );

    // An agreement proposed by the provider over FHIR, amended by the family over gRPC: two
    // versions, each with who recorded it.
    let id = uuid::Uuid::now_v7().to_string();
    let created = send(
        reqwest::Method::POST,
        &format!("{base}/CarePlan"),
        server.token("zorgverlener"),
        agreement(&id, &noor, &contact, "dagbesteding").to_string(),
        &[],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mut answer = get(&format!("{base}/Task/{id}"), Some(&ouder)).await.body;
    answer["status"] = "accepted".into();
    let accepted = send(
        reqwest::Method::PUT,
        &format!("{base}/Task/{id}"),
        &ouder,
        answer.to_string(),
        &[],
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let provenance = get(
        &format!("{base}/Provenance?target=CarePlan/{id}"),
        Some(&ouder),
    )
    .await;
    assert_eq!(provenance.status, 200, "{}", provenance.body);
    let versions = entries(&provenance.body);
    assert_eq!(versions.len(), 2, "{}", provenance.body);
    assert_eq!(versions[0]["activity"]["coding"][0]["code"], "CREATE");
    assert_eq!(
        versions[0]["agent"][0]["who"]["identifier"]["value"],
        "dev-zorgverlener"
    );
    assert_eq!(versions[1]["activity"]["coding"][0]["code"], "UPDATE");
    assert_eq!(
        versions[1]["agent"][0]["who"]["identifier"]["value"],
        "dev-ouder"
    );
    let target = versions[1]["target"][0]["reference"].as_str().unwrap();
    assert!(
        target.starts_with(&format!("CarePlan/{id}/_history/")),
        "{target}"
    );
    // The version it names is a real one.
    let at = get(&format!("{base}/{target}"), Some(&ouder)).await;
    assert_eq!(at.status, 200, "{}", at.body);
    assert_eq!(at.body["intent"], "plan");
    // Provenance is read as the resource is: not by someone who may not see it.
    let refused = get(
        &format!("{base}/Provenance?target=CarePlan/{id}"),
        Some(server.token("ondersteuner")),
    )
    .await;
    assert_eq!(refused.status, 403);
}

/// A household with a long history (its notes are opened in two halves at once, and its Bundle
/// serialised in two): every note once, in the order written, in a Bundle both halves of which
/// join into one.
#[tokio::test]
async fn a_long_history_comes_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = fhir_server(dir.path());
    let base = server.fhir_base();
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, noor, _) = naast_tests::household_with_client(&mut family, "Familie Lang").await;
    let mut written = Vec::new();
    for i in 0..2_100 {
        let note = family
            .create_note(pb::CreateNoteRequest {
                household_id: home.clone(),
                about_member_id: noor.clone(),
                text: format!("notitie {i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .note_id;
        written.push(note);
    }
    let everything = get(
        &format!("{base}/Group/{home}/$everything"),
        Some(server.token("ouder")),
    )
    .await;
    assert_eq!(everything.status, 200);
    let notes: Vec<&str> = entries(&everything.body)
        .iter()
        .filter(|r| r["resourceType"] == "Communication")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(notes, written, "every note once, in the order written");
    assert_eq!(everything.body["total"], entries(&everything.body).len());
    let texts: Vec<&str> = entries(&everything.body)
        .iter()
        .filter(|r| r["resourceType"] == "Communication")
        .map(|r| r["payload"][0]["contentString"].as_str().unwrap())
        .collect();
    assert_eq!(texts[2_099], "notitie 2099");
}

//! FHIR Subscriptions after the R5 Backport IG, end to end: a PGO platform subscribes on the real
//! `naast serve`'s facade to a household's changes; rest-hook notifications go to a receiver that
//! validates every Bundle with Medplum's R4 validator (`tests/node/webhook_receiver.mjs
//! --fhir-notifications`) and fails at random (500, 429, dropped connections, answers lost after
//! the notification was taken); naast is SIGKILLed in the middle. Afterwards the notifications'
//! event numbers run from 1 without a gap, `$events` gives each again and `$status` agrees; a
//! revoked grant turns the subscription off; bad Subscriptions are refused naming the element.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_tests::{
    Server, WebhookReceiver, create_goal, fhir_call, grant_platform, household_with_client,
    notification_numbers, search_audit, status_parameter,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const DEV_ISSUER: &str = "https://dev.naast.invalid";
const TOPIC: &str = "https://naast.nl/fhir/SubscriptionTopic/household-changed";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
/// A deadline against hanging, not a speed check.
const ARRIVAL: Duration = Duration::from_secs(120);

fn serve(data: &Path) -> Server {
    Server::start_with(data, &["--dev", "--fhir-listen", "127.0.0.1:0"])
}

fn subscription(filter: &str, endpoint: &str) -> Value {
    json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "het gezinsplan in onze PGO",
        "criteria": TOPIC,
        "_criteria": {"extension": [{
            "url": format!("{BACKPORT}/backport-filter-criteria"),
            "valueString": filter,
        }]},
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{
                "url": format!("{BACKPORT}/backport-payload-content"),
                "valueCode": "id-only",
            }]},
            "header": ["Authorization: Bearer hook-secret"],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_numbered_without_gaps_through_faults_and_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(&[
        "--fhir-notifications",
        "--require-header",
        "Authorization: Bearer hook-secret",
        "--faults",
        "--seed",
        "9",
        "--fault-rate",
        "0.3",
        "--hang-ms",
        "2500",
        "--fault-kinds",
        "error_500,throttle_429,drop,after_500,after_drop",
    ]);
    let data = dir.path().join("data");
    let mut server = serve(&data);
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let mut consent =
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
    let (household, client, _) = household_with_client(&mut api, "Bakker").await;
    let (other, other_client, _) = household_with_client(&mut api, "De Vries").await;
    let grant = grant_platform(&mut consent, &household, DEV_ISSUER, "dev-pgo").await;

    // The platform (acting for the parent) subscribes to the household.
    let base = server.fhir_base();
    let pgo = server.token("pgo").to_owned();
    let (status, created) = fhir_call(
        reqwest::Method::POST,
        &format!("{base}/Subscription"),
        &pgo,
        Some(&subscription(
            &format!("Group?_id={household}"),
            &receiver.url,
        )),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "requested");
    let id = created["id"].as_str().unwrap().to_owned();
    let read = |server: &Server| {
        let url = format!("{}/Subscription/{id}", server.fhir_base());
        let token = server.token("pgo").to_owned();
        async move { fhir_call(reqwest::Method::GET, &url, &token, None).await }
    };
    // Active once the handshake got through the faults.
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let (_, now) = read(&server).await;
        if now["status"] == "active" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never active: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..6 {
        create_goal(&mut api, &household, &client, &format!("doel {i}")).await;
        create_goal(&mut api, &other, &other_client, "niet gevolgd").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let server = serve(&data);
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    for i in 6..10 {
        create_goal(&mut api, &household, &client, &format!("doel {i}")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.faults_off().await;

    // Every event numbered, from 1, without a gap; each notification valid and authorised.
    let status_url = format!("{}/Subscription/{id}/$status", server.fhir_base());
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    let (total, received) = loop {
        let (code, status) =
            fhir_call(reqwest::Method::GET, &status_url, server.token("pgo"), None).await;
        assert_eq!(code, 200, "{status}");
        let total: u64 = status_parameter(
            &status["entry"][0]["resource"],
            "events-since-subscription-start",
        )
        .and_then(|p| p["valueString"].as_str())
        .and_then(|n| n.parse().ok())
        .unwrap();
        let notices = receiver.notices().await;
        let received: BTreeSet<u64> = notices["notices"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|n| notification_numbers(&n["payload"]).1)
            .collect();
        if total >= 10 && received.len() as u64 == total {
            break (total, notices);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{total} events, received {received:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        received["rejected"], 0,
        "every notification is a valid R4 Bundle: {received}"
    );
    assert_eq!(
        received["unauthorized"], 0,
        "every notification carries the header"
    );
    let notices = received["notices"].as_array().unwrap();
    // The handshake first (again, if its answer was lost), then the events.
    let handshakes = notices
        .iter()
        .take_while(|n| notification_numbers(&n["payload"]).0 == "handshake")
        .count();
    assert!(handshakes >= 1);
    let mut seen: Vec<u64> = Vec::new();
    for notice in notices.iter().skip(handshakes) {
        let (kind, these) = notification_numbers(&notice["payload"]);
        assert_eq!(kind, "event-notification");
        // Each notification's events follow on what came before (a repeat after a lost answer
        // or the kill starts again where the last confirmed one ended).
        let first = these[0];
        assert!(
            first <= seen.last().copied().unwrap_or(0) + 1,
            "a gap before {first}: {seen:?}"
        );
        assert!(these.windows(2).all(|w| w[1] == w[0] + 1));
        seen.extend(these);
        // id-only: the focus is the household's Group, nothing more.
        let focus = &notice["payload"]["entry"][1];
        assert_eq!(focus["fullUrl"], format!("Group/{household}"));
        assert!(focus.get("resource").is_none());
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());

    // $events gives the same numbers again.
    let (code, events) = fhir_call(
        reqwest::Method::GET,
        &format!(
            "{}/Subscription/{id}/$events?eventsSinceNumber=1&eventsUntilNumber={total}",
            server.fhir_base()
        ),
        server.token("pgo"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{events}");
    let (kind, queried) = notification_numbers(&events);
    assert_eq!(kind, "query-event");
    assert_eq!(queried, (1..=total).collect::<Vec<_>>());
    // Each event is a change of its own: counted once, even where the kill made naast read
    // part of the log again (a change counted twice would repeat its timestamp).
    let stamps: Vec<String> = events["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .filter_map(|p| {
            p["part"]
                .as_array()?
                .iter()
                .find(|part| part["name"] == "timestamp")
                .and_then(|part| part["valueInstant"].as_str())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(stamps.len() as u64, total);
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");

    // Someone else cannot see it; the family's revocation turns it off.
    let (code, _) = fhir_call(
        reqwest::Method::GET,
        &format!("{}/Subscription/{id}", server.fhir_base()),
        server.token("zorgverlener"),
        None,
    )
    .await;
    assert_eq!(code, 404);
    let mut consent =
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
    consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: household.clone(),
            grant_id: grant,
            ..Default::default()
        })
        .await
        .unwrap();
    create_goal(&mut api, &household, &client, "na de intrekking").await;
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        // Its owner lost sight of the household, so the read itself is refused now; the
        // subscription's state is seen through its notifications stopping and $status refused.
        let (code, body) = read(&server).await;
        if code == 403 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{code} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = receiver.notices().await;
    let highest = after["notices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| notification_numbers(&n["payload"]).1)
        .max()
        .unwrap();
    assert_eq!(highest, total, "nothing is sent after the revocation");

    // Each notification left naast with an audit record.
    let records = search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: household.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(records.iter().any(|r| r.operation == "push notify"
        && r.object_ids.first() == Some(&format!("Subscription/{id}"))
        && r.user.as_ref().is_some_and(|u| u.subject == "dev-pgo")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_naming_the_element() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, _, _) = household_with_client(&mut api, "Bakker").await;
    let base = server.fhir_base();
    let good = subscription(
        &format!("Group?_id={household}"),
        "http://127.0.0.1:9/hooks",
    );
    let with = |change: &dyn Fn(&mut Value)| {
        let mut s = good.clone();
        change(&mut s);
        s
    };
    let cases = [
        (
            with(&|s| s["criteria"] = json!("Goal?status=active")),
            "Subscription.criteria",
        ),
        (
            with(&|s| s["channel"]["type"] = json!("email")),
            "Subscription.channel.type",
        ),
        (
            with(&|s| s["channel"]["endpoint"] = json!("ftp://x")),
            "Subscription.channel.endpoint",
        ),
        (
            with(&|s| {
                s["channel"]["_payload"]["extension"][0]["valueCode"] = json!("full-resource")
            }),
            "Subscription.channel.payload.extension",
        ),
        (
            with(&|s| s["_criteria"] = json!({})),
            "Subscription.criteria.extension",
        ),
        (
            with(&|s| s["topping"] = json!("kaas")),
            "Subscription.topping",
        ),
    ];
    for (body, expression) in cases {
        let (code, outcome) = fhir_call(
            reqwest::Method::POST,
            &format!("{base}/Subscription"),
            server.token("ouder"),
            Some(&body),
        )
        .await;
        assert_eq!(code, 422, "{expression}: {outcome}");
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{outcome}"
        );
    }
    // A household the caller may not see is refused like one that does not exist.
    let (code, outcome) = fhir_call(
        reqwest::Method::POST,
        &format!("{base}/Subscription"),
        server.token("zorgverlener"),
        Some(&good),
    )
    .await;
    assert_eq!(code, 403, "{outcome}");
    // The owner's own works.
    let (code, created) = fhir_call(
        reqwest::Method::POST,
        &format!("{base}/Subscription"),
        server.token("ouder"),
        Some(&good),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (code, _) = fhir_call(
        reqwest::Method::DELETE,
        &format!("{base}/Subscription/{id}"),
        server.token("ouder"),
        None,
    )
    .await;
    assert_eq!(code, 204);
    let (_, off) = fhir_call(
        reqwest::Method::GET,
        &format!("{base}/Subscription/{id}"),
        server.token("ouder"),
        None,
    )
    .await;
    assert_eq!(off["status"], "off", "{off}");
}

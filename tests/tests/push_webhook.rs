//! Webhook push, end to end: the real `naast serve` sends signed notices to a receiver that
//! checks every signature with the Standard Webhooks library (`tests/node/webhook_receiver.mjs`)
//! and fails at random (500, 429, hangs, dropped connections, answers lost after the notice was
//! taken); naast is SIGKILLed in the middle and restarted. After deduplicating on `webhook-id`
//! the receiver has every change exactly once, in order, for the households that granted the
//! platform and only those, and a withdrawal for those that revoked or were erased.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_tests::{
    Server, WebhookReceiver, create_goal, grant_platform, household_with_client, platform_changes,
    search_audit,
};
use serde_json::Value;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// The development issuer.
const DEV_ISSUER: &str = "https://dev.naast.invalid";
/// The demo platform (the `pgo` persona), so its change feed can be compared.
const PLATFORM: &str = "dev-pgo";
/// A deadline against hanging, not a speed check.
const ARRIVAL: Duration = Duration::from_secs(120);

type Households = pb::household_service_client::HouseholdServiceClient<naast_proto::client::Signed>;
type Consent = pb::consent_service_client::ConsentServiceClient<naast_proto::client::Signed>;

fn secret_file(dir: &Path) -> std::path::PathBuf {
    use base64::Engine as _;
    let random = sha2::Sha256::digest(uuid::Uuid::now_v7().as_bytes());
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random)
    );
    let file = dir.join("webhook.secret");
    std::fs::write(&file, secret).unwrap();
    file
}

fn serve(data: &Path, dir: &Path, url: &str, secret: &Path) -> Server {
    let config = dir.join("push.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[push]]
name = "hooks"
kind = "webhook"
url = "{url}"
platform = {{ issuer = "{DEV_ISSUER}", client_id = "{PLATFORM}" }}
secret_file = "{}"
timeout_seconds = 1
max_backoff_seconds = 1
"#,
            secret.display()
        ),
    )
    .unwrap();
    Server::start_with(data, &["--dev", "--push-config", config.to_str().unwrap()])
}

async fn clients(server: &Server) -> (Households, Consent) {
    (
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await),
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await),
    )
}

async fn goals(api: &mut Households, household: &str, client: &str, n: usize) {
    for i in 0..n {
        create_goal(api, household, client, &format!("doel {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_arrives_signed_once_after_deduplication_through_faults_and_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let receiver = WebhookReceiver::start(&[
        "--secret-file",
        secret.to_str().unwrap(),
        "--faults",
        "--seed",
        "4",
        "--fault-rate",
        "0.3",
        "--hang-ms",
        "2500",
        "--fault-kinds",
        "error_500,throttle_429,hang,drop,after_500,after_drop",
    ]);
    let data = dir.path().join("data");
    let mut server = serve(&data, dir.path(), &receiver.url, &secret);
    let (mut api, mut consent) = clients(&server).await;
    let (granted, granted_client, _) = household_with_client(&mut api, "Bakker").await;
    let (hidden, hidden_client, _) = household_with_client(&mut api, "De Vries").await;
    let (revoked, revoked_client, _) = household_with_client(&mut api, "Jansen").await;
    let (erased, _, _) = household_with_client(&mut api, "Visser").await;
    grant_platform(&mut consent, &granted, DEV_ISSUER, PLATFORM).await;
    let revoked_grant = grant_platform(&mut consent, &revoked, DEV_ISSUER, PLATFORM).await;
    grant_platform(&mut consent, &erased, DEV_ISSUER, PLATFORM).await;
    goals(&mut api, &granted, &granted_client, 4).await;
    goals(&mut api, &hidden, &hidden_client, 2).await;
    goals(&mut api, &revoked, &revoked_client, 2).await;

    // Killed while a notice is going out that the receiver already has: every answer is lost
    // for a moment, so naast keeps sending the same notice.
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    while receiver.notices().await["requests"].as_u64().unwrap_or(0) < 4 {
        assert!(tokio::time::Instant::now() < deadline, "no notice was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.faults_on(1.0, "after_drop").await;
    goals(&mut api, &granted, &granted_client, 1).await;
    let in_flight = loop {
        let notices = receiver.notices().await["notices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ids: Vec<&str> = notices.iter().filter_map(|n| n["id"].as_str()).collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        if ids.len() > unique.len() {
            break notices.last().unwrap()["payload"]["data"]["cursor"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notice was sent again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.kill();
    receiver
        .faults_on(0.3, "error_500,throttle_429,hang,drop,after_500,after_drop")
        .await;

    let server = serve(&data, dir.path(), &receiver.url, &secret);
    let (mut api, mut consent) = clients(&server).await;
    goals(&mut api, &granted, &granted_client, 2).await;
    consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: revoked.clone(),
            grant_id: revoked_grant,
            ..Default::default()
        })
        .await
        .unwrap();
    goals(&mut api, &revoked, &revoked_client, 1).await;
    consent
        .erase_household(pb::EraseHouseholdRequest {
            household_id: erased.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Faults go on until each kind has happened, with more changes coming in meanwhile.
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let faults = receiver.faults().await;
        let kinds = [
            "error_500",
            "throttle_429",
            "hang",
            "drop",
            "after_500",
            "after_drop",
        ];
        if kinds
            .iter()
            .all(|k| faults["counts"][k].as_u64().unwrap_or(0) > 0)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "faults never all happened: {faults}"
        );
        goals(&mut api, &granted, &granted_client, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    receiver.faults_off().await;

    // Every change the platform's feed shows must arrive as a notice (the feed joins a
    // command's events; a notice is sent per event, so each change's cursor is a notice's).
    let expected = platform_changes(&server, None).await;
    let wanted: BTreeSet<u64> = expected.iter().map(|c| c.cursor).collect();
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    let (notices, received) = loop {
        let received = receiver.notices().await;
        let notices = received["notices"].as_array().cloned().unwrap_or_default();
        let cursors: BTreeSet<u64> = notices
            .iter()
            .filter_map(|n| n["payload"]["data"]["cursor"].as_u64())
            .collect();
        if wanted.is_subset(&cursors) {
            break (notices, received);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notices missing: {:?}",
            wanted.difference(&cursors).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(received["rejected"], 0, "every signature checks out");

    // Deduplicated on webhook-id: one payload per id, one id per cursor, in the log's order.
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    let mut first_seen = Vec::new();
    for notice in &notices {
        let id = notice["id"].as_str().unwrap().to_owned();
        match by_id.get(&id) {
            Some(payload) => {
                assert_eq!(payload, &notice["payload"], "{id} sent twice, differently")
            }
            None => {
                by_id.insert(id.clone(), notice["payload"].clone());
                first_seen.push(id);
            }
        }
    }
    let cursors: Vec<u64> = first_seen
        .iter()
        .map(|id| by_id[id]["data"]["cursor"].as_u64().unwrap())
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "notices arrive in the order of the log, each once: {cursors:?}"
    );
    assert!(
        notices.len() > by_id.len(),
        "some notices were delivered twice (lost answers, the kill) and deduplicated"
    );
    assert!(
        cursors.contains(&in_flight.as_u64().unwrap()),
        "the notice cut off by the kill arrived, under its one id"
    );

    // Only the households that granted the platform; a withdrawal ends the revoked and the erased.
    let households: BTreeSet<&str> = by_id
        .values()
        .map(|p| p["data"]["household_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        households,
        [granted.as_str(), revoked.as_str(), erased.as_str()].into(),
        "{by_id:?}"
    );
    assert!(!households.contains(hidden.as_str()));
    for gone in [&revoked, &erased] {
        let of_it: Vec<&Value> = first_seen
            .iter()
            .map(|id| &by_id[id])
            .filter(|p| p["data"]["household_id"] == gone.as_str())
            .collect();
        let last = of_it.last().unwrap();
        assert_eq!(last["type"], "household.withdrawn", "{of_it:?}");
        assert_eq!(last["data"]["kinds"], serde_json::json!(["withdrawn"]));
        assert_eq!(
            of_it
                .iter()
                .filter(|p| p["type"] == "household.withdrawn")
                .count(),
            1
        );
    }
    // Each notice sent is in the audit log, as data leaving naast for the platform.
    let records = search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: granted.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(records.iter().any(|r| r.operation == "push notify"
        && r.source_system == "hooks"
        && r.basis.iter().any(|b| b.starts_with("grant:"))));
}

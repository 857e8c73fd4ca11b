//! A flood of bad tokens from one network address is limited: past a burst its failed sign-ins
//! are answered at once (gRPC `RESOURCE_EXHAUSTED`, FHIR `429`) and not recorded one by one, the
//! limiting is recorded once; another address is served as before, and a valid token from the
//! flooding address too (a care organisation's staff may share one address).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use tonic::Code;

/// A FHIR read of the metadata-free kind from source address `from`, with `token`: its status.
async fn fhir_status(base: &str, from: &str, token: &str) -> u16 {
    reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(format!("{base}/Group/{}", uuid::Uuid::now_v7()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_flood_of_bad_tokens_from_one_address_is_limited_and_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--dev", "--fhir-listen", "127.0.0.1:0"]);
    let base = server.fhir_base();

    // 200 bad tokens over gRPC from 127.0.0.1.
    let mut forged =
        HouseholdServiceClient::new(naast_tests::signed(&server.url(), "not-a-token").await);
    let mut codes = Vec::new();
    for _ in 0..200 {
        let refused = forged
            .get_household(pb::GetHouseholdRequest {
                household_id: uuid::Uuid::now_v7().to_string(),
                min_position: 0,
                ..Default::default()
            })
            .await
            .unwrap_err();
        codes.push(refused.code());
    }
    let unauthenticated = codes
        .iter()
        .filter(|c| **c == Code::Unauthenticated)
        .count();
    let limited = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert_eq!(unauthenticated + limited, 200, "{codes:?}");
    // The burst of 30 is refused as unauthenticated (and more as the allowance refills at 5/s,
    // however slowly this machine runs); past it, the rest is limited.
    assert!(unauthenticated >= 30, "{codes:?}");
    assert!(limited > 0, "{codes:?}");
    assert!(
        codes[..30].iter().all(|c| *c == Code::Unauthenticated),
        "the burst first: {codes:?}"
    );
    // Over FHIR the same address is limited too (it is the address, not the transport). The
    // allowance refills at 5/s, so on a slow machine one of them may pass as a plain refusal
    // first; a few in a row exhaust it.
    let mut fhir = Vec::new();
    for _ in 0..20 {
        let status = fhir_status(&base, "127.0.0.1", "not-a-token").await;
        fhir.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(fhir.last(), Some(&429), "{fhir:?}");
    assert!(fhir.iter().all(|s| *s == 401 || *s == 429), "{fhir:?}");

    // Another address is not: its bad token is refused as such, its good one served.
    assert_eq!(fhir_status(&base, "127.0.0.2", "not-a-token").await, 401);
    assert_eq!(
        fhir_status(&base, "127.0.0.2", server.token("ouder")).await,
        403
    );
    // A valid token from the flooding address is served.
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    family
        .create_household(pb::CreateHouseholdRequest {
            name: "Familie Dekker".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Recorded: each failed sign-in within the limit, and the limiting once.
    let refusals = naast_tests::search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            outcome: pb::AuditOutcome::Denied as i32,
            ..Default::default()
        },
    )
    .await;
    let from = |address: &str| {
        refusals
            .iter()
            .filter(|r| r.network_access_point.starts_with(&format!("{address}:")))
            .collect::<Vec<_>>()
    };
    let flooding = from("127.0.0.1");
    let limiting: Vec<_> = flooding
        .iter()
        .filter(|r| r.outcome_reason.contains("further ones in the next 60 s"))
        .collect();
    assert_eq!(limiting.len(), 1, "the limiting, once: {limiting:#?}");
    let fhir_refused = fhir.iter().filter(|s| **s == 401).count();
    assert_eq!(
        flooding.len(),
        unauthenticated + fhir_refused + 1,
        "{flooding:#?}"
    );
    assert_eq!(
        from("127.0.0.2").len(),
        1 + 1,
        "a bad token and a refused read"
    );
}

//! `/metrics` as Prometheus scrapes it from a real `naast serve --metrics-listen`: calls counted
//! by method and code, refused tokens, the durable appends of both logs, open streams, the log's
//! head and the read models' lag; a method that does not exist adds no series of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use std::collections::BTreeMap;
use tonic::Code;

fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {:#?}", samples.keys().collect::<Vec<_>>()))
}

#[tokio::test]
async fn a_scrape_shows_calls_refusals_commits_streams_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--dev", "--metrics-listen", "127.0.0.1:0"]);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let household = api
        .create_household(pb::CreateHouseholdRequest {
            name: "Familie Bakker".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household_id;
    let written = api
        .create_note(pb::CreateNoteRequest {
            household_id: household.clone(),
            text: "eerste gesprek".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    // A refused token; a bad request; a method no service has.
    let mut stranger =
        HouseholdServiceClient::new(naast_tests::signed(&server.url(), "not-a-token").await);
    let refused = stranger
        .get_household(pb::GetHouseholdRequest {
            household_id: household.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let bad = api
        .create_note(pb::CreateNoteRequest {
            household_id: "geen-id".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut unknown = tonic::client::Grpc::new(server.signed("ouder").await);
    unknown.ready().await.unwrap();
    let missing = unknown
        .unary::<_, pb::GetHouseholdResponse, _>(
            tonic::Request::new(pb::GetHouseholdRequest::default()),
            "/naast.v1.HouseholdService/NoSuchMethod".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented);
    // A stream held open.
    let mut stream = api
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: household.clone(),
            start_revision: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();

    let samples = naast_tests::scrape_metrics(&server).await;
    let rpc = |method: &str, code: &str| {
        sample(
            &samples,
            &format!(
                "naast_rpc_requests_total{{code=\"{code}\",method=\"/naast.v1.HouseholdService/{method}\"}}"
            ),
        )
    };
    assert_eq!(rpc("CreateHousehold", "OK"), 1.0);
    assert_eq!(rpc("CreateNote", "OK"), 1.0);
    assert_eq!(rpc("CreateNote", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(rpc("GetHousehold", "UNAUTHENTICATED"), 1.0);
    assert_eq!(
        sample(
            &samples,
            "naast_rpc_requests_total{code=\"UNIMPLEMENTED\",method=\"unknown\"}"
        ),
        1.0
    );
    assert!(
        !samples.keys().any(|k| k.contains("NoSuchMethod")),
        "an unknown method is no series of its own"
    );
    assert_eq!(
        sample(
            &samples,
            "naast_rpc_duration_seconds_count{method=\"/naast.v1.HouseholdService/CreateNote\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(&samples, "naast_auth_failures_total{outcome=\"refused\"}"),
        1.0
    );
    // Two commands, each one durable append of the household's events; the audit log holds
    // at least the refusal's record and the subscription's (a read is answered once its record
    // is durable; the commands' records are copied there later).
    assert_eq!(
        sample(
            &samples,
            "naast_log_append_seconds_count{durable=\"yes\",log=\"events\",result=\"ok\"}"
        ),
        2.0
    );
    let head = sample(&samples, "naast_log_head_position");
    assert_eq!(head, (written.position + 1) as f64);
    assert_eq!(
        sample(&samples, "naast_log_committed_events_total{log=\"events\"}"),
        head
    );
    assert!(sample(&samples, "naast_log_committed_events_total{log=\"audit\"}") >= 2.0);
    assert!(sample(&samples, "naast_log_sync_seconds_count{log=\"events\"}") >= 1.0);
    assert!(sample(&samples, "naast_projection_lag_events") <= head);
    assert_eq!(sample(&samples, "naast_streams_open"), 1.0);
    // The subscriber's lag was taken for what it received (caught up from the first entry, so
    // behind by at most the events after it).
    assert!(
        sample(
            &samples,
            "naast_subscription_lag_events_count{stream=\"timeline\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &samples,
            "naast_subscription_lag_events_sum{stream=\"timeline\"}"
        ) < head
    );

    drop(stream);
    // The stream's end is noticed by the server shortly after the client lets go.
    let mut open = 1.0;
    for _ in 0..100 {
        open = sample(
            &naast_tests::scrape_metrics(&server).await,
            "naast_streams_open",
        );
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0.0);
}

/// Without `--metrics-listen` nothing is served and no address printed.
#[tokio::test]
async fn metrics_are_off_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.metrics, None);
}

/// The audit records of `operation` (oldest first), as an administrator searches them.
async fn records_of(server: &Server, operation: &str) -> Vec<pb::AuditRecord> {
    naast_tests::search_audit(server.signed("beheerder").await, Default::default())
        .await
        .into_iter()
        .filter(|r| r.operation == operation)
        .collect()
}

#[tokio::test]
async fn every_call_has_a_request_id_the_client_and_the_audit_record_share() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--dev", "--fhir-listen", "127.0.0.1:0"]);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, _, _) = naast_tests::household_with_client(&mut api, "Familie Smit").await;
    const GET: &str = "/naast.v1.HouseholdService/GetHousehold";
    let get = || pb::GetHouseholdRequest {
        household_id: household.clone(),
        ..Default::default()
    };

    // The client's own id comes back and is in the audit record.
    let mut request = tonic::Request::new(get());
    request
        .metadata_mut()
        .insert("x-request-id", "keukentafel-42".parse().unwrap());
    let answer = api.get_household(request).await.unwrap();
    assert_eq!(
        answer.metadata().get("x-request-id").unwrap(),
        "keukentafel-42"
    );
    let records = records_of(&server, GET).await;
    assert_eq!(records.last().unwrap().request_id, "keukentafel-42");

    // Without one, the server makes one: the same in the answer and in the record.
    let answer = api.get_household(get()).await.unwrap();
    let made = answer
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let records = records_of(&server, GET).await;
    assert_eq!(records.last().unwrap().request_id, made);

    // A refused call carries it too: the client can quote it when asking what happened.
    let mut stranger =
        HouseholdServiceClient::new(naast_tests::signed(&server.url(), "not-a-token").await);
    let refused = stranger
        .get_household(pb::GetHouseholdRequest {
            household_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let id = refused
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    let records = records_of(&server, GET).await;
    assert_eq!(records.last().unwrap().request_id, id);

    // The FHIR facade gives its calls ids the same way: the client's back, or one made.
    let fhir = |id: Option<&str>| {
        let mut request = reqwest::Client::new()
            .get(format!("{}/Group/{household}", server.fhir_base()))
            .bearer_auth(server.token("ouder"));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let answer = fhir(Some("fhir-7")).await.unwrap();
    assert_eq!(answer.headers()["x-request-id"], "fhir-7");
    let made = fhir(None).await.unwrap().headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let ids: Vec<String> =
        naast_tests::search_audit(server.signed("beheerder").await, Default::default())
            .await
            .into_iter()
            .map(|r| r.request_id)
            .collect();
    assert!(ids.contains(&"fhir-7".to_owned()), "{ids:?}");
    assert!(ids.contains(&made), "{ids:?}");
}

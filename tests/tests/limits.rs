//! The limits that protect the service from one caller: calls per second per principal, open
//! streams per principal, a client that stops reading its stream, and the client's own deadline
//! (`grpc-timeout`). Each is hit for real against `naast serve`, configured small in its
//! `[limits]` table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::consent_service_client::ConsentServiceClient;
use naast_proto::pb::event_log_service_client::EventLogServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use std::path::Path;
use std::time::Duration;
use tonic::Code;

fn serve_with_limits(dir: &Path, limits: &str) -> Server {
    let config = dir.join("naast.toml");
    std::fs::write(&config, format!("[limits]\n{limits}")).unwrap();
    Server::start_with(
        &dir.join("data"),
        &[
            "--dev",
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
}

/// The value of a counter (`name{labels}`, labels sorted), 0 when it has not been counted yet.
async fn metric(server: &Server, series: &str) -> f64 {
    naast_tests::scrape_metrics(server)
        .await
        .get(series)
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_caller_past_its_rate_is_refused_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_limits(dir.path(), "calls_per_second = 2\ncall_burst = 5\n");
    let mut parent = ConsentServiceClient::new(server.signed("ouder").await);
    let mut refusal = None;
    let mut served = 0;
    // The burst of 5 passes (and one more now and then as 2/s refill, however slow this
    // machine); past it, the parent is refused.
    for _ in 0..200 {
        match parent.get_caller(pb::GetCallerRequest {}).await {
            Ok(_) => served += 1,
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.expect("the parent is limited");
    assert!(served >= 5, "the burst is served first: {served}");
    // More refusals in the same minute: they are not recorded one by one.
    let mut refused = 1;
    while refused < 6 {
        if parent.get_caller(pb::GetCallerRequest {}).await.is_err() {
            refused += 1;
        }
    }
    assert_eq!(refusal.code(), Code::ResourceExhausted);
    assert!(
        refusal
            .message()
            .contains("too many calls: at most 2 per second (and 5 at once) per caller"),
        "{}",
        refusal.message()
    );
    // The supporter is someone else: served.
    let mut supporter = ConsentServiceClient::new(server.signed("ondersteuner").await);
    supporter.get_caller(pb::GetCallerRequest {}).await.unwrap();
    assert!(metric(&server, "naast_limit_refusals_total{limit=\"calls\"}").await >= 6.0);

    // The limiting is in the audit log, once for the window (not six times), with what the
    // limit is.
    let found =
        naast_tests::search_audit(server.signed("beheerder").await, Default::default()).await;
    let limited: Vec<_> = found
        .iter()
        .filter(|r| r.outcome_reason.contains("too many calls"))
        .collect();
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(limited[0].user.as_ref().unwrap().subject, "dev-ouder");
}

#[tokio::test]
async fn streams_are_limited_per_caller_and_a_closed_one_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_limits(dir.path(), "streams_per_caller = 2\n");
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, _, _) = naast_tests::household_with_client(&mut api, "Familie Smit").await;
    let subscribe = |mut api: HouseholdServiceClient<_>| {
        let household = household.clone();
        async move {
            api.subscribe_timeline(pb::SubscribeTimelineRequest {
                household_id: household,
                ..Default::default()
            })
            .await
        }
    };
    let first = subscribe(api.clone()).await.unwrap().into_inner();
    let _second = subscribe(api.clone()).await.unwrap().into_inner();
    let refused = subscribe(api.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("at most 2 per caller"),
        "{}",
        refused.message()
    );
    // Another caller has streams of their own.
    let mut supporter = EventLogServiceClient::new(server.signed("beheerder").await);
    supporter
        .subscribe_events(pb::SubscribeEventsRequest::default())
        .await
        .unwrap();
    // Closing one makes room (once the server has seen the client go).
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        match subscribe(api.clone()).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(reopened.is_some(), "a closed stream gives its place back");
    assert!(metric(&server, "naast_limit_refusals_total{limit=\"streams\"}").await >= 1.0);
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_cut_off_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_limits(dir.path(), "slow_stream_seconds = 2\n");
    let mut log = EventLogServiceClient::new(server.signed("beheerder").await)
        .max_decoding_message_size(8 * 1024 * 1024);
    // Far more than the stream's buffer, the connection's windows and the sockets hold.
    let payload = vec![b'x'; 60 * 1024];
    for _ in 0..10 {
        log.append_events(pb::AppendEventsRequest {
            stream_id: "sensor".into(),
            events: (0..60)
                .map(|_| pb::NewEvent {
                    event_type: "Measured".into(),
                    payload: payload.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut stream = log
        .subscribe_events(pb::SubscribeEventsRequest {
            start_position: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    // The client stops reading for longer than the server waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut received = 1;
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the stream ended without saying why after {received} events"),
            Err(status) => break status,
        }
    };
    assert!(received < 600, "cut off before the end: {received}");
    assert_eq!(ended.code(), Code::ResourceExhausted);
    assert!(
        ended.message().contains("has not read for 2 s"),
        "{}",
        ended.message()
    );
    assert!(metric(&server, "naast_limit_refusals_total{limit=\"slow_stream\"}").await >= 1.0);
    // The server is as it was: the same client reads and subscribes again.
    let mut again = log
        .subscribe_events(pb::SubscribeEventsRequest {
            start_position: Some(received),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let next = again.message().await.unwrap().unwrap();
    assert_eq!(next.event.unwrap().position, received);
}

#[tokio::test]
async fn a_call_ends_at_the_deadline_its_client_gave() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, _, _) = naast_tests::household_with_client(&mut api, "Familie Smit").await;
    // A read that waits up to 5 s for a position the log has not reached, sent with a
    // `grpc-timeout` of 300 ms by hand: tonic's client would give up at its own deadline, so
    // only the server can end this call early.
    let message = prost::Message::encode_to_vec(&pb::GetHouseholdRequest {
        household_id: household,
        min_position: 1_000_000,
        ..Default::default()
    });
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    let response = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!(
            "{}/naast.v1.HouseholdService/GetHousehold",
            server.url()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .bearer_auth(server.token("ouder"))
        .body(body)
        .send()
        .await
        .unwrap();
    // A trailers-only answer: the status is in the headers. Without the deadline the server
    // would answer after 5 s that the position was not reached (another status and message).
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // grpc-message is percent-encoded.
    let (status, message) = (
        header("grpc-status"),
        header("grpc-message").replace("%20", " "),
    );
    assert!(
        status == (Code::Cancelled as i32).to_string()
            || status == (Code::DeadlineExceeded as i32).to_string(),
        "status {status}: {message}"
    );
    assert!(message.contains("Timeout expired"), "{message}");
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_a_closed_one_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_limits(dir.path(), "max_connections = 3\n");
    let token = server.token("ouder").to_owned();
    // Three connections, each shown to be open by a call.
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut client =
            ConsentServiceClient::new(naast_tests::signed(&server.url(), &token).await);
        client.get_caller(pb::GetCallerRequest {}).await.unwrap();
        open.push(client);
    }
    assert_eq!(metric(&server, "naast_connections_open").await, 3.0);
    // A fourth is closed at once: its call fails, and is counted. (tonic's client reports a
    // connection closed under it as UNAVAILABLE, or as UNKNOWN or CANCELLED with hyper's
    // "connection closed", depending on where in its handshake the close meets it.)
    let refused = match tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
    {
        // Connecting may look fine before the server's close arrives; the call cannot.
        Ok(channel) => ConsentServiceClient::new(channel)
            .get_caller(pb::GetCallerRequest {})
            .await
            .unwrap_err(),
        Err(e) => tonic::Status::unavailable(e.to_string()),
    };
    assert!(
        matches!(
            refused.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{refused:?}"
    );
    assert!(
        metric(
            &server,
            r#"naast_limit_refusals_total{limit="connections"}"#
        )
        .await
            >= 1.0
    );
    // The three are still served.
    for client in &mut open {
        client.get_caller(pb::GetCallerRequest {}).await.unwrap();
    }
    // One closed makes room for a new one (the server notices the close soon after).
    open.pop();
    let started = std::time::Instant::now();
    loop {
        let connected = tonic::transport::Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await;
        let answer = match connected {
            Ok(channel) => {
                let bearer = naast_proto::client::Bearer::new(&token).unwrap();
                ConsentServiceClient::with_interceptor(channel, bearer)
                    .get_caller(pb::GetCallerRequest {})
                    .await
                    .map(drop)
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        match answer {
            Ok(()) => break,
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        Code::Unavailable | Code::Unknown | Code::Cancelled
                    ),
                    "{status:?}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no room after a connection closed"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One HTTP/1.1 request on `stream` (kept alive): the answer's status line, or `None` when the
/// server closed the connection instead.
async fn http_status(stream: &mut tokio::net::TcpStream, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET {path} HTTP/1.1\r\nHost: naast\r\nConnection: keep-alive\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let mut answer = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer and no close within 20 s"));
    match read {
        Ok(0) | Err(_) => None,
        Ok(n) => String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .map(str::to_owned),
    }
}

#[tokio::test]
async fn the_fhir_and_web_doors_close_connections_past_the_limit_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("naast.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 2\n").unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--dev",
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--fhir-listen",
            "127.0.0.1:0",
            "--web-listen",
            "127.0.0.1:0",
        ],
    );
    let web = server.web.clone().unwrap();
    let doors = [
        (web.trim_start_matches("http://").to_owned(), "/"),
        (server.fhir.unwrap().to_string(), "/fhir/metadata"),
    ];
    for (address, path) in doors {
        // Two connections, each shown to be open by an answer.
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            let status = http_status(&mut stream, path).await;
            assert!(
                status.as_deref().is_some_and(|s| s.contains(" 200 ")),
                "{status:?}"
            );
            open.push(stream);
        }
        let refused_before = metric(
            &server,
            r#"naast_limit_refusals_total{limit="connections"}"#,
        )
        .await;
        // A third is closed at once, unanswered.
        let mut third = tokio::net::TcpStream::connect(&address).await.unwrap();
        assert_eq!(http_status(&mut third, path).await, None, "{address}");
        assert!(
            metric(
                &server,
                r#"naast_limit_refusals_total{limit="connections"}"#
            )
            .await
                > refused_before
        );
        // The two are still served; one closed makes room.
        for stream in &mut open {
            assert!(http_status(stream, path).await.is_some());
        }
        open.pop();
        served_again(&address, path).await;
    }
}

/// Waits until a new connection to `address` is answered (the server notices a closed one
/// soon after; the bound only keeps a broken server from hanging the test).
async fn served_again(address: &str, path: &str) {
    let started = std::time::Instant::now();
    loop {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        if http_status(&mut stream, path).await.is_some() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{address}: no room after connections closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn connections_that_idle_or_trickle_are_closed_and_make_room() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("naast.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_connections = 3\nheader_read_seconds = 1\n",
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--dev",
            "--config",
            config.to_str().unwrap(),
            "--fhir-listen",
            "127.0.0.1:0",
            "--web-listen",
            "127.0.0.1:0",
        ],
    );
    let web = server.web.clone().unwrap();
    let doors = [
        (web.trim_start_matches("http://").to_owned(), "/"),
        (server.fhir.unwrap().to_string(), "/fhir/metadata"),
    ];
    for (address, path) in doors {
        // The door's three places taken: one connection that says nothing, one that
        // trickles a request's headers, one idle after its answer.
        let silent = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut trickling = tokio::net::TcpStream::connect(&address).await.unwrap();
        trickling
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: na").as_bytes())
            .await
            .unwrap();
        let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
        assert!(
            http_status(&mut idle, path)
                .await
                .is_some_and(|s| s.contains(" 200 "))
        );
        // Each is closed by the server (however slowly this machine gets there; the bound
        // only keeps a broken server from hanging the test).
        for (what, mut stream) in [("silent", silent), ("trickling", trickling), ("idle", idle)] {
            let mut rest = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
            assert!(
                matches!(read, Ok(Ok(_)) | Ok(Err(_))),
                "{address}: the {what} connection is still open"
            );
            if what != "idle" {
                // Nothing was answered to a request that never came whole (hyper may say
                // 408 as it closes; it answers nothing else).
                let said = String::from_utf8_lossy(&rest);
                assert!(
                    said.is_empty() || said.starts_with("HTTP/1.1 408"),
                    "{address} {what}: {said}"
                );
            }
        }
        // Their places are free again: an honest client is served.
        served_again(&address, path).await;
    }
}

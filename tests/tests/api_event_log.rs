//! The event log over gRPC: the real `naast serve` process on a free loopback port, driven by a
//! tonic client as an integrator would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::event_log_service_client::EventLogServiceClient;
use naast_tests::Server;
use pb::append_events_request::Expected;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// The raw log is for service administrators (and their integrations).
async fn client(server: &Server) -> EventLogServiceClient<naast_proto::client::Signed> {
    EventLogServiceClient::new(server.signed("beheerder").await)
        .max_encoding_message_size(64 * 1024 * 1024)
}

fn new_event(kind: &str, body: &str) -> pb::NewEvent {
    pb::NewEvent {
        event_type: kind.into(),
        payload: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn append(
    stream: &str,
    expected: Option<Expected>,
    events: Vec<pb::NewEvent>,
) -> pb::AppendEventsRequest {
    pb::AppendEventsRequest {
        stream_id: stream.into(),
        expected,
        events,
    }
}

#[tokio::test]
async fn appended_events_read_back_page_by_page_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = client(&server).await;
    for i in 0..3 {
        let events = (0..5)
            .map(|j| new_event("GoalSet", &format!("goal {i}.{j}")))
            .collect();
        let expected = if i == 0 {
            Expected::ExpectedState(pb::ExpectedStreamState::NoStream as i32)
        } else {
            Expected::ExpectedRevision(i * 5 - 1)
        };
        let out = api
            .append_events(append("pgo-1", Some(expected), events))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((out.first_revision, out.last_revision), (i * 5, i * 5 + 4));
        assert_eq!(out.event_ids.len(), 5);
        assert!(!out.replayed);
    }
    api.append_events(append("pgo-2", None, vec![new_event("Noted", "x")]))
        .await
        .unwrap();

    for (direction, expected_order) in [
        (pb::ReadDirection::Forwards, (0..15).collect::<Vec<u64>>()),
        (pb::ReadDirection::Backwards, (0..15).rev().collect()),
    ] {
        let mut revisions = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = api
                .list_stream_events(pb::ListStreamEventsRequest {
                    stream_id: "pgo-1".into(),
                    direction: direction as i32,
                    page_size: 4,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.events.len() <= 4);
            revisions.extend(page.events.iter().map(|e| e.revision));
            assert!(page.events.iter().all(|e| e.stream_id == "pgo-1"));
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(revisions, expected_order, "{direction:?}");
        assert_eq!(pages, 4);
    }

    let all = api
        .list_events(pb::ListEventsRequest {
            start_position: Some(13),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let positions: Vec<u64> = all.events.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![13, 14, 15]);
    assert!(all.next_page_token.is_empty());
    let last = &all.events[2];
    assert_eq!(last.stream_id, "pgo-2");
    assert_eq!(last.payload, b"x");
    assert_eq!(last.schema_version, 1);
    assert_eq!(last.hash.len(), 32);
    assert!(last.recorded_at.is_some_and(|t| t.seconds > 1_700_000_000));
}

#[tokio::test]
async fn a_conflict_is_aborted_with_the_actual_revision_and_a_retry_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = client(&server).await;
    let mut event = new_event("AgreementProposed", "logeeropvang");
    event.id = "01937a4e-0000-7000-8000-000000000001".into();
    event.metadata = Some(pb::EventMetadata {
        correlation_id: "01937a4e-0000-7000-8000-0000000000c0".into(),
        causation_id: String::new(),
        actor: "bondgenoot:7".into(),
    });
    let request = append(
        "pgo-5",
        Some(Expected::ExpectedState(
            pb::ExpectedStreamState::NoStream as i32,
        )),
        vec![event],
    );
    let first = api
        .append_events(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = api.append_events(request).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(
        (retry.first_position, retry.last_revision, retry.event_ids),
        (first.first_position, first.last_revision, first.event_ids)
    );

    let conflict = api
        .append_events(append(
            "pgo-5",
            Some(Expected::ExpectedRevision(7)),
            vec![new_event("AgreementAccepted", "")],
        ))
        .await
        .expect_err("wrong revision");
    assert_eq!(conflict.code(), Code::Aborted);
    let info = conflict
        .get_details_error_info()
        .expect("ErrorInfo details");
    assert_eq!(info.reason, "WRONG_EXPECTED_REVISION");
    assert_eq!(
        info.metadata.get("actual_revision").map(String::as_str),
        Some("0")
    );

    let reused = api
        .append_events(append(
            "pgo-6",
            None,
            vec![pb::NewEvent {
                id: "01937a4e-0000-7000-8000-000000000001".into(),
                ..new_event("Noted", "")
            }],
        ))
        .await
        .expect_err("id of another append");
    assert_eq!(reused.code(), Code::AlreadyExists);

    let stored = api
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(stored.len(), 1, "only the first append wrote");
    let metadata = stored[0].metadata.clone().unwrap();
    assert_eq!(metadata.actor, "bondgenoot:7");
    assert_eq!(
        metadata.correlation_id,
        "01937a4e-0000-7000-8000-0000000000c0"
    );
    assert_eq!(metadata.causation_id, "");
}

/// Each bad request gets its code and, for INVALID_ARGUMENT, a BadRequest naming the field; none
/// writes anything.
#[tokio::test]
async fn bad_requests_are_refused_with_the_code_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = client(&server).await;
    let ok_event = || new_event("Noted", "{}");
    let appends: Vec<(&str, pb::AppendEventsRequest, Code, &str)> = vec![
        (
            "empty stream id",
            append("", None, vec![ok_event()]),
            Code::InvalidArgument,
            "stream_id",
        ),
        (
            "long stream id",
            append(&"h".repeat(201), None, vec![ok_event()]),
            Code::InvalidArgument,
            "stream_id",
        ),
        (
            "household stream",
            append(
                "household-01937a4e-0000-7000-8000-000000000001",
                None,
                vec![ok_event()],
            ),
            Code::InvalidArgument,
            "stream_id",
        ),
        (
            "control character",
            append("house\u{7}hold", None, vec![ok_event()]),
            Code::InvalidArgument,
            "stream_id",
        ),
        (
            "no events",
            append("h", None, vec![]),
            Code::InvalidArgument,
            "events",
        ),
        (
            "too many events",
            append("h", None, (0..1001).map(|_| ok_event()).collect()),
            Code::InvalidArgument,
            "events",
        ),
        (
            "empty event type",
            append("h", None, vec![new_event("", "{}")]),
            Code::InvalidArgument,
            "events[0].event_type",
        ),
        (
            "bad id",
            append(
                "h",
                None,
                vec![
                    ok_event(),
                    pb::NewEvent {
                        id: "not-a-uuid".into(),
                        ..ok_event()
                    },
                ],
            ),
            Code::InvalidArgument,
            "events[1].id",
        ),
        (
            "nil id",
            append(
                "h",
                None,
                vec![pb::NewEvent {
                    id: "00000000-0000-0000-0000-000000000000".into(),
                    ..ok_event()
                }],
            ),
            Code::InvalidArgument,
            "events[0].id",
        ),
        (
            "bad correlation id",
            append(
                "h",
                None,
                vec![pb::NewEvent {
                    metadata: Some(pb::EventMetadata {
                        correlation_id: "x".into(),
                        ..Default::default()
                    }),
                    ..ok_event()
                }],
            ),
            Code::InvalidArgument,
            "events[0].metadata.correlation_id",
        ),
        (
            "bad causation id",
            append(
                "h",
                None,
                vec![pb::NewEvent {
                    metadata: Some(pb::EventMetadata {
                        causation_id: "12".into(),
                        ..Default::default()
                    }),
                    ..ok_event()
                }],
            ),
            Code::InvalidArgument,
            "events[0].metadata.causation_id",
        ),
        (
            "unspecified state",
            append("h", Some(Expected::ExpectedState(0)), vec![ok_event()]),
            Code::InvalidArgument,
            "expected_state",
        ),
        (
            "unknown state",
            append("h", Some(Expected::ExpectedState(42)), vec![ok_event()]),
            Code::InvalidArgument,
            "expected_state",
        ),
        (
            "payload too large",
            append(
                "h",
                None,
                vec![pb::NewEvent {
                    payload: vec![0; 64 * 1024 + 1],
                    ..ok_event()
                }],
            ),
            Code::InvalidArgument,
            "events[0].payload",
        ),
        (
            "payloads too large together",
            append(
                "h",
                None,
                (0..70)
                    .map(|_| pb::NewEvent {
                        payload: vec![0; 60 * 1024],
                        ..ok_event()
                    })
                    .collect(),
            ),
            Code::InvalidArgument,
            "events",
        ),
        (
            "message too large",
            append(
                "h",
                None,
                vec![pb::NewEvent {
                    payload: vec![0; 6 * 1024 * 1024],
                    ..ok_event()
                }],
            ),
            Code::ResourceExhausted,
            "",
        ),
    ];
    for (what, request, code, field) in appends {
        let status = api.append_events(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        if code == Code::InvalidArgument {
            let bad = status
                .get_details_bad_request()
                .unwrap_or_else(|| panic!("{what}: no BadRequest"));
            assert_eq!(bad.field_violations[0].field, field, "{what}");
            assert!(!bad.field_violations[0].description.is_empty(), "{what}");
        }
    }

    let list_stream = |f: &dyn Fn(&mut pb::ListStreamEventsRequest)| {
        let mut r = pb::ListStreamEventsRequest {
            stream_id: "h".into(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let reads: Vec<(&str, pb::ListStreamEventsRequest, &str)> = vec![
        (
            "empty stream",
            list_stream(&|r| r.stream_id.clear()),
            "stream_id",
        ),
        (
            "negative page size",
            list_stream(&|r| r.page_size = -1),
            "page_size",
        ),
        (
            "huge page size",
            list_stream(&|r| r.page_size = 5000),
            "page_size",
        ),
        (
            "unknown direction",
            list_stream(&|r| r.direction = 9),
            "direction",
        ),
        (
            "garbage token",
            list_stream(&|r| r.page_token = "zzz".into()),
            "page_token",
        ),
        (
            "token of the other direction",
            list_stream(&|r| {
                r.page_token = "f3".into();
                r.direction = pb::ReadDirection::Backwards as i32
            }),
            "page_token",
        ),
    ];
    for (what, request, field) in reads {
        let status = api.list_stream_events(request).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        let bad = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("{what}: no BadRequest"));
        assert_eq!(bad.field_violations[0].field, field, "{what}");
    }
    let status = api
        .list_events(pb::ListEventsRequest {
            page_size: 1001,
            ..Default::default()
        })
        .await
        .expect_err("page size");
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "page_size"
    );
    let status = api
        .subscribe_events(pb::SubscribeEventsRequest {
            stream_id: "\n".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad stream");
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "stream_id"
    );

    let stored = api
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        stored.events.is_empty(),
        "nothing was written for rejected requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_event_of_concurrent_writers_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = client(&server).await;
    for i in 0..50 {
        api.append_events(append(
            "before",
            None,
            vec![new_event("Noted", &i.to_string())],
        ))
        .await
        .unwrap();
    }
    let mut from_start = api
        .subscribe_events(pb::SubscribeEventsRequest {
            start_position: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut one_stream = api
        .subscribe_events(pb::SubscribeEventsRequest {
            stream_id: "writer-0".into(),
            start_revision: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut api = api.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..60 {
                let events = (0..1 + i % 3).map(|_| new_event("Noted", "")).collect();
                api.append_events(append(&format!("writer-{w}"), None, events))
                    .await
                    .unwrap();
            }
        }));
    }
    let total = 50 + 4 * (0..60).map(|i| 1 + i % 3).sum::<u64>();
    for expected in 0..total {
        let event = tokio::time::timeout(Duration::from_secs(30), from_start.message())
            .await
            .expect("event within 30 s")
            .unwrap()
            .expect("stream open")
            .event
            .unwrap();
        assert_eq!(event.position, expected);
    }
    let writer_0 = (0..60).map(|i| 1 + i % 3).sum::<u64>();
    for expected in 0..writer_0 {
        let event = one_stream.message().await.unwrap().unwrap().event.unwrap();
        assert_eq!(
            (event.stream_id.as_str(), event.revision),
            ("writer-0", expected)
        );
    }
    for w in writers {
        w.await.unwrap();
    }
    // A subscription from now sees only what comes next.
    let mut from_now = api
        .subscribe_events(pb::SubscribeEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    api.append_events(append("after", None, vec![new_event("Noted", "")]))
        .await
        .unwrap();
    let next = from_now.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!((next.position, next.stream_id.as_str()), (total, "after"));
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "naast.v1.EventLogService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    // Reflection needs a token like every call but health.
    let mut unsigned = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let refused = unsigned
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut reflection = ServerReflectionClient::new(server.signed("ondersteuner").await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"naast.v1.EventLogService".to_owned()),
        "{names:?}"
    );
}

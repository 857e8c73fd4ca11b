//! The bad-bytes run: for a bounded time (`NAAST_BAD_BYTES_SECONDS`, 5 s in the test command;
//! `ops/bad-bytes.sh` runs the long version), connections to a live `naast serve` carry what no
//! honest client sends, on its gRPC, FHIR and metrics listeners alike:
//! - random bytes, before and after the HTTP/2 preface; random HTTP/2 frames;
//! - gRPC calls, written frame by frame, whose messages are valid requests mutated (bits
//!   flipped, bytes cut, inserted, repeated, varints and lengths made huge), with a valid, a
//!   foreign, a garbage or no token;
//! - frames cut short and connections left hanging mid-frame;
//! - a message announcing 4 GiB, a 6 MiB message, a 1 MiB header, a header block continued
//!   without end (CONTINUATION flood), streams opened and reset at once (rapid reset);
//! - HTTP/1.1 garbage, huge request lines and headers on the FHIR and metrics listeners.
//!
//! Meanwhile a family's client reads its household every 100 ms: every read must be answered
//! correctly. Every complete call must get an answer. At the end the server must still run,
//! answer, stop on SIGTERM, and its log must hold no panic. The seed is printed
//! (`NAAST_BAD_BYTES_SEED` repeats a run).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Rng, Server};
use prost::Message as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long an answer may take before the call counts as unanswered.
const ANSWER: Duration = Duration::from_secs(10);

/// Frame types of HTTP/2.
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(0xff_ffff);
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&payload[..len]);
    out
}

/// An HPACK integer with an `n`-bit prefix whose first byte starts as `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields, never indexed (no Huffman coding).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x10);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn grpc_headers(path: &str, token: Option<&str>) -> Vec<u8> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "naast"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    if let Some(bearer) = &bearer {
        fields.push(("authorization", bearer));
    }
    header_block(&fields)
}

/// A gRPC message frame: uncompressed, its length, its bytes.
fn grpc_message(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.below(256) as u8).collect()
}

/// `valid` changed in one of many ways.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for _ in 0..=rng.below(4) {
        let at = if bytes.is_empty() {
            0
        } else {
            rng.below(bytes.len() as u64) as usize
        };
        match rng.below(8) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.truncate(at),
            2 => {
                let len = 1 + rng.below(32) as usize;
                let extra = random_bytes(rng, len);
                drop(bytes.splice(at..at, extra));
            }
            3 if !bytes.is_empty() => {
                let piece = bytes[at..].to_vec();
                bytes.extend_from_slice(&piece);
            }
            // A varint (a tag or a length) as long and as large as it can be.
            4 => drop(bytes.splice(at..at, [0xff; 9].into_iter().chain([0x01]))),
            // A length-delimited field claiming far more than there is.
            5 => drop(bytes.splice(at..at, [0x12, 0xff, 0xff, 0xff, 0xff, 0x0f])),
            // A field number no message has, of every wire type.
            6 => {
                let tag = 0xf8 | rng.below(6) as u8;
                drop(bytes.splice(at..at, [tag, 0xff, 0xff, 0xff, 0x0f, 0x00]));
            }
            _ => {
                let len = rng.below(64) as usize;
                bytes = random_bytes(rng, len);
            }
        }
    }
    bytes
}

/// Valid requests of many methods, encoded, to be mutated.
fn valid_requests(household: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "/naast.v1.HouseholdService/CreateNote",
            pb::CreateNoteRequest {
                household_id: household.into(),
                text: "Een gewone dag.".into(),
                life_domains: vec![3, 4],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.HouseholdService/GetHousehold",
            pb::GetHouseholdRequest {
                household_id: household.into(),
                min_position: 1,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.HouseholdService/ListTimelineEntries",
            pb::ListTimelineEntriesRequest {
                household_id: household.into(),
                page_size: 10,
                life_domains: vec![1, 2],
                start_date: "2026-01-01".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.HouseholdService/SubscribeTimeline",
            pb::SubscribeTimelineRequest {
                household_id: household.into(),
                start_revision: Some(0),
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.HouseholdService/CreateHousehold",
            pb::CreateHouseholdRequest {
                name: "Familie Ruis".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.ConsentService/GrantAccess",
            pb::GrantAccessRequest {
                household_id: household.into(),
                grantee: Some(pb::Grantee {
                    kind: Some(pb::grantee::Kind::Platform(pb::PlatformClient {
                        issuer: "https://pgo.example".into(),
                        client_id: "pgo".into(),
                    })),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.EventLogService/AppendEvents",
            pb::AppendEventsRequest {
                stream_id: "ruis".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.AuditService/SearchAuditLog",
            pb::SearchAuditLogRequest {
                household_id: household.into(),
                page_size: 5,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/naast.v1.OperationsService/Backup",
            pb::BackupRequest::default().encode_to_vec(),
        ),
    ]
}

/// What the run did, to print and to check.
#[derive(Default, Debug)]
struct Tally {
    connections: u64,
    complete_calls: u64,
    unanswered_calls: u64,
}

/// Writes `bytes` to `at`, then reads what comes back until the server closes, `wait` passes or
/// `enough` says what came is enough; the bytes read (`None` when the connection could not be
/// made).
async fn exchange(
    at: SocketAddr,
    bytes: &[u8],
    wait: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(at).await.ok()?;
    // The server may close mid-write (it refused what it read): that is an answer too.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buffer = vec![0u8; 16 * 1024];
    while !enough(&answer) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    Some(answer)
}

/// Whether anything came back.
fn any(answer: &[u8]) -> bool {
    !answer.is_empty()
}

/// The frames of `answer` (the server's HTTP/2 frames; a cut-off last one left out): type,
/// flags, stream.
fn frames(answer: &[u8]) -> Vec<(u8, u8, u32)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + 9 <= answer.len() {
        let len = u32::from_be_bytes([0, answer[at], answer[at + 1], answer[at + 2]]) as usize;
        if at + 9 + len > answer.len() {
            break;
        }
        let stream = u32::from_be_bytes([
            answer[at + 5],
            answer[at + 6],
            answer[at + 7],
            answer[at + 8],
        ]) & 0x7fff_ffff;
        found.push((answer[at + 3], answer[at + 4], stream));
        at += 9 + len;
    }
    found
}

/// Whether the server sent a DATA frame on stream 1 (a stream's first message).
fn carries_data(answer: &[u8]) -> bool {
    frames(answer)
        .iter()
        .any(|&(kind, _, stream)| kind == DATA && stream == 1)
}

/// Whether the server ended stream 1: trailers (or a trailers-only answer), or a reset.
fn answers_stream_one(answer: &[u8]) -> bool {
    frames(answer).iter().any(|&(kind, flags, stream)| {
        stream == 1 && ((kind == HEADERS && flags & END_STREAM != 0) || kind == RST_STREAM)
    })
}

/// Whether the server said GOAWAY.
fn goes_away(answer: &[u8]) -> bool {
    frames(answer).iter().any(|&(kind, _, _)| kind == GOAWAY)
}

/// Whether `answer` (the server's HTTP/2 frames) ends stream 1 or the whole connection (GOAWAY):
/// enough to stop waiting.
fn ends_stream_one(answer: &[u8]) -> bool {
    answers_stream_one(answer) || goes_away(answer)
}

/// One attack on the gRPC listener, chosen by `rng`.
async fn attack_grpc(
    rng: &mut Rng,
    at: SocketAddr,
    requests: &[(&'static str, Vec<u8>)],
    tokens: &[Option<String>],
    tally: &mut Tally,
) {
    tally.connections += 1;
    let settings = frame(SETTINGS, 0, 0, &[]);
    let token = tokens[rng.below(tokens.len() as u64) as usize].as_deref();
    let (path, valid) = &requests[rng.below(requests.len() as u64) as usize];
    match rng.below(10) {
        // Random bytes instead of the preface.
        0 => {
            let len = 1 + rng.below(4096) as usize;
            exchange(at, &random_bytes(rng, len), Duration::from_millis(300), any).await;
        }
        // The preface, then random frames.
        1 => {
            let mut bytes = PREFACE.to_vec();
            bytes.extend_from_slice(&settings);
            for _ in 0..=rng.below(8) {
                let len = rng.below(512) as usize;
                let payload = random_bytes(rng, len);
                bytes.extend(frame(
                    rng.below(12) as u8,
                    rng.below(256) as u8,
                    rng.below(8) as u32,
                    &payload,
                ));
            }
            exchange(at, &bytes, Duration::from_millis(300), any).await;
        }
        // A complete call whose message is a valid request mutated: it must be answered.
        2..=5 => {
            let mut bytes = PREFACE.to_vec();
            bytes.extend_from_slice(&settings);
            bytes.extend(frame(HEADERS, END_HEADERS, 1, &grpc_headers(path, token)));
            let message = mutate(rng, valid);
            bytes.extend(frame(DATA, END_STREAM, 1, &grpc_message(&message)));
            tally.complete_calls += 1;
            // A subscription that was accepted stays open: its first message is enough.
            let subscription = path.ends_with("SubscribeTimeline") || path.ends_with("Backup");
            // Only an answer to this call counts: its end (trailers or a reset) or, for a
            // stream, its first message; a GOAWAY would mean the bytes around it were wrong.
            let answered =
                move |a: &[u8]| answers_stream_one(a) || (subscription && carries_data(a));
            let answer = exchange(at, &bytes, ANSWER, answered).await;
            let answered = answer.is_some_and(|a| answered(&a));
            if !answered {
                tally.unanswered_calls += 1;
                eprintln!("unanswered: {path} with {message:?}");
            }
        }
        // A frame cut short, the connection left hanging, then closed.
        6 => {
            let mut bytes = PREFACE.to_vec();
            bytes.extend_from_slice(&settings);
            let mut headers = frame(HEADERS, END_HEADERS, 1, &grpc_headers(path, token));
            let cut = rng.below(headers.len() as u64) as usize;
            headers.truncate(cut);
            bytes.extend(headers);
            exchange(at, &bytes, Duration::from_millis(200), ends_stream_one).await;
        }
        // A message announcing 4 GiB, or one of 6 MiB: refused, not buffered.
        7 => {
            let mut bytes = PREFACE.to_vec();
            bytes.extend_from_slice(&settings);
            bytes.extend(frame(HEADERS, END_HEADERS, 1, &grpc_headers(path, token)));
            if rng.below(2) == 0 {
                let mut prefix = vec![0u8];
                prefix.extend_from_slice(&u32::MAX.to_be_bytes());
                prefix.extend_from_slice(&random_bytes(rng, 1000));
                bytes.extend(frame(DATA, 0, 1, &prefix));
            } else {
                let message = grpc_message(&vec![0x0a; 6 * 1024 * 1024]);
                for piece in message.chunks(16_384) {
                    bytes.extend(frame(DATA, 0, 1, piece));
                }
            }
            exchange(at, &bytes, Duration::from_secs(2), ends_stream_one).await;
        }
        // A 1 MiB header, or a header block continued without end.
        8 => {
            let mut bytes = PREFACE.to_vec();
            bytes.extend_from_slice(&settings);
            if rng.below(2) == 0 {
                let huge = "x".repeat(1024 * 1024);
                let block = header_block(&[(":method", "POST"), ("x-huge", &huge)]);
                let mut pieces = block.chunks(16_384);
                if let Some(first) = pieces.next() {
                    bytes.extend(frame(HEADERS, 0, 1, first));
                }
                let rest: Vec<&[u8]> = pieces.collect();
                for (i, piece) in rest.iter().enumerate() {
                    let last = i + 1 == rest.len();
                    bytes.extend(frame(
                        CONTINUATION,
                        if last { END_HEADERS } else { 0 },
                        1,
                        piece,
                    ));
                }
            } else {
                bytes.extend(frame(HEADERS, 0, 1, &grpc_headers(path, token)));
                let junk = header_block(&[("x-flood", &"y".repeat(16_000))]);
                for _ in 0..600 {
                    bytes.extend(frame(CONTINUATION, 0, 1, &junk));
                }
            }
            exchange(at, &bytes, Duration::from_secs(2), ends_stream_one).await;
        }
        // Streams opened and reset at once, many of them (rapid reset).
        _ => {
            let mut bytes = PREFACE.to_vec();
            bytes.extend_from_slice(&settings);
            let headers = grpc_headers(path, token);
            for i in 0..500u32 {
                let stream = 1 + 2 * i;
                bytes.extend(frame(HEADERS, END_HEADERS, stream, &headers));
                bytes.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            }
            exchange(at, &bytes, Duration::from_secs(1), goes_away).await;
        }
    }
}

/// One attack on an HTTP/1.1 listener (the FHIR facade, the metrics).
async fn attack_http(rng: &mut Rng, at: SocketAddr, token: &str, tally: &mut Tally) {
    tally.connections += 1;
    let bytes = match rng.below(5) {
        0 => {
            let len = 1 + rng.below(4096) as usize;
            random_bytes(rng, len)
        }
        1 => format!(
            "GET /fhir/{} HTTP/1.1\r\nhost: naast\r\n\r\n",
            "a".repeat(200_000)
        )
        .into_bytes(),
        2 => format!(
            "GET /fhir/Patient HTTP/1.1\r\nhost: naast\r\nx-huge: {}\r\n\r\n",
            "b".repeat(1024 * 1024)
        )
        .into_bytes(),
        3 => {
            let body = mutate(
                rng,
                br#"{"resourceType":"CarePlan","status":"active","intent":"proposal"}"#,
            );
            let mut request = format!(
                "POST /fhir/CarePlan HTTP/1.1\r\nhost: naast\r\nauthorization: Bearer {token}\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend(body);
            request
        }
        _ => {
            // Chunked encoding that lies about its chunks, cut off.
            format!(
                "POST /fhir/Task HTTP/1.1\r\nhost: naast\r\nauthorization: Bearer {token}\r\ntransfer-encoding: chunked\r\n\r\nfffffff\r\n{}",
                "z".repeat(rng.below(1000) as usize)
            )
            .into_bytes()
        }
    };
    exchange(at, &bytes, Duration::from_millis(300), any).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_on_every_listener_leave_the_server_up_and_answering() {
    let seconds = naast_tests::env_number("NAAST_BAD_BYTES_SECONDS", 5);
    let seed = naast_tests::env_number(
        "NAAST_BAD_BYTES_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("bad bytes for {seconds} s, NAAST_BAD_BYTES_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Server::start_logging(
        &dir.path().join("data"),
        &[
            "--dev",
            "--fhir-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        log,
    );
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Ruis").await;
    let requests = valid_requests(&home);
    // The attacks' tokens: a provider's and an administrator's (valid, but not the family's
    // principal, whose rate they would otherwise spend), a garbage one, none.
    let tokens = vec![
        Some(server.token("zorgverlener").to_owned()),
        Some(server.token("beheerder").to_owned()),
        Some("eyJhbGciOiJub25lIn0.e30.".to_owned()),
        None,
    ];

    // The calls below are written by hand: the same writing of an unchanged request must be a
    // call the server answers with the household, so that the mutated ones are calls too.
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    let (path, valid) = &requests[1];
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &grpc_headers(path, Some(server.token("ouder"))),
    ));
    bytes.extend(frame(DATA, END_STREAM, 1, &grpc_message(valid)));
    let answer = exchange(server.address, &bytes, ANSWER, ends_stream_one)
        .await
        .unwrap();
    assert!(
        carries_data(&answer) && ends_stream_one(&answer),
        "{answer:?}"
    );
    assert!(
        answer
            .windows("Familie Ruis".len())
            .any(|w| w == b"Familie Ruis"),
        "the hand-written call was not answered with the household"
    );

    // The family reads its household every 100 ms throughout.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let canary = {
        let (mut family, home) = (family.clone(), home.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !*stopped.borrow() {
                let read = tokio::time::timeout(
                    ANSWER,
                    family.get_household(pb::GetHouseholdRequest {
                        household_id: home.clone(),
                        ..Default::default()
                    }),
                )
                .await;
                match read {
                    Ok(Ok(answer)) => {
                        let household = answer.into_inner().household.unwrap();
                        assert_eq!(household.name, "Familie Ruis");
                        reads += 1;
                    }
                    Ok(Err(status)) => panic!("the family's read was refused: {status:?}"),
                    Err(_) => panic!("the family's read was not answered within {ANSWER:?}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            reads
        })
    };

    // Two attackers on the gRPC listener, one on the FHIR and metrics listeners.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let grpc_attackers: Vec<_> = (0..2)
        .map(|a| {
            let (requests, tokens, at) = (requests.clone(), tokens.clone(), server.address);
            tokio::spawn(async move {
                let mut rng = Rng::new(seed.wrapping_add(a));
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    attack_grpc(&mut rng, at, &requests, &tokens, &mut tally).await;
                }
                tally
            })
        })
        .collect();
    let http_attacker = {
        let fhir = server.fhir.unwrap();
        let metrics = server.metrics.unwrap();
        let token = server.token("zorgverlener").to_owned();
        tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_add(100));
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let at = if rng.below(4) == 0 { metrics } else { fhir };
                attack_http(&mut rng, at, &token, &mut tally).await;
            }
            tally
        })
    };
    let mut tally = Tally::default();
    for attacker in grpc_attackers.into_iter().chain([http_attacker]) {
        let done = attacker.await.unwrap();
        tally.connections += done.connections;
        tally.complete_calls += done.complete_calls;
        tally.unanswered_calls += done.unanswered_calls;
    }
    let _ = stop.send(true);
    let reads = canary.await.unwrap();
    eprintln!("bad bytes: {tally:?}, the family's reads: {reads}");

    assert!(server.is_running(), "the server is gone");
    assert!(
        tally.connections > 0 && tally.complete_calls > 0,
        "{tally:?}"
    );
    assert_eq!(
        tally.unanswered_calls, 0,
        "complete calls went unanswered: {tally:?}"
    );
    assert!(
        reads >= seconds * 5,
        "the family read only {reads} times in {seconds} s"
    );
    // Still answering, and the log is clean.
    let timeline = naast_tests::full_timeline(&server, &home).await;
    assert!(!timeline.is_empty());
    drop(family);
    let stopped = tokio::task::spawn_blocking(move || server.terminate());
    let status = tokio::time::timeout(Duration::from_secs(60), stopped)
        .await
        .expect("SIGTERM did not stop the server")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let panics = logged.matches("panicked").count();
    assert_eq!(
        panics,
        0,
        "the server panicked {panics} times: {}",
        logged
            .lines()
            .filter(|l| l.contains("panicked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

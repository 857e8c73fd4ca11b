//! Crash safety at the process level: a child appends without pause and reports each
//! acknowledged append; it is SIGKILLed at random moments, and after every kill the data
//! directory is reopened and checked: every acknowledged event is there at the position it was
//! acknowledged at, no append is half there, positions are gap-free and the hash chain verifies.
//! On sled, and on PostgreSQL (a throwaway cluster, which every other round crashes too, with
//! its WAL writer slowed so that anything not truly made durable is lost with it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_eventlog::{Direction, EventLog, Options};
use naast_tests::{Rng, workspace_bin};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

const ROUNDS: u64 = 24;

/// An acknowledged append: its first position and its event ids.
struct Ack {
    first_position: u64,
    ids: Vec<Uuid>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    let first_position = parts.next()?.parse().ok()?;
    let ids = parts
        .next()?
        .split(',')
        .map(|id| id.parse().ok())
        .collect::<Option<Vec<Uuid>>>()?;
    Some(Ack {
        first_position,
        ids,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_and_nothing_is_half_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let location = dir.path().to_str().expect("a UTF-8 temporary path");
    crash_rounds(location, ROUNDS, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_acknowledged_appends_survive_sigkill_of_the_writer() {
    let cluster = naast_pg_cluster::Cluster::start();
    crash_rounds(&cluster.database(), ROUNDS / 2, |round| {
        if round % 2 == 1 {
            cluster.crash_and_restart();
        }
    })
    .await;
}

/// `rounds` writers on the log at `location`, each killed at a random moment, then
/// `after_kill(round)`, and the log checked.
async fn crash_rounds(location: &str, rounds: u64, after_kill: impl Fn(u64)) {
    let writer = workspace_bin("eventlog-crash-writer");
    let mut rng = Rng::new(2026);
    let mut acked: Vec<Ack> = Vec::new();
    let mut rounds_with_acks = 0;
    for round in 0..rounds {
        let mut child = Command::new(&writer)
            .arg(location)
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill at a random moment once the writer is acknowledging appends (opening the log,
        // with its recovery, takes a while on a busy machine).
        let first = lines.recv_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        after_kill(round);
        reader.join().expect("reader thread");
        let all: Vec<String> = first.into_iter().chain(lines.try_iter()).collect();
        // A line cut by the kill is not an acknowledgement the child finished printing.
        let acks: Vec<Ack> = all.iter().filter_map(|l| parse_ack(l)).collect();
        rounds_with_acks += usize::from(!acks.is_empty());
        acked.extend(acks);
        let head = check(location, &acked, round).await;
        println!(
            "round {round}: {} acknowledged appends so far, {head} events in the log",
            acked.len()
        );
    }
    assert_eq!(
        rounds_with_acks, rounds as usize,
        "every round must be killed while the writer acknowledges appends"
    );
}

/// Checks the reopened log; returns how many events it holds.
async fn check(location: &str, acked: &[Ack], round: u64) -> u64 {
    let log = EventLog::open_at(location, Options::default()).expect("reopen after the kill");
    for ack in acked {
        for (i, id) in ack.ids.iter().enumerate() {
            let event = log
                .read_event(*id)
                .expect("read")
                .unwrap_or_else(|| panic!("round {round}: acknowledged event {id} is lost"));
            assert_eq!(
                event.position,
                ack.first_position + i as u64,
                "round {round}"
            );
        }
    }
    let all = log
        .read_all(0, Direction::Forwards, usize::MAX)
        .expect("read all");
    assert_eq!(all.len() as u64, log.head());
    let mut calls: HashMap<String, (usize, Vec<u64>)> = HashMap::new();
    for (i, event) in all.iter().enumerate() {
        assert_eq!(
            event.position, i as u64,
            "round {round}: positions have a gap"
        );
        let payload = String::from_utf8(event.payload.to_vec()).expect("utf-8 payload");
        let mut parts = payload.split(' ');
        let (call, _index, count) = (
            parts.next().expect("call").to_owned(),
            parts.next().expect("index"),
            parts
                .next()
                .expect("count")
                .parse::<usize>()
                .expect("count"),
        );
        let entry = calls.entry(call).or_insert((count, Vec::new()));
        entry.1.push(event.position);
    }
    for (call, (count, positions)) in &calls {
        assert_eq!(
            positions.len(),
            *count,
            "round {round}: append {call} is half there"
        );
        assert!(
            positions.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: append {call} is not contiguous"
        );
    }
    let report = log.verify().expect("verify");
    assert_eq!(report.first_break, None, "round {round}");
    assert_eq!(report.events, log.head());
    log.close().await;
    report.events
}

//! Many writers at once: optimistic concurrency picks exactly one winner per revision, and the
//! global order stays gap-free.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

mod common;

use common::{events, sled_log};
use naast_eventlog::{Direction, Durability, Error, ExpectedRevision};
use std::collections::HashMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_one_stream_get_exactly_one_winner_per_revision() {
    let (log, _dir) = sled_log(Durability::Durable);
    const WRITERS: usize = 16;
    const ROUNDS: usize = 30;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut conflicts = 0;
            for _ in 0..ROUNDS {
                let current = log.stream_revision("household").expect("revision");
                let expected = current.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                let mut batch = events(1);
                batch[0].payload = format!("writer {writer}").into_bytes().into();
                match log.append("household", expected, batch).await {
                    Ok(outcome) => wins.push((outcome.first_revision, writer)),
                    Err(Error::WrongExpectedRevision { actual, .. }) => {
                        assert!(
                            actual != current,
                            "a conflict reports the revision that won"
                        );
                        conflicts += 1;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            (wins, conflicts)
        }));
    }
    let mut winners: HashMap<u64, usize> = HashMap::new();
    let mut total_conflicts = 0;
    for task in tasks {
        let (wins, conflicts) = task.await.expect("task");
        total_conflicts += conflicts;
        for (revision, writer) in wins {
            assert!(
                winners.insert(revision, writer).is_none(),
                "revision {revision} was won twice"
            );
        }
    }
    let stored = log
        .read_stream("household", 0, Direction::Forwards, usize::MAX)
        .expect("read");
    assert_eq!(
        stored.len(),
        winners.len(),
        "every win is stored, nothing else"
    );
    assert_eq!(stored.len() + total_conflicts, WRITERS * ROUNDS);
    for event in &stored {
        let writer = winners[&event.revision];
        assert_eq!(
            event.payload,
            format!("writer {writer}").as_bytes(),
            "no lost update"
        );
    }
    assert_eq!(log.verify().expect("verify").first_break, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_many_streams_keep_global_positions_gap_free() {
    let (log, _dir) = sled_log(Durability::Durable);
    const STREAMS: usize = 32;
    const APPENDS: usize = 40;
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("household-{s}");
            for i in 0..APPENDS {
                let expected = if i == 0 {
                    ExpectedRevision::NoStream
                } else {
                    ExpectedRevision::Exact((i * 2 - 1) as u64)
                };
                log.append(&stream, expected, events(2))
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let all = log
        .read_all(0, Direction::Forwards, usize::MAX)
        .expect("read");
    assert_eq!(all.len(), STREAMS * APPENDS * 2);
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event.position, i as u64);
    }
    // One append's two events are adjacent in the global order.
    for pair in all.chunks(2) {
        assert_eq!(pair[0].stream_id, pair[1].stream_id);
        assert_eq!(pair[0].revision + 1, pair[1].revision);
    }
    let mut next: HashMap<&str, u64> = HashMap::new();
    for event in &all {
        let n = next.entry(&event.stream_id).or_default();
        assert_eq!(event.revision, *n);
        *n += 1;
    }
    let report = log.verify().expect("verify");
    assert_eq!(
        (report.events, report.streams, report.first_break),
        ((STREAMS * APPENDS * 2) as u64, STREAMS as u64, None)
    );
}

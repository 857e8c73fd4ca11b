//! The engine on PostgreSQL against a real, throwaway PostgreSQL cluster: several writers on one
//! database, a sole writer, and everything a reopen must find (the model test in `model.rs` runs the log's
//! whole contract against it; the crash test in the workspace's `tests` kills its writer).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

mod common;

use naast_eventlog::{Direction, EventLog, ExpectedRevision, Options};
use naast_pg_cluster::Cluster;

/// Three logs on one database stand for three naast nodes: their writers take turns under the
/// commit lock, each reading what the others committed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_writers_keep_one_gapless_order_and_every_subscriber_sees_every_commit_once() {
    const NODES: usize = 3;
    const TASKS: usize = 4;
    const APPENDS: usize = 25;
    const STREAMS: usize = 3;
    let cluster = Cluster::start();
    let url = cluster.database();
    let logs: Vec<EventLog> = (0..NODES)
        .map(|_| EventLog::open_postgres(&url, Options::default()).expect("open"))
        .collect();
    let mut subscriptions: Vec<_> = logs.iter().map(|log| log.subscribe_all(0)).collect();

    // Every task appends to the same few streams through its node, each append expecting the
    // revision it last saw: a node that decided on a revision another node has moved past is
    // refused, and tries again on the revision it is told.
    let mut tasks = Vec::new();
    for (node, log) in logs.iter().enumerate() {
        for task in 0..TASKS {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut refusals = 0_usize;
                for i in 0..APPENDS {
                    let stream = format!("household-{}", (node + task + i) % STREAMS);
                    let mut expected = match log.stream_revision(&stream).expect("revision") {
                        Some(revision) => ExpectedRevision::Exact(revision),
                        None => ExpectedRevision::NoStream,
                    };
                    let events = common::events(2);
                    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
                    loop {
                        match log.append(&stream, expected, events.clone()).await {
                            Ok(outcome) => {
                                acknowledged.push((stream.clone(), ids.clone(), outcome));
                                break;
                            }
                            Err(naast_eventlog::Error::WrongExpectedRevision {
                                actual, ..
                            }) => {
                                refusals += 1;
                                expected = actual
                                    .map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                            }
                            Err(e) => panic!("append through node {node}: {e}"),
                        }
                    }
                }
                (acknowledged, refusals)
            }));
        }
    }
    let mut acknowledged = Vec::new();
    let mut refusals = 0;
    for task in tasks {
        let (done, refused) = task.await.expect("task");
        acknowledged.extend(done);
        refusals += refused;
    }
    let total = (NODES * TASKS * APPENDS * 2) as u64;
    assert_eq!(acknowledged.len(), NODES * TASKS * APPENDS);
    // Twelve writers on three streams: some decided on a revision another node had moved.
    assert!(
        refusals > 0,
        "no append was ever refused for a stale revision"
    );

    // Every position was given once, and each append's events are one after the other.
    let mut positions: Vec<u64> = acknowledged
        .iter()
        .flat_map(|(_, _, o)| o.first_position..=o.last_position)
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (0..total).collect::<Vec<_>>());

    // Each node's subscriber sees every commit of every node, once, in the one order.
    let mut seen_by_node = Vec::new();
    for (node, subscription) in subscriptions.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while (seen.len() as u64) < total {
            let event =
                tokio::time::timeout(std::time::Duration::from_secs(30), subscription.next())
                    .await
                    .unwrap_or_else(|_| panic!("node {node} saw {} of {total} events", seen.len()))
                    .expect("next");
            assert_eq!(
                event.position,
                seen.len() as u64,
                "node {node}: out of order"
            );
            seen.push((event.id, event.stream_id.clone(), event.revision));
        }
        seen_by_node.push(seen);
    }
    assert!(
        seen_by_node.windows(2).all(|w| w[0] == w[1]),
        "the nodes saw different orders"
    );

    // Each stream's revisions run on without a gap or a repeat, across nodes.
    for stream in 0..STREAMS {
        let stream = format!("household-{stream}");
        let revisions: Vec<u64> = seen_by_node[0]
            .iter()
            .filter(|(_, s, _)| *s == stream)
            .map(|(_, _, r)| *r)
            .collect();
        assert_eq!(
            revisions,
            (0..revisions.len() as u64).collect::<Vec<_>>(),
            "{stream}"
        );
    }
    // Every acknowledged event is where its append said.
    let by_position: std::collections::HashMap<u64, _> = seen_by_node[0]
        .iter()
        .enumerate()
        .map(|(at, seen)| (at as u64, seen.clone()))
        .collect();
    for (stream, ids, outcome) in &acknowledged {
        for (i, id) in ids.iter().enumerate() {
            let (seen_id, seen_stream, revision) =
                &by_position[&(outcome.first_position + i as u64)];
            assert_eq!((seen_id, seen_stream), (id, stream));
            assert_eq!(*revision, outcome.first_revision + i as u64);
        }
    }

    // A retry through another node is answered from the log, not appended again.
    let (stream, ids, outcome) = &acknowledged[0];
    let retry: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut event = common::event("GoalSet", "retried");
            event.id = *id;
            event
        })
        .collect();
    let replayed = logs[NODES - 1]
        .append(stream, ExpectedRevision::Any, retry)
        .await
        .expect("retry");
    assert!(replayed.replayed);
    assert_eq!(replayed.first_position, outcome.first_position);

    for log in &logs {
        assert_eq!(log.head(), total);
        assert_eq!(log.verify().expect("verify").first_break, None);
        log.close().await;
    }
}

/// What one process appended is read by another at once after `read_the_others`, however soon:
/// a decision made after it rests on no older view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_read_the_others_a_process_sees_what_another_just_committed() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let a = EventLog::open_postgres(&url, Options::default()).expect("open");
    let b = EventLog::open_postgres(&url, Options::default()).expect("open");
    for i in 0..50_u64 {
        a.append("household-a", ExpectedRevision::Any, common::events(1))
            .await
            .expect("append");
        b.read_the_others().await.expect("read the others");
        assert_eq!(
            b.stream_revision("household-a").expect("revision"),
            Some(i),
            "append {i} not read"
        );
    }
    a.close().await;
    b.close().await;
}

/// A log whose writing connection PostgreSQL dropped (a restart, a failover) can write nothing
/// more: its first append fails and the log says it failed (the service restarts in place on
/// that), and a log opened again goes on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_lost_its_connection_says_so_and_a_reopened_one_goes_on() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let log = EventLog::open_postgres(&url, Options::default()).expect("open");
    log.append("household-a", ExpectedRevision::NoStream, common::events(2))
        .await
        .expect("append");
    cluster.crash_and_restart();
    let failed = log
        .append("household-a", ExpectedRevision::Exact(1), common::events(1))
        .await;
    assert!(failed.is_err(), "an append on a lost connection succeeded");
    assert!(log.failure().is_some(), "the log does not say it failed");
    drop(log);
    let log = EventLog::open_postgres(&url, Options::default()).expect("open again");
    log.append("household-a", ExpectedRevision::Exact(1), common::events(1))
        .await
        .expect("append after reopening");
    assert_eq!(log.head(), 3);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sole_writer_keeps_other_processes_out_and_a_closed_log_lets_the_next_one_in() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let sole = Options {
        sole_writer: true,
        ..Options::default()
    };
    let log = EventLog::open_postgres(&url, sole.clone()).expect("open");
    log.append("household-a", ExpectedRevision::NoStream, common::events(3))
        .await
        .expect("append");

    // Not even a process that would share the log gets in beside a sole writer.
    let refused = EventLog::open_postgres(&url, Options::default())
        .err()
        .expect("another process is refused");
    assert!(
        refused
            .to_string()
            .contains("one of the two must be its sole writer"),
        "{refused}"
    );

    log.close().await;
    drop(log);
    let log = EventLog::open_postgres(&url, sole).expect("open after close");
    let events = log
        .read_stream("household-a", 0, Direction::Forwards, 10)
        .expect("read");
    assert_eq!(events.len(), 3);
    // The chain goes on where it was.
    log.append("household-a", ExpectedRevision::Exact(2), common::events(1))
        .await
        .expect("append after reopen");
    assert_eq!(log.head(), 4);
    assert_eq!(log.verify().expect("verify").first_break, None);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_reached_is_named_at_open() {
    let cluster = Cluster::start();
    let url = cluster.url("no_such_database");
    let refused = EventLog::open_postgres(&url, Options::default())
        .err()
        .expect("no database, no log");
    assert!(
        refused.to_string().contains("no_such_database"),
        "{refused}"
    );
    let bad = EventLog::open_postgres("postgres://naast@/x?sslmode=wrong", Options::default())
        .err()
        .expect("a bad URL is refused");
    assert!(bad.to_string().contains("sslmode=wrong"), "{bad}");
    let bad = EventLog::open_postgres("postgres://naast@/x?colour=blue", Options::default())
        .err()
        .expect("a URL with an unknown option is refused");
    assert!(bad.to_string().contains("PostgreSQL URL"), "{bad}");
}

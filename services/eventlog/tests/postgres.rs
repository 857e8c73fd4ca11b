//! The engine on PostgreSQL against a real, throwaway PostgreSQL cluster: one writer per
//! database, and everything a reopen must find (the model test in `model.rs` runs the log's
//! whole contract against it; the crash test in the workspace's `tests` kills its writer).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

mod common;

use naast_eventlog::{Direction, EventLog, ExpectedRevision, Options};
use naast_pg_cluster::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_and_a_closed_log_lets_the_next_one_in() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let log = EventLog::open_postgres(&url, Options::default()).expect("open");
    log.append("household-a", ExpectedRevision::NoStream, common::events(3))
        .await
        .expect("append");

    // A second process (here: a second open) would decide on a head it does not own.
    let refused = EventLog::open_postgres(&url, Options::default())
        .err()
        .expect("a second writer is refused");
    assert!(
        refused
            .to_string()
            .contains("another naast process writes to this database"),
        "{refused}"
    );

    log.close().await;
    drop(log);
    let log = EventLog::open_postgres(&url, Options::default()).expect("open after close");
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
    assert!(bad.to_string().contains("PostgreSQL URL"), "{bad}");
}

//! Subscriptions: catch-up from storage, the switch to live, lagging subscribers, closing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

mod common;

use common::{events, memory_log, sled_log};
use naast_eventlog::{
    Durability, Error, EventLog, ExpectedRevision, MemoryStorage, Options, RecordedEvent,
};
use std::sync::Arc;
use std::time::Duration;

async fn next(sub: &mut naast_eventlog::Subscription) -> RecordedEvent {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("an event within 30 s")
        .expect("subscription event")
}

/// Writers append while the subscriber is catching up; it must see each position exactly once,
/// in order.
async fn all_events_exactly_once_under_concurrent_appends(log: EventLog) {
    log.append("before", ExpectedRevision::Any, events(500))
        .await
        .expect("seed");
    const WRITERS: usize = 8;
    const APPENDS: usize = 150;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let log = log.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS {
                log.append(&format!("w{w}"), ExpectedRevision::Any, events(1 + i % 3))
                    .await
                    .expect("append");
            }
        }));
    }
    let mut sub = log.subscribe_all(0);
    let total = 500 + WRITERS * (0..APPENDS).map(|i| 1 + i % 3).sum::<usize>();
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        seen.push(next(&mut sub).await);
    }
    for w in writers {
        w.await.expect("writer");
    }
    for (i, event) in seen.iter().enumerate() {
        assert_eq!(event.position, i as u64, "in order, no gap, no duplicate");
    }
    assert_eq!(
        seen,
        log.read_all(0, naast_eventlog::Direction::Forwards, usize::MAX)
            .expect("read")
    );
    // Nothing more arrives until something is appended.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), sub.next())
            .await
            .is_err()
    );
    assert!(sub.is_live());
    log.append("after", ExpectedRevision::Any, events(1))
        .await
        .expect("append");
    assert_eq!(next(&mut sub).await.position, total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_then_live_delivers_every_event_once_on_sled() {
    let (log, _dir) = sled_log(Durability::Durable);
    all_events_exactly_once_under_concurrent_appends(log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_then_live_delivers_every_event_once_on_postgres() {
    let cluster = naast_pg_cluster::Cluster::start();
    let log = EventLog::open_postgres(&cluster.database(), Options::default()).expect("open");
    all_events_exactly_once_under_concurrent_appends(log).await;
}

/// A live buffer of two batches: the slow subscriber overflows it again and again.
fn lagging_options() -> Options {
    Options {
        live_buffer_batches: 2,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_subscriber_falls_back_to_storage_and_loses_nothing() {
    let log =
        EventLog::with_storage(Arc::new(MemoryStorage::new()), lagging_options()).expect("open");
    falls_back_and_loses_nothing(log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_a_lagging_subscriber_falls_back_to_storage_and_loses_nothing() {
    let cluster = naast_pg_cluster::Cluster::start();
    let log = EventLog::open_postgres(&cluster.database(), lagging_options()).expect("open");
    falls_back_and_loses_nothing(log).await;
}

async fn falls_back_and_loses_nothing(log: EventLog) {
    let mut sub = log.subscribe_all(0);
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                log.append("s", ExpectedRevision::Any, events(2))
                    .await
                    .expect("append");
            }
        })
    };
    let mut last = None;
    for i in 0..800u64 {
        let event = next(&mut sub).await;
        assert_eq!(event.position, i);
        assert_eq!(event.revision, i);
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await; // be slow
        }
        last = Some(event.position);
    }
    writer.await.expect("writer");
    assert_eq!(last, Some(799));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_subscription_sees_only_its_stream_from_the_given_revision() {
    let log = memory_log();
    log.append("a", ExpectedRevision::Any, events(5))
        .await
        .expect("append");
    log.append("b", ExpectedRevision::Any, events(5))
        .await
        .expect("append");
    let mut sub = log.subscribe_stream("a", 3).expect("subscribe");
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                let stream = if i % 2 == 0 { "a" } else { "b" };
                log.append(stream, ExpectedRevision::Any, events(1))
                    .await
                    .expect("append");
            }
        })
    };
    for revision in 3..55u64 {
        let event = next(&mut sub).await;
        assert_eq!((event.stream_id.as_str(), event.revision), ("a", revision));
    }
    writer.await.expect("writer");
    assert!(matches!(
        log.subscribe_stream("", 0),
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn a_subscription_from_the_head_sees_only_new_events() {
    let log = memory_log();
    log.append("s", ExpectedRevision::Any, events(3))
        .await
        .expect("append");
    let mut sub = log.subscribe_all(log.head());
    log.append("s", ExpectedRevision::Any, events(1))
        .await
        .expect("append");
    assert_eq!(next(&mut sub).await.position, 3);
}

#[tokio::test]
async fn closing_the_log_ends_subscriptions_after_what_was_committed() {
    let log = memory_log();
    log.append("s", ExpectedRevision::Any, events(3))
        .await
        .expect("append");
    let mut sub = log.subscribe_all(0);
    assert_eq!(next(&mut sub).await.position, 0);
    log.close().await;
    assert_eq!(next(&mut sub).await.position, 1);
    assert_eq!(next(&mut sub).await.position, 2);
    let end = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
    assert_eq!(end.expect("ends promptly"), Err(Error::Closed));
}

//! Model-based property tests: random sequences of appends and reads against the real log and a
//! plain in-memory model of what an event log must do; every answer must agree.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

mod common;

use naast_eventlog::{
    AppendOutcome, Direction, Durability, END, Error, EventLog, ExpectedRevision, MemoryStorage,
    NewEvent, Options, RecordedEvent,
};
use proptest::prelude::*;
use std::sync::Arc;

const STREAMS: [&str; 4] = ["household-a", "household-b", "household-ab", "h"];

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        expected: ExpectedRevision,
        count: usize,
        /// Answered once written rather than once durable (`append_deferred`): the same
        /// outcome, the same log.
        deferred: bool,
    },
    /// Makes everything appended durable.
    Sync,
    /// Retries an earlier append (by index, modulo the number so far) with its very events.
    Retry { call: usize },
    /// Appends new events plus one id of an earlier append.
    ReuseId { stream: usize, call: usize },
    ReadStream {
        stream: usize,
        from: u64,
        direction: Direction,
        limit: usize,
    },
    ReadAll {
        from: u64,
        direction: Direction,
        limit: usize,
    },
}

fn expected() -> impl Strategy<Value = ExpectedRevision> {
    prop_oneof![
        Just(ExpectedRevision::Any),
        Just(ExpectedRevision::NoStream),
        Just(ExpectedRevision::StreamExists),
        (0u64..6).prop_map(ExpectedRevision::Exact),
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Forwards), Just(Direction::Backwards)]
}

fn from() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..12, Just(END)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..STREAMS.len(), expected(), 1usize..4, any::<bool>())
            .prop_map(|(stream, expected, count, deferred)| Op::Append { stream, expected, count, deferred }),
        1 => Just(Op::Sync),
        1 => any::<usize>().prop_map(|call| Op::Retry { call }),
        1 => (0..STREAMS.len(), any::<usize>()).prop_map(|(stream, call)| Op::ReuseId { stream, call }),
        2 => (0..STREAMS.len(), from(), direction(), 1usize..6)
            .prop_map(|(stream, from, direction, limit)| Op::ReadStream { stream, from, direction, limit }),
        2 => (from(), direction(), 1usize..6)
            .prop_map(|(from, direction, limit)| Op::ReadAll { from, direction, limit }),
    ]
}

/// What the log must hold: events in position order.
#[derive(Default)]
struct Model {
    events: Vec<(String, NewEvent, u64)>,
}

impl Model {
    fn last_revision(&self, stream: &str) -> Option<u64> {
        self.events
            .iter()
            .rev()
            .find(|(s, _, _)| s == stream)
            .map(|(_, _, r)| *r)
    }

    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedRevision,
        batch: &[NewEvent],
    ) -> Result<AppendOutcome, Error> {
        let found: Vec<Option<usize>> = batch
            .iter()
            .map(|e| self.events.iter().position(|(_, m, _)| m.id == e.id))
            .collect();
        if let Some(i) = found.iter().position(Option::is_some) {
            let first = found[0];
            let is_replay = first.is_some()
                && found.iter().enumerate().all(|(k, p)| {
                    p.zip(first)
                        .is_some_and(|(p, f)| p == f + k && self.events[p].0 == stream)
                });
            if !is_replay {
                return Err(Error::DuplicateEventId { id: batch[i].id });
            }
            let f = first.unwrap_or_default();
            let n = batch.len();
            return Ok(AppendOutcome {
                first_revision: self.events[f].2,
                last_revision: self.events[f + n - 1].2,
                first_position: f as u64,
                last_position: (f + n - 1) as u64,
                replayed: true,
            });
        }
        let actual = self.last_revision(stream);
        if !expected.admits(actual) {
            return Err(Error::WrongExpectedRevision {
                stream_id: stream.into(),
                expected,
                actual,
            });
        }
        let first_revision = actual.map_or(0, |r| r + 1);
        let first_position = self.events.len() as u64;
        for (k, e) in batch.iter().enumerate() {
            self.events
                .push((stream.into(), e.clone(), first_revision + k as u64));
        }
        let n = batch.len() as u64;
        Ok(AppendOutcome {
            first_revision,
            last_revision: first_revision + n - 1,
            first_position,
            last_position: first_position + n - 1,
            replayed: false,
        })
    }

    fn read(&self, picked: Vec<usize>) -> Vec<(String, uuid::Uuid, u64, u64, Vec<u8>)> {
        picked
            .into_iter()
            .map(|p| {
                let (s, e, r) = &self.events[p];
                (s.clone(), e.id, *r, p as u64, e.payload.to_vec())
            })
            .collect()
    }

    fn read_all(
        &self,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Vec<(String, uuid::Uuid, u64, u64, Vec<u8>)> {
        let n = self.events.len();
        let picked: Vec<usize> = match direction {
            Direction::Forwards => (0..n).filter(|p| *p as u64 >= from).take(limit).collect(),
            Direction::Backwards => (0..n)
                .rev()
                .filter(|p| *p as u64 <= from)
                .take(limit)
                .collect(),
        };
        self.read(picked)
    }

    fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Vec<(String, uuid::Uuid, u64, u64, Vec<u8>)> {
        let n = self.events.len();
        let in_stream = |p: &usize| self.events[*p].0 == stream;
        let picked: Vec<usize> = match direction {
            Direction::Forwards => (0..n)
                .filter(in_stream)
                .filter(|p| self.events[*p].2 >= from)
                .take(limit)
                .collect(),
            Direction::Backwards => (0..n)
                .rev()
                .filter(in_stream)
                .filter(|p| self.events[*p].2 <= from)
                .take(limit)
                .collect(),
        };
        self.read(picked)
    }
}

fn summary(events: Vec<RecordedEvent>) -> Vec<(String, uuid::Uuid, u64, u64, Vec<u8>)> {
    events
        .into_iter()
        .map(|e| {
            (
                e.stream_id,
                e.id,
                e.revision,
                e.position,
                e.payload.to_vec(),
            )
        })
        .collect()
}

fn new_events(count: usize, seq: &mut u64) -> Vec<NewEvent> {
    (0..count)
        .map(|_| {
            *seq += 1;
            NewEvent::new("Noted", format!("note {seq}").into_bytes())
        })
        .collect()
}

async fn check(log: &EventLog, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut calls: Vec<(usize, ExpectedRevision, Vec<NewEvent>)> = Vec::new();
    let mut seq = 0;
    for op in ops {
        match op.clone() {
            Op::Append {
                stream,
                expected,
                count,
                deferred,
            } => {
                let batch = new_events(count, &mut seq);
                let want = model.append(STREAMS[stream], expected, &batch);
                let got = if deferred {
                    log.append_deferred(STREAMS[stream], expected, batch.clone())
                        .await
                } else {
                    log.append(STREAMS[stream], expected, batch.clone()).await
                };
                prop_assert_eq!(got, want, "{:?}", op);
                calls.push((stream, expected, batch));
            }
            Op::Sync => prop_assert!(log.sync().await.is_ok(), "a sync of a healthy log succeeds"),
            Op::Retry { call } if !calls.is_empty() => {
                let (stream, expected, batch) = calls[call % calls.len()].clone();
                let want = model.append(STREAMS[stream], expected, &batch);
                let got = log.append(STREAMS[stream], expected, batch).await;
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::ReuseId { stream, call } if !calls.is_empty() => {
                let mut batch = new_events(1, &mut seq);
                let old = &calls[call % calls.len()].2;
                batch.push(old[call % old.len()].clone());
                let want = model.append(STREAMS[stream], ExpectedRevision::Any, &batch);
                let got = log
                    .append(STREAMS[stream], ExpectedRevision::Any, batch)
                    .await;
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::Retry { .. } | Op::ReuseId { .. } => {}
            Op::ReadStream {
                stream,
                from,
                direction,
                limit,
            } => {
                let got = log
                    .read_stream(STREAMS[stream], from, direction, limit)
                    .map(summary);
                prop_assert_eq!(
                    got,
                    Ok(model.read_stream(STREAMS[stream], from, direction, limit)),
                    "{:?}",
                    op
                );
            }
            Op::ReadAll {
                from,
                direction,
                limit,
            } => {
                let got = log.read_all(from, direction, limit).map(summary);
                prop_assert_eq!(got, Ok(model.read_all(from, direction, limit)), "{:?}", op);
            }
        }
    }
    prop_assert_eq!(log.head(), model.events.len() as u64);
    for stream in STREAMS {
        prop_assert_eq!(log.stream_revision(stream), Ok(model.last_revision(stream)));
    }
    let report = log
        .verify()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(report.first_break, None);
    prop_assert_eq!(report.events, model.events.len() as u64);
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_memory_engine_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        runtime().block_on(async {
            let log = EventLog::with_storage(Arc::new(MemoryStorage::new()), Options::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            check(&log, &ops).await
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn sled_agrees_with_the_model_and_after_a_reopen(ops in proptest::collection::vec(op(), 1..60)) {
        runtime().block_on(async {
            let (log, dir) = common::sled_log(Durability::Async);
            check(&log, &ops).await?;
            let before = log.read_all(0, Direction::Forwards, usize::MAX).map(summary);
            log.close().await;
            drop(log);
            let log = EventLog::open(dir.path(), Options::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(log.read_all(0, Direction::Forwards, usize::MAX).map(summary), before);
            prop_assert_eq!(log.verify().map(|r| r.first_break), Ok(None));
            Ok(())
        })?;
    }
}

/// The same model against the engine on PostgreSQL: a throwaway cluster for the test, a fresh
/// database per case (fewer cases than sled's, as each makes a database).
#[test]
fn postgres_agrees_with_the_model_and_after_a_reopen() {
    let cluster = naast_pg_cluster::Cluster::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let fail = |e: naast_eventlog::Error| TestCaseError::fail(e.to_string());
    let outcome = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        runtime().block_on(async {
            let url = cluster.database();
            let log = EventLog::open_postgres(&url, Options::default()).map_err(fail)?;
            check(&log, &ops).await?;
            let before = log
                .read_all(0, Direction::Forwards, usize::MAX)
                .map(summary);
            log.close().await;
            drop(log);
            let log = EventLog::open_postgres(&url, Options::default()).map_err(fail)?;
            prop_assert_eq!(
                log.read_all(0, Direction::Forwards, usize::MAX)
                    .map(summary),
                before
            );
            prop_assert_eq!(log.verify().map(|r| r.first_break), Ok(None));
            log.close().await;
            Ok(())
        })
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

//! Appends to the event log in a data directory until killed, from several tasks at once, and
//! prints one line per acknowledged append: `ack <first position> <id>,<id>,…`.
//!
//! `eventlog-crash-writer <data dir or postgres:// URL> <seed>` appends;
//! `eventlog-crash-writer <data dir> hold` opens the log, prints `ready` and waits forever (to
//! test the directory lock).
//!
//! Each event's payload is `<call id> <index> <count>`, the call id being the first event's id,
//! so the checker can tell that every append is entirely present or entirely absent.
//!
//! A third of the appends are deferred (`append_deferred`, answered before they are durable),
//! each followed by a `sync`: such an append is acknowledged only once the sync returns.

use naast_eventlog::{EventLog, ExpectedRevision, NewEvent, Options};
use naast_tests::Rng;
use std::io::Write;
use std::process::ExitCode;

const TASKS: u64 = 6;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: eventlog-crash-writer <data dir|postgres URL> <seed|hold>");
        return ExitCode::from(64);
    };
    let log = match EventLog::open_at(dir, Options::default()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("open: {e}");
            return ExitCode::FAILURE;
        }
    };
    if mode == "hold" {
        println!("ready");
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
    }
    let seed: u64 = mode.parse().unwrap_or(0);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let log = log.clone();
        tasks.push(tokio::spawn(append_forever(log, seed * 100 + task)));
    }
    for task in tasks {
        if let Ok(Err(e)) = task.await {
            eprintln!("append: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn append_forever(log: EventLog, seed: u64) -> Result<(), naast_eventlog::Error> {
    let mut rng = Rng::new(seed);
    loop {
        let stream = format!("household-{}", rng.below(5));
        let count = 1 + rng.below(4) as usize;
        let mut events: Vec<NewEvent> = (0..count)
            .map(|_| NewEvent::new("Noted", Vec::new()))
            .collect();
        let call = events[0].id;
        for (i, event) in events.iter_mut().enumerate() {
            event.payload = format!("{call} {i} {count}").into_bytes().into();
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        // Half the appends race on an exact revision, the rest take any.
        let expected = if rng.below(2) == 0 {
            match log.stream_revision(&stream)? {
                Some(r) => ExpectedRevision::Exact(r),
                None => ExpectedRevision::NoStream,
            }
        } else {
            ExpectedRevision::Any
        };
        let appended = if rng.below(3) == 0 {
            match log.append_deferred(&stream, expected, events).await {
                Ok(outcome) => log.sync().await.map(|()| outcome),
                Err(e) => Err(e),
            }
        } else {
            log.append(&stream, expected, events).await
        };
        match appended {
            Ok(outcome) => {
                let mut out = std::io::stdout().lock();
                // Written and flushed before the next append: a line on stdout is a promise.
                let _ = writeln!(out, "ack {} {}", outcome.first_position, ids.join(","));
                let _ = out.flush();
            }
            Err(naast_eventlog::Error::WrongExpectedRevision { .. }) => {}
            Err(e) => return Err(e),
        }
    }
}

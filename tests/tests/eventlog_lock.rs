//! One data directory, one process: a second process is refused with a clear error, and the
//! directory is free again once the first process is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_eventlog::{Error, EventLog, Options};
use naast_tests::workspace_bin;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_directory_held_by_another_process_is_refused_until_that_process_is_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut holder = Command::new(workspace_bin("eventlog-crash-writer"))
        .arg(dir.path())
        .arg("hold")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "ready");

    match EventLog::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two processes opened one data directory"),
    }
    let message = Error::Locked {
        path: dir.path().to_owned(),
    }
    .to_string();
    assert!(message.contains("locked by another process"), "{message}");

    holder.kill().expect("kill the holder");
    holder.wait().expect("reap");
    EventLog::open(dir.path(), Options::default()).expect("free once the holder is gone");
}

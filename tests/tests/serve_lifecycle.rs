//! `naast serve` as the people running it see it: configuration from file, environment and flags,
//! clear refusals, a graceful stop on SIGTERM with subscriptions open, and no acknowledged event
//! lost when the process is killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::event_log_service_client::EventLogServiceClient;
use naast_tests::{Server, workspace_bin};
use std::process::Command;
use std::time::Duration;

fn append(stream: &str, body: &str) -> pb::AppendEventsRequest {
    pb::AppendEventsRequest {
        stream_id: stream.into(),
        expected: None,
        events: vec![pb::NewEvent {
            event_type: "Noted".into(),
            payload: body.as_bytes().to_vec(),
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut api = EventLogServiceClient::new(server.signed("beheerder").await);
    let mut acked = Vec::new();
    for i in 0..200 {
        let out = api
            .append_events(append(&format!("pgo-{}", i % 7), &i.to_string()))
            .await
            .unwrap()
            .into_inner();
        acked.push((out.first_position, out.event_ids[0].clone()));
    }
    server.kill();
    let server = Server::start(dir.path());
    let stored = naast_tests::all_events(&server).await;
    assert_eq!(stored.len(), acked.len());
    for (position, id) in acked {
        assert_eq!(stored[position as usize].id, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_subscriptions_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut api = EventLogServiceClient::new(server.signed("beheerder").await);
    api.append_events(append("household", "before"))
        .await
        .unwrap();
    let mut subscription = api
        .subscribe_events(pb::SubscribeEventsRequest {
            start_position: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        subscription
            .message()
            .await
            .unwrap()
            .unwrap()
            .event
            .unwrap()
            .position,
        0
    );

    let status = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || server.terminate()),
    )
    .await
    .expect("the server stops within 30 s despite the open subscription")
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let end = tokio::time::timeout(Duration::from_secs(10), subscription.message())
        .await
        .expect("the subscription ends");
    assert!(
        !matches!(end, Ok(Some(_))),
        "no event after shutdown: {end:?}"
    );

    let server = Server::start(dir.path());
    assert_eq!(naast_tests::all_events(&server).await.len(), 1);
}

#[tokio::test]
async fn settings_come_from_file_environment_and_flags_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("naast.toml");
    let from_file = dir.path().join("from-file");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = {:?}\n",
            from_file.to_str().unwrap()
        ),
    )
    .unwrap();
    // Flags beat the file: Server passes --listen 127.0.0.1:0 (the file's port 1 would fail)
    // and --data-dir, which is the directory used.
    let flag_dir = dir.path().join("from-flag");
    let server = Server::start_with(&flag_dir, &["--dev", "--config", config.to_str().unwrap()]);
    drop(server);
    assert!(flag_dir.join("LOCK").exists());

    // Without the flag, the environment beats the file.
    let env_dir = dir.path().join("from-env");
    let mut child = Command::new(workspace_bin("naast"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NAAST_DATA_DIR", &env_dir)
        .env("NAAST_DEV", "true")
        .env("NAAST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The dev issuer prints its tokens first.
    let line = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()))
        .map(Result::unwrap)
        .find(|l| l.starts_with("naast listening on"))
        .unwrap();
    assert!(line.starts_with("naast listening on 127.0.0.1:"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(env_dir.join("LOCK").exists());
    assert!(!from_file.exists(), "the file's data dir was overridden");
}

#[test]
fn unusable_settings_and_a_taken_data_dir_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let naast = workspace_bin("naast");
    let run = |args: &[&str]| {
        let out = Command::new(&naast)
            .args(args)
            .env("NAAST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["serve", "--listen", "localhost"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("\"localhost\""), "{stderr}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "data_dir = 3\n").unwrap();
    let (code, stderr) = run(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("data_dir"), "{stderr}");

    let (code, stderr) = run(&[
        "serve",
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("none.toml"), "{stderr}");

    // Nobody could sign in to a server without a trusted issuer.
    let (code, stderr) = run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("no trusted token issuer"), "{stderr}");
    let (code, stderr) = run(&["serve", "--issuer", "login.example.nl"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("login.example.nl"), "{stderr}");

    let data = dir.path().join("data");
    let _first = Server::start(&data);
    let (code, stderr) = run(&[
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("locked by another process"), "{stderr}");
}

#[test]
fn the_example_configuration_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/naast.toml");
    // The example's data_dir is a system path: the flag points it at a temporary one.
    // The example's master key file is a system path too.
    let key = naast_tests::master_key_file(dir.path());
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--config",
            example,
            "--master-key-file",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.address.ip().is_loopback());
    assert!(dir.path().join("data").join("LOCK").exists());
}

/// Clients write household notes as fast as they can while the server is killed with SIGKILL:
/// after a restart every acknowledged note is on its household's timeline, at the revision it
/// was acknowledged with, and the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_under_load_loses_no_acknowledged_command() {
    use naast_proto::pb::household_service_client::HouseholdServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let url = server.url();
    let token = server.token("ouder").to_owned();
    let mut writers = Vec::new();
    for w in 0..6 {
        let (url, token) = (url.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let mut api = HouseholdServiceClient::new(naast_tests::signed(&url, &token).await);
            let household = api
                .create_household(pb::CreateHouseholdRequest {
                    name: format!("gezin {w}"),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .household_id;
            let mut acked = Vec::new();
            for i in 0.. {
                match api
                    .create_note(pb::CreateNoteRequest {
                        household_id: household.clone(),
                        text: format!("notitie {i}"),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(out) => acked.push((
                        out.into_inner().result.unwrap().revision,
                        format!("notitie {i}"),
                    )),
                    Err(_) => break, // the server is gone
                }
            }
            (household, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill();
    let mut results = Vec::new();
    for w in writers {
        results.push(w.await.unwrap());
    }
    assert!(
        results.iter().map(|(_, a)| a.len()).sum::<usize>() > 20,
        "the writers got going before the kill"
    );

    let server = Server::start(dir.path());
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    for (household, acked) in results {
        let entries = api
            .list_timeline_entries(pb::ListTimelineEntriesRequest {
                household_id: household.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        for (revision, text) in acked {
            let entry = entries
                .iter()
                .find(|e| e.revision == revision)
                .unwrap_or_else(|| panic!("{household}: acknowledged revision {revision} is lost"));
            assert_eq!(
                entry.summary,
                format!("Notitie: {text}"),
                "{household}: revision {revision}"
            );
        }
        // Every note written has its audit record: written with it, or, when the kill fell
        // between the two, at the restart.
        let notes = entries
            .iter()
            .filter(|e| e.event_type == "NoteAdded")
            .count();
        let records = naast_tests::search_audit(
            server.signed("beheerder").await,
            pb::SearchAuditLogRequest {
                household_id: household.clone(),
                outcome: pb::AuditOutcome::Allowed as i32,
                ..Default::default()
            },
        )
        .await;
        let note_records = records
            .iter()
            .filter(|r| {
                r.operation == "/naast.v1.HouseholdService/CreateNote" || r.operation == "recovered"
            })
            .count();
        assert!(
            note_records >= notes,
            "{household}: {notes} notes, {note_records} audit records of them"
        );
    }
    drop(server);
    let verify = Command::new(workspace_bin("naast"))
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

//! `naast backup` and `naast restore` as an operator runs them: a backup of a running server
//! holding the five demo families and 100,000 generated events, taken while a family keeps
//! writing; restored into an empty directory it verifies, and every family reads on the
//! restored server exactly as it stood on the source at the revision the backup holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::event_log_service_client::EventLogServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Server, workspace_bin};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const GENERATED: usize = 100_000;
const PER_APPEND: usize = 1_000;

fn naast(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(workspace_bin("naast"))
        .args(args)
        .envs(env.iter().copied())
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn backup(server: &Server, dir: &Path, persona: &str) -> Output {
    naast(
        &["backup", path(dir), "--server", &server.url()],
        &[("NAAST_TOKEN", server.token(persona))],
    )
}

/// The households of a data directory, as its key folder names them.
fn households(data: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".key"))
                .map(str::to_owned)
        })
        .collect();
    found.sort();
    found
}

async fn household(server: &Server, id: &str, as_of_revision: Option<u64>) -> pb::Household {
    HouseholdServiceClient::new(server.signed("ouder").await)
        .get_household(pb::GetHouseholdRequest {
            household_id: id.into(),
            as_of_revision,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap()
}

async fn generate(server: &Server) {
    let mut api = EventLogServiceClient::new(server.signed("beheerder").await);
    for batch in 0..GENERATED / PER_APPEND {
        let events = (0..PER_APPEND)
            .map(|i| pb::NewEvent {
                event_type: "Measured".into(),
                payload: format!("{{\"batch\":{batch},\"i\":{i}}}").into_bytes(),
                ..Default::default()
            })
            .collect();
        api.append_events(pb::AppendEventsRequest {
            stream_id: format!("sensor-{}", batch % 10),
            events,
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

/// A note acknowledged to the family, and when.
struct Acked {
    position: u64,
    before_backup: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_writes_restores_to_the_same_families() {
    let dir = tempfile::tempdir().unwrap();
    let (source, copy, restored) = (
        dir.path().join("source"),
        dir.path().join("backup"),
        dir.path().join("restored"),
    );
    let demo = naast(&["demo", "--data-dir", path(&source)], &[]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    // The master key, kept apart from the backups: the demo's development key.
    let key_dir = dir.path().join("key");
    std::fs::create_dir(&key_dir).unwrap();
    let key = key_dir.join("master-key");
    std::fs::copy(source.join("dev-master-key"), &key).unwrap();
    let families = households(&source);
    assert_eq!(families.len(), 5, "the five demo families");

    let server = Server::start(&source);
    generate(&server).await;

    // One family keeps writing while the backup is taken.
    let writing = Arc::new(AtomicBool::new(true));
    let backup_started = Arc::new(AtomicBool::new(false));
    let writer = {
        let (writing, backup_started) = (writing.clone(), backup_started.clone());
        let channel = server.signed("ouder").await;
        let family = families[0].clone();
        tokio::spawn(async move {
            let mut api = HouseholdServiceClient::new(channel);
            let mut acked = Vec::new();
            let mut n = 0;
            while writing.load(Ordering::SeqCst) {
                n += 1;
                // Read before the call: a note acknowledged before the backup began.
                let before_backup = !backup_started.load(Ordering::SeqCst);
                let result = api
                    .create_note(pb::CreateNoteRequest {
                        household_id: family.clone(),
                        text: format!("Notitie {n} tijdens de back-up"),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .result
                    .unwrap();
                acked.push(Acked {
                    position: result.position,
                    before_backup,
                });
            }
            acked
        })
    };
    while !writer.is_finished() && server_notes_written(&server, &families[0]).await < 3 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    backup_started.store(true, Ordering::SeqCst);
    let taken = {
        let (url, token, copy) = (
            server.url(),
            server.token("beheerder").to_owned(),
            copy.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let taken = naast(
                &["backup", path(&copy), "--server", &url],
                &[("NAAST_TOKEN", &token)],
            );
            // For the runbook's figures; not a check (these machines are shared).
            eprintln!("backup took {:.2} s", started.elapsed().as_secs_f64());
            taken
        })
        .await
        .unwrap()
    };
    // A few more after it, which the backup cannot hold.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    writing.store(false, Ordering::SeqCst);
    let acked = writer.await.unwrap();
    assert!(
        taken.status.success(),
        "naast backup failed: {}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert!(copy.join("manifest.json").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("manifest.json")).unwrap()).unwrap();
    let in_backup = manifest["events"]["events"].as_u64().unwrap();
    assert!(in_backup as usize > GENERATED, "{manifest}");
    // The master key is in no part of the backup, as text or as its 32 bytes.
    let key_text = std::fs::read_to_string(&key).unwrap().trim().to_owned();
    let key_bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &key_text).unwrap();
    for part in std::fs::read_dir(&copy).unwrap() {
        let bytes = std::fs::read(part.unwrap().path()).unwrap();
        for needle in [key_text.as_bytes(), &key_bytes[..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the master key stays out of the backup"
            );
        }
    }

    let started = std::time::Instant::now();
    let restoring = naast(
        &["restore", path(&copy), "--data-dir", path(&restored)],
        &[],
    );
    eprintln!("restore took {:.2} s", started.elapsed().as_secs_f64());
    assert!(
        restoring.status.success(),
        "naast restore failed: {}",
        String::from_utf8_lossy(&restoring.stderr)
    );
    let verified = naast(&["verify", "--data-dir", path(&restored)], &[]);
    assert!(
        verified.status.success(),
        "naast verify failed on the restored data: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let verify_said = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verify_said.contains(&format!("intact: {in_backup} events")),
        "{verify_said}"
    );

    let copy_server = Server::start_with(&restored, &["--dev", "--master-key-file", path(&key)]);
    assert_eq!(households(&restored), families);
    // The log: the restored one is the source's up to the backup's head, record for record.
    let (mine, theirs) = (
        naast_tests::all_events(&copy_server).await,
        naast_tests::all_events(&server).await,
    );
    assert!(mine.len() >= GENERATED);
    assert_eq!(mine[..], theirs[..mine.len()]);
    assert!(mine.iter().all(|e| e.position < in_backup));
    assert!(theirs[mine.len()..].iter().all(|e| e.position >= in_backup));
    // Every family as it stood on the source at the revision the backup holds.
    for family in &families {
        let now = household(&copy_server, family, None).await;
        let then = household(&server, family, Some(now.revision)).await;
        assert_eq!(now, then, "household {family}");
        // Families that wrote nothing during the backup are there whole.
        if family != &families[0] {
            assert_eq!(now, household(&server, family, None).await, "{family}");
        }
        let restored_timeline = naast_tests::full_timeline(&copy_server, family).await;
        let source_timeline: Vec<_> = naast_tests::full_timeline(&server, family)
            .await
            .into_iter()
            .filter(|e| e.revision <= now.revision)
            .collect();
        assert_eq!(restored_timeline, source_timeline, "timeline of {family}");
        assert!(!restored_timeline.is_empty());
    }
    // Every note acknowledged before the backup began is there; the restored log ends at the
    // backup's head.
    let notes: std::collections::HashSet<u64> =
        naast_tests::full_timeline(&copy_server, &families[0])
            .await
            .into_iter()
            .map(|e| e.position)
            .collect();
    let before: Vec<_> = acked.iter().filter(|a| a.before_backup).collect();
    assert!(before.len() >= 3);
    for note in &before {
        assert!(
            notes.contains(&note.position),
            "note at {} lost",
            note.position
        );
    }
    for note in &acked {
        assert_eq!(notes.contains(&note.position), note.position < in_backup);
    }
    // The restored server takes new writes, chained on to the restored log.
    let more = HouseholdServiceClient::new(copy_server.signed("ouder").await)
        .create_note(pb::CreateNoteRequest {
            household_id: families[0].clone(),
            text: "Na het terugzetten".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(more.position, in_backup);
}

async fn server_notes_written(server: &Server, family: &str) -> usize {
    naast_tests::full_timeline(server, family)
        .await
        .iter()
        .filter(|e| e.summary.contains("tijdens de back-up"))
        .count()
}

#[tokio::test]
async fn only_administrators_back_up_and_a_damaged_backup_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (family, _, _) = naast_tests::household_with_client(&mut api, "Familie Bakker").await;

    // A parent may not take everyone's data: refused, recorded, nothing written but the
    // empty folder the command made.
    let refused = backup(&server, &dir.path().join("parent"), "ouder");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("only administrators make backups"), "{said}");
    assert!(!dir.path().join("parent").join("manifest.json").exists());
    let refusals: Vec<_> =
        naast_tests::search_audit(server.signed("beheerder").await, Default::default())
            .await
            .into_iter()
            .filter(|r| r.operation == "/naast.v1.OperationsService/Backup")
            .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].outcome, pb::AuditOutcome::Denied as i32);
    assert_eq!(refusals[0].user.as_ref().unwrap().subject, "dev-ouder");

    let copy = dir.path().join("backup");
    let taken = backup(&server, &copy, "beheerder");
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    // Into a folder that holds something: refused.
    let again = backup(&server, &copy, "beheerder");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty"));

    // A restore into a data directory in use is refused, and leaves it as it was.
    let busy = naast(&["restore", path(&copy), "--data-dir", path(&data)], &[]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("empty or new data directory"));

    // One flipped bit in the event log's part: refused before anything is written.
    let events = copy.join("events.log");
    let mut bytes = std::fs::read(&events).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&events, &bytes).unwrap();
    let target = dir.path().join("restored");
    let damaged = naast(&["restore", path(&copy), "--data-dir", path(&target)], &[]);
    assert!(!damaged.status.success());
    let said = String::from_utf8_lossy(&damaged.stderr);
    assert!(said.contains("events.log"), "{said}");
    assert!(!target.exists(), "nothing written for a damaged backup");

    // The family's data is untouched by all this.
    assert_eq!(households(&data), vec![family]);
}

//! The right to erasure against the real `naast serve` process: a household's events are
//! sealed with its own key at rest, erasing it destroys the key and purges its timeline, and
//! the log's hash chain still verifies — across a SIGKILL, a restart and a replay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::consent_service_client::ConsentServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Server, workspace_bin};
use std::path::Path;
use std::process::Command;
use tonic::Code;

/// Whether any file under `dir` contains `needle`.
fn found_in_files(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found_in_files(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}

async fn new_household(
    api: &mut HouseholdServiceClient<naast_proto::client::Signed>,
    name: &str,
    secret: &str,
) -> String {
    let household = api
        .create_household(pb::CreateHouseholdRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household_id;
    for i in 0..3 {
        api.create_note(pb::CreateNoteRequest {
            household_id: household.clone(),
            text: format!("{secret} {i}"),
            life_domains: vec![pb::LifeDomain::PhysicalHealth as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    household
}

async fn timeline(
    api: &mut HouseholdServiceClient<naast_proto::client::Signed>,
    household: &str,
) -> Result<Vec<pb::TimelineEntry>, tonic::Status> {
    api.list_timeline_entries(pb::ListTimelineEntriesRequest {
        household_id: household.into(),
        page_size: 100,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().entries)
}

fn naast(args: &[&str], data: &Path) -> (bool, String) {
    let out = Command::new(workspace_bin("naast"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_household_is_forgotten_and_the_log_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start(data);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let forgotten = new_household(&mut api, "Familie Vergeten", "vertrouwelijk-7f3a").await;
    let kept = new_household(&mut api, "Familie Blijft", "blijft-staan-91c2").await;
    assert_eq!(timeline(&mut api, &forgotten).await.unwrap().len(), 4);

    // At rest the events and the read models are sealed: no file holds the notes' text.
    assert!(!found_in_files(&data.join("sled"), b"vertrouwelijk-7f3a"));
    assert!(!found_in_files(
        &data.join("projections"),
        b"vertrouwelijk-7f3a"
    ));
    assert!(!found_in_files(
        &data.join("projections"),
        b"Familie Vergeten"
    ));
    // The search itself finds what is stored in the clear: the audit log names its callers.
    assert!(found_in_files(&data.join("audit"), b"dev-ouder"));
    assert!(!found_in_files(&data.join("sled"), b"Familie Vergeten"));
    let key = data.join("keys").join(format!("{forgotten}.key"));
    assert!(key.exists());
    let key_before = std::fs::read(&key).unwrap();

    // Only an owner erases; then it is gone for everyone, the owner too.
    let mut supporter = ConsentServiceClient::new(server.signed("ondersteuner").await);
    let refused = supporter
        .erase_household(pb::EraseHouseholdRequest {
            household_id: forgotten.clone(),
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut consent = ConsentServiceClient::new(server.signed("ouder").await);
    consent
        .erase_household(pb::EraseHouseholdRequest {
            household_id: forgotten.clone(),
            options: None,
        })
        .await
        .unwrap();
    assert!(!key.exists(), "the household's key is destroyed");
    let refused = timeline(&mut api, &forgotten).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = api
        .create_note(pb::CreateNoteRequest {
            household_id: forgotten.clone(),
            text: "na het wissen".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(timeline(&mut api, &kept).await.unwrap().len(), 4);

    // The audit log keeps its records of the household, which hold ids, never contents.
    let records = naast_tests::search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: forgotten.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(records.iter().any(|r| {
        r.operation == "/naast.v1.ConsentService/EraseHousehold"
            && r.outcome == pb::AuditOutcome::Allowed as i32
    }));
    let printed = format!("{records:?}");
    assert!(!printed.contains("vertrouwelijk") && !printed.contains("Vergeten"));

    // A crash, a restart: still forgotten, the other household intact. The key file is put
    // back first, as a power cut could after an unlink whose folder sync failed: the start
    // destroys it again, since the household's stream ends in its tombstone.
    server.kill();
    std::fs::write(&key, &key_before).unwrap();
    let mut server = Server::start(data);
    // The start finishes erasures as it begins to serve; the first call waits for that.
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let refused = timeline(&mut api, &forgotten).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        !key.exists(),
        "a resurrected key of an erased household survived the start"
    );
    let entries = timeline(&mut api, &kept).await.unwrap();
    assert!(entries[1].summary.contains("blijft-staan-91c2"));
    server.terminate();

    // The hash chain covers the sealed bytes, so it verifies without the key; a replay
    // rebuilds the other timelines and leaves the forgotten one empty.
    let (ok, said) = naast(&["verify"], data);
    assert!(ok, "{said}");
    assert!(said.contains("intact"), "{said}");
    let (ok, said) = naast(&["replay"], data);
    assert!(ok, "{said}");
    let mut server = Server::start(data);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    assert_eq!(timeline(&mut api, &kept).await.unwrap().len(), 4);
    let refused = timeline(&mut api, &forgotten).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    server.terminate();

    // Every byte of the data directory: nothing of the erased household's words is readable,
    // in the log, the read models (and the old segments sled keeps of them) or anywhere else.
    for words in [&b"vertrouwelijk-7f3a"[..], b"Familie Vergeten"] {
        assert!(
            !found_in_files(data, words),
            "{} found in the data directory after erasure",
            String::from_utf8_lossy(words)
        );
    }
}

//! `naast rotate-master-key` as an operator runs it: refused while the server runs; afterwards
//! the households read as before with the new key, and a server given the old key refuses to
//! start, saying why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Server, master_key_file, workspace_bin};
use std::path::Path;
use std::process::{Command, Output};

fn rotate(data: &Path, old: &Path, new: &Path) -> Output {
    Command::new(workspace_bin("naast"))
        .args(["rotate-master-key", "--data-dir"])
        .arg(data)
        .arg("--master-key-file")
        .arg(old)
        .arg("--new-master-key-file")
        .arg(new)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap()
}

fn serve_with_key(data: &Path, key: &Path) -> Server {
    Server::start_with(data, &["--dev", "--master-key-file", key.to_str().unwrap()])
}

#[tokio::test]
async fn a_rotated_master_key_reads_every_household_and_the_old_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (old, new) = (master_key_file(&a), master_key_file(&b));
    let data = dir.path().join("data");

    let mut server = serve_with_key(&data, &old);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let mut households = Vec::new();
    for name in ["Familie Bakker", "Familie Jansen"] {
        let household = api
            .create_household(pb::CreateHouseholdRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .household_id;
        api.create_note(pb::CreateNoteRequest {
            household_id: household.clone(),
            text: "keukentafelgesprek gepland".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        households.push(household);
    }
    let mut before = Vec::new();
    for household in &households {
        before.push(naast_tests::full_timeline(&server, household).await);
    }
    assert!(before.iter().all(|t| t.len() == 2), "{before:?}");

    // While the server runs, the rotation is refused and changes nothing.
    let refused = rotate(&data, &old, &new);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("locked"), "{said}");
    assert_eq!(server.terminate().code(), Some(0));

    let done = rotate(&data, &old, &new);
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(said.contains("2 household keys rewrapped"), "{said}");

    // The old key opens nothing any more, and says so before serving.
    let refused = Command::new(workspace_bin("naast"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--master-key-file")
        .arg(&old)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("master key given is not the one"), "{said}");

    // The new key reads every household as it was.
    let server = serve_with_key(&data, &new);
    for (household, was) in households.iter().zip(&before) {
        assert_eq!(&naast_tests::full_timeline(&server, household).await, was);
    }
    drop(server);
    // Rotating back works the same way; then the key it was rotated from is no longer the
    // one in use, and a rotation naming it is refused.
    let back = rotate(&data, &new, &old);
    assert!(back.status.success());
    let wrong = rotate(&data, &new, &old);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("master key given is not the one"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}

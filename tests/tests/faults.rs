//! The real `naast serve` on a disk that fills up: a small tmpfs of its own (mounting one needs
//! root, as the test command has; elsewhere the test says it cannot run and passes nothing off as
//! checked). Nothing acknowledged may be lost, the process must fail fast instead of hanging,
//! SIGTERM must stop it, and after space comes back a restart finds every acknowledged command and
//! `naast verify` tells the truth.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Longest any one call may take: far more than a healthy server needs, far less than a hang.
const CALL: Duration = Duration::from_secs(30);

/// A tmpfs mounted on a folder of its own, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// A tmpfs of `megabytes`, or `None` when this machine does not let the test mount one.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .ok()?;
        mounted.status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk but for about `leave` bytes.
    fn fill_but(&self, leave: u64) -> PathBuf {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let available: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
        let filler = self.path().join("filler");
        let size = available.saturating_sub(leave);
        std::fs::write(&filler, vec![0u8; usize::try_from(size).unwrap()]).unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

async fn note(
    api: &mut HouseholdServiceClient<naast_proto::client::Signed>,
    household: &str,
    i: usize,
) -> Result<Result<String, tonic::Status>, tokio::time::error::Elapsed> {
    let request = pb::CreateNoteRequest {
        household_id: household.into(),
        options: Some(pb::CommandOptions {
            request_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        text: format!("notitie {i}: {}", "x".repeat(2_000)),
        ..Default::default()
    };
    tokio::time::timeout(CALL, api.create_note(request))
        .await
        .map(|answer| answer.map(|r| r.into_inner().note_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_nothing_acknowledged_and_hangs_nothing() {
    let Some(disk) = SmallDisk::mount(96) else {
        eprintln!("cannot mount a tmpfs here (root is needed): the full-disk test did not run");
        return;
    };
    let data = disk.path().join("data");
    let mut server = Server::start(&data);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut api, "Familie Vol").await;
    // Some room, then none.
    let filler = disk.fill_but(2 * 1024 * 1024);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..5_000 {
        match note(&mut api, &home, i).await {
            Err(_) => panic!("a command hung on a full disk (no answer within {CALL:?})"),
            Ok(Ok(id)) => acknowledged.push(id),
            Ok(Err(status)) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::Internal | tonic::Code::Unavailable
        ),
        "{refused:?}"
    );

    // Space comes back: the server answers at once (refusing writes until restarted), and
    // SIGTERM stops it.
    std::fs::remove_file(&filler).unwrap();
    match note(&mut api, &home, usize::MAX).await {
        Err(_) => panic!("a command hung after space came back"),
        Ok(Ok(id)) => acknowledged.push(id),
        Ok(Err(status)) => assert!(
            matches!(
                status.code(),
                tonic::Code::Internal | tonic::Code::Unavailable
            ),
            "{status:?}"
        ),
    }
    drop(api);
    let stopped = tokio::task::spawn_blocking(move || {
        server.terminate();
    });
    tokio::time::timeout(CALL, stopped)
        .await
        .expect("SIGTERM did not stop the server on a disk that was full")
        .unwrap();

    // A restart finds every acknowledged note, and verify tells the truth.
    let server = Server::start(&data);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let household = api
        .get_household(pb::GetHouseholdRequest {
            household_id: home.clone(),
            min_position: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();
    let timeline = api
        .list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: home,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let notes = timeline
        .iter()
        .filter(|e| e.kind == pb::TimelineEntryKind::Note as i32)
        .count();
    assert!(
        notes >= acknowledged.len(),
        "{} notes acknowledged, {notes} on the timeline after the restart",
        acknowledged.len()
    );
    assert!(household.revision >= acknowledged.len() as u64);
    drop(api);
    drop(server);
    let verified = Command::new(naast_tests::workspace_bin("naast"))
        .args(["verify", "--dev", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(said.contains("intact"), "{said}");
}

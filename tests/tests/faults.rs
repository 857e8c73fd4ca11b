//! The real `naast serve` on a disk that fills up: a small tmpfs of its own (mounting one needs
//! root, as the test command has; elsewhere the test says it cannot run and passes nothing off as
//! checked). Below its reserve of free space, commands are refused cleanly while reads (and their
//! audit records) go on, and commands are accepted again once space is made. When the disk fills
//! to the last byte anyway, nothing hangs and nothing acknowledged is lost; once space is back the
//! server restarts itself in place and serves again, and `naast verify` finds the log intact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tonic_types::StatusExt as _;

/// Longest any one call may take: far more than a healthy server needs, far less than a hang.
const CALL: Duration = Duration::from_secs(30);

/// The reserve of free space the server is configured to keep.
const RESERVE_MB: u64 = 24;

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

    fn free(&self) -> u64 {
        naast_eventlog::space::free_bytes(self.path()).unwrap()
    }

    /// Fills the disk with a file of its own until about `leave` bytes are free (or none are:
    /// the server writes meanwhile, so the file stops growing where the disk is full).
    fn fill_but(&self, leave: u64, name: &str) -> std::path::PathBuf {
        let filler = self.path().join(name);
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            let free = self.free();
            if free <= leave {
                break;
            }
            let size = usize::try_from((free - leave).min(chunk.len() as u64)).unwrap();
            match file.write_all(&chunk[..size]) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC: full
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A loopback address no one listens on now, for a server that must come back on the same one.
fn free_address() -> String {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().to_string()
}

async fn note(
    api: &mut HouseholdServiceClient<naast_proto::client::Signed>,
    household: &str,
    i: usize,
) -> Result<Result<String, tonic::Status>, tokio::time::error::Elapsed> {
    let request = pb::CreateNoteRequest {
        household_id: household.into(),
        options: Some(pb::CommandOptions {
            // One id per note, so that a retry of it is recognised as one.
            request_id: uuid::Uuid::from_u128(0x6e61_6173_7400 + i as u128).to_string(),
            ..Default::default()
        }),
        text: format!("notitie {i}: {}", "x".repeat(2_000)),
        ..Default::default()
    };
    tokio::time::timeout(CALL, api.create_note(request))
        .await
        .map(|answer| answer.map(|r| r.into_inner().note_id))
}

/// The household's revision, read with `request_id` as the call's request id.
async fn revision(
    api: &mut HouseholdServiceClient<naast_proto::client::Signed>,
    household: &str,
    request_id: &str,
) -> Result<u64, tonic::Status> {
    let mut request = tonic::Request::new(pb::GetHouseholdRequest {
        household_id: household.into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    let answer = tokio::time::timeout(CALL, api.get_household(request))
        .await
        .expect("a read hung on a full disk");
    answer.map(|r| r.into_inner().household.unwrap().revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_commands_keeps_reads_and_recovers_on_its_own() {
    let Some(disk) = SmallDisk::mount(128) else {
        eprintln!("cannot mount a tmpfs here (root is needed): the full-disk test did not run");
        return;
    };
    let settings = tempfile::tempdir().unwrap();
    let config = settings.path().join("naast.toml");
    std::fs::write(
        &config,
        format!("[limits]\nmin_free_disk_mb = {RESERVE_MB}\n"),
    )
    .unwrap();
    let (listen, metrics) = (free_address(), free_address());
    let data = disk.path().join("data");
    let mut server = Server::start_with(
        &data,
        &[
            "--dev",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &listen,
            "--metrics-listen",
            &metrics,
        ],
    );
    let pid = server.pid();
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut api, "Familie Vol").await;
    let mut acknowledged = Vec::new();
    for i in 0..3 {
        note(&mut api, &home, i).await.unwrap().unwrap();
        acknowledged.push(i);
    }

    // Below the reserve: every command is refused, saying why, and writes nothing; reads are
    // answered, each with its audit record.
    let filler = disk.fill_but(8 * 1024 * 1024, "filler");
    let before = revision(&mut api, &home, "voor").await.unwrap();
    for i in 0..20 {
        let refused = note(&mut api, &home, 100 + i).await.unwrap().unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(refused.message().contains("disk"), "{refused:?}");
        let info = refused.get_details_error_info().expect("no ErrorInfo");
        assert_eq!(info.reason, "DISK_FULL");
        let free: u64 = info.metadata["free_bytes"].parse().unwrap();
        assert!(free < RESERVE_MB * 1024 * 1024, "{free}");
    }
    let mut reads = Vec::new();
    for i in 0..20 {
        let id = format!("lezen-vol-{i}");
        assert_eq!(revision(&mut api, &home, &id).await.unwrap(), before);
        reads.push(id);
    }
    let timeline = naast_tests::full_timeline(&server, &home).await;
    let notes = |entries: &[pb::TimelineEntry]| {
        entries
            .iter()
            .filter(|e| e.kind == pb::TimelineEntryKind::Note as i32)
            .count()
    };
    assert_eq!(notes(&timeline), acknowledged.len());
    let records = naast_tests::search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: home.clone(),
            ..Default::default()
        },
    )
    .await;
    for read in &reads {
        assert!(
            records.iter().any(|r| &r.request_id == read),
            "the read {read} answered on a nearly full disk has no audit record"
        );
    }
    let scraped = naast_tests::scrape_metrics(&server).await;
    assert!(scraped[r#"naast_limit_refusals_total{limit="disk"}"#] >= 20.0);
    assert!(scraped[r#"naast_disk_free_bytes{log="events"}"#] < (RESERVE_MB * 1024 * 1024) as f64);

    // Space made: commands are accepted again by the same process, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        match note(&mut api, &home, 200).await.unwrap() {
            Ok(_) => {
                acknowledged.push(200);
                break;
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < CALL,
                    "commands still refused: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    assert!(
        !server
            .printed_later()
            .iter()
            .any(|l| l.starts_with("naast listening on")),
        "the server restarted to accept commands again"
    );

    // Full to the last byte: reads need audit records that no longer fit, so they are
    // refused as unavailable (never answered unaudited, never an internal error, never a hang);
    // commands are refused as before.
    let filler = disk.fill_but(0, "filler");
    let mut unavailable = 0;
    for i in 0..400 {
        match revision(&mut api, &home, &format!("lezen-leeg-{i}")).await {
            Ok(revision) => assert_eq!(revision, before + 1),
            Err(status) if status.code() == tonic::Code::Unavailable => unavailable += 1,
            Err(status) => panic!("a read on a full disk: {status:?}"),
        }
        if i % 50 == 0 {
            let refused = note(&mut api, &home, 300 + i).await.unwrap().unwrap_err();
            assert!(
                matches!(
                    refused.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                ),
                "{refused:?}"
            );
        }
        if unavailable > 0 {
            break;
        }
    }
    assert!(unavailable > 0, "the audit log never ran out of disk");

    // Space made: the server restarts itself in place (same process, same addresses) and
    // serves again, commands and reads alike.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    while !server
        .printed_later()
        .iter()
        .any(|l| l == &format!("naast listening on {listen}"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the server did not restart itself once space was back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.pid(), pid);
    let started = Instant::now();
    loop {
        match note(&mut api, &home, 500).await.unwrap() {
            Ok(_) => {
                acknowledged.push(500);
                break;
            }
            Err(status) => {
                assert!(
                    started.elapsed() < CALL,
                    "not serving after the restart: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let timeline = naast_tests::full_timeline(&server, &home).await;
    assert_eq!(notes(&timeline), acknowledged.len());
    for i in &acknowledged {
        let text = format!("notitie {i}:");
        assert!(
            timeline.iter().any(|e| e.summary.contains(&text)),
            "acknowledged note {i} is not on the timeline"
        );
    }

    // SIGTERM stops it, and verify finds the log intact.
    drop(api);
    let stopped = tokio::task::spawn_blocking(move || server.terminate());
    let status = tokio::time::timeout(CALL, stopped)
        .await
        .expect("SIGTERM did not stop the server")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let said = naast_tests::verify(&data, &["--dev"]);
    assert!(said.contains("intact"), "{said}");
}

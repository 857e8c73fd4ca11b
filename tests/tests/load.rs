//! `naast load`, the load generator, in its own process against the real `naast serve`: the
//! short version of `ops/load.sh`. Its figures must be there and make sense, every subscriber
//! must have received exactly its household's timeline, and it must fail when the server goes
//! away under it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_tests::Server;
use std::process::{Command, Stdio};

/// A server whose one principal may drive the whole load (its rate and stream limits lifted).
fn server(dir: &std::path::Path) -> Server {
    let config = dir.join("naast.toml");
    std::fs::write(
        &config,
        "[limits]\ncalls_per_second = 1000000\ncall_burst = 1000000\nstreams_per_caller = 1000\n",
    )
    .unwrap();
    Server::start_with(
        &dir.join("data"),
        &["--dev", "--config", config.to_str().unwrap()],
    )
}

fn load(server: &Server, seconds: u64) -> Command {
    let mut command = Command::new(naast_tests::workspace_bin("naast"));
    command
        .args(["load", "--server", &server.url()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--households", "6", "--writers", "4", "--readers", "2"])
        .args(["--subscribers", "4"])
        .args(["--server-pid", &server.pid().to_string()])
        .env("NAAST_TOKEN", server.token("ouder"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn the_load_generator_reports_its_figures_and_checks_every_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let ran = load(&server, 3).output().unwrap();
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let figures: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(figures["errors"]["total"], 0, "{figures}");
    assert_eq!(figures["problems"], serde_json::json!([]), "{figures}");
    assert_eq!(figures["households"], 6);
    // Every kind of the mix was done and timed.
    for kind in [
        "note",
        "logbook_entry",
        "goal",
        "agreement",
        "read_timeline_page",
        "read_household",
    ] {
        let done = &figures["by_kind"][kind];
        assert!(done["count"].as_u64().unwrap() > 0, "no {kind}: {figures}");
        assert!(done["p50_us"].as_f64().unwrap() > 0.0, "{figures}");
        assert!(
            done["p50_us"].as_f64() <= done["p99_us"].as_f64(),
            "{figures}"
        );
        assert!(done["p99_us"].as_f64().unwrap() <= done["max_us"].as_f64().unwrap());
    }
    let commands = figures["commands"]["count"].as_u64().unwrap();
    let per_second = figures["commands"]["per_second"].as_f64().unwrap();
    let seconds = figures["seconds"].as_f64().unwrap();
    assert!(seconds >= 3.0, "{figures}");
    // Both figures are rounded (seconds to 0.01, the rate to 0.1).
    assert!(
        (per_second * seconds - commands as f64).abs() <= 0.05 * seconds + 0.005 * per_second + 1.0,
        "{figures}"
    );
    let subscriptions = &figures["subscriptions"];
    assert_eq!(subscriptions["equal_to_the_timelines"], true, "{figures}");
    assert!(subscriptions["entries_received"].as_u64().unwrap() > 0);
    let rss = figures["server"]["rss_max_bytes"].as_u64().unwrap();
    assert!(rss > 1024 * 1024, "{figures}");
    assert!(figures["server"]["cpu_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_load_generator_fails_when_the_server_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server(dir.path());
    let running = load(&server, 8).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    server.kill();
    let ran = running.wait_with_output().unwrap();
    assert!(
        !ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stdout)
    );
    // The figures are printed all the same, with what failed.
    let said = String::from_utf8_lossy(&ran.stdout);
    let figures: serde_json::Value = serde_json::from_str(said.trim()).unwrap_or_else(|e| {
        panic!(
            "no figures ({e}): {said}{}",
            String::from_utf8_lossy(&ran.stderr)
        )
    });
    assert!(
        figures["errors"]["total"].as_u64().unwrap() > 0,
        "{figures}"
    );
    assert_eq!(figures["subscriptions"]["equal_to_the_timelines"], false);
    assert!(!figures["problems"].as_array().unwrap().is_empty());
}

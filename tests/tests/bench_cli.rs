//! `naast bench eventlog` runs end to end and prints its figures as JSON lines, each next to
//! the ceiling measured in the same run. Small sizes: this checks the command, not the speed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_tests::workspace_bin;
use serde_json::Value;
use std::process::Command;

/// `naast bench` with `args`, scratch data in `scratch`: its JSON lines, after checking it
/// succeeded.
fn bench(args: &[&str], scratch: &std::path::Path) -> Vec<Value> {
    let scratch = ["--scratch-dir", scratch.to_str().expect("a UTF-8 path")];
    bench_without_scratch(&[args, &scratch].concat())
}

/// `naast bench` with `args`: its JSON lines, after checking it succeeded.
fn bench_without_scratch(args: &[&str]) -> Vec<Value> {
    let output = Command::new(workspace_bin("naast"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run naast");
    assert!(
        output.status.success(),
        "naast bench {} failed: {}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn bench_eventlog_prints_one_json_line_per_benchmark_with_its_ceiling() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let lines = bench(
        &[
            "eventlog",
            "--events",
            "640",
            "--writers",
            "64",
            "--single-writer-events",
            "40",
            "--catchup-events",
            "3000",
            "--stream-events",
            "500",
        ],
        scratch.path(),
    );
    let names: Vec<&str> = lines.iter().filter_map(|l| l["bench"].as_str()).collect();
    assert_eq!(
        names,
        [
            "eventlog.append",
            "eventlog.append_single_writer",
            "eventlog.catchup",
            "eventlog.read_stream"
        ]
    );
    let append = &lines[0];
    assert_eq!(append["writers"], 64);
    assert_eq!(append["events"], 640);
    for line in &lines[..3] {
        let rate = line["events_per_sec"].as_f64().expect("events_per_sec");
        let ceiling = line["ceiling_events_per_sec"].as_f64().expect("ceiling");
        let ratio = line["ratio_to_ceiling"].as_f64().expect("ratio");
        assert!(rate > 0.0 && ceiling > 0.0, "{line}");
        assert!((ratio - rate / ceiling).abs() < 0.01, "{line}");
    }
    assert!(append["p99_us"].as_f64() >= append["p50_us"].as_f64());
    assert!(append["rss_mb"].as_f64().is_some_and(|mb| mb > 0.0));
    assert_eq!(lines[2]["events"], 3000);
    assert_eq!(lines[3]["stream_events"], 500);
    // Everything it wrote is gone again.
    assert_eq!(std::fs::read_dir(scratch.path()).expect("list").count(), 0);
}

#[test]
fn bench_fhir_prints_the_bundle_and_the_read_next_to_grpc() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let lines = bench(
        &["fhir", "--events", "300", "--bundles", "2", "--reads", "20"],
        scratch.path(),
    );
    let names: Vec<&str> = lines.iter().filter_map(|l| l["bench"].as_str()).collect();
    assert_eq!(names, ["fhir.map", "fhir.bundle", "fhir.read"]);
    assert!(
        lines[0]["resources_per_sec"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );
    let bundle = &lines[1];
    assert_eq!(bundle["events"], 300);
    assert!(
        bundle["entries"].as_u64().is_some_and(|e| e >= 290),
        "{bundle}"
    );
    assert!(
        bundle["bytes"].as_u64().is_some_and(|b| b > 10_000),
        "{bundle}"
    );
    let read = &lines[2];
    let (fhir, grpc) = (
        read["p99_ms"].as_f64().expect("p99_ms"),
        read["grpc_p99_ms"].as_f64().expect("grpc_p99_ms"),
    );
    assert!(fhir > 0.0 && grpc > 0.0, "{read}");
    let ratio = read["ratio_to_grpc"].as_f64().expect("ratio");
    assert!((ratio - fhir / grpc).abs() < 0.02, "{read}");
    assert_eq!(std::fs::read_dir(scratch.path()).expect("list").count(), 0);
}

#[test]
fn bench_refuses_an_unknown_target_with_a_usage_error() {
    let output = Command::new(workspace_bin("naast"))
        .args(["bench", "nothing"])
        .output()
        .expect("run naast");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing"));
}

#[test]
fn bench_api_prints_commands_and_timeline_pages_next_to_the_library_ceiling() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let output = Command::new(workspace_bin("naast"))
        .args(["bench", "api", "--clients", "4", "--commands", "40"])
        .args([
            "--timeline-events",
            "120",
            "--pages",
            "5",
            "--flood-per-sec",
            "200",
            // The honest clients in a process of their own: it must report every latency.
            "--load-process",
        ])
        .arg("--scratch-dir")
        .arg(scratch.path())
        .env("NAAST_LOG", "warn")
        .output()
        .expect("run naast");
    assert!(
        output.status.success(),
        "naast bench api failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let names: Vec<&str> = lines.iter().filter_map(|l| l["bench"].as_str()).collect();
    assert_eq!(
        names,
        [
            "api.commands",
            "api.timeline_page",
            "api.timeline_page_filtered",
            "api.auth_cost",
            "api.factors",
            "api.flood"
        ]
    );
    let commands = &lines[0];
    assert_eq!(commands["clients"], 4);
    assert_eq!(commands["commands"], 44, "40 notes and 4 registrations");
    let rate = commands["commands_per_sec"].as_f64().expect("rate");
    let ceiling = commands["ceiling_commands_per_sec"]
        .as_f64()
        .expect("ceiling");
    assert!(rate > 0.0 && ceiling > 0.0);
    assert!((commands["ratio_to_ceiling"].as_f64().expect("ratio") - rate / ceiling).abs() < 0.01);
    for page in &lines[1..3] {
        assert_eq!(page["events"], 120);
        assert_eq!(page["requests"], 5);
        assert!(page["p99_ms"].as_f64() >= page["p50_ms"].as_f64());
    }
    // The cost of authentication, consent, audit and encryption: the same run with them off.
    let cost = &lines[3];
    assert_eq!(
        cost["commands_per_sec_with_auth"],
        commands["commands_per_sec"]
    );
    let without = cost["commands_per_sec_without_auth"]
        .as_f64()
        .expect("rate");
    assert!(without > 0.0);
    let loss = cost["throughput_loss"].as_f64().expect("loss");
    assert!((loss - (1.0 - rate / without)).abs() < 0.01);
    // Factor by factor, from the library to the service with everything on: each ratio is of
    // two figures printed beside it, and the ends are the runs above.
    let factors = &lines[4];
    assert_eq!(factors["load"], "a process of its own");
    assert_eq!(
        factors["library_commands_per_sec"],
        commands["ceiling_commands_per_sec"]
    );
    assert_eq!(
        factors["grpc_commands_per_sec"],
        cost["commands_per_sec_without_auth"]
    );
    assert_eq!(
        factors["grpc_everything_commands_per_sec"],
        commands["commands_per_sec"]
    );
    let figure = |name: &str| factors[name].as_f64().expect(name);
    for (ratio, over, under) in [
        (
            "grpc_to_library",
            "grpc_commands_per_sec",
            "library_commands_per_sec",
        ),
        (
            "auth_consent_audit_to_grpc",
            "grpc_auth_consent_audit_commands_per_sec",
            "grpc_commands_per_sec",
        ),
        (
            "sealing_to_auth_consent_audit",
            "grpc_everything_commands_per_sec",
            "grpc_auth_consent_audit_commands_per_sec",
        ),
        (
            "everything_to_library",
            "grpc_everything_commands_per_sec",
            "library_commands_per_sec",
        ),
        // The transport alone: the same calls answered at once by a server doing nothing else.
        (
            "transport_to_library",
            "transport_calls_per_sec",
            "library_commands_per_sec",
        ),
        (
            "everything_to_transport",
            "grpc_everything_commands_per_sec",
            "transport_calls_per_sec",
        ),
    ] {
        assert!(figure(over) > 0.0, "{factors}");
        // The rates are printed rounded to whole calls per second, the ratio from the exact
        // ones: in a short run of a few hundred calls a second that is a part in a few hundred.
        let expected = figure(over) / figure(under);
        assert!(
            (figure(ratio) - expected).abs() < 0.01 + 0.01 * expected,
            "{ratio}: {factors}"
        );
    }
    // CPU time per command of each run (the server's process alone: the load had its own).
    for run in [
        "library",
        "grpc",
        "grpc_auth_consent_audit",
        "grpc_everything",
        "load",
    ] {
        let us = factors[format!("{run}_cpu_us_per_command")].as_f64();
        assert!(us.is_some_and(|us| us >= 0.0), "{run}: {factors}");
    }
    // The same run under a flood of bad tokens: every one refused, as not authenticated until
    // the address's sign-in limit, then as limited; the honest clients all served.
    let flood = &lines[5];
    let sent = flood["bad_tokens_sent"].as_u64().expect("sent");
    let unauthenticated = flood["bad_tokens_refused_unauthenticated"]
        .as_u64()
        .expect("refused");
    let limited = flood["bad_tokens_refused_limited"]
        .as_u64()
        .expect("limited");
    assert!(sent > 0, "{flood}");
    assert_eq!(unauthenticated + limited, sent, "{flood}");
    assert!(unauthenticated > 0, "{flood}");
    let flooded = flood["commands_per_sec_flooded"].as_f64().expect("rate");
    assert!(flooded > 0.0);
    assert_eq!(flood["commands_per_sec"], commands["commands_per_sec"]);
    assert!((flood["ratio"].as_f64().expect("ratio") - flooded / rate).abs() < 0.01);
    assert_eq!(std::fs::read_dir(scratch.path()).expect("list").count(), 0);
}

#[test]
fn bench_signals_prints_the_recompute_next_to_the_replay_and_the_update_next_to_applying() {
    let lines = bench_without_scratch(&["signals", "--households", "200", "--updates", "100"]);
    let names: Vec<&str> = lines.iter().filter_map(|l| l["bench"].as_str()).collect();
    assert_eq!(
        names,
        ["signals.recompute", "signals.update", "report.effect"]
    );
    let recompute = &lines[0];
    assert_eq!(recompute["households"], 200);
    assert!(
        recompute["signals"].as_u64().is_some_and(|n| n > 0),
        "{recompute}"
    );
    let (ms, peer) = (
        recompute["ms"].as_f64().expect("ms"),
        recompute["peer_ms"].as_f64().expect("peer_ms"),
    );
    assert!(peer > 0.0, "{recompute}");
    let ratio = recompute["ratio_to_peer"].as_f64().expect("ratio");
    assert!(
        (ratio - ms / peer).abs() < 0.01 + ratio * 0.01,
        "{recompute}"
    );
    let update = &lines[1];
    assert_eq!(update["updates"], 100);
    assert!(
        update["p99_us"].as_f64() >= update["p50_us"].as_f64(),
        "{update}"
    );
    assert!(update["ceiling_p99_us"].as_f64().is_some(), "{update}");
    let report = &lines[2];
    assert_eq!(report["households"], 200);
    assert_eq!(report["measurements"], 600);
    assert!(
        report["ms"].as_f64().is_some_and(|ms| ms > 0.0)
            && report["peer_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{report}"
    );
}

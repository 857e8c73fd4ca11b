//! An independent gRPC implementation against the real server: Python's grpcio, with stubs
//! generated from the committed .proto files by its own protoc, checks health, reflection,
//! commands, the timeline and a refused request's BadRequest, with and without a bearer token. The test command installs the
//! Python packages (`tests/python/requirements.txt`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_tests::Server;
use std::process::Command;

#[test]
fn a_python_grpcio_client_gets_what_the_contract_promises() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new("python3")
        .arg(format!("{root}/tests/python/independent_client.py"))
        .arg(server.address.to_string())
        .arg(format!("{root}/proto"))
        .arg(server.token("ouder"))
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named"),
        "the Python packages are missing: pip install -r tests/python/requirements.txt (ops/test.sh does)\n{stderr}"
    );
    assert!(output.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
}

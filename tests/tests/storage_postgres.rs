//! `naast serve` with its event log in PostgreSQL (`--storage`), against a throwaway cluster:
//! what was acknowledged survives a SIGKILL of the server, `naast verify` finds the chain
//! intact there, and a second node with another master key is refused with a message saying
//! why. (Several nodes with one key: `several_nodes.rs`.)

use naast_pg_cluster::Cluster;
use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Server, workspace_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_in_postgres_survives_a_kill_verifies_and_refuses_another_master_key() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let data = dir.path().join("data");
    let args = ["--dev", "--storage", url.as_str()];

    let mut server = Server::start_with(&data, &args);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, member, _) =
        naast_tests::household_with_client(&mut api, "Familie Postgres").await;
    for title in ["Zelfstandig wonen", "Werk vinden", "Vrienden maken"] {
        naast_tests::create_goal(&mut api, &household, &member, title).await;
    }
    let before = naast_tests::household(&mut api, &household).await;
    server.kill();
    // The events are in PostgreSQL, not in the data directory.
    assert!(!data.join("sled").exists(), "an event log on sled was made");
    // So are the household keys: none in the data directory.
    assert!(
        !data.join("keys").exists(),
        "household keys in the data directory"
    );

    let server = Server::start_with(&data, &args);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let after = naast_tests::household(&mut api, &household).await;
    assert_eq!(after.revision, before.revision);
    assert_eq!(after.name, "Familie Postgres");
    let goals = api
        .list_goals(pb::ListGoalsRequest {
            household_id: household.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner()
        .goals;
    assert_eq!(goals.len(), 3, "{goals:?}");

    // A second node on the same database with another master key (here: its own development
    // key) could not read a household, and would seal under keys no other node opens: refused.
    let other = dir.path().join("other");
    let second = std::process::Command::new(workspace_bin("naast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&other)
        .args(args)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run naast: {e}"));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{said}");
    assert!(said.contains("master key given is not the one"), "{said}");

    drop(server);
    let verified = naast_tests::verify(&data, &["--storage", &url]);
    assert!(verified.contains("naast verify: intact:"), "{verified}");
    // The audit log is in PostgreSQL too, and verifies there.
    assert!(verified.contains("audit log of"), "{verified}");

    // The data directory is tied to its log: without --storage it is not opened with an empty
    // log on sled (which would verify "intact" and serve nothing).
    let unbound = std::process::Command::new(workspace_bin("naast"))
        .args(["verify", "--data-dir"])
        .arg(&data)
        .env("NAAST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run naast verify: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&unbound.stdout),
        String::from_utf8_lossy(&unbound.stderr)
    );
    assert!(!unbound.status.success(), "{said}");
    assert!(said.contains("is in PostgreSQL: give --storage"), "{said}");
    assert!(!data.join("sled").exists(), "an empty log on sled was made");
}

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

/// A data directory whose event log is in PostgreSQL but whose household keys and audit log
/// are in the directory (as naast kept them before they moved beside the log) has both taken
/// into the database at start: every payload still opens, every audit record is there with its
/// id, nothing is left in the directory, and a start cut short and run again takes nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_audit_years_left_in_the_data_directory_move_into_postgres() {
    use naast_eventlog::{Direction, EventLog, ExpectedRevision, NewEvent, Options};
    let cluster = Cluster::start();
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let data = dir.path().join("data");
    let master = naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64())
        .unwrap_or_else(|e| panic!("{e}"));

    // The old layout: keys in `keys/`, a year of the audit log in `audit/2025/`.
    let folder =
        naast_vault::Vault::open(&data.join("keys"), &master).unwrap_or_else(|e| panic!("{e}"));
    let sealed: Vec<_> = (0..5)
        .map(|i| {
            let (household, event) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
            let text = format!("afspraak {i}");
            let payload = folder
                .seal(household, event, text.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            (household, event, payload, text)
        })
        .collect();
    drop(folder);
    let year = EventLog::open(data.join("audit").join("2025"), Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ids = Vec::new();
    for (i, stream) in ["audit-service", "audit-a", "audit-a", "audit-b"]
        .iter()
        .enumerate()
    {
        let event = NewEvent::new("AccessAudited", format!("{{\"n\":{i}}}").into_bytes());
        ids.push(event.id);
        year.append(stream, ExpectedRevision::Any, vec![event])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    year.close().await;
    drop(year);

    let vault = naast_vault::Vault::open_postgres(&url, &master).unwrap_or_else(|e| panic!("{e}"));
    let adopted = naast_server::adopt::into_postgres(&data, &url, Some(&vault), Some(&master))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((adopted.keys, adopted.audit_records), (5, 4));
    assert!(
        !data.join("keys").exists(),
        "key files left in the data directory"
    );
    assert!(
        !data.join("audit").join("2025").exists(),
        "an audit year left"
    );
    let fresh = naast_vault::Vault::open_postgres(&url, &master).unwrap_or_else(|e| panic!("{e}"));
    for (household, event, payload, text) in &sealed {
        let opened = fresh
            .open_payload(*household, *event, payload)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&*opened, text.as_bytes());
    }
    let table = EventLog::open_postgres_table(
        &url,
        &naast_app::audit::partition_table(2025),
        Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let records = table
        .read_all(0, Direction::Forwards, 100)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        table.verify().unwrap_or_else(|e| panic!("{e}")).first_break,
        None
    );

    // The same directories again (a start cut short before they were removed): nothing twice.
    let again = EventLog::open(data.join("audit").join("2025"), Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for (stream, id) in [("audit-service", ids[0]), ("audit-a", ids[1])] {
        let mut event = NewEvent::new("AccessAudited", b"{}".to_vec());
        event.id = id;
        again
            .append(stream, ExpectedRevision::Any, vec![event])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    again.close().await;
    drop(again);
    let adopted = naast_server::adopt::into_postgres(&data, &url, Some(&vault), Some(&master))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(adopted.audit_records, 0);
    table.close().await;
    let reopened = EventLog::open_postgres_table(
        &url,
        &naast_app::audit::partition_table(2025),
        Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reopened.head(), 4, "records taken twice");
    reopened.close().await;
}

/// The push state a node kept in its data directory (before it moved beside the log) is taken
/// into the shared table when the node holding the push lease starts: the platforms'
/// checkpoints and ledgers go on from where they were, and the directory is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_push_state_left_in_the_data_directory_moves_into_postgres() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let data = dir.path().join("data");
    let household = naast_domain::ids::HouseholdId(uuid::Uuid::now_v7());
    let goal = uuid::Uuid::now_v7();
    let entry = naast_push::store::Entry {
        remote: Some("Goal/17".into()),
        hash: "h".into(),
        dead: None,
    };
    let own = naast_push::Store::open(&data.join("push")).unwrap_or_else(|e| panic!("{e}"));
    own.put("jouw-omgeving", household, "Goal", goal, &entry)
        .unwrap_or_else(|e| panic!("{e}"));
    own.set_checkpoint("jouw-omgeving", 42)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(own);

    let shared = naast_push::Store::open_postgres(&url).unwrap_or_else(|e| panic!("{e}"));
    let taken = naast_server::adopt::push_state(&data, &shared).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken, 2, "the ledger entry and the checkpoint");
    assert!(!data.join("push").exists(), "the push directory left");
    assert_eq!(
        shared
            .checkpoint("jouw-omgeving")
            .unwrap_or_else(|e| panic!("{e}")),
        42
    );
    assert_eq!(
        shared
            .entry("jouw-omgeving", household, "Goal", goal)
            .unwrap_or_else(|e| panic!("{e}")),
        Some(entry)
    );
    assert_eq!(
        naast_server::adopt::push_state(&data, &shared).unwrap_or_else(|e| panic!("{e}")),
        0,
        "nothing left to take"
    );

    // Another node's older directory, once the table holds state: left as it is.
    let older = dir.path().join("older");
    let stale = naast_push::Store::open(&older.join("push")).unwrap_or_else(|e| panic!("{e}"));
    stale
        .set_checkpoint("jouw-omgeving", 7)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(stale);
    assert_eq!(
        naast_server::adopt::push_state(&older, &shared).unwrap_or_else(|e| panic!("{e}")),
        0,
        "an older directory taken in"
    );
    assert!(older.join("push").exists(), "the older directory removed");
    assert_eq!(
        shared
            .checkpoint("jouw-omgeving")
            .unwrap_or_else(|e| panic!("{e}")),
        42
    );
}

/// `naast serve` on a database it reaches over TCP with TLS (the cluster takes no unencrypted
/// TCP connection, so every connection the node opens, for the log, its watcher and syncer, the
/// keys, the audit log, the push state and the lease, must be encrypted): it serves, and what
/// it acknowledged is there after a SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_postgres_over_tls() {
    let cluster = Cluster::start_with_tls();
    let database = cluster.new_database();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.tcp_url("localhost", &database),
        cluster.ca_file().display()
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let data = dir.path().join("data");
    let args = [
        "--dev",
        "--fhir-listen",
        "127.0.0.1:0",
        "--storage",
        url.as_str(),
    ];
    let mut server = Server::start_with(&data, &args);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, member, _) = naast_tests::household_with_client(&mut api, "Familie TLS").await;
    naast_tests::create_goal(&mut api, &household, &member, "Veilig verbonden").await;
    server.kill();
    let server = Server::start_with(&data, &args);
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let goals = api
        .list_goals(pb::ListGoalsRequest {
            household_id: household,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner()
        .goals;
    assert_eq!(goals.len(), 1, "{goals:?}");
}

/// `naast restore --storage`: a backup of one machine (sled) goes into an empty PostgreSQL
/// database, and a node started there with the backup's master key serves it as the source did.
/// A backup of that node holds the same records, keys and record of disclosed reports, and each
/// audit year as it was and then some (the node's own reads). (The demo families disclose no
/// report; a restored record of disclosed reports is read back in `naast_app::evaluation`.) A database in use or holding data is
/// refused; a restore cut short keeps every node off the database until a restore run again has
/// started over and finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_one_machine_restores_into_postgres_and_a_cut_restore_starts_over() {
    let cluster = Cluster::start();
    let database = cluster.new_database();
    let url = cluster.url(&database);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let (source, node_dir) = (dir.path().join("source"), dir.path().join("node"));
    let naast = |args: &[&str], token: Option<&str>| {
        let mut command = std::process::Command::new(workspace_bin("naast"));
        command.args(args).env("NAAST_LOG", "warn");
        if let Some(token) = token {
            command.env("NAAST_TOKEN", token);
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run naast: {e}"));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let text = |p: &std::path::Path| p.to_str().unwrap_or_else(|| panic!("path")).to_owned();
    let manifest = |backup: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(backup.join("manifest.json")).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };

    let (ok, said) = naast(&["demo", "--data-dir", &text(&source)], None);
    assert!(ok, "{said}");
    let key = dir.path().join("master-key");
    std::fs::copy(source.join("dev-master-key"), &key).unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&source);
    let first = dir.path().join("backup");
    let (ok, said) = naast(
        &["backup", &text(&first), "--server", &server.url()],
        Some(server.token("beheerder")),
    );
    assert!(ok, "{said}");
    let events = naast_tests::all_events(&server).await;
    drop(server);
    let taken = manifest(&first);

    // A table of an administrator's beside naast's (a copy of an audit year, say) is not
    // naast's data: neither refused nor emptied.
    cluster.psql(&database, "CREATE TABLE naast_audit_2019_copy (n integer)");
    cluster.psql(&database, "INSERT INTO naast_audit_2019_copy VALUES (1)");
    let (ok, said) = naast(&["restore", &text(&first), "--storage", &url], None);
    assert!(ok, "{said}");
    assert!(
        !node_dir.exists(),
        "a restore into PostgreSQL wrote a data directory"
    );
    let node_args = [
        "--dev",
        "--master-key-file",
        key.to_str().unwrap_or_default(),
        "--storage",
        url.as_str(),
    ];
    let node = Server::start_with(&node_dir, &node_args);
    assert_eq!(naast_tests::all_events(&node).await, events);
    let households = cluster.psql(&database, "SELECT household FROM naast_household_keys");
    assert_eq!(
        households.lines().count(),
        5,
        "the five demo families' keys"
    );
    for household in households.lines() {
        // Sealed payloads open: the keys came along.
        let timeline = naast_tests::full_timeline(&node, household).await;
        assert!(!timeline.is_empty(), "{household}");
    }

    // The node's backup: the same records, keys and disclosed reports; each audit year as it
    // was, then the node's own records.
    let second = dir.path().join("backup-of-node");
    let (ok, said) = naast(
        &["backup", &text(&second), "--server", &node.url()],
        Some(node.token("beheerder")),
    );
    assert!(ok, "{said}");
    let again = manifest(&second);
    for part in ["events", "keys", "disclosures"] {
        let file = |m: &serde_json::Value| {
            m[part]["part"]
                .as_str()
                .unwrap_or_else(|| panic!("no {part} in {m}"))
                .to_owned()
        };
        let (before, after) = (
            std::fs::read(first.join(file(&taken))).unwrap_or_else(|e| panic!("{e}")),
            std::fs::read(second.join(file(&again))).unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(before == after, "{part} differ after the restore");
    }
    let years = taken["audit"].as_array().cloned().unwrap_or_default();
    assert!(!years.is_empty(), "{taken}");
    for year in years {
        let part = year["part"].as_str().unwrap_or_default();
        let (before, after) = (
            std::fs::read(first.join(part)).unwrap_or_else(|e| panic!("{e}")),
            std::fs::read(second.join(part)).unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(after.starts_with(&before), "audit part {part} changed");
    }

    // Refused while a node has the database open, and after, as it holds data.
    let (ok, said) = naast(&["restore", &text(&first), "--storage", &url], None);
    assert!(!ok && said.contains("stop every node"), "{said}");
    drop(node);
    let (ok, said) = naast(&["restore", &text(&first), "--storage", &url], None);
    assert!(!ok && said.contains("holds naast data already"), "{said}");

    // A restore cut short (its mark left, as a kill would leave it): no node starts, nothing
    // verifies, until a restore run again has emptied the database and finished.
    // (Cut before its keys were written: no master key check yet.)
    cluster.psql(
        &database,
        "INSERT INTO naast_restoring (one) VALUES (true); DELETE FROM naast_master_key_check",
    );
    let (key_file, verifier) = (text(&key), text(&dir.path().join("verifier")));
    for command in [
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &text(&node_dir),
        ]
        .as_slice(),
        ["verify", "--data-dir", &verifier].as_slice(),
    ] {
        let mut args = command.to_vec();
        args.extend(["--dev", "--master-key-file", &key_file, "--storage", &url]);
        let (ok, said) = naast(&args, None);
        assert!(
            !ok && said.contains("a restore into this database did not finish"),
            "{command:?}: {said}"
        );
    }
    let checks = "SELECT count(*) FROM naast_master_key_check";
    assert_eq!(
        cluster.psql(&database, checks),
        "0",
        "verify wrote a master key check"
    );
    // While a restore is under way (here: begun by this test, which holds its lock), a second
    // one is refused rather than taking the first one's mark for a cut restore's.
    let url_held = url.clone();
    let held =
        tokio::task::spawn_blocking(move || naast_eventlog::postgres::Restore::begin(&url_held))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    let (ok, said) = naast(&["restore", &text(&first), "--storage", &url], None);
    assert!(!ok && said.contains("another naast restore"), "{said}");
    drop(held);
    let (ok, said) = naast(&["restore", &text(&first), "--storage", &url], None);
    assert!(ok, "{said}");
    assert_eq!(
        cluster.psql(&database, "SELECT count(*) FROM naast_audit_2019_copy"),
        "1"
    );
    assert_eq!(
        cluster.psql(&database, "SELECT count(*) FROM naast_restoring"),
        "0"
    );
    let verified = naast_tests::verify(&node_dir, &["--storage", &url]);
    // Every record of the backup, the log's and the audit year's, and no more.
    let year = &taken["audit"][0];
    for line in [
        format!("naast verify: intact: {} events", taken["events"]["events"]),
        format!(
            "naast verify: audit log of {} intact: {} records",
            year["year"], year["events"]
        ),
    ] {
        assert!(verified.contains(&line), "{line} not in: {verified}");
    }
    let node = Server::start_with(&node_dir, &node_args);
    assert_eq!(naast_tests::all_events(&node).await, events);
}

/// An audit year past its retention, on a database several nodes share: the node enforcing the
/// retention retires it, so a node that still has it open goes on reading it (until its next
/// listing of the years) instead of failing, a node opening now no longer sees it, and its table
/// is dropped only once it has been retired long enough that no node can still be reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_year_past_its_retention_is_retired_before_its_table_is_dropped() {
    use naast_app::audit::Auditor;
    use naast_eventlog::{ExpectedRevision, NewEvent};
    let cluster = Cluster::start();
    let database = cluster.new_database();
    let url = cluster.url(&database);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let retention = std::time::Duration::from_secs(365 * 86_400);
    let open = |node: &str| {
        Auditor::open_postgres(&url, &dir.path().join(node), retention)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let table_count = |table: &str| {
        cluster.psql(
            &database,
            &format!("SELECT count(*) FROM pg_tables WHERE tablename = '{table}'"),
        )
    };
    let enforcing = open("a");
    let event = NewEvent::new("AccessAudited", b"{}".to_vec());
    let id = event.id;
    enforcing
        .partition(2019)
        .unwrap_or_else(|e| panic!("{e}"))
        .append("audit-service", ExpectedRevision::Any, vec![event])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Three years on (the record, written today, must be past the retention too), with the
    // newest year there, which is never removed.
    let later = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(3 * 365 * 86_400);
    enforcing
        .partition(later.year())
        .unwrap_or_else(|e| panic!("{e}"));
    let reading = open("b");
    assert!(reading.contains(id).unwrap_or_else(|e| panic!("{e}")));

    let removed = enforcing
        .enforce_retention(later)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(removed.contains(&2019), "{removed:?}");
    // The node that had the year open reads it still: no error (dropped at once, its table
    // would be gone under it).
    assert!(reading.contains(id).unwrap_or_else(|e| panic!("{e}")));
    // A node opening now does not see it; the enforcing node has let go of it.
    let fresh = open("c");
    for auditor in [&fresh, &enforcing] {
        assert!(
            auditor.partitions().iter().all(|(year, _)| *year != 2019),
            "a retired year is listed"
        );
        assert!(!auditor.contains(id).unwrap_or_else(|e| panic!("{e}")));
    }
    // Its table is dropped only once it has been retired long enough (by the database's
    // clock, set back here to stand for the minutes passing).
    enforcing
        .enforce_retention(later)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table_count("naast_audit_2019"), "1");
    reading.close().await;
    fresh.close().await;
    cluster.psql(
        &database,
        "UPDATE naast_retired_logs SET retired_at = retired_at - interval '11 minutes'",
    );
    enforcing
        .enforce_retention(later)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table_count("naast_audit_2019"), "0");
    assert_eq!(
        cluster.psql(&database, "SELECT count(*) FROM naast_retired_logs"),
        "0"
    );
    assert_eq!(table_count(&format!("naast_audit_{}", later.year())), "1");
    enforcing.close().await;
}

/// PostgreSQL fails over while a family writes: the primary dies (`immediate`) and its
/// synchronous standby is promoted. The node, given both hosts (`target_session_attrs=
/// read-write`), loses its connections, restarts in place once the database takes writes again
/// (same process, same address) and goes on against the new primary without ever exiting.
/// Every note it acknowledged before and after is there exactly once, and the log verifies
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_postgres_fails_over_to_its_standby() {
    let mut cluster = Cluster::start_with_standby();
    let database = cluster.new_database();
    let url = cluster.failover_url(&database);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let data = dir.path().join("data");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
        .to_string();
    let args = [
        "--dev",
        "--listen",
        listen.as_str(),
        "--storage",
        url.as_str(),
    ];
    let mut node = Server::start_with(&data, &args);
    let pid = node.pid();
    let mut api = HouseholdServiceClient::new(node.signed("ouder").await);
    let (household, _, _) = naast_tests::household_with_client(&mut api, "Familie Failover").await;

    // One family writes notes all along, and keeps what was acknowledged.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let writer = {
        let (writing, acked, household) = (writing.clone(), acked.clone(), household.clone());
        let mut api = HouseholdServiceClient::new(node.signed("ouder").await);
        tokio::spawn(async move {
            let mut n = 0;
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let written = api
                    .create_note(pb::CreateNoteRequest {
                        household_id: household.clone(),
                        text: format!("Notitie [{n}]"),
                        ..Default::default()
                    })
                    .await;
                match written {
                    Ok(_) => acked.lock().unwrap_or_else(|e| e.into_inner()).push(n),
                    // The node restarting, or the database not there: not acknowledged.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        })
    };
    let count = || acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while count() < 20 {
        assert!(std::time::Instant::now() < deadline, "no notes written");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The standby stops first: while it is away, a command is acknowledged only if its commit
    // reached the standby anyway (it cannot: the sync waits), so what the primary takes with it
    // was never acknowledged. (With asynchronous replication the notes acknowledged meanwhile
    // are lost here: checked.)
    cluster.stop_standby();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    cluster.fail_over();
    let before = count();
    while count() < before + 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not go on after the failover ({} notes after it)",
            count() - before
        );
        assert!(node.is_running(), "the node exited in the failover");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.pid(), pid, "restarted in place");

    let timeline = naast_tests::full_timeline(&node, &household).await;
    for n in acked.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let copies = timeline
            .iter()
            .filter(|entry| entry.summary.contains(&format!("[{n}]")))
            .count();
        assert_eq!(copies, 1, "note {n} acknowledged, found {copies} times");
    }
    drop(node);
    let verified = naast_tests::verify(&data, &["--storage", &url]);
    assert!(verified.contains("naast verify: intact:"), "{verified}");
}

//! The household keys in a real, throwaway PostgreSQL: several nodes (here: several key stores
//! on one database) serve every household with one key each, erasure holds for all of them, and
//! the master key is checked and rotated there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_pg_cluster::Cluster;
use naast_vault::{MasterKey, Vault, VaultError};
use uuid::Uuid;

fn master() -> MasterKey {
    MasterKey::from_base64(&MasterKey::generate_base64()).unwrap()
}

#[test]
fn every_node_serves_every_household_with_one_key_and_an_erasure_holds_for_all() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let key = master();
    let nodes: Vec<Vault> = (0..3)
        .map(|_| Vault::open_postgres(&url, &key).expect("open"))
        .collect();

    // Households first used on different nodes at once: each gets one key, whoever made it.
    let households: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let sealed: Vec<(usize, Uuid, Uuid, Vec<u8>)> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            let households = &households;
            handles.push(scope.spawn(move || {
                households
                    .iter()
                    .map(|&h| {
                        let event = Uuid::now_v7();
                        let text = format!("node {n}, household {h}");
                        (
                            n,
                            h,
                            event,
                            node.seal(h, event, text.as_bytes()).expect("seal"),
                        )
                    })
                    .collect::<Vec<_>>()
            }));
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    for (n, h, event, payload) in &sealed {
        for node in &nodes {
            let opened = node
                .open_payload(*h, *event, payload)
                .expect("opens on every node");
            assert_eq!(&*opened, format!("node {n}, household {h}").as_bytes());
        }
    }
    let mut listed = nodes[2].households().expect("households");
    listed.sort();
    let mut expected = households.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // Erased through one node: a node that had not read the key cannot open it, the one that
    // erased cannot either, and no node can give the household a key again.
    let (erased, event, payload) = sealed
        .iter()
        .find(|(n, ..)| *n == 0)
        .map(|(_, h, e, p)| (*h, *e, p.clone()))
        .expect("sealed on node 0");
    nodes[0].erase(erased).expect("erase");
    let fresh = Vault::open_postgres(&url, &key).expect("open a fourth node");
    assert!(matches!(
        fresh.open_payload(erased, event, &payload),
        Err(VaultError::Erased(_))
    ));
    assert!(matches!(
        nodes[0].open_payload(erased, event, &payload),
        Err(VaultError::Erased(_))
    ));
    assert!(matches!(
        fresh.seal(erased, Uuid::now_v7(), b"again"),
        Err(VaultError::Erased(_))
    ));
    // A node that still holds the key in memory forgets it at its own erase (the server's
    // projector calls it when it passes the household's tombstone).
    nodes[1].erase(erased).expect("erase again");
    assert!(matches!(
        nodes[1].open_payload(erased, event, &payload),
        Err(VaultError::Erased(_))
    ));
    assert!(!fresh.households().expect("households").contains(&erased));
    // What a backup copies: every household's wrapped key and the check, by file name.
    let files = fresh.backup_files().expect("backup files");
    assert_eq!(files.len(), households.len() - 1 + 1);
    assert!(files.iter().any(|(name, _)| name == "master.check"));
}

#[test]
fn a_wrong_master_key_is_refused_and_a_rotation_rewraps_every_key_at_once() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let (old, new) = (master(), master());
    let vault = Vault::open_postgres(&url, &old).expect("open");
    let (h, e) = (Uuid::now_v7(), Uuid::now_v7());
    let payload = vault.seal(h, e, b"agreement").expect("seal");
    drop(vault);

    assert!(matches!(
        Vault::open_postgres(&url, &new),
        Err(VaultError::WrongMasterKey)
    ));
    let rotated = naast_vault::rotate_master_key_in_postgres(&url, &old, &new).expect("rotate");
    assert_eq!(rotated.rewrapped, 1);
    // Run again: finished already, nothing changes.
    let again = naast_vault::rotate_master_key_in_postgres(&url, &old, &new).expect("again");
    assert_eq!((again.rewrapped, again.already), (0, 1));

    assert!(matches!(
        Vault::open_postgres(&url, &old),
        Err(VaultError::WrongMasterKey)
    ));
    let vault = Vault::open_postgres(&url, &new).expect("open with the new key");
    assert_eq!(
        &*vault.open_payload(h, e, &payload).expect("open"),
        b"agreement"
    );
}

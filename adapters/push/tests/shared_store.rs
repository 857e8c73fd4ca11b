//! The push store in a real, throwaway PostgreSQL, beside the same store on sled: the shared
//! table keeps what the data directory's store keeps, in the same order; a data directory's
//! store is taken in once; and two nodes changing one subscription at once (the node that sends
//! its notifications counting events, another ending or editing it) lose no change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::event::Identity;
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::PrincipalRole;
use naast_fhir_http::subscriptions::{Content, NotificationEvent, Owner, Status, Subscription};
use naast_pg_cluster::Cluster;
use naast_push::Store;
use naast_push::store::{DeadLetter, Entry};
use uuid::Uuid;

fn subscription(household: HouseholdId, from_position: u64) -> Subscription {
    Subscription {
        id: Uuid::now_v7(),
        household,
        filter: format!("Group?_id={household}"),
        owner: Owner {
            identity: Identity {
                issuer: "https://idp.example".into(),
                subject: "ouder".into(),
            },
            role: PrincipalRole::Platform,
            organisation: None,
            client_id: Some("pgo".into()),
            acting_for: None,
        },
        endpoint: "https://pgo.example/hooks".into(),
        headers: Vec::new(),
        content: Content::IdOnly,
        reason: String::new(),
        status: Status::Active,
        events: 0,
        error: None,
        from_position,
    }
}

fn letter(household: HouseholdId, resource_id: Uuid, status: u16) -> DeadLetter {
    DeadLetter {
        id: 0,
        household,
        resource_type: "Goal".into(),
        resource_id,
        method: "PUT".into(),
        status,
        body: "nee".into(),
        at_micros: 7,
        notice: None,
    }
}

fn event(at_micros: u64) -> NotificationEvent {
    NotificationEvent {
        number: 0,
        at_micros,
        focus: "Group/x".into(),
    }
}

/// What a store answers, every kind of read once, after one script of writes (the same ids on
/// every store it is run on).
#[derive(Debug, PartialEq)]
struct Answers {
    checkpoints: (u64, u64),
    ledger: Vec<(String, Uuid, Entry)>,
    households: Vec<HouseholdId>,
    letters: Vec<u16>,
    letters_after_first: Vec<u16>,
    counts: (u64, u64, u64),
    events: Vec<(u64, u64)>,
    subscription: Option<Subscription>,
    following: usize,
    followed: Vec<(HouseholdId, Vec<Uuid>)>,
    delivered: u64,
    entries: Vec<naast_eventlog::storage::TreeEntry>,
}

async fn script(store: &Store, ids: &[Uuid; 4], sub: &Subscription) -> Answers {
    let (a, b) = (HouseholdId(ids[0]), HouseholdId(ids[1]));
    let entry = |n: u8| Entry {
        remote: Some(format!("r{n}")),
        hash: format!("h{n}"),
        dead: None,
    };
    store.put("jo", a, "Goal", ids[2], &entry(1)).unwrap();
    store.put("jo", a, "CarePlan", ids[3], &entry(2)).unwrap();
    store.put("jo", b, "Goal", ids[2], &entry(3)).unwrap();
    store.put("jo-2", a, "Goal", ids[2], &entry(4)).unwrap();
    store.remove("jo", b, "Goal", ids[2]).unwrap();
    store.put("jo", b, "Patient", ids[3], &entry(5)).unwrap();
    store.set_checkpoint("jo", 42).await.unwrap();
    store.set_checkpoint("jo-2", 7).await.unwrap();
    for status in [400, 409, 422] {
        store
            .add_dead_letter("jo", letter(a, ids[2], status))
            .unwrap();
    }
    let first = store.dead_letters("jo").unwrap()[0].id;
    assert!(store.remove_dead_letter("jo", first).unwrap());
    assert!(!store.remove_dead_letter("jo", first).unwrap());
    let top = store.add_dead_letter("jo", letter(b, ids[3], 500)).unwrap();
    // The highest letter removed: its number is not handed out again (a replay still in flight
    // would remove the new letter in its place).
    assert!(store.remove_dead_letter("jo", top).unwrap());
    let next = store.add_dead_letter("jo", letter(b, ids[3], 503)).unwrap();
    assert!(next > top, "{next} after {top}");
    store.put_subscription(sub).unwrap();
    for (position, at) in [(9, 1), (12, 2), (15, 3), (15, 4), (20, 5)] {
        store
            .count_subscription_event(sub.id, position, event(at))
            .unwrap();
    }
    store.set_subscription_delivered(sub.id, 2).unwrap();
    // Households asked for together (one of them twice): only the followed one answers, with
    // its subscription.
    let mut followed: Vec<(HouseholdId, Vec<Uuid>)> = store
        .subscriptions_following(&[a, sub.household, b, sub.household])
        .unwrap()
        .into_iter()
        .map(|(household, subs)| (household, subs.iter().map(|s| s.id).collect()))
        .collect();
    followed.sort();
    assert_eq!(followed, [(sub.household, vec![sub.id])]);
    let letters = store.dead_letters("jo").unwrap();
    // Numbers are each store's own: what counts is that they follow in order, none reused.
    assert!(letters.windows(2).all(|w| w[0].id < w[1].id), "{letters:?}");
    assert!(letters.iter().all(|l| l.id > first), "{letters:?}");
    Answers {
        checkpoints: (
            store.checkpoint("jo").unwrap(),
            store.checkpoint("nergens").unwrap(),
        ),
        ledger: store.ledger("jo", a).unwrap(),
        households: store.households("jo").unwrap(),
        letters_after_first: store
            .dead_letters_after("jo", Some(letters[0].id), 10)
            .unwrap()
            .iter()
            .map(|l| l.status)
            .collect(),
        letters: letters.iter().map(|l| l.status).collect(),
        counts: store.counts("jo").unwrap(),
        events: store
            .subscription_events(sub.id, 2, 3)
            .unwrap()
            .iter()
            .map(|e| (e.number, e.at_micros))
            .collect(),
        subscription: store.subscription(sub.id).unwrap(),
        following: store.subscriptions_of(sub.household).unwrap().len(),
        followed,
        delivered: store.subscription_delivered(sub.id).unwrap(),
        entries: entries(store),
    }
}

/// Every entry of `store`, sorted by tree and key, but the dead letters (numbered by each store
/// in its own way).
fn entries(store: &Store) -> Vec<naast_eventlog::storage::TreeEntry> {
    let mut entries: Vec<_> = store
        .backup_entries()
        .unwrap()
        .into_iter()
        .filter(|(tree, _, _)| tree != "dead")
        .collect();
    entries.sort();
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_table_keeps_what_the_directory_store_keeps_and_takes_one_in_once() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let ids = [
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    ];
    let sub = subscription(HouseholdId(Uuid::now_v7()), 10);

    let on_sled = script(&Store::open(&dir.path().join("push")).unwrap(), &ids, &sub).await;
    let shared = Store::open_postgres(&url).unwrap();
    let on_postgres = script(&shared, &ids, &sub).await;
    assert_eq!(on_postgres, on_sled, "the same answers, in the same order");
    // The script's own expectations, so that two wrong stores cannot agree.
    assert_eq!(on_sled.checkpoints, (42, 0));
    assert_eq!(on_sled.ledger.len(), 2);
    assert_eq!(on_sled.households.len(), 2);
    assert_eq!(on_sled.letters, [409, 422, 503]);
    assert_eq!(on_sled.letters_after_first, [422, 503]);
    assert_eq!(on_sled.counts, (2, 3, 3));
    assert_eq!(on_sled.events, [(2, 3), (3, 5)]);
    assert_eq!(on_sled.subscription.as_ref().map(|s| s.events), Some(3));
    assert_eq!(on_sled.following, 1);
    assert_eq!(on_sled.delivered, 2);

    // Reopened (another node, or this one after a restart), the table still holds it all.
    drop(shared);
    let again = Store::open_postgres(&url).unwrap();
    assert_eq!(entries(&again), on_sled.entries);

    // A data directory's store taken into a fresh database: every entry, once.
    let fresh = Store::open_postgres(&cluster.database()).unwrap();
    let taken = fresh.take_in(&on_sled.entries).unwrap();
    assert_eq!(taken, on_sled.entries.len() as u64);
    assert_eq!(fresh.take_in(&on_sled.entries).unwrap(), 0, "taken in once");
    assert_eq!(entries(&fresh), on_sled.entries);
    // What the table held already is kept, not overwritten by an older store's entry.
    fresh.set_checkpoint("jo", 99).await.unwrap();
    fresh.take_in(&on_sled.entries).unwrap();
    assert_eq!(fresh.checkpoint("jo").unwrap(), 99);
}

/// `count` events counted by one handle while another edits the subscription `count` times.
fn race(counting: &Store, editing: &Store, id: Uuid, count: u64) {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..count {
                counting
                    .count_subscription_event(id, 100 + i, event(i))
                    .unwrap();
            }
        });
        scope.spawn(|| {
            for i in 0..count {
                editing
                    .update_subscription(id, |s| s.headers.push(format!("X-Edit: {i}")))
                    .unwrap();
            }
        });
    });
}

fn assert_nothing_lost(store: &Store, id: Uuid, count: u64) {
    let kept = store.subscription(id).unwrap().unwrap();
    assert_eq!(kept.events, count, "every event counted");
    assert_eq!(kept.headers.len() as u64, count, "every edit kept");
    let numbered: Vec<(u64, u64)> = store
        .subscription_events(id, 1, count)
        .unwrap()
        .iter()
        .map(|e| (e.number, e.at_micros))
        .collect();
    let expected: Vec<(u64, u64)> = (0..count).map(|i| (i + 1, i)).collect();
    assert_eq!(
        numbered, expected,
        "numbered from 1 without a gap, in order"
    );
}

#[test]
fn two_nodes_changing_one_subscription_at_once_lose_no_change() {
    const CHANGES: u64 = 150;
    let cluster = Cluster::start();
    let url = cluster.database();
    // Two nodes: two stores, each with its own connection, on one database.
    let (sender, other) = (
        Store::open_postgres(&url).unwrap(),
        Store::open_postgres(&url).unwrap(),
    );
    let sub = subscription(HouseholdId(Uuid::now_v7()), 0);
    other.put_subscription(&sub).unwrap();
    race(&sender, &other, sub.id, CHANGES);
    assert_nothing_lost(&sender, sub.id, CHANGES);

    // And within one process on sled, as before.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sub = subscription(HouseholdId(Uuid::now_v7()), 0);
    store.put_subscription(&sub).unwrap();
    race(&store, &store.clone(), sub.id, CHANGES);
    assert_nothing_lost(&store, sub.id, CHANGES);
}

/// Two nodes counting the same log at once (for a moment two hold the push lease: one cut off
/// from the database, one that took the lease over), in batches of their own, so that they count
/// different positions (a batch counts a household's last event in it): every number holds the
/// event of the position its count moved to, numbers follow positions, none is counted twice.
#[test]
fn two_nodes_counting_the_same_events_number_each_once_with_its_own_content() {
    const POSITIONS: u64 = 300;
    let cluster = Cluster::start();
    let url = cluster.database();
    let (old, new) = (
        Store::open_postgres(&url).unwrap(),
        Store::open_postgres(&url).unwrap(),
    );
    let sub = subscription(HouseholdId(Uuid::now_v7()), 0);
    old.put_subscription(&sub).unwrap();
    std::thread::scope(|scope| {
        for (store, batch) in [(&old, 3), (&new, 2)] {
            scope.spawn(move || {
                for position in (100..100 + POSITIONS).filter(|p| p % batch == 0) {
                    store
                        .count_subscription_event(sub.id, position, event(position))
                        .unwrap();
                }
            });
        }
    });
    let kept = new.subscription(sub.id).unwrap().unwrap();
    let positions: Vec<u64> = new
        .subscription_events(sub.id, 1, POSITIONS)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e.number, i as u64 + 1, "numbered from 1 without a gap");
            e.at_micros
        })
        .collect();
    assert_eq!(positions.len() as u64, kept.events);
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "each number holds its own position, in order: {positions:?}"
    );
    assert_eq!(kept.from_position, positions.last().unwrap() + 1);
}

//! Three `naast serve` nodes against one PostgreSQL (a real, throwaway cluster), with
//! authentication against a real OpenID provider, consent, the audit log and encryption on, and
//! one master key: commands on one household through every node at once lose nothing; a node
//! that holds an old view of the household does not decide on it (a revocation through one node
//! holds at once on another); a subscriber on one node sees every commit of the others once, in
//! order; an access on one node is in the family's access log on another; a SIGKILL of a node
//! under load loses no acknowledged command; `naast verify` passes. A FHIR Subscription made
//! through any node is served by the node holding the push lease; when that node is killed,
//! another takes the lease over and goes on with the subscription where it stopped. A household
//! erased through one node is refused on another that held it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_pg_cluster::Cluster;
use naast_proto::pb;
use naast_proto::pb::consent_service_client::ConsentServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_proto::pb::push_service_client::PushServiceClient;
use naast_tests::{
    Idp, Server, WebhookReceiver, fhir_call, master_key_file, notification_numbers, search_audit,
    server_with_key, signed, status_parameter,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const NODES: usize = 3;
const WRITERS: usize = 6;
const GOALS: usize = 5;

type Api = HouseholdServiceClient<naast_proto::client::Signed>;

fn node(dir: &Path, i: usize, key: &Path, idp: &Idp, url: &str) -> Server {
    node_with(dir, i, key, idp, url, &[])
}

/// [`node`] with `extra` arguments.
fn node_with(dir: &Path, i: usize, key: &Path, idp: &Idp, url: &str, extra: &[&str]) -> Server {
    let home = dir.join(format!("node-{i}"));
    std::fs::create_dir_all(&home).unwrap();
    let mut args = vec!["--storage", url];
    args.extend_from_slice(extra);
    server_with_key(&home, key, idp, &args)
}

async fn goal(
    api: &mut Api,
    household: &str,
    owner: &str,
    title: String,
) -> Result<u64, tonic::Status> {
    api.create_goal(pb::CreateGoalRequest {
        household_id: household.into(),
        owner_member_id: owner.into(),
        title,
        life_domains: vec![pb::LifeDomain::Housing as i32],
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().result.map_or(0, |r| r.position))
}

/// [`goal`], asked again when the household changed too often while it was decided
/// (`ABORTED`: nothing was written, as gRPC clients retry it).
async fn goal_retrying(
    api: &mut Api,
    household: &str,
    owner: &str,
    title: String,
) -> Result<u64, tonic::Status> {
    let mut tries = 0;
    loop {
        match goal(api, household, owner, title.clone()).await {
            Err(status) if status.code() == tonic::Code::Aborted && tries < 10 => tries += 1,
            answer => return answer,
        }
    }
}

/// Every goal's title, page after page, once the node has read the log up to `min_position`.
async fn goal_titles(api: &mut Api, household: &str, min_position: u64) -> Vec<String> {
    let mut titles = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .list_goals(pb::ListGoalsRequest {
                household_id: household.into(),
                min_position,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        titles.extend(page.goals.into_iter().map(|g| g.title));
        if page.next_page_token.is_empty() {
            return titles;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_nodes_on_one_database_decide_on_what_is_there_and_lose_nothing() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let key = master_key_file(dir.path());
    let mut nodes: Vec<Server> = (0..NODES)
        .map(|i| node(dir.path(), i, &key, &idp, &url))
        .collect();
    let parent = idp.token("ouder-a").await;
    let supporter = idp.token("ondersteuner").await;
    let admin = idp.token("beheerder").await;
    let mut api = HouseholdServiceClient::new(signed(&nodes[0].url(), &parent).await);
    let (household, member, _) =
        naast_tests::household_with_client(&mut api, "Familie Drie Knopen").await;

    // A subscriber on the last node, from the household's first revision.
    let mut watcher = HouseholdServiceClient::new(signed(&nodes[NODES - 1].url(), &parent).await);
    let mut timeline = watcher
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: household.clone(),
            start_revision: Some(0),
        })
        .await
        .unwrap()
        .into_inner();

    // Writers on every node, on one household at once: each node decides on its own view,
    // and a view another node has moved past is read again before deciding.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let node_url = nodes[w % NODES].url();
        let (parent, household, member) = (parent.clone(), household.clone(), member.clone());
        writers.push(tokio::spawn(async move {
            let mut api = HouseholdServiceClient::new(signed(&node_url, &parent).await);
            let mut last = 0;
            for g in 0..GOALS {
                last = goal_retrying(&mut api, &household, &member, format!("doel {w}-{g}"))
                    .await
                    .unwrap_or_else(|e| panic!("writer {w} through node {}: {e:?}", w % NODES));
            }
            last
        }));
    }
    let mut head = 0;
    for writer in writers {
        head = head.max(writer.await.unwrap());
    }
    let expected: BTreeSet<String> = (0..WRITERS)
        .flat_map(|w| (0..GOALS).map(move |g| format!("doel {w}-{g}")))
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let mut api = HouseholdServiceClient::new(signed(&node.url(), &parent).await);
        let titles = goal_titles(&mut api, &household, head).await;
        assert_eq!(titles.len(), WRITERS * GOALS, "node {i}: {titles:?}");
        assert_eq!(
            titles.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "node {i}"
        );
    }

    // The supporter, given access through node 0, writes through node 1: node 1 now holds the
    // household with the grant. Revoked through node 0, the supporter is refused on node 1 at
    // once, though node 1 has not read the revocation before the command came.
    let who = ConsentServiceClient::new(signed(&nodes[1].url(), &supporter).await)
        .get_caller(pb::GetCallerRequest {})
        .await
        .unwrap()
        .into_inner()
        .identity
        .unwrap();
    let mut consent = ConsentServiceClient::new(signed(&nodes[0].url(), &parent).await);
    let grant_id = consent
        .grant_access(pb::GrantAccessRequest {
            household_id: household.clone(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::Person(who)),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![
                    pb::AccessScope::ReadTimeline as i32,
                    pb::AccessScope::WriteGoalsNotes as i32,
                ],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_id;
    let mut as_supporter = HouseholdServiceClient::new(signed(&nodes[1].url(), &supporter).await);
    let mut allowed = None;
    for _ in 0..100 {
        // Node 1 may not have read the grant yet: then it refuses, and is asked again.
        match goal(
            &mut as_supporter,
            &household,
            &member,
            "van de ondersteuner".into(),
        )
        .await
        {
            Ok(position) => {
                allowed = Some(position);
                break;
            }
            Err(status) if status.code() == tonic::Code::PermissionDenied => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(allowed.is_some(), "the grant never reached node 1");
    // The supporter reads through node 1 while the grant holds.
    as_supporter
        .list_goals(pb::ListGoalsRequest {
            household_id: household.clone(),
            ..Default::default()
        })
        .await
        .expect("the supporter reads with the grant");
    consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: household.clone(),
            grant_id,
            reason: "niet meer nodig".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A command right after the revocation, on the node that had the grant: refused, though
    // nothing made that node read the household since (node 1 decides on the view it holds,
    // loses the race to node 0's revocation at its append, and decides again); and recorded
    // as refused.
    let refused_request = uuid::Uuid::now_v7().to_string();
    let refused = as_supporter
        .create_goal(pb::CreateGoalRequest {
            household_id: household.clone(),
            owner_member_id: member.clone(),
            title: "na de intrekking".into(),
            life_domains: vec![pb::LifeDomain::Housing as i32],
            options: Some(pb::CommandOptions {
                request_id: refused_request.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("a revoked supporter writes through another node");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let read = as_supporter
        .list_goals(pb::ListGoalsRequest {
            household_id: household.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a revoked supporter reads through another node");
    assert_eq!(read.code(), tonic::Code::PermissionDenied, "{read:?}");

    // A read on node 1 is in the family's access log as node 2 lists it.
    let mut on_one = HouseholdServiceClient::new(signed(&nodes[1].url(), &parent).await);
    naast_tests::household(&mut on_one, &household).await;
    let mut found = false;
    for _ in 0..300 {
        let records = search_audit(
            signed(&nodes[2].url(), &admin).await,
            pb::SearchAuditLogRequest {
                household_id: household.clone(),
                ..Default::default()
            },
        )
        .await;
        // The refused command's record says refused, with a reason and no basis.
        let refusals = records
            .iter()
            .filter(|r| r.request_id == refused_request)
            .inspect(|r| {
                assert_eq!(r.operation, "/naast.v1.HouseholdService/CreateGoal");
                assert_eq!(r.outcome, pb::AuditOutcome::Denied as i32, "{r:?}");
                assert!(!r.outcome_reason.is_empty(), "{r:?}");
                assert!(r.basis.is_empty(), "{r:?}");
            })
            .count();
        let reads = records
            .iter()
            .filter(|r| r.operation == "/naast.v1.HouseholdService/GetHousehold")
            .count();
        if reads > 0 && refusals > 0 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "node 2's audit log lacks node 1's read or refusal");

    // Writers through nodes 1 and 2 while node 1 is SIGKILLed: whatever was acknowledged is
    // there afterwards, on every node.
    let mut writers = Vec::new();
    for w in 0..4 {
        let node_url = nodes[1 + w % 2].url();
        let (parent, household, member) = (parent.clone(), household.clone(), member.clone());
        writers.push(tokio::spawn(async move {
            let mut api = HouseholdServiceClient::new(signed(&node_url, &parent).await);
            let mut acknowledged = Vec::new();
            for g in 0..40 {
                let title = format!("tijdens {w}-{g}");
                match goal_retrying(&mut api, &household, &member, title.clone()).await {
                    Ok(position) => acknowledged.push((title, position)),
                    Err(_) if w % 2 == 0 => break, // its node was killed
                    Err(e) => panic!("writer {w} on the surviving node: {e:?}"),
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    nodes[1].kill();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(!acknowledged.is_empty());
    nodes[1] = node(dir.path(), 1, &key, &idp, &url);
    let head = acknowledged.iter().map(|(_, p)| *p).max().unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let mut api = HouseholdServiceClient::new(signed(&node.url(), &parent).await);
        let titles: BTreeSet<String> = goal_titles(&mut api, &household, head)
            .await
            .into_iter()
            .collect();
        for (title, _) in &acknowledged {
            assert!(
                titles.contains(title),
                "node {i} lost the acknowledged {title:?}"
            );
        }
    }

    // The subscriber on node 2 saw every revision of the household once, in order.
    let revision = naast_tests::household(&mut api, &household).await.revision;
    let mut seen = Vec::new();
    while seen.len() as u64 <= revision {
        let entry = tokio::time::timeout(Duration::from_secs(30), timeline.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the subscriber saw {} of {} revisions",
                    seen.len(),
                    revision + 1
                )
            })
            .unwrap()
            .expect("the stream goes on")
            .entry
            .unwrap();
        seen.push((entry.revision, entry.position));
    }
    let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, (0..=revision).collect::<Vec<_>>());
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1),
        "positions out of order"
    );

    // The family erases the household through node 0. Node 1, whose cached view still holds
    // it (and whose key store has forgotten its key once its projector passed the tombstone),
    // refuses a command on it, as any node refuses one on an erased household: it reads what
    // node 0 committed and decides again, rather than failing to seal.
    let mut on_one = HouseholdServiceClient::new(signed(&nodes[1].url(), &parent).await);
    goal_retrying(&mut on_one, &household, &member, "voor het wissen".into())
        .await
        .unwrap();
    ConsentServiceClient::new(signed(&nodes[0].url(), &parent).await)
        .erase_household(pb::EraseHouseholdRequest {
            household_id: household.clone(),
            options: None,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = goal(&mut on_one, &household, &member, "na het wissen".into())
        .await
        .expect_err("a command on a household erased through another node");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // The log and the audit log verify, read from a data directory of their own.
    drop(nodes);
    let verified = naast_tests::verify(&dir.path().join("verifier"), &["--storage", &url]);
    assert!(verified.contains("naast verify: intact:"), "{verified}");
    assert!(verified.contains("audit log of"), "{verified}");
}

/// The events numbered so far of the subscription at `url` (its `$status`).
async fn events_since_start(url: &str, token: &str) -> u64 {
    let (code, status) =
        fhir_call(reqwest::Method::GET, &format!("{url}/$status"), token, None).await;
    assert_eq!(code, 200, "{status}");
    status_parameter(
        &status["entry"][0]["resource"],
        "events-since-subscription-start",
    )
    .and_then(|p| p["valueString"].as_str())
    .and_then(|n| n.parse().ok())
    .unwrap()
}

/// The kind and event numbers of every notification `receiver` took, in order.
async fn notifications(receiver: &WebhookReceiver) -> Vec<(String, Vec<u64>)> {
    receiver.notices().await["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|notice| notification_numbers(&notice["payload"]))
        .collect()
}

/// Waits (a deadline against hanging, not a speed check) until `done` holds of what
/// `receiver` took.
async fn until_received(
    receiver: &WebhookReceiver,
    what: &str,
    done: impl Fn(&[(String, Vec<u64>)]) -> bool,
) {
    for _ in 0..1200 {
        if done(&notifications(receiver).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: received {:?}", notifications(receiver).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_push_lease_passes_to_another_node_when_its_holder_is_killed() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let idp = Idp::start();
    let receiver = WebhookReceiver::start(&["--fhir-notifications"]);
    let dir = tempfile::tempdir().unwrap();
    let key = master_key_file(dir.path());
    let start = |i: usize| {
        node_with(
            dir.path(),
            i,
            &key,
            &idp,
            &url,
            &["--fhir-listen", "127.0.0.1:0"],
        )
    };
    let mut holder = start(0);
    let mut other = start(1);
    let parent = idp.token("ouder-a").await;
    let mut api = HouseholdServiceClient::new(signed(&other.url(), &parent).await);
    let (household, client, _) =
        naast_tests::household_with_client(&mut api, "Familie Na De Overname").await;

    // The parent subscribes through the node without the push lease: the subscription is in
    // the shared store, and the holder sends its handshake and its first event.
    let (code, created) = fhir_call(
        reqwest::Method::POST,
        &format!("{}/Subscription", other.fhir_base()),
        &parent,
        Some(&serde_json::json!({
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "ons gezinsplan in onze PGO",
            "criteria": "https://naast.nl/fhir/SubscriptionTopic/household-changed",
            "_criteria": {"extension": [{
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                "valueString": format!("Group?_id={household}"),
            }]},
            "channel": {
                "type": "rest-hook",
                "endpoint": receiver.url,
                "payload": "application/fhir+json",
                "_payload": {"extension": [{
                    "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
                    "valueCode": "id-only",
                }]},
            },
        })),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let on_holder = format!("{}/Subscription/{id}", holder.fhir_base());
    let (code, read) = fhir_call(reqwest::Method::GET, &on_holder, &parent, None).await;
    assert_eq!(code, 200, "the holder reads it too: {read}");
    until_received(&receiver, "the handshake, from the holder", |n| {
        n.iter().any(|(kind, _)| kind == "handshake")
    })
    .await;
    naast_tests::create_goal(&mut api, &household, &client, "voor de overname").await;
    until_received(&receiver, "event 1, from the holder", |n| {
        n.iter().any(|(_, numbers)| numbers.contains(&1))
    })
    .await;
    assert!(holder.is_running(), "the holder sent them");
    // The push endpoints are managed on the node that pushes; the other says so.
    let admin = idp.token("beheerder").await;
    let endpoints = |url: String| {
        let admin = admin.clone();
        async move {
            PushServiceClient::new(signed(&url, &admin).await)
                .list_push_endpoints(pb::ListPushEndpointsRequest {})
                .await
        }
    };
    let refused = endpoints(other.url()).await.expect_err("not the push node");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(refused.message().contains("push lease"), "{refused:?}");
    endpoints(holder.url())
        .await
        .expect("the push node answers");

    // The holder dies: the other node takes the lease and runs anew to push, on its own
    // addresses again (here ports of its choosing, which it prints again).
    holder.kill();
    let mut taken_over = None;
    for _ in 0..600 {
        let printed = other.printed_later();
        let fhir = printed.iter().rev().find_map(|line| {
            line.strip_prefix("naast FHIR facade on ")
                .map(|base| base.trim().to_owned())
        });
        let grpc = printed.iter().rev().find_map(|line| {
            line.strip_prefix("naast listening on ")
                .map(|address| format!("http://{}", address.trim()))
        });
        if let (Some(fhir), Some(grpc)) = (fhir, grpc) {
            taken_over = Some((fhir, grpc));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (fhir, grpc) = taken_over.expect("no node took the push lease over within a minute");
    assert!(other.is_running(), "the node restarted in place");

    // It serves as before, and goes on with the subscription where the holder stopped: the
    // next change is event 2, sent by the new holder.
    endpoints(grpc.clone())
        .await
        .expect("the new push node answers");
    let mut api = HouseholdServiceClient::new(signed(&grpc, &parent).await);
    naast_tests::create_goal(&mut api, &household, &client, "na de overname").await;
    until_received(&receiver, "event 2, from the new holder", |n| {
        n.iter().any(|(_, numbers)| numbers.contains(&2))
    })
    .await;
    let subscription = format!("{fhir}/Subscription/{id}");
    assert_eq!(events_since_start(&subscription, &parent).await, 2);
    let events: Vec<u64> = notifications(&receiver)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "event-notification")
        .flat_map(|(_, numbers)| numbers)
        .collect();
    let distinct: BTreeSet<u64> = events.iter().copied().collect();
    assert_eq!(
        distinct,
        BTreeSet::from([1, 2]),
        "numbered on, no gap: {events:?}"
    );
}

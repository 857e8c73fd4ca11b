//! Push to a PGO platform's FHIR server, end to end: the real `naast serve` process pushes to a
//! real FHIR server (Medplum's FHIR router with its in-memory repository, run on Node by
//! `tests/node/fhir_receiver.mjs`, which also validates every write against the base R4
//! definitions), sometimes through a proxy that injects faults. What the platform holds is
//! compared with what naast's own FHIR facade shows the family: exactly one resource per
//! expected resource, the same content, references resolved on the platform's server; nothing
//! for households that granted nothing, everything withdrawn on revocation and erasure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_tests::{
    FhirReceiver, Idp, Rng, Server, grant_platform, household_with_client, search_audit,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The platform's client id, as the family's grant names it.
const PLATFORM: &str = "jouw-omgeving";
/// The development issuer (the grant names the platform by its issuer too).
const DEV_ISSUER: &str = "https://dev.naast.invalid";
/// The token the receiver demands.
const TOKEN: &str = "push-test-token";
/// What naast pushes.
const PUSHED: [&str; 8] = [
    "Patient",
    "RelatedPerson",
    "Group",
    "CareTeam",
    "Goal",
    "CarePlan",
    "Coverage",
    "Task",
];
/// How long everything may take to arrive (a deadline against hanging, not a speed check).
const ARRIVAL: Duration = Duration::from_secs(120);

type Households = pb::household_service_client::HouseholdServiceClient<naast_proto::client::Signed>;
/// A resource's place: its type and naast's id.
type Key = (String, String);

fn token_file(dir: &Path) -> PathBuf {
    let file = dir.join("receiver.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    file
}

fn push_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let file = dir.join("push.toml");
    let token = token_file(dir);
    std::fs::write(
        &file,
        format!(
            r#"
[[push]]
name = "jo"
kind = "fhir"
url = "{url}"
platform = {{ issuer = "{DEV_ISSUER}", client_id = "{PLATFORM}" }}
auth = {{ kind = "bearer", token_file = "{}" }}
{extra}
"#,
            token.display()
        ),
    )
    .unwrap();
    file
}

fn serve(data: &Path, config: &Path) -> Server {
    Server::start_with(
        data,
        &[
            "--dev",
            "--fhir-listen",
            "127.0.0.1:0",
            "--push-config",
            config.to_str().unwrap(),
        ],
    )
}

/// A household with a client, a relative, a plan, goals and agreements (some accepted).
async fn family(api: &mut Households, name: &str, rng: &mut Rng) -> String {
    let (home, client, _) = household_with_client(api, name).await;
    api.create_member(pb::CreateMemberRequest {
        household_id: home.clone(),
        details: Some(pb::MemberDetails {
            name: "Mirjam".into(),
            role: pb::MemberRole::Relative as i32,
            relation: pb::Relation::Parent as i32,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let plan = api
        .create_plan(pb::CreatePlanRequest {
            household_id: home.clone(),
            kind: pb::PlanKind::FamilyPlan as i32,
            title: format!("Gezinsplan {name}"),
            summary: "wat we samen willen".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .plan_id;
    let mut goals = Vec::new();
    for g in 0..1 + rng.below(3) {
        let goal = api
            .create_goal(pb::CreateGoalRequest {
                household_id: home.clone(),
                owner_member_id: client.clone(),
                title: format!("doel {g} van {name}"),
                life_domains: vec![1 + i32::try_from(rng.below(7)).unwrap()],
                plan_id: plan.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .goal_id;
        goals.push(goal);
    }
    for a in 0..1 + rng.below(3) {
        let agreement = api
            .propose_agreement(pb::ProposeAgreementRequest {
                household_id: home.clone(),
                terms: Some(pb::AgreementTerms {
                    title: format!("afspraak {a} van {name}"),
                    parties: vec![pb::Party {
                        party: Some(pb::party::Party::MemberId(client.clone())),
                    }],
                    funding_domain: 1 + i32::try_from(rng.below(4)).unwrap(),
                    start_date: "2026-01-01".into(),
                    frequency: "2 dagen per week".into(),
                    goal_ids: vec![goals[0].clone()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .agreement_id;
        if rng.below(2) == 0 {
            api.accept_agreement(pb::AcceptAgreementRequest {
                household_id: home.clone(),
                agreement_id: agreement,
                ..Default::default()
            })
            .await
            .unwrap();
        }
    }
    home
}

/// naast's id of a resource: its `urn:ietf:rfc:3986` identifier.
fn naast_id(resource: &Value) -> Option<String> {
    resource["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == "urn:ietf:rfc:3986")
        .and_then(|i| i["value"].as_str())
        .and_then(|v| v.strip_prefix("urn:uuid:"))
        .map(str::to_owned)
}

/// What the family's own FHIR facade shows of `household`, of the pushed types.
async fn wanted(server: &Server, household: &str) -> BTreeMap<Key, Value> {
    let url = format!("{}/Group/{household}/$everything", server.fhir_base());
    let (status, bundle) = FhirReceiver::get(&url, Some(server.token("ouder"))).await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .filter(|r| PUSHED.contains(&r["resourceType"].as_str().unwrap_or_default()))
        .map(|r| {
            let key = (
                r["resourceType"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            );
            (key, r)
        })
        .collect()
}

/// Everything the receiver holds of the pushed types, by naast's id (more than one resource
/// per key would be a duplicate).
async fn held(receiver: &FhirReceiver, token: &str) -> BTreeMap<Key, Vec<Value>> {
    let mut out: BTreeMap<Key, Vec<Value>> = BTreeMap::new();
    for resource_type in PUSHED {
        let url = format!("{}/{resource_type}?_count=10000", receiver.base);
        let (status, bundle) = FhirReceiver::get(&url, Some(token)).await;
        assert_eq!(status, 200, "{bundle}");
        for entry in bundle["entry"].as_array().cloned().unwrap_or_default() {
            let resource = entry["resource"].clone();
            let id = naast_id(&resource)
                .unwrap_or_else(|| panic!("a pushed resource without naast's id: {resource}"));
            out.entry((resource_type.to_owned(), id))
                .or_default()
                .push(resource);
        }
    }
    out
}

/// Waits until the receiver holds exactly one resource for each resource of `expected`, with
/// the same content, and nothing else; returns what it holds. (Keys arrive before content
/// settles: a resource written while what it refers to was not there yet is written again
/// once it is.)
async fn arrived(receiver: &FhirReceiver, expected: &BTreeMap<Key, Value>) -> BTreeMap<Key, Value> {
    arrived_as(receiver, expected, TOKEN).await
}

/// [`arrived`], reading the receiver with `token`.
async fn arrived_as(
    receiver: &FhirReceiver,
    expected: &BTreeMap<Key, Value>,
    token: &str,
) -> BTreeMap<Key, Value> {
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    let wanted: BTreeSet<Key> = expected.keys().cloned().collect();
    loop {
        let held = held(receiver, token).await;
        let keys: BTreeSet<Key> = held.keys().cloned().collect();
        let duplicates: Vec<&Key> = held
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| k)
            .collect();
        assert!(
            duplicates.is_empty(),
            "duplicates on the platform: {duplicates:?}"
        );
        let problem = if keys == wanted {
            let held: BTreeMap<Key, Value> = held
                .into_iter()
                .map(|(k, mut v)| (k, v.remove(0)))
                .collect();
            match same_content(expected, &held) {
                Ok(()) => return held,
                Err(e) => e,
            }
        } else {
            let missing: Vec<_> = wanted.difference(&keys).collect();
            let extra: Vec<_> = keys.difference(&wanted).collect();
            format!("missing {missing:?}, extra {extra:?}")
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the platform does not hold what it should: {problem}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `resource` as the facade would show it: the server's ids in references turned back into
/// naast's (via `ids`, server id → key), logical references by naast's identifier turned into
/// plain ones; without id and meta.
fn as_naast(resource: &Value, ids: &BTreeMap<(String, String), String>) -> Value {
    fn walk(value: &mut Value, ids: &BTreeMap<(String, String), String>) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, ids)),
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("reference").cloned()
                    && let Some((t, remote)) = reference.split_once('/')
                    && let Some(naast) = ids.get(&(t.to_owned(), remote.to_owned()))
                {
                    object.insert("reference".into(), Value::String(format!("{t}/{naast}")));
                }
                if let (Some(Value::String(t)), Some(identifier)) = (
                    object.get("type").cloned(),
                    object.get("identifier").cloned(),
                ) && !object.contains_key("reference")
                    && let Some(id) = identifier["value"]
                        .as_str()
                        .and_then(|v| v.strip_prefix("urn:uuid:"))
                {
                    object.insert("reference".into(), Value::String(format!("{t}/{id}")));
                    object.remove("type");
                    object.remove("identifier");
                }
                object.values_mut().for_each(|v| walk(v, ids));
            }
            _ => {}
        }
    }
    let mut resource = resource.clone();
    walk(&mut resource, ids);
    if let Some(object) = resource.as_object_mut() {
        object.remove("id");
        object.remove("meta");
    }
    resource
}

/// The facade's resource with what push leaves out of references to resources the platform
/// does not hold (their display), without id and meta.
fn comparable(resource: &Value, held: &BTreeSet<Key>) -> Value {
    fn walk(value: &mut Value, held: &BTreeSet<Key>) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, held)),
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("reference").cloned()
                    && let Some((t, id)) = reference.split_once('/')
                    && !held.contains(&(t.to_owned(), id.to_owned()))
                {
                    object.remove("display");
                }
                object.values_mut().for_each(|v| walk(v, held));
            }
            _ => {}
        }
    }
    let mut resource = resource.clone();
    walk(&mut resource, held);
    if let Some(object) = resource.as_object_mut() {
        object.remove("id");
        object.remove("meta");
    }
    resource
}

/// Every pushed resource equals the facade's, references resolved on the platform's server.
fn same_content(wanted: &BTreeMap<Key, Value>, held: &BTreeMap<Key, Value>) -> Result<(), String> {
    let ids: BTreeMap<(String, String), String> = held
        .iter()
        .map(|((t, naast), r)| {
            (
                (t.clone(), r["id"].as_str().unwrap().to_owned()),
                naast.clone(),
            )
        })
        .collect();
    let keys: BTreeSet<Key> = held.keys().cloned().collect();
    for (key, facade) in wanted {
        let pushed = held.get(key).ok_or_else(|| format!("{key:?} not pushed"))?;
        let (pushed, facade) = (as_naast(pushed, &ids), comparable(facade, &keys));
        if pushed != facade {
            return Err(format!(
                "{key:?}: what the platform holds differs from what the facade shows:\n{pushed}\n{facade}"
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_households_reach_the_platform_and_revoked_or_erased_ones_are_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = FhirReceiver::start(&["--token-file", token_file(dir.path()).to_str().unwrap()]);
    let config = push_config(dir.path(), &receiver.base, "");
    let server = serve(&dir.path().join("data"), &config);
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let mut consent =
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
    let mut rng = Rng::new(12);

    let granted = family(&mut api, "Bakker", &mut rng).await;
    let never = family(&mut api, "De Vries", &mut rng).await;
    let revoked = family(&mut api, "Jansen", &mut rng).await;
    let erased = family(&mut api, "Visser", &mut rng).await;
    grant_platform(&mut consent, &granted, DEV_ISSUER, PLATFORM).await;
    let revoked_grant = grant_platform(&mut consent, &revoked, DEV_ISSUER, PLATFORM).await;
    grant_platform(&mut consent, &erased, DEV_ISSUER, PLATFORM).await;

    let mut all = BTreeMap::new();
    for household in [&granted, &revoked, &erased] {
        all.extend(wanted(&server, household).await);
    }
    assert!(
        all.len() >= 20,
        "three families hold more than {}",
        all.len()
    );
    let held = arrived(&receiver, &all).await;
    assert!(
        wanted(&server, &never)
            .await
            .keys()
            .all(|k| !held.contains_key(k)),
        "a household that granted nothing has nothing on the platform"
    );

    // A change is written over the same resource: still one, a new version.
    let goal = wanted(&server, &granted)
        .await
        .into_keys()
        .find(|(t, _)| t == "Goal")
        .map(|(_, id)| id)
        .unwrap();
    api.update_goal(pb::UpdateGoalRequest {
        household_id: granted.clone(),
        goal_id: goal.clone(),
        title: "samen naar de kinderboerderij".into(),
        life_domains: vec![pb::LifeDomain::Housing as i32],
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let url = format!(
            "{}/Goal?identifier=urn:ietf:rfc:3986|urn:uuid:{goal}",
            receiver.base
        );
        let (_, bundle) = FhirReceiver::get(&url, Some(TOKEN)).await;
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 1, "{bundle}");
        if entries[0]["resource"]["description"]["text"] == "samen naar de kinderboerderij" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never arrived: {bundle}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Revoked: everything of that household is withdrawn; erased: likewise.
    consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: revoked.clone(),
            grant_id: revoked_grant.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    consent
        .erase_household(pb::EraseHouseholdRequest {
            household_id: erased.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let remaining: BTreeMap<Key, Value> = wanted(&server, &granted).await;
    arrived(&receiver, &remaining).await;

    // Every write and withdrawal is in the audit log: to whom, which household, on which grant.
    let admin = server.signed("beheerder").await;
    let records = search_audit(
        admin.clone(),
        pb::SearchAuditLogRequest {
            household_id: granted.clone(),
            ..Default::default()
        },
    )
    .await;
    let pushed: Vec<_> = records
        .iter()
        .filter(|r| r.operation == "push update")
        .collect();
    let objects: BTreeSet<String> = pushed
        .iter()
        .flat_map(|r| r.object_ids.iter().cloned())
        .collect();
    for (resource_type, id) in remaining.keys() {
        assert!(
            objects.contains(&format!("{resource_type}/{id}")),
            "{resource_type}/{id} left naast without an audit record"
        );
    }
    assert!(pushed.iter().all(|r| r.source_system == "jo"
        && r.action == pb::AuditAction::Read as i32
        && r.basis.iter().any(|b| b.starts_with("grant:"))));
    let records = search_audit(
        admin,
        pb::SearchAuditLogRequest {
            household_id: revoked.clone(),
            ..Default::default()
        },
    )
    .await;
    let withdrawn: Vec<_> = records
        .iter()
        .filter(|r| r.operation == "push delete")
        .collect();
    assert!(!withdrawn.is_empty());
    assert!(
        withdrawn
            .iter()
            .all(|r| r.outcome_reason.contains("no grant to the platform holds")),
        "{withdrawn:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_survives_faults_and_a_sigkill_without_losing_or_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let receiver = FhirReceiver::start(&[
        "--token-file",
        token.to_str().unwrap(),
        "--faults",
        "--seed",
        "11",
        "--fault-rate",
        "0.3",
        "--hang-ms",
        "2500",
        "--fault-kinds",
        "error_500,throttle_429,hang,drop,after_500,after_drop",
    ]);
    let proxy = receiver.proxy.clone().unwrap();
    let config = push_config(
        dir.path(),
        &proxy,
        "timeout_seconds = 1\nmax_backoff_seconds = 1\nconcurrency = 4",
    );
    let data = dir.path().join("data");
    let mut rng = Rng::new(7);
    let mut households = Vec::new();
    let mut server = serve(&data, &config);
    {
        let mut api =
            pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
        let mut consent =
            pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
        for i in 0..8 {
            let home = family(&mut api, &format!("gezin {i}"), &mut rng).await;
            if i % 4 != 3 {
                grant_platform(&mut consent, &home, DEV_ISSUER, PLATFORM).await;
                households.push(home);
            }
        }
    }
    // Killed while pushing: some requests went out, not all could have been answered.
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let (_, faults) = FhirReceiver::get(
            &format!("{}/_faults", proxy.trim_end_matches("/fhir")),
            None,
        )
        .await;
        if faults["requests"].as_u64().unwrap_or(0) >= 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was pushed: {faults}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();

    let server = serve(&data, &config);
    {
        let mut api =
            pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
        let mut consent =
            pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
        for i in 8..12 {
            let home = family(&mut api, &format!("gezin {i}"), &mut rng).await;
            let granted = grant_platform(&mut consent, &home, DEV_ISSUER, PLATFORM).await;
            if i == 8 {
                // Granted, pushed (in part, through the faults), then revoked midway: in the
                // end the platform holds nothing of it.
                tokio::time::sleep(Duration::from_millis(500)).await;
                consent
                    .revoke_access(pb::RevokeAccessRequest {
                        household_id: home.clone(),
                        grant_id: granted,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                continue;
            }
            households.push(home);
        }
    }
    let mut all = BTreeMap::new();
    for household in &households {
        all.extend(wanted(&server, household).await);
    }
    // Faults go on for a while, then stop; then everything must be there, once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let faults = receiver.control("/_faults/off").await;
    arrived(&receiver, &all).await;
    let (_, faults_seen) = FhirReceiver::get(
        &format!("{}/_faults", proxy.trim_end_matches("/fhir")),
        None,
    )
    .await;
    for kind in [
        "error_500",
        "throttle_429",
        "hang",
        "drop",
        "after_500",
        "after_drop",
    ] {
        assert!(
            faults_seen["counts"][kind].as_u64().unwrap_or(0) > 0,
            "fault {kind} never happened: {faults_seen} ({faults})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_dead_letters_listed_with_their_bodies_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let receiver = FhirReceiver::start(&[
        "--token-file",
        token.to_str().unwrap(),
        "--faults",
        "--seed",
        "5",
        "--fault-rate",
        "0.4",
        "--fault-kinds",
        "reject_422",
    ]);
    let proxy = receiver.proxy.clone().unwrap();
    let config = push_config(dir.path(), &proxy, "");
    let server = serve(&dir.path().join("data"), &config);
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let mut consent =
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
    let mut rng = Rng::new(3);
    let mut all = BTreeMap::new();
    for i in 0..3 {
        let home = family(&mut api, &format!("gezin {i}"), &mut rng).await;
        grant_platform(&mut consent, &home, DEV_ISSUER, PLATFORM).await;
        all.extend(wanted(&server, &home).await);
    }
    let mut admin =
        pb::push_service_client::PushServiceClient::new(server.signed("beheerder").await);
    // Wait until every resource was answered: written, or refused for good.
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    let state = loop {
        let endpoints = admin
            .list_push_endpoints(pb::ListPushEndpointsRequest {})
            .await
            .unwrap()
            .into_inner()
            .endpoints;
        assert_eq!(endpoints.len(), 1);
        let state = endpoints[0].clone();
        if state.checkpoint == state.head && state.resources == all.len() as u64 {
            break state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "push never caught up: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((state.name.as_str(), state.kind.as_str()), ("jo", "fhir"));
    assert_eq!(state.platform_client_id, PLATFORM);
    assert!(
        state.dead_letters > 0,
        "some writes were refused: {state:?}"
    );
    assert!(
        state.last_error.contains("422") || state.delivered > 0,
        "{state:?}"
    );

    // The dead letters, with the platform's answer, a page at a time.
    let mut letters = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_dead_letters(pb::ListDeadLettersRequest {
                endpoint: "jo".into(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        letters.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(letters.len() as u64, state.dead_letters);
    let resources: std::collections::BTreeSet<Key> = letters
        .iter()
        .map(|l| (l.resource_type.clone(), l.resource_id.clone()))
        .collect();
    assert_eq!(
        resources.len(),
        letters.len(),
        "one dead letter per resource, the newest refusal: {letters:?}"
    );
    for letter in &letters {
        assert_eq!((letter.method.as_str(), letter.status), ("PUT", 422));
        assert!(letter.body.contains("injected 422"), "{letter:?}");
        assert!(all.contains_key(&(letter.resource_type.clone(), letter.resource_id.clone())));
    }
    // A refused write never reaches the platform: it holds no version of the resource, or an
    // earlier one (a resource is written again in a later round once what it refers to is
    // there, and that write may be the refused one), never what the facade shows now.
    let held_now: BTreeMap<Key, Value> = held(&receiver, TOKEN)
        .await
        .into_iter()
        .map(|(k, mut v)| (k, v.remove(0)))
        .collect();
    for letter in &letters {
        let key = (letter.resource_type.clone(), letter.resource_id.clone());
        let current = BTreeMap::from([(key.clone(), all[&key].clone())]);
        assert!(
            same_content(&current, &held_now).is_err(),
            "a refused resource is on the platform as it is now: {letter:?}"
        );
    }

    // Only administrators see them; an unknown endpoint is named.
    let mut family = pb::push_service_client::PushServiceClient::new(server.signed("ouder").await);
    let refused = family
        .list_dead_letters(pb::ListDeadLettersRequest {
            endpoint: "jo".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let unknown = admin
        .replay_dead_letters(pb::ReplayDeadLettersRequest {
            endpoint: "elders".into(),
            dead_letter_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(unknown.message().contains("endpoint"), "{unknown:?}");

    // The platform mended its side: one replayed alone, then the rest; all arrive, once.
    receiver.control("/_faults/off").await;
    let one = admin
        .replay_dead_letters(pb::ReplayDeadLettersRequest {
            endpoint: "jo".into(),
            dead_letter_id: Some(letters[0].id),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.replayed, 1);
    let rest = admin
        .replay_dead_letters(pb::ReplayDeadLettersRequest {
            endpoint: "jo".into(),
            dead_letter_id: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.replayed, state.dead_letters - 1);
    arrived(&receiver, &all).await;
    let after = admin
        .list_push_endpoints(pb::ListPushEndpointsRequest {})
        .await
        .unwrap()
        .into_inner()
        .endpoints;
    assert_eq!(after[0].dead_letters, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_signs_in_at_the_platform_with_client_credentials_and_a_private_key_jwt() {
    // The platform's FHIR servers trust access tokens of a real OpenID provider; naast is a
    // system client there, authenticating with an assertion signed by its own key, RS384 for
    // one endpoint, ES384 for the other (SMART Backend Services' two). A third endpoint names
    // a key the provider does not know: it is refused a token, and says so.
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start();
    let receivers: Vec<FhirReceiver> = (0..3)
        .map(|_| FhirReceiver::start(&["--issuer", &idp.issuer, "--audience", "platform"]))
        .collect();
    let endpoint = |name: &str, receiver: &FhirReceiver, client: &str, kid: &str, alg: &str| {
        format!(
            r#"
[[push]]
name = "{name}"
kind = "fhir"
url = "{}"
platform = {{ issuer = "{DEV_ISSUER}", client_id = "{PLATFORM}" }}
auth = {{ kind = "client_credentials", token_url = "{}/token", client_id = "{client}", private_key_file = "{}", key_id = "{kid}", algorithm = "{alg}", resource = "https://platform.test/fhir" }}
"#,
            receiver.base,
            idp.issuer,
            idp.key_file(client).display()
        )
    };
    let config = dir.path().join("push.toml");
    std::fs::write(
        &config,
        [
            endpoint("rs", &receivers[0], "naast-push", "naast-push-1", "RS384"),
            endpoint(
                "ec",
                &receivers[1],
                "naast-push-ec",
                "naast-push-ec-1",
                "ES384",
            ),
            endpoint("wrong", &receivers[2], "naast-push", "not-a-key", "RS384"),
        ]
        .concat(),
    )
    .unwrap();
    let server = serve(&dir.path().join("data"), &config);
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let mut consent =
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
    let mut rng = Rng::new(21);
    let mut all = BTreeMap::new();
    for i in 0..2 {
        let home = family(&mut api, &format!("gezin {i}"), &mut rng).await;
        grant_platform(&mut consent, &home, DEV_ISSUER, PLATFORM).await;
        all.extend(wanted(&server, &home).await);
    }
    let reader = idp.token_for("ouder-a", "https://platform.test/fhir").await;
    for receiver in &receivers[..2] {
        arrived_as(receiver, &all, &reader).await;
        let (_, stats) = FhirReceiver::get(
            &format!("{}/_stats", receiver.base.trim_end_matches("/fhir")),
            None,
        )
        .await;
        assert!(stats["tokens"].as_u64().unwrap_or(0) >= 1, "{stats}");
        assert_eq!(stats["unauthorized"], 0, "{stats}");
    }
    let mut admin =
        pb::push_service_client::PushServiceClient::new(server.signed("beheerder").await);
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    let wrong = loop {
        let endpoints = admin
            .list_push_endpoints(pb::ListPushEndpointsRequest {})
            .await
            .unwrap()
            .into_inner()
            .endpoints;
        let wrong = endpoints.into_iter().find(|e| e.name == "wrong").unwrap();
        if wrong.last_error.contains("token endpoint") {
            break wrong;
        }
        assert!(tokio::time::Instant::now() < deadline, "{wrong:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(wrong.resources, 0, "{wrong:?}");
    assert!(held(&receivers[2], &reader).await.is_empty());
}

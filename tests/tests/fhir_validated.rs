//! Everything the FHIR facade of a real server serves for the five demo families and for
//! generated households — each household's `$everything` Bundle and every resource in it read on
//! its own, histories, searches, the CapabilityStatement, the CodeSystems and error outcomes —
//! passes two independent validators that no one here wrote: the Python `fhir.resources` R4B
//! models (`tests/python/validate_fhir.py`) and Medplum's validator of the base R4
//! StructureDefinitions on Node (`tests/node/validate_fhir.mjs`). The test command installs
//! both. A resource broken on purpose shows both are really looking.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::{Rng, Server, workspace_bin};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

async fn get(url: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    (status, body)
}

/// The households `naast demo` printed (`… household_id {id})`).
fn demo_households(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|line| line.split("household_id ").nth(1))
        .map(|id| id.trim_end_matches(')').trim().to_owned())
        .collect()
}

/// A household with a bit of everything, chosen by `rng`: members, a network, a plan, goals,
/// agreements proposed, accepted, rejected and amended, an indication, a note and a grant.
async fn generated(server: &Server, rng: &mut Rng, n: usize) -> String {
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, client, _) =
        naast_tests::household_with_client(&mut api, &format!("Gezin {n}")).await;
    api.create_member(pb::CreateMemberRequest {
        household_id: home.clone(),
        details: Some(pb::MemberDetails {
            name: format!("Ouder {n}"),
            role: pb::MemberRole::Relative as i32,
            relation: pb::Relation::Parent as i32,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let provider = api
        .create_contact(pb::CreateContactRequest {
            household_id: home.clone(),
            details: Some(pb::ContactDetails {
                kind: pb::ContactKind::CareProvider as i32,
                name: format!("Zorgaanbieder {n}"),
                organisation: "Zorg BV".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    let plan = api
        .create_plan(pb::CreatePlanRequest {
            household_id: home.clone(),
            kind: pb::PlanKind::FamilyPlan as i32,
            title: "Gezinsplan".into(),
            summary: "wat we samen willen".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .plan_id;
    let mut goals = Vec::new();
    for g in 0..1 + rng.below(4) {
        let domain = 1 + i32::try_from(rng.below(7)).unwrap();
        let goal = api
            .create_goal(pb::CreateGoalRequest {
                household_id: home.clone(),
                owner_member_id: client.clone(),
                title: format!("doel {g}"),
                life_domains: vec![domain],
                plan_id: if rng.below(2) == 0 {
                    plan.clone()
                } else {
                    String::new()
                },
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .goal_id;
        goals.push(goal);
    }
    for a in 0..1 + rng.below(4) {
        let funding = 1 + i32::try_from(rng.below(4)).unwrap();
        let agreement = api
            .propose_agreement(pb::ProposeAgreementRequest {
                household_id: home.clone(),
                terms: Some(pb::AgreementTerms {
                    title: format!("afspraak {a}"),
                    parties: vec![pb::Party {
                        party: Some(pb::party::Party::MemberId(client.clone())),
                    }],
                    responsible_contact_id: provider.clone(),
                    funding_domain: funding,
                    pgb: rng.below(2) == 0,
                    start_date: "2026-01-01".into(),
                    end_date: if rng.below(2) == 0 {
                        "2027-06-30".into()
                    } else {
                        String::new()
                    },
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
        match rng.below(3) {
            0 => {
                api.accept_agreement(pb::AcceptAgreementRequest {
                    household_id: home.clone(),
                    agreement_id: agreement,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            1 => {
                api.reject_agreement(pb::RejectAgreementRequest {
                    household_id: home.clone(),
                    agreement_id: agreement,
                    reason: "past niet".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            _ => {}
        }
    }
    api.record_indication(pb::RecordIndicationRequest {
        household_id: home.clone(),
        member_id: client.clone(),
        kind: pb::IndicationKind::WlzIndication as i32,
        care_profile: "VG6".into(),
        valid_from: "2025-03-01".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    api.create_note(pb::CreateNoteRequest {
        household_id: home.clone(),
        about_member_id: client.clone(),
        text: "eerste kennismaking".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await)
        .grant_access(pb::GrantAccessRequest {
            household_id: home.clone(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::OrganisationId("Zorg BV".into())),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                life_domains: vec![pb::LifeDomain::Housing as i32],
                until: "2099-12-31".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    home
}

/// Writes `resource` to a file of its own in `dir`.
fn keep(dir: &Path, files: &mut Vec<PathBuf>, resource: &Value) {
    let path = dir.join(format!("{}.json", files.len()));
    std::fs::write(&path, serde_json::to_vec_pretty(resource).unwrap()).unwrap();
    files.push(path);
}

/// Runs both validators on `files`: (all valid by both, what they said).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let python = Command::new("python3")
        .arg(format!("{root}/tests/python/validate_fhir.py"))
        .args(files)
        .output()
        .expect("python3 runs");
    let node = Command::new("node")
        .arg(format!("{root}/tests/node/validate_fhir.mjs"))
        .args(files)
        .current_dir(format!("{root}/tests/node"))
        .output()
        .expect("node runs");
    let said = format!(
        "fhir.resources: {}{}\nmedplum: {}{}",
        String::from_utf8_lossy(&python.stdout),
        String::from_utf8_lossy(&python.stderr),
        String::from_utf8_lossy(&node.stdout),
        String::from_utf8_lossy(&node.stderr),
    );
    assert!(
        !said.contains("No module named") && !said.contains("ERR_MODULE_NOT_FOUND"),
        "a validator is missing: ops/test.sh installs them (pip install -r tests/python/requirements.txt; cd tests/node && npm ci)\n{said}"
    );
    (python.status.success() && node.status.success(), said)
}

#[tokio::test]
async fn everything_served_for_the_demo_families_and_generated_households_is_valid_fhir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = Command::new(workspace_bin("naast"))
        .arg("demo")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let server = Server::start_with(&data, &["--dev", "--fhir-listen", "127.0.0.1:0"]);
    let mut households = demo_households(&String::from_utf8_lossy(&demo.stdout));
    assert_eq!(households.len(), 5, "the five demo families");
    let mut rng = Rng::new(11);
    for n in 0..3 {
        households.insert(generated(&server, &mut rng, n).await);
    }
    let base = server.fhir_base();
    let token = server.token("ouder").to_owned();
    let out = dir.path().join("resources");
    std::fs::create_dir(&out).unwrap();
    let mut files = Vec::new();
    let mut kinds = BTreeSet::new();
    for home in &households {
        let (status, everything) = get(&format!("{base}/Group/{home}/$everything"), &token).await;
        assert_eq!(status, 200, "{everything}");
        keep(&out, &mut files, &everything);
        let entries = everything["entry"].as_array().unwrap();
        assert!(entries.len() >= 4, "{everything}");
        for entry in entries {
            let resource = &entry["resource"];
            let kind = resource["resourceType"].as_str().unwrap();
            let id = resource["id"].as_str().unwrap();
            kinds.insert(kind.to_owned());
            // Each resource on its own, as a read serves it, and its history.
            let (status, read) = get(&format!("{base}/{kind}/{id}"), &token).await;
            assert_eq!(status, 200, "{kind}/{id}: {read}");
            keep(&out, &mut files, &read);
            if matches!(kind, "CarePlan" | "Goal") {
                let (status, history) = get(&format!("{base}/{kind}/{id}/_history"), &token).await;
                assert_eq!(status, 200, "{history}");
                keep(&out, &mut files, &history);
                let (status, provenance) =
                    get(&format!("{base}/Provenance?target={kind}/{id}"), &token).await;
                assert_eq!(status, 200, "{provenance}");
                assert!(!provenance["entry"].as_array().unwrap().is_empty());
                keep(&out, &mut files, &provenance);
            }
        }
        let (status, log) = get(&format!("{base}/AuditEvent?entity=Group/{home}"), &token).await;
        assert_eq!(status, 200, "{log}");
        assert!(!log["entry"].as_array().unwrap().is_empty());
        keep(&out, &mut files, &log);
        let client = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Patient")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned());
        if let Some(client) = client {
            for kind in [
                "CarePlan",
                "Goal",
                "Task",
                "Coverage",
                "Consent",
                "Communication",
            ] {
                let (status, found) = get(
                    &format!("{base}/{kind}?patient=Patient/{client}&_count=2"),
                    &token,
                )
                .await;
                assert_eq!(status, 200, "{found}");
                keep(&out, &mut files, &found);
            }
        }
    }
    for kind in [
        "Group",
        "Patient",
        "RelatedPerson",
        "CareTeam",
        "CarePlan",
        "Goal",
        "Task",
        "Coverage",
        "Consent",
        "Communication",
    ] {
        assert!(kinds.contains(kind), "no {kind} served: {kinds:?}");
    }
    let (_, metadata) = get(&format!("{base}/metadata"), &token).await;
    keep(&out, &mut files, &metadata);
    let (_, systems) = get(&format!("{base}/CodeSystem"), &token).await;
    assert_eq!(systems["total"], 9, "{systems}");
    keep(&out, &mut files, &systems);
    let (_, sets) = get(&format!("{base}/ValueSet"), &token).await;
    assert_eq!(sets["total"], 9, "{sets}");
    keep(&out, &mut files, &sets);
    let (status, outcome) = get(&format!("{base}/Goal?colour=red"), &token).await;
    assert_eq!(status, 400);
    keep(&out, &mut files, &outcome);

    let (valid, said) = validate(&files);
    assert!(valid, "{said}");
    assert!(files.len() > 100, "{} resources checked", files.len());

    // A resource broken on purpose: both validators refuse it.
    let mut broken = metadata.clone();
    broken["kind"] = "everything".into();
    broken["colour"] = "red".into();
    let path = out.join("broken.json");
    std::fs::write(&path, serde_json::to_vec(&broken).unwrap()).unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for (program, script, cwd) in [
        ("python3", "tests/python/validate_fhir.py", "."),
        ("node", "tests/node/validate_fhir.mjs", "tests/node"),
    ] {
        let refused = Command::new(program)
            .arg(format!("{root}/{script}"))
            .arg(&path)
            .current_dir(format!("{root}/{cwd}"))
            .output()
            .unwrap();
        assert!(
            !refused.status.success(),
            "{program} accepted a broken resource"
        );
    }
}

//! Every resource the mapping makes for a family, checked by an independent validator: the
//! Python `fhir.resources` package's R4B models (`tests/python/validate_fhir.py`, installed by
//! the test command), which check structure, types, cardinality and the codes of required
//! bindings. A resource broken on purpose shows the validator is really looking.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::event::{AgreementTerms, ContactDetails, MemberDetails, Party};
use naast_domain::ids::{
    AgreementId, ContactId, GoalId, HouseholdId, IndicationId, MemberId, PlanId,
};
use naast_domain::vocab::{
    ContactKind, FundingDomain, IndicationKind, LifeDomain, MemberRole, PlanKind, Relation,
    SupporterKind,
};
use naast_domain::{Command, Household, decide};
use naast_fhir::codes::{Vocabulary, code_system};
use std::path::Path;
use std::process::Command as Process;
use time::macros::date;

fn apply(state: &mut Household, command: Command) {
    for event in decide(state, command).unwrap() {
        state.apply(&event);
    }
}

/// A family of scenario 2: Sam (the client), his mother (legal representative), his sister, a
/// life-course coach and a care provider; an active support plan; goals active, achieved and
/// abandoned, about several life domains, one of them in the plan.
fn family() -> (HouseholdId, Household, MemberId) {
    let mut state = Household::default();
    apply(
        &mut state,
        Command::RegisterHousehold {
            name: "Familie Bakker".into(),
            registered_by: None,
        },
    );
    let member = |name: &str, role, relation, birth_date| MemberDetails {
        name: name.into(),
        role,
        relation,
        birth_date,
    };
    let sam = MemberId::new();
    for (id, details) in [
        (
            sam,
            member("Sam", MemberRole::Client, None, Some(date!(2008 - 03 - 14))),
        ),
        (
            MemberId::new(),
            member(
                "Ingrid",
                MemberRole::LegalRepresentative,
                Some(Relation::Parent),
                None,
            ),
        ),
        (
            MemberId::new(),
            member("Lotte", MemberRole::Relative, Some(Relation::Sibling), None),
        ),
    ] {
        apply(
            &mut state,
            Command::AddMember {
                member: id,
                details,
            },
        );
    }
    let provider = ContactId::new();
    for (contact, details) in [
        (
            ContactId::new(),
            ContactDetails {
                kind: ContactKind::Supporter,
                name: "Joost".into(),
                organisation: Some("MEE".into()),
                supporter_kind: Some(SupporterKind::LifeCourseCoach),
                institution_kind: None,
            },
        ),
        (
            provider,
            ContactDetails {
                kind: ContactKind::CareProvider,
                name: "Zorggroep Oost".into(),
                organisation: None,
                supporter_kind: None,
                institution_kind: None,
            },
        ),
    ] {
        apply(&mut state, Command::AddContact { contact, details });
    }
    let plan = PlanId::new();
    apply(
        &mut state,
        Command::DraftPlan {
            plan,
            kind: PlanKind::SupportPlan,
            title: "ondersteuningsplan Sam".into(),
            summary: "van Jeugdwet naar Wmo, zelfstandiger wonen".into(),
        },
    );
    apply(
        &mut state,
        Command::ActivatePlan {
            plan,
            on: date!(2026 - 01 - 05),
        },
    );
    apply(
        &mut state,
        Command::DraftPlan {
            plan: PlanId::new(),
            kind: PlanKind::FamilyPlan,
            title: "gezinsplan".into(),
            summary: String::new(),
        },
    );
    let goals: Vec<GoalId> = (0..3).map(|_| GoalId::new()).collect();
    for (i, goal) in goals.iter().enumerate() {
        apply(
            &mut state,
            Command::SetGoal {
                goal: *goal,
                owner: sam,
                title: format!("doel {i}: zelfstandig naar de dagbesteding"),
                description: if i == 0 {
                    String::new()
                } else {
                    "met de bus, eerst samen".into()
                },
                life_domains: vec![LifeDomain::DaytimeActivitiesAndWork, LifeDomain::Mobility],
                plan: (i == 0).then_some(plan),
            },
        );
    }
    apply(
        &mut state,
        Command::AchieveGoal {
            goal: goals[1],
            on: date!(2026 - 06 - 01),
            note: "lukt zelfstandig".into(),
        },
    );
    apply(
        &mut state,
        Command::AbandonGoal {
            goal: goals[2],
            on: date!(2026 - 07 - 01),
            reason: "past niet meer".into(),
        },
    );
    // Agreements: one accepted under Jeugdwet and carried over to Wmo at 18, one proposed, one
    // rejected.
    let terms = |title: &str, start| AgreementTerms {
        title: title.into(),
        description: "twee middagen per week begeleiding".into(),
        parties: vec![Party::Member(sam), Party::Contact(provider)],
        responsible: Some(provider),
        funding: FundingDomain::Jeugdwet,
        pgb: false,
        start,
        end: None,
        frequency: Some("2 middagen per week".into()),
        goals: vec![goals[0]],
        review_on: Some(date!(2027 - 03 - 01)),
        plan: Some(plan),
    };
    let (carried, proposed, rejected) =
        (AgreementId::new(), AgreementId::new(), AgreementId::new());
    for (agreement, title) in [
        (carried, "begeleiding"),
        (proposed, "logeeropvang"),
        (rejected, "vervoer"),
    ] {
        apply(
            &mut state,
            Command::ProposeAgreement {
                agreement,
                terms: terms(title, date!(2025 - 09 - 01)),
            },
        );
    }
    apply(&mut state, Command::AcceptAgreement { agreement: carried });
    apply(
        &mut state,
        Command::RejectAgreement {
            agreement: rejected,
            reason: "past niet in het rooster".into(),
        },
    );
    apply(
        &mut state,
        Command::RecordFundingTransition {
            member: sam,
            from: FundingDomain::Jeugdwet,
            to: FundingDomain::Wmo,
            on: date!(2026 - 03 - 14),
            reason: "18 jaar".into(),
        },
    );
    // A Wmo decision from the 18th birthday, and a Wlz indication with its care profile.
    for (kind, care_profile, valid_until) in [
        (
            IndicationKind::WmoDecision,
            None,
            Some(date!(2027 - 03 - 13)),
        ),
        (IndicationKind::WlzIndication, Some("VG6".to_owned()), None),
    ] {
        apply(
            &mut state,
            Command::RecordIndication {
                indication: IndicationId::new(),
                member: sam,
                kind,
                care_profile,
                valid_from: date!(2026 - 03 - 14),
                valid_until,
            },
        );
    }
    // The family lets the coach's organisation read what concerns daytime activities.
    apply(
        &mut state,
        Command::GrantAccess {
            grant: naast_domain::ids::GrantId::new(),
            grantee: naast_domain::event::Grantee::Organisation {
                id: "MEE-0001".into(),
            },
            terms: naast_domain::event::GrantTerms {
                scopes: vec![naast_domain::vocab::AccessScope::ReadTimeline],
                life_domains: vec![LifeDomain::DaytimeActivitiesAndWork],
                funding_domains: Vec::new(),
                until: Some(date!(2027 - 12 - 31)),
            },
            request: None,
        },
    );
    (HouseholdId::new(), state, sam)
}

fn validate(dir: &Path, files: &[std::path::PathBuf]) -> (bool, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/validate_fhir.py"
    );
    let out = Process::new("python3")
        .arg(script)
        .args(files)
        .current_dir(dir)
        .output()
        .expect("python3");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("No module named"),
        "the validator is missing: pip install -r tests/python/requirements.txt (ops/test.sh does)\n{said}"
    );
    (out.status.success(), said)
}

#[test]
fn every_resource_of_a_family_passes_an_independent_validator() {
    let (household, state, sam) = family();
    let mut resources: Vec<serde_json::Value> =
        naast_fhir::household_resources(household, &state, date!(2026 - 12 - 01))
            .unwrap()
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
    for vocabulary in Vocabulary::ALL {
        resources.push(serde_json::to_value(code_system(vocabulary).unwrap()).unwrap());
    }
    // Two records of the family's access log: a supporter's read, and a refused call by someone
    // who could not be identified.
    use naast_app::audit::{Outcome, Record, Stored, User};
    let mut read = Record::new(
        "/naast.v1.HouseholdService/ListTimelineEntries",
        Outcome::Allowed,
    );
    read.user = Some(User {
        identity: naast_domain::event::Identity {
            issuer: "https://login.example.nl".into(),
            subject: "ondersteuner-1".into(),
        },
        name: Some("Joost".into()),
        role: naast_domain::vocab::PrincipalRole::Supporter,
        organisation: Some("MEE-0001".into()),
        requestor: true,
    });
    read.network_access_point = Some("192.0.2.7:50123".into());
    read.household = Some(household);
    read.basis = vec!["grant:…".into()];
    read.source_system = Some("mee-app".into());
    let mut refused = Record::new("/naast.v1.HouseholdService/GetHousehold", Outcome::Denied);
    refused.reason = Some("no bearer token".into());
    refused.network_access_point = Some("198.51.100.4:40000".into());
    for (i, record) in [read, refused].into_iter().enumerate() {
        let stored = Stored {
            id: uuid::Uuid::now_v7(),
            position: i as u64,
            revision: 0,
            recorded_at_micros: 1_764_590_400_000_000,
            record,
        };
        resources
            .push(serde_json::to_value(naast_fhir::audit::audit_event(&stored).unwrap()).unwrap());
    }
    let events: Vec<&serde_json::Value> = resources
        .iter()
        .filter(|r| r["resourceType"] == "AuditEvent")
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (&events[0]["action"], &events[0]["outcome"]),
        (&"R".into(), &"0".into())
    );
    assert_eq!(events[0]["agent"][0]["network"]["address"], "192.0.2.7");
    assert_eq!(
        events[0]["entity"][0]["what"]["reference"],
        format!("Group/{household}")
    );
    assert_eq!(events[0]["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(
        (&events[1]["outcome"], &events[1]["outcomeDesc"]),
        (&"4".into(), &"no bearer token".into())
    );
    let kinds: Vec<&str> = resources
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "Patient").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "RelatedPerson").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "Goal").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "CareTeam").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "Coverage").count(), 2);
    let consent = resources
        .iter()
        .find(|r| r["resourceType"] == "Consent")
        .unwrap();
    assert_eq!(consent["status"], "active");
    assert_eq!(consent["patient"]["reference"], format!("Patient/{sam}"));
    let provision = &consent["provision"];
    assert_eq!(provision["type"], "permit");
    assert_eq!(
        provision["actor"][0]["reference"]["identifier"]["value"],
        "MEE-0001"
    );
    assert_eq!(provision["action"][0]["coding"][0]["code"], "read_timeline");
    assert_eq!(
        provision["code"][0]["coding"][0]["code"],
        "daytime_activities_and_work"
    );
    assert_eq!(provision["period"]["end"], "2027-12-31");
    let group = resources
        .iter()
        .find(|r| r["resourceType"] == "Group")
        .unwrap();
    assert_eq!(
        (
            &group["quantity"],
            group["member"].as_array().unwrap().len()
        ),
        (&3.into(), 1)
    );
    let family_plan = resources
        .iter()
        .find(|r| r["category"][1]["coding"][0]["code"] == "family_plan")
        .unwrap();
    assert_eq!(
        family_plan["subject"]["reference"],
        format!("Group/{}", group["id"].as_str().unwrap())
    );
    assert_eq!(family_plan["status"], "draft");
    let wlz = resources
        .iter()
        .find(|r| {
            r["resourceType"] == "Coverage" && r["type"]["coding"][0]["code"] == "wlz_indication"
        })
        .unwrap();
    assert_eq!(wlz["class"][0]["value"], "VG6");
    assert_eq!(wlz["beneficiary"]["reference"], format!("Patient/{sam}"));
    assert_eq!(wlz["type"]["coding"][1]["code"], "wlz");
    assert_eq!(
        kinds.iter().filter(|k| **k == "CarePlan").count(),
        5,
        "2 plans, 3 agreements"
    );
    let team = resources
        .iter()
        .find(|r| r["resourceType"] == "CareTeam")
        .unwrap();
    assert_eq!(
        team["participant"].as_array().unwrap().len(),
        5,
        "3 members, 2 contacts"
    );
    let coach = team["participant"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["member"]["display"] == "Joost (MEE)")
        .unwrap();
    assert_eq!(coach["role"][0]["coding"][0]["code"], "life_course_coach");
    let plan = resources
        .iter()
        .find(|r| {
            r["resourceType"] == "CarePlan"
                && r["category"][1]["coding"][0]["code"] == "support_plan"
        })
        .unwrap();
    assert_eq!(
        (&plan["status"], &plan["intent"]),
        (&"active".into(), &"plan".into())
    );
    assert_eq!(plan["goal"].as_array().unwrap().len(), 1);
    let agreements: Vec<&serde_json::Value> = resources
        .iter()
        .filter(|r| r["category"][0]["coding"][0]["code"] == "agreement")
        .collect();
    let intents: Vec<(&str, &str)> = agreements
        .iter()
        .map(|a| (a["intent"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    assert!(intents.contains(&("plan", "active")), "{intents:?}");
    assert!(intents.contains(&("proposal", "active")));
    assert!(intents.contains(&("proposal", "revoked")));
    // The carried-over agreement: funded by Wmo now, Jeugdwet named with the day it moved.
    let carried = agreements.iter().find(|a| a["intent"] == "plan").unwrap();
    assert_eq!(carried["category"][1]["coding"][0]["code"], "wmo");
    assert_eq!(carried["category"][2]["coding"][0]["code"], "jeugdwet");
    assert!(
        carried["note"][0]["text"]
            .as_str()
            .unwrap()
            .contains("2026-03-14")
    );
    assert_eq!(
        carried["partOf"][0]["reference"],
        format!("CarePlan/{}", plan["id"].as_str().unwrap())
    );
    assert_eq!(
        carried["activity"][0]["detail"]["performer"][0]["display"],
        "Zorggroep Oost"
    );
    // What the mapping promises, read back from the JSON.
    let patient = &resources[0];
    assert_eq!(patient["id"], sam.to_string());
    assert_eq!(patient["birthDate"], "2008-03-14");
    assert_eq!(
        patient["meta"]["profile"][0],
        "http://nictiz.nl/fhir/StructureDefinition/nl-core-Patient"
    );
    let statuses: Vec<&str> = resources
        .iter()
        .filter(|r| r["resourceType"] == "Goal")
        .map(|g| g["lifecycleStatus"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"active") && statuses.contains(&"completed"));
    assert!(statuses.contains(&"cancelled"));
    let representative = resources
        .iter()
        .find(|r| {
            r["resourceType"] == "RelatedPerson" && r["relationship"].as_array().unwrap().len() == 2
        })
        .expect("the legal representative, with role and relation");
    assert_eq!(representative["relationship"][0]["coding"][0]["code"], "24");
    assert_eq!(
        representative["patient"]["reference"],
        format!("Patient/{sam}")
    );

    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = resources
        .iter()
        .enumerate()
        .map(|(i, resource)| {
            let path = dir.path().join(format!("{i}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(resource).unwrap()).unwrap();
            path
        })
        .collect();
    let (valid, said) = validate(dir.path(), &files);
    assert!(valid, "{said}");
    assert!(
        said.contains(&format!("{} valid, 0 invalid", files.len())),
        "{said}"
    );

    // The validator refuses what is wrong: a goal with a made-up status and no subject.
    let mut broken = resources
        .iter()
        .find(|r| r["resourceType"] == "Goal")
        .unwrap()
        .clone();
    broken["lifecycleStatus"] = "half-af".into();
    let broken_file = dir.path().join("broken.json");
    std::fs::write(&broken_file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let (valid, said) = validate(dir.path(), std::slice::from_ref(&broken_file));
    assert!(!valid, "{said}");
    broken["lifecycleStatus"] = "active".into();
    broken.as_object_mut().unwrap().remove("subject");
    std::fs::write(&broken_file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let (valid, said) = validate(dir.path(), &[broken_file]);
    assert!(!valid, "{said}");
}

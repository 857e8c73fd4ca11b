//! `naast demo` enacts the five pilot scenarios through the gRPC API of a real server and
//! prints each family's timeline: what a newcomer sees first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_tests::workspace_bin;
use std::process::Command;

#[test]
fn the_demo_prints_five_timelines_with_the_18th_birthday_transition() {
    let output = Command::new(workspace_bin("naast"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    for family in [
        "copiloot",
        "levensloopbegeleider",
        "casemanager hersenletsel",
        "netwerkgids",
        "bondgenoot",
    ] {
        assert!(
            stdout.contains(&format!("({family}) ━━")),
            "no timeline for the {family} family"
        );
    }
    // Sam turns 18: the transition and the carried agreement, on the birthday.
    let birthday: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("2026-03-14"))
        .take(2)
        .collect();
    assert!(
        birthday[0].contains("[Jeugdwet→Wmo]") && birthday[0].contains("van Jeugdwet naar Wmo"),
        "{birthday:?}"
    );
    assert!(
        birthday[1].contains(
            "Afspraak loopt door onder de Wmo (was Jeugdwet): begeleiding twee middagen per week"
        ),
        "{birthday:?}"
    );
    // Dates are in order within each family.
    for timeline in stdout.split("\n━━ ").skip(1) {
        let dates: Vec<&str> = timeline
            .lines()
            .filter_map(|l| l.get(2..12))
            .filter(|d| d.starts_with("20"))
            .collect();
        assert!(dates.windows(2).all(|w| w[0] < w[1]), "{dates:?}");
        assert!(dates.len() >= 4);
    }
    assert!(stdout.contains("Wlz-indicatie voor Daan, zorgprofiel VG6"));
}

#[test]
fn verify_reports_the_demo_log_intact_and_refuses_a_locked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let naast = workspace_bin("naast");
    let demo = Command::new(&naast)
        .arg("demo")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(demo.status.success());
    let verify = Command::new(&naast)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{said}");
    assert!(
        said.contains("intact") && said.contains("in 5 streams"),
        "{said}"
    );

    let _server = naast_tests::Server::start(dir.path());
    let verify = Command::new(&naast)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stderr).contains("locked"));
}

/// `naast demo --serve` keeps the demo data available to a gRPC client and over FHIR, with the
/// household ids printed, until it is stopped. The client here keeps its connection open and cannot answer
/// (this single-threaded test blocks in `wait`): the server still stops, after its drain
/// deadline, instead of waiting for the client forever.
#[tokio::test(flavor = "current_thread")]
async fn the_demo_can_keep_serving_its_data() {
    use naast_proto::pb;
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(workspace_bin("naast"))
        .args(["demo", "--serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut household = None;
    let mut address = None;
    let mut token = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(t) = line.strip_prefix("naast dev token ouder ") {
            token = Some(t.to_owned());
        }
        if household.is_none() && line.contains("(levensloopbegeleider)") {
            household = line
                .split("household_id ")
                .nth(1)
                .map(|id| id.trim_end_matches(')').to_owned());
        }
        if let Some(a) = line.strip_prefix("naast listening on ") {
            address = a.split(' ').next().map(str::to_owned);
            break;
        }
    }
    // Then the FHIR facade's address, on a port of its own.
    let fhir = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| l.strip_prefix("naast FHIR facade on ").map(str::to_owned))
        .expect("the FHIR facade's address printed");
    let (household, address, token) = (
        household.expect("household id printed"),
        address.expect("address printed"),
        token.expect("the parent's dev token printed"),
    );
    let group = reqwest::Client::new()
        .get(format!("{fhir}/Group/{household}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(group.status().as_u16(), 200);
    let group: serde_json::Value = serde_json::from_slice(&group.bytes().await.unwrap()).unwrap();
    assert_eq!(group["name"], "Familie Bakker (levensloopbegeleider)");
    let mut api = pb::household_service_client::HouseholdServiceClient::new(
        naast_tests::signed(&format!("http://{address}"), &token).await,
    );
    let view = api
        .get_household(pb::GetHouseholdRequest {
            household_id: household,
            min_position: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();
    assert_eq!(view.name, "Familie Bakker (levensloopbegeleider)");
    assert!(
        view.agreements
            .iter()
            .any(|a| a.terms.as_ref().unwrap().funding_domain == pb::FundingDomain::Wmo as i32)
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Returns at all only because of the drain deadline (a hang is ended by the test runner).
    assert!(child.wait().unwrap().success());
    drop(api);
}

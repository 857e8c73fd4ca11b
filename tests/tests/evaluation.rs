//! Measurements and the effect report over gRPC against the real `naast serve` process: the
//! seeded instruments, a new version defined by an administrator, measurements at T0 and T1 in
//! six families of one pilot, and the evaluator's report of them, with its means computed here
//! from what the test recorded; small cells suppressed; the report refused to anyone else and
//! refused when it would differ from one answered before in one family (also after a restart,
//! and a replay that rebuilds the same report rows); bad measurements refused, naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::evaluation_service_client::EvaluationServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use time::{Duration, OffsetDateTime};
use tonic::Code;
use tonic_types::StatusExt;

type Api = HouseholdServiceClient<naast_proto::client::Signed>;
type Evaluation = EvaluationServiceClient<naast_proto::client::Signed>;

const CLIENT: &str = "kwaliteit-van-leven-client";

fn day(offset: i64) -> String {
    (OffsetDateTime::now_utc().date() + Duration::days(offset)).to_string()
}

/// One family of pilot 5 as the test made it.
struct Family {
    household: String,
    client: String,
    relative: String,
    /// The client's life rating at T0.
    t0: u32,
    /// At T1, when measured.
    t1: Option<u32>,
    minutes: u32,
    achieved: bool,
}

async fn measure(
    api: &mut Api,
    household: &str,
    member: &str,
    respondent_member: &str,
    moment: pb::MeasurementMoment,
    date: String,
    answers: Vec<pb::MeasurementAnswer>,
) -> Result<pb::RecordMeasurementResponse, tonic::Status> {
    api.record_measurement(pb::RecordMeasurementRequest {
        household_id: household.into(),
        member_id: member.into(),
        respondent_member_id: respondent_member.into(),
        instrument_key: CLIENT.into(),
        moment: moment as i32,
        date,
        answers,
        ..Default::default()
    })
    .await
    .map(tonic::Response::into_inner)
}

fn life(value: u32) -> Vec<pb::MeasurementAnswer> {
    vec![pb::MeasurementAnswer {
        item: "leven".into(),
        value,
        wants_change: None,
    }]
}

async fn family(api: &mut Api, n: u32, family_type: pb::FamilyType, t1: Option<u32>) -> Family {
    let (household, client, _) =
        naast_tests::household_with_client(api, &format!("Gezin {n}")).await;
    let relative = api
        .create_member(pb::CreateMemberRequest {
            household_id: household.clone(),
            details: Some(pb::MemberDetails {
                name: "Moeder".into(),
                role: pb::MemberRole::Relative as i32,
                relation: pb::Relation::Parent as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .member_id;
    let ally = api
        .create_contact(pb::CreateContactRequest {
            household_id: household.clone(),
            details: Some(pb::ContactDetails {
                kind: pb::ContactKind::Supporter as i32,
                name: "Bondgenoot".into(),
                supporter_kind: pb::SupporterKind::Ally as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    api.set_family_type(pb::SetFamilyTypeRequest {
        household_id: household.clone(),
        family_type: family_type as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    for (phase, date) in [
        (pb::SupportPhase::Organising, day(-300)),
        (pb::SupportPhase::HandedOver, day(-5)),
    ] {
        api.change_support_phase(pb::ChangeSupportPhaseRequest {
            household_id: household.clone(),
            phase: phase as i32,
            date,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let t0 = 3 + n % 5;
    measure(
        api,
        &household,
        &client,
        "",
        pb::MeasurementMoment::T0,
        day(-200),
        life(t0),
    )
    .await
    .unwrap();
    if let Some(t1) = t1 {
        measure(
            api,
            &household,
            &client,
            &client,
            pb::MeasurementMoment::T1,
            day(-20),
            life(t1),
        )
        .await
        .unwrap();
    }
    let mut minutes = 0;
    for week in 1..=3 {
        let spent = 30 * week + n;
        minutes += spent;
        api.create_logbook_entry(pb::CreateLogbookEntryRequest {
            household_id: household.clone(),
            supporter_contact_id: ally.clone(),
            date: day(-100 - i64::from(week)),
            minutes: spent,
            contact_mode: pb::ContactMode::HomeVisit as i32,
            tasks: vec![pb::SupporterTask::InformAndAdvise as i32],
            summary: "Keukentafelgesprek".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let goal = naast_tests::create_goal(api, &household, &client, "Een passende woonplek").await;
    let achieved = n.is_multiple_of(2);
    if achieved {
        api.achieve_goal(pb::AchieveGoalRequest {
            household_id: household.clone(),
            goal_id: goal,
            date: day(0),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    Family {
        household,
        client,
        relative,
        t0,
        t1,
        minutes,
        achieved,
    }
}

fn cohort(family_type: pb::FamilyType) -> pb::GetEffectReportRequest {
    pb::GetEffectReportRequest {
        supporter_kind: pb::SupporterKind::Ally as i32,
        family_type: family_type as i32,
        from_date: day(-365),
        to_date: day(1),
        include_csv: true,
        ..Default::default()
    }
}

async fn report(
    evaluation: &mut Evaluation,
    request: pb::GetEffectReportRequest,
) -> Result<pb::GetEffectReportResponse, tonic::Status> {
    evaluation
        .get_effect_report(request)
        .await
        .map(tonic::Response::into_inner)
}

fn life_rating(report: &pb::GetEffectReportResponse) -> &pb::IndicatorFigures {
    report
        .indicators
        .iter()
        .find(|i| i.instrument == CLIENT && i.item == "leven")
        .unwrap()
}

#[tokio::test]
async fn an_evaluator_gets_the_effect_report_of_a_pilot_and_nothing_that_singles_out_a_family() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);

    // The instruments the meta-analysis describes are there from the start, for anyone.
    let mut as_parent = EvaluationServiceClient::new(server.signed("ouder").await);
    let seeded = as_parent
        .list_instruments(pb::ListInstrumentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instruments;
    assert_eq!(seeded.len(), 3);
    let client_instrument = seeded.iter().find(|i| i.key == CLIENT).unwrap().clone();
    assert_eq!(
        client_instrument.respondent,
        pb::RespondentKind::Client as i32
    );
    assert!(
        client_instrument
            .items
            .iter()
            .any(|i| i.key == "structuur" && i.text == "Ik heb structuur in mijn leven.")
    );

    // Six families of pilot 5: four single-parent families, two with young children; one
    // measured only at T0 so far.
    let mut families = Vec::new();
    for n in 0..6u32 {
        let family_type = if n < 4 {
            pb::FamilyType::SingleParent
        } else {
            pb::FamilyType::YoungChildren
        };
        let t1 = (n != 5).then_some(4 + (n * 3) % 6);
        families.push(family(&mut api, n, family_type, t1).await);
    }

    // Only an evaluator gets the report.
    let refused = report(&mut as_parent, cohort(pb::FamilyType::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let mut evaluator = EvaluationServiceClient::new(server.signed("evaluator").await);
    let first = report(&mut evaluator, cohort(pb::FamilyType::Unspecified))
        .await
        .unwrap();
    assert!(!first.households_suppressed);
    assert_eq!(first.households, 6);
    let pairs: Vec<(u32, u32)> = families
        .iter()
        .filter_map(|f| f.t1.map(|t1| (f.t0, t1)))
        .collect();
    let before = f64::from(pairs.iter().map(|p| p.0).sum::<u32>()) / pairs.len() as f64;
    let after = f64::from(pairs.iter().map(|p| p.1).sum::<u32>()) / pairs.len() as f64;
    let figures = life_rating(&first).figures.unwrap();
    assert_eq!((figures.n, figures.households), (5, 5));
    assert!((figures.mean_before - before).abs() < 1e-9, "{figures:?}");
    assert!((figures.mean_after - after).abs() < 1e-9, "{figures:?}");
    assert!((figures.percent_change - (after - before) / before * 100.0).abs() < 1e-9);
    // Support ran from 300 to 5 days ago in every family.
    let support = first.support.unwrap();
    assert!(!support.suppressed);
    let minutes = f64::from(families.iter().map(|f| f.minutes).sum::<u32>());
    let per_week = minutes / (6.0 * 296.0 / 7.0);
    assert!((support.minutes_per_household_per_week - per_week).abs() < 1e-9);
    assert!((support.yearly_cost_per_household_eur - per_week / 60.0 * 52.0 * 75.0).abs() < 1e-6);
    let housing = first
        .goals
        .iter()
        .find(|g| {
            g.life_domain == pb::LifeDomain::Housing as i32
                && g.owner == pb::RespondentKind::Client as i32
        })
        .unwrap();
    assert_eq!(
        (
            housing.suppressed,
            housing.households,
            housing.goals,
            housing.achieved
        ),
        (
            false,
            6,
            6,
            families.iter().filter(|f| f.achieved).count() as u32
        )
    );
    let line = first
        .csv
        .lines()
        .find(|l| l.starts_with(&format!("indicator,{CLIENT},leven,")))
        .unwrap();
    assert!(
        line.contains(&format!(",5,5,{before:.1},{after:.1},")),
        "{line}"
    );

    // Four single-parent families are fewer than five: nothing of them is shown.
    let small = report(
        &mut evaluator,
        cohort(pb::FamilyType::SinglePersonWithDisability),
    )
    .await
    .unwrap();
    assert!(small.households_suppressed && small.support.unwrap().suppressed);
    let single_parents = report(&mut evaluator, cohort(pb::FamilyType::SingleParent))
        .await
        .unwrap();
    assert!(single_parents.households_suppressed);
    assert!(
        single_parents
            .indicators
            .iter()
            .all(|i| i.suppressed && i.figures.is_none())
    );
    assert!(
        single_parents
            .goals
            .iter()
            .all(|g| g.suppressed && g.goals == 0)
    );

    // A rebuild of the read models gives the same report rows: after a restart and `naast
    // replay`, the same report is answered with the same figures.
    assert!(server.terminate().success());
    naast_tests::replay(dir.path());
    let mut server = Server::start(dir.path());
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let mut evaluator = EvaluationServiceClient::new(server.signed("evaluator").await);
    let again = report(&mut evaluator, cohort(pb::FamilyType::Unspecified))
        .await
        .unwrap();
    assert_eq!(again, first);

    // The last family's T1 arrives. The report now would differ from the one answered in that
    // family alone: subtracting would show its answers. Refused also by a server started
    // afresh, which has answered nothing itself: what was disclosed is kept on disk.
    let last = &families[5];
    measure(
        &mut api,
        &last.household,
        &last.client,
        "",
        pb::MeasurementMoment::T1,
        day(-2),
        life(9),
    )
    .await
    .unwrap();
    assert!(server.terminate().success());
    let server = Server::start(dir.path());
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let mut evaluator = EvaluationServiceClient::new(server.signed("evaluator").await);
    let refused = report(&mut evaluator, cohort(pb::FamilyType::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("only 1 household"),
        "{refused:?}"
    );

    // Bad measurements are refused, naming the field, and write nothing.
    let revision = |api: &mut Api, household: String| {
        let mut api = api.clone();
        async move {
            api.get_household(pb::GetHouseholdRequest {
                household_id: household,
                min_position: 0,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .household
            .unwrap()
        }
    };
    let f = &families[0];
    let before_bad = revision(&mut api, f.household.clone()).await;
    assert_eq!(before_bad.family_type, pb::FamilyType::SingleParent as i32);
    let cases = vec![
        (
            "an instrument that does not exist",
            api.record_measurement(pb::RecordMeasurementRequest {
                household_id: f.household.clone(),
                member_id: f.client.clone(),
                instrument_key: "bestaat-niet".into(),
                date: day(-1),
                answers: life(5),
                ..Default::default()
            })
            .await,
            Code::NotFound,
            "instrument_key",
        ),
        (
            "a value off the scale",
            api.record_measurement(pb::RecordMeasurementRequest {
                household_id: f.household.clone(),
                member_id: f.client.clone(),
                instrument_key: CLIENT.into(),
                date: day(-1),
                answers: life(11),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "answers[0].value",
        ),
        (
            "the client's questionnaire answered by a relative",
            api.record_measurement(pb::RecordMeasurementRequest {
                household_id: f.household.clone(),
                member_id: f.client.clone(),
                respondent_member_id: f.relative.clone(),
                instrument_key: CLIENT.into(),
                date: day(-1),
                answers: life(5),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "respondent",
        ),
        (
            "a second T0",
            api.record_measurement(pb::RecordMeasurementRequest {
                household_id: f.household.clone(),
                member_id: f.client.clone(),
                instrument_key: CLIENT.into(),
                moment: pb::MeasurementMoment::T0 as i32,
                date: day(-1),
                answers: life(5),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "moment",
        ),
        (
            "no answers",
            api.record_measurement(pb::RecordMeasurementRequest {
                household_id: f.household.clone(),
                member_id: f.client.clone(),
                instrument_key: CLIENT.into(),
                date: day(-1),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "answers",
        ),
    ];
    for (what, result, code, field) in cases {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        let bad = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("{what}: no BadRequest in {status:?}"));
        assert_eq!(bad.field_violations[0].field, field, "{what}");
    }
    assert_eq!(revision(&mut api, f.household.clone()).await, before_bad);

    // A period that ends before it begins.
    let backwards = report(
        &mut evaluator,
        pb::GetEffectReportRequest {
            from_date: day(0),
            to_date: day(-10),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument);
    assert_eq!(
        backwards
            .get_details_bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "to_date"
    );
}

#[tokio::test]
async fn administrators_define_new_instrument_versions_that_keep_answers_comparable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut admin = EvaluationServiceClient::new(server.signed("beheerder").await);
    let mut supporter = EvaluationServiceClient::new(server.signed("ondersteuner").await);
    let mut instrument = admin
        .list_instruments(pb::ListInstrumentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instruments
        .into_iter()
        .find(|i| i.key == CLIENT)
        .unwrap();
    instrument.version = 2;
    instrument.items.push(pb::InstrumentItem {
        key: "zingeving".into(),
        kind: pb::ItemKind::Statement as i32,
        text: "Mijn leven heeft betekenis.".into(),
        min: 1,
        max: 10,
        ..Default::default()
    });
    let define = |instrument: pb::Instrument| pb::DefineInstrumentRequest {
        instrument: Some(instrument),
    };
    let refused = supporter
        .define_instrument(define(instrument.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A question that keeps its key must keep its scale.
    let mut changed = instrument.clone();
    let leven = changed.items.iter_mut().find(|i| i.key == "leven").unwrap();
    leven.kind = pb::ItemKind::Statement as i32;
    let status = admin.define_instrument(define(changed)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.get_details_bad_request().unwrap().field_violations[0]
            .field
            .ends_with(".key"),
        "{status:?}"
    );
    let mut skipping = instrument.clone();
    skipping.version = 3;
    let status = admin.define_instrument(define(skipping)).await.unwrap_err();
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "instrument.version"
    );

    admin.define_instrument(define(instrument)).await.unwrap();
    let all = supporter
        .list_instruments(pb::ListInstrumentsRequest { all_versions: true })
        .await
        .unwrap()
        .into_inner()
        .instruments;
    assert_eq!(all.len(), 4);
    let latest = supporter
        .list_instruments(pb::ListInstrumentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instruments;
    let client = latest.iter().find(|i| i.key == CLIENT).unwrap();
    assert_eq!(client.version, 2);
    assert!(client.items.iter().any(|i| i.key == "zingeving"));

    // Answers go to the latest version unless one is named.
    let mut api = HouseholdServiceClient::new(server.signed("ouder").await);
    let (household, member, _) = naast_tests::household_with_client(&mut api, "Gezin").await;
    let recorded = measure(
        &mut api,
        &household,
        &member,
        "",
        pb::MeasurementMoment::T0,
        day(-1),
        vec![pb::MeasurementAnswer {
            item: "zingeving".into(),
            value: 7,
            wants_change: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(recorded.instrument_version, 2);
}

//! The effect and cost report over a generated cohort: its means, differences, goals and minutes
//! against figures this test computes on its own from what it generated; small cells
//! suppressed; a second report that differs from an earlier one in a single household caught;
//! a family that objects left out; measurements that do not fit their instrument refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::ids::{ContactId, EntryId, GoalId, HouseholdId, MemberId};
use naast_domain::measure::{Answer, Catalogue, Instrument, seed};
use naast_domain::report::{self, Cohort, Dates, MIN_CELL, Row};
use naast_domain::testing::run;
use naast_domain::vocab::*;
use naast_domain::{Command, ContactDetails, DomainError, Household, MemberDetails, Party};
use time::Date;
use time::macros::date;

const CLIENT: &str = "kwaliteit-van-leven-client";
const RELATIVE: &str = "kwaliteit-van-leven-naaste";

/// One generated household and what it was given, for the expected figures.
struct Made {
    id: HouseholdId,
    state: Household,
    dates: Dates,
    kind: SupporterKind,
    family: FamilyType,
    /// (life rating at T0, at T1) of the client, when both were measured.
    client_life: Option<(u8, u8)>,
    /// (satisfaction with housing, wants change) at T0 and T1, of the relative.
    relative_housing: ((u8, bool), (u8, bool)),
    goals: u32,
    achieved: u32,
    minutes: u32,
    client: MemberId,
    relative: MemberId,
    supporter: ContactId,
}

/// A deterministic stream of numbers.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn step(state: &mut Household, dates: &mut Dates, day: Date, command: Command) {
    for event in run(state, command) {
        dates.apply(&event, day);
    }
}

fn instrument(key: &str) -> Instrument {
    Catalogue::from_definitions(seed())
        .get(key, 0)
        .cloned()
        .expect("seeded")
}

fn answer(item: &str, value: u8, wants_change: Option<bool>) -> Answer {
    Answer {
        item: item.into(),
        value,
        wants_change,
    }
}

fn measure(
    made: &mut (Household, Dates),
    member: MemberId,
    respondent: MemberId,
    key: &str,
    moment: MeasurementMoment,
    on: Date,
    answers: Vec<Answer>,
) {
    step(
        &mut made.0,
        &mut made.1,
        on,
        Command::RecordMeasurement {
            measurement: EntryId::new(),
            member,
            respondent: Party::Member(respondent),
            instrument: instrument(key),
            moment: Some(moment),
            on,
            answers,
        },
    );
}

fn household(rng: &mut Lcg, kind: SupporterKind, family: FamilyType) -> Made {
    let mut h = (Household::default(), Dates::default());
    let start = date!(2025 - 01 - 06);
    step(
        &mut h.0,
        &mut h.1,
        start,
        Command::RegisterHousehold {
            name: "Gezin".into(),
            registered_by: None,
        },
    );
    let (client, relative, supporter) = (MemberId::new(), MemberId::new(), ContactId::new());
    for (member, role, relation) in [
        (client, MemberRole::Client, None),
        (relative, MemberRole::Relative, Some(Relation::Parent)),
    ] {
        step(
            &mut h.0,
            &mut h.1,
            start,
            Command::AddMember {
                member,
                details: MemberDetails {
                    name: "Lid".into(),
                    role,
                    relation,
                    birth_date: None,
                },
            },
        );
    }
    step(
        &mut h.0,
        &mut h.1,
        start,
        Command::AddContact {
            contact: supporter,
            details: ContactDetails {
                kind: ContactKind::Supporter,
                name: "Ondersteuner".into(),
                organisation: None,
                supporter_kind: Some(kind),
                institution_kind: None,
            },
        },
    );
    step(
        &mut h.0,
        &mut h.1,
        start,
        Command::SetFamilyType {
            family_type: Some(family),
        },
    );
    step(
        &mut h.0,
        &mut h.1,
        start,
        Command::ChangeSupportPhase {
            phase: SupportPhase::Organising,
            hours_per_week: Some(2),
            on: start,
            contact_every_days: None,
        },
    );
    // T0 in January, T1 in July (for most); the relative always twice.
    let life0 = 1 + rng.below(10) as u8;
    let life1 = 1 + rng.below(10) as u8;
    let twice = rng.below(4) != 0;
    measure(
        &mut h,
        client,
        client,
        CLIENT,
        MeasurementMoment::T0,
        date!(2025 - 01 - 20),
        vec![answer("leven", life0, None), answer("structuur", 5, None)],
    );
    if twice {
        measure(
            &mut h,
            client,
            client,
            CLIENT,
            MeasurementMoment::T1,
            date!(2025 - 07 - 14),
            vec![answer("leven", life1, None)],
        );
    }
    let housing0 = (1 + rng.below(10) as u8, rng.below(2) == 0);
    let housing1 = (1 + rng.below(10) as u8, rng.below(2) == 0);
    for (moment, on, (value, wants)) in [
        (MeasurementMoment::T0, date!(2025 - 01 - 21), housing0),
        (MeasurementMoment::T1, date!(2025 - 07 - 15), housing1),
    ] {
        measure(
            &mut h,
            relative,
            relative,
            RELATIVE,
            moment,
            on,
            vec![answer("tevredenheid-wonen", value, Some(wants))],
        );
    }
    // Goals: some achieved in the period, one of them before it began (not counted as
    // achieved in it, but worked on).
    let goals = 1 + rng.below(3) as u32;
    let mut achieved = 0;
    for g in 0..goals {
        let goal = GoalId::new();
        step(
            &mut h.0,
            &mut h.1,
            date!(2025 - 02 - 03),
            Command::SetGoal {
                goal,
                owner: client,
                title: "Een passende woonplek".into(),
                description: String::new(),
                life_domains: vec![LifeDomain::Housing],
                plan: None,
            },
        );
        if g == 0 && rng.below(2) == 0 {
            achieved += 1;
            step(
                &mut h.0,
                &mut h.1,
                date!(2025 - 05 - 05),
                Command::AchieveGoal {
                    goal,
                    on: date!(2025 - 05 - 05),
                    note: String::new(),
                },
            );
        }
    }
    let mut minutes = 0;
    for week in 0..10 {
        let spent = 30 + rng.below(90) as u32;
        let on = date!(2025 - 01 - 13) + time::Duration::weeks(week);
        minutes += spent;
        step(
            &mut h.0,
            &mut h.1,
            on,
            Command::AddLogbookEntry {
                entry: EntryId::new(),
                supporter,
                on,
                minutes: spent,
                mode: ContactMode::Phone,
                tasks: vec![SupporterTask::ALL[0]],
                life_domains: vec![LifeDomain::CareOrganisation],
                summary: "Gebeld".into(),
            },
        );
    }
    Made {
        id: HouseholdId::new(),
        state: h.0,
        dates: h.1,
        kind,
        family,
        client_life: twice.then_some((life0, life1)),
        relative_housing: (housing0, housing1),
        goals,
        achieved,
        minutes,
        client,
        relative,
        supporter,
    }
}

fn cohort(kind: Option<SupporterKind>, family: Option<FamilyType>) -> Cohort {
    Cohort {
        supporter_kind: kind,
        family_type: family,
        from: date!(2025 - 01 - 01),
        to: date!(2025 - 12 - 31),
        baseline: MeasurementMoment::T0,
        follow_up: MeasurementMoment::T1,
    }
}

fn rows(made: &[Made]) -> Vec<(HouseholdId, Row)> {
    made.iter()
        .filter_map(|m| Row::of(&m.state, &m.dates).map(|row| (m.id, row)))
        .collect()
}

fn generate() -> Vec<Made> {
    let mut rng = Lcg(2021);
    (0..60)
        .map(|i| {
            let kind = if i % 10 == 0 {
                SupporterKind::Ally
            } else {
                SupporterKind::LifeCourseCoach
            };
            let family = FamilyType::ALL[i % FamilyType::ALL.len()];
            household(&mut rng, kind, family)
        })
        .collect()
}

const TODAY: Date = date!(2026 - 03 - 01);
const RATE_CENTS: u32 = 7_500;

#[test]
fn the_report_gives_the_means_pairs_goals_and_minutes_of_its_cohort() {
    let made = generate();
    let catalogue = Catalogue::from_definitions(seed());
    let rows = rows(&made);
    let report = report::effect(
        rows.iter().map(|(id, row)| (*id, row)),
        &cohort(Some(SupporterKind::LifeCourseCoach), None),
        &catalogue,
        RATE_CENTS,
        TODAY,
    );
    let mine: Vec<&Made> = made
        .iter()
        .filter(|m| m.kind == SupporterKind::LifeCourseCoach)
        .collect();
    assert_eq!(report.households, Some(mine.len() as u32));

    // The client's life rating, over the households measured twice.
    let pairs: Vec<(u8, u8)> = mine.iter().filter_map(|m| m.client_life).collect();
    let n = pairs.len() as f64;
    let before = pairs.iter().map(|p| f64::from(p.0)).sum::<f64>() / n;
    let after = pairs.iter().map(|p| f64::from(p.1)).sum::<f64>() / n;
    let life = report
        .indicators
        .iter()
        .find(|i| i.instrument == CLIENT && i.item == "leven")
        .unwrap();
    let figures = life.figures.as_ref().expect("enough pairs");
    assert_eq!(figures.n as usize, pairs.len());
    assert!((figures.mean_before - before).abs() < 1e-9);
    assert!((figures.mean_after - after).abs() < 1e-9);
    assert!((figures.difference - (after - before)).abs() < 1e-9);
    assert!((figures.percent_change - (after - before) / before * 100.0).abs() < 1e-9);
    // A period of the second half of the year holds the T1s, not the T0s: the pairs count in
    // it all the same.
    let later = report::effect(
        rows.iter().map(|(id, row)| (*id, row)),
        &Cohort {
            from: date!(2025 - 07 - 01),
            ..cohort(Some(SupporterKind::LifeCourseCoach), None)
        },
        &catalogue,
        RATE_CENTS,
        TODAY,
    );
    let later = later
        .indicators
        .iter()
        .find(|i| i.instrument == CLIENT && i.item == "leven")
        .and_then(|i| i.figures.clone())
        .unwrap();
    assert_eq!(later.n as usize, pairs.len());
    assert!((later.mean_before - before).abs() < 1e-9);
    // Answered at T0 only: no pairs, so nothing to show.
    let structuur = report
        .indicators
        .iter()
        .find(|i| i.instrument == CLIENT && i.item == "structuur")
        .unwrap();
    assert_eq!(structuur.figures, None);

    // The relative's satisfaction with housing, with the share wanting change.
    let housing = report
        .indicators
        .iter()
        .find(|i| i.instrument == RELATIVE && i.item == "tevredenheid-wonen")
        .unwrap();
    let figures = housing.figures.as_ref().unwrap();
    let n = mine.len() as f64;
    let wants0 = mine.iter().filter(|m| m.relative_housing.0.1).count() as f64 / n;
    let wants1 = mine.iter().filter(|m| m.relative_housing.1.1).count() as f64 / n;
    let mean0 = mine
        .iter()
        .map(|m| f64::from(m.relative_housing.0.0))
        .sum::<f64>()
        / n;
    assert!((figures.mean_before - mean0).abs() < 1e-9);
    let (w0, w1) = figures.wants_change.unwrap();
    assert!((w0 - wants0).abs() < 1e-9 && (w1 - wants1).abs() < 1e-9);
    assert_eq!(housing.life_domain, Some(LifeDomain::Housing));

    // Goals of clients in housing: all set in the period, achieved as generated.
    let goals = report
        .goals
        .iter()
        .find(|g| g.life_domain == LifeDomain::Housing && g.clients)
        .unwrap();
    assert_eq!(
        goals.figures,
        Some((
            mine.len() as u32,
            mine.iter().map(|m| m.goals).sum(),
            mine.iter().map(|m| m.achieved).sum()
        ))
    );

    // Minutes per household per week: support from 6 January 2025 up to the period's end.
    let weeks = f64::from(
        u16::try_from((date!(2025 - 12 - 31) - date!(2025 - 01 - 06)).whole_days() + 1).unwrap(),
    ) / 7.0;
    let per_week = mine.iter().map(|m| f64::from(m.minutes)).sum::<f64>() / (weeks * n);
    let support = report.support.as_ref().unwrap();
    assert!((support.minutes_per_household_per_week - per_week).abs() < 1e-9);
    assert!((support.yearly_cost_per_household_eur - per_week / 60.0 * 52.0 * 75.0).abs() < 1e-6);

    // The CSV has every figure on a line of its own, with the life rating as the meta-analysis
    // gives it.
    let csv = report::to_csv(&report);
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format!("indicator,{CLIENT},leven,")))
        .unwrap();
    assert!(
        line.contains(&format!(",{before:.1},{after:.1},")),
        "{line}"
    );
    assert_eq!(
        csv.lines().count(),
        2 + report.indicators.len() + report.goals.len() + 1
    );
}

#[test]
fn a_cell_of_fewer_than_five_households_is_suppressed() {
    let made = generate();
    let catalogue = Catalogue::from_definitions(seed());
    let rows = rows(&made);
    // Allies of one family type: two households.
    let small = cohort(Some(SupporterKind::Ally), Some(FamilyType::ALL[0]));
    let members = made
        .iter()
        .filter(|m| m.kind == SupporterKind::Ally && m.family == FamilyType::ALL[0])
        .count();
    assert!(members > 0 && (members as u32) < MIN_CELL, "{members}");
    let report = report::effect(
        rows.iter().map(|(id, row)| (*id, row)),
        &small,
        &catalogue,
        RATE_CENTS,
        TODAY,
    );
    assert_eq!(report.households, None);
    assert!(report.indicators.iter().all(|i| i.figures.is_none()));
    assert!(report.goals.iter().all(|g| g.figures.is_none()));
    assert_eq!(report.support, None);
    assert!(
        report.fingerprint.is_empty(),
        "nothing shown, nothing to compare"
    );
    assert!(
        report::to_csv(&report)
            .lines()
            .skip(1)
            .all(|l| l.ends_with(",true"))
    );
}

#[test]
fn a_report_that_differs_from_an_earlier_one_in_one_household_is_caught() {
    let mut made = generate();
    let catalogue = Catalogue::from_definitions(seed());
    let everyone = cohort(None, None);
    let answer_now = |made: &[Made]| {
        let rows = rows(made);
        report::effect(
            rows.iter().map(|(id, row)| (*id, row)),
            &everyone,
            &catalogue,
            RATE_CENTS,
            TODAY,
        )
    };
    let first = answer_now(&made);
    assert_eq!(first.households, Some(60));
    // The same question again is the same answer: nothing to subtract.
    assert_eq!(
        report::singles_out(&first.fingerprint, &answer_now(&made).fingerprint),
        None
    );

    // One family's T1 arrives: the new figures minus the old would be that family's answers.
    let one = made
        .iter_mut()
        .find(|m| m.client_life.is_none())
        .expect("a household measured once");
    let mut h = (one.state.clone(), one.dates.clone());
    measure(
        &mut h,
        one.client,
        one.client,
        CLIENT,
        MeasurementMoment::T1,
        date!(2025 - 08 - 01),
        vec![answer("leven", 9, None)],
    );
    (one.state, one.dates) = h;
    let second = answer_now(&made);
    assert_eq!(
        report::singles_out(&first.fingerprint, &second.fingerprint),
        Some(1)
    );

    // The whole cohort but one family type: differs in ten households, which is allowed.
    let rows = rows(&made);
    let without: Vec<_> = rows
        .iter()
        .filter(|(id, _)| {
            made.iter()
                .find(|m| m.id == *id)
                .is_some_and(|m| m.family != FamilyType::ALL[0])
        })
        .map(|(id, row)| (*id, row))
        .collect();
    let third = report::effect(without, &everyone, &catalogue, RATE_CENTS, TODAY);
    assert_eq!(
        report::singles_out(&second.fingerprint, &third.fingerprint),
        None
    );
    assert_eq!(
        report::differing(&second.fingerprint, &third.fingerprint),
        10
    );
}

#[test]
fn a_family_that_objects_is_left_out() {
    let mut made = generate();
    let before = rows(&made).len();
    let relative = made[0].relative;
    let mut dates = made[0].dates.clone();
    step(
        &mut made[0].state,
        &mut dates,
        TODAY,
        Command::ObjectToEvaluation { objects: true },
    );
    assert_eq!(rows(&made).len(), before - 1);
    assert!(
        made[0].state.member(relative).is_some(),
        "the family itself is untouched"
    );
}

#[test]
fn a_family_type_can_be_cleared() {
    let mut made = generate().remove(0);
    assert!(made.state.family_type.is_some());
    let mut dates = made.dates.clone();
    step(
        &mut made.state,
        &mut dates,
        TODAY,
        Command::SetFamilyType { family_type: None },
    );
    assert_eq!(made.state.family_type, None);
}

#[test]
fn answers_that_do_not_fit_the_instrument_are_refused() {
    let made = generate().remove(0);
    let refused = |made: &Made, respondent: Party, answers: Vec<Answer>| {
        naast_domain::decide(
            &made.state,
            Command::RecordMeasurement {
                measurement: EntryId::new(),
                member: made.client,
                respondent,
                instrument: instrument(CLIENT),
                moment: Some(MeasurementMoment::T2),
                on: date!(2025 - 12 - 01),
                answers,
            },
        )
        .unwrap_err()
    };
    // The field each refusal names.
    let field = |error: DomainError| match error {
        DomainError::InvalidArgument { field, .. }
        | DomainError::NotFound { field, .. }
        | DomainError::AlreadyExists { field, .. } => field,
        other => panic!("not a field's refusal: {other}"),
    };
    let me = Party::Member(made.client);
    let refusals = [
        (vec![answer("leven", 11, None)], "answers[0].value"),
        (vec![answer("bestaat-niet", 5, None)], "answers[0].item"),
        (
            vec![answer("leven", 5, Some(true))],
            "answers[0].wants_change",
        ),
        (
            vec![answer("leven", 5, None), answer("leven", 6, None)],
            "answers[1].item",
        ),
        (Vec::new(), "answers"),
    ];
    for (answers, expected) in refusals {
        assert_eq!(field(refused(&made, me, answers)), expected);
    }
    // The client's questionnaire is not the relative's to fill in.
    assert_eq!(
        field(refused(
            &made,
            Party::Member(made.relative),
            vec![answer("leven", 5, None)]
        )),
        "respondent"
    );
    // A second T0 by the same respondent about the same member.
    let t0 = naast_domain::decide(
        &made.state,
        Command::RecordMeasurement {
            measurement: EntryId::new(),
            member: made.client,
            respondent: me,
            instrument: instrument(CLIENT),
            moment: Some(MeasurementMoment::T0),
            on: date!(2025 - 12 - 01),
            answers: vec![answer("leven", 5, None)],
        },
    )
    .unwrap_err();
    assert!(t0.to_string().contains("moment"), "{t0}");
}

#[test]
fn a_household_stays_in_its_pilot_after_its_supporter_left() {
    let mut made = generate();
    let kind = made[1].kind;
    let mut dates = made[1].dates.clone();
    let supporter = made[1].supporter;
    step(
        &mut made[1].state,
        &mut dates,
        TODAY,
        Command::RemoveContact {
            contact: supporter,
            reason: "overgedragen".into(),
        },
    );
    let row = Row::of(&made[1].state, &dates).unwrap();
    assert_eq!(row.supporter_kinds, vec![kind]);
}

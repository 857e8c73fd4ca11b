//! Signals as the days pass and events arrive: scenario 2's 18th birthday, an expiring Wlz
//! indication, a first Wlz indication with Wmo care, reviews, care not delivered, a pilot-light
//! household going quiet, check-ins, and who may see which.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::access::{Action, Principal, ReadKind, View, authorize};
use naast_domain::ids::{AgreementId, EntryId, GrantId, IndicationId, MemberId};
use naast_domain::signals::{Cause, Signal, SignalKind, signals, visible_signals};
use naast_domain::testing::{ScenarioTwo, run, scenario_two};
use naast_domain::vocab::*;
use naast_domain::{AgreementTerms, Command, GrantTerms, Grantee, Household, Identity, Party};
use time::Date;
use time::macros::date;

/// An accepted agreement for `member` funded by `funding`.
fn agreement(f: &mut ScenarioTwo, title: &str, funding: FundingDomain) -> AgreementId {
    let agreement = AgreementId::new();
    run(
        &mut f.household,
        Command::ProposeAgreement {
            agreement,
            terms: AgreementTerms {
                title: title.into(),
                description: String::new(),
                parties: vec![Party::Member(f.teen), Party::Contact(f.coach)],
                responsible: Some(f.coach),
                funding,
                pgb: false,
                start: date!(2024 - 09 - 01),
                end: None,
                frequency: None,
                goals: Vec::new(),
                review_on: None,
                plan: None,
            },
        },
    );
    run(&mut f.household, Command::AcceptAgreement { agreement });
    agreement
}

/// A Wlz indication (care profile VG6) for Sam from `from` until `until`.
fn wlz_indication(f: &mut ScenarioTwo, from: Date, until: Option<Date>) -> IndicationId {
    let indication = IndicationId::new();
    run(
        &mut f.household,
        Command::RecordIndication {
            indication,
            member: f.teen,
            kind: IndicationKind::WlzIndication,
            care_profile: Some("VG6".into()),
            valid_from: from,
            valid_until: until,
        },
    );
    indication
}

fn of_kind(household: &Household, today: Date, kind: SignalKind) -> Vec<Signal> {
    signals(household, today)
        .into_iter()
        .filter(|s| s.kind == kind)
        .collect()
}

fn logbook(f: &mut ScenarioTwo, on: Date) {
    run(
        &mut f.household,
        Command::AddLogbookEntry {
            entry: EntryId::new(),
            supporter: f.coach,
            on,
            minutes: 45,
            mode: ContactMode::Phone,
            tasks: vec![SupporterTask::ListeningEar],
            life_domains: vec![],
            summary: "gebeld".into(),
        },
    );
}

#[test]
fn turning_eighteen_flags_the_jeugdwet_agreement_six_months_ahead_until_it_is_carried_over() {
    let mut f = scenario_two();
    let jeugd = agreement(
        &mut f,
        "begeleiding twee middagen per week",
        FundingDomain::Jeugdwet,
    );
    agreement(&mut f, "huiswerkbegeleiding", FundingDomain::Informal);

    let kind = SignalKind::TurningEighteen;
    assert!(of_kind(&f.household, date!(2025 - 09 - 13), kind).is_empty());
    let flagged = of_kind(&f.household, date!(2025 - 09 - 14), kind);
    assert_eq!(flagged.len(), 1, "only the Jeugdwet agreement: {flagged:?}");
    assert_eq!(flagged[0].cause, Cause::Agreement(jeugd));
    assert_eq!(flagged[0].member, Some(f.teen));
    assert_eq!(flagged[0].due, date!(2026 - 03 - 14), "due on the birthday");
    assert!(flagged[0].reason.contains("Sam"), "{}", flagged[0].reason);
    // Still there after the birthday while nothing was done: now overdue.
    assert_eq!(of_kind(&f.household, date!(2026 - 04 - 01), kind).len(), 1);

    run(
        &mut f.household,
        Command::RecordFundingTransition {
            member: f.teen,
            from: FundingDomain::Jeugdwet,
            to: FundingDomain::Wmo,
            on: date!(2026 - 03 - 14),
            reason: "18 jaar".into(),
        },
    );
    assert!(of_kind(&f.household, date!(2025 - 12 - 01), kind).is_empty());
    assert!(of_kind(&f.household, date!(2026 - 04 - 01), kind).is_empty());
}

#[test]
fn a_follow_up_decision_clears_turning_eighteen_and_a_carry_over_after_the_birthday_does_not() {
    let mut f = scenario_two();
    agreement(&mut f, "begeleiding", FundingDomain::Jeugdwet);
    let today = date!(2026 - 01 - 10);
    // Carried over only from a day after the birthday: on the birthday it is still Jeugdwet.
    run(
        &mut f.household,
        Command::RecordFundingTransition {
            member: f.teen,
            from: FundingDomain::Jeugdwet,
            to: FundingDomain::Wmo,
            on: date!(2026 - 05 - 01),
            reason: "later".into(),
        },
    );
    assert_eq!(
        of_kind(&f.household, today, SignalKind::TurningEighteen).len(),
        1
    );
    run(
        &mut f.household,
        Command::RecordIndication {
            indication: IndicationId::new(),
            member: f.teen,
            kind: IndicationKind::WmoDecision,
            care_profile: None,
            valid_from: date!(2026 - 03 - 14),
            valid_until: None,
        },
    );
    assert!(of_kind(&f.household, today, SignalKind::TurningEighteen).is_empty());
}

#[test]
fn an_expiring_wlz_indication_is_signalled_90_days_ahead_and_after_while_care_runs_on() {
    let mut f = scenario_two();
    let wlz = wlz_indication(&mut f, date!(2025 - 01 - 01), Some(date!(2026 - 06 - 30)));
    let kind = SignalKind::IndicationExpiring;
    assert!(of_kind(&f.household, date!(2026 - 03 - 31), kind).is_empty());
    let expiring = of_kind(&f.household, date!(2026 - 04 - 01), kind);
    assert_eq!(expiring.len(), 1);
    assert_eq!(expiring[0].cause, Cause::Indication(wlz));
    assert_eq!(expiring[0].due, date!(2026 - 06 - 30));
    // Ended with no care running on it: nothing left to do.
    assert!(of_kind(&f.household, date!(2026 - 07 - 15), kind).is_empty());
    // Ended while Wlz care runs on without it: the gap with no money to pay the carers.
    agreement(
        &mut f,
        "logeeropvang twee weekenden per maand",
        FundingDomain::Wlz,
    );
    let gap = of_kind(&f.household, date!(2026 - 07 - 15), kind);
    assert_eq!(gap.len(), 1);
    assert!(gap[0].reason.contains("verlopen"), "{}", gap[0].reason);
    // A re-indication that runs on clears it, before and after the end.
    wlz_indication(&mut f, date!(2026 - 07 - 01), None);
    assert!(of_kind(&f.household, date!(2026 - 05 - 01), kind).is_empty());
    assert!(of_kind(&f.household, date!(2026 - 07 - 15), kind).is_empty());
}

#[test]
fn a_wlz_indication_flags_wmo_agreements_until_they_move() {
    let mut f = scenario_two();
    let wmo = agreement(&mut f, "hulp bij het huishouden", FundingDomain::Wmo);
    let today = date!(2026 - 02 - 01);
    assert!(of_kind(&f.household, today, SignalKind::MovesToWlz).is_empty());
    wlz_indication(&mut f, date!(2026 - 03 - 01), None);
    let moves = of_kind(&f.household, today, SignalKind::MovesToWlz);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].cause, Cause::Agreement(wmo));
    assert_eq!(moves[0].due, date!(2026 - 03 - 01));
    run(
        &mut f.household,
        Command::RecordFundingTransition {
            member: f.teen,
            from: FundingDomain::Wmo,
            to: FundingDomain::Wlz,
            on: date!(2026 - 03 - 01),
            reason: "eerste Wlz-indicatie".into(),
        },
    );
    assert!(of_kind(&f.household, today, SignalKind::MovesToWlz).is_empty());
}

#[test]
fn review_dates_and_care_not_delivered_stand_until_the_agreement_is_amended() {
    let mut f = scenario_two();
    let a = agreement(&mut f, "dagbesteding drie dagen", FundingDomain::Wlz);
    let mut terms = f.household.agreements[&a].terms.clone();
    terms.review_on = Some(date!(2026 - 03 - 01));
    run(
        &mut f.household,
        Command::AmendAgreement {
            agreement: a,
            terms: terms.clone(),
            reason: "evaluatiedatum".into(),
        },
    );
    assert!(of_kind(&f.household, date!(2026 - 02 - 14), SignalKind::ReviewDue).is_empty());
    assert_eq!(
        of_kind(&f.household, date!(2026 - 02 - 15), SignalKind::ReviewDue)[0].due,
        date!(2026 - 03 - 01)
    );
    run(
        &mut f.household,
        Command::ReportNotDelivered {
            agreement: a,
            on: date!(2026 - 02 - 20),
            description: "twee weken geen vervoer".into(),
        },
    );
    let open = of_kind(
        &f.household,
        date!(2026 - 02 - 25),
        SignalKind::NotDelivered,
    );
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].due, date!(2026 - 02 - 20));
    terms.review_on = Some(date!(2026 - 09 - 01));
    run(
        &mut f.household,
        Command::AmendAgreement {
            agreement: a,
            terms,
            reason: "ander vervoer".into(),
        },
    );
    let day = date!(2026 - 03 - 02);
    assert!(of_kind(&f.household, day, SignalKind::NotDelivered).is_empty());
    assert!(of_kind(&f.household, day, SignalKind::ReviewDue).is_empty());
}

#[test]
fn a_pilot_light_household_going_quiet_is_signalled_after_the_interval_its_phase_names() {
    let mut f = scenario_two();
    logbook(&mut f, date!(2026 - 01 - 05));
    run(
        &mut f.household,
        Command::ChangeSupportPhase {
            phase: SupportPhase::PilotLight,
            hours_per_week: Some(1),
            on: date!(2026 - 01 - 10),
            contact_every_days: Some(28),
        },
    );
    let kind = SignalKind::PilotLightQuiet;
    assert!(of_kind(&f.household, date!(2026 - 02 - 07), kind).is_empty());
    let quiet = of_kind(&f.household, date!(2026 - 02 - 08), kind);
    assert_eq!(quiet.len(), 1, "28 days after the phase began");
    assert_eq!(quiet[0].due, date!(2026 - 02 - 07));
    logbook(&mut f, date!(2026 - 02 - 09));
    assert!(of_kind(&f.household, date!(2026 - 03 - 01), kind).is_empty());
    assert_eq!(of_kind(&f.household, date!(2026 - 03 - 10), kind).len(), 1);
    // Out of the pilot-light phase, silence is no signal.
    run(
        &mut f.household,
        Command::ChangeSupportPhase {
            phase: SupportPhase::Crisis,
            hours_per_week: Some(6),
            on: date!(2026 - 03 - 11),
            contact_every_days: None,
        },
    );
    assert!(of_kind(&f.household, date!(2026 - 06 - 01), kind).is_empty());
}

fn check_in(f: &mut ScenarioTwo, respondent: MemberId, on: Date, rating: u8) -> EntryId {
    let id = EntryId::new();
    run(
        &mut f.household,
        Command::RecordCheckIn {
            check_in: id,
            member: f.teen,
            respondent,
            on,
            rating,
            note: String::new(),
        },
    );
    id
}

#[test]
fn check_ins_below_the_threshold_or_dropping_are_signalled_until_followed_up() {
    let mut f = scenario_two();
    let (sam, mother) = (f.teen, f.mother);
    let today = date!(2026 - 03 - 01);
    check_in(&mut f, sam, date!(2026 - 02 - 01), 8);
    let dropped = check_in(&mut f, sam, date!(2026 - 02 - 08), 6);
    let drop = signals(&f.household, today);
    assert_eq!(drop.len(), 1, "{drop:?}");
    assert_eq!(
        (drop[0].kind, drop[0].cause),
        (SignalKind::CheckInDrop, Cause::CheckIn(dropped))
    );
    // The mother's own series is separate: a first 4 is below the default threshold of 5.
    let low = check_in(&mut f, mother, date!(2026 - 02 - 09), 4);
    let both = signals(&f.household, today);
    assert_eq!(both.len(), 2);
    assert!(
        both.iter()
            .any(|s| (s.kind, s.cause) == (SignalKind::CheckInLow, Cause::CheckIn(low)))
    );
    // A better check-in clears Sam's; a logbook contact after the mother's clears hers.
    check_in(&mut f, sam, date!(2026 - 02 - 15), 7);
    assert_eq!(signals(&f.household, today).len(), 1);
    logbook(&mut f, date!(2026 - 02 - 10));
    assert!(signals(&f.household, today).is_empty());
    // The household's own threshold.
    run(
        &mut f.household,
        Command::SetCheckInThreshold { threshold: 8 },
    );
    let below = check_in(&mut f, sam, date!(2026 - 02 - 20), 7);
    assert_eq!(signals(&f.household, today)[0].cause, Cause::CheckIn(below));
}

/// What a supporter with a timeline grant limited to `funding` may see on `today`.
fn view_of_reader(f: &mut ScenarioTwo, funding: FundingDomain, today: Date) -> View {
    let identity = Identity {
        issuer: "https://idp.example".into(),
        subject: format!("reader-{}", funding.wire_name()),
    };
    run(
        &mut f.household,
        Command::GrantAccess {
            grant: GrantId::new(),
            grantee: Grantee::Person {
                identity: identity.clone(),
            },
            terms: GrantTerms {
                scopes: vec![AccessScope::ReadTimeline],
                life_domains: Vec::new(),
                funding_domains: vec![funding],
                until: None,
            },
            request: None,
        },
    );
    let reader = Principal {
        identity,
        role: PrincipalRole::Supporter,
        name: None,
        organisation: None,
        client_id: None,
        acting_for: None,
    };
    authorize(
        &f.household,
        &reader,
        Action::Read(ReadKind::Timeline),
        today,
    )
    .unwrap()
    .view
}

#[test]
fn a_reader_limited_to_some_funding_domains_sees_only_their_signals() {
    let mut f = scenario_two();
    let jeugd = agreement(&mut f, "begeleiding", FundingDomain::Jeugdwet);
    let sam = f.teen;
    check_in(&mut f, sam, date!(2026 - 01 - 01), 2);
    let today = date!(2026 - 01 - 10);
    assert_eq!(signals(&f.household, today).len(), 2);
    assert_eq!(
        visible_signals(&f.household, today, &View::everything()).len(),
        2
    );
    let wmo_only = view_of_reader(&mut f, FundingDomain::Wmo, today);
    assert!(visible_signals(&f.household, today, &wmo_only).is_empty());
    // The Jeugdwet agreement's signal, not the check-in (which names no funding domain).
    let jeugd_only = view_of_reader(&mut f, FundingDomain::Jeugdwet, today);
    let seen = visible_signals(&f.household, today, &jeugd_only);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].cause, Cause::Agreement(jeugd));
}

//! `report.effect` of `naast bench signals`: the effect report over many households as
//! `GetEffectReport` answers it (the read models' report rows scanned, unsealed and decoded, the
//! figures computed, the fingerprint compared with those answered before and recorded), next to
//! reading those rows alone. The households are written through the library first (three
//! measurements each, a goal, logbook contacts), then projected; that setup is not timed.

use crate::bench::{BenchError, fail, round};
use naast_app::auth::caller::Calling;
use naast_app::evaluation::Evaluation;
use naast_app::households::{CommandContext, Households};
use naast_domain::ids::{ContactId, EntryId, GoalId, HouseholdId, MemberId};
use naast_domain::measure::{Answer, Instrument};
use naast_domain::report::Cohort;
use naast_domain::vocab::*;
use naast_domain::{Command, ContactDetails, MemberDetails, Party};
use naast_eventlog::{Durability, EventLog, Options};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use time::Duration;

/// The report is meant to take less than this (the target), in ms.
const TARGET_MS: f64 = 1_000.0;
/// Households written at once.
const WRITERS: usize = 16;

/// The commands of household `i`: a client, a relative, a supporter of one of the pilots, a
/// family type, support since 300 days, the client's T0, T1 and T2, two logbook contacts and a
/// goal (achieved in every other household).
fn commands(i: usize, today: time::Date, instrument: &Instrument) -> Vec<Command> {
    let (client, relative, supporter, goal) = (
        MemberId::new(),
        MemberId::new(),
        ContactId::new(),
        GoalId::new(),
    );
    let kinds = [
        SupporterKind::Copilot,
        SupporterKind::LifeCourseCoach,
        SupporterKind::BrainInjuryCaseManager,
        SupporterKind::NetworkGuide,
        SupporterKind::Ally,
    ];
    let value = |k: usize| u8::try_from(1 + (i * 7 + k * 3) % 10).unwrap_or(5);
    let measurement = |moment, days_ago: i64, shift: usize| Command::RecordMeasurement {
        measurement: EntryId::new(),
        member: client,
        respondent: Party::Member(client),
        instrument: instrument.clone(),
        moment: Some(moment),
        on: today - Duration::days(days_ago),
        answers: vec![
            Answer {
                item: "leven".into(),
                value: value(shift),
                wants_change: None,
            },
            Answer {
                item: "structuur".into(),
                value: value(shift + 1),
                wants_change: None,
            },
            Answer {
                item: "tevredenheid-wonen".into(),
                value: value(shift + 2),
                wants_change: Some((i + shift).is_multiple_of(2)),
            },
            Answer {
                item: "gezondheid".into(),
                value: 1 + u8::try_from((i + shift) % 5).unwrap_or(0),
                wants_change: None,
            },
        ],
    };
    let mut commands = vec![
        Command::RegisterHousehold {
            name: format!("gezin {i}"),
            registered_by: None,
        },
        Command::AddMember {
            member: client,
            details: MemberDetails {
                name: "Noor".into(),
                role: MemberRole::Client,
                relation: None,
                birth_date: None,
            },
        },
        Command::AddMember {
            member: relative,
            details: MemberDetails {
                name: "Ouder".into(),
                role: MemberRole::Relative,
                relation: Some(Relation::Parent),
                birth_date: None,
            },
        },
        Command::AddContact {
            contact: supporter,
            details: ContactDetails {
                kind: ContactKind::Supporter,
                name: "Ondersteuner".into(),
                organisation: None,
                supporter_kind: Some(kinds[i % kinds.len()]),
                institution_kind: None,
            },
        },
        Command::SetFamilyType {
            family_type: Some(FamilyType::ALL[i % FamilyType::ALL.len()]),
        },
        Command::ChangeSupportPhase {
            phase: SupportPhase::Organising,
            hours_per_week: Some(2),
            on: today - Duration::days(300),
            contact_every_days: None,
        },
        measurement(MeasurementMoment::T0, 250, 0),
        measurement(MeasurementMoment::T1, 120, 1),
        measurement(MeasurementMoment::T2, 10, 2),
        Command::SetGoal {
            goal,
            owner: client,
            title: "Een passende woonplek".into(),
            description: String::new(),
            life_domains: vec![LifeDomain::Housing],
            plan: None,
        },
    ];
    for days_ago in [200, 100] {
        commands.push(Command::AddLogbookEntry {
            entry: EntryId::new(),
            supporter,
            on: today - Duration::days(days_ago),
            minutes: 60 + u32::try_from(i % 60).unwrap_or(0),
            mode: ContactMode::Phone,
            tasks: vec![SupporterTask::InformAndAdvise],
            life_domains: vec![LifeDomain::Housing],
            summary: "Gebeld over de woonplek".into(),
        });
    }
    if i.is_multiple_of(2) {
        commands.push(Command::AchieveGoal {
            goal,
            on: today - Duration::days(5),
            note: String::new(),
        });
    }
    commands
}

/// Writes `households` households into a fresh data directory under `scratch`, projects them,
/// and times the report; prints `report.effect`.
pub async fn effect(households: usize, scratch: &Path) -> Result<(), BenchError> {
    let data = scratch.join("report");
    // A bulk import: the setup is not what is measured.
    let log = EventLog::open(
        &data,
        Options {
            durability: Durability::Async,
            ..Options::default()
        },
    )?;
    let key = naast_vault::MasterKey::from_base64(&naast_vault::MasterKey::generate_base64())
        .map_err(|e| fail(&e))?;
    let vault = naast_vault::Vault::open(&data.join("keys"), &key).map_err(|e| fail(&e))?;
    let projections = naast_projections::Projections::open(&data.join("projections"))
        .map_err(|e| fail(&e))?
        .with_vault(vault.clone());
    let evaluation = Evaluation::open(
        log.clone(),
        projections.clone(),
        None,
        &data.join("disclosures"),
        crate::config::DEFAULT_SUPPORTER_HOURLY_RATE_CENTS,
    )
    .await
    .map_err(|e| fail(&e))?;
    let library = Households::new(log.clone(), None).with_vault(vault);
    let today = naast_domain::calendar::dutch_today();
    let instrument = evaluation
        .instrument("instrument", "kwaliteit-van-leven-client", 0)
        .await
        .map_err(|e| fail(&e))?;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (library, instrument) = (library.clone(), instrument.clone());
        writers.spawn(async move {
            let context = CommandContext::unguarded();
            for i in (writer..households).step_by(WRITERS) {
                let id = HouseholdId::new();
                for command in commands(i, today, &instrument) {
                    library
                        .execute(id, command, &context)
                        .await
                        .map_err(|e| fail(&e))?;
                }
            }
            Ok::<_, BenchError>(())
        });
    }
    while let Some(written) = writers.join_next().await {
        written.map_err(|e| fail(&e))??;
    }
    projections.catch_up(&log).await.map_err(|e| fail(&e))?;

    // The peer: reading every report row alone.
    let started = Instant::now();
    let rows = projections.report_rows().map_err(|e| fail(&e))?;
    let read = started.elapsed();
    if rows.len() != households {
        return Err(BenchError::Check(format!(
            "{} report rows for {households} households",
            rows.len()
        )));
    }
    drop(rows);
    let cohort = Cohort {
        supporter_kind: None,
        family_type: None,
        from: today - Duration::days(365),
        to: today,
        baseline: MeasurementMoment::T0,
        follow_up: MeasurementMoment::T1,
    };
    let mut times = Vec::new();
    let mut shown = None;
    for _ in 0..3 {
        let started = Instant::now();
        let report = evaluation
            .effect_report(&Calling::Unguarded, cohort.clone())
            .await
            .map_err(|e| fail(&e))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        shown = report.households;
    }
    if households >= 5 && shown != Some(u32::try_from(households).unwrap_or(u32::MAX)) {
        return Err(BenchError::Check(format!(
            "the report counted {shown:?} of {households} households"
        )));
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    let median = times[1];
    let read_ms = read.as_secs_f64() * 1e3;
    println!(
        "{}",
        json!({
            "bench": "report.effect",
            "households": households,
            "measurements": households * 3,
            "ms": round(median, 1),
            "first_ms": round(first, 1),
            "target_ms": TARGET_MS,
            "peer": "reading every household's report row alone (scan, unseal, decode)",
            "peer_ms": round(read_ms, 1),
            "ratio_to_peer": round(median / read_ms, 2),
        })
    );
    log.close().await;
    Ok(())
}

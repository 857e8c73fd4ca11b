//! `naast bench signals`: the signals of many households, computed as `ListSignals` and
//! `ListCaseload` compute them (from each household's state and the day), next to the replay
//! that folds the same households' events into that state; and the update after one new event
//! (applying it, then computing that household's signals again), next to applying it alone.
//! In-process: this measures the computation, not a transport.
//!
//! - `signals.recompute`: every household's signals, in ms, with the replay as its peer.
//! - `signals.update`: p50/p99 of one event's update, with applying alone as its ceiling.
//! - `report.effect`: the effect report over as many households (see `bench_report`).

use crate::bench::{BenchError, percentile, round};
use naast_domain::ids::{AgreementId, ContactId, EntryId, IndicationId, MemberId};
use naast_domain::vocab::*;
use naast_domain::{
    AgreementTerms, Command, ContactDetails, DomainEvent, Household, MemberDetails, Party, decide,
};
use serde_json::json;
use std::time::Instant;
use time::Date;

/// Options of `naast bench signals`.
#[derive(Clone, Debug, clap::Args)]
pub struct SignalsArgs {
    /// Households, each with about 30 events.
    #[arg(long, default_value_t = 10_000)]
    pub households: usize,
    /// New events whose update is timed, spread over the households.
    #[arg(long, default_value_t = 10_000)]
    pub updates: usize,
    /// Where the effect report's households are written [default: a temporary directory].
    #[arg(long)]
    pub scratch_dir: Option<std::path::PathBuf>,
}

/// Runs `naast bench signals`: the signals, then the effect report over as many households.
pub fn signals(args: &SignalsArgs) -> Result<(), BenchError> {
    computed(args)?;
    let scratch = crate::bench::scratch_dir(args.scratch_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::bench_report::effect(args.households, scratch.path()))
}

/// The signals' figures.
fn computed(args: &SignalsArgs) -> Result<(), BenchError> {
    if args.households == 0 {
        return Err(BenchError::Check("--households must be at least 1".into()));
    }
    let today = naast_domain::calendar::dutch_today();
    let mut streams = Vec::with_capacity(args.households);
    let mut people = Vec::with_capacity(args.households);
    for i in 0..args.households {
        let (events, who) = household(i, today)?;
        streams.push(events);
        people.push(who);
    }
    let events: usize = streams.iter().map(Vec::len).sum();

    let started = Instant::now();
    let mut states: Vec<Household> = streams.iter().map(Household::from_events).collect();
    let replay = started.elapsed();

    let started = Instant::now();
    let found: usize = states
        .iter()
        .map(|s| naast_domain::signals::signals(s, today).len())
        .sum();
    let recompute = started.elapsed();
    if found == 0 {
        return Err(BenchError::Check("the households raised no signal".into()));
    }
    println!(
        "{}",
        json!({
            "bench": "signals.recompute",
            "households": args.households,
            "events": events,
            "signals": found,
            "ms": round(recompute.as_secs_f64() * 1e3, 2),
            "peer": "replaying the same households' events into their state",
            "peer_ms": round(replay.as_secs_f64() * 1e3, 2),
            "ratio_to_peer": round(recompute.as_secs_f64() / replay.as_secs_f64(), 3),
        })
    );

    let mut updates = Vec::with_capacity(args.updates);
    let mut applies = Vec::with_capacity(args.updates);
    for u in 0..args.updates {
        let h = (u * 7_919) % args.households;
        let (member, supporter) = people[h];
        let command = if u.is_multiple_of(2) {
            Command::RecordCheckIn {
                check_in: EntryId::new(),
                member,
                respondent: member,
                on: today,
                rating: u8::try_from(u % 10).unwrap_or(0) + 1,
                note: String::new(),
            }
        } else {
            logbook(supporter, today)
        };
        let new = decide(&states[h], command).map_err(|e| BenchError::Check(e.to_string()))?;
        let mut alone = states[h].clone();
        let started = Instant::now();
        for event in &new {
            alone.apply(event);
        }
        applies.push(started.elapsed());
        let started = Instant::now();
        for event in &new {
            states[h].apply(event);
        }
        std::hint::black_box(naast_domain::signals::signals(&states[h], today));
        updates.push(started.elapsed());
    }
    updates.sort();
    applies.sort();
    println!(
        "{}",
        json!({
            "bench": "signals.update",
            "updates": args.updates,
            "p50_us": round(percentile(&updates, 0.50), 1),
            "p99_us": round(percentile(&updates, 0.99), 1),
            "p99_ms": round(percentile(&updates, 0.99) / 1e3, 3),
            "ceiling": "applying the event alone",
            "ceiling_p99_us": round(percentile(&applies, 0.99), 1),
        })
    );
    Ok(())
}

fn logbook(supporter: ContactId, on: Date) -> Command {
    Command::AddLogbookEntry {
        entry: EntryId::new(),
        supporter,
        on,
        minutes: 45,
        mode: ContactMode::Phone,
        tasks: vec![SupporterTask::ListeningEar],
        life_domains: vec![LifeDomain::SocialNetwork],
        summary: "gebeld".into(),
    }
}

/// Household `i`'s events: a client whose 18th birthday falls somewhere in the coming year and
/// a half, a parent, a supporter, three accepted agreements (Jeugdwet, Wmo, Wlz) with review
/// dates, an indication ending somewhere in the coming months, a logbook and check-ins; every
/// third in the pilot-light phase. With the client and the supporter, for the updates.
fn household(
    i: usize,
    today: Date,
) -> Result<(Vec<DomainEvent>, (MemberId, ContactId)), BenchError> {
    let days = |n: usize| time::Duration::days(i64::try_from(n).unwrap_or(0));
    let client = MemberId::new();
    let supporter = ContactId::new();
    let birth = Date::from_calendar_date(today.year() - 18, today.month(), 1)
        .map_err(|e| BenchError::Check(e.to_string()))?
        + days(i % 540);
    let mut commands = vec![
        Command::RegisterHousehold {
            name: format!("Familie {i}"),
            registered_by: None,
        },
        Command::AddMember {
            member: client,
            details: MemberDetails {
                name: "Sam".into(),
                role: MemberRole::Client,
                relation: None,
                birth_date: Some(birth),
            },
        },
        Command::AddMember {
            member: MemberId::new(),
            details: MemberDetails {
                name: "Ilse".into(),
                role: MemberRole::Relative,
                relation: Some(Relation::Parent),
                birth_date: None,
            },
        },
        Command::AddContact {
            contact: supporter,
            details: ContactDetails {
                kind: ContactKind::Supporter,
                name: "Noor".into(),
                organisation: None,
                supporter_kind: Some(SupporterKind::LifeCourseCoach),
                institution_kind: None,
            },
        },
        Command::RecordIndication {
            indication: IndicationId::new(),
            member: client,
            kind: IndicationKind::WlzIndication,
            care_profile: Some("VG6".into()),
            valid_from: today - days(400),
            valid_until: Some(today + days(i % 200)),
        },
    ];
    for (n, funding) in [
        FundingDomain::Jeugdwet,
        FundingDomain::Wmo,
        FundingDomain::Wlz,
    ]
    .into_iter()
    .enumerate()
    {
        let agreement = AgreementId::new();
        commands.push(Command::ProposeAgreement {
            agreement,
            terms: AgreementTerms {
                title: format!("afspraak {n}"),
                description: String::new(),
                parties: vec![Party::Member(client), Party::Contact(supporter)],
                responsible: Some(supporter),
                funding,
                pgb: n == 2,
                start: today - days(300),
                end: None,
                frequency: None,
                goals: Vec::new(),
                review_on: Some(today + days((i + 20 * n) % 90)),
                plan: None,
            },
        });
        commands.push(Command::AcceptAgreement { agreement });
    }
    if i.is_multiple_of(3) {
        commands.push(Command::ChangeSupportPhase {
            phase: SupportPhase::PilotLight,
            hours_per_week: Some(1),
            on: today - days(120),
            contact_every_days: Some(30),
        });
    }
    for k in 0..10 {
        commands.push(logbook(supporter, today - days(7 * k + i % 50)));
    }
    for k in 0..4 {
        commands.push(Command::RecordCheckIn {
            check_in: EntryId::new(),
            member: client,
            respondent: client,
            on: today - days(30 - 7 * k),
            rating: u8::try_from((i + 3 * k) % 10).unwrap_or(0) + 1,
            note: String::new(),
        });
    }
    let mut state = Household::default();
    let mut events = Vec::new();
    for command in commands {
        for event in decide(&state, command).map_err(|e| BenchError::Check(e.to_string()))? {
            state.apply(&event);
            events.push(event);
        }
    }
    Ok((events, (client, supporter)))
}

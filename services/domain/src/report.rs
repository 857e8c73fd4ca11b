//! The effect and cost report for programme evaluators: aggregates over the households of a
//! cohort, in the meta-analysis' own presentation ("rapportcijfer leven 5,7 → 6,2, n = 46").
//!
//! Each household contributes one [`Row`]: what it measured, its goals with their days, its
//! support and the supporter's minutes, with member ids only (no names, no texts). The read
//! models keep a row per household, rebuilt from the log like everything there; [`effect`] turns
//! the rows of a cohort into figures.
//!
//! # Disclosure control
//! - A figure rests on at least [`MIN_CELL`] households (and as many paired answers); a smaller
//!   cell is suppressed, and says so.
//! - Every report carries [`Fingerprint`]s: per household, a hash of what it contributed to the
//!   figures shown. Two reports whose fingerprints differ in fewer than [`MIN_CELL`] households
//!   (but in some) would show, by subtraction, what those few households contributed; the
//!   application keeps the fingerprints of every report it answered and refuses such a report
//!   ([`differing`]).
//! - Households that object to evaluation have no row.

use crate::event::{DomainEvent, Party};
use crate::ids::{GoalId, HouseholdId, MemberId};
use crate::measure::Catalogue;
use crate::state::{GoalStatus, Household, Measurement};
use crate::vocab::{
    FamilyType, ItemKind, LifeDomain, MeasurementMoment, MemberRole, RespondentKind, SupportPhase,
    SupporterKind,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use time::Date;

/// Fewest households (and paired answers) a figure may rest on.
pub const MIN_CELL: u32 = 5;

/// The days the state does not keep: when each goal was set and when support began. Folded from
/// the household's events with the day each happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dates {
    /// The day each goal was set.
    pub goal_set: BTreeMap<GoalId, Date>,
    /// The day each goal was achieved or abandoned, while it stays so.
    pub goal_closed: BTreeMap<GoalId, Date>,
    /// The day of the first support phase.
    pub support_began: Option<Date>,
}

impl Dates {
    /// Folds in `event`, which happened on `day`.
    pub fn apply(&mut self, event: &DomainEvent, day: Date) {
        use DomainEvent as E;
        match event {
            E::GoalSet { goal, .. } => {
                self.goal_set.insert(*goal, day);
            }
            E::GoalAchieved { goal, on, .. } | E::GoalAbandoned { goal, on, .. } => {
                self.goal_closed.insert(*goal, *on);
            }
            E::GoalReopened { goal, .. } => {
                self.goal_closed.remove(goal);
            }
            E::SupportPhaseChanged { on, .. } => {
                self.support_began.get_or_insert(*on);
            }
            _ => {}
        }
    }
}

/// Whether `event` can change a household's [`Row`]. Not a member's or contact's arrival or
/// leaving: a member just added owns no goal or measurement yet, and a row counts those who
/// left as they were (their goals, the pilot of a supporter who left).
pub fn concerns(event: &DomainEvent) -> bool {
    use DomainEvent as E;
    matches!(
        event,
        E::HouseholdRegistered { .. }
            | E::MemberUpdated { .. }
            | E::ContactAdded { .. }
            | E::ContactUpdated { .. }
            | E::SupportPhaseChanged { .. }
            | E::GoalSet { .. }
            | E::GoalUpdated { .. }
            | E::GoalAchieved { .. }
            | E::GoalAbandoned { .. }
            | E::GoalReopened { .. }
            | E::LogbookEntryAdded { .. }
            | E::MeasurementRecorded { .. }
            | E::FamilyTypeSet { .. }
            | E::EvaluationObjectionSet { .. }
    )
}

/// A goal, as a report counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalFact {
    /// Its owner is a client (else a relative or representative).
    pub client: bool,
    /// Its life domains.
    pub life_domains: Vec<LifeDomain>,
    /// Set on.
    pub set_on: Date,
    /// Achieved on, while it stays achieved.
    pub achieved_on: Option<Date>,
    /// Achieved or abandoned on, while it stays so.
    pub closed_on: Option<Date>,
}

/// What one household contributes to effect reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The kinds of its supporters, those who left included.
    pub supporter_kinds: Vec<SupporterKind>,
    /// Its family type.
    pub family_type: Option<FamilyType>,
    /// The day support began, and the day it was handed over (while it stays so).
    pub support: Option<(Date, Option<Date>)>,
    /// Measurements, as the household's state holds them.
    pub responses: Vec<Measurement>,
    /// Goals.
    pub goals: Vec<GoalFact>,
    /// Minutes of supporters' logbook contacts, by day.
    pub minutes: BTreeMap<Date, u32>,
}

impl Row {
    /// The household's row; `None` when it objects to evaluation, is erased or not registered.
    pub fn of(state: &Household, dates: &Dates) -> Option<Self> {
        if state.objects_to_evaluation || state.erased || !state.registered {
            return None;
        }
        let mut supporter_kinds: Vec<SupporterKind> = state
            .contacts
            .values()
            // A supporter who has left still supported the household then: its pilot keeps it.
            .filter_map(|c| c.details.supporter_kind)
            .collect();
        supporter_kinds.sort();
        supporter_kinds.dedup();
        let support = dates.support_began.map(|began| {
            let handed_over = state
                .support
                .filter(|s| s.phase == SupportPhase::HandedOver)
                .map(|s| s.since);
            (began, handed_over)
        });
        let goals = state
            .goals
            .iter()
            .filter_map(|(id, goal)| {
                let owner = state.members.get(&goal.owner)?;
                Some(GoalFact {
                    client: owner.details.role == MemberRole::Client,
                    life_domains: goal.life_domains.clone(),
                    set_on: *dates.goal_set.get(id)?,
                    achieved_on: (goal.status == GoalStatus::Achieved)
                        .then(|| dates.goal_closed.get(id).copied())
                        .flatten(),
                    closed_on: (goal.status != GoalStatus::Active)
                        .then(|| dates.goal_closed.get(id).copied())
                        .flatten(),
                })
            })
            .collect();
        Some(Self {
            supporter_kinds,
            family_type: state.family_type,
            support,
            responses: state.measurements.clone(),
            goals,
            minutes: state.contact_minutes.clone(),
        })
    }
}

/// Which households and which period a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cohort {
    /// Only households with a supporter of this kind (the pilot), or all.
    pub supporter_kind: Option<SupporterKind>,
    /// Only households of this family type, or all.
    pub family_type: Option<FamilyType>,
    /// First day of the period.
    pub from: Date,
    /// Last day of the period.
    pub to: Date,
    /// The moment compared from (usually T0).
    pub baseline: MeasurementMoment,
    /// The moment compared to (usually T1).
    pub follow_up: MeasurementMoment,
}

/// Figures of one indicator over pairs of answers (the follow-up in the period, the baseline
/// before it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Pairs (one respondent about one member, at both moments).
    pub n: u32,
    /// Households they come from.
    pub households: u32,
    /// Mean at the baseline.
    pub mean_before: f64,
    /// Mean at the follow-up.
    pub mean_after: f64,
    /// After minus before.
    pub difference: f64,
    /// The difference as a percentage of the mean before.
    pub percent_change: f64,
    /// For satisfaction: the share (0–1) of those who answered it that wanted the domain to
    /// change, before and after.
    pub wants_change: Option<(f64, f64)>,
}

/// One indicator: a question of an instrument, as answered at both moments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    /// The instrument's key.
    pub instrument: String,
    /// The question's key.
    pub item: String,
    /// What it measures.
    pub kind: ItemKind,
    /// Who answers it.
    pub respondent: RespondentKind,
    /// Its life domain, for satisfaction.
    pub life_domain: Option<LifeDomain>,
    /// The question, as the latest version words it.
    pub text: String,
    /// The figures; `None` when they rest on fewer than [`MIN_CELL`] pairs or households.
    pub figures: Option<Paired>,
}

/// Goals of one life domain, of clients or of relatives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Goals {
    /// The life domain.
    pub life_domain: LifeDomain,
    /// Goals of clients (else of relatives and representatives).
    pub clients: bool,
    /// `(households, goals worked on in the period, of which achieved in it)`; `None` when
    /// suppressed.
    pub figures: Option<(u32, u32, u32)>,
}

/// The supporters' time and its cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Support {
    /// Households supported in the period.
    pub households: u32,
    /// Logbook minutes per household per week of support.
    pub minutes_per_household_per_week: f64,
    /// What that costs a year per household at the hourly rate, in euros.
    pub yearly_cost_per_household_eur: f64,
    /// The hourly rate, in euro cents.
    pub hourly_rate_cents: u32,
}

/// Per household, a hash of what it contributed to the figures shown: `(household, contribution)`,
/// sorted by household.
pub type Fingerprint = Vec<(u64, u64)>;

/// An effect and cost report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The cohort.
    pub cohort: Cohort,
    /// Households in the cohort; `None` when fewer than [`MIN_CELL`].
    pub households: Option<u32>,
    /// Per question of every instrument, in the catalogue's order.
    pub indicators: Vec<Indicator>,
    /// Goals per life domain, of clients and of relatives (only domains with goals).
    pub goals: Vec<Goals>,
    /// The supporters' time; `None` when suppressed.
    pub support: Option<Support>,
    /// What each household contributed to what is shown, for disclosure control.
    #[serde(skip)]
    pub fingerprint: Fingerprint,
}

/// A stable 64-bit hash (FNV-1a): fingerprints are kept across restarts and upgrades, so their
/// hash must never change.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    fn u64(self, value: u64) -> Self {
        self.bytes(&value.to_be_bytes())
    }
}

fn party_bytes(party: &Party) -> [u8; 17] {
    let (tag, id) = match party {
        Party::Member(m) => (0, m.0),
        Party::Contact(c) => (1, c.0),
    };
    let mut out = [0; 17];
    out[0] = tag;
    out[1..].copy_from_slice(id.as_bytes());
    out
}

/// One respondent about one member in one instrument.
type Unit<'a> = (MemberId, [u8; 17], &'a str);
/// The answers of a unit at the baseline and at the follow-up.
type Pair<'a> = (Option<&'a Measurement>, Option<&'a Measurement>);

/// One figure being summed up, with what each household put into it.
#[derive(Default)]
struct Cell {
    households: BTreeMap<usize, Fnv>,
    n: u32,
    before: u64,
    after: u64,
    wants_before: u32,
    wants_after: u32,
    wants_n: u32,
}

impl Cell {
    fn add(&mut self, household: usize, what: Fnv) {
        let h = self.households.entry(household).or_insert_with(Fnv::new);
        *h = h.u64(what.0);
    }
}

fn overlaps(began: Date, ended: Option<Date>, from: Date, to: Date) -> Option<(Date, Date)> {
    let start = began.max(from);
    let end = ended.map_or(to, |e| e.min(to));
    (start <= end).then_some((start, end))
}

/// The effect and cost report over `rows` (each with its household) for `cohort`, with the
/// questions of `catalogue`, at `hourly_rate_cents`, computed on `today` (support still going
/// counts up to today).
pub fn effect<'a>(
    rows: impl IntoIterator<Item = (HouseholdId, &'a Row)>,
    cohort: &Cohort,
    catalogue: &Catalogue,
    hourly_rate_cents: u32,
    today: Date,
) -> Report {
    // The indicators, in the catalogue's order: each question key of each instrument once, as
    // its latest version words it.
    let mut indicators: Vec<(
        String,
        String,
        ItemKind,
        RespondentKind,
        Option<LifeDomain>,
        String,
    )> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for instrument in catalogue.latest() {
        for version in (1..=instrument.version).rev() {
            let Some(defined) = catalogue.get(&instrument.key, version) else {
                continue;
            };
            for item in &defined.items {
                if index.contains_key(&(instrument.key.as_str(), item.key.as_str())) {
                    continue;
                }
                index.insert(
                    (instrument.key.as_str(), item.key.as_str()),
                    indicators.len(),
                );
                indicators.push((
                    instrument.key.clone(),
                    item.key.clone(),
                    item.kind,
                    instrument.respondent,
                    item.life_domain,
                    item.text.clone(),
                ));
            }
        }
    }
    let mut cells: Vec<Cell> = indicators.iter().map(|_| Cell::default()).collect();
    let mut goal_cells: BTreeMap<(LifeDomain, bool), (Cell, u32, u32)> = BTreeMap::new();
    let mut support = Cell::default();
    let (mut minutes, mut support_days) = (0u64, 0u64);
    let mut members = Cell::default();
    let mut ids = Vec::new();
    let within = |day: Date| cohort.from <= day && day <= cohort.to;
    for (household, row) in rows {
        if cohort
            .supporter_kind
            .is_some_and(|k| !row.supporter_kinds.contains(&k))
            || cohort
                .family_type
                .is_some_and(|t| row.family_type != Some(t))
        {
            continue;
        }
        let supported = row
            .support
            .and_then(|(began, ended)| overlaps(began, ended, cohort.from, cohort.to.min(today)));
        let measured = row.responses.iter().any(|r| within(r.on));
        if supported.is_none() && !measured {
            continue;
        }
        let at = ids.len();
        ids.push(household);
        members.add(at, Fnv::new());
        // Pairs: one respondent about one member in one instrument, at both moments.
        let mut units: BTreeMap<Unit<'_>, Pair<'_>> = BTreeMap::new();
        // A pair counts in the period its follow-up falls in; its baseline may lie before it
        // (a T0 of last year, a T1 of this one).
        for response in row.responses.iter().filter(|r| r.on <= cohort.to) {
            let unit = units
                .entry((
                    response.member,
                    party_bytes(&response.respondent),
                    response.instrument.as_str(),
                ))
                .or_default();
            if response.moment == Some(cohort.baseline) {
                unit.0 = Some(response);
            } else if response.moment == Some(cohort.follow_up) {
                unit.1 = Some(response);
            }
        }
        for ((member, respondent, instrument), pair) in &units {
            let (Some(before), Some(after)) = pair else {
                continue;
            };
            if !within(after.on) || before.on > after.on {
                continue;
            }
            for answer in &before.answers {
                let Some(later) = after.answers.iter().find(|a| a.item == answer.item) else {
                    continue;
                };
                let Some(&i) = index.get(&(*instrument, answer.item.as_str())) else {
                    continue;
                };
                let cell = &mut cells[i];
                cell.n += 1;
                cell.before += u64::from(answer.value);
                cell.after += u64::from(later.value);
                if let (Some(b), Some(a)) = (answer.wants_change, later.wants_change) {
                    cell.wants_n += 1;
                    cell.wants_before += u32::from(b);
                    cell.wants_after += u32::from(a);
                }
                cell.add(
                    at,
                    Fnv::new()
                        .bytes(member.0.as_bytes())
                        .bytes(respondent)
                        .u64(u64::from(answer.value))
                        .u64(u64::from(later.value))
                        .u64(answer.wants_change.map_or(2, u64::from))
                        .u64(later.wants_change.map_or(2, u64::from)),
                );
            }
        }
        for goal in &row.goals {
            if goal.set_on > cohort.to || goal.closed_on.is_some_and(|c| c < cohort.from) {
                continue;
            }
            let achieved = goal.achieved_on.is_some_and(within);
            for domain in &goal.life_domains {
                let (cell, goals, done) = goal_cells.entry((*domain, goal.client)).or_default();
                *goals += 1;
                *done += u32::from(achieved);
                cell.add(
                    at,
                    Fnv::new()
                        .u64(goal.set_on.to_julian_day().unsigned_abs().into())
                        .u64(u64::from(achieved)),
                );
            }
        }
        if let Some((start, end)) = supported {
            let spent: u64 = row
                .minutes
                .range(start..=end)
                .map(|(_, m)| u64::from(*m))
                .sum();
            let days = u64::try_from((end - start).whole_days() + 1).unwrap_or(0);
            minutes += spent;
            support_days += days;
            support.add(at, Fnv::new().u64(spent).u64(days));
        }
    }
    let enough = |cell: &Cell, n: u32| n >= MIN_CELL && cell.households.len() >= MIN_CELL as usize;
    // What each household contributed to what is shown.
    let mut contributions: BTreeMap<usize, Fnv> = BTreeMap::new();
    let mut show = |cell: &Cell, tag: u64| {
        for (household, what) in &cell.households {
            let h = contributions.entry(*household).or_insert_with(Fnv::new);
            *h = h.u64(tag).u64(what.0);
        }
    };
    let households = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let households_shown = enough(&members, households).then_some(households);
    if households_shown.is_some() {
        show(&members, 0);
    }
    let indicators = indicators
        .into_iter()
        .zip(&cells)
        .enumerate()
        .map(
            |(i, ((instrument, item, kind, respondent, life_domain, text), cell))| {
                let figures = enough(cell, cell.n).then(|| {
                    show(cell, 1 + i as u64);
                    let n = f64::from(cell.n);
                    let (before, after) = (cell.before as f64 / n, cell.after as f64 / n);
                    Paired {
                        n: cell.n,
                        households: u32::try_from(cell.households.len()).unwrap_or(u32::MAX),
                        mean_before: before,
                        mean_after: after,
                        difference: after - before,
                        percent_change: if before == 0.0 {
                            0.0
                        } else {
                            (after - before) / before * 100.0
                        },
                        wants_change: (cell.wants_n > 0).then(|| {
                            let w = f64::from(cell.wants_n);
                            (
                                f64::from(cell.wants_before) / w,
                                f64::from(cell.wants_after) / w,
                            )
                        }),
                    }
                });
                Indicator {
                    instrument,
                    item,
                    kind,
                    respondent,
                    life_domain,
                    text,
                    figures,
                }
            },
        )
        .collect::<Vec<_>>();
    let goals = goal_cells
        .iter()
        .map(|((domain, clients), (cell, goals, done))| {
            let households = u32::try_from(cell.households.len()).unwrap_or(u32::MAX);
            let figures = enough(cell, households).then(|| {
                let tag = 1_000_000 + (*domain as u64) * 2 + u64::from(*clients);
                show(cell, tag);
                (households, *goals, *done)
            });
            Goals {
                life_domain: *domain,
                clients: *clients,
                figures,
            }
        })
        .collect();
    let supported = u32::try_from(support.households.len()).unwrap_or(u32::MAX);
    let support = enough(&support, supported).then(|| {
        show(&support, 2_000_000);
        let weeks = support_days as f64 / 7.0;
        let per_week = if weeks > 0.0 {
            minutes as f64 / weeks
        } else {
            0.0
        };
        Support {
            households: supported,
            minutes_per_household_per_week: per_week,
            yearly_cost_per_household_eur: per_week / 60.0 * 52.0 * f64::from(hourly_rate_cents)
                / 100.0,
            hourly_rate_cents,
        }
    });
    let mut fingerprint: Fingerprint = contributions
        .into_iter()
        .map(|(at, what)| (Fnv::new().bytes(ids[at].0.as_bytes()).0, what.0))
        .collect();
    fingerprint.sort_unstable();
    Report {
        cohort: cohort.clone(),
        households: households_shown,
        indicators,
        goals,
        support,
        fingerprint,
    }
}

/// In how many households two fingerprints differ: present in one only, or contributing
/// differently.
pub fn differing(a: &[(u64, u64)], b: &[(u64, u64)]) -> usize {
    let (mut i, mut j, mut count) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                count += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                count += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                count += usize::from(a[i].1 != b[j].1);
                i += 1;
                j += 1;
            }
        }
    }
    count + (a.len() - i) + (b.len() - j)
}

/// Whether answering a report with fingerprint `new` after one with `earlier` would let someone
/// single out households by subtraction: they differ, but in fewer than [`MIN_CELL`] households.
/// Returns how many they differ in when so.
pub fn singles_out(earlier: &[(u64, u64)], new: &[(u64, u64)]) -> Option<usize> {
    if earlier.len().abs_diff(new.len()) >= MIN_CELL as usize {
        return None;
    }
    let d = differing(earlier, new);
    (d > 0 && d < MIN_CELL as usize).then_some(d)
}

/// Formats a figure with one decimal, as the meta-analysis does.
fn one(value: f64) -> String {
    format!("{value:.1}")
}

/// One line of the report's CSV: the fields a figure has, the others empty.
#[derive(Default)]
struct CsvLine {
    section: &'static str,
    instrument: String,
    item: String,
    respondent: String,
    life_domain: String,
    n: String,
    households: String,
    before: String,
    after: String,
    difference: String,
    percent_change: String,
    wants_change_before: String,
    wants_change_after: String,
    goals: String,
    achieved: String,
    minutes_per_household_per_week: String,
    yearly_cost_per_household_eur: String,
    suppressed: bool,
}

impl CsvLine {
    fn write(self, out: &mut String) {
        let fields = [
            self.section.to_owned(),
            self.instrument,
            self.item,
            self.respondent,
            self.life_domain,
            self.n,
            self.households,
            self.before,
            self.after,
            self.difference,
            self.percent_change,
            self.wants_change_before,
            self.wants_change_after,
            self.goals,
            self.achieved,
            self.minutes_per_household_per_week,
            self.yearly_cost_per_household_eur,
            self.suppressed.to_string(),
        ];
        let quoted: Vec<String> = fields
            .into_iter()
            .map(|f| {
                if f.contains([',', '"', '\r', '\n']) {
                    format!("\"{}\"", f.replace('"', "\"\""))
                } else {
                    f
                }
            })
            .collect();
        out.push_str(&quoted.join(","));
        out.push_str("\r\n");
    }
}

/// The report as CSV (RFC 4180, comma-separated, a header line), one line per figure:
/// `section,instrument,item,respondent,life_domain,n,households,before,after,difference,percent_change,wants_change_before,wants_change_after,goals,achieved,minutes_per_household_per_week,yearly_cost_per_household_eur,suppressed`.
/// A suppressed figure has its counts and values empty and `suppressed` = `true`.
pub fn to_csv(report: &Report) -> String {
    const HEADER: &str = "section,instrument,item,respondent,life_domain,n,households,before,after,difference,percent_change,wants_change_before,wants_change_after,goals,achieved,minutes_per_household_per_week,yearly_cost_per_household_eur,suppressed";
    let mut out = format!("{HEADER}\r\n");
    CsvLine {
        section: "cohort",
        households: report.households.map(|h| h.to_string()).unwrap_or_default(),
        suppressed: report.households.is_none(),
        ..CsvLine::default()
    }
    .write(&mut out);
    for indicator in &report.indicators {
        let line = CsvLine {
            section: "indicator",
            instrument: indicator.instrument.clone(),
            item: indicator.item.clone(),
            respondent: indicator.respondent.wire_name().into(),
            life_domain: indicator
                .life_domain
                .map(|d| d.wire_name().to_owned())
                .unwrap_or_default(),
            suppressed: indicator.figures.is_none(),
            ..CsvLine::default()
        };
        match &indicator.figures {
            None => line,
            Some(f) => CsvLine {
                n: f.n.to_string(),
                households: f.households.to_string(),
                before: one(f.mean_before),
                after: one(f.mean_after),
                difference: one(f.difference),
                percent_change: one(f.percent_change),
                wants_change_before: f.wants_change.map(|w| one(w.0 * 100.0)).unwrap_or_default(),
                wants_change_after: f.wants_change.map(|w| one(w.1 * 100.0)).unwrap_or_default(),
                ..line
            },
        }
        .write(&mut out);
    }
    for goals in &report.goals {
        let owner = if goals.clients {
            RespondentKind::Client
        } else {
            RespondentKind::Relative
        };
        let line = CsvLine {
            section: "goals",
            respondent: owner.wire_name().into(),
            life_domain: goals.life_domain.wire_name().into(),
            suppressed: goals.figures.is_none(),
            ..CsvLine::default()
        };
        match goals.figures {
            None => line,
            Some((households, worked_on, achieved)) => CsvLine {
                households: households.to_string(),
                goals: worked_on.to_string(),
                achieved: achieved.to_string(),
                ..line
            },
        }
        .write(&mut out);
    }
    let line = CsvLine {
        section: "support",
        respondent: RespondentKind::Supporter.wire_name().into(),
        suppressed: report.support.is_none(),
        ..CsvLine::default()
    };
    match &report.support {
        None => line,
        Some(s) => CsvLine {
            households: s.households.to_string(),
            minutes_per_household_per_week: one(s.minutes_per_household_per_week),
            yearly_cost_per_household_eur: format!("{:.0}", s.yearly_cost_per_household_eur),
            ..line
        },
    }
    .write(&mut out);
    out
}

//! Signals: what in a household needs someone's attention before it goes wrong, each with a
//! reason, the day it is due and what caused it.
//!
//! Signals are a function of a household's state and a date ("today", or any day to look at
//! as of then): they appear and clear as events change the state, and as time passes, and there
//! is no stored copy to get out of step or to rebuild. What they watch:
//!
//! | kind | when | cleared by |
//! |---|---|---|
//! | [`SignalKind::TurningEighteen`] | a member turns 18 within six months (Jeugdwet ends): each agreement funded by Jeugdwet on the birthday | the agreement carried over to another domain (by the birthday) or ending before it; a follow-up decision (another law's indication valid on the birthday) |
//! | [`SignalKind::IndicationExpiring`] | an indication or decision ends within 90 days; after it ended, while care in its domain still runs for the member | a later indication of the same kind for the member that runs on after it |
//! | [`SignalKind::MovesToWlz`] | a member has a Wlz indication, and an agreement for them is still funded by the Wmo | the agreement carried over, or ended |
//! | [`SignalKind::ReviewDue`] | an accepted agreement's review date is at most 14 days away, or past | an amendment with a later review date, or the agreement ending |
//! | [`SignalKind::NotDelivered`] | care was reported not delivered as agreed | an amendment, or the agreement ending |
//! | [`SignalKind::PilotLightQuiet`] | in the pilot-light phase, no logbook contact for longer than the phase says (42 days when it says nothing) | a logbook contact |
//! | [`SignalKind::CheckInLow`] | a member's latest check-in by a respondent is below the household's threshold (5 unless set) | a later check-in that is not low, or a logbook contact on or after its day |
//! | [`SignalKind::CheckInDrop`] | it is 2 or more below that respondent's check-in before it | as for a low check-in |
//!
//! An agreement is a member's when it names them as a party; one naming no member at all is
//! counted as every client's (it cannot be told whose it is, and a missed transition costs more
//! than a superfluous signal).

use crate::access::View;
use crate::event::Party;
use crate::ids::{AgreementId, EntryId, IndicationId, MemberId};
use crate::state::{Agreement, AgreementStatus, Household};
use crate::vocab::{FundingDomain, IndicationKind, MemberRole, SupportPhase};
use time::{Date, Duration, Month};

/// How long before the 18th birthday its signal appears.
pub const TURNING_EIGHTEEN_MONTHS: u8 = 6;
/// How long before an indication ends its signal appears.
pub const INDICATION_EXPIRY_DAYS: i64 = 90;
/// How long before an agreement's review date its signal appears.
pub const REVIEW_DAYS: i64 = 14;
/// Longest silence in the pilot-light phase when the phase names no contact interval: the pilots
/// keep about monthly contact, and this leaves two weeks' slack.
pub const DEFAULT_PILOT_LIGHT_DAYS: u32 = 42;
/// A check-in below this rating is a signal unless the household set its own threshold.
pub const DEFAULT_CHECK_IN_THRESHOLD: u8 = 5;
/// A check-in this much below the respondent's previous one is a signal.
pub const CHECK_IN_DROP: u8 = 2;

/// What a signal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// A member turns 18: their Jeugdwet agreement needs new funding.
    TurningEighteen,
    /// An indication or decision ends (or has ended) without a follow-up.
    IndicationExpiring,
    /// A member has a Wlz indication: their Wmo agreement needs to move to the Wlz.
    MovesToWlz,
    /// An agreement is due for review.
    ReviewDue,
    /// Care was not delivered as agreed, and that still stands.
    NotDelivered,
    /// In the pilot-light phase, the supporter has been out of touch too long.
    PilotLightQuiet,
    /// A check-in is below the household's threshold.
    CheckInLow,
    /// A check-in dropped sharply from the one before.
    CheckInDrop,
}

impl SignalKind {
    /// Every kind.
    pub const ALL: &'static [SignalKind] = &[
        Self::TurningEighteen,
        Self::IndicationExpiring,
        Self::MovesToWlz,
        Self::ReviewDue,
        Self::NotDelivered,
        Self::PilotLightQuiet,
        Self::CheckInLow,
        Self::CheckInDrop,
    ];

    /// The stable name on the wire.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::TurningEighteen => "turning_eighteen",
            Self::IndicationExpiring => "indication_expiring",
            Self::MovesToWlz => "moves_to_wlz",
            Self::ReviewDue => "review_due",
            Self::NotDelivered => "not_delivered",
            Self::PilotLightQuiet => "pilot_light_quiet",
            Self::CheckInLow => "check_in_low",
            Self::CheckInDrop => "check_in_drop",
        }
    }

    /// The kind with this wire name.
    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.wire_name() == name)
    }
}

/// What caused a signal: where to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// An agreement.
    Agreement(AgreementId),
    /// An indication or decision.
    Indication(IndicationId),
    /// A check-in.
    CheckIn(EntryId),
    /// The household's support as a whole.
    Household,
}

/// One signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// What it is about.
    pub kind: SignalKind,
    /// What caused it.
    pub cause: Cause,
    /// The member it concerns, if one.
    pub member: Option<MemberId>,
    /// The day by which something must happen (in the past when overdue).
    pub due: Date,
    /// One line for people, in Dutch as the families and supporters read it.
    pub reason: String,
    /// Funding domains it concerns (for who may see it). Signals name no life domain.
    pub funding_domains: Vec<FundingDomain>,
}

impl Signal {
    /// What tells this signal from every other of its household, while it stands: the same
    /// kind, cause and member is the same signal (its reason and due day may move).
    pub fn key(&self) -> (SignalKind, Cause, Option<MemberId>) {
        (self.kind, self.cause, self.member)
    }
}

/// The signals of `household` on day `today`, in the order they are due.
pub fn signals(household: &Household, today: Date) -> Vec<Signal> {
    if !household.registered || household.erased {
        return Vec::new();
    }
    let mut out = Vec::new();
    turning_eighteen(household, today, &mut out);
    indications(household, today, &mut out);
    moves_to_wlz(household, today, &mut out);
    agreements(household, today, &mut out);
    pilot_light(household, today, &mut out);
    check_ins(household, &mut out);
    out.sort_by_key(|s| (s.due, s.key()));
    out
}

/// The signals of `household` on day `today` that `view` may see.
pub fn visible_signals(household: &Household, today: Date, view: &View) -> Vec<Signal> {
    let mut all = signals(household, today);
    all.retain(|s| visible(household, s, today, view));
    all
}

/// Whether `view` may see `signal`: one about an agreement as the agreement itself, any other
/// as a timeline entry of its funding domains and no life domain (so a reader limited to some
/// life domains does not see it).
pub fn visible(household: &Household, signal: &Signal, today: Date, view: &View) -> bool {
    match signal.cause {
        Cause::Agreement(id) => household
            .agreements
            .get(&id)
            .is_some_and(|a| view.agreement(household, a, today)),
        _ => view.domains(&[], &signal.funding_domains),
    }
}

/// The day `birth` turns `years` old: 29 February birthdays fall on 28 February in other years
/// (the earlier day, so a signal is never late).
pub fn birthday(birth: Date, years: i32) -> Option<Date> {
    let year = birth.year().checked_add(years)?;
    Date::from_calendar_date(year, birth.month(), birth.day())
        .or_else(|_| Date::from_calendar_date(year, birth.month(), 28))
        .ok()
}

/// The same day `months` months earlier (the month's last day when it is shorter).
fn months_before(day: Date, months: u8) -> Date {
    let index = i32::from(u8::from(day.month())) - 1 - i32::from(months);
    let year = day.year() + index.div_euclid(12);
    let Ok(month) = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1)) else {
        return day;
    };
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, day.day().min(last)).unwrap_or(day)
}

/// The members an agreement is for: those it names, else every client.
fn members_of(household: &Household, agreement: &Agreement) -> Vec<MemberId> {
    let named: Vec<MemberId> = agreement
        .terms
        .parties
        .iter()
        .filter_map(|p| match p {
            Party::Member(m) => Some(*m),
            Party::Contact(_) => None,
        })
        .collect();
    if !named.is_empty() {
        return named;
    }
    household
        .members
        .iter()
        .filter(|(_, m)| !m.removed && m.details.role == MemberRole::Client)
        .map(|(id, _)| *id)
        .collect()
}

/// Agreements accepted and not ended by an event (some may be past their end date or not
/// started yet: each signal looks at the dates it needs).
fn running(household: &Household) -> impl Iterator<Item = (&AgreementId, &Agreement)> {
    household
        .agreements
        .iter()
        .filter(|(_, a)| a.status == AgreementStatus::Accepted)
}

fn name(household: &Household, member: MemberId) -> String {
    household
        .members
        .get(&member)
        .map_or_else(|| "?".to_owned(), |m| m.details.name.clone())
}

fn turning_eighteen(household: &Household, today: Date, out: &mut Vec<Signal>) {
    for (member_id, member) in &household.members {
        if member.removed {
            continue;
        }
        let Some(eighteen) = member.details.birth_date.and_then(|b| birthday(b, 18)) else {
            continue;
        };
        if today < months_before(eighteen, TURNING_EIGHTEEN_MONTHS) {
            continue;
        }
        let followed_up = household.indications.values().any(|i| {
            i.member == *member_id
                && i.kind != IndicationKind::JeugdwetDecision
                && i.valid_from <= eighteen
                && i.valid_until.is_none_or(|u| u >= eighteen)
        });
        if followed_up {
            continue;
        }
        for (id, agreement) in running(household) {
            let ends_before = agreement.terms.end.is_some_and(|end| end < eighteen);
            if ends_before
                || agreement.funding_on(eighteen) != FundingDomain::Jeugdwet
                || !members_of(household, agreement).contains(member_id)
            {
                continue;
            }
            out.push(Signal {
                kind: SignalKind::TurningEighteen,
                cause: Cause::Agreement(*id),
                member: Some(*member_id),
                due: eighteen,
                reason: format!(
                    "{} wordt op {eighteen} 18: de Jeugdwet stopt, \"{}\" heeft nieuwe financiering nodig",
                    member.details.name, agreement.terms.title
                ),
                funding_domains: vec![FundingDomain::Jeugdwet],
            });
        }
    }
}

fn indications(household: &Household, today: Date, out: &mut Vec<Signal>) {
    for (id, indication) in &household.indications {
        let Some(until) = indication.valid_until else {
            continue;
        };
        if today < until - Duration::days(INDICATION_EXPIRY_DAYS) {
            continue;
        }
        if household.member(indication.member).is_none() {
            continue;
        }
        let followed = household.indications.iter().any(|(other, i)| {
            other != id
                && i.member == indication.member
                && i.kind == indication.kind
                && i.valid_from > indication.valid_from
                && i.valid_until.is_none_or(|u| u > until)
        });
        if followed {
            continue;
        }
        let domain = indication.kind.funding_domain();
        if today > until {
            // Ended: a signal only while care in its domain runs on for the member without it
            // (the months "with no money to pay the carers").
            let care_runs_on = running(household).any(|(_, a)| {
                a.funding_on(today) == domain
                    && a.terms.start <= today
                    && a.terms.end.is_none_or(|end| end >= today)
                    && members_of(household, a).contains(&indication.member)
            });
            if !care_runs_on {
                continue;
            }
        }
        out.push(Signal {
            kind: SignalKind::IndicationExpiring,
            cause: Cause::Indication(*id),
            member: Some(indication.member),
            due: until,
            reason: format!(
                "{} van {} {} op {until}, en er is geen vervolg",
                indication.kind,
                name(household, indication.member),
                if today > until {
                    "is verlopen"
                } else {
                    "loopt af"
                },
            ),
            funding_domains: vec![domain],
        });
    }
}

fn moves_to_wlz(household: &Household, today: Date, out: &mut Vec<Signal>) {
    for (member_id, member) in &household.members {
        if member.removed {
            continue;
        }
        let Some(wlz_from) = household
            .indications
            .values()
            .filter(|i| {
                i.member == *member_id
                    && i.kind == IndicationKind::WlzIndication
                    && i.valid_until.is_none_or(|u| u >= today)
            })
            .map(|i| i.valid_from)
            .min()
        else {
            continue;
        };
        for (id, agreement) in running(household) {
            let ends_before = agreement.terms.end.is_some_and(|end| end < wlz_from);
            if ends_before
                || agreement.terms.funding != FundingDomain::Wmo
                || !members_of(household, agreement).contains(member_id)
            {
                continue;
            }
            out.push(Signal {
                kind: SignalKind::MovesToWlz,
                cause: Cause::Agreement(*id),
                member: Some(*member_id),
                due: wlz_from,
                reason: format!(
                    "{} heeft vanaf {wlz_from} een Wlz-indicatie: \"{}\" (Wmo) moet mee naar de Wlz",
                    member.details.name, agreement.terms.title
                ),
                funding_domains: vec![FundingDomain::Wmo, FundingDomain::Wlz],
            });
        }
    }
}

fn agreements(household: &Household, today: Date, out: &mut Vec<Signal>) {
    for (id, agreement) in running(household) {
        if agreement.terms.end.is_some_and(|end| end < today) {
            continue;
        }
        let funding = vec![agreement.funding_on(today)];
        if let Some(review) = agreement.terms.review_on
            && today >= review - Duration::days(REVIEW_DAYS)
        {
            out.push(Signal {
                kind: SignalKind::ReviewDue,
                cause: Cause::Agreement(*id),
                member: None,
                due: review,
                reason: format!(
                    "\"{}\" moet op {review} geëvalueerd worden",
                    agreement.terms.title
                ),
                funding_domains: funding.clone(),
            });
        }
        if agreement.under_review {
            let on = agreement.not_delivered_on.unwrap_or(today);
            out.push(Signal {
                kind: SignalKind::NotDelivered,
                cause: Cause::Agreement(*id),
                member: None,
                due: on,
                reason: format!(
                    "\"{}\" is sinds {on} niet geleverd zoals afgesproken",
                    agreement.terms.title
                ),
                funding_domains: funding,
            });
        }
    }
}

fn pilot_light(household: &Household, today: Date, out: &mut Vec<Signal>) {
    let Some(support) = household.support else {
        return;
    };
    if support.phase != SupportPhase::PilotLight {
        return;
    }
    let (since, every) = (
        support.since,
        support
            .contact_every_days
            .unwrap_or(DEFAULT_PILOT_LIGHT_DAYS),
    );
    let last_contact = household.last_contact(today);
    let from = last_contact.map_or(since, |c| c.max(since));
    let due = from + Duration::days(i64::from(every));
    if today <= due {
        return;
    }
    out.push(Signal {
        kind: SignalKind::PilotLightQuiet,
        cause: Cause::Household,
        member: None,
        due,
        reason: match last_contact {
            Some(day) => format!(
                "Waakvlam: het laatste contact was op {day}, langer dan {every} dagen geleden"
            ),
            None => format!(
                "Waakvlam sinds {since}: nog geen contact in het logboek, langer dan {every} dagen"
            ),
        },
        funding_domains: Vec::new(),
    });
}

fn check_ins(household: &Household, out: &mut Vec<Signal>) {
    let threshold = household
        .check_in_threshold
        .unwrap_or(DEFAULT_CHECK_IN_THRESHOLD);
    // The latest check-in per member and respondent, with the one before it.
    let mut latest: std::collections::BTreeMap<
        (MemberId, MemberId),
        (&EntryId, &crate::state::CheckIn, Option<u8>),
    > = std::collections::BTreeMap::new();
    for (id, check_in) in &household.check_ins {
        let key = (check_in.member, check_in.respondent);
        let newer = latest
            .get(&key)
            .is_none_or(|(_, current, _)| check_in.on >= current.on);
        if newer {
            let before = latest.get(&key).map(|(_, current, _)| current.rating);
            latest.insert(key, (id, check_in, before));
        }
    }
    for (id, check_in, before) in latest.into_values() {
        let followed_up = household
            .contact_minutes
            .range(check_in.on..)
            .next()
            .is_some();
        if followed_up || household.member(check_in.member).is_none() {
            continue;
        }
        let who = name(household, check_in.member);
        let by = if check_in.respondent == check_in.member {
            String::new()
        } else {
            format!(" (door {})", name(household, check_in.respondent))
        };
        let (kind, reason) = match before {
            Some(before) if before >= check_in.rating.saturating_add(CHECK_IN_DROP) => (
                SignalKind::CheckInDrop,
                format!(
                    "Check-in over {who}{by} op {}: {}/10, was {before}/10",
                    check_in.on, check_in.rating
                ),
            ),
            _ if check_in.rating < threshold => (
                SignalKind::CheckInLow,
                format!(
                    "Check-in over {who}{by} op {}: {}/10, onder de {threshold}",
                    check_in.on, check_in.rating
                ),
            ),
            _ => continue,
        };
        out.push(Signal {
            kind,
            cause: Cause::CheckIn(*id),
            member: Some(check_in.member),
            due: check_in.on,
            reason,
            funding_domains: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn six_months_before_a_day_keeps_the_day_or_takes_the_month_end() {
        assert_eq!(
            months_before(date!(2026 - 03 - 14), 6),
            date!(2025 - 09 - 14)
        );
        assert_eq!(
            months_before(date!(2026 - 08 - 31), 6),
            date!(2026 - 02 - 28)
        );
        assert_eq!(
            months_before(date!(2026 - 01 - 31), 6),
            date!(2025 - 07 - 31)
        );
        assert_eq!(
            months_before(date!(2024 - 08 - 29), 6),
            date!(2024 - 02 - 29)
        );
    }

    #[test]
    fn a_leap_day_birthday_falls_on_28_february_in_other_years() {
        assert_eq!(
            birthday(date!(2008 - 02 - 29), 18),
            Some(date!(2026 - 02 - 28))
        );
        assert_eq!(
            birthday(date!(2008 - 02 - 29), 16),
            Some(date!(2024 - 02 - 29))
        );
        assert_eq!(
            birthday(date!(2008 - 03 - 14), 18),
            Some(date!(2026 - 03 - 14))
        );
    }
}

//! A supporter's caseload: for each household they support, where support stands, how much
//! time it took lately (from the logbook), what needs attention, and what is coming up.

use crate::access::View;
use crate::signals::{self, Signal};
use crate::state::{AgreementStatus, Household};
use crate::vocab::SupportPhase;
use time::{Date, Duration};

/// One household of a caseload, as of a day, as far as the caller may see it.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseloadEntry {
    /// The household's name.
    pub name: String,
    /// The support phase, if set.
    pub phase: Option<SupportPhase>,
    /// Hours per week the phase names, if any.
    pub hours_per_week: Option<u32>,
    /// Logbook minutes per week over the last 4 weeks (the day itself and the 27 before).
    pub minutes_per_week_4: f64,
    /// Logbook minutes per week over the last 12 weeks.
    pub minutes_per_week_12: f64,
    /// The day of the last logbook contact, if any.
    pub last_contact: Option<Date>,
    /// Open signals, the earliest due first.
    pub signals: Vec<Signal>,
    /// The next review date of an accepted agreement, on or after the day.
    pub next_review: Option<Date>,
    /// The next day an indication or decision ends, on or after the day.
    pub next_expiry: Option<Date>,
}

/// `household` in a caseload on day `today`, with what `view` may see.
pub fn entry(household: &Household, today: Date, view: &View) -> CaseloadEntry {
    let minutes_since = |weeks: i64| -> f64 {
        let from = today - Duration::days(7 * weeks - 1);
        let total: u64 = household
            .contact_minutes
            .range(from..=today)
            .map(|(_, m)| u64::from(*m))
            .sum();
        // Sums of logbook minutes stay far below 2^53: exact in an f64.
        total as f64 / weeks as f64
    };
    let next_review = household
        .agreements
        .values()
        .filter(|a| a.status == AgreementStatus::Accepted)
        .filter(|a| a.terms.end.is_none_or(|end| end >= today))
        .filter(|a| view.agreement(household, a, today))
        .filter_map(|a| a.terms.review_on)
        .filter(|r| *r >= today)
        .min();
    let next_expiry = household
        .indications
        .values()
        .filter(|i| household.member(i.member).is_some())
        .filter(|i| view.domains(&[], &[i.kind.funding_domain()]))
        .filter_map(|i| i.valid_until)
        .filter(|u| *u >= today)
        .min();
    CaseloadEntry {
        name: household.name.clone(),
        phase: household.support.map(|s| s.phase),
        hours_per_week: household.support.and_then(|s| s.hours_per_week),
        minutes_per_week_4: minutes_since(4),
        minutes_per_week_12: minutes_since(12),
        last_contact: household.last_contact(today),
        signals: signals::visible_signals(household, today, view),
        next_review,
        next_expiry,
    }
}

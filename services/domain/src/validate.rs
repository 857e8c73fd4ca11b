//! Field checks shared by the commands, and the documented limits on texts and numbers.

use crate::DomainError;
use crate::vocab::LifeDomain;
use time::Date;
use time::macros::date;

/// Longest name (of a household, member, contact, organisation), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest title (of a plan, goal, agreement), in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest free text (description, summary, note, evaluation), in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// Longest short attribute (care profile, frequency), in characters.
pub const MAX_SHORT_CHARS: usize = 100;
/// Earliest date accepted anywhere.
pub const MIN_DATE: Date = date!(1900 - 01 - 01);
/// Latest date accepted anywhere.
pub const MAX_DATE: Date = date!(2199 - 12 - 31);
/// Most minutes in one logbook entry: a day.
pub const MAX_LOGBOOK_MINUTES: u32 = 24 * 60;
/// Most hours of support per week: the week.
pub const MAX_HOURS_PER_WEEK: u32 = 7 * 24;
/// Longest contact interval a support phase may name, in days: a year.
pub const MAX_CONTACT_INTERVAL_DAYS: u32 = 366;

/// Most characters of a caller's value quoted back in an error.
pub const MAX_QUOTED_CHARS: usize = 40;

/// A caller's value as quoted in an error: in full when short, else its first
/// [`MAX_QUOTED_CHARS`] characters and its length, so an error never grows with its input (a
/// 1 MB id must not come back in a status larger than a client accepts).
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!(
            "{:?}… ({} characters)",
            &value[..cut],
            value.chars().count()
        ),
    }
}

/// A required text: not blank, at most `max` characters, no control characters but line
/// breaks and tabs where `multiline`.
pub fn text(field: &str, value: &str, max: usize, multiline: bool) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    optional_text(field, value, max, multiline)
}

/// A rating on the scale of 1 to 10 that check-ins and measurements use.
pub fn rating(field: &str, value: u8) -> Result<(), DomainError> {
    if (1..=10).contains(&value) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            format!("is {value}; ratings go from 1 to 10"),
        ))
    }
}

/// An optional text: may be empty; otherwise as [`text`].
pub fn optional_text(
    field: &str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<(), DomainError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(DomainError::invalid(
            field,
            format!("is {chars} characters, more than the limit of {max}"),
        ));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\t' || c == '\r');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A date within [`MIN_DATE`]..=[`MAX_DATE`].
pub fn date(field: &str, value: Date) -> Result<(), DomainError> {
    if value < MIN_DATE || value > MAX_DATE {
        return Err(DomainError::invalid(
            field,
            format!("{value} is outside {MIN_DATE} to {MAX_DATE}"),
        ));
    }
    Ok(())
}

/// A period: both dates in range and the end not before the start.
pub fn period(
    start_field: &str,
    start: Date,
    end_field: &str,
    end: Option<Date>,
) -> Result<(), DomainError> {
    date(start_field, start)?;
    if let Some(end) = end {
        date(end_field, end)?;
        if end < start {
            return Err(DomainError::invalid(
                end_field,
                format!("{end} is before the start {start}"),
            ));
        }
    }
    Ok(())
}

/// Life domains: no repeats, and at least one when `required`.
pub fn life_domains(field: &str, values: &[LifeDomain], required: bool) -> Result<(), DomainError> {
    if required && values.is_empty() {
        return Err(DomainError::invalid(field, "name at least one life domain"));
    }
    no_repeats(field, values)
}

/// A list without repeated values.
pub fn no_repeats<T: PartialEq + std::fmt::Debug>(
    field: &str,
    values: &[T],
) -> Result<(), DomainError> {
    for (i, value) in values.iter().enumerate() {
        if values[..i].contains(value) {
            return Err(DomainError::invalid(
                format!("{field}[{i}]"),
                format!("{} is listed twice", quote(&format!("{value:?}"))),
            ));
        }
    }
    Ok(())
}

/// Longest issuer URL of an identity.
pub const MAX_ISSUER_CHARS: usize = 500;

/// A signed-in identity: issuer and subject both given, on one line.
pub fn identity(field: &str, value: &crate::event::Identity) -> Result<(), DomainError> {
    text(
        &format!("{field}.issuer"),
        &value.issuer,
        MAX_ISSUER_CHARS,
        false,
    )?;
    text(
        &format!("{field}.subject"),
        &value.subject,
        MAX_NAME_CHARS,
        false,
    )
}

/// Who a grant or request is for.
pub fn grantee(field: &str, value: &crate::event::Grantee) -> Result<(), DomainError> {
    use crate::event::Grantee as G;
    match value {
        G::Person { identity: who } => identity(&format!("{field}.person"), who),
        G::Organisation { id } => text(
            &format!("{field}.organisation_id"),
            id,
            MAX_SHORT_CHARS,
            false,
        ),
        G::Platform { issuer, client_id } => {
            text(
                &format!("{field}.platform.issuer"),
                issuer,
                MAX_ISSUER_CHARS,
                false,
            )?;
            text(
                &format!("{field}.platform.client_id"),
                client_id,
                MAX_NAME_CHARS,
                false,
            )
        }
    }
}

//! The calendar of the families: days as they are in the Netherlands.

use time::macros::time;
use time::{Date, Duration, Month, OffsetDateTime, UtcOffset};

/// The day it is in the Netherlands at `moment`: Central European Time, summer time from 01:00
/// UTC on the last Sunday of March to 01:00 UTC on the last Sunday of October (the EU rule the
/// Netherlands has kept since 1996).
pub fn dutch_date(moment: OffsetDateTime) -> Date {
    let utc = moment.to_offset(UtcOffset::UTC);
    let year = utc.year();
    let switch =
        |month| last_sunday(year, month).map(|day| day.with_time(time!(1:00)).assume_utc());
    let summer = match (switch(Month::March), switch(Month::October)) {
        (Some(start), Some(end)) => utc >= start && utc < end,
        _ => false,
    };
    (utc + Duration::hours(if summer { 2 } else { 1 })).date()
}

/// Today in the Netherlands.
pub fn dutch_today() -> Date {
    dutch_date(OffsetDateTime::now_utc())
}

fn last_sunday(year: i32, month: Month) -> Option<Date> {
    // March and October both have 31 days.
    let last = Date::from_calendar_date(year, month, 31).ok()?;
    let back = i64::from(last.weekday().number_days_from_sunday());
    last.checked_sub(Duration::days(back))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn days_turn_at_dutch_midnight_in_winter_and_summer() {
        for (moment, day) in [
            // Winter: UTC+1.
            (datetime!(2026-01-14 22:59 UTC), "2026-01-14"),
            (datetime!(2026-01-14 23:00 UTC), "2026-01-15"),
            // Summer: UTC+2.
            (datetime!(2026-07-14 21:59 UTC), "2026-07-14"),
            (datetime!(2026-07-14 22:00 UTC), "2026-07-15"),
            // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
            (datetime!(2026-03-28 22:30 UTC), "2026-03-28"),
            (datetime!(2026-03-29 22:30 UTC), "2026-03-30"),
            (datetime!(2026-10-24 22:30 UTC), "2026-10-25"),
            (datetime!(2026-10-25 22:30 UTC), "2026-10-25"),
        ] {
            assert_eq!(dutch_date(moment).to_string(), day, "{moment}");
        }
    }
}

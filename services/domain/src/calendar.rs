//! The calendar of the families: days as they are in the Netherlands.

use std::sync::LazyLock;
use time::{Date, Month, OffsetDateTime, UtcOffset};

/// Europe/Amsterdam from the time-zone database bundled with the binary, so a change of the
/// rules is an update of that database, not a change of this code.
static AMSTERDAM: LazyLock<jiff::tz::TimeZone> = LazyLock::new(|| {
    // The bundled database always holds Europe/Amsterdam; were it ever missing, Central
    // European Time without summer time is a day right except for two hours a night in summer.
    jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap_or_else(|e| {
        eprintln!("naast: Europe/Amsterdam is not in the time-zone database ({e}); using UTC+1");
        jiff::tz::TimeZone::fixed(jiff::tz::offset(1))
    })
});

/// The day it is in the Netherlands at `moment` (Europe/Amsterdam: CET, CEST in summer).
pub fn dutch_date(moment: OffsetDateTime) -> Date {
    let utc = moment.to_offset(UtcOffset::UTC);
    let Ok(instant) = jiff::Timestamp::new(utc.unix_timestamp(), 0) else {
        // Outside jiff's range (beyond the year ±9999): no Dutch day to speak of.
        return utc.date();
    };
    let day = AMSTERDAM.to_datetime(instant).date();
    Month::try_from(day.month().unsigned_abs())
        .ok()
        .and_then(|month| {
            Date::from_calendar_date(i32::from(day.year()), month, day.day().unsigned_abs()).ok()
        })
        .unwrap_or_else(|| utc.date())
}

/// The moment a Dutch day begins (midnight in Europe/Amsterdam), in seconds since 1970.
pub fn dutch_midnight(day: Date) -> i64 {
    let civil = jiff::civil::date(
        // A `time::Date` year is within ±9999, which jiff holds.
        i16::try_from(day.year()).unwrap_or(i16::MAX),
        i8::try_from(u8::from(day.month())).unwrap_or(1),
        i8::try_from(day.day()).unwrap_or(1),
    );
    AMSTERDAM.to_timestamp(civil.at(0, 0, 0, 0)).map_or_else(
        |_| day.midnight().assume_utc().unix_timestamp(),
        |instant| instant.as_second(),
    )
}

/// The Dutch wall-clock time at `seconds` since 1970: its day, hour and minute.
pub fn dutch_clock(seconds: i64) -> Option<(Date, u8, u8)> {
    let instant = jiff::Timestamp::new(seconds, 0).ok()?;
    let civil = AMSTERDAM.to_datetime(instant);
    let month = Month::try_from(civil.month().unsigned_abs()).ok()?;
    let day = Date::from_calendar_date(i32::from(civil.year()), month, civil.day().unsigned_abs())
        .ok()?;
    Some((
        day,
        civil.hour().unsigned_abs(),
        civil.minute().unsigned_abs(),
    ))
}

/// Today in the Netherlands.
pub fn dutch_today() -> Date {
    dutch_date(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_dutch_day_begins_at_dutch_midnight_winter_and_summer() {
        // 15 January: CET, UTC+1.
        let winter = time::macros::date!(2026 - 01 - 15);
        assert_eq!(
            dutch_midnight(winter),
            datetime!(2026-01-14 23:00 UTC).unix_timestamp()
        );
        // 15 July: CEST, UTC+2.
        let summer = time::macros::date!(2026 - 07 - 15);
        assert_eq!(
            dutch_midnight(summer),
            datetime!(2026-07-14 22:00 UTC).unix_timestamp()
        );
        assert_eq!(dutch_clock(dutch_midnight(summer)), Some((summer, 0, 0)));
        assert_eq!(
            dutch_clock(datetime!(2026-07-15 10:30 UTC).unix_timestamp()),
            Some((summer, 12, 30))
        );
    }

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
            // 1976: the Netherlands had no summer time yet (from 1977 on), which the database
            // knows and a fixed rule would not.
            (datetime!(1976-07-14 22:30 UTC), "1976-07-14"),
            // The far future, past the database's transitions: its rule goes on.
            (datetime!(2199-12-31 22:59 UTC), "2199-12-31"),
            (datetime!(2199-12-31 23:00 UTC), "2200-01-01"),
        ] {
            assert_eq!(dutch_date(moment).to_string(), day, "{moment}");
        }
    }
}

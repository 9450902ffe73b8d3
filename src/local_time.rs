//! Times as people at the commune read them: the database keeps UTC, pages show the
//! wall-clock time of the commune's time zone (`[tenant] time_zone`).

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// The wall-clock time in `zone` of a UTC time read from the database.
pub fn local_time(utc: NaiveDateTime, zone: Tz) -> NaiveDateTime {
    zone.from_utc_datetime(&utc).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn paris_is_one_hour_ahead_in_winter_and_two_in_summer() {
        let at = |month, hour| {
            NaiveDate::from_ymd_opt(2026, month, 5)
                .unwrap()
                .and_hms_opt(hour, 3, 0)
                .unwrap()
        };
        let paris = chrono_tz::Europe::Paris;
        assert_eq!(local_time(at(12, 12), paris), at(12, 13));
        assert_eq!(local_time(at(5, 12), paris), at(5, 14));
        assert_eq!(local_time(at(5, 12), chrono_tz::UTC), at(5, 12));
    }
}

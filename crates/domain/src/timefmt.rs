//! Clock reading and the timestamp formats of the service.
//!
//! Envelope timestamps are RFC 3339 in UTC with millisecond precision, the
//! form JavaScript's `Date.toISOString()` produces and the guide shows
//! (`2025-01-01T00:00:00.000Z`). Formatting is done by hand because it runs
//! once per ingested event; parsing is lenient because producers and users
//! send whatever their platform emits.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const MS_PER_DAY: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z: the earliest instant with a four-digit year.
const MIN_FORMATTABLE_MS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z: the latest instant with a four-digit year.
const MAX_FORMATTABLE_MS: i64 = 253_402_300_799_999;

/// The current time as unix milliseconds (negative if the clock is before 1970).
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Formats unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// Instants outside years 0000–9999 are clamped to that range, so the output
/// is always exactly 24 characters.
pub fn format_rfc3339_millis(unix_ms: i64) -> String {
    let ms = unix_ms.clamp(MIN_FORMATTABLE_MS, MAX_FORMATTABLE_MS);
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    let mut out = String::with_capacity(24);
    push_digits(&mut out, year, 4);
    out.push('-');
    push_digits(&mut out, i64::from(month), 2);
    out.push('-');
    push_digits(&mut out, i64::from(day), 2);
    out.push('T');
    push_digits(&mut out, ms_of_day / 3_600_000, 2);
    out.push(':');
    push_digits(&mut out, ms_of_day / 60_000 % 60, 2);
    out.push(':');
    push_digits(&mut out, ms_of_day / 1000 % 60, 2);
    out.push('.');
    push_digits(&mut out, ms_of_day % 1000, 3);
    out.push('Z');
    out
}

/// Appends the last `width` decimal digits of a non-negative `value`, zero-padded.
fn push_digits(out: &mut String, value: i64, width: u32) {
    let mut divisor = 10_i64.pow(width - 1);
    while divisor > 0 {
        let digit = (value / divisor % 10) as u8;
        out.push(char::from(b'0' + digit));
        divisor /= 10;
    }
}

/// Parses a timestamp into unix milliseconds.
///
/// Accepts RFC 3339 with any offset and an optional fraction
/// (`2025-01-01T02:00:00+02:00`, `2025-01-01T00:00:00.123456Z`), or a bare
/// integer: up to 10 digits is unix seconds, more is unix milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return if s.len() <= 10 {
            n.checked_mul(1000)
        } else {
            Some(n)
        };
    }
    let parsed = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`; exact for every `i64` day count whose
/// year fits in an `i64`.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Converts a proleptic Gregorian date into days since 1970-01-01 (Hinnant's
/// `days_from_civil`). `month` must be 1–12 and `day` 1–31.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400); // [0, 399]
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Number of days in `month` (1–12) of `year`.
pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(1_735_689_600_000),
            "2025-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_millis(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_millis(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_millis(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn formatting_agrees_with_the_time_crate() {
        let mut ms = -5_000_000_000_000_i64;
        while ms < 20_000_000_000_000 {
            let ours = format_rfc3339_millis(ms);
            let nanos = i128::from(ms) * 1_000_000;
            let theirs = OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            // `time` omits trailing zeros of the fraction; compare parsed values.
            assert_eq!(parse_timestamp(&ours), Some(ms), "{ours} vs {theirs}");
            assert_eq!(parse_timestamp(&theirs), Some(ms), "{ours} vs {theirs}");
            assert_eq!(&ours[..19], &theirs[..19]);
            ms += 7_777_777_777;
        }
    }

    #[test]
    fn parses_rfc3339_with_offsets_and_fractions() {
        let base = 1_735_689_600_000;
        assert_eq!(parse_timestamp("2025-01-01T00:00:00Z"), Some(base));
        assert_eq!(parse_timestamp("2025-01-01T00:00:00.000Z"), Some(base));
        assert_eq!(
            parse_timestamp(" 2025-01-01T00:00:00.5Z "),
            Some(base + 500)
        );
        assert_eq!(
            parse_timestamp("2025-01-01T00:00:00.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(parse_timestamp("2025-01-01T02:00:00+02:00"), Some(base));
        assert_eq!(parse_timestamp("2024-12-31T19:00:00-05:00"), Some(base));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999Z"), Some(-1));
    }

    #[test]
    fn parses_bare_integers_as_seconds_or_milliseconds() {
        assert_eq!(parse_timestamp("1735689600"), Some(1_735_689_600_000));
        assert_eq!(parse_timestamp("1735689600000"), Some(1_735_689_600_000));
        assert_eq!(parse_timestamp("0"), Some(0));
        assert_eq!(parse_timestamp("99999999999999999999"), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "-5",
            "1.5",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_conversions_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!(d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_ms() > 1_700_000_000_000);
    }
}

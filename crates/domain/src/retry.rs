//! How long to wait between delivery attempts.
//!
//! A schedule is the list of waits before each retry, written like
//! `5s,5m,30m,2h,5h,10h,10h` (the default: about 28 hours in total, so a
//! receiver that is down for a day still gets its events). Jitter spreads
//! retries out so that an endpoint coming back is not hit by every pending
//! delivery in the same second.

use std::fmt;
use std::time::Duration;

/// Most retries a schedule may hold.
pub const MAX_RETRIES: usize = 50;
/// Jitter of the default and of parsed schedules: ±20 %.
pub const DEFAULT_JITTER: f64 = 0.2;
/// The default schedule's waits.
const DEFAULT_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{value}' is not a duration: use a whole number followed by ms, s, m, h or d (for example 250ms, 5s, 5m, 2h, 1d); a bare number means milliseconds"
)]
pub struct InvalidDuration {
    /// The rejected text (shortened to 64 characters).
    pub value: String,
}

/// Parses `250ms`, `5s`, `5m`, `2h`, `1d`, or a bare whole number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, InvalidDuration> {
    let text = s.trim();
    let err = || InvalidDuration {
        value: text.chars().take(64).collect(),
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(err());
    }
    let n: u64 = number.parse().map_err(|_| err())?;
    let ms_per_unit: u64 = match unit.trim_start() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(err)
}

/// Formats a duration in the syntax [`parse_duration`] reads, with the
/// largest unit that represents it exactly (`300000ms` → `5m`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A retry schedule that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSchedule {
    /// No entries.
    #[error(
        "the retry schedule is empty; list the waits between attempts such as 5s,5m,30m (set the maximum number of retries to 0 to disable retries)"
    )]
    Empty,
    /// An empty entry, as in `5s,,5m`.
    #[error("entry {position} of the retry schedule is empty")]
    EmptyEntry {
        /// 1-based position of the entry.
        position: usize,
    },
    /// More than [`MAX_RETRIES`] entries.
    #[error("the retry schedule has {count} entries; at most 50 are allowed")]
    TooMany {
        /// How many entries were given.
        count: usize,
    },
    /// An entry that is not a duration.
    #[error("entry {position} of the retry schedule is invalid: {source}")]
    Entry {
        /// 1-based position of the entry.
        position: usize,
        /// Why the entry is not a duration.
        source: InvalidDuration,
    },
}

/// The waits before each retry of a delivery, with random jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    /// `5s,5m,30m,2h,5h,10h,10h` with ±20 % jitter.
    fn default() -> Self {
        RetrySchedule {
            delays: DEFAULT_SCHEDULE.to_vec(),
            jitter: DEFAULT_JITTER,
        }
    }
}

impl RetrySchedule {
    /// Parses comma-separated durations (`5s, 1m, 1h`) with the default jitter.
    pub fn parse(s: &str) -> Result<Self, InvalidSchedule> {
        if s.trim().is_empty() {
            return Err(InvalidSchedule::Empty);
        }
        let entries: Vec<&str> = s.split(',').map(str::trim).collect();
        if entries.len() > MAX_RETRIES {
            return Err(InvalidSchedule::TooMany {
                count: entries.len(),
            });
        }
        let mut delays = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let position = i + 1;
            if entry.is_empty() {
                return Err(InvalidSchedule::EmptyEntry { position });
            }
            let delay = parse_duration(entry)
                .map_err(|source| InvalidSchedule::Entry { position, source })?;
            delays.push(delay);
        }
        Ok(RetrySchedule {
            delays,
            jitter: DEFAULT_JITTER,
        })
    }

    /// Limits the schedule to `n` retries (0 disables retrying).
    ///
    /// A longer `n` than the schedule has repeats its last wait, so the
    /// configured number of retries is honoured, up to [`MAX_RETRIES`].
    pub fn with_max_retries(mut self, n: u32) -> Self {
        let n = usize::try_from(n).unwrap_or(MAX_RETRIES).min(MAX_RETRIES);
        if let Some(&last) = self.delays.last() {
            self.delays.resize(n, last);
        }
        self
    }

    /// Sets the jitter fraction, clamped to 0–1 (0.2 means each wait varies by ±20 %).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Total attempts a delivery gets: the first plus one per retry.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The waits before each retry, without jitter.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The wait before attempt `attempts_made + 1`, or `None` when no attempt is left.
    ///
    /// `jitter_sample` is uniform in `[0, 1)`; 0.5 gives the nominal wait, 0
    /// and 1 its lower and upper bounds. The first attempt is immediate.
    pub fn next_delay(&self, attempts_made: u32, jitter_sample: f64) -> Option<Duration> {
        let Some(index) = attempts_made.checked_sub(1) else {
            return Some(Duration::ZERO);
        };
        let nominal = *self.delays.get(usize::try_from(index).ok()?)?;
        let sample = if jitter_sample.is_nan() {
            0.5
        } else {
            jitter_sample.clamp(0.0, 1.0)
        };
        let factor = 1.0 + self.jitter * (2.0 * sample - 1.0);
        Some(Duration::try_from_secs_f64(nominal.as_secs_f64() * factor).unwrap_or(nominal))
    }
}

impl fmt::Display for RetrySchedule {
    /// The waits in [`RetrySchedule::parse`] syntax, such as `5s,5m,30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, delay) in self.delays.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&format_duration(*delay))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "5x",
            "-5s",
            "1.5s",
            "5 minutes",
            "99999999999999999999",
            "9999999999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains("is not a duration"), "{bad}");
        }
    }

    #[test]
    fn formats_durations_with_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(36_000)), "10h");
        assert_eq!(format_duration(Duration::from_secs(172_800)), "2d");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn default_schedule() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.to_string(), "5s,5m,30m,2h,5h,10h,10h");
        assert_eq!(schedule.max_attempts(), 8);
        assert_eq!(schedule.jitter(), 0.2);
        assert_eq!(RetrySchedule::parse(&schedule.to_string()), Ok(schedule));
    }

    #[test]
    fn parse_reports_the_bad_entry() {
        assert_eq!(RetrySchedule::parse(" "), Err(InvalidSchedule::Empty));
        assert_eq!(
            RetrySchedule::parse("5s,,5m"),
            Err(InvalidSchedule::EmptyEntry { position: 2 })
        );
        let err = RetrySchedule::parse("5s, 5m, soon").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("entry 3 of the retry schedule is invalid: 'soon'"),
            "{err}"
        );
        let many = vec!["1s"; 51].join(",");
        assert_eq!(
            RetrySchedule::parse(&many),
            Err(InvalidSchedule::TooMany { count: 51 })
        );
        let schedule = RetrySchedule::parse(" 250ms , 1m,1h ").unwrap();
        assert_eq!(schedule.to_string(), "250ms,1m,1h");
    }

    #[test]
    fn max_retries_truncates_or_repeats_the_last_wait() {
        let schedule = RetrySchedule::default().with_max_retries(3);
        assert_eq!(schedule.to_string(), "5s,5m,30m");
        assert_eq!(schedule.max_attempts(), 4);
        let none = RetrySchedule::default().with_max_retries(0);
        assert_eq!(none.max_attempts(), 1);
        assert_eq!(none.next_delay(1, 0.5), None);
        let longer = RetrySchedule::parse("1s,1m").unwrap().with_max_retries(4);
        assert_eq!(longer.to_string(), "1s,1m,1m,1m");
        let capped = RetrySchedule::default().with_max_retries(u32::MAX);
        assert_eq!(capped.delays().len(), MAX_RETRIES);
    }

    #[test]
    fn next_delay_applies_jitter_within_bounds() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.next_delay(0, 0.9), Some(Duration::ZERO));
        assert_eq!(schedule.next_delay(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(schedule.next_delay(1, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(schedule.next_delay(2, 1.0), Some(Duration::from_secs(360)));
        assert_eq!(
            schedule.next_delay(7, 0.5),
            Some(Duration::from_secs(36_000))
        );
        assert_eq!(schedule.next_delay(8, 0.5), None);
        assert_eq!(schedule.next_delay(u32::MAX, 0.5), None);
        for i in 0..100 {
            let sample = f64::from(i) / 100.0;
            let d = schedule.next_delay(3, sample).unwrap();
            assert!(
                d >= Duration::from_secs(1440) && d <= Duration::from_secs(2160),
                "{d:?}"
            );
        }
        let exact = schedule.clone().with_jitter(0.0);
        assert_eq!(exact.next_delay(3, 0.99), Some(Duration::from_secs(1800)));
        assert_eq!(schedule.clone().with_jitter(f64::NAN).jitter(), 0.0);
        assert_eq!(schedule.with_jitter(7.0).jitter(), 1.0);
    }
}

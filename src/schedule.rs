//! When a query runs: 5- or 6-field cron, or an interval (`30s`, `15m`, `1h`, `hourly`, `daily`).
//!
//! Times are UTC. Intervals are aligned to the Unix epoch (a `15m` query runs at
//! :00, :15, :30 and :45), each query shifted by its own stable offset of less than
//! a minute (or than the interval, when shorter) so that many queries with one
//! interval do not all start at the same instant; the offset comes from the query's
//! name alone, so every vigilo process agrees on the ticks. Five-field
//! cron uses standard day-of-week numbers (0 or 7 = Sunday); the `cron` crate
//! numbers Sunday 1, so numbers in that field are translated to day names.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A parsed schedule.
#[derive(Clone)]
pub enum Schedule {
    /// A cron expression (kept with the text the user wrote).
    Cron {
        /// The parsed expression.
        schedule: Box<cron::Schedule>,
        /// As written.
        text: String,
    },
    /// Every `Duration`, aligned to the epoch.
    Every(Duration),
}

/// Why a schedule did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid schedule {text:?}: {reason}")]
pub struct ScheduleError {
    /// As written.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// The longest a query's interval ticks are shifted from the epoch-aligned ones.
pub const SPREAD: Duration = Duration::from_secs(60);

impl Schedule {
    /// How far `query`'s ticks are shifted: for an interval, a stable hash of the name
    /// (FNV-1a) modulo the smaller of the interval and [`SPREAD`]; cron runs at its times.
    pub fn offset_for(&self, query: &str) -> Duration {
        let Schedule::Every(every) = self else {
            return Duration::ZERO;
        };
        let window = every.min(&SPREAD).as_millis() as u64;
        if window == 0 {
            return Duration::ZERO;
        }
        let hash = query.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Duration::from_millis(hash % window)
    }

    /// The first tick of `query` strictly after `after`: [`Schedule::next_after`] shifted
    /// by [`Schedule::offset_for`].
    pub fn next_for(&self, query: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = chrono::Duration::from_std(self.offset_for(query)).ok()?;
        self.next_after(after - offset).map(|t| t + offset)
    }

    /// The first tick strictly after `after`, unshifted (callers want [`Schedule::next_for`]).
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { schedule, .. } => schedule.after(&after).next(),
            Schedule::Every(every) => {
                let step = every.as_millis() as i64;
                let now = after.timestamp_millis();
                let next = (now.div_euclid(step) + 1) * step;
                Utc.timestamp_millis_opt(next).single()
            }
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron { text, .. } => f.write_str(text),
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        match trimmed {
            "hourly" => return Ok(Schedule::Every(Duration::from_secs(3600))),
            "daily" => return Ok(Schedule::Every(Duration::from_secs(86_400))),
            _ => {}
        }
        if let Some(every) = parse_interval(trimmed) {
            if every.is_zero() {
                return Err(err("an interval must be longer than zero".into()));
            }
            return Ok(Schedule::Every(every));
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let expr = match fields.len() {
            5 => format!("0 {} {}", fields[..4].join(" "), dow_to_names(fields[4])),
            6 => format!("{} {}", fields[..5].join(" "), dow_to_names(fields[5])),
            n => {
                return Err(err(format!(
                    "expected 5 cron fields (minute hour day month weekday), 6 with seconds first, \
                     or an interval like 30s, 15m, 1h, hourly, daily; found {n} fields"
                )));
            }
        };
        // The cron crate's message quotes the translated expression over several lines; keep its last line.
        let schedule = cron::Schedule::from_str(&expr).map_err(|e| {
            let message = e.to_string();
            err(message
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string())
        })?;
        Ok(Schedule::Cron {
            schedule: Box::new(schedule),
            text: trimmed.to_string(),
        })
    }
}

/// `30s`, `15m`, `1h`, `2d`: a number and one unit.
fn parse_interval(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let secs_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(secs_per)?))
}

/// Rewrites numeric day-of-week values (0-7, Sunday = 0 or 7) as names.
fn dow_to_names(field: &str) -> String {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::with_capacity(field.len() + 8);
    let mut chars = field.chars().peekable();
    let mut after_slash = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut num = String::from(c);
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                num.push(*d);
                chars.next();
            }
            // A step (`*/2`) is a count, not a day.
            match num
                .parse::<usize>()
                .ok()
                .filter(|_| !after_slash)
                .and_then(|n| NAMES.get(n))
            {
                Some(name) => out.push_str(name),
                None => out.push_str(&num),
            }
            after_slash = false;
        } else {
            after_slash = c == '/';
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_field_cron_runs_at_minute_zero() {
        let s: Schedule = "0 * * * *".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:20:00Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
    }

    #[test]
    fn six_field_cron_has_seconds() {
        let s: Schedule = "*/5 * * * * *".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:20:01Z")),
            Some(at("2026-01-01T10:20:05Z"))
        );
    }

    #[test]
    fn weekday_numbers_are_standard_cron() {
        // 2026-01-05 is a Monday; "1" must mean Monday, "0" and "7" Sunday.
        let monday: Schedule = "0 9 * * 1".parse().unwrap();
        assert_eq!(
            monday.next_after(at("2026-01-03T00:00:00Z")),
            Some(at("2026-01-05T09:00:00Z"))
        );
        let sunday: Schedule = "0 9 * * 0".parse().unwrap();
        assert_eq!(
            sunday.next_after(at("2026-01-03T00:00:00Z")),
            Some(at("2026-01-04T09:00:00Z"))
        );
        let seven: Schedule = "0 9 * * 7".parse().unwrap();
        assert_eq!(
            seven.next_after(at("2026-01-03T00:00:00Z")),
            Some(at("2026-01-04T09:00:00Z"))
        );
        let weekdays: Schedule = "0 9 * * 1-5".parse().unwrap();
        assert_eq!(
            weekdays.next_after(at("2026-01-03T00:00:00Z")),
            Some(at("2026-01-05T09:00:00Z"))
        );
    }

    #[test]
    fn interval_ticks_are_shifted_per_query_by_less_than_a_minute() {
        let s: Schedule = "10s".parse().unwrap();
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; modulo 10,000 ms.
        assert_eq!(
            s.offset_for("a"),
            Duration::from_millis(0xaf63_dc4c_8601_ec8c % 10_000)
        );
        let offset = chrono::Duration::from_std(s.offset_for("a")).unwrap();
        assert_eq!(
            s.next_for("a", at("2026-01-01T10:20:00Z")),
            Some(at("2026-01-01T10:20:00Z") + offset)
        );
        assert_eq!(
            s.next_for("a", at("2026-01-01T10:20:00Z") + offset),
            Some(at("2026-01-01T10:20:10Z") + offset)
        );
        // 1,000 queries spread over the 10 s: no second holds more than a fifth of them.
        let mut per_second = [0; 10];
        for i in 0..1000 {
            per_second[s.offset_for(&format!("q{i:04}")).as_secs() as usize] += 1;
        }
        assert!(
            per_second.iter().all(|&n| n > 50 && n < 200),
            "{per_second:?}"
        );
        // Long intervals shift by under a minute; cron is never shifted.
        let daily: Schedule = "daily".parse().unwrap();
        assert!(daily.offset_for("nightly_report") < SPREAD);
        let cron: Schedule = "0 9 * * *".parse().unwrap();
        assert_eq!(cron.offset_for("a"), Duration::ZERO);
        assert_eq!(
            cron.next_for("a", at("2026-01-01T08:00:00Z")),
            Some(at("2026-01-01T09:00:00Z"))
        );
    }

    #[test]
    fn intervals_align_to_the_epoch() {
        let s: Schedule = "15m".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:20:00Z")),
            Some(at("2026-01-01T10:30:00Z"))
        );
        let s: Schedule = "30s".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:20:30Z")),
            Some(at("2026-01-01T10:21:00Z"))
        );
        let s: Schedule = "hourly".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:20:00Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
        let s: Schedule = "daily".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:20:00Z")),
            Some(at("2026-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in ["* * *", "61 * * * *", "0s", "every day", "0 25 * * *"] {
            let err = bad.parse::<Schedule>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }
}

//! When a query runs: 5- or 6-field cron, or an interval (`30s`, `15m`, `1h`, `hourly`, `daily`).
//!
//! Times are UTC. Intervals are aligned to the Unix epoch (a `15m` query runs at
//! :00, :15, :30 and :45), so every vigilo process agrees on the ticks. Five-field
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

impl Schedule {
    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
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

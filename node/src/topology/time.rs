//! Moments and spans of time in logs: parsing, printing, and the `--at` / `--window` syntax.
//!
//! Owns [`Time`] (microseconds since the Unix epoch, what a log line's RFC 3339
//! `timestamp` carries), durations written for people (`90s`, `5m`, `1h30m`,
//! `250ms`) and [`Moment`]: a time given on the command line, absolute or
//! relative to the start or end of the logs. Pure: never reads the clock.

use std::fmt;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A moment, in microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(i64);

impl Time {
    /// Builds a time from microseconds since the Unix epoch.
    pub fn from_micros(micros: i64) -> Time {
        Time(micros)
    }

    /// Builds a time from whole seconds since the Unix epoch.
    pub fn from_unix(seconds: i64) -> Time {
        Time(seconds.saturating_mul(1_000_000))
    }

    /// Returns microseconds since the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Returns milliseconds since the Unix epoch (for the HTML page's script).
    pub fn millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Parses an RFC 3339 timestamp such as `2026-12-03T14:02:38.252264Z`.
    pub fn parse(text: &str) -> Option<Time> {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1000).ok().map(Time)
    }

    /// Returns `self - earlier`, in seconds (negative if `earlier` is later).
    pub fn seconds_since(self, earlier: Time) -> f64 {
        (self.0 - earlier.0) as f64 / 1e6
    }

    /// Returns this time moved by `micros`.
    pub fn plus_micros(self, micros: i64) -> Time {
        Time(self.0.saturating_add(micros))
    }
}

impl fmt::Display for Time {
    /// Prints RFC 3339 in UTC with milliseconds, e.g. `2026-12-03T14:02:38.252Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0.div_euclid(1000) * 1000) * 1000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let (h, m, s) = t.to_hms();
                write!(
                    f,
                    "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.millisecond()
                )
            }
            Err(_) => write!(f, "@{}us", self.0),
        }
    }
}

impl Time {
    /// Prints RFC 3339 in UTC with microseconds, as log lines carry them.
    pub fn to_rfc3339_micros(self) -> String {
        let millis = self.to_string();
        let micros = self.0.rem_euclid(1000);
        match millis.strip_suffix('Z') {
            Some(head) if !millis.starts_with('@') => format!("{head}{micros:03}Z"),
            _ => millis,
        }
    }
}

/// JSON keeps every microsecond the logs had.
impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339_micros())
    }
}

/// Parses a duration such as `90s`, `5m`, `1h30m`, `250ms` or `1.5s`; returns microseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "us" => 1.0,
            "ms" => 1e3,
            "s" | "" => 1e6,
            "m" | "min" => 60e6,
            "h" => 3600e6,
            "d" => 86_400e6,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total.is_finite() && total < 9e18).then_some(total as i64)
}

/// Prints seconds for people: `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 10 m`.
pub fn human_seconds(seconds: f64) -> String {
    let sign = if seconds < 0.0 { "-" } else { "" };
    let s = seconds.abs();
    if s < 1.0 {
        format!("{sign}{:.0} ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{sign}{s:.1} s")
    } else if s < 3600.0 {
        format!("{sign}{} m {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{sign}{} h {:02} m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

/// A moment named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// An RFC 3339 time.
    At(Time),
    /// This long after the first line of the logs (`+5m`).
    AfterStart(i64),
    /// This long before the last line of the logs (`-5m`).
    BeforeEnd(i64),
    /// The first line (`start`).
    Start,
    /// The last line (`end`).
    End,
}

impl Moment {
    /// Parses `start`, `end`, `+DURATION`, `-DURATION` or an RFC 3339 time.
    ///
    /// # Errors
    ///
    /// None of those: the message says what is accepted.
    pub fn parse(text: &str) -> Result<Moment, String> {
        let bad = || {
            format!(
                "{text:?} is not a time: give an RFC 3339 time (2026-12-03T14:02:38Z), \
                 +DURATION after the start, -DURATION before the end (e.g. +90s, -5m), \
                 `start` or `end`"
            )
        };
        match text.trim() {
            "start" => Ok(Moment::Start),
            "end" => Ok(Moment::End),
            t if t.starts_with('+') => {
                parse_duration(&t[1..]).map(Moment::AfterStart).ok_or_else(bad)
            }
            t if t.starts_with('-') => {
                parse_duration(&t[1..]).map(Moment::BeforeEnd).ok_or_else(bad)
            }
            t => Time::parse(t).map(Moment::At).ok_or_else(bad),
        }
    }

    /// Resolves the moment against the logs' first and last times.
    pub fn resolve(self, start: Time, end: Time) -> Time {
        match self {
            Moment::At(t) => t,
            Moment::AfterStart(d) => start.plus_micros(d),
            Moment::BeforeEnd(d) => end.plus_micros(-d),
            Moment::Start => start,
            Moment::End => end,
        }
    }
}

/// A span of time named on the command line: `FROM..TO`, either side optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// From (default: the start).
    pub from: Moment,
    /// To (default: the end).
    pub to: Moment,
}

impl Default for Window {
    fn default() -> Window {
        Window { from: Moment::Start, to: Moment::End }
    }
}

impl Window {
    /// Parses `FROM..TO` (each a [`Moment`], either may be empty).
    ///
    /// # Errors
    ///
    /// No `..`, or a side that is not a moment.
    pub fn parse(text: &str) -> Result<Window, String> {
        let (from, to) = text
            .split_once("..")
            .ok_or_else(|| format!("{text:?} is not a window: write FROM..TO, e.g. +10m..-5m"))?;
        let side =
            |s: &str, default| if s.trim().is_empty() { Ok(default) } else { Moment::parse(s) };
        Ok(Window { from: side(from, Moment::Start)?, to: side(to, Moment::End)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_and_print_in_utc() {
        let t = Time::parse("2026-12-03T14:02:38.252264Z").expect("parses");
        assert_eq!(t.micros() % 1_000_000, 252_264);
        assert_eq!(t.to_string(), "2026-12-03T14:02:38.252Z");
        assert_eq!(t.to_rfc3339_micros(), "2026-12-03T14:02:38.252264Z");
        assert_eq!(Time::parse(&t.to_rfc3339_micros()), Some(t));
        let offset = Time::parse("2026-12-03T15:02:38.252264+01:00").expect("parses");
        assert_eq!(offset, t);
        assert_eq!(Time::parse("yesterday"), None);
        assert_eq!(Time::parse(""), None);
        assert_eq!(Time::from_unix(0).to_string(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn durations_parse_in_several_units() {
        assert_eq!(parse_duration("90s"), Some(90_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000));
        assert_eq!(parse_duration("250ms"), Some(250_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000));
        assert_eq!(parse_duration("2"), Some(2_000_000));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn moments_and_windows_resolve_against_the_logs() {
        let (start, end) = (Time::from_unix(1000), Time::from_unix(2000));
        let at = |s: &str| Moment::parse(s).expect("a moment").resolve(start, end);
        assert_eq!(at("+10s"), Time::from_unix(1010));
        assert_eq!(at("-1m"), Time::from_unix(1940));
        assert_eq!(at("end"), end);
        assert_eq!(at("1970-01-01T00:20:00Z"), Time::from_unix(1200));
        assert!(Moment::parse("soon").expect_err("not a time").contains("RFC 3339"));
        let w = Window::parse("+1m..").expect("a window");
        assert_eq!(
            (w.from.resolve(start, end), w.to.resolve(start, end)),
            (Time::from_unix(1060), end)
        );
        assert!(Window::parse("+1m").is_err());
    }

    #[test]
    fn seconds_print_for_people() {
        assert_eq!(human_seconds(0.25), "250 ms");
        assert_eq!(human_seconds(12.34), "12.3 s");
        assert_eq!(human_seconds(245.0), "4 m 05 s");
        assert_eq!(human_seconds(7800.0), "2 h 10 m");
        assert_eq!(human_seconds(-1.5), "-1.5 s");
    }
}

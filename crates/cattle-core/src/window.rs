//! Maintenance windows and `--not-before`: when an agent may start an execution.
//!
//! A [`Window`] is written `[DAYS] HH:MM-HH:MM [UTC]`, for example
//! `Sat 02:00-04:00`, `Mon-Fri 22:00-02:00`, `Sat,Sun 00:00-24:00` or
//! `02:00-04:00 UTC` (every day). Its times are the host's local time (`TZ`,
//! else /etc/localtime), or UTC with the `UTC` suffix.
//!
//! A window is the set of instants at which the clock (the host's, or UTC)
//! shows a day and time inside it. Everything else follows from that rule:
//!
//! - A window whose end is not after its start crosses midnight and belongs to
//!   the day it starts on: `Fri 22:00-02:00` is open from Friday 22:00 to
//!   Saturday 02:00, and `Mon-Fri 22:00-02:00` is not open early on Monday.
//! - When clocks go forward, a window that starts in the skipped hour opens
//!   at the first instant after the gap (the clock jumps into it); one that
//!   lies entirely in the gap does not open that day.
//! - When clocks go back, the repeated times are inside the window both times
//!   the clock shows them: `Sun 02:00-03:00` is open for two hours on the day
//!   clocks go back from 03:00 to 02:00.
//!
//! Windows only decide when an execution may *start*: one that started
//! inside a window runs to its end. That is the agent's business; this module
//! only answers [`open`], [`next_open`] and [`waiting_reason`], with the
//! clock and the host's time zone passed in.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use jiff::civil::{Date, DateTime};
use jiff::tz::AmbiguousOffset;
use jiff::{SignedDuration, Timestamp};

pub use jiff::tz::TimeZone;

/// Shown with every error in a window's text.
const EXPECTED: &str = "expected e.g. `Sat 02:00-04:00` or `Mon-Fri 22:00-02:00 UTC`";

/// How far ahead [`next_open`] looks. Every window opens at least once a week;
/// two weeks leave room for a week whose only opening a clock change skipped.
const HORIZON_DAYS: i64 = 15;

/// The days' canonical names, Monday first (the bit order of [`Window`]'s days).
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The same days' full names, also accepted.
const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// All seven days.
const EVERY_DAY: u8 = 0b111_1111;

/// Minutes in a day: `24:00` as an end time.
const DAY_MINUTES: u16 = 24 * 60;

/// A time of the week when an agent may start an execution: days, a start and
/// an end time, in the host's local time or in UTC. See the [module
/// documentation](self) for the text form and what it means around midnight
/// and clock changes.
///
/// [`Display`](fmt::Display) writes the canonical form (`Mon-Fri 22:00-02:00
/// UTC`, `daily 02:00-04:00`), which [`FromStr`] reads back to the same value;
/// serde (de)serializes a window as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Bit `n` set: the window starts on day `n`, Monday being 0.
    days: u8,
    /// Minutes after midnight, below [`DAY_MINUTES`].
    start: u16,
    /// Minutes after midnight, `1..=DAY_MINUTES`; when not after `start`, on
    /// the next day.
    end: u16,
    /// The times are UTC, not the host's local time.
    utc: bool,
}

/// Why a window's text was refused. Its message quotes the text, says what is
/// wrong and shows the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid window `{text}`: {problem}; {EXPECTED}")]
pub struct WindowError {
    text: String,
    problem: String,
}

impl Window {
    /// The window's times are UTC, not the host's local time.
    pub fn is_utc(&self) -> bool {
        self.utc
    }

    /// The window crosses midnight: it ends on the day after it starts.
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    fn starts_on(&self, day: i8) -> bool {
        self.days & (1 << day) != 0
    }

    /// The clock shows a time inside the window at `at`.
    fn contains(&self, at: DateTime) -> bool {
        let minute = at.hour() as u16 * 60 + at.minute() as u16;
        let today = at.weekday().to_monday_zero_offset();
        let yesterday = (today + 6) % 7;
        if self.crosses_midnight() {
            (self.starts_on(today) && minute >= self.start)
                || (self.starts_on(yesterday) && minute < self.end)
        } else {
            self.starts_on(today) && minute >= self.start && minute < self.end
        }
    }

    fn zone<'a>(&self, local: &'a TimeZone) -> &'a TimeZone {
        if self.utc { &UTC } else { local }
    }

    /// The first instant after `after`, up to `horizon`, at which the window
    /// is open; `after` itself is not open.
    fn next_open(
        &self,
        after: Timestamp,
        horizon: Timestamp,
        local: &TimeZone,
    ) -> Option<Timestamp> {
        let tz = self.zone(local);
        let mut best: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| {
            if t > after
                && t <= horizon
                && self.contains(tz.to_datetime(t))
                && best.is_none_or(|b| t < b)
            {
                best = Some(t);
            }
        };
        // The clock enters the window either by reaching its start time, once
        // or (clocks going back) twice a day, or by jumping into it at a
        // clock change: a start time in a gap is covered by the latter.
        let (hour, minute) = ((self.start / 60) as i8, (self.start % 60) as i8);
        let mut day: Option<Date> = tz.to_datetime(after).date().yesterday().ok();
        for _ in 0..=HORIZON_DAYS + 1 {
            let Some(date) = day else { break };
            if self.starts_on(date.weekday().to_monday_zero_offset()) {
                let start = date.at(hour, minute, 0, 0);
                let offsets = match tz.to_ambiguous_timestamp(start).offset() {
                    AmbiguousOffset::Unambiguous { offset } => vec![offset],
                    AmbiguousOffset::Fold { before, after } => vec![before, after],
                    AmbiguousOffset::Gap { .. } => vec![],
                };
                for offset in offsets {
                    if let Ok(t) = offset.to_timestamp(start) {
                        consider(t);
                    }
                }
            }
            day = date.tomorrow().ok();
        }
        for transition in tz.following(after) {
            if transition.timestamp() > horizon {
                break;
            }
            consider(transition.timestamp());
        }
        best
    }
}

static UTC: TimeZone = TimeZone::UTC;

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_days(f, self.days)?;
        let time = |minutes: u16| format!("{:02}:{:02}", minutes / 60, minutes % 60);
        write!(f, " {}-{}", time(self.start), time(self.end))?;
        if self.utc {
            f.write_str(" UTC")?;
        }
        Ok(())
    }
}

/// `daily`, or runs of consecutive days (`Mon-Fri`, `Sat,Sun`, `Fri-Mon`,
/// `Mon,Wed`), starting at the first day of a run in Monday-first order.
fn write_days(f: &mut fmt::Formatter<'_>, days: u8) -> fmt::Result {
    if days == EVERY_DAY {
        return f.write_str("daily");
    }
    let has = |day: usize| days & (1 << (day % 7)) != 0;
    // A run may wrap from Sunday to Monday: begin after a day not in the set.
    let first = (0..7).find(|&d| has(d) && !has(d + 6)).unwrap_or(0);
    let mut parts = Vec::new();
    let mut day = first;
    while day < first + 7 {
        if !has(day) {
            day += 1;
            continue;
        }
        let run_start = day;
        while day + 1 < first + 7 && has(day + 1) {
            day += 1;
        }
        let (from, to) = (DAY_NAMES[run_start % 7], DAY_NAMES[day % 7]);
        parts.push(match day - run_start {
            0 => from.to_string(),
            1 => format!("{from},{to}"),
            _ => format!("{from}-{to}"),
        });
        day += 1;
    }
    f.write_str(&parts.join(","))
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Window, WindowError> {
        let fail = |problem: String| WindowError {
            text: text.to_string(),
            problem,
        };
        let spaced = tighten(text);
        let mut parts: Vec<&str> = spaced.split(' ').filter(|p| !p.is_empty()).collect();
        let utc = parts.last().is_some_and(|p| p.eq_ignore_ascii_case("UTC"));
        if utc {
            parts.pop();
        }
        let (days, times) = match parts[..] {
            [] if utc => return Err(fail("missing the days and times before `UTC`".into())),
            [] => return Err(fail("it is empty".into())),
            [times] => {
                if parse_days(times).is_ok() {
                    return Err(fail(format!("missing the times after `{times}`")));
                }
                (EVERY_DAY, times)
            }
            [days, times] => (parse_days(days).map_err(fail)?, times),
            [_, _, ref extra @ ..] => {
                return Err(fail(format!(
                    "unexpected `{}` after the times (only `UTC` may follow them)",
                    extra.join(" ")
                )));
            }
        };
        let Some((start_text, end_text)) = times
            .split_once('-')
            .filter(|(start, end)| !start.is_empty() && !end.is_empty())
        else {
            return Err(fail(format!(
                "`{times}` is not a time range such as `02:00-04:00`"
            )));
        };
        let start = parse_time(start_text).map_err(fail)?;
        let end = parse_time(end_text).map_err(fail)?;
        if start == DAY_MINUTES {
            return Err(fail(
                "a window cannot start at 24:00 (write 00:00 and the next day)".into(),
            ));
        }
        if start == end {
            return Err(fail(format!(
                "it starts and ends at {start_text}: the window is empty"
            )));
        }
        // `22:00-00:00` and `22:00-24:00` are one window, and print as the latter.
        let end = if end == 0 { DAY_MINUTES } else { end };
        Ok(Window {
            days,
            start,
            end,
            utc,
        })
    }
}

/// `text`'s words separated by one space, except around a `,` or a lone
/// `-`: `Sat, Sun`, `Mon - Fri` and `02:00 - 04:00` are accepted.
fn tighten(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let joined =
            out.is_empty() || out.ends_with([',', '-']) || word.starts_with(',') || word == "-";
        if !joined {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A set of days: `daily`, or days (`Sat`, `saturday`) and ranges of days
/// (`Mon-Fri`, `Fri-Mon`) separated by commas.
fn parse_days(text: &str) -> Result<u8, String> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(EVERY_DAY);
    }
    let mut days = 0u8;
    for item in text.split(',') {
        let (from, to) = match item.split_once('-') {
            Some((from, to)) => (parse_day(from)?, parse_day(to)?),
            None => {
                let day = parse_day(item)?;
                (day, day)
            }
        };
        let mut day = from;
        loop {
            days |= 1 << day;
            if day == to {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    Ok(days)
}

fn parse_day(text: &str) -> Result<u8, String> {
    if text.is_empty() {
        return Err("a day is missing in the list of days".into());
    }
    (0u8..7)
        .find(|&d| {
            text.eq_ignore_ascii_case(DAY_NAMES[d as usize])
                || text.eq_ignore_ascii_case(FULL_DAY_NAMES[d as usize])
        })
        .ok_or_else(|| {
            format!(
                "`{text}` is not a day (`Mon`, `Tue`, `Wed`, `Thu`, `Fri`, `Sat`, `Sun` or `daily`)"
            )
        })
}

/// `H:MM` or `HH:MM`, `00:00` to `24:00`, as minutes after midnight.
fn parse_time(text: &str) -> Result<u16, String> {
    let digits = |s: &str, len: std::ops::RangeInclusive<usize>| {
        (len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let not_a_time = || format!("`{text}` is not a time (HH:MM)");
    let (hours, minutes) = text.split_once(':').ok_or_else(not_a_time)?;
    let hours = digits(hours, 1..=2).ok_or_else(not_a_time)?;
    let Some(minutes) = digits(minutes, 2..=2) else {
        return Err(format!("`{text}` has bad minutes: two digits, 00 to 59"));
    };
    if minutes > 59 {
        return Err(format!("`{text}` has bad minutes: two digits, 00 to 59"));
    }
    let total = hours * 60 + minutes;
    if total > DAY_MINUTES {
        return Err(format!("`{text}` is past 24:00"));
    }
    Ok(total)
}

impl serde::Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Window, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The host's time zone, as its other programs see it: `TZ`, else
/// /etc/localtime; UTC when neither is set, as the C library does. An error
/// when `TZ` or /etc/localtime names a zone that cannot be read (say, the
/// zone files are not installed): a window in the wrong zone opens at the
/// wrong time.
pub fn local_zone() -> Result<TimeZone, String> {
    const LOCALTIME: &str = "/etc/localtime";
    match TimeZone::try_system() {
        Ok(tz) => Ok(tz),
        Err(_)
            if std::env::var_os(crate::env::TZ).is_none()
                && std::fs::symlink_metadata(LOCALTIME).is_err() =>
        {
            Ok(TimeZone::UTC)
        }
        Err(e) => Err(format!(
            "cannot tell this host's time zone (from `TZ` or {LOCALTIME}): {e}"
        )),
    }
}

/// Some window contains `at`, each in its own zone (`local` or UTC). No
/// windows: always open.
pub fn open(windows: &[Window], at: SystemTime, local: &TimeZone) -> bool {
    if windows.is_empty() {
        return true;
    }
    let Ok(at) = Timestamp::try_from(at) else {
        return false;
    };
    windows
        .iter()
        .any(|w| w.contains(w.zone(local).to_datetime(at)))
}

/// The first instant at or after `after` at which some window is open:
/// `after` itself when one is open then (or there are no windows). `None`
/// when none opens in the next two weeks, which only a time zone whose
/// clock changes every week could cause.
pub fn next_open(windows: &[Window], after: SystemTime, local: &TimeZone) -> Option<SystemTime> {
    if open(windows, after, local) {
        return Some(after);
    }
    let start = Timestamp::try_from(after).ok()?;
    let horizon = start
        .checked_add(SignedDuration::from_hours(24 * HORIZON_DAYS))
        .unwrap_or(Timestamp::MAX);
    windows
        .iter()
        .filter_map(|w| w.next_open(start, horizon, local))
        .min()
        .map(SystemTime::from)
}

/// When an agent may start an execution with these windows and
/// `--not-before` time: the first instant at or after `now` and `not_before`
/// at which a window is open. `None` when no window opens within two weeks
/// of that.
pub fn earliest_start(
    windows: &[Window],
    not_before: Option<SystemTime>,
    now: SystemTime,
    local: &TimeZone,
) -> Option<SystemTime> {
    let from = not_before.map_or(now, |t| t.max(now));
    next_open(windows, from, local)
}

/// Why an agent does not start an execution at `now`, for people (its
/// status): `waiting until 2026-12-05T02:00:00Z (in 3h 20m)`, `waiting for
/// the window Sat 02:00-04:00 (opens in 2d 3h)`, or both. `None` when it may
/// start now.
pub fn waiting_reason(
    windows: &[Window],
    not_before: Option<SystemTime>,
    now: SystemTime,
    local: &TimeZone,
) -> Option<String> {
    let mut reasons = Vec::new();
    let from = match not_before {
        Some(t) if t > now => {
            reasons.push(format!(
                "until {} (in {})",
                humantime::format_rfc3339_seconds(t),
                approx_duration(t.duration_since(now).unwrap_or_default())
            ));
            t
        }
        _ => now,
    };
    if !open(windows, from, local) {
        let names = windows
            .iter()
            .map(Window::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (what, opens) = match windows.len() {
            1 => (format!("the window {names}"), "opens"),
            _ => (format!("the windows {names}"), "the next opens"),
        };
        let when = match next_open(windows, from, local) {
            Some(t) => format!(
                "{opens} in {}",
                approx_duration(t.duration_since(now).unwrap_or_default())
            ),
            None => format!("none opens within {HORIZON_DAYS} days"),
        };
        let then = if reasons.is_empty() { "" } else { "then " };
        reasons.push(format!("{then}for {what} ({when})"));
    }
    if reasons.is_empty() {
        return None;
    }
    Some(format!("waiting {}", reasons.join(", ")))
}

/// A wait, to the minute and in its two largest units: `2d 3h`, `3h 20m`,
/// `5m`; under a minute, seconds (`45s`). Minutes are rounded up, so that a
/// wait is never shown shorter than it is.
pub fn approx_duration(d: Duration) -> String {
    let seconds = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if seconds < 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds.div_ceil(60);
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours, minutes) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `cattle publish --not-before`: an RFC 3339 time with `Z` or an offset
/// (`2026-12-05T02:00:00Z`, `2026-12-05T03:00:00+01:00`), or a duration from
/// `now` (`2h`, `30m`, `1d 12h`). A time before `now` is refused: the
/// execution would not wait at all, which is not what anyone writing a
/// time meant.
pub fn parse_not_before(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    const FORMS: &str = "expected an RFC 3339 time such as `2026-12-05T02:00:00Z` or \
                         `2026-12-05T03:00:00+01:00`, or a duration from now such as `2h` or `30m`";
    let text = text.trim();
    if let Ok(wait) = humantime::parse_duration(text) {
        return now
            .checked_add(wait)
            .ok_or_else(|| format!("invalid --not-before `{text}`: too far in the future"));
    }
    // A date first: a time, which must say which time zone it is in.
    let looks_like_a_date = text.len() >= 10
        && text.as_bytes()[4] == b'-'
        && text.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    let at = match text.parse::<Timestamp>() {
        Ok(at) => SystemTime::from(at),
        Err(_) if looks_like_a_date && text.parse::<DateTime>().is_ok() => {
            return Err(format!(
                "invalid --not-before `{text}`: a time needs `Z` (UTC) or an offset such as \
                 `+01:00`; {FORMS}"
            ));
        }
        Err(e) if looks_like_a_date => {
            return Err(format!("invalid --not-before `{text}`: {e}; {FORMS}"));
        }
        Err(_) => return Err(format!("invalid --not-before `{text}`: {FORMS}")),
    };
    if at < now {
        return Err(format!(
            "invalid --not-before `{text}`: it is in the past (now is {})",
            humantime::format_rfc3339_seconds(now)
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(text: &str) -> Window {
        text.parse()
            .unwrap_or_else(|e| panic!("`{text}` should parse: {e}"))
    }

    fn windows(texts: &[&str]) -> Vec<Window> {
        texts.iter().map(|t| window(t)).collect()
    }

    /// An instant from RFC 3339 with an offset.
    fn at(text: &str) -> SystemTime {
        SystemTime::from(text.parse::<Timestamp>().unwrap())
    }

    fn show(t: Option<SystemTime>) -> String {
        t.map_or("never".into(), |t| {
            humantime::format_rfc3339_seconds(t).to_string()
        })
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("the system's zoneinfo has Europe/Berlin")
    }

    #[test]
    fn windows_print_in_a_canonical_form_that_parses_back_to_them() {
        let cases = [
            // (written, canonical)
            ("Sat 02:00-04:00", "Sat 02:00-04:00"),
            ("sat 2:00-4:00", "Sat 02:00-04:00"),
            ("SATURDAY 02:00-04:00", "Sat 02:00-04:00"),
            ("Mon-Fri 22:00-02:00", "Mon-Fri 22:00-02:00"),
            ("monday-friday 22:00-02:00 utc", "Mon-Fri 22:00-02:00 UTC"),
            ("Mon - Fri  22:00 - 02:00   UTC", "Mon-Fri 22:00-02:00 UTC"),
            ("Sat,Sun 00:00-24:00", "Sat,Sun 00:00-24:00"),
            ("Sun, Sat 00:00-24:00", "Sat,Sun 00:00-24:00"),
            ("Sun ,Sat 00:00- 24:00", "Sat,Sun 00:00-24:00"),
            ("\tMon-\tFri 22:00 -\n02:00 ", "Mon-Fri 22:00-02:00"),
            ("02:00-04:00", "daily 02:00-04:00"),
            ("daily 02:00-04:00", "daily 02:00-04:00"),
            ("Daily 02:00-04:00 UTC", "daily 02:00-04:00 UTC"),
            ("Mon-Sun 02:00-04:00", "daily 02:00-04:00"),
            ("Wed-Tue 02:00-04:00", "daily 02:00-04:00"),
            ("Fri-Mon 22:00-00:00", "Fri-Mon 22:00-24:00"),
            ("Sat,Sun,Mon 01:00-02:00", "Sat-Mon 01:00-02:00"),
            ("Sun,Mon 01:00-02:00", "Sun,Mon 01:00-02:00"),
            ("Mon,Wed,Fri 09:00-10:30", "Mon,Wed,Fri 09:00-10:30"),
            ("Mon,Tue,Wed,Fri 09:00-10:30", "Mon-Wed,Fri 09:00-10:30"),
            ("Tue,Sun 09:00-10:30", "Tue,Sun 09:00-10:30"),
            ("Mon,Mon-Tue 09:00-10:30", "Mon,Tue 09:00-10:30"),
            ("Thu-Thu 23:59-00:01", "Thu 23:59-00:01"),
            ("Sat 22:00-24:00", "Sat 22:00-24:00"),
            ("Sat 22:00-00:00", "Sat 22:00-24:00"),
            ("Sat 00:00-00:01", "Sat 00:00-00:01"),
        ];
        for (written, canonical) in cases {
            let parsed = window(written);
            assert_eq!(parsed.to_string(), canonical, "`{written}`");
            assert_eq!(window(canonical), parsed, "`{canonical}` parses back");
        }
    }

    #[test]
    fn a_bad_window_is_refused_saying_what_is_wrong_and_the_expected_form() {
        let cases = [
            // (written, what the error says)
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("UTC", "missing the days and times before `UTC`"),
            ("Sat", "missing the times after `Sat`"),
            ("Mon-Fri UTC", "missing the times after `Mon-Fri`"),
            (
                "Sat 02:00",
                "`02:00` is not a time range such as `02:00-04:00`",
            ),
            (
                "Sat 02:00-02:00",
                "it starts and ends at 02:00: the window is empty",
            ),
            (
                "00:00-00:00",
                "it starts and ends at 00:00: the window is empty",
            ),
            (
                "Sat 00:00-24:00 UTC extra",
                "unexpected `UTC extra` after the times",
            ),
            ("Sat 00:00 24:00", "unexpected `24:00` after the times"),
            ("Sat 02:00-04:00 CET", "unexpected `CET`"),
            (
                "Sat 02:00-04:00 Europe/Berlin",
                "unexpected `Europe/Berlin`",
            ),
            ("Sat 25:00-26:00", "`25:00` is past 24:00"),
            ("Sat 23:00-24:30", "`24:30` is past 24:00"),
            ("Sat 24:00-02:00", "a window cannot start at 24:00"),
            (
                "Sat 02:60-03:00",
                "`02:60` has bad minutes: two digits, 00 to 59",
            ),
            ("Sat 02:5-03:00", "`02:5` has bad minutes"),
            ("Sat 02:00:00-03:00", "`02:00:00` has bad minutes"),
            ("Sat 2-4", "`2` is not a time (HH:MM)"),
            ("Sat 123:00-124:00", "`123:00` is not a time (HH:MM)"),
            ("Sat -1:00-02:00", "`-1:00-02:00` is not a time range"),
            ("Sat -02:00", "`-02:00` is not a time range"),
            ("Sat 02:00 -04:00", "unexpected `-04:00` after the times"),
            ("Sat 01:00-", "`01:00-` is not a time range"),
            ("Sat 01:00--02:00", "`-02:00` is not a time (HH:MM)"),
            ("Sat +1:00-02:00", "`+1:00` is not a time (HH:MM)"),
            ("Sta 02:00-04:00", "`Sta` is not a day (`Mon`, `Tue`"),
            (
                "Sat,,Sun 02:00-04:00",
                "a day is missing in the list of days",
            ),
            (
                "Mon-,Tue 02:00-04:00",
                "a day is missing in the list of days",
            ),
            ("Mon-Fri-Sun 02:00-04:00", "`Fri-Sun` is not a day"),
            ("weekly 02:00-04:00", "`weekly` is not a day"),
        ];
        for (written, problem) in cases {
            let error = written.parse::<Window>().unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid window `{written}`: ")),
                "`{written}`: {error}"
            );
            assert!(error.contains(problem), "`{written}`: {error}");
            assert!(
                error.ends_with("; expected e.g. `Sat 02:00-04:00` or `Mon-Fri 22:00-02:00 UTC`"),
                "`{written}`: {error}"
            );
        }
    }

    #[test]
    fn serde_writes_a_window_as_its_canonical_text_and_reads_any_valid_form() {
        let window = window("mon - fri 22:00-00:00 utc");
        let json = serde_json::to_string(&window).unwrap();
        assert_eq!(json, r#""Mon-Fri 22:00-24:00 UTC""#);
        assert_eq!(serde_json::from_str::<Window>(&json).unwrap(), window);
        let error =
            serde_json::from_str::<Vec<Window>>(r#"["Sat 02:00-04:00", "Sat 04:00-04:00"]"#)
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("invalid window `Sat 04:00-04:00`: it starts and ends at 04:00"),
            "{error}"
        );
        assert!(serde_json::from_str::<Window>("7").is_err());
    }

    #[test]
    fn windows_contain_the_times_from_their_start_to_their_end_on_their_days() {
        // 2026-06-05 is a Friday; UTC windows, whatever the local zone.
        let local = berlin();
        let cases = [
            // (window, instant, open)
            ("Sat 02:00-04:00 UTC", "2026-06-06T01:59:59Z", false),
            ("Sat 02:00-04:00 UTC", "2026-06-06T02:00:00Z", true),
            ("Sat 02:00-04:00 UTC", "2026-06-06T03:59:59.999Z", true),
            ("Sat 02:00-04:00 UTC", "2026-06-06T04:00:00Z", false),
            ("Sat 02:00-04:00 UTC", "2026-06-05T03:00:00Z", false),
            ("Sat 02:00-04:00 UTC", "2026-06-13T03:00:00Z", true),
            // Crossing midnight: the window belongs to the day it starts on.
            ("Fri 22:00-02:00 UTC", "2026-06-05T21:59:59Z", false),
            ("Fri 22:00-02:00 UTC", "2026-06-05T22:00:00Z", true),
            ("Fri 22:00-02:00 UTC", "2026-06-06T00:00:00Z", true),
            ("Fri 22:00-02:00 UTC", "2026-06-06T01:59:59Z", true),
            ("Fri 22:00-02:00 UTC", "2026-06-06T02:00:00Z", false),
            ("Fri 22:00-02:00 UTC", "2026-06-06T22:00:00Z", false),
            ("Fri 22:00-02:00 UTC", "2026-06-05T01:00:00Z", false),
            ("Mon-Fri 22:00-02:00 UTC", "2026-06-06T01:00:00Z", true),
            ("Mon-Fri 22:00-02:00 UTC", "2026-06-06T22:30:00Z", false),
            ("Mon-Fri 22:00-02:00 UTC", "2026-06-08T01:00:00Z", false),
            ("Mon-Fri 22:00-02:00 UTC", "2026-06-08T22:00:00Z", true),
            ("Mon-Fri 22:00-02:00 UTC", "2026-06-09T01:00:00Z", true),
            // Sunday to Monday.
            ("Sun 23:00-01:00 UTC", "2026-06-07T22:59:59Z", false),
            ("Sun 23:00-01:00 UTC", "2026-06-07T23:30:00Z", true),
            ("Sun 23:00-01:00 UTC", "2026-06-08T00:30:00Z", true),
            ("Sun 23:00-01:00 UTC", "2026-06-08T01:00:00Z", false),
            ("Mon 23:00-01:00 UTC", "2026-06-07T23:30:00Z", false),
            ("Mon 23:00-01:00 UTC", "2026-06-08T00:30:00Z", false),
            ("Mon 23:00-01:00 UTC", "2026-06-09T00:30:00Z", true),
            ("Sun 00:00-24:00 UTC", "2026-06-07T00:00:00Z", true),
            ("Sun 00:00-24:00 UTC", "2026-06-07T23:59:59Z", true),
            ("Sun 00:00-24:00 UTC", "2026-06-08T00:00:00Z", false),
            ("Sun 00:00-24:00 UTC", "2026-06-06T23:59:59Z", false),
            ("Sat,Sun 00:00-24:00 UTC", "2026-06-05T23:59:59Z", false),
            ("Sat,Sun 00:00-24:00 UTC", "2026-06-06T00:00:00Z", true),
            ("Sat,Sun 00:00-24:00 UTC", "2026-06-07T12:00:00Z", true),
            ("Sat,Sun 00:00-24:00 UTC", "2026-06-08T00:00:00Z", false),
            ("Sun 22:00-24:00 UTC", "2026-06-07T23:59:59Z", true),
            ("Sun 22:00-24:00 UTC", "2026-06-08T00:00:00Z", false),
            ("Sat-Mon 23:00-01:00 UTC", "2026-06-09T00:30:00Z", true),
            ("Sat-Mon 23:00-01:00 UTC", "2026-06-09T23:30:00Z", false),
            ("daily 02:00-04:00 UTC", "2026-06-10T03:00:00Z", true),
            ("daily 02:00-04:00 UTC", "2026-06-10T05:00:00Z", false),
            // Local windows are in the local zone: Berlin is UTC+2 in June.
            ("Sat 02:00-04:00", "2026-06-06T00:00:00Z", true),
            ("Sat 02:00-04:00", "2026-06-06T01:59:59Z", true),
            ("Sat 02:00-04:00", "2026-06-06T02:00:00Z", false),
            ("Sat 02:00-04:00", "2026-06-05T23:59:59Z", false),
            ("Sat 01:00-03:00", "2026-06-05T23:30:00Z", true),
            // and UTC+1 in December (2026-12-05 is a Saturday).
            ("Sat 02:00-04:00", "2026-12-05T01:00:00Z", true),
            ("Sat 02:00-04:00", "2026-12-05T03:00:00Z", false),
        ];
        for (text, instant, want) in cases {
            assert_eq!(
                open(&[window(text)], at(instant), &local),
                want,
                "`{text}` at {instant}"
            );
        }
    }

    #[test]
    fn several_windows_are_open_when_any_is_and_none_is_always_open() {
        let local = TimeZone::UTC;
        let both = windows(&["Sat 02:00-04:00", "Sun 02:00-04:00 UTC"]);
        assert!(open(&both, at("2026-06-06T03:00:00Z"), &local));
        assert!(open(&both, at("2026-06-07T03:00:00Z"), &local));
        assert!(!open(&both, at("2026-06-08T03:00:00Z"), &local));
        assert!(open(&[], at("2026-06-08T03:00:00Z"), &local));
        assert_eq!(
            next_open(&[], at("2026-06-08T03:00:00Z"), &local),
            Some(at("2026-06-08T03:00:00Z"))
        );
    }

    /// Europe/Berlin in 2026: clocks go forward from 02:00 to 03:00 on
    /// Sunday 29 March (at 01:00 UTC), back from 03:00 to 02:00 on Sunday 25
    /// October (at 01:00 UTC).
    #[test]
    fn around_clock_changes_a_window_is_open_while_the_clock_shows_its_times() {
        let local = berlin();
        let cases = [
            // (window, instant, open)
            // Forward: 01:59:59 CET is followed by 03:00 CEST.
            ("Sun 02:00-04:00", "2026-03-29T00:59:59Z", false),
            ("Sun 02:00-04:00", "2026-03-29T01:00:00Z", true),
            ("Sun 02:00-04:00", "2026-03-29T01:59:59Z", true),
            ("Sun 02:00-04:00", "2026-03-29T02:00:00Z", false),
            ("Sun 02:00-02:30", "2026-03-29T01:00:00Z", false),
            ("Sun 02:00-02:30", "2026-03-29T00:59:59Z", false),
            ("Sun 01:30-02:30", "2026-03-29T00:30:00Z", true),
            ("Sun 01:30-02:30", "2026-03-29T01:00:00Z", false),
            ("Sat 23:00-02:30", "2026-03-29T00:59:59Z", true),
            ("Sat 23:00-02:30", "2026-03-29T01:00:00Z", false),
            // Back: 02:59:59 CEST is followed by 02:00 CET.
            ("Sun 02:00-03:00", "2026-10-24T23:59:59Z", false),
            ("Sun 02:00-03:00", "2026-10-25T00:00:00Z", true),
            ("Sun 02:00-03:00", "2026-10-25T00:59:59Z", true),
            ("Sun 02:00-03:00", "2026-10-25T01:00:00Z", true),
            ("Sun 02:00-03:00", "2026-10-25T01:59:59Z", true),
            ("Sun 02:00-03:00", "2026-10-25T02:00:00Z", false),
            ("Sun 02:30-02:45", "2026-10-25T00:30:00Z", true),
            ("Sun 02:30-02:45", "2026-10-25T00:50:00Z", false),
            ("Sun 02:30-02:45", "2026-10-25T01:30:00Z", true),
            ("Sun 02:30-02:45", "2026-10-25T01:45:00Z", false),
            // The UTC window does not move.
            ("Sun 01:00-02:00 UTC", "2026-03-29T01:30:00Z", true),
            ("Sun 01:00-02:00 UTC", "2026-10-25T01:30:00Z", true),
        ];
        for (text, instant, want) in cases {
            assert_eq!(
                open(&[window(text)], at(instant), &local),
                want,
                "`{text}` at {instant}"
            );
        }
    }

    #[test]
    fn next_open_is_when_the_first_window_opens_and_now_when_one_is_open() {
        let berlin = berlin();
        let utc = TimeZone::UTC;
        let cases = [
            // (windows, local zone, after, next opening)
            (
                &["Sat 02:00-04:00 UTC"][..],
                &utc,
                "2026-06-03T12:00:00Z",
                "2026-06-06T02:00:00Z",
            ),
            (
                &["Sat 02:00-04:00"],
                &utc,
                "2026-06-06T02:00:00Z",
                "2026-06-06T02:00:00Z",
            ),
            (
                &["Sat 02:00-04:00"],
                &utc,
                "2026-06-06T03:59:00Z",
                "2026-06-06T03:59:00Z",
            ),
            (
                &["Sat 02:00-04:00"],
                &utc,
                "2026-06-06T04:00:00Z",
                "2026-06-13T02:00:00Z",
            ),
            (
                &["Sat 02:00-04:00"],
                &utc,
                "2026-06-06T01:59:59.5Z",
                "2026-06-06T02:00:00Z",
            ),
            (
                &["Sat 02:00-04:00"],
                &berlin,
                "2026-06-03T12:00:00Z",
                "2026-06-06T00:00:00Z",
            ),
            (
                &["Sat 02:00-04:00"],
                &berlin,
                "2026-12-01T12:00:00Z",
                "2026-12-05T01:00:00Z",
            ),
            // Sunday to Monday, and a window begun the day before.
            (
                &["Mon 01:00-02:00"],
                &utc,
                "2026-06-07T23:00:00Z",
                "2026-06-08T01:00:00Z",
            ),
            (
                &["Sun 23:00-01:00"],
                &utc,
                "2026-06-08T00:30:00Z",
                "2026-06-08T00:30:00Z",
            ),
            (
                &["Sun 23:00-01:00"],
                &utc,
                "2026-06-08T01:00:00Z",
                "2026-06-14T23:00:00Z",
            ),
            (
                &["Mon-Fri 22:00-02:00"],
                &utc,
                "2026-06-06T01:00:00Z",
                "2026-06-06T01:00:00Z",
            ),
            (
                &["Mon-Fri 22:00-02:00"],
                &utc,
                "2026-06-06T02:00:00Z",
                "2026-06-08T22:00:00Z",
            ),
            // The earliest of several.
            (
                &["Sat 02:00-04:00", "Wed 02:00-04:00"],
                &utc,
                "2026-06-03T12:00:00Z",
                "2026-06-06T02:00:00Z",
            ),
            (
                &["Sat 02:00-04:00", "Thu 02:00-04:00"],
                &utc,
                "2026-06-03T12:00:00Z",
                "2026-06-04T02:00:00Z",
            ),
            (
                &["Sat 02:00-04:00", "daily 13:00-14:00 UTC"],
                &berlin,
                "2026-06-03T12:00:00Z",
                "2026-06-03T13:00:00Z",
            ),
            // Forward: a start in the gap opens when the clock jumps past it.
            (
                &["Sun 02:00-04:00"],
                &berlin,
                "2026-03-28T12:00:00Z",
                "2026-03-29T01:00:00Z",
            ),
            (
                &["Sun 02:30-03:30"],
                &berlin,
                "2026-03-28T12:00:00Z",
                "2026-03-29T01:00:00Z",
            ),
            // A window wholly in the gap opens the next week.
            (
                &["Sun 02:00-02:30"],
                &berlin,
                "2026-03-28T12:00:00Z",
                "2026-04-05T00:00:00Z",
            ),
            // Back: the repeated half hour opens again, and a window the clock
            // jumps back into opens at the jump.
            (
                &["Sun 02:30-02:45"],
                &berlin,
                "2026-10-24T12:00:00Z",
                "2026-10-25T00:30:00Z",
            ),
            (
                &["Sun 02:30-02:45"],
                &berlin,
                "2026-10-25T00:50:00Z",
                "2026-10-25T01:30:00Z",
            ),
            (
                &["Sun 01:30-02:15"],
                &berlin,
                "2026-10-25T00:20:00Z",
                "2026-10-25T01:00:00Z",
            ),
            (
                &["Sun 02:30-02:45"],
                &berlin,
                "2026-10-25T01:50:00Z",
                "2026-11-01T01:30:00Z",
            ),
        ];
        for (texts, local, after, want) in cases {
            assert_eq!(
                show(next_open(&windows(texts), at(after), local)),
                show(Some(at(want))),
                "{texts:?} after {after}"
            );
        }
    }

    /// [`next_open`] agrees with the slow way: looking at every minute from
    /// `after` until a window is open. In Berlin every clock change and every
    /// window's start is on a whole minute, so the first open minute is the
    /// first open instant.
    #[test]
    fn next_open_finds_the_first_open_minute_around_clock_changes() {
        let local = berlin();
        let sets = [
            &["Sun 02:00-04:00"][..],
            &["Sun 02:00-02:30"],
            &["Sun 02:30-03:30"],
            &["Sun 02:30-02:45"],
            &["Sun 02:59-03:01"],
            &["Sun 01:30-02:15"],
            &["Sat 23:00-02:30"],
            &["Sat 23:00-02:00"],
            &["Mon-Fri 22:00-02:00"],
            &["daily 02:15-02:20"],
            &["daily 00:00-00:05"],
            &["Sat,Sun 00:00-24:00"],
            &["Sun 01:00-01:30 UTC", "Wed 03:00-03:10"],
        ];
        let days = ["2026-03-27T00:00:00Z", "2026-10-23T00:00:00Z"];
        for texts in sets {
            let windows = windows(texts);
            for day in days {
                for hour in (0..72).step_by(5) {
                    let after = at(day) + Duration::from_secs(hour * 3600 + 1800);
                    let mut slow = after;
                    while !open(&windows, slow, &local) {
                        slow += Duration::from_secs(60);
                    }
                    assert_eq!(
                        show(next_open(&windows, after, &local)),
                        show(Some(slow)),
                        "{texts:?} after {}",
                        show(Some(after))
                    );
                }
            }
        }
    }

    #[test]
    fn the_waiting_reason_says_what_the_agent_waits_for_and_how_long() {
        let utc = TimeZone::UTC;
        let now = at("2026-06-03T23:00:00Z"); // a Wednesday
        let cases = [
            // (windows, not before, reason)
            (&[][..], None, None),
            (&[], Some("2026-06-03T22:00:00Z"), None),
            (&["Wed 22:00-02:00"], None, None),
            (
                &["Sat 02:00-04:00"],
                None,
                Some("waiting for the window Sat 02:00-04:00 (opens in 2d 3h)"),
            ),
            (
                &["Sat 02:00-04:00 UTC", "Thu 02:00-03:00"],
                None,
                Some(
                    "waiting for the windows Sat 02:00-04:00 UTC, Thu 02:00-03:00 \
                     (the next opens in 3h)",
                ),
            ),
            (
                &[],
                Some("2026-06-04T02:20:00Z"),
                Some("waiting until 2026-06-04T02:20:00Z (in 3h 20m)"),
            ),
            (
                &["Thu 02:00-03:00"],
                Some("2026-06-04T02:20:00Z"),
                Some("waiting until 2026-06-04T02:20:00Z (in 3h 20m)"),
            ),
            (
                &["Thu 02:00-03:00"],
                Some("2026-06-04T03:20:00Z"),
                Some(
                    "waiting until 2026-06-04T03:20:00Z (in 4h 20m), \
                     then for the window Thu 02:00-03:00 (opens in 7d 3h)",
                ),
            ),
        ];
        for (texts, not_before, want) in cases {
            let not_before = not_before.map(at);
            assert_eq!(
                waiting_reason(&windows(texts), not_before, now, &utc).as_deref(),
                want,
                "{texts:?}, not before {not_before:?}"
            );
        }
    }

    #[test]
    fn the_earliest_start_is_the_first_open_window_after_the_not_before_time() {
        let utc = TimeZone::UTC;
        let now = at("2026-06-03T23:00:00Z");
        let thursday = windows(&["Thu 02:00-03:00"]);
        let cases = [
            // (not before, earliest start)
            (None, "2026-06-04T02:00:00Z"),
            (Some("2026-06-01T00:00:00Z"), "2026-06-04T02:00:00Z"),
            (Some("2026-06-04T02:20:00Z"), "2026-06-04T02:20:00Z"),
            (Some("2026-06-04T03:00:00Z"), "2026-06-11T02:00:00Z"),
        ];
        for (not_before, want) in cases {
            assert_eq!(
                show(earliest_start(&thursday, not_before.map(at), now, &utc)),
                show(Some(at(want))),
                "not before {not_before:?}"
            );
        }
        assert_eq!(show(earliest_start(&[], None, now, &utc)), show(Some(now)));
    }

    #[test]
    fn waits_are_shown_rounded_up_in_their_two_largest_units() {
        let cases = [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m"),
            (61, "2m"),
            (3600, "1h"),
            (3660, "1h 1m"),
            (3 * 3600 + 20 * 60, "3h 20m"),
            (86400, "1d"),
            (86400 + 59 * 60, "1d"),
            (2 * 86400 + 3 * 3600 + 59 * 60, "2d 3h"),
            (2 * 86400 + 3 * 3600 + 59 * 60 + 1, "2d 4h"),
            (15 * 86400, "15d"),
        ];
        for (seconds, want) in cases {
            assert_eq!(
                approx_duration(Duration::from_secs(seconds)),
                want,
                "{seconds}s"
            );
        }
        assert_eq!(approx_duration(Duration::from_millis(500)), "1s");
    }

    #[test]
    fn not_before_is_a_time_with_its_zone_or_a_duration_from_now() {
        let now = at("2026-06-03T23:00:00Z");
        let cases = [
            ("2026-12-05T02:00:00Z", "2026-12-05T02:00:00Z"),
            ("2026-12-05T02:00:00z", "2026-12-05T02:00:00Z"),
            ("2026-12-05T03:00:00+01:00", "2026-12-05T02:00:00Z"),
            ("2026-12-04T21:00:00-05:00", "2026-12-05T02:00:00Z"),
            (" 2026-12-05T02:00:00.000Z ", "2026-12-05T02:00:00Z"),
            ("2h", "2026-06-04T01:00:00Z"),
            ("30m", "2026-06-03T23:30:00Z"),
            ("1d 12h", "2026-06-05T11:00:00Z"),
            ("0s", "2026-06-03T23:00:00Z"),
            ("2026-06-03T23:00:00Z", "2026-06-03T23:00:00Z"),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_not_before(text, now).map(|t| show(Some(t))),
                Ok(show(Some(at(want)))),
                "`{text}`"
            );
        }
    }

    #[test]
    fn a_bad_not_before_names_the_accepted_forms() {
        let now = at("2026-06-03T23:00:00Z");
        let forms = "expected an RFC 3339 time such as `2026-12-05T02:00:00Z` or \
                     `2026-12-05T03:00:00+01:00`, or a duration from now such as `2h` or `30m`";
        let cases = [
            // (text, what the error says, names the forms)
            ("", "invalid --not-before ``: expected", true),
            (
                "tomorrow",
                "invalid --not-before `tomorrow`: expected",
                true,
            ),
            ("2x", "invalid --not-before `2x`: expected", true),
            (
                "2026-12-05T02:00:00",
                "a time needs `Z` (UTC) or an offset such as `+01:00`",
                true,
            ),
            (
                "2026-12-05 02:00",
                "a time needs `Z` (UTC) or an offset",
                true,
            ),
            (
                "2026-13-05T02:00:00Z",
                "invalid --not-before `2026-13-05T02:00:00Z`: ",
                true,
            ),
            (
                "2026-06-03T22:59:59Z",
                "invalid --not-before `2026-06-03T22:59:59Z`: it is in the past \
                 (now is 2026-06-03T23:00:00Z)",
                false,
            ),
            ("2026-06-03T23:59:59+01:00", "it is in the past", false),
            ("100000000000000000000y", "expected", true),
        ];
        for (text, problem, names_forms) in cases {
            let error = parse_not_before(text, now).unwrap_err();
            assert!(error.contains(problem), "`{text}`: {error}");
            assert_eq!(error.ends_with(forms), names_forms, "`{text}`: {error}");
        }
    }

    /// `TZ` is read by [`local_zone`] only; to set it, the test runs this
    /// test binary again for [`print_local_zone`].
    #[test]
    fn the_local_zone_is_the_one_tz_names_and_a_bad_one_is_an_error() {
        let cases = [
            ("Europe/Berlin", "Ok(Some(\"Europe/Berlin\"))"),
            ("America/New_York", "Ok(Some(\"America/New_York\"))"),
            (
                "Nowhere/Atlantis",
                "Err(\"cannot tell this host's time zone (from `TZ` or /etc/localtime): ",
            ),
        ];
        for (tz, want) in cases {
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "window::tests::print_local_zone"])
                .args(["--ignored", "--nocapture", "--test-threads=1"])
                .env(crate::env::TZ, tz)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&child.stdout);
            let zone = stdout
                .lines()
                .find_map(|line| Some(line.split_once("local zone: ")?.1))
                .unwrap_or_else(|| panic!("TZ={tz}: no zone in {stdout}"));
            assert!(zone.starts_with(want), "TZ={tz}: {zone}");
        }
    }

    #[test]
    #[ignore = "run by the_local_zone_is_the_one_tz_names_and_a_bad_one_is_an_error"]
    fn print_local_zone() {
        let zone = local_zone();
        println!("local zone: {:?}", zone.as_ref().map(|z| z.iana_name()));
    }
}

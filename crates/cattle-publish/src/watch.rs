//! `cattle status ID --watch`: an execution as it goes.
//!
//! The store is read as `cattle status --wait` reads it ([`status::wait_with`]:
//! DONE hosts from one listing of their markers, status documents for the
//! others, every second or so) and each report is shown in one of two ways:
//!
//! - on a terminal, [`frame`] is drawn in place of the one before: counts per
//!   state with a bar, the hosts that need attention with their step and
//!   message, then the hosts under way with their step and how long they
//!   have been running; the final table replaces it at the end;
//! - otherwise (a file, a pipe, a CI log), [`changes`] writes a line per
//!   host whose state or step changed since the report before, and
//!   [`summary`] the counts at the end.
//!
//! Both are pure functions of the reports, and everything in them that a host
//! wrote goes through [`terminal::line`].

use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, SystemTime};

use cattle_core::store::Store;
use cattle_core::wire::State;
use tokio::time::Instant;
use uuid::Uuid;

use crate::status::{self, HostRow, HostState, Report};
use crate::{exit, terminal};

/// Width of the state column: the longest state word, `UNREADABLE`.
const STATE_WIDTH: usize = 10;

/// Characters in the bar of [`frame`].
const BAR_WIDTH: usize = 30;

/// The states in the order the counts show them, with the bar's mark of each.
const COUNTED: [(HostState, char); 6] = [
    (HostState::Done, '#'),
    (HostState::Error, 'x'),
    (HostState::Cancelled, 'x'),
    (HostState::Unreadable, '?'),
    (HostState::Progress, '>'),
    (HostState::Pending, '.'),
];

/// [`COUNTED`] with the states only a rollout has, in their places.
const COUNTED_ROLLOUT: [(HostState, char); 8] = [
    (HostState::Done, '#'),
    (HostState::Error, 'x'),
    (HostState::Halted, '-'),
    (HostState::Cancelled, 'x'),
    (HostState::Unreadable, '?'),
    (HostState::Progress, '>'),
    (HostState::Waiting, '~'),
    (HostState::Pending, '.'),
];

/// `waves (hosts ended): 1/1  7/10  0/39`, for an execution with a rollout.
fn waves_line(report: &Report) -> Option<String> {
    let rollout = report.manifest.rollout.as_ref()?;
    rollout.check(report.hosts.len()).ok()?;
    let waves: Vec<String> = (0..rollout.waves.len())
        .map(|k| {
            let range = rollout.wave(k);
            let ended = report.hosts[range.clone()]
                .iter()
                .filter(|h| h.state.is_final())
                .count();
            format!("{ended}/{}", range.len())
        })
        .collect();
    Some(format!("waves (hosts ended): {}", waves.join("  ")))
}

/// The host column's width: the widest host ID of the execution.
fn host_width(report: &Report) -> usize {
    report
        .manifest
        .hosts
        .iter()
        .map(|h| h.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4)
}

/// `step 2/5`, or `None` before the host reports a step.
fn step(row: &HostRow) -> Option<String> {
    let status = row.status.as_ref()?;
    let step = status.step.as_ref()?;
    Some(format!("step {}/{}", step.number, status.steps))
}

/// What the host is doing now, in one line, without its state: `step 2/5
/// file (/etc/motd), attempt 2/3`, `step 2/5: <error>`, the reason it is
/// UNREADABLE. Empty for PENDING and DONE.
fn detail(row: &HostRow, facility_in_errors: bool) -> String {
    let mut out = String::new();
    let status = row.status.as_ref();
    match row.state {
        HostState::Pending | HostState::Done => {}
        HostState::Unreadable => {
            out.push_str(first_line(row.reason.as_deref().unwrap_or_default()));
        }
        HostState::Progress => {
            let Some(status) = status else {
                return String::new();
            };
            if let Some(st) = &status.step {
                let _ = write!(
                    out,
                    "step {}/{} {} ({})",
                    st.number,
                    status.steps,
                    st.facility,
                    first_line(&st.description)
                );
                if st.attempt > 1 {
                    let _ = write!(out, ", attempt {}/{}", st.attempt, st.attempts);
                }
            } else {
                out.push_str("starting");
            }
            if let Some(paused) = &status.paused {
                let _ = write!(out, ": PAUSED: {}", first_line(paused));
            }
        }
        HostState::Waiting => {
            if let Some(waiting) = status.and_then(|s| s.waiting.as_deref()) {
                out.push_str(first_line(waiting));
            }
        }
        HostState::Error | HostState::Cancelled | HostState::Halted => {
            if let Some(step) = step(row) {
                out.push_str(&step);
                if facility_in_errors && let Some(st) = status.and_then(|s| s.step.as_ref()) {
                    let _ = write!(out, " {}", st.facility);
                }
            }
            if let Some(error) = status.and_then(|s| s.error.as_deref()) {
                if !out.is_empty() {
                    out.push_str(": ");
                }
                out.push_str(first_line(error));
            }
        }
    }
    terminal::line(&out)
}

/// One host as a line: host, state, detail, in fixed-width columns.
fn host_line(row: &HostRow, width: usize, facility_in_errors: bool) -> String {
    let line = format!(
        "{:width$}  {:STATE_WIDTH$}  {}",
        terminal::line(row.host.as_str()),
        row.state.as_str(),
        detail(row, facility_in_errors)
    );
    line.trim_end().to_string()
}

/// The lines to write when `report` follows `previous` (`None`: the first
/// report, after which every host not PENDING is new): one per host whose
/// state or step changed, `web-3  PROGRESS    step 2/5 file (/etc/motd)`,
/// `web-3  ERROR       step 2/5: <message>`, in the execution's host order.
pub fn changes(previous: Option<&Report>, report: &Report) -> String {
    let width = host_width(report);
    let mut out = String::new();
    for row in &report.hosts {
        let line = host_line(row, width, false);
        let before = previous
            .and_then(|p| p.hosts.iter().find(|r| r.host == row.host))
            .map(|r| host_line(r, width, false));
        let unchanged = match before {
            Some(before) => before == line,
            None => row.state == HostState::Pending,
        };
        if !unchanged {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The lines `cattle status` ends its table with: the counts per state, the
/// steps' results, check mode and conflicts.
pub fn summary(report: &Report) -> String {
    let table = report.table();
    let mut out = String::new();
    // The table is a header, a row per host, then the summary.
    for line in table.lines().skip(1 + report.hosts.len()) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// How long a host has been at it, `42s`, `3m05s`, `1h02m`.
fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// The live view of `report` on a terminal of `width` columns and `height`
/// rows, `watched` after the watch started, at `now` (for how long each host
/// has been running): at most `height - 1` lines, none wider than `width`.
///
/// ```text
/// [######xxxxxx>>>>>>>>>>>>......]  2/5 hosts finished  12s  execution 0199…
/// DONE 1  ERROR 1  CANCELLED 0  UNREADABLE 0  PROGRESS 2  PENDING 1
/// needs attention:
///   web-3  ERROR       step 2/5 file: cannot write /etc/motd: Permission denied
/// running:
///   web-1  PROGRESS    step 3/5 command (migrate)  0m41s
/// ```
pub fn frame(
    report: &Report,
    watched: Duration,
    now: SystemTime,
    width: usize,
    height: usize,
) -> Vec<String> {
    let total = report.hosts.len();
    let finished = report.hosts.iter().filter(|h| h.state.is_final()).count();
    let states: &[(HostState, char)] = if report.manifest.rollout.is_some() {
        &COUNTED_ROLLOUT
    } else {
        &COUNTED
    };
    let mut bar = String::with_capacity(BAR_WIDTH);
    let mut counted = 0;
    for &(state, mark) in states {
        counted += report.count(state);
        let end = (counted * BAR_WIDTH).checked_div(total).unwrap_or(0);
        while bar.len() < end {
            bar.push(mark);
        }
    }
    while bar.len() < BAR_WIDTH {
        bar.push(' ');
    }
    let mut lines = vec![
        format!(
            "[{bar}]  {finished}/{total} {} finished  {}  execution {}",
            if total == 1 { "host" } else { "hosts" },
            elapsed(watched),
            report.manifest.id,
        ),
        states
            .iter()
            .map(|(state, _)| format!("{} {}", state.as_str(), report.count(*state)))
            .collect::<Vec<_>>()
            .join("  "),
    ];
    lines.extend(waves_line(report));
    let host_width = host_width(report);
    let attention: Vec<&HostRow> = report
        .hosts
        .iter()
        .filter(|h| {
            matches!(
                h.state,
                HostState::Error | HostState::Halted | HostState::Cancelled | HostState::Unreadable
            )
        })
        .collect();
    let running: Vec<&HostRow> = report
        .hosts
        .iter()
        .filter(|h| h.state == HostState::Progress)
        .collect();
    // The rows that fit: the hosts that need attention first.
    let mut room = height.saturating_sub(1 + lines.len());
    for (title, rows) in [("needs attention:", &attention), ("running:", &running)] {
        if rows.is_empty() || room < 2 {
            continue;
        }
        lines.push(title.to_string());
        room -= 1;
        let shown = if rows.len() <= room {
            rows.len()
        } else {
            room - 1
        };
        for row in &rows[..shown] {
            let mut line = format!("  {}", host_line(row, host_width, true));
            if row.state == HostState::Progress
                && let Some(since) = row
                    .status
                    .as_ref()
                    .filter(|s| s.state == State::Progress)
                    .and_then(|s| humantime::parse_rfc3339_weak(&s.started).ok())
            {
                let _ = write!(
                    line,
                    "  {}",
                    elapsed(now.duration_since(since).unwrap_or_default())
                );
            }
            lines.push(line);
        }
        room -= shown;
        if shown < rows.len() {
            lines.push(format!("  … and {} more", rows.len() - shown));
            room -= 1;
        }
    }
    lines
        .into_iter()
        .map(|l| l.chars().take(width).collect())
        .collect()
}

/// `cattle status ID --watch`: wait as `--wait` does, showing each report
/// read on the way in `out`: as [`frame`]s drawn in place when `terminal`,
/// otherwise as [`changes`]. At the end, the table (on a terminal) or
/// [`summary`]; returns `cattle status`'s exit code for the final report, or
/// [`exit::INTERRUPTED`] when `interrupted` (Ctrl-C) comes first, leaving the
/// terminal as it was (cursor shown).
pub async fn run(
    store: &Store,
    id: Uuid,
    timeout: Option<Duration>,
    every: Duration,
    out: &mut dyn Write,
    terminal: bool,
    interrupted: impl Future<Output = std::io::Result<()>>,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let patience = status::UNREADABLE_PATIENCE;
    if terminal {
        let mut live = Live::new(&mut *out);
        let waited = {
            let mut seen = |report: &Report| {
                let (width, height) = terminal_size(std::io::stdout()).unwrap_or((80, 24));
                live.draw(&frame(
                    report,
                    started.elapsed(),
                    SystemTime::now(),
                    width,
                    height,
                ))
            };
            let waiting = status::wait_with(store, id, timeout, every, patience, false, &mut seen);
            tokio::select! {
                waited = waiting => Some(waited),
                _ = interrupted => None,
            }
        };
        let Some(waited) = waited else {
            live.leave()?;
            return Ok(exit::INTERRUPTED);
        };
        live.clear()?;
        drop(live);
        let report = waited?;
        write!(out, "{}", report.table())?;
        out.flush()?;
        return Ok(report.exit_code());
    }
    let mut previous: Option<Report> = None;
    let waited = {
        let mut seen = |report: &Report| {
            out.write_all(changes(previous.as_ref(), report).as_bytes())?;
            out.flush()?;
            previous = Some(report.clone());
            Ok(())
        };
        let waiting = status::wait_with(store, id, timeout, every, patience, false, &mut seen);
        tokio::select! {
            waited = waiting => Some(waited),
            _ = interrupted => None,
        }
    };
    let Some(waited) = waited else {
        return Ok(exit::INTERRUPTED);
    };
    let report = waited?;
    write!(
        out,
        "{}{}",
        changes(previous.as_ref(), &report),
        summary(&report)
    )?;
    out.flush()?;
    Ok(report.exit_code())
}

/// The first line of `s`: a row stays one row.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Draws [`frame`]s in place on a terminal: each replaces the one before
/// (cursor up, clear to the end of the screen). The cursor is hidden and
/// lines do not wrap while it draws; both come back when it is cleared or
/// dropped (an error, Ctrl-C).
#[derive(Debug)]
pub struct Live<W: Write> {
    out: W,
    /// Lines of the frame on the screen now.
    drawn: usize,
    /// Whether the cursor is hidden and wrapping off.
    active: bool,
}

impl<W: Write> Live<W> {
    pub fn new(out: W) -> Live<W> {
        Live {
            out,
            drawn: 0,
            active: false,
        }
    }

    /// Replace what is drawn with `lines`.
    pub fn draw(&mut self, lines: &[String]) -> std::io::Result<()> {
        let mut text = String::new();
        if !self.active {
            // Hide the cursor; no wrapping, so that a line is one row.
            text.push_str("\x1b[?25l\x1b[?7l");
            self.active = true;
        }
        self.erase(&mut text);
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        self.drawn = lines.len();
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }

    /// Remove the frame and give the terminal back as it was.
    pub fn clear(&mut self) -> std::io::Result<()> {
        let mut text = String::new();
        self.erase(&mut text);
        self.drawn = 0;
        if self.active {
            text.push_str("\x1b[?7h\x1b[?25h");
            self.active = false;
        }
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }

    /// Give the terminal back, leaving the frame on the screen (Ctrl-C).
    pub fn leave(&mut self) -> std::io::Result<()> {
        self.drawn = 0;
        if self.active {
            self.active = false;
            self.out.write_all(b"\x1b[?7h\x1b[?25h")?;
        }
        self.out.flush()
    }

    fn erase(&self, text: &mut String) {
        if self.drawn > 0 {
            let _ = write!(text, "\r\x1b[{}A\x1b[J", self.drawn);
        }
    }
}

impl<W: Write> Drop for Live<W> {
    fn drop(&mut self) {
        let _ = self.leave();
    }
}

/// The terminal's size in columns and rows, if `fd` is a terminal.
pub fn terminal_size(fd: impl std::os::fd::AsFd) -> Option<(usize, usize)> {
    let size = rustix::termios::tcgetwinsize(fd).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col as usize, size.ws_row as usize))
}

#[cfg(test)]
mod tests {
    use cattle_core::hosts::HostId;
    use cattle_core::wire::{BundleRef, FORMAT, HostStatus, Manifest, StepStatus};

    use super::*;

    fn report(hosts: &[(&str, HostState)]) -> Report {
        let id = Uuid::nil();
        Report {
            manifest: Manifest {
                format: FORMAT,
                id,
                version: 1,
                floor: None,
                created: String::new(),
                expires: String::new(),
                publisher: String::new(),
                config: String::new(),
                steps: 5,
                bundle: BundleRef {
                    sha256: "0".repeat(64),
                    size: 1,
                },
                hosts: hosts.iter().map(|(h, _)| HostId::new(h).unwrap()).collect(),
                vars: false,
                check: false,
                diff: false,
                message: None,
                rollout: None,
                select: Vec::new(),
                grouped: false,
            },
            hosts: hosts
                .iter()
                .map(|&(h, state)| row(id, h, state, 2, None))
                .collect(),
            steps: false,
        }
    }

    fn row(id: Uuid, host: &str, state: HostState, step: usize, error: Option<&str>) -> HostRow {
        let wire = match state {
            HostState::Progress => Some(State::Progress),
            HostState::Error => Some(State::Error),
            HostState::Cancelled => Some(State::Cancelled),
            _ => None,
        };
        let status = wire.map(|state| HostStatus {
            format: FORMAT,
            execution: id,
            host: HostId::new(host).unwrap(),
            state,
            steps: 5,
            step: Some(StepStatus {
                number: step,
                facility: "file".to_string(),
                description: "/etc/motd".to_string(),
                attempt: 1,
                attempts: 3,
            }),
            started: "2030-01-01T00:00:00Z".to_string(),
            updated: "2030-01-01T00:00:00Z".to_string(),
            finished: None,
            error: error.map(str::to_string),
            seq: 1,
            agent_version: "test".to_string(),
            paused: None,
            waiting: None,
            log: None,
            results: Vec::new(),
        });
        HostRow {
            host: HostId::new(host).unwrap(),
            state,
            updated: None,
            results: status.as_ref().map(HostStatus::recap),
            status: status.map(Box::new),
            reason: (state == HostState::Unreadable).then(|| "`x` is not JSON".to_string()),
            conflict: None,
        }
    }

    #[test]
    fn plain_mode_writes_a_line_per_change_with_what_hosts_wrote_escaped() {
        use HostState::*;
        let first = report(&[("web-1", Pending), ("web-3", Progress), ("db", Done)]);
        assert_eq!(
            changes(None, &first),
            "web-3  PROGRESS    step 2/5 file (/etc/motd)\n\
             db     DONE\n"
        );
        assert_eq!(changes(Some(&first), &first), "");

        let mut second = report(&[("web-1", Progress), ("web-3", Error), ("db", Done)]);
        second.hosts[1] = row(
            Uuid::nil(),
            "web-3",
            Error,
            2,
            Some("step 2 failed: \x1b[2Jdisk\rStep 2 completed\nsecond line"),
        );
        assert_eq!(
            changes(Some(&first), &second),
            "web-1  PROGRESS    step 2/5 file (/etc/motd)\n\
             web-3  ERROR       step 2/5: step 2 failed: \\x1b[2Jdisk\\rStep 2 completed\n"
        );
        // A new step, then a retry of it, are changes too.
        let mut third = report(&[("web-1", Progress), ("web-3", Error), ("db", Done)]);
        third.hosts[1] = second.hosts[1].clone();
        third.hosts[0] = row(Uuid::nil(), "web-1", Progress, 3, None);
        assert_eq!(
            changes(Some(&second), &third),
            "web-1  PROGRESS    step 3/5 file (/etc/motd)\n"
        );
        third.hosts.iter_mut().for_each(|h| {
            h.state = HostState::Unreadable;
            h.reason = Some("`x` is not JSON".to_string());
        });
        assert!(changes(Some(&second), &third).contains("web-1  UNREADABLE  `x` is not JSON\n"));
    }

    #[test]
    fn with_a_rollout_the_frame_counts_waiting_and_halted_hosts_and_shows_the_waves() {
        use HostState::*;
        let mut report = report(&[
            ("web-1", Done),
            ("web-2", Error),
            ("web-3", Halted),
            ("web-4", Waiting),
        ]);
        report.manifest.rollout = Some(cattle_core::rollout::Rollout {
            waves: vec![1, 2, 4],
            max_errors: Some(0),
            bake_secs: 0,
            windows: Vec::new(),
            not_before: None,
        });
        let now = humantime::parse_rfc3339("2030-01-01T00:01:05Z").unwrap();
        let lines = frame(&report, Duration::from_secs(3), now, 200, 40);
        assert_eq!(
            lines[..4],
            [
                format!(
                    "[#######xxxxxxxx-------~~~~~~~~]  3/4 hosts finished  3s  execution {}",
                    Uuid::nil()
                ),
                "DONE 1  ERROR 1  HALTED 1  CANCELLED 0  UNREADABLE 0  PROGRESS 0  WAITING 1  \
                 PENDING 0"
                    .to_string(),
                "waves (hosts ended): 1/1  1/1  1/2".to_string(),
                "needs attention:".to_string(),
            ]
        );
    }

    #[test]
    fn the_frame_counts_states_in_a_bar_and_puts_failing_hosts_first() {
        use HostState::*;
        let mut report = report(&[
            ("web-1", Done),
            ("web-2", Progress),
            ("web-3", Error),
            ("web-4", Pending),
            ("web-5", Unreadable),
        ]);
        report.hosts[2] = row(
            Uuid::nil(),
            "web-3",
            Error,
            2,
            Some("cannot write\x1b]52;c;aGk=\x07"),
        );
        let now = humantime::parse_rfc3339("2030-01-01T00:01:05Z").unwrap();
        let lines = frame(&report, Duration::from_secs(12), now, 200, 40);
        assert_eq!(
            lines,
            [
                format!(
                    "[######xxxxxx??????>>>>>>......]  2/5 hosts finished  12s  execution {}",
                    Uuid::nil()
                ),
                "DONE 1  ERROR 1  CANCELLED 0  UNREADABLE 1  PROGRESS 1  PENDING 1".to_string(),
                "needs attention:".to_string(),
                "  web-3  ERROR       step 2/5 file: cannot write\\x1b]52;c;aGk=\\x07".to_string(),
                "  web-5  UNREADABLE  `x` is not JSON".to_string(),
                "running:".to_string(),
                "  web-2  PROGRESS    step 2/5 file (/etc/motd)  1m05s".to_string(),
            ]
        );
        // A small terminal: lines cut at its width, rows at its height.
        let small = frame(&report, Duration::from_secs(12), now, 20, 5);
        assert_eq!(small.len(), 4, "{small:#?}");
        assert!(small.iter().all(|l| l.chars().count() <= 20), "{small:#?}");
        assert_eq!(small[3], "  … and 2 more");
        let lines = frame(&report, Duration::ZERO, now, 200, 40);
        assert!(lines.iter().all(|l| !l.contains('\x1b')));
    }

    #[test]
    fn the_live_view_redraws_in_place_and_gives_the_terminal_back() {
        let mut out = Vec::new();
        {
            let mut live = Live::new(&mut out);
            live.draw(&["a".to_string(), "b".to_string()]).unwrap();
            live.draw(&["c".to_string()]).unwrap();
            live.clear().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[?25l\x1b[?7la\nb\n\r\x1b[2A\x1b[Jc\n\r\x1b[1A\x1b[J\x1b[?7h\x1b[?25h"
        );
        // Dropped half way (an error): the cursor is shown again.
        let mut out = Vec::new();
        {
            let mut live = Live::new(&mut out);
            live.draw(&["a".to_string()]).unwrap();
        }
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("\x1b[?7h\x1b[?25h")
        );
    }
}

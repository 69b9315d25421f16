//! Rollouts from the publisher's side: `cattle publish --waves …` turns its
//! flags into the signed [`Rollout`] ([`plan`]), `cattle rollout pause|resume`
//! signs a [`Control`] and `cattle rollout status` shows how far the waves
//! are. The agents enforce it (`cattle_core::rollout`); nothing here needs
//! to keep running.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cattle_core::keys;
use cattle_core::rollout::{self, Control, EndState, Gate, Reports, Rollout, WindowState};
use cattle_core::signing::{SecretKey, TrustedKeys};
use cattle_core::store::{Condition, Store};
use cattle_core::window::{self, Window};
use cattle_core::wire::{Envelope, FORMAT, Manifest};
use serde::Serialize;
use uuid::Uuid;

use crate::cli::RolloutArgs;
use crate::status::{HostState, Report};
use crate::terminal;

/// The rollout `args` ask for, for `hosts` hosts; `None` when they ask for
/// none. Every mistake is found here, before anything is uploaded.
pub fn plan(args: &RolloutArgs, hosts: usize, now: SystemTime) -> anyhow::Result<Option<Rollout>> {
    if !args.any() {
        return Ok(None);
    }
    let waves = match &args.waves {
        Some(text) => parse_waves(text, hosts).context("invalid `--waves`")?,
        None => vec![hosts],
    };
    if args.bake.is_some() && waves.len() < 2 {
        anyhow::bail!("`--bake` is the wait between waves: give `--waves` too");
    }
    let max_errors = match &args.max_errors {
        Some(text) => Some(parse_budget(text, hosts).context("invalid `--max-errors`")?),
        None if args.waves.is_some() => Some(0),
        None => None,
    };
    let not_before = args
        .not_before
        .as_deref()
        .map(|text| window::parse_not_before(text, now).map_err(anyhow::Error::msg))
        .transpose()?
        .map(|t| humantime::format_rfc3339_seconds(t).to_string());
    // Signed in their canonical form, which every agent parses alike.
    let windows = args
        .windows
        .iter()
        .map(|text| text.parse::<Window>().map(|w| w.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let rollout = Rollout {
        waves,
        max_errors,
        bake_secs: args.bake.map_or(0, |d| d.as_secs()),
        windows,
        not_before,
    };
    rollout.check(hosts).map_err(anyhow::Error::msg)?;
    Ok(Some(rollout))
}

/// What a dry run shows of `rollout` for `hosts`: the budget and times, then
/// each wave with its first and last hosts.
///
/// ```text
/// rollout: 3 waves, at most 2 hosts may fail, 5m between waves
///   wave 1: 1 host (web-01)
///   wave 2: 4 hosts (web-02 … web-05)
///   wave 3: 45 hosts (web-06 … web-50)
/// ```
pub fn describe(rollout: &Rollout, hosts: &[cattle_core::hosts::HostId]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "rollout: {}, {}",
        cattle_core::count(rollout.waves.len() as u64, "wave"),
        match rollout.max_errors {
            None => "no error budget".to_string(),
            Some(0) => "no host may fail".to_string(),
            Some(1) => "at most 1 host may fail".to_string(),
            Some(n) => format!("at most {n} hosts may fail"),
        }
    );
    if rollout.bake_secs > 0 {
        let _ = write!(
            out,
            ", {} between waves",
            humantime::format_duration(Duration::from_secs(rollout.bake_secs))
        );
    }
    if !rollout.windows.is_empty() {
        let _ = write!(out, ", inside {}", rollout.windows.join(" or "));
    }
    if let Some(at) = &rollout.not_before {
        let _ = write!(out, ", not before {at}");
    }
    out.push('\n');
    for k in 0..rollout.waves.len() {
        let range = rollout.wave(k);
        let first = terminal::line(hosts[range.start].as_str());
        let names = if range.len() == 1 {
            first
        } else {
            format!(
                "{first} … {}",
                terminal::line(hosts[range.end - 1].as_str())
            )
        };
        let _ = writeln!(
            out,
            "  wave {}: {} ({names})",
            k + 1,
            cattle_core::count(range.len() as u64, "host")
        );
    }
    out
}

/// `1,10%,50%,100%` for `hosts` hosts: where each wave ends, as counts or
/// percentages (rounded up, so that a wave is never empty for a small
/// fleet), each past the one before; hosts left after the last form a last
/// wave. Waves that would end where the one before did are dropped.
pub fn parse_waves(text: &str, hosts: usize) -> anyhow::Result<Vec<usize>> {
    if hosts == 0 {
        anyhow::bail!("there are no hosts to roll out to");
    }
    let mut ends: Vec<usize> = Vec::new();
    for term in text.split(',') {
        let term = term.trim();
        let end = match term.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                    .with_context(|| {
                        format!("`{term}` is not a percentage from 0 (excluded) to 100")
                    })?;
                ((p / 100.0) * hosts as f64).ceil() as usize
            }
            None => {
                let n: usize = term.parse().ok().filter(|n| *n > 0).with_context(|| {
                    format!(
                        "`{term}` is neither a host count (1 or more) nor a percentage like `10%`"
                    )
                })?;
                n.min(hosts)
            }
        };
        if ends.last().is_some_and(|&last| end < last) {
            anyhow::bail!(
                "`{term}` ends before the wave before it: give where each wave ends, in \
                 increasing order (e.g. `1,10%,100%`)"
            );
        }
        if ends.last().is_none_or(|&last| end > last) {
            ends.push(end.min(hosts));
        }
    }
    if ends.last().is_none_or(|&last| last < hosts) {
        ends.push(hosts);
    }
    if ends.len() > rollout::MAX_WAVES {
        anyhow::bail!(
            "{} waves; at most {} are allowed",
            ends.len(),
            rollout::MAX_WAVES
        );
    }
    Ok(ends)
}

/// `2` or `10%` of `hosts` (rounded down, as AWS Systems Manager's MaxErrors).
pub fn parse_budget(text: &str, hosts: usize) -> anyhow::Result<usize> {
    let text = text.trim();
    match text.strip_suffix('%') {
        Some(p) => {
            let p: f64 = p
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .with_context(|| format!("`{text}` is not a percentage from 0 to 100"))?;
            Ok(((p / 100.0) * hosts as f64).floor() as usize)
        }
        None => text.parse().with_context(|| {
            format!("`{text}` is neither a count (0 or more) nor a percentage like `10%`")
        }),
    }
}

/// Rewrite execution `id`'s gate, so that hosts waiting for their turn look
/// again (`why` is only for people reading the store).
pub async fn nudge(store: &Store, id: Uuid, why: &str) -> anyhow::Result<()> {
    let note = rollout::GateNote {
        by: "cattle".to_string(),
        why: why.to_string(),
        wave_ended: None,
    };
    Ok(rollout::nudge(store, id, &note).await?)
}

/// Pause (or resume) the rollout of execution `id`: sign a control newer than
/// any before it, then nudge the waiting hosts.
pub async fn control(
    store: &Store,
    id: Uuid,
    key: &SecretKey,
    paused: bool,
) -> anyhow::Result<Control> {
    let manifest = crate::status::manifest(store, id).await?;
    if manifest.rollout.is_none() {
        anyhow::bail!(
            "execution {id} has no rollout: it was published without `--waves`, \
             `--max-errors`, `--window` or `--not-before`; `cattle cancel {id}` stops it"
        );
    }
    let key_name = keys::rollout_control(id);
    // Only a control this key signed says which seq is the last: anyone may
    // have written any number there.
    let before = match read_envelope(store, id).await? {
        Some(envelope) => envelope
            .verify_control(&TrustedKeys::only(key.public()))
            .map_or(0, |(c, _)| c.seq),
        None => 0,
    };
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let control = Control {
        format: FORMAT,
        execution: id,
        paused,
        seq: now_ms.max(before.saturating_add(1)),
        by: crate::publish::publisher(),
        at: cattle_core::now_rfc3339(),
    };
    let envelope = key.sign_control(&control);
    store
        .put(
            &key_name,
            serde_json::to_vec_pretty(&envelope).expect("serializes"),
            Condition::Always,
        )
        .await?;
    nudge(store, id, if paused { "paused" } else { "resumed" }).await?;
    Ok(control)
}

/// The rollout's control as the store has it, unverified (agents verify it).
async fn read_control(store: &Store, id: Uuid) -> anyhow::Result<Option<Control>> {
    let key = keys::rollout_control(id);
    let Some(envelope) = read_envelope(store, id).await? else {
        return Ok(None);
    };
    let control = envelope
        .control()
        .map_err(|e| anyhow::anyhow!("`{}` is not a rollout control: {e}", store.location(&key)))?;
    Ok(Some(control))
}

/// The control's envelope, if there is one.
async fn read_envelope(store: &Store, id: Uuid) -> anyhow::Result<Option<Envelope>> {
    let key = keys::rollout_control(id);
    let Some(object) = store.get(&key, MAX_SMALL_DOCUMENT).await? else {
        return Ok(None);
    };
    let envelope = serde_json::from_slice::<Envelope>(&object.bytes)
        .map_err(|e| anyhow::anyhow!("`{}` is not a rollout control: {e}", store.location(&key)))?;
    Ok(Some(envelope))
}

/// The largest control read.
const MAX_SMALL_DOCUMENT: u64 = 64 * 1024;

/// One wave, as `cattle rollout status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Wave {
    pub number: usize,
    pub hosts: usize,
    pub done: usize,
    pub error: usize,
    pub halted: usize,
    pub cancelled: usize,
    pub running: usize,
    pub waiting: usize,
    /// PENDING or UNREADABLE: the host has not said.
    pub other: usize,
    /// `ended`, `running`, `waiting` or `halted`.
    pub state: &'static str,
    /// When its last host ended (by the store's clock), once all have.
    pub ended: Option<String>,
}

/// `cattle rollout status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: &'static str,
    pub execution: Uuid,
    pub rollout: Rollout,
    pub waves: Vec<Wave>,
    pub failed: usize,
    /// `None`: no budget.
    pub max_errors: Option<usize>,
    pub halted: bool,
    /// `paused by … at …`, or why the control cannot be read.
    pub paused: Option<String>,
    /// What the first hosts that have not started wait for, as they would
    /// decide now (by this machine's view of the store; windows are the
    /// hosts' own and are not evaluated here). Absent once every wave runs.
    pub next: Option<String>,
}

impl Status {
    /// Exit 3 when the rollout halted or a host failed.
    pub fn exit_code(&self) -> u8 {
        if self.halted || self.failed > 0 {
            crate::exit::HOSTS_FAILED
        } else {
            crate::exit::SUCCESS
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializes")
    }

    /// The table and the lines under it.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let r = &self.rollout;
        let _ = writeln!(
            out,
            "execution {}: {}, {}{}{}",
            self.execution,
            cattle_core::count(self.waves.len() as u64, "wave"),
            match self.max_errors {
                None => "no error budget".to_string(),
                Some(max) => format!("{} of {max} errors allowed", self.failed),
            },
            if r.bake_secs > 0 {
                format!(
                    ", bake {}",
                    humantime::format_duration(Duration::from_secs(r.bake_secs))
                )
            } else {
                String::new()
            },
            if r.windows.is_empty() {
                String::new()
            } else {
                format!(", windows {}", terminal::line(&r.windows.join(", ")))
            }
        );
        let _ = writeln!(
            out,
            "{:<4}  {:>5}  {:>5}  {:>5}  {:>6}  {:>7}  {:>7}  {:>5}  STATE",
            "WAVE", "HOSTS", "DONE", "ERROR", "HALTED", "RUNNING", "WAITING", "OTHER"
        );
        for w in &self.waves {
            let _ = writeln!(
                out,
                "{:<4}  {:>5}  {:>5}  {:>5}  {:>6}  {:>7}  {:>7}  {:>5}  {}{}",
                w.number,
                w.hosts,
                w.done,
                w.error,
                w.halted,
                w.running,
                w.waiting,
                w.other + w.cancelled,
                w.state,
                w.ended
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            );
        }
        if let Some(paused) = &self.paused {
            let _ = writeln!(out, "paused: {}", terminal::line(paused));
        }
        if let Some(next) = &self.next {
            let _ = writeln!(out, "next: {}", terminal::line(next));
        }
        out
    }
}

/// How far the rollout of `report`'s execution is: its hosts' states, their
/// markers (one listing) and its control.
pub async fn status(store: &Store, report: &Report) -> anyhow::Result<Status> {
    let manifest: &Manifest = &report.manifest;
    let id = manifest.id;
    let Some(rollout) = manifest.rollout.clone() else {
        anyhow::bail!(
            "execution {id} has no rollout: it was published without `--waves`, \
             `--max-errors`, `--window` or `--not-before` (`cattle status {id}` shows its hosts)"
        );
    };
    rollout
        .check(manifest.hosts.len())
        .map_err(|e| anyhow::anyhow!("execution {id}'s rollout is not valid: {e}"))?;
    let prefix = keys::ended_prefix(id);
    let entries = store.list_entries(&prefix).await?;
    let reports = Reports::from_listing(&manifest.hosts, &prefix, &entries);
    let paused = match read_control(store, id).await {
        Ok(Some(c)) if c.paused => Some(format!("by {} at {}", c.by, c.at)),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    let failed = reports.failed().len();
    let halted = rollout.max_errors.is_some_and(|max| failed > max);
    let states: Vec<HostState> = report.hosts.iter().map(|h| h.state).collect();
    let mut waves = Vec::new();
    let mut next = None;
    for k in 0..rollout.waves.len() {
        let range = rollout.wave(k);
        let count = |s: HostState| range.clone().filter(|&i| states.get(i) == Some(&s)).count();
        let ended_all = range.clone().all(|i| reports.get(i).is_some());
        let started = range.clone().any(|i| {
            matches!(states.get(i), Some(HostState::Progress))
                || reports.get(i).is_some_and(|e| e.state != EndState::Halted)
        });
        let state = if ended_all {
            if range
                .clone()
                .all(|i| reports.get(i).is_some_and(|e| e.state == EndState::Halted))
            {
                "halted"
            } else {
                "ended"
            }
        } else if started {
            "running"
        } else if halted {
            "halted"
        } else {
            "waiting"
        };
        if state == "waiting" && next.is_none() {
            let gate = rollout::decide(&rollout::Inputs {
                rollout: &rollout,
                hosts: &manifest.hosts,
                me: range.start,
                reports: &reports,
                paused: paused.clone(),
                now: SystemTime::now(),
                window: WindowState::Open,
            });
            next = Some(match gate {
                Gate::Open if rollout.windows.is_empty() => {
                    format!(
                        "wave {} may start: its hosts start at their next poll",
                        k + 1
                    )
                }
                Gate::Open => format!(
                    "wave {} may start, each host inside its window ({})",
                    k + 1,
                    rollout.windows.join(", ")
                ),
                Gate::Wait { reason, .. } | Gate::Halt { reason } => reason,
            });
        }
        let ended = if ended_all {
            range
                .clone()
                .filter_map(|i| reports.get(i).and_then(|e| e.at))
                .max()
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        } else {
            None
        };
        waves.push(Wave {
            number: k + 1,
            hosts: range.len(),
            done: count(HostState::Done),
            error: count(HostState::Error),
            halted: count(HostState::Halted),
            cancelled: count(HostState::Cancelled),
            running: count(HostState::Progress),
            waiting: count(HostState::Waiting),
            other: count(HostState::Pending) + count(HostState::Unreadable),
            state,
            ended,
        });
    }
    Ok(Status {
        schema: "cattle.rollout.v1",
        execution: id,
        max_errors: rollout.max_errors,
        rollout,
        waves,
        failed,
        halted,
        paused,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_are_where_each_ends_in_counts_or_percentages() {
        assert_eq!(parse_waves("1,10%,50%,100%", 50).unwrap(), [1, 5, 25, 50]);
        // Hosts left after the last wave form one more.
        assert_eq!(parse_waves("1,10%", 50).unwrap(), [1, 5, 50]);
        // A percentage rounds up; a wave that would be empty is dropped.
        assert_eq!(parse_waves("1,10%,100%", 5).unwrap(), [1, 5]);
        assert_eq!(parse_waves("3", 2).unwrap(), [2]);
        for (bad, says) in [
            ("0", "neither a host count"),
            ("10,5", "ends before the wave before it"),
            ("50%,10%", "ends before"),
            ("x", "neither"),
            ("150%", "not a percentage"),
            ("", "neither"),
        ] {
            let e = parse_waves(bad, 50).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_dry_run_shows_each_wave_with_its_first_and_last_host() {
        let hosts: Vec<cattle_core::hosts::HostId> = (1..=6)
            .map(|i| cattle_core::hosts::HostId::new(&format!("web-{i}")).unwrap())
            .collect();
        let rollout = Rollout {
            waves: vec![1, 3, 6],
            max_errors: Some(2),
            bake_secs: 300,
            windows: vec!["Sat 02:00-04:00".to_string()],
            not_before: None,
        };
        assert_eq!(
            describe(&rollout, &hosts),
            "rollout: 3 waves, at most 2 hosts may fail, 5m between waves, inside Sat \
             02:00-04:00\n  wave 1: 1 host (web-1)\n  wave 2: 2 hosts (web-2 … web-3)\n  wave \
             3: 3 hosts (web-4 … web-6)\n"
        );
    }

    #[test]
    fn a_budget_is_a_count_or_a_percentage_rounded_down_as_systems_manager_does() {
        assert_eq!(parse_budget("2", 50).unwrap(), 2);
        assert_eq!(parse_budget("10%", 50).unwrap(), 5);
        assert_eq!(parse_budget("10%", 55).unwrap(), 5);
        assert_eq!(parse_budget("0%", 55).unwrap(), 0);
        assert!(parse_budget("-1", 5).is_err());
        assert!(parse_budget("101%", 5).is_err());
    }

    #[test]
    fn the_flags_become_a_rollout_checked_before_anything_is_uploaded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(plan(&RolloutArgs::default(), 3, now).unwrap(), None);
        let args = RolloutArgs {
            waves: Some("1,50%".to_string()),
            bake: Some(Duration::from_secs(300)),
            not_before: Some("2h".to_string()),
            ..Default::default()
        };
        let r = plan(&args, 10, now).unwrap().unwrap();
        assert_eq!(r.waves, [1, 5, 10]);
        assert_eq!(
            r.max_errors,
            Some(0),
            "with waves, no failure is allowed by default"
        );
        assert_eq!(r.bake_secs, 300);
        assert_eq!(r.not_before(), Some(now + Duration::from_secs(7200)));
        let bake_alone = RolloutArgs {
            bake: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert!(
            plan(&bake_alone, 3, now)
                .unwrap_err()
                .to_string()
                .contains("give `--waves`")
        );
        let windows = RolloutArgs {
            not_before: Some("1970-01-13T02:00:00+01:00".to_string()),
            windows: vec![
                "sat 2:00-04:00".to_string(),
                "Mon-Fri 22:00-02:00 utc".to_string(),
            ],
            ..Default::default()
        };
        let r = plan(&windows, 3, now).unwrap().unwrap();
        assert_eq!((r.waves.as_slice(), r.max_errors), (&[3][..], None));
        assert_eq!(r.not_before.as_deref(), Some("1970-01-13T01:00:00Z"));
        assert_eq!(r.windows, ["Sat 02:00-04:00", "Mon-Fri 22:00-02:00 UTC"]);
        let past = RolloutArgs {
            not_before: Some("1970-01-01T00:00:00Z".to_string()),
            ..Default::default()
        };
        assert!(
            plan(&past, 3, now)
                .unwrap_err()
                .to_string()
                .contains("in the past")
        );
        let bad = RolloutArgs {
            windows: vec!["Sat 02:00".to_string()],
            ..Default::default()
        };
        let e = plan(&bad, 3, now).unwrap_err().to_string();
        assert!(e.contains("expected e.g."), "{e}");
    }
}

//! Rollouts: waves, an error budget, bake times, windows and a start time,
//! chosen at publish, signed in the manifest and enforced by the agents
//! themselves, from what each host reported to the store.
//!
//! There is no orchestrator. Each host's agent decides, before it starts an
//! execution, whether its turn has come ([`decide`]): every host of the
//! earlier waves has ended (its own `ended/<state>/<host>` marker, which under
//! the store's policies only that host can write), no more hosts failed than
//! the budget allows, the last wave before it has baked, and its window is
//! open. Agents waiting for their turn read one small object per poll, the
//! [`crate::keys::gate`], conditionally; whoever may have moved the rollout on
//! (the agent that ended a wave or spent the budget, `cattle rollout`,
//! `cattle cancel`) rewrites it, and only then do the waiting agents list the
//! markers again. The gate's content is never trusted: a forged gate makes
//! agents look, and they find nothing has changed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hosts::HostId;
use crate::store::Entry;

/// At most this many waves.
pub const MAX_WAVES: usize = 100;
/// At most this many maintenance windows.
pub const MAX_WINDOWS: usize = 16;
/// The longest bake `cattle publish` accepts.
pub const MAX_BAKE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How an execution is rolled out, as `cattle publish` signed it in the
/// manifest ([`crate::wire::Manifest::rollout`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Where each wave ends in the manifest's host list, which is in the
    /// hosts file's order: wave `k` is hosts `waves[k - 1]` (0 for the first
    /// wave) up to, not including, `waves[k]`. Strictly increasing; the last is
    /// the number of hosts.
    pub waves: Vec<usize>,
    /// The rollout halts once more hosts than this have failed (ERROR):
    /// hosts that have not started then never start, and report HALTED.
    /// `None`: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<usize>,
    /// How long, in seconds by the store's clock, a wave must have ended
    /// before the next one starts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bake_secs: u64,
    /// Maintenance windows (`crate::window::Window`'s canonical text): hosts
    /// start only inside one of them. Empty: any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// RFC 3339, UTC: no host starts before this time, by the store's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Rollout {
    /// Whether the rollout fits a manifest of `hosts` hosts and stays within
    /// Cattle's bounds; why not otherwise. Agents refuse a manifest whose
    /// rollout does not.
    pub fn check(&self, hosts: usize) -> Result<(), String> {
        if self.waves.is_empty() || self.waves.len() > MAX_WAVES {
            return Err(format!(
                "a rollout has 1 to {MAX_WAVES} waves, not {}",
                self.waves.len()
            ));
        }
        let mut before = 0;
        for (k, &end) in self.waves.iter().enumerate() {
            if end <= before {
                return Err(format!(
                    "wave {} ends at host {end}, not after the wave before it (host {before})",
                    k + 1
                ));
            }
            before = end;
        }
        if before != hosts {
            return Err(format!(
                "the waves cover {before} hosts, but the execution has {hosts}"
            ));
        }
        if self.windows.len() > MAX_WINDOWS {
            return Err(format!("at most {MAX_WINDOWS} windows"));
        }
        if self.bake_secs > MAX_BAKE.as_secs() {
            return Err(format!(
                "a bake of {} is longer than the {} allowed",
                humantime::format_duration(Duration::from_secs(self.bake_secs)),
                humantime::format_duration(MAX_BAKE)
            ));
        }
        if let Some(at) = &self.not_before {
            humantime::parse_rfc3339(at).map_err(|e| format!("not before `{at}`: {e}"))?;
        }
        Ok(())
    }

    /// The wave (0-based) of the host at `index` in the manifest's host list.
    pub fn wave_of(&self, index: usize) -> usize {
        self.waves.partition_point(|&end| end <= index)
    }

    /// The host indexes of wave `k` (0-based).
    pub fn wave(&self, k: usize) -> std::ops::Range<usize> {
        let start = if k == 0 { 0 } else { self.waves[k - 1] };
        start..self.waves[k]
    }

    /// `not_before`, parsed (checked by [`Rollout::check`]).
    pub fn not_before(&self) -> Option<SystemTime> {
        self.not_before
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
    }
}

/// How a host's part in a rolled-out execution ended, as its own marker
/// ([`crate::keys::ended`]) says. Ordered by weight: a host with two markers
/// counts as the heavier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndState {
    Done,
    Cancelled,
    Halted,
    Error,
}

impl EndState {
    pub const ALL: [EndState; 4] = [
        EndState::Done,
        EndState::Cancelled,
        EndState::Halted,
        EndState::Error,
    ];

    /// The word in the marker's key.
    pub fn as_str(self) -> &'static str {
        match self {
            EndState::Done => "done",
            EndState::Cancelled => "cancelled",
            EndState::Halted => "halted",
            EndState::Error => "error",
        }
    }

    pub fn parse(word: &str) -> Option<EndState> {
        EndState::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// A host's marker: how and when (by the store's clock) it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub state: EndState,
    pub at: Option<SystemTime>,
}

/// What the hosts of one execution reported through their markers, by their
/// index in the manifest's host list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reports {
    ended: Vec<Option<Ended>>,
}

impl Reports {
    /// From one listing of [`crate::keys::ended_prefix`] (`prefix`). Keys that
    /// are not `<state>/<host>` of a host of `hosts` are ignored: anyone who can
    /// write to the bucket may have put them there, and they count for nothing.
    pub fn from_listing(hosts: &[HostId], prefix: &str, entries: &[Entry]) -> Reports {
        let index: HashMap<&str, usize> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let mut ended: Vec<Option<Ended>> = vec![None; hosts.len()];
        for entry in entries {
            let Some(rest) = entry.key.strip_prefix(prefix) else {
                continue;
            };
            let Some((word, host)) = rest.split_once('/') else {
                continue;
            };
            let (Some(state), Some(&i)) = (EndState::parse(word), index.get(host)) else {
                continue;
            };
            let this = Ended {
                state,
                at: entry.modified,
            };
            ended[i] = Some(match ended[i] {
                Some(other) if other.state > state => other,
                Some(other) if other.state == state => Ended {
                    state,
                    at: other.at.max(this.at),
                },
                _ => this,
            });
        }
        Reports { ended }
    }

    /// How the host at `index` ended, if it has.
    pub fn get(&self, index: usize) -> Option<Ended> {
        self.ended.get(index).copied().flatten()
    }

    /// The indexes of the hosts that failed, in host order.
    pub fn failed(&self) -> Vec<usize> {
        (0..self.ended.len())
            .filter(|&i| self.get(i).is_some_and(|e| e.state == EndState::Error))
            .collect()
    }
}

/// Whether the host's maintenance window is open now, as the agent worked out
/// from the signed windows and the host's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    Open,
    /// Why the host waits, and when the next window opens, converted to the
    /// store's clock like every other time [`decide`] compares.
    Closed {
        reason: String,
        opens: Option<SystemTime>,
    },
}

/// What an agent does about a rolled-out execution it has not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Its turn: start it.
    Open,
    /// Not yet, for `reason`. Look again when the gate changes, or at `until`
    /// (by the store's clock) when time alone will change the answer.
    Wait {
        reason: String,
        until: Option<SystemTime>,
    },
    /// Never: the error budget is spent. Report HALTED with `reason`.
    Halt { reason: String },
}

/// Everything [`decide`] looks at.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub rollout: &'a Rollout,
    /// The manifest's host list.
    pub hosts: &'a [HostId],
    /// This host's index in it.
    pub me: usize,
    pub reports: &'a Reports,
    /// Why the rollout is paused (`cattle rollout pause`), if it is.
    pub paused: Option<String>,
    /// Now, by the store's clock (the clock of every marker).
    pub now: SystemTime,
    pub window: WindowState,
}

/// Whether the host at `me` may start now. In this order: a spent budget
/// halts it (even in the first wave: a host that comes late does not add to
/// the failures); a pause holds it; then it waits for every earlier wave to
/// have ended, the last of them to have baked, the start time and its window.
pub fn decide(inputs: &Inputs<'_>) -> Gate {
    let rollout = inputs.rollout;
    let failed = inputs.reports.failed();
    if let Some(max) = rollout.max_errors
        && failed.len() > max
    {
        return Gate::Halt {
            reason: format!(
                "the rollout halted: its error budget is spent: {} failed ({}), {} may \
                 (--max-errors {max})",
                crate::count(failed.len() as u64, "host"),
                names(inputs.hosts, &failed, 3),
                if max == 0 {
                    "none".to_string()
                } else {
                    format!("at most {max}")
                }
            ),
        };
    }
    if let Some(why) = &inputs.paused {
        return Gate::Wait {
            reason: format!("the rollout is paused: {why}"),
            until: None,
        };
    }
    let mine = rollout.wave_of(inputs.me);
    let waves = rollout.waves.len();
    for k in 0..mine {
        let wave = rollout.wave(k);
        let open: Vec<usize> = wave
            .clone()
            .filter(|&i| inputs.reports.get(i).is_none())
            .collect();
        if !open.is_empty() {
            return Gate::Wait {
                reason: format!(
                    "wave {} of {waves} starts once wave {} has ended: {} of {} ended; waiting \
                     for {}",
                    mine + 1,
                    k + 1,
                    wave.len() - open.len(),
                    crate::count(wave.len() as u64, "host"),
                    names(inputs.hosts, &open, 3)
                ),
                until: None,
            };
        }
    }
    if mine > 0 && rollout.bake_secs > 0 {
        let ended = rollout
            .wave(mine - 1)
            .filter_map(|i| inputs.reports.get(i).and_then(|e| e.at))
            .max();
        // A store that does not date its listings: the bake starts now.
        let baked = ended.unwrap_or(inputs.now) + Duration::from_secs(rollout.bake_secs);
        if inputs.now < baked {
            return Gate::Wait {
                reason: format!(
                    "wave {} of {waves} starts once wave {} has baked for {}, at {}",
                    mine + 1,
                    mine,
                    humantime::format_duration(Duration::from_secs(rollout.bake_secs)),
                    humantime::format_rfc3339_seconds(baked)
                ),
                until: Some(baked),
            };
        }
    }
    if let Some(at) = rollout.not_before()
        && inputs.now < at
    {
        return Gate::Wait {
            reason: format!(
                "not before {} (--not-before)",
                humantime::format_rfc3339_seconds(at)
            ),
            until: Some(at),
        };
    }
    if let WindowState::Closed { reason, opens } = &inputs.window {
        return Gate::Wait {
            reason: reason.clone(),
            until: *opens,
        };
    }
    Gate::Open
}

/// What the writer of a gate ([`crate::keys::gate`]) says it did, for the
/// hosts waiting for their turn. Never trusted: at most it spares a host a
/// look at the markers that could not concern it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateNote {
    /// Who wrote it: a host ID, or `cattle`.
    pub by: String,
    /// Why, for people reading the store.
    pub why: String,
    /// The wave (0-based) whose last host the writer was: only hosts of the
    /// wave after it need to look. Absent when everyone must (a spent budget,
    /// a pause or resume, a cancel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_ended: Option<usize>,
}

impl GateNote {
    /// Whether a host of wave `wave` waiting for its turn can let this gate
    /// go by without looking: it says a wave ended that is not the one
    /// before `wave`. Anything else, a gate that is not a note included, is
    /// looked into. A forged note can thus delay a host (until it looks
    /// again anyway), never start one.
    pub fn concerns_only_others(bytes: &[u8], wave: usize) -> bool {
        serde_json::from_slice::<GateNote>(bytes)
            .ok()
            .and_then(|note| note.wave_ended)
            .is_some_and(|ended| ended + 1 < wave)
    }
}

/// Rewrite execution `id`'s gate with `note`, so that the hosts waiting for
/// their turn (those it concerns) decide again.
pub async fn nudge(
    store: &crate::store::Store,
    id: Uuid,
    note: &GateNote,
) -> Result<(), crate::store::StoreError> {
    let mut body = serde_json::to_value(note).expect("serializes");
    body["at"] = serde_json::Value::String(crate::now_rfc3339());
    store
        .put(
            &crate::keys::gate(id),
            body.to_string().into_bytes(),
            crate::store::Condition::Always,
        )
        .await?;
    Ok(())
}

/// `a, b, c and 4 more`: the first `shown` of `indexes`' hosts.
fn names(hosts: &[HostId], indexes: &[usize], shown: usize) -> String {
    let mut text = indexes
        .iter()
        .take(shown)
        .map(|&i| hosts[i].as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if indexes.len() > shown {
        text.push_str(&format!(" and {} more", indexes.len() - shown));
    }
    text
}

/// `cattle rollout pause|resume`: signed like a manifest, under a context of
/// its own (see `signing`), so no other signed document verifies as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    pub format: u32,
    pub execution: Uuid,
    pub paused: bool,
    /// Increases with every control written for the execution (milliseconds
    /// since the epoch, or one more than the last): an agent that has seen a
    /// control ignores an older one written back over it.
    pub seq: u64,
    /// `user@machine` and RFC 3339 time, for people.
    pub by: String,
    pub at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<HostId> {
        (0..n)
            .map(|i| HostId::new(&format!("h{i:02}")).unwrap())
            .collect()
    }

    fn rollout(waves: &[usize], max_errors: Option<usize>, bake_secs: u64) -> Rollout {
        Rollout {
            waves: waves.to_vec(),
            max_errors,
            bake_secs,
            windows: Vec::new(),
            not_before: None,
        }
    }

    const PREFIX: &str = "executions/x/ended/";

    fn entry(key: &str, at: u64) -> Entry {
        Entry {
            key: format!("{PREFIX}{key}"),
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(at)),
            etag: String::new(),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn gate(r: &Rollout, hosts: &[HostId], me: usize, entries: &[Entry], now: u64) -> Gate {
        decide(&Inputs {
            rollout: r,
            hosts,
            me,
            reports: &Reports::from_listing(hosts, PREFIX, entries),
            paused: None,
            now: at(now),
            window: WindowState::Open,
        })
    }

    #[test]
    fn a_gate_that_says_an_earlier_wave_ended_can_be_let_go_by_and_nothing_else() {
        let note = |wave_ended| {
            serde_json::to_vec(&GateNote {
                by: "h01".to_string(),
                why: "ended its wave".to_string(),
                wave_ended,
            })
            .unwrap()
        };
        // Wave 0 ended: wave 1 looks, wave 2 need not.
        assert!(!GateNote::concerns_only_others(&note(Some(0)), 1));
        assert!(GateNote::concerns_only_others(&note(Some(0)), 2));
        assert!(!GateNote::concerns_only_others(&note(Some(1)), 2));
        // A later wave said to have ended, no wave, or not a note: look.
        assert!(!GateNote::concerns_only_others(&note(Some(5)), 2));
        assert!(!GateNote::concerns_only_others(&note(None), 2));
        assert!(!GateNote::concerns_only_others(b"{}", 2));
        assert!(!GateNote::concerns_only_others(b"\xff", 2));
    }

    #[test]
    fn hosts_fall_into_the_waves_in_host_order() {
        let r = rollout(&[1, 3, 10], None, 0);
        let waves: Vec<usize> = (0..10).map(|i| r.wave_of(i)).collect();
        assert_eq!(waves, [0, 1, 1, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(r.wave(1), 1..3);
        assert!(r.check(10).is_ok());
        assert!(r.check(11).unwrap_err().contains("cover 10 hosts"));
        assert!(rollout(&[2, 2, 3], None, 0).check(3).is_err());
        assert!(rollout(&[], None, 0).check(0).is_err());
    }

    #[test]
    fn the_first_wave_starts_at_once_and_the_next_only_once_it_has_ended() {
        let hosts = hosts(4);
        let r = rollout(&[1, 2, 4], Some(0), 0);
        assert_eq!(gate(&r, &hosts, 0, &[], 0), Gate::Open);
        let Gate::Wait { reason, until } = gate(&r, &hosts, 1, &[], 0) else {
            panic!()
        };
        assert_eq!(
            reason,
            "wave 2 of 3 starts once wave 1 has ended: 0 of 1 host ended; waiting for h00"
        );
        assert_eq!(until, None);
        let done = [entry("done/h00", 5)];
        assert_eq!(gate(&r, &hosts, 1, &done, 6), Gate::Open);
        // Wave 3 waits for wave 2, not just wave 1.
        let Gate::Wait { reason, .. } = gate(&r, &hosts, 3, &done, 6) else {
            panic!()
        };
        assert!(
            reason.starts_with("wave 3 of 3 starts once wave 2"),
            "{reason}"
        );
    }

    #[test]
    fn a_failure_beyond_the_budget_halts_every_host_that_has_not_started() {
        let hosts = hosts(10);
        let r = rollout(&[1, 5, 10], Some(2), 0);
        let two = [
            entry("done/h00", 1),
            entry("error/h01", 2),
            entry("error/h02", 2),
        ];
        // Two failures are within a budget of two: wave 2's others go on.
        assert_eq!(gate(&r, &hosts, 3, &two, 3), Gate::Open);
        let three = [two.as_slice(), &[entry("error/h03", 3)]].concat();
        for me in [4, 5, 9] {
            let Gate::Halt { reason } = gate(&r, &hosts, me, &three, 4) else {
                panic!()
            };
            assert_eq!(
                reason,
                "the rollout halted: its error budget is spent: 3 hosts failed (h01, h02, h03), \
                 at most 2 may (--max-errors 2)"
            );
        }
        // A canary failing with no budget halts everything after it.
        let r = rollout(&[1, 10], Some(0), 0);
        let Gate::Halt { reason } = gate(&r, &hosts, 5, &[entry("error/h00", 1)], 2) else {
            panic!()
        };
        assert!(reason.contains("1 host failed (h00), none may"), "{reason}");
    }

    #[test]
    fn a_wave_bakes_from_its_last_host_ending_by_the_store_clock() {
        let hosts = hosts(3);
        let r = rollout(&[2, 3], None, 60);
        let ended = [entry("done/h00", 100), entry("done/h01", 130)];
        let Gate::Wait { reason, until } = gate(&r, &hosts, 2, &ended, 150) else {
            panic!()
        };
        assert_eq!(until, Some(at(190)));
        assert!(
            reason.contains("has baked for 1m, at 1970-01-01T00:03:10Z"),
            "{reason}"
        );
        assert_eq!(gate(&r, &hosts, 2, &ended, 190), Gate::Open);
    }

    #[test]
    fn markers_of_strangers_or_in_other_shapes_count_for_nothing() {
        let hosts = hosts(2);
        let r = rollout(&[1, 2], Some(0), 0);
        let junk = [
            entry("done/stranger", 1),
            entry("done", 1),
            entry("finished/h00", 1),
            entry("error/h00/x", 1),
            entry("error/h00x", 1),
            Entry {
                key: "executions/y/ended/done/h00".to_string(),
                modified: None,
                etag: String::new(),
            },
        ];
        assert!(matches!(gate(&r, &hosts, 1, &junk, 1), Gate::Wait { .. }));
        // The heavier of two markers counts.
        let both = [entry("done/h00", 1), entry("error/h00", 1)];
        assert!(matches!(gate(&r, &hosts, 1, &both, 1), Gate::Halt { .. }));
    }

    #[test]
    fn a_pause_a_start_time_and_a_closed_window_hold_a_host() {
        let hosts = hosts(1);
        let mut r = rollout(&[1], None, 0);
        r.not_before = Some("1970-01-01T00:10:00Z".to_string());
        let reports = Reports::default();
        let mut inputs = Inputs {
            rollout: &r,
            hosts: &hosts,
            me: 0,
            reports: &reports,
            paused: Some("by ops@laptop".to_string()),
            now: at(0),
            window: WindowState::Closed {
                reason: "outside its window".to_string(),
                opens: Some(at(900)),
            },
        };
        let wait = |g: Gate| match g {
            Gate::Wait { reason, until } => (reason, until),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            wait(decide(&inputs)),
            ("the rollout is paused: by ops@laptop".to_string(), None)
        );
        inputs.paused = None;
        assert_eq!(
            wait(decide(&inputs)),
            (
                "not before 1970-01-01T00:10:00Z (--not-before)".to_string(),
                Some(at(600))
            )
        );
        inputs.now = at(600);
        assert_eq!(
            wait(decide(&inputs)),
            ("outside its window".to_string(), Some(at(900)))
        );
        inputs.window = WindowState::Open;
        assert_eq!(decide(&inputs), Gate::Open);
    }
}

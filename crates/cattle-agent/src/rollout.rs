//! The agent's part in a rollout (`cattle_core::rollout`): before it starts a
//! rolled-out execution it decides from what the store shows whether its turn
//! has come, waits (one conditional read of the gate per poll) or halts; once
//! it has ended one it writes its own marker and, when that moved the rollout
//! on, the gate.

use std::path::Path;
use std::time::{Duration, SystemTime};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::rollout::{self, EndState, Gate, Reports, Rollout, WindowState};
use cattle_core::signing::TrustedKeys;
use cattle_core::store::{Condition, Fetched, Store};
use cattle_core::window::{self, Window};
use cattle_core::wire::{Envelope, HostStatus, Manifest, State};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AgentError;

/// Largest gate or control document read.
pub const MAX_SMALL_DOCUMENT: u64 = 64 * 1024;

/// What this host needs to know of a rolled-out execution once it has ended
/// it, kept in `<execution dir>/ROLLOUT` from the moment it is admitted (or
/// refused): its marker is written whatever the outcome, and the gate only
/// when it ended its wave or was one of the failures that spent the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// This host's wave (0-based).
    pub index: usize,
    /// The hosts of this host's wave, itself included.
    pub wave: Vec<HostId>,
    /// There are waves after it.
    pub later_waves: bool,
    pub max_errors: Option<usize>,
}

impl Part {
    /// `host`'s part in `manifest`'s rollout; `None` without one.
    pub fn of(manifest: &Manifest, host: &HostId) -> Option<Part> {
        let rollout = manifest.rollout.as_ref()?;
        rollout.check(manifest.hosts.len()).ok()?;
        let me = manifest.hosts.iter().position(|h| h == host)?;
        let k = rollout.wave_of(me);
        Some(Part {
            index: k,
            wave: manifest.hosts[rollout.wave(k)].to_vec(),
            later_waves: k + 1 < rollout.waves.len(),
            max_errors: rollout.max_errors,
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(self).expect("serializes");
        std::fs::create_dir_all(dir)
            .and_then(|()| crate::local::write_atomic(dir, crate::local::ROLLOUT, &bytes))
            .map_err(|e| AgentError::local(dir.join(crate::local::ROLLOUT), e))
    }

    pub fn load(dir: &Path) -> Option<Part> {
        let bytes = std::fs::read(dir.join(crate::local::ROLLOUT)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A host that waits for its turn, as [`decide`] left it.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// What it waits for, for its status and log.
    pub reason: String,
    /// When time alone changes the answer (by the store's clock).
    pub until: Option<SystemTime>,
    /// The gate's ETag when the decision was made (`None`: no gate): the host
    /// looks again once it differs.
    pub gate: Option<String>,
    /// This host's wave (0-based): a gate that says another wave ended does
    /// not concern it ([`rollout::GateNote::concerns_only_others`]).
    pub wave: usize,
}

/// What the host does about rolled-out execution `manifest` now.
#[derive(Debug)]
pub enum Turn {
    Start,
    Wait(Waiting),
    Halt(String),
}

/// Decide for `host`: read the gate first (so that any change made after the
/// reads below changes its ETag), then the rollout's control and one listing
/// of the hosts' markers.
pub async fn decide(
    store: &Store,
    trust: &crate::Trust,
    host: &HostId,
    manifest: &Manifest,
    rollout: &Rollout,
    seen_seq: &mut u64,
) -> Result<Turn, AgentError> {
    let id = manifest.id;
    let gate = match store
        .get_if_changed(&keys::gate(id), None, MAX_SMALL_DOCUMENT)
        .await
    {
        Ok(Fetched::Found(object)) => Some(object.etag),
        Ok(_) => None,
        // Too large or unreadable: only a hint; the listing below decides.
        Err(e) if !e.is_transient() => None,
        Err(e) => return Err(e.into()),
    };
    let paused = paused(store, trust, id, seen_seq).await?;
    let prefix = keys::ended_prefix(id);
    let entries = store.list_entries(&prefix).await?;
    let reports = Reports::from_listing(&manifest.hosts, &prefix, &entries);
    let Some(me) = manifest.hosts.iter().position(|h| h == host) else {
        return Ok(Turn::Halt(format!("host `{host}` is not in the rollout")));
    };
    let local = SystemTime::now();
    let now = to_store_clock(store, local);
    let window = window_state(rollout, local, |t| to_store_clock(store, t));
    let window = match window {
        Ok(w) => w,
        Err(e) => return Ok(Turn::Halt(format!("its maintenance window: {e}"))),
    };
    Ok(
        match rollout::decide(&rollout::Inputs {
            rollout,
            hosts: &manifest.hosts,
            me,
            reports: &reports,
            paused,
            now,
            window,
        }) {
            Gate::Open => Turn::Start,
            Gate::Wait { reason, until } => Turn::Wait(Waiting {
                reason,
                until,
                gate,
                wave: rollout.wave_of(me),
            }),
            Gate::Halt { reason } => Turn::Halt(reason),
        },
    )
}

/// Now by the store's clock, as its last answer dated it.
pub fn store_now(store: &Store) -> SystemTime {
    to_store_clock(store, SystemTime::now())
}

/// `local`, a time by this host's clock, by the store's.
fn to_store_clock(store: &Store, local: SystemTime) -> SystemTime {
    let offset = store.clock_offset().unwrap_or(0);
    let by = Duration::from_secs(offset.unsigned_abs());
    if offset >= 0 { local + by } else { local - by }
}

/// Whether the windows are open at `local` (this host's clock) in this
/// host's time zone, and if not when the next opens, converted by
/// `to_store`. A time zone that cannot be read keeps the host waiting: its
/// windows cannot be told.
fn window_state(
    rollout: &Rollout,
    local: SystemTime,
    to_store: impl Fn(SystemTime) -> SystemTime,
) -> Result<WindowState, String> {
    if rollout.windows.is_empty() {
        return Ok(WindowState::Open);
    }
    let windows = rollout
        .windows
        .iter()
        .map(|w| w.parse::<Window>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let zone = match window::local_zone() {
        Ok(zone) => zone,
        Err(e) => {
            return Ok(WindowState::Closed {
                reason: format!("waiting: this host's time zone cannot be read ({e})"),
                opens: None,
            });
        }
    };
    if window::open(&windows, local, &zone) {
        return Ok(WindowState::Open);
    }
    Ok(WindowState::Closed {
        reason: window::waiting_reason(&windows, None, local, &zone)
            .unwrap_or_else(|| "waiting for its window".to_string()),
        opens: window::next_open(&windows, local, &zone).map(to_store),
    })
}

/// Why the rollout is paused, if it is: its control says so, or cannot be
/// trusted (a control that does not verify holds the rollout: only the
/// signing key can pause and resume). A control older than one already seen
/// (written back over a newer one), or none where this agent saw one, holds
/// it too.
async fn paused(
    store: &Store,
    trust: &crate::Trust,
    id: Uuid,
    seen_seq: &mut u64,
) -> Result<Option<String>, AgentError> {
    let key = keys::rollout_control(id);
    let object = match store.get(&key, MAX_SMALL_DOCUMENT).await {
        Ok(Some(object)) => object,
        // Gone after this host saw one: deleting a pause must not resume.
        Ok(None) if *seen_seq > 0 => {
            return Ok(Some(format!(
                "its control `{}` was removed after this host read it; `cattle rollout \
                 pause` or `resume` writes a new one",
                store.location(&key)
            )));
        }
        Ok(None) => return Ok(None),
        Err(e) if !e.is_transient() => {
            return Ok(Some(format!(
                "its control `{}` cannot be read: {e}",
                store.location(&key)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let control = serde_json::from_slice::<Envelope>(&object.bytes)
        .map_err(|e| e.to_string())
        .and_then(|envelope| verify(&envelope, &trust.keys, trust.allow_unsigned));
    let control = match control {
        Ok(control) if control.execution == id => control,
        Ok(control) => {
            return Ok(Some(format!(
                "its control `{}` is for execution {}",
                store.location(&key),
                control.execution
            )));
        }
        Err(e) => {
            return Ok(Some(format!(
                "its control `{}` is not signed by a trusted key ({e}); `cattle rollout pause` \
                 or `resume` with the signing key writes a new one",
                store.location(&key)
            )));
        }
    };
    if control.seq < *seen_seq {
        return Ok(Some(format!(
            "its control `{}` is older than one this host has seen (a replay?); `cattle rollout \
             resume` writes a new one",
            store.location(&key)
        )));
    }
    *seen_seq = control.seq;
    Ok(control.paused.then(|| {
        format!(
            "by {} at {} (`cattle rollout resume`)",
            control.by, control.at
        )
    }))
}

fn verify(
    envelope: &Envelope,
    keys: &TrustedKeys,
    allow_unsigned: bool,
) -> Result<rollout::Control, String> {
    match envelope.verify_control(keys) {
        Ok((control, _)) => Ok(control),
        Err(_) if allow_unsigned && envelope.signatures.is_empty() => {
            envelope.control().map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The status a waiting host shows: WAITING, and why.
pub fn waiting_status(host: &HostId, manifest: &Manifest, reason: &str) -> HostStatus {
    HostStatus {
        steps: manifest.steps,
        waiting: Some(reason.to_string()),
        ..crate::report::first_status(host, manifest.id, State::Waiting)
    }
}

/// Once this host's final status of execution `id` is in the store: its own
/// marker, then the gate when this host ended its wave (and waves follow) or
/// was among the first failures beyond the budget. Either may be written
/// twice (a delivery retried): both are idempotent.
pub async fn ended(
    store: &Store,
    host: &HostId,
    id: Uuid,
    state: State,
    part: &Part,
) -> Result<(), AgentError> {
    let end = match state {
        State::Done => EndState::Done,
        State::Error => EndState::Error,
        State::Cancelled => EndState::Cancelled,
        State::Halted => EndState::Halted,
        State::Pending | State::Progress | State::Waiting => return Ok(()),
    };
    store
        .put(
            &keys::ended(id, end.as_str(), host),
            Vec::new(),
            Condition::Always,
        )
        .await?;
    // A halted host moves nothing on: the failure that spent the budget did.
    if end == EndState::Halted {
        return Ok(());
    }
    let prefix = keys::ended_prefix(id);
    let entries = store.list_entries(&prefix).await?;
    let reports = Reports::from_listing(&part.wave, &prefix, &entries);
    let wave_ended = part.later_waves && (0..part.wave.len()).all(|i| reports.get(i).is_some());
    let spent = end == EndState::Error && among_first_failures(&entries, &prefix, host, part);
    if wave_ended || spent {
        let why = if spent {
            "spent the error budget"
        } else {
            "ended its wave"
        };
        let note = rollout::GateNote {
            by: host.to_string(),
            why: why.to_string(),
            // Everyone looks at a spent budget; only the next wave at its turn.
            wave_ended: (!spent).then_some(part.index),
        };
        rollout::nudge(store, id, &note).await?;
        tracing::info!(execution = %id, "{why}: told the hosts waiting for their turn");
    }
    Ok(())
}

/// Whether the failures the listing shows are beyond the budget and this
/// host's is among the first `max_errors + 1` of them (by the store's time,
/// then name): the host whose failure spent the budget sees itself there,
/// and later ones do not write the gate again.
fn among_first_failures(
    entries: &[cattle_core::store::Entry],
    prefix: &str,
    host: &HostId,
    part: &Part,
) -> bool {
    let Some(max) = part.max_errors else {
        return false;
    };
    let error = format!("{prefix}{}/", EndState::Error.as_str());
    let mut failures: Vec<(Option<SystemTime>, &str)> = entries
        .iter()
        .filter_map(|e| {
            let name = e.key.strip_prefix(&error)?;
            HostId::new(name).ok()?;
            Some((e.modified, name))
        })
        .collect();
    if failures.len() <= max {
        return false;
    }
    failures.sort();
    failures
        .iter()
        .take(max + 1)
        .any(|(_, name)| *name == host.as_str())
}

//! The agent's local record of executions, one directory each, as the
//! original tool kept them:
//!
//! ```text
//! <state-dir>/executions/<id>/config/       the verified, unpacked bundle
//! <state-dir>/executions/<id>/STATUS        PROGRESS, DONE, ERROR or CANCELLED
//! <state-dir>/executions/<id>/log/<n>       timestamped log of the run, in parts of 1 MiB
//!                                           (00000000, 00000001, …; see `log_parts`)
//! <state-dir>/executions/<id>/status.json   the last status document
//! <state-dir>/executions/<id>/JOURNAL       the step to run next (or in flight) and its attempt under way
//! <state-dir>/executions/<id>/REBOOT        boot ID when a reboot step asked for a reboot
//! <state-dir>/executions/<id>/SENT          what the store has of the log (see `deliver`)
//! <state-dir>/executions/<id>/.delivered    final status, whole log and DONE marker are in the store
//! <state-dir>/executions/<id>/.foreign      (agents before host leases) another agent claimed it; nothing is uploaded
//! ```
//!
//! A directory whose STATUS is DONE, ERROR or CANCELLED is finished and never run again.
//!
//! `<state-dir>/APPLIED` records what this host has started ([`Applied`]), so
//! that an execution held back and offered later is refused (rollback protection).

use std::io::Write;
use std::path::{Path, PathBuf};

use cattle_core::wire::State;
use uuid::Uuid;

pub const CONFIG_DIR: &str = "config";
pub const STATUS_FILE: &str = "STATUS";
/// The log's parts, named as in the store.
pub const LOG_DIR: &str = "log";
/// What the store has of the log, so that a restarted agent does not send it again.
pub const SENT: &str = "SENT";
pub const STATUS_JSON: &str = "status.json";
pub const DELIVERED: &str = ".delivered";
/// The boot ID when a `reboot` step asked for a reboot.
pub const REBOOT: &str = "REBOOT";
/// Written by agents before host leases when another agent had claimed the
/// execution: such a directory is never delivered.
pub const FOREIGN: &str = ".foreign";
pub const JOURNAL: &str = "JOURNAL";
/// A rolled-out execution's wave and budget, for its end ([`crate::rollout::Part`]).
pub const ROLLOUT: &str = "ROLLOUT";
/// In the state directory: what this host has started ([`Applied`]).
pub const APPLIED: &str = "APPLIED";

/// What this host has started, for rollback protection (`<state-dir>/APPLIED`).
///
/// Executions run in the order of their signed versions, and each manifest
/// carries a floor: every execution of the store up to it had reached all its
/// hosts when it was signed. Once a host has started an execution, one at or
/// below its floor offered afterwards was held back from this host: a rollback,
/// refused. One above the floor but older than what the host started (published
/// at the same time, addressed late) still runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// Executions with a version up to this are refused.
    pub floor: u64,
    /// The started execution whose floor that is, for messages.
    pub floor_of: Option<Uuid>,
    /// Executions started here with a version above `floor`, in the order they started.
    pub started: Vec<Started>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Started {
    pub version: u64,
    pub id: Uuid,
}

impl Applied {
    /// Whether this host started execution `id`.
    pub fn has_started(&self, id: Uuid) -> bool {
        self.started.iter().any(|s| s.id == id)
    }

    /// Record that this host starts execution `id` of `version` and `floor`.
    pub fn start(&mut self, id: Uuid, version: u64, floor: u64) {
        if floor > self.floor {
            self.floor = floor;
            self.floor_of = Some(id);
        }
        if !self.has_started(id) {
            self.started.push(Started { version, id });
        }
        let kept = self.floor;
        self.started.retain(|s| s.version > kept || s.id == id);
    }
}

/// What this host has started; empty if it has started nothing yet.
///
/// An unreadable record is an error, not "nothing applied yet": forgetting it
/// would let an older execution run again.
pub fn read_applied(state_dir: &Path) -> std::io::Result<Applied> {
    let path = state_dir.join(APPLIED);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Applied::default()),
        Err(e) => return Err(e),
    };
    if let Ok(applied) = serde_json::from_str::<Applied>(&text) {
        return Ok(applied);
    }
    // Agents before floors kept `<version> <execution-id>` of the last
    // execution started, and refused every version up to it.
    let mut parts = text.split_whitespace();
    match (
        parts.next().and_then(|v| v.parse::<u64>().ok()),
        parts.next().and_then(|id| Uuid::parse_str(id).ok()),
        parts.next(),
    ) {
        (Some(version), Some(id), None) => Ok(Applied {
            floor: version,
            floor_of: Some(id),
            started: vec![Started { version, id }],
        }),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "`{}` is damaged (expected the JSON record of the executions this host started); \
                 restore it, or remove it to accept any version again",
                path.display()
            ),
        )),
    }
}

pub fn write_applied(state_dir: &Path, applied: &Applied) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(applied).expect("records serialize");
    text.push(b'\n');
    write_atomic(state_dir, APPLIED, &text)
}

pub fn executions_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("executions")
}

pub fn execution_dir(state_dir: &Path, id: Uuid) -> PathBuf {
    executions_dir(state_dir).join(id.to_string())
}

/// The executions with a local directory. Names that are not execution IDs are ignored.
pub fn list_executions(state_dir: &Path) -> Vec<Uuid> {
    let Ok(entries) = std::fs::read_dir(executions_dir(state_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()))
        .collect()
}

pub fn remove_execution(state_dir: &Path, id: Uuid) -> std::io::Result<()> {
    match std::fs::remove_dir_all(execution_dir(state_dir, id)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The execution's state from its STATUS file; `None` if there is none (a new
/// execution).
///
/// A damaged STATUS is reported, and the state taken from `status.json`, which
/// is written just before it. If that is damaged too, the execution counts as
/// interrupted: its bundle is verified again and it resumes where the journal
/// says, so a damaged file neither re-runs finished steps nor skips any.
pub fn read_state(dir: &Path) -> Option<State> {
    let path = dir.join(STATUS_FILE);
    let problem = match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim() {
            "PROGRESS" => return Some(State::Progress),
            "DONE" => return Some(State::Done),
            "ERROR" => return Some(State::Error),
            "CANCELLED" => return Some(State::Cancelled),
            other => format!("unknown content {other:?}"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => e.to_string(),
    };
    let recovered = std::fs::read(dir.join(STATUS_JSON))
        .ok()
        .and_then(|b| serde_json::from_slice::<cattle_core::wire::HostStatus>(&b).ok())
        .map(|s| s.state)
        .filter(|s| *s != State::Pending);
    match recovered {
        Some(state) => {
            tracing::warn!(path = %path.display(), problem, state = state.as_str(), "STATUS file is damaged; took the state from status.json");
            Some(state)
        }
        None => {
            tracing::warn!(path = %path.display(), problem, "STATUS and status.json are damaged; treating the execution as interrupted");
            Some(State::Progress)
        }
    }
}

/// Replace `dir/name` with `bytes` atomically and durably: write a temporary
/// file, fsync it, rename it into place, fsync the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    // The file's own error, without the temporary name: it is `name` that
    // cannot be written, and a full disk is one cause however often it recurs.
    tmp.as_file_mut().write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The step the journal says to run next (the one in flight when the agent
/// stopped, or the first not started) and the attempt of it that was under way
/// (0 when none had started). `None` if there is no usable journal.
pub fn read_journal(dir: &Path) -> Option<(usize, u32)> {
    let path = dir.join(JOURNAL);
    let text = std::fs::read_to_string(&path).ok()?;
    let mut words = text.split_whitespace();
    let step = words.next().and_then(|w| w.parse::<usize>().ok());
    // Journals from before attempts were counted hold the step alone.
    let attempt = words.next().map_or(Some(0), |w| w.parse::<u32>().ok());
    match (step, attempt, words.next()) {
        (Some(step), Some(attempt), None) if step >= 1 => Some((step, attempt)),
        _ => {
            tracing::warn!(path = %path.display(), content = text.trim(), "JOURNAL is damaged; ignoring it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_keeps_the_highest_floor_and_what_started_above_it() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut applied = Applied::default();
        applied.start(a, 100, 99);
        applied.start(b, 120, 99); // published while `a` was still being addressed
        assert_eq!(applied.floor, 99);
        assert!(applied.has_started(a) && applied.has_started(b));
        applied.start(c, 130, 125);
        assert_eq!((applied.floor, applied.floor_of), (125, Some(c)));
        assert_eq!(
            applied.started,
            [Started {
                version: 130,
                id: c
            }],
            "below the floor, the floor alone refuses them"
        );
    }

    #[test]
    fn the_record_survives_a_restart_and_the_old_format_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_applied(dir.path()).unwrap(), Applied::default());
        let mut applied = Applied::default();
        applied.start(Uuid::from_u128(7), 70, 60);
        write_applied(dir.path(), &applied).unwrap();
        assert_eq!(read_applied(dir.path()).unwrap(), applied);

        let id = Uuid::now_v7();
        std::fs::write(dir.path().join(APPLIED), format!("42 {id}\n")).unwrap();
        let old = read_applied(dir.path()).unwrap();
        assert_eq!((old.floor, old.floor_of), (42, Some(id)));
        assert!(old.has_started(id));

        std::fs::write(dir.path().join(APPLIED), "garbage").unwrap();
        let err = read_applied(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
    }
}

//! The JSON documents Cattle keeps in the store, and the size caps on reading them.
//!
//! Readers ignore fields they do not know, so a newer writer can add fields
//! without breaking older readers; a change that older readers must not
//! misread bumps [`FORMAT`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hosts::HostId;

/// The version of every document below.
pub const FORMAT: u32 = 2;

/// Largest manifest, inbox or status document a reader accepts.
pub const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Size of each part of a host's log but the last: part `n` holds bytes `n`
/// MiB to `n + 1` MiB of the log (see [`LogSummary`]). Readers read no part
/// larger than this.
pub const LOG_PART_BYTES: u64 = 1024 * 1024;

/// Longest `error`, `paused` or step `description` in a [`HostStatus`]: longer
/// text is cut (see [`cut_text`]), so status documents stay small.
pub const MAX_STATUS_TEXT_BYTES: usize = 4096;

/// `text`, or its first `max` bytes (at a character boundary) followed by
/// `… [cut: N bytes in all]` when it is longer.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &text[..end], text.len())
}

/// What an execution runs and where: written once by `cattle publish`, before
/// any host is addressed, as the signed payload of an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: Uuid,
    /// Higher than that of every execution published before it to this store
    /// (see [`VersionCounter`]): an agent refuses a version older than one it
    /// has already applied.
    pub version: u64,
    /// RFC 3339, UTC.
    pub created: String,
    /// RFC 3339, UTC: agents do not start the execution after this.
    pub expires: String,
    /// `user@machine` that published.
    pub publisher: String,
    /// The config directory's name, for people.
    pub config: String,
    pub steps: usize,
    pub bundle: BundleRef,
    pub hosts: Vec<HostId>,
}

/// How a manifest is stored: its exact bytes and the signatures over them.
///
/// Signing the bytes rather than a re-serialized structure means there is no
/// canonical form to agree on: the agent verifies what it downloaded, then
/// parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub format: u32,
    /// The [`Manifest`] as JSON.
    pub payload: String,
    /// Empty only for `cattle publish --unsigned`.
    pub signatures: Vec<SignatureEntry>,
}

/// One signature of an [`Envelope`]'s payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEntry {
    /// The signing key's ID (see `signing::KeyId`).
    pub key: String,
    /// Ed25519 signature, hex.
    pub sig: String,
}

/// The highest manifest version handed out in a store. Publishers raise it
/// with a conditional write before signing, so versions only go up even with
/// several publishers at once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VersionCounter {
    pub format: u32,
    pub version: u64,
}

/// Which bundle an execution runs: the agent checks both before extracting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    pub sha256: String,
    pub size: u64,
}

/// The executions addressed to one host, oldest first. Publishers add to it and
/// `cattle clean` removes from it, both with conditional writes; the host's
/// agent only reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbox {
    pub format: u32,
    pub host: HostId,
    pub executions: Vec<Uuid>,
}

impl Inbox {
    pub fn new(host: HostId) -> Self {
        Self {
            format: FORMAT,
            host,
            executions: Vec::new(),
        }
    }
}

/// Where a host is with an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// The host has not reported (never written: readers infer it).
    Pending,
    /// The host is running the execution.
    Progress,
    /// Every step is done.
    Done,
    /// A step failed on its last attempt, or the work was refused.
    Error,
    /// `cattle cancel` stopped it before its next step, or before it started.
    Cancelled,
}

impl State {
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Error | State::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Progress => "PROGRESS",
            State::Done => "DONE",
            State::Error => "ERROR",
            State::Cancelled => "CANCELLED",
        }
    }
}

/// Which hosts of an execution an operator cancelled. Written by `cattle
/// cancel` with conditional writes; agents only read it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cancel {
    pub format: u32,
    /// Every host of the execution.
    pub all: bool,
    /// These hosts, when not `all`.
    pub hosts: Vec<HostId>,
}

impl Cancel {
    pub fn covers(&self, host: &HostId) -> bool {
        self.all || self.hosts.contains(host)
    }
}

/// Which agent runs a host's share of an execution. The first agent to start
/// it writes this with If-None-Match; another agent with the same host ID
/// finds it taken and refuses, so two machines never both run and report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub format: u32,
    /// The claiming machine (`/etc/machine-id`, else its hostname).
    pub machine: String,
    /// The claiming agent's state directory on that machine.
    pub state_dir: String,
    /// RFC 3339, UTC.
    pub claimed: String,
}

impl Claim {
    /// Whether `other` comes from the same agent (machine and state directory).
    pub fn same_agent(&self, other: &Claim) -> bool {
        self.machine == other.machine && self.state_dir == other.state_dir
    }
}

/// The step a host is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStatus {
    /// 1-based.
    pub number: usize,
    pub facility: String,
    pub description: String,
    /// The attempt under way or last made, 1-based.
    pub attempt: u32,
    pub attempts: u32,
}

/// A host's report on one execution. Only that host's agent writes it; each
/// write has a higher `seq` than the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub format: u32,
    pub execution: Uuid,
    pub host: HostId,
    pub state: State,
    /// Number of steps in the execution (0 until the bundle is verified).
    pub steps: usize,
    pub step: Option<StepStatus>,
    pub started: String,
    pub updated: String,
    pub finished: Option<String>,
    pub error: Option<String>,
    pub seq: u64,
    pub agent_version: String,
    /// Set while the run waits because the host cannot write its local state
    /// (a full or failing disk): what it cannot write and why. The run goes on
    /// by itself once the write succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// How much the host has logged, so that a reader knows how much of the log
    /// to expect in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSummary>,
}

/// The size of a host's log, as parts of [`LOG_PART_BYTES`].
///
/// The log is a byte stream; part `n` holds its bytes `n * LOG_PART_BYTES` up
/// to `(n + 1) * LOG_PART_BYTES`, so every part but the last is full. Beyond
/// the host's bound, middle parts are dropped: the first kept part after the
/// head then holds only a line saying how much was dropped, and the parts
/// after it up to the kept tail do not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSummary {
    /// Bytes logged, those dropped included: the log ends at this offset.
    pub bytes: u64,
    /// Parts logged: the last part is `parts - 1`.
    pub parts: u64,
    /// Bytes dropped from the middle of the log (a multiple of [`LOG_PART_BYTES`]).
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_with_its_length() {
        assert_eq!(cut_text("short", 10), "short");
        assert_eq!(cut_text("0123456789", 4), "0123… [cut: 10 bytes in all]");
        // `é` is two bytes: the cut does not split it.
        assert_eq!(cut_text("aéb", 2), "a… [cut: 4 bytes in all]");
    }
}

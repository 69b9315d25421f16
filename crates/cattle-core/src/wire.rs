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

/// Longest [`Manifest::message`] `cattle publish` writes.
pub const MAX_MESSAGE_BYTES: usize = 1024;

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
    /// (see [`VersionCounter`]). Agents run the executions addressed to them in
    /// the order of their versions.
    pub version: u64,
    /// Every execution of this store with a version up to this one had been
    /// addressed to all its hosts before this one was signed (see
    /// [`VersionCounter::in_flight`]). An agent that has started this execution
    /// refuses one with a version up to `floor` offered afterwards: it was
    /// withheld, a rollback. Absent in manifests of older publishers: then
    /// `version - 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u64>,
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
    /// The config uses variables: each host runs it only with the
    /// [`HostVars`] signed for it, found in its inbox ([`Inbox::vars`]), and
    /// refuses the execution without them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub vars: bool,
    /// Check mode (`cattle publish --check`): hosts run every step's check
    /// and change nothing; each step reports whether it would change.
    #[serde(default, skip_serializing_if = "is_false")]
    pub check: bool,
    /// Hosts log what file steps change (or would change) as unified diffs
    /// (`cattle publish --diff`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub diff: bool,
    /// What the publisher said the execution is for (`cattle publish -m`),
    /// for people: at most [`MAX_MESSAGE_BYTES`] when `cattle` writes it, one
    /// line. Absent when none was given, and in manifests of older publishers;
    /// older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Waves, error budget, bake, windows and start time (`cattle publish
    /// --waves …`), enforced by the agents. A manifest that has one is signed
    /// under a context of its own (see `signing`), so that agents older than
    /// rollouts, which would ignore it, refuse it instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::Rollout>,
    /// How `hosts` were chosen among those of the hosts file (`cattle
    /// publish --select`), for people: each selector as `key=value` and
    /// `key!=value` terms joined by `,`, with keys as they were looked up
    /// (`os.id`, not its alias `os`); a host was chosen when any selector
    /// matched it. Empty when every host of the hosts file was chosen, and in
    /// manifests of older publishers; older readers ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<String>,
    /// Addressed through group inboxes only ([`GroupInbox`]): no per-host
    /// inbox lists it, and each host's variables, if any, are in their own
    /// object (`keys::host_vars`). Absent in manifests published before the
    /// store was upgraded to groups; older readers ignore it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub grouped: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One host's variables for one execution, as `cattle publish` resolved them
/// (the config's defaults, the inventory, `--var`), signed like a manifest
/// (see `signing`) and delivered in the host's inbox. Binding the execution
/// and the host means a host cannot run another host's values, nor values of
/// another execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostVars {
    pub format: u32,
    pub execution: Uuid,
    pub host: HostId,
    /// Every variable the host has, by name.
    pub vars: std::collections::BTreeMap<String, serde_json::Value>,
}

/// How a manifest (or a [`HostVars`]) is stored: its exact bytes and the signatures over them.
///
/// Signing the bytes rather than a re-serialized structure means there is no
/// canonical form to agree on: the agent verifies what it downloaded, then
/// parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub format: u32,
    /// The [`Manifest`] (or [`HostVars`]) as JSON.
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

impl Manifest {
    /// See [`Manifest::floor`].
    pub fn floor(&self) -> u64 {
        self.floor
            .unwrap_or_else(|| self.version.saturating_sub(1))
            .min(self.version.saturating_sub(1))
    }
}

/// The highest manifest version handed out in a store, and the publishes still
/// addressing hosts. Publishers change it with conditional writes (If-Match),
/// so versions only go up even with several publishers at once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VersionCounter {
    pub format: u32,
    pub version: u64,
    /// Publishes that took a version and have not finished addressing their
    /// hosts yet. A manifest's floor is just below the oldest of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<InFlight>,
    /// How publishers address hosts in this store. Absent in stores first
    /// published to before grouped inboxes: those keep per-host inboxes too
    /// until `cattle store upgrade`. An older publisher that rewrites this
    /// document drops the field, which puts the store back to both kinds.
    #[serde(default)]
    pub inboxes: InboxLayout,
}

/// How publishers address hosts (see [`VersionCounter::inboxes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InboxLayout {
    /// Each host's own inbox, as agents older than groups read it, and its
    /// group's inbox, which newer agents read.
    #[default]
    PerHostAndGrouped,
    /// Only the groups' inboxes.
    Grouped,
}

/// A publish between taking its version and addressing its last host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub version: u64,
    pub id: Uuid,
}

/// Which bundle an execution runs: the agent checks both before extracting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// Read it with [`BundleRef::checked_sha256`] wherever it becomes part of a
    /// key or a path: a manifest read without checking its signature may say anything.
    pub sha256: String,
    pub size: u64,
}

impl BundleRef {
    /// The bundle's sha256 once [`check_sha256`] accepts it, safe to put in a
    /// key (`keys::bundle`, `keys::bundle_ref`) or a path.
    pub fn checked_sha256(&self) -> Result<&str, String> {
        check_sha256(&self.sha256)?;
        Ok(&self.sha256)
    }
}

/// Whether `sha256` is a sha256 as Cattle writes it: exactly 64 lower-case hex
/// digits. Anything else (`../../x`, a `/`, upper case, another length) is
/// refused with a message quoting at most the first 80 characters of it.
pub fn check_sha256(sha256: &str) -> Result<(), String> {
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    if sha256.len() == 64 && sha256.bytes().all(hex) {
        return Ok(());
    }
    let shown: String = sha256.chars().take(80).collect();
    let more = if shown.len() < sha256.len() {
        "…"
    } else {
        ""
    };
    Err(format!(
        "`{shown}{more}` is not a sha256: 64 lower-case hex digits expected"
    ))
}

/// The executions addressed to one host, oldest first. Publishers add to it and
/// `cattle clean` removes from it, both with conditional writes; the host's
/// agent only reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbox {
    pub format: u32,
    pub host: HostId,
    pub executions: Vec<Uuid>,
    /// The signed [`HostVars`] of those executions whose manifests say
    /// `vars`. Only a hint, as the inbox is: the agent verifies each against
    /// the keys it trusts before it uses a value.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vars: std::collections::BTreeMap<Uuid, Envelope>,
}

impl Inbox {
    pub fn new(host: HostId) -> Self {
        Self {
            format: FORMAT,
            host,
            executions: Vec::new(),
            vars: Default::default(),
        }
    }
}

/// The executions addressed to the hosts of one group (`keys::inbox_group`),
/// oldest first, each with those of its hosts that are in the group.
/// Publishers add to it and `cattle clean` removes from it, with conditional
/// writes; agents only read it, and only as a hint of which manifests to look
/// at: it names nothing a manifest does not (hosts may read every manifest),
/// and it holds no variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInbox {
    pub format: u32,
    pub group: String,
    pub executions: Vec<GroupEntry>,
    /// Publishers still write per-host inboxes too (the store is not upgraded):
    /// an agent keeps reading its own as well, for executions that older
    /// publishers addressed only there.
    #[serde(default)]
    pub per_host: bool,
}

/// One execution of a [`GroupInbox`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub id: Uuid,
    pub hosts: Vec<HostId>,
}

impl GroupInbox {
    pub fn new(group: &str) -> Self {
        Self {
            format: FORMAT,
            group: group.to_string(),
            executions: Vec::new(),
            per_host: false,
        }
    }

    /// The executions listed for `host`, oldest first.
    pub fn executions_of<'a>(&'a self, host: &'a HostId) -> impl Iterator<Item = Uuid> + 'a {
        self.executions
            .iter()
            .filter(move |e| e.hosts.contains(host))
            .map(|e| e.id)
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
    /// A rolled-out execution that this host has not started: it waits for
    /// its wave, a bake, a pause, its window or its start time
    /// ([`HostStatus::waiting`] says which).
    Waiting,
    /// A rolled-out execution this host never started, and never will: the
    /// rollout's error budget was spent ([`HostStatus::error`] says how).
    Halted,
}

impl State {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Done | State::Error | State::Cancelled | State::Halted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Progress => "PROGRESS",
            State::Done => "DONE",
            State::Error => "ERROR",
            State::Cancelled => "CANCELLED",
            State::Waiting => "WAITING",
            State::Halted => "HALTED",
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

/// The agent active for a host ID: only the agent holding this lease runs the
/// host's work. The holder rewrites it with a new random `nonce` (If-Match) at
/// least every `renew_secs` seconds and keeps its last nonces in its state
/// directory, so it knows the lease for its own after a restart, a reboot, a new
/// machine ID or a move; another agent (a cloned machine, a copied state
/// directory) sees a nonce it never wrote and runs nothing until the lease goes
/// unrenewed for three periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLease {
    pub format: u32,
    pub host: HostId,
    pub nonce: Uuid,
    /// The holder's machine (`/etc/machine-id`, else its hostname), state
    /// directory and process, for people.
    pub machine: String,
    pub state_dir: String,
    pub pid: u32,
    /// RFC 3339, UTC, by the holder's clock: since when it holds the lease, and
    /// when it last renewed it.
    pub since: String,
    pub renewed: String,
    /// The holder renews at least this often.
    pub renew_secs: u64,
    pub agent_version: String,
    /// What the holder says about itself and its host, written with every
    /// renewal (no request of its own): absent from agents older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
}

/// A lease and heartbeat is read by `cattle hosts` with this limit: far more
/// than an agent writes (about 2 KiB), far less than a hostile host could.
pub const MAX_HEARTBEAT_BYTES: u64 = 64 * 1024;

/// At most this many facts, each key at most [`MAX_FACT_KEY`] bytes of
/// `a-z`, `0-9`, `.`, `_`, `-`, each value (or list item) at most
/// [`MAX_FACT_VALUE`] bytes, each list at most [`MAX_FACT_ITEMS`] items.
pub const MAX_FACTS: usize = 64;
pub const MAX_FACT_KEY: usize = 64;
pub const MAX_FACT_VALUE: usize = 256;
pub const MAX_FACT_ITEMS: usize = 64;

/// What an agent says about itself and its host in its lease
/// ([`HostLease::heartbeat`]), each time it renews it: every 10 polls when
/// idle, and before and during an execution. `cattle hosts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The agent's poll interval, in seconds.
    pub interval_secs: u64,
    /// RFC 3339, UTC, by the host's clock: when the agent last read its inbox.
    pub polled: Option<String>,
    /// The store's clock minus the host's, in whole seconds, as the store's
    /// last answer dated it (its `Date` header); `None` when unknown (a
    /// directory store, or no answer yet).
    pub clock_offset_secs: Option<i64>,
    /// Whether the host's inbox existed at the last poll: `false` for a host
    /// nothing was ever published to, or an agent given the wrong store URL.
    pub inbox: bool,
    /// The execution under way, if any.
    pub execution: Option<RunningExecution>,
    /// The last execution this agent finished.
    pub last: Option<FinishedExecution>,
    /// The host's facts, gathered when the agent starts and when its settings
    /// are reloaded (see [`Facts`]).
    pub facts: Facts,
}

/// The execution an agent is running, for [`Heartbeat::execution`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningExecution {
    pub id: Uuid,
    /// The step under way (1-based), when it has started one.
    pub step: Option<usize>,
    /// The steps of the execution (0 until the bundle is verified).
    pub steps: usize,
}

/// The last execution an agent finished, for [`Heartbeat::last`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedExecution {
    pub id: Uuid,
    pub state: State,
    /// RFC 3339, UTC, by the host's clock.
    pub finished: Option<String>,
}

/// A host's facts: a flat map from dotted keys to a text or a list of texts,
/// so that a selector `key=value` matches a text equal to `value` or a list
/// holding it ([`Fact::matches`]). Keys an agent writes:
///
/// | key | value |
/// |---|---|
/// | `os.id`, `os.version_id`, `os.pretty_name` | `ID`, `VERSION_ID`, `PRETTY_NAME` of `/etc/os-release` |
/// | `kernel.release` | `uname -r` |
/// | `arch` | `uname -m`, e.g. `x86_64`, `aarch64` |
/// | `hostname` | the kernel's host name |
/// | `cpus` | CPUs this process may use, e.g. `4` |
/// | `memory.mib` | total memory in MiB (`MemTotal` of `/proc/meminfo`) |
/// | `ip` | non-loopback IPv4 and IPv6 addresses (a list) |
/// | `boot_id` | `/proc/sys/kernel/random/boot_id` |
/// | `machine_id` | `/etc/machine-id` |
///
/// A fact the host cannot tell is absent.
pub type Facts = std::collections::BTreeMap<String, Fact>;

/// One fact's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fact {
    Text(String),
    List(Vec<String>),
}

impl Fact {
    /// Whether a selector's `value` matches: equal to the text, or held by the list.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Fact::Text(text) => text == value,
            Fact::List(items) => items.iter().any(|i| i == value),
        }
    }

    /// The value on one line: a list's items joined by `,`.
    pub fn display(&self) -> String {
        match self {
            Fact::Text(text) => text.clone(),
            Fact::List(items) => items.join(","),
        }
    }
}

impl Heartbeat {
    /// Why a heartbeat read from the store cannot be shown, if it cannot: facts
    /// beyond the bounds above (a host writes its own, and may be hostile).
    pub fn check(&self) -> Result<(), String> {
        if self.facts.len() > MAX_FACTS {
            return Err(format!(
                "{} facts, more than the {MAX_FACTS} allowed",
                self.facts.len()
            ));
        }
        for (key, fact) in &self.facts {
            let valid_key = !key.is_empty()
                && key.len() <= MAX_FACT_KEY
                && key.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                });
            if !valid_key {
                let shown: String = key.chars().take(MAX_FACT_KEY).collect();
                return Err(format!(
                    "fact key `{shown}` is not 1 to {MAX_FACT_KEY} of `a-z0-9._-`"
                ));
            }
            let values: &[String] = match fact {
                Fact::Text(text) => std::slice::from_ref(text),
                Fact::List(items) if items.len() > MAX_FACT_ITEMS => {
                    return Err(format!(
                        "fact `{key}` lists {} values, more than the {MAX_FACT_ITEMS} allowed",
                        items.len()
                    ));
                }
                Fact::List(items) => items,
            };
            if values.iter().any(|v| v.len() > MAX_FACT_VALUE) {
                return Err(format!(
                    "fact `{key}` has a value longer than {MAX_FACT_VALUE} bytes"
                ));
            }
        }
        Ok(())
    }
}

/// A second agent for a host ID, which runs nothing while another holds the
/// host's lease, says so in `hosts/<host>/standby.json`, when it stands back
/// and then every 10 polls while it does: `cattle hosts` flags the host ID
/// as used by two agents while this is recent and names another agent than
/// the lease's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standby {
    pub format: u32,
    pub host: HostId,
    /// The agent standing by: its machine, state directory, process.
    pub machine: String,
    pub state_dir: String,
    pub pid: u32,
    pub agent_version: String,
    /// RFC 3339, UTC, by its clock: when it last found another agent's lease.
    pub seen: String,
    /// It writes this record again at least this often while it stands by.
    pub renew_secs: u64,
    /// The agent holding the lease, as the lease named it.
    pub holder_machine: String,
    pub holder_state_dir: String,
}

/// An agent that found another one active for its host ID and ran nothing of
/// an execution says so here (`executions/<id>/conflicts/<host>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub format: u32,
    pub host: HostId,
    /// The agent that stood back.
    pub machine: String,
    pub state_dir: String,
    /// RFC 3339, UTC.
    pub seen: String,
    /// The agent holding the host's lease.
    pub holder_machine: String,
    pub holder_state_dir: String,
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

/// How a step ended on a host.
///
/// The last three are results of a check-mode run. Readers before them parse
/// `results` strictly: to those, a status document holding one is not a
/// status document, and `cattle status` shows its host UNREADABLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// The state was not in place, and the step put it in place.
    Changed,
    /// The state was already in place: the step changed nothing.
    Unchanged,
    /// The step failed.
    Failed,
    /// Check mode: the state is not in place; a real run would change it.
    WouldChange,
    /// Check mode: the state is already in place.
    InState,
    /// Check mode: the check failed after an earlier step that would change,
    /// which it may depend on.
    Unknown,
}

/// How many steps ended how, on one host. The check-mode counts are written
/// only when not 0, so a real run's recap reads as it always has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recap {
    pub changed: usize,
    pub unchanged: usize,
    pub failed: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub would_change: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_state: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Recap {
    pub fn add(&mut self, result: StepResult) {
        match result {
            StepResult::Changed => self.changed += 1,
            StepResult::Unchanged => self.unchanged += 1,
            StepResult::Failed => self.failed += 1,
            StepResult::WouldChange => self.would_change += 1,
            StepResult::InState => self.in_state += 1,
            StepResult::Unknown => self.unknown += 1,
        }
    }

    /// `other`'s counts added to these.
    pub fn merge(&mut self, other: &Recap) {
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
        self.would_change += other.would_change;
        self.in_state += other.in_state;
        self.unknown += other.unknown;
    }

    /// Whether any step ended with a check-mode result.
    pub fn has_check_results(&self) -> bool {
        self.would_change + self.in_state + self.unknown > 0
    }
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
    /// While the state is `WAITING`: what the host waits for, e.g. `wave 3 of
    /// 4 starts once wave 2 has ended: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// How much the host has logged, so that a reader knows how much of the log
    /// to expect in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSummary>,
    /// How each step that ended has ended, in step order: entry `n - 1` is
    /// step `n`'s. `null` for a step whose result was lost (a state directory
    /// restored from before it ended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<Option<StepResult>>,
}

impl HostStatus {
    /// The counts of [`HostStatus::results`].
    pub fn recap(&self) -> Recap {
        let mut recap = Recap::default();
        for result in self.results.iter().flatten() {
            recap.add(*result);
        }
        recap
    }
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
    fn facts_match_selectors_and_stay_within_their_bounds() {
        let facts: Facts = serde_json::from_str(
            r#"{"os.id": "debian", "ip": ["10.0.0.5", "fd00::5"], "cpus": "4"}"#,
        )
        .unwrap();
        assert!(facts["os.id"].matches("debian"));
        assert!(!facts["os.id"].matches("deb"));
        assert!(facts["ip"].matches("fd00::5"));
        assert!(!facts["ip"].matches("10.0.0"));
        assert_eq!(facts["ip"].display(), "10.0.0.5,fd00::5");
        let heartbeat = |facts: Facts| Heartbeat {
            interval_secs: 30,
            polled: None,
            clock_offset_secs: None,
            inbox: true,
            execution: None,
            last: None,
            facts,
        };
        assert_eq!(heartbeat(facts.clone()).check(), Ok(()));
        let with = |key: &str, fact: Fact| {
            let mut more = facts.clone();
            more.insert(key.to_string(), fact);
            heartbeat(more).check().unwrap_err()
        };
        assert!(with("OS", Fact::Text("x".into())).contains("fact key `OS`"));
        assert!(with("a b", Fact::Text("x".into())).contains("is not 1 to 64"));
        assert!(with("x", Fact::Text("v".repeat(257))).contains("longer than 256 bytes"));
        let many = Fact::List(vec!["v".to_string(); 65]);
        assert!(with("x", many).contains("lists 65 values"));
        let crowd: Facts = (0..65)
            .map(|n| (format!("k{n}"), Fact::Text("v".into())))
            .collect();
        assert!(heartbeat(crowd).check().unwrap_err().contains("65 facts"));
    }

    #[test]
    fn step_results_are_written_in_snake_case_and_a_recap_without_check_counts_reads() {
        use StepResult::*;
        let all = [Changed, Unchanged, Failed, WouldChange, InState, Unknown];
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"["changed","unchanged","failed","would_change","in_state","unknown"]"#
        );
        let mut recap = Recap::default();
        all.iter().for_each(|r| recap.add(*r));
        assert_eq!(
            serde_json::to_string(&recap).unwrap(),
            r#"{"changed":1,"unchanged":1,"failed":1,"would_change":1,"in_state":1,"unknown":1}"#
        );
        // A real run's, as `cattle status --json` has always written it.
        let text = r#"{"changed":2,"unchanged":0,"failed":1}"#;
        let real: Recap = serde_json::from_str(text).unwrap();
        assert!(!real.has_check_results());
        assert_eq!((real.changed, real.failed), (2, 1));
        assert_eq!(serde_json::to_string(&real).unwrap(), text);
        assert!(serde_json::from_str::<StepResult>(r#""wouldchange""#).is_err());
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_with_its_length() {
        assert_eq!(cut_text("short", 10), "short");
        assert_eq!(cut_text("0123456789", 4), "0123… [cut: 10 bytes in all]");
        // `é` is two bytes: the cut does not split it.
        assert_eq!(cut_text("aéb", 2), "a… [cut: 4 bytes in all]");
    }

    #[test]
    fn only_64_lower_case_hex_digits_are_a_sha256() {
        let good = "0123456789abcdef".repeat(4);
        assert_eq!(check_sha256(&good), Ok(()));
        let bundle = BundleRef {
            sha256: good.clone(),
            size: 1,
        };
        assert_eq!(bundle.checked_sha256(), Ok(good.as_str()));
        for bad in [
            "",
            "../../victim/backup",
            &good[..63],
            &format!("{good}0"),
            &good.to_uppercase(),
            &format!("{}/a", &good[..62]),
            &format!("{}\0", &good[..63]),
            &format!("{}é", &good[..62]),
        ] {
            let err = check_sha256(bad).unwrap_err();
            assert!(
                err.ends_with("is not a sha256: 64 lower-case hex digits expected"),
                "{err}"
            );
        }
        assert_eq!(
            check_sha256("../../victim/backup").unwrap_err(),
            "`../../victim/backup` is not a sha256: 64 lower-case hex digits expected"
        );
        let long = check_sha256(&"x".repeat(10_000)).unwrap_err();
        assert!(
            long.starts_with(&format!("`{}…`", "x".repeat(80))),
            "{long}"
        );
    }
}

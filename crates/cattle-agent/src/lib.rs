//! The Cattle agent: finds work addressed to its host in the store, runs it,
//! and reports back.
//!
//! Each poll reads one object, the inbox of the host's group, with the ETag of
//! the last read, so an idle poll is a single conditional GET answered "not
//! modified" (in a store not yet upgraded to groups it reads the host's own
//! inbox too, where older publishers address it). When the inbox lists an execution this host has not finished, the agent
//! reads its manifest, downloads and verifies the bundle, runs the steps with
//! the stdlib runner and uploads its status and log as it goes. Executions run
//! one at a time, oldest first; a finished one is never run again.

mod admission;
mod cancel;
pub mod check_config;
pub mod cli;
mod deliver;
mod execution;
mod facts;
mod fetch;
mod lease;
mod local;
mod log_parts;
pub mod logging;
mod panics;
mod reboot;
mod report;
mod rollout;
pub mod settings;
mod shutdown;
mod store_check;
pub mod systemd;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::signing::TrustedKeys;
use cattle_core::store::{Condition, Fetched, Store, StoreError};
use cattle_core::wire::{Conflict, FORMAT, GroupInbox, HostLease, Inbox, MAX_DOCUMENT_BYTES};
use cattle_stdlib::Backoff;
use uuid::Uuid;

use execution::Handled;
use lease::{Lease, Standing};
pub use shutdown::Shutdown;

/// Default seconds between polls.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Default bound on the log kept per execution, locally and in the store, in
/// MiB: its first half and its last half are kept, and what is dropped between
/// them is marked.
pub const DEFAULT_MAX_LOG_MIB: u64 = 64;

/// Everything the agent needs to know, decided by the binary.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: HostId,
    /// Where executions are unpacked and their STATUS and log kept.
    pub state_dir: PathBuf,
    /// The wait between polls, before jitter. After a failed poll the wait is
    /// [`Backoff::POLL`] capped at the interval, so that a store that comes
    /// back is seen (and undelivered statuses delivered) within one interval.
    pub interval: Duration,
    /// Each wait between polls is moved by a random amount of at most this,
    /// either way, so that a fleet started together spreads its polls
    /// (default: a tenth of the interval). At most `interval`.
    pub jitter: Duration,
    /// Handle what is pending, then return.
    pub once: bool,
    /// Waits between a step's attempts.
    pub retry: Backoff,
    /// Whose executions this agent runs.
    pub trust: Trust,
    /// The most log kept per execution, in MiB (at least 2).
    pub max_log_mib: u64,
    /// The CA bundle the store is trusted with, which `download` and
    /// `wait_for` steps trust too; `None`: the system's root CAs.
    pub ca_bundle: Option<PathBuf>,
}

impl Config {
    /// The wait after a successful poll: the interval moved by at most the
    /// jitter, either way.
    pub fn poll_wait(&self) -> Duration {
        if self.interval.is_zero() {
            return self.interval;
        }
        let fraction = self.jitter.as_secs_f64() / self.interval.as_secs_f64();
        cattle_stdlib::backoff::jittered(self.interval, fraction)
    }
}

/// Whose executions an agent runs.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Manifests must carry a valid signature by one of these.
    pub keys: TrustedKeys,
    /// Also run manifests without any signature (`--allow-unsigned`): anyone
    /// who can write to the store can then run anything on this host.
    pub allow_unsigned: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("inbox `{location}` is not a valid inbox document: {message}")]
    BadInbox { location: String, message: String },
    /// A write to the local state directory failed (a full or read-only disk).
    #[error("cannot write `{path}`: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A read of the local state directory failed.
    #[error("cannot read `{path}`: {source}")]
    LocalRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use state directory `{path}`: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another cattle-agent{holder} is using state directory `{path}` (it holds `{path}/{LOCK_FILE}`)"
    )]
    Locked { path: PathBuf, holder: String },
    /// The step runner panicked; the execution resumes as after a crash.
    #[error("the step runner panicked while running execution {execution}: {message}")]
    Panicked { execution: Uuid, message: String },
    /// Another agent holds this host's lease; this one ran nothing.
    #[error(
        "another agent is active for host ID `{host}` (machine {machine}, state directory {state_dir}, \
         since {since}): this one ran nothing; {} waiting for it",
        cattle_core::count(*.pending as u64, "execution")
    )]
    Standby {
        host: HostId,
        machine: String,
        state_dir: String,
        since: String,
        pending: usize,
    },
    /// The store failed its self-test: this agent does not poll it.
    #[error(
        "store `{location}` does not honour what Cattle relies on ({} failed): polling it could \
         lose executions, so this agent does not poll",
        cattle_core::count(.failures.len() as u64, "check")
    )]
    StoreRefused {
        location: String,
        /// Each failed check: the feature, what the store did, what it breaks.
        failures: Vec<String>,
    },
}

impl AgentError {
    pub fn local(path: impl Into<PathBuf>, source: std::io::Error) -> AgentError {
        AgentError::Local {
            path: path.into(),
            source,
        }
    }
}

/// Held by the running agent, so that two agents never share a state directory.
pub const LOCK_FILE: &str = "agent.lock";

/// Lock `state_dir` for this agent, for as long as the returned file is open.
fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File, AgentError> {
    use std::io::{Read, Seek, Write};
    let path = state_dir.join(LOCK_FILE);
    let state_error = |source| AgentError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(state_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(AgentError::Locked {
                path: state_dir.to_path_buf(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(state_error(e)),
    }
    // The pid is for people reading the error above; the lock is what counts.
    file.set_len(0).map_err(state_error)?;
    file.rewind().map_err(state_error)?;
    writeln!(file, "{}", std::process::id()).map_err(state_error)?;
    Ok(file)
}

/// The agent's memory between polls. Nothing here is needed for correctness
/// after a restart: the local execution directories are the durable record.
struct Agent {
    config: Config,
    store: Store,
    /// Only the agent holding the host's lease runs its work; shared with the
    /// task that renews it while an execution runs.
    lease: Arc<tokio::sync::Mutex<Lease>>,
    /// Executions this agent, as a standby, has reported it did not run.
    conflicts: HashSet<Uuid>,
    /// The inbox of the host's group, as last read.
    group_inbox: Source,
    /// The host's own inbox, as last read: read at the first poll, and at
    /// every poll while the group's is missing or says publishers still
    /// write per-host inboxes.
    own_inbox: Source,
    /// Executions listed for this host in either inbox.
    inbox: Vec<Uuid>,
    /// The host's signed variables that its own inbox holds.
    inbox_vars: std::collections::BTreeMap<Uuid, cattle_core::wire::Envelope>,
    /// Executions that need no more work from this agent (finished and reported).
    settled: HashSet<Uuid>,
    /// Since when the inbox has been missing, and when that was last logged.
    inbox_missing: Option<InboxMissing>,
    /// A rolled-out execution waiting for its turn: polls read its gate
    /// instead of the inbox until that changes or its time comes.
    parked: Option<Parked>,
    /// The execution and reason of the last WAITING status written, so that
    /// it is written again only when the reason changes.
    waiting_shown: Option<(Uuid, String)>,
    /// The newest rollout control seen per execution: an older one written
    /// back over it is not obeyed.
    control_seq: std::collections::HashMap<Uuid, u64>,
}

/// A rolled-out execution waiting for its turn (see [`Agent::still_waiting`]).
#[derive(Debug)]
struct Parked {
    id: Uuid,
    /// The gate's ETag when the host decided to wait (`None`: no gate).
    gate: Option<String>,
    /// When time alone changes the answer (a bake, a window, a start time).
    wake: Option<std::time::Instant>,
    /// Its wave (0-based).
    wave: usize,
    /// Polls since the decision.
    polls: u32,
}

/// A waiting host decides again after this many polls even if its gate has
/// not changed: the agent that ended a wave may have died between its marker
/// and the gate.
const RECHECK_EVERY_POLLS: u32 = 60;

/// One inbox as the agent last read it.
#[derive(Debug, Default)]
struct Source {
    /// `None` before the first read, and while it is missing.
    etag: Option<String>,
    /// It has been read at least once.
    read: bool,
    /// The executions it lists for this host, oldest first.
    executions: Vec<Uuid>,
    /// Only for a group's inbox: publishers also write per-host inboxes.
    per_host: bool,
}

/// What reading one inbox found: `None` when it has not changed.
struct Read {
    etag: Option<String>,
    executions: Vec<Uuid>,
    per_host: bool,
    vars: std::collections::BTreeMap<Uuid, cattle_core::wire::Envelope>,
}

impl Read {
    fn missing() -> Read {
        Read {
            etag: None,
            executions: Vec::new(),
            per_host: false,
            vars: Default::default(),
        }
    }
}

/// How an inbox changed since it was last read.
enum Changed {
    Not,
    Missing,
    To(cattle_core::store::Object),
}

/// The host's inbox does not exist: nothing was published to it yet, or the
/// agent looks in the wrong place (store URL, bucket or prefix).
#[derive(Debug, Clone)]
struct InboxMissing {
    location: String,
    logged: std::time::Instant,
}

/// A missing inbox is logged when first seen, then at most this often.
const INBOX_MISSING_LOG_EVERY: Duration = Duration::from_secs(3600);

/// Run the agent until `shutdown` fires (or once, with `config.once`).
///
/// A new [`Config`] sent through `reload` (the settings reloaded on
/// `SIGHUP`) takes effect before the next poll, and ends the wait for it: a
/// shorter interval applies at once. An execution under way finishes with
/// the settings it started with. Of a reloaded config, only the interval,
/// jitter, trust and log bound are used; the rest needs a restart.
///
/// With `once`, returns an error if the store could not be read or some
/// execution could not be finished or reported.
pub async fn run(
    config: Config,
    store: Store,
    shutdown: Shutdown,
    mut reload: tokio::sync::watch::Receiver<Config>,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(local::executions_dir(&config.state_dir)).map_err(|source| {
        AgentError::StateDir {
            path: config.state_dir.clone(),
            source,
        }
    })?;
    let _lock = lock_state_dir(&config.state_dir)?;
    panics::record_in(&config.state_dir);
    tracing::info!(host = %config.host, store = %store.location(""), interval = ?config.interval, jitter = ?config.jitter, "agent starting");
    for key in config.trust.keys.keys() {
        tracing::info!(key = %key.id(), comment = key.comment(), "trusting executions signed by this key");
    }
    if config.trust.allow_unsigned {
        tracing::warn!(
            "UNSIGNED EXECUTIONS ALLOWED (--allow-unsigned): anyone who can write to the store \
             can run any command as this agent's user on this host; never use this in production"
        );
    }
    // Checked before the first poll, unless a pass is remembered: a restart
    // then asks nothing more of the store than its polls.
    let mut store_checked = store_check::remembered(&config.state_dir, &store);
    let mut agent = Agent {
        lease: Arc::new(tokio::sync::Mutex::new(Lease::new(
            &config.host,
            &config.state_dir,
            config.interval,
            facts::gather(),
        ))),
        conflicts: HashSet::new(),
        config,
        store,
        group_inbox: Source::default(),
        own_inbox: Source::default(),
        inbox: Vec::new(),
        inbox_vars: Default::default(),
        settled: HashSet::new(),
        inbox_missing: None,
        parked: None,
        waiting_shown: None,
        control_seq: Default::default(),
    };
    if let Some(every) = systemd::watchdog_interval() {
        tokio::spawn(systemd::keep_watchdog(every));
    }
    systemd::ready();
    let mut failures: u32 = 0;
    // The failure last logged: the same one again is logged at debug level only.
    let mut last_failure: Option<String> = None;
    loop {
        if reload.has_changed().unwrap_or(false) {
            let new = reload.borrow_and_update().clone();
            agent.reconfigure(new).await;
        }
        let result =
            match store_check::before_first_poll(&agent.config, &agent.store, &mut store_checked)
                .await
            {
                Ok(()) => agent.poll(&shutdown).await,
                Err(err @ AgentError::StoreRefused { .. }) => return Err(err),
                Err(err) => Err(err),
            };
        if agent.config.once {
            return result;
        }
        let wait = match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "poll succeeded again");
                }
                failures = 0;
                last_failure = None;
                let every = humantime::format_duration(agent.config.interval);
                systemd::status(&match &agent.inbox_missing {
                    None if let Some(parked) = &agent.parked => format!(
                        "execution {} waits for its turn in the rollout; polling every {every}",
                        parked.id
                    ),
                    None => format!("waiting for work; polling every {every}"),
                    Some(missing) => format!(
                        "no inbox at {}: nothing published to this host yet, or a wrong store \
                         URL or prefix; polling every {every}",
                        missing.location
                    ),
                });
                agent.config.poll_wait()
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let wait = Backoff::POLL.capped(agent.config.interval).delay(failures);
                let text = err.to_string();
                if last_failure.as_ref() != Some(&text) {
                    tracing::warn!(error = %err, retry_in = ?wait, "poll failed");
                } else {
                    tracing::debug!(error = %err, retry_in = ?wait, "poll failed again");
                }
                systemd::status(&format!(
                    "poll failed ({failures} in a row), retrying in {}: {text}",
                    humantime::format_duration(wait)
                ));
                last_failure = Some(text);
                wait
            }
        };
        if shutdown.is_requested() {
            tracing::info!("stopping as asked");
            return Ok(());
        }
        let reloaded = tokio::select! {
            stop = shutdown.wait_timeout(wait) => if stop {
                tracing::info!("stopping as asked");
                return Ok(());
            } else {
                false
            },
            // New settings: take them and poll now. (No more can come once
            // the sender is gone: then only the wait counts.)
            _ = async {
                if reload.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => true,
        };
        if reloaded {
            let new = reload.borrow_and_update().clone();
            agent.reconfigure(new).await;
        }
    }
}

impl Agent {
    /// Take the settings a reload may change from `new`: the interval and
    /// jitter, whose executions to trust and the log bound.
    async fn reconfigure(&mut self, new: Config) {
        let old = &self.config;
        {
            let mut lease = self.lease.lock().await;
            if new.interval != old.interval {
                lease.set_interval(new.interval);
            }
            lease.set_facts(facts::gather());
        }
        tracing::info!(
            interval = ?new.interval,
            jitter = ?new.jitter,
            keys = new.trust.keys.keys().len(),
            allow_unsigned = new.trust.allow_unsigned,
            max_log_mib = new.max_log_mib,
            "settings reloaded"
        );
        self.config = Config {
            interval: new.interval,
            jitter: new.jitter,
            trust: new.trust,
            max_log_mib: new.max_log_mib,
            ..self.config.clone()
        };
    }

    /// One poll: read the inbox if it changed, then work through whatever is unsettled.
    async fn poll(&mut self, shutdown: &Shutdown) -> Result<(), AgentError> {
        if self.still_waiting().await? {
            let mut lease = self.lease.lock().await;
            lease.polled(true);
            lease.poll(&self.store).await?;
            return Ok(());
        }
        let group = keys::group_inbox(&keys::inbox_group(&self.config.host));
        let group_read = self.read_group_inbox(&group).await?;
        let per_host = match &group_read {
            Some(read) => read.etag.is_none() || read.per_host,
            None => self.group_inbox.etag.is_none() || self.group_inbox.per_host,
        };
        let own_read = if per_host || !self.own_inbox.read {
            self.read_own_inbox().await?
        } else {
            None
        };
        // Both were read: only now is what they say taken.
        let changed = group_read.is_some() || own_read.is_some();
        if let Some(read) = group_read {
            self.group_inbox = Source {
                etag: read.etag,
                read: true,
                executions: read.executions,
                per_host: read.per_host,
            };
        }
        if let Some(read) = own_read {
            self.own_inbox = Source {
                etag: read.etag,
                read: true,
                executions: read.executions,
                per_host: false,
            };
            self.inbox_vars = read.vars;
        }
        if self.group_inbox.etag.is_none() && self.own_inbox.etag.is_none() {
            // No inbox at all is more likely a wrong store URL or prefix than
            // a clean (which leaves an empty inbox): keep local records.
            if changed {
                self.inbox.clear();
                self.settled.clear();
            }
            self.inbox_missing(&group);
        } else if changed {
            if let Some(missing) = self.inbox_missing.take() {
                tracing::info!(inbox = %missing.location, "the host's inbox exists now");
            }
            let mut listed = self.group_inbox.executions.clone();
            listed.extend(self.own_inbox.executions.iter().copied());
            self.set_inbox(listed).await;
        }

        self.lease.lock().await.polled(self.inbox_missing.is_none());

        // In publish order (signed versions); an execution that cannot be
        // finished now holds up the later ones, so that they never run before it.
        let mut candidates = Vec::new();
        for id in self.inbox.clone() {
            if self.settled.contains(&id) {
                continue;
            }
            let vars = self.inbox_vars.get(&id).cloned();
            match execution::survey(&self.config, &self.store, id, vars, shutdown).await {
                Ok(execution::Survey::Candidate(candidate)) => candidates.push(candidate),
                Ok(execution::Survey::Settled) => {
                    self.settled.insert(id);
                }
                // Its delivery was stopped by a shutdown.
                Ok(execution::Survey::Stopped) => return Ok(()),
                Err(err) => {
                    tracing::warn!(execution = %id, error = %err, "cannot look at the execution; will retry");
                    return Err(err);
                }
            }
        }
        candidates.sort_by_key(execution::Candidate::order);
        if candidates.is_empty() {
            // Idle: renew the lease when due (a PUT every few polls), or as a
            // standby look whether its holder is still there.
            self.lease.lock().await.poll(&self.store).await?;
            return Ok(());
        }
        let standing = self.lease.lock().await.confirm(&self.store).await?.clone();
        if let Standing::Standby(holder) = standing {
            return self.stand_back(&holder, &candidates).await;
        }
        for candidate in candidates {
            if shutdown.is_requested() {
                break;
            }
            let id = candidate.id;
            // While it runs, a task keeps the lease and watches for another
            // agent taking it over; then the run stops before its next step.
            let lost = Arc::new(AtomicBool::new(false));
            let keeper = tokio::spawn(lease::keep(
                self.lease.clone(),
                self.store.clone(),
                self.config.interval,
                lost.clone(),
            ));
            systemd::status(&format!("running execution {id}"));
            self.lease.lock().await.running(Some(id));
            let control_seq = self.control_seq.entry(id).or_default();
            let handled = execution::handle(
                &self.config,
                &self.store,
                candidate,
                shutdown,
                &lost,
                control_seq,
            )
            .await;
            keeper.abort();
            self.lease.lock().await.running(None);
            match handled {
                Ok(Handled::Settled) => {
                    self.settled.insert(id);
                }
                Ok(Handled::Stopped) => break,
                // Its turn has not come: it holds up the later ones.
                Ok(Handled::Waiting(waiting)) => {
                    let (waiting, status) = *waiting;
                    self.park(id, waiting, status).await?;
                    break;
                }
                Err(err) => {
                    tracing::debug!(execution = %id, error = %err, "execution not finished; will retry");
                    return Err(err);
                }
            }
        }
        // The heartbeat says how the last execution ended as soon as it has,
        // rather than up to 10 polls later: one PUT after work, none when idle.
        self.lease.lock().await.confirm(&self.store).await?;
        Ok(())
    }

    /// Whether a rolled-out execution still waits for its turn with nothing
    /// changed: its gate reads the same (one conditional GET, answered 304),
    /// its time has not come and it decided recently enough. Otherwise the
    /// poll goes the whole way and the host decides again.
    async fn still_waiting(&mut self) -> Result<bool, AgentError> {
        let Some(parked) = &mut self.parked else {
            return Ok(false);
        };
        parked.polls += 1;
        let due = parked.polls >= RECHECK_EVERY_POLLS
            || parked
                .wake
                .is_some_and(|wake| std::time::Instant::now() >= wake);
        let unchanged = !due
            && match self
                .store
                .get_if_changed(
                    &keys::gate(parked.id),
                    parked.gate.as_deref(),
                    rollout::MAX_SMALL_DOCUMENT,
                )
                .await
            {
                Ok(Fetched::NotModified) => true,
                Ok(Fetched::Missing) => parked.gate.is_none(),
                // Another wave's turn: nothing for this host to look at.
                Ok(Fetched::Found(object))
                    if cattle_core::rollout::GateNote::concerns_only_others(
                        &object.bytes,
                        parked.wave,
                    ) =>
                {
                    parked.gate = Some(object.etag);
                    true
                }
                Ok(Fetched::Found(_)) => false,
                Err(e) if e.is_transient() => return Err(e.into()),
                // Unreadable (too large, refused): decide again from the markers.
                Err(_) => false,
            };
        if !unchanged {
            self.parked = None;
        }
        Ok(unchanged)
    }

    /// Wait for the turn of execution `id`: show why in its status (when the
    /// reason changed) and poll its gate from now on.
    async fn park(
        &mut self,
        id: Uuid,
        waiting: rollout::Waiting,
        status: cattle_core::wire::HostStatus,
    ) -> Result<(), AgentError> {
        let shown = Some((id, waiting.reason.clone()));
        if self.waiting_shown != shown {
            let body = serde_json::to_vec_pretty(&status).expect("statuses serialize");
            self.store
                .put(
                    &keys::status(id, &self.config.host),
                    body,
                    cattle_core::store::Condition::Always,
                )
                .await?;
            tracing::info!(execution = %id, "waiting for its turn: {}", waiting.reason);
            self.waiting_shown = shown;
        }
        let wake = waiting.until.map(|until| {
            let left = until
                .duration_since(rollout::store_now(&self.store))
                .unwrap_or_default();
            std::time::Instant::now() + left
        });
        self.parked = Some(Parked {
            id,
            gate: waiting.gate,
            wake,
            wave: waiting.wave,
            polls: 0,
        });
        Ok(())
    }

    /// Read the inbox at `key` conditionally on how `source` last read it.
    async fn read_changed(&self, key: &str, source: &Source) -> Result<Changed, AgentError> {
        Ok(
            match self
                .store
                .get_if_changed(key, source.etag.as_deref(), MAX_DOCUMENT_BYTES)
                .await?
            {
                Fetched::NotModified => Changed::Not,
                // Missing, as it was last time.
                Fetched::Missing if source.read && source.etag.is_none() => Changed::Not,
                Fetched::Missing => Changed::Missing,
                Fetched::Found(object) => Changed::To(object),
            },
        )
    }

    /// Read the inbox of the host's group at `key` if it changed since the
    /// last read, keeping the executions listed for this host.
    async fn read_group_inbox(&self, key: &str) -> Result<Option<Read>, AgentError> {
        let object = match self.read_changed(key, &self.group_inbox).await? {
            Changed::Not => return Ok(None),
            Changed::Missing => return Ok(Some(Read::missing())),
            Changed::To(object) => object,
        };
        let bad = |message: String| AgentError::BadInbox {
            location: self.store.location(key),
            message,
        };
        let inbox: GroupInbox =
            serde_json::from_slice(&object.bytes).map_err(|e| bad(e.to_string()))?;
        let own = keys::inbox_group(&self.config.host);
        if inbox.group != own {
            let said: String = inbox.group.chars().take(64).collect();
            return Err(bad(format!(
                "it says it is the inbox of group {said:?}, not \"{own}\""
            )));
        }
        Ok(Some(Read {
            etag: Some(object.etag),
            executions: inbox.executions_of(&self.config.host).collect(),
            per_host: inbox.per_host,
            vars: Default::default(),
        }))
    }

    /// Read the host's own inbox if it changed since the last read.
    async fn read_own_inbox(&self) -> Result<Option<Read>, AgentError> {
        let key = keys::inbox(&self.config.host);
        let object = match self.read_changed(&key, &self.own_inbox).await? {
            Changed::Not => return Ok(None),
            Changed::Missing => return Ok(Some(Read::missing())),
            Changed::To(object) => object,
        };
        let bad = |message: String| AgentError::BadInbox {
            location: self.store.location(&key),
            message,
        };
        let inbox: Inbox = serde_json::from_slice(&object.bytes).map_err(|e| bad(e.to_string()))?;
        if inbox.host != self.config.host {
            return Err(bad(format!("it is addressed to host `{}`", inbox.host)));
        }
        Ok(Some(Read {
            etag: Some(object.etag),
            executions: inbox.executions,
            per_host: false,
            vars: inbox.vars,
        }))
    }

    /// The inbox is missing: say so, naming where it was looked for, when first
    /// seen and then every [`INBOX_MISSING_LOG_EVERY`] (the agent keeps polling:
    /// a host may be set up before anything is published to it).
    fn inbox_missing(&mut self, key: &str) {
        let due = self
            .inbox_missing
            .as_ref()
            .is_none_or(|m| m.logged.elapsed() >= INBOX_MISSING_LOG_EVERY);
        if !due {
            return;
        }
        let location = self.store.location(key);
        tracing::warn!(
            host = %self.config.host,
            inbox = %location,
            "no inbox at `{location}`: nothing has been published to host `{}` yet, or this agent \
             looks in the wrong place; check that its store URL (bucket and prefix) is the one \
             publishers use, and that its host ID is the one in their hosts file. `cattle hosts \
             --store` with this agent's store URL lists it as having no inbox",
            self.config.host
        );
        self.inbox_missing = Some(InboxMissing {
            location,
            logged: std::time::Instant::now(),
        });
    }

    /// Another agent holds the lease: run nothing, and say so for each
    /// execution waiting here, once, in the store (`cattle status` shows it).
    async fn stand_back(
        &mut self,
        holder: &HostLease,
        candidates: &[execution::Candidate],
    ) -> Result<(), AgentError> {
        let (machine, state_dir) = {
            let lease = self.lease.lock().await;
            let (machine, state_dir) = lease.me();
            (machine.to_string(), state_dir.to_string())
        };
        for candidate in candidates {
            if self.conflicts.contains(&candidate.id) {
                continue;
            }
            let conflict = Conflict {
                format: FORMAT,
                host: self.config.host.clone(),
                machine: machine.clone(),
                state_dir: state_dir.clone(),
                seen: cattle_core::now_rfc3339(),
                holder_machine: holder.machine.clone(),
                holder_state_dir: holder.state_dir.clone(),
            };
            let key = keys::conflict(candidate.id, &self.config.host);
            let body = serde_json::to_vec_pretty(&conflict).expect("conflicts serialize");
            match self.store.put(&key, body, Condition::Always).await {
                Ok(_) => {
                    self.conflicts.insert(candidate.id);
                }
                Err(e) => {
                    tracing::warn!(execution = %candidate.id, error = %e, "cannot record in the store that this agent stood back")
                }
            }
        }
        if self.config.once {
            return Err(AgentError::Standby {
                host: self.config.host.clone(),
                machine: holder.machine.clone(),
                state_dir: holder.state_dir.clone(),
                since: holder.since.clone(),
                pending: candidates.len(),
            });
        }
        Ok(())
    }

    /// Take a new inbox document; forget and remove locally whatever it no
    /// longer lists (`cattle clean` removed it).
    async fn set_inbox(&mut self, executions: Vec<Uuid>) {
        let listed: HashSet<Uuid> = executions.iter().copied().collect();
        let state_dir = self.config.state_dir.clone();
        let keep = listed.clone();
        // Removing a config tree can take a while: not on the runtime's thread,
        // which signals and uploads need.
        let removing = tokio::task::spawn_blocking(move || {
            for id in local::list_executions(&state_dir) {
                if keep.contains(&id) {
                    continue;
                }
                match local::remove_execution(&state_dir, id) {
                    Ok(()) => {
                        tracing::info!(execution = %id, "removed local copy of a cleaned execution")
                    }
                    Err(e) => {
                        tracing::warn!(execution = %id, error = %e, "cannot remove local copy of a cleaned execution")
                    }
                }
            }
        });
        if let Err(e) = removing.await {
            tracing::warn!(error = %e, "removing local copies of cleaned executions failed");
        }
        self.settled.retain(|id| listed.contains(id));
        let mut executions = executions;
        executions.sort();
        executions.dedup();
        self.inbox = executions;
    }
}

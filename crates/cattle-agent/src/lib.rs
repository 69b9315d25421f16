//! The Cattle agent: finds work addressed to its host in the store, runs it,
//! and reports back.
//!
//! Each poll reads one object, the host's inbox, with the ETag of the last
//! read, so an idle poll is a single conditional GET answered "not modified".
//! When the inbox lists an execution this host has not finished, the agent
//! reads its manifest, downloads and verifies the bundle, runs the steps with
//! the stdlib runner and uploads its status and log as it goes. Executions run
//! one at a time, oldest first; a finished one is never run again.

mod admission;
mod cancel;
mod claim;
mod deliver;
mod execution;
mod fetch;
mod local;
mod log_parts;
mod reboot;
mod report;
mod shutdown;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::signing::TrustedKeys;
use cattle_core::store::{Fetched, Store, StoreError};
use cattle_core::wire::{Inbox, MAX_DOCUMENT_BYTES};
use cattle_stdlib::Backoff;
use uuid::Uuid;

use execution::Handled;
pub use shutdown::Shutdown;

/// Default seconds between polls.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Default bound on the log kept per execution, locally and in the store, in
/// MiB: its first half and its last half are kept, and what is dropped between
/// them is marked.
pub const DEFAULT_MAX_LOG_MIB: u64 = 64;

/// Jitter on the wait between polls, so that a fleet started together spreads
/// its polls: ±10 %. After a failed poll the wait is [`Backoff::POLL`] capped at
/// the interval, so that a store that comes back is seen (and undelivered
/// statuses delivered) within one interval.
const POLL_JITTER: f64 = 0.1;

/// Everything the agent needs to know, decided by the binary.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: HostId,
    /// Where executions are unpacked and their STATUS and log kept.
    pub state_dir: PathBuf,
    pub interval: Duration,
    /// Handle what is pending, then return.
    pub once: bool,
    /// Waits between a step's attempts.
    pub retry: Backoff,
    /// Whose executions this agent runs.
    pub trust: Trust,
    /// The most log kept per execution, in MiB (at least 2).
    pub max_log_mib: u64,
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

/// This agent as claims name it: the machine and the state directory.
fn identity(state_dir: &Path) -> (String, String) {
    let machine = ["/etc/machine-id", "/proc/sys/kernel/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let dir = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_path_buf());
    (machine, dir.display().to_string())
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
    /// Machine and state directory, for claims.
    identity: (String, String),
    store: Store,
    /// ETag of the inbox as last read; `None` before the first read.
    inbox_etag: Option<String>,
    /// Executions listed in the inbox, oldest first.
    inbox: Vec<Uuid>,
    /// Executions that need no more work from this agent (finished and reported).
    settled: HashSet<Uuid>,
}

/// Run the agent until `shutdown` fires (or once, with `config.once`).
///
/// With `once`, returns an error if the store could not be read or some
/// execution could not be finished or reported.
pub async fn run(config: Config, store: Store, shutdown: Shutdown) -> Result<(), AgentError> {
    std::fs::create_dir_all(local::executions_dir(&config.state_dir)).map_err(|source| {
        AgentError::StateDir {
            path: config.state_dir.clone(),
            source,
        }
    })?;
    let _lock = lock_state_dir(&config.state_dir)?;
    tracing::info!(host = %config.host, store = %store.location(""), interval = ?config.interval, "agent starting");
    for key in config.trust.keys.keys() {
        tracing::info!(key = %key.id(), comment = key.comment(), "trusting executions signed by this key");
    }
    if config.trust.allow_unsigned {
        tracing::warn!(
            "UNSIGNED EXECUTIONS ALLOWED (--allow-unsigned): anyone who can write to the store \
             can run any command as this agent's user on this host; never use this in production"
        );
    }
    let mut agent = Agent {
        identity: identity(&config.state_dir),
        config,
        store,
        inbox_etag: None,
        inbox: Vec::new(),
        settled: HashSet::new(),
    };
    let mut failures: u32 = 0;
    // The failure last logged: the same one again is logged at debug level only.
    let mut last_failure: Option<String> = None;
    loop {
        let result = agent.poll(&shutdown).await;
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
                cattle_stdlib::backoff::jittered(agent.config.interval, POLL_JITTER)
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
                last_failure = Some(text);
                wait
            }
        };
        if shutdown.is_requested() || shutdown.wait_timeout(wait).await {
            tracing::info!("stopping as asked");
            return Ok(());
        }
    }
}

impl Agent {
    /// One poll: read the inbox if it changed, then work through whatever is unsettled.
    async fn poll(&mut self, shutdown: &Shutdown) -> Result<(), AgentError> {
        let key = keys::inbox(&self.config.host);
        match self
            .store
            .get_if_changed(&key, self.inbox_etag.as_deref(), MAX_DOCUMENT_BYTES)
            .await?
        {
            Fetched::NotModified => {}
            Fetched::Missing => {
                // No inbox at all is more likely a wrong store URL or prefix than
                // a clean (which leaves an empty inbox): keep local records.
                self.inbox_etag = None;
                self.inbox.clear();
                self.settled.clear();
            }
            Fetched::Found(object) => {
                let inbox: Inbox =
                    serde_json::from_slice(&object.bytes).map_err(|e| AgentError::BadInbox {
                        location: self.store.location(&key),
                        message: e.to_string(),
                    })?;
                if inbox.host != self.config.host {
                    return Err(AgentError::BadInbox {
                        location: self.store.location(&key),
                        message: format!("it is addressed to host `{}`", inbox.host),
                    });
                }
                self.inbox_etag = Some(object.etag);
                self.set_inbox(inbox.executions);
            }
        }

        // In publish order; an execution that cannot be finished now holds up
        // the later ones, so that they never run before it.
        for id in self.inbox.clone() {
            if self.settled.contains(&id) {
                continue;
            }
            if shutdown.is_requested() {
                break;
            }
            match execution::handle(&self.config, &self.identity, &self.store, id, shutdown).await {
                Ok(Handled::Settled) => {
                    self.settled.insert(id);
                }
                Ok(Handled::Stopped) => break,
                Err(err) => {
                    tracing::debug!(execution = %id, error = %err, "execution not finished; will retry");
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Take a new inbox document; forget and remove locally whatever it no
    /// longer lists (`cattle clean` removed it).
    fn set_inbox(&mut self, executions: Vec<Uuid>) {
        let listed: HashSet<Uuid> = executions.iter().copied().collect();
        for id in local::list_executions(&self.config.state_dir) {
            if !listed.contains(&id) {
                match local::remove_execution(&self.config.state_dir, id) {
                    Ok(()) => {
                        tracing::info!(execution = %id, "removed local copy of a cleaned execution")
                    }
                    Err(e) => {
                        tracing::warn!(execution = %id, error = %e, "cannot remove local copy of a cleaned execution")
                    }
                }
            }
        }
        self.settled.retain(|id| listed.contains(id));
        let mut executions = executions;
        // UUIDv7 sort by creation time: oldest first is publish order.
        executions.sort();
        executions.dedup();
        self.inbox = executions;
    }
}

//! The host lease: while one agent is active for a host ID, a second one (a
//! cloned machine, a copied state directory, the same ID given to two hosts)
//! runs nothing, says so in its log and in the store, and takes over only when
//! the first has been silent for a while.
//!
//! The lease is `hosts/<host>/agent.json` ([`HostLease`]). Its holder rewrites
//! it with a fresh random nonce, conditionally on the ETag it last wrote, every
//! [`RENEW_POLLS`] polls and before it starts an execution, and remembers in
//! `<state-dir>/LEASE`, before each write, the nonce the store was last seen
//! to hold and the new one (so writes cut short by crashes, however many in a
//! row, never lose the one the store has). A write left without an answer (a
//! dropped connection, a node that died) may have reached the store: the
//! following writes reuse its nonce until one is answered. So:
//! - after a restart, a reboot, a new machine ID or a moved state directory the
//!   agent finds one of its own nonces there and carries on at once;
//! - of two agents that both find their nonce (a machine cloned with its state
//!   directory), the compare-and-swap lets one renew; the other then sees a
//!   nonce it never wrote and stands back;
//! - an agent that finds a nonce it never wrote runs nothing while the lease
//!   keeps changing, and takes it over once it has stayed unchanged for
//!   [`TAKEOVER_PERIODS`] of its holder's renewal periods, measured on its own
//!   clock (no clocks are compared).
//!
//! The lease carries the holder's heartbeat ([`Heartbeat`]: version, interval,
//! last poll, clock offset, execution under way and last finished, facts), so
//! that `cattle hosts` sees every agent at no request of its own. A standby
//! says that it stands by in `hosts/<host>/standby.json` ([`Standby`]), when
//! it stands back and then every [`RENEW_POLLS`] polls, so that `cattle hosts`
//! flags the host ID as used twice even when no execution waits.
//!
//! Only a store that refuses the lease itself (an older MinIO policy without
//! it) lets an agent run without one, with a warning: that keeps a host working,
//! not protected.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Condition, Fetched, Store, StoreError};
use cattle_core::wire::{
    FORMAT, Facts, FinishedExecution, Heartbeat, HostLease, HostStatus, MAX_DOCUMENT_BYTES,
    RunningExecution, Standby,
};
use uuid::Uuid;

use crate::AgentError;
use crate::local;

/// The holder renews the lease every this many polls, and before it starts
/// an execution: at a 30 s interval, one PUT every 5 minutes while idle.
pub const RENEW_POLLS: u32 = 10;

/// A lease left unrenewed for this many of its holder's periods belongs to an
/// agent that is gone.
pub const TAKEOVER_PERIODS: u32 = 3;

/// In the state directory: the last two nonces this agent wrote to its lease.
pub const LEASE_FILE: &str = "LEASE";

/// Where this agent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds the lease: it runs the host's work.
    Holder,
    /// Another agent holds it: this one runs nothing.
    Standby(Box<HostLease>),
    /// The store refuses the lease (access denied): it runs, unprotected.
    Unprotected(String),
}

/// This agent's side of the lease.
pub struct Lease {
    host: HostId,
    state_dir: PathBuf,
    machine: String,
    /// The state directory as written in the lease (canonical).
    state_dir_name: String,
    /// How often the holder renews, for the lease document.
    renew_every: Duration,
    standing: Option<Standing>,
    /// The lease's ETag as this agent last wrote or read it.
    etag: Option<String>,
    /// Since when this agent holds the lease.
    since: String,
    /// Polls since the last renewal.
    polls: u32,
    /// As a standby: when the lease was last seen to change.
    unchanged_since: Instant,
    /// The last nonces this agent wrote, as `<state-dir>/LEASE` keeps them
    /// (read once at start; this agent alone writes the file, under its lock).
    nonces: Vec<Uuid>,
    /// The nonce of ours that the store was last seen to hold (written, or
    /// found there): kept in `<state-dir>/LEASE` with each new one, so that
    /// however many writes are cut short by a crash before they reach the
    /// store, the nonce it holds is still known as ours.
    held: Option<Uuid>,
    /// A nonce written without an answer (the connection dropped): the store
    /// may hold it or not. Later writes reuse it until one is answered, so
    /// that whichever of them reached the store, its nonce is remembered.
    pending: Option<Uuid>,
    /// Whether the store's refusal of the lease has been logged.
    warned: bool,
    /// What the next renewal says about this agent and its host.
    heartbeat: Heartbeat,
    /// The execution under way, whose step the heartbeat shows.
    running: Option<Uuid>,
    /// As a standby: its record is to be written at the next poll.
    standby_due: bool,
    /// Whether a refused standby record has been logged.
    standby_warned: bool,
}

/// The heartbeat's step of execution `id`: as its local `status.json` says.
fn local_status(state_dir: &Path, id: Uuid) -> Option<HostStatus> {
    let path = local::execution_dir(state_dir, id).join(local::STATUS_JSON);
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The last execution this state directory finished, for the heartbeat of an
/// agent that has just started: the newest (IDs are UUIDv7) in a final state.
pub fn last_finished(state_dir: &Path) -> Option<FinishedExecution> {
    let mut ids = local::list_executions(state_dir);
    ids.sort();
    ids.into_iter().rev().find_map(|id| finished(state_dir, id))
}

/// Execution `id` as finished, if its local status says it is.
pub fn finished(state_dir: &Path, id: Uuid) -> Option<FinishedExecution> {
    let status = local_status(state_dir, id)?;
    status.state.is_final().then_some(FinishedExecution {
        id,
        state: status.state,
        finished: status.finished,
    })
}

impl Lease {
    pub fn new(host: &HostId, state_dir: &Path, interval: Duration, facts: Facts) -> Lease {
        let (machine, state_dir_name) = identity(state_dir);
        let heartbeat = Heartbeat {
            interval_secs: interval.as_secs().max(1),
            polled: None,
            clock_offset_secs: None,
            inbox: false,
            execution: None,
            last: last_finished(state_dir),
            facts,
        };
        Lease {
            host: host.clone(),
            state_dir: state_dir.to_path_buf(),
            machine,
            state_dir_name,
            renew_every: interval * RENEW_POLLS,
            standing: None,
            etag: None,
            since: cattle_core::now_rfc3339(),
            polls: 0,
            unchanged_since: Instant::now(),
            nonces: read_nonces(state_dir),
            held: None,
            pending: None,
            warned: false,
            heartbeat,
            running: None,
            standby_due: false,
            standby_warned: false,
        }
    }

    /// The poll interval changed (the settings were reloaded): renew at the
    /// new pace from the next renewal on.
    pub fn set_interval(&mut self, interval: Duration) {
        self.renew_every = interval * RENEW_POLLS;
        self.heartbeat.interval_secs = interval.as_secs().max(1);
    }

    /// The host's facts were gathered again (the settings were reloaded).
    pub fn set_facts(&mut self, facts: Facts) {
        self.heartbeat.facts = facts;
    }

    /// The agent has just read its inbox (`found`: it exists), for the heartbeat.
    pub fn polled(&mut self, found: bool) {
        self.heartbeat.polled = Some(cattle_core::now_rfc3339());
        self.heartbeat.inbox = found;
    }

    /// The agent starts execution `id` (`Some`), or has stopped running one
    /// (`None`): then the heartbeat names it as the last finished, if it is.
    pub fn running(&mut self, id: Option<Uuid>) {
        if let Some(done) = self.running.and_then(|id| finished(&self.state_dir, id)) {
            self.heartbeat.last = Some(done);
        }
        self.running = id;
    }

    /// Once per poll: renew the lease when it is due, or as a standby look
    /// whether its holder is still renewing it (one conditional GET).
    pub async fn poll(&mut self, store: &Store) -> Result<&Standing, AgentError> {
        self.polls += 1;
        let due = self.polls >= RENEW_POLLS;
        match &self.standing {
            Some(Standing::Holder | Standing::Unprotected(_)) if !due => {}
            Some(Standing::Standby(_)) => self.watch(store).await?,
            _ => self.renew(store).await?,
        }
        self.record_standby(store).await;
        Ok(self.standing())
    }

    /// As a standby, say so in the store when it has just stood back and then
    /// every [`RENEW_POLLS`] polls (one PUT), for `cattle hosts`. A refusal (an
    /// older policy) is logged once: it hides this agent from `cattle hosts`,
    /// nothing else.
    async fn record_standby(&mut self, store: &Store) {
        let Some(Standing::Standby(holder)) = &self.standing else {
            return;
        };
        if !self.standby_due && self.polls < RENEW_POLLS {
            return;
        }
        let record = Standby {
            format: FORMAT,
            host: self.host.clone(),
            machine: self.machine.clone(),
            state_dir: self.state_dir_name.clone(),
            pid: std::process::id(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            seen: cattle_core::now_rfc3339(),
            renew_secs: self.renew_every.as_secs().max(1),
            holder_machine: holder.machine.clone(),
            holder_state_dir: holder.state_dir.clone(),
        };
        let body = serde_json::to_vec_pretty(&record).expect("standby records serialize");
        let key = keys::standby(&self.host);
        match store.put(&key, body, Condition::Always).await {
            Ok(_) => {
                self.standby_due = false;
                self.polls = 0;
            }
            Err(e) => {
                if !self.standby_warned {
                    tracing::warn!(
                        location = %store.location(&key),
                        error = %e,
                        "cannot record in the store that this agent stands by; `cattle hosts` \
                         will not show this host ID as used twice"
                    );
                    self.standby_warned = true;
                }
                // Not again at every poll: at the next period.
                self.standby_due = false;
                self.polls = 0;
            }
        }
    }

    /// Before starting work: make sure this agent (still) holds the lease,
    /// renewing it now. A standby looks again, and takes over only when due.
    pub async fn confirm(&mut self, store: &Store) -> Result<&Standing, AgentError> {
        match &self.standing {
            Some(Standing::Standby(_)) => self.watch(store).await?,
            _ => self.renew(store).await?,
        }
        self.record_standby(store).await;
        Ok(self.standing())
    }

    /// As the holder: look whether another agent has written the lease since
    /// this one did (one conditional GET), and stand back if so.
    async fn check(&mut self, store: &Store) -> Result<(), AgentError> {
        if !matches!(self.standing, Some(Standing::Holder)) {
            return Ok(());
        }
        let key = keys::lease(&self.host);
        let fetched = store
            .get_if_changed(&key, self.etag.as_deref(), MAX_DOCUMENT_BYTES)
            .await?;
        match fetched {
            Fetched::NotModified => Ok(()),
            // Deleted (an operator, or `cattle clean` of a host): write it again.
            Fetched::Missing => self.take(store, Some(Condition::IfAbsent)).await,
            Fetched::Found(object) => match parse(&object.bytes, &store.location(&key)) {
                Some(lease) if !self.found_mine(&lease) => {
                    self.etag = Some(object.etag);
                    self.unchanged_since = Instant::now();
                    self.stand_back(lease);
                    Ok(())
                }
                _ => {
                    self.take(store, Some(Condition::IfMatch(object.etag)))
                        .await
                }
            },
        }
    }

    /// Where this agent stands (after [`Lease::poll`] or [`Lease::confirm`]).
    pub fn standing(&self) -> &Standing {
        self.standing
            .as_ref()
            .expect("the lease is looked at before it is asked about")
    }

    /// As the holder, rewrite the lease on the ETag it last wrote (one PUT);
    /// otherwise read it and take it if it is absent or this agent's own.
    async fn renew(&mut self, store: &Store) -> Result<(), AgentError> {
        let known = match (&self.standing, &self.etag) {
            (Some(Standing::Holder), Some(etag)) => Some(Condition::IfMatch(etag.clone())),
            _ => None,
        };
        self.take(store, known).await
    }

    /// As a standby: look whether the lease changed; take it over once it has
    /// not for [`TAKEOVER_PERIODS`] of its holder's periods.
    async fn watch(&mut self, store: &Store) -> Result<(), AgentError> {
        let key = keys::lease(&self.host);
        let fetched = match store
            .get_if_changed(&key, self.etag.as_deref(), MAX_DOCUMENT_BYTES)
            .await
        {
            Ok(fetched) => fetched,
            Err(e) => return self.refused(e),
        };
        match fetched {
            Fetched::Missing => {
                tracing::info!(host = %self.host, "the other agent's lease is gone; taking it");
                self.take(store, Some(Condition::IfAbsent)).await
            }
            Fetched::Found(object) => {
                self.unchanged_since = Instant::now();
                match parse(&object.bytes, &store.location(&key)) {
                    Some(lease) if !self.found_mine(&lease) => {
                        self.etag = Some(object.etag);
                        self.stand_back(lease);
                        Ok(())
                    }
                    _ => {
                        self.take(store, Some(Condition::IfMatch(object.etag)))
                            .await
                    }
                }
            }
            Fetched::NotModified => {
                let Some(Standing::Standby(holder)) = &self.standing else {
                    return Ok(());
                };
                let period = Duration::from_secs(holder.renew_secs.clamp(1, 86_400));
                let silent = self.unchanged_since.elapsed();
                if silent < period * TAKEOVER_PERIODS {
                    return Ok(());
                }
                tracing::warn!(
                    host = %self.host,
                    holder_machine = %holder.machine,
                    holder_state_dir = %holder.state_dir,
                    silent = %humantime::format_duration(Duration::from_secs(silent.as_secs())),
                    "the agent active for this host has not renewed its lease for {TAKEOVER_PERIODS} \
                     of its periods; taking over"
                );
                let etag = self.etag.clone().expect("a standby has read the lease");
                self.take(store, Some(Condition::IfMatch(etag))).await
            }
        }
    }

    /// Write a lease with a fresh nonce on `condition`, or, without one, on
    /// what a read finds: absent or this agent's own, take it; another's,
    /// stand back. A lost race reads again (a few times).
    async fn take(
        &mut self,
        store: &Store,
        condition: Option<Condition>,
    ) -> Result<(), AgentError> {
        let key = keys::lease(&self.host);
        let mut condition = condition;
        for _ in 0..3 {
            let condition = match condition.take() {
                Some(condition) => condition,
                None => {
                    let object = match store.get(&key, MAX_DOCUMENT_BYTES).await {
                        Ok(object) => object,
                        Err(e) => return self.refused(e),
                    };
                    match object {
                        None => Condition::IfAbsent,
                        Some(object) => match parse(&object.bytes, &store.location(&key)) {
                            Some(lease) if !self.found_mine(&lease) => {
                                self.etag = Some(object.etag);
                                self.unchanged_since = Instant::now();
                                self.stand_back(lease);
                                return Ok(());
                            }
                            // This agent's own, or unreadable: rewrite it.
                            _ => Condition::IfMatch(object.etag),
                        },
                    }
                }
            };
            match self.write(store, condition).await {
                Ok(()) => return Ok(()),
                Err(AgentError::Store(StoreError::PreconditionFailed { .. })) => continue,
                Err(AgentError::Store(e)) => return self.refused(e),
                Err(e) => return Err(e),
            }
        }
        match &self.standing {
            Some(Standing::Holder) => Ok(()),
            _ => Err(StoreError::PreconditionFailed {
                op: "write",
                location: store.location(&key),
            }
            .into()),
        }
    }

    /// Write a new lease when `condition` holds, with a fresh nonce or the one
    /// of a write left without an answer.
    async fn write(&mut self, store: &Store, condition: Condition) -> Result<(), AgentError> {
        let key = keys::lease(&self.host);
        let nonce = self.pending.unwrap_or_else(Uuid::new_v4);
        // Remember the nonce before the store has it, so that a crash in
        // between still finds the lease this agent's own.
        let nonces = remembered(self.held, &self.nonces, nonce);
        write_nonces(&self.state_dir, &nonces)
            .map_err(|e| AgentError::local(self.state_dir.join(LEASE_FILE), e))?;
        self.nonces = nonces;
        let holder = matches!(self.standing, Some(Standing::Holder));
        let since = if holder {
            self.since.clone()
        } else {
            cattle_core::now_rfc3339()
        };
        let lease = HostLease {
            format: FORMAT,
            host: self.host.clone(),
            nonce,
            machine: self.machine.clone(),
            state_dir: self.state_dir_name.clone(),
            pid: std::process::id(),
            since: since.clone(),
            renewed: cattle_core::now_rfc3339(),
            renew_secs: self.renew_every.as_secs().max(1),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            heartbeat: Some(self.heartbeat(store)),
        };
        let body = serde_json::to_vec_pretty(&lease).expect("leases serialize");
        let etag = match store.put(&key, body, condition).await {
            Ok(etag) => etag,
            // Refused: this write did not reach the store (an earlier one with
            // the same nonce may have).
            Err(e @ StoreError::PreconditionFailed { .. }) => return Err(e.into()),
            // No answer: it may have reached the store all the same.
            Err(e) => {
                self.pending = Some(nonce);
                return Err(e.into());
            }
        };
        self.held = Some(nonce);
        self.pending = None;
        if !holder {
            tracing::info!(host = %self.host, lease = %store.location(&key), "this agent is the one active for the host");
        }
        self.since = since;
        self.etag = Some(etag);
        self.polls = 0;
        self.standing = Some(Standing::Holder);
        Ok(())
    }

    /// The heartbeat as of now: the step under way read from the local status.
    fn heartbeat(&self, store: &Store) -> Heartbeat {
        let mut heartbeat = self.heartbeat.clone();
        heartbeat.clock_offset_secs = store.clock_offset();
        heartbeat.execution = self.running.map(|id| {
            let status = local_status(&self.state_dir, id);
            RunningExecution {
                id,
                step: status
                    .as_ref()
                    .and_then(|s| s.step.as_ref())
                    .map(|s| s.number),
                steps: status.map_or(0, |s| s.steps),
            }
        });
        heartbeat
    }

    /// A store error on the lease. Access denied means the store does not let
    /// this agent hold a lease at all (an older policy): it then runs without
    /// one, warned once. Anything else is returned, to be retried.
    fn refused(&mut self, e: StoreError) -> Result<(), AgentError> {
        if !matches!(e, StoreError::AccessDenied { .. }) {
            return Err(e.into());
        }
        if !self.warned {
            tracing::warn!(
                host = %self.host,
                error = %e,
                "the store refuses this agent its host lease; running without one, so a second \
                 agent with this host ID would not be stopped: allow it the lease (see \
                 deploy/minio/cattle-host.json)"
            );
            self.warned = true;
        }
        self.polls = 0;
        self.standing = Some(Standing::Unprotected(e.to_string()));
        Ok(())
    }

    fn stand_back(&mut self, holder: HostLease) {
        let news = match &self.standing {
            Some(Standing::Standby(before)) => {
                before.machine != holder.machine || before.state_dir != holder.state_dir
            }
            _ => true,
        };
        if news {
            self.standby_due = true;
            tracing::error!(
                host = %self.host,
                holder_machine = %holder.machine,
                holder_state_dir = %holder.state_dir,
                holder_pid = holder.pid,
                since = %holder.since,
                "another agent is active for host ID `{}` (machine {}, state directory {}); this one \
                 (machine {}, state directory {}) runs nothing while that one keeps its lease",
                self.host, holder.machine, holder.state_dir, self.machine, self.state_dir_name
            );
        }
        self.standing = Some(Standing::Standby(Box::new(holder)));
    }

    /// Whether `lease`, as read from the store, is this agent's own; if so,
    /// its nonce is the one the store holds.
    fn found_mine(&mut self, lease: &HostLease) -> bool {
        let mine = self.nonces.contains(&lease.nonce);
        if mine {
            self.held = Some(lease.nonce);
            if self.pending == Some(lease.nonce) {
                self.pending = None;
            }
        }
        mine
    }

    /// This agent as conflict records name it: machine and state directory.
    pub fn me(&self) -> (&str, &str) {
        (&self.machine, &self.state_dir_name)
    }
}

fn parse(bytes: &[u8], location: &str) -> Option<HostLease> {
    match serde_json::from_slice::<HostLease>(bytes) {
        Ok(lease) => Some(lease),
        Err(e) => {
            tracing::warn!(location, error = %e, "the host lease is not a valid document; replacing it");
            None
        }
    }
}

/// The nonces to remember before writing `new`: the one the store holds
/// (`held`), or without one the last remembered, and `new`.
fn remembered(held: Option<Uuid>, before: &[Uuid], new: Uuid) -> Vec<Uuid> {
    let mut nonces = match held {
        Some(held) => vec![held],
        None => before.to_vec(),
    };
    // `new` may be a nonce whose write had no answer, written again.
    nonces.retain(|n| *n != new);
    nonces.push(new);
    let keep = nonces.len().saturating_sub(2);
    nonces.drain(..keep);
    nonces
}

fn read_nonces(state_dir: &Path) -> Vec<Uuid> {
    std::fs::read_to_string(state_dir.join(LEASE_FILE))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| Uuid::parse_str(n).ok())
        .collect()
}

fn write_nonces(state_dir: &Path, nonces: &[Uuid]) -> std::io::Result<()> {
    let text: String = nonces.iter().map(|n| format!("{n}\n")).collect();
    local::write_atomic(state_dir, LEASE_FILE, text.as_bytes())
}

/// This agent as leases name it: the machine and the state directory.
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

/// While an execution runs: every `every`, renew the lease when due, and
/// otherwise look (one conditional GET) whether another agent has written it;
/// raise `lost` when this agent no longer holds it. Runs until aborted.
pub async fn keep(
    lease: std::sync::Arc<tokio::sync::Mutex<Lease>>,
    store: Store,
    every: Duration,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        tokio::time::sleep(every).await;
        let mut lease = lease.lock().await;
        let result = if lease.polls + 1 >= RENEW_POLLS {
            lease.poll(&store).await.map(drop)
        } else {
            lease.polls += 1;
            lease.check(&store).await
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot renew or check the host lease; trying again");
        }
        if matches!(lease.standing, Some(Standing::Standby(_))) {
            lost.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cattle_core::store::FileStore;

    #[tokio::test]
    async fn a_refused_write_keeps_the_nonce_the_store_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(FileStore::open(dir.path().join("store")).unwrap());
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let host = HostId::new("h1").unwrap();
        let mut lease = Lease::new(&host, &state, Duration::from_secs(1), Facts::default());
        lease.write(&store, Condition::IfAbsent).await.unwrap();
        // Refused writes in a row (a distributed MinIO answering If-Match wrongly
        // for a while after nodes return).
        for _ in 0..3 {
            let refused = lease
                .write(&store, Condition::IfMatch("\"not-it\"".to_string()))
                .await;
            assert!(
                matches!(
                    refused,
                    Err(AgentError::Store(StoreError::PreconditionFailed { .. }))
                ),
                "{refused:?}"
            );
        }
        let stored = store
            .get(&keys::lease(&host), MAX_DOCUMENT_BYTES)
            .await
            .unwrap()
            .unwrap();
        let stored = parse(&stored.bytes, "lease").unwrap();
        // A restarted agent reads the state directory and knows the lease as its own.
        assert!(read_nonces(&state).contains(&stored.nonce), "{stored:?}");
        let mut restarted = Lease::new(&host, &state, Duration::from_secs(1), Facts::default());
        assert!(restarted.found_mine(&stored));
    }

    /// A store node dies while a renewal is under way: the write reaches the
    /// store but its answer is lost, and the next renewals fail too. Once the
    /// store answers again, the agent still knows the lease as its own.
    #[tokio::test]
    async fn a_write_that_landed_without_an_answer_keeps_the_lease_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::File(FileStore::open(root.clone()).unwrap());
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let host = HostId::new("h1").unwrap();
        let mut lease = Lease::new(&host, &state, Duration::from_secs(1), Facts::default());
        assert_eq!(lease.confirm(&store).await.unwrap(), &Standing::Holder);
        let key = keys::lease(&host);
        let first = store.get(&key, MAX_DOCUMENT_BYTES).await.unwrap().unwrap();

        // The host's directory in the store is out of reach: every write fails
        // without a "precondition failed" (it cannot tell what the store holds).
        let hosts_dir = root.join("hosts/h1");
        let away = root.join("hosts/h1.away");
        std::fs::rename(&hosts_dir, &away).unwrap();
        std::fs::write(&hosts_dir, "").unwrap();
        let mut tried = Vec::new();
        for _ in 0..3 {
            let failed = lease.confirm(&store).await;
            assert!(
                matches!(failed, Err(AgentError::Store(ref e)) if !matches!(e, StoreError::PreconditionFailed { .. })),
                "{failed:?}"
            );
            tried.push(*read_nonces(&state).last().unwrap());
        }
        // ...and yet the first of those writes had reached it.
        std::fs::remove_file(&hosts_dir).unwrap();
        std::fs::rename(&away, &hosts_dir).unwrap();
        let mut landed: HostLease = serde_json::from_slice(&first.bytes).unwrap();
        landed.nonce = tried[0];
        store
            .put(
                &key,
                serde_json::to_vec(&landed).unwrap(),
                Condition::IfMatch(first.etag),
            )
            .await
            .unwrap();

        // The renewal on the ETag it knows is refused; the agent reads the
        // lease, finds its nonce, and renews.
        assert_eq!(lease.confirm(&store).await.unwrap(), &Standing::Holder);
        let now = store.get(&key, MAX_DOCUMENT_BYTES).await.unwrap().unwrap();
        let now: HostLease = serde_json::from_slice(&now.bytes).unwrap();
        assert_ne!(now.nonce, landed.nonce, "the lease was not renewed");
        assert_eq!(read_nonces(&state), [landed.nonce, now.nonce]);
    }

    #[test]
    fn writes_cut_short_one_after_another_never_forget_the_nonce_the_store_holds() {
        // The store holds n0, written by an agent that remembered it.
        let n0 = Uuid::new_v4();
        let mut file = remembered(None, &[], n0);
        // Three agents in a row find n0 theirs, remember a new nonce, and are
        // killed before their write reaches the store.
        for _ in 0..3 {
            let held = file.contains(&n0).then_some(n0);
            assert!(held.is_some(), "{file:?} lost the nonce the store holds");
            file = remembered(held, &file, Uuid::new_v4());
        }
        assert!(file.contains(&n0), "{file:?}");
        // Once a write reaches the store, the new nonce is the one to keep.
        let n1 = *file.last().unwrap();
        let file = remembered(Some(n1), &file, Uuid::new_v4());
        assert_eq!(file[0], n1);
        assert_eq!(file.len(), 2);
    }
}

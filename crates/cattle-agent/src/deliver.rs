//! Delivery: the execution's status and log, from the local outbox to the store.
//!
//! A [`Courier`] sends only what the store does not have yet, one object at a
//! time and the newest status before anything else, so that a slow link
//! delays the log but never the status: a status when a newer one was written
//! (or a pause announced), the marker part and the deletion of dropped parts
//! (see [`crate::log_parts`]), each full part once, in order, and the growing
//! last part when it has grown. What the store holds of the log is recorded in
//! the execution's `SENT` file, so a restarted agent does not send it again.
//!
//! While the steps run, [`upload_progress`] does this whenever the report
//! writes a status or fills a part. Then [`deliver`] sends the final status
//! first (it is small, and it says in `log` how much log to expect), then the
//! rest of the log, then the DONE marker, and records `.delivered` last. A
//! reader in between sees the final state with a log that is still shorter
//! than the status says, and `cattle log` says so.

use std::path::{Path, PathBuf};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Condition, Store, StoreError};
use cattle_core::wire::{FORMAT, HostStatus, State};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::local::{self, DELIVERED, LOG_DIR, SENT, STATUS_JSON};
use crate::log_parts::{Layout, PART};
use crate::{AgentError, Shutdown};

/// What the store holds of an execution's log, as far as this host knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    /// Every full part up to this one is in the store (or was dropped).
    through: Option<u64>,
    /// The highest part ever sent: dropped parts above it were never sent.
    highest: Option<u64>,
    /// Dropped parts are deleted from the store up to this one.
    deleted: Option<u64>,
    /// The marker part as sent.
    marker: Option<String>,
    /// The last part as sent while it was growing: its number and size.
    growing: Option<(u64, u64)>,
}

/// The next object the store lacks.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Part `n`, full (`growing: false`) or the last one, still growing.
    Part { n: u64, growing: bool },
    /// The marker part `n`, whose text changed.
    Marker { n: u64, text: String },
    /// Dropped part `n`, sent before it was dropped.
    Delete { n: u64 },
}

/// Delivery failed: the store did not take it, or the local copy cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read `{path}`: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<SendError> for AgentError {
    fn from(e: SendError) -> AgentError {
        match e {
            SendError::Store(e) => AgentError::Store(e),
            SendError::Local { path, source } => AgentError::LocalRead { path, source },
        }
    }
}

fn local_error(path: PathBuf) -> impl FnOnce(std::io::Error) -> SendError {
    move |source| SendError::Local { path, source }
}

/// Sends one execution's status and log to the store.
pub struct Courier {
    store: Store,
    host: HostId,
    id: Uuid,
    dir: PathBuf,
    sent: Sent,
    /// `seq` of the status this process last sent.
    status_seq: Option<u64>,
    /// The last failure logged, so that one cause is logged once.
    problem: Option<String>,
}

impl Courier {
    pub fn open(store: &Store, host: &HostId, id: Uuid, dir: &Path) -> Courier {
        let path = dir.join(SENT);
        let sent = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "damaged; the log is sent again from its start");
                Sent::default()
            }),
            Err(_) => Sent::default(),
        };
        Courier {
            store: store.clone(),
            host: host.clone(),
            id,
            dir: dir.to_path_buf(),
            sent,
            status_seq: None,
            problem: None,
        }
    }

    /// Send `status` unless a status as new was sent already.
    async fn send_status(&mut self, status: &HostStatus) -> Result<(), StoreError> {
        if self.status_seq.is_some_and(|seq| seq >= status.seq) {
            return Ok(());
        }
        let body = serde_json::to_vec_pretty(status).expect("status serializes");
        self.store
            .put(&keys::status(self.id, &self.host), body, Condition::Always)
            .await?;
        self.status_seq = Some(status.seq);
        Ok(())
    }

    /// What the store lacks first, given what is in the log directory.
    fn next(&mut self, layout: &Layout) -> Result<Option<Next>, SendError> {
        let last = layout.last();
        if let Some(marker) = layout.marker {
            let path = self.dir.join(LOG_DIR).join(keys::log_part_name(marker));
            let text = std::fs::read(&path).map_err(local_error(path))?;
            let text = String::from_utf8_lossy(&text).into_owned();
            if self.sent.marker.as_ref() != Some(&text) {
                return Ok(Some(Next::Marker { n: marker, text }));
            }
            let first_tail = layout.first_tail().unwrap_or(marker + 1);
            let from = (marker + 1).max(self.sent.deleted.map_or(0, |d| d + 1));
            if from < first_tail {
                if self.sent.highest.is_some_and(|highest| from <= highest) {
                    return Ok(Some(Next::Delete { n: from }));
                }
                // Never sent: nothing to delete.
                self.sent.deleted = Some(first_tail - 1);
            }
        }
        for &(n, size) in &layout.parts {
            if Some(n) == layout.marker || Some((n, size)) == last || size < PART {
                continue;
            }
            if self.sent.through.is_some_and(|through| through >= n) {
                continue;
            }
            if self.sent.growing == Some((n, size)) {
                // Sent whole while it was the last part.
                self.sent.through = Some(n);
                continue;
            }
            return Ok(Some(Next::Part { n, growing: false }));
        }
        if let Some((n, size)) = last
            && Some(n) != layout.marker
            && size > 0
            && self.sent.through.is_none_or(|through| through < n)
            && !self
                .sent
                .growing
                .is_some_and(|(sent, sent_size)| sent == n && sent_size >= size)
        {
            return Ok(Some(Next::Part { n, growing: true }));
        }
        Ok(None)
    }

    /// Send the next object the store lacks; `false` when it lacks none.
    async fn send_next(&mut self) -> Result<bool, SendError> {
        let log_dir = self.dir.join(LOG_DIR);
        let layout = Layout::scan(&log_dir).map_err(local_error(log_dir.clone()))?;
        let Some(next) = self.next(&layout)? else {
            return Ok(false);
        };
        match next {
            Next::Part { n, growing } => {
                let path = log_dir.join(keys::log_part_name(n));
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    // Dropped meanwhile: look again.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
                    Err(e) => return Err(local_error(path)(e)),
                };
                let size = bytes.len() as u64;
                self.store
                    .put(
                        &keys::log_part(self.id, &self.host, n),
                        bytes,
                        Condition::Always,
                    )
                    .await?;
                if growing {
                    self.sent.growing = Some((n, size));
                } else {
                    self.sent.through = Some(n);
                }
                self.sent.highest = self.sent.highest.max(Some(n));
            }
            Next::Marker { n, text } => {
                self.store
                    .put(
                        &keys::log_part(self.id, &self.host, n),
                        text.clone().into_bytes(),
                        Condition::Always,
                    )
                    .await?;
                self.sent.marker = Some(text);
                self.sent.highest = self.sent.highest.max(Some(n));
            }
            Next::Delete { n } => {
                self.store
                    .delete(&keys::log_part(self.id, &self.host, n))
                    .await?;
                self.sent.deleted = Some(n);
            }
        }
        self.save();
        Ok(true)
    }

    /// Record what was sent, so that a restarted agent does not send it again.
    /// Failing to is not worth stopping for: the cost is sending it again.
    fn save(&self) {
        let body = serde_json::to_vec(&self.sent).expect("serializes");
        if let Err(e) = local::write_atomic(&self.dir, SENT, &body) {
            tracing::debug!(path = %self.dir.join(SENT).display(), error = %e, "cannot record what the store has of the log");
        }
    }

    /// Log a failure once per cause, and a recovery.
    fn note(&mut self, result: Result<(), SendError>) {
        match result {
            Ok(()) => {
                if self.problem.take().is_some() {
                    tracing::info!(execution = %self.id, "uploads to the store work again");
                }
            }
            Err(e) => {
                let text = e.to_string();
                if self.problem.as_ref() != Some(&text) {
                    tracing::warn!(execution = %self.id, error = %e, "upload failed; it is retried, and the final status is delivered whatever happens");
                } else {
                    tracing::debug!(execution = %self.id, error = %e, "upload failed again");
                }
                self.problem = Some(text);
            }
        }
    }

    /// Send the newest status the channel has, then the log, until nothing is
    /// left or the run is over (the channel closed: the log then goes with
    /// the final delivery, after the final status).
    async fn catch_up(&mut self, rx: &mut watch::Receiver<HostStatus>) -> Result<(), SendError> {
        loop {
            let latest = rx.borrow_and_update().clone();
            self.send_status(&latest).await?;
            if rx.has_changed().is_err() || !self.send_next().await? {
                return Ok(());
            }
        }
    }

    /// The final status as written locally: the truth. A damaged `status.json`
    /// of a finished execution is replaced by one stating the final state from
    /// `STATUS` and what happened.
    fn final_status(&self) -> Result<HostStatus, AgentError> {
        let path = self.dir.join(STATUS_JSON);
        let problem = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<HostStatus>(&bytes) {
                Ok(status) if status.state.is_final() => return Ok(status),
                Ok(status) => format!("it says {}", status.state.as_str()),
                Err(e) => e.to_string(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "it is missing".to_string(),
            Err(source) => return Err(AgentError::LocalRead { path, source }),
        };
        let Some(state) = local::read_state(&self.dir).filter(|s| s.is_final()) else {
            return Err(AgentError::LocalRead {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the execution is not finished ({problem})"),
                ),
            });
        };
        tracing::warn!(path = %path.display(), problem, state = state.as_str(), "status.json of a finished execution is damaged; delivering the state from STATUS");
        let now = cattle_core::now_rfc3339();
        let status = HostStatus {
            format: FORMAT,
            execution: self.id,
            host: self.host.clone(),
            state,
            steps: 0,
            step: None,
            started: now.clone(),
            updated: now.clone(),
            finished: Some(now),
            error: Some(format!(
                "the host's status document `{}` was damaged ({problem}); its final state is from `STATUS`",
                path.display()
            )),
            // Above any count of writes: milliseconds since 1970.
            seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(u64::MAX / 2, |d| d.as_millis() as u64),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            paused: None,
            waiting: None,
            log: Layout::scan(&self.dir.join(LOG_DIR))
                .ok()
                .map(|layout| layout.summary()),
            results: Vec::new(),
        };
        let body = serde_json::to_vec_pretty(&status).expect("status serializes");
        local::write_atomic(&self.dir, STATUS_JSON, &body)
            .map_err(|e| AgentError::local(path, e))?;
        Ok(status)
    }
}

/// Upload each status the runner reports, then the log as it grows; the latest
/// status wins (one still waiting is replaced by a newer one). Returns the
/// courier, for the final delivery, once the run is over.
pub async fn upload_progress(mut courier: Courier, mut rx: watch::Receiver<HostStatus>) -> Courier {
    while rx.changed().await.is_ok() {
        let result = courier.catch_up(&mut rx).await;
        courier.note(result);
    }
    // The run is over: its last status (final, or where it stopped).
    let latest = rx.borrow().clone();
    let result = courier.send_status(&latest).await.map_err(SendError::from);
    courier.note(result);
    courier
}

/// How far [`deliver`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Status, log and DONE marker are in the store; `.delivered` records it.
    Complete,
    /// The agent is stopping: the rest is sent after its next start.
    Interrupted,
}

/// Deliver a finished execution: its final status, the rest of its log, the
/// DONE marker (for DONE), for a rolled-out execution its marker and maybe
/// the gate ([`crate::rollout::ended`]), then record `.delivered`.
pub async fn deliver(courier: &mut Courier, shutdown: &Shutdown) -> Result<Delivery, AgentError> {
    let status = courier.final_status()?;
    courier.send_status(&status).await?;
    loop {
        if shutdown.is_requested() {
            return Ok(Delivery::Interrupted);
        }
        if !courier.send_next().await? {
            break;
        }
    }
    if status.state == State::Done {
        courier
            .store
            .put(
                &keys::done(courier.id, &courier.host),
                Vec::new(),
                Condition::Always,
            )
            .await?;
    }
    if let Some(part) = crate::rollout::Part::load(&courier.dir) {
        crate::rollout::ended(
            &courier.store,
            &courier.host,
            courier.id,
            status.state,
            &part,
        )
        .await?;
    }
    let delivered = courier.dir.join(DELIVERED);
    std::fs::File::create(&delivered).map_err(|e| AgentError::local(delivered, e))?;
    Ok(Delivery::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_parts::LogWriter;

    fn courier(dir: &Path) -> Courier {
        let store = Store::File(
            cattle_core::store::FileStore::open(dir.join("store")).expect("file store"),
        );
        Courier::open(&store, &HostId::new("h1").unwrap(), Uuid::nil(), dir)
    }

    /// Everything the courier would send now, in order, as if each send succeeded.
    fn plan(courier: &mut Courier) -> Vec<Next> {
        let mut all = Vec::new();
        let layout = Layout::scan(&courier.dir.join(LOG_DIR)).unwrap();
        while let Some(next) = courier.next(&layout).unwrap() {
            match &next {
                Next::Part { n, growing: true } => {
                    courier.sent.growing = Some(*layout.parts.iter().find(|p| p.0 == *n).unwrap())
                }
                Next::Part { n, .. } => courier.sent.through = Some(*n),
                Next::Marker { text, .. } => courier.sent.marker = Some(text.clone()),
                Next::Delete { n } => courier.sent.deleted = Some(*n),
            }
            if let Next::Part { n, .. } | Next::Marker { n, .. } = &next {
                courier.sent.highest = courier.sent.highest.max(Some(*n));
            }
            all.push(next);
        }
        all
    }

    #[test]
    fn each_part_is_sent_once_and_only_the_growing_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(&dir.path().join(LOG_DIR), 64).unwrap();
        let mut c = courier(dir.path());
        log.write(&vec![b'a'; (PART + 10) as usize]).unwrap();
        assert_eq!(
            plan(&mut c),
            [
                Next::Part {
                    n: 0,
                    growing: false
                },
                Next::Part {
                    n: 1,
                    growing: true
                }
            ]
        );
        assert_eq!(plan(&mut c), []);
        log.write(&vec![b'b'; PART as usize]).unwrap();
        assert_eq!(
            plan(&mut c),
            [
                Next::Part {
                    n: 1,
                    growing: false
                },
                Next::Part {
                    n: 2,
                    growing: true
                }
            ]
        );
    }

    #[test]
    fn parts_dropped_after_they_were_sent_are_deleted_and_the_marker_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(&dir.path().join(LOG_DIR), 4).unwrap();
        let mut c = courier(dir.path());
        // Parts 0 to 3 sent; then 10 MiB more: 2 to 11 dropped, 12 and 13 kept.
        log.write(&vec![b'a'; (3 * PART + 1) as usize]).unwrap();
        assert_eq!(plan(&mut c).len(), 4);
        log.write(&vec![b'b'; (10 * PART) as usize]).unwrap();
        let next = plan(&mut c);
        let Next::Marker { n: 2, text } = &next[0] else {
            panic!("{next:?}");
        };
        assert!(text.contains("10 MiB of output dropped here"), "{text}");
        assert_eq!(
            next[1..],
            [
                Next::Delete { n: 3 },
                Next::Part {
                    n: 12,
                    growing: false
                },
                Next::Part {
                    n: 13,
                    growing: true
                }
            ]
        );
        // Sent before: part 2 (now the marker) and part 3. Only 3 is deleted;
        // parts 4 to 11 never reached the store.
        assert_eq!(plan(&mut c), []);
    }
}

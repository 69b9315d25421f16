//! The execution's report: its log and status, written to the local state
//! directory first and handed to the uploader, as the runner's [`Observer`].
//!
//! The state directory is the agent's outbox: whatever the store has not taken
//! yet is here, and a restart finds it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::wire::{FORMAT, HostStatus, State, StepStatus};
use cattle_stdlib::{Event, Observer, Outcome};
use tokio::sync::watch;
use uuid::Uuid;

use crate::Shutdown;
use crate::local::{self, JOURNAL, LOG_FILE, STATUS_FILE, STATUS_JSON};

/// The execution's log and status, kept locally and sent to the uploader.
pub struct Report {
    pub dir: PathBuf,
    log: File,
    pub status: HostStatus,
    /// Where progress goes to be uploaded, while the runner runs.
    pub progress: Option<watch::Sender<HostStatus>>,
    shutdown: Shutdown,
    /// Raised when an operator cancels the execution on this host.
    pub cancelled: Arc<AtomicBool>,
}

impl Report {
    pub fn start(
        host: &HostId,
        id: Uuid,
        dir: &Path,
        shutdown: Shutdown,
    ) -> std::io::Result<Report> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))?;
        let now = cattle_core::now_rfc3339();
        let seq = previous_seq(dir);
        let mut report = Report {
            dir: dir.to_path_buf(),
            log,
            status: HostStatus {
                format: FORMAT,
                execution: id,
                host: host.clone(),
                state: State::Progress,
                steps: 0,
                step: None,
                started: now.clone(),
                updated: now,
                finished: None,
                error: None,
                seq,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                paused: None,
                log: None,
            },
            progress: None,
            shutdown,
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        local::write_atomic(dir, STATUS_FILE, b"PROGRESS\n")?;
        report.changed();
        Ok(report)
    }

    /// Record durably that `step` is the next to run (or is in flight).
    pub fn journal(&self, step: usize) {
        if let Err(e) = local::write_atomic(&self.dir, JOURNAL, format!("{step}\n").as_bytes()) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot write JOURNAL; a restart would run this execution from step 1");
        }
    }

    pub fn log(&mut self, line: &str) {
        let stamped = format!("{} {line}\n", cattle_core::now_rfc3339());
        if let Err(e) = self.log.write_all(stamped.as_bytes()) {
            tracing::error!(path = %self.dir.join(LOG_FILE).display(), error = %e, "cannot write exec.log");
        }
    }

    pub fn finish(&mut self, state: State, error: Option<String>) {
        let now = cattle_core::now_rfc3339();
        self.status.state = state;
        self.status.error = error;
        self.status.finished = Some(now);
        self.changed();
        let word = format!("{}\n", state.as_str());
        if let Err(e) = local::write_atomic(&self.dir, STATUS_FILE, word.as_bytes()) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot write STATUS");
        }
    }

    /// Persist the status locally and hand it to the uploader.
    fn changed(&mut self) {
        self.status.seq += 1;
        self.status.updated = cattle_core::now_rfc3339();
        let body = serde_json::to_vec_pretty(&self.status).expect("status serializes");
        if let Err(e) = self
            .log
            .sync_data()
            .and_then(|()| local::write_atomic(&self.dir, STATUS_JSON, &body))
        {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot write status.json");
        }
        if let Some(tx) = &self.progress {
            let _ = tx.send(self.status.clone());
        }
    }
}

/// The `seq` of the last status written for this execution, so a resumed run keeps counting up.
fn previous_seq(dir: &Path) -> u64 {
    std::fs::read(dir.join(STATUS_JSON))
        .ok()
        .and_then(|b| serde_json::from_slice::<HostStatus>(&b).ok())
        .map_or(0, |s| s.seq)
}

impl Observer for Report {
    fn event(&mut self, event: &Event<'_>) {
        self.log(&event.to_string());
        match *event {
            Event::StepStarted {
                step,
                facility,
                description,
                attempts,
                ..
            } => {
                self.status.step = Some(StepStatus {
                    number: step,
                    facility: facility.to_string(),
                    description: description.to_string(),
                    attempt: 1,
                    attempts,
                });
                self.changed();
            }
            Event::AttemptFailed {
                attempt, retry_in, ..
            } => {
                if let (Some(step), Some(_)) = (&mut self.status.step, retry_in) {
                    step.attempt = attempt + 1;
                }
                self.changed();
            }
            Event::Finished { outcome } => match outcome {
                Outcome::Done => self.finish(State::Done, None),
                Outcome::Failed { step, error } => {
                    self.finish(State::Error, Some(format!("step {step} failed: {error}")))
                }
                Outcome::Stopped { .. } | Outcome::RebootRequested { .. } => self.changed(),
            },
            Event::StepSkipped { step } | Event::StepDone { step, .. } => self.journal(step + 1),
            Event::Started { .. } | Event::Output { .. } => {}
        }
    }

    fn sleep(&mut self, delay: Duration) {
        // Sleep in short slices so a shutdown request is not held up by a long backoff.
        let deadline = std::time::Instant::now() + delay;
        while !self.shutdown.is_requested() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    fn should_stop(&mut self) -> bool {
        self.shutdown.is_requested() || self.cancelled.load(Ordering::SeqCst)
    }
}

//! The execution's report: its log and status, written to the local state
//! directory first and handed to the uploader, as the runner's [`Observer`].
//!
//! The state directory is the agent's outbox: whatever the store has not taken
//! yet is here, and a restart finds it. Nothing is handed to the uploader that
//! is not written there first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::wire::{FORMAT, HostStatus, MAX_STATUS_TEXT_BYTES, State, StepStatus, cut_text};
use cattle_stdlib::{Event, Observer, Outcome};
use tokio::sync::watch;
use uuid::Uuid;

use crate::local::{self, JOURNAL, LOG_DIR, STATUS_FILE, STATUS_JSON};
use crate::log_parts::LogWriter;
use crate::{AgentError, Shutdown};

/// A write to the execution's local directory failed.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl WriteError {
    fn at(path: PathBuf) -> impl FnOnce(std::io::Error) -> WriteError {
        move |source| WriteError { path, source }
    }
}

impl From<WriteError> for AgentError {
    fn from(e: WriteError) -> AgentError {
        AgentError::local(e.path, e.source)
    }
}

/// The execution's log and status, kept locally and sent to the uploader.
pub struct Report {
    pub dir: PathBuf,
    log: LogWriter,
    /// Log bytes not written yet: the rest of a line whose write failed.
    unwritten: Vec<u8>,
    pub status: HostStatus,
    /// The last `seq` handed out: every status written gets the next.
    seq: u64,
    /// Where progress goes to be uploaded, while the runner runs.
    pub progress: Option<watch::Sender<HostStatus>>,
    shutdown: Shutdown,
    /// Raised when an operator cancels the execution on this host.
    pub cancelled: Arc<AtomicBool>,
}

impl Report {
    /// Open (or continue) execution `id`'s report in `dir`, keeping at most
    /// `max_log_mib` MiB of log, and mark it PROGRESS.
    pub fn start(
        host: &HostId,
        id: Uuid,
        dir: &Path,
        max_log_mib: u64,
        shutdown: Shutdown,
    ) -> Result<Report, WriteError> {
        std::fs::create_dir_all(dir).map_err(WriteError::at(dir.to_path_buf()))?;
        let log_dir = dir.join(LOG_DIR);
        let log = LogWriter::open(&log_dir, max_log_mib).map_err(WriteError::at(log_dir))?;
        let now = cattle_core::now_rfc3339();
        let mut report = Report {
            dir: dir.to_path_buf(),
            log,
            unwritten: Vec::new(),
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
                seq: 0,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                paused: None,
                log: None,
            },
            seq: previous_seq(dir),
            progress: None,
            shutdown,
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        report.write_state_word(State::Progress)?;
        report.changed()?;
        Ok(report)
    }

    /// Record durably that `step` is the next to run (or is in flight).
    pub fn journal(&mut self, step: usize) -> Result<(), WriteError> {
        local::write_atomic(&self.dir, JOURNAL, format!("{step}\n").as_bytes())
            .map_err(WriteError::at(self.dir.join(JOURNAL)))
    }

    /// Append a timestamped line to the log.
    pub fn log(&mut self, line: &str) -> Result<(), WriteError> {
        self.stamp(line);
        self.flush_log()
    }

    fn stamp(&mut self, line: &str) {
        self.unwritten
            .extend_from_slice(format!("{} {line}\n", cattle_core::now_rfc3339()).as_bytes());
    }

    /// Write what the log has not taken yet.
    fn flush_log(&mut self) -> Result<(), WriteError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let parts = self.log.summary().parts;
        let result = self.log.write(&self.unwritten);
        let written = match &result {
            Ok(()) => self.unwritten.len(),
            Err((written, _)) => *written,
        };
        self.unwritten.drain(..written);
        if self.log.summary().parts != parts
            && let Some(tx) = &self.progress
        {
            // A part is full: the uploader can send it.
            tx.send_modify(|_| {});
        }
        result.map_err(|(_, source)| WriteError {
            path: self.log.current_path(),
            source,
        })
    }

    /// Record the execution's final state: its status, then the STATUS word.
    pub fn finish(&mut self, state: State, error: Option<String>) -> Result<(), WriteError> {
        let now = cattle_core::now_rfc3339();
        self.status.state = state;
        self.status.error = error.map(|e| cut_text(&e, MAX_STATUS_TEXT_BYTES));
        self.status.finished = Some(now);
        self.changed()?;
        self.write_state_word(state)
    }

    fn write_state_word(&self, state: State) -> Result<(), WriteError> {
        let word = format!("{}\n", state.as_str());
        local::write_atomic(&self.dir, STATUS_FILE, word.as_bytes())
            .map_err(WriteError::at(self.dir.join(STATUS_FILE)))
    }

    /// Write the status locally (the log first), then hand it to the uploader.
    fn changed(&mut self) -> Result<(), WriteError> {
        self.seq += 1;
        self.status.seq = self.seq;
        self.status.updated = cattle_core::now_rfc3339();
        self.status.log = Some(self.log.summary());
        self.log.sync().map_err(|source| WriteError {
            path: self.log.current_path(),
            source,
        })?;
        let body = serde_json::to_vec_pretty(&self.status).expect("status serializes");
        local::write_atomic(&self.dir, STATUS_JSON, &body)
            .map_err(WriteError::at(self.dir.join(STATUS_JSON)))?;
        if let Some(tx) = &self.progress {
            tx.send_replace(self.status.clone());
        }
        Ok(())
    }

    /// Log a write that failed: the run goes on without it.
    fn failed(&self, result: Result<(), WriteError>) {
        if let Err(e) = result {
            tracing::error!(path = %e.path.display(), error = %e.source, "cannot write the execution's local state");
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
        let logged = self.log(&event.to_string());
        self.failed(logged);
        let result = match *event {
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
                    description: cut_text(description, MAX_STATUS_TEXT_BYTES),
                    attempt: 1,
                    attempts,
                });
                self.changed()
            }
            Event::AttemptFailed {
                attempt, retry_in, ..
            } => {
                if let (Some(step), Some(_)) = (&mut self.status.step, retry_in) {
                    step.attempt = attempt + 1;
                }
                self.changed()
            }
            Event::Finished { outcome } => match outcome {
                Outcome::Done => self.finish(State::Done, None),
                Outcome::Failed { step, error } => {
                    self.finish(State::Error, Some(format!("step {step} failed: {error}")))
                }
                Outcome::Stopped { .. } | Outcome::RebootRequested { .. } => self.changed(),
            },
            Event::StepSkipped { step } | Event::StepDone { step, .. } => self.journal(step + 1),
            Event::Started { .. } | Event::Output { .. } => Ok(()),
        };
        self.failed(result);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_descriptions_and_errors_are_cut_in_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostId::new("h1").unwrap();
        let mut report =
            Report::start(&host, Uuid::nil(), dir.path(), 64, Shutdown::new()).unwrap();
        let long = "d".repeat(100_000);
        report.event(&Event::StepStarted {
            step: 1,
            total: 1,
            facility: "command",
            description: &long,
            attempts: 1,
        });
        let outcome = Outcome::Failed {
            step: 1,
            error: "e".repeat(100_000),
        };
        report.event(&Event::Finished { outcome: &outcome });
        let status: HostStatus =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATUS_JSON)).unwrap()).unwrap();
        let description = &status.step.unwrap().description;
        assert!(description.len() < 5000, "{}", description.len());
        assert!(description.ends_with("… [cut: 100000 bytes in all]"));
        let error = status.error.unwrap();
        assert!(error.len() < 5000, "{}", error.len());
        assert!(
            error.ends_with("… [cut: 100015 bytes in all]"),
            "{}",
            &error[4000..]
        );
        assert_eq!(status.state, State::Error);
        let log = status.log.unwrap();
        assert!(log.bytes > 200_000, "{log:?}");
    }
}

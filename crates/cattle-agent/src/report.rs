//! The execution's report: its log and status, written to the local state
//! directory first and handed to the uploader, as the runner's [`Observer`].
//!
//! The state directory is the agent's outbox: whatever the store has not taken
//! yet is here, and a restart finds it. Nothing is handed on that is not
//! written there first, and the runner goes on only once it is: as the
//! observer, a write that fails (a full or failing disk) *pauses* the run. The
//! report tries again after [`Backoff::LOCAL_WRITE`] waits, logs the cause
//! once, has the uploader show it in the store as the status's `paused` field,
//! and returns to the runner only when the write is done or the agent is asked
//! to stop. So no step starts before the journal says the one before it is
//! done, and a program whose output cannot be written waits on its pipe.
//!
//! Outside the runner (in async code) the same writes return an error instead,
//! and the poll is retried later: that is a pause too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cattle_core::hosts::HostId;
use cattle_core::wire::{
    self, FORMAT, HostStatus, MAX_STATUS_TEXT_BYTES, State, StepStatus, cut_text,
};
use cattle_stdlib::{Backoff, Event, Observer, Outcome, StepResult};
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
    /// A line saying the run was paused, for the log once it can be written.
    resumed: Option<String>,
    pub status: HostStatus,
    /// The last `seq` handed out: every status written or announced gets the next.
    seq: u64,
    /// Where progress goes to be uploaded, while the runner runs.
    pub progress: Option<watch::Sender<HostStatus>>,
    shutdown: Shutdown,
    /// Raised when an operator cancels the execution on this host.
    pub cancelled: Arc<AtomicBool>,
    /// Raised when the run must stop before its next step without reporting a
    /// cancel: another agent took over the host's lease, or the execution was
    /// cleaned from the store.
    pub withdrawn: Vec<Arc<AtomicBool>>,
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
        // A resumed run goes on counting from where the last one was.
        let (seq, results) = previous_status(dir).map_or((0, Vec::new()), |s| (s.seq, s.results));
        let mut report = Report {
            dir: dir.to_path_buf(),
            log,
            unwritten: Vec::new(),
            resumed: None,
            status: HostStatus {
                results,
                ..first_status(host, id, State::Progress)
            },
            seq,
            progress: None,
            shutdown,
            cancelled: Arc::new(AtomicBool::new(false)),
            withdrawn: Vec::new(),
        };
        report.write_state_word(State::Progress)?;
        report.changed()?;
        Ok(report)
    }

    /// Record durably that `step` is the next to run and `attempt` of it is
    /// under way (0: none yet), so that a restart resumes there and counts an
    /// attempt cut short.
    pub fn journal(&mut self, step: usize, attempt: u32) -> Result<(), WriteError> {
        local::write_atomic(&self.dir, JOURNAL, format!("{step} {attempt}\n").as_bytes())
            .map_err(WriteError::at(self.dir.join(JOURNAL)))
    }

    /// Append a timestamped line to the log.
    pub fn log(&mut self, line: &str) -> Result<(), WriteError> {
        if let Some(note) = self.resumed.take() {
            self.stamp(&note);
        }
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

    /// Record how step `step` (1-based) ended, for the next status written.
    pub fn set_result(&mut self, step: usize, result: StepResult) {
        let results = &mut self.status.results;
        if results.len() < step {
            results.resize(step, None);
        }
        results[step - 1] = Some(wire_result(result));
    }

    /// Keep the results of steps before `step` only: a run resumed at `step`
    /// runs it and the steps after it again.
    pub fn keep_results_before(&mut self, step: usize) {
        self.status.results.truncate(step.saturating_sub(1));
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

    /// Do `op` until it succeeds, waiting while it fails: the run is paused
    /// meanwhile. `false` if the agent was asked to stop first (`op` is then
    /// not done).
    fn pausing(&mut self, mut op: impl FnMut(&mut Report) -> Result<(), WriteError>) -> bool {
        let mut pause: Option<Pause> = None;
        let mut done = false;
        loop {
            // Once `op` is done after a pause, the status is written again, so
            // that the store stops showing the pause.
            let result = if done { self.changed() } else { op(self) };
            match result {
                Ok(()) => match pause.take() {
                    None => return true,
                    Some(p) if done => {
                        let paused_for = p.since.elapsed();
                        tracing::info!(
                            execution = %self.status.execution,
                            paused_for = ?paused_for,
                            "local state can be written again; the run continues"
                        );
                        self.resumed = Some(format!(
                            "the run was paused for {} because the agent could not write its local state \
                             ({}: {}); it continues",
                            humantime::format_duration(Duration::from_secs(
                                paused_for.as_secs().max(1)
                            )),
                            p.first.path.display(),
                            p.first.source
                        ));
                        return true;
                    }
                    Some(p) => {
                        pause = Some(p);
                        done = true;
                    }
                },
                Err(e) => {
                    if !self.wait_out(&mut pause, e) {
                        return false;
                    }
                }
            }
        }
    }

    /// Wait before trying a failed write again; `false` if the agent is asked
    /// to stop meanwhile.
    fn wait_out(&mut self, pause: &mut Option<Pause>, error: WriteError) -> bool {
        let execution = self.status.execution;
        if self.shutdown.is_requested() {
            tracing::warn!(
                execution = %execution,
                path = %error.path.display(),
                error = %error.source,
                "stopping as asked while the run is paused; it resumes from its journal on the next start"
            );
            // What could not be written is not kept: the agent is going away.
            self.unwritten.clear();
            return false;
        }
        let p = pause.get_or_insert_with(|| Pause {
            since: Instant::now(),
            failures: 0,
            cause: String::new(),
            first: WriteError {
                path: error.path.clone(),
                source: std::io::Error::new(error.source.kind(), error.source.to_string()),
            },
        });
        p.failures += 1;
        let wait = Backoff::LOCAL_WRITE.delay(p.failures);
        let cause = format!("{}: {}", error.path.display(), error.source);
        if cause != p.cause {
            tracing::warn!(
                execution = %execution,
                path = %error.path.display(),
                error = %error.source,
                retry_in = ?wait,
                "cannot write the execution's local state; the run is paused until it can \
                 (free space or fix the disk; nothing else is needed)"
            );
            p.cause = cause.clone();
            self.announce_pause(&cause);
        } else {
            tracing::debug!(execution = %execution, path = %error.path.display(), error = %error.source, retry_in = ?wait, "still paused");
        }
        self.sleep(wait);
        !self.shutdown.is_requested()
    }

    /// Have the uploader show the pause in the store: the newest status, with
    /// `paused` set. It is not written locally (that is what fails); the next
    /// status written supersedes it.
    fn announce_pause(&mut self, cause: &str) {
        let Some(tx) = &self.progress else {
            return;
        };
        self.seq += 1;
        let mut status = self.status.clone();
        status.seq = self.seq;
        status.updated = cattle_core::now_rfc3339();
        status.log = Some(self.log.summary());
        status.paused = Some(cut_text(
            &format!(
                "cannot write {cause}; the run waits until it can and retries (from 1 s, doubling, \
                 at most every 60 s)"
            ),
            MAX_STATUS_TEXT_BYTES,
        ));
        tx.send_replace(status);
    }

    fn logged(&mut self, line: &str) -> bool {
        if let Some(note) = self.resumed.take() {
            self.stamp(&note);
        }
        self.stamp(line);
        self.pausing(Report::flush_log)
    }
}

/// How the status document spells the runner's `result`: every result has
/// its own.
pub fn wire_result(result: StepResult) -> wire::StepResult {
    match result {
        StepResult::Changed => wire::StepResult::Changed,
        StepResult::Unchanged => wire::StepResult::Unchanged,
        StepResult::Failed => wire::StepResult::Failed,
        StepResult::WouldChange => wire::StepResult::WouldChange,
        StepResult::InState => wire::StepResult::InState,
        StepResult::Unknown => wire::StepResult::Unknown,
    }
}

/// A run paused by a failing local write.
struct Pause {
    since: Instant,
    failures: u32,
    /// The last cause logged: a new one is logged again.
    cause: String,
    first: WriteError,
}

/// The last status written for this execution, if any: a resumed run keeps
/// its `seq` counting up and the results of the steps already over.
/// The first status this agent writes for execution `id` in `state`: started
/// and updated now, no step, no log yet.
pub fn first_status(host: &HostId, id: Uuid, state: State) -> HostStatus {
    let now = cattle_core::now_rfc3339();
    HostStatus {
        format: FORMAT,
        execution: id,
        host: host.clone(),
        state,
        steps: 0,
        step: None,
        started: now.clone(),
        updated: now,
        finished: None,
        error: None,
        seq: 0,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        paused: None,
        waiting: None,
        log: None,
        results: Vec::new(),
    }
}

fn previous_status(dir: &Path) -> Option<HostStatus> {
    std::fs::read(dir.join(STATUS_JSON))
        .ok()
        .and_then(|b| serde_json::from_slice::<HostStatus>(&b).ok())
}

/// What the agent's own log (the journal, under systemd) says of a run: each
/// step's start and end, failed attempts and how the run ended at the
/// default level; the steps' output and diffs at `debug`. Events arrive
/// redacted (`runner::run` wraps the observer).
fn journal(execution: Uuid, event: &Event<'_>) {
    match *event {
        Event::Started { steps } => {
            tracing::info!(
                %execution,
                "starting a config of {}",
                cattle_core::count(steps as u64, "step")
            );
        }
        Event::StepStarted {
            step,
            total,
            facility,
            description,
            ..
        } => tracing::info!(%execution, "step {step}/{total} started: {facility} ({description})"),
        Event::AttemptFailed { .. } => tracing::warn!(%execution, "{event}"),
        Event::StepFinished {
            step,
            attempt,
            result,
        } => match result {
            StepResult::Failed => {
                tracing::error!(%execution, "step {step} failed on attempt {attempt}")
            }
            _ if attempt > 1 => {
                tracing::info!(%execution, "step {step} {result} on attempt {attempt}")
            }
            _ => tracing::info!(%execution, "step {step} {result}"),
        },
        Event::Unchecked { .. } => tracing::info!(%execution, "{event}"),
        Event::Finished { outcome } => match outcome {
            Outcome::Failed { .. } => tracing::error!(%execution, "execution ended: {event}"),
            _ => tracing::info!(%execution, "execution ended: {event}"),
        },
        Event::Output { .. } | Event::Diff { .. } => tracing::debug!(%execution, "{event}"),
    }
}

impl Observer for Report {
    fn event(&mut self, event: &Event<'_>) {
        journal(self.status.execution, event);
        // Each write pauses until it is done; a `false` means the agent is
        // stopping, and the runner learns it from `should_stop`.
        if !self.logged(&event.to_string()) {
            return;
        }
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
                    description: cut_text(description, MAX_STATUS_TEXT_BYTES),
                    attempt: 1,
                    attempts,
                });
                self.pausing(Report::changed);
            }
            Event::AttemptFailed {
                attempt, retry_in, ..
            } => {
                if let (Some(step), Some(_)) = (&mut self.status.step, retry_in) {
                    step.attempt = attempt + 1;
                }
                self.pausing(Report::changed);
            }
            Event::Finished { outcome } => {
                let done = match outcome {
                    // A check-mode run that got through every step is done.
                    Outcome::Done | Outcome::Checked { .. } => {
                        self.pausing(|r| r.finish(State::Done, None))
                    }
                    Outcome::Failed { step, error } => {
                        let error = format!("step {step} failed: {error}");
                        self.pausing(|r| r.finish(State::Error, Some(error.clone())))
                    }
                    Outcome::Stopped { .. } | Outcome::RebootRequested { .. } => {
                        self.pausing(Report::changed)
                    }
                };
                // A pause at the very end is in the log too.
                if done && let Some(note) = self.resumed.take() {
                    self.stamp(&note);
                    self.pausing(Report::flush_log);
                }
            }
            // The step is not over (for the runner) until the journal says so.
            Event::StepFinished { step, result, .. } => {
                self.set_result(step, result);
                // The result is recorded before the journal moves on, so
                // that a resumed run knows every earlier step's.
                if self.pausing(Report::changed) && result != StepResult::Failed {
                    self.pausing(|r| r.journal(step + 1, 0));
                }
            }
            Event::Started { .. }
            | Event::Output { .. }
            | Event::Diff { .. }
            | Event::Unchecked { .. } => {}
        }
    }

    /// No attempt starts before the journal counts it.
    fn attempt_starting(&mut self, step: usize, attempt: u32) {
        self.pausing(|r| r.journal(step, attempt));
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
        self.shutdown.is_requested()
            || self.cancelled.load(Ordering::SeqCst)
            || self.withdrawn.iter().any(|w| w.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_holds_the_event_until_it_is_done_or_the_agent_stops() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostId::new("h1").unwrap();
        let shutdown = Shutdown::new();
        let mut report =
            Report::start(&host, Uuid::nil(), dir.path(), 64, shutdown.clone()).unwrap();
        // A directory where JOURNAL goes: replacing it fails until it is gone.
        let journal = dir.path().join(JOURNAL);
        std::fs::create_dir_all(journal.join("in-the-way")).unwrap();
        let blocker = journal.clone();
        let unblock = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::remove_dir_all(blocker).unwrap();
        });
        let started = Instant::now();
        report.event(&Event::StepFinished {
            step: 1,
            attempt: 1,
            result: StepResult::Changed,
        });
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), "2 0\n");
        unblock.join().unwrap();
        // The log says so with its next line.
        report.event(&Event::StepFinished {
            step: 2,
            attempt: 1,
            result: StepResult::Unchanged,
        });
        let log = std::fs::read_to_string(dir.path().join(LOG_DIR).join("00000000")).unwrap();
        assert!(log.contains("the run was paused for"), "{log}");
        assert!(log.contains("; it continues"), "{log}");

        // Asked to stop during a pause: the event returns, the journal unchanged.
        std::fs::remove_file(&journal).unwrap();
        std::fs::create_dir_all(journal.join("in-the-way")).unwrap();
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.request();
        });
        let started = Instant::now();
        report.event(&Event::StepFinished {
            step: 3,
            attempt: 1,
            result: StepResult::Changed,
        });
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(journal.is_dir());
        assert!(report.should_stop());
    }

    #[test]
    fn every_step_result_is_recorded_in_the_status_under_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostId::new("h1").unwrap();
        let mut report =
            Report::start(&host, Uuid::nil(), dir.path(), 64, Shutdown::new()).unwrap();
        use StepResult::*;
        for (step, result) in [Changed, Unchanged, Failed, WouldChange, InState, Unknown]
            .into_iter()
            .enumerate()
        {
            report.set_result(step + 1, result);
        }
        assert_eq!(
            serde_json::to_string(&report.status.results).unwrap(),
            r#"["changed","unchanged","failed","would_change","in_state","unknown"]"#
        );
        let recap = report.status.recap();
        assert_eq!(
            (
                recap.would_change,
                recap.in_state,
                recap.unknown,
                recap.changed
            ),
            (1, 1, 1, 1)
        );
    }

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

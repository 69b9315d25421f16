//! One execution on this host, from the inbox entry to the delivered status:
//! decide whether to run it ([`crate::admission`]), fetch and verify it
//! ([`crate::fetch`]), run its steps while reporting ([`crate::report`],
//! [`crate::deliver`]) and reboot when a step asks ([`crate::reboot`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cattle_core::env;
use cattle_core::keys;
use cattle_core::store::Store;
use cattle_core::wire::{Envelope, HostStatus, State};
use cattle_stdlib::{Environment, Outcome, Plan, Start};
use tokio::sync::watch;
use uuid::Uuid;

use crate::admission::{self, Admitted};
use crate::deliver::{Courier, Delivery, deliver, upload_progress};
use crate::fetch::{self, Failure};
use crate::local::{self, CONFIG_DIR, DELIVERED, FOREIGN};
use crate::report::Report;
use crate::{AgentError, Config, Shutdown, cancel, reboot, rollout};

/// How far [`handle`] brought an execution.
#[derive(Debug)]
pub enum Handled {
    /// Nothing more to do: finished and reported, refused, or gone.
    Settled,
    /// Stopped before the end (shutdown, or a reboot under way): later.
    Stopped,
    /// A rolled-out execution whose turn has not come, with the status to
    /// show meanwhile: later, once the gate changes or the time has come.
    Waiting(Box<(rollout::Waiting, HostStatus)>),
}

/// An execution of the inbox that this agent may have to run, with what
/// ordering it needs.
#[derive(Debug)]
pub struct Candidate {
    pub id: Uuid,
    /// The manifest envelope's bytes, or why it cannot be used.
    envelope: Result<Vec<u8>, String>,
    /// The host's signed variables for it, from the inbox.
    host_vars: Option<Envelope>,
    /// This host started it and did not finish it.
    interrupted: bool,
    /// The version its manifest claims: only for ordering; whether it runs is
    /// decided on the verified manifest.
    version: u64,
}

impl Candidate {
    /// Executions run in this order: one this host was running first, then by
    /// signed version (publish order, whatever the publishers' clocks).
    pub fn order(&self) -> (bool, u64, Uuid) {
        (!self.interrupted, self.version, self.id)
    }
}

/// What [`survey`] found.
#[derive(Debug)]
pub enum Survey {
    /// Nothing to run: finished here (and delivered, now if need be), or cleaned.
    Settled,
    /// Finished here, and its delivery was stopped by a shutdown: later.
    Stopped,
    /// To be run (or resumed).
    Candidate(Candidate),
}

/// Look at execution `id` of the inbox: settled already (finished here, and
/// delivered now if it was not yet; or cleaned), or a candidate to run.
pub async fn survey(
    config: &Config,
    store: &Store,
    id: Uuid,
    host_vars: Option<Envelope>,
    shutdown: &Shutdown,
) -> Result<Survey, AgentError> {
    let dir = local::execution_dir(&config.state_dir, id);
    let interrupted = match local::read_state(&dir) {
        Some(state) if state.is_final() => {
            if !dir.join(DELIVERED).exists() && !dir.join(FOREIGN).exists() {
                return Ok(match delivered(store, config, id, shutdown).await? {
                    Handled::Settled => Survey::Settled,
                    Handled::Stopped | Handled::Waiting(_) => Survey::Stopped,
                });
            }
            return Ok(Survey::Settled);
        }
        Some(State::Progress) => true,
        _ => false,
    };
    let envelope = match fetch::envelope(store, id).await? {
        fetch::Envelope::Found(bytes) => Ok(bytes),
        fetch::Envelope::Missing => {
            tracing::warn!(execution = %id, "inbox lists an execution without a manifest; ignoring it");
            return Ok(Survey::Settled);
        }
        fetch::Envelope::TooLarge(limit) => Err(format!(
            "the manifest is larger than the {limit} bytes any manifest may have"
        )),
    };
    let claimed = envelope
        .as_ref()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<cattle_core::wire::Envelope>(bytes).ok())
        .and_then(|e| e.manifest().ok());
    let version = claimed.as_ref().map_or(0, |m| m.version);
    // Variables not in a per-host inbox are in their own object; whether they
    // are needed, and good, is decided on the verified manifest.
    let host_vars = match host_vars {
        Some(vars) => Some(vars),
        None if claimed.as_ref().is_some_and(|m| m.vars) => {
            fetch::host_vars(store, id, &config.host).await?
        }
        None => None,
    };
    Ok(Survey::Candidate(Candidate {
        id,
        envelope,
        host_vars,
        interrupted,
        version,
    }))
}

/// Bring a candidate execution as far as this agent can. An error means the
/// store or the local disk failed: try again on a later poll. A local disk that
/// fails is never a reason to refuse an execution: that is retried, like the
/// store.
pub async fn handle(
    config: &Config,
    store: &Store,
    candidate: Candidate,
    shutdown: &Shutdown,
    lost: &Arc<AtomicBool>,
    control_seq: &mut u64,
) -> Result<Handled, AgentError> {
    let Candidate {
        id,
        envelope,
        host_vars,
        interrupted,
        ..
    } = candidate;
    let dir = local::execution_dir(&config.state_dir, id);
    // A reboot asked for and not happened yet: nothing to do but wait for it.
    let reboot = if interrupted {
        reboot::pending(&dir)
    } else {
        reboot::Pending::None
    };
    if matches!(reboot, reboot::Pending::Waiting) {
        tracing::debug!(execution = %id, "waiting for the reboot it asked for");
        return Ok(Handled::Stopped);
    }
    // A record that cannot be read (the disk) is retried; one that is damaged
    // (its content) refuses, since rollback protection cannot be checked.
    let read = match local::read_applied(&config.state_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::InvalidData => {
            return Err(AgentError::LocalRead {
                path: config.state_dir.join(local::APPLIED),
                source: e,
            });
        }
        other => other,
    };
    let mut applied = Default::default();
    let decision = envelope.as_ref().map_err(Clone::clone).and_then(|bytes| {
        applied = read.map_err(|e| format!("cannot tell whether it is a rollback: {e}"))?;
        admission::admit(&admission::Request {
            id,
            host: &config.host,
            trust: &config.trust,
            envelope: bytes,
            host_vars: host_vars.as_ref(),
            applied: &applied,
            interrupted,
            now: std::time::SystemTime::now(),
        })
    });
    // The host of a rolled-out execution writes its marker however it ends,
    // refused included: its wave waits for it. From a manifest that does not
    // verify, the rollout only decides that marker and a hint, never trusted.
    // Written once: the manifest of an ID does not change.
    if !dir.join(local::ROLLOUT).exists() {
        let part = match &decision {
            Ok(admitted) => rollout::Part::of(&admitted.manifest, &config.host),
            Err(_) => envelope
                .as_ref()
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Envelope>(bytes).ok())
                .and_then(|e| e.manifest().ok())
                .and_then(|manifest| rollout::Part::of(&manifest, &config.host)),
        };
        if let Some(part) = part {
            part.save(&dir)?;
        }
    }
    let Admitted {
        manifest,
        vars,
        note,
    } = match decision {
        Ok(admitted) => admitted,
        Err(reason) => {
            let report =
                Report::start(&config.host, id, &dir, config.max_log_mib, shutdown.clone())?;
            let message = format!(
                "refused execution {id} (`{}`): {reason}",
                store.location(&keys::manifest(id))
            );
            return refuse(store, config, report, &message, shutdown).await;
        }
    };

    // A cancelled execution never starts (nor resumes).
    if cancel::cancelled(store, id, &config.host).await? {
        let mut report =
            Report::start(&config.host, id, &dir, config.max_log_mib, shutdown.clone())?;
        tracing::info!(execution = %id, "cancelled by an operator before it started");
        report.log("cancelled by an operator before it started")?;
        report.finish(
            State::Cancelled,
            Some("cancelled before it started".to_string()),
        )?;
        return delivered(store, config, id, shutdown).await;
    }

    // A rolled-out execution starts only in its turn (see `rollout`).
    if let Some(rollout) = &manifest.rollout
        && !applied.has_started(id)
    {
        match rollout::decide(
            store,
            &config.trust,
            &config.host,
            &manifest,
            rollout,
            control_seq,
        )
        .await?
        {
            rollout::Turn::Start => {}
            rollout::Turn::Wait(waiting) => {
                let status = rollout::waiting_status(&config.host, &manifest, &waiting.reason);
                return Ok(Handled::Waiting(Box::new((waiting, status))));
            }
            rollout::Turn::Halt(reason) => {
                let mut report =
                    Report::start(&config.host, id, &dir, config.max_log_mib, shutdown.clone())?;
                tracing::warn!(execution = %id, "not starting it: {reason}");
                report.log(&format!("not started: {reason}"))?;
                report.finish(State::Halted, Some(reason))?;
                return delivered(store, config, id, shutdown).await;
            }
        }
    }
    let mut report = Report::start(&config.host, id, &dir, config.max_log_mib, shutdown.clone())?;
    tracing::info!(execution = %id, "running it: {note}");
    report.log(&note)?;

    // From here on this host runs it: an execution held back past it is a rollback.
    if !applied.has_started(id) {
        applied.start(id, manifest.version, manifest.floor());
        local::write_applied(&config.state_dir, &applied)
            .map_err(|e| AgentError::local(config.state_dir.join(local::APPLIED), e))?;
    }

    report.log(&format!(
        "downloading bundle {} ({} bytes)",
        manifest.bundle.sha256, manifest.bundle.size
    ))?;
    let config_dir = dir.join(CONFIG_DIR);
    match fetch::bundle(store, &manifest, &config_dir).await {
        Ok(line) => report.log(&line)?,
        Err(Failure::Refused(message)) => {
            return refuse(store, config, report, &message, shutdown).await;
        }
        Err(Failure::Retry(e)) => return Err(e),
    }

    // A steps file the disk cannot read is retried, not refused as invalid.
    let steps = config_dir.join(cattle_stdlib::STEPS_FILE);
    if let Err(e) = std::fs::File::open(&steps)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(AgentError::LocalRead {
            path: steps,
            source: e,
        });
    }
    // With the host's own variables, signed for it, when it has them.
    let plan = match &vars {
        Some(vars) => cattle_stdlib::Config::load(&config_dir).and_then(|config| config.plan(vars)),
        None => Plan::load(&config_dir),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            let message = format!("invalid config: {e}");
            return refuse(store, config, report, &message, shutdown).await;
        }
    };
    report.status.steps = plan.steps.len();
    // Resume an interrupted run at the step that was in flight: facilities are
    // idempotent, so running it again is safe, and steps before it are done.
    // The attempt that was under way counts: a step that brings the agent down
    // each time (a panic, an OOM kill) runs out of attempts instead of looping.
    let (mut from, mut cut_short) = match local::read_journal(&dir) {
        Some((step, attempt)) if interrupted && step <= plan.steps.len() + 1 => (step, attempt),
        _ => (1, 0),
    };
    let mut start = Start::at(from);
    if interrupted {
        match reboot {
            reboot::Pending::None | reboot::Pending::Waiting => {}
            reboot::Pending::Done(line) => {
                report.log(&format!("step {from}: {line}"))?;
                report.log(&format!("Step {from} changed"))?;
                report.set_result(from, cattle_stdlib::StepResult::Changed);
                from += 1;
                cut_short = 0;
                start = Start::at(from);
                report.journal(from, 0)?;
                reboot::forget(&dir)?;
            }
            reboot::Pending::TimedOut(message) => {
                let message = format!("step {from} failed: {message}");
                tracing::error!(execution = %id, "{message}");
                report.log(&message)?;
                report.finish(State::Error, Some(message))?;
                return delivered(store, config, id, shutdown).await;
            }
        }
        let panic = crate::panics::take(&config.state_dir);
        if let Some(step) = plan.steps.get(from - 1)
            && cut_short >= 1
        {
            let why = match panic {
                Some(panic) => format!("the agent panicked: {panic}"),
                None => {
                    "the agent stopped during it (it crashed, was killed, or the host lost power)"
                        .to_string()
                }
            };
            report.log(&format!(
                "step {from}: attempt {cut_short} of {} did not finish: {why}",
                step.attempts
            ))?;
            start = Start {
                step: from,
                attempt: cut_short + 1,
                lost: Some(why),
            };
        }
        report.log(&format!(
            "this execution was interrupted; verified it again, resuming at step {from}"
        ))?;
    }
    report.keep_results_before(from);

    let timeouts: Vec<std::time::Duration> = plan.steps.iter().map(|s| s.timeout).collect();
    let mut ctx = Environment::new(&config_dir);
    ctx.env
        .push((env::EXECUTION_ID.to_string(), id.to_string()));
    ctx.env
        .push((env::HOST_ID.to_string(), config.host.to_string()));
    // `download` and `wait_for` trust what the store trusts.
    ctx.ca_bundle = config.ca_bundle.clone();
    // As the publisher signed it.
    ctx.check_mode = manifest.check;
    ctx.diff = manifest.diff;

    // Progress goes to the store from a separate task, so a slow or absent
    // store never holds up the steps; the latest status wins.
    let (tx, rx) = watch::channel(report.status.clone());
    report.progress = Some(tx);
    let uploader = tokio::spawn(upload_progress(
        Courier::open(store, &config.host, id, &dir),
        rx,
    ));
    let gone = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(cancel::watch(
        store.clone(),
        id,
        config.host.clone(),
        config.interval,
        report.cancelled.clone(),
        gone.clone(),
    ));
    report.withdrawn = vec![lost.clone(), gone.clone()];
    let retry = config.retry;
    let ran = tokio::task::spawn_blocking(move || {
        let outcome = cattle_stdlib::run(&plan, &ctx, &retry, &start, &mut report);
        (outcome, report)
    })
    .await;
    watcher.abort();
    let (outcome, mut report) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            // A facility panicked (a release build aborts instead, and systemd
            // restarts the agent): the step in flight is interrupted, as by a
            // crash, and resumes on a later poll with the panic in its log.
            uploader.abort();
            return Err(AgentError::Panicked {
                execution: id,
                message: e.to_string(),
            });
        }
    };
    // The uploader stops after the object it is sending, then the final
    // delivery sends the final status before the rest of the log.
    report.progress = None;
    let mut courier = uploader.await.map_err(|e| AgentError::Panicked {
        execution: id,
        message: format!("the progress uploader: {e}"),
    })?;

    match outcome {
        Outcome::Stopped { next_step } if report.cancelled.load(Ordering::SeqCst) => {
            report.finish(
                State::Cancelled,
                Some(format!("cancelled before step {next_step}")),
            )?;
            finish_delivery(&mut courier, shutdown).await
        }
        Outcome::Done | Outcome::Checked { .. } | Outcome::Failed { .. }
            if !shutdown.is_requested() || finished(&dir) =>
        {
            finish_delivery(&mut courier, shutdown).await
        }
        // Stopped while the final state was being written (a pause): it is
        // written on the next start, from the journal.
        Outcome::Done | Outcome::Checked { .. } | Outcome::Failed { .. } => Ok(Handled::Stopped),
        // Cleaned from the store: nothing more to do or to report; the local
        // copy goes when the inbox no longer lists it.
        Outcome::Stopped { next_step } if gone.load(Ordering::SeqCst) => {
            report.log(&format!(
                "stopped before step {next_step}: the execution was cleaned from the store"
            ))?;
            Ok(Handled::Settled)
        }
        Outcome::Stopped { next_step } => {
            if lost.load(Ordering::SeqCst) {
                report.log(&format!(
                    "stopped before step {next_step}: another agent took over this host's lease"
                ))?;
            }
            Ok(Handled::Stopped)
        }
        Outcome::RebootRequested { step } => {
            let wait = timeouts.get(step - 1).copied().unwrap_or_default();
            match reboot::request(&dir, step, wait, &mut report)? {
                // Nothing more until the host is back.
                Ok(()) => Ok(Handled::Stopped),
                Err(message) => {
                    tracing::error!(execution = %id, "{message}");
                    report.log(&message)?;
                    report.finish(State::Error, Some(message))?;
                    finish_delivery(&mut courier, shutdown).await
                }
            }
        }
    }
}

/// Record a refusal as the execution's final state and report it.
async fn refuse(
    store: &Store,
    config: &Config,
    mut report: Report,
    message: &str,
    shutdown: &Shutdown,
) -> Result<Handled, AgentError> {
    tracing::error!(execution = %report.status.execution, "{message}");
    report.log(message)?;
    report.finish(State::Error, Some(message.to_string()))?;
    delivered(store, config, report.status.execution, shutdown).await
}

/// Deliver the finished execution `id` from its local directory.
async fn delivered(
    store: &Store,
    config: &Config,
    id: Uuid,
    shutdown: &Shutdown,
) -> Result<Handled, AgentError> {
    let dir = local::execution_dir(&config.state_dir, id);
    let mut courier = Courier::open(store, &config.host, id, &dir);
    finish_delivery(&mut courier, shutdown).await
}

async fn finish_delivery(
    courier: &mut Courier,
    shutdown: &Shutdown,
) -> Result<Handled, AgentError> {
    Ok(match deliver(courier, shutdown).await? {
        Delivery::Complete => Handled::Settled,
        Delivery::Interrupted => Handled::Stopped,
    })
}

/// Whether the execution in `dir` has its final state written.
fn finished(dir: &std::path::Path) -> bool {
    local::read_state(dir).is_some_and(|s| s.is_final())
}

#[cfg(test)]
mod tests {
    /// Custom facilities tell their programs the host and the execution from
    /// the variables the agent sets for every program a step starts.
    #[test]
    fn the_variables_set_for_programs_are_those_custom_facilities_read() {
        assert_eq!(
            cattle_core::env::HOST_ID,
            cattle_stdlib::runner::HOST_ID_ENV
        );
        assert_eq!(
            cattle_core::env::EXECUTION_ID,
            cattle_stdlib::runner::EXECUTION_ID_ENV
        );
    }
}

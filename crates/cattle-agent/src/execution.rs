//! One execution on this host, from the inbox entry to the delivered status:
//! decide whether to run it ([`crate::admission`]), claim it ([`crate::claim`]),
//! fetch and verify it ([`crate::fetch`]), run its steps while reporting
//! ([`crate::report`], [`crate::deliver`]) and reboot when a step asks
//! ([`crate::reboot`]).

use std::fs::File;
use std::sync::atomic::Ordering;

use cattle_core::env;
use cattle_core::keys;
use cattle_core::store::Store;
use cattle_core::wire::{Claim, FORMAT, State};
use cattle_stdlib::{Context, Outcome, Plan};
use tokio::sync::watch;
use uuid::Uuid;

use crate::admission::{self, Admitted};
use crate::deliver::{Courier, Delivery, deliver, upload_progress};
use crate::fetch::{self, Failure};
use crate::local::{self, CONFIG_DIR, DELIVERED, FOREIGN};
use crate::report::Report;
use crate::{AgentError, Config, Shutdown, cancel, claim, reboot};

/// How far [`handle`] brought an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Nothing more to do: finished and reported, refused, or gone.
    Settled,
    /// Stopped before the end (shutdown, or a reboot under way): later.
    Stopped,
}

/// Bring execution `id` as far as this agent can. An error means the store or
/// the local disk failed: try again on a later poll. A local disk that fails is
/// never a reason to refuse an execution: that is retried, like the store.
pub async fn handle(
    config: &Config,
    identity: &(String, String),
    store: &Store,
    id: Uuid,
    shutdown: &Shutdown,
) -> Result<Handled, AgentError> {
    let dir = local::execution_dir(&config.state_dir, id);
    let interrupted = match local::read_state(&dir) {
        Some(state) if state.is_final() => {
            if !dir.join(DELIVERED).exists() && !dir.join(FOREIGN).exists() {
                return delivered(store, config, id, shutdown).await;
            }
            return Ok(Handled::Settled);
        }
        Some(State::Progress) => true,
        _ => false,
    };

    let envelope = match fetch::envelope(store, id).await? {
        fetch::Envelope::Found(bytes) => Ok(bytes),
        fetch::Envelope::Missing => {
            tracing::warn!(execution = %id, "inbox lists an execution without a manifest; ignoring it");
            return Ok(Handled::Settled);
        }
        fetch::Envelope::TooLarge(limit) => Err(format!(
            "the manifest is larger than the {limit} bytes any manifest may have"
        )),
    };
    let mut report = Report::start(&config.host, id, &dir, config.max_log_mib, shutdown.clone())?;

    // A record that cannot be read (the disk) is retried; one that is damaged
    // (its content) refuses, since rollback protection cannot be checked.
    let applied = match local::read_applied(&config.state_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::InvalidData => {
            return Err(AgentError::LocalRead {
                path: config.state_dir.join(local::APPLIED),
                source: e,
            });
        }
        other => other,
    };
    let decision = envelope.and_then(|bytes| {
        let applied = applied.map_err(|e| format!("cannot tell whether it is a rollback: {e}"))?;
        admission::admit(&admission::Request {
            id,
            host: &config.host,
            trust: &config.trust,
            envelope: &bytes,
            applied,
            interrupted,
            now: std::time::SystemTime::now(),
        })
    });
    let Admitted { manifest, note } = match decision {
        Ok(admitted) => admitted,
        Err(reason) => {
            let message = format!(
                "refused execution {id} (`{}`): {reason}",
                store.location(&keys::manifest(id))
            );
            return refuse(store, config, report, &message, shutdown).await;
        }
    };
    report.log(&note)?;

    // Only one agent runs a host's share: another with the same host ID may
    // have claimed it. Then this one steps back and writes nothing to the store.
    // A store that refuses the claim (down, or denying writes for now) does not
    // keep the host from its work: it runs unclaimed.
    let mine = Claim {
        format: FORMAT,
        machine: identity.0.clone(),
        state_dir: identity.1.clone(),
        claimed: cattle_core::now_rfc3339(),
    };
    let taken = match claim::claim(store, id, &config.host, &mine).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(execution = %id, error = %e, "cannot claim the execution; running it unclaimed");
            report.log(&format!(
                "could not claim the execution ({e}); running it unclaimed"
            ))?;
            None
        }
    };
    if let Some(other) = taken {
        let message = format!(
            "execution {id} is already claimed for host `{}` by another agent (machine {}, state directory {}, since {}): \
             two agents use host ID `{}`; this one will not run it",
            config.host, other.machine, other.state_dir, other.claimed, config.host
        );
        tracing::error!(execution = %id, "{message}");
        report.log(&message)?;
        report.finish(State::Error, Some(message))?;
        File::create(dir.join(FOREIGN)).map_err(|e| AgentError::local(dir.join(FOREIGN), e))?;
        return Ok(Handled::Settled);
    }

    // A cancelled execution never starts (nor resumes).
    if cancel::cancelled(store, id, &config.host).await? {
        report.log("cancelled by an operator before it started")?;
        report.finish(
            State::Cancelled,
            Some("cancelled before it started".to_string()),
        )?;
        return delivered(store, config, id, shutdown).await;
    }

    // From here on this host runs it: an older execution is a rollback.
    if local::read_applied(&config.state_dir)
        .ok()
        .flatten()
        .map(|(_, last)| last)
        != Some(id)
    {
        local::write_applied(&config.state_dir, manifest.version, id)
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
    let plan = match Plan::load(&config_dir) {
        Ok(plan) => plan,
        Err(e) => {
            let message = format!("invalid config: {e}");
            return refuse(store, config, report, &message, shutdown).await;
        }
    };
    report.status.steps = plan.steps.len();
    // Resume an interrupted run at the step that was in flight: facilities are
    // idempotent, so running it again is safe, and steps before it are done.
    let mut from = match local::read_journal(&dir) {
        Some(step) if interrupted && step <= plan.steps.len() + 1 => step,
        _ => 1,
    };
    if interrupted {
        if reboot::completed(&dir, from, &mut report)? {
            from += 1;
            report.journal(from)?;
        }
        report.log(&format!(
            "this execution was interrupted; verified it again, resuming at step {from}"
        ))?;
    }

    let mut ctx = Context::new(&config_dir);
    ctx.env
        .push((env::EXECUTION_ID.to_string(), id.to_string()));
    ctx.env
        .push((env::HOST_ID.to_string(), config.host.to_string()));

    // Progress goes to the store from a separate task, so a slow or absent
    // store never holds up the steps; the latest status wins.
    let (tx, rx) = watch::channel(report.status.clone());
    report.progress = Some(tx);
    let uploader = tokio::spawn(upload_progress(
        Courier::open(store, &config.host, id, &dir),
        rx,
    ));
    let watcher = tokio::spawn(cancel::watch(
        store.clone(),
        id,
        config.host.clone(),
        config.interval,
        report.cancelled.clone(),
    ));
    let retry = config.retry;
    let (outcome, mut report) = tokio::task::spawn_blocking(move || {
        let outcome = cattle_stdlib::run(&plan, &ctx, &retry, from, &mut report);
        (outcome, report)
    })
    .await
    .expect("the step runner does not panic");
    watcher.abort();
    // The uploader stops after the object it is sending, then the final
    // delivery sends the final status before the rest of the log.
    report.progress = None;
    let mut courier = uploader.await.expect("the uploader does not panic");

    match outcome {
        Outcome::Stopped { next_step } if report.cancelled.load(Ordering::SeqCst) => {
            report.finish(
                State::Cancelled,
                Some(format!("cancelled before step {next_step}")),
            )?;
            finish_delivery(&mut courier, shutdown).await
        }
        Outcome::Done | Outcome::Failed { .. } if !shutdown.is_requested() || finished(&dir) => {
            finish_delivery(&mut courier, shutdown).await
        }
        // Stopped while the final state was being written (a pause): it is
        // written on the next start, from the journal.
        Outcome::Done | Outcome::Failed { .. } => Ok(Handled::Stopped),
        Outcome::Stopped { .. } => Ok(Handled::Stopped),
        Outcome::RebootRequested { step } => {
            reboot::request(&dir, step, &mut report)?;
            // Nothing more until the host is back: the next agent carries on.
            shutdown.request();
            Ok(Handled::Stopped)
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

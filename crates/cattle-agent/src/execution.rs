//! One execution on this host: verify, unpack, run, report.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::signing::Refusal;
use cattle_core::store::{Condition, Fetched, Store, StoreError};
use cattle_core::wire::{
    Cancel, Claim, Envelope, FORMAT, HostStatus, MAX_DOCUMENT_BYTES, Manifest, State, StepStatus,
};
use cattle_core::{bundle, env};
use cattle_stdlib::{Context, Event, Observer, Outcome, Plan};
use tokio::sync::watch;
use uuid::Uuid;

use crate::local::{
    self, CONFIG_DIR, DELIVERED, FOREIGN, JOURNAL, LOG_FILE, REBOOT, STATUS_FILE, STATUS_JSON,
};
use crate::{Config, Shutdown};

/// Bring execution `id` as far as this agent can.
///
/// `Ok(true)`: nothing more to do (finished and reported, refused, or gone).
/// `Ok(false)`: stopped by shutdown before the end. `Err`: the store failed;
/// try again on a later poll.
pub async fn handle(
    config: &Config,
    identity: &(String, String),
    store: &Store,
    id: Uuid,
    shutdown: &Shutdown,
) -> Result<bool, StoreError> {
    let dir = local::execution_dir(&config.state_dir, id);
    let interrupted = match local::read_state(&dir) {
        Some(state) if state.is_final() => {
            if !dir.join(DELIVERED).exists() && !dir.join(FOREIGN).exists() {
                deliver(store, &config.host, id, &dir).await?;
            }
            return Ok(true);
        }
        Some(State::Progress) => true,
        _ => false,
    };

    // Read no more than any real manifest can be, and refuse anything larger.
    let envelope = match store.get(&keys::manifest(id), MAX_DOCUMENT_BYTES).await {
        Ok(Some(object)) => Ok(object.bytes),
        Ok(None) => {
            // Publish writes the manifest before addressing hosts, so a missing
            // manifest means the execution was cleaned meanwhile.
            tracing::warn!(execution = %id, "inbox lists an execution without a manifest; ignoring it");
            return Ok(true);
        }
        Err(StoreError::TooLarge { limit, .. }) => Err(format!(
            "the manifest is larger than the {limit} bytes any manifest may have"
        )),
        Err(e) => return Err(e),
    };
    let mut report =
        Report::start(config, id, &dir, shutdown.clone()).map_err(|e| local_error(&dir, e))?;

    let manifest = match envelope.and_then(|bytes| accept(config, id, &bytes, interrupted)) {
        Ok((manifest, note)) => {
            report.log(&note);
            manifest
        }
        Err(reason) => {
            let message = format!(
                "refused execution {id} (`{}`): {reason}",
                store.location(&keys::manifest(id))
            );
            return refuse(store, report, &message).await;
        }
    };

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
    let taken = match claim(store, id, &config.host, &mine).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(execution = %id, error = %e, "cannot claim the execution; running it unclaimed");
            report.log(&format!(
                "could not claim the execution ({e}); running it unclaimed"
            ));
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
        report.log(&message);
        report.finish(State::Error, Some(message));
        File::create(dir.join(FOREIGN)).map_err(|e| local_error(&dir.join(FOREIGN), e))?;
        return Ok(true);
    }

    // A cancelled execution never starts (nor resumes).
    if cancelled(store, id, &config.host).await? {
        report.log("cancelled by an operator before it started");
        report.finish(
            State::Cancelled,
            Some("cancelled before it started".to_string()),
        );
        deliver(store, &config.host, id, &dir).await?;
        return Ok(true);
    }

    // From here on this host runs it: an older execution is a rollback.
    if local::read_applied(&config.state_dir)
        .ok()
        .flatten()
        .map(|(_, last)| last)
        != Some(id)
    {
        local::write_applied(&config.state_dir, manifest.version, id)
            .map_err(|e| local_error(&config.state_dir.join(local::APPLIED), e))?;
    }

    let bundle_key = keys::bundle(&manifest.bundle.sha256);
    report.log(&format!(
        "downloading bundle {} ({} bytes)",
        manifest.bundle.sha256, manifest.bundle.size
    ));
    let bytes = match store.get(&bundle_key, manifest.bundle.size).await {
        Ok(Some(object)) => object.bytes,
        Ok(None) => {
            let message = format!(
                "bundle `{}` is missing from the store",
                store.location(&bundle_key)
            );
            return refuse(store, report, &message).await;
        }
        Err(StoreError::TooLarge {
            location, limit, ..
        }) => {
            let message = format!(
                "bundle `{location}` is larger than the {limit} bytes the manifest says; refused"
            );
            return refuse(store, report, &message).await;
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = bundle::verify(&bytes, &manifest.bundle.sha256, manifest.bundle.size) {
        let message = format!("bundle `{}` refused: {e}", store.location(&bundle_key));
        return refuse(store, report, &message).await;
    }
    let config_dir = dir.join(CONFIG_DIR);
    if config_dir.exists() {
        std::fs::remove_dir_all(&config_dir).map_err(|e| local_error(&config_dir, e))?;
    }
    if let Err(e) = bundle::extract(&bytes, &config_dir) {
        return refuse(store, report, &format!("bundle refused: {e}")).await;
    }
    drop(bytes);
    report.log(&format!(
        "bundle verified and unpacked into {}",
        config_dir.display()
    ));

    let plan = match Plan::load(&config_dir) {
        Ok(plan) => plan,
        Err(e) => return refuse(store, report, &format!("invalid config: {e}")).await,
    };
    report.status.steps = plan.steps.len();
    // Resume an interrupted run at the step that was in flight: facilities are
    // idempotent, so running it again is safe, and steps before it are done.
    let mut from = match local::read_journal(&dir) {
        Some(step) if interrupted && step <= plan.steps.len() + 1 => step,
        _ => 1,
    };
    if interrupted {
        // A reboot step is done once the host has booted again.
        if let Ok(before) = std::fs::read_to_string(dir.join(REBOOT)) {
            let now = boot_id();
            if before.trim() != now {
                report.log(&format!(
                    "the host rebooted (boot ID {} became {now}): step {from} is done",
                    before.trim()
                ));
                from += 1;
                report.journal(from);
                std::fs::remove_file(dir.join(REBOOT))
                    .map_err(|e| local_error(&dir.join(REBOOT), e))?;
            } else {
                report.log(&format!(
                    "the reboot asked for at step {from} has not happened yet; asking again"
                ));
            }
        }
        report.log(&format!(
            "this execution was interrupted; verified it again, resuming at step {from}"
        ));
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
        store.clone(),
        config.host.clone(),
        id,
        dir.clone(),
        rx,
    ));
    let watcher = tokio::spawn(watch_cancel(
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
    report.progress = None;
    let _ = uploader.await;

    match outcome {
        Outcome::Stopped { next_step } if report.cancelled.load(Ordering::SeqCst) => {
            report.finish(
                State::Cancelled,
                Some(format!("cancelled before step {next_step}")),
            );
            deliver(store, &config.host, id, &dir).await?;
            Ok(true)
        }
        Outcome::Done | Outcome::Failed { .. } => {
            deliver(store, &config.host, id, &dir).await?;
            Ok(true)
        }
        Outcome::Stopped { .. } => Ok(false),
        Outcome::RebootRequested { step } => {
            let boot = boot_id();
            local::write_atomic(&dir, REBOOT, boot.as_bytes())
                .map_err(|e| local_error(&dir.join(REBOOT), e))?;
            let command =
                std::env::var(env::REBOOT_COMMAND).unwrap_or_else(|_| DEFAULT_REBOOT.to_string());
            report.log(&format!(
                "step {step}: rebooting the host with `{command}` (boot ID {boot})"
            ));
            match std::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .status()
            {
                Ok(status) if status.success() => {}
                Ok(status) => report.log(&format!(
                    "`{command}` failed ({status}); the next start of the agent asks again"
                )),
                Err(e) => report.log(&format!(
                    "cannot run `{command}`: {e}; the next start of the agent asks again"
                )),
            }
            // Nothing more until the host is back: the next agent carries on.
            shutdown.request();
            Ok(false)
        }
    }
}

/// Decide whether this host runs the execution whose manifest envelope is
/// `bytes`: signed by a trusted key (or unsigned and allowed), for execution
/// `id`, addressed to this host, not expired and newer than what the host has
/// already started. An `interrupted` run that was the last one started is
/// resumed even if it has expired since.
///
/// Returns the manifest and a line for the log; or why it is refused.
fn accept(
    config: &Config,
    id: Uuid,
    bytes: &[u8],
    interrupted: bool,
) -> Result<(Manifest, String), String> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not valid: {e}"))?;
    let trust = &config.trust;
    let (manifest, signed_by) = match envelope.verify(&trust.keys) {
        Ok((manifest, key)) => (manifest, format!("signed by trusted key {}", key.id())),
        Err(Refusal::Unsigned) if trust.allow_unsigned => (
            envelope.manifest().map_err(|e| e.to_string())?,
            "UNSIGNED, run only because this agent allows unsigned executions".to_string(),
        ),
        Err(Refusal::UnknownKey { .. }) if trust.allow_unsigned && trust.keys.is_empty() => (
            envelope.manifest().map_err(|e| e.to_string())?,
            "signature NOT checked (no trusted keys; this agent allows unsigned executions)"
                .to_string(),
        ),
        Err(refusal @ (Refusal::Unsigned | Refusal::UnknownKey { .. })) => {
            let trusted: Vec<String> = trust
                .keys
                .keys()
                .iter()
                .map(|k| k.id().to_string())
                .collect();
            return Err(format!(
                "{refusal}; this host trusts {}",
                if trusted.is_empty() {
                    "no key".to_string()
                } else {
                    format!("key {}", trusted.join(", "))
                }
            ));
        }
        Err(refusal) => return Err(refusal.to_string()),
    };
    if manifest.id != id {
        return Err(format!(
            "the manifest was signed for execution {}, not {id}",
            manifest.id
        ));
    }
    if !manifest.hosts.contains(&config.host) {
        return Err(format!("it is not addressed to host `{}`", config.host));
    }
    let applied = local::read_applied(&config.state_dir)
        .map_err(|e| format!("cannot tell whether it is a rollback: {e}"))?;
    // Only the execution started last can be in flight.
    let resuming = interrupted && applied.is_some_and(|(_, last)| last == id);
    if !resuming {
        let expires = humantime::parse_rfc3339(&manifest.expires).map_err(|e| {
            format!(
                "the manifest's expiry `{}` is not a time: {e}",
                manifest.expires
            )
        })?;
        if std::time::SystemTime::now() > expires {
            return Err(format!(
                "it expired at {} (published {}); publish it again",
                manifest.expires, manifest.created
            ));
        }
        if let Some((version, last)) = applied
            && manifest.version <= version
        {
            return Err(format!(
                "its version {} is not newer than version {version} (execution {last}) \
                 that this host already started: a rollback; publish it again to run it",
                manifest.version
            ));
        }
    }
    let note = format!(
        "execution {id}: config `{}` published by {} at {}, version {}, {signed_by}, {} steps",
        manifest.config, manifest.publisher, manifest.created, manifest.version, manifest.steps
    );
    Ok((manifest, note))
}

/// How a `reboot` step reboots the host unless [`env::REBOOT_COMMAND`] says otherwise.
const DEFAULT_REBOOT: &str = "systemctl reboot";

/// This boot's ID: a different one means the host has rebooted.
fn boot_id() -> String {
    let path = std::env::var(env::BOOT_ID_FILE)
        .unwrap_or_else(|_| "/proc/sys/kernel/random/boot_id".to_string());
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Claim execution `id` on `host` for this agent; the other agent's claim if
/// someone else has it.
async fn claim(
    store: &Store,
    id: Uuid,
    host: &HostId,
    mine: &Claim,
) -> Result<Option<Claim>, StoreError> {
    let key = keys::claim(id, host);
    let body = serde_json::to_vec_pretty(mine).expect("claims serialize");
    match store.put(&key, body, Condition::IfAbsent).await {
        Ok(_) => return Ok(None),
        Err(StoreError::PreconditionFailed { .. }) => {}
        Err(e) => return Err(e),
    }
    let Some(object) = store.get(&key, MAX_DOCUMENT_BYTES).await? else {
        return Ok(None); // cleaned meanwhile: nobody holds it
    };
    match serde_json::from_slice::<Claim>(&object.bytes) {
        Ok(theirs) if theirs.same_agent(mine) => Ok(None),
        Ok(theirs) => Ok(Some(theirs)),
        Err(e) => Err(StoreError::Other {
            op: "read claim",
            location: store.location(&key),
            message: format!("not a valid claim document: {e}"),
        }),
    }
}

/// Whether an operator cancelled execution `id` on `host`.
async fn cancelled(store: &Store, id: Uuid, host: &HostId) -> Result<bool, StoreError> {
    let key = keys::cancel(id);
    Ok(match store.get(&key, MAX_DOCUMENT_BYTES).await? {
        None => false,
        Some(object) => covers(&object.bytes, host, &store.location(&key)),
    })
}

fn covers(document: &[u8], host: &HostId, location: &str) -> bool {
    match serde_json::from_slice::<Cancel>(document) {
        Ok(cancel) => cancel.covers(host),
        Err(e) => {
            tracing::warn!(location, error = %e, "cancel document is not valid; ignoring it");
            false
        }
    }
}

/// While an execution runs, look for a cancel every `every` (one conditional
/// GET each time) and raise `flag` when one covers this host.
async fn watch_cancel(
    store: Store,
    id: Uuid,
    host: HostId,
    every: Duration,
    flag: Arc<AtomicBool>,
) {
    let key = keys::cancel(id);
    let mut etag: Option<String> = None;
    loop {
        tokio::time::sleep(every).await;
        match store
            .get_if_changed(&key, etag.as_deref(), MAX_DOCUMENT_BYTES)
            .await
        {
            Ok(Fetched::Found(object)) => {
                if covers(&object.bytes, &host, &store.location(&key)) {
                    tracing::info!(execution = %id, "cancelled by an operator; stopping before the next step");
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                etag = Some(object.etag);
            }
            Ok(Fetched::NotModified | Fetched::Missing) => {}
            Err(e) => {
                tracing::debug!(execution = %id, error = %e, "cannot read the cancel document")
            }
        }
    }
}

/// Record a refusal as the execution's final state and report it.
async fn refuse(store: &Store, mut report: Report, message: &str) -> Result<bool, StoreError> {
    tracing::error!(execution = %report.status.execution, "{message}");
    report.log(message);
    report.finish(State::Error, Some(message.to_string()));
    deliver(
        store,
        &report.status.host,
        report.status.execution,
        &report.dir,
    )
    .await?;
    Ok(true)
}

/// Upload the final log and status from the local directory, then mark them delivered.
async fn deliver(store: &Store, host: &HostId, id: Uuid, dir: &Path) -> Result<(), StoreError> {
    let log = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
    let status =
        std::fs::read(dir.join(STATUS_JSON)).map_err(|e| local_error(&dir.join(STATUS_JSON), e))?;
    let done = serde_json::from_slice::<HostStatus>(&status).is_ok_and(|s| s.state == State::Done);
    // The log first: a reader that sees the final status finds the whole log;
    // the DONE marker last: a reader that lists it finds the final status.
    store
        .put(&keys::log(id, host), log, Condition::Always)
        .await?;
    store
        .put(&keys::status(id, host), status, Condition::Always)
        .await?;
    if done {
        store
            .put(&keys::done(id, host), Vec::new(), Condition::Always)
            .await?;
    }
    File::create(dir.join(DELIVERED)).map_err(|e| local_error(&dir.join(DELIVERED), e))?;
    Ok(())
}

async fn upload_progress(
    store: Store,
    host: HostId,
    id: Uuid,
    dir: PathBuf,
    mut rx: watch::Receiver<HostStatus>,
) {
    while rx.changed().await.is_ok() {
        let status = rx.borrow_and_update().clone();
        if status.state.is_final() {
            // The final status is delivered by `deliver`, after the runner returns.
            continue;
        }
        let log = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
        let body = serde_json::to_vec_pretty(&status).expect("status serializes");
        let result = async {
            store
                .put(&keys::log(id, &host), log, Condition::Always)
                .await?;
            store
                .put(&keys::status(id, &host), body, Condition::Always)
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(execution = %id, error = %e, "progress upload failed; the final status will still be delivered");
        }
    }
}

fn local_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Other {
        op: "write local state",
        location: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The execution's log and status, kept locally and sent to the uploader.
struct Report {
    dir: PathBuf,
    log: File,
    status: HostStatus,
    progress: Option<watch::Sender<HostStatus>>,
    shutdown: Shutdown,
    /// Raised when an operator cancels the execution on this host.
    cancelled: Arc<AtomicBool>,
}

impl Report {
    fn start(config: &Config, id: Uuid, dir: &Path, shutdown: Shutdown) -> std::io::Result<Report> {
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
                host: config.host.clone(),
                state: State::Progress,
                steps: 0,
                step: None,
                started: now.clone(),
                updated: now,
                finished: None,
                error: None,
                seq,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
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
    fn journal(&self, step: usize) {
        if let Err(e) = local::write_atomic(&self.dir, JOURNAL, format!("{step}\n").as_bytes()) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot write JOURNAL; a restart would run this execution from step 1");
        }
    }

    fn log(&mut self, line: &str) {
        let stamped = format!("{} {line}\n", cattle_core::now_rfc3339());
        if let Err(e) = self.log.write_all(stamped.as_bytes()) {
            tracing::error!(path = %self.dir.join(LOG_FILE).display(), error = %e, "cannot write exec.log");
        }
    }

    fn finish(&mut self, state: State, error: Option<String>) {
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

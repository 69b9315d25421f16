//! `cattle publish DIR --hosts FILE`: plan locally, upload once, address every host.
//!
//! The order makes a half-finished publish harmless: the bundle's reference,
//! then the bundle, then a version (see [`crate::versions`]), the signed
//! manifest, and only then the hosts' inboxes. An agent that finds an execution
//! in its inbox therefore always finds its manifest and bundle. The version is
//! taken after the upload, however long that takes, so that a publish started
//! later but finished sooner runs first and neither is refused.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cattle_core::bundle;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::signing::SecretKey;
use cattle_core::store::{Condition, Store};
use cattle_core::wire::{BundleRef, Envelope, FORMAT, HostVars, Manifest};
use cattle_stdlib::{Config, Plan, Vars};
use serde::Serialize;
use uuid::Uuid;

pub use crate::apply::Mode;
use crate::for_each_bounded;
use crate::inventory::{self, Inventory};

/// What a publish has done so far, for a progress display. The library shows
/// nothing itself: the `cattle` binary draws it when standard error is a
/// terminal. Calls may come from several tasks at once.
pub trait Progress: Send + Sync {
    /// `sent` of the bundle's `total` bytes are in the store: 0 when its
    /// upload starts, `total` once the store has it (uploaded, or there already).
    fn bundle(&self, sent: u64, total: u64) {
        let _ = (sent, total);
    }

    /// `done` of `total` hosts have the execution in their inbox.
    fn addressed(&self, done: usize, total: usize) {
        let _ = (done, total);
    }
}

/// No progress display (standard error is not a terminal, or `--json`).
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {}

/// What a publish did, for `--json`.
#[derive(Debug, Serialize)]
pub struct Published {
    pub id: Uuid,
    pub bundle_sha256: String,
    pub bundle_size: u64,
    /// False when the store already had this bundle.
    pub bundle_uploaded: bool,
    pub hosts: usize,
    pub steps: usize,
    pub version: u64,
    pub expires: String,
    /// The signing key's ID; absent for `--unsigned`.
    pub key: Option<String>,
    /// Each host got its own signed variables.
    pub vars: bool,
    /// Hosts only check (`--check`).
    pub check: bool,
}

/// Who vouches for an execution.
#[derive(Debug)]
pub enum Signer {
    Key(Box<SecretKey>),
    /// No signature: only agents started with `--allow-unsigned` run it.
    Unsigned,
}

/// How long agents may start an execution after it is published, unless `--expires-in` says otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A config made ready for its hosts, locally: everything a publish checks
/// before its first upload, and what `--dry-run` shows.
#[derive(Debug)]
pub struct Prepared {
    pub config: Config,
    pub hosts: Vec<HostId>,
    /// Each host's variables, in the order of `hosts`, when the config uses
    /// variables ([`Config::uses_vars`]); `None`: every host runs the same.
    pub vars: Option<Vec<Vars>>,
    pub steps: usize,
    pub bundle: bundle::Bundle,
}

impl Prepared {
    /// The plan of `host`, one of [`Prepared::hosts`], with its variables
    /// (`prepare` already made it once, so it cannot fail but for a changed
    /// config directory).
    pub fn plan_for(&self, host: &HostId) -> anyhow::Result<(Plan, Vars)> {
        let vars = match (&self.vars, self.hosts.iter().position(|h| h == host)) {
            (Some(all), Some(i)) => all[i].clone(),
            (None, Some(_)) => self.config.defaults().clone(),
            (_, None) => anyhow::bail!("host `{host}` is not in the hosts file"),
        };
        let plan = self.config.plan(&vars)?;
        Ok((plan, vars))
    }
}

/// Read, resolve and check the config in `dir` for the hosts in `hosts_file`
/// (a hosts file or a TOML inventory) with `overrides` (`--var`), and pack
/// it: the steps file with every host's variables, each step's arguments,
/// every template. Nothing is uploaded.
pub fn prepare(dir: &Path, hosts_file: &Path, overrides: &Vars) -> anyhow::Result<Prepared> {
    let config = Config::load(dir)?;
    let inventory = Inventory::load(hosts_file)?;
    let hosts = inventory.hosts.clone();
    let (vars, steps) = if config.uses_vars() {
        let mut all = Vec::with_capacity(hosts.len());
        let mut steps = 0;
        // Every host is checked, so that the error can say how many fail.
        let mut first: Option<(&HostId, anyhow::Error)> = None;
        let mut failing = 0;
        for host in &hosts {
            let planned = inventory::resolve(config.defaults(), &inventory, overrides, host)
                .map_err(|message| anyhow::anyhow!("{}: {message}", hosts_file.display()))
                .and_then(|vars| Ok((config.plan(&vars)?, vars)));
            match planned {
                Ok((plan, vars)) => {
                    steps = plan.steps.len();
                    all.push(vars);
                }
                Err(err) => {
                    failing += 1;
                    first.get_or_insert((host, err));
                }
            }
        }
        if let Some((host, err)) = first {
            let others = match failing - 1 {
                0 => String::new(),
                1 => " (1 other host fails too)".to_string(),
                n => format!(" ({n} other hosts fail too)"),
            };
            return Err(match err.downcast::<cattle_stdlib::PlanError>() {
                Ok(mut plan) => {
                    plan.message = format!("for host `{host}`{others}: {}", plan.message);
                    plan.into()
                }
                Err(err) => {
                    err.context(format!("{failing} host(s) cannot be given their variables"))
                }
            });
        }
        (Some(all), steps)
    } else {
        (None, config.plan(config.defaults())?.steps.len())
    };
    let bundle = bundle::pack(dir).with_context(|| format!("cannot bundle `{}`", dir.display()))?;
    Ok(Prepared {
        config,
        hosts,
        vars,
        steps,
        bundle,
    })
}

pub async fn publish(
    store: &Store,
    dir: &Path,
    prepared: Prepared,
    mode: Mode,
    signer: &Signer,
    expires_in: Duration,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Published> {
    let Prepared {
        hosts,
        vars,
        steps,
        bundle: bundle::Bundle { bytes, sha256 },
        ..
    } = prepared;
    let size = bytes.len() as u64;

    let id = Uuid::now_v7();
    // The reference first, so that `cattle clean` of another execution never
    // deletes a bundle this one is about to use.
    store
        .put(
            &keys::bundle_ref(&sha256, id),
            Vec::new(),
            Condition::Always,
        )
        .await?;
    let bundle_key = keys::bundle(&sha256);
    let bundle_uploaded = if store.size(&bundle_key).await? == Some(size) {
        false
    } else {
        // One request: the store reports no bytes until it has them all.
        progress.bundle(0, size);
        store.put(&bundle_key, bytes, Condition::Always).await?;
        true
    };
    progress.bundle(size, size);

    // From here until every host is addressed, this publish is in flight: the
    // floors of executions signed meanwhile stay below its version.
    let ticket = crate::versions::take(store, id).await?;
    let now = SystemTime::now();
    let manifest = Manifest {
        format: FORMAT,
        id,
        version: ticket.version,
        floor: Some(ticket.floor),
        created: humantime::format_rfc3339_millis(now).to_string(),
        expires: humantime::format_rfc3339_millis(now + expires_in).to_string(),
        publisher: publisher(),
        config: dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string()),
        steps,
        bundle: BundleRef {
            sha256: sha256.clone(),
            size,
        },
        hosts,
        vars: vars.is_some(),
        check: mode.check,
        diff: mode.diff,
    };
    let addressed = sign_and_address(store, &manifest, vars, signer, progress).await;
    if let Err(e) = crate::versions::release(store, id).await {
        tracing::warn!(
            execution = %id,
            error = %e,
            "cannot mark the publish finished in the version counter; \
             it stops holding other publishes' floors down within {}",
            humantime::format_duration(crate::versions::IN_FLIGHT_EXPIRY)
        );
    }
    addressed?;
    Ok(Published {
        id,
        bundle_sha256: sha256,
        bundle_size: size,
        bundle_uploaded,
        hosts: manifest.hosts.len(),
        steps: manifest.steps,
        version: manifest.version,
        expires: manifest.expires,
        key: match signer {
            Signer::Key(key) => Some(key.public().id().to_string()),
            Signer::Unsigned => None,
        },
        vars: manifest.vars,
        check: manifest.check,
    })
}

/// Sign and store `manifest`, then add its execution to every host's inbox,
/// with the host's own variables (`vars`, in the order of the manifest's
/// hosts) signed for it.
async fn sign_and_address(
    store: &Store,
    manifest: &Manifest,
    vars: Option<Vec<Vars>>,
    signer: &Signer,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<()> {
    let id = manifest.id;
    let envelope = match signer {
        Signer::Key(key) => key.sign(manifest),
        Signer::Unsigned => Envelope::unsigned(manifest),
    };
    let body = serde_json::to_vec_pretty(&envelope).expect("manifest serializes");
    store
        .put(&keys::manifest(id), body, Condition::IfAbsent)
        .await?;

    let host_count = manifest.hosts.len();
    let addressed: Vec<(HostId, Option<Envelope>)> = match vars {
        None => manifest.hosts.iter().map(|h| (h.clone(), None)).collect(),
        Some(vars) => manifest
            .hosts
            .iter()
            .zip(vars)
            .map(|(host, vars)| {
                let vars = HostVars {
                    format: FORMAT,
                    execution: id,
                    host: host.clone(),
                    vars: vars
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                };
                let envelope = match signer {
                    Signer::Key(key) => key.sign_host_vars(&vars),
                    Signer::Unsigned => Envelope::unsigned_host_vars(&vars),
                };
                (host.clone(), Some(envelope))
            })
            .collect(),
    };
    progress.addressed(0, host_count);
    let done = Arc::new(AtomicUsize::new(0));
    let results = for_each_bounded(addressed, |(host, vars): (HostId, Option<Envelope>)| {
        let store = store.clone();
        let (progress, done) = (progress.clone(), done.clone());
        async move {
            let result = crate::inbox::add(&store, &host, id, vars).await;
            if result.is_ok() {
                progress.addressed(done.fetch_add(1, Ordering::Relaxed) + 1, host_count);
            }
            (host, result)
        }
    })
    .await;
    let failed: Vec<_> = results
        .into_iter()
        .filter_map(|(h, r)| r.err().map(|e| (h, e)))
        .collect();
    if let Some((host, err)) = failed.first() {
        anyhow::bail!(
            "execution {id} was published but {} of {host_count} hosts could not be addressed (first: `{host}`: {err}); \
             those hosts will not run it. Run `cattle clean {id}` and publish again",
            failed.len()
        );
    }
    Ok(())
}

/// Print the plan of every host (or of `only`): the config, the bundle, and
/// for each host its steps with their facility, description and arguments as
/// the host runs them, then its variables; sensitive values as
/// `[sensitive]`.
pub fn show_plans(
    prepared: &Prepared,
    only: Option<&HostId>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    if let Some(host) = only
        && !prepared.hosts.contains(host)
    {
        anyhow::bail!("host `{host}` is not in the hosts file");
    }
    writeln!(
        out,
        "dry run: nothing uploaded. config {}, {} steps, bundle {} ({} bytes), {} hosts{}",
        prepared.config.config_dir.display(),
        prepared.steps,
        &prepared.bundle.sha256[..12],
        prepared.bundle.bytes.len(),
        prepared.hosts.len(),
        if prepared.vars.is_some() {
            ", each with its own variables"
        } else {
            "; the config uses no variables, so every host runs the same plan"
        }
    )?;
    for host in &prepared.hosts {
        if only.is_some_and(|only| only != host) {
            continue;
        }
        let (plan, vars) = prepared.plan_for(host)?;
        let shown = |value: &toml::Value| plan.secrets.redact(&value.to_string()).into_owned();
        writeln!(out, "\nhost {host}:")?;
        for step in &plan.steps {
            writeln!(
                out,
                "  {}. {}: {}",
                step.number,
                step.name,
                plan.secrets.redact(&step.facility.describe())
            )?;
            for (key, value) in &step.arguments {
                writeln!(out, "       {key} = {}", shown(value))?;
            }
        }
        if prepared.vars.is_some() {
            let mut names: Vec<String> = Vec::new();
            for (name, value) in vars.iter() {
                let secret = prepared.config.sensitive_vars().iter().any(|s| s == name);
                let value = if secret {
                    cattle_stdlib::secrets::MARKER.to_string()
                } else {
                    value.to_string()
                };
                names.push(format!("{name} = {value}"));
            }
            writeln!(out, "  variables: {}", names.join(", "))?;
        }
    }
    Ok(())
}

/// `user@machine`, for the manifest.
fn publisher() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{machine}")
}

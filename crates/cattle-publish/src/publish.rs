//! `cattle publish DIR --hosts FILE`: plan locally, upload once, address every host.
//!
//! The order makes a half-finished publish harmless: the bundle's reference,
//! then the bundle, then a version (see [`crate::versions`]), the signed
//! manifest, and only then the hosts' inboxes. An agent that finds an execution
//! in its inbox therefore always finds its manifest and bundle. The version is
//! taken after the upload, however long that takes, so that a publish started
//! later but finished sooner runs first and neither is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cattle_core::bundle;
use cattle_core::env;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::rollout::Rollout;
use cattle_core::signing::SecretKey;
use cattle_core::store::{Condition, Store, StoreError};
use cattle_core::wire::{
    BundleRef, Envelope, FORMAT, HostVars, InboxLayout, MAX_MESSAGE_BYTES, Manifest, cut_text,
};
use cattle_stdlib::{Config, Plan, Vars};
use serde::Serialize;
use uuid::Uuid;

pub use crate::apply::Mode;
use crate::for_each_bounded;
use crate::inventory::{self, Inventory};
use crate::select::Selection;

/// The schema of `cattle publish --json`; see `docs/json.md`.
pub const PUBLISH_SCHEMA: &str = "cattle.publish.v1";

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

/// No progress display (standard error is not a terminal).
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {}

/// What a publish did, for `--json` ([`Published::json`]).
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
    /// Hosts log file diffs (`--diff`).
    pub diff: bool,
    /// How `--select` chose the hosts, host by host; `None` without it.
    pub selection: Option<Selection>,
}

impl Published {
    /// The `cattle.publish.v1` document: `"schema"` first, then every field
    /// of [`Published`], on one line.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            schema: &'static str,
            #[serde(flatten)]
            published: &'a Published,
        }
        crate::terminal::json(
            &serde_json::to_string(&Document {
                schema: PUBLISH_SCHEMA,
                published: self,
            })
            .expect("a publish serializes"),
        )
    }
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
    /// How `--select` chose `hosts` among those of the hosts file; `None`:
    /// every host of the hosts file.
    pub selection: Option<Selection>,
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
    prepare_hosts(dir, hosts_file, config, &inventory, hosts, overrides)
}

/// [`prepare`] for `hosts`, some of those of `inventory` (read from
/// `hosts_file`), with `config` already read from `dir`: `--select` chooses
/// them first.
pub fn prepare_hosts(
    dir: &Path,
    hosts_file: &Path,
    config: Config,
    inventory: &Inventory,
    hosts: Vec<HostId>,
    overrides: &Vars,
) -> anyhow::Result<Prepared> {
    let (vars, steps) = if config.uses_vars() {
        let mut all = Vec::with_capacity(hosts.len());
        let mut steps = 0;
        // Every host is checked, so that the error can say how many fail.
        let mut first: Option<(&HostId, anyhow::Error)> = None;
        let mut failing = 0;
        for host in &hosts {
            let planned = inventory::resolve(config.defaults(), inventory, overrides, host)
                .map_err(|message| {
                    anyhow::anyhow!("{}: {message}", inventory::display_name(hosts_file))
                })
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
                Err(err) => err.context(format!(
                    "{} cannot be given their variables",
                    cattle_core::count(failing as u64, "host")
                )),
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
        selection: None,
    })
}

// The flags of `cattle publish`, one by one: a struct of them would be used
// once, here.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    store: &Store,
    dir: &Path,
    prepared: Prepared,
    mode: Mode,
    signer: &Signer,
    expires_in: Duration,
    message: Option<String>,
    rollout: Option<Rollout>,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Published> {
    let Prepared {
        hosts,
        vars,
        steps,
        bundle: bundle::Bundle { bytes, sha256 },
        selection,
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
    let release = Release {
        id,
        config: dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string()),
        steps,
        bundle: BundleRef { sha256, size },
        hosts,
        vars: vars.map(|all| all.iter().map(vars_map).collect()),
        mode,
        message,
        rollout,
        select: selection
            .as_ref()
            .map_or_else(Vec::new, |s| s.select.clone()),
    };
    let mut published = sign_and_release(store, release, signer, expires_in, progress).await?;
    published.bundle_uploaded = bundle_uploaded;
    published.selection = selection;
    Ok(published)
}

/// A host's variables as [`HostVars`] holds them.
fn vars_map(vars: &Vars) -> BTreeMap<String, serde_json::Value> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// An execution whose bundle and bundle reference are in the store, ready
/// to be given a version, signed and addressed.
#[derive(Debug)]
pub struct Release {
    /// Its ID, as in the bundle reference already written.
    pub id: Uuid,
    pub config: String,
    pub steps: usize,
    pub bundle: BundleRef,
    pub hosts: Vec<HostId>,
    /// Each host's variables, in the order of `hosts`; `None`: the config uses none.
    pub vars: Option<Vec<BTreeMap<String, serde_json::Value>>>,
    pub mode: Mode,
    pub message: Option<String>,
    /// Waves, budget, bake, windows, start time (`--waves` …): see
    /// `cattle_core::rollout`.
    pub rollout: Option<Rollout>,
    /// The `--select` selectors that chose `hosts` ([`Manifest::select`]).
    pub select: Vec<String>,
}

/// Take a version for `release`, sign its manifest and address its hosts
/// (`cattle publish` and `cattle retry` both end so), telling `progress`
/// how many hosts are addressed.
pub async fn sign_and_release(
    store: &Store,
    release: Release,
    signer: &Signer,
    expires_in: Duration,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Published> {
    let Release {
        id,
        config,
        steps,
        bundle,
        hosts,
        vars,
        mode,
        message,
        rollout,
        select,
    } = release;
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
        config,
        steps,
        bundle,
        hosts,
        vars: vars.is_some(),
        check: mode.check,
        diff: mode.diff,
        message,
        rollout,
        select,
        grouped: ticket.inboxes == InboxLayout::Grouped,
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
        bundle_sha256: manifest.bundle.sha256,
        bundle_size: manifest.bundle.size,
        bundle_uploaded: false,
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
        diff: manifest.diff,
        selection: None,
    })
}

/// `--message`, checked before anything is uploaded: one line of at most
/// [`MAX_MESSAGE_BYTES`] bytes without control characters. An empty one is none.
pub fn check_message(message: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(message) = message.filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    if message.len() > MAX_MESSAGE_BYTES {
        anyhow::bail!(
            "`--message` is {} bytes long; at most {MAX_MESSAGE_BYTES} are allowed (nothing was \
             uploaded)",
            message.len()
        );
    }
    if let Some(c) = message.chars().find(|c| c.is_control()) {
        anyhow::bail!(
            "`--message` must be one line of text: it contains the control character {:?} \
             (nothing was uploaded)",
            c
        );
    }
    Ok(Some(message))
}

/// Sign and store `manifest`, then add its execution to every host's inbox,
/// with the host's own variables (`vars`, in the order of the manifest's
/// hosts) signed for it.
async fn sign_and_address(
    store: &Store,
    manifest: &Manifest,
    vars: Option<Vec<BTreeMap<String, serde_json::Value>>>,
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
    // Before any host is addressed: a waiting host learns of a clean by its
    // gate going away.
    if manifest.rollout.is_some() {
        crate::rollout::nudge(store, id, "published").await?;
    }

    let host_count = manifest.hosts.len();
    let vars: Option<Vec<(HostId, Envelope)>> = vars.map(|vars| {
        manifest
            .hosts
            .iter()
            .zip(vars)
            .map(|(host, vars)| {
                let vars = HostVars {
                    format: FORMAT,
                    execution: id,
                    host: host.clone(),
                    vars,
                };
                let envelope = match signer {
                    Signer::Key(key) => key.sign_host_vars(&vars),
                    Signer::Unsigned => Envelope::unsigned_host_vars(&vars),
                };
                (host.clone(), envelope)
            })
            .collect()
    });
    progress.addressed(0, host_count);
    let done = Arc::new(AtomicUsize::new(0));
    // The hosts that could not be addressed, each with what failed: the
    // publish fails naming the first.
    let unaddressed = |failed: Vec<(Vec<HostId>, StoreError)>| {
        let count: usize = failed.iter().map(|(hosts, _)| hosts.len()).sum();
        let (hosts, err) = &failed[0];
        anyhow::anyhow!(
            "execution {id} was published but {count} of {host_count} hosts could not be addressed (first: `{}`: {err}); \
             those hosts will not run it. Run `cattle clean {id}` and publish again",
            hosts[0]
        )
    };
    let failures = |results: Vec<(Vec<HostId>, Result<(), StoreError>)>| -> Vec<_> {
        results
            .into_iter()
            .filter_map(|(hosts, r)| r.err().map(|e| (hosts, e)))
            .collect()
    };

    // Each host's variables before any inbox names the execution, so that a
    // host that sees it finds them.
    if let Some(vars) = &vars {
        let results = for_each_bounded(vars.clone(), |(host, envelope): (HostId, Envelope)| {
            let store = store.clone();
            async move {
                let body = serde_json::to_vec(&envelope).expect("envelopes serialize");
                let result = store
                    .put(&keys::host_vars(id, &host), body, Condition::Always)
                    .await;
                (vec![host], result.map(drop))
            }
        })
        .await;
        let failed = failures(results);
        if !failed.is_empty() {
            return Err(unaddressed(failed));
        }
    }

    // Agents older than groups read only their own inbox: until the store is
    // upgraded, every host gets the execution there too (with its variables,
    // where those agents look for them).
    let per_host = !manifest.grouped;
    if per_host {
        let addressed: Vec<(HostId, Option<Envelope>)> = match &vars {
            None => manifest.hosts.iter().map(|h| (h.clone(), None)).collect(),
            Some(vars) => vars
                .iter()
                .map(|(host, envelope)| (host.clone(), Some(envelope.clone())))
                .collect(),
        };
        let results = for_each_bounded(addressed, |(host, vars): (HostId, Option<Envelope>)| {
            let store = store.clone();
            let (progress, done) = (progress.clone(), done.clone());
            async move {
                let result = crate::inbox::add(&store, &host, id, vars).await;
                if result.is_ok() {
                    progress.addressed(done.fetch_add(1, Ordering::Relaxed) + 1, host_count);
                }
                (vec![host], result)
            }
        })
        .await;
        let failed = failures(results);
        if !failed.is_empty() {
            return Err(unaddressed(failed));
        }
    }

    // One write per group of hosts, whatever their number.
    let groups: Vec<(String, Vec<HostId>)> = crate::inbox::by_group(&manifest.hosts)
        .into_iter()
        .collect();
    let results = for_each_bounded(groups, |(group, hosts): (String, Vec<HostId>)| {
        let store = store.clone();
        let (progress, done) = (progress.clone(), done.clone());
        async move {
            let result = crate::inbox::add_to_group(&store, &group, id, &hosts, per_host).await;
            if result.is_ok() && !per_host {
                let before = done.fetch_add(hosts.len(), Ordering::Relaxed);
                progress.addressed(before + hosts.len(), host_count);
            }
            (hosts, result)
        }
    })
    .await;
    let failed = failures(results);
    if !failed.is_empty() {
        return Err(unaddressed(failed));
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
        match &prepared.selection {
            Some(selection) if selection.includes(host) => {
                anyhow::bail!("host `{host}` does not match `--select` (the table above says why)")
            }
            _ => anyhow::bail!("host `{host}` is not in the hosts file"),
        }
    }
    writeln!(
        out,
        "dry run: nothing uploaded. config {}, {}, bundle {} ({}), {}{}",
        prepared.config.config_dir.display(),
        cattle_core::count(prepared.steps as u64, "step"),
        &prepared.bundle.sha256[..12],
        cattle_core::count(prepared.bundle.bytes.len() as u64, "byte"),
        cattle_core::count(prepared.hosts.len() as u64, "host"),
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

/// Who publishes, for the manifest: [`env::PUBLISHER`] when set, else
/// `user@machine`, the user being the real user ID's name in the password
/// database (`uid 1000` when it has none): `$USER` may be unset (cron,
/// systemd) or say anything.
pub fn publisher() -> String {
    if let Ok(publisher) = std::env::var(env::PUBLISHER)
        && !publisher.trim().is_empty()
    {
        return cut_text(publisher.trim(), MAX_MESSAGE_BYTES);
    }
    let uid = nix::unistd::getuid();
    let user = match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    };
    let machine = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    format!("{user}@{machine}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_one_line_of_at_most_1_kib() {
        assert_eq!(check_message(None).unwrap(), None);
        assert_eq!(check_message(Some(String::new())).unwrap(), None);
        let longest = "é".repeat(MAX_MESSAGE_BYTES / 2);
        assert_eq!(
            check_message(Some(longest.clone())).unwrap(),
            Some(longest.clone())
        );
        let err = check_message(Some(format!("{longest}x"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`--message` is 1025 bytes long; at most 1024 are allowed (nothing was uploaded)"
        );
        for hostile in ["two\nlines", "\x1b[2J", "over\rwrite", "\u{9b}31m"] {
            let err = check_message(Some(hostile.to_string())).unwrap_err();
            assert!(err.to_string().contains("control character"), "{err}");
        }
    }

    #[test]
    fn the_publisher_is_named_without_the_environment() {
        let publisher = publisher();
        let (user, machine) = publisher.split_once('@').unwrap();
        assert!(!user.is_empty() && user != "unknown", "{publisher}");
        assert!(!machine.is_empty(), "{publisher}");
    }
}

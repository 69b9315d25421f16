//! `cattle publish DIR --hosts FILE`: plan locally, upload once, address every host.
//!
//! The order makes a half-finished publish harmless: the bundle's reference,
//! then the bundle, then a version (see [`crate::versions`]), the signed
//! manifest, and only then the hosts' inboxes. An agent that finds an execution
//! in its inbox therefore always finds its manifest and bundle. The version is
//! taken after the upload, however long that takes, so that a publish started
//! later but finished sooner runs first and neither is refused.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cattle_core::bundle;
use cattle_core::hosts::{HostId, parse_hosts_file};
use cattle_core::keys;
use cattle_core::signing::SecretKey;
use cattle_core::store::{Condition, Store};
use cattle_core::wire::{BundleRef, Envelope, FORMAT, Manifest};
use cattle_stdlib::Plan;
use serde::Serialize;
use uuid::Uuid;

use crate::for_each_bounded;

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

pub async fn publish(
    store: &Store,
    dir: &Path,
    hosts_file: &Path,
    signer: &Signer,
    expires_in: Duration,
) -> anyhow::Result<Published> {
    // Everything that can be wrong with the input is found before the first upload.
    let plan = Plan::load(dir)?;
    let hosts_text = std::fs::read_to_string(hosts_file)
        .with_context(|| format!("cannot read hosts file `{}`", hosts_file.display()))?;
    let hosts = parse_hosts_file(&hosts_text, hosts_file)?;
    let bundle::Bundle { bytes, sha256 } =
        bundle::pack(dir).with_context(|| format!("cannot bundle `{}`", dir.display()))?;
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
        store.put(&bundle_key, bytes, Condition::Always).await?;
        true
    };

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
        steps: plan.steps.len(),
        bundle: BundleRef {
            sha256: sha256.clone(),
            size,
        },
        hosts,
    };
    let addressed = sign_and_address(store, &manifest, signer).await;
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
    })
}

/// Sign and store `manifest`, then add its execution to every host's inbox.
async fn sign_and_address(
    store: &Store,
    manifest: &Manifest,
    signer: &Signer,
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
    let results = for_each_bounded(manifest.hosts.clone(), |host: HostId| {
        let store = store.clone();
        async move {
            let result = crate::inbox::add(&store, &host, id).await;
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

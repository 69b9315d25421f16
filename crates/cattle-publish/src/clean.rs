//! `cattle clean ID`: remove an execution from the store.
//!
//! Order matters so that an interrupted clean can simply be run again: first
//! the hosts' inboxes stop listing the execution (agents then delete their
//! local copy on their next poll), then the per-host objects go, then the
//! bundle reference and, if no other execution uses it, the bundle; the
//! manifest goes last because it is what tells clean which hosts to visit.
//!
//! A listing can miss objects that exist (a distributed MinIO, after a node
//! came back, for objects overwritten meanwhile), so clean also deletes by
//! name every key the manifest says may exist, then lists again: the manifest
//! goes only once a listing shows nothing else (with `--force`, whatever a
//! host still writing puts back is named and left for a later clean).
//!
//! Without a manifest (already cleaned, or removed by hand) clean removes
//! whatever is left under `executions/<id>/` and the execution's bundle
//! reference: an agent that was running the execution during a
//! `clean --force` may upload its status and log after it. What hosts wrote is
//! never read by `clean --force`, so no host can keep an execution from being
//! removed; without `--force` a host whose status is unreadable counts as
//! possibly running.

use std::collections::HashSet;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::rollout::EndState;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{HostStatus, MAX_DOCUMENT_BYTES, Manifest, check_sha256};
use serde::Serialize;
use uuid::Uuid;

use crate::for_each_bounded;
use crate::status::HostState;

#[derive(Debug, Serialize)]
pub struct Cleaned {
    pub id: Uuid,
    pub objects_deleted: usize,
    pub bundle_deleted: bool,
    /// There was no manifest: only what was left of the execution was removed
    /// (see [`clean`]); these are the keys.
    pub leftovers: Option<Vec<String>>,
    /// Inboxes that could not be changed because they are not valid inbox
    /// documents, and why; they were left as they are.
    pub bad_inboxes: Vec<String>,
    /// With `--force`: objects a listing still showed after they were
    /// deleted twice (a host still writing); a later `cattle clean` removes them.
    pub unconfirmed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("execution {id} is still running on {}: {}", cattle_core::count(hosts.len() as u64, "host"), hosts.join(", "))]
pub struct StillRunning {
    pub id: Uuid,
    /// Each host, followed by why its state is unknown when it is UNREADABLE.
    pub hosts: Vec<String>,
}

/// Objects a listing still shows after they were deleted twice: the manifest
/// is kept, so that `cattle clean` can be run again.
#[derive(Debug, thiserror::Error)]
#[error(
    "execution {id} is not all cleaned: a listing still shows {} after they were deleted \
     twice ({}); its manifest is kept: run `cattle clean {id}` again",
    cattle_core::count(left.len() as u64, "object"),
    shown(left)
)]
pub struct NotConfirmed {
    pub id: Uuid,
    pub left: Vec<String>,
}

/// The first few keys.
fn shown(keys: &[String]) -> String {
    let mut text = keys.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if keys.len() > 3 {
        text.push_str(&format!(" and {} more", keys.len() - 3));
    }
    text
}

/// Nothing to clean: no manifest, nothing under `executions/<id>/`, no bundle reference.
#[derive(Debug, thiserror::Error)]
#[error("no execution {id} in this store (nothing under `{location}`)")]
pub struct NotFound {
    pub id: Uuid,
    pub location: String,
}

pub async fn clean(store: &Store, id: Uuid, force: bool) -> anyhow::Result<Cleaned> {
    let Some(manifest) = crate::status::find_manifest(store, id).await? else {
        return leftovers(store, id).await;
    };
    if !force {
        let hosts =
            crate::status::hosts(store, id, &manifest, crate::status::Detail::Unfinished).await?;
        let running: Vec<String> = hosts
            .iter()
            .filter_map(|h| match h.state {
                HostState::Progress => Some(h.host.to_string()),
                HostState::Unreadable => Some(format!(
                    "{} (UNREADABLE: {})",
                    h.host,
                    h.reason.as_deref().unwrap_or("")
                )),
                _ => None,
            })
            .collect();
        if !running.is_empty() {
            return Err(StillRunning { id, hosts: running }.into());
        }
    }
    let sha256 = manifest
        .bundle
        .checked_sha256()
        .map_err(anyhow::Error::msg)?
        .to_string();

    // The groups' inboxes, then (for an execution published before the store
    // was upgraded) each host's own.
    let groups: Vec<String> = crate::inbox::by_group(&manifest.hosts)
        .into_keys()
        .collect();
    let mut results = for_each_bounded(groups, |group| {
        let store = store.clone();
        async move { withdrawn(crate::inbox::remove_from_group(&store, &group, id).await) }
    })
    .await;
    if !manifest.grouped {
        results.extend(
            for_each_bounded(manifest.hosts.clone(), |host| {
                let store = store.clone();
                async move { withdrawn(crate::inbox::remove(&store, &host, id).await) }
            })
            .await,
        );
    }
    let bad_inboxes: Vec<String> = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();

    let manifest_key = keys::manifest(id);
    let listed = listed_except_manifest(store, id).await?;
    // A listing may miss objects that exist (distributed MinIO after a node
    // came back, for objects overwritten meanwhile): every key the manifest
    // says may exist is deleted by name too.
    let unlisted = unlisted_keys(store, &manifest, &listed).await;
    let mut doomed = listed;
    let mut objects_deleted = doomed.len() + 1;
    doomed.extend(unlisted);
    doomed.push(keys::bundle_ref(&sha256, id));
    delete_all(store, doomed).await?;
    // What a listing still shows is deleted once more; what stays keeps the
    // manifest, so that `cattle clean` can be run again to finish.
    let mut left = listed_except_manifest(store, id).await?;
    if !left.is_empty() {
        delete_all(store, left.clone()).await?;
        left = listed_except_manifest(store, id).await?;
    }
    // With `--force` a host may still be writing: what it uploads after this
    // is left for a later clean, as before; the manifest goes.
    if !left.is_empty() && !force {
        return Err(NotConfirmed { id, left }.into());
    }

    let bundle_deleted = store.list(&keys::bundle_refs(&sha256)).await?.is_empty();
    if bundle_deleted {
        store.delete(&keys::bundle(&sha256)).await?;
        objects_deleted += 1;
    }
    store.delete(&manifest_key).await?;
    objects_deleted += 1;
    Ok(Cleaned {
        id,
        objects_deleted,
        bundle_deleted,
        leftovers: None,
        bad_inboxes,
        unconfirmed: left,
    })
}

/// What withdrawing an execution from one inbox came to: only publish and
/// clean write inboxes, so one that does not parse cannot list the execution
/// for an agent either; it is reported, and the rest goes on.
fn withdrawn(result: Result<(), StoreError>) -> Result<Option<String>, StoreError> {
    match result {
        Ok(()) => Ok(None),
        Err(e @ StoreError::InvalidDocument { .. }) => Ok(Some(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Clean an execution whose manifest is gone: remove what is under its prefix,
/// and its bundle reference (found in a listing of `bundles/`, so no key is
/// built from anything but the ID) with the bundle if nothing else uses it.
/// Inboxes cannot be found without the manifest; agents ignore an execution
/// an inbox lists without a manifest.
async fn leftovers(store: &Store, id: Uuid) -> anyhow::Result<Cleaned> {
    let prefix = keys::execution(id);
    let mut doomed = store.list(&prefix).await?;
    let suffix = format!(".refs/{id}");
    // A publisher's policy may not list `bundles/` (deploy/minio): then only
    // the execution's own prefix is tidied.
    let listed = match store.list(BUNDLES).await {
        Ok(listed) => listed,
        Err(e @ StoreError::AccessDenied { .. }) => {
            tracing::warn!(error = %e, "cannot look for execution {id}'s bundle reference; leaving it");
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let bundles: Vec<String> = listed
        .into_iter()
        .filter_map(|key| {
            let sha256 = key.strip_prefix(BUNDLES)?.strip_suffix(&suffix)?;
            check_sha256(sha256).ok()?;
            Some(sha256.to_string())
        })
        .collect();
    doomed.extend(bundles.iter().map(|sha256| keys::bundle_ref(sha256, id)));
    if doomed.is_empty() {
        return Err(NotFound {
            id,
            location: store.location(&prefix),
        }
        .into());
    }
    let mut objects_deleted = delete_all(store, doomed.clone()).await?;
    let mut bundle_deleted = false;
    for sha256 in &bundles {
        if store.list(&keys::bundle_refs(sha256)).await?.is_empty() {
            let bundle = keys::bundle(sha256);
            if store.size(&bundle).await?.is_some() {
                store.delete(&bundle).await?;
                doomed.push(bundle);
                objects_deleted += 1;
                bundle_deleted = true;
            }
        }
    }
    Ok(Cleaned {
        id,
        objects_deleted,
        bundle_deleted,
        leftovers: Some(doomed),
        bad_inboxes: Vec::new(),
        unconfirmed: Vec::new(),
    })
}

/// The keys under `executions/<id>/` a listing shows, but the manifest.
async fn listed_except_manifest(store: &Store, id: Uuid) -> Result<Vec<String>, StoreError> {
    let manifest = keys::manifest(id);
    Ok(store
        .list(&keys::execution(id))
        .await?
        .into_iter()
        .filter(|k| *k != manifest)
        .collect())
}

/// Every key of the execution that the manifest says may exist and `listed`
/// does not show: the execution's cancel, gate and rollout control; each
/// host's status, DONE, conflict and (with a rollout) ended markers; and its
/// log parts up to one past the last listed, or, when its status was not
/// listed, up to the number its status document (read as untrusted, and
/// capped) says.
async fn unlisted_keys(store: &Store, manifest: &Manifest, listed: &[String]) -> Vec<String> {
    let id = manifest.id;
    let listed: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let rolled_out = manifest.rollout.is_some();
    let with_vars = manifest.vars;
    let hosts = for_each_bounded(manifest.hosts.clone(), |host: HostId| {
        let store = store.clone();
        let status = keys::status(id, &host);
        let known = listed.contains(status.as_str());
        let prefix = keys::log_prefix(id, &host);
        let last_listed = listed
            .iter()
            .filter_map(|k| keys::parse_log_part_name(k.strip_prefix(&prefix)?))
            .max();
        async move {
            let parts = match last_listed {
                Some(last) => last + 2,
                None if known => 1,
                None => log_parts_said(&store, id, &host).await,
            };
            let mut keys = vec![status, keys::done(id, &host), keys::conflict(id, &host)];
            if rolled_out {
                keys.extend(EndState::ALL.map(|s| keys::ended(id, s.as_str(), &host)));
            }
            if with_vars {
                keys.push(keys::host_vars(id, &host));
            }
            keys.extend((0..parts).map(|n| keys::log_part(id, &host, n)));
            Ok::<_, StoreError>(keys)
        }
    })
    .await;
    let mut keys = vec![keys::cancel(id), keys::gate(id), keys::rollout_control(id)];
    keys.extend(hosts.into_iter().flatten().flatten());
    keys.retain(|k| !listed.contains(k.as_str()));
    keys
}

/// How many log parts `host`'s status document says there are (at least 1,
/// at most [`MAX_PARTS`]); 1 when it cannot be read.
async fn log_parts_said(store: &Store, id: Uuid, host: &HostId) -> u64 {
    let Ok(Some(object)) = store.get(&keys::status(id, host), MAX_DOCUMENT_BYTES).await else {
        return 1;
    };
    serde_json::from_slice::<HostStatus>(&object.bytes)
        .ok()
        .and_then(|s| s.log)
        .map_or(1, |log| log.parts.clamp(1, MAX_PARTS))
}

/// The most log parts clean deletes by name for one host whose listing
/// showed none: a status document may say anything.
const MAX_PARTS: u64 = 4096;

/// Where bundles and their references are; see [`keys::bundle`].
const BUNDLES: &str = "bundles/";

async fn delete_all(store: &Store, keys: Vec<String>) -> Result<usize, StoreError> {
    let count = keys.len();
    let results = for_each_bounded(keys, |key: String| {
        let store = store.clone();
        async move { store.delete(&key).await }
    })
    .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(count)
}

//! `cattle clean ID`: remove an execution from the store.
//!
//! Order matters so that an interrupted clean can simply be run again: first
//! the hosts' inboxes stop listing the execution (agents then delete their
//! local copy on their next poll), then the per-host objects go, then the
//! bundle reference and, if no other execution uses it, the bundle; the
//! manifest goes last because it is what tells clean which hosts to visit.
//!
//! Without a manifest (already cleaned, or removed by hand) clean removes
//! whatever is left under `executions/<id>/` and the execution's bundle
//! reference: an agent that was running the execution during a
//! `clean --force` may upload its status and log after it. What hosts wrote is
//! never read by `clean --force`, so no host can keep an execution from being
//! removed; without `--force` a host whose status is unreadable counts as
//! possibly running.

use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::check_sha256;
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
}

#[derive(Debug, thiserror::Error)]
#[error("execution {id} is still running on {}: {}", cattle_core::count(hosts.len() as u64, "host"), hosts.join(", "))]
pub struct StillRunning {
    pub id: Uuid,
    /// Each host, followed by why its state is unknown when it is UNREADABLE.
    pub hosts: Vec<String>,
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

    let results = for_each_bounded(manifest.hosts.clone(), |host| {
        let store = store.clone();
        async move {
            match crate::inbox::remove(&store, &host, id).await {
                Ok(()) => Ok(None),
                // Only publish and clean write inboxes; one that does not
                // parse cannot list this execution for its agent either.
                Err(e @ StoreError::InvalidDocument { .. }) => Ok(Some(e.to_string())),
                Err(e) => Err(e),
            }
        }
    })
    .await;
    let bad_inboxes: Vec<String> = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();

    let manifest_key = keys::manifest(id);
    let mut doomed: Vec<String> = store
        .list(&keys::execution(id))
        .await?
        .into_iter()
        .filter(|k| *k != manifest_key)
        .collect();
    doomed.push(keys::bundle_ref(&sha256, id));
    let mut objects_deleted = delete_all(store, doomed).await?;

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
    })
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
    })
}

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

//! `cattle clean ID`: remove an execution from the store.
//!
//! Order matters so that an interrupted clean can simply be run again: first
//! the hosts' inboxes stop listing the execution (agents then delete their
//! local copy on their next poll), then the per-host objects go, then the
//! bundle reference and, if no other execution uses it, the bundle; the
//! manifest goes last because it is what tells clean which hosts to visit.

use cattle_core::keys;
use cattle_core::store::Store;
use serde::Serialize;
use uuid::Uuid;

use crate::for_each_bounded;
use crate::status::HostState;

#[derive(Debug, Serialize)]
pub struct Cleaned {
    pub id: Uuid,
    pub objects_deleted: usize,
    pub bundle_deleted: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("execution {id} is still running on {} host(s): {}", hosts.len(), hosts.join(", "))]
pub struct StillRunning {
    pub id: Uuid,
    pub hosts: Vec<String>,
}

pub async fn clean(store: &Store, id: Uuid, force: bool) -> anyhow::Result<Cleaned> {
    let report = crate::status::fetch(store, id).await?;
    let running: Vec<String> = report
        .hosts
        .iter()
        .filter(|h| h.state == HostState::Progress)
        .map(|h| h.host.to_string())
        .collect();
    if !running.is_empty() && !force {
        return Err(StillRunning { id, hosts: running }.into());
    }
    let manifest = report.manifest;

    let results = for_each_bounded(manifest.hosts.clone(), |host| {
        let store = store.clone();
        async move { crate::inbox::remove(&store, &host, id).await }
    })
    .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;

    let manifest_key = keys::manifest(id);
    let mut doomed: Vec<String> = store
        .list(&keys::execution(id))
        .await?
        .into_iter()
        .filter(|k| *k != manifest_key)
        .collect();
    doomed.push(keys::bundle_ref(&manifest.bundle.sha256, id));
    let mut objects_deleted = doomed.len();
    let results = for_each_bounded(doomed, |key: String| {
        let store = store.clone();
        async move { store.delete(&key).await }
    })
    .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;

    let bundle_deleted = store
        .list(&keys::bundle_refs(&manifest.bundle.sha256))
        .await?
        .is_empty();
    if bundle_deleted {
        store.delete(&keys::bundle(&manifest.bundle.sha256)).await?;
        objects_deleted += 1;
    }
    store.delete(&manifest_key).await?;
    objects_deleted += 1;
    Ok(Cleaned {
        id,
        objects_deleted,
        bundle_deleted,
    })
}

//! `cattle cancel`, as the agent sees it: a cancel document naming this host
//! keeps an execution from starting and stops a running one before its next step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Fetched, Store, StoreError};
use cattle_core::wire::{Cancel, MAX_DOCUMENT_BYTES};
use uuid::Uuid;

/// Whether an operator cancelled execution `id` on `host`.
pub async fn cancelled(store: &Store, id: Uuid, host: &HostId) -> Result<bool, StoreError> {
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

/// While an execution runs, every `every`: look for a cancel (one conditional
/// GET) and raise `cancelled` when one covers this host; and look whether the
/// execution is still in the store (a HEAD of its manifest), raising `gone`
/// when `cattle clean --force` removed it, so that the host stops running and
/// reporting work nobody can read any more.
pub async fn watch(
    store: Store,
    id: Uuid,
    host: HostId,
    every: Duration,
    cancelled: Arc<AtomicBool>,
    gone: Arc<AtomicBool>,
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
                    cancelled.store(true, Ordering::SeqCst);
                    return;
                }
                etag = Some(object.etag);
            }
            Ok(Fetched::NotModified | Fetched::Missing) => {}
            Err(e) => {
                tracing::debug!(execution = %id, error = %e, "cannot read the cancel document")
            }
        }
        match store.size(&keys::manifest(id)).await {
            Ok(None) => {
                tracing::warn!(execution = %id, "the execution was cleaned from the store while it ran; stopping before the next step");
                gone.store(true, Ordering::SeqCst);
                return;
            }
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::debug!(execution = %id, error = %e, "cannot look at the manifest")
            }
        }
    }
}

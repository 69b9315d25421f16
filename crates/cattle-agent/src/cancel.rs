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

/// While an execution runs, look for a cancel every `every` (one conditional
/// GET each time) and raise `flag` when one covers this host.
pub async fn watch(store: Store, id: Uuid, host: HostId, every: Duration, flag: Arc<AtomicBool>) {
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

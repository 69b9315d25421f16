//! Delivery: the execution's log and status, from the local outbox to the store.

use std::fs::File;
use std::path::{Path, PathBuf};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Condition, Store};
use cattle_core::wire::{HostStatus, State};
use tokio::sync::watch;
use uuid::Uuid;

use crate::AgentError;
use crate::local::{DELIVERED, LOG_FILE, STATUS_JSON};

/// Upload the final log and status from the local directory, then mark them delivered.
pub async fn deliver(store: &Store, host: &HostId, id: Uuid, dir: &Path) -> Result<(), AgentError> {
    let log = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
    let status = std::fs::read(dir.join(STATUS_JSON))
        .map_err(|e| AgentError::local(dir.join(STATUS_JSON), e))?;
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
    File::create(dir.join(DELIVERED)).map_err(|e| AgentError::local(dir.join(DELIVERED), e))?;
    Ok(())
}

/// Upload each progress status the runner reports, with the log so far; the
/// latest status wins (one still waiting is replaced by a newer one).
pub async fn upload_progress(
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

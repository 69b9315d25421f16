//! `cattle cancel ID [--host H]`: ask hosts to stop an execution.
//!
//! Cancelling writes the execution's cancel document; agents read it before
//! they start an execution and between its steps, stop before the next step
//! (a running step is never cut in half) and report CANCELLED. A host that is
//! offline reports it when it next polls.

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::Store;
use cattle_core::wire::{Cancel, FORMAT};
use uuid::Uuid;

/// Cancel execution `id` on `host`, or on all its hosts.
pub async fn cancel(store: &Store, id: Uuid, host: Option<HostId>) -> anyhow::Result<usize> {
    let manifest = crate::status::manifest(store, id).await?;
    if let Some(host) = &host
        && !manifest.hosts.contains(host)
    {
        anyhow::bail!("execution {id} is not addressed to host `{host}`");
    }
    crate::cas::update(
        store,
        &keys::cancel(id),
        || Cancel {
            format: FORMAT,
            ..Cancel::default()
        },
        |cancel| match &host {
            None if cancel.all => false,
            None => {
                cancel.all = true;
                true
            }
            Some(host) if cancel.covers(host) => false,
            Some(host) => {
                cancel.hosts.push(host.clone());
                true
            }
        },
    )
    .await?;
    // Hosts waiting for their turn in a rollout look at the cancel when the
    // gate changes.
    if manifest.rollout.is_some() {
        crate::rollout::nudge(store, id, "cancelled").await?;
    }
    Ok(if host.is_some() {
        1
    } else {
        manifest.hosts.len()
    })
}

//! Adding executions to and removing them from hosts' inboxes, safely against
//! other publishers doing the same at the same time (see [`crate::cas`]).

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{Envelope, Inbox};
use uuid::Uuid;

/// Address execution `id` to `host`, with the host's signed variables if
/// the execution has them.
pub async fn add(
    store: &Store,
    host: &HostId,
    id: Uuid,
    vars: Option<Envelope>,
) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::inbox(host),
        || Inbox::new(host.clone()),
        |inbox| {
            if inbox.executions.contains(&id) {
                false
            } else {
                inbox.executions.push(id);
                if let Some(vars) = &vars {
                    inbox.vars.insert(id, vars.clone());
                }
                true
            }
        },
    )
    .await
    .map(drop)
}

/// Withdraw execution `id` from `host`.
pub async fn remove(store: &Store, host: &HostId, id: Uuid) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::inbox(host),
        || Inbox::new(host.clone()),
        |inbox| {
            let before = inbox.executions.len();
            inbox.executions.retain(|e| *e != id);
            let had_vars = inbox.vars.remove(&id).is_some();
            inbox.executions.len() != before || had_vars
        },
    )
    .await
    .map(drop)
}

//! Adding executions to and removing them from hosts' inboxes, safely against
//! other publishers doing the same at the same time (see [`crate::cas`]).

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::Inbox;
use uuid::Uuid;

/// Address execution `id` to `host`.
pub async fn add(store: &Store, host: &HostId, id: Uuid) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::inbox(host),
        || Inbox::new(host.clone()),
        |inbox| {
            if inbox.executions.contains(&id) {
                false
            } else {
                inbox.executions.push(id);
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
            inbox.executions.len() != before
        },
    )
    .await
    .map(drop)
}

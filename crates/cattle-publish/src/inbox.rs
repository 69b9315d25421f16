//! Adding executions to and removing them from hosts' inboxes, safely against
//! other publishers doing the same at the same time.
//!
//! Every change is a read, a modification and a conditional write (If-Match
//! on the ETag read, or If-None-Match for a new inbox). When another writer got
//! there first the write fails with "precondition failed" and the change is
//! made again on what that writer left.

use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Condition, Store, StoreError};
use cattle_core::wire::{Inbox, MAX_DOCUMENT_BYTES};
use uuid::Uuid;

/// Tries of one read-modify-write before giving up on a host.
const MAX_TRIES: u32 = 20;
/// Wait between tries: 10 ms, doubling, at most 1 s, plus up to 100 % jitter.
const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Apply `change` to `host`'s inbox. `change` returns false when there is
/// nothing to write (the inbox already says what is wanted).
pub async fn update(
    store: &Store,
    host: &HostId,
    change: impl Fn(&mut Inbox) -> bool,
) -> Result<(), StoreError> {
    let key = keys::inbox(host);
    let mut delay = FIRST_DELAY;
    for _ in 0..MAX_TRIES {
        let (mut inbox, condition) = match store.get(&key, MAX_DOCUMENT_BYTES).await? {
            Some(object) => {
                let inbox =
                    serde_json::from_slice(&object.bytes).map_err(|e| StoreError::Other {
                        op: "read inbox",
                        location: store.location(&key),
                        message: format!("not a valid inbox document: {e}"),
                    })?;
                (inbox, Condition::IfMatch(object.etag))
            }
            None => (Inbox::new(host.clone()), Condition::IfAbsent),
        };
        if !change(&mut inbox) {
            return Ok(());
        }
        let body = serde_json::to_vec(&inbox).expect("inbox serializes");
        match store.put(&key, body, condition).await {
            Ok(_) => return Ok(()),
            Err(StoreError::PreconditionFailed { .. }) => {
                let jitter = delay.mul_f64((uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0);
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Other {
        op: "update inbox",
        location: store.location(&key),
        message: format!("other writers changed it {MAX_TRIES} times in a row; try again"),
    })
}

/// Address execution `id` to `host`.
pub async fn add(store: &Store, host: &HostId, id: Uuid) -> Result<(), StoreError> {
    update(store, host, |inbox| {
        if inbox.executions.contains(&id) {
            false
        } else {
            inbox.executions.push(id);
            true
        }
    })
    .await
}

/// Withdraw execution `id` from `host`.
pub async fn remove(store: &Store, host: &HostId, id: Uuid) -> Result<(), StoreError> {
    update(store, host, |inbox| {
        let before = inbox.executions.len();
        inbox.executions.retain(|e| *e != id);
        inbox.executions.len() != before
    })
    .await
}

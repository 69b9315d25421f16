//! Read-modify-write of a JSON document in the store, safe against other
//! writers doing the same at the same time.
//!
//! Every change is a read, a modification and a conditional write (If-Match
//! on the ETag read, or If-None-Match when the document does not exist yet).
//! When another writer got there first the write fails with "precondition
//! failed" and the change is made again on what that writer left.

use std::time::Duration;

use cattle_core::store::{Condition, Store, StoreError};
use cattle_core::wire::MAX_DOCUMENT_BYTES;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Tries of one read-modify-write before giving up.
const MAX_TRIES: u32 = 20;
/// Wait between tries: 10 ms, doubling, at most 1 s, plus up to 100 % jitter.
const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Apply `change` to the document at `key`, starting from `new()` if there is
/// none, and return the document as written. `change` returns false when there
/// is nothing to write. A document that does not parse is
/// [`StoreError::InvalidDocument`], and is left as it is.
pub async fn update<T: Serialize + DeserializeOwned>(
    store: &Store,
    key: &str,
    new: impl Fn() -> T,
    change: impl Fn(&mut T) -> bool,
) -> Result<T, StoreError> {
    let mut delay = FIRST_DELAY;
    for _ in 0..MAX_TRIES {
        let (mut document, condition) = match store.get(key, MAX_DOCUMENT_BYTES).await? {
            Some(object) => {
                let document = serde_json::from_slice(&object.bytes).map_err(|e| {
                    StoreError::InvalidDocument {
                        op: "read",
                        location: store.location(key),
                        message: e.to_string(),
                    }
                })?;
                (document, Condition::IfMatch(object.etag))
            }
            None => (new(), Condition::IfAbsent),
        };
        if !change(&mut document) {
            return Ok(document);
        }
        let body = serde_json::to_vec(&document).expect("documents serialize");
        match store.put(key, body, condition).await {
            Ok(_) => return Ok(document),
            Err(StoreError::PreconditionFailed { .. }) => {
                let jitter = delay.mul_f64((uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0);
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Other {
        op: "update",
        location: store.location(key),
        message: format!("other writers changed it {MAX_TRIES} times in a row; try again"),
    })
}

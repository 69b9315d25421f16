//! Read-modify-write of a JSON document in the store, safe against other
//! writers doing the same at the same time.
//!
//! Every change is a read, a modification and a conditional write (If-Match
//! on the ETag read, or If-None-Match when the document does not exist yet).
//! When another writer got there first the write fails with "precondition
//! failed" and the change is made again on what that writer left.

use cattle_core::store::{Condition, Store, StoreError};
use cattle_core::wire::MAX_DOCUMENT_BYTES;
use cattle_stdlib::Backoff;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Tries of one read-modify-write before giving up; between them the wait is
/// [`Backoff::CONTENDED`]: 10 ms, doubling, at most 1 s, ±100 %.
const MAX_TRIES: u32 = 20;

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
    for tries in 1..=MAX_TRIES {
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
                tokio::time::sleep(Backoff::CONTENDED.delay(tries)).await;
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

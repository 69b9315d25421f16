//! Claims: only one agent runs a host's share of an execution, even when two
//! agents use the same host ID.

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Condition, Store, StoreError};
use cattle_core::wire::{Claim, MAX_DOCUMENT_BYTES};
use uuid::Uuid;

/// Claim execution `id` on `host` for this agent; the other agent's claim if
/// someone else has it.
pub async fn claim(
    store: &Store,
    id: Uuid,
    host: &HostId,
    mine: &Claim,
) -> Result<Option<Claim>, StoreError> {
    let key = keys::claim(id, host);
    let body = serde_json::to_vec_pretty(mine).expect("claims serialize");
    match store.put(&key, body, Condition::IfAbsent).await {
        Ok(_) => return Ok(None),
        Err(StoreError::PreconditionFailed { .. }) => {}
        Err(e) => return Err(e),
    }
    let Some(object) = store.get(&key, MAX_DOCUMENT_BYTES).await? else {
        return Ok(None); // cleaned meanwhile: nobody holds it
    };
    match serde_json::from_slice::<Claim>(&object.bytes) {
        Ok(theirs) if theirs.same_agent(mine) => Ok(None),
        Ok(theirs) => Ok(Some(theirs)),
        Err(e) => Err(StoreError::Other {
            op: "read claim",
            location: store.location(&key),
            message: format!("not a valid claim document: {e}"),
        }),
    }
}

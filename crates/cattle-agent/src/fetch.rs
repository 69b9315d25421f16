//! Fetching an execution: its manifest envelope and its bundle, verified
//! against the signed manifest before a byte is unpacked.

use std::path::{Path, PathBuf};

use cattle_core::bundle;
use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{MAX_DOCUMENT_BYTES, Manifest};
use uuid::Uuid;

use crate::AgentError;

/// What reading a manifest envelope found.
pub enum Envelope {
    /// Its bytes, at most [`MAX_DOCUMENT_BYTES`].
    Found(Vec<u8>),
    /// There is none: publish writes the manifest before addressing hosts, so
    /// the execution was cleaned meanwhile.
    Missing,
    /// Larger than any manifest may be: refused unread.
    TooLarge(u64),
}

pub async fn envelope(store: &Store, id: Uuid) -> Result<Envelope, StoreError> {
    match store.get(&keys::manifest(id), MAX_DOCUMENT_BYTES).await {
        Ok(Some(object)) => Ok(Envelope::Found(object.bytes)),
        Ok(None) => Ok(Envelope::Missing),
        Err(StoreError::TooLarge { limit, .. }) => Ok(Envelope::TooLarge(limit)),
        Err(e) => Err(e),
    }
}

/// `host`'s variables for execution `id` from their own object (a store
/// upgraded to group inboxes keeps them there): `None` when there is none,
/// or it is not an envelope (the admission then refuses the execution, as
/// without variables, naming why).
pub async fn host_vars(
    store: &Store,
    id: Uuid,
    host: &cattle_core::hosts::HostId,
) -> Result<Option<cattle_core::wire::Envelope>, StoreError> {
    let key = keys::host_vars(id, host);
    let object = match store.get(&key, MAX_DOCUMENT_BYTES).await {
        Ok(Some(object)) => object,
        Ok(None) | Err(StoreError::TooLarge { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(serde_json::from_slice(&object.bytes)
        .inspect_err(|e| {
            tracing::warn!(execution = %id, object = %store.location(&key), error = %e, "the host's variables are not a signed envelope; ignoring them");
        })
        .ok())
}

/// Why a bundle was not unpacked.
pub enum Failure {
    /// The bundle is missing, the wrong size or hash, or unsafe: never run it.
    Refused(String),
    /// The store or the local disk failed: try again later.
    Retry(AgentError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Retry(AgentError::Store(e))
    }
}

/// Download the manifest's bundle (at most its signed size), check its size and
/// sha256, and unpack it into `config_dir`, replacing whatever is there.
/// Returns a line for the log. The checks and the unpacking run on a blocking
/// thread, so that the agent's runtime stays free for signals and uploads.
pub async fn bundle(
    store: &Store,
    manifest: &Manifest,
    config_dir: &Path,
) -> Result<String, Failure> {
    let bundle_key = keys::bundle(&manifest.bundle.sha256);
    let bytes = match store.get(&bundle_key, manifest.bundle.size).await {
        Ok(Some(object)) => object.bytes,
        Ok(None) => {
            return Err(Failure::Refused(format!(
                "bundle `{}` is missing from the store",
                store.location(&bundle_key)
            )));
        }
        Err(StoreError::TooLarge {
            location, limit, ..
        }) => {
            return Err(Failure::Refused(format!(
                "bundle `{location}` is larger than the {limit} bytes the manifest says; refused"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let location = store.location(&bundle_key);
    let sha256 = manifest.bundle.sha256.clone();
    let size = manifest.bundle.size;
    let dest: PathBuf = config_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = bundle::verify(&bytes, &sha256, size) {
            return Err(Failure::Refused(format!(
                "bundle `{location}` refused: {e}"
            )));
        }
        if dest.exists() {
            std::fs::remove_dir_all(&dest)
                .map_err(|e| Failure::Retry(AgentError::local(dest.clone(), e)))?;
        }
        match bundle::extract(&bytes, &dest) {
            Ok(()) => {}
            // A full or read-only disk is this host's problem, not the bundle's.
            Err(bundle::BundleError::Write { path, source }) => {
                return Err(Failure::Retry(AgentError::local(path, source)));
            }
            Err(e) => return Err(Failure::Refused(format!("bundle refused: {e}"))),
        }
        Ok(format!(
            "bundle verified and unpacked into {}",
            dest.display()
        ))
    })
    .await
    .unwrap_or_else(|e| {
        Err(Failure::Refused(format!(
            "unpacking the bundle failed: {e}"
        )))
    })
}

//! Whether a store honours what Cattle relies on, tried on objects of its own
//! (`selftest/<random>/…`, deleted afterwards): create-only writes, compare
//! and swap, conditional reads, listings that show what was written and
//! deletes. A store that ignores a condition answers 200 where 412 is due,
//! and every command then succeeds while executions are lost; this finds it
//! before anything is published.
//!
//! Publishers run it on `selftest/<random>/`; an agent on
//! `hosts/<host>/selftest/<random>/`, the only place its MinIO policy lets it
//! write, list and delete. A pass is remembered locally ([`Passed`]), so that
//! a store is checked once per Cattle version, not on every command.

use serde::{Deserialize, Serialize};

use super::{Condition, Fetched, Store, StoreError};
use crate::hosts::HostId;

/// One property of the store, and whether it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was tried, e.g. `create-only write (If-None-Match: *)`.
    pub feature: &'static str,
    /// `None`: it held. Otherwise what the store did, and what that breaks.
    pub failure: Option<String>,
}

/// What [`check`] found, each feature in the order tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.failure.is_none())
    }

    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.failure.is_some())
    }

    /// One line per failed check: the feature, what the store did and what
    /// that would break.
    pub fn failure_lines(&self) -> Vec<String> {
        self.failures()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.feature,
                    f.failure.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Where a check puts its probe.
#[derive(Debug, Clone, Copy)]
pub enum Probe<'a> {
    /// `selftest/<random>/`: a publisher's (`cattle store check`, publish).
    Shared,
    /// `hosts/<host>/selftest/<random>/`: that host's agent's.
    Host(&'a HostId),
}

const CREATE: &str = "create-only write (If-None-Match: *)";
const SWAP: &str = "compare-and-swap write (If-Match)";
const CONDITIONAL_READ: &str = "conditional read (If-None-Match: ETag)";
const LISTING: &str = "listing shows what was just written";
const DELETE: &str = "delete";

/// Try each feature on `selftest/<random>/` of `store`. An error is a store
/// that cannot be reached or written at all (no bucket, no access): that is
/// not a finding about its features.
pub async fn check(store: &Store) -> Result<Report, StoreError> {
    check_at(store, Probe::Shared).await
}

/// [`check`], with the probe where `probe` says.
pub async fn check_at(store: &Store, probe: Probe<'_>) -> Result<Report, StoreError> {
    let run = uuid::Uuid::new_v4();
    let (prefix, key) = match probe {
        Probe::Shared => (
            crate::keys::selftest_prefix(run),
            crate::keys::selftest_probe(run),
        ),
        Probe::Host(host) => (
            crate::keys::host_selftest_prefix(host, run),
            crate::keys::host_selftest_probe(host, run),
        ),
    };
    let mut findings: Vec<Finding> = Vec::new();
    let note = |findings: &mut Vec<Finding>, feature, failure: Option<String>| {
        findings.push(Finding { feature, failure })
    };

    let first = store.put(&key, b"1".to_vec(), Condition::IfAbsent).await?;
    note(
        &mut findings,
        CREATE,
        match store.put(&key, b"2".to_vec(), Condition::IfAbsent).await {
            Err(StoreError::PreconditionFailed { .. }) => None,
            Ok(_) => Some(
                "a second create-only write of the same key succeeded (412 was due): two \
                 publishers could both write one manifest, and an inbox update could replace \
                 another's"
                    .to_string(),
            ),
            Err(e) => return Err(e),
        },
    );
    // The ETag the store has now: the probe's first one, unless a create-only
    // write it should have refused replaced it.
    let current = match store.get(&key, 1024).await? {
        Some(object) => object.etag,
        None => first,
    };
    note(
        &mut findings,
        SWAP,
        match store
            .put(
                &key,
                b"3".to_vec(),
                Condition::IfMatch("\"00000000000000000000000000000000\"".to_string()),
            )
            .await
        {
            Err(StoreError::PreconditionFailed { .. }) => None,
            Ok(_) => Some(
                "a write on an ETag the object does not have succeeded (412 was due): \
                 concurrent publishes and cleans would lose executions from inboxes"
                    .to_string(),
            ),
            Err(e) => return Err(e),
        },
    );
    let current = match store.get(&key, 1024).await? {
        Some(object) => object.etag,
        None => current,
    };
    let swapped = store
        .put(&key, b"4".to_vec(), Condition::IfMatch(current))
        .await;
    let etag = match swapped {
        Ok(etag) => Some(etag),
        Err(StoreError::PreconditionFailed { .. }) => {
            // Noted with the swap: a write on the right ETag was refused.
            if let Some(last) = findings.last_mut()
                && last.failure.is_none()
            {
                last.failure = Some(
                    "a write on the ETag the object has was refused: no inbox could be updated"
                        .to_string(),
                );
            }
            None
        }
        Err(e) => return Err(e),
    };
    note(
        &mut findings,
        CONDITIONAL_READ,
        match etag {
            None => Some("not tried: the object's ETag is not known".to_string()),
            Some(etag) => match store.get_if_changed(&key, Some(&etag), 1024).await {
                Ok(Fetched::NotModified) => None,
                Ok(Fetched::Found(_)) => Some(
                    "a read with the object's own ETag returned the object (304 was due): each \
                     idle poll would download the whole inbox"
                        .to_string(),
                ),
                Ok(Fetched::Missing) => Some("the object written was not there".to_string()),
                Err(e) => return Err(e),
            },
        },
    );
    note(
        &mut findings,
        LISTING,
        match store.list(&prefix).await {
            Ok(keys) if keys == [key.clone()] => None,
            Ok(keys) => Some(format!(
                "a listing right after the write showed {} (`{key}` expected): status, clean and \
                 list would miss objects",
                if keys.is_empty() {
                    "nothing".to_string()
                } else {
                    keys.join(", ")
                }
            )),
            Err(e) => return Err(e),
        },
    );
    store.delete(&key).await?;
    note(
        &mut findings,
        DELETE,
        match store.get(&key, 1024).await {
            Ok(None) => None,
            Ok(Some(_)) => Some(
                "the object was still there after it was deleted: clean would leave it".to_string(),
            ),
            Err(e) => return Err(e),
        },
    );
    Ok(Report { findings })
}

/// The version of Cattle whose check a [`Passed`] records: another version
/// may check more, so it checks again.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The most a remembered pass may take on disk; a larger file is not one.
pub const MAX_PASSED_BYTES: u64 = 4096;

/// A store that passed the check, as remembered on this machine (a
/// publisher's cache directory, an agent's state directory): commands that
/// find it for the same store and version do not check again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passed {
    /// The store's [`Store::identity`].
    pub store: String,
    /// The [`VERSION`] that checked it.
    pub cattle_version: String,
    /// When, RFC 3339.
    pub checked: String,
}

impl Passed {
    /// `store` passed just now.
    pub fn now(store: &Store) -> Passed {
        Passed {
            store: store.identity(),
            cattle_version: VERSION.to_string(),
            checked: crate::now_rfc3339(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a pass serializes");
        bytes.push(b'\n');
        bytes
    }

    /// A file name for the pass of `store`, the same for the same store
    /// and different for another: a hash of its [`Store::identity`].
    pub fn file_name(store: &Store) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(store.identity().as_bytes());
        format!("{}.json", &crate::hex(&digest)[..32])
    }

    /// Whether `bytes` (a file's content) remember a pass of `store` by this
    /// version. Anything else, a damaged file included, means "check".
    pub fn holds_for(bytes: &[u8], store: &Store) -> bool {
        serde_json::from_slice::<Passed>(bytes)
            .is_ok_and(|p| p.store == store.identity() && p.cattle_version == VERSION)
    }

    /// [`Passed::holds_for`] the file at `path`; a missing or unreadable file
    /// holds nothing.
    pub fn remembered_in(path: &std::path::Path, store: &Store) -> bool {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PASSED_BYTES + 1).read_to_end(&mut bytes))
            .is_ok()
            && bytes.len() as u64 <= MAX_PASSED_BYTES
            && Passed::holds_for(&bytes, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_directory_store_honours_everything_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(super::super::FileStore::open(dir.path().to_path_buf()).unwrap());
        let report = check(&store).await.unwrap();
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.findings.len(), 5);
        assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_host_probes_under_its_own_objects_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(super::super::FileStore::open(dir.path().to_path_buf()).unwrap());
        let host = HostId::new("web-1").unwrap();
        // Where its probe goes: with a file in the way there, it cannot
        // write, and the publishers' place is not in the way.
        let blocker = dir.path().join("hosts/web-1/selftest");
        std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
        std::fs::write(&blocker, b"").unwrap();
        let refused = check_at(&store, Probe::Host(&host)).await;
        assert!(refused.is_err(), "{refused:?}");
        assert!(check(&store).await.unwrap().passed());
        std::fs::remove_file(&blocker).unwrap();
        let report = check_at(&store, Probe::Host(&host)).await.unwrap();
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.failure_lines(), Vec::<String>::new());
        assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_pass_holds_for_its_own_store_and_version_only() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let open = |d: &tempfile::TempDir| {
            Store::File(super::super::FileStore::open(d.path().to_path_buf()).unwrap())
        };
        let (one, other) = (open(&dirs[0]), open(&dirs[1]));
        assert_eq!(Passed::file_name(&one), Passed::file_name(&open(&dirs[0])));
        assert_ne!(Passed::file_name(&one), Passed::file_name(&other));
        let passed = Passed::now(&one);
        let bytes = passed.to_json();
        assert!(Passed::holds_for(&bytes, &one));
        assert!(!Passed::holds_for(&bytes, &other));
        let older = Passed {
            cattle_version: "0.0.1".to_string(),
            ..passed.clone()
        };
        assert!(!Passed::holds_for(&older.to_json(), &one));
        assert!(!Passed::holds_for(b"{\"store\": 1}", &one));
        assert!(!Passed::holds_for(b"", &one));
        let file = dirs[0].path().join("passed.json");
        assert!(!Passed::remembered_in(&file, &one));
        std::fs::write(&file, &bytes).unwrap();
        assert!(Passed::remembered_in(&file, &one));
        let mut large = bytes.clone();
        large.resize(MAX_PASSED_BYTES as usize + 1, b' ');
        std::fs::write(&file, &large).unwrap();
        assert!(!Passed::remembered_in(&file, &one));
    }
}

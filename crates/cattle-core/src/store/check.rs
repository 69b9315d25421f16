//! Whether a store honours what Cattle relies on, tried on objects of its own
//! (`selftest/<random>/…`, deleted afterwards): create-only writes, compare
//! and swap, conditional reads, listings that show what was written and
//! deletes. A store that ignores a condition answers 200 where 412 is due,
//! and every command then succeeds while executions are lost; this finds it
//! before anything is published.

use super::{Condition, Fetched, Store, StoreError};

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
    let run = uuid::Uuid::new_v4();
    let prefix = crate::keys::selftest_prefix(run);
    let key = crate::keys::selftest_probe(run);
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
}

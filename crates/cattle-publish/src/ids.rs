//! Execution IDs as operators type them: a whole UUID, or a unique prefix of
//! one, as git takes a commit's. Every command that takes an execution ID
//! resolves it here.
//!
//! A whole UUID is used as it is, without a request. A prefix costs one
//! listing delimited by `/` under `executions/<prefix>`, which names the
//! executions that match without listing what is inside them.

use cattle_core::store::Store;
use uuid::Uuid;

use crate::terminal;

/// The fewest hex digits a prefix must have: fewer would match too much to be
/// worth a listing.
pub const MIN_PREFIX_DIGITS: usize = 4;

/// How many of the executions an ambiguous prefix matches are named in the error.
const MAX_CANDIDATES_SHOWN: usize = 10;

/// What the operator typed, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A whole UUID.
    Full(Uuid),
    /// The start of an ID as the store names it: lower-case hex digits, with
    /// hyphens where a UUID has them (added where the operator left them out).
    Prefix(String),
}

/// Where a hyphen goes in a UUID: after this many hex digits.
const HYPHENS_AFTER: [usize; 4] = [8, 12, 16, 20];

/// Check `text` as an execution ID or a prefix of one.
pub fn parse(text: &str) -> Result<Query, String> {
    if let Ok(id) = Uuid::try_parse(text) {
        return Ok(Query::Full(id));
    }
    let mut prefix = String::with_capacity(text.len() + 4);
    let mut digits = 0;
    for c in text.chars() {
        if c == '-' {
            if !HYPHENS_AFTER.contains(&digits) || prefix.ends_with('-') {
                return Err(format!(
                    "`{text}` is not an execution ID or a prefix of one: a hyphen after {digits} \
                     hex digits (a UUID has them after 8, 12, 16 and 20)"
                ));
            }
            prefix.push('-');
            continue;
        }
        if !c.is_ascii_hexdigit() {
            return Err(format!(
                "`{text}` is not an execution ID or a prefix of one: `{c}` is not a hex digit"
            ));
        }
        if digits == 32 {
            return Err(format!(
                "`{text}` is not an execution ID: more than 32 hex digits"
            ));
        }
        if HYPHENS_AFTER.contains(&digits) && digits > 0 && !prefix.ends_with('-') {
            prefix.push('-');
        }
        prefix.push(c.to_ascii_lowercase());
        digits += 1;
    }
    if digits < MIN_PREFIX_DIGITS {
        return Err(format!(
            "`{text}` is too short for an execution ID prefix: give at least \
             {MIN_PREFIX_DIGITS} hex digits"
        ));
    }
    Ok(Query::Prefix(prefix))
}

/// No execution's ID starts with the prefix.
#[derive(Debug, thiserror::Error)]
#[error("no execution ID starts with `{prefix}` in `{location}`")]
pub struct NoMatch {
    pub prefix: String,
    /// Where the executions are: the store's `executions/`.
    pub location: String,
}

/// Several executions' IDs start with the prefix.
#[derive(Debug, thiserror::Error)]
#[error(
    "execution ID prefix `{prefix}` is ambiguous: {} executions match; give more digits",
    .count
)]
pub struct Ambiguous {
    pub prefix: String,
    pub count: usize,
    /// One line per execution named (at most ten): ID, created, config.
    pub candidates: Vec<String>,
}

impl Ambiguous {
    /// The lines to print under the error, escaped.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.candidates.iter().map(|c| terminal::line(c)).collect();
        if self.count > self.candidates.len() {
            lines.push(format!("… and {} more", self.count - self.candidates.len()));
        }
        lines
    }
}

/// The execution `text` names: a whole ID as it is, a prefix once exactly one
/// execution in `store` has an ID starting with it.
pub async fn resolve(store: &Store, text: &str) -> anyhow::Result<Uuid> {
    let prefix = match parse(text).map_err(anyhow::Error::msg)? {
        Query::Full(id) => return Ok(id),
        Query::Prefix(prefix) => prefix,
    };
    let matches = matching(store, &prefix).await?;
    match matches.as_slice() {
        [] => Err(NoMatch {
            location: store.location("executions/"),
            prefix,
        }
        .into()),
        [id] => Ok(*id),
        _ => {
            let shown: Vec<Uuid> = matches.iter().copied().take(MAX_CANDIDATES_SHOWN).collect();
            let manifests = crate::for_each_bounded(shown.clone(), |id| {
                let store = store.clone();
                async move { crate::status::find_manifest(&store, id).await }
            })
            .await;
            let candidates = shown
                .iter()
                .zip(manifests)
                .map(|(id, manifest)| match manifest {
                    Ok(Some(m)) => format!("{id}  {}  {}", m.created, m.config),
                    Ok(None) => format!("{id}  (no manifest)"),
                    Err(e) => format!("{id}  (manifest unreadable: {e})"),
                })
                .collect();
            Err(Ambiguous {
                prefix,
                count: matches.len(),
                candidates,
            }
            .into())
        }
    }
}

/// The IDs of the executions (anything under `executions/`, with or without
/// a manifest) that start with `prefix`, oldest first.
async fn matching(store: &Store, prefix: &str) -> anyhow::Result<Vec<Uuid>> {
    let dirs = store.list_dirs(&format!("executions/{prefix}")).await?;
    Ok(dirs
        .iter()
        .filter_map(|dir| {
            let name = dir.strip_prefix("executions/")?.strip_suffix('/')?;
            let id = Uuid::try_parse(name).ok()?;
            // Only the names Cattle writes: another spelling of an ID is not one.
            (id.to_string() == name).then_some(id)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use cattle_core::store::{Condition, FileStore};

    use super::*;

    #[test]
    fn prefixes_get_hyphens_where_a_uuid_has_them() {
        let prefix = |s: &str| match parse(s) {
            Ok(Query::Prefix(p)) => p,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(prefix("0190"), "0190");
        assert_eq!(prefix("0190ABCD"), "0190abcd");
        assert_eq!(prefix("0190abcd-"), "0190abcd-");
        assert_eq!(prefix("0190abcd1"), "0190abcd-1");
        assert_eq!(prefix("0190abcd-12345"), "0190abcd-1234-5");
        assert_eq!(
            prefix("0190abcd12345678abcd12345678"),
            "0190abcd-1234-5678-abcd-12345678"
        );
        let id = Uuid::now_v7();
        assert_eq!(parse(&id.to_string()), Ok(Query::Full(id)));
        assert_eq!(parse(&id.simple().to_string()), Ok(Query::Full(id)));
        for (bad, why) in [
            ("019", "at least 4 hex digits"),
            ("", "at least 4 hex digits"),
            ("01-90abcd", "a hyphen after 2 hex digits"),
            ("0190abcd--1", "a hyphen after 8 hex digits"),
            ("0190xyz", "`x` is not a hex digit"),
            ("../x", "`.` is not a hex digit"),
            ("0190abcd-1234-5678-abcd-1234567890ab1", "more than 32"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn store(dir: &std::path::Path, ids: &[&str]) -> Store {
        let store = FileStore::open(dir.to_path_buf()).unwrap();
        for id in ids {
            store
                .put(&format!("executions/{id}/x"), b"", Condition::Always)
                .unwrap();
        }
        Store::File(store)
    }

    #[tokio::test]
    async fn a_unique_prefix_resolves_and_others_say_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            "0190abcd-0000-7000-8000-000000000001",
            "0190abcd-0000-7000-8000-000000000002",
            "0190ffff-0000-7000-8000-000000000003",
        );
        let store = store(dir.path(), &[a, b, c, "0190abcd-not-an-id"]);
        assert_eq!(resolve(&store, "0190f").await.unwrap().to_string(), c);
        assert_eq!(
            resolve(&store, "0190-FF").await.unwrap_err().to_string(),
            "`0190-FF` is not an execution ID or a prefix of one: a hyphen after 4 hex digits \
             (a UUID has them after 8, 12, 16 and 20)"
        );
        assert_eq!(resolve(&store, "0190FF").await.unwrap().to_string(), c);
        // A whole ID is taken as it is, without looking.
        let absent = Uuid::now_v7();
        assert_eq!(resolve(&store, &absent.to_string()).await.unwrap(), absent);

        let err = resolve(&store, "0190a").await.unwrap_err();
        let ambiguous = err.downcast_ref::<Ambiguous>().unwrap();
        assert_eq!(ambiguous.count, 2);
        assert_eq!(
            ambiguous.lines(),
            [format!("{a}  (no manifest)"), format!("{b}  (no manifest)")]
        );
        assert_eq!(
            err.to_string(),
            "execution ID prefix `0190a` is ambiguous: 2 executions match; give more digits"
        );

        let err = resolve(&store, "0191").await.unwrap_err();
        assert!(err.downcast_ref::<NoMatch>().is_some());
        assert_eq!(
            err.to_string(),
            format!(
                "no execution ID starts with `0191` in `{}`",
                store.location("executions/")
            )
        );
    }
}

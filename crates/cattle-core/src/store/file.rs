//! The local-directory store: one file per object under a root directory.
//!
//! Writes go to a temporary file and are renamed into place, so readers never
//! see half an object. Conditional writes hold an exclusive lock on
//! `<root>/.lock` while they compare and write, which makes them atomic
//! between processes on the same machine. The ETag is the object's sha256.
//!
//! A key is a path below the root only once [`check_key`] has accepted it:
//! no key, however it was built, reaches a file outside the root.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Condition, Entry, Fetched, Object, StoreError, check_key, check_prefix};
use crate::hex;

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// Open (creating if needed) the store rooted at `root`.
    pub fn open(root: PathBuf) -> Result<FileStore, StoreError> {
        std::fs::create_dir_all(&root).map_err(|e| StoreError::Other {
            op: "create store directory",
            location: root.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(FileStore { root })
    }

    /// Where `key` is, for messages (whether or not it is a valid key).
    pub fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    /// The file of `key`, once the key is known to stay below the root.
    fn path(&self, op: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key).map_err(|reason| StoreError::InvalidKey {
            op,
            key: key.to_string(),
            reason,
        })?;
        Ok(self.root.join(key))
    }

    fn err(&self, op: &'static str, key: &str, e: std::io::Error) -> StoreError {
        let location = self.location(key);
        let message = e.to_string();
        if e.kind() == ErrorKind::PermissionDenied {
            StoreError::AccessDenied {
                op,
                location,
                message,
            }
        } else {
            StoreError::Other {
                op,
                location,
                message,
            }
        }
    }

    pub fn get_if_changed(
        &self,
        key: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<Fetched, StoreError> {
        let path = self.path("read", key)?;
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > limit => {
                return Err(StoreError::TooLarge {
                    op: "read",
                    location: self.location(key),
                    limit,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Fetched::Missing),
            Err(e) => return Err(self.err("read", key, e)),
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Fetched::Missing),
            Err(e) => return Err(self.err("read", key, e)),
        };
        let current = etag_of(&bytes);
        if etag == Some(current.as_str()) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::Found(Object {
            bytes,
            etag: current,
        }))
    }

    pub fn put(&self, key: &str, bytes: &[u8], condition: Condition) -> Result<String, StoreError> {
        let _lock = match condition {
            Condition::Always => None,
            _ => Some(self.lock()?),
        };
        let path = self.path("write", key)?;
        let current = || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(etag_of(&bytes))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("write", key, e)),
        };
        let holds = match &condition {
            Condition::Always => true,
            Condition::IfAbsent => current()?.is_none(),
            Condition::IfMatch(want) => current()?.as_ref() == Some(want),
        };
        if !holds {
            return Err(StoreError::PreconditionFailed {
                op: "write",
                location: self.location(key),
            });
        }
        let parent = path.parent().expect("keys are below the root");
        std::fs::create_dir_all(parent).map_err(|e| self.err("write", key, e))?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(parent).map_err(|e| self.err("write", key, e))?;
        tmp.write_all(bytes)
            .map_err(|e| self.err("write", key, e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| self.err("write", key, e))?;
        tmp.persist(&path)
            .map_err(|e| self.err("write", key, e.error))?;
        Ok(etag_of(bytes))
    }

    pub fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match std::fs::metadata(self.path("inspect", key)?) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("inspect", key, e)),
        }
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path("delete", key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(self.err("delete", key, e)),
        }
        // Tidy empty parent directories up to the root, like a bucket has none.
        let mut dir = path;
        while dir.pop() && dir != self.root {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
        Ok(())
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        check_prefix(prefix).map_err(|reason| StoreError::InvalidKey {
            op: "list",
            key: prefix.to_string(),
            reason,
        })?;
        // Walk only the deepest directory the prefix names, then filter.
        let base = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let mut keys = Vec::new();
        walk(&self.root, &self.root.join(base), &mut keys)
            .map_err(|e| self.err("list", prefix, e))?;
        keys.retain(|k| k.key.starts_with(prefix));
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(keys)
    }

    /// See [`Store::list_dirs`](super::Store::list_dirs). A directory with
    /// nothing in it but hidden files (a lock, a temporary file) holds no
    /// object, and a bucket would not show it.
    pub fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_prefix(prefix).map_err(|reason| StoreError::InvalidKey {
            op: "list",
            key: prefix.to_string(),
            reason,
        })?;
        let (base, start) = match prefix.rfind('/') {
            Some(i) => prefix.split_at(i + 1),
            None => ("", prefix),
        };
        let entries = match std::fs::read_dir(self.root.join(base)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix, e)),
        };
        let mut dirs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.err("list", prefix, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.starts_with(start) {
                continue;
            }
            if !entry
                .file_type()
                .map_err(|e| self.err("list", prefix, e))?
                .is_dir()
            {
                continue;
            }
            if holds_an_object(&entry.path()).map_err(|e| self.err("list", prefix, e))? {
                dirs.push(format!("{base}{name}/"));
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    fn lock(&self) -> Result<std::fs::File, StoreError> {
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.err("lock", ".lock", e))?;
        file.lock().map_err(|e| self.err("lock", ".lock", e))?;
        Ok(file)
    }
}

fn walk(root: &Path, dir: &Path, keys: &mut Vec<Entry>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Skip the lock and in-flight temporary files.
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(root, &path, keys)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let meta = entry.metadata()?;
            keys.push(Entry {
                key: rel.to_string_lossy().into_owned(),
                modified: meta.modified().ok(),
                etag: listed_etag(&meta),
            });
        }
    }
    Ok(())
}

/// The version tag a listing gives a file without reading it: its inode, its
/// modification time and its size. Every write renames a new file into
/// place, so a rewrite changes the inode even within one tick of the clock
/// and with the same size.
fn listed_etag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt as _;
    format!(
        "{:x}-{:x}.{:09}-{:x}",
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size()
    )
}

/// Whether some file that is not hidden is under `dir`; stops at the first.
fn holds_an_object(dir: &Path) -> std::io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if !entry.file_type()?.is_dir() || holds_an_object(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex(&Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("s")).unwrap();
        assert!(matches!(
            store.get_if_changed("a/b", None, 10).unwrap(),
            Fetched::Missing
        ));

        let e1 = store.put("a/b", b"one", Condition::IfAbsent).unwrap();
        assert!(matches!(
            store.put("a/b", b"two", Condition::IfAbsent),
            Err(StoreError::PreconditionFailed { .. })
        ));
        assert!(matches!(
            store.get_if_changed("a/b", Some(&e1), 10).unwrap(),
            Fetched::NotModified
        ));
        let e2 = store
            .put("a/b", b"two", Condition::IfMatch(e1.clone()))
            .unwrap();
        assert!(matches!(
            store.put("a/b", b"three", Condition::IfMatch(e1.clone())),
            Err(StoreError::PreconditionFailed { .. })
        ));
        let Fetched::Found(obj) = store.get_if_changed("a/b", Some(&e1), 10).unwrap() else {
            panic!("expected the new object");
        };
        assert_eq!((obj.bytes.as_slice(), obj.etag), (&b"two"[..], e2));
        assert!(matches!(
            store.get_if_changed("a/b", None, 2),
            Err(StoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_listing_tells_a_rewrite_from_an_unchanged_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("s")).unwrap();
        store.put("a/b", b"one", Condition::Always).unwrap();
        store.put("a/c", b"one", Condition::Always).unwrap();
        let tags = |store: &FileStore| -> Vec<String> {
            store
                .list("a/")
                .unwrap()
                .into_iter()
                .map(|e| e.etag)
                .collect()
        };
        let before = tags(&store);
        assert_eq!(tags(&store), before);
        // Same size, and likely within one tick of the clock.
        store.put("a/b", b"two", Condition::Always).unwrap();
        let after = tags(&store);
        assert_ne!(after[0], before[0]);
        assert_eq!(after[1], before[1]);
    }

    #[test]
    fn no_key_reaches_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("store")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        for key in [
            "../victim",
            "bundles/../../victim",
            "./bundles/x",
            "bundles//x",
            "bundles/x/",
            "/etc/passwd",
            "",
            "bundles/x\0y",
        ] {
            for result in [
                store.delete(key),
                store.put(key, b"x", Condition::Always).map(drop),
                store.get_if_changed(key, None, 10).map(drop),
                store.size(key).map(drop),
            ] {
                match result {
                    Err(StoreError::InvalidKey { key: named, .. }) => assert_eq!(named, key),
                    other => panic!("{key:?}: {other:?}"),
                }
            }
        }
        assert!(matches!(
            store.list("../"),
            Err(StoreError::InvalidKey { .. })
        ));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        let err = store
            .delete("bundles/../../victim")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "delete `bundles/../../victim`: not a valid store key: it has a `..` component"
        );
        // What Cattle's own keys and prefixes look like is accepted.
        store.list("").unwrap();
        store.list("executions/").unwrap();
        store.list("executions/x/done/").unwrap();
    }

    #[test]
    fn list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().to_path_buf()).unwrap();
        for key in ["x/1/a", "x/1/b", "x/2/a", "y"] {
            store.put(key, b"", Condition::Always).unwrap();
        }
        let keys: Vec<String> = store
            .list("x/1/")
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["x/1/a", "x/1/b"]);
        assert!(store.list("x/1/").unwrap()[0].modified.is_some());
        assert_eq!(store.list("x/").unwrap().len(), 3);
        assert_eq!(store.list("").unwrap().len(), 4);
        store.delete("x/1/a").unwrap();
        store.delete("x/1/a").unwrap();
        store.delete("x/1/b").unwrap();
        assert!(!dir.path().join("x/1").exists());
        assert_eq!(store.size("x/2/a").unwrap(), Some(0));
        assert_eq!(store.size("x/1/a").unwrap(), None);
    }

    #[test]
    fn list_dirs_names_each_subdirectory_once_without_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().to_path_buf()).unwrap();
        for key in ["e/b1/x", "e/b1/y/z", "e/a2/x", "e/c3", "f/a/x"] {
            store.put(key, b"", Condition::Always).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("e/empty")).unwrap();
        assert_eq!(store.list_dirs("e/").unwrap(), ["e/a2/", "e/b1/"]);
        assert_eq!(store.list_dirs("e/b").unwrap(), ["e/b1/"]);
        assert_eq!(store.list_dirs("e/b1/").unwrap(), ["e/b1/y/"]);
        assert_eq!(store.list_dirs("").unwrap(), ["e/", "f/"]);
        assert!(store.list_dirs("nothing/").unwrap().is_empty());
        assert!(matches!(
            store.list_dirs("../"),
            Err(StoreError::InvalidKey { .. })
        ));
    }
}

//! Bundles: a config directory as one deterministic, content-addressed tar.gz.
//!
//! The same directory always gives the same bytes (sorted entries, zero mtimes,
//! owner 0:0 with no names, modes reduced to 0644/0755, gzip header without a
//! timestamp), hence the same sha256, so a bundle is stored once however many
//! executions and hosts use it. Only regular files and directories travel.
//! The bytes depend on the gzip implementation: rebuilding Cattle with another
//! compressor may change a directory's sha256, never its contents.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::hex;

/// Most bytes an extracted bundle may hold.
pub const MAX_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;
/// Most entries an extracted bundle may hold.
pub const MAX_ENTRIES: usize = 100_000;

/// A packed config directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub bytes: Vec<u8>,
    /// Lower-case hex sha256 of `bytes`.
    pub sha256: String,
}

impl Bundle {
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{0}` is neither a regular file nor a directory; bundles hold only those")]
    Unsupported(PathBuf),
    #[error("bundle is {actual} bytes, the manifest says {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("bundle sha256 is {actual}, the manifest says {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("bundle entry `{path}` is refused: {reason}")]
    UnsafeEntry { path: String, reason: &'static str },
    #[error("bundle is larger than {0} bytes or entries when unpacked")]
    TooLarge(u64),
    #[error("cannot write `{path}` while extracting the bundle: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle is not a valid tar.gz: {0}")]
    Corrupt(std::io::Error),
}

/// Pack `dir` into a bundle.
pub fn pack(dir: &Path) -> Result<Bundle, BundleError> {
    let mut paths = Vec::new();
    collect(dir, Path::new(""), &mut paths)?;
    // Byte order of the relative path, with `/` separators: stable everywhere.
    paths.sort_by(|a, b| {
        a.0.as_os_str()
            .as_encoded_bytes()
            .cmp(b.0.as_os_str().as_encoded_bytes())
    });

    // Level 1: several times faster than the default level for a few percent
    // more bytes; bundles are written once and read once per host.
    let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (rel, is_dir) in &paths {
        let full = dir.join(rel);
        let read_err = |source| BundleError::Read {
            path: full.clone(),
            source,
        };
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if *is_dir {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, rel, std::io::empty())
                .map_err(read_err)?;
        } else {
            let meta = std::fs::metadata(&full).map_err(read_err)?;
            let data = std::fs::read(&full).map_err(read_err)?;
            let executable = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, rel, data.as_slice())
                .map_err(read_err)?;
        }
    }
    let gz = tar.into_inner().map_err(|source| BundleError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let bytes = gz.finish().map_err(|source| BundleError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let sha256 = hex(&Sha256::digest(&bytes));
    Ok(Bundle { bytes, sha256 })
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) -> Result<(), BundleError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|source| BundleError::Read {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| BundleError::Read {
            path: dir.clone(),
            source,
        })?;
        let child = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(|source| BundleError::Read {
            path: root.join(&child),
            source,
        })?;
        if kind.is_dir() {
            out.push((child.clone(), true));
            collect(root, &child, out)?;
        } else if kind.is_file() {
            out.push((child, false));
        } else {
            return Err(BundleError::Unsupported(root.join(child)));
        }
    }
    Ok(())
}

/// Check `bytes` against the size and sha256 a manifest gives.
pub fn verify(bytes: &[u8], sha256: &str, size: u64) -> Result<(), BundleError> {
    if bytes.len() as u64 != size {
        return Err(BundleError::SizeMismatch {
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = hex(&Sha256::digest(bytes));
    if actual != sha256 {
        return Err(BundleError::DigestMismatch {
            expected: sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Extract a verified bundle into `dest`, which must not exist yet; it is
/// created with mode 0700. Only relative paths of normal components, regular
/// files and directories are accepted; anything else stops the extraction.
pub fn extract(bytes: &[u8], dest: &Path) -> Result<(), BundleError> {
    let write_err = |path: &Path, source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(|e| write_err(dest, e))?;

    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut total: u64 = 0;
    for (count, entry) in archive.entries().map_err(BundleError::Corrupt)?.enumerate() {
        let mut entry = entry.map_err(BundleError::Corrupt)?;
        if count >= MAX_ENTRIES {
            return Err(BundleError::TooLarge(MAX_ENTRIES as u64));
        }
        let raw = entry.path().map_err(BundleError::Corrupt)?.into_owned();
        let shown = raw.display().to_string();
        let unsafe_entry = |reason| BundleError::UnsafeEntry {
            path: shown.clone(),
            reason,
        };
        if raw.as_os_str().is_empty()
            || !raw.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(unsafe_entry("only relative paths without `..` are allowed"));
        }
        let target = dest.join(&raw);
        let mode = entry.header().mode().map_err(BundleError::Corrupt)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&target)
                    .map_err(|e| write_err(&target, e))?;
            }
            tar::EntryType::Regular => {
                total = total.saturating_add(entry.size());
                if total > MAX_UNPACKED_BYTES {
                    return Err(BundleError::TooLarge(MAX_UNPACKED_BYTES));
                }
                if let Some(parent) = target.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(parent)
                        .map_err(|e| write_err(parent, e))?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 })
                    .open(&target)
                    .map_err(|e| write_err(&target, e))?;
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut data).map_err(BundleError::Corrupt)?;
                file.write_all(&data).map_err(|e| write_err(&target, e))?;
            }
            _ => {
                return Err(unsafe_entry(
                    "only regular files and directories are allowed",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) {
        std::fs::create_dir_all(dir.join("files/deep")).unwrap();
        std::fs::write(dir.join("cattle.toml"), "[[step]]\n").unwrap();
        std::fs::write(dir.join("files/deep/poem.txt"), "roses are red\n").unwrap();
        std::fs::write(dir.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }

    #[test]
    fn same_directory_same_sha_regardless_of_mtime_and_creation_order() {
        let a = tempfile::tempdir().unwrap();
        sample(a.path());
        let first = pack(a.path()).unwrap();
        // Touch a file: new mtime, same content.
        std::fs::write(a.path().join("cattle.toml"), "[[step]]\n").unwrap();
        assert_eq!(pack(a.path()).unwrap().sha256, first.sha256);

        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            b.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir_all(b.path().join("files/deep")).unwrap();
        std::fs::write(b.path().join("files/deep/poem.txt"), "roses are red\n").unwrap();
        std::fs::write(b.path().join("cattle.toml"), "[[step]]\n").unwrap();
        assert_eq!(pack(b.path()).unwrap().sha256, first.sha256);

        std::fs::write(b.path().join("cattle.toml"), "[[step]] \n").unwrap();
        assert_ne!(pack(b.path()).unwrap().sha256, first.sha256);
    }

    #[test]
    fn round_trip_keeps_contents_and_exec_bit() {
        let src = tempfile::tempdir().unwrap();
        sample(src.path());
        let bundle = pack(src.path()).unwrap();
        verify(&bundle.bytes, &bundle.sha256, bundle.size()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("config");
        extract(&bundle.bytes, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("files/deep/poem.txt")).unwrap(),
            "roses are red\n"
        );
        let mode = std::fs::metadata(dest.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn verify_refuses_changed_bytes_and_sizes() {
        let src = tempfile::tempdir().unwrap();
        sample(src.path());
        let bundle = pack(src.path()).unwrap();
        let mut bytes = bundle.bytes.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            verify(&bytes, &bundle.sha256, bundle.size()),
            Err(BundleError::DigestMismatch { .. })
        ));
        bytes.push(0);
        assert!(matches!(
            verify(&bytes, &bundle.sha256, bundle.size()),
            Err(BundleError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn symlinks_are_not_packed() {
        let src = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).unwrap();
        assert!(matches!(pack(src.path()), Err(BundleError::Unsupported(_))));
    }

    fn hostile(entries: &[(&str, tar::EntryType)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, kind) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(0);
            header.set_mode(0o644);
            // Write the raw name so `..` and absolute paths get through the builder.
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            tar.append(&header, std::io::empty()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn extract_refuses_escapes_and_special_files_before_writing_them() {
        let cases = [
            (vec![("../evil", tar::EntryType::Regular)], "only relative"),
            (
                vec![("/etc/evil", tar::EntryType::Regular)],
                "only relative",
            ),
            (
                vec![("a/../../evil", tar::EntryType::Regular)],
                "only relative",
            ),
            (vec![("link", tar::EntryType::Symlink)], "only regular"),
            (vec![("hard", tar::EntryType::Link)], "only regular"),
            (vec![("dev", tar::EntryType::Char)], "only regular"),
        ];
        for (entries, reason) in cases {
            let out = tempfile::tempdir().unwrap();
            let dest = out.path().join("config");
            let err = extract(&hostile(&entries), &dest).unwrap_err();
            assert!(err.to_string().contains(reason), "{entries:?}: {err}");
            assert!(!out.path().join("evil").exists());
            assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "{entries:?}");
        }
    }
}

//! Bundles: a config directory as one deterministic, content-addressed tar.gz.
//!
//! The same directory always gives the same bytes (sorted entries, zero mtimes,
//! owner 0:0 with no names, modes reduced to 0644/0755, gzip header without a
//! timestamp), hence the same sha256, so a bundle is stored once however many
//! executions and hosts use it. Only regular files and directories travel.
//! The bytes depend on the gzip implementation: rebuilding Cattle with another
//! compressor may change a directory's sha256, never its contents.

use std::io::Read;
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
    #[error(
        "bundle of {compressed} bytes inflates to more than {limit} bytes \
         (over {MAX_RATIO} times its size beyond the first {RATIO_ALLOWANCE} bytes): \
         refused as a decompression bomb"
    )]
    Bomb { compressed: u64, limit: u64 },
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
/// files and directories are accepted.
///
/// The whole archive is checked before anything is written: a bundle with one
/// refused entry, anywhere, leaves nothing behind, not even `dest`. That costs
/// a second decompression of the bundle, never a copy of its contents.
pub fn extract(bytes: &[u8], dest: &Path) -> Result<(), BundleError> {
    walk(bytes, |_, _, entry| {
        // Inflate the contents too: a bomb is found before anything is written.
        std::io::copy(entry, &mut std::io::sink())
            .map(drop)
            .map_err(|e| {
                over_limit(
                    &e,
                    bytes.len() as u64,
                    decompression_limit(bytes.len() as u64),
                )
                .unwrap_or(BundleError::Corrupt(e))
            })
    })?;

    let write_err = |path: &Path, source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(|e| write_err(dest, e))?;
    walk(bytes, |rel, kind, entry| {
        let target = dest.join(rel);
        match kind {
            Kind::Directory => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&target)
                .map_err(|e| write_err(&target, e)),
            Kind::File { executable } => {
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
                    .mode(if executable { 0o755 } else { 0o644 })
                    .open(&target)
                    .map_err(|e| write_err(&target, e))?;
                std::io::copy(entry, &mut file).map_err(|e| {
                    let limit = decompression_limit(bytes.len() as u64);
                    over_limit(&e, bytes.len() as u64, limit)
                        .unwrap_or_else(|| write_err(&target, e))
                })?;
                Ok(())
            }
        }
    })
}

/// Most bytes the tar stream inside a bundle may decompress to: the unpacked
/// contents plus room for each entry's header, padding and a long path. It
/// bounds the work and the memory a bundle can cost, including the long-name
/// and PAX records the tar reader holds in memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = MAX_UNPACKED_BYTES + MAX_ENTRIES as u64 * 8192;

/// Most times its own size a bundle may inflate to, beyond
/// [`RATIO_ALLOWANCE`]. Config text deflates 3 to 10 times; a run of zeros
/// about a thousand times: a bundle over this ratio is a decompression bomb.
pub const MAX_RATIO: u64 = 100;

/// What any bundle may inflate to, whatever its ratio, so that small bundles
/// of very regular files (tar headers, padding, generated text) still unpack.
pub const RATIO_ALLOWANCE: u64 = 64 * 1024 * 1024;

/// Most bytes the tar stream of a bundle of `compressed` bytes may inflate to.
pub fn decompression_limit(compressed: u64) -> u64 {
    compressed
        .saturating_mul(MAX_RATIO)
        .saturating_add(RATIO_ALLOWANCE)
        .min(MAX_DECOMPRESSED_BYTES)
}

/// Longest relative path an entry may have, in bytes: what is left of Linux's
/// 4096-byte `PATH_MAX` once the agent's state directory is in front of it.
pub const MAX_PATH_BYTES: usize = 3072;

/// Longest file name (one path component) Linux file systems accept.
const MAX_NAME_BYTES: usize = 255;

/// What an accepted entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    File { executable: bool },
}

/// Read every entry of `bytes`, check it against the rules of a bundle and
/// everything seen before it, and hand the accepted ones to `each` in order
/// with their normalized relative path. Stops at the first refusal.
fn walk(
    bytes: &[u8],
    mut each: impl FnMut(&Path, Kind, &mut dyn Read) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let limit = decompression_limit(bytes.len() as u64);
    let corrupt = |e: std::io::Error| {
        over_limit(&e, bytes.len() as u64, limit).unwrap_or(BundleError::Corrupt(e))
    };
    let stream = Capped {
        inner: flate2::read::GzDecoder::new(bytes),
        left: limit,
    };
    let mut archive = tar::Archive::new(stream);
    let mut seen = Seen::default();
    let mut total: u64 = 0;
    for (count, entry) in archive.entries().map_err(corrupt)?.enumerate() {
        let mut entry = entry.map_err(corrupt)?;
        if count >= MAX_ENTRIES {
            return Err(BundleError::TooLarge(MAX_ENTRIES as u64));
        }
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let unsafe_entry = |reason| BundleError::UnsafeEntry {
            path: raw.display().to_string(),
            reason,
        };
        if raw.as_os_str().is_empty()
            || !raw.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(unsafe_entry("only relative paths without `..` are allowed"));
        }
        // `components` drops `.` and repeated or trailing `/`: `a/./b/` is `a/b`.
        let rel: PathBuf = raw.components().collect();
        if rel.as_os_str().len() > MAX_PATH_BYTES
            || rel
                .components()
                .any(|c| c.as_os_str().len() > MAX_NAME_BYTES)
        {
            return Err(unsafe_entry("the path is too long to create"));
        }
        let mode = entry.header().mode().map_err(corrupt)?;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => Kind::Directory,
            tar::EntryType::Regular => Kind::File {
                executable: mode & 0o111 != 0,
            },
            _ => {
                return Err(unsafe_entry(
                    "only regular files and directories are allowed",
                ));
            }
        };
        total = total.saturating_add(entry.size());
        if total > MAX_UNPACKED_BYTES {
            return Err(BundleError::TooLarge(MAX_UNPACKED_BYTES));
        }
        if let Err(reason) = seen.admit(&rel, kind) {
            return Err(unsafe_entry(reason));
        }
        each(&rel, kind, &mut entry)?;
    }
    Ok(())
}

/// The paths a bundle has named so far, to refuse entries that would collide.
#[derive(Debug, Default)]
struct Seen {
    /// Every entry's path, and whether it is a file.
    entries: std::collections::HashMap<PathBuf, bool>,
    /// Every directory some entry's path goes through.
    parents: std::collections::HashSet<PathBuf>,
}

impl Seen {
    fn admit(&mut self, rel: &Path, kind: Kind) -> Result<(), &'static str> {
        if self.entries.contains_key(rel) {
            return Err("the bundle names this path twice");
        }
        let is_file = matches!(kind, Kind::File { .. });
        if is_file && self.parents.contains(rel) {
            return Err("a file where another entry needs a directory");
        }
        for parent in rel.ancestors().skip(1) {
            if parent.as_os_str().is_empty() || !self.parents.insert(parent.to_path_buf()) {
                break;
            }
            if self.entries.get(parent) == Some(&true) {
                return Err("the path goes through a file");
            }
        }
        self.entries.insert(rel.to_path_buf(), is_file);
        Ok(())
    }
}

/// The error a [`Capped`] reader returns past its limit.
#[derive(Debug, thiserror::Error)]
#[error("the bundle decompresses to more than its limit")]
struct OverLimit;

/// The refusal for `e` if it is a [`Capped`] reader's, for a bundle of
/// `compressed` bytes allowed to inflate to `limit`.
fn over_limit(e: &std::io::Error, compressed: u64, limit: u64) -> Option<BundleError> {
    if !e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
        return None;
    }
    Some(if limit < MAX_DECOMPRESSED_BYTES {
        BundleError::Bomb { compressed, limit }
    } else {
        BundleError::TooLarge(MAX_DECOMPRESSED_BYTES)
    })
}

/// A reader that fails, rather than ends, once `left` bytes have been read, so
/// that a cut-off archive is never mistaken for a complete one.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // Past the limit only if there is more to read.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(OverLimit)),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

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
            assert!(!dest.exists(), "{entries:?}");
        }
    }

    #[test]
    fn extract_checks_every_entry_before_writing_any() {
        let cases = [
            (
                vec![
                    ("good", tar::EntryType::Regular),
                    ("../evil", tar::EntryType::Regular),
                ],
                "only relative",
            ),
            (
                vec![
                    ("a", tar::EntryType::Regular),
                    ("a", tar::EntryType::Regular),
                ],
                "twice",
            ),
            (
                vec![
                    ("a", tar::EntryType::Directory),
                    ("a/", tar::EntryType::Directory),
                ],
                "twice",
            ),
            (
                vec![
                    ("a", tar::EntryType::Regular),
                    ("a/b", tar::EntryType::Regular),
                ],
                "goes through a file",
            ),
            (
                vec![
                    ("a/b", tar::EntryType::Regular),
                    ("a", tar::EntryType::Regular),
                ],
                "needs a directory",
            ),
            (
                vec![
                    ("good", tar::EntryType::Directory),
                    ("good/fifo", tar::EntryType::Fifo),
                ],
                "only regular",
            ),
        ];
        for (entries, reason) in cases {
            let out = tempfile::tempdir().unwrap();
            let dest = out.path().join("config");
            let err = extract(&hostile(&entries), &dest).unwrap_err();
            assert!(err.to_string().contains(reason), "{entries:?}: {err}");
            assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
        }
        // Directories named by their children first, then by themselves, are fine.
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("config");
        let ok = hostile(&[
            ("a/b/c", tar::EntryType::Regular),
            ("a/b", tar::EntryType::Directory),
            ("a/./d", tar::EntryType::Regular),
        ]);
        extract(&ok, &dest).unwrap();
        assert!(dest.join("a/b/c").is_file() && dest.join("a/d").is_file());
    }

    #[test]
    fn capped_reader_fails_past_its_limit_and_ends_at_it() {
        let mut exact = Capped {
            inner: &[1u8, 2, 3][..],
            left: 3,
        };
        let mut all = Vec::new();
        exact.read_to_end(&mut all).unwrap();
        assert_eq!(all, [1, 2, 3]);
        let mut over = Capped {
            inner: &[1u8, 2, 3, 4][..],
            left: 3,
        };
        let err = over.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.get_ref().unwrap().is::<OverLimit>());
    }

    #[test]
    fn a_bundle_inflating_far_beyond_its_size_is_refused_before_writing() {
        // 80 MiB of zeros deflate (at the best level) to about 80 KiB: far
        // over 100:1 beyond 64 MiB.
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(80 << 20);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "zeros", std::io::repeat(0).take(80 << 20))
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("config");
        let err = extract(&bomb, &dest).unwrap_err();
        assert!(matches!(err, BundleError::Bomb { .. }), "{err}");
        assert!(err.to_string().contains("decompression bomb"), "{err}");
        assert!(!dest.exists());

        // A bundle of zeros within the allowance unpacks.
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("zeros"), vec![0u8; 32 << 20]).unwrap();
        let bundle = pack(src.path()).unwrap();
        extract(&bundle.bytes, &dest).unwrap();
        assert_eq!(
            std::fs::metadata(dest.join("zeros")).unwrap().len(),
            32 << 20
        );
    }
}

//! `unpack`: a tar.gz, tar.xz, tar or zip archive, from the config or the
//! host, unpacked into a directory of its own.
//!
//! The archive is unpacked into a new directory beside `path`
//! (`.{name}.cattle-unpack`, mode 0700 until it is complete), which then
//! takes `path`'s place in one rename (`RENAME_EXCHANGE`); the tree it
//! replaces is removed. `path` is therefore always the old tree or the new
//! one, whole; an attempt cut short leaves only the directory beside it,
//! which the next one removes before starting again.
//!
//! Entries are refused as bundle extraction refuses them (see
//! `cattle_core::bundle`, which this crate does not depend on): an absolute
//! path, a `..`, a symbolic or hard link, a device or FIFO, a path named
//! twice or through a file. Every entry is checked, and a tar's contents
//! inflated, before the first is written. The marker `.cattle-unpacked`,
//! written inside the tree, holds the archive's sha256: a run finding the
//! same archive unpacked is `unchanged`, a new archive unpacks again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{RenameFlags, renameat, renameat2};

use super::FacilitySpec;
use crate::accounts::{resolve_group, resolve_user};
use crate::args::{ArgError, Args, ConfigKind};
use crate::facility::{Applied, Check, Context, Deadline, Facility, FacilityError};
use crate::files::{Attributes, set_attributes};
use crate::tree::Dir;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "unpack",
    args: &["source", "archive", "path", "owner", "group"],
    summary: "unpack a tar.gz, tar.xz, tar or zip archive into a directory",
    build,
};

/// The file inside an unpacked tree that says which archive it came from.
pub const MARKER: &str = ".cattle-unpacked";

/// How much an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    /// Bytes of all files together.
    bytes: u64,
    /// Files and directories.
    entries: usize,
    /// Times its own size a compressed archive may inflate to, beyond `allowance`.
    ratio: u64,
    /// What any archive may inflate to, whatever its ratio.
    allowance: u64,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        bytes: 8 << 30,
        entries: 200_000,
        ratio: 100,
        allowance: 256 << 20,
    };

    /// Most bytes an archive of `compressed` bytes may inflate to.
    fn inflated(&self, compressed: u64) -> u64 {
        compressed
            .saturating_mul(self.ratio)
            .saturating_add(self.allowance)
            .min(self.bytes)
    }

    /// Most bytes the tar stream of a compressed archive of `compressed`
    /// bytes may be: its files, and a header and padding for each entry.
    fn tar_stream(&self, compressed: u64) -> u64 {
        let headers = self.entries as u64 * 8192;
        compressed
            .saturating_mul(self.ratio)
            .saturating_add(self.allowance)
            .min(self.bytes.saturating_add(headers))
    }
}

/// Memory the xz decoder may take (its dictionary); `xz -9` needs 65 MiB.
const XZ_MEMORY_LIMIT_KIB: u32 = 256 * 1024;

/// Longest relative path an entry may have, and longest name in it.
const MAX_PATH_BYTES: usize = 3072;
const MAX_NAME_BYTES: usize = 255;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let source = args.optional_config_path("source", ConfigKind::File)?;
    let archive = args.optional_absolute_path("archive")?;
    let origin = match (source, archive) {
        (Some(source), None) => Origin::Config(source),
        (None, Some(archive)) => Origin::Host(archive),
        (Some(_), Some(_)) => {
            return Err(args
                .error(
                    "archive",
                    "step `unpack` takes `source` or `archive`, not both",
                )
                .with_hint("`source` is a file of the config, `archive` one already on the host"));
        }
        (None, None) => {
            return Err(args
                .error("source", "step `unpack` needs `source` or `archive`")
                .with_hint(
                    "add `source = \"files/app.tar.gz\"` for an archive in the config, \
                     or `archive = \"/var/cache/app.tar.gz\"` for one on the host",
                ));
        }
    };
    let path = args.absolute_path("path")?;
    if path.file_name().is_none() || path.parent().is_none() {
        return Err(args
            .error("path", "argument `path` must name a directory below `/`")
            .with_hint("unpack replaces `path` whole: give it a directory of its own"));
    }
    Ok(Box::new(Unpack {
        origin,
        path,
        owner: args.optional_str("owner")?,
        group: args.optional_str("group")?,
        limits: Limits::DEFAULT,
    }))
}

/// Where the archive is.
#[derive(Debug, Clone)]
enum Origin {
    /// A file of the config, relative to it.
    Config(PathBuf),
    /// A file on the host.
    Host(PathBuf),
}

#[derive(Debug)]
struct Unpack {
    origin: Origin,
    path: PathBuf,
    owner: Option<String>,
    group: Option<String>,
    limits: Limits,
}

/// What kind of archive a file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    TarGz,
    TarXz,
    Tar,
    Zip,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::TarGz => "tar.gz",
            Format::TarXz => "tar.xz",
            Format::Tar => "tar",
            Format::Zip => "zip",
        }
    }

    /// The format whose magic bytes `head` (the file's first 512 bytes) starts with.
    fn detect(head: &[u8]) -> Option<Format> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Format::TarGz)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Format::TarXz)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Format::Zip)
        } else if head.get(257..262) == Some(b"ustar") {
            Some(Format::Tar)
        } else {
            None
        }
    }
}

/// What is at `path` now.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Missing,
    /// An empty directory (made by a `make_dir` step, say).
    Empty,
    /// A tree this facility unpacked: its marker's text.
    Unpacked(String),
    /// A directory with files this facility did not unpack.
    Foreign,
}

/// An accepted entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Directory { mode: u32 },
    File { mode: u32, size: u64 },
}

/// What an entry claims to be, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claimed {
    Directory,
    File,
}

impl Unpack {
    fn ids(&self) -> Result<(Option<u32>, Option<u32>), FacilityError> {
        Ok((
            self.owner.as_deref().map(resolve_user).transpose()?,
            self.group.as_deref().map(resolve_group).transpose()?,
        ))
    }

    fn parent(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    fn name(&self) -> &OsStr {
        self.path.file_name().unwrap_or_default()
    }

    /// `.{name}.cattle-unpack`: where the new tree is built.
    fn work_name(&self) -> OsString {
        let mut name = OsString::from(".");
        name.push(self.name());
        name.push(".cattle-unpack");
        name
    }

    /// `.{name}.cattle-unpack-old`: the old tree while it is moved aside,
    /// where the file system cannot exchange two names.
    fn old_name(&self) -> OsString {
        let mut name = self.work_name();
        name.push("-old");
        name
    }

    /// The archive, open, and its path.
    fn open_archive(&self, ctx: &Context<'_>) -> Result<(File, PathBuf), FacilityError> {
        let path = match &self.origin {
            Origin::Config(source) => ctx.config_dir().join(source),
            Origin::Host(archive) => archive.clone(),
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(FacilityError::permanent(format!(
                    "archive `{}` does not exist; put it there in an earlier step",
                    path.display()
                )));
            }
            Err(err) => return Err(FacilityError::io("read", &path, err)),
        };
        let meta = file
            .metadata()
            .map_err(|err| FacilityError::io("inspect", &path, err))?;
        if !meta.is_file() {
            return Err(FacilityError::permanent(format!(
                "archive `{}` is not a regular file",
                path.display()
            )));
        }
        Ok((file, path))
    }

    /// The text of the marker for an archive whose sha256 is `digest`.
    fn marker(&self, digest: &str) -> String {
        format!(
            "cattle unpack\nsha256 {digest}\nowner {}\ngroup {}\n",
            self.owner.as_deref().unwrap_or("-"),
            self.group.as_deref().unwrap_or("-")
        )
    }

    fn existing(&self) -> Result<Existing, FacilityError> {
        match std::fs::symlink_metadata(&self.path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
            Err(err) => return Err(FacilityError::io("inspect", &self.path, err)),
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.is_symlink() => {
                return Err(FacilityError::permanent(format!(
                    "`{}` is a symbolic link; `path` must name the directory itself",
                    self.path.display()
                )));
            }
            Ok(_) => {
                return Err(FacilityError::permanent(format!(
                    "`{}` exists and is not a directory",
                    self.path.display()
                )));
            }
        }
        let marker = self.path.join(MARKER);
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&marker);
        match opened {
            Ok(file) => {
                let mut text = String::new();
                // A marker is a few lines; anything else is not one of ours.
                let _ = file.take(4096).read_to_string(&mut text);
                Ok(Existing::Unpacked(text))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut entries = std::fs::read_dir(&self.path)
                    .map_err(|err| FacilityError::io("list", &self.path, err))?;
                Ok(if entries.next().is_none() {
                    Existing::Empty
                } else {
                    Existing::Foreign
                })
            }
            Err(err) => Err(FacilityError::io("read", &marker, err)),
        }
    }

    fn foreign(&self) -> FacilityError {
        FacilityError::permanent(format!(
            "`{}` holds files that unpack did not put there (it has no `{MARKER}`); \
             unpack replaces the whole directory, so give it an empty or new one",
            self.path.display()
        ))
    }

    /// Whether an attempt cut short left a directory beside `path`.
    fn leftovers(&self) -> bool {
        [self.work_name(), self.old_name()]
            .iter()
            .any(|name| std::fs::symlink_metadata(self.parent().join(name)).is_ok())
    }

    /// Unpack the archive `file` (at `archive`, in `format`) into the empty
    /// directory `root`: check every entry, then write them.
    fn unpack(
        &self,
        file: &File,
        archive: &Path,
        format: Format,
        root: &Path,
        ids: (Option<u32>, Option<u32>),
        deadline: Option<Deadline>,
    ) -> Result<(), FacilityError> {
        let walker = Walker {
            archive,
            format,
            limits: self.limits,
            deadline,
        };
        let mut writer = Writer {
            root,
            ids,
            directories: BTreeMap::new(),
        };
        match format {
            Format::Zip => walker.zip(file, &mut |rel, entry, contents| {
                writer.put(rel, entry, contents)
            })?,
            _ => {
                walker.tar(file, &mut |_, _, contents| {
                    std::io::copy(contents, &mut std::io::sink()).map(drop)
                })?;
                walker.tar(file, &mut |rel, entry, contents| {
                    writer.put(rel, entry, contents)
                })?;
            }
        }
        writer.finish()
    }
}

/// The sha256 of what `file` holds from its start, in lower-case hex.
fn sha256(file: &mut File, path: &Path) -> Result<String, FacilityError> {
    file.rewind()
        .map_err(|err| FacilityError::io("read", path, err))?;
    crate::files::sha256_hex(file, path)
}

/// The format of the archive `file`, by its first bytes.
fn detect(file: &mut File, path: &Path) -> Result<Format, FacilityError> {
    file.rewind()
        .map_err(|err| FacilityError::io("read", path, err))?;
    let mut head = Vec::with_capacity(512);
    file.take(512)
        .read_to_end(&mut head)
        .map_err(|err| FacilityError::io("read", path, err))?;
    Format::detect(&head).ok_or_else(|| {
        FacilityError::permanent(format!(
            "`{}` is not a tar.gz, tar.xz, tar or zip archive (by its first bytes)",
            path.display()
        ))
    })
}

/// The relative path an entry named `raw` unpacks to: `Ok(None)` for the
/// directory itself (`./`), an error naming the reason it is refused.
fn entry_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    if raw.contains(&0) {
        return Err("the name holds a NUL byte");
    }
    if raw.contains(&b'\\') {
        return Err("the name holds a `\\`; only `/` separates directories");
    }
    let path = Path::new(OsStr::from_bytes(raw));
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => {
                if name.len() > MAX_NAME_BYTES {
                    return Err("a name in the path is too long to create");
                }
                rel.push(name);
            }
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => {
                return Err("only relative paths without `..` are allowed");
            }
        }
    }
    if rel.as_os_str().len() > MAX_PATH_BYTES {
        return Err("the path is too long to create");
    }
    if rel == Path::new(MARKER) {
        return Err("the name is the one unpack keeps for its marker");
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// The entries seen so far in one pass, to refuse those that collide and to
/// keep within the limits.
#[derive(Debug, Default)]
struct Seen {
    /// Every entry's path, and whether it is a file.
    entries: HashMap<PathBuf, bool>,
    /// Every directory some entry's path goes through.
    parents: HashSet<PathBuf>,
    bytes: u64,
}

impl Seen {
    fn admit(&mut self, rel: &Path, is_file: bool) -> Result<(), &'static str> {
        if self.entries.contains_key(rel) {
            return Err("the archive names this path twice");
        }
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

/// One pass over an archive's entries, each checked before it is handed on.
struct Walker<'a> {
    archive: &'a Path,
    format: Format,
    limits: Limits,
    deadline: Option<Deadline>,
}

/// What a pass does with each accepted entry: its relative path, what it
/// is, and its contents (nothing for a directory).
type Each<'e> = dyn FnMut(&Path, Entry, &mut dyn Read) -> std::io::Result<()> + 'e;

impl Walker<'_> {
    fn refused(&self, raw: &[u8], reason: &str) -> FacilityError {
        FacilityError::permanent(format!(
            "archive `{}`: entry `{}` is refused: {reason}",
            self.archive.display(),
            String::from_utf8_lossy(raw)
        ))
    }

    fn corrupt(&self, err: impl std::fmt::Display) -> FacilityError {
        FacilityError::permanent(format!(
            "archive `{}` is not a valid {}: {err}",
            self.archive.display(),
            self.format.name()
        ))
    }

    fn too_large(&self, what: String) -> FacilityError {
        FacilityError::permanent(format!(
            "archive `{}` {what}; refused (a decompression bomb, or more than unpack takes)",
            self.archive.display()
        ))
    }

    /// The error for `err`, met while reading the archive or writing an entry.
    fn failed(&self, err: std::io::Error, limit: u64) -> FacilityError {
        if err.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
            return self.too_large(format!("inflates to more than {limit} bytes"));
        }
        if let Some(written) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<WriteFailed>())
        {
            return FacilityError::io(
                "write",
                &written.path,
                std::io::Error::other(written.message.clone()),
            );
        }
        self.corrupt(err)
    }

    fn in_time(&self) -> Result<(), FacilityError> {
        match self.deadline {
            Some(deadline) if deadline.left().is_zero() => Err(FacilityError::new(format!(
                "unpacking `{}` did not finish within the step's timeout of {}",
                self.archive.display(),
                humantime::format_duration(deadline.timeout)
            ))),
            _ => Ok(()),
        }
    }

    /// Check the entry `raw` against the rules and what `seen` holds.
    fn admit(
        &self,
        seen: &mut Seen,
        raw: &[u8],
        claimed: Claimed,
        mode: u32,
        size: u64,
    ) -> Result<Option<(PathBuf, Entry)>, FacilityError> {
        let rel = match entry_path(raw) {
            Ok(Some(rel)) => rel,
            Ok(None) if claimed == Claimed::Directory => return Ok(None),
            Ok(None) => return Err(self.refused(raw, "a file needs a name")),
            Err(reason) => return Err(self.refused(raw, reason)),
        };
        if seen.entries.len() >= self.limits.entries {
            return Err(self.too_large(format!("has more than {} entries", self.limits.entries)));
        }
        let entry = match claimed {
            Claimed::Directory => Entry::Directory { mode },
            Claimed::File => {
                seen.bytes = seen.bytes.saturating_add(size);
                if seen.bytes > self.limits.bytes {
                    return Err(self.too_large(format!(
                        "holds more than {} bytes of files",
                        self.limits.bytes
                    )));
                }
                Entry::File { mode, size }
            }
        };
        seen.admit(&rel, claimed == Claimed::File)
            .map_err(|reason| self.refused(raw, reason))?;
        Ok(Some((rel, entry)))
    }

    /// One pass over the tar archive `file`, from its start.
    fn tar(&self, mut file: &File, each: &mut Each<'_>) -> Result<(), FacilityError> {
        file.rewind()
            .map_err(|err| FacilityError::io("read", self.archive, err))?;
        let compressed = file
            .metadata()
            .map_err(|err| FacilityError::io("inspect", self.archive, err))?
            .len();
        let input = BufReader::new(file);
        let (stream, limit): (Box<dyn Read>, u64) = match self.format {
            Format::TarGz => (
                Box::new(flate2::read::MultiGzDecoder::new(input)),
                self.limits.tar_stream(compressed),
            ),
            Format::TarXz => (
                Box::new(lzma_rust2::XzReader::new_mem_limit(
                    input,
                    true,
                    XZ_MEMORY_LIMIT_KIB,
                )),
                self.limits.tar_stream(compressed),
            ),
            Format::Tar | Format::Zip => (Box::new(input), u64::MAX),
        };
        let mut archive = tar::Archive::new(Capped {
            inner: stream,
            left: limit,
        });
        let mut seen = Seen::default();
        for entry in archive.entries().map_err(|e| self.failed(e, limit))? {
            self.in_time()?;
            let mut entry = entry.map_err(|e| self.failed(e, limit))?;
            let raw = entry.path_bytes().into_owned();
            let claimed = match entry.header().entry_type() {
                tar::EntryType::Regular => Claimed::File,
                tar::EntryType::Directory => Claimed::Directory,
                // Archive-wide metadata, such as `git archive`'s commit id.
                tar::EntryType::XGlobalHeader => continue,
                _ => {
                    return Err(
                        self.refused(&raw, "only regular files and directories are allowed")
                    );
                }
            };
            let mode = entry.header().mode().map_err(|e| self.failed(e, limit))? & 0o777;
            let size = entry.size();
            if let Some((rel, accepted)) = self.admit(&mut seen, &raw, claimed, mode, size)? {
                each(&rel, accepted, &mut entry).map_err(|e| self.failed(e, limit))?;
            }
        }
        // The rest of the stream: a compressed one checks its checksum at its end.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
            .map_err(|e| self.failed(e, limit))?;
        Ok(())
    }

    /// The zip archive `file`: every entry checked from the central
    /// directory, then each written, its size and checksum checked as it is.
    fn zip(&self, file: &File, each: &mut Each<'_>) -> Result<(), FacilityError> {
        let mut input = BufReader::new(file);
        input
            .rewind()
            .map_err(|err| FacilityError::io("read", self.archive, err))?;
        let compressed = file
            .metadata()
            .map_err(|err| FacilityError::io("inspect", self.archive, err))?
            .len();
        let limit = self.limits.inflated(compressed);
        let mut zip = zip::ZipArchive::new(input).map_err(|e| self.corrupt(e))?;
        let mut seen = Seen::default();
        let mut accepted = Vec::new();
        for index in 0..zip.len() {
            let entry = zip.by_index_data(index).map_err(|e| self.corrupt(e))?;
            let raw = entry.name_raw().to_vec();
            if entry.encrypted() {
                return Err(self.refused(&raw, "encrypted entries are not supported"));
            }
            let kind = entry.unix_mode().map(|m| m & 0o170000).unwrap_or(0);
            let claimed = match kind {
                0o040000 => Claimed::Directory,
                0o100000 if !entry.is_dir() => Claimed::File,
                0 if entry.is_dir() => Claimed::Directory,
                0 => Claimed::File,
                _ => {
                    return Err(
                        self.refused(&raw, "only regular files and directories are allowed")
                    );
                }
            };
            if claimed == Claimed::File
                && !matches!(
                    entry.compression(),
                    zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated
                )
            {
                return Err(self.refused(
                    &raw,
                    "compressed with a method unpack cannot read (only stored and deflate)",
                ));
            }
            let mode = match (entry.unix_mode(), claimed) {
                (Some(mode), _) => mode & 0o777,
                (None, Claimed::Directory) => 0o755,
                (None, Claimed::File) => 0o644,
            };
            let size = entry.size();
            if let Some((rel, checked)) = self.admit(&mut seen, &raw, claimed, mode, size)? {
                accepted.push((index, rel, checked));
            }
        }
        if seen.bytes > limit {
            return Err(self.too_large(format!(
                "of {compressed} bytes holds {} bytes of files, more than {limit}",
                seen.bytes
            )));
        }
        for (index, rel, entry) in accepted {
            self.in_time()?;
            let options = zip::read::ZipReadOptions::new().enforce_header_consistency(true);
            let mut contents = zip
                .by_index_with_options(index, options)
                .map_err(|e| self.corrupt(e))?;
            let size = match entry {
                Entry::File { size, .. } => size,
                Entry::Directory { .. } => 0,
            };
            let mut capped = Capped {
                inner: &mut contents,
                left: size,
            };
            each(&rel, entry, &mut capped).map_err(|e| self.failed(e, size))?;
        }
        Ok(())
    }
}

/// Writes accepted entries under a directory only this process can enter
/// (mode 0700, the new tree's root), so paths in it are safe to use.
struct Writer<'a> {
    root: &'a Path,
    ids: (Option<u32>, Option<u32>),
    /// Every directory made, and the mode it gets once the files are in.
    directories: BTreeMap<PathBuf, u32>,
}

/// A write error inside [`Writer::put`], told apart from a read error of the
/// archive, which the same `io::Error` carries out of it.
#[derive(Debug)]
struct WriteFailed {
    path: PathBuf,
    message: String,
}

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot write `{}`: {}",
            self.path.display(),
            self.message
        )
    }
}

impl std::error::Error for WriteFailed {}

fn write_failed(path: &Path, err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(WriteFailed {
        path: path.to_path_buf(),
        message: err.to_string(),
    })
}

impl Writer<'_> {
    fn put(&mut self, rel: &Path, entry: Entry, contents: &mut dyn Read) -> std::io::Result<()> {
        match entry {
            Entry::Directory { mode } => {
                self.make_directories(rel)?;
                self.directories.insert(rel.to_path_buf(), mode);
            }
            Entry::File { mode, size } => {
                if let Some(parent) = rel.parent() {
                    self.make_directories(parent)?;
                }
                let target = self.root.join(rel);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|err| write_failed(&target, err))?;
                let mut buffer = vec![0u8; 64 * 1024];
                let mut written: u64 = 0;
                loop {
                    let n = match contents.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(err) => return Err(err),
                    };
                    file.write_all(&buffer[..n])
                        .map_err(|err| write_failed(&target, err))?;
                    written += n as u64;
                }
                if written != size {
                    return Err(std::io::Error::other(format!(
                        "entry `{}` holds {written} bytes, its header says {size}",
                        rel.display()
                    )));
                }
                let (uid, gid) = self.ids;
                set_attributes(&file, &target, Attributes { mode, uid, gid })
                    .map_err(|err| write_failed(&target, err))?;
            }
        }
        Ok(())
    }

    /// Make `rel` and its parents, closed to others until [`Writer::finish`].
    fn make_directories(&mut self, rel: &Path) -> std::io::Result<()> {
        if rel.as_os_str().is_empty() || self.directories.contains_key(rel) {
            return Ok(());
        }
        let target = self.root.join(rel);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&target)
            .map_err(|err| write_failed(&target, err))?;
        for dir in rel.ancestors() {
            if dir.as_os_str().is_empty() {
                break;
            }
            self.directories.entry(dir.to_path_buf()).or_insert(0o755);
        }
        Ok(())
    }

    /// Give every directory its owner and mode, the deepest first.
    fn finish(self) -> Result<(), FacilityError> {
        let (uid, gid) = self.ids;
        for (rel, mode) in self.directories.iter().rev() {
            let path = self.root.join(rel);
            let dir = File::open(&path).map_err(|err| FacilityError::io("open", &path, err))?;
            set_attributes(
                &dir,
                &path,
                Attributes {
                    mode: *mode,
                    uid,
                    gid,
                },
            )?;
        }
        Ok(())
    }
}

/// The error a [`Capped`] reader returns past its limit.
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the archive inflates to more than its limit")
    }
}

impl std::error::Error for OverLimit {}

/// A reader that fails, rather than ends, once `left` bytes have been read,
/// so that a cut-off archive is never mistaken for a complete one.
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

impl Facility for Unpack {
    fn describe(&self) -> String {
        let archive = match &self.origin {
            Origin::Config(source) | Origin::Host(source) => source.display(),
        };
        format!("{archive} is unpacked in {}", self.path.display())
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        self.ids()?;
        let (mut file, archive) = self.open_archive(ctx)?;
        let digest = sha256(&mut file, &archive)?;
        if self.leftovers() {
            return Ok(Check::Run);
        }
        match self.existing()? {
            Existing::Missing | Existing::Empty => Ok(Check::Run),
            Existing::Foreign => Err(self.foreign()),
            Existing::Unpacked(marker) if marker == self.marker(&digest) => Ok(Check::AlreadyDone),
            Existing::Unpacked(_) => Ok(Check::Run),
        }
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let ids = self.ids()?;
        let parent = self.parent();
        std::fs::create_dir_all(parent)
            .map_err(|err| FacilityError::io("create directory", parent, err))?;
        let parent_dir = Dir::open_following(parent)?;
        let (work, old) = (self.work_name(), self.old_name());
        // What an attempt cut short left beside `path`.
        parent_dir.remove(&work)?;
        parent_dir.remove(&old)?;

        let (mut file, archive) = self.open_archive(ctx)?;
        let digest = sha256(&mut file, &archive)?;
        let marker = self.marker(&digest);
        let existing = self.existing()?;
        match &existing {
            Existing::Unpacked(found) if *found == marker => return Ok(Applied::Changed),
            Existing::Foreign => return Err(self.foreign()),
            _ => {}
        }
        let format = detect(&mut file, &archive)?;

        let root_attributes = Attributes {
            mode: 0o700,
            uid: None,
            gid: None,
        };
        let root = parent_dir.create_subdir(&work, root_attributes)?;
        let built = self
            .unpack(&file, &archive, format, root.path(), ids, ctx.deadline())
            .and_then(|()| {
                let path = root.path().join(MARKER);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&path)
                    .map_err(|err| FacilityError::io("create", &path, err))?;
                file.write_all(marker.as_bytes())
                    .map_err(|err| FacilityError::io("write", &path, err))?;
                let (uid, gid) = ids;
                set_attributes(
                    root.file(),
                    root.path(),
                    Attributes {
                        mode: 0o755,
                        uid,
                        gid,
                    },
                )?;
                // Everything written reaches the disk before the tree takes
                // `path`'s place: a crash leaves the old tree or the whole new one.
                nix::unistd::syncfs(root.file())
                    .map_err(|errno| FacilityError::io("sync", root.path(), errno.into()))
            });
        if let Err(err) = built {
            let _ = parent_dir.remove(&work);
            return Err(err);
        }

        let name = self.name();
        let renamed = match existing {
            Existing::Missing => {
                renameat(parent_dir.file(), work.as_os_str(), parent_dir.file(), name)
            }
            _ => match renameat2(
                parent_dir.file(),
                work.as_os_str(),
                parent_dir.file(),
                name,
                RenameFlags::RENAME_EXCHANGE,
            ) {
                // A file system that cannot exchange: the old tree moves
                // aside, then the new one in.
                Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                    renameat(parent_dir.file(), name, parent_dir.file(), old.as_os_str()).and_then(
                        |()| renameat(parent_dir.file(), work.as_os_str(), parent_dir.file(), name),
                    )
                }
                other => other,
            },
        };
        if let Err(errno) = renamed {
            let _ = parent_dir.remove(&work);
            return Err(FacilityError::new(format!(
                "cannot move the unpacked tree to `{}`: {}",
                self.path.display(),
                std::io::Error::from(errno)
            )));
        }
        // The tree it replaced.
        parent_dir.remove(&work)?;
        parent_dir.remove(&old)?;
        parent_dir.sync();
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply, check, converges, is_root, snapshot};
    use crate::steps::Plan;
    use std::os::unix::fs::{MetadataExt, symlink};

    /// One entry of a test archive: its name, written verbatim.
    #[derive(Clone, Copy)]
    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Link(&'a str, &'a str),
        Raw(&'a str, tar::EntryType),
    }

    fn tar(entries: &[E<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let (name, kind, data, mode, link): (&str, _, &[u8], u32, Option<&str>) = match *entry {
                E::File(name, data, mode) => (name, tar::EntryType::Regular, data, mode, None),
                E::Dir(name) => (name, tar::EntryType::Directory, b"", 0o750, None),
                E::Link(name, to) => (name, tar::EntryType::Symlink, b"", 0o777, Some(to)),
                E::Raw(name, kind) => (name, kind, b"", 0o644, None),
            };
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            // The raw name, so that `..` and absolute paths get through the builder.
            let field = &mut header.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(to) = link {
                header.set_link_name(to).unwrap();
            }
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let options = lzma_rust2::XzOptions::with_preset(1);
        let mut xz = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
        xz.write_all(bytes).unwrap();
        xz.finish().unwrap()
    }

    fn zip(entries: &[E<'_>]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for entry in entries {
            let options = zip::write::SimpleFileOptions::default();
            match *entry {
                E::File(name, data, mode) => {
                    writer
                        .start_file(name, options.unix_permissions(mode))
                        .unwrap();
                    writer.write_all(data).unwrap();
                }
                E::Dir(name) => writer
                    .add_directory(name, options.unix_permissions(0o750))
                    .unwrap(),
                E::Link(name, to) => writer.add_symlink(name, to, options).unwrap(),
                E::Raw(..) => unreachable!(),
            }
        }
        writer.finish().unwrap().into_inner()
    }

    const APP: &[E<'static>] = &[
        E::Dir("app/"),
        E::File("app/bin/run", b"#!/bin/sh\necho hi\n", 0o755),
        E::File("app/README", b"read me\n", 0o644),
        E::File("app/secret", b"s3cret\n", 0o4600),
        E::Dir("app/empty/"),
    ];

    struct Setup {
        dir: tempfile::TempDir,
        env: Environment,
        host: PathBuf,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::create_dir(dir.path().join("host")).unwrap();
        let env = Environment::new(dir.path().join("config"));
        let host = dir.path().join("host");
        Setup { dir, env, host }
    }

    impl Setup {
        /// An `unpack` of `bytes`, put in the config as `name`, into `host/opt/app`.
        fn in_config(&self, name: &str, bytes: &[u8]) -> Unpack {
            std::fs::write(self.env.config_dir.join(name), bytes).unwrap();
            Unpack {
                origin: Origin::Config(PathBuf::from(name)),
                path: self.host.join("opt/app"),
                owner: None,
                group: None,
                limits: Limits::DEFAULT,
            }
        }

        /// An `unpack` of `bytes`, put on the host as `name`, into `host/opt/app`.
        fn on_host(&self, name: &str, bytes: &[u8]) -> Unpack {
            let archive = self.dir.path().join(name);
            std::fs::write(&archive, bytes).unwrap();
            Unpack {
                origin: Origin::Host(archive),
                path: self.host.join("opt/app"),
                owner: None,
                group: None,
                limits: Limits::DEFAULT,
            }
        }

        fn app(&self) -> PathBuf {
            self.host.join("opt/app")
        }

        /// Nothing in `host` but what was there, and nothing beside it.
        fn untouched(&self) {
            assert!(!self.dir.path().join("evil").exists());
            assert!(!Path::new("/tmp/evil").exists());
            let host: Vec<_> = snapshot(&self.host).into_keys().collect();
            assert!(host.len() <= 2, "{host:?}");
            if self.host.join("opt").exists() {
                assert_eq!(std::fs::read_dir(self.host.join("opt")).unwrap().count(), 0);
            }
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn assert_app(app: &Path) {
        assert_eq!(
            std::fs::read_to_string(app.join("app/bin/run")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            std::fs::read_to_string(app.join("app/README")).unwrap(),
            "read me\n"
        );
        assert_eq!(mode(&app.join("app/bin/run")), 0o755);
        assert_eq!(mode(&app.join("app/README")), 0o644);
        // Set-ID bits are dropped.
        assert_eq!(mode(&app.join("app/secret")), 0o600);
        assert_eq!(mode(&app.join("app")), 0o750);
        // A directory only implied by a file's path.
        assert_eq!(mode(&app.join("app/bin")), 0o755);
        assert!(app.join("app/empty").is_dir());
        assert_eq!(mode(app), 0o755);
        assert!(app.join(MARKER).is_file());
    }

    #[test]
    fn unpacks_a_tar_gz_from_the_config_then_changes_nothing() {
        let s = setup();
        let f = s.in_config("app.tar.gz", &gz(&tar(APP)));
        converges(&f, &s.env, &s.host);
        assert_app(&s.app());
        let marker = std::fs::read_to_string(s.app().join(MARKER)).unwrap();
        assert!(marker.starts_with("cattle unpack\nsha256 "), "{marker}");
        // Nothing left beside it.
        assert_eq!(std::fs::read_dir(s.host.join("opt")).unwrap().count(), 1);
    }

    #[test]
    fn unpacks_a_tar_xz_a_tar_and_a_zip_from_the_host() {
        for (name, bytes) in [
            ("app.tar.xz", xz(&tar(APP))),
            ("app.tar", tar(APP)),
            ("app.zip", zip(APP)),
        ] {
            let s = setup();
            let f = s.on_host(name, &bytes);
            converges(&f, &s.env, &s.host);
            assert_app(&s.app());
        }
    }

    #[test]
    fn a_new_archive_replaces_the_whole_tree() {
        let s = setup();
        let f = s.in_config("app.tar.gz", &gz(&tar(APP)));
        converges(&f, &s.env, &s.host);
        std::fs::write(s.app().join("app/added-by-hand"), "").unwrap();
        let v2 = [E::File("app/v2", b"two", 0o644)];
        let f = s.in_config("app.tar.gz", &gz(&tar(&v2)));
        converges(&f, &s.env, &s.host);
        let names: Vec<_> = snapshot(&s.app()).into_keys().collect();
        assert_eq!(
            names,
            [
                PathBuf::new(),
                PathBuf::from(MARKER),
                PathBuf::from("app"),
                PathBuf::from("app/v2")
            ]
        );
        assert_eq!(std::fs::read_dir(s.host.join("opt")).unwrap().count(), 1);
    }

    #[test]
    fn entries_named_from_dot_and_global_headers_are_fine() {
        let s = setup();
        let entries = [
            E::Raw("pax_global_header", tar::EntryType::XGlobalHeader),
            E::Dir("./"),
            E::File("./a/b", b"b", 0o644),
            E::File("c", b"c", 0o644),
        ];
        let f = s.in_config("dot.tar.gz", &gz(&tar(&entries)));
        converges(&f, &s.env, &s.host);
        assert!(s.app().join("a/b").is_file() && s.app().join("c").is_file());
        assert!(!s.app().join("pax_global_header").exists());
    }

    #[test]
    fn escaping_and_special_entries_are_refused_before_anything_is_written() {
        let tar_cases: Vec<(Vec<E<'_>>, &str)> = vec![
            (vec![E::File("../evil", b"x", 0o644)], "only relative"),
            (vec![E::File("/tmp/evil", b"x", 0o644)], "only relative"),
            (vec![E::File("a/../../evil", b"x", 0o644)], "only relative"),
            (
                vec![
                    E::File("good", b"x", 0o644),
                    E::File("../evil", b"x", 0o644),
                ],
                "only relative",
            ),
            (vec![E::Link("evil", "/etc")], "only regular files"),
            (
                vec![E::Raw("hard", tar::EntryType::Link)],
                "only regular files",
            ),
            (
                vec![E::Raw("dev", tar::EntryType::Char)],
                "only regular files",
            ),
            (
                vec![E::Raw("fifo", tar::EntryType::Fifo)],
                "only regular files",
            ),
            (
                vec![E::File("a", b"x", 0o644), E::File("a", b"y", 0o644)],
                "twice",
            ),
            (
                vec![E::File("a", b"x", 0o644), E::File("a/b", b"y", 0o644)],
                "goes through a file",
            ),
            (
                vec![E::File("a/b", b"x", 0o644), E::File("a", b"y", 0o644)],
                "needs a directory",
            ),
            (vec![E::File(MARKER, b"x", 0o644)], "marker"),
            (vec![E::File("./", b"x", 0o644)], "needs a name"),
        ];
        for (entries, reason) in tar_cases {
            let s = setup();
            let f = s.in_config("evil.tar.gz", &gz(&tar(&entries)));
            assert_eq!(check(&f, &s.env).unwrap(), Check::Run);
            let err = apply(&f, &s.env).0.unwrap_err();
            assert!(err.is_permanent(), "{err}");
            assert!(err.message().contains(reason), "{reason}: {err}");
            s.untouched();
        }
        let zip_cases: Vec<(Vec<E<'_>>, &str)> = vec![
            (vec![E::File("../evil", b"x", 0o644)], "only relative"),
            (vec![E::File("/tmp/evil", b"x", 0o644)], "only relative"),
            (vec![E::File("a\\..\\..\\evil", b"x", 0o644)], "`\\`"),
            (
                vec![E::File("good", b"x", 0o644), E::Link("evil", "/etc")],
                "only regular files",
            ),
        ];
        for (entries, reason) in zip_cases {
            let s = setup();
            let f = s.on_host("evil.zip", &zip(&entries));
            let err = apply(&f, &s.env).0.unwrap_err();
            assert!(err.is_permanent(), "{err}");
            assert!(err.message().contains(reason), "{reason}: {err}");
            s.untouched();
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_anything_is_written() {
        let zeros = vec![0u8; 4 << 20];
        let limits = Limits {
            allowance: 1 << 20,
            ..Limits::DEFAULT
        };
        let entries = [E::File("zeros", &zeros, 0o644)];
        for (name, bytes) in [
            ("bomb.tar.gz", gz(&tar(&entries))),
            ("bomb.tar.xz", xz(&tar(&entries))),
            ("bomb.zip", zip(&entries)),
        ] {
            let s = setup();
            let f = Unpack {
                limits,
                ..s.in_config(name, &bytes)
            };
            let err = apply(&f, &s.env).0.unwrap_err();
            assert!(err.is_permanent(), "{name}: {err}");
            assert!(
                err.message().contains("decompression bomb"),
                "{name}: {err}"
            );
            s.untouched();
        }
        // Within the limits: the same zeros unpack.
        let s = setup();
        converges(
            &s.in_config("ok.tar.gz", &gz(&tar(&entries))),
            &s.env,
            &s.host,
        );
        assert_eq!(
            std::fs::metadata(s.app().join("zeros")).unwrap().len(),
            4 << 20
        );

        // Too many entries, too many bytes.
        let s = setup();
        let f = Unpack {
            limits: Limits {
                entries: 2,
                ..Limits::DEFAULT
            },
            ..s.in_config("many.tar", &tar(APP))
        };
        let err = apply(&f, &s.env).0.unwrap_err();
        assert!(err.message().contains("more than 2 entries"), "{err}");
        let f = Unpack {
            limits: Limits {
                bytes: 10,
                ..Limits::DEFAULT
            },
            ..s.in_config("big.zip", &zip(APP))
        };
        let err = apply(&f, &s.env).0.unwrap_err();
        assert!(err.message().contains("more than 10 bytes"), "{err}");
        s.untouched();
    }

    #[test]
    fn a_corrupt_or_unknown_archive_is_a_permanent_error_leaving_nothing() {
        let good = gz(&tar(APP));
        let mut flipped = good.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0xff;
        for (name, bytes) in [
            ("cut.tar.gz", good[..good.len() - 20].to_vec()),
            ("flipped.tar.gz", flipped),
            ("cut.tar.xz", {
                let x = xz(&tar(APP));
                x[..x.len() - 30].to_vec()
            }),
            ("cut.zip", {
                let z = zip(APP);
                z[..z.len() - 30].to_vec()
            }),
            ("text.txt", b"just text".to_vec()),
        ] {
            let s = setup();
            let f = s.in_config(name, &bytes);
            let err = apply(&f, &s.env).0.unwrap_err();
            assert!(err.is_permanent(), "{name}: {err}");
            s.untouched();
        }
    }

    #[test]
    fn a_directory_with_other_files_a_link_or_a_file_at_path_is_refused() {
        let s = setup();
        let f = s.in_config("app.tar.gz", &gz(&tar(APP)));
        std::fs::create_dir_all(s.app()).unwrap();
        std::fs::write(s.app().join("precious"), "mine").unwrap();
        let err = check(&f, &s.env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("did not put there"),
            "{err}"
        );
        assert!(apply(&f, &s.env).0.unwrap_err().is_permanent());
        assert_eq!(
            std::fs::read_to_string(s.app().join("precious")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(s.host.join("opt")).unwrap().count(), 1);

        std::fs::remove_dir_all(s.app()).unwrap();
        let elsewhere = s.dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, s.app()).unwrap();
        let err = f.check_in(&s.env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("symbolic link"),
            "{err}"
        );
        assert!(f.apply_in(&s.env).is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

        std::fs::remove_file(s.app()).unwrap();
        std::fs::write(s.app(), "").unwrap();
        assert!(f.check_in(&s.env).unwrap_err().is_permanent());
    }

    #[test]
    fn an_empty_directory_at_path_is_filled() {
        let s = setup();
        std::fs::create_dir_all(s.app()).unwrap();
        let f = s.in_config("app.zip", &zip(APP));
        converges(&f, &s.env, &s.host);
        assert_app(&s.app());
    }

    #[test]
    fn a_run_cut_short_is_completed_by_the_next() {
        let s = setup();
        let f = s.in_config("app.tar.gz", &gz(&tar(APP)));
        // Killed while unpacking: a half tree beside `path`, none at it.
        let work = s.host.join("opt/.app.cattle-unpack");
        std::fs::create_dir_all(work.join("app")).unwrap();
        std::fs::write(work.join("app/README"), "half").unwrap();
        converges(&f, &s.env, &s.host);
        assert_app(&s.app());
        assert!(!work.exists());

        // Killed after the exchange, before the old tree was removed.
        std::fs::create_dir_all(work.join("old")).unwrap();
        assert_eq!(check(&f, &s.env).unwrap(), Check::Run);
        let before = std::fs::read(s.app().join("app/README")).unwrap();
        converges(&f, &s.env, &s.host);
        assert!(!work.exists());
        assert_eq!(std::fs::read(s.app().join("app/README")).unwrap(), before);
    }

    #[test]
    fn owner_and_group_go_to_every_entry() {
        if !is_root() {
            return;
        }
        let s = setup();
        let f = Unpack {
            owner: Some("nobody".into()),
            group: Some("65534".into()),
            ..s.in_config("app.tar.gz", &gz(&tar(APP)))
        };
        converges(&f, &s.env, &s.host);
        let nobody = resolve_user("nobody").unwrap();
        for (rel, node) in snapshot(&s.app()) {
            let wanted = if rel == Path::new(MARKER) {
                (0, 0)
            } else {
                (nobody, 65534)
            };
            assert_eq!((node.uid, node.gid), wanted, "{}", rel.display());
        }
        // Another owner: unpacked again.
        let f = Unpack {
            owner: None,
            group: None,
            ..f
        };
        converges(&f, &s.env, &s.host);
        assert_eq!(
            std::fs::metadata(s.app().join("app/README")).unwrap().uid(),
            0
        );
    }

    #[test]
    fn the_step_timeout_stops_unpacking_and_leaves_nothing() {
        let s = setup();
        let f = s.in_config("app.tar.gz", &gz(&tar(APP)));
        let deadline = Some(Deadline::after(std::time::Duration::ZERO));
        let (result, _) = crate::facility::testing::apply_within(&f, &s.env, deadline);
        let err = result.unwrap_err();
        assert!(
            !err.is_permanent() && err.message().contains("timeout"),
            "{err}"
        );
        s.untouched();
    }

    #[test]
    fn a_missing_host_archive_is_an_error() {
        let s = setup();
        let f = Unpack {
            origin: Origin::Host(s.dir.path().join("nope.tar.gz")),
            ..s.in_config("x", b"")
        };
        let err = check(&f, &s.env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn build_takes_source_or_archive() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.tar.gz"), "").unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"unpack\"\npath = \"/opt/app\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("source = \"app.tar.gz\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "app.tar.gz is unpacked in /opt/app"
        );
        let plan = parse("archive = \"/var/cache/app.zip\"\nowner = \"app\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "/var/cache/app.zip is unpacked in /opt/app"
        );
        for (args, message, position) in [
            ("", "step `unpack` needs `source` or `archive`", (1, 1)),
            (
                "source = \"app.tar.gz\"\narchive = \"/x.zip\"",
                "step `unpack` takes `source` or `archive`, not both",
                (5, 11),
            ),
            (
                "archive = \"x.zip\"",
                "argument `archive` must be an absolute path, not `x.zip`",
                (4, 11),
            ),
            (
                "source = \"nope.zip\"",
                "argument `source` must name a regular file in the config directory",
                (4, 10),
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.message, message, "{args}");
            assert_eq!(err.position, Some(position), "{args}");
        }
        let steps = "[[step]]\nfacility = \"unpack\"\npath = \"/\"\nsource = \"app.tar.gz\"\n";
        let err = Plan::parse(steps, Path::new("cattle.toml"), dir.path()).unwrap_err();
        assert_eq!(
            err.message,
            "argument `path` must name a directory below `/`"
        );
    }

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(Format::detect(&gz(b"x")), Some(Format::TarGz));
        assert_eq!(Format::detect(&xz(b"x")), Some(Format::TarXz));
        assert_eq!(Format::detect(&tar(APP)), Some(Format::Tar));
        assert_eq!(Format::detect(&zip(APP)), Some(Format::Zip));
        assert_eq!(Format::detect(&zip(&[])), Some(Format::Zip));
        assert_eq!(Format::detect(b"hello"), None);
    }
}

//! Directory trees read and changed through open directories, never through a
//! symbolic link.
//!
//! A tree that others may write to (files handed to a user with `owner`) can
//! have a directory swapped for a symbolic link between a check and a write.
//! Every name here is looked up in an open directory with `O_NOFOLLOW`, so
//! nothing outside the tree is ever read, written or removed: a link met
//! where a directory must be is an error, and one where a file goes is
//! replaced, not followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::facility::FacilityError;
use crate::files::{Attributes, set_attributes};

/// Deepest a tree may be below the directory it is handled from; deeper is
/// an error rather than a descriptor per level without end.
pub const MAX_DEPTH: usize = 256;

/// What a name in a directory is, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// What `lstat` says of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// Permission bits, set-ID and sticky bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
}

impl Stat {
    fn from(stat: &FileStat) -> Stat {
        let format = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        let kind = if format == SFlag::S_IFREG {
            Kind::File
        } else if format == SFlag::S_IFDIR {
            Kind::Directory
        } else if format == SFlag::S_IFLNK {
            Kind::Symlink
        } else {
            Kind::Other
        };
        Stat {
            kind,
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            nlink: stat.st_nlink,
        }
    }

    /// Its owner and mode as [`Attributes`].
    pub fn attributes(&self) -> Attributes {
        Attributes {
            mode: self.mode,
            uid: Some(self.uid),
            gid: Some(self.gid),
        }
    }

    /// Whether it has the mode and owner `wanted` asks for (an owner or group
    /// of `None` is anyone).
    pub fn has(&self, wanted: Attributes) -> bool {
        self.mode == wanted.mode
            && wanted.uid.is_none_or(|uid| uid == self.uid)
            && wanted.gid.is_none_or(|gid| gid == self.gid)
    }
}

/// An open directory, and its path for messages.
#[derive(Debug)]
pub struct Dir {
    file: File,
    path: PathBuf,
}

fn io(errno: Errno) -> std::io::Error {
    std::io::Error::from(errno)
}

/// The error for a symbolic link at `path` where a directory must be.
fn link_refused(path: &Path) -> FacilityError {
    FacilityError::permanent(format!(
        "`{}` is a symbolic link where a directory must be; refusing to follow it",
        path.display()
    ))
}

impl Dir {
    /// Open the directory at `path`. Its parents may be symbolic links; `path`
    /// itself must not be: that is a permanent error, as is a file there.
    pub fn open(path: &Path) -> Result<Dir, FacilityError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|err| {
                // With `O_DIRECTORY`, a link is `ENOTDIR` rather than `ELOOP`.
                match std::fs::symlink_metadata(path) {
                    Ok(meta) if meta.is_symlink() => link_refused(path),
                    _ => FacilityError::io("open the directory", path, err),
                }
            })?;
        Ok(Dir {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Open the directory at `path`, following a symbolic link there (a
    /// directory the config names, rather than one inside a tree).
    pub fn open_following(path: &Path) -> Result<Dir, FacilityError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY)
            .open(path)
            .map_err(|err| FacilityError::io("open the directory", path, err))?;
        Ok(Dir {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The directory itself, as an open file (for its owner and mode).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// What is at `name`, without following a link; `None` if nothing.
    pub fn stat(&self, name: &OsStr) -> Result<Option<Stat>, FacilityError> {
        match fstatat(&self.file, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Stat::from(&stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(FacilityError::io("inspect", &self.join(name), io(errno))),
        }
    }

    /// The directory itself.
    pub fn stat_self(&self) -> Result<Stat, FacilityError> {
        let stat = nix::sys::stat::fstat(&self.file)
            .map_err(|errno| FacilityError::io("inspect", &self.path, io(errno)))?;
        Ok(Stat::from(&stat))
    }

    /// The existing directory `name`; a link or file there is a permanent error.
    pub fn subdir(&self, name: &OsStr) -> Result<Dir, FacilityError> {
        let path = self.join(name);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&self.file, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Dir {
                file: File::from(fd),
                path,
            }),
            Err(errno @ (Errno::ELOOP | Errno::ENOTDIR)) => match self.stat(name)? {
                Some(stat) if stat.kind == Kind::Symlink => Err(link_refused(&path)),
                _ => Err(FacilityError::io("open the directory", &path, io(errno))),
            },
            Err(errno) => Err(FacilityError::io("open the directory", &path, io(errno))),
        }
    }

    /// Make the directory `name`, owned and moded as `attributes` say before
    /// anyone else can enter it.
    pub fn create_subdir(
        &self,
        name: &OsStr,
        attributes: Attributes,
    ) -> Result<Dir, FacilityError> {
        let path = self.join(name);
        mkdirat(&self.file, name, Mode::from_bits_truncate(0o700))
            .map_err(|errno| FacilityError::io("create directory", &path, io(errno)))?;
        let dir = self.subdir(name)?;
        set_attributes(&dir.file, &path, attributes)?;
        Ok(dir)
    }

    /// Open the regular file `name` to read it; a link there is not followed
    /// (it is an error, as anything but a regular file is).
    pub fn open_file(&self, name: &OsStr) -> Result<File, FacilityError> {
        let path = self.join(name);
        // Non-blocking: a FIFO swapped in after a check must not hang the open.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let file = openat(&self.file, name, flags, Mode::empty())
            .map(File::from)
            .map_err(|errno| FacilityError::io("open", &path, io(errno)))?;
        let meta = file
            .metadata()
            .map_err(|err| FacilityError::io("inspect", &path, err))?;
        if !meta.is_file() {
            return Err(FacilityError::new(format!(
                "`{}` changed while being read: it is no longer a regular file",
                path.display()
            )));
        }
        Ok(file)
    }

    /// Replace `name` atomically with a file holding what `contents` reads,
    /// owned and moded as `attributes` say before it appears at `name`. It is
    /// made at `.{name}.cattle-tmp` and renamed over `name`: a symbolic link
    /// or file there is replaced, never followed.
    pub fn write_file(
        &self,
        name: &OsStr,
        contents: &mut dyn Read,
        attributes: Attributes,
    ) -> Result<(), FacilityError> {
        let tmp = temporary_name(name);
        let tmp_path = self.join(&tmp);
        // An earlier attempt may have stopped between creating and renaming.
        self.remove(&tmp)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            &self.file,
            tmp.as_os_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|errno| FacilityError::io("create", &tmp_path, io(errno)))?;
        let mut file = File::from(fd);
        let result = std::io::copy(contents, &mut file)
            .map_err(|err| FacilityError::io("write", &tmp_path, err))
            .and_then(|_| set_attributes(&file, &tmp_path, attributes))
            .and_then(|()| {
                file.sync_all()
                    .map_err(|err| FacilityError::io("sync", &tmp_path, err))
            })
            .and_then(|()| {
                renameat(&self.file, tmp.as_os_str(), &self.file, name).map_err(|errno| {
                    FacilityError::new(format!(
                        "cannot rename `{}` to `{}`: {}",
                        tmp_path.display(),
                        self.join(name).display(),
                        io(errno)
                    ))
                })
            });
        if result.is_err() {
            let _ = unlinkat(&self.file, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Remove whatever is at `name`: a file, link or other is unlinked (a link
    /// itself, never its target), a directory removed with all it holds.
    /// Nothing there is fine.
    pub fn remove(&self, name: &OsStr) -> Result<(), FacilityError> {
        self.remove_below(name, 0)
    }

    fn remove_below(&self, name: &OsStr, depth: usize) -> Result<(), FacilityError> {
        let Some(stat) = self.stat(name)? else {
            return Ok(());
        };
        let path = self.join(name);
        if stat.kind == Kind::Directory {
            if depth >= MAX_DEPTH {
                return Err(FacilityError::permanent(format!(
                    "`{}` is more than {MAX_DEPTH} directories deep; refusing to remove it",
                    path.display()
                )));
            }
            let sub = self.subdir(name)?;
            for child in sub.names()? {
                sub.remove_below(&child, depth + 1)?;
            }
        }
        let flag = if stat.kind == Kind::Directory {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(&self.file, name, flag) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(FacilityError::io("remove", &path, io(errno))),
        }
    }

    /// The names in the directory, in byte order, without `.` and `..`.
    pub fn names(&self) -> Result<Vec<OsString>, FacilityError> {
        let err = |errno| FacilityError::io("list", &self.path, io(errno));
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::openat(&self.file, ".", flags, Mode::empty()).map_err(err)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    /// Flush the directory, so that renames in it survive a crash; not every
    /// file system can.
    pub fn sync(&self) {
        let _ = self.file.sync_all();
    }
}

/// `.{name}.cattle-tmp`: where a new `name` is written before it is renamed
/// into place, as [`crate::files::replace_atomically`] names it too.
pub fn temporary_name(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(".cattle-tmp");
    tmp
}

/// Whether `a` and `b` read the same bytes, read a block at a time.
pub fn same_contents(a: &mut dyn Read, b: &mut dyn Read) -> std::io::Result<bool> {
    let mut left = vec![0u8; 64 * 1024];
    let mut right = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(a, &mut left)?;
        let m = read_full(b, &mut right)?;
        if n != m || left[..n] != right[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Read until `buf` is full or the reader ends; how many bytes were read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn a_link_where_a_directory_must_be_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::create_dir(dir.path().join("tree")).unwrap();
        symlink(&outside, dir.path().join("tree/sub")).unwrap();
        symlink(&outside, dir.path().join("link")).unwrap();

        let err = Dir::open(&dir.path().join("link")).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("symbolic link"),
            "{err}"
        );
        let tree = Dir::open(&dir.path().join("tree")).unwrap();
        let err = tree.subdir(OsStr::new("sub")).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("symbolic link"),
            "{err}"
        );
        assert_eq!(
            tree.stat(OsStr::new("sub")).unwrap().unwrap().kind,
            Kind::Symlink
        );
    }

    #[test]
    fn writing_over_a_link_replaces_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        symlink(&target, dir.path().join("f")).unwrap();
        let tree = Dir::open(dir.path()).unwrap();
        let attributes = Attributes {
            mode: 0o640,
            uid: None,
            gid: None,
        };
        tree.write_file(OsStr::new("f"), &mut &b"new"[..], attributes)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f")).unwrap(),
            "new"
        );
        let meta = std::fs::symlink_metadata(dir.path().join("f")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert!(!dir.path().join(".f.cattle-tmp").exists());
    }

    #[test]
    fn removing_a_tree_removes_links_not_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("tree/a/b")).unwrap();
        std::fs::write(dir.path().join("tree/a/b/f"), "").unwrap();
        symlink(&outside, dir.path().join("tree/a/link")).unwrap();
        let tree = Dir::open(dir.path()).unwrap();
        tree.remove(OsStr::new("tree")).unwrap();
        assert!(!dir.path().join("tree").exists());
        assert!(outside.join("keep").exists());
        // Nothing there is fine.
        tree.remove(OsStr::new("tree")).unwrap();
    }

    #[test]
    fn names_are_sorted_and_contents_compared() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a", "c"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let tree = Dir::open(dir.path()).unwrap();
        assert_eq!(tree.names().unwrap(), ["a", "b", "c"]);
        let long = vec![7u8; 200_000];
        let mut other = long.clone();
        assert!(same_contents(&mut &long[..], &mut &other[..]).unwrap());
        other[150_000] = 8;
        assert!(!same_contents(&mut &long[..], &mut &other[..]).unwrap());
        assert!(!same_contents(&mut &long[..], &mut &long[..1000]).unwrap());
        assert!(same_contents(&mut &b""[..], &mut &b""[..]).unwrap());
    }
}

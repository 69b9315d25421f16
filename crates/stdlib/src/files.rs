//! Changing files so that a reader never sees half a change.
//!
//! Every file a facility writes is made at a temporary name beside its
//! destination, complete with contents, owner and mode, then renamed over it:
//! readers see the old file or the new one, and a file meant to be secret is
//! never readable by others, not even for a moment.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::facility::FacilityError;

/// Ownership and permissions for a file written by [`write_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Permission bits, e.g. `0o644` (set-ID and sticky bits included).
    pub mode: u32,
    /// `None`: the writer's (root's, for an agent).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Replace `dest` atomically with a file holding `contents`, owned and
/// moded as `attributes` say before it appears at `dest`.
pub fn write_file(
    dest: &Path,
    contents: &[u8],
    attributes: Attributes,
) -> Result<(), FacilityError> {
    copy_to_file(dest, &mut &contents[..], attributes)
}

/// [`write_file`] with the contents read from `contents` as they are written,
/// never all held in memory. A read error is reported as one on `dest`'s
/// temporary file; callers that read a file say which in their own errors.
pub fn copy_to_file(
    dest: &Path,
    contents: &mut dyn Read,
    attributes: Attributes,
) -> Result<(), FacilityError> {
    replace_atomically(dest, |tmp| {
        let mut file = create_private(tmp)?;
        std::io::copy(contents, &mut file).map_err(|err| FacilityError::io("write", tmp, err))?;
        set_attributes(&file, tmp, attributes)?;
        file.sync_all()
            .map_err(|err| FacilityError::io("sync", tmp, err))
    })
}

/// Create the new file `path` (never an existing one) that only its owner can
/// read: a temporary file stays private until its contents are checked and
/// its mode is set.
pub fn create_private(path: &Path) -> Result<File, FacilityError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| FacilityError::io("create", path, err))
}

/// The SHA-256 of what `reader` (reading `path`) yields, in lower-case hex.
pub fn sha256_hex(reader: &mut dyn Read, path: &Path) -> Result<String, FacilityError> {
    let mut hasher = Sha256::new();
    std::io::copy(reader, &mut hasher).map_err(|err| FacilityError::io("read", path, err))?;
    Ok(hex(&hasher.finalize()))
}

/// `bytes` in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Set `file`'s (at `path`) owner, then its mode: changing the owner clears
/// set-user-ID bits, so the mode goes last.
pub fn set_attributes(
    file: &File,
    path: &Path,
    attributes: Attributes,
) -> Result<(), FacilityError> {
    if attributes.uid.is_some() || attributes.gid.is_some() {
        std::os::unix::fs::fchown(file, attributes.uid, attributes.gid)
            .map_err(|err| FacilityError::io("set the owner of", path, err))?;
    }
    file.set_permissions(Permissions::from_mode(attributes.mode))
        .map_err(|err| FacilityError::io("set the mode of", path, err))
}

/// Change the owner and mode of `file` (at `path`, now `current`) to
/// `wanted` in place, never granting more than one of the two allows: the
/// mode is first narrowed to what both allow, then the owner changes, then
/// the mode is set (changing the owner clears set-user-ID bits, so the mode
/// goes last).
pub fn fix_attributes(
    file: &File,
    path: &Path,
    current: Attributes,
    wanted: Attributes,
) -> Result<(), FacilityError> {
    let owner_changes = wanted.uid.is_some_and(|uid| Some(uid) != current.uid)
        || wanted.gid.is_some_and(|gid| Some(gid) != current.gid);
    if owner_changes {
        file.set_permissions(Permissions::from_mode(current.mode & wanted.mode))
            .map_err(|err| FacilityError::io("set the mode of", path, err))?;
    }
    set_attributes(file, path, wanted)
}

/// Put a new `dest` in place atomically: `create` makes it at a temporary name
/// in the same directory (`.{name}.cattle-tmp`), which is then renamed over
/// `dest`. The temporary is removed if anything fails.
pub fn replace_atomically(
    dest: &Path,
    create: impl FnOnce(&Path) -> Result<(), FacilityError>,
) -> Result<(), FacilityError> {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Err(FacilityError::new(format!(
            "cannot replace `{}`: it does not name a file in a directory",
            dest.display()
        )));
    };
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(FacilityError::permanent(format!(
                "`{}` is not a directory, so `{}` cannot be created in it",
                parent.display(),
                dest.display()
            )));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(FacilityError::permanent(format!(
                "directory `{}` does not exist; add a `make_dir` step for it before this one",
                parent.display()
            )));
        }
        Err(err) => return Err(FacilityError::io("inspect", parent, err)),
    }

    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".cattle-tmp");
    let tmp = parent.join(tmp_name);
    // An earlier attempt may have stopped between creating and renaming.
    match std::fs::remove_file(&tmp) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(FacilityError::io("remove the leftover", &tmp, err));
        }
        _ => {}
    }

    let result = create(&tmp).and_then(|()| {
        std::fs::rename(&tmp, dest).map_err(|err| {
            FacilityError::new(format!(
                "cannot rename `{}` to `{}`: {err}",
                tmp.display(),
                dest.display()
            ))
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // Make the rename durable too; not every file system can sync a directory.
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

//! `install_file`: the file at `dest` has the contents of `source` from the config directory.
//!
//! The file is replaced atomically (written beside `dest`, then renamed over it),
//! so a reader never sees half a file. A new file gets mode 0644; a replaced
//! file keeps its mode and owner. A symbolic link at `dest` is replaced by a file.
//!
//! Also home of [`replace_atomically`], which `symlink` shares.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::facility::{Check, Context, Facility, FacilityError};
use crate::steps::{ArgError, Args};

pub(crate) const ARGS: &[&str] = &["source", "dest"];

/// Mode of a file that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;

pub(crate) fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_source = args.error(
        "source",
        "argument `source` must name a regular file in the config directory",
    );
    let source = PathBuf::from(args.required_str("source")?);
    let shown = source.display();
    let config_dir = args.config_dir();
    if source.is_absolute() {
        return Err(bad_source.with_hint(format!(
            "`{shown}` is absolute; write it relative to the config directory, e.g. `files/motd`"
        )));
    }
    if source.components().any(|c| c == Component::ParentDir) {
        return Err(bad_source.with_hint(format!(
            "`{shown}` uses `..`; only files inside the config directory are uploaded"
        )));
    }
    match std::fs::symlink_metadata(config_dir.join(&source)) {
        Ok(meta) if meta.is_file() => {}
        Ok(meta) if meta.is_dir() => {
            return Err(bad_source.with_hint(format!("`{shown}` is a directory")));
        }
        Ok(_) => {
            return Err(bad_source.with_hint(format!(
                "`{shown}` is not a regular file; copy the file itself into the config"
            )));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad_source.with_hint(format!(
                "there is no `{shown}` in `{}`",
                config_dir.display()
            )));
        }
        Err(err) => {
            return Err(bad_source.with_hint(format!("cannot inspect `{shown}`: {err}")));
        }
    }
    Ok(Box::new(InstallFile {
        source,
        dest: args.absolute_path("dest")?,
    }))
}

#[derive(Debug)]
struct InstallFile {
    /// Relative to the config directory.
    source: PathBuf,
    dest: PathBuf,
}

impl InstallFile {
    /// The file at `dest` if it is a regular file, `None` if there is none to keep.
    fn existing(&self) -> Result<Option<std::fs::Metadata>, FacilityError> {
        match std::fs::symlink_metadata(&self.dest) {
            Ok(meta) if meta.is_file() => Ok(Some(meta)),
            Ok(meta) if meta.is_symlink() => Ok(None),
            Ok(meta) if meta.is_dir() => Err(FacilityError::new(format!(
                "`{}` is a directory; `dest` must name the file itself, e.g. `{}`",
                self.dest.display(),
                self.dest
                    .join(self.source.file_name().unwrap_or_default())
                    .display()
            ))),
            Ok(_) => Err(FacilityError::new(format!(
                "`{}` exists and is not a regular file; refusing to replace it",
                self.dest.display()
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(FacilityError::io("inspect", &self.dest, err)),
        }
    }

    fn read_source(&self, ctx: &Context) -> Result<Vec<u8>, FacilityError> {
        let path = ctx.config_dir.join(&self.source);
        std::fs::read(&path).map_err(|err| FacilityError::io("read", &path, err))
    }
}

impl Facility for InstallFile {
    fn name(&self) -> &'static str {
        "install_file"
    }

    fn describe(&self) -> String {
        format!(
            "file {} has the contents of {}",
            self.dest.display(),
            self.source.display()
        )
    }

    fn check(&self, ctx: &Context) -> Result<Check, FacilityError> {
        let Some(meta) = self.existing()? else {
            return Ok(Check::Run);
        };
        let wanted = self.read_source(ctx)?;
        if meta.len() != wanted.len() as u64 {
            return Ok(Check::Run);
        }
        let current =
            std::fs::read(&self.dest).map_err(|err| FacilityError::io("read", &self.dest, err))?;
        Ok(if current == wanted {
            Check::AlreadyDone
        } else {
            Check::Run
        })
    }

    fn apply(&self, ctx: &Context, _output: &mut dyn FnMut(&str)) -> Result<(), FacilityError> {
        let contents = self.read_source(ctx)?;
        let existing = self.existing()?;
        replace_atomically(&self.dest, |tmp| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(tmp)
                .map_err(|err| FacilityError::io("create", tmp, err))?;
            file.write_all(&contents)
                .map_err(|err| FacilityError::io("write", tmp, err))?;
            // Owner before mode: changing the owner clears set-user-ID bits.
            if let Some(old) = &existing {
                let new = file
                    .metadata()
                    .map_err(|err| FacilityError::io("inspect", tmp, err))?;
                if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
                    std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()))
                        .map_err(|err| FacilityError::io("set the owner of", tmp, err))?;
                }
            }
            let mode = existing
                .as_ref()
                .map_or(NEW_FILE_MODE, |old| old.mode() & 0o7777);
            file.set_permissions(Permissions::from_mode(mode))
                .map_err(|err| FacilityError::io("set the mode of", tmp, err))?;
            file.sync_all()
                .map_err(|err| FacilityError::io("sync", tmp, err))
        })
    }
}

/// Put a new `dest` in place atomically: `create` makes it at a temporary name
/// in the same directory (`.{name}.cattle-tmp`), which is then renamed over
/// `dest`. The temporary is removed if anything fails.
pub(super) fn replace_atomically(
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
            return Err(FacilityError::new(format!(
                "`{}` is not a directory, so `{}` cannot be created in it",
                parent.display(),
                dest.display()
            )));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(FacilityError::new(format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Plan;

    fn setup() -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/poem.txt"), "roses are red\n").unwrap();
        let ctx = Context::new(dir.path().join("config"));
        (dir, ctx)
    }

    fn poem(dest: PathBuf) -> InstallFile {
        InstallFile {
            source: PathBuf::from("poem.txt"),
            dest,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn installs_a_new_file_with_mode_0644_then_skips() {
        let (dir, ctx) = setup();
        let dest = dir.path().join("poem.txt");
        let f = poem(dest.clone());
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        f.apply(&ctx, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "roses are red\n");
        assert_eq!(mode(&dest), 0o644);
        assert_eq!(f.check(&ctx).unwrap(), Check::AlreadyDone);
        assert!(!dir.path().join(".poem.txt.cattle-tmp").exists());
    }

    #[test]
    fn replaces_different_contents_and_keeps_the_mode() {
        let (dir, ctx) = setup();
        let dest = dir.path().join("poem.txt");
        // Same length, different bytes.
        std::fs::write(&dest, "roses are RED\n").unwrap();
        std::fs::set_permissions(&dest, Permissions::from_mode(0o600)).unwrap();
        let f = poem(dest.clone());
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        f.apply(&ctx, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "roses are red\n");
        assert_eq!(mode(&dest), 0o600);
        assert_eq!(f.check(&ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced() {
        let (dir, ctx) = setup();
        std::fs::write(dir.path().join(".poem.txt.cattle-tmp"), "half a po").unwrap();
        let f = poem(dir.path().join("poem.txt"));
        f.apply(&ctx, &mut |_| {}).unwrap();
        assert_eq!(f.check(&ctx).unwrap(), Check::AlreadyDone);
        assert!(!dir.path().join(".poem.txt.cattle-tmp").exists());
    }

    #[test]
    fn a_symlink_at_dest_is_replaced_and_its_target_left_alone() {
        let (dir, ctx) = setup();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep me").unwrap();
        let dest = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &dest).unwrap();
        let f = poem(dest.clone());
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        f.apply(&ctx, &mut |_| {}).unwrap();
        assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(mode(&dest), 0o644);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(f.check(&ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn a_directory_at_dest_is_an_error() {
        let (dir, ctx) = setup();
        std::fs::create_dir(dir.path().join("poems")).unwrap();
        let f = poem(dir.path().join("poems"));
        let err = f.check(&ctx).unwrap_err();
        assert!(err.0.contains("is a directory"), "{err}");
        assert!(f.apply(&ctx, &mut |_| {}).is_err());
    }

    #[test]
    fn a_missing_parent_directory_is_an_error_with_a_hint() {
        let (dir, ctx) = setup();
        let f = poem(dir.path().join("missing/poem.txt"));
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        let err = f.apply(&ctx, &mut |_| {}).unwrap_err();
        assert!(err.0.contains("missing"), "{err}");
        assert!(err.0.contains("make_dir"), "{err}");
    }

    #[test]
    fn a_missing_source_cannot_be_compared() {
        let (dir, ctx) = setup();
        std::fs::write(dir.path().join("dest"), "x").unwrap();
        let f = InstallFile {
            source: PathBuf::from("gone.txt"),
            dest: dir.path().join("dest"),
        };
        let err = f.check(&ctx).unwrap_err();
        assert!(err.0.starts_with("cannot read `"), "{err}");
        assert!(err.0.contains("gone.txt"), "{err}");
    }

    #[test]
    fn build_checks_the_source_before_anything_is_uploaded() {
        let (dir, ctx) = setup();
        std::fs::create_dir(ctx.config_dir.join("files")).unwrap();
        let parse = |source: &str| {
            let steps = format!(
                "[[step]]\nfacility = \"install_file\"\nsource = \"{source}\"\ndest = \"/tmp/x\"\n"
            );
            Plan::parse(&steps, Path::new("cattle.toml"), &ctx.config_dir)
        };
        let plan = parse("poem.txt").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "file /tmp/x has the contents of poem.txt"
        );
        for (bad, hint) in [
            ("../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("nope.txt", "there is no `nope.txt`"),
            ("files", "is a directory"),
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(
                err.message,
                "argument `source` must name a regular file in the config directory"
            );
            assert_eq!(err.position, Some((3, 10)), "{bad}");
            assert!(err.hint.as_deref().unwrap().contains(hint), "{bad}: {err}");
        }
        drop(dir);
    }
}

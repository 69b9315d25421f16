//! `install_file`: the file at `dest` has the contents of `source` from the config directory.
//!
//! The file is replaced atomically (written beside `dest`, then renamed over it),
//! so a reader never sees half a file. A new file gets mode 0644; a replaced
//! file keeps its mode and owner. A symbolic link at `dest` is replaced by a file.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::diff::{Diff, Side, link_note};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{Attributes, write_file};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "install_file",
    args: &["source", "dest"],
    summary: "copy a file from the config to the host; skipped when identical",
    build,
};

/// Mode of a file that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(InstallFile {
        source: args.config_file("source")?,
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
            Ok(meta) if meta.is_dir() => Err(FacilityError::permanent(format!(
                "`{}` is a directory; `dest` must name the file itself, e.g. `{}`",
                self.dest.display(),
                self.dest
                    .join(self.source.file_name().unwrap_or_default())
                    .display()
            ))),
            Ok(_) => Err(FacilityError::permanent(format!(
                "`{}` exists and is not a regular file; refusing to replace it",
                self.dest.display()
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(FacilityError::io("inspect", &self.dest, err)),
        }
    }

    fn read_source(&self, ctx: &Context<'_>) -> Result<Vec<u8>, FacilityError> {
        let path = ctx.config_dir().join(&self.source);
        std::fs::read(&path).map_err(|err| FacilityError::io("read", &path, err))
    }
}

impl Facility for InstallFile {
    fn describe(&self) -> String {
        format!(
            "file {} has the contents of {}",
            self.dest.display(),
            self.source.display()
        )
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
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

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let contents = self.read_source(ctx)?;
        let attributes = match self.existing()? {
            Some(old) => Attributes {
                mode: old.mode() & 0o7777,
                uid: Some(old.uid()),
                gid: Some(old.gid()),
            },
            None => Attributes {
                mode: NEW_FILE_MODE,
                uid: None,
                gid: None,
            },
        };
        write_file(&self.dest, &contents, attributes)?;
        Ok(Applied::Changed)
    }

    fn diff(&self, ctx: &mut Context<'_>) -> Result<Option<Diff>, FacilityError> {
        let new = Side::of(self.read_source(ctx)?);
        Ok(Some(match self.existing()? {
            Some(meta) => {
                let file = std::fs::File::open(&self.dest)
                    .map_err(|err| FacilityError::io("read", &self.dest, err))?;
                let old = Side::read(&mut &file, meta.len(), &self.dest)?;
                let mode = Some(meta.mode() & 0o7777);
                Diff::new(&self.dest, (old, mode), (new, mode))
            }
            None => {
                let diff = Diff::new(&self.dest, (Side::Absent, None), (new, Some(NEW_FILE_MODE)));
                match link_note(&self.dest) {
                    Some(note) => diff.note(note),
                    None => diff,
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{apply, check, diff};
    use crate::steps::Plan;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn setup() -> (tempfile::TempDir, Environment) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/poem.txt"), "roses are red\n").unwrap();
        let ctx = Environment::new(dir.path().join("config"));
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
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "roses are red\n");
        assert_eq!(mode(&dest), 0o644);
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
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
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "roses are red\n");
        assert_eq!(mode(&dest), 0o600);
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn the_diff_shows_the_contents_and_mode_it_leaves_and_changes_nothing() {
        let (dir, ctx) = setup();
        let dest = dir.path().join("poem.txt");
        let f = poem(dest.clone());
        let d = dest.display();
        let headers = format!("--- {d} (on the host)\n+++ {d} (as the step leaves it)");
        assert_eq!(
            diff(&f, &ctx, dir.path()).unwrap(),
            format!("{headers}\nnew file, mode 0644\n@@ -0,0 +1 @@\n+roses are red")
        );
        // A replaced file keeps its mode: no line about it.
        std::fs::write(&dest, "roses are red\nviolets are blue").unwrap();
        std::fs::set_permissions(&dest, Permissions::from_mode(0o664)).unwrap();
        assert_eq!(
            diff(&f, &ctx, dir.path()).unwrap(),
            format!(
                "{headers}\n@@ -1,2 +1 @@\n roses are red\n-violets are blue\n\
                 \\ No newline at end of file"
            )
        );
        std::fs::write(&dest, b"\x7fELF\0\0").unwrap();
        assert_eq!(
            diff(&f, &ctx, dir.path()).unwrap(),
            format!("{headers}\nbinary file differs, 6 → 14 bytes")
        );
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced() {
        let (dir, ctx) = setup();
        std::fs::write(dir.path().join(".poem.txt.cattle-tmp"), "half a po").unwrap();
        let f = poem(dir.path().join("poem.txt"));
        apply(&f, &ctx).0.unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
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
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(mode(&dest), 0o644);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn a_directory_at_dest_is_an_error() {
        let (dir, ctx) = setup();
        std::fs::create_dir(dir.path().join("poems")).unwrap();
        let f = poem(dir.path().join("poems"));
        let err = check(&f, &ctx).unwrap_err();
        assert!(err.message().contains("is a directory"), "{err}");
        assert!(apply(&f, &ctx).0.is_err());
    }

    #[test]
    fn a_missing_parent_directory_is_an_error_with_a_hint() {
        let (dir, ctx) = setup();
        let f = poem(dir.path().join("missing/poem.txt"));
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        let err = apply(&f, &ctx).0.unwrap_err();
        assert!(err.message().contains("missing"), "{err}");
        assert!(err.message().contains("make_dir"), "{err}");
    }

    #[test]
    fn a_missing_source_cannot_be_compared() {
        let (dir, ctx) = setup();
        std::fs::write(dir.path().join("dest"), "x").unwrap();
        let f = InstallFile {
            source: PathBuf::from("gone.txt"),
            dest: dir.path().join("dest"),
        };
        let err = check(&f, &ctx).unwrap_err();
        assert!(err.message().starts_with("cannot read `"), "{err}");
        assert!(err.message().contains("gone.txt"), "{err}");
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

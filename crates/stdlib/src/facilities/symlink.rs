//! `symlink`: `dest` is a symbolic link whose target is exactly `source`.
//!
//! A link to something else is replaced atomically; a file or directory at
//! `dest` is never removed to make room (that is an `unlink` step's job).

use std::ffi::OsStr;
use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::replace_atomically;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "symlink",
    args: &["source", "dest"],
    summary: "make `dest` a symbolic link to `source`",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(Symlink {
        source: args.required_str("source")?,
        dest: args.absolute_path("dest")?,
    }))
}

#[derive(Debug)]
struct Symlink {
    /// The link target, verbatim: absolute, or relative to `dest`'s directory.
    source: String,
    dest: PathBuf,
}

impl Facility for Symlink {
    fn describe(&self) -> String {
        format!("{} is a symlink to {}", self.dest.display(), self.source)
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        match std::fs::symlink_metadata(&self.dest) {
            Ok(meta) if meta.is_symlink() => {
                let target = std::fs::read_link(&self.dest)
                    .map_err(|err| FacilityError::io("read the link", &self.dest, err))?;
                // Compare bytes: `Path` equality would ignore a trailing slash.
                Ok(if target.as_os_str() == OsStr::new(&self.source) {
                    Check::AlreadyDone
                } else {
                    Check::Run
                })
            }
            Ok(meta) => Err(FacilityError::permanent(format!(
                "`{}` exists and is a {}, not a symbolic link; refusing to replace it \
                 (add an `unlink` step before this one if it should go)",
                self.dest.display(),
                if meta.is_dir() { "directory" } else { "file" }
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Check::Run),
            Err(err) => Err(FacilityError::io("inspect", &self.dest, err)),
        }
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        // Look again: the rename below would silently replace a file put here since.
        self.check(ctx)?;
        replace_atomically(&self.dest, |tmp| {
            std::os::unix::fs::symlink(&self.source, tmp)
                .map_err(|err| FacilityError::io("create the symbolic link", tmp, err))
        })?;
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{apply, check};
    use crate::steps::Plan;
    use std::path::Path;

    fn link(source: &str, dest: PathBuf) -> Symlink {
        Symlink {
            source: source.to_string(),
            dest,
        }
    }

    #[test]
    fn creates_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let dest = dir.path().join("current");
        let f = link("releases/1", dest.clone());
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(std::fs::read_link(&dest).unwrap(), Path::new("releases/1"));
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
        assert!(!dir.path().join(".current.cattle-tmp").exists());
    }

    #[test]
    fn a_link_elsewhere_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let dest = dir.path().join("current");
        std::os::unix::fs::symlink("releases/1", &dest).unwrap();
        let f = link("releases/2", dest.clone());
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(std::fs::read_link(&dest).unwrap(), Path::new("releases/2"));
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);

        // A trailing slash makes a different link.
        let f = link("releases/2/", dest);
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
    }

    #[test]
    fn a_file_or_directory_in_the_way_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let file = dir.path().join("file");
        std::fs::write(&file, "data").unwrap();
        let f = link("/etc/hostname", file.clone());
        let err = check(&f, &ctx).unwrap_err();
        assert!(
            err.message().contains("is a file, not a symbolic link"),
            "{err}"
        );
        assert!(err.message().contains("unlink"), "{err}");
        assert!(apply(&f, &ctx).0.is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");

        let f = link("/etc", dir.path().to_path_buf());
        assert!(
            check(&f, &ctx)
                .unwrap_err()
                .message()
                .to_string()
                .contains("is a directory")
        );
    }

    #[test]
    fn a_missing_parent_directory_is_an_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let f = link("/etc", dir.path().join("missing/link"));
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        let err = apply(&f, &ctx).0.unwrap_err();
        assert!(err.message().contains("make_dir"), "{err}");
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"symlink\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("source = \"../shared\"\ndest = \"/srv/app/shared\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "/srv/app/shared is a symlink to ../shared"
        );
        let err = parse("source = \"/x\"\ndest = \"srv/link\"").unwrap_err();
        assert!(err.message.contains("absolute path"), "{err}");
        assert!(parse("dest = \"/srv/link\"").is_err());
    }
}

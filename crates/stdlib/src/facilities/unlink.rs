//! `unlink`: nothing exists at `path` (a file or symbolic link there is removed).
//!
//! A directory is never removed: that is refused as an error.

use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "unlink",
    args: &["path"],
    summary: "remove a file or symbolic link; missing is fine",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(Unlink {
        path: args.absolute_path("path")?,
    }))
}

#[derive(Debug)]
struct Unlink {
    path: PathBuf,
}

impl Facility for Unlink {
    fn describe(&self) -> String {
        format!("{} does not exist", self.path.display())
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_dir() => Err(FacilityError::permanent(format!(
                "`{}` is a directory; unlink removes only files and symbolic links",
                self.path.display()
            ))),
            Ok(_) => Ok(Check::Run),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Check::AlreadyDone),
            Err(err) => Err(FacilityError::io("inspect", &self.path, err)),
        }
    }

    fn apply(&self, _ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        match std::fs::remove_file(&self.path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(FacilityError::io("remove", &self.path, err))
            }
            _ => Ok(Applied::Changed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{apply, check};
    use crate::steps::Plan;
    use std::path::Path;

    #[test]
    fn removes_a_file_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let f = Unlink {
            path: dir.path().join("f"),
        };
        std::fs::write(&f.path, "").unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert!(!f.path.exists());
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
        // Already gone (e.g. a retry after the removal): still fine.
        apply(&f, &ctx).0.unwrap();
    }

    #[test]
    fn removes_a_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let f = Unlink {
            path: dir.path().join("link"),
        };
        std::os::unix::fs::symlink(&target, &f.path).unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert!(std::fs::symlink_metadata(&f.path).is_err());
        assert!(target.is_dir());
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn a_directory_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let f = Unlink {
            path: dir.path().join("d"),
        };
        std::fs::create_dir(&f.path).unwrap();
        let err = check(&f, &ctx).unwrap_err();
        assert!(err.message().contains("is a directory"), "{err}");
        assert!(apply(&f, &ctx).0.is_err());
        assert!(f.path.is_dir());
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan::parse(
            "[[step]]\nfacility = \"unlink\"\npath = \"/etc/nginx/sites-enabled/default\"\n",
            Path::new("cattle.toml"),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "/etc/nginx/sites-enabled/default does not exist"
        );
        let err = Plan::parse(
            "[[step]]\nfacility = \"unlink\"\npath = \"tmp/x\"\n",
            Path::new("cattle.toml"),
            dir.path(),
        )
        .unwrap_err();
        assert!(err.message.contains("absolute path"), "{err}");
    }
}

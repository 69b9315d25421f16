//! `make_dir`: a directory exists at `path` (parents are created too).

use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "make_dir",
    args: &["path"],
    summary: "create a directory and its parents",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(MakeDir {
        path: args.absolute_path("path")?,
    }))
}

#[derive(Debug)]
struct MakeDir {
    path: PathBuf,
}

impl Facility for MakeDir {
    fn describe(&self) -> String {
        format!("directory {} exists", self.path.display())
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_dir() => Ok(Check::AlreadyDone),
            Ok(_) => Err(FacilityError::permanent(format!(
                "`{}` exists and is not a directory; remove it or choose another path",
                self.path.display()
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Check::Run),
            Err(err) => Err(FacilityError::io("inspect", &self.path, err)),
        }
    }

    fn apply(&self, _ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        std::fs::create_dir_all(&self.path)
            .map_err(|err| FacilityError::io("create directory", &self.path, err))?;
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply, check};

    #[test]
    fn creates_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let f = MakeDir {
            path: dir.path().join("a/b"),
        };
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn a_file_in_the_way_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        let f = MakeDir {
            path: dir.path().join("f"),
        };
        let err = f.check_in(&Environment::new(dir.path())).unwrap_err();
        assert!(err.message().contains("is not a directory"), "{err}");
    }
}

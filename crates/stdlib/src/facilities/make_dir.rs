//! `make_dir`: a directory exists at `path` (parents are created too).

use std::path::PathBuf;

use crate::facility::{Check, Context, Facility, FacilityError};
use crate::steps::{ArgError, Args};

pub(crate) const ARGS: &[&str] = &["path"];

pub(crate) fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(MakeDir {
        path: args.absolute_path("path")?,
    }))
}

#[derive(Debug)]
struct MakeDir {
    path: PathBuf,
}

impl Facility for MakeDir {
    fn name(&self) -> &'static str {
        "make_dir"
    }

    fn describe(&self) -> String {
        format!("directory {} exists", self.path.display())
    }

    fn check(&self, _ctx: &Context) -> Result<Check, FacilityError> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_dir() => Ok(Check::AlreadyDone),
            Ok(_) => Err(FacilityError::new(format!(
                "`{}` exists and is not a directory; remove it or choose another path",
                self.path.display()
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Check::Run),
            Err(err) => Err(FacilityError::io("inspect", &self.path, err)),
        }
    }

    fn apply(&self, _ctx: &Context, _output: &mut dyn FnMut(&str)) -> Result<(), FacilityError> {
        std::fs::create_dir_all(&self.path)
            .map_err(|err| FacilityError::io("create directory", &self.path, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(dir.path());
        let f = MakeDir {
            path: dir.path().join("a/b"),
        };
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        f.apply(&ctx, &mut |_| {}).unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert_eq!(f.check(&ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn a_file_in_the_way_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        let f = MakeDir {
            path: dir.path().join("f"),
        };
        let err = f.check(&Context::new(dir.path())).unwrap_err();
        assert!(err.0.contains("is not a directory"), "{err}");
    }
}

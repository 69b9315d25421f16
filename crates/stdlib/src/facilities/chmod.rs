//! `chmod`: the path has the permission bits `mode` (given as an octal string).
//!
//! Like chmod(1), a symbolic link is followed: the mode of its target is set.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "chmod",
    args: &["path", "mode"],
    summary: "set a path's permission bits",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let path = args.absolute_path("path")?;
    let mode = args.mode("mode")?;
    Ok(Box::new(Chmod { path, mode }))
}

#[derive(Debug)]
struct Chmod {
    path: PathBuf,
    mode: u32,
}

impl Facility for Chmod {
    fn describe(&self) -> String {
        format!("{} has mode {:04o}", self.path.display(), self.mode)
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.permissions().mode() & 0o7777 == self.mode => Ok(Check::AlreadyDone),
            Ok(_) => Ok(Check::Run),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(FacilityError::permanent(format!(
                    "`{}` does not exist; create it in an earlier step",
                    self.path.display()
                )))
            }
            Err(err) => Err(FacilityError::io("inspect", &self.path, err)),
        }
    }

    fn apply(&self, _ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        std::fs::set_permissions(&self.path, Permissions::from_mode(self.mode))
            .map_err(|err| FacilityError::io("set the mode of", &self.path, err))?;
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_mode;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply, check};
    use crate::steps::Plan;
    use std::path::Path;

    #[test]
    fn sets_the_mode_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let path = dir.path().join("poem.txt");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let f = Chmod {
            path: path.clone(),
            mode: 0o666,
        };
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o666);
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn special_bits_count() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let f = Chmod {
            path: dir.path().join("d"),
            mode: 0o1777,
        };
        std::fs::create_dir(&f.path).unwrap();
        std::fs::set_permissions(&f.path, Permissions::from_mode(0o777)).unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn a_missing_path_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let f = Chmod {
            path: dir.path().join("nope"),
            mode: 0o644,
        };
        let err = f.check_in(&Environment::new(dir.path())).unwrap_err();
        assert!(err.message().contains("does not exist"), "{err}");
        assert!(f.apply_in(&Environment::new(dir.path())).is_err());
    }

    #[test]
    fn parses_three_or_four_octal_digits() {
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0666"), Some(0o666));
        assert_eq!(parse_mode("4755"), Some(0o4755));
        for bad in ["", "64", "0999", "12345", "+644", "rw-", "0o644"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    #[test]
    fn build_wants_a_quoted_octal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |mode: &str| {
            let steps = format!("[[step]]\nfacility = \"chmod\"\npath = \"/x\"\nmode = {mode}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("\"644\"").unwrap();
        assert_eq!(plan.steps[0].facility.describe(), "/x has mode 0644");

        for bad in ["644", "\"0999\"", "\"\"", "[\"0644\"]"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(
                err.message, "argument `mode` must be a quoted octal string such as \"0644\"",
                "{bad}"
            );
            assert_eq!(err.position, Some((4, 8)), "{bad}");
        }
        let err = parse("644").unwrap_err();
        assert!(err.hint.unwrap().contains("quotes"));

        let missing = Plan::parse(
            "[[step]]\nfacility = \"chmod\"\npath = \"/x\"\n",
            Path::new("cattle.toml"),
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(missing.message, "step `chmod` is missing argument `mode`");
    }
}

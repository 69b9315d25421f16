//! `chown`: the path has the owner and/or group given (names or numeric ids).
//!
//! Names are looked up on the host when the step runs, not when the steps file
//! is read: an earlier step may create the user. A symbolic link itself is
//! changed, not its target.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::FacilitySpec;
use crate::accounts::{resolve_group, resolve_user};
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "chown",
    args: &["path", "owner", "group"],
    summary: "set a path's owner and/or group",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let path = args.absolute_path("path")?;
    let owner = args.optional_str("owner")?;
    let group = args.optional_str("group")?;
    if owner.is_none() && group.is_none() {
        return Err(args
            .error("owner", "step `chown` needs `owner`, `group` or both")
            .with_hint("add e.g. `owner = \"root\"` or `group = \"adm\"` to this step"));
    }
    Ok(Box::new(Chown { path, owner, group }))
}

#[derive(Debug)]
struct Chown {
    path: PathBuf,
    owner: Option<String>,
    group: Option<String>,
}

impl Chown {
    /// The wanted uid and gid, looked up now.
    fn ids(&self) -> Result<(Option<u32>, Option<u32>), FacilityError> {
        let uid = self.owner.as_deref().map(resolve_user).transpose()?;
        let gid = self.group.as_deref().map(resolve_group).transpose()?;
        Ok((uid, gid))
    }
}

impl Facility for Chown {
    fn describe(&self) -> String {
        format!(
            "{} is owned by {}:{}",
            self.path.display(),
            self.owner.as_deref().unwrap_or("*"),
            self.group.as_deref().unwrap_or("*")
        )
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let (uid, gid) = self.ids()?;
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(FacilityError::permanent(format!(
                    "`{}` does not exist; create it in an earlier step",
                    self.path.display()
                )));
            }
            Err(err) => return Err(FacilityError::io("inspect", &self.path, err)),
        };
        let done =
            uid.is_none_or(|uid| uid == meta.uid()) && gid.is_none_or(|gid| gid == meta.gid());
        Ok(if done { Check::AlreadyDone } else { Check::Run })
    }

    fn apply(&self, _ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let (uid, gid) = self.ids()?;
        std::os::unix::fs::lchown(&self.path, uid, gid)
            .map_err(|err| FacilityError::io("change the owner of", &self.path, err))?;
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply, check};
    use crate::steps::Plan;
    use nix::unistd::{Group, User};
    use std::path::Path;

    fn chown(path: PathBuf, owner: Option<&str>, group: Option<&str>) -> Chown {
        Chown {
            path,
            owner: owner.map(str::to_string),
            group: group.map(str::to_string),
        }
    }

    fn is_root() -> bool {
        if nix::unistd::Uid::effective().is_root() {
            return true;
        }
        eprintln!("not running as root: skipping the ownership change");
        false
    }

    #[test]
    fn owned_by_us_is_already_done() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let path = dir.path().join("f");
        std::fs::write(&path, "").unwrap();
        let me = nix::unistd::Uid::effective().as_raw().to_string();
        let my_group = nix::unistd::Gid::effective().as_raw().to_string();
        let f = chown(path, Some(&me), Some(&my_group));
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn changes_owner_and_group_then_skips() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let path = dir.path().join("f");
        std::fs::write(&path, "").unwrap();
        let group = ["nogroup", "nobody"]
            .into_iter()
            .find(|g| Group::from_name(g).ok().flatten().is_some())
            .expect("a group nogroup or nobody");

        let f = chown(path.clone(), Some("nobody"), Some(group));
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
        let nobody = User::from_name("nobody").unwrap().unwrap().uid.as_raw();
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), nobody);

        // Back by name for the owner only, by number for the group only.
        let f = chown(path.clone(), Some("root"), None);
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
        let f = chown(path.clone(), None, Some("0"));
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }

    #[test]
    fn a_symlink_itself_is_changed() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let f = chown(link.clone(), Some("nobody"), None);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);
    }

    #[test]
    fn an_unknown_user_or_group_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let path = dir.path().join("f");
        std::fs::write(&path, "").unwrap();
        let f = chown(path.clone(), Some("cattle-no-such-user"), None);
        let err = check(&f, &ctx).unwrap_err();
        assert!(
            err.message().contains("no user `cattle-no-such-user`"),
            "{err}"
        );
        assert!(apply(&f, &ctx).0.is_err());
        let f = chown(path, None, Some("cattle-no-such-group"));
        let err = check(&f, &ctx).unwrap_err();
        assert!(
            err.message().contains("no group `cattle-no-such-group`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_path_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let f = chown(dir.path().join("nope"), Some("0"), None);
        let err = f.check_in(&Environment::new(dir.path())).unwrap_err();
        assert!(err.message().contains("does not exist"), "{err}");
    }

    #[test]
    fn build_needs_owner_or_group_but_not_an_existing_user() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"chown\"\npath = \"/x\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("owner = \"cattle-created-later\"\ngroup = \"adm\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "/x is owned by cattle-created-later:adm"
        );
        let plan = parse("group = \"adm\"").unwrap();
        assert_eq!(plan.steps[0].facility.describe(), "/x is owned by *:adm");
        let err = parse("").unwrap_err();
        assert_eq!(err.message, "step `chown` needs `owner`, `group` or both");
        assert_eq!(err.position, Some((1, 1)));
    }
}

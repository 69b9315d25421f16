//! `group`: a local group exists (with the gid asked for) or does not.
//!
//! The check reads `/etc/group` itself; NSS may answer from a directory, and
//! only local groups are managed here. Changes go through the shadow tools
//! (`groupadd`, `groupmod`, `groupdel`), which lock the databases and keep
//! `/etc/gshadow` in step. `system` matters only when the group is created.

use super::FacilitySpec;
use crate::accounts::{AccountFiles, Accounts, account_name_hint, valid_account_name};
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::{Program, Ran};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "group",
    args: &["name", "state", "gid", "system"],
    summary: "a local group exists with the gid given, or does not",
    build,
};

/// The ids `uid` and `gid` may take: `u32::MAX` is `(gid_t) -1`, "no id".
pub(crate) const ID_RANGE: std::ops::RangeInclusive<i64> = 0..=(u32::MAX as i64 - 1);

/// The values of `state` for accounts and packages.
pub(crate) const PRESENCE: &[&str] = &["present", "absent"];

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_name = args.error("name", "argument `name` must be a group name");
    let name = args.required_str("name")?;
    if !valid_account_name(&name) {
        return Err(bad_name.with_hint(account_name_hint(&name)));
    }
    let present = args.optional_choice("state", PRESENCE)? != Some("absent");
    let gid = args.optional_int("gid", ID_RANGE)?.map(|gid| gid as u32);
    let system = args.optional_bool("system")?;
    if !present {
        for (key, given) in [("gid", gid.is_some()), ("system", system.is_some())] {
            if given {
                return Err(args
                    .error(
                        key,
                        format!("argument `{key}` has no use with `state = \"absent\"`"),
                    )
                    .with_hint(format!(
                        "remove `{key}`, or remove `state` to keep the group"
                    )));
            }
        }
    }
    Ok(Box::new(GroupFacility {
        name,
        present,
        gid,
        system: system.unwrap_or(false),
        files: AccountFiles::host(),
    }))
}

#[derive(Debug)]
struct GroupFacility {
    name: String,
    /// `state = "present"` (the default) or `"absent"`.
    present: bool,
    gid: Option<u32>,
    /// Create it as a system group (a gid from the system range).
    system: bool,
    files: AccountFiles,
}

impl GroupFacility {
    /// Run a shadow tool; `permanent` lists the exit statuses no retry can
    /// help with, and what to do about each.
    fn run(
        &self,
        ctx: &mut Context<'_>,
        program: Program,
        permanent: &[(i32, &str)],
    ) -> Result<(), FacilityError> {
        let ran: Ran = ctx.run(&program)?;
        if ran.success() {
            return Ok(());
        }
        let err = ran.error();
        match permanent.iter().find(|(code, _)| ran.code() == Some(*code)) {
            Some((_, advice)) => Err(FacilityError::permanent(format!(
                "{} (group `{}`): {advice}",
                err.message(),
                self.name
            ))),
            None => Err(err),
        }
    }
}

impl Facility for GroupFacility {
    fn describe(&self) -> String {
        if !self.present {
            return format!("group {} does not exist", self.name);
        }
        let mut line = format!("group {} exists", self.name);
        match (self.gid, self.system) {
            (Some(gid), true) => line.push_str(&format!(" (gid {gid}, system)")),
            (Some(gid), false) => line.push_str(&format!(" (gid {gid})")),
            (None, true) => line.push_str(" (system)"),
            (None, false) => {}
        }
        line
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let accounts = Accounts::read(&self.files)?;
        let done = match (accounts.group(&self.name), self.present) {
            (None, present) => !present,
            (Some(_), false) => false,
            (Some(group), true) => self.gid.is_none_or(|gid| gid == group.gid),
        };
        Ok(if done { Check::AlreadyDone } else { Check::Run })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let accounts = Accounts::read(&self.files)?;
        let existing = accounts.group(&self.name);
        if !self.present {
            if existing.is_some() {
                if let Some(user) =
                    existing.and_then(|g| accounts.users.iter().find(|user| user.gid == g.gid))
                {
                    return Err(FacilityError::permanent(format!(
                        "cannot remove group `{}`: it is the primary group of user `{}`; \
                         remove that user or give it another group in an earlier step",
                        self.name, user.name
                    )));
                }
                let groupdel = Program::new("groupdel")
                    .arg(&self.name)
                    .named(format!("groupdel {}", self.name));
                self.run(
                    ctx,
                    groupdel,
                    &[(8, "it is some user's primary group; change that user first")],
                )?;
            }
            return Ok(Applied::Changed);
        }

        if let Some(gid) = self.gid
            && let Some(other) = accounts.group_by_gid(gid)
            && other.name != self.name
        {
            return Err(FacilityError::permanent(format!(
                "cannot give group `{}` gid {gid}: group `{}` has it; \
                 choose another gid or remove that group in an earlier step",
                self.name, other.name
            )));
        }
        let in_use = "the gid is taken; choose another";
        match existing {
            None => {
                let mut groupadd = Program::new("groupadd");
                if let Some(gid) = self.gid {
                    groupadd = groupadd.args(["--gid".to_string(), gid.to_string()]);
                }
                if self.system {
                    groupadd = groupadd.arg("--system");
                }
                let groupadd = groupadd
                    .arg(&self.name)
                    .named(format!("groupadd {}", self.name));
                self.run(ctx, groupadd, &[(4, in_use)])?;
            }
            Some(group) => {
                if let Some(gid) = self.gid
                    && gid != group.gid
                {
                    let groupmod = Program::new("groupmod")
                        .args(["--gid".to_string(), gid.to_string(), self.name.clone()])
                        .named(format!("groupmod {}", self.name));
                    self.run(ctx, groupmod, &[(4, in_use)])?;
                }
            }
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::testing::fake_shadow;
    use crate::facility::testing::{Try, apply};
    use crate::steps::Plan;
    use std::path::Path;

    fn group(files: &AccountFiles, name: &str, gid: Option<u32>) -> GroupFacility {
        GroupFacility {
            name: name.to_string(),
            present: true,
            gid,
            system: false,
            files: files.clone(),
        }
    }

    fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    }

    #[test]
    fn creates_a_group_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = GroupFacility {
            system: true,
            ..group(&files, "deploy", Some(1500))
        };
        assert_eq!(f.describe(), "group deploy exists (gid 1500, system)");
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        assert_eq!(log(dir.path()), "", "the check ran a program");
        f.apply_in(&env).unwrap();
        assert_eq!(log(dir.path()), "groupadd --gid 1500 --system deploy\n");
        assert!(
            std::fs::read_to_string(&files.group)
                .unwrap()
                .ends_with("deploy:x:1500:\n")
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
        // Without a gid, any gid will do.
        assert_eq!(
            group(&files, "deploy", None).check_in(&env).unwrap(),
            Check::AlreadyDone
        );
    }

    #[test]
    fn changes_the_gid_of_an_existing_group() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = group(&files, "www-data", Some(3333));
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        f.apply_in(&env).unwrap();
        assert_eq!(log(dir.path()), "groupmod --gid 3333 www-data\n");
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn removes_a_group_and_a_missing_one_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = GroupFacility {
            present: false,
            ..group(&files, "sudo", None)
        };
        assert_eq!(f.describe(), "group sudo does not exist");
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        f.apply_in(&env).unwrap();
        assert_eq!(log(dir.path()), "groupdel sudo\n");
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
        assert!(
            !std::fs::read_to_string(&files.group)
                .unwrap()
                .contains("sudo")
        );
    }

    #[test]
    fn a_primary_group_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = GroupFacility {
            present: false,
            ..group(&files, "www-data", None)
        };
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.message(),
            "cannot remove group `www-data`: it is the primary group of user `www-data`; \
             remove that user or give it another group in an earlier step"
        );
        assert_eq!(log(dir.path()), "");
    }

    #[test]
    fn a_gid_another_group_has_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = group(&files, "deploy", Some(27));
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("cannot give group `deploy` gid 27: group `sudo` has it"),
            "{err}"
        );
        assert_eq!(log(dir.path()), "");
    }

    #[test]
    fn a_locked_database_is_retried_and_a_taken_gid_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        std::fs::write(
            dir.path().join("fail"),
            "cannot lock /etc/group; try again later.",
        )
        .unwrap();
        std::fs::write(dir.path().join("fail-status"), "10").unwrap();
        let f = group(&files, "deploy", None);
        let (result, lines) = apply(&f, &env);
        let err = result.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(
            err.message(),
            "`groupadd deploy` exited with status 10: \
             groupadd: cannot lock /etc/group; try again later."
        );
        assert_eq!(
            lines,
            ["stderr: groupadd: cannot lock /etc/group; try again later."]
        );
        std::fs::write(dir.path().join("fail-status"), "4").unwrap();
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .ends_with("(group `deploy`): the gid is taken; choose another")
        );
    }

    #[test]
    fn an_unreadable_database_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        std::fs::remove_file(&files.group).unwrap();
        assert!(group(&files, "deploy", None).check_in(&env).is_err());
        std::fs::write(&files.group, "deploy:x:oops:\n").unwrap();
        let err = group(&files, "deploy", None).check_in(&env).unwrap_err();
        assert!(err.is_permanent());
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"group\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("name = \"deploy\"\ngid = 1500").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "group deploy exists (gid 1500)"
        );
        let plan = parse("name = \"deploy\"\nstate = \"absent\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "group deploy does not exist"
        );

        let err = parse("name = \"Deploy\"").unwrap_err();
        assert_eq!(err.message, "argument `name` must be a group name");
        assert_eq!(err.position, Some((3, 8)));
        assert!(err.hint.unwrap().contains("a-z 0-9 _ -"));
        let err = parse("name = \"deploy\"\nstate = \"gone\"").unwrap_err();
        assert_eq!(err.message, "argument `state` cannot be `gone`");
        assert_eq!(err.position, Some((4, 9)));
        assert_eq!(err.hint.unwrap(), "valid choices: `present`, `absent`");
        let err = parse("name = \"deploy\"\ngid = -5").unwrap_err();
        assert_eq!(
            err.message,
            "argument `gid` must be an integer from 0 to 4294967294, not -5"
        );
        assert_eq!(err.position, Some((4, 7)));
        let err = parse("name = \"deploy\"\nstate = \"absent\"\nsystem = true").unwrap_err();
        assert_eq!(
            err.message,
            "argument `system` has no use with `state = \"absent\"`"
        );
        assert_eq!(err.position, Some((5, 10)));
        let err = parse("name = \"deploy\"\nsystem = \"yes\"").unwrap_err();
        assert_eq!(
            err.message,
            "argument `system` must be `true` or `false`, not string"
        );
        assert!(parse("gid = 5").is_err());
    }
}

//! `user`: a local user exists with the attributes asked for, or does not.
//!
//! The check reads `/etc/passwd` and `/etc/group` itself (NSS may answer from a
//! directory; only local accounts are managed here) and compares only the
//! attributes the step gives. Changes go through the shadow tools (`useradd`,
//! `usermod`, `userdel`), which lock the databases and keep the shadow files in
//! step. `system` and `create_home` matter only when the user is created; a
//! creation whose home directory cannot be made is undone, so that no user
//! without its home is left behind.

use std::collections::BTreeSet;

use super::FacilitySpec;
use super::group::{ID_RANGE, PRESENCE};
use crate::accounts::{AccountFiles, Accounts, account_name_hint, valid_account_name};
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::Program;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "user",
    args: &[
        "name",
        "state",
        "uid",
        "group",
        "groups",
        "append",
        "shell",
        "home",
        "system",
        "create_home",
    ],
    summary: "a local user exists with the attributes given, or does not",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_name = args.error("name", "argument `name` must be a user name");
    let name = args.required_str("name")?;
    if !valid_account_name(&name) {
        return Err(bad_name.with_hint(account_name_hint(&name)));
    }
    let present = args.optional_choice("state", PRESENCE)? != Some("absent");
    let uid = args.optional_int("uid", ID_RANGE)?.map(|uid| uid as u32);

    let bad_group = args.error("group", "argument `group` must be a group name or gid");
    let group = args.optional_str("group")?;
    if let Some(group) = &group
        && !valid_account_name(group)
        && !group
            .parse::<i64>()
            .is_ok_and(|gid| ID_RANGE.contains(&gid))
    {
        return Err(bad_group.with_hint(account_name_hint(group)));
    }

    let bad_groups = args.error("groups", "argument `groups` must list group names");
    let groups = args.optional_str_list_or_empty("groups")?;
    if let Some(bad) = groups.iter().flatten().find(|g| !valid_account_name(g)) {
        return Err(bad_groups.with_hint(account_name_hint(bad)));
    }
    let append = args.optional_bool("append")?;
    match (&groups, append) {
        (None, Some(_)) => {
            return Err(args
                .error("append", "argument `append` needs `groups`")
                .with_hint("list the supplementary groups in `groups`, or remove `append`"));
        }
        (Some(groups), Some(true)) if groups.is_empty() => {
            return Err(args
                .error(
                    "groups",
                    "`groups = []` with `append = true` asks for nothing",
                )
                .with_hint(
                    "list groups, or remove `append` to leave the user in no supplementary group",
                ));
        }
        _ => {}
    }

    let shell = passwd_path(args, "shell")?;
    let home = passwd_path(args, "home")?;
    let system = args.optional_bool("system")?;
    let create_home = args.optional_bool("create_home")?;

    if !present {
        let given = [
            ("uid", uid.is_some()),
            ("group", group.is_some()),
            ("groups", groups.is_some()),
            ("append", append.is_some()),
            ("shell", shell.is_some()),
            ("home", home.is_some()),
            ("system", system.is_some()),
            ("create_home", create_home.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, given)| *given) {
            return Err(args
                .error(
                    key,
                    format!("argument `{key}` has no use with `state = \"absent\"`"),
                )
                .with_hint(format!(
                    "remove `{key}`, or remove `state` to keep the user"
                )));
        }
    }
    let system = system.unwrap_or(false);
    Ok(Box::new(UserFacility {
        name,
        present,
        uid,
        group,
        groups: groups.map(|names| Groups {
            names: names.into_iter().collect(),
            exact: append != Some(true),
        }),
        shell,
        home,
        system,
        create_home: create_home.unwrap_or(!system),
        files: AccountFiles::host(),
    }))
}

/// An absolute path for a field of `/etc/passwd`, if present.
fn passwd_path(args: &mut Args<'_>, key: &str) -> Result<Option<String>, ArgError> {
    let bad = args.error(
        key,
        format!("argument `{key}` must not contain `:` or a line break"),
    );
    let path = args.optional_absolute_path(key)?;
    let Some(path) = path else { return Ok(None) };
    let path = path.to_string_lossy().into_owned();
    if path.contains([':', '\n', '\r']) {
        return Err(bad.with_hint("`/etc/passwd` separates its fields with `:`"));
    }
    Ok(Some(path))
}

/// The supplementary groups asked for.
#[derive(Debug)]
struct Groups {
    names: BTreeSet<String>,
    /// The user is in exactly these (`append = false`, the default), or at
    /// least in these (`append = true`).
    exact: bool,
}

#[derive(Debug)]
struct UserFacility {
    name: String,
    /// `state = "present"` (the default) or `"absent"`.
    present: bool,
    uid: Option<u32>,
    /// The primary group: a name or a gid.
    group: Option<String>,
    groups: Option<Groups>,
    shell: Option<String>,
    home: Option<String>,
    /// Create it as a system user (a uid from the system range).
    system: bool,
    /// Create its home directory when creating it.
    create_home: bool,
    files: AccountFiles,
}

/// What differs between the user as it is and as asked for.
#[derive(Debug, Default)]
struct Changes {
    uid: Option<u32>,
    /// The primary group as given (name or gid).
    group: Option<String>,
    /// The groups to pass to `usermod --groups`, and whether with `--append`.
    groups: Option<(Vec<String>, bool)>,
    shell: Option<String>,
    home: Option<String>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.uid.is_none()
            && self.group.is_none()
            && self.groups.is_none()
            && self.shell.is_none()
            && self.home.is_none()
    }
}

impl UserFacility {
    /// Whether the groups the step names exist, as an error naming the first
    /// that does not; and the gid of the primary group asked for.
    fn wanted_gid(&self, accounts: &Accounts) -> Result<Option<u32>, FacilityError> {
        let missing = |group: &str, role: &str| {
            FacilityError::permanent(format!(
                "group `{group}` ({role} of user `{}`) is not in `{}`; create it in an \
                 earlier `group` step",
                self.name,
                self.files.group.display()
            ))
        };
        if let Some(groups) = &self.groups
            && let Some(group) = groups.names.iter().find(|g| accounts.group(g).is_none())
        {
            return Err(missing(group, "a supplementary group"));
        }
        self.group
            .as_deref()
            .map(|group| {
                accounts
                    .find_group(group)
                    .map(|entry| entry.gid)
                    .ok_or_else(|| missing(group, "the primary group"))
            })
            .transpose()
    }

    /// What `usermod` must change for the user `accounts` has as `name`.
    fn changes(&self, accounts: &Accounts) -> Result<Option<Changes>, FacilityError> {
        let wanted_gid = self.wanted_gid(accounts)?;
        let Some(user) = accounts.user(&self.name) else {
            return Ok(None);
        };
        let mut changes = Changes {
            uid: self.uid.filter(|uid| *uid != user.uid),
            group: self
                .group
                .clone()
                .filter(|_| wanted_gid.is_some_and(|gid| gid != user.gid)),
            shell: self.shell.clone().filter(|shell| *shell != user.shell),
            home: self.home.clone().filter(|home| *home != user.home),
            groups: None,
        };
        if let Some(groups) = &self.groups {
            let current = accounts.supplementary_groups(&self.name);
            let wanted: BTreeSet<&str> = groups.names.iter().map(String::as_str).collect();
            if groups.exact && current != wanted {
                changes.groups = Some((groups.names.iter().cloned().collect(), false));
            } else if !groups.exact && !wanted.is_subset(&current) {
                let missing = wanted.difference(&current).map(|g| g.to_string());
                changes.groups = Some((missing.collect(), true));
            }
        }
        Ok(Some(changes))
    }

    /// Run a shadow tool; `permanent` lists the exit statuses no retry can
    /// help with, and what to do about each.
    fn run(
        &self,
        ctx: &mut Context<'_>,
        program: &Program,
        permanent: &[(i32, &str)],
    ) -> Result<(), FacilityError> {
        let ran = ctx.run(program)?;
        if ran.success() {
            return Ok(());
        }
        let err = ran.error();
        match permanent.iter().find(|(code, _)| ran.code() == Some(*code)) {
            Some((_, advice)) => Err(FacilityError::permanent(format!(
                "{} (user `{}`): {advice}",
                err.message(),
                self.name
            ))),
            None => Err(err),
        }
    }

    fn create(&self, ctx: &mut Context<'_>, accounts: &Accounts) -> Result<(), FacilityError> {
        let mut useradd = Program::new("useradd").named(format!("useradd {}", self.name));
        if let Some(uid) = self.uid {
            useradd = useradd.args(["--uid".to_string(), uid.to_string()]);
        }
        // Without `group`, useradd makes a group named after the user; when
        // one exists already (made by a `group` step), it must be told to use it.
        let group = self
            .group
            .clone()
            .or_else(|| accounts.group(&self.name).map(|g| g.name.clone()));
        if let Some(group) = group {
            useradd = useradd.args(["--gid".to_string(), group]);
        }
        if let Some(groups) = &self.groups
            && !groups.names.is_empty()
        {
            let list: Vec<&str> = groups.names.iter().map(String::as_str).collect();
            useradd = useradd.args(["--groups".to_string(), list.join(",")]);
        }
        if let Some(shell) = &self.shell {
            useradd = useradd.args(["--shell", shell]);
        }
        if let Some(home) = &self.home {
            useradd = useradd.args(["--home-dir", home]);
        }
        if self.system {
            useradd = useradd.arg("--system");
        }
        useradd = useradd
            .arg(if self.create_home {
                "--create-home"
            } else {
                "--no-create-home"
            })
            .arg(&self.name);
        let result = self.run(
            ctx,
            &useradd,
            &[
                (3, "an argument is not valid here"),
                (4, "the uid is taken; choose another"),
                (6, "the group does not exist"),
                (9, "the name is taken"),
            ],
        );
        // 12: the user was made but its home directory was not. Undo it, so
        // that the next attempt starts over instead of finding the user "done".
        if let Err(err) = result {
            if err.message().contains("exited with status 12") {
                let userdel = Program::new("userdel")
                    .arg(&self.name)
                    .named(format!("userdel {} (undoing useradd)", self.name));
                if let Err(undo) = ctx.run(&userdel).and_then(|ran| ran.ok().map(drop)) {
                    return Err(FacilityError::new(format!(
                        "{err}; and undoing it failed: {undo}; remove user `{}` by hand",
                        self.name
                    )));
                }
            }
            return Err(err);
        }
        Ok(())
    }

    fn modify(&self, ctx: &mut Context<'_>, changes: Changes) -> Result<(), FacilityError> {
        let mut usermod = Program::new("usermod").named(format!("usermod {}", self.name));
        if let Some(uid) = changes.uid {
            usermod = usermod.args(["--uid".to_string(), uid.to_string()]);
        }
        if let Some(group) = changes.group {
            usermod = usermod.args(["--gid".to_string(), group]);
        }
        if let Some((groups, append)) = changes.groups {
            if append {
                usermod = usermod.arg("--append");
            }
            usermod = usermod.args(["--groups".to_string(), groups.join(",")]);
        }
        if let Some(shell) = changes.shell {
            usermod = usermod.args(["--shell".to_string(), shell]);
        }
        if let Some(home) = changes.home {
            usermod = usermod.args(["--home".to_string(), home]);
        }
        self.run(
            ctx,
            &usermod.arg(&self.name),
            &[
                (3, "an argument is not valid here"),
                (4, "the uid is taken; choose another"),
                (6, "the user or a group does not exist"),
            ],
        )
    }
}

impl Facility for UserFacility {
    fn describe(&self) -> String {
        if !self.present {
            return format!("user {} does not exist", self.name);
        }
        let mut details = Vec::new();
        if let Some(uid) = self.uid {
            details.push(format!("uid {uid}"));
        }
        if let Some(group) = &self.group {
            details.push(format!("group {group}"));
        }
        if let Some(groups) = &self.groups {
            let names: Vec<&str> = groups.names.iter().map(String::as_str).collect();
            details.push(match (names.is_empty(), groups.exact) {
                (true, _) => "no supplementary groups".to_string(),
                (false, true) => format!("groups exactly {}", names.join(", ")),
                (false, false) => format!("groups include {}", names.join(", ")),
            });
        }
        if let Some(shell) = &self.shell {
            details.push(format!("shell {shell}"));
        }
        if let Some(home) = &self.home {
            details.push(format!("home {home}"));
        }
        if self.system {
            details.push("system".to_string());
        }
        if details.is_empty() {
            format!("user {} exists", self.name)
        } else {
            format!("user {} exists ({})", self.name, details.join(", "))
        }
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let accounts = Accounts::read(&self.files)?;
        if !self.present {
            return Ok(match accounts.user(&self.name) {
                Some(_) => Check::Run,
                None => Check::AlreadyDone,
            });
        }
        Ok(match self.changes(&accounts)? {
            Some(changes) if changes.is_empty() => Check::AlreadyDone,
            _ => Check::Run,
        })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let accounts = Accounts::read(&self.files)?;
        if !self.present {
            if accounts.user(&self.name).is_some() {
                let userdel = Program::new("userdel")
                    .arg(&self.name)
                    .named(format!("userdel {}", self.name));
                self.run(ctx, &userdel, &[])?;
            }
            return Ok(Applied::Changed);
        }
        if let Some(uid) = self.uid
            && let Some(other) = accounts.user_by_uid(uid)
            && other.name != self.name
        {
            return Err(FacilityError::permanent(format!(
                "cannot give user `{}` uid {uid}: user `{}` has it; \
                 choose another uid or remove that user in an earlier step",
                self.name, other.name
            )));
        }
        match self.changes(&accounts)? {
            None => self.create(ctx, &accounts)?,
            Some(changes) if !changes.is_empty() => self.modify(ctx, changes)?,
            Some(_) => {}
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::testing::fake_shadow;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply};
    use crate::steps::Plan;
    use std::path::Path;

    fn user(files: &AccountFiles, name: &str) -> UserFacility {
        UserFacility {
            name: name.to_string(),
            present: true,
            uid: None,
            group: None,
            groups: None,
            shell: None,
            home: None,
            system: false,
            create_home: true,
            files: files.clone(),
        }
    }

    fn groups(names: &[&str], exact: bool) -> Option<Groups> {
        Some(Groups {
            names: names.iter().map(|n| n.to_string()).collect(),
            exact,
        })
    }

    fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    }

    fn clear_log(dir: &Path) {
        let _ = std::fs::remove_file(dir.join("log"));
    }

    /// Check, apply, check: the state was not in place and is now.
    fn converge(f: &UserFacility, env: &Environment) {
        assert_eq!(f.check_in(env).unwrap(), Check::Run);
        f.apply_in(env).unwrap();
        assert_eq!(f.check_in(env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn creates_a_user_with_every_attribute_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = UserFacility {
            uid: Some(1500),
            group: Some("adm".into()),
            groups: groups(&["sudo", "www-data"], true),
            shell: Some("/bin/bash".into()),
            home: Some("/srv/deploy".into()),
            ..user(&files, "deploy")
        };
        assert_eq!(
            f.describe(),
            "user deploy exists (uid 1500, group adm, groups exactly sudo, www-data, \
             shell /bin/bash, home /srv/deploy)"
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        assert_eq!(log(dir.path()), "", "the check ran a program");
        f.apply_in(&env).unwrap();
        assert_eq!(
            log(dir.path()),
            "useradd --uid 1500 --gid adm --groups sudo,www-data --shell /bin/bash \
             --home-dir /srv/deploy --create-home deploy\n"
        );
        assert!(
            std::fs::read_to_string(&files.passwd)
                .unwrap()
                .ends_with("deploy:x:1500:4::/srv/deploy:/bin/bash\n")
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
        // A step that gives fewer attributes is in place too.
        assert_eq!(
            user(&files, "deploy").check_in(&env).unwrap(),
            Check::AlreadyDone
        );
    }

    #[test]
    fn a_system_user_gets_no_home_by_default_and_an_existing_group_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        std::fs::write(
            &files.group,
            std::fs::read_to_string(&files.group).unwrap() + "app:x:990:\n",
        )
        .unwrap();
        let f = UserFacility {
            system: true,
            create_home: false,
            ..user(&files, "app")
        };
        converge(&f, &env);
        assert_eq!(
            log(dir.path()),
            "useradd --gid app --system --no-create-home app\n"
        );
        assert!(
            std::fs::read_to_string(&files.passwd)
                .unwrap()
                .contains("\napp:x:3002:990:")
        );
    }

    #[test]
    fn modifies_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = UserFacility {
            uid: Some(33),
            group: Some("4".into()),
            shell: Some("/bin/sh".into()),
            home: Some("/var/www".into()),
            ..user(&files, "www-data")
        };
        converge(&f, &env);
        assert_eq!(
            log(dir.path()),
            "usermod --gid 4 --shell /bin/sh www-data\n"
        );
        assert!(
            std::fs::read_to_string(&files.passwd)
                .unwrap()
                .contains("www-data:x:33:4:www-data:/var/www:/bin/sh\n")
        );
        clear_log(dir.path());
        let f = UserFacility {
            uid: Some(1033),
            home: Some("/srv/www".into()),
            ..user(&files, "www-data")
        };
        converge(&f, &env);
        assert_eq!(
            log(dir.path()),
            "usermod --uid 1033 --home /srv/www www-data\n"
        );
    }

    #[test]
    fn exact_groups_add_and_remove_memberships() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        converge(
            &UserFacility {
                groups: groups(&["adm", "sudo"], true),
                ..user(&files, "www-data")
            },
            &env,
        );
        clear_log(dir.path());
        let f = UserFacility {
            groups: groups(&["sudo"], true),
            ..user(&files, "www-data")
        };
        converge(&f, &env);
        assert_eq!(log(dir.path()), "usermod --groups sudo www-data\n");
        assert_eq!(
            std::fs::read_to_string(&files.group).unwrap(),
            "root:x:0:\nadm:x:4:\nwww-data:x:33:\nsudo:x:27:www-data\n"
        );
        clear_log(dir.path());
        let f = UserFacility {
            groups: groups(&[], true),
            ..user(&files, "www-data")
        };
        assert_eq!(
            f.describe(),
            "user www-data exists (no supplementary groups)"
        );
        converge(&f, &env);
        assert_eq!(log(dir.path()), "usermod --groups  www-data\n");
        assert!(
            Accounts::read(&files)
                .unwrap()
                .supplementary_groups("www-data")
                .is_empty()
        );
    }

    #[test]
    fn appended_groups_add_the_missing_ones_and_keep_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        std::fs::write(
            &files.group,
            "root:x:0:\nadm:x:4:www-data\nwww-data:x:33:\nsudo:x:27:\nstaff:x:50:\n",
        )
        .unwrap();
        let f = UserFacility {
            groups: groups(&["adm", "staff", "sudo"], false),
            ..user(&files, "www-data")
        };
        assert_eq!(
            f.describe(),
            "user www-data exists (groups include adm, staff, sudo)"
        );
        converge(&f, &env);
        assert_eq!(
            log(dir.path()),
            "usermod --append --groups staff,sudo www-data\n"
        );
        // Memberships beyond the list do not matter with `append`.
        let f = UserFacility {
            groups: groups(&["staff"], false),
            ..user(&files, "www-data")
        };
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
        let f = UserFacility {
            groups: groups(&["staff"], true),
            ..user(&files, "www-data")
        };
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
    }

    #[test]
    fn a_missing_group_is_a_permanent_error_from_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = UserFacility {
            groups: groups(&["adm", "docker"], true),
            ..user(&files, "deploy")
        };
        let err = f.check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.message(),
            format!(
                "group `docker` (a supplementary group of user `deploy`) is not in `{}`; \
                 create it in an earlier `group` step",
                files.group.display()
            )
        );
        let f = UserFacility {
            group: Some("4242".into()),
            ..user(&files, "deploy")
        };
        let err = f.check_in(&env).unwrap_err();
        assert!(
            err.message()
                .starts_with("group `4242` (the primary group of user `deploy`)"),
            "{err}"
        );
        assert!(f.apply_in(&env).is_err());
        assert_eq!(log(dir.path()), "");
    }

    #[test]
    fn a_uid_another_user_has_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = UserFacility {
            uid: Some(33),
            ..user(&files, "deploy")
        };
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("cannot give user `deploy` uid 33: user `www-data` has it"),
            "{err}"
        );
        assert_eq!(log(dir.path()), "");
    }

    #[test]
    fn removes_a_user_and_a_missing_one_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        let f = UserFacility {
            present: false,
            ..user(&files, "www-data")
        };
        assert_eq!(f.describe(), "user www-data does not exist");
        converge(&f, &env);
        assert_eq!(log(dir.path()), "userdel www-data\n");
        assert!(Accounts::read(&files).unwrap().user("www-data").is_none());
    }

    #[test]
    fn a_home_that_cannot_be_made_undoes_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        // useradd makes the user, then fails to make its home.
        let bin = dir.path().join("bin");
        let useradd = std::fs::read_to_string(bin.join("useradd")).unwrap();
        crate::process::write_fake_program(
            &bin,
            "useradd",
            &format!(
                "{}\necho \"useradd: cannot create directory /nope/deploy\" >&2\nexit 12",
                useradd.trim_start_matches("#!/bin/sh\n")
            ),
        );
        let f = user(&files, "deploy");
        let (result, _) = apply(&f, &env);
        let err = result.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(
            err.message(),
            "`useradd deploy` exited with status 12: useradd: cannot create directory /nope/deploy"
        );
        assert_eq!(
            log(dir.path()),
            "useradd --create-home deploy\nuserdel deploy\n"
        );
        assert!(Accounts::read(&files).unwrap().user("deploy").is_none());
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
    }

    #[test]
    fn a_user_with_processes_is_retried_and_a_bad_argument_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (env, files) = fake_shadow(dir.path());
        std::fs::write(
            dir.path().join("fail"),
            "user www-data is currently used by process 4242",
        )
        .unwrap();
        std::fs::write(dir.path().join("fail-status"), "8").unwrap();
        let f = UserFacility {
            uid: Some(1033),
            ..user(&files, "www-data")
        };
        let err = f.apply_in(&env).unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(
            err.message(),
            "`usermod www-data` exited with status 8: \
             usermod: user www-data is currently used by process 4242"
        );
        std::fs::write(dir.path().join("fail-status"), "3").unwrap();
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .ends_with("(user `www-data`): an argument is not valid here"),
            "{err}"
        );
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"user\"\nname = \"deploy\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan =
            parse("group = \"1500\"\ngroups = [\"adm\"]\nappend = true\nsystem = true").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "user deploy exists (group 1500, groups include adm, system)"
        );
        let plan = parse("state = \"absent\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "user deploy does not exist"
        );

        let bad = [
            (
                "uid = 4294967295",
                "argument `uid` must be an integer from 0 to 4294967294, not 4294967295",
                (4, 7),
            ),
            (
                "group = \"Staff\"",
                "argument `group` must be a group name or gid",
                (4, 9),
            ),
            (
                "groups = [\"adm\", \"Sudo\"]",
                "argument `groups` must list group names",
                (4, 10),
            ),
            ("append = true", "argument `append` needs `groups`", (4, 10)),
            (
                "groups = []\nappend = true",
                "`groups = []` with `append = true` asks for nothing",
                (4, 10),
            ),
            (
                "shell = \"bash\"",
                "argument `shell` must be an absolute path, not `bash`",
                (4, 9),
            ),
            (
                "home = \"/srv/a:b\"",
                "argument `home` must not contain `:` or a line break",
                (4, 8),
            ),
            (
                "state = \"absent\"\nhome = \"/srv\"",
                "argument `home` has no use with `state = \"absent\"`",
                (5, 8),
            ),
            (
                "create_home = 1",
                "argument `create_home` must be `true` or `false`, not integer",
                (4, 15),
            ),
        ];
        for (args, message, position) in bad {
            let err = parse(args).unwrap_err();
            assert_eq!(err.message, message, "{args}");
            assert_eq!(err.position, Some(position), "{args}");
        }
        let steps = "[[step]]\nfacility = \"user\"\nname = \"x y\"\n";
        let err = Plan::parse(steps, Path::new("cattle.toml"), dir.path()).unwrap_err();
        assert_eq!(err.message, "argument `name` must be a user name");
        assert_eq!(err.position, Some((3, 8)));
    }
}

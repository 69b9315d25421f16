//! Users and groups: names to ids, looked up when a step runs, and the local
//! account databases.
//!
//! [`resolve_user`] and [`resolve_group`] go through the C library (so NSS
//! sources such as LDAP count), at the time a step runs rather than when the
//! steps file is read: an earlier step may create the account.
//!
//! The `user` and `group` facilities manage local accounts, the ones the shadow
//! tools (`useradd`, `groupadd`, ...) write; they read `/etc/passwd` and
//! `/etc/group` themselves ([`Accounts::read`]) rather than ask NSS, which may
//! answer from a directory or a cache.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nix::unistd::{Group, User};

use crate::facility::FacilityError;

/// The uid of `name` (or `name` itself when it is a number).
pub fn resolve_user(name: &str) -> Result<u32, FacilityError> {
    if let Ok(uid) = name.parse() {
        return Ok(uid);
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(FacilityError::permanent(format!(
            "there is no user `{name}` on this host; create it in an earlier step"
        ))),
        Err(err) => Err(FacilityError::new(format!(
            "cannot look up user `{name}`: {err}"
        ))),
    }
}

/// The gid of `name` (or `name` itself when it is a number).
pub fn resolve_group(name: &str) -> Result<u32, FacilityError> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(FacilityError::permanent(format!(
            "there is no group `{name}` on this host; create it in an earlier step"
        ))),
        Err(err) => Err(FacilityError::new(format!(
            "cannot look up group `{name}`: {err}"
        ))),
    }
}

/// The longest user or group name the shadow tools accept on Debian.
pub const MAX_NAME_LEN: usize = 32;

/// Whether `name` is a user or group name as Debian's shadow tools accept it
/// by default: `^[a-z_][a-z0-9_-]*[$]?$`, at most [`MAX_NAME_LEN`] characters.
pub fn valid_account_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    name.len() <= MAX_NAME_LEN
        && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The hint for a name [`valid_account_name`] refuses.
pub fn account_name_hint(name: &str) -> String {
    format!(
        "`{name}` is not a valid name: up to {MAX_NAME_LEN} characters of a-z 0-9 _ -, \
         starting with a letter or `_`, optionally ending with `$`"
    )
}

/// Where the local account databases are: `/etc/passwd` and `/etc/group` on a
/// host, files in a temporary directory in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFiles {
    pub passwd: PathBuf,
    pub group: PathBuf,
}

impl AccountFiles {
    /// The host's own: `/etc/passwd` and `/etc/group`.
    pub fn host() -> AccountFiles {
        AccountFiles {
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
        }
    }
}

/// A line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// A line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// The users listed as members: those for whom it is a supplementary group.
    pub members: Vec<String>,
}

/// The local users and groups, as read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

impl Accounts {
    /// Read both databases. A file that cannot be read is an error a retry may
    /// get past; a line that is not an account is one it cannot.
    pub fn read(files: &AccountFiles) -> Result<Accounts, FacilityError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|err| FacilityError::io("read", path, err))
        };
        Ok(Accounts {
            users: parse_passwd(&read(&files.passwd)?, &files.passwd)?,
            groups: parse_group(&read(&files.group)?, &files.group)?,
        })
    }

    pub fn user(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|user| user.name == name)
    }

    pub fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|user| user.uid == uid)
    }

    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|group| group.name == name)
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        self.groups.iter().find(|group| group.gid == gid)
    }

    /// The group `spec` names: a name, or a gid written in digits.
    pub fn find_group(&self, spec: &str) -> Option<&GroupEntry> {
        match spec.parse::<u32>() {
            Ok(gid) => self.group_by_gid(gid),
            Err(_) => self.group(spec),
        }
    }

    /// The groups that list `user` as a member: its supplementary groups.
    pub fn supplementary_groups(&self, user: &str) -> BTreeSet<&str> {
        self.groups
            .iter()
            .filter(|group| group.members.iter().any(|member| member == user))
            .map(|group| group.name.as_str())
            .collect()
    }
}

/// The lines of an account database that hold entries: blank lines, comments
/// and NIS compatibility entries (`+`, `-`) are left out. Each comes with its
/// line number and its fields.
fn entries(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !(line.trim().is_empty() || line.starts_with(['#', '+', '-'])))
        .map(|(i, line)| (i + 1, line.split(':').collect()))
}

fn malformed(file: &Path, line: usize, layout: &str) -> FacilityError {
    FacilityError::permanent(format!(
        "`{}` line {line} is not `{layout}`; fix the file by hand (`pwck -r` and `grpck -r` \
         point at such lines)",
        file.display()
    ))
}

/// The entries of `text`, the contents of the passwd file `file`.
pub fn parse_passwd(text: &str, file: &Path) -> Result<Vec<PasswdEntry>, FacilityError> {
    const LAYOUT: &str = "name:password:uid:gid:gecos:home:shell";
    entries(text)
        .map(|(line, fields)| match fields[..] {
            [name, _, uid, gid, gecos, home, shell] if !name.is_empty() => Ok(PasswdEntry {
                name: name.to_string(),
                uid: uid.parse().map_err(|_| malformed(file, line, LAYOUT))?,
                gid: gid.parse().map_err(|_| malformed(file, line, LAYOUT))?,
                gecos: gecos.to_string(),
                home: home.to_string(),
                shell: shell.to_string(),
            }),
            _ => Err(malformed(file, line, LAYOUT)),
        })
        .collect()
}

/// The entries of `text`, the contents of the group file `file`.
pub fn parse_group(text: &str, file: &Path) -> Result<Vec<GroupEntry>, FacilityError> {
    const LAYOUT: &str = "name:password:gid:members";
    entries(text)
        .map(|(line, fields)| match fields[..] {
            [name, _, gid, members] if !name.is_empty() => Ok(GroupEntry {
                name: name.to_string(),
                gid: gid.parse().map_err(|_| malformed(file, line, LAYOUT))?,
                members: members
                    .split(',')
                    .map(str::trim)
                    .filter(|member| !member.is_empty())
                    .map(str::to_string)
                    .collect(),
            }),
            _ => Err(malformed(file, line, LAYOUT)),
        })
        .collect()
}

/// Stand-ins for the shadow tools, for facilities' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::AccountFiles;
    use crate::facility::Environment;
    use crate::process::write_fake_program;
    use std::path::Path;

    /// Account databases in `dir` and stand-ins for `groupadd`, `groupmod`,
    /// `groupdel`, `useradd`, `usermod` and `userdel` that log their arguments
    /// to `dir/log` and edit those files as the real ones do (enough of it for
    /// the tests). With a file `dir/fail`, each prints its contents on stderr
    /// and exits with the status in `dir/fail-status`, changing nothing.
    pub(crate) fn fake_shadow(dir: &Path) -> (Environment, AccountFiles) {
        let files = AccountFiles {
            passwd: dir.join("passwd"),
            group: dir.join("group"),
        };
        std::fs::write(
            &files.passwd,
            "root:x:0:0:root:/root:/bin/bash\n\
             www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            &files.group,
            "root:x:0:\nadm:x:4:\nwww-data:x:33:\nsudo:x:27:\n",
        )
        .unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let passwd = files.passwd.display();
        let group = files.group.display();
        // Arguments come as `--option [value] ... name`.
        let prelude = format!(
            r#"echo "$(basename "$0") $*" >> {dir}/log
if [ -e {dir}/fail ]; then
  echo "$(basename "$0"): $(cat {dir}/fail)" >&2; exit $(cat {dir}/fail-status)
fi
eval "name=\${{$#}}"
uid= gid= groups=- shell= home= append=
while [ $# -gt 1 ]; do
  case "$1" in
    --uid) uid=$2; shift 2 ;;
    --gid) gid=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --shell) shell=$2; shift 2 ;;
    --home|--home-dir) home=$2; shift 2 ;;
    --append) append=1; shift ;;
    *) shift ;;
  esac
done
edit() {{ awk -F: -v OFS=: "$@" > {dir}/edit.tmp && cat {dir}/edit.tmp > "$file"; }}
# Drop $name from every member list; then add it to the groups in $groups.
leave_all() {{
  file={group} edit -v u="$name" '{{ n = split($4, m, ","); $4 = ""
    for (i = 1; i <= n; i++) if (m[i] != u) $4 = $4 == "" ? m[i] : $4 "," m[i]
    print }}' {group}
}}
join() {{
  [ "$groups" = - ] && return
  file={group} edit -v u="$name" -v gs=",$groups," \
    'index(gs, "," $1 ",") {{ $4 = $4 == "" ? u : $4 "," u }} 1' {group}
}}
gid_of() {{ case "$1" in *[!0-9]*) awk -F: -v g="$1" '$1 == g {{ print $3 }}' {group} ;; *) echo "$1" ;; esac; }}"#,
            dir = dir.display(),
        );
        let tools = [
            (
                "groupadd",
                format!(
                    r#"[ -n "$gid" ] || gid=$((2000 + $(wc -l < {group})))
echo "$name:x:$gid:" >> {group}"#
                ),
            ),
            (
                "groupmod",
                format!(
                    r#"file={group} edit -v n="$name" -v g="$gid" '$1 == n {{ $3 = g }} 1' {group}"#
                ),
            ),
            ("groupdel", format!(r#"sed -i "/^$name:/d" {group}"#)),
            (
                "useradd",
                format!(
                    r#"[ -n "$uid" ] || uid=$((3000 + $(wc -l < {passwd})))
if [ -z "$gid" ]; then echo "$name:x:$uid:" >> {group}; gid=$uid; fi
echo "$name:x:$uid:$(gid_of "$gid")::${{home:-/home/$name}}:${{shell:-/bin/sh}}" >> {passwd}
join"#
                ),
            ),
            (
                "usermod",
                format!(
                    r#"[ -n "$gid" ] && gid=$(gid_of "$gid")
file={passwd} edit -v n="$name" -v u="$uid" -v g="$gid" -v s="$shell" -v h="$home" \
  '$1 == n {{ if (u != "") $3 = u; if (g != "") $4 = g; if (h != "") $6 = h; if (s != "") $7 = s }} 1' {passwd}
[ "$groups" = - ] || [ -n "$append" ] || leave_all
join"#
                ),
            ),
            (
                "userdel",
                format!(
                    r#"sed -i "/^$name:/d" {passwd}
sed -i "/^$name:/d" {group}
leave_all"#
                ),
            ),
        ];
        for (name, body) in tools {
            write_fake_program(&bin, name, &format!("{prelude}\n{body}"));
        }
        let mut env = Environment::new(dir);
        env.path = Some(format!("{}:/usr/bin:/bin", bin.display()).into());
        (env, files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_follow_debian_rules() {
        for good in [
            "deploy",
            "_apt",
            "www-data",
            "a1",
            "host$",
            "x_y-z",
            &"a".repeat(32),
        ] {
            assert!(valid_account_name(good), "{good}");
        }
        for bad in [
            "",
            "Deploy",
            "1st",
            "-x",
            "a b",
            "a:b",
            "a$b",
            "$",
            "é",
            "a.b",
            &"a".repeat(33),
        ] {
            assert!(!valid_account_name(bad), "{bad}");
        }
    }

    #[test]
    fn reads_passwd_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let files = AccountFiles {
            passwd: dir.path().join("passwd"),
            group: dir.path().join("group"),
        };
        std::fs::write(
            &files.passwd,
            "root:x:0:0:root:/root:/bin/bash\n\
             \n\
             # a comment\n\
             +@netgroup::::::\n\
             deploy:x:1500:1500:Deploy,,,:/home/deploy:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            &files.group,
            "root:x:0:\nadm:x:4:syslog,deploy\ndeploy:x:1500:\nsudo:x:27:deploy\n",
        )
        .unwrap();
        let accounts = Accounts::read(&files).unwrap();
        assert_eq!(accounts.users.len(), 2);
        let deploy = accounts.user("deploy").unwrap();
        assert_eq!((deploy.uid, deploy.gid), (1500, 1500));
        assert_eq!(deploy.home, "/home/deploy");
        assert_eq!(deploy.shell, "/bin/sh");
        assert_eq!(deploy.gecos, "Deploy,,,");
        assert_eq!(accounts.user_by_uid(0).unwrap().name, "root");
        assert_eq!(accounts.group("adm").unwrap().members, ["syslog", "deploy"]);
        assert_eq!(
            accounts.group("root").unwrap().members,
            Vec::<String>::new()
        );
        assert_eq!(accounts.find_group("27").unwrap().name, "sudo");
        assert_eq!(accounts.find_group("deploy").unwrap().gid, 1500);
        assert!(accounts.find_group("1501").is_none());
        assert_eq!(
            accounts.supplementary_groups("deploy"),
            BTreeSet::from(["adm", "sudo"])
        );
        assert!(accounts.supplementary_groups("root").is_empty());
    }

    #[test]
    fn a_malformed_line_is_a_permanent_error_naming_it() {
        let file = Path::new("/etc/passwd");
        let err = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbroken:x:zero:0::/:/bin/sh\n",
            file,
        )
        .unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message().starts_with("`/etc/passwd` line 2 is not"),
            "{err}"
        );
        assert!(parse_passwd("short:x:0\n", file).is_err());
        assert!(parse_group("adm:x:4\n", Path::new("/etc/group")).is_err());
        assert!(parse_group(":x:4:\n", Path::new("/etc/group")).is_err());
    }

    #[test]
    fn a_missing_file_is_an_error_a_retry_may_pass() {
        let dir = tempfile::tempdir().unwrap();
        let files = AccountFiles {
            passwd: dir.path().join("passwd"),
            group: dir.path().join("group"),
        };
        let err = Accounts::read(&files).unwrap_err();
        assert!(!err.is_permanent());
        assert!(err.message().contains("passwd"), "{err}");
    }
}

//! `packages`: packages are installed (at the versions pinned) or not, with the
//! host's own package manager.
//!
//! Which one is decided when the step runs: apt (`apt-get`, checked with
//! `dpkg-query`) where `/usr/bin/apt-get` exists, otherwise dnf (checked with
//! `rpm -q`) where `/usr/bin/dnf` does. A pinned package (`name=version`) is
//! in place only at exactly that version. Apply installs or removes only the
//! packages not yet in place; apt refreshes its package lists first, so a
//! package or version no repository has after that is a permanent error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::FacilitySpec;
use super::group::PRESENCE;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::{Program, Ran, describe_status};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "packages",
    args: &["names", "state"],
    summary: "packages are installed (at pinned versions) or not, with apt or dnf",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad = args.error("names", "argument `names` must list package names");
    let names = args.required_str_list("names")?;
    let present = args.optional_choice("state", PRESENCE)? != Some("absent");
    let mut packages = Vec::with_capacity(names.len());
    for spec in &names {
        let Some(package) = Package::parse(spec) else {
            return Err(bad.with_hint(format!(
                "`{spec}` is not `name` or `name=version`: a name is letters, digits and \
                 + . _ - (starting with a letter or digit), a version starts with a digit; \
                 for an architecture qualifier use the `apt_packages` facility"
            )));
        };
        if !present && package.version.is_some() {
            return Err(args
                .error("names", "packages to remove take no version")
                .with_hint(format!(
                    "write `{}` instead of `{spec}`: any installed version is removed",
                    package.name
                )));
        }
        packages.push(package);
    }
    Ok(Box::new(Packages {
        packages,
        present,
        root: PathBuf::from("/"),
    }))
}

/// A package as a step names it: `name` or `name=version`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    version: Option<String>,
}

impl Package {
    fn parse(spec: &str) -> Option<Package> {
        let (name, version) = match spec.split_once('=') {
            Some((name, version)) => (name, Some(version)),
            None => (spec, None),
        };
        let name_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c));
        let version_ok = version.is_none_or(|version| {
            version.starts_with(|c: char| c.is_ascii_digit())
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".+~:_-".contains(c))
        });
        (name_ok && version_ok).then(|| Package {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }

    /// Whether one of the `installed` versions of the package is the one asked for.
    fn satisfied_by(&self, installed: &[Version], manager: Manager) -> bool {
        match &self.version {
            None => !installed.is_empty(),
            Some(wanted) => installed.iter().any(|v| v.matches(wanted, manager)),
        }
    }

    /// How apt or dnf names it on their command line.
    fn spec(&self, manager: Manager) -> String {
        match (&self.version, manager) {
            (None, _) => self.name.clone(),
            (Some(version), Manager::Apt) => format!("{}={version}", self.name),
            (Some(version), Manager::Dnf) => format!("{}-{version}", self.name),
        }
    }
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}={version}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The package manager a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    Apt,
    Dnf,
}

/// An installed version, as the package database gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    /// dpkg's `Version` field, e.g. `2.10-3` or `1:9.2p1-2`.
    Dpkg(String),
    /// rpm's epoch (0 when it has none), version and release.
    Rpm {
        epoch: String,
        version: String,
        release: String,
    },
}

impl Version {
    /// Whether `wanted`, as a step pins it, names this version. For dpkg, only
    /// the exact string. For rpm, `version`, `version-release` and either with
    /// an `epoch:` in front.
    fn matches(&self, wanted: &str, manager: Manager) -> bool {
        match (self, manager) {
            (Version::Dpkg(installed), Manager::Apt) => installed == wanted,
            (
                Version::Rpm {
                    epoch,
                    version,
                    release,
                },
                Manager::Dnf,
            ) => {
                let (wanted_epoch, rest) = match wanted.split_once(':') {
                    Some((e, rest)) => (e, rest),
                    None => ("", wanted),
                };
                (wanted_epoch.is_empty() || wanted_epoch == epoch)
                    && (rest == version || rest == format!("{version}-{release}"))
            }
            _ => false,
        }
    }
}

/// The installed versions of the packages `queries` names (each an exact name,
/// optionally `name:arch`), by package name, as `dpkg-query` reports them. A
/// package dpkg does not know, or knows but not as installed (removed with its
/// configuration files left, half-installed, ...), is not in the map.
pub(super) fn dpkg_installed(
    ctx: &mut Context<'_>,
    queries: &[&str],
) -> Result<BTreeMap<String, Vec<String>>, FacilityError> {
    let ran = ctx.run(
        &Program::new("dpkg-query")
            .arg("-W")
            .arg("-f=${Package}\t${Status}\t${Version}\n")
            .args(queries.iter().copied())
            // The "no packages found" message below must not be translated.
            .env("LC_ALL", "C")
            .capture(),
    )?;
    match ran.code() {
        Some(0) => {}
        // 1: some package is unknown to dpkg, so certainly not installed.
        // (dpkg-query says so on stderr, which went to the step's log.)
        Some(1)
            if ran
                .last_stderr
                .as_deref()
                .is_some_and(|line| line.contains("no packages found matching")) => {}
        _ => return Err(checking_error(&ran, "dpkg-query", queries)),
    }
    // A line per package (and architecture) dpkg knows:
    // "nginx\tinstall ok installed\t1.22.1-9". The first status word is what
    // was asked for ("hold" is still installed).
    let mut installed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in ran.stdout.lines() {
        let mut fields = line.split('\t');
        let (Some(package), Some(status)) = (fields.next(), fields.next()) else {
            continue;
        };
        if matches!(
            status.split_whitespace().collect::<Vec<_>>()[..],
            [_, "ok", "installed"]
        ) {
            let version = fields.next().unwrap_or_default().to_string();
            installed
                .entry(package.to_string())
                .or_default()
                .push(version);
        }
    }
    Ok(installed)
}

/// "`dpkg-query` exited with status 2 while checking nginx, curl: ...".
fn checking_error(ran: &Ran, program: &str, queries: &[&str]) -> FacilityError {
    let mut message = format!(
        "`{program}` {} while checking {}",
        describe_status(ran.status),
        queries.join(", ")
    );
    if let Some(line) = &ran.last_stderr {
        message.push_str(&format!(": {}", line.trim()));
    }
    FacilityError::new(message)
}

/// The installed versions of the packages `names`, as `rpm -q` reports them.
fn rpm_installed(
    ctx: &mut Context<'_>,
    names: &[&str],
) -> Result<BTreeMap<String, Vec<Version>>, FacilityError> {
    let ran = ctx.run(
        &Program::new("rpm")
            .arg("-q")
            .arg("--qf")
            .arg("%{NAME}\t%|EPOCH?{%{EPOCH}}:{0}|\t%{VERSION}\t%{RELEASE}\n")
            .args(names.iter().copied())
            .env("LC_ALL", "C")
            .capture(),
    )?;
    let mut installed: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    let mut missing = 0;
    for line in ran.stdout.lines() {
        if line.starts_with("package ") && line.ends_with(" is not installed") {
            missing += 1;
            continue;
        }
        if let [name, epoch, version, release] = line.split('\t').collect::<Vec<_>>()[..] {
            installed
                .entry(name.to_string())
                .or_default()
                .push(Version::Rpm {
                    epoch: epoch.to_string(),
                    version: version.to_string(),
                    release: release.to_string(),
                });
        }
    }
    // rpm exits with the number of packages that are not installed.
    if ran.code() != Some(missing) {
        return Err(checking_error(&ran, "rpm -q", names));
    }
    Ok(installed)
}

#[derive(Debug)]
struct Packages {
    /// Never empty.
    packages: Vec<Package>,
    /// `state = "present"` (the default) or `"absent"`.
    present: bool,
    /// Where `usr/bin/apt-get` and `usr/bin/dnf` are looked for: `/` on a host.
    root: PathBuf,
}

impl Packages {
    fn manager(&self) -> Result<Manager, FacilityError> {
        let apt = self.root.join("usr/bin/apt-get");
        let dnf = self.root.join("usr/bin/dnf");
        if apt.exists() {
            Ok(Manager::Apt)
        } else if dnf.exists() {
            Ok(Manager::Dnf)
        } else {
            Err(FacilityError::permanent(format!(
                "cannot manage packages on this host: neither `{}` (apt) nor `{}` (dnf) exists",
                apt.display(),
                dnf.display()
            )))
        }
    }

    /// The packages not in the state asked for.
    fn pending(
        &self,
        ctx: &mut Context<'_>,
        manager: Manager,
    ) -> Result<Vec<&Package>, FacilityError> {
        let names: Vec<&str> = self.packages.iter().map(|p| p.name.as_str()).collect();
        let installed: BTreeMap<String, Vec<Version>> = match manager {
            Manager::Apt => dpkg_installed(ctx, &names)?
                .into_iter()
                .map(|(name, versions)| (name, versions.into_iter().map(Version::Dpkg).collect()))
                .collect(),
            Manager::Dnf => rpm_installed(ctx, &names)?,
        };
        let none = Vec::new();
        Ok(self
            .packages
            .iter()
            .filter(|package| {
                let versions = installed.get(&package.name).unwrap_or(&none);
                if self.present {
                    !package.satisfied_by(versions, manager)
                } else {
                    !versions.is_empty()
                }
            })
            .collect())
    }

    fn apt(&self, ctx: &mut Context<'_>, pending: &[&Package]) -> Result<(), FacilityError> {
        let apt_get = |command: &str| {
            Program::new("apt-get")
                .args([command, "-y", "-q"])
                // Wait for another apt or dpkg to finish rather than fail at once.
                .args(["-o", "DPkg::Lock::Timeout=120"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LC_ALL", "C")
                .named(format!("apt-get {command}"))
        };
        if !self.present {
            let names = pending.iter().map(|p| p.name.clone());
            ctx.run(&apt_get("remove").args(names))?.ok()?;
            return Ok(());
        }
        ctx.run(&apt_get("update"))?.ok()?;
        let install = apt_get("install")
            // A pinned version may be older than the one installed.
            .arg("--allow-downgrades")
            // Keep configuration files changed on the host; take new ones otherwise.
            .args(["-o", "Dpkg::Options::=--force-confdef"])
            .args(["-o", "Dpkg::Options::=--force-confold"])
            .args(pending.iter().map(|p| p.spec(Manager::Apt)));
        let ran = ctx.run(&install)?;
        if ran.success() {
            return Ok(());
        }
        let err = ran.error();
        let last = ran.last_stderr.as_deref().unwrap_or_default();
        if [
            "Unable to locate package",
            "has no installation candidate",
            "was not found",
        ]
        .iter()
        .any(|sign| last.contains(sign))
        {
            // The lists were just refreshed: trying again finds the same.
            return Err(FacilityError::permanent(format!(
                "{}; no repository of this host has it: check the name and version \
                 (`apt-cache policy NAME` lists the versions), or add the repository in an \
                 earlier step",
                err.message()
            )));
        }
        if last.contains("dpkg was interrupted") {
            return Err(FacilityError::permanent(format!(
                "{}; an earlier dpkg run was cut short: run `dpkg --configure -a` on the host",
                err.message()
            )));
        }
        Err(err)
    }

    fn dnf(&self, ctx: &mut Context<'_>, pending: &[&Package]) -> Result<(), FacilityError> {
        let command = if self.present { "install" } else { "remove" };
        let mut dnf = Program::new("dnf")
            .args([command, "-y"])
            .env("LC_ALL", "C")
            .named(format!("dnf {command}"));
        if self.present {
            // Fresh metadata, so that "no match" is an answer to trust.
            dnf = dnf.arg("--refresh");
        }
        let ran = ctx.run(&dnf.args(pending.iter().map(|p| p.spec(Manager::Dnf))))?;
        if ran.success() {
            return Ok(());
        }
        let err = ran.error();
        let last = ran.last_stderr.as_deref().unwrap_or_default();
        if self.present
            && (last.contains("Unable to find a match") || last.contains("No match for argument"))
        {
            return Err(FacilityError::permanent(format!(
                "{}; no repository of this host has it: check the name and version \
                 (`dnf list --showduplicates NAME` lists the versions), or add the repository \
                 in an earlier step",
                err.message()
            )));
        }
        Err(err)
    }
}

impl Facility for Packages {
    fn describe(&self) -> String {
        let list: Vec<String> = self.packages.iter().map(Package::to_string).collect();
        match (list.as_slice(), self.present) {
            ([one], true) => format!("package {one} is installed"),
            ([one], false) => format!("package {one} is not installed"),
            (many, true) => format!("packages {} are installed", many.join(", ")),
            (many, false) => format!("packages {} are not installed", many.join(", ")),
        }
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let manager = self.manager()?;
        Ok(if self.pending(ctx, manager)?.is_empty() {
            Check::AlreadyDone
        } else {
            Check::Run
        })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let manager = self.manager()?;
        let pending = self.pending(ctx, manager)?;
        if !pending.is_empty() {
            match manager {
                Manager::Apt => self.apt(ctx, &pending)?,
                Manager::Dnf => self.dnf(ctx, &pending)?,
            }
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply};
    use crate::process::write_fake_program;
    use crate::steps::Plan;
    use std::path::Path;

    /// A host in `dir` with `manager` (`apt-get` or `dnf`) in `usr/bin`, and
    /// stand-ins on `PATH`: the package database is the file `dir/state`, one
    /// "name<TAB>version" a line; the query programs read it, the manager logs
    /// its arguments to `dir/log` and edits it.
    fn fake_host(dir: &Path, manager: &str) -> (Environment, Packages) {
        std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
        std::fs::write(dir.join("usr/bin").join(manager), "").unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let state = dir.join("state");
        let log = dir.join("log");
        std::fs::write(&state, "").unwrap();
        let (state, log) = (state.display(), log.display());
        write_fake_program(
            &bin,
            "dpkg-query",
            &format!(
                r#"rc=0
for arg in "$@"; do
  case "$arg" in -*) continue ;; esac
  line=$(grep "^$arg	" {state})
  if [ -n "$line" ]; then echo "$line" | sed 's/	/	install ok installed	/'
  else echo "dpkg-query: no packages found matching $arg" >&2; rc=1
  fi
done
exit $rc"#
            ),
        );
        write_fake_program(
            &bin,
            "rpm",
            &format!(
                r#"shift 3; rc=0
for name in "$@"; do
  line=$(grep "^$name	" {state})
  if [ -n "$line" ]; then echo "$line"
  else echo "package $name is not installed"; rc=$((rc + 1))
  fi
done
exit $rc"#
            ),
        );
        // `apt-get install` and `dnf install` add "name<TAB>version", with the
        // version pinned or 1.0 (dnf: epoch 0, release 1); `remove` drops the line.
        let edit = format!(
            r#"[ "$cmd" != update ] && [ -e {dir}/fail ] && {{ cat {dir}/fail >&2; exit 100; }}
for p in "$@"; do
  case "$p" in -*|*=--*|DPkg*|-y|-q|install|remove|update) continue ;; esac
  name=$p; version=
  case "$p" in *=*) name=${{p%%=*}}; version=${{p#*=}} ;; esac
  sed -i "/^$name	/d" {state}
  [ "$cmd" = install ] && echo "$name	$(fmt "$version")" >> {state}
done
exit 0"#,
            dir = dir.display()
        );
        write_fake_program(
            &bin,
            "apt-get",
            &format!(
                r#"echo "$DEBIAN_FRONTEND $*" >> {log}
cmd=$1
fmt() {{ echo "${{1:-1.0}}"; }}
{edit}"#
            ),
        );
        write_fake_program(
            &bin,
            "dnf",
            &format!(
                r#"echo "$*" >> {log}
cmd=$1
fmt() {{ printf '0\t%s\t1' "${{1:-1.0}}"; }}
set -- $(for p in "$@"; do case "$p" in [a-z]*-[0-9]*) echo "${{p%%-[0-9]*}}=${{p#*-}}" ;; *) echo "$p" ;; esac; done)
{edit}"#
            ),
        );
        let mut env = Environment::new(dir);
        env.path = Some(format!("{}:/usr/bin:/bin", bin.display()).into());
        let packages = Packages {
            packages: Vec::new(),
            present: true,
            root: dir.to_path_buf(),
        };
        (env, packages)
    }

    fn with(base: &Packages, specs: &[&str], present: bool) -> Packages {
        Packages {
            packages: specs.iter().map(|s| Package::parse(s).unwrap()).collect(),
            present,
            root: base.root.clone(),
        }
    }

    fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    }

    #[test]
    fn apt_installs_what_is_missing_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "apt-get");
        std::fs::write(dir.path().join("state"), "curl\t7.88.1-10\n").unwrap();
        let f = with(&host, &["curl", "hello=2.10-3"], true);
        assert_eq!(f.describe(), "packages curl, hello=2.10-3 are installed");
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        assert_eq!(log(dir.path()), "", "the check ran the package manager");
        f.apply_in(&env).unwrap();
        assert_eq!(
            log(dir.path()),
            "noninteractive update -y -q -o DPkg::Lock::Timeout=120\n\
             noninteractive install -y -q -o DPkg::Lock::Timeout=120 --allow-downgrades \
             -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold hello=2.10-3\n"
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn apt_a_pinned_version_must_match_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "apt-get");
        std::fs::write(dir.path().join("state"), "hello\t2.10-3\n").unwrap();
        for (spec, done) in [
            ("hello", true),
            ("hello=2.10-3", true),
            ("hello=2.10", false),
            ("hello=2.10-2", false),
        ] {
            let expected = if done { Check::AlreadyDone } else { Check::Run };
            assert_eq!(
                with(&host, &[spec], true).check_in(&env).unwrap(),
                expected,
                "{spec}"
            );
        }
        let f = with(&host, &["hello=2.10-2"], true);
        f.apply_in(&env).unwrap();
        assert!(log(dir.path()).ends_with(" hello=2.10-2\n"));
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn apt_removes_what_is_installed_and_config_files_left_count_as_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "apt-get");
        std::fs::write(dir.path().join("state"), "hello\t2.10-3\n").unwrap();
        let f = with(&host, &["hello", "curl"], false);
        assert_eq!(f.describe(), "packages hello, curl are not installed");
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        f.apply_in(&env).unwrap();
        assert_eq!(
            log(dir.path()),
            "noninteractive remove -y -q -o DPkg::Lock::Timeout=120 hello\n"
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);

        // dpkg-query's own answer for a package removed with its configuration kept.
        let bin = dir.path().join("bin");
        write_fake_program(
            &bin,
            "dpkg-query",
            "printf 'hello\\tdeinstall ok config-files\\t2.10-3\\n'",
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
        assert_eq!(
            with(&host, &["hello"], true).check_in(&env).unwrap(),
            Check::Run
        );
    }

    #[test]
    fn apt_a_package_no_repository_has_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "apt-get");
        std::fs::write(
            dir.path().join("fail"),
            "E: Version '9.9' for 'hello' was not found",
        )
        .unwrap();
        let (result, lines) = apply(&with(&host, &["hello=9.9"], true), &env);
        let err = result.unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message().starts_with(
                "`apt-get install` exited with status 100: E: Version '9.9' for 'hello' was not \
                 found; no repository"
            ),
            "{err}"
        );
        assert_eq!(
            lines.last().unwrap(),
            "stderr: E: Version '9.9' for 'hello' was not found"
        );
    }

    #[test]
    fn apt_a_failed_install_is_retried_unless_it_cannot_help() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "apt-get");
        let bin = dir.path().join("bin");
        let fail_install = |message: &str| {
            write_fake_program(
                &bin,
                "apt-get",
                &format!("[ \"$1\" = install ] || exit 0\necho \"{message}\" >&2\nexit 100"),
            );
        };
        let f = with(&host, &["nope"], true);
        fail_install("E: Unable to locate package nope");
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.message(),
            "`apt-get install` exited with status 100: E: Unable to locate package nope; \
             no repository of this host has it: check the name and version (`apt-cache policy \
             NAME` lists the versions), or add the repository in an earlier step"
        );
        fail_install(
            "E: Failed to fetch http://deb.debian.org/pool/h/hello.deb  Connection timed out",
        );
        let err = f.apply_in(&env).unwrap_err();
        assert!(!err.is_permanent());
        fail_install(
            "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem.",
        );
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .ends_with("run `dpkg --configure -a` on the host")
        );
    }

    #[test]
    fn dnf_installs_with_versions_and_matches_rpm_versions() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "dnf");
        std::fs::write(dir.path().join("state"), "curl\t1\t8.2.1\t3.fc39\n").unwrap();
        for (spec, done) in [
            ("curl", true),
            ("curl=8.2.1", true),
            ("curl=8.2.1-3.fc39", true),
            ("curl=1:8.2.1-3.fc39", true),
            ("curl=1:8.2.1", true),
            ("curl=0:8.2.1", false),
            ("curl=8.2.1-4.fc39", false),
            ("curl=8.2", false),
        ] {
            let expected = if done { Check::AlreadyDone } else { Check::Run };
            assert_eq!(
                with(&host, &[spec], true).check_in(&env).unwrap(),
                expected,
                "{spec}"
            );
        }
        let f = with(&host, &["curl", "hello=2.10"], true);
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        f.apply_in(&env).unwrap();
        assert_eq!(log(dir.path()), "install -y --refresh hello-2.10\n");
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);

        let f = with(&host, &["hello", "curl", "tree"], false);
        f.apply_in(&env).unwrap();
        assert!(log(dir.path()).ends_with("\nremove -y hello curl\n"));
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn dnf_no_match_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "dnf");
        std::fs::write(
            dir.path().join("fail"),
            "Error: Unable to find a match: nope",
        )
        .unwrap();
        let err = with(&host, &["nope"], true).apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("`dnf install` exited with status 100: Error: Unable to find a match: nope; no repository"),
            "{err}"
        );
    }

    #[test]
    fn apt_is_preferred_and_no_manager_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "dnf");
        std::fs::write(dir.path().join("usr/bin/apt-get"), "").unwrap();
        std::fs::write(dir.path().join("state"), "hello\t2.10-3\n").unwrap();
        // dpkg-query answers: apt was chosen (rpm would have printed epoch fields).
        assert_eq!(
            with(&host, &["hello=2.10-3"], true).check_in(&env).unwrap(),
            Check::AlreadyDone
        );
        std::fs::remove_file(dir.path().join("usr/bin/apt-get")).unwrap();
        std::fs::remove_file(dir.path().join("usr/bin/dnf")).unwrap();
        let err = with(&host, &["hello"], true).check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("cannot manage packages on this host: neither"),
            "{err}"
        );
    }

    #[test]
    fn query_trouble_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let (env, host) = fake_host(dir.path(), "apt-get");
        let bin = dir.path().join("bin");
        write_fake_program(
            &bin,
            "dpkg-query",
            "echo 'dpkg-query: error: parsing file /var/lib/dpkg/status' >&2\nexit 2",
        );
        let err = with(&host, &["hello", "curl"], true)
            .check_in(&env)
            .unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(
            err.message(),
            "`dpkg-query` exited with status 2 while checking hello, curl: \
             dpkg-query: error: parsing file /var/lib/dpkg/status"
        );
        let (env, host) = {
            let dir = dir.path().join("dnf");
            std::fs::create_dir(&dir).unwrap();
            fake_host(&dir, "dnf")
        };
        write_fake_program(
            &dir.path().join("dnf/bin"),
            "rpm",
            "echo 'error: rpmdb: damaged header' >&2\nexit 1",
        );
        let err = with(&host, &["hello"], true).check_in(&env).unwrap_err();
        assert_eq!(
            err.message(),
            "`rpm -q` exited with status 1 while checking hello: error: rpmdb: damaged header"
        );
    }

    #[test]
    fn package_specs() {
        for good in [
            "hello",
            "g++",
            "NetworkManager",
            "perl-Data_Dumper",
            "x=1:2.3~rc1+dfsg-1",
        ] {
            assert!(Package::parse(good).is_some(), "{good}");
        }
        for bad in [
            "-y",
            "hello=",
            "=1",
            "hello=v1",
            "hello:amd64",
            "hel lo",
            "*",
            "a=1 2",
        ] {
            assert!(Package::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"packages\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("names = [\"hello=2.10-3\"]").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "package hello=2.10-3 is installed"
        );
        let plan = parse("names = [\"hello\"]\nstate = \"absent\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "package hello is not installed"
        );
        let err = parse("names = [\"hello\", \"nginx:amd64\"]").unwrap_err();
        assert_eq!(err.message, "argument `names` must list package names");
        assert_eq!(err.position, Some((3, 9)));
        assert!(err.hint.unwrap().contains("`nginx:amd64`"));
        let err = parse("names = [\"hello=2.10-3\"]\nstate = \"absent\"").unwrap_err();
        assert_eq!(err.message, "packages to remove take no version");
        assert_eq!(err.position, Some((3, 9)));
        let err = parse("names = [\"hello\"]\nstate = \"latest\"").unwrap_err();
        assert_eq!(err.message, "argument `state` cannot be `latest`");
        assert!(parse("names = []").is_err());
    }
}

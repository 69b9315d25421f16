//! `apt_packages`: the Debian packages are installed (with `apt-get`).
//!
//! A package may be written `name`, `name:arch`, `name=version` or
//! `name:arch=version`. The check asks `dpkg-query` about the name (and
//! architecture) only: a package installed at another version than the one
//! asked for counts as installed. That is a deliberate simplification.

use super::FacilitySpec;
use super::packages::dpkg_installed;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::Program;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "apt_packages",
    args: &["packages"],
    summary: "install Debian packages; skipped when all are installed",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_package = args.error("packages", "invalid Debian package name in `packages`");
    let packages = args.required_str_list("packages")?;
    if let Some(bad) = packages.iter().find(|p| !valid_package(p)) {
        return Err(bad_package.with_hint(format!(
            "`{bad}` is not a package name: names are at least two of a-z 0-9 + - . \
             (starting with a letter or digit), optionally followed by `:arch` and/or `=version`"
        )));
    }
    Ok(Box::new(AptPackages { packages }))
}

/// `name`, `name:arch`, `name=version` or `name:arch=version`, as Debian spells them.
fn valid_package(spec: &str) -> bool {
    let (name_arch, version) = match spec.split_once('=') {
        Some((name_arch, version)) => (name_arch, Some(version)),
        None => (spec, None),
    };
    let (name, arch) = match name_arch.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (name_arch, None),
    };
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    let arch_ok = arch.is_none_or(|arch| {
        !arch.is_empty()
            && arch
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    let version_ok = version.is_none_or(|version| {
        version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
    });
    name_ok && arch_ok && version_ok
}

#[derive(Debug)]
struct AptPackages {
    /// As written in the steps file; never empty.
    packages: Vec<String>,
}

impl Facility for AptPackages {
    fn describe(&self) -> String {
        match self.packages.as_slice() {
            [one] => format!("package {one} is installed"),
            many => format!("packages {} are installed", many.join(", ")),
        }
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        // `name:arch=version` is asked about as `name:arch` (see the module doc).
        let queries: Vec<&str> = self
            .packages
            .iter()
            .map(|p| p.split_once('=').map_or(p.as_str(), |(name, _)| name))
            .collect();
        let installed = dpkg_installed(ctx, &queries)?;
        let all = queries.iter().all(|query| {
            let name = query.split_once(':').map_or(*query, |(name, _)| name);
            installed.contains_key(name)
        });
        Ok(if all { Check::AlreadyDone } else { Check::Run })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let apt_get = |args: &[&str]| {
            Program::new("apt-get")
                .args(args.iter().copied())
                .env("DEBIAN_FRONTEND", "noninteractive")
                .named(format!("apt-get {}", args[0]))
        };
        ctx.run(&apt_get(&["update"]))?.ok()?;
        ctx.run(&apt_get(&["install", "-y", "-q"]).args(self.packages.iter().cloned()))?
            .ok()?;
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply, check};
    use crate::process::write_fake_program;
    use crate::steps::Plan;
    use std::path::Path;

    /// A fake `dpkg-query` that knows the packages listed in the file `state`
    /// (one "name<TAB>status" a line) and a fake `apt-get` that logs its
    /// arguments to `log` and installs packages by adding them to `state`.
    fn fake_apt(dir: &Path) -> Environment {
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let state = dir.join("state");
        let log = dir.join("log");
        std::fs::write(&state, "").unwrap();
        write_fake_program(
            &bin,
            "dpkg-query",
            &format!(
                r#"rc=0
for arg in "$@"; do
  case "$arg" in -*) continue ;; esac
  name="${{arg%%:*}}"
  line=$(grep "^$name	" {state})
  if [ -n "$line" ]; then echo "$line"
  else echo "dpkg-query: no packages found matching $arg" >&2; rc=1
  fi
done
exit $rc"#,
                state = state.display()
            ),
        );
        write_fake_program(
            &bin,
            "apt-get",
            &format!(
                r#"echo "$DEBIAN_FRONTEND $*" >> {log}
[ "$1" = install ] || exit 0
shift 3
for p in "$@"; do
  case "$p" in nope) echo "E: Unable to locate package $p" >&2; exit 100 ;; esac
  printf '%s\tinstall ok installed\n' "${{p%%=*}}" >> {state}
  echo "Setting up $p ..."
done"#,
                log = log.display(),
                state = state.display()
            ),
        );
        let mut ctx = Environment::new(dir);
        ctx.path = Some(format!("{}:/usr/bin:/bin", bin.display()).into());
        ctx
    }

    fn apt(packages: &[&str]) -> AptPackages {
        AptPackages {
            packages: packages.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn installs_missing_packages_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = fake_apt(dir.path());
        std::fs::write(dir.path().join("state"), "nginx\tinstall ok installed\n").unwrap();
        let f = apt(&["nginx", "tree=2.1.0-1"]);
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        let (result, lines) = apply(&f, &ctx);
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("log")).unwrap(),
            "noninteractive update\nnoninteractive install -y -q nginx tree=2.1.0-1\n"
        );
        assert!(
            lines.contains(&"Setting up tree=2.1.0-1 ...".to_string()),
            "{lines:?}"
        );
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn only_installed_status_counts() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = fake_apt(dir.path());
        std::fs::write(
            dir.path().join("state"),
            "nginx\thold ok installed\ncurl\tdeinstall ok config-files\n",
        )
        .unwrap();
        assert_eq!(
            apt(&["nginx:amd64"]).check_in(&ctx).unwrap(),
            Check::AlreadyDone
        );
        assert_eq!(apt(&["nginx", "curl"]).check_in(&ctx).unwrap(), Check::Run);
        assert_eq!(
            apt(&["nginx", "unknown"]).check_in(&ctx).unwrap(),
            Check::Run
        );
    }

    #[test]
    fn a_failed_install_names_the_command_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = fake_apt(dir.path());
        let err = apt(&["nope"]).apply_in(&ctx).unwrap_err();
        assert_eq!(
            err.message(),
            "`apt-get install` exited with status 100: E: Unable to locate package nope"
        );
    }

    #[test]
    fn a_hung_dpkg_query_is_killed_at_the_steps_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        write_fake_program(&bin, "dpkg-query", "sleep 60");
        let mut env = Environment::new(dir.path());
        env.path = Some(format!("{}:/usr/bin:/bin", bin.display()).into());
        let deadline = Some(crate::Deadline::after(std::time::Duration::from_millis(
            300,
        )));
        let started = std::time::Instant::now();
        let err = apt(&["nginx"])
            .check(&mut Context::new(&env, Vec::new(), deadline, &mut |_| {}))
            .unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            err.message(),
            "`dpkg-query` timed out after 300ms; killed it and its process group"
        );
    }

    #[test]
    fn dpkg_query_trouble_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let mut ctx = Environment::new(dir.path());
        ctx.path = Some(bin.clone().into());

        let err = apt(&["nginx"]).check_in(&ctx).unwrap_err();
        assert!(
            err.message().starts_with("cannot start `dpkg-query`"),
            "{err}"
        );

        write_fake_program(
            &bin,
            "dpkg-query",
            "echo 'dpkg-query: error: parsing file /var/lib/dpkg/status' >&2\nexit 1",
        );
        let err = apt(&["nginx"]).check_in(&ctx).unwrap_err();
        assert_eq!(
            err.message(),
            "`dpkg-query` exited with status 1 while checking nginx: \
             dpkg-query: error: parsing file /var/lib/dpkg/status"
        );
    }

    #[test]
    fn package_names_follow_debian_rules() {
        for good in [
            "nginx",
            "g++",
            "libc6:i386",
            "tree=2.1.0-1",
            "x2:amd64=1:2.3~rc1+dfsg",
        ] {
            assert!(valid_package(good), "{good}");
        }
        for bad in [
            "Nginx", "a", "-y", "nginx=", "nginx:", "nginx=v1", "ngi nx", "*",
        ] {
            assert!(!valid_package(bad), "{bad}");
        }
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |packages: &str| {
            let steps = format!("[[step]]\nfacility = \"apt_packages\"\npackages = {packages}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("[\"nginx\", \"curl\"]").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "packages nginx, curl are installed"
        );
        let err = parse("[\"nginx\", \"-y\"]").unwrap_err();
        assert_eq!(err.message, "invalid Debian package name in `packages`");
        assert_eq!(err.position, Some((3, 12)));
        assert!(err.hint.unwrap().contains("`-y`"));
        assert!(parse("[]").is_err());
        assert!(parse("\"nginx\"").is_err());
    }
}

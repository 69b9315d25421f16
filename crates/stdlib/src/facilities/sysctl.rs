//! `sysctl`: a kernel parameter has a value now and keeps it across reboots.
//!
//! The live value is read and written in `/proc/sys` (no `sysctl` program
//! needed); the lasting one is a file of its own,
//! `/etc/sysctl.d/90-cattle-NAME.conf`, which `systemd-sysctl` (or
//! `sysctl --system`) applies at boot. Values are compared with their runs of
//! whitespace made single spaces, as the kernel prints several numbers with
//! tabs. Apply sets the live value first: a value the kernel refuses is never
//! written where the next boot would apply it.

use std::io::Write;
use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{Attributes, write_file};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "sysctl",
    args: &["name", "value"],
    summary: "a kernel parameter has a value, now and after a reboot",
    build,
};

/// The longest parameter name taken; the kernel's are far shorter.
const MAX_NAME_LEN: usize = 200;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_name = args.error("name", "argument `name` must be a sysctl name");
    let name = args.required_str("name")?;
    if !valid_sysctl_name(&name) {
        return Err(bad_name.with_hint(format!(
            "`{name}` is not a sysctl name: dot-separated words of a-z A-Z 0-9 _ -, \
             e.g. `net.ipv4.ip_forward` (`/` for a dot inside a word and patterns are not taken)"
        )));
    }
    let bad_value = args.error("value", "argument `value` must be a value on one line");
    let value = args.optional_str_or_int("value")?;
    let Some(value) = value else {
        return Err(args
            .error("value", "step `sysctl` is missing argument `value`")
            .with_hint("add e.g. `value = 1` or `value = \"4096 131072 6291456\"`"));
    };
    if value.contains(['\n', '\r', '\0']) || normalize(&value).is_empty() {
        return Err(bad_value.with_hint("sysctl values are one line of text or numbers"));
    }
    Ok(Box::new(Sysctl {
        value: normalize(&value),
        name,
        proc_sys: PathBuf::from("/proc/sys"),
        conf_dir: PathBuf::from("/etc/sysctl.d"),
    }))
}

/// `word.word...` with at least two words, each of a-z A-Z 0-9 _ -.
fn valid_sysctl_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('.').count() >= 2
        && name.split('.').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// `value` with its runs of whitespace made single spaces, and trimmed.
fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug)]
struct Sysctl {
    name: String,
    /// Normalized ([`normalize`]).
    value: String,
    /// `/proc/sys`.
    proc_sys: PathBuf,
    /// `/etc/sysctl.d`.
    conf_dir: PathBuf,
}

impl Sysctl {
    fn live_path(&self) -> PathBuf {
        self.proc_sys.join(self.name.replace('.', "/"))
    }

    fn conf_path(&self) -> PathBuf {
        self.conf_dir.join(format!("90-cattle-{}.conf", self.name))
    }

    /// What the conf file holds.
    fn conf(&self) -> String {
        format!(
            "# Written by Cattle's `sysctl` facility; changed files are put back.\n{} = {}\n",
            self.name, self.value
        )
    }

    /// The live value, normalized.
    fn live(&self) -> Result<String, FacilityError> {
        let path = self.live_path();
        match std::fs::read_to_string(&path) {
            Ok(value) => Ok(normalize(&value)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(FacilityError::permanent(format!(
                    "there is no sysctl {} on this host (no `{}`): check the name, or load the \
                     kernel module that adds it in an earlier step",
                    self.name,
                    path.display()
                )))
            }
            // Write-only parameters (`net.ipv4.route.flush`) have no value to compare.
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(FacilityError::permanent(format!(
                    "sysctl {} cannot be read (`{}`: {err}), so there is no value to keep; \
                     a `command` step can write it",
                    self.name,
                    path.display()
                )))
            }
            Err(err) => Err(FacilityError::io("read", &path, err)),
        }
    }

    fn conf_in_place(&self) -> Result<bool, FacilityError> {
        let path = self.conf_path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes == self.conf().as_bytes()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(FacilityError::io("read", &path, err)),
        }
    }

    fn set_live(&self) -> Result<(), FacilityError> {
        let path = self.live_path();
        let result = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{}\n", self.value).as_bytes()));
        if let Err(err) = result {
            return Err(self.write_error(err));
        }
        let now = self.live()?;
        if now != self.value {
            return Err(FacilityError::permanent(format!(
                "the kernel took `{}` for sysctl {} but reads back `{now}`; give the value as \
                 the kernel prints it",
                self.value, self.name
            )));
        }
        Ok(())
    }

    /// What writing the live value failing with `err` means.
    fn write_error(&self, err: std::io::Error) -> FacilityError {
        let path = self.live_path();
        let what = match err.raw_os_error() {
            Some(nix::libc::EINVAL) => format!(
                "the kernel refuses value `{}` for sysctl {}: check the value",
                self.value, self.name
            ),
            Some(nix::libc::EROFS) => format!(
                "sysctl {} cannot be set on this host: `{}` is read-only here (in a container, \
                 only the keys of its own namespaces can be)",
                self.name,
                path.display()
            ),
            Some(nix::libc::EPERM | nix::libc::EACCES) => format!(
                "sysctl {} cannot be set on this host: not permitted ({err})",
                self.name
            ),
            _ => return FacilityError::io("write", &path, err),
        };
        FacilityError::permanent(what)
    }

    fn write_conf(&self) -> Result<(), FacilityError> {
        if let Err(err) = std::fs::create_dir(&self.conf_dir)
            && err.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(FacilityError::io("create directory", &self.conf_dir, err));
        }
        let attributes = Attributes {
            mode: 0o644,
            uid: None,
            gid: None,
        };
        write_file(&self.conf_path(), self.conf().as_bytes(), attributes)
    }
}

impl Facility for Sysctl {
    fn describe(&self) -> String {
        format!("sysctl {} is {}", self.name, self.value)
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let done = self.live()? == self.value && self.conf_in_place()?;
        Ok(if done { Check::AlreadyDone } else { Check::Run })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        if self.live()? != self.value {
            self.set_live()?;
            ctx.output(&format!("set {} to {}", self.name, self.value));
        }
        if !self.conf_in_place()? {
            self.write_conf()?;
            ctx.output(&format!("wrote {}", self.conf_path().display()));
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply};
    use crate::steps::Plan;
    use std::path::Path;

    /// `name` = `value` with `/proc/sys` and `/etc/sysctl.d` in `dir`, the
    /// parameter's live file holding `live`.
    fn sysctl(dir: &Path, name: &str, value: &str, live: &str) -> Sysctl {
        let f = Sysctl {
            name: name.to_string(),
            value: normalize(value),
            proc_sys: dir.join("proc/sys"),
            conf_dir: dir.join("etc/sysctl.d"),
        };
        std::fs::create_dir_all(f.live_path().parent().unwrap()).unwrap();
        std::fs::write(f.live_path(), live).unwrap();
        f
    }

    #[test]
    fn sets_the_live_value_and_the_file_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let f = sysctl(dir.path(), "net.ipv4.ip_forward", "1", "0\n");
        assert_eq!(f.describe(), "sysctl net.ipv4.ip_forward is 1");
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        assert_eq!(std::fs::read_to_string(f.live_path()).unwrap(), "0\n");
        assert!(!f.conf_dir.exists(), "the check wrote");
        let (result, lines) = apply(&f, &env);
        result.unwrap();
        assert_eq!(
            lines,
            [
                "set net.ipv4.ip_forward to 1".to_string(),
                format!("wrote {}", f.conf_path().display())
            ]
        );
        assert_eq!(std::fs::read_to_string(f.live_path()).unwrap(), "1\n");
        assert_eq!(
            f.conf_path(),
            dir.path()
                .join("etc/sysctl.d/90-cattle-net.ipv4.ip_forward.conf")
        );
        assert_eq!(
            std::fs::read_to_string(f.conf_path()).unwrap(),
            "# Written by Cattle's `sysctl` facility; changed files are put back.\n\
             net.ipv4.ip_forward = 1\n"
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn each_half_is_put_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let f = sysctl(dir.path(), "vm.swappiness", "10", "10\n");
        // Live already right: only the file.
        let (result, lines) = apply(&f, &env);
        result.unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("wrote "));
        // File edited by hand: put back.
        std::fs::write(f.conf_path(), "vm.swappiness = 60\n").unwrap();
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        f.apply_in(&env).unwrap();
        // Live changed behind our back: only the live value.
        std::fs::write(f.live_path(), "60\n").unwrap();
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        let (result, lines) = apply(&f, &env);
        result.unwrap();
        assert_eq!(lines, ["set vm.swappiness to 10"]);
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn values_compare_with_whitespace_normalized() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let f = sysctl(
            dir.path(),
            "net.ipv4.tcp_rmem",
            "4096  131072 6291456 ",
            "4096\t131072\t6291456\n",
        );
        std::fs::create_dir_all(&f.conf_dir).unwrap();
        std::fs::write(f.conf_path(), f.conf()).unwrap();
        assert_eq!(f.value, "4096 131072 6291456");
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn an_unknown_parameter_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let f = sysctl(dir.path(), "net.ipv4.ip_forward", "1", "0\n");
        let f = Sysctl {
            name: "net.ipv4.no_such_thing".into(),
            ..f
        };
        let err = f.check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("there is no sysctl net.ipv4.no_such_thing on this host"),
            "{err}"
        );
    }

    #[test]
    fn a_write_only_parameter_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = Sysctl {
            name: "net.ipv4.route.flush".into(),
            value: "1".into(),
            proc_sys: PathBuf::from("/proc/sys"),
            conf_dir: dir.path().join("sysctl.d"),
        };
        let err = f.check_in(&Environment::new(dir.path())).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("sysctl net.ipv4.route.flush cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn write_errors_say_whether_a_retry_can_help() {
        let dir = tempfile::tempdir().unwrap();
        let f = sysctl(dir.path(), "net.ipv4.ip_forward", "7", "0\n");
        let error = |errno| f.write_error(std::io::Error::from_raw_os_error(errno));
        let err = error(nix::libc::EINVAL);
        assert!(err.is_permanent());
        assert_eq!(
            err.message(),
            "the kernel refuses value `7` for sysctl net.ipv4.ip_forward: check the value"
        );
        let err = error(nix::libc::EROFS);
        assert!(err.is_permanent());
        assert!(err.message().contains("is read-only here"), "{err}");
        assert!(error(nix::libc::EPERM).is_permanent());
        assert!(!error(nix::libc::EIO).is_permanent());
    }

    #[test]
    fn the_check_reads_the_real_proc_sys_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let f = Sysctl {
            name: "kernel.ostype".into(),
            value: "Linux".into(),
            proc_sys: PathBuf::from("/proc/sys"),
            conf_dir: dir.path().join("sysctl.d"),
        };
        // Live value right, no file yet.
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        assert!(!f.conf_dir.exists());
        std::fs::create_dir(&f.conf_dir).unwrap();
        std::fs::write(f.conf_path(), f.conf()).unwrap();
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"sysctl\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("name = \"net.ipv4.ip_forward\"\nvalue = 1").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "sysctl net.ipv4.ip_forward is 1"
        );
        let plan =
            parse("name = \"net.ipv4.tcp_rmem\"\nvalue = \" 4096\t131072  6291456\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "sysctl net.ipv4.tcp_rmem is 4096 131072 6291456"
        );
        let bad = [
            (
                "name = \"ip_forward\"\nvalue = 1",
                "argument `name` must be a sysctl name",
                (3, 8),
            ),
            (
                "name = \"net/ipv4/ip_forward\"\nvalue = 1",
                "argument `name` must be a sysctl name",
                (3, 8),
            ),
            (
                "name = \"net.ipv4..x\"\nvalue = 1",
                "argument `name` must be a sysctl name",
                (3, 8),
            ),
            (
                "name = \"net.ipv4.conf.*.rp_filter\"\nvalue = 1",
                "argument `name` must be a sysctl name",
                (3, 8),
            ),
            (
                "name = \"net.ipv4.ip_forward\"",
                "step `sysctl` is missing argument `value`",
                (1, 1),
            ),
            (
                "name = \"net.ipv4.ip_forward\"\nvalue = \"1\\n2\"",
                "argument `value` must be a value on one line",
                (4, 9),
            ),
            (
                "name = \"net.ipv4.ip_forward\"\nvalue = \"  \"",
                "argument `value` must be a value on one line",
                (4, 9),
            ),
            (
                "name = \"net.ipv4.ip_forward\"\nvalue = true",
                "argument `value` must be a string or an integer, not boolean",
                (4, 9),
            ),
        ];
        for (args, message, position) in bad {
            let err = parse(args).unwrap_err();
            assert_eq!(err.message, message, "{args}");
            assert_eq!(err.position, Some(position), "{args}");
        }
    }
}

//! `hostname`: the host has a name, now (the kernel's) and at boot (`/etc/hostname`).
//!
//! The live name is set with the `sethostname` system call, which is what
//! `hostnamectl` has `systemd-hostnamed` do; going to it directly needs neither
//! D-Bus nor hostnamed, which minimal hosts lack. `/etc/hostname` is replaced
//! atomically. `/etc/hosts` is left alone (see the docs).

use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{Attributes, write_file};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "hostname",
    args: &["name"],
    summary: "the host's name, now and at boot",
    build,
};

/// The longest host name Linux keeps (`HOST_NAME_MAX`).
const MAX_LEN: usize = 64;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad = args.error("name", "argument `name` must be a host name");
    let name = args.required_str("name")?;
    if let Err(why) = check_name(&name) {
        return Err(bad.with_hint(why));
    }
    Ok(Box::new(Hostname {
        name,
        etc_hostname: PathBuf::from("/etc/hostname"),
        live: Live::Kernel,
    }))
}

/// Whether `name` is a host name (RFC 1123) of at most [`MAX_LEN`] characters,
/// in lower case; why not otherwise.
fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_LEN {
        return Err(format!(
            "`{name}` is {} characters long; Linux keeps at most {MAX_LEN}",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "write `{}`: host names are compared without case, and kept in lower case",
            name.to_ascii_lowercase()
        ));
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a host name: dot-separated labels of 1 to 63 characters of \
             a-z 0-9 -, not starting or ending with `-`"
        ))
    }
}

/// Where the live host name is.
#[derive(Debug)]
enum Live {
    /// The kernel's (`gethostname`, `sethostname`).
    Kernel,
    /// A file standing in for it, in tests.
    #[cfg(test)]
    File(PathBuf),
}

impl Live {
    fn get(&self) -> Result<String, FacilityError> {
        match self {
            Live::Kernel => nix::unistd::gethostname()
                .map(|name| name.to_string_lossy().into_owned())
                .map_err(|err| FacilityError::new(format!("cannot read the host name: {err}"))),
            #[cfg(test)]
            Live::File(path) => std::fs::read_to_string(path)
                .map(|name| name.trim().to_string())
                .map_err(|err| FacilityError::io("read", path, err)),
        }
    }

    fn set(&self, name: &str) -> Result<(), FacilityError> {
        match self {
            Live::Kernel => nix::unistd::sethostname(name).map_err(|err| {
                let message = format!("cannot set the host name to `{name}`: {err}");
                match err {
                    // Not allowed here (a container without the capability):
                    // trying again changes nothing.
                    nix::errno::Errno::EPERM | nix::errno::Errno::EINVAL => {
                        FacilityError::permanent(message)
                    }
                    _ => FacilityError::new(message),
                }
            }),
            #[cfg(test)]
            Live::File(path) => std::fs::write(path, format!("{name}\n"))
                .map_err(|err| FacilityError::io("write", path, err)),
        }
    }
}

#[derive(Debug)]
struct Hostname {
    name: String,
    /// `/etc/hostname`.
    etc_hostname: PathBuf,
    live: Live,
}

impl Hostname {
    /// The name `/etc/hostname` gives, if any: its first line that is not
    /// blank or a comment (as systemd reads it).
    fn at_boot(&self) -> Result<Option<String>, FacilityError> {
        let path = &self.etc_hostname;
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_string)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(FacilityError::io("read", path, err)),
        }
    }

    /// Whether `/etc/hostname` holds exactly the name, as apply writes it.
    fn file_in_place(&self) -> Result<bool, FacilityError> {
        Ok(self.at_boot()?.as_deref() == Some(self.name.as_str()))
    }
}

impl Facility for Hostname {
    fn describe(&self) -> String {
        format!("the host is named {}", self.name)
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let done = self.live.get()? == self.name && self.file_in_place()?;
        Ok(if done { Check::AlreadyDone } else { Check::Run })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        // The live name first: where it cannot be set, /etc/hostname is not
        // changed for the next boot either.
        let live = self.live.get()?;
        if live != self.name {
            self.live.set(&self.name)?;
            ctx.output(&format!("host name was {live}, is now {}", self.name));
        }
        if !self.file_in_place()? {
            let attributes = Attributes {
                mode: 0o644,
                uid: None,
                gid: None,
            };
            write_file(
                &self.etc_hostname,
                format!("{}\n", self.name).as_bytes(),
                attributes,
            )?;
            ctx.output(&format!("wrote {}", self.etc_hostname.display()));
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

    /// `name` wanted, with `/etc/hostname` holding `etc` (`None`: missing) and
    /// the live name `live`, as files in `dir`.
    fn hostname(dir: &Path, name: &str, etc: Option<&str>, live: &str) -> Hostname {
        let f = Hostname {
            name: name.to_string(),
            etc_hostname: dir.join("hostname"),
            live: Live::File(dir.join("kernel-hostname")),
        };
        if let Some(etc) = etc {
            std::fs::write(&f.etc_hostname, etc).unwrap();
        }
        std::fs::write(dir.join("kernel-hostname"), format!("{live}\n")).unwrap();
        f
    }

    fn live(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("kernel-hostname")).unwrap()
    }

    #[test]
    fn renames_the_host_now_and_for_boot_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let f = hostname(dir.path(), "web-1.example.org", Some("debian\n"), "debian");
        assert_eq!(f.describe(), "the host is named web-1.example.org");
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        assert_eq!(live(dir.path()), "debian\n", "the check wrote");
        let (result, lines) = apply(&f, &env);
        result.unwrap();
        assert_eq!(
            lines,
            [
                "host name was debian, is now web-1.example.org".to_string(),
                format!("wrote {}", f.etc_hostname.display())
            ]
        );
        assert_eq!(live(dir.path()), "web-1.example.org\n");
        assert_eq!(
            std::fs::read_to_string(&f.etc_hostname).unwrap(),
            "web-1.example.org\n"
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn each_half_is_put_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        // /etc/hostname missing, live name right.
        let f = hostname(dir.path(), "web-1", None, "web-1");
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        let (result, lines) = apply(&f, &env);
        result.unwrap();
        assert_eq!(lines, [format!("wrote {}", f.etc_hostname.display())]);
        // Live name changed since; /etc/hostname is right, with a comment.
        let f = hostname(
            dir.path(),
            "web-1",
            Some("# set at install\n\nweb-1\n"),
            "other",
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        let (result, lines) = apply(&f, &env);
        result.unwrap();
        assert_eq!(lines, ["host name was other, is now web-1"]);
        assert_eq!(
            std::fs::read_to_string(&f.etc_hostname).unwrap(),
            "# set at install\n\nweb-1\n"
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn the_kernel_name_is_read_and_a_check_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let real = nix::unistd::gethostname()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::write(dir.path().join("hostname"), format!("{real}\n")).unwrap();
        let f = Hostname {
            name: real.clone(),
            etc_hostname: dir.path().join("hostname"),
            live: Live::Kernel,
        };
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
        let other = Hostname {
            name: format!("{}-not", real.split('.').next().unwrap()),
            ..f
        };
        assert_eq!(other.check_in(&env).unwrap(), Check::Run);
        assert_eq!(
            nix::unistd::gethostname().unwrap().to_string_lossy(),
            real.as_str()
        );
    }

    #[test]
    fn host_names() {
        for good in ["web-1", "a", "web-1.example.org", "1x", &"a".repeat(63)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "-web",
            "web-",
            "web_1",
            "web..x",
            ".web",
            "web.",
            "wéb",
            "Web",
            &"a".repeat(65),
            &format!("{}.b", "a".repeat(64)),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |name: &str| {
            let steps = format!("[[step]]\nfacility = \"hostname\"\nname = \"{name}\"\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        assert_eq!(
            parse("web-1").unwrap().steps[0].facility.describe(),
            "the host is named web-1"
        );
        let err = parse("Web-1").unwrap_err();
        assert_eq!(err.message, "argument `name` must be a host name");
        assert_eq!(err.position, Some((3, 8)));
        assert_eq!(
            err.hint.unwrap(),
            "write `web-1`: host names are compared without case, and kept in lower case"
        );
        let err = parse("web_1").unwrap_err();
        assert!(err.hint.unwrap().contains("dot-separated labels"));
        assert!(parse("").is_err());
    }
}

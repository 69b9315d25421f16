//! `systemd_restart`: a systemd service is unmasked and restarted (always runs).

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::Program;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "systemd_restart",
    args: &["service"],
    summary: "unmask and restart a systemd service",
    build,
};

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_service = args.error("service", "argument `service` must be a systemd unit name");
    let service = args.required_str("service")?;
    if service.starts_with('-') || service.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad_service.with_hint(format!(
            "`{service}` is not a unit name; write e.g. \"nginx\" or \"nginx.service\""
        )));
    }
    Ok(Box::new(SystemdRestart { service }))
}

#[derive(Debug)]
struct SystemdRestart {
    service: String,
}

impl Facility for SystemdRestart {
    fn describe(&self) -> String {
        format!("service {} is unmasked and restarted", self.service)
    }

    /// A restart leaves no state to look at: it always runs.
    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        Ok(Check::Run)
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        for action in ["unmask", "restart"] {
            let systemctl = Program::new("systemctl")
                .args([action, &self.service])
                .named(format!("systemctl {action} {}", self.service));
            ctx.run(&systemctl)?.ok()?;
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{apply, check};
    use crate::process::write_fake_program;
    use crate::steps::Plan;
    use std::path::Path;

    /// A context whose `systemctl` is `body`, with its log file path.
    fn fake_systemctl(dir: &Path, body: &str) -> Environment {
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        write_fake_program(&bin, "systemctl", body);
        let mut ctx = Environment::new(dir);
        ctx.path = Some(bin.into());
        ctx
    }

    #[test]
    fn unmasks_then_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let ctx = fake_systemctl(
            dir.path(),
            &format!("echo \"$@\" >> {}\necho \"did $1\"", log.display()),
        );
        let f = SystemdRestart {
            service: "nginx".into(),
        };
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        let (result, lines) = apply(&f, &ctx);
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "unmask nginx\nrestart nginx\n"
        );
        assert_eq!(lines, ["did unmask", "did restart"]);
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
    }

    #[test]
    fn a_failed_restart_names_the_command_status_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = fake_systemctl(
            dir.path(),
            "[ \"$1\" = restart ] || exit 0\necho 'Job for nginx.service failed.' >&2\nexit 1",
        );
        let f = SystemdRestart {
            service: "nginx".into(),
        };
        let err = apply(&f, &ctx).0.unwrap_err();
        assert_eq!(
            err.message(),
            "`systemctl restart nginx` exited with status 1: Job for nginx.service failed."
        );
    }

    #[test]
    fn no_systemctl_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = Environment::new(dir.path());
        ctx.path = Some(dir.path().into());
        let f = SystemdRestart {
            service: "nginx".into(),
        };
        let err = apply(&f, &ctx).0.unwrap_err();
        assert!(
            err.message()
                .starts_with("cannot start `systemctl unmask nginx`"),
            "{err}"
        );
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |service: &str| {
            let steps =
                format!("[[step]]\nfacility = \"systemd_restart\"\nservice = \"{service}\"\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse("nginx.service").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "service nginx.service is unmasked and restarted"
        );
        for bad in ["my service", "/etc/systemd/system/x.service", "--now"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(
                err.message,
                "argument `service` must be a systemd unit name"
            );
            assert_eq!(err.position, Some((3, 11)), "{bad}");
        }
        assert!(parse("").is_err());
    }
}

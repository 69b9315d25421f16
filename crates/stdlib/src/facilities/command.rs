//! `command`: a program has run, unless `creates` exists or `unless` succeeds.

use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::{Program, describe_status};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "command",
    args: &["argv", "creates", "unless", "env"],
    summary: "run a program; `creates` and `unless` guard it",
    build,
};

/// A `command` that exits with this status has done its work and needs the host
/// rebooted; the step counts as done once the host is back.
pub const REBOOT_EXIT_CODE: i32 = 194;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let env = args.optional_str_table("env")?.unwrap_or_default();
    for (name, value) in &env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(args.error(
                "env",
                format!("argument `env`: `{name}` is not an environment variable name"),
            ));
        }
        if name.starts_with("CATTLE_") {
            return Err(args
                .error("env", format!("argument `env` must not set `{name}`"))
                .with_hint("Cattle sets the `CATTLE_*` variables of every program a step starts"));
        }
        if value.contains('\0') {
            return Err(args.error(
                "env",
                format!("argument `env`: the value of `{name}` contains a NUL character"),
            ));
        }
    }
    Ok(Box::new(RunCommand {
        argv: args.required_str_list("argv")?,
        creates: args.optional_absolute_path("creates")?,
        unless: args.optional_str_list("unless")?,
        env,
    }))
}

#[derive(Debug)]
struct RunCommand {
    /// Never empty: the steps parser refuses empty arrays.
    argv: Vec<String>,
    creates: Option<PathBuf>,
    unless: Option<Vec<String>>,
    /// Extra environment for `argv` and `unless`: a way to pass a secret that,
    /// unlike `argv`, other users of the host cannot read in the process list.
    env: Vec<(String, String)>,
}

impl RunCommand {
    fn program(&self, argv: &[String]) -> Program {
        Program::from_argv(argv)
            .expect("the steps parser refuses empty arrays")
            .envs(&self.env)
    }
}

impl Facility for RunCommand {
    fn describe(&self) -> String {
        let mut guards = Vec::new();
        if let Some(creates) = &self.creates {
            guards.push(format!("creates {}", creates.display()));
        }
        if let Some(unless) = &self.unless {
            guards.push(format!("unless `{}`", unless.join(" ")));
        }
        let mut line = format!("command `{}` has run", self.argv.join(" "));
        if !guards.is_empty() {
            line.push_str(&format!(" ({})", guards.join(", ")));
        }
        line
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        if let Some(creates) = &self.creates {
            match std::fs::symlink_metadata(creates) {
                Ok(_) => return Ok(Check::AlreadyDone),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(FacilityError::io("inspect", creates, err)),
            }
        }
        if let Some(unless) = &self.unless {
            let ran = ctx.run(
                &self
                    .program(unless)
                    .named(format!("{} (unless)", unless[0])),
            )?;
            return match ran.code() {
                Some(0) => Ok(Check::AlreadyDone),
                Some(_) => Ok(Check::Run),
                None => Err(FacilityError::new(format!(
                    "`{}` (unless) {}; cannot tell whether to run",
                    unless[0],
                    describe_status(ran.status)
                ))),
            };
        }
        Ok(Check::Run)
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let ran = ctx.run(&self.program(&self.argv))?;
        if ran.code() == Some(REBOOT_EXIT_CODE) {
            ctx.output(&format!(
                "`{}` asks for a reboot (exit status {REBOOT_EXIT_CODE})",
                self.argv[0]
            ));
            return Ok(Applied::RebootNeeded);
        }
        ran.ok()?;
        // Without this, the step would run again on every retry and every config run.
        if let Some(creates) = &self.creates
            && std::fs::symlink_metadata(creates).is_err()
        {
            return Err(FacilityError::new(format!(
                "`{}` succeeded but did not create `{}`",
                self.argv[0],
                creates.display()
            )));
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_LINE_BYTES;
    use crate::facility::testing::{apply, apply_within, check};
    use crate::facility::{Deadline, Environment};
    use crate::steps::Plan;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn cmd(argv: &[&str]) -> RunCommand {
        RunCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            creates: None,
            unless: None,
            env: Vec::new(),
        }
    }

    fn apply_collect(
        f: &RunCommand,
        env: &Environment,
    ) -> (Result<Applied, FacilityError>, Vec<String>) {
        apply(f, env)
    }

    #[test]
    fn runs_in_the_config_dir_and_passes_output_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let f = cmd(&["sh", "-c", "echo one; echo two >&2; touch made"]);
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        let (result, lines) = apply_collect(&f, &ctx);
        result.unwrap();
        assert!(dir.path().join("made").exists());
        assert!(lines.contains(&"one".to_string()), "{lines:?}");
        assert!(lines.contains(&"stderr: two".to_string()), "{lines:?}");
        // No guard: a plain command always runs.
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
    }

    #[test]
    fn non_zero_exit_is_an_error_with_the_last_stderr_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = cmd(&["sh", "-c", "echo first >&2; echo 'disk full' >&2; exit 3"]);
        let (result, _) = apply_collect(&f, &Environment::new(dir.path()));
        assert_eq!(
            result.unwrap_err().message().to_string(),
            "`sh` exited with status 3: disk full"
        );
    }

    #[test]
    fn a_long_line_is_cut_with_its_length_and_the_next_line_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        // 50 MB without a newline, then a short line; and the same on stderr
        // as the program's last words, which become the error.
        let f = cmd(&[
            "sh",
            "-c",
            "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo after; \
             head -c 20000 /dev/zero | tr '\\0' e >&2; exit 1",
        ]);
        let (result, lines) = apply_collect(&f, &Environment::new(dir.path()));
        let cut = format!(
            "{}… [line cut: 50000000 bytes in all]",
            "x".repeat(MAX_LINE_BYTES)
        );
        assert_eq!(
            lines.len(),
            3,
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(lines.contains(&cut));
        assert!(lines.contains(&"after".to_string()));
        let error = result.unwrap_err().message().to_string();
        assert!(
            error.ends_with(&format!(
                "{}… [line cut: 20000 bytes in all]",
                "e".repeat(MAX_LINE_BYTES)
            )),
            "{}",
            &error[..80]
        );
    }

    #[test]
    fn a_slow_observer_holds_the_program_up_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        // 3,000 lines of 1,000 bytes: far more than the pipe and the channel hold.
        let f = cmd(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 3000 ]; do printf '%04d%0996d\\n' $i 0; i=$((i+1)); done; touch finished",
        ]);
        let finished = dir.path().join("finished");
        let mut lines = Vec::new();
        let mut held_up = None;
        let env = Environment::new(dir.path());
        let result = f.apply(&mut Context::new(&env, Vec::new(), None, &mut |line| {
            if lines.len() == 10 {
                std::thread::sleep(Duration::from_millis(500));
                held_up = Some(!finished.exists());
            }
            // Slower than the program: 3,000 lines take more than OUTPUT_GRACE.
            if lines.len() % 2 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            lines.push(line[..4].to_string());
        }));
        result.unwrap();
        assert_eq!(held_up, Some(true), "the program ran ahead of its observer");
        let expected: Vec<String> = (0..3000).map(|i| format!("{i:04}")).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn a_background_process_holding_the_output_open_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let f = cmd(&["sh", "-c", "sleep 20 & echo started"]);
        let started = Instant::now();
        let (result, lines) = apply_collect(&f, &Environment::new(dir.path()));
        result.unwrap();
        assert_eq!(lines, ["started"]);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_hung_program_is_killed_with_its_process_group_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        // The program starts a child of its own, then hangs.
        let f = cmd(&["sh", "-c", "sleep 60 & echo $! > child.pid; sleep 60"]);
        let started = Instant::now();
        let deadline = Some(Deadline::after(Duration::from_millis(300)));
        let (result, _) = apply_within(&f, &env, deadline);
        assert_eq!(
            result.unwrap_err().message().to_string(),
            "`sh` timed out after 300ms; killed it and its process group"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        crate::facility::testing::assert_gone_soon(&dir.path().join("child.pid"));
    }

    #[test]
    fn a_hung_unless_guard_times_out_too() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let f = RunCommand {
            unless: Some(vec!["sleep".to_string(), "60".to_string()]),
            ..cmd(&["true"])
        };
        let deadline = Some(Deadline::after(Duration::from_millis(200)));
        let err = f
            .check(&mut Context::new(&env, Vec::new(), deadline, &mut |_| {}))
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("`sleep (unless)` timed out after 200ms"),
            "{err}"
        );
    }

    #[test]
    fn a_signal_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = cmd(&["sh", "-c", "kill -9 $$"]);
        let (result, _) = apply_collect(&f, &Environment::new(dir.path()));
        assert_eq!(
            result.unwrap_err().message().to_string(),
            "`sh` was killed by signal SIGKILL"
        );
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = cmd(&["cattle-no-such-program"]);
        let (result, _) = apply_collect(&f, &Environment::new(dir.path()));
        let err = result.unwrap_err();
        assert!(
            err.message()
                .starts_with("cannot start `cattle-no-such-program`"),
            "{err}"
        );
    }

    #[test]
    fn creates_guards_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let marker = dir.path().join("marker");
        let mut f = cmd(&["touch", marker.to_str().unwrap()]);
        f.creates = Some(marker.clone());
        assert_eq!(
            f.describe(),
            format!(
                "command `touch {0}` has run (creates {0})",
                marker.display()
            )
        );
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn success_without_creating_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = cmd(&["true"]);
        f.creates = Some(dir.path().join("never"));
        let (result, _) = apply_collect(&f, &Environment::new(dir.path()));
        assert!(
            result
                .unwrap_err()
                .message()
                .to_string()
                .contains("did not create")
        );
    }

    #[test]
    fn unless_decides_by_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let mut f = cmd(&["true"]);
        f.unless = Some(vec!["test".into(), "-e".into(), "flag".into()]);
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        std::fs::write(dir.path().join("flag"), "").unwrap();
        assert_eq!(check(&f, &ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn unless_that_cannot_start_or_is_killed_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let mut f = cmd(&["true"]);
        f.unless = Some(vec!["cattle-no-such-program".into()]);
        assert!(
            check(&f, &ctx)
                .unwrap_err()
                .message()
                .to_string()
                .contains("cannot start")
        );
        f.unless = Some(vec!["sh".into(), "-c".into(), "kill -9 $$".into()]);
        assert!(
            check(&f, &ctx)
                .unwrap_err()
                .message()
                .to_string()
                .contains("SIGKILL")
        );
    }

    #[test]
    fn env_reaches_the_program_and_its_unless_guard() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Environment::new(dir.path());
        let mut f = cmd(&["sh", "-c", "printf %s \"$GREETING\" > got"]);
        f.env = vec![("GREETING".to_string(), "hello there".to_string())];
        f.unless = Some(vec![
            "sh".into(),
            "-c".into(),
            "[ \"$GREETING\" != 'hello there' ]".into(),
        ]);
        assert_eq!(check(&f, &ctx).unwrap(), Check::Run);
        apply(&f, &ctx).0.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("got")).unwrap(),
            "hello there"
        );
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan::parse(
            "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"flaky.sh\"]\nunless = [\"test\", \"-e\", \"/x\"]\n",
            Path::new("cattle.toml"),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "command `sh flaky.sh` has run (unless `test -e /x`)"
        );

        for bad in [
            "argv = [\"true\"]\nenv = {}",
            "argv = [\"true\"]\nenv = { A = 1 }",
            "argv = [\"true\"]\nenv = [\"A=1\"]",
            "argv = [\"true\"]\nenv = { CATTLE_STEP = \"9\" }",
            "argv = []",
            "argv = \"sh x\"",
            "argv = [\"true\"]\ncreates = \"x\"",
        ] {
            let source = format!("[[step]]\nfacility = \"command\"\n{bad}\n");
            assert!(
                Plan::parse(&source, Path::new("cattle.toml"), dir.path()).is_err(),
                "{bad}"
            );
        }
    }
}

//! `command`: a program has run, unless `creates` exists or `unless` succeeds.
//!
//! Also home of [`run_logged`], which the facilities that start programs share.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::facility::{Check, Context, Deadline, Facility, FacilityError};
use crate::steps::{ArgError, Args};

pub(crate) const ARGS: &[&str] = &["argv", "creates", "unless", "env"];

/// A `command` that exits with this status has done its work and needs the host
/// rebooted; the step counts as done once the host is back.
pub const REBOOT_EXIT_CODE: i32 = 194;

pub(crate) fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
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

impl Facility for RunCommand {
    fn name(&self) -> &'static str {
        "command"
    }

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

    fn check(&self, ctx: &Context) -> Result<Check, FacilityError> {
        if let Some(creates) = &self.creates {
            match std::fs::symlink_metadata(creates) {
                Ok(_) => return Ok(Check::AlreadyDone),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(FacilityError::io("inspect", creates, err)),
            }
        }
        if let Some(unless) = &self.unless {
            let mut cmd = ctx.command(&unless[0]);
            cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
            cmd.args(&unless[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().map_err(|err| {
                FacilityError::new(format!("cannot start `{}` (unless): {err}", unless[0]))
            })?;
            let status = wait_within(&mut child, &unless[0], ctx.deadline)?;
            return match status.code() {
                Some(0) => Ok(Check::AlreadyDone),
                Some(_) => Ok(Check::Run),
                None => Err(FacilityError::new(format!(
                    "`{}` (unless) {}; cannot tell whether to run",
                    unless[0],
                    describe_status(status)
                ))),
            };
        }
        Ok(Check::Run)
    }

    fn apply(&self, ctx: &Context, output: &mut dyn FnMut(&str)) -> Result<(), FacilityError> {
        let mut cmd = ctx.command(&self.argv[0]);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.argv[1..]);
        let (status, last_stderr) = run_collecting(cmd, &self.argv[0], ctx.deadline, output)?;
        if status.code() == Some(REBOOT_EXIT_CODE) {
            // Done, once the host has rebooted: whoever runs the plan reboots it.
            output(&format!(
                "`{}` asks for a reboot (exit status {REBOOT_EXIT_CODE})",
                self.argv[0]
            ));
            ctx.request_reboot();
            return Ok(());
        }
        judge(status, &self.argv[0], last_stderr)?;
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
        Ok(())
    }
}

/// How often [`run_logged`] looks whether the program has exited.
const POLL: Duration = Duration::from_millis(50);

/// After the program has exited, how long [`run_logged`] waits for more of its
/// output when none comes: a background process it started may hold the pipes open.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Longest line passed on: a longer one is cut here and ends with
/// `… [line cut: N bytes in all]`, so memory stays bounded whatever a program prints.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines read ahead of the observer: a program that prints faster than its
/// output can be written waits on its full pipe instead of filling memory.
const LINES_IN_FLIGHT: usize = 64;

/// After the program has exited, at most this much more output is read: what
/// its pipes and the line channel can hold. More means a background process
/// it left behind keeps writing, and is not waited for.
const AFTER_EXIT_BYTES: usize = 4 * 1024 * 1024;

/// Run `cmd` to completion, passing each line it writes to `output` (stderr
/// lines prefixed with "stderr: "). A failure to start, a non-zero exit or a
/// signal is an error naming `what` (e.g. "apt-get install"), with the last
/// line the program wrote to stderr.
pub(super) fn run_logged(
    cmd: Command,
    what: &str,
    deadline: Option<Deadline>,
    output: &mut dyn FnMut(&str),
) -> Result<(), FacilityError> {
    let (status, last_stderr) = run_collecting(cmd, what, deadline, output)?;
    judge(status, what, last_stderr)
}

/// A finished program's status as a result: success, or an error naming
/// `what`, how it ended and the last line it wrote to stderr.
fn judge(status: ExitStatus, what: &str, last_stderr: Option<String>) -> Result<(), FacilityError> {
    if status.success() {
        return Ok(());
    }
    let mut message = format!("`{what}` {}", describe_status(status));
    if let Some(line) = last_stderr {
        message.push_str(&format!(": {}", line.trim()));
    }
    Err(FacilityError::new(message))
}

/// [`run_logged`] without the verdict: how the program ended and the last
/// line it wrote to stderr.
fn run_collecting(
    mut cmd: Command,
    what: &str,
    deadline: Option<Deadline>,
    output: &mut dyn FnMut(&str),
) -> Result<(ExitStatus, Option<String>), FacilityError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|err| FacilityError::new(format!("cannot start `{what}`: {err}")))?;

    // One reader thread per pipe, so that neither pipe can fill up and block the
    // program while the other is read; lines reach `output` in about the order
    // they were written. The channel is bounded: when `output` is slow (or
    // blocks, as an agent whose disk is full does), the readers wait, the pipes
    // fill and the program waits for them, and memory does not grow.
    let (tx, rx) = mpsc::sync_channel(LINES_IN_FLIGHT);
    if let Some(stdout) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || forward_lines(stdout, false, &tx));
    }
    if let Some(stderr) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || forward_lines(stderr, true, &tx));
    }
    drop(tx);

    let wait_error = |err| FacilityError::new(format!("cannot wait for `{what}`: {err}"));
    let mut last_stderr = None;
    // When the program exited, how much output came after, and when the last did.
    let mut exited: Option<(usize, Instant)> = None;
    loop {
        match rx.recv_timeout(POLL) {
            Ok((is_stderr, line)) => {
                if let Some((after, last)) = &mut exited {
                    *after += line.len() + 1;
                    *last = Instant::now();
                }
                if is_stderr {
                    output(&format!("stderr: {line}"));
                    if !line.trim().is_empty() {
                        last_stderr = Some(line);
                    }
                } else {
                    output(&line);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        // A program may leave a background process holding its output open:
        // once the program has exited, take what it left in the pipes, then
        // stop when no more comes for a moment (or when far more comes than it
        // could have left). The reader threads end when that process closes
        // the pipes, or write into a closed channel and stop.
        match exited {
            None => {
                if child.try_wait().map_err(wait_error)?.is_some() {
                    exited = Some((0, Instant::now()));
                } else if let Some(deadline) = deadline
                    && Instant::now() >= deadline.at
                {
                    return Err(kill_for_timeout(&mut child, what, deadline));
                }
            }
            Some((after, last)) if after > AFTER_EXIT_BYTES || last.elapsed() > OUTPUT_GRACE => {
                break;
            }
            Some(_) => {}
        }
    }

    let status = child.wait().map_err(wait_error)?;
    Ok((status, last_stderr))
}

/// Wait for `child` (started by [`Context::command`]) until `deadline`.
fn wait_within(
    child: &mut Child,
    what: &str,
    deadline: Option<Deadline>,
) -> Result<ExitStatus, FacilityError> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(err) => {
                return Err(FacilityError::new(format!(
                    "cannot wait for `{what}`: {err}"
                )));
            }
        }
        if let Some(deadline) = deadline
            && Instant::now() >= deadline.at
        {
            return Err(kill_for_timeout(child, what, deadline));
        }
        std::thread::sleep(POLL);
    }
}

/// Kill `child` and everything in its process group (which [`Context::command`]
/// made its own), and say so.
fn kill_for_timeout(child: &mut Child, what: &str, deadline: Deadline) -> FacilityError {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    FacilityError::new(format!(
        "`{what}` timed out after {}; killed it and its process group",
        humantime::format_duration(deadline.timeout)
    ))
}

/// "exited with status 3" or "was killed by signal SIGKILL", for a failed program.
pub(super) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("was killed by signal {signal}"),
            Err(_) => format!("was killed by signal {signal}"),
        },
        (None, None) => format!("ended abnormally ({status})"),
    }
}

/// Send each line `pipe` yields to `tx`, without its line ending. Reads with a
/// bounded buffer: a line longer than [`MAX_LINE_BYTES`] is cut there and ends
/// with a marker giving its full length; the rest of it is read and dropped.
fn forward_lines(pipe: impl Read, is_stderr: bool, tx: &mpsc::SyncSender<(bool, String)>) {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    // Bytes of the current line so far, kept or not.
    let mut length: u64 = 0;
    let mut pending = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => &[],
        };
        if buf.is_empty() {
            if pending {
                let _ = tx.send((is_stderr, finish_line(&line, length)));
            }
            return;
        }
        let (chunk, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (&buf[..end], true),
            None => (buf, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        length += chunk.len() as u64;
        pending = true;
        let used = chunk.len() + usize::from(newline);
        reader.consume(used);
        if newline {
            if tx.send((is_stderr, finish_line(&line, length))).is_err() {
                return;
            }
            line.clear();
            length = 0;
            pending = false;
        }
    }
}

/// A line as read (at most [`MAX_LINE_BYTES`] of it) and its full length: the
/// text to pass on, with the cut marked when it was cut.
fn finish_line(kept: &[u8], length: u64) -> String {
    let text = String::from_utf8_lossy(kept);
    if length > kept.len() as u64 {
        format!("{text}… [line cut: {length} bytes in all]")
    } else {
        text.trim_end_matches('\r').to_string()
    }
}

/// Write an executable shell script `name` into `dir`, for tests that stand in
/// for programs such as `systemctl` by pointing [`Context::path`] at `dir`.
///
/// The script must answer `--cattle-probe` by exiting 0: after writing, it is
/// started until that works, because another test thread that forks while the
/// file is still open for writing makes starting it fail with "Text file busy".
#[cfg(test)]
pub(super) fn write_fake_program(dir: &std::path::Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;

    let path = dir.join(name);
    let script = format!("#!/bin/sh\n[ \"$1\" = --cattle-probe ] && exit 0\n{body}\n");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    for _ in 0..100 {
        match Command::new(&path).arg("--cattle-probe").status() {
            Ok(status) if status.success() => return,
            Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => panic!("fake program {} does not start: {other:?}", path.display()),
        }
    }
    panic!("fake program {} stays busy", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Plan;
    use std::path::Path;

    fn cmd(argv: &[&str]) -> RunCommand {
        RunCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            creates: None,
            unless: None,
            env: Vec::new(),
        }
    }

    fn apply_collect(f: &RunCommand, ctx: &Context) -> (Result<(), FacilityError>, Vec<String>) {
        let mut lines = Vec::new();
        let result = f.apply(ctx, &mut |line| lines.push(line.to_string()));
        (result, lines)
    }

    #[test]
    fn runs_in_the_config_dir_and_passes_output_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(dir.path());
        let f = cmd(&["sh", "-c", "echo one; echo two >&2; touch made"]);
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        let (result, lines) = apply_collect(&f, &ctx);
        result.unwrap();
        assert!(dir.path().join("made").exists());
        assert!(lines.contains(&"one".to_string()), "{lines:?}");
        assert!(lines.contains(&"stderr: two".to_string()), "{lines:?}");
        // No guard: a plain command always runs.
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
    }

    #[test]
    fn non_zero_exit_is_an_error_with_the_last_stderr_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = cmd(&["sh", "-c", "echo first >&2; echo 'disk full' >&2; exit 3"]);
        let (result, _) = apply_collect(&f, &Context::new(dir.path()));
        assert_eq!(
            result.unwrap_err().0,
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
        let (result, lines) = apply_collect(&f, &Context::new(dir.path()));
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
        let error = result.unwrap_err().0;
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
        let result = f.apply(&Context::new(dir.path()), &mut |line| {
            if lines.len() == 10 {
                std::thread::sleep(Duration::from_millis(500));
                held_up = Some(!finished.exists());
            }
            // Slower than the program: 3,000 lines take more than OUTPUT_GRACE.
            if lines.len() % 2 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            lines.push(line[..4].to_string());
        });
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
        let (result, lines) = apply_collect(&f, &Context::new(dir.path()));
        result.unwrap();
        assert_eq!(lines, ["started"]);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Whether process `pid` is gone (or a zombie nobody waits for: its group was killed).
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.split_whitespace().nth(2) == Some("Z"),
        }
    }

    #[test]
    fn a_hung_program_is_killed_with_its_process_group_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = Context::new(dir.path());
        ctx.deadline = Some(Deadline::after(Duration::from_millis(300)));
        // The program starts a child of its own, then hangs.
        let f = cmd(&["sh", "-c", "sleep 60 & echo $! > child.pid; sleep 60"]);
        let started = Instant::now();
        let (result, _) = apply_collect(&f, &ctx);
        assert_eq!(
            result.unwrap_err().0,
            "`sh` timed out after 300ms; killed it and its process group"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let child: i32 = std::fs::read_to_string(dir.path().join("child.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone(child) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(child), "the program's own child {child} survived");
    }

    #[test]
    fn a_hung_unless_guard_times_out_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = Context::new(dir.path());
        ctx.deadline = Some(Deadline::after(Duration::from_millis(200)));
        let f = RunCommand {
            unless: Some(vec!["sleep".to_string(), "60".to_string()]),
            ..cmd(&["true"])
        };
        let err = f.check(&ctx).unwrap_err();
        assert!(err.0.starts_with("`sleep` timed out after 200ms"), "{err}");
    }

    #[test]
    fn a_signal_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = cmd(&["sh", "-c", "kill -9 $$"]);
        let (result, _) = apply_collect(&f, &Context::new(dir.path()));
        assert_eq!(result.unwrap_err().0, "`sh` was killed by signal SIGKILL");
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = cmd(&["cattle-no-such-program"]);
        let (result, _) = apply_collect(&f, &Context::new(dir.path()));
        let err = result.unwrap_err();
        assert!(
            err.0.starts_with("cannot start `cattle-no-such-program`"),
            "{err}"
        );
    }

    #[test]
    fn creates_guards_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(dir.path());
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
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        f.apply(&ctx, &mut |_| {}).unwrap();
        assert_eq!(f.check(&ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn success_without_creating_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = cmd(&["true"]);
        f.creates = Some(dir.path().join("never"));
        let (result, _) = apply_collect(&f, &Context::new(dir.path()));
        assert!(result.unwrap_err().0.contains("did not create"));
    }

    #[test]
    fn unless_decides_by_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(dir.path());
        let mut f = cmd(&["true"]);
        f.unless = Some(vec!["test".into(), "-e".into(), "flag".into()]);
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        std::fs::write(dir.path().join("flag"), "").unwrap();
        assert_eq!(f.check(&ctx).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn unless_that_cannot_start_or_is_killed_is_an_error_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(dir.path());
        let mut f = cmd(&["true"]);
        f.unless = Some(vec!["cattle-no-such-program".into()]);
        assert!(f.check(&ctx).unwrap_err().0.contains("cannot start"));
        f.unless = Some(vec!["sh".into(), "-c".into(), "kill -9 $$".into()]);
        assert!(f.check(&ctx).unwrap_err().0.contains("SIGKILL"));
    }

    #[test]
    fn env_reaches_the_program_and_its_unless_guard() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::new(dir.path());
        let mut f = cmd(&["sh", "-c", "printf %s \"$GREETING\" > got"]);
        f.env = vec![("GREETING".to_string(), "hello there".to_string())];
        f.unless = Some(vec![
            "sh".into(),
            "-c".into(),
            "[ \"$GREETING\" != 'hello there' ]".into(),
        ]);
        assert_eq!(f.check(&ctx).unwrap(), Check::Run);
        f.apply(&ctx, &mut |_| {}).unwrap();
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

//! Running programs for facilities: the step's deadline, a process group of
//! its own, output streamed line by line with bounded memory.
//!
//! [`crate::Context::run`] is the only caller: every program a facility starts,
//! checks included, goes through it.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::facility::{Deadline, FacilityError};

/// A program to run, with its arguments and environment.
#[derive(Debug, Clone)]
pub struct Program {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    capture: bool,
    what: Option<String>,
    stdin: Option<Vec<u8>>,
}

impl Program {
    /// `program`, found on the environment's `PATH` unless it is a path.
    pub fn new(program: impl Into<String>) -> Program {
        Program {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            capture: false,
            what: None,
            stdin: None,
        }
    }

    /// `argv[0]` with the arguments `argv[1..]`; `None` for an empty `argv`.
    pub fn from_argv(argv: &[String]) -> Option<Program> {
        let (program, args) = argv.split_first()?;
        Some(Program::new(program.clone()).args(args))
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Program {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Program
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Program {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn envs(mut self, vars: &[(String, String)]) -> Program {
        self.env.extend_from_slice(vars);
        self
    }

    /// Keep stdout in [`Ran::stdout`] instead of logging it: for a program
    /// whose answer the facility reads (`dpkg-query`, `systemctl show`). At
    /// most [`MAX_CAPTURE_BYTES`] are kept; more is an error.
    pub fn capture(mut self) -> Program {
        self.capture = true;
        self
    }

    /// Give the program `bytes` on its standard input, then end of file
    /// (without this, its standard input is `/dev/null`): for a program that
    /// reads a request, such as a custom facility's JSON.
    ///
    /// The bytes are written from a thread of their own while the program
    /// runs, so input larger than a pipe holds cannot block the run, and a
    /// program that exits, or is killed, without reading all of it is no
    /// error: the rest is dropped.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Program {
        self.stdin = Some(bytes.into());
        self
    }

    /// How messages name the program, e.g. "apt-get install"; the program's
    /// name by default.
    pub fn named(mut self, what: impl Into<String>) -> Program {
        self.what = Some(what.into());
        self
    }

    fn what(&self) -> &str {
        self.what.as_deref().unwrap_or(&self.program)
    }
}

/// How a program ended.
#[derive(Debug, Clone)]
pub struct Ran {
    what: String,
    pub status: ExitStatus,
    /// What it wrote on stdout, when it was captured; empty otherwise.
    pub stdout: String,
    /// The last non-blank line it wrote on stderr.
    pub last_stderr: Option<String>,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit status, `None` when a signal ended the program.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// This run, if the program succeeded; otherwise [`Ran::error`].
    pub fn ok(self) -> Result<Ran, FacilityError> {
        if self.success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    /// "`apt-get install` exited with status 100: E: Unable to locate package
    /// nope": how the program ended and the last line it wrote on stderr.
    pub fn error(&self) -> FacilityError {
        let mut message = format!("`{}` {}", self.what, describe_status(self.status));
        if let Some(line) = &self.last_stderr {
            message.push_str(&format!(": {}", line.trim()));
        }
        FacilityError::new(message)
    }
}

/// Most bytes of stdout a captured program may print.
pub const MAX_CAPTURE_BYTES: usize = 4 * 1024 * 1024;

/// How often [`run`] looks whether the program has exited.
const POLL: Duration = Duration::from_millis(50);

/// After the program has exited, how long [`run`] waits for more of its
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

/// Run `program` in `dir` to its end; see [`crate::Context::run`].
pub(crate) fn run(
    program: &Program,
    dir: &Path,
    path: Option<&OsStr>,
    env: &[(String, String)],
    deadline: Option<Deadline>,
    output: &mut dyn FnMut(&str),
) -> Result<Ran, FacilityError> {
    let what = program.what();
    let mut cmd = Command::new(&program.program);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    // systemd's notification socket and watchdog are the agent's: a program a
    // step starts (`systemd-notify`, a daemon run in the foreground) must not
    // speak for it.
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .args(&program.args)
        .current_dir(dir)
        .stdin(if program.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|err| {
        let message = format!("cannot start `{what}`: {err}");
        match err.kind() {
            // Not there, or not a program: trying again in seconds cannot help.
            ErrorKind::NotFound | ErrorKind::PermissionDenied => FacilityError::permanent(message),
            _ => FacilityError::new(message),
        }
    })?;

    // The input is written while the output is read, never before: a program
    // that answers before it has read everything would otherwise fill its
    // output pipe and wait for us while we wait for it. A write error means
    // the program closed its input (exited, or will not read more): not ours
    // to report. If a background process the program left behind holds the
    // pipe open without reading, this thread waits with it; the run does not.
    if let (Some(pipe), Some(bytes)) = (child.stdin.take(), program.stdin.clone()) {
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let _ = pipe.write_all(&bytes);
        });
    }

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
    let mut stdout = String::new();
    let mut overflow = false;
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
                } else if !program.capture {
                    output(&line);
                } else if stdout.len() + line.len() < MAX_CAPTURE_BYTES {
                    stdout.push_str(&line);
                    stdout.push('\n');
                } else {
                    overflow = true;
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
    if overflow {
        return Err(FacilityError::new(format!(
            "`{what}` printed more than {} MiB on stdout; cannot read its answer",
            MAX_CAPTURE_BYTES / 1024 / 1024
        )));
    }
    Ok(Ran {
        what: what.to_string(),
        status,
        stdout,
        last_stderr,
    })
}

/// Kill `child` and everything in its process group (made its own by
/// [`run`]), and say so.
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
pub fn describe_status(status: ExitStatus) -> String {
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
/// for programs such as `systemctl` by pointing [`crate::Environment::path`] at `dir`.
///
/// The script must answer `--cattle-probe` by exiting 0: after writing, it is
/// started until that works, because another test thread that forks while the
/// file is still open for writing makes starting it fail with "Text file busy".
#[cfg(test)]
pub(crate) fn write_fake_program(dir: &std::path::Path, name: &str, body: &str) {
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
    use crate::facility::{Context, Environment};

    fn run_here(program: &Program, deadline: Option<Deadline>) -> Result<Ran, FacilityError> {
        let dir = tempfile::tempdir().unwrap();
        let environment = Environment::new(dir.path());
        let mut output = |_: &str| {};
        let mut ctx = Context::new(&environment, Vec::new(), deadline, &mut output);
        ctx.run(program)
    }

    #[test]
    fn input_larger_than_a_pipe_reaches_the_program_whole() {
        let input: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let ran = run_here(
            &Program::new("sh")
                .args(["-c", "sha256sum"])
                .stdin(input.clone())
                .capture(),
            Some(Deadline::after(Duration::from_secs(60))),
        )
        .unwrap();
        assert!(ran.success());
        use sha2::Digest;
        let expected: String = sha2::Sha256::digest(&input)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            ran.stdout.split_whitespace().next(),
            Some(expected.as_str())
        );
    }

    #[test]
    fn a_program_that_does_not_read_its_input_neither_fails_nor_hangs() {
        let input = vec![b'x'; 5 * 1024 * 1024];
        let started = Instant::now();
        let ran = run_here(
            &Program::new("sh")
                .args(["-c", "echo done"])
                .stdin(input.clone())
                .capture(),
            Some(Deadline::after(Duration::from_secs(60))),
        )
        .unwrap();
        assert!(ran.success());
        assert_eq!(ran.stdout, "done\n");
        // One that waits without reading ends at the deadline, like any other.
        let err = run_here(
            &Program::new("sleep").arg("60").stdin(input),
            Some(Deadline::after(Duration::from_millis(300))),
        )
        .unwrap_err();
        assert!(err.message().contains("timed out after 300ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn without_input_the_program_reads_end_of_file() {
        let ran = run_here(&Program::new("sh").args(["-c", "wc -c"]).capture(), None).unwrap();
        assert_eq!(ran.stdout.trim(), "0");
    }
}

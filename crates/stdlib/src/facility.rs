//! The facility contract: read the state, say whether it must change, change it.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a facility's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The desired state is not in place; `apply` must run.
    Run,
    /// The desired state is already in place; the step is skipped.
    AlreadyDone,
}

/// A facility failed, or could not tell whether it must run.
///
/// The message says what was being attempted and on which object, e.g.
/// "cannot read `/etc/motd`: Permission denied (os error 13)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityError(pub String);

impl FacilityError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// An I/O error on `path` while doing `what` ("read", "create directory", ...).
    pub fn io(what: &str, path: &Path, err: std::io::Error) -> Self {
        Self(format!("cannot {what} `{}`: {err}", path.display()))
    }
}

impl fmt::Display for FacilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FacilityError {}

/// Where a facility runs: the unpacked config directory and how to start programs.
///
/// Facilities start every external program through [`Context::command`], so that
/// the environment they see is decided in one place (and tests can point `PATH`
/// at stand-in programs).
#[derive(Debug, Clone)]
pub struct Context {
    /// The config directory; relative sources such as `install_file`'s are read from here.
    pub config_dir: PathBuf,
    /// `PATH` for programs that facilities start; `None` inherits the process's.
    pub path: Option<OsString>,
    /// Extra environment for programs that facilities start (`CATTLE_*`).
    pub env: Vec<(String, String)>,
    /// When the attempt under way must end; programs still running then are
    /// killed with their process group. `None`: no limit.
    pub deadline: Option<Deadline>,
    /// Raised by a facility whose work needs the host rebooted to take effect.
    reboot: Arc<AtomicBool>,
}

/// The end of an attempt's time, and the timeout it came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub timeout: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }
}

impl Context {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: config_dir.into(),
            path: None,
            env: Vec::new(),
            deadline: None,
            reboot: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Ask for the host to be rebooted once the step's apply returns; the step
    /// counts as done when the host is back.
    pub fn request_reboot(&self) {
        self.reboot.store(true, Ordering::SeqCst);
    }

    /// Whether a facility asked for a reboot (and clear the request).
    pub fn take_reboot_request(&self) -> bool {
        self.reboot.swap(false, Ordering::SeqCst)
    }

    /// A command for `program`, with the context's `PATH` and environment, run in
    /// the config directory, with no standard input, in a process group of its
    /// own so that a timeout can end it and everything it started.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(&self.config_dir);
        cmd.stdin(std::process::Stdio::null());
        cmd.process_group(0);
        cmd
    }
}

/// A small, single-purpose, idempotent action on the host.
///
/// `check` only reads; `apply` changes the host so that a following `check`
/// answers [`Check::AlreadyDone`] (except for facilities such as a service
/// restart, which have no lasting state and always run). A facility that cannot
/// tell whether it must run returns an error from `check`: it is never "done" by
/// default.
pub trait Facility: fmt::Debug + Send + Sync {
    /// The facility's name as written in the steps file, e.g. `install_file`.
    fn name(&self) -> &'static str;

    /// One line describing the desired state, e.g. "directory /var/poems exists".
    fn describe(&self) -> String;

    /// Inspect the host and say whether `apply` must run.
    fn check(&self, ctx: &Context) -> Result<Check, FacilityError>;

    /// Whether this step is a reboot of the host. The runner does not check or
    /// apply such a step: it stops with [`crate::Outcome::RebootRequested`], and
    /// whoever drives it (the agent) reboots the host and counts the step done
    /// once the host is back.
    fn reboots(&self) -> bool {
        false
    }

    /// Change the host. Output worth keeping (a program's stdout and stderr) goes
    /// to `output`, one line per call.
    fn apply(&self, ctx: &Context, output: &mut dyn FnMut(&str)) -> Result<(), FacilityError>;
}

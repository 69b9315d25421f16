//! The facility contract: read the state, say whether it must change, change it.
//!
//! A facility is built from its step's arguments ([`crate::args::Args`]) when
//! the steps file is read, so that every argument error is found before
//! anything runs. On the host, the runner asks [`Facility::check`] whether the
//! desired state is in place and, when it is not, calls [`Facility::apply`].
//! Both get a [`Context`]: the config directory, the attempt's deadline, the
//! step's log, and the one way to start a program ([`Context::run`]).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::diff::Diff;
use crate::process::{self, Program, Ran};

/// What a facility's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The desired state is not in place; `apply` must run.
    Run,
    /// The desired state is already in place; the step is `unchanged`.
    AlreadyDone,
}

/// What a facility's apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The desired state is in place now; the step is `changed`.
    Changed,
    /// The change is made but takes effect only once the host has rebooted
    /// (a `reboot` step, or a `command` exiting with
    /// [`crate::REBOOT_EXIT_CODE`]). The run stops with
    /// [`crate::Outcome::RebootRequested`]; whoever drives it reboots the host
    /// and counts the step `changed` once the host is back.
    RebootNeeded,
}

/// Whether trying the step again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It may: a network error, a lock held by another program, a full disk.
    /// The runner tries again after a backoff, while attempts are left.
    May,
    /// It cannot: the host is not in a state the facility can work from
    /// (`/etc/app exists and is not a directory`), or what the step asks for
    /// cannot be done here. The step fails at once with the reason.
    Cannot,
}

/// A facility failed, or could not tell whether it must run.
///
/// The message says what was being attempted and on which object, e.g.
/// "cannot read `/etc/motd`: Permission denied (os error 13)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityError {
    message: String,
    retry: Retry,
}

impl FacilityError {
    /// An error a retry may get past: the runner tries again.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: Retry::May,
        }
    }

    /// An error no retry can help with: the step fails at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: Retry::Cannot,
        }
    }

    /// An I/O error on `path` while doing `what` ("read", "create directory", ...).
    ///
    /// Permanent when the error is about the shape of the file tree (a file
    /// where a directory must be, or the reverse), which nothing but another
    /// step can change; anything else (permissions, a full disk, I/O errors)
    /// may pass and is retried.
    pub fn io(what: &str, path: &Path, err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        let message = format!("cannot {what} `{}`: {err}", path.display());
        match err.kind() {
            ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::InvalidFilename => {
                Self::permanent(message)
            }
            _ => Self::new(message),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn retry(&self) -> Retry {
        self.retry
    }

    pub fn is_permanent(&self) -> bool {
        self.retry == Retry::Cannot
    }

    /// The same error with its message rewritten (e.g. redacted).
    pub fn map_message(&self, f: impl FnOnce(&str) -> String) -> Self {
        Self {
            message: f(&self.message),
            retry: self.retry,
        }
    }
}

impl fmt::Display for FacilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FacilityError {}

/// Where a plan runs, as whoever runs it (an agent, `cattle apply`) sets it up.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The config directory; relative sources such as `file`'s are read from here.
    pub config_dir: PathBuf,
    /// `PATH` for programs that facilities start; `None` inherits the process's.
    pub path: Option<OsString>,
    /// Extra environment for programs that facilities start (`CATTLE_*`).
    pub env: Vec<(String, String)>,
    /// A PEM file of the CA certificates HTTPS servers (`download`,
    /// `wait_for`) must be signed by, as for the store (`CATTLE_CA_BUNDLE`);
    /// `None`: the system's root certificates.
    pub ca_bundle: Option<PathBuf>,
    /// Check mode: facilities only check; nothing is changed.
    pub check_mode: bool,
    /// Show what steps change in files: before a step's apply (or, in check
    /// mode, instead of it) the runner reports the step's
    /// [`Facility::diff`] as an [`crate::Event::Diff`].
    pub diff: bool,
}

impl Environment {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: config_dir.into(),
            path: None,
            env: Vec::new(),
            ca_bundle: None,
            check_mode: false,
            diff: false,
        }
    }
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

    /// Time left before the deadline (zero once it has passed).
    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// What a facility works with during one check or apply.
pub struct Context<'a> {
    environment: &'a Environment,
    /// `environment.env` plus the step's own (`CATTLE_STEP`, `CATTLE_ATTEMPT`).
    env: Vec<(String, String)>,
    deadline: Option<Deadline>,
    output: &'a mut dyn FnMut(&str),
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("environment", self.environment)
            .field("env", &self.env)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    /// A context in `environment`, with `env` added for programs, ending at
    /// `deadline` (`None`: no limit), whose output lines go to `output`.
    pub fn new(
        environment: &'a Environment,
        env: Vec<(String, String)>,
        deadline: Option<Deadline>,
        output: &'a mut dyn FnMut(&str),
    ) -> Self {
        let mut all = environment.env.clone();
        all.extend(env);
        Self {
            environment,
            env: all,
            deadline,
            output,
        }
    }

    /// The config directory.
    pub fn config_dir(&self) -> &Path {
        &self.environment.config_dir
    }

    /// Whether the run is in check mode: only checks run, and nothing on the
    /// host may change.
    pub fn check_mode(&self) -> bool {
        self.environment.check_mode
    }

    /// When the attempt must end; `None`: no limit. Facilities that wait
    /// (`wait_for`, a download) stop waiting then.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// An HTTP(S) client for this attempt at `url`: the environment's TLS
    /// settings, giving up at the deadline (see [`crate::http`]).
    pub fn http(&self, url: &str) -> Result<ureq::Agent, FacilityError> {
        crate::http::client(url, self.environment.ca_bundle.as_deref(), self.deadline)
    }

    /// The value of `name` among the variables programs get (the
    /// environment's, then the step's: `CATTLE_STEP`, `CATTLE_ATTEMPT`, and
    /// for an agent `CATTLE_HOST_ID` and `CATTLE_EXECUTION_ID`); the last
    /// one set wins, as for the programs.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The CA bundle HTTPS servers must be signed by, if any (for messages).
    pub fn ca_bundle(&self) -> Option<&Path> {
        self.environment.ca_bundle.as_deref()
    }

    /// Log one line of the step's output.
    pub fn output(&mut self, line: &str) {
        (self.output)(line);
    }

    /// Run `program` to its end: the one way a facility starts a program.
    ///
    /// It runs in the config directory, with the environment's `PATH` and
    /// variables plus the program's own, no standard input unless the program
    /// has some ([`Program::stdin`]), in a process group of its own. Its stderr
    /// lines go to the step's output (prefixed `stderr: `), and so do its
    /// stdout lines unless the program captures them ([`Program::capture`]). At the attempt's deadline it is killed
    /// with its whole process group and the run is an error.
    ///
    /// An exit status other than 0 is not an error here: see [`Ran::success`]
    /// and [`Ran::ok`].
    pub fn run(&mut self, program: &Program) -> Result<Ran, FacilityError> {
        process::run(
            program,
            &self.environment.config_dir,
            self.environment.path.as_deref(),
            &self.env,
            self.deadline,
            &mut *self.output,
        )
    }
}

/// A small, single-purpose, idempotent action on the host.
///
/// `check` only reads; `apply` changes the host so that a following `check`
/// answers [`Check::AlreadyDone`] (except for facilities such as a service
/// restart, which have no lasting state and always run). A facility that cannot
/// tell whether it must run returns an error from `check`: it is never "done" by
/// default. Its name and arguments are in its [`crate::facilities::FacilitySpec`].
pub trait Facility: fmt::Debug + Send + Sync {
    /// One line describing the desired state, e.g. "directory /var/poems exists".
    fn describe(&self) -> String;

    /// Inspect the host and say whether `apply` must run. Changes nothing.
    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError>;

    /// Change the host so that the desired state is in place, leaving no
    /// half-done state behind when it fails.
    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError>;

    /// What `apply` would change in a file, for people to read before it
    /// does (check mode, `--diff`). Asked only after `check` said
    /// [`Check::Run`], and like `check` it only reads. `None`: nothing a diff
    /// of a file can show, which is all a facility that writes no file's
    /// contents says (the default).
    fn diff(&self, _ctx: &mut Context<'_>) -> Result<Option<Diff>, FacilityError> {
        Ok(None)
    }
}

/// Helpers for facilities' unit tests: check and apply with no deadline.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// [`check`] and [`apply`] as methods, for tests that build facilities in place.
    pub trait Try {
        fn check_in(&self, env: &Environment) -> Result<Check, FacilityError>;
        fn apply_in(&self, env: &Environment) -> Result<Applied, FacilityError>;
    }

    impl<F: Facility> Try for F {
        fn check_in(&self, env: &Environment) -> Result<Check, FacilityError> {
            check(self, env)
        }
        fn apply_in(&self, env: &Environment) -> Result<Applied, FacilityError> {
            apply(self, env).0
        }
    }

    /// Run `facility` as the runner would, twice: the first run changes the
    /// host; the second finds the state in place and changes nothing under
    /// `root`: every path, byte, mode, owner and modification time stays.
    pub fn converges(facility: &dyn Facility, env: &Environment, root: &Path) {
        assert_eq!(check(facility, env).unwrap(), Check::Run, "the first check");
        assert_eq!(apply(facility, env).0.unwrap(), Applied::Changed);
        let after = snapshot(root);
        assert_eq!(
            check(facility, env).unwrap(),
            Check::AlreadyDone,
            "the second check"
        );
        assert_eq!(snapshot(root), after, "the second run changed the tree");
    }

    /// One path of a [`snapshot`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Node {
        /// `file`, `dir`, `link` or `other`.
        pub kind: &'static str,
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub mtime: (i64, i64),
        /// A file's bytes or a link's target.
        pub data: Vec<u8>,
    }

    /// Everything under `root` (itself included, as ""), links not followed.
    pub fn snapshot(root: &Path) -> std::collections::BTreeMap<PathBuf, Node> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let mut nodes = std::collections::BTreeMap::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(rel) = todo.pop() {
            let path = root.join(&rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let (kind, data) = if meta.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    todo.push(rel.join(entry.unwrap().file_name()));
                }
                ("dir", Vec::new())
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("link", target.as_os_str().as_bytes().to_vec())
            } else if meta.is_file() {
                ("file", std::fs::read(&path).unwrap())
            } else {
                ("other", Vec::new())
            };
            let node = Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                data,
            };
            nodes.insert(rel, node);
        }
        nodes
    }

    /// `facility.diff` in `env`, rendered as the runner shows it; asserts
    /// that asking changed nothing under `root`.
    pub fn diff(facility: &dyn Facility, env: &Environment, root: &Path) -> Option<String> {
        let before = snapshot(root);
        let diff = facility
            .diff(&mut Context::new(env, Vec::new(), None, &mut |_| {}))
            .unwrap();
        assert_eq!(snapshot(root), before, "the diff changed the tree");
        diff.map(|diff| diff.render(false))
    }

    /// Assert that the process whose ID a program wrote to `pid_file` is gone
    /// within 5 s (or a zombie nobody waits for: its group was killed).
    pub fn assert_gone_soon(pid_file: &Path) {
        let pid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.split_whitespace().nth(2) == Some("Z"),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "the program's own child {pid} survived");
    }

    /// Whether the tests run as root, which changing owners needs.
    pub fn is_root() -> bool {
        if nix::unistd::Uid::effective().is_root() {
            return true;
        }
        eprintln!("not running as root: skipping the ownership change");
        false
    }

    /// `facility.check` in `env`, its output dropped.
    pub fn check(facility: &dyn Facility, env: &Environment) -> Result<Check, FacilityError> {
        facility.check(&mut Context::new(env, Vec::new(), None, &mut |_| {}))
    }

    /// `facility.apply` in `env`, with the lines it logged.
    pub fn apply(
        facility: &dyn Facility,
        env: &Environment,
    ) -> (Result<Applied, FacilityError>, Vec<String>) {
        apply_within(facility, env, None)
    }

    /// `facility.apply` in `env` until `deadline`, with the lines it logged.
    pub fn apply_within(
        facility: &dyn Facility,
        env: &Environment,
        deadline: Option<Deadline>,
    ) -> (Result<Applied, FacilityError>, Vec<String>) {
        let mut lines = Vec::new();
        let result = facility.apply(&mut Context::new(env, Vec::new(), deadline, &mut |l| {
            lines.push(l.to_string())
        }));
        (result, lines)
    }
}

//! Throwaway Debian systems with systemd as PID 1, booted with `systemd-nspawn`: to test what
//! Cattle does to a real host (users, packages, systemd units, hostname) on one that is
//! thrown away after the test.
//!
//! Every container starts from the same root tree, a minimal Debian bookworm with systemd and
//! D-Bus that `scripts/install-container-tools.sh` builds once with debootstrap and caches under
//! `/var/cache/cattle-tests` (the first container of a test run builds it if it is missing,
//! about 35 s). The tree is the read-only lower layer of an overlay mount, so a container
//! starts with an empty copy-on-write layer of its own instead of a copy of 200 MB: it boots to
//! `running` in a few tenths of a second.
//!
//! The host this is made for (the test and CI machines) does not run systemd: `machinectl`
//! and machine registration are not available, so each container runs in cgroups of its own
//! (`cattle-test-<pid>-<n>` in the `name=systemd` and unified hierarchies of the hybrid cgroup
//! layout), and commands run inside through `nsenter` into its PID 1's namespaces.
//!
//! Tests must run as root. Missing tools make [`Container::boot`] panic with what to run
//! (`scripts/install-container-tools.sh`; `scripts/test.sh` runs it); tests are never
//! silently skipped.
//!
//! Limits of such a container: resource limits (`MemoryMax=`, `LimitNOFILE=` above 20000)
//! are not enforced, and `/proc/sys` is read-only (sysctl cannot be set).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::{Cmd, Output};

/// How long [`ContainerBuilder::boot`] waits for systemd to reach `running`: it takes well
/// under a second on an idle machine, this leaves room for a loaded one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the teardown waits for the container's processes to end after each kill.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long building the root tree may take (it waits for another test process's build).
const TREE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The two cgroup hierarchies a container gets a cgroup in: the named `systemd` one (v1)
/// and the unified one (v2), as the hybrid layout of the test machines mounts them.
const CGROUP_V1: &str = "/sys/fs/cgroup/systemd";
const CGROUP_V2: &str = "/sys/fs/cgroup/unified";
/// What every name (machine name, cgroup, state directory) starts with:
/// `cattle-test-<pid of the test process>-<counter>`.
const NAME_PREFIX: &str = "cattle-test-";
/// `PATH` of the commands run inside a container (systemd's default).
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A booted container: a throwaway Debian bookworm whose PID 1 is systemd, in the state
/// `systemctl is-system-running` calls `running`.
///
/// Its root file system is an overlay of the cached root tree and a layer of its own, in a
/// directory of the host ([`root`](Self::root), [`path`](Self::path)). It shares the host's
/// network (so `apt-get` reaches the Debian archive) but has its own PID, mount, UTS (hostname)
/// and IPC namespaces, hostname (its [`name`](Self::name)) and `/etc/machine-id`.
///
/// Dropping it kills it (its PID 1, and with it every process inside) and removes its cgroups,
/// its mount and its files. A test process killed before that leaves them behind; the next
/// test process to boot a container removes them.
pub struct Container {
    name: String,
    /// The container's own files: `upper/` and `work/` of the overlay, the merged `root/`
    /// and systemd-nspawn's output (`console.log`).
    dir: PathBuf,
    nspawn: Option<Child>,
    pid1: Option<Pid>,
    /// What [`ContainerBuilder::bind_ro`] and [`ContainerBuilder::bind`] bound, bound
    /// again at each boot.
    binds: Vec<Bind>,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("name", &self.name)
            .field("root", &self.root())
            .field("nspawn", &self.nspawn.as_ref().map(Child::id))
            .field("pid1", &self.pid1)
            .finish()
    }
}

/// Options for [`Container::builder`]: what to bind into the container.
#[derive(Debug, Clone, Default)]
pub struct ContainerBuilder {
    binds: Vec<Bind>,
}

/// A host file or directory bound into a container.
#[derive(Debug, Clone)]
struct Bind {
    host: PathBuf,
    inside: PathBuf,
    writable: bool,
}

impl ContainerBuilder {
    /// Bind-mounts `host` (a file or a directory) read-only at the absolute path `inside`,
    /// e.g. the built binaries ([`crate::cattle_bin`], [`crate::agent_bin`]): built on the
    /// Debian bookworm host, they run in the container. A missing mount point is created.
    pub fn bind_ro(mut self, host: impl AsRef<Path>, inside: impl AsRef<Path>) -> Self {
        self.binds.push(Bind {
            host: host.as_ref().to_owned(),
            inside: inside.as_ref().to_owned(),
            writable: false,
        });
        self
    }

    /// Bind-mounts the host directory `host` read-write at the absolute path `inside`, e.g.
    /// one that several containers share to hand files to each other.
    pub fn bind(mut self, host: impl AsRef<Path>, inside: impl AsRef<Path>) -> Self {
        self.binds.push(Bind {
            host: host.as_ref().to_owned(),
            inside: inside.as_ref().to_owned(),
            writable: true,
        });
        self
    }

    /// Boots the container and waits until systemd reports `running`.
    ///
    /// Panics with what to do if a prerequisite is missing (root, the hybrid cgroup layout,
    /// the tools of `scripts/install-container-tools.sh`), and with systemd-nspawn's output if
    /// the container does not boot within 60 s; with `systemctl --failed` too if it boots
    /// `degraded`: a unit failing at boot would make tests of units misleading.
    pub fn boot(self) -> Container {
        let setup = setup();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let started = Instant::now();
        // From here on, a panic drops `container`, which removes whatever exists of it.
        let mut container = Container {
            dir: state_dir().join(&name),
            name,
            nspawn: None,
            pid1: None,
            binds: self.binds,
        };
        container.mount_root(&setup.tree);
        // Each container is a machine of its own, e.g. to a lease naming its holder by it.
        let machine_id = uuid::Uuid::new_v4().simple().to_string();
        let machine_id_file = container.path("/etc/machine-id");
        fs::write(&machine_id_file, format!("{machine_id}\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", machine_id_file.display()));
        container.start(setup);
        container.wait_running(started + BOOT_TIMEOUT);
        container
    }
}

impl Container {
    /// Boots a container without binds: see [`ContainerBuilder::boot`].
    pub fn boot() -> Container {
        Container::builder().boot()
    }

    /// A builder, to bind host files into the container before booting it.
    pub fn builder() -> ContainerBuilder {
        ContainerBuilder::default()
    }

    /// The machine name, also the container's hostname and the name of its cgroups:
    /// `cattle-test-<pid>-<n>`, unique among the containers running on the host.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host pid of the container's PID 1 (systemd).
    pub fn pid1(&self) -> u32 {
        let pid = self.pid1.expect("a booted container has a PID 1");
        u32::try_from(pid.as_raw()).expect("pids are positive")
    }

    /// The host directory where the container's root file system is mounted.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The host path of `inside` (an absolute path in the container), to read and write the
    /// container's files from the test.
    ///
    /// This is the container's root file system only: what is mounted inside the container
    /// (`/run`, `/tmp`, `/proc`, `/dev`) is not there. Symbolic links on the way are followed
    /// by the host: one with an absolute target (e.g. `/var/run`, or the links in
    /// `/etc/systemd/system/*.wants/`) leads out of the container. Read those with
    /// [`exec`](Self::exec).
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        assert!(
            !inside
                .components()
                .any(|c| matches!(c, Component::ParentDir)),
            "Container::path: {} must not go up with `..`",
            inside.display()
        );
        self.root().join(inside.strip_prefix("/").unwrap_or(inside))
    }

    /// A command running `argv` inside the container, as root in `/`, with only `PATH`
    /// (systemd's default) and `HOME=/root` in its environment; add to it (stdin, timeout,
    /// variables) and [`run`](Cmd::run) it.
    ///
    /// It runs in all the namespaces of the container's PID 1 (`nsenter --all`), but stays in
    /// the test process's cgroup: outside the container's cgroup tree, as no process started
    /// by systemd would be. Whatever it leaves running dies with the container.
    pub fn command(&self, argv: &[&str]) -> Cmd {
        assert!(!argv.is_empty(), "Container::command: empty argv");
        Cmd::new(&setup().nsenter)
            .args(["--target", &self.pid1().to_string(), "--all", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("HOME", "/root")
    }

    /// Waits up to `timeout` for the container to reboot itself (`systemctl reboot`, a
    /// `reboot` step), then boots it again, as `systemd-nspawn@.service` does on a systemd
    /// host: systemd-nspawn exits with status 133 when its container reboots. The file system
    /// and the machine ID are kept; `/run` and `/tmp` start empty, as after a real reboot.
    ///
    /// Panics if systemd-nspawn does not exit within `timeout`, exits otherwise (a container
    /// that powered off, or crashed), or the container does not boot again.
    pub fn await_reboot(&mut self, timeout: Duration) {
        let mut nspawn = self
            .nspawn
            .take()
            .expect("a booted container has systemd-nspawn");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = nspawn.try_wait().expect("try_wait on systemd-nspawn") {
                break status;
            }
            if Instant::now() >= deadline {
                self.nspawn = Some(nspawn);
                panic!(
                    "container {} did not reboot within {timeout:?}; its console:\n{}",
                    self.name,
                    self.console_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.pid1 = None;
        assert_eq!(
            status.code(),
            Some(133),
            "container {}: systemd-nspawn exited with {status}, not for a reboot; its console:\n{}",
            self.name,
            self.console_log()
        );
        // The container's cgroups stay, with what systemd-nspawn left in them.
        let [v1, v2] = self.cgroups();
        for cgroup in [&v2, &v1] {
            for entry in fs::read_dir(cgroup).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_cgroup(&entry.path()).unwrap_or_else(|e| {
                        panic!("remove cgroup {}: {e}", entry.path().display())
                    });
                }
            }
        }
        let started = Instant::now();
        self.start(setup());
        self.wait_running(started + BOOT_TIMEOUT);
    }

    /// Runs `argv` inside the container (see [`command`](Self::command)) to completion.
    /// Panics if it cannot be started, is killed by a signal, or runs over 120 s.
    #[track_caller]
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv).run()
    }

    /// Runs `script` with `sh -c` inside the container, as [`exec`](Self::exec) does.
    #[track_caller]
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// The output of systemd-nspawn so far: the container's console, i.e. systemd's boot
    /// messages, without terminal colours.
    pub fn console_log(&self) -> String {
        let raw = fs::read(self.dir.join("console.log")).unwrap_or_default();
        strip_ansi(&String::from_utf8_lossy(&raw))
    }

    /// The container's cgroup directories: its own cgroup in each hierarchy, under which
    /// systemd-nspawn and the container's systemd make theirs. Removed on drop.
    pub fn cgroups(&self) -> [PathBuf; 2] {
        [
            Path::new(CGROUP_V1).join(&self.name),
            Path::new(CGROUP_V2).join(&self.name),
        ]
    }

    /// Mounts the overlay of `tree` and a new, empty layer on [`root`](Self::root).
    fn mount_root(&self, tree: &Path) {
        for sub in ["upper", "work", "root"] {
            let dir = self.dir.join(sub);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            tree.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        Cmd::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(self.root())
            .run()
            .assert_success();
    }

    /// Starts systemd-nspawn in new cgroups of the container's own and waits for the
    /// container's PID 1 to be systemd.
    /// Made at the first boot, kept for the next ones ([`await_reboot`](Self::await_reboot)).
    fn start(&mut self, setup: &Setup) {
        let [v1, v2] = self.cgroups();
        for cgroup in [&v1, &v2] {
            fs::create_dir_all(cgroup)
                .unwrap_or_else(|e| panic!("create cgroup {}: {e}", cgroup.display()));
        }
        // Appended to: a reboot's console follows the first boot's.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("console.log"))
            .expect("open console.log");
        let mut cmd = Command::new("/bin/sh");
        // The shell moves itself into the new cgroups, then becomes systemd-nspawn: no process
        // of the container ever runs in the test process's cgroups, and two containers never
        // share one (systemd-nspawn makes its own `payload` and `supervisor` cgroups in the
        // cgroup it starts in).
        cmd.arg("-c")
            .arg(r#"echo $$ > "$1" && echo $$ > "$2" && shift 2 && exec "$@""#)
            .arg("sh")
            .arg(v1.join("cgroup.procs"))
            .arg(v2.join("cgroup.procs"))
            .arg(&setup.nspawn)
            .arg("--quiet")
            .arg(format!("--directory={}", self.root().display()))
            .arg(format!("--machine={}", self.name))
            // No systemd on the host: no machined to register with, no scope unit to make.
            .args(["--register=no", "--keep-unit", "--boot"])
            // The console's output goes to console.log (for the panic messages); nothing reads
            // its input.
            .arg("--console=read-only")
            .arg("--link-journal=no");
        for Bind {
            host,
            inside,
            writable,
        } in &self.binds
        {
            assert!(
                host.exists(),
                "Container bind: {} does not exist",
                host.display()
            );
            assert!(
                inside.is_absolute(),
                "Container bind: {} is not absolute",
                inside.display()
            );
            let (host, inside) = (host.display().to_string(), inside.display().to_string());
            assert!(
                !host.contains(':') && !inside.contains(':'),
                "Container bind: paths with ':' are not supported ({host}, {inside})"
            );
            let option = if *writable { "--bind" } else { "--bind-ro" };
            cmd.arg(format!("{option}={host}:{inside}"));
        }
        let child = cmd
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone console.log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", setup.nspawn.display()));
        let nspawn = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        self.nspawn = Some(child);

        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(pid1) = container_init(nspawn) {
                self.pid1 = Some(pid1);
                return;
            }
            self.check_nspawn_alive();
            if Instant::now() >= deadline {
                self.fail_boot(&format!(
                    "systemd did not start as its PID 1 within {BOOT_TIMEOUT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `systemctl is-system-running` says `running`; panics at `deadline`, or
    /// as soon as the system is `degraded` (or worse).
    fn wait_running(&mut self, deadline: Instant) {
        loop {
            self.check_nspawn_alive();
            let state = self
                .command(&["systemctl", "is-system-running"])
                .timeout(STOP_TIMEOUT)
                .run();
            match state.stdout.trim() {
                "running" => return,
                "degraded" => {
                    let failed = self.exec(&["systemctl", "--failed", "--no-pager"]);
                    self.fail_boot(&format!(
                        "systemd booted `degraded`: units failed\n{}",
                        failed.stdout
                    ))
                }
                "maintenance" | "stopping" => {
                    self.fail_boot(&format!("systemd is `{}`", state.stdout.trim()))
                }
                // `initializing`, `starting`, or no answer yet: systemd is still booting.
                _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => self.fail_boot(&format!(
                    "systemd did not reach `running` within {BOOT_TIMEOUT:?}; \
                     `systemctl is-system-running`: {state}"
                )),
            }
        }
    }

    /// Panics if systemd-nspawn has exited.
    fn check_nspawn_alive(&mut self) {
        let child = self.nspawn.as_mut().expect("systemd-nspawn started");
        if let Some(status) = child.try_wait().expect("try_wait on systemd-nspawn") {
            self.fail_boot(&format!("systemd-nspawn exited ({status})"));
        }
    }

    #[track_caller]
    fn fail_boot(&self, what: &str) -> ! {
        let log = self.console_log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "container {} did not boot: {what}\n--- last lines of systemd-nspawn's output ---\n{}",
            self.name,
            tail.join("\n")
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove(&self.name, self.nspawn.take(), self.pid1);
    }
}

/// Kills the container `name` and removes all it left: its processes, cgroups, mount and
/// files. `nspawn`: systemd-nspawn, if this process started it; `pid1`: the container's
/// PID 1, if known. Never panics (it runs in `Drop`, maybe during a panic); what it cannot
/// remove is reported on stderr.
fn remove(name: &str, nspawn: Option<Child>, pid1: Option<Pid>) {
    let v1 = Path::new(CGROUP_V1).join(name);
    let v2 = Path::new(CGROUP_V2).join(name);
    let dir = state_dir().join(name);
    let root = dir.join("root");
    // The lock systemd-nspawn takes on the root directory, in case it cannot remove it.
    let lock = fs::metadata(&root)
        .ok()
        .map(|m| format!("/run/systemd/nspawn/locks/inode-{}:{}", m.dev(), m.ino()));

    // Killing PID 1 ends the container's PID namespace, and every process in it; then
    // systemd-nspawn undoes what it did (its files in /run/systemd/nspawn) and exits.
    // That is quicker than a clean shutdown (a tenth of a second rather than one and a half),
    // and there is nothing in the container worth shutting down cleanly.
    // (Unless it is gone already: then its pid may be another process's.)
    let mut ended = populated(&v2) != Some(true);
    if !ended && let Some(pid1) = pid1 {
        let cgroup = fs::read_to_string(format!("/proc/{pid1}/cgroup")).unwrap_or_default();
        if cgroup.contains(&format!(":/{name}/")) {
            let _ = signal::kill(pid1, Signal::SIGKILL);
        }
        ended = wait_empty(&v2, STOP_TIMEOUT);
    }
    if !ended {
        // No PID 1 yet, a container left by a killed test process, or systemd-nspawn hangs:
        // kill everything in the cgroup, systemd-nspawn included.
        let _ = fs::write(v2.join("cgroup.kill"), "1");
        ended = wait_empty(&v2, STOP_TIMEOUT);
    }
    if let Some(mut child) = nspawn {
        if !ended {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    if !ended {
        eprintln!("container {name}: processes are left in {}", v2.display());
    }

    let _ = fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(name));
    if let Some(lock) = lock {
        let _ = fs::remove_file(lock);
    }
    for cgroup in [&v2, &v1] {
        if let Err(e) = remove_cgroup(cgroup)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!(
                "container {name}: cannot remove cgroup {}: {e}",
                cgroup.display()
            );
        }
    }
    if is_mount_point(&root) {
        let umount = Command::new("umount")
            .arg(&root)
            .stderr(Stdio::null())
            .status();
        if !umount.is_ok_and(|s| s.success()) {
            // Busy, e.g. a test's shell sits in it: detach it, it goes when unused.
            let _ = Command::new("umount").arg("-l").arg(&root).status();
        }
    }
    if !is_mount_point(&root)
        && let Err(e) = fs::remove_dir_all(&dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        eprintln!("container {name}: cannot remove {}: {e}", dir.display());
    }
}

/// The host pid of the container's PID 1 once it runs systemd: the child of systemd-nspawn
/// `nspawn` that is pid 1 in its own PID namespace.
fn container_init(nspawn: Pid) -> Option<Pid> {
    crate::children(nspawn).into_iter().find(|child| {
        let status = fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
        let ns_pid_1 = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|pids| pids.split_whitespace().last() == Some("1"));
        let comm = fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
        ns_pid_1 && comm.trim_end() == "systemd"
    })
}

/// Whether the cgroup v2 `cgroup` or one below it has a process; `None` if it does not exist.
fn populated(cgroup: &Path) -> Option<bool> {
    let events = fs::read_to_string(cgroup.join("cgroup.events")).ok()?;
    Some(events.lines().any(|l| l == "populated 1"))
}

/// Waits up to `timeout` for the cgroup v2 `cgroup` and those below to have no process.
fn wait_empty(cgroup: &Path, timeout: Duration) -> bool {
    crate::wait_until(timeout, Duration::from_millis(5), || {
        populated(cgroup) != Some(true)
    })
}

/// Removes `cgroup` and the cgroups below it, deepest first (a cgroup with children cannot
/// be removed). The processes must have left; a cgroup whose last process has just exited
/// may be busy for a moment, so this retries for a second.
fn remove_cgroup(cgroup: &Path) -> io::Result<()> {
    let entries = fs::read_dir(cgroup)?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match fs::remove_dir(cgroup) {
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10))
            }
            result => return result,
        }
    }
}

fn is_mount_point(path: &Path) -> bool {
    let target = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

/// Removes `ESC [ … letter` sequences (colours) from systemd's console output.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where containers keep their files: `$TMPDIR/cattle-containers/<name>`.
fn state_dir() -> PathBuf {
    std::env::temp_dir().join("cattle-containers")
}

/// What booting a container needs, found once per test process.
#[derive(Debug)]
struct Setup {
    nspawn: PathBuf,
    nsenter: PathBuf,
    /// The cached root tree, the lower layer of every container's root.
    tree: PathBuf,
}

/// Checks the prerequisites, builds the root tree if missing and removes what containers
/// of killed test processes left, once per test process; panics with what to do if
/// something is missing.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    match SETUP.get_or_init(|| {
        let setup = find_setup()?;
        remove_leftovers();
        Ok(setup)
    }) {
        Ok(setup) => setup,
        Err(msg) => panic!("{msg}"),
    }
}

fn find_setup() -> Result<Setup, String> {
    const INSTALL: &str = "Install the tools with `scripts/install-container-tools.sh` \
         (or run all tests with `scripts/test.sh`, which does it).";
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "\n\n*** The container tests must run as root (systemd-nspawn, mount, \
             cgroups). ***\n\n"
                .to_owned(),
        );
    }
    for hierarchy in [CGROUP_V1, CGROUP_V2] {
        if !Path::new(hierarchy).join("cgroup.procs").is_file() {
            return Err(format!(
                "\n\n*** {hierarchy} is not a mounted cgroup hierarchy: the container tests \
                 need the hybrid cgroup layout (name=systemd v1 and unified v2) of the test \
                 machines. ***\n\n"
            ));
        }
    }
    let find = |tool: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
            .ok_or_else(|| format!("\n\n*** {tool} not found in PATH. ***\n{INSTALL}\n\n"))
    };
    let nspawn = find("systemd-nspawn")?;
    let nsenter = find("nsenter")?;
    find("debootstrap")?;

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-container-tools.sh");
    let out = Cmd::new(&script).arg("--tree").timeout(TREE_TIMEOUT).run();
    let tree = out.stdout.lines().last().map(PathBuf::from);
    match tree {
        Some(tree) if out.success() && tree.is_dir() => Ok(Setup {
            nspawn,
            nsenter,
            tree,
        }),
        _ => Err(format!(
            "\n\n*** Building the containers' root tree failed: `{} --tree` ***\n{out}\n{INSTALL}\n\n",
            script.display()
        )),
    }
}

/// Kills and removes the containers that test processes which are gone left behind (killed
/// before they could drop them): found by their names, which hold the test process's pid.
fn remove_leftovers() {
    let me = std::process::id();
    let mut names: Vec<String> = [state_dir(), CGROUP_V1.into(), CGROUP_V2.into()]
        .iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| {
            let Some(pid) = name
                .strip_prefix(NAME_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                return false;
            };
            // This process has booted none yet: one with its pid is from an earlier process.
            pid == me
                || i32::try_from(pid)
                    .is_ok_and(|pid| signal::kill(Pid::from_raw(pid), None).is_err())
        })
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        eprintln!("removing container {name}, left behind by a killed test process");
        remove(&name, None, None);
    }
}

/// How long building the Debian packages may take: a release build from scratch is a few
/// minutes on two cores.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The Debian package `name` (`cattle` or `cattle-agent`) as `scripts/build-deb.sh` builds it
/// from this tree, to install in a container. The script runs once per test process: it is a
/// release build, a few minutes when nothing is built yet and seconds when cargo finds it up
/// to date (`scripts/test.sh` builds the packages before the tests run). Panics with the
/// script's output if it fails.
pub fn debian_package(name: &str) -> PathBuf {
    static PACKAGES: OnceLock<Result<Vec<PathBuf>, String>> = OnceLock::new();
    let packages = PACKAGES.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-deb.sh");
        let out = Cmd::new(&script).timeout(PACKAGE_TIMEOUT).run();
        if !out.success() {
            return Err(format!("`{}` failed:\n{out}", script.display()));
        }
        // The last two lines are the packages' paths, relative to the repository.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Ok(out
            .stdout
            .lines()
            .rev()
            .take(2)
            .map(|line| root.join(line.trim()))
            .collect())
    });
    let packages = packages.as_ref().unwrap_or_else(|e| panic!("{e}"));
    packages
        .iter()
        .find(|path| {
            path.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&format!("{name}_")))
        })
        .unwrap_or_else(|| panic!("no package {name} among {packages:?}"))
        .clone()
}

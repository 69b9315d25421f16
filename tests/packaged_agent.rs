//! The agent as operators run it: the Debian package (`scripts/build-deb.sh`) installed with
//! apt in a container whose PID 1 is systemd, the service `cattle-agent` started by systemd,
//! polling a real MinIO on the host's loopback, published to by the real `cattle` on the host.
//!
//! What each test shows is what the unit and the maintainer scripts promise: the service is
//! enabled by the install and starts once its config names a store; the journal says what
//! it runs; `systemctl reload` takes a new interval; systemd restarts a killed agent and the
//! execution finishes with no finished step run twice; `systemctl stop` waits for the step
//! under way; a `reboot` step reboots the container and the run goes on after the boot, once;
//! an upgrade keeps settings and state, a purge removes them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cattle_e2e::{
    Bucket, Cmd, Container, Minio, Output, Workspace, cattle_bin, debian_package, shell_step,
    signing_env, wait_until,
};

const BUCKET: &str = "cattle";
const PREFIX: &str = "prod";
/// The host ID the container's agent is given in its config.
const HOST: &str = "web-1";
/// Where the package goes in the container, to be installed from there with apt.
const PACKAGE_INSIDE: &str = "/root/cattle-agent.deb";
/// How long a published execution may take to be DONE on a loaded machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// A MinIO with a bucket and a publisher key pair on the host, and a container with the
/// agent's package installed (not configured yet).
struct Host {
    minio: Minio,
    /// Holds the bucket the agent polls.
    _bucket: Bucket,
    ws: Workspace,
    c: Container,
    /// What `apt-get install` printed.
    install: Output,
}

impl Host {
    fn new() -> Host {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        let ws = Workspace::new();
        signing_env(ws.path());
        let c = Container::boot();
        let install = install(&c, &debian_package("cattle-agent"));
        Host {
            minio,
            _bucket: bucket,
            ws,
            c,
            install,
        }
    }

    /// Writes the agent's config: this MinIO, the host's credentials in a 0600 file, the
    /// publisher's key, and `interval`.
    fn configure(&self, interval: &str) {
        let credentials = self.c.path("/etc/cattle/credentials");
        fs::write(
            &credentials,
            format!(
                "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
                self.minio.access_key(),
                self.minio.secret_key()
            ),
        )
        .unwrap();
        fs::set_permissions(&credentials, fs::Permissions::from_mode(0o600)).unwrap();
        fs::copy(
            self.ws.child("publisher.pub"),
            self.c.path("/etc/cattle/trusted.pub"),
        )
        .unwrap();
        self.write_config(interval);
    }

    fn write_config(&self, interval: &str) {
        fs::write(
            self.c.path("/etc/cattle/agent.toml"),
            format!(
                "host_id = \"{HOST}\"\n\
                 store = \"s3://{BUCKET}/{PREFIX}\"\n\
                 endpoint = \"{}\"\n\
                 region = \"us-east-1\"\n\
                 credentials_file = \"/etc/cattle/credentials\"\n\
                 trusted_keys = [\"/etc/cattle/trusted.pub\"]\n\
                 interval = \"{interval}\"\n\
                 jitter = \"0s\"\n",
                self.minio.endpoint()
            ),
        )
        .unwrap();
    }

    /// `systemctl ARGS` in the container, which must succeed.
    #[track_caller]
    fn systemctl(&self, args: &[&str]) -> String {
        let mut argv = vec!["systemctl"];
        argv.extend(args);
        let out = self.c.exec(&argv);
        assert!(
            out.success(),
            "{argv:?} failed: {out}\njournal of the container:\n{}",
            self.c
                .exec(&["journalctl", "--no-pager", "-n", "40", "-u", "cattle-agent"])
                .stdout
        );
        out.stdout.trim().to_string()
    }

    /// A property of the agent's unit, e.g. `ActiveState`.
    fn unit(&self, property: &str) -> String {
        self.systemctl(&["show", "--value", "-p", property, "cattle-agent"])
    }

    /// `journalctl -u cattle-agent` since the container booted (all its priorities).
    fn journal(&self) -> String {
        self.c
            .exec(&[
                "journalctl",
                "-u",
                "cattle-agent",
                "--no-pager",
                "-o",
                "with-unit",
            ])
            .stdout
    }

    /// A config directory in the workspace whose `cattle.toml` is `steps`.
    fn config_dir(&self, name: &str, steps: &str) -> PathBuf {
        self.ws.write(format!("{name}/cattle.toml"), steps);
        self.ws.child(name)
    }

    /// `cattle ARGS` on the host, against this MinIO, signing with the publisher's key.
    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.env())
            .env(
                "CATTLE_SIGNING_KEY",
                self.ws.child("publisher.key").display().to_string(),
            )
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .args(args)
            .run()
    }

    /// Publishes `dir` to the container's host ID; returns the execution ID.
    fn publish(&self, dir: &Path) -> String {
        let hosts = self.ws.write("hosts", format!("{HOST}\n"));
        let out = self.cattle(&[
            "publish",
            &dir.display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ]);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    /// The host's state in `cattle status ID --json` (`DONE`, `RUNNING`, …).
    fn state(&self, id: &str) -> String {
        let out = self.cattle(&["status", id, "--json"]);
        let status: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("cattle status --json: {e}\n{out}"));
        status["hosts"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits for `cattle status` to say DONE, and shows its table.
    #[track_caller]
    fn wait_done(&self, id: &str) -> String {
        let done = wait_until(RUN_TIMEOUT, Duration::from_millis(250), || {
            self.state(id) == "DONE"
        });
        let table = self.cattle(&["status", id]);
        assert!(
            done,
            "execution {id} not DONE within {RUN_TIMEOUT:?}: {table}\njournal:\n{}",
            self.journal()
        );
        table.stdout
    }

    /// Waits until the container's file `path` exists.
    #[track_caller]
    fn wait_file(&self, path: &str) {
        assert!(
            wait_until(RUN_TIMEOUT, Duration::from_millis(50), || self
                .c
                .path(path)
                .exists()),
            "{path} did not appear within {RUN_TIMEOUT:?}; journal:\n{}",
            self.journal()
        );
    }

    /// The lines of the container's file `path` (none if it does not exist).
    fn lines(&self, path: &str) -> Vec<String> {
        fs::read_to_string(self.c.path(path))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// `apt-get install` of the package file `deb` in `c` (copied in first); must succeed.
fn install(c: &Container, deb: &Path) -> Output {
    fs::copy(deb, c.path(PACKAGE_INSIDE)).unwrap();
    let out = c
        .command(&["apt-get", "install", "-y", PACKAGE_INSIDE])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .timeout(Duration::from_secs(120))
        .run();
    out.assert_success();
    out
}

#[test]
fn the_package_installs_an_enabled_agent_that_starts_once_configured_and_says_what_it_runs() {
    let host = Host::new();
    // Installed, enabled, but not started: the skeleton config names no store.
    assert_eq!(host.systemctl(&["is-enabled", "cattle-agent"]), "enabled");
    assert_eq!(host.unit("ActiveState"), "inactive");
    assert!(
        host.install
            .stdout
            .contains("cattle-agent: enabled, not started"),
        "{}",
        host.install
    );
    for path in ["/usr/bin/cattle-agent", "/etc/cattle/agent.toml"] {
        assert!(host.c.path(path).is_file(), "{path} is not installed");
    }
    let state = fs::metadata(host.c.path("/var/lib/cattle")).unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
    // Started by hand without a store, the agent says why it stops, and the unit is not
    // failed (nor restarted).
    host.systemctl(&["start", "cattle-agent"]);
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || host.unit("ActiveState") == "inactive"
    ));
    assert_eq!(host.unit("Result"), "success");
    assert!(
        host.journal().contains("no store named"),
        "{}",
        host.journal()
    );

    host.configure("1s");
    host.c
        .exec(&["cattle-agent", "check-config"])
        .assert_success();
    // Type=notify: `start` returns once the agent said it is ready.
    host.systemctl(&["start", "cattle-agent"]);
    assert_eq!(host.unit("ActiveState"), "active");
    assert_eq!(host.unit("SubState"), "running");

    let dir = host.config_dir(
        "hello",
        &format!(
            "{}{}",
            shell_step("echo hello > /var/tmp/hello"),
            shell_step("echo step two")
        ),
    );
    let id = host.publish(&dir);
    let table = host.wait_done(&id);
    assert!(table.contains(HOST) && table.contains("DONE"), "{table}");
    assert_eq!(host.lines("/var/tmp/hello"), ["hello"]);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || host
            .unit("StatusText")
            .starts_with("waiting for work; polling every 1s")),
        "{}",
        host.unit("StatusText")
    );

    // At the default level, the journal says what ran and how it ended, with nothing of
    // the SDK's.
    let journal = host.journal();
    for expected in [
        "agent starting",
        &format!("execution={id}"),
        "step 1/2",
        "step 2/2",
        "changed",
        "execution ended",
    ] {
        assert!(journal.contains(expected), "no {expected:?} in\n{journal}");
    }
    assert!(!journal.contains("aws_"), "{journal}");

    // `systemctl reload` with a longer interval in the file: taken without a restart.
    let pid = host.unit("MainPID");
    host.write_config("7s");
    host.systemctl(&["reload", "cattle-agent"]);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || host
            .unit("StatusText")
            .contains("polling every 7s")),
        "{}\n{}",
        host.unit("StatusText"),
        host.journal()
    );
    assert_eq!(host.unit("MainPID"), pid);
    assert!(host.journal().contains("settings reloaded"));
    // A config that does not load is refused, and the agent keeps running.
    fs::write(
        host.c.path("/etc/cattle/agent.toml"),
        "intervall = \"1s\"\n",
    )
    .unwrap();
    host.systemctl(&["reload", "cattle-agent"]);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || host
            .journal()
            .contains("cannot reload the settings, keeping those in effect")),
        "{}",
        host.journal()
    );
    assert_eq!(host.unit("ActiveState"), "active");
    assert_eq!(host.unit("MainPID"), pid);
    // Each line has its priority in the journal: warnings and errors alone are the refusals.
    let warnings = host
        .c
        .exec(&[
            "journalctl",
            "-u",
            "cattle-agent",
            "-p",
            "warning",
            "--no-pager",
        ])
        .stdout;
    assert!(warnings.contains("no store named"), "{warnings}");
    assert!(
        warnings.contains("cannot reload the settings"),
        "{warnings}"
    );
    assert!(!warnings.contains("step 1 changed"), "{warnings}");
}

#[test]
fn an_agent_killed_mid_run_is_restarted_by_systemd_and_no_finished_step_runs_again() {
    let host = Host::new();
    host.configure("1s");
    host.systemctl(&["start", "cattle-agent"]);
    let dir = host.config_dir(
        "kill",
        &format!(
            "{}{}{}",
            shell_step("echo run >> /var/tmp/one"),
            shell_step("touch /var/tmp/two-started; sleep 3; echo run >> /var/tmp/two"),
            shell_step("echo run >> /var/tmp/three"),
        ),
    );
    let id = host.publish(&dir);
    host.wait_file("/var/tmp/two-started");
    let pid = host.unit("MainPID");
    // SIGKILL to the agent alone, as the kernel's OOM killer would: its step goes on.
    host.systemctl(&[
        "kill",
        "--kill-whom=main",
        "--signal=SIGKILL",
        "cattle-agent",
    ]);
    host.wait_done(&id);
    assert_ne!(host.unit("MainPID"), pid, "the agent was not restarted");
    assert_eq!(host.unit("NRestarts"), "1");
    // Step 1 had finished: not run again. Step 2 was under way: it ran once to its end
    // before the kill was noticed, or again after the restart (a step is idempotent).
    assert_eq!(host.lines("/var/tmp/one"), ["run"]);
    assert!(!host.lines("/var/tmp/two").is_empty());
    assert_eq!(host.lines("/var/tmp/three"), ["run"]);
}

#[test]
fn systemctl_stop_waits_for_the_step_under_way_and_start_goes_on_with_the_next() {
    let host = Host::new();
    host.configure("1s");
    host.systemctl(&["start", "cattle-agent"]);
    let dir = host.config_dir(
        "stop",
        &format!(
            "{}{}",
            shell_step("touch /var/tmp/long-started; sleep 4; echo run >> /var/tmp/long"),
            shell_step("echo run >> /var/tmp/next"),
        ),
    );
    let id = host.publish(&dir);
    host.wait_file("/var/tmp/long-started");
    let asked = Instant::now();
    host.systemctl(&["stop", "cattle-agent"]);
    // `stop` returned only after the step finished, and the next step did not start.
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(host.lines("/var/tmp/long"), ["run"]);
    assert!(host.lines("/var/tmp/next").is_empty());
    assert_eq!(host.unit("Result"), "success");
    assert_ne!(host.state(&id), "DONE");
    let journal = host.journal();
    assert!(
        journal.contains("shutdown requested; finishing the step under way"),
        "{journal}"
    );

    host.systemctl(&["start", "cattle-agent"]);
    host.wait_done(&id);
    assert_eq!(host.lines("/var/tmp/long"), ["run"]);
    assert_eq!(host.lines("/var/tmp/next"), ["run"]);
}

#[test]
fn a_reboot_step_reboots_the_container_and_the_run_goes_on_after_the_boot_once() {
    let mut host = Host::new();
    host.configure("1s");
    host.systemctl(&["start", "cattle-agent"]);
    let dir = host.config_dir(
        "reboot",
        &format!(
            "{}[[step]]\nfacility = \"reboot\"\n\n{}",
            shell_step(
                "echo run >> /var/tmp/before; cat /proc/sys/kernel/random/boot_id >> /var/tmp/boots"
            ),
            shell_step(
                "echo run >> /var/tmp/after; cat /proc/sys/kernel/random/boot_id >> /var/tmp/boots"
            ),
        ),
    );
    let id = host.publish(&dir);
    // The agent runs `systemctl reboot`; systemd-nspawn exits for it; booted again, the
    // enabled service starts and finishes the run.
    host.c.await_reboot(RUN_TIMEOUT);
    host.wait_done(&id);
    assert_eq!(host.lines("/var/tmp/before"), ["run"]);
    assert_eq!(host.lines("/var/tmp/after"), ["run"]);
    let boots = host.lines("/var/tmp/boots");
    assert_eq!(boots.len(), 2);
    assert_ne!(boots[0], boots[1], "steps 1 and 3 ran in the same boot");
    // One reboot only: the container is still in its second boot.
    assert_eq!(
        host.c
            .exec(&["cat", "/proc/sys/kernel/random/boot_id"])
            .stdout
            .trim(),
        boots[1]
    );
}

#[test]
fn an_upgrade_keeps_settings_and_state_and_a_purge_removes_them() {
    let host = Host::new();
    host.configure("1s");
    host.systemctl(&["start", "cattle-agent"]);
    let dir = host.config_dir("once", &shell_step("echo run >> /var/tmp/once"));
    let id = host.publish(&dir);
    host.wait_done(&id);
    let config = fs::read_to_string(host.c.path("/etc/cattle/agent.toml")).unwrap();
    let pid = host.unit("MainPID");

    // The same package with a newer version: the running agent is restarted into it.
    let newer = repack_with_version(&host.ws, &debian_package("cattle-agent"), "99.0.0-1");
    install(&host.c, &newer);
    assert_eq!(
        host.c
            .exec(&["dpkg-query", "-W", "-f", "${Version}", "cattle-agent"])
            .stdout,
        "99.0.0-1"
    );
    assert_eq!(
        fs::read_to_string(host.c.path("/etc/cattle/agent.toml")).unwrap(),
        config
    );
    assert_eq!(host.unit("ActiveState"), "active");
    assert_ne!(
        host.unit("MainPID"),
        pid,
        "not restarted into the new binary"
    );
    // Its state is kept: the finished execution is not run again.
    let local = format!("/var/lib/cattle/agent/executions/{id}");
    assert!(host.c.path(&local).is_dir());
    let second = host.publish(&host.config_dir("twice", &shell_step("echo run >> /var/tmp/twice")));
    host.wait_done(&second);
    assert_eq!(host.lines("/var/tmp/once"), ["run"]);
    assert_eq!(host.state(&id), "DONE");

    // Remove keeps settings and state; purge removes them, and says what it left.
    host.c
        .command(&["apt-get", "remove", "-y", "cattle-agent"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .assert_success();
    assert!(!host.c.path("/usr/bin/cattle-agent").exists());
    assert!(host.c.path("/etc/cattle/agent.toml").exists());
    assert!(host.c.path(&local).is_dir());
    assert_eq!(host.unit("ActiveState"), "inactive");
    let purge = host
        .c
        .command(&["apt-get", "purge", "-y", "cattle-agent"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run();
    purge.assert_success();
    assert!(!host.c.path("/etc/cattle/agent.toml").exists());
    assert!(!host.c.path("/var/lib/cattle").exists());
    assert!(
        !host
            .c
            .path("/lib/systemd/system/cattle-agent.service")
            .exists()
    );
    // The administrator's own files (credentials, keys) stay, named.
    assert!(host.c.path("/etc/cattle/credentials").exists());
    assert!(purge.stdout.contains("credentials"), "{purge}");
    host.c
        .exec(&["systemctl", "is-enabled", "cattle-agent"])
        .assert_status(1);
}

/// `deb` with its version changed to `version`, as a newer build of it would be: unpacked
/// and packed again with dpkg-deb.
fn repack_with_version(ws: &Workspace, deb: &Path, version: &str) -> PathBuf {
    let tree = ws.child(format!("repack-{version}"));
    Cmd::new("dpkg-deb")
        .arg("-R")
        .arg(deb)
        .arg(&tree)
        .run()
        .assert_success();
    let control = tree.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("Version: ") {
                format!("Version: {version}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    fs::write(&control, text).unwrap();
    let out = ws.child(format!("cattle-agent_{version}.deb"));
    Cmd::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out)
        .run()
        .assert_success();
    out
}

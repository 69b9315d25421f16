//! The facilities that change a host's accounts, packages, units, kernel parameters and
//! name, applied by the real `cattle apply` inside a throwaway Debian whose PID 1 is systemd
//! ([`Container`]).
//!
//! Each config is applied twice in a row: the first run does the work (its recap counts the
//! steps `changed`), the second finds every step in place (`unchanged`, nothing done), and
//! what the facilities look at (the account databases, dpkg's, systemd's answers, `/proc/sys`
//! and `/etc/sysctl.d`, the host name) is the same before and after it.
//!
//! Needs root, the container tools (`scripts/install-container-tools.sh`) and the built
//! `cattle` binary (`cargo build -p cattle-publish --bins`); the package test needs the
//! Debian archive (deb.debian.org).

use std::time::Duration;

use cattle_e2e::{Container, Output, cattle_bin, recap};

/// Where the `cattle` binary is inside the containers.
const CATTLE: &str = "/usr/local/bin/cattle";

/// Time for one `cattle apply`: a package install downloads from the Debian archive.
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);

fn boot() -> Container {
    Container::builder().bind_ro(cattle_bin(), CATTLE).boot()
}

/// Writes the config `/root/NAME` into the container: `cattle.toml` holding `steps`, and
/// `files` (path relative to the config, contents). Returns its path inside.
fn config(c: &Container, name: &str, steps: &str, files: &[(&str, &str)]) -> String {
    let dir = format!("/root/{name}");
    let host = c.path(&dir);
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("cattle.toml"), steps).unwrap();
    for (path, contents) in files {
        let path = host.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    dir
}

/// `cattle apply DIR` inside the container; its log is on stderr.
fn apply(c: &Container, dir: &str) -> Output {
    c.command(&[CATTLE, "apply", dir])
        .timeout(APPLY_TIMEOUT)
        .run()
}

/// Runs the config `dir` of `steps` steps twice: the first run must succeed with `changed`
/// steps changed (the others unchanged), the second with every step unchanged, and
/// `state()` must be the same before and after the second run. Returns both runs.
fn apply_twice(
    c: &Container,
    dir: &str,
    steps: usize,
    changed: usize,
    state: impl Fn() -> String,
) -> (Output, Output) {
    let first = apply(c, dir);
    assert!(first.success(), "first run of {dir} failed:\n{first}");
    assert_eq!(
        recap(&first),
        format!("changed={changed} unchanged={} failed=0", steps - changed),
        "first run of {dir}:\n{first}"
    );
    let before = state();
    let second = apply(c, dir);
    assert!(second.success(), "second run of {dir} failed:\n{second}");
    assert_eq!(
        recap(&second),
        format!("changed=0 unchanged={steps} failed=0"),
        "second run of {dir}:\n{second}"
    );
    for step in 1..=steps {
        assert!(
            second
                .stderr
                .contains(&format!("Step {step} unchanged: already in place")),
            "step {step} of {dir}:\n{second}"
        );
    }
    let after = state();
    assert_eq!(before, after, "the second run of {dir} changed the host");
    (first, second)
}

/// `script`'s standard output inside the container; panics if it fails.
fn sh(c: &Container, script: &str) -> String {
    let out = c.sh(script);
    assert!(out.success(), "`{script}` failed:\n{out}");
    out.stdout
}

/// A file of the container's root file system (not `/run` or `/tmp`, mounted inside), or
/// "(none)".
fn read(c: &Container, path: &str) -> String {
    std::fs::read_to_string(c.path(path)).unwrap_or_else(|_| "(none)".to_string())
}

#[test]
fn users_and_groups() {
    let c = boot();
    let accounts = || {
        ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"]
            .map(|file| format!("== {file}\n{}", read(&c, file)))
            .join("")
    };
    let dir = config(
        &c,
        "accounts",
        r#"
[[step]]
facility = "group"
name = "deploy"
gid = 1500

[[step]]
facility = "group"
name = "ops"
system = true

[[step]]
facility = "user"
name = "deploy"
uid = 1500
group = "deploy"
groups = ["ops", "adm"]
shell = "/bin/bash"
home = "/srv/deploy"

[[step]]
facility = "user"
name = "svc"
system = true

[[step]]
facility = "user"
name = "games"
state = "absent"

[[step]]
facility = "group"
name = "fax"
state = "absent"
"#,
        &[],
    );
    let before = accounts();
    apply_twice(&c, &dir, 6, 6, accounts);
    assert_ne!(before, accounts());

    let id = sh(&c, "id deploy");
    assert!(
        id.starts_with("uid=1500(deploy) gid=1500(deploy) groups=1500(deploy),4(adm),"),
        "{id}"
    );
    assert!(id.contains("(ops)"), "{id}");
    assert_eq!(
        sh(&c, "getent passwd deploy"),
        "deploy:x:1500:1500::/srv/deploy:/bin/bash\n"
    );
    assert_eq!(
        sh(&c, "stat -c '%U %G %F' /srv/deploy"),
        "deploy deploy directory\n"
    );
    let ops_gid: u32 = sh(&c, "getent group ops | cut -d: -f3")
        .trim()
        .parse()
        .unwrap();
    assert!(ops_gid < 1000, "ops is a system group: {ops_gid}");
    let svc = sh(&c, "getent passwd svc");
    let svc_uid: u32 = svc.split(':').nth(2).unwrap().parse().unwrap();
    assert!(svc_uid < 1000, "svc is a system user: {svc}");
    assert_eq!(
        sh(&c, "test -e /home/svc && echo home || echo none"),
        "none\n"
    );
    assert!(!read(&c, "/etc/passwd").contains("\ngames:"));
    assert!(!read(&c, "/etc/group").contains("\nfax:"));
    assert!(read(&c, "/etc/shadow").contains("\ndeploy:"));

    // Changing an existing user: a shell, and exactly one supplementary group.
    let dir = config(
        &c,
        "accounts-changed",
        r#"
[[step]]
facility = "user"
name = "deploy"
uid = 1500
shell = "/bin/sh"
groups = ["ops"]
"#,
        &[],
    );
    apply_twice(&c, &dir, 1, 1, accounts);
    assert_eq!(
        sh(&c, "id -Gn deploy"),
        "deploy ops\n",
        "deploy left adm and stayed in ops"
    );
    assert_eq!(
        sh(&c, "getent passwd deploy"),
        "deploy:x:1500:1500::/srv/deploy:/bin/sh\n"
    );

    // A group the step names that does not exist: failed at once, nothing changed.
    let dir = config(
        &c,
        "accounts-missing-group",
        "[[step]]\nfacility = \"user\"\nname = \"deploy\"\ngroups = [\"docker\"]\n",
        &[],
    );
    let before = accounts();
    let out = apply(&c, &dir);
    assert!(!out.success());
    assert_eq!(recap(&out), "changed=0 unchanged=0 failed=1");
    assert!(
        out.stderr.contains(
            "group `docker` (a supplementary group of user `deploy`) is not in `/etc/group`"
        ),
        "{out}"
    );
    assert!(out.stderr.contains("a retry cannot help"), "{out}");
    assert_eq!(before, accounts());
}

#[test]
fn packages() {
    let c = boot();
    let dpkg = || {
        sh(
            &c,
            "dpkg -l; dpkg-query -W -f='${Package} ${Version} ${Status}\\n' hello 2>&1 || true",
        )
    };
    let dir = config(
        &c,
        "hello",
        "[[step]]\nfacility = \"packages\"\nnames = [\"hello\"]\n",
        &[],
    );
    assert!(!dpkg().contains("hello "), "hello is installed already");
    let (first, _) = apply_twice(&c, &dir, 1, 1, dpkg);
    assert!(first.stderr.contains("Setting up hello"), "{first}");
    let version = sh(&c, "dpkg-query -W -f='${Version}' hello");
    assert!(sh(&c, "hello").starts_with("Hello, world!"));

    // Pinned at the installed version: in place from the start.
    let dir = config(
        &c,
        "hello-pinned",
        &format!("[[step]]\nfacility = \"packages\"\nnames = [\"hello={version}\"]\n"),
        &[],
    );
    apply_twice(&c, &dir, 1, 0, dpkg);

    // Pinned at a version no repository has: failed at once, after one refresh.
    let dir = config(
        &c,
        "hello-no-such-version",
        "[[step]]\nfacility = \"packages\"\nnames = [\"hello=0.0.1-1\"]\n",
        &[],
    );
    let before = dpkg();
    let out = apply(&c, &dir);
    assert!(!out.success());
    assert_eq!(recap(&out), "changed=0 unchanged=0 failed=1");
    assert!(
        out.stderr.contains(
            "E: Version '0.0.1-1' for 'hello' was not found; no repository of this host has it"
        ),
        "{out}"
    );
    assert!(out.stderr.contains("a retry cannot help"), "{out}");
    assert_eq!(before, dpkg());

    // Removed.
    let dir = config(
        &c,
        "hello-absent",
        "[[step]]\nfacility = \"packages\"\nnames = [\"hello\"]\nstate = \"absent\"\n",
        &[],
    );
    apply_twice(&c, &dir, 1, 1, dpkg);
    assert_eq!(sh(&c, "command -v hello || echo gone"), "gone\n");
}

/// A service that runs, reloads by counting, and is wanted by multi-user.target.
const DEMO_UNIT: &str = "[Unit]
Description=Cattle demo
[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/sh -c 'echo reload >> /run/cattle-demo.reloads'
[Install]
WantedBy=multi-user.target
";

/// What systemd says about `unit`, every property the facility reads and more: the same
/// text means nothing was done to the unit.
fn unit_state(c: &Container, unit: &str) -> String {
    c.sh(&format!(
        "systemctl is-enabled {unit}; systemctl is-active {unit}; \
         systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,\
MainPID,ActiveEnterTimestampMonotonic,Description {unit}; \
         ls -l /etc/systemd/system/{unit} /etc/systemd/system/*.wants 2>&1; \
         cat /run/cattle-demo.reloads 2>/dev/null; true"
    ))
    .stdout
}

fn show(c: &Container, unit: &str, property: &str) -> String {
    sh(c, &format!("systemctl show -p {property} --value {unit}"))
        .trim()
        .to_string()
}

#[test]
fn systemd_units() {
    let c = boot();
    let demo = || unit_state(&c, "cattle-demo.service");

    // Installed, enabled and started.
    let dir = config(
        &c,
        "demo",
        r#"
[[step]]
facility = "systemd_unit"
name = "cattle-demo.service"
source = "units/cattle-demo.service"
enabled = true
state = "started"
"#,
        &[("units/cattle-demo.service", DEMO_UNIT)],
    );
    let (first, _) = apply_twice(&c, &dir, 1, 1, demo);
    assert!(
        first
            .stderr
            .contains("wrote /etc/systemd/system/cattle-demo.service"),
        "{first}"
    );
    assert_eq!(
        sh(&c, "systemctl is-enabled cattle-demo.service"),
        "enabled\n"
    );
    assert_eq!(
        sh(&c, "systemctl is-active cattle-demo.service"),
        "active\n"
    );
    assert_eq!(show(&c, "cattle-demo.service", "NeedDaemonReload"), "no");
    let pid = show(&c, "cattle-demo.service", "MainPID");
    assert_ne!(pid, "0");

    // A changed unit file: written and loaded, the service left running as it was.
    let dir = config(
        &c,
        "demo-described",
        r#"
[[step]]
facility = "systemd_unit"
name = "cattle-demo.service"
content = """
[Unit]
Description=Cattle demo, described anew
[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/sh -c 'echo reload >> /run/cattle-demo.reloads'
[Install]
WantedBy=multi-user.target
"""
"#,
        &[],
    );
    apply_twice(&c, &dir, 1, 1, demo);
    assert_eq!(
        show(&c, "cattle-demo.service", "Description"),
        "Cattle demo, described anew"
    );
    assert_eq!(show(&c, "cattle-demo.service", "NeedDaemonReload"), "no");
    assert_eq!(show(&c, "cattle-demo.service", "MainPID"), pid);

    // Reloaded and restarted have no lasting state: every run acts.
    let dir = config(
        &c,
        "demo-reloaded",
        "[[step]]\nfacility = \"systemd_unit\"\nname = \"cattle-demo.service\"\nstate = \"reloaded\"\n",
        &[],
    );
    for reloads in 1..=2 {
        let out = apply(&c, &dir);
        assert_eq!(recap(&out), "changed=1 unchanged=0 failed=0", "{out}");
        assert_eq!(
            sh(&c, "cat /run/cattle-demo.reloads").lines().count(),
            reloads
        );
        assert_eq!(show(&c, "cattle-demo.service", "MainPID"), pid);
    }
    let dir = config(
        &c,
        "demo-restarted",
        "[[step]]\nfacility = \"systemd_unit\"\nname = \"cattle-demo.service\"\nstate = \"restarted\"\n",
        &[],
    );
    let mut pids = vec![pid];
    for _ in 0..2 {
        let out = apply(&c, &dir);
        assert_eq!(recap(&out), "changed=1 unchanged=0 failed=0", "{out}");
        assert_eq!(
            sh(&c, "systemctl is-active cattle-demo.service"),
            "active\n"
        );
        let pid = show(&c, "cattle-demo.service", "MainPID");
        assert!(!pids.contains(&pid), "not restarted: {pid} in {pids:?}");
        pids.push(pid);
    }

    // Disabled and stopped.
    let dir = config(
        &c,
        "demo-off",
        "[[step]]\nfacility = \"systemd_unit\"\nname = \"cattle-demo.service\"\n\
         enabled = false\nstate = \"stopped\"\n",
        &[],
    );
    apply_twice(&c, &dir, 1, 1, demo);
    assert_eq!(
        c.sh("systemctl is-enabled cattle-demo.service").stdout,
        "disabled\n"
    );
    assert_eq!(
        c.sh("systemctl is-active cattle-demo.service").stdout,
        "inactive\n"
    );

    // A unit of a package (apt's daily timer, enabled as installed): masked, then unmasked
    // and started again.
    let timer = || unit_state(&c, "apt-daily.timer");
    assert_eq!(sh(&c, "systemctl is-enabled apt-daily.timer"), "enabled\n");
    let dir = config(
        &c,
        "timer-masked",
        "[[step]]\nfacility = \"systemd_unit\"\nname = \"apt-daily.timer\"\n\
         masked = true\nstate = \"stopped\"\n",
        &[],
    );
    apply_twice(&c, &dir, 1, 1, timer);
    assert_eq!(
        c.sh("systemctl is-enabled apt-daily.timer").stdout,
        "masked\n"
    );
    // Masking the timer made systemd fail it ("Unit to trigger vanished"): not running,
    // which is what `stopped` asks for.
    let active = c.sh("systemctl is-active apt-daily.timer").stdout;
    assert!(
        matches!(active.as_str(), "inactive\n" | "failed\n"),
        "{active}"
    );
    let dir = config(
        &c,
        "timer-unmasked",
        "[[step]]\nfacility = \"systemd_unit\"\nname = \"apt-daily.timer\"\n\
         masked = false\nenabled = true\nstate = \"started\"\n",
        &[],
    );
    let (first, _) = apply_twice(&c, &dir, 1, 1, timer);
    // Unmasked and started; it was enabled already.
    assert!(first.stderr.contains("Removed"), "{first}");
    assert!(!first.stderr.contains("Created symlink"), "{first}");
    assert_eq!(sh(&c, "systemctl is-enabled apt-daily.timer"), "enabled\n");
    assert_eq!(sh(&c, "systemctl is-active apt-daily.timer"), "active\n");

    // Enabling a masked unit without `masked = false`, and reloading one that cannot:
    // failed at once, nothing changed.
    c.sh("systemctl mask apt-daily-upgrade.timer")
        .assert_success();
    let dir = config(
        &c,
        "refused",
        "[[step]]\nfacility = \"systemd_unit\"\nname = \"apt-daily-upgrade.timer\"\nenabled = true\n",
        &[],
    );
    let before = unit_state(&c, "apt-daily-upgrade.timer");
    let out = apply(&c, &dir);
    assert_eq!(recap(&out), "changed=0 unchanged=0 failed=1", "{out}");
    assert!(
        out.stderr.contains(
            "unit apt-daily-upgrade.timer is masked, so it cannot be enabled or run; \
             add `masked = false`"
        ),
        "{out}"
    );
    assert_eq!(before, unit_state(&c, "apt-daily-upgrade.timer"));
    let dir = config(
        &c,
        "no-reload",
        "[[step]]\nfacility = \"systemd_unit\"\nname = \"apt-daily.timer\"\nstate = \"reloaded\"\n",
        &[],
    );
    let out = apply(&c, &dir);
    assert_eq!(recap(&out), "changed=0 unchanged=0 failed=1", "{out}");
    assert!(
        out.stderr
            .contains("unit apt-daily.timer cannot reload (it has no ExecReload=)"),
        "{out}"
    );
}

/// `/etc/sysctl.d` and `/proc/sys/KEY` for each key.
fn sysctl_state(c: &Container, keys: &[&str]) -> String {
    let mut state = sh(
        c,
        "ls -l /etc/sysctl.d; head -n 50 /etc/sysctl.d/*cattle* 2>&1 || true",
    );
    for key in keys {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        state.push_str(&format!("{key}: {}", sh(c, &format!("cat {path}"))));
    }
    state
}

#[test]
fn sysctl() {
    let c = boot();
    // The container's /proc/sys is read-only (systemd-nspawn mounts it so) and its network
    // namespace is the host's: a parameter already at its value only gets its file.
    let forward = sh(&c, "cat /proc/sys/net/ipv4/ip_forward")
        .trim()
        .to_string();
    let dir = config(
        &c,
        "forward",
        &format!(
            "[[step]]\nfacility = \"sysctl\"\nname = \"net.ipv4.ip_forward\"\nvalue = {forward}\n"
        ),
        &[],
    );
    let state = || sysctl_state(&c, &["net.ipv4.ip_forward"]);
    apply_twice(&c, &dir, 1, 1, state);
    assert_eq!(
        read(&c, "/etc/sysctl.d/90-cattle-net.ipv4.ip_forward.conf"),
        format!(
            "# Written by Cattle's `sysctl` facility; changed files are put back.\n\
             net.ipv4.ip_forward = {forward}\n"
        )
    );
    // Another value cannot be set here: failed at once, and not written for the next boot.
    // (Were /proc/sys writable, this would change the host's own parameter.)
    let proc_sys = sh(&c, "findmnt -n -o OPTIONS /proc/sys");
    assert!(
        proc_sys.starts_with("ro,"),
        "/proc/sys is not read-only: {proc_sys}"
    );
    let other = if forward == "1" { 0 } else { 1 };
    let dir = config(
        &c,
        "forward-other",
        &format!(
            "[[step]]\nfacility = \"sysctl\"\nname = \"net.ipv4.ip_forward\"\nvalue = {other}\n"
        ),
        &[],
    );
    let before = state();
    let out = apply(&c, &dir);
    assert_eq!(recap(&out), "changed=0 unchanged=0 failed=1", "{out}");
    assert!(
        out.stderr.contains(
            "sysctl net.ipv4.ip_forward cannot be set on this host: `/proc/sys/net/ipv4/ip_forward` \
             is read-only here"
        ),
        "{out}"
    );
    assert!(out.stderr.contains("a retry cannot help"), "{out}");
    assert_eq!(before, state());

    // In a network namespace of its own, with a /proc of its own (the container's root may
    // mount one), the network parameters are the namespace's and can be set: both runs and
    // the states between them happen in one such namespace, which goes away with the shell.
    let keys = ["net.ipv4.ping_group_range", "net.core.somaxconn"];
    let dir = config(
        &c,
        "netns",
        r#"
[[step]]
facility = "sysctl"
name = "net.ipv4.ping_group_range"
value = "0 2147483647"

[[step]]
facility = "sysctl"
name = "net.core.somaxconn"
value = 1024
"#,
        &[],
    );
    let state_script = format!(
        "ls -l /etc/sysctl.d; cat /etc/sysctl.d/*cattle*; {}",
        keys.iter()
            .map(|key| format!("echo {key}: $(cat /proc/sys/{})", key.replace('.', "/")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let script = format!(
        "set -e; mount -t proc proc /proc; \
         echo '== initial'; {state_script}; \
         echo '== run 1'; {CATTLE} apply {dir} 2>&1; \
         echo '== before'; {state_script}; \
         echo '== run 2'; {CATTLE} apply {dir} 2>&1; \
         echo '== after'; {state_script}; echo '== end'"
    );
    let out = c
        .command(&["unshare", "--mount", "--net", "--fork", "sh", "-c", &script])
        .timeout(APPLY_TIMEOUT)
        .run();
    assert!(out.success(), "{out}");
    let part = |name: &str| {
        let start = out.stdout.find(&format!("== {name}\n")).expect(name) + name.len() + 4;
        let end = start + out.stdout[start..].find("\n== ").unwrap() + 1;
        out.stdout[start..end].to_string()
    };
    let initial = part("initial");
    assert!(
        initial.contains("net.ipv4.ping_group_range: 1 0\n"),
        "{initial}"
    );
    assert!(initial.contains("net.core.somaxconn: 4096\n"), "{initial}");
    let run1 = part("run 1");
    assert!(
        run1.ends_with("recap: changed=2 unchanged=0 failed=0\n"),
        "{run1}"
    );
    assert!(run1.contains("set net.core.somaxconn to 1024"), "{run1}");
    let before = part("before");
    assert!(
        before.contains("net.ipv4.ping_group_range: 0 2147483647\n"),
        "{before}"
    );
    assert!(before.contains("net.core.somaxconn: 1024\n"), "{before}");
    assert!(before.contains("net.core.somaxconn = 1024\n"), "{before}");
    let run2 = part("run 2");
    assert!(
        run2.ends_with("recap: changed=0 unchanged=2 failed=0\n"),
        "{run2}"
    );
    assert!(
        run2.contains("Step 1 unchanged: already in place"),
        "{run2}"
    );
    assert!(
        run2.contains("Step 2 unchanged: already in place"),
        "{run2}"
    );
    assert_eq!(before, part("after"));
    // The container's own namespace is untouched.
    assert_eq!(
        sh(&c, "cat /proc/sys/net/core/somaxconn"),
        initial_somaxconn(&initial)
    );
}

/// The `net.core.somaxconn` line's value in a state, with its line end.
fn initial_somaxconn(state: &str) -> String {
    let line = state
        .lines()
        .find_map(|line| line.strip_prefix("net.core.somaxconn: "))
        .unwrap();
    format!("{line}\n")
}

#[test]
fn hostname() {
    let host_name = nix::unistd::gethostname().unwrap();
    let c = boot();
    let names = || {
        sh(
            &c,
            "hostname; uname -n; cat /proc/sys/kernel/hostname; cat /etc/hostname 2>&1 || true",
        )
    };
    assert_eq!(sh(&c, "hostname"), format!("{}\n", c.name()));
    let dir = config(
        &c,
        "hostname",
        "[[step]]\nfacility = \"hostname\"\nname = \"web-1.example.org\"\n",
        &[],
    );
    let (first, _) = apply_twice(&c, &dir, 1, 1, names);
    assert!(
        first.stderr.contains(&format!(
            "host name was {}, is now web-1.example.org",
            c.name()
        )),
        "{first}"
    );
    assert_eq!(
        names(),
        "web-1.example.org\nweb-1.example.org\nweb-1.example.org\nweb-1.example.org\n"
    );
    // systemd agrees: hostnamed reads the same file.
    assert_eq!(sh(&c, "hostnamectl --static"), "web-1.example.org\n");
    // The container has a UTS namespace of its own.
    assert_eq!(nix::unistd::gethostname().unwrap(), host_name);
}

//! The container fixture (`cattle_e2e::Container`): throwaway Debian systems with systemd as
//! PID 1, which the facility tests need. These tests check what those will rely on: a
//! `running` systemd, containers independent of each other, units that start, the tools the
//! facilities drive (apt-get, useradd, hostnamectl), host binaries bound in, and nothing left
//! on the host afterwards, even by a test process that was killed.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Instant;

use cattle_e2e::{Container, Workspace, cattle_bin};

/// Selects what [`helper_boots_a_container`] does when a test runs it in a process of its own.
const HELPER_ENV: &str = "CONTAINER_TEST_HELPER";

#[test]
fn boots_to_running_with_systemd_as_pid_1() {
    let c = Container::boot();
    assert_eq!(
        c.exec(&["systemctl", "is-system-running"]).stdout.trim(),
        "running"
    );
    assert_eq!(
        c.exec(&["cat", "/proc/1/comm"]).assert_success().stdout,
        "systemd\n"
    );
    let host_comm = fs::read_to_string(format!("/proc/{}/comm", c.pid1())).unwrap();
    assert_eq!(host_comm, "systemd\n");
    assert_eq!(
        c.exec(&["systemd-detect-virt", "--container"])
            .stdout
            .trim(),
        "systemd-nspawn"
    );
    // The container's own hostname and machine ID, not the host's.
    assert_eq!(c.exec(&["hostname"]).stdout.trim(), c.name());
    let machine_id = c.exec(&["cat", "/etc/machine-id"]).stdout;
    assert_eq!(machine_id.trim().len(), 32, "{machine_id:?}");
    assert_ne!(
        Some(machine_id.trim()),
        fs::read_to_string("/etc/machine-id")
            .ok()
            .as_deref()
            .map(str::trim)
    );
    // Commands see none of the test process's environment.
    let env = c.exec(&["env"]).assert_success().stdout.clone();
    assert!(!env.contains("CARGO"), "{env}");
    assert!(env.contains("HOME=/root"), "{env}");
}

#[test]
fn two_containers_booted_at_once_are_independent() {
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(Container::boot);
        let b = s.spawn(Container::boot);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.name(), b.name());
    assert_ne!(a.pid1(), b.pid1());

    // A file written from the host into one is in that one only.
    fs::write(a.path("/etc/only-in-a"), "a\n").unwrap();
    a.exec(&["test", "-f", "/etc/only-in-a"]).assert_success();
    b.exec(&["test", "-e", "/etc/only-in-a"]).assert_status(1);
    // And one written inside is seen from the host in that one's root only.
    b.sh("echo b > /root/only-in-b").assert_success();
    assert_eq!(
        fs::read_to_string(b.path("/root/only-in-b")).unwrap(),
        "b\n"
    );
    assert!(!a.path("/root/only-in-b").exists());

    // Separate PID namespaces: a process started in one is not in the other.
    a.exec(&["systemd-run", "--unit=only-in-a", "/bin/sleep", "infinity"])
        .assert_success();
    a.exec(&["systemctl", "is-active", "only-in-a"])
        .assert_success();
    b.exec(&["systemctl", "is-active", "only-in-a"])
        .assert_status(3);

    assert_ne!(
        a.exec(&["cat", "/etc/machine-id"]).stdout,
        b.exec(&["cat", "/etc/machine-id"]).stdout
    );
    for c in [&a, &b] {
        assert_eq!(
            c.exec(&["systemctl", "is-system-running"]).stdout.trim(),
            "running",
            "{}",
            c.name()
        );
    }
}

#[test]
fn a_unit_starts_inside_in_the_containers_cgroups() {
    let c = Container::boot();
    fs::write(
        c.path("/etc/systemd/system/x.service"),
        "[Service]\nExecStart=/bin/sleep infinity\n",
    )
    .unwrap();
    c.exec(&["systemctl", "daemon-reload"]).assert_success();
    c.exec(&["systemctl", "start", "x"]).assert_success();
    assert_eq!(
        c.exec(&["systemctl", "is-active", "x"]).stdout.trim(),
        "active"
    );
    let main_pid = c
        .exec(&["systemctl", "show", "--property=MainPID", "--value", "x"])
        .stdout;
    let main_pid = main_pid.trim();
    assert_ne!(main_pid, "0");
    // The unit's process is in the cgroup systemd made for it inside the container's own.
    assert_eq!(
        c.exec(&["cat", &format!("/proc/{main_pid}/cgroup")])
            .stdout
            .lines()
            .find(|l| l.starts_with("0::")),
        Some("0::/system.slice/x.service")
    );
    let [_, v2] = c.cgroups();
    let procs = fs::read_to_string(v2.join("payload/system.slice/x.service/cgroup.procs")).unwrap();
    assert_eq!(procs.lines().count(), 1, "{procs}");

    c.exec(&["systemctl", "stop", "x"]).assert_success();
    c.exec(&["systemctl", "is-active", "x"]).assert_status(3);
    assert_eq!(
        c.exec(&["systemctl", "is-system-running"]).stdout.trim(),
        "running"
    );
}

#[test]
fn the_tools_the_facilities_drive_work_inside() {
    let c = Container::boot();
    // Packages from the Debian archive.
    c.command(&[
        "sh",
        "-c",
        "apt-get update -q && apt-get install -y -q hello",
    ])
    .env("DEBIAN_FRONTEND", "noninteractive")
    .run()
    .assert_success();
    assert_eq!(c.exec(&["hello"]).stdout, "Hello, world!\n");
    // Users and groups.
    c.exec(&["groupadd", "herd"]).assert_success();
    c.exec(&["useradd", "--create-home", "--groups", "herd", "cow"])
        .assert_success();
    let id = c.exec(&["id", "cow"]).assert_success().stdout.clone();
    assert!(id.contains("(herd)"), "{id}");
    assert!(c.path("/home/cow").is_dir());
    // The hostname, through systemd-hostnamed over D-Bus.
    c.exec(&["hostnamectl", "set-hostname", "bessie"])
        .assert_success();
    assert_eq!(c.exec(&["hostname"]).stdout.trim(), "bessie");
    assert_eq!(
        fs::read_to_string(c.path("/etc/hostname")).unwrap(),
        "bessie\n"
    );
    assert_eq!(
        c.exec(&["systemctl", "is-system-running"]).stdout.trim(),
        "running"
    );
}

#[test]
fn a_host_binary_bound_in_runs_inside() {
    let ws = Workspace::new();
    ws.write("config/a", "from the host\n");
    let c = Container::builder()
        .bind_ro(cattle_bin(), "/usr/local/bin/cattle")
        .bind_ro(ws.child("config"), "/etc/cattle-test")
        .boot();
    let inside = c.exec(&["cattle", "--version"]);
    inside.assert_success();
    let outside = cattle_e2e::run(&cattle_bin(), &["--version"], &[]);
    assert_eq!(inside.stdout, outside.stdout);
    assert_eq!(
        c.exec(&["cat", "/etc/cattle-test/a"]).stdout,
        "from the host\n"
    );
    // Read-only: the container cannot change the host's files.
    c.exec(&["touch", "/etc/cattle-test/b"]).assert_status(1);
    assert!(!ws.child("config/b").exists());
}

#[test]
fn drop_leaves_nothing_behind() {
    let c = Container::boot();
    c.exec(&["systemd-run", "--unit=busy", "/bin/sleep", "infinity"])
        .assert_success();
    let name = c.name().to_owned();
    let root = c.root();
    let dir = root.parent().unwrap().to_owned();
    let cgroups = c.cgroups();
    assert!(
        processes_of(&name) >= 3,
        "systemd-nspawn, systemd, sleep..."
    );
    assert!(mounted(&root));
    assert!(cgroups.iter().all(|cg| cg.is_dir()));

    let t0 = Instant::now();
    drop(c);
    eprintln!("container {name} removed in {:?}", t0.elapsed());

    assert_eq!(processes_of(&name), 0);
    assert!(!mounted(&root));
    for cgroup in cgroups {
        assert!(!cgroup.exists(), "{} is left", cgroup.display());
    }
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(
        !Path::new("/run/systemd/nspawn/propagate")
            .join(&name)
            .exists()
    );
}

#[test]
fn a_unit_failing_at_boot_fails_the_boot_and_says_which() {
    let ws = Workspace::new();
    let unit = ws.write(
        "broken.service",
        "[Unit]\nDescription=fails at boot\n[Service]\nType=oneshot\nExecStart=/bin/false\n",
    );
    let wanted = ws.write("wants.conf", "[Unit]\nWants=broken.service\n");
    let panic = std::panic::catch_unwind(|| {
        Container::builder()
            .bind_ro(&unit, "/etc/systemd/system/broken.service")
            .bind_ro(
                &wanted,
                "/etc/systemd/system/multi-user.target.d/broken.conf",
            )
            .boot()
    })
    .expect_err("a boot with a failed unit is refused");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("degraded"), "{message}");
    assert!(message.contains("broken.service"), "{message}");
    // The half-booted container was removed while unwinding.
    let name = message
        .strip_prefix("container ")
        .and_then(|m| m.split(' ').next())
        .unwrap_or_else(|| panic!("no container name in: {message}"));
    assert_eq!(processes_of(name), 0);
    assert!(!Path::new("/sys/fs/cgroup/unified").join(name).exists());
    assert!(!mounts().contains(name));
}

/// A container of a test process killed before it could drop it is removed by the next test
/// process that boots one.
#[test]
fn a_killed_test_process_leaves_nothing_behind_for_long() {
    // This process looks for leftovers before its first container only: have that done, so
    // that only the next helper can remove the first one's.
    drop(Container::boot());
    let left = run_helper("abort");
    let name = left
        .lines()
        .find_map(|l| l.strip_prefix("booted "))
        .unwrap_or_else(|| panic!("the helper booted no container:\n{left}"))
        .to_owned();
    // It is still running, without the process that booted it.
    assert!(processes_of(&name) >= 2, "{name} is not left running");

    let next = run_helper("drop");
    assert!(
        next.contains(&format!("removing container {name}")),
        "{next}"
    );
    assert_eq!(processes_of(&name), 0);
    assert!(!Path::new("/sys/fs/cgroup/unified").join(&name).exists());
    assert!(!Path::new("/sys/fs/cgroup/systemd").join(&name).exists());
    assert!(!mounts().contains(&name));
}

/// Run by [`a_killed_test_process_leaves_nothing_behind_for_long`] in processes of their own:
/// boots a container, then either drops it or aborts, leaving it behind. Does nothing
/// otherwise.
#[test]
#[ignore = "a helper of a_killed_test_process_leaves_nothing_behind_for_long"]
fn helper_boots_a_container() {
    let Ok(how) = std::env::var(HELPER_ENV) else {
        return;
    };
    let c = Container::boot();
    println!("booted {}", c.name());
    if how == "abort" {
        std::process::abort();
    }
}

/// Boots and removes containers one after another, and prints the median times.
/// `cargo test -p cattle-e2e --test container -- --ignored --nocapture timings`
#[test]
#[ignore = "a measurement, not a test"]
fn timings() {
    const RUNS: usize = 7;
    // The first boot also builds the root tree if it is missing: not measured.
    drop(Container::boot());
    let (mut boots, mut drops) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let c = Container::boot();
        boots.push(t0.elapsed());
        let t1 = Instant::now();
        drop(c);
        drops.push(t1.elapsed());
    }
    boots.sort();
    drops.sort();
    eprintln!(
        "{RUNS} runs: boot to `running` median {:?} (min {:?}, max {:?}); \
         drop median {:?} (min {:?}, max {:?})",
        boots[RUNS / 2],
        boots[0],
        boots[RUNS - 1],
        drops[RUNS / 2],
        drops[0],
        drops[RUNS - 1]
    );
}

/// Runs [`helper_boots_a_container`] in a new process of this test binary; its output.
fn run_helper(how: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_boots_a_container",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, how)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An abort is a death by SIGABRT.
    assert_eq!(out.status.success(), how != "abort", "{text}");
    text
}

/// How many processes of the host are in the container `name`'s cgroups. Zombies do not
/// count: those of a killed test process's container wait for the host's init to reap them.
fn processes_of(name: &str) -> usize {
    let needle = format!(":/{name}/");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, s)| s.starts_with('Z'));
            !zombie
                && fs::read_to_string(e.path().join("cgroup"))
                    .is_ok_and(|cgroup| cgroup.contains(&needle))
        })
        .count()
}

fn mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

fn mounted(path: &Path) -> bool {
    let path = path.display().to_string();
    mounts()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_str()))
}

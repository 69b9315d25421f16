//! The agent's outbox and its log, end to end against a real MinIO: a state
//! directory on a full disk, a big log over a slow link, a log beyond its
//! bound, and a step that prints more than the agent's memory could hold.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_e2e::{
    Background, Bucket, Cmd, Minio, Output, Proxy, Workspace, agent_bin, cattle_bin, local_log,
    shell_step, wait_until,
};
use uuid::Uuid;

const BUCKET: &str = "outbox";

/// A MinIO with a bucket, a workspace and the commands to drive them.
struct Site {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
}

impl Site {
    fn new() -> Site {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, "");
        bucket.create();
        Site {
            minio,
            ws: Workspace::new(),
            bucket,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.minio.cattle_env();
        env.push(("CATTLE_STORE".to_string(), format!("s3://{BUCKET}/")));
        env
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin()).envs(&self.env()).args(args).run()
    }

    /// Publish a config of `steps` (a steps file) to host `h1`; the execution ID.
    fn publish(&self, name: &str, steps: &str) -> String {
        let config = self.ws.write(format!("{name}/cattle.toml"), steps);
        let hosts = self.ws.write("hosts", "h1\n");
        let out = self.cattle(&[
            "publish",
            &config.parent().unwrap().display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ]);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    /// `h1`'s agent with state directory `state`, in front of `program` (e.g.
    /// `nsenter …`, or nothing: `&[]`).
    fn agent(&self, program: &[&str], state: &Path, extra: &[&str]) -> Cmd {
        let (bin, before) = match program.split_first() {
            Some((bin, rest)) => (PathBuf::from(bin), rest.to_vec()),
            None => (agent_bin(), Vec::new()),
        };
        let mut cmd = Cmd::new(bin).envs(&self.env()).args(before);
        if !program.is_empty() {
            cmd = cmd.arg(agent_bin());
        }
        cmd.args(["--host-id", "h1", "--state-dir"])
            .arg(state)
            .args(extra)
    }

    /// What `h1` last reported for `id`, straight from the bucket.
    fn status(&self, id: &str) -> Option<serde_json::Value> {
        let key = keys::status(Uuid::parse_str(id).unwrap(), &host());
        self.bucket
            .get(&key)
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }

    fn state_is(&self, id: &str, state: &str) -> bool {
        self.status(id).is_some_and(|s| s["state"] == state)
    }

    /// The names of `h1`'s log parts of `id` in the bucket.
    fn stored_parts(&self, id: &str) -> Vec<String> {
        let prefix = keys::log_prefix(Uuid::parse_str(id).unwrap(), &host());
        self.bucket
            .list(&prefix)
            .into_iter()
            .map(|k| k.strip_prefix(&prefix).unwrap().to_string())
            .collect()
    }
}

fn host() -> HostId {
    HostId::new("h1").unwrap()
}

fn local_parts(execution_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(execution_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A 2 MB tmpfs at `dir`, in a mount namespace of its own that lives as long as the
/// returned process: agents enter it with `nsenter`, and the test reaches into it
/// through `/proc/<pid>/root`.
struct SmallDisk {
    holder: Background,
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: PathBuf) -> SmallDisk {
        std::fs::create_dir_all(&dir).unwrap();
        let holder = Cmd::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o size=2m cattle-state \"$0\" && echo mounted && exec sleep 3600")
            .arg(&dir)
            .spawn();
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                holder.stdout() == "mounted\n"
            }),
            "tmpfs not mounted: {}",
            holder.stderr()
        );
        SmallDisk { holder, dir }
    }

    /// `rel` inside the tmpfs, as this process sees it.
    fn path(&self, rel: &str) -> PathBuf {
        let inside = self.dir.join(rel);
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(inside.strip_prefix("/").unwrap())
    }

    /// `nsenter` into the tmpfs's namespace, to put in front of a command.
    fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".to_string(),
            "--target".to_string(),
            self.holder.id().to_string(),
            "--mount".to_string(),
        ]
    }

    fn free(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(&self.path("")).unwrap();
        stat.blocks_available() as u64 * stat.fragment_size() as u64
    }

    /// Fill file `name` until the disk is full, leaving `keep` bytes free.
    fn fill(&self, name: &str, keep: u64) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .unwrap();
        let chunk = [0u8; 4096];
        while self.free() > keep + 4096 {
            if file.write_all(&chunk).is_err() {
                break;
            }
            file.sync_data().unwrap();
        }
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path(name)).unwrap();
    }
}

#[test]
fn a_full_state_disk_pauses_the_run_and_no_finished_step_runs_again() {
    let site = Site::new();
    let disk = SmallDisk::mount(site.ws.child("state"));
    let counter = site.ws.child("counter");
    let count = counter.display();
    // Step 2 prints about 400 KB, which the disk cannot hold.
    let id = site.publish(
        "four",
        &[
            shell_step(&format!("echo 1 >> {count}")),
            shell_step(&format!(
                "echo 2 >> {count}; head -c 400000 /dev/zero | tr '\\\\0' y | fold -w 999"
            )),
            shell_step(&format!("echo 3 >> {count}")),
            shell_step(&format!("echo 4 >> {count}")),
        ]
        .concat(),
    );
    let runs = || {
        std::fs::read_to_string(&counter)
            .unwrap_or_default()
            .replace('\n', " ")
    };
    let enter = disk.enter();
    let enter: Vec<&str> = enter.iter().map(String::as_str).collect();
    let agent = || site.agent(&enter, &disk.dir, &["--interval", "1"]).spawn();
    let paused = "the run is paused until it can";

    // Nearly full: room to start, not for step 2's output.
    disk.fill("filler", 150 * 1024);
    let mut first = agent();
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            first.stderr().contains(paused)
        }),
        "the run never paused:\n{}\nsteps run: {}",
        first.stderr(),
        runs()
    );
    assert_eq!(runs(), "1 2 ");
    // Paused, it starts nothing, and says so once, here and in the store.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(runs(), "1 2 ");
    assert_eq!(
        first.stderr().matches(paused).count(),
        1,
        "{}",
        first.stderr()
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            site.status(&id).is_some_and(|s| {
                s["paused"]
                    .as_str()
                    .is_some_and(|p| p.contains("No space left on device"))
            })
        }),
        "{:?}",
        site.status(&id)
    );
    let table = site.cattle(&["status", &id]);
    assert!(table.stdout.contains("PAUSED: cannot write"), "{table}");

    // SIGTERM during the pause stops the agent cleanly.
    let stopped = first.terminate(Duration::from_secs(10));
    stopped.assert_success();
    assert_eq!(runs(), "1 2 ");

    // Restarted on a disk with no room at all: it waits, and runs nothing.
    disk.fill("filler-2", 0);
    let mut second = agent();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(second.try_status(), None, "{}", second.stderr());
    assert_eq!(runs(), "1 2 ");
    let stderr = second.stderr();
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stderr.matches("poll failed").count(), 1, "{stderr}");

    // Some room: it resumes at the step in flight, and pauses again in it.
    disk.remove("filler-2");
    let filler = disk.path("filler");
    let size = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(size - 150 * 1024)
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            second.stderr().contains(paused)
        }),
        "{}",
        second.stderr()
    );
    assert_eq!(runs(), "1 2 2 ");

    // Room again: the run goes on by itself and ends DONE.
    disk.remove("filler");
    let local = disk.path(&format!("executions/{id}"));
    assert!(
        wait_until(Duration::from_secs(90), Duration::from_millis(200), || {
            local.join(".delivered").exists()
        }),
        "{}",
        second.stderr()
    );
    assert!(site.state_is(&id, "DONE"), "{:?}", site.status(&id));
    assert!(site.status(&id).unwrap()["paused"].is_null());
    assert_eq!(runs(), "1 2 2 3 4 ", "only the step in flight ran again");
    assert!(
        second.stderr().contains("the run continues"),
        "{}",
        second.stderr()
    );
    let log = site.cattle(&["log", &id, "--host", "h1"]);
    log.assert_success();
    assert!(
        log.stdout.contains("the run was paused for")
            && log.stdout.contains("No space left on device")
            && log.stdout.contains("; it continues"),
        "{}",
        log.stdout
    );
    assert!(log.stdout.contains("resuming at step 2"), "{}", log.stdout);
    assert_eq!(log.stdout, local_log(&local));
    second.terminate(Duration::from_secs(10));
}

#[test]
fn a_big_log_on_a_slow_link_is_delivered_part_by_part_and_holds_nothing_up() {
    const RATE: u64 = 100_000;
    let site = Site::new();
    let link = Proxy::to(site.minio.addr()).bytes_per_second(RATE).start();
    let big = site.publish(
        "big",
        &shell_step("head -c 12000000 /dev/zero | tr '\\\\0' x | fold -w 999"),
    );
    let second = site.publish("second", &shell_step("echo second"));
    let state = site.ws.child("state");
    let mut agent = site
        .agent(&[], &state, &["--interval", "1"])
        .env("AWS_ENDPOINT_URL", link.endpoint())
        .spawn();
    let local = state.join("executions").join(&big);

    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(120), Duration::from_millis(100), || {
            std::fs::read_to_string(local.join("STATUS")).is_ok_and(|s| s == "DONE\n")
        }),
        "{}",
        agent.stderr()
    );
    let ran = Instant::now();
    println!("run finished on the host after {:?}", ran - started);
    // The final status is not held up by the log: at most the part in flight
    // (10.5 s at this rate) goes before it.
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            site.state_is(&big, "DONE")
        }),
        "{}",
        agent.stderr()
    );
    println!(
        "final status in the store {:?} after the run",
        ran.elapsed()
    );
    let bytes = std::fs::read_dir(local.join("log"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    let link_time = Duration::from_secs_f64(bytes as f64 / RATE as f64);
    println!("log of {bytes} bytes: {link_time:?} on the link");
    let summary = site.status(&big).unwrap()["log"].clone();
    assert_eq!(summary["bytes"], bytes, "{summary}");
    // Meanwhile the log is still arriving, and `cattle log` says so.
    let partial = site.cattle(&["log", &big, "--host", "h1"]);
    partial.assert_success();
    assert!(partial.stderr.contains("is incomplete"), "{partial}");

    // Every part arrives, within about the time the link needs for them.
    let bound = link_time * 3 / 2 + Duration::from_secs(30);
    assert!(
        wait_until(bound, Duration::from_millis(200), || local
            .join(".delivered")
            .exists()),
        "not delivered within {bound:?}: {}",
        agent.stderr()
    );
    println!("whole log in the store {:?} after the run", ran.elapsed());
    assert_eq!(site.stored_parts(&big), local_parts(&local));
    let whole = site.cattle(&["log", &big, "--host", "h1"]);
    whole.assert_success();
    assert!(!whole.stderr.contains("incomplete"), "{whole}");
    assert_eq!(whole.stdout, local_log(&local));
    assert_eq!(whole.stdout.len() as u64, bytes);

    // The next execution was not held up by more than that.
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(200), || site
            .state_is(&second, "DONE")),
        "{}",
        agent.stderr()
    );
    println!(
        "second execution DONE {:?} after the first ran",
        ran.elapsed()
    );
    agent.terminate(Duration::from_secs(30));
}

#[test]
fn a_log_beyond_its_bound_keeps_its_head_and_tail_here_and_in_the_store() {
    let site = Site::new();
    let id = site.publish(
        "chatty",
        &shell_step("head -c 20000000 /dev/zero | tr '\\\\0' z | fold -w 999"),
    );
    let state = site.ws.child("state");
    site.agent(&[], &state, &["--once", "--max-log-mib", "4"])
        .run()
        .assert_success();
    assert!(site.state_is(&id, "DONE"), "{:?}", site.status(&id));

    let local = state.join("executions").join(&id);
    // The first 2 MiB, the marker, and the last two parts.
    let parts = local_parts(&local);
    assert_eq!(parts.len(), 5, "{parts:?}");
    assert_eq!(parts[..3], ["00000000", "00000001", "00000002"]);
    assert_eq!(site.stored_parts(&id), parts, "the store keeps the same");

    let log = site.cattle(&["log", &id, "--host", "h1"]);
    log.assert_success();
    assert_eq!(log.stdout, local_log(&local));
    assert!(
        log.stdout.len() < 4 * 1024 * 1024 + 1024,
        "{}",
        log.stdout.len()
    );
    let summary = &site.status(&id).unwrap()["log"];
    let dropped = summary["dropped"].as_u64().unwrap();
    assert!(dropped >= 16 * 1024 * 1024, "{summary}");
    let marker = format!(
        "[… {} MiB of output dropped here: the log keeps its first 2 MiB and its last 2 MiB \
         (--max-log-mib 4) …]\n",
        dropped / (1024 * 1024)
    );
    assert!(log.stdout.contains(&marker), "no {marker:?}");
    assert!(
        log.stdout.contains("execution ") && log.stdout.contains("config executed successfully")
    );
}

#[test]
fn a_300_mb_line_under_a_limited_address_space_is_cut_and_the_run_ends_done() {
    let site = Site::new();
    let id = site.publish(
        "wide",
        &shell_step("head -c 300000000 /dev/zero | tr '\\\\0' w; echo; echo after"),
    );
    let state = site.ws.child("state");
    // The agent used to abort here even at 1.2 GB; it now needs far less than this.
    let limit = format!("--as={}", 400 * 1024 * 1024);
    let out = site
        .agent(&["prlimit", &limit], &state, &["--once"])
        .timeout(Duration::from_secs(300))
        .run();
    out.assert_success();
    assert!(site.state_is(&id, "DONE"), "{:?}", site.status(&id));
    let log = site.cattle(&["log", &id, "--host", "h1"]);
    assert!(
        log.stdout.contains("… [line cut: 300000000 bytes in all]"),
        "{}",
        &log.stdout[..log.stdout.len().min(2000)]
    );
    assert!(log.stdout.contains("step 1: | after"));
    assert!(log.stdout.len() < 100_000, "{}", log.stdout.len());
}

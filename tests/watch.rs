//! The operator's live views, end to end: `cattle status --watch`, `cattle log
//! --follow` and `cattle log` of several hosts, with the real `cattle` and
//! `cattle-agent` binaries against a real MinIO, agents running in the
//! background while the views read the store.
//!
//! Steps wait for gate files the test creates, so what a view sees between
//! two gates does not depend on timing; within one stretch, hosts may change
//! in either order, so those lines are compared sorted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cattle_e2e::{
    Background, Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, shell_step,
    snapshots, wait_until,
};

const BUCKET: &str = "cattle";
const PREFIX: &str = "watch";

/// A MinIO with an empty bucket, a workspace, and the commands to drive them.
struct Site {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
    store_url: String,
}

impl Site {
    fn new() -> Site {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        Site {
            store_url: format!("s3://{BUCKET}/{PREFIX}"),
            minio,
            ws: Workspace::new(),
            bucket,
        }
    }

    fn cattle_cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args(args)
    }

    fn cattle(&self, args: &[&str]) -> Output {
        self.cattle_cmd(args).run()
    }

    /// Publish the steps `steps` to `hosts`; the execution ID.
    fn publish(&self, steps: &str, hosts: &[&str]) -> String {
        let config = self.ws.write("config/cattle.toml", steps);
        let hosts = self.ws.write("hosts", hosts.join("\n") + "\n");
        let out = self.cattle(&[
            "publish",
            &config.parent().unwrap().display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ]);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    fn agent_args(&self, host: &str) -> Vec<String> {
        let state = self.ws.child(format!("agents/{host}"));
        vec![
            "--host-id".to_string(),
            host.to_string(),
            "--state-dir".to_string(),
            state.display().to_string(),
        ]
    }

    /// `host`'s agent, polling every second in the background.
    fn agent(&self, host: &str) -> Background {
        Cmd::new(agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args(self.agent_args(host))
            .args(["--interval", "1"])
            .spawn()
    }

    /// One poll of `host`'s agent.
    fn agent_once(&self, host: &str) -> Output {
        Cmd::new(agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args(self.agent_args(host))
            .arg("--once")
            .run()
    }

    fn gate(&self, name: &str) -> PathBuf {
        self.ws.child(format!("gates/{name}"))
    }

    fn open(&self, gate: &Path) {
        std::fs::create_dir_all(gate.parent().unwrap()).unwrap();
        std::fs::write(gate, "").unwrap();
    }
}

/// Snapshot settings for this file: also the temporary directories of the
/// harness, the version (a time in ms), the signing key's ID and the
/// publisher (user and machine).
fn settings() -> insta::Settings {
    let mut settings = snapshots();
    for (pattern, replacement) in [
        (r"/tmp/cattle-(e2e|minio)-[A-Za-z0-9]+", "[TMP]"),
        (r"version \d+", "version [VERSION]"),
        (r"trusted key [0-9a-f]+", "trusted key [KEY]"),
        (r"published by \S+ at", "published by [PUBLISHER] at"),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings
}

/// A shell snippet waiting until `gate` exists.
fn wait_for(gate: &Path) -> String {
    format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display())
}

/// Wait until `process`'s stdout satisfies `done`; panics with what it printed if it does not.
#[track_caller]
fn wait_stdout(process: &Background, what: &str, done: impl Fn(&str) -> bool) {
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(50), || done(
            &process.stdout()
        )),
        "{what}: not seen in 60 s\n--- stdout ---\n{}\n--- stderr ---\n{}",
        process.stdout(),
        process.stderr()
    );
}

#[test]
fn log_of_several_hosts_starts_every_line_with_its_host() {
    let site = Site::new();
    // Each line of the step's output on a line of the log; the last one has
    // no newline of its own.
    let id = site.publish(
        &shell_step("echo one from $CATTLE_HOST_ID; printf 'two\\\\nthree'"),
        &["web-1", "web-2", "db"],
    );
    for host in ["web-1", "db"] {
        site.agent_once(host).assert_success();
    }

    let all = site.cattle(&["log", &id]);
    all.assert_success();
    let lines: Vec<&str> = all.stdout.lines().collect();
    for line in &lines {
        assert!(
            ["[web-1] ", "[web-2] ", "[db] "]
                .iter()
                .any(|p| line.starts_with(p)),
            "a line without its host: {line:?}\n{all}"
        );
    }
    assert!(lines.contains(&"[web-2] (no log yet)"), "{all}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[db] ") && l.ends_with("three")),
        "{all}"
    );
    // What an operator greps for names the host.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("config executed successfully"))
            .map(|l| &l[..l.find(' ').unwrap()])
            .collect::<Vec<_>>(),
        ["[web-1]", "[db]"]
    );
    // Agents' durations vary from run to run.
    settings().bind(|| insta::assert_snapshot!("watch_log_of_several_hosts", all.snapshot()));

    // One host: bare lines, as the host wrote them.
    let one = site.cattle(&["log", &id, "--host", "db"]);
    one.assert_success();
    assert!(one.stdout.contains("one from db\n"), "{one}");
    assert!(!one.stdout.contains("[db]"), "{one}");

    // --raw with several hosts keeps the prefixes.
    let raw = site.cattle(&["log", &id, "--raw"]);
    raw.assert_success();
    assert!(raw.stdout.lines().all(|l| l.starts_with('[')), "{raw}");

    // JSON: each host's state and log.
    let json = site.cattle(&["log", &id, "--json"]);
    json.assert_success();
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        json.stdout
            .starts_with("{\n  \"schema\": \"cattle.log.v1\","),
        "schema is the first key: {json}"
    );
    assert_eq!(doc["schema"], "cattle.log.v1");
    assert_eq!(doc["execution"], id);
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(
        hosts
            .iter()
            .map(|h| (
                h["host"].as_str().unwrap(),
                h["state"].as_str().unwrap(),
                h["complete"].as_bool().unwrap()
            ))
            .collect::<Vec<_>>(),
        [
            ("web-1", "DONE", true),
            ("web-2", "PENDING", false),
            ("db", "DONE", true)
        ]
    );
    let log = hosts[2]["log"].as_str().unwrap();
    assert!(log.contains("one from db\n"), "{log}");
    assert_eq!(hosts[2]["bytes"].as_u64().unwrap(), log.len() as u64);
    assert_eq!(hosts[2]["dropped"], 0);
    assert!(hosts[2]["unreadable"].is_null());
    assert_eq!(hosts[1]["log"], "");
}

/// Whether a line is one of those that end a stretch.
type LineTest = dyn Fn(&str) -> bool;

/// The lines of `text` with each stretch sorted: a stretch ends at the line
/// where the `n`th line matching its predicate is seen. Hosts changing in the
/// same stretch may be seen in either order.
fn sorted_stretches(text: &str, ends: &[(&LineTest, usize)]) -> String {
    let mut out = Vec::new();
    let mut stretch: Vec<&str> = Vec::new();
    let mut ends = ends.iter();
    let mut end = ends.next();
    let mut seen = 0;
    for line in text.lines() {
        stretch.push(line);
        if let Some((matches, n)) = end
            && matches(line)
        {
            seen += 1;
            if seen == *n {
                stretch.sort();
                out.append(&mut stretch);
                end = ends.next();
                seen = 0;
            }
        }
    }
    stretch.sort();
    out.append(&mut stretch);
    out.join("\n") + "\n"
}

#[test]
fn status_watch_writes_a_line_per_change_and_ends_with_status_exit_code() {
    let site = Site::new();
    let (first, second) = (site.gate("first"), site.gate("second"));
    let steps = shell_step(&wait_for(&first))
        + &shell_step(&format!(
            "{}; if [ $CATTLE_HOST_ID = web-3 ]; then printf 'disk \\\\033[2J on fire\\\\rStep 2 completed\\\\n' >&2; exit 3; fi",
            wait_for(&second)
        ))
        .replace("\n\n", "\nattempts = 1\n\n");
    let hosts = ["web-1", "web-2", "web-3"];
    let id = site.publish(&steps, &["web-1", "web-2", "web-3", "evil"]);
    let _agents: Vec<Background> = hosts.iter().map(|h| site.agent(h)).collect();
    // A host that writes its status itself, not through an agent.
    let status = serde_json::json!({
        "format": cattle_core::wire::FORMAT,
        "execution": id,
        "host": "evil",
        "state": "ERROR",
        "steps": 2,
        "step": {"number": 2, "facility": "file", "description": "/etc/motd", "attempt": 1, "attempts": 1},
        "started": "2030-01-01T00:00:00Z",
        "updated": "2030-01-01T00:00:00Z",
        "finished": "2030-01-01T00:00:00Z",
        "error": "\x1b]0;owned\x07\u{202e}\rStep 2 completed\nhint: all fine",
        "seq": 1,
        "agent_version": "evil",
    });
    site.bucket.put(
        &format!("executions/{id}/hosts/evil/status.json"),
        serde_json::to_vec(&status).unwrap(),
    );

    let mut watch = site.cattle_cmd(&["status", &id, "--watch"]).spawn();
    let count = |text: &str, what: &str| text.lines().filter(|l| l.contains(what)).count();
    wait_stdout(&watch, "every host at step 1", |out| {
        count(out, "step 1/2") == 3
    });
    site.open(&first);
    wait_stdout(&watch, "every host at step 2", |out| {
        count(out, "PROGRESS    step 2/2") == 3
    });
    site.open(&second);
    let out = watch
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("--watch did not end:\n{}", watch.stdout()));

    // Like `cattle status`: one host in ERROR.
    assert_eq!(out.status, 3, "{out}");
    assert!(
        !out.stdout.contains('\x1b') && !out.stdout.contains('\r'),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("web-3  ERROR       step 2/2: step 2 failed: `sh` exited with status 3: disk \\x1b[2J on fire\\rStep 2 completed"),
        "{out}"
    );
    assert!(
        out.stdout.contains(
            "evil   ERROR       step 2/2: \\x1b]0;owned\\x07\\u{202e}\\rStep 2 completed\n"
        ),
        "{out}"
    );
    // A host starting up (before its first step) may be seen or not.
    let stdout: String = out
        .stdout
        .lines()
        .filter(|l| !l.ends_with("PROGRESS    starting"))
        .map(|l| format!("{l}\n"))
        .collect();
    let step_1 = |l: &str| l.contains("step 1/2");
    let step_2 = |l: &str| l.contains("step 2/2") && l.contains("PROGRESS");
    let last = |l: &str| l.contains("DONE") || l.contains("ERROR");
    let lines = sorted_stretches(&stdout, &[(&step_1, 3), (&step_2, 3), (&last, 3)]);
    let snapshot = Output {
        stdout: lines,
        ..out
    };
    settings().bind(|| insta::assert_snapshot!("watch_status_plain", snapshot.snapshot()));
}

#[test]
fn log_follow_prints_what_arrives_after_it_started_once_and_ends() {
    let site = Site::new();
    let gate = site.gate("go");
    // The agent uploads its log when a step ends (and when a part fills), so
    // step 1's output is in the store while step 2 waits for the gate.
    let steps = shell_step("echo before; printf 'esc \\\\033]0;title\\\\007 cr \\\\r forged\\\\n'")
        + &shell_step(&format!("{}; echo after", wait_for(&gate)));
    let id = site.publish(&steps, &["h1", "h2", "evil"]);
    let _agents: Vec<Background> = ["h1", "h2"].iter().map(|h| site.agent(h)).collect();
    // A host that writes its log itself, not through an agent (which escapes
    // what programs print): raw control bytes, a line split between parts.
    let mut part = vec![b'x'; 1024 * 1024 - 6];
    part.extend_from_slice(b"\nsplit");
    site.bucket
        .put(&format!("executions/{id}/hosts/evil/log/00000000"), part);
    site.bucket.put(
        &format!("executions/{id}/hosts/evil/log/00000001"),
        b" line\n\x1b[2J\x1b]52;c;aGk=\x07\rall fine\n".to_vec(),
    );
    site.bucket
        .put(&format!("executions/{id}/done/evil"), Vec::new());

    let mut follow = site.cattle_cmd(&["log", &id, "--follow"]).spawn();
    wait_stdout(&follow, "step 1's output of both hosts", |out| {
        out.lines().filter(|l| l.ends_with("| before")).count() == 2
    });
    assert!(!follow.stdout().lines().any(|l| l.ends_with("| after")));
    assert_eq!(follow.try_status(), None, "--follow ended early");
    site.open(&gate);
    let out = follow
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("--follow did not end:\n{}", follow.stdout()));
    out.assert_success();

    for host in ["h1", "h2"] {
        let mine: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with(&format!("[{host}] ")))
            .collect();
        for once in [
            "| before",
            "| after",
            "forged",
            "config executed successfully",
        ] {
            assert_eq!(
                mine.iter().filter(|l| l.ends_with(once)).count(),
                1,
                "{host}: {once:?} once\n{out}"
            );
        }
    }
    assert!(
        out.stdout.lines().all(|l| ["[h1] ", "[h2] ", "[evil] "]
            .iter()
            .any(|p| l.starts_with(p))),
        "{out}"
    );
    // The hostile bytes escaped, and the log otherwise as `cattle log` shows it.
    assert!(
        !out.stdout.contains('\x1b') && !out.stdout.contains('\r'),
        "{out}"
    );
    assert!(
        out.stdout.contains("esc \\x1b]0;title\\x07 cr \\r forged"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("[evil] split line\n[evil] \\x1b[2J\\x1b]52;c;aGk=\\x07\\rall fine\n"),
        "{}",
        &out.stdout[out.stdout.find("split").unwrap_or(0)..]
    );
    let log = site.cattle(&["log", &id]);
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&out.stdout), sorted(&log.stdout));

    // One host: bare lines; a finished host's log is printed and --follow ends.
    let one = site.cattle(&["log", &id, "--follow", "--host", "h2"]);
    one.assert_success();
    assert_eq!(
        one.stdout,
        site.cattle(&["log", &id, "--host", "h2"]).stdout
    );
}

#[test]
fn status_watch_on_a_terminal_draws_the_bar_and_the_failing_host_then_the_table() {
    let site = Site::new();
    let steps = shell_step(
        "if [ $CATTLE_HOST_ID = web-2 ]; then printf 'no \\\\033[2J space\\\\n' >&2; exit 3; fi",
    )
    .replace("\n\n", "\nattempts = 1\n\n");
    let id = site.publish(&steps, &["web-1", "web-2"]);
    for host in ["web-1", "web-2"] {
        site.agent_once(host);
    }
    // `script` gives the command a terminal of its own.
    let command = format!(
        "stty cols 200 rows 40; {} status {id} --watch",
        cattle_bin().display()
    );
    let out = Cmd::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .envs(&site.minio.cattle_env())
        .env("CATTLE_STORE", &site.store_url)
        .run();
    assert_eq!(out.status, 3, "{out}");
    let screen = &out.stdout;
    // The frame: hidden cursor, no wrapping, the bar and the failing host.
    assert!(screen.contains("\x1b[?25l\x1b[?7l["), "{screen:?}");
    assert!(
        screen.contains("[###############xxxxxxxxxxxxxxx]  2/2 hosts finished"),
        "{screen:?}"
    );
    assert!(screen.contains("needs attention:"), "{screen:?}");
    assert!(
        screen.contains("  web-2  ERROR       step 1/1 command: step 1 failed: `sh` exited with status 3: no \\x1b[2J space"),
        "{screen:?}"
    );
    // Then erased, the terminal given back, and the table.
    let table = screen
        .split("\x1b[J\x1b[?7h\x1b[?25h")
        .nth(1)
        .unwrap_or_else(|| panic!("the frame is not erased: {screen:?}"));
    assert!(table.starts_with("HOST "), "{table:?}");
    assert!(table.contains("2 hosts: 1 DONE, 1 ERROR"), "{table:?}");
    assert!(!table.contains('\x1b'), "{table:?}");
}

/// The processes started by `pid`, and theirs.
fn descendants(pid: u32) -> Vec<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .flat_map(|c| std::iter::once(c).chain(descendants(c)))
        .collect()
}

#[test]
fn ctrl_c_leaves_the_watch_on_the_screen_with_the_cursor_shown() {
    let site = Site::new();
    // No agent runs: the host stays PENDING and the watch would go on.
    let id = site.publish(&shell_step("true"), &["web-1"]);
    let command = format!(
        "stty cols 120 rows 30; exec {} status {id} --watch",
        cattle_bin().display()
    );
    let mut script = Cmd::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .envs(&site.minio.cattle_env())
        .env("CATTLE_STORE", &site.store_url)
        .spawn();
    wait_stdout(&script, "the view", |out| out.contains("PENDING 1"));
    let cattle = descendants(script.id())
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "cattle")
        })
        .expect("cattle runs under script");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cattle as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = script
        .wait_timeout(Duration::from_secs(20))
        .expect("Ctrl-C ends the watch");
    assert_eq!(out.status, 130, "{out}");
    assert!(
        out.stdout.ends_with("\x1b[?7h\x1b[?25h"),
        "the cursor is shown again: {:?}",
        out.stdout
    );
    assert!(out.stdout.contains("PENDING 1"), "{:?}", out.stdout);
}

#[test]
fn publish_shows_its_progress_on_a_terminal_only() {
    let site = Site::new();
    let config = site.ws.write("config/cattle.toml", shell_step("true"));
    let config = config.parent().unwrap().display().to_string();
    let hosts: Vec<String> = (1..=40).map(|i| format!("web-{i}")).collect();
    let hosts = site.ws.write("hosts", hosts.join("\n") + "\n");
    let hosts = hosts.display().to_string();

    let command = format!(
        "stty cols 120 rows 30; exec {} publish {config} --hosts {hosts}",
        cattle_bin().display()
    );
    let out = Cmd::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .envs(&site.minio.cattle_env())
        .env("CATTLE_STORE", &site.store_url)
        .run();
    out.assert_success();
    let screen = &out.stdout;
    assert!(
        screen.contains("\r\x1b[Kuploading the bundle: 0 bytes of "),
        "{screen:?}"
    );
    assert!(
        screen.contains("\r\x1b[K40/40 hosts addressed"),
        "{screen:?}"
    );
    // Erased before the publish says what it did.
    let after = screen.rsplit("\r\x1b[K").next().unwrap();
    assert!(after.starts_with("published "), "{screen:?}");
    assert!(after.contains("to 40 hosts"), "{screen:?}");

    // Not on a terminal: nothing but the usual lines.
    let plain = site.cattle(&["publish", &config, "--hosts", &hosts]);
    plain.assert_success();
    assert!(!plain.stderr.contains('\x1b'), "{plain}");
    assert!(!plain.stderr.contains("addressed"), "{plain}");
}

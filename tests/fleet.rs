//! `cattle hosts` and the heartbeats it reads, end to end: real agents with their
//! own host IDs and state directories report to a real MinIO; `cattle hosts` lists
//! them with versions and facts, and flags silent hosts, hosts that never
//! reported, host IDs used by two agents, agents polling a prefix nothing was
//! published to, and heartbeats it cannot read. An idle agent's requests are
//! counted on a proxy in front of MinIO.

use std::path::PathBuf;
use std::time::Duration;

use cattle_e2e::{
    Bucket, Cmd, Minio, Output, Proxy, Workspace, agent_bin, cattle_bin, shell_step, wait_until,
};
use serde_json::{Value, json};

const BUCKET: &str = "cattle";
const PREFIX: &str = "fleet";
/// The version every agent built here reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Site {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
}

impl Site {
    fn new() -> Site {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        Site {
            minio,
            ws: Workspace::new(),
            bucket,
        }
    }

    fn store_url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }

    fn cattle_at(&self, store: &str, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", store)
            .args(args)
            .run()
    }

    fn cattle(&self, args: &[&str]) -> Output {
        self.cattle_at(&self.store_url(), args)
    }

    /// `cattle hosts --json` with `args`, parsed; its exit code too.
    fn hosts_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["hosts", "--json"];
        all.extend_from_slice(args);
        let out = self.cattle(&all);
        let value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        (out.status, value)
    }

    fn hosts_file(&self, hosts: &[&str]) -> String {
        let path = self.ws.write("hosts", hosts.join("\n") + "\n");
        path.display().to_string()
    }

    /// Publish a one-step config to `hosts`; their inboxes exist from then on.
    fn publish(&self, hosts: &[&str]) -> String {
        let dir = self.ws.child("config");
        std::fs::create_dir_all(&dir).unwrap();
        self.ws.write(
            "config/cattle.toml",
            shell_step("echo hello from the fleet"),
        );
        let hosts = self.hosts_file(hosts);
        let out = self.cattle(&["publish", &dir.display().to_string(), "--hosts", &hosts]);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.ws.child(format!("agents/{name}"))
    }

    /// An agent for `host` polling every second, its state in `agents/<state>`.
    fn agent(&self, host: &str, state: &str) -> Cmd {
        self.agent_every(host, state, "1")
    }

    /// [`Site::agent`] polling every `interval`.
    fn agent_every(&self, host: &str, state: &str, interval: &str) -> Cmd {
        Cmd::new(agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", self.store_url())
            .args(["--host-id", host, "--interval", interval, "--state-dir"])
            .arg(self.state_dir(state))
    }

    fn bucket_put_json(&self, key: &str, value: &Value) {
        self.bucket
            .put(key, serde_json::to_vec_pretty(value).unwrap());
    }
}

/// The row of `host` in a `cattle.hosts.v1` document.
fn row<'a>(fleet: &'a Value, host: &str) -> &'a Value {
    fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("no row for {host} in {fleet:#}"))
}

fn flags(fleet: &Value, host: &str) -> Vec<String> {
    row(fleet, host)["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// Wait (at most `secs`) until `cond` holds of `cattle hosts --json ARGS`; return that document.
#[track_caller]
fn await_fleet(site: &Site, args: &[&str], secs: u64, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let held = wait_until(
        Duration::from_secs(secs),
        Duration::from_millis(500),
        || {
            last = site.hosts_json(args).1;
            cond(&last)
        },
    );
    assert!(held, "not within {secs} s; last answer: {last:#}");
    last
}

#[test]
fn hosts_lists_agents_with_versions_and_facts_and_flags_those_that_never_reported() {
    let site = Site::new();
    let id = site.publish(&["web-1", "web-2", "db-1"]);
    let _web1 = site.agent("web-1", "web-1").spawn();
    let _web2 = site.agent("web-2", "web-2").spawn();
    // db-1 has an inbox and no agent; spare-1 is only in the hosts file.
    let expected = site.hosts_file(&["web-1", "web-2", "db-1", "spare-1"]);

    // Each agent's next renewal after the execution names it as finished.
    let fleet = await_fleet(&site, &["--hosts", &expected], 30, |f| {
        ["web-1", "web-2"]
            .iter()
            .all(|h| row(f, h)["last"]["state"] == "DONE")
    });
    let (code, _) = site.hosts_json(&["--hosts", &expected]);
    assert_eq!(code, 3, "two hosts never reported: {fleet:#}");
    for host in ["web-1", "web-2"] {
        let r = row(&fleet, host);
        assert_eq!(r["agent_version"], VERSION, "{r:#}");
        assert_eq!(r["last"]["id"], id.as_str(), "{r:#}");
        assert_eq!(r["interval_secs"], 1, "{r:#}");
        assert_eq!(r["heartbeat_secs"], 10, "{r:#}");
        assert_eq!(r["inbox"], true, "{r:#}");
        assert_eq!(
            r["state_dir"],
            site.state_dir(host)
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        );
        assert!(r["last_seen_secs"].as_u64().unwrap() < 30, "{r:#}");
        // MinIO's clock is this machine's.
        assert!(r["clock_offset_secs"].as_i64().unwrap().abs() <= 2, "{r:#}");
        let facts = &r["facts"];
        assert_eq!(facts["arch"], std::env::consts::ARCH, "{facts:#}");
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(facts["kernel.release"], kernel.trim(), "{facts:#}");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(facts["boot_id"], boot.trim(), "{facts:#}");
        assert!(facts["cpus"].as_str().unwrap().parse::<u32>().unwrap() >= 1);
        assert!(
            facts["memory.mib"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
        assert_eq!(flags(&fleet, host), Vec::<String>::new());
    }
    assert_eq!(flags(&fleet, "db-1"), ["never_reported"]);
    assert_eq!(row(&fleet, "db-1")["inbox"], true);
    assert_eq!(flags(&fleet, "spare-1"), ["never_reported"]);
    assert_eq!(row(&fleet, "spare-1")["expected"], true);
    assert_eq!(row(&fleet, "spare-1")["inbox"], false);
    assert_eq!(fleet["summary"]["seen"], 2);
    assert_eq!(fleet["summary"]["never_reported"], 2);

    let table = site.cattle(&["hosts", "--hosts", &expected, "--facts"]);
    assert_eq!(table.status, 3, "{table}");
    assert!(
        table
            .stdout
            .contains("4 hosts: 2 seen in the last 3 heartbeats, 2 never reported\n"),
        "{table}"
    );
    let web1 = table
        .stdout
        .lines()
        .find(|l| l.starts_with("web-1 "))
        .unwrap();
    assert!(web1.contains(&format!(" {VERSION} ")), "{table}");
    assert!(web1.contains(&format!(" {} DONE ", &id[..13])), "{table}");
    assert!(web1.contains(std::env::consts::ARCH), "{table}");
    // Only those that need attention.
    let attention = site.cattle(&["hosts", "--hosts", &expected, "--attention"]);
    let rows: Vec<&str> = attention.stdout.lines().skip(1).take(2).collect();
    assert!(
        rows[0].starts_with("db-1 ") && rows[1].starts_with("spare-1 "),
        "{attention}"
    );
}

#[test]
fn a_killed_agent_becomes_silent_and_an_agent_at_a_prefix_nothing_was_published_to_shows_there() {
    let site = Site::new();
    site.publish(&["app-1", "app-2"]);
    let mut app1 = site.agent("app-1", "app-1").spawn();
    let _app2 = site.agent("app-2", "app-2").spawn();
    // An agent given a prefix nothing is published to.
    let wrong = format!("s3://{BUCKET}/{PREFIX}-typo");
    let mut lost = site
        .agent("app-3", "app-3")
        .env("CATTLE_STORE", &wrong)
        .spawn();
    await_fleet(&site, &[], 20, |f| {
        ["app-1", "app-2"]
            .iter()
            .all(|h| row(f, h)["last_seen"].is_string())
    });

    // Killed: no more renewals. Two periods of 10 polls later it is silent.
    app1.kill();
    let fleet = await_fleet(&site, &["--silent-after", "2"], 60, |f| {
        flags(f, "app-1") == ["silent"]
    });
    assert_eq!(flags(&fleet, "app-2"), Vec::<String>::new());
    let table = site.cattle(&["hosts", "--silent-after", "2"]);
    assert_eq!(table.status, 3, "{table}");
    assert!(
        table
            .stdout
            .contains("2 hosts: 1 seen in the last 2 heartbeats, 1 silent\n"),
        "{table}"
    );
    let silent = site.cattle(&["hosts", "--silent-after", "2", "--silent"]);
    assert_eq!(silent.stdout.lines().count(), 3, "{silent}");
    assert!(silent.stdout.lines().nth(1).unwrap().starts_with("app-1 "));

    // The lost agent says where it looked, once, and shows under its prefix.
    let at_wrong = site.cattle_at(&wrong, &["hosts", "--json"]);
    let fleet: Value = serde_json::from_str(&at_wrong.stdout).unwrap();
    assert_eq!(flags(&fleet, "app-3"), ["no_inbox"], "{fleet:#}");
    assert_eq!(at_wrong.status, 0, "{at_wrong}");
    let log = lost.terminate(Duration::from_secs(10)).stderr;
    let group = cattle_core::keys::inbox_group(&cattle_core::hosts::HostId::new("app-3").unwrap());
    let inbox = format!("no inbox at `{wrong}/inboxes/{group}.json`");
    assert_eq!(log.matches(&inbox).count(), 1, "{log}");
}

#[test]
fn two_agents_with_one_host_id_are_flagged_duplicate_even_when_idle() {
    let site = Site::new();
    site.publish(&["twin"]);
    let _first = site.agent("twin", "first").spawn();
    // The first holds the lease before the second starts.
    await_fleet(&site, &[], 20, |f| row(f, "twin")["last_seen"].is_string());
    let mut second = site.agent("twin", "second").spawn();
    let fleet = await_fleet(&site, &[], 30, |f| {
        flags(f, "twin").contains(&"duplicate".to_string())
    });
    let twin = row(&fleet, "twin");
    let dir = |name: &str| {
        site.state_dir(name)
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    };
    assert_eq!(twin["state_dir"], dir("first"), "{twin:#}");
    assert_eq!(twin["other_agent"]["state_dir"], dir("second"), "{twin:#}");
    let table = site.cattle(&["hosts"]);
    assert_eq!(table.status, 3, "{table}");
    assert!(
        table
            .stdout
            .contains("1 host: 1 seen in the last 3 heartbeats, 1 duplicate\n")
    );
    assert!(
        table.stdout.contains(&format!(
            "state directory {}), uses the same host ID and runs nothing",
            dir("second")
        )),
        "{table}"
    );
    // The second goes away: once its record is old, the flag goes too.
    second.kill();
    await_fleet(&site, &["--silent-after", "1"], 60, |f| {
        flags(f, "twin").is_empty()
    });
}

/// A lease as an agent writes it, with `heartbeat`, for `host`.
fn lease(host: &str, renew_secs: u64, heartbeat: Value) -> Value {
    json!({
        "format": 2,
        "host": host,
        "nonce": "5f0c6a52-3c1e-4d8a-9a41-7d2b0c9e8f11",
        "machine": "4c4c4544004d3510804bb4c04f4e4d32",
        "state_dir": "/var/lib/cattle/agent",
        "pid": 812,
        "since": "2026-01-02T03:04:06.000Z",
        "renewed": "2026-01-02T03:09:06.000Z",
        "renew_secs": renew_secs,
        "agent_version": "0.9.1",
        "heartbeat": heartbeat,
    })
}

fn heartbeat(os: &str, offset: i64, execution: Value) -> Value {
    json!({
        "interval_secs": 30,
        "polled": "2026-01-02T03:09:06.000Z",
        "clock_offset_secs": offset,
        "inbox": true,
        "execution": execution,
        "last": {"id": "01900000-0000-7000-8000-000000000001", "state": "DONE", "finished": "2026-01-02T03:00:00Z"},
        "facts": {"os.id": "debian", "os.version_id": "12", "os.pretty_name": os,
                  "arch": "x86_64", "cpus": "4", "memory.mib": "7940",
                  "kernel.release": "6.1.0-18-amd64", "ip": ["10.0.0.5", "fd00::5"]},
    })
}

#[test]
fn hostile_heartbeats_make_only_their_own_host_unreadable_and_print_nothing_raw() {
    let site = Site::new();
    site.publish(&[
        "ok-1", "esc-1", "liar-1", "big-1", "facts-1", "clock-1", "dup-1",
    ]);
    let running = json!({"id": "01900000-0000-7000-8000-000000000002", "step": 2, "steps": 5});
    let put = |host: &str, value: Value| {
        site.bucket_put_json(&format!("hosts/{host}/agent.json"), &value);
    };
    put(
        "ok-1",
        lease(
            "ok-1",
            300,
            heartbeat("Debian GNU/Linux 12 (bookworm)", 0, running),
        ),
    );
    // Escape sequences in what is printed: shown escaped, never raw.
    let mut esc = lease(
        "esc-1",
        300,
        heartbeat(
            "\u{1b}[2J\u{1b}]52;c;cm0gLXJmIH4=\u{7}Debian\r\u{202e}",
            0,
            Value::Null,
        ),
    );
    esc["agent_version"] = json!("0.9.1\u{1b}[31m");
    put("esc-1", esc);
    // A lease that names another host, and one far over the limit.
    put(
        "liar-1",
        lease("ok-1", 300, heartbeat("Debian", 0, Value::Null)),
    );
    let mut big = lease("big-1", 300, heartbeat("Debian", 0, Value::Null));
    big["padding"] = json!("x".repeat(100 * 1024));
    put("big-1", big);
    // Facts beyond their bounds.
    let mut facts = heartbeat("Debian", 0, Value::Null);
    facts["facts"]["Bad Key\u{1b}"] = json!("x");
    put("facts-1", lease("facts-1", 300, facts));
    // A host whose clock is 5 minutes ahead of the store's.
    put(
        "clock-1",
        lease("clock-1", 300, heartbeat("Debian", -300, Value::Null)),
    );
    // A second agent's standby record for dup-1.
    put(
        "dup-1",
        lease("dup-1", 300, heartbeat("Debian", 0, Value::Null)),
    );
    site.bucket_put_json(
        "hosts/dup-1/standby.json",
        &json!({"format": 2, "host": "dup-1", "machine": "9d1e0c3a5b7f4e2d8c6a4b2e0f1d3c5a",
                "state_dir": "/var/lib/cattle/agent", "pid": 77, "agent_version": "0.9.1",
                "seen": "2026-01-02T03:09:00Z", "renew_secs": 300,
                "holder_machine": "4c4c4544004d3510804bb4c04f4e4d32",
                "holder_state_dir": "/var/lib/cattle/agent"}),
    );
    // A stray heartbeat under a host nothing was published to.
    put(
        "stray-1",
        lease("stray-1", 300, heartbeat("Debian", 0, Value::Null)),
    );

    let table = site.cattle(&["hosts"]);
    let json_out = site.cattle(&["hosts", "--json"]);
    for out in [&table, &json_out] {
        assert_eq!(out.status, 3, "{out}");
        for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
            assert!(!out.stdout.contains(raw), "raw {raw:?} printed: {out}");
        }
    }
    let fleet: Value = serde_json::from_str(&json_out.stdout).unwrap();
    assert_eq!(flags(&fleet, "ok-1"), Vec::<String>::new());
    assert_eq!(flags(&fleet, "esc-1"), Vec::<String>::new());
    for host in ["liar-1", "big-1", "facts-1"] {
        assert_eq!(flags(&fleet, host), ["unreadable"], "{host}");
    }
    assert_eq!(flags(&fleet, "clock-1"), ["clock"]);
    assert_eq!(flags(&fleet, "dup-1"), ["duplicate"]);
    assert_eq!(flags(&fleet, "stray-1"), ["no_inbox"]);
    let settings = {
        let mut s = cattle_e2e::snapshots();
        // The objects were written a moment ago: 0 or 1 s.
        s.add_filter(r#""last_seen_secs": \d+"#, r#""last_seen_secs": [SECS]"#);
        // The harness's MinIO directory, in the SDK's warnings.
        s.add_filter(r"/tmp/cattle-minio-[A-Za-z0-9]+", "[TMP]");
        s
    };
    settings.bind(|| {
        insta::assert_snapshot!("fleet_hostile_table", table.snapshot());
        insta::assert_snapshot!("fleet_hostile_json", json_out.snapshot());
    });
}

#[test]
fn an_idle_agent_makes_one_conditional_get_per_poll_and_at_most_one_put_per_ten() {
    let site = Site::new();
    site.publish(&["idle-1"]);
    let proxy = Proxy::to(site.minio.addr()).start();
    let mut agent = site
        .agent("idle-1", "idle-1")
        .envs(&proxy.env(&site.minio.cattle_env()))
        .spawn();
    // It runs the execution, then idles: count from when it has reported DONE.
    let state = site.state_dir("idle-1");
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            std::fs::read_dir(state.join("executions"))
                .map(|d| d.flatten().any(|e| e.path().join(".delivered").exists()))
                .unwrap_or(false)
        }
    ));
    std::thread::sleep(Duration::from_secs(2));
    let before = proxy.requests().len();
    std::thread::sleep(Duration::from_secs(60));
    let requests: Vec<String> = proxy.requests()[before..].to_vec();
    let _ = agent.terminate(Duration::from_secs(10));
    let count = |method: &str, suffix: &str| {
        requests
            .iter()
            .filter(|r| {
                r.starts_with(&format!("{method} "))
                    && r.split('?').next().unwrap().ends_with(suffix)
            })
            .count()
    };
    let group = cattle_core::keys::inbox_group(&cattle_core::hosts::HostId::new("idle-1").unwrap());
    // One conditional GET of its group's inbox a poll; its own inbox was read
    // once, at its first poll, before these.
    let polls = count("GET", &format!("/inboxes/{group}.json"));
    let puts = requests.iter().filter(|r| r.starts_with("PUT ")).count();
    let lease_puts = count("PUT", "/hosts/idle-1/agent.json");
    // 60 s at 1 s ± 10 %: about 55 polls (each poll also takes a moment).
    assert!((45..=70).contains(&polls), "{polls} polls: {requests:#?}");
    assert_eq!(puts, lease_puts, "only the lease is written: {requests:#?}");
    assert!(
        puts * 10 <= polls + 10,
        "{puts} PUTs for {polls} polls: {requests:#?}"
    );
    assert!(
        puts >= 4,
        "{puts} PUTs for {polls} polls: the lease is renewed"
    );
    assert_eq!(
        requests.len(),
        polls + puts,
        "nothing else while idle: {requests:#?}"
    );
}

#[test]
fn the_heartbeat_says_how_an_execution_ended_as_soon_as_it_has() {
    let site = Site::new();
    let id = site.publish(&["web-1"]);
    // A 60 s interval: the lease's next periodic renewal is 10 minutes away,
    // so only the renewal after the work can carry the result within the wait.
    let _web1 = site.agent_every("web-1", "web-1", "60").spawn();
    let fleet = await_fleet(&site, &[], 30, |f| {
        f["hosts"]
            .as_array()
            .is_some_and(|hosts| hosts.iter().any(|h| h["last"]["state"] == "DONE"))
    });
    assert_eq!(row(&fleet, "web-1")["last"]["id"], id.as_str(), "{fleet:#}");
    assert_eq!(row(&fleet, "web-1")["interval_secs"], 60, "{fleet:#}");
}

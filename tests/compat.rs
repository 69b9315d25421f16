//! The compatibility matrix: Cattle's core cycle against every S3 server it
//! supports, one code path for all ([`cycle`]), each server a real process of
//! the pinned version (`scripts/install-minio.sh`, `scripts/install-s3-servers.sh`):
//! publish, agents, `status` and `--json`, `log`, `cancel`, four publishers at
//! once to the same hosts, `clean`, and an idle agent's poll, one conditional GET
//! the server answers 304. Garage, which ignores conditional writes, is shown
//! refused by `cattle store check`, `cattle publish` and the agent. The README's "Compatibility" table is what
//! this file tests.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::Fetched;
use cattle_core::wire::{GroupInbox, Inbox};
use cattle_e2e::servers::BUCKET;
use cattle_e2e::{
    Bucket, Cmd, Garage, Minio, Output, Proxy, S3Server, Seaweed, Verdict, Versitygw, Workspace,
    agent_bin, cattle_bin, shell_step, states, wait_until,
};
use serde_json::Value;
use uuid::Uuid;

const PREFIX: &str = "compat";
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// A server, a workspace, and the commands an operator and the hosts run.
struct Site<'a> {
    server: &'a dyn S3Server,
    ws: Workspace,
    bucket: Bucket,
}

impl Site<'_> {
    fn store_url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }

    fn cattle_cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new(cattle_bin())
            .envs(&self.server.cattle_env())
            .env("CATTLE_STORE", self.store_url())
            .env("CATTLE_LOG", "error")
            // Where `cattle` remembers that the store passed its self-test.
            .env("XDG_CACHE_HOME", self.ws.child("cache"))
            .args(args)
    }

    fn cattle(&self, args: &[&str]) -> Output {
        self.cattle_cmd(args).run()
    }

    fn status_json(&self, id: &str) -> Value {
        let out = self.cattle(&["status", id, "--json"]);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `cattle publish` of the config `name` (written from `steps`) to `hosts`, not yet run.
    fn publish_cmd(&self, name: &str, steps: &str, hosts: &[&str]) -> Cmd {
        let config = self.ws.write(format!("{name}/cattle.toml"), steps);
        let hosts = self
            .ws
            .write(format!("{name}.hosts"), hosts.join("\n") + "\n");
        self.cattle_cmd(&[
            "publish",
            &config.parent().unwrap().display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ])
    }

    fn publish(&self, name: &str, steps: &str, hosts: &[&str]) -> String {
        execution_id(&self.publish_cmd(name, steps, hosts).run())
    }

    fn state_dir(&self, host: &str) -> PathBuf {
        self.ws.child(format!("agents/{host}"))
    }

    fn agent(&self, host: &str, args: &[&str]) -> Cmd {
        Cmd::new(agent_bin())
            .envs(&self.server.cattle_env())
            .env("CATTLE_STORE", self.store_url())
            .args(["--host-id", host, "--state-dir"])
            .arg(self.state_dir(host))
            .args(args)
    }

    /// Every host's agent with `--once`, all at the same time; each must succeed.
    fn agents_once(&self, hosts: &[&str]) {
        let mut running: Vec<_> = hosts
            .iter()
            .map(|h| self.agent(h, &["--once"]).spawn())
            .collect();
        for (host, agent) in hosts.iter().zip(&mut running) {
            let out = agent
                .wait_timeout(Duration::from_secs(60))
                .unwrap_or_else(|| panic!("{host}'s agent still runs after 60 s"));
            assert_eq!(
                out.status,
                0,
                "{host}'s agent on {}: {out}",
                self.server.name()
            );
        }
    }

    /// The execution IDs addressed to `host` in its group's inbox, and in its own
    /// inbox when publishers still write one: read straight from the bucket.
    fn inboxes(&self, host: &str) -> Vec<Vec<String>> {
        let mut inboxes = Vec::new();
        if let Some(bytes) = self.bucket.get(&keys::group_inbox(&group(host))) {
            let inbox: GroupInbox = serde_json::from_slice(&bytes).unwrap();
            inboxes.push(
                inbox
                    .executions
                    .iter()
                    .filter(|e| e.hosts.iter().any(|h| h.as_str() == host))
                    .map(|e| e.id.to_string())
                    .collect(),
            );
        }
        if let Some(bytes) = self.bucket.get(&keys::inbox(&HostId::new(host).unwrap())) {
            let inbox: Inbox = serde_json::from_slice(&bytes).unwrap();
            inboxes.push(inbox.executions.iter().map(Uuid::to_string).collect());
        }
        inboxes
    }
}

/// The inbox group of `host`.
fn group(host: &str) -> String {
    keys::inbox_group(&HostId::new(host).unwrap())
}

/// The execution ID a successful `cattle publish` prints last.
fn execution_id(out: &Output) -> String {
    out.assert_success();
    let id = out
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert_eq!(
        id.len(),
        36,
        "the last line of stdout is the execution ID: {out}"
    );
    id
}

fn all(hosts: &[&str], state: &str) -> Vec<(String, String)> {
    hosts
        .iter()
        .map(|h| (h.to_string(), state.to_string()))
        .collect()
}

/// The core cycle, against `server` (whose bucket [`BUCKET`] exists).
fn cycle(server: &dyn S3Server) {
    let started = Instant::now();
    let name = server.name();
    let site = Site {
        server,
        ws: Workspace::new(),
        bucket: Bucket::on(server, BUCKET, &format!("{PREFIX}/")),
    };

    // The server honours what Cattle relies on.
    let check = site.cattle(&["store", "check"]);
    assert_eq!(check.status, 0, "{name}: {check}");
    assert!(
        check.stdout.ends_with("all 5 checks passed\n"),
        "{name}: {check}"
    );

    // Publish to three hosts; their agents run it; status and log show it.
    let hello = site.publish(
        "hello",
        &shell_step("echo hello from $CATTLE_HOST_ID"),
        &HOSTS,
    );
    site.agents_once(&HOSTS);
    let status = site.cattle(&["status", &hello]);
    assert_eq!(status.status, 0, "{name}: {status}");
    assert!(
        status.stdout.ends_with("3 hosts: 3 DONE\n"),
        "{name}: {status}"
    );
    let json = site.status_json(&hello);
    assert_eq!(json["schema"], "cattle.status.v1", "{name}: {json:#}");
    assert_eq!(states(&json), all(&HOSTS, "DONE"), "{name}: {json:#}");
    let log = site.cattle(&["log", &hello]);
    log.assert_success();
    for host in HOSTS {
        let said = |l: &str| {
            l.starts_with(&format!("[{host}] ")) && l.ends_with(&format!("| hello from {host}"))
        };
        assert!(log.stdout.lines().any(said), "{name}: {log}");
    }

    // Cancel: h1 is in its long first step, h2 has not started.
    let flag = site.ws.child("flags");
    std::fs::create_dir_all(&flag).unwrap();
    let flag = flag.display();
    let slow = site.publish(
        "slow",
        &[
            format!("touch {flag}/one-$CATTLE_HOST_ID; sleep 3"),
            format!("touch {flag}/two-$CATTLE_HOST_ID"),
        ]
        .map(|s| shell_step(&s))
        .concat(),
        &["h1", "h2"],
    );
    let mut h1 = site.agent("h1", &["--interval", "1"]).spawn();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            site.ws.child("flags/one-h1").exists()
        }),
        "{name}: h1 never started step 1: {}",
        h1.stderr()
    );
    let cancel = site.cattle(&["cancel", &slow]);
    cancel.assert_success();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            states(&site.status_json(&slow))[0].1 == "CANCELLED"
        }),
        "{name}: h1 was not cancelled: {}",
        h1.stderr()
    );
    h1.terminate(Duration::from_secs(10));
    site.agents_once(&["h2"]);
    let json = site.status_json(&slow);
    assert_eq!(
        states(&json),
        all(&["h1", "h2"], "CANCELLED"),
        "{name}: {json:#}"
    );
    assert_eq!(
        json["hosts"][0]["error"], "cancelled before step 2",
        "{name}"
    );
    assert_eq!(
        json["hosts"][1]["error"], "cancelled before it started",
        "{name}"
    );
    assert!(
        !site.ws.child("flags/two-h1").exists(),
        "{name}: h1 ran step 2"
    );
    assert!(
        !site.ws.child("flags/one-h2").exists(),
        "{name}: h2 started"
    );

    // Four publishers at once to the same hosts: every inbox gets all four (its
    // compare-and-swap writes were honoured), and every host runs all four.
    let mut publishers: Vec<_> = (1..=4)
        .map(|n| {
            site.publish_cmd(
                &format!("concurrent-{n}"),
                &shell_step(&format!("touch {flag}/concurrent-{n}-$CATTLE_HOST_ID")),
                &HOSTS,
            )
            .spawn()
        })
        .collect();
    let concurrent: Vec<String> = publishers
        .iter_mut()
        .map(|p| {
            execution_id(
                &p.wait_timeout(Duration::from_secs(60))
                    .expect("publish ends"),
            )
        })
        .collect();
    for host in HOSTS {
        let inboxes = site.inboxes(host);
        assert!(!inboxes.is_empty(), "{name}: {host} has no inbox");
        for (inbox, id) in inboxes
            .iter()
            .flat_map(|i| concurrent.iter().map(move |id| (i, id)))
        {
            assert!(
                inbox.contains(id),
                "{name}: {host}'s inbox lost {id}: {inbox:?}"
            );
        }
    }
    site.agents_once(&HOSTS);
    for (n, id) in concurrent.iter().enumerate() {
        assert_eq!(
            states(&site.status_json(id)),
            all(&HOSTS, "DONE"),
            "{name}: {id}"
        );
        for host in HOSTS {
            let ran = site.ws.child(format!("flags/concurrent-{}-{host}", n + 1));
            assert!(
                ran.exists(),
                "{name}: {host} did not run execution {}",
                n + 1
            );
        }
    }

    // Clean every execution, the four at once: nothing is left under any, and no
    // inbox names one.
    let mut cleaners: Vec<_> = concurrent
        .iter()
        .map(|id| site.cattle_cmd(&["clean", id]).spawn())
        .collect();
    for cleaner in &mut cleaners {
        let out = cleaner
            .wait_timeout(Duration::from_secs(60))
            .expect("clean ends");
        assert_eq!(out.status, 0, "{name}: {out}");
    }
    for id in [&hello, &slow] {
        site.cattle(&["clean", id]).assert_success();
    }
    let cleaned: Vec<&String> = [&hello, &slow].into_iter().chain(&concurrent).collect();
    for id in &cleaned {
        let left = site.bucket.list(&format!("executions/{id}/"));
        assert_eq!(left, Vec::<String>::new(), "{name}: left under {id}");
    }
    for host in HOSTS {
        for inbox in site.inboxes(host) {
            assert!(
                !cleaned.iter().any(|id| inbox.contains(id)),
                "{name}: {host}'s inbox still names a cleaned execution: {inbox:?}"
            );
        }
    }

    // An idle agent: each poll is one GET of its group's inbox with If-None-Match,
    // which the server answers 304.
    let inbox = keys::group_inbox(&group("h1"));
    let polled = format!("/{inbox}");
    let conditions = Arc::new(Mutex::new(Vec::new()));
    let seen = conditions.clone();
    let suffix = polled.clone();
    let proxy = Proxy::to(server.addr())
        .rewrite(move |request| {
            if request.method == "GET" && request.path().ends_with(&suffix) {
                seen.lock()
                    .unwrap()
                    .push(request.header("if-none-match").map(str::to_string));
            }
            Verdict::Forward
        })
        .start();
    let mut idle = site
        .agent("h1", &["--interval", "1"])
        .envs(&proxy.env(&server.cattle_env()))
        .spawn();
    // The first read is unconditional; from the second on, the agent has the ETag.
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            conditions.lock().unwrap().len() >= 2
        }),
        "{name}: the agent does not poll: {}",
        idle.stderr()
    );
    let before = proxy.requests().len();
    let polls_before = conditions.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(5));
    let requests = proxy.requests()[before..].to_vec();
    let polls = conditions.lock().unwrap()[polls_before..].to_vec();
    idle.terminate(Duration::from_secs(10));
    let inbox_gets = requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.split('?').next().unwrap().ends_with(&polled))
        .count();
    let lease_puts = requests
        .iter()
        .filter(|r| {
            r.starts_with("PUT ")
                && r.split('?')
                    .next()
                    .unwrap()
                    .ends_with("/hosts/h1/agent.json")
        })
        .count();
    assert!(
        inbox_gets >= 3,
        "{name}: {inbox_gets} polls in 5 s: {requests:#?}"
    );
    assert_eq!(
        requests.len(),
        inbox_gets + lease_puts,
        "{name}: nothing but polls and the lease while idle: {requests:#?}"
    );
    assert!(lease_puts <= 1, "{name}: {requests:#?}");
    let etag = polls[0]
        .clone()
        .unwrap_or_else(|| panic!("{name}: an unconditional poll"));
    assert!(
        polls.iter().all(|p| p.as_ref() == Some(&etag)),
        "{name}: {polls:?}"
    );
    let answer = site.bucket.block(
        site.bucket
            .store
            .get_if_changed(&inbox, Some(&etag), 1 << 20),
    );
    assert!(
        matches!(answer, Ok(Fetched::NotModified)),
        "{name}: the server answers the agent's poll with {answer:?}, not 304"
    );
    eprintln!("{name}: the cycle took {:?}", started.elapsed());
}

#[test]
fn minio() {
    let minio = Minio::start();
    Bucket::open(&minio, BUCKET, "").create();
    cycle(&minio);
}

#[test]
fn versitygw_posix() {
    cycle(&Versitygw::start());
}

#[test]
fn seaweedfs() {
    cycle(&Seaweed::start());
}

/// Garage 2.5.0 answers 200 to a PUT with `If-None-Match: *` on an existing object
/// and to one with a stale `If-Match`: two publishers overwrite each other's inbox
/// entries and every command exits 0. `cattle store check` names both failures,
/// `cattle publish` refuses the store before it uploads anything, and an agent
/// refuses to poll it.
#[test]
fn garage_is_refused_by_the_store_check_publish_and_the_agent() {
    let garage = Garage::start();
    let site = Site {
        server: &garage,
        ws: Workspace::new(),
        bucket: Bucket::on(&garage, BUCKET, &format!("{PREFIX}/")),
    };
    let out = site.cattle(&["store", "check", "--json"]);
    assert_eq!(out.status, 1, "{out}");
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let failed: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["feature"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        [
            "create-only write (If-None-Match: *)",
            "compare-and-swap write (If-Match)"
        ],
        "{json:#}"
    );

    let publish = site
        .publish_cmd("hello", &shell_step("echo hello"), &HOSTS)
        .run();
    assert_eq!(publish.status, 1, "{publish}");
    assert!(
        publish.stderr.contains(&format!(
            "error: store `{}/` does not honour what Cattle relies on (2 checks failed): \
             nothing was published",
            site.store_url()
        )),
        "{publish}"
    );
    assert_eq!(site.bucket.keys(), Vec::<String>::new(), "{publish}");

    let mut agent = site.agent("h1", &["--interval", "1"]).spawn();
    let out = agent
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the agent polls Garage:\n{}", agent.stderr()));
    assert_eq!(out.status, 78, "{out}");
    assert!(out.stderr.contains("so this agent does not poll"), "{out}");
}

//! End to end: the real `cattle` and `cattle-agent` binaries against a real
//! MinIO (and the local directory store), as an operator and a fleet would use them.
//!
//! Several hosts run on this one machine as agents with their own host IDs and
//! state directories. Where a config writes to `/var`, each agent runs in its
//! own mount namespace with a private `/var` (`unshare --mount` and a bind
//! mount), so every host really does its own work.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cattle_e2e::{
    Background, Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, example, files_under,
    local_log, shell_step, signing_env, states, wait_until,
};

const BUCKET: &str = "cattle";
const PREFIX: &str = "e2e";

/// The inbox group of `host`.
fn group_of(host: &str) -> String {
    cattle_core::keys::inbox_group(&cattle_core::hosts::HostId::new(host).unwrap())
}

/// The executions the inbox of `host`'s group in `bucket` lists for it, oldest first.
fn listed_for(bucket: &Bucket, host: &str) -> Vec<String> {
    let Some(bytes) = bucket.get(&format!("inboxes/{}.json", group_of(host))) else {
        return Vec::new();
    };
    let inbox: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    inbox["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["hosts"].as_array().unwrap().iter().any(|h| h == host))
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// A MinIO with an empty bucket, a workspace, and the commands to drive them.
struct Fleet {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
    store_url: String,
}

impl Fleet {
    fn on_minio() -> Fleet {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        Fleet {
            store_url: format!("s3://{BUCKET}/{PREFIX}"),
            minio,
            ws: Workspace::new(),
            bucket,
        }
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args(args)
            .run()
    }

    fn hosts_file(&self, hosts: &[&str]) -> String {
        let path = self.ws.write("hosts", hosts.join("\n") + "\n");
        path.display().to_string()
    }

    fn publish(&self, dir: &Path, hosts: &[&str]) -> String {
        let hosts = self.hosts_file(hosts);
        let out = self.cattle(&["publish", &dir.display().to_string(), "--hosts", &hosts]);
        out.assert_success();
        let id = out.stdout.lines().last().unwrap().trim().to_string();
        assert_eq!(
            id.len(),
            36,
            "the last line of stdout is the execution ID: {out}"
        );
        id
    }

    fn state_dir(&self, host: &str) -> PathBuf {
        self.ws.child(format!("agents/{host}/state"))
    }

    /// The host's private `/var`, as seen from outside its namespace.
    fn var_dir(&self, host: &str) -> PathBuf {
        let dir = self.ws.child(format!("agents/{host}/var"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn agent(&self, host: &str, extra: &[&str]) -> Cmd {
        let state = self.state_dir(host).display().to_string();
        let var = self.var_dir(host).display().to_string();
        let agent = agent_bin().display().to_string();
        let mut args = vec![
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" /var && exec \"$@\"",
            &var,
            &agent,
            "--host-id",
            host,
            "--state-dir",
            &state,
        ];
        args.extend_from_slice(extra);
        Cmd::new("unshare")
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args(args)
    }

    fn agent_once(&self, host: &str) -> Output {
        self.agent(host, &["--once"]).run()
    }

    fn status_json(&self, id: &str) -> serde_json::Value {
        let out = self.cattle(&["status", id, "--json"]);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `cattle` as someone with full access to the bucket but without the publisher's key.
    fn cattle_without_key(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.env())
            .env("CATTLE_STORE", &self.store_url)
            .args(args)
            .run()
    }

    /// Replace the inbox of `host`'s group with one listing `ids` for `host`
    /// alone, as anyone with write access could.
    fn forge_inbox(&self, host: &str, ids: &[&str]) {
        let group = group_of(host);
        let executions: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"id": id, "hosts": [host]}))
            .collect();
        let inbox = serde_json::json!({"format": 2, "group": group, "executions": executions});
        self.bucket.put(
            &format!("inboxes/{group}.json"),
            serde_json::to_vec(&inbox).unwrap(),
        );
    }

    /// The executions the inbox of `host`'s group lists for it, oldest first.
    fn inbox_ids(&self, host: &str) -> Vec<String> {
        listed_for(&self.bucket, host)
    }

    /// What `host` last reported for execution `id`, read straight from the bucket.
    fn host_status(&self, id: &str, host: &str) -> serde_json::Value {
        let bytes = self
            .bucket
            .get(&format!("executions/{id}/hosts/{host}/status.json"))
            .unwrap_or_else(|| panic!("{host} reported nothing for {id}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Assert that `host` refused execution `id` with an error containing `reason`.
    #[track_caller]
    fn assert_refused(&self, id: &str, host: &str, reason: &str) {
        let status = self.host_status(id, host);
        assert_eq!(status["state"], "ERROR", "{status}");
        let error = status["error"].as_str().unwrap();
        assert!(
            error.contains("refused") && error.contains(reason),
            "expected a refusal because {reason:?}, got {error:?}"
        );
    }
}

/// A steps file of `n` command steps. Each appends its number to `counter` as it
/// starts, then runs `then` (a shell snippet); step `gate.0` waits until the file
/// `gate.1` exists.
fn counting_steps(counter: &Path, n: usize, gate: Option<(usize, &Path)>, then: &str) -> String {
    (1..=n)
        .map(|step| {
            let mut script = format!("echo $CATTLE_STEP >> {}", counter.display());
            if let Some((gated, file)) = gate
                && gated == step
            {
                script.push_str(&format!(
                    "; while [ ! -e {} ]; do sleep 0.05; done",
                    file.display()
                ));
            }
            if !then.is_empty() {
                script.push_str(&format!("; {then}"));
            }
            shell_step(&script)
        })
        .collect()
}

/// The manifest inside a stored manifest envelope (without checking its signature).
fn manifest_of(envelope: &[u8]) -> serde_json::Value {
    let envelope: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    serde_json::from_str(envelope["payload"].as_str().expect("a payload")).unwrap()
}

#[test]
fn poem_to_three_hosts_runs_on_each_and_reports_done() {
    let fleet = Fleet::on_minio();
    let hosts = ["web-1", "web-2", "db-1"];
    let id = fleet.publish(&example("poem"), &hosts);

    let before = fleet.cattle(&["status", &id]);
    before.assert_status(4);
    assert!(before.stdout.contains("3 hosts: 3 PENDING\n"), "{before}");

    for host in hosts {
        fleet.agent_once(host).assert_success();
    }

    let done = fleet.cattle(&["status", &id, "--wait", "--timeout", "30", "--steps"]);
    done.assert_success();
    assert!(done.stdout.contains("3 hosts: 3 DONE\n"), "{done}");
    assert!(
        done.stdout
            .contains("steps: 9 changed, 3 unchanged, 0 failed"),
        "{done}"
    );
    for host in hosts {
        let row = done.stdout.lines().find(|l| l.starts_with(host)).unwrap();
        assert!(row.contains("DONE") && row.contains("4/4"), "{row}");

        let poem = fleet.var_dir(host).join("poems/poem.txt");
        assert_eq!(
            std::fs::read(&poem).unwrap(),
            std::fs::read(example("poem/poem.txt")).unwrap()
        );
        let meta = std::fs::metadata(&poem).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o666, "{}", poem.display());
        assert_eq!((meta.uid(), meta.gid()), (0, 0));

        let log = fleet.cattle(&["log", &id, "--host", host]);
        log.assert_success();
        for line in [
            "Running step 1/4: make_dir (directory /var/poems exists)",
            "Step 2 changed",
            "config executed successfully",
        ] {
            assert!(
                log.stdout.contains(line),
                "{host} log lacks {line:?}:\n{}",
                log.stdout
            );
        }

        // The original tool's layout on the host: config, STATUS, and the log (in parts).
        let local = fleet.state_dir(host).join("executions").join(&id);
        assert_eq!(
            std::fs::read_to_string(local.join("STATUS")).unwrap(),
            "DONE\n"
        );
        assert!(local.join("config/cattle.toml").is_file());
        assert_eq!(local_log(&local), log.stdout);
    }

    // Each DONE host left a marker, so status lists them instead of reading
    // each status; without the marker, the status document still says DONE.
    for host in hosts {
        assert!(
            fleet
                .bucket
                .get(&format!("executions/{id}/done/{host}"))
                .is_some()
        );
    }
    fleet.bucket.delete(&format!("executions/{id}/done/web-2"));
    let status = fleet.status_json(&id);
    assert_eq!(status["hosts"][1]["state"], "DONE");
    assert_eq!(status["schema"], "cattle.status.v1");
    // Without its marker, web-2 is known DONE from its status document.
    assert!(status["hosts"][1]["finished"].is_string(), "{status}");
    assert_eq!(status["hosts"][1]["step"]["number"], 4);
    assert_eq!(status["hosts"][0]["step"]["of"], 4);
    assert!(status["hosts"][0]["updated"].is_string());
    // The marker decides: a DONE host whose status document is damaged is
    // still DONE, with its marker's time, only without what the document says.
    fleet.bucket.put(
        &format!("executions/{id}/hosts/web-1/status.json"),
        b"{not json".to_vec(),
    );
    let status = fleet.status_json(&id);
    assert_eq!(status["hosts"][0]["state"], "DONE");
    assert!(status["hosts"][0]["step"].is_null(), "{status}");
    assert!(status["hosts"][0]["step_results"].is_null(), "{status}");
    assert!(status["hosts"][0]["results"].is_null(), "{status}");
    assert!(status["hosts"][0]["updated"].is_string(), "{status}");
    assert_eq!(status["summary"]["results_known"], 2, "{status}");
    assert_eq!(status["hosts"][2]["results"]["changed"], 3);

    // All logs at once, each line starting with its host's name.
    let all = fleet.cattle(&["log", &id]);
    all.assert_success();
    for host in hosts {
        assert!(all.stdout.contains(&format!("[{host}] ")), "{all}");
    }

    // A second poll finds nothing new: a finished execution never runs again.
    let again = fleet.agent_once("web-1");
    again.assert_success();
    let log = fleet.cattle(&["log", &id, "--host", "web-1"]).stdout;
    assert_eq!(
        log.matches("config executed successfully").count(),
        1,
        "{log}"
    );
}

#[test]
fn publish_stores_the_bundle_once_and_addresses_each_host() {
    let fleet = Fleet::on_minio();
    let hosts_file = fleet.hosts_file(&["a", "b", "c"]);
    let dir = example("poem").display().to_string();
    let first = fleet.cattle(&["publish", &dir, "--hosts", &hosts_file, "--json"]);
    first.assert_success();
    let first: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(first["schema"], "cattle.publish.v1");
    assert_eq!(first["bundle_uploaded"], true);
    let second = fleet.cattle(&["publish", &dir, "--hosts", &hosts_file, "--json"]);
    second.assert_success();
    let second: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(second["bundle_uploaded"], false);
    assert_eq!(first["bundle_sha256"], second["bundle_sha256"]);
    assert_ne!(first["id"], second["id"]);

    let keys = fleet.bucket.keys();
    let bundles: Vec<_> = keys.iter().filter(|k| k.ends_with(".tar.gz")).collect();
    assert_eq!(bundles.len(), 1, "{keys:?}");
    assert_eq!(
        fleet.inbox_ids("b"),
        [
            first["id"].as_str().unwrap(),
            second["id"].as_str().unwrap()
        ]
    );
    // 1 bundle, 2 bundle references, 2 manifests, an inbox per group, the
    // version counter; no per-host inbox.
    let groups: std::collections::BTreeSet<String> = ["a", "b", "c"].map(group_of).into();
    assert_eq!(keys.len(), 1 + 2 + 2 + groups.len() + 1, "{keys:?}");
    assert!(!keys.iter().any(|k| k.starts_with("hosts/")), "{keys:?}");

    // The bundle stays while another execution uses it, and goes with the last.
    let (first, second) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let out = fleet.cattle(&["clean", first]);
    out.assert_success();
    assert!(out.stderr.contains("bundle kept"), "{out}");
    assert_eq!(
        fleet
            .bucket
            .keys()
            .iter()
            .filter(|k| k.ends_with(".tar.gz"))
            .count(),
        1
    );
    fleet.cattle(&["clean", second]).assert_success();
    let left = fleet.bucket.keys();
    assert!(
        left.iter()
            .all(|k| k.starts_with("inboxes/") || k == "publish/version.json"),
        "{left:?}"
    );
}

#[test]
fn concurrent_publishers_to_the_same_hosts_lose_no_execution() {
    let fleet = Fleet::on_minio();
    let hosts = fleet.hosts_file(&["h1", "h2", "h3"]);
    let dir = example("poem").display().to_string();
    let publishers: Vec<_> = (0..6)
        .map(|_| {
            Cmd::new(cattle_bin())
                .envs(&fleet.minio.cattle_env())
                .env("CATTLE_STORE", &fleet.store_url)
                .args(["publish", &dir, "--hosts", &hosts])
                .spawn()
        })
        .collect();
    let mut ids: Vec<String> = publishers
        .into_iter()
        .map(|mut p| {
            let out = p
                .wait_timeout(Duration::from_secs(60))
                .expect("publish finishes");
            out.assert_success();
            out.stdout.trim().to_string()
        })
        .collect();
    ids.sort();
    for host in ["h1", "h2", "h3"] {
        let mut listed = fleet.inbox_ids(host);
        listed.sort();
        assert_eq!(listed, ids, "{host}'s inbox lost an execution");
    }
}

#[test]
fn a_publish_killed_half_way_leaves_no_host_with_half_an_execution() {
    let fleet = Fleet::on_minio();
    let hosts: Vec<String> = (0..2000).map(|i| format!("host-{i:04}")).collect();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let hosts_file = fleet.hosts_file(&hosts);
    let dir = example("poem").display().to_string();
    let mut publish = Cmd::new(cattle_bin())
        .envs(&fleet.minio.cattle_env())
        .env("CATTLE_STORE", &fleet.store_url)
        .args(["publish", &dir, "--hosts", &hosts_file])
        .spawn();
    // Kill it once it has started addressing hosts.
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        || {
            fleet
                .bucket
                .keys()
                .iter()
                .any(|k| k.starts_with("inboxes/"))
        }
    ));
    publish.kill();

    let keys = fleet.bucket.keys();
    let inboxes: Vec<&String> = keys.iter().filter(|k| k.starts_with("inboxes/")).collect();
    let groups: std::collections::BTreeSet<String> = hosts.iter().map(|h| group_of(h)).collect();
    assert!(
        inboxes.len() < groups.len(),
        "the publish finished before the kill; nothing tested"
    );
    let mut addressed = 0;
    for inbox in inboxes {
        let inbox: serde_json::Value =
            serde_json::from_slice(&fleet.bucket.get(inbox).unwrap()).unwrap();
        for entry in inbox["executions"].as_array().unwrap() {
            let id = &entry["id"];
            addressed += 1;
            let manifest = fleet
                .bucket
                .get(&format!(
                    "executions/{}/manifest.json",
                    id.as_str().unwrap()
                ))
                .expect("an addressed execution has its manifest");
            let manifest = manifest_of(&manifest);
            let bundle = format!(
                "bundles/{}.tar.gz",
                manifest["bundle"]["sha256"].as_str().unwrap()
            );
            assert!(
                fleet.bucket.get(&bundle).is_some(),
                "an addressed execution has its bundle"
            );
        }
    }
    assert!(addressed > 0);

    // Publishing again is safe: a new execution, addressed to every host.
    let id = fleet.publish(&example("poem"), &hosts);
    for host in ["host-0000", "host-1999"] {
        assert!(fleet.inbox_ids(host).contains(&id), "{host}");
    }
}

#[test]
fn sigterm_lets_the_step_under_way_finish_and_runs_no_further_step() {
    let fleet = Fleet::on_minio();
    let (started, gate, finished, second) = (
        fleet.ws.child("started"),
        fleet.ws.child("gate"),
        fleet.ws.child("finished"),
        fleet.ws.child("second"),
    );
    let config = fleet.ws.write(
        "two/cattle.toml",
        format!(
            "[[step]]\nfacility = \"command\"\n\
             argv = [\"sh\", \"-c\", \"touch {}; while [ ! -e {} ]; do sleep 0.1; done; touch {}\"]\n\n\
             [[step]]\nfacility = \"command\"\nargv = [\"touch\", \"{}\"]\n",
            started.display(),
            gate.display(),
            finished.display(),
            second.display()
        ),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);
    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || started.exists()
    ));

    agent.signal(cattle_e2e::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        agent.try_status().is_none(),
        "the agent must wait for the step under way"
    );
    std::fs::write(&gate, "").unwrap();
    let out = agent
        .wait_timeout(Duration::from_secs(20))
        .expect("agent stops after the step");
    assert_eq!(out.status, 0, "{out}");
    assert!(finished.exists(), "the step under way was cut in half");
    assert!(!second.exists(), "no step may start after SIGTERM");
    let status = fleet.status_json(&id);
    assert_eq!(states(&status)[0].1, "PROGRESS");

    // Started again, the agent finishes the execution (steps are idempotent).
    fleet.agent_once("h1").assert_success();
    assert!(second.exists());
    fleet.cattle(&["status", &id]).assert_success();
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert!(
        log.contains("this execution was interrupted; verified it again, resuming at step 2"),
        "{log}"
    );
    assert_eq!(
        log.matches("Running step 1/2").count(),
        1,
        "step 1 finished before SIGTERM: {log}"
    );
    assert_eq!(
        log.matches("config executed successfully").count(),
        1,
        "{log}"
    );
}

#[test]
fn after_kill_9_the_agent_resumes_at_the_step_in_flight() {
    let fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    let gate = fleet.ws.child("gate");
    // Five steps; each appends its number when it starts; step 3 waits for the gate.
    let config = fleet.ws.write(
        "five/cattle.toml",
        counting_steps(&counter, 5, Some((3, &gate)), ""),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);

    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || { std::fs::read_to_string(&counter).is_ok_and(|c| c.lines().count() == 3) }
    ));
    agent.kill();
    std::fs::write(&gate, "").unwrap();

    fleet.agent_once("h1").assert_success();
    fleet.cattle(&["status", &id]).assert_success();
    let runs: Vec<String> = std::fs::read_to_string(&counter)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        runs,
        ["1", "2", "3", "3", "4", "5"],
        "only the step in flight runs twice"
    );
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert!(log.contains("resuming at step 3"), "{log}");
}

#[test]
fn a_second_run_of_the_same_config_reports_every_step_unchanged() {
    let fleet = Fleet::on_minio();
    let recap = |id: &str| {
        let status = fleet.cattle(&["status", id, "--json"]);
        status.assert_success();
        let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let host = &json["hosts"][0];
        (
            host["results"].clone(),
            host["step_results"].clone(),
            fleet.cattle(&["status", id, "--steps"]).stdout,
            fleet.cattle(&["log", id, "--host", "h1"]).stdout,
        )
    };

    let first = fleet.publish(&example("poem"), &["h1"]);
    fleet.agent_once("h1").assert_success();
    let (counts, per_step, table, log) = recap(&first);
    // The file the agent (root) writes is root's already: `chown` finds it so.
    assert_eq!(
        counts,
        serde_json::json!({"changed": 3, "unchanged": 1, "failed": 0,
                           "would_change": 0, "in_state": 0, "unknown": 0})
    );
    assert_eq!(
        per_step,
        serde_json::json!(["changed", "changed", "changed", "unchanged"])
    );
    let row = table.lines().find(|l| l.starts_with("h1")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..6], ["DONE", "4/4", "3", "1", "0"], "{table}");
    for step in 1..=3 {
        assert!(log.contains(&format!("Step {step} changed\n")), "{log}");
    }

    let second = fleet.publish(&example("poem"), &["h1"]);
    fleet.agent_once("h1").assert_success();
    let (counts, per_step, table, log) = recap(&second);
    assert_eq!(
        counts,
        serde_json::json!({"changed": 0, "unchanged": 4, "failed": 0,
                           "would_change": 0, "in_state": 0, "unknown": 0})
    );
    assert_eq!(
        per_step,
        serde_json::json!(["unchanged", "unchanged", "unchanged", "unchanged"])
    );
    assert!(
        table.contains("steps: 0 changed, 4 unchanged, 0 failed"),
        "{table}"
    );
    for step in 1..=4 {
        assert!(
            log.contains(&format!("Step {step} unchanged: already in place\n")),
            "{log}"
        );
    }
}

#[test]
fn flaky_step_is_retried_and_the_retries_are_in_the_log() {
    let fleet = Fleet::on_minio();
    let id = fleet.publish(&example("flaky"), &["h1"]);
    fleet.agent_once("h1").assert_success();
    fleet.cattle(&["status", &id]).assert_success();
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    for line in [
        "step 1: | describe: fails until attempt 3, then succeeds",
        "step 1: attempt 1 of 3 failed: `facilities/flaky apply` exited with status 1: \
         attempt 1: failing on purpose (succeeds on attempt 3)",
        "step 1: attempt 2 of 3 failed",
        "Step 1 changed on attempt 3",
        "config executed successfully",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    // 1 s then 2 s, each ±10 %.
    let waits: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("; retrying in ").nth(1))
        .collect();
    assert_eq!(waits.len(), 2, "{log}");
    assert!(["0.9s", "1.0s", "1.1s"].contains(&waits[0]), "{log}");
    assert!(
        ["1.8s", "1.9s", "2.0s", "2.1s", "2.2s"].contains(&waits[1]),
        "{log}"
    );
}

#[test]
fn a_failing_step_ends_in_error_with_its_step_and_message() {
    let fleet = Fleet::on_minio();
    let marker = fleet.ws.child("never");
    let config = fleet.ws.write(
        "failing/cattle.toml",
        format!(
            "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"echo disk on fire >&2; exit 3\"]\nattempts = 2\n\n\
             [[step]]\nfacility = \"command\"\nargv = [\"touch\", \"{}\"]\n",
            marker.display()
        ),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1", "h2"]);
    fleet.agent_once("h1").assert_success();

    // h2 never reports: --wait gives up at the timeout with "unfinished".
    let waited = fleet.cattle(&["status", &id, "--wait", "--timeout", "2"]);
    waited.assert_status(3);
    let row = waited.stdout.lines().find(|l| l.starts_with("h1")).unwrap();
    assert!(row.contains("ERROR") && row.contains("1/2"), "{row}");
    assert!(
        row.contains("step 1 failed: `sh` exited with status 3: disk on fire"),
        "{row}"
    );
    assert!(
        waited
            .stdout
            .lines()
            .any(|l| l.starts_with("h2") && l.contains("PENDING"))
    );

    let status = fleet.status_json(&id);
    let h1 = &status["hosts"][0];
    assert_eq!(h1["state"], "ERROR");
    assert_eq!(h1["step"]["number"], 1);
    assert_eq!(h1["step"]["attempt"], 2);
    assert!(!marker.exists(), "the run stops at the failed step");
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert!(log.contains("config failed at step 1"), "{log}");
}

#[test]
fn a_hung_step_times_out_and_follows_the_retry_policy() {
    let fleet = Fleet::on_minio();
    let config = fleet.ws.write(
        "hung/cattle.toml",
        "[[step]]\nfacility = \"command\"\nargv = [\"sleep\", \"600\"]\ntimeout = \"1s\"\nattempts = 2\n",
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);
    let started = std::time::Instant::now();
    fleet.agent_once("h1").assert_success();
    assert!(started.elapsed() < Duration::from_secs(30));

    let status = fleet.status_json(&id);
    let error = status["hosts"][0]["error"].as_str().unwrap().to_string();
    assert_eq!(
        error,
        "step 1 failed: `sleep` timed out after 1s; killed it and its process group"
    );
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert!(
        log.contains("step 1: attempt 1 of 2 failed: `sleep` timed out after 1s"),
        "{log}"
    );
    assert!(log.contains("step 1: attempt 2 of 2 failed"), "{log}");
}

#[test]
fn cancel_stops_hosts_before_their_next_step_and_hosts_not_started_never_start() {
    let fleet = Fleet::on_minio();
    let gate = fleet.ws.child("gate");
    let config = fleet.ws.write(
        "cancel/cattle.toml",
        [
            format!(
                "touch {}/one-$CATTLE_HOST_ID; while [ ! -e {} ]; do sleep 0.05; done",
                fleet.ws.path().display(),
                gate.display()
            ),
            format!("touch {}/two-$CATTLE_HOST_ID", fleet.ws.path().display()),
        ]
        .map(|script| shell_step(&script))
        .concat(),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1", "h2", "h3"]);
    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || { fleet.ws.child("one-h1").exists() }
    ));

    // h1 is in step 1, h2 has not started; h3 is left alone.
    for host in ["h1", "h2"] {
        let out = fleet.cattle(&["cancel", &id, "--host", host]);
        out.assert_success();
        assert!(out.stderr.contains("requested for 1 host;"), "{out}");
    }
    std::thread::sleep(Duration::from_millis(2500)); // more than an interval: h1 has seen it
    std::fs::write(&gate, "").unwrap();
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || { states(&fleet.status_json(&id))[0].1 == "CANCELLED" }
    ));
    assert!(
        !fleet.ws.child("two-h1").exists(),
        "h1 must stop before step 2"
    );
    fleet.agent_once("h2").assert_success();
    fleet.agent_once("h3").assert_success();
    assert!(!fleet.ws.child("one-h2").exists(), "h2 must never start");
    assert!(fleet.ws.child("two-h3").exists(), "h3 was not cancelled");

    let status = fleet.status_json(&id);
    assert_eq!(
        states(&status),
        [("h1", "CANCELLED"), ("h2", "CANCELLED"), ("h3", "DONE")]
            .map(|(h, s)| (h.to_string(), s.to_string()))
    );
    assert_eq!(status["hosts"][0]["error"], "cancelled before step 2");
    assert_eq!(status["hosts"][1]["error"], "cancelled before it started");
    let out = fleet.cattle(&["status", &id]);
    out.assert_status(3);
    assert!(
        out.stdout
            .contains("3 hosts: 1 DONE, 2 CANCELLED (h1, h2)\n"),
        "{out}"
    );
    let unknown = fleet.cattle(&["cancel", &id, "--host", "h9"]);
    unknown.assert_status(1);
    assert!(
        unknown.stderr.contains("not addressed to host `h9`"),
        "{unknown}"
    );
    agent.terminate(Duration::from_secs(10));
}

#[test]
fn a_bundle_changed_in_the_store_is_refused_and_never_extracted() {
    let fleet = Fleet::on_minio();
    let hosts_file = fleet.hosts_file(&["h1", "h2"]);
    let out = fleet.cattle(&[
        "publish",
        &example("poem").display().to_string(),
        "--hosts",
        &hosts_file,
        "--json",
    ]);
    out.assert_success();
    let published: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let id = published["id"].as_str().unwrap();
    let key = format!(
        "bundles/{}.tar.gz",
        published["bundle_sha256"].as_str().unwrap()
    );

    // Same size, one byte different.
    let mut bytes = fleet.bucket.get(&key).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fleet.bucket.put(&key, bytes.clone());
    fleet.agent_once("h1").assert_success();

    // A longer bundle than the manifest says is refused unread.
    bytes.extend_from_slice(&[0; 64]);
    fleet.bucket.put(&key, bytes);
    fleet.agent_once("h2").assert_success();

    let status = fleet.status_json(id);
    for (i, (host, reason)) in [("h1", "bundle sha256 is"), ("h2", "larger than")]
        .iter()
        .enumerate()
    {
        let s = &status["hosts"][i];
        assert_eq!(s["state"], "ERROR", "{host}: {s}");
        let error = s["error"].as_str().unwrap();
        assert!(
            error.contains("refused") && error.contains(reason),
            "{host}: {error}"
        );
        let local = fleet.state_dir(host).join("executions").join(id);
        assert!(
            !local.join("config").exists(),
            "{host}: a refused bundle is never extracted"
        );
        assert!(
            !fleet.var_dir(host).join("poems").exists(),
            "{host}: no step ran"
        );
    }
    fleet.cattle(&["status", id]).assert_status(3);
}

/// A config whose one step leaves `ran-<execution-id>` in the workspace.
fn marker_config(fleet: &Fleet) -> PathBuf {
    let config = fleet.ws.write(
        "marker/cattle.toml",
        shell_step(&format!(
            "touch {}/ran-$CATTLE_EXECUTION_ID",
            fleet.ws.path().display()
        )),
    );
    config.parent().unwrap().to_path_buf()
}

#[test]
fn without_the_publisher_key_write_access_to_the_bucket_runs_nothing_on_a_host() {
    let fleet = Fleet::on_minio();
    let dir = marker_config(&fleet);
    let dir_arg = dir.display().to_string();
    let legit = fleet.publish(&dir, &["host-a"]);
    let envelope = fleet
        .bucket
        .get(&format!("executions/{legit}/manifest.json"))
        .unwrap();
    let hosts = fleet.hosts_file(&["host-a"]);
    let mut forged = Vec::new();

    // 1. Unsigned.
    let out = fleet.cattle_without_key(&["publish", &dir_arg, "--hosts", &hosts, "--unsigned"]);
    out.assert_success();
    assert!(out.stderr.contains("WITHOUT a signature"), "{out}");
    let unsigned = out.stdout.trim().to_string();
    forged.push((unsigned.clone(), "the manifest is not signed".to_string()));

    // 2. Signed with a key of the attacker's own.
    let attacker_key = fleet.ws.child("attacker");
    fleet
        .cattle_without_key(&["keygen", &attacker_key.display().to_string()])
        .assert_success();
    let out = fleet.cattle_without_key(&[
        "publish",
        &dir_arg,
        "--hosts",
        &hosts,
        "--key",
        &attacker_key.with_extension("key").display().to_string(),
    ]);
    out.assert_success();
    forged.push((
        out.stdout.trim().to_string(),
        "which this host does not trust".to_string(),
    ));

    // 3. The legitimate envelope with its payload pointed at the attacker's
    //    bundle (that of the unsigned execution above, already in the store).
    let evil_sha = manifest_of(
        &fleet
            .bucket
            .get(&format!("executions/{unsigned}/manifest.json"))
            .unwrap(),
    )["bundle"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let mut envelope_json: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    let mut payload = manifest_of(&envelope);
    let mixed = "01a20000-0000-7000-8000-000000000003";
    payload["id"] = mixed.into();
    payload["bundle"]["sha256"] = evil_sha.into();
    envelope_json["payload"] = serde_json::to_string_pretty(&payload).unwrap().into();
    fleet.bucket.put(
        &format!("executions/{mixed}/manifest.json"),
        serde_json::to_vec(&envelope_json).unwrap(),
    );
    forged.push((mixed.to_string(), "does not match its contents".to_string()));

    // 4. The legitimate envelope, untouched, under another execution ID.
    let replayed = "01a20000-0000-7000-8000-000000000004";
    fleet.bucket.put(
        &format!("executions/{replayed}/manifest.json"),
        envelope.clone(),
    );
    forged.push((
        replayed.to_string(),
        format!("signed for execution {legit}, not {replayed}"),
    ));

    // 5. A manifest far larger than any real one.
    let endless = "01a20000-0000-7000-8000-000000000005";
    fleet.bucket.put(
        &format!("executions/{endless}/manifest.json"),
        vec![b' '; 17 * 1024 * 1024],
    );
    forged.push((endless.to_string(), "larger than".to_string()));

    let mut ids: Vec<&str> = forged.iter().map(|(id, _)| id.as_str()).collect();
    ids.push(&legit);
    fleet.forge_inbox("host-a", &ids);
    fleet.agent_once("host-a").assert_success();

    for (id, reason) in &forged {
        fleet.assert_refused(id, "host-a", reason);
        assert!(!fleet.ws.child(format!("ran-{id}")).exists(), "{id} ran");
    }
    // Refused work neither ran nor held up the legitimate execution.
    assert!(fleet.ws.child(format!("ran-{legit}")).exists());
    assert_eq!(fleet.host_status(&legit, "host-a")["state"], "DONE");
    let log = fleet.cattle(&["log", &legit, "--host", "host-a"]);
    assert!(log.stdout.contains("signed by trusted key"), "{log}");
}

#[test]
fn expired_and_rolled_back_executions_are_refused() {
    let fleet = Fleet::on_minio();
    let dir = marker_config(&fleet);
    let dir_arg = dir.display().to_string();
    let hosts = fleet.hosts_file(&["host-a"]);

    let out = fleet.cattle(&["publish", &dir_arg, "--hosts", &hosts, "--expires-in", "1s"]);
    out.assert_success();
    let expired = out.stdout.trim().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    fleet.agent_once("host-a").assert_success();
    fleet.assert_refused(&expired, "host-a", "expired at");
    assert!(!fleet.ws.child(format!("ran-{expired}")).exists());

    // Two executions; someone hides the older one until the newer has run,
    // then offers the older one again.
    let older = fleet.publish(&dir, &["host-a"]);
    let newer = fleet.publish(&dir, &["host-a"]);
    let version = |id: &str| {
        manifest_of(
            &fleet
                .bucket
                .get(&format!("executions/{id}/manifest.json"))
                .unwrap(),
        )["version"]
            .as_u64()
            .unwrap()
    };
    assert!(version(&newer) > version(&older));
    fleet.forge_inbox("host-a", &[&expired, &newer]);
    fleet.agent_once("host-a").assert_success();
    assert!(fleet.ws.child(format!("ran-{newer}")).exists());
    fleet.forge_inbox("host-a", &[&expired, &older, &newer]);
    fleet.agent_once("host-a").assert_success();
    fleet.assert_refused(&older, "host-a", "a rollback");
    assert!(!fleet.ws.child(format!("ran-{older}")).exists());

    // Publishing again is how an operator runs it after all.
    let again = fleet.publish(&dir, &["host-a"]);
    fleet.agent_once("host-a").assert_success();
    assert_eq!(fleet.host_status(&again, "host-a")["state"], "DONE");
}

#[test]
fn a_host_trusting_two_keys_runs_work_signed_by_either() {
    let fleet = Fleet::on_minio();
    let dir = marker_config(&fleet);
    let hosts = fleet.hosts_file(&["host-a"]);
    let new_key = fleet.ws.child("new");
    fleet
        .cattle(&[
            "keygen",
            &new_key.display().to_string(),
            "--comment",
            "2027 key",
        ])
        .assert_success();
    let old = fleet.publish(&dir, &["host-a"]);
    let out = fleet.cattle(&[
        "publish",
        &dir.display().to_string(),
        "--hosts",
        &hosts,
        "--key",
        &new_key.with_extension("key").display().to_string(),
    ]);
    out.assert_success();
    let new = out.stdout.trim().to_string();

    let trusted = fleet
        .minio
        .cattle_env()
        .into_iter()
        .find(|(k, _)| k == "CATTLE_TRUSTED_KEYS")
        .unwrap()
        .1;
    let both = format!("{trusted}:{}", new_key.with_extension("pub").display());
    fleet
        .agent("host-a", &["--once"])
        .env("CATTLE_TRUSTED_KEYS", &both)
        .run()
        .assert_success();
    for id in [&old, &new] {
        assert_eq!(fleet.host_status(id, "host-a")["state"], "DONE");
    }
}

#[test]
fn unsigned_work_runs_only_where_explicitly_allowed() {
    let fleet = Fleet::on_minio();
    let dir = marker_config(&fleet);
    let dir_arg = dir.display().to_string();
    let hosts = fleet.hosts_file(&["host-a"]);

    // No key and no `--unsigned`: refused before anything is uploaded.
    let out = fleet.cattle_without_key(&["publish", &dir_arg, "--hosts", &hosts]);
    assert!(!out.success());
    assert!(out.stderr.contains("--key"), "{out}");
    assert!(fleet.bucket.keys().is_empty());

    // An agent with no trusted key refuses to start unless told to allow unsigned work.
    let bare = |extra: &[&str]| {
        let state = fleet.state_dir("host-a").display().to_string();
        let mut args = vec!["--host-id", "host-a", "--state-dir", &state, "--once"];
        args.extend_from_slice(extra);
        Cmd::new(agent_bin())
            .envs(&fleet.minio.env())
            .env("CATTLE_STORE", &fleet.store_url)
            .args(args)
            .run()
    };
    let out = bare(&[]);
    assert!(!out.success());
    assert!(out.stderr.contains("no trusted keys"), "{out}");

    let out = fleet.cattle_without_key(&["publish", &dir_arg, "--hosts", &hosts, "--unsigned"]);
    out.assert_success();
    let id = out.stdout.trim().to_string();
    let out = bare(&["--allow-unsigned"]);
    out.assert_success();
    assert!(out.stderr.contains("UNSIGNED EXECUTIONS ALLOWED"), "{out}");
    assert!(fleet.ws.child(format!("ran-{id}")).exists());
    let log = fleet.cattle(&["log", &id, "--host", "host-a"]);
    assert!(log.stdout.contains("UNSIGNED"), "{log}");
}

#[test]
fn an_agent_never_runs_work_addressed_to_another_host() {
    let fleet = Fleet::on_minio();
    let config = fleet.ws.write(
        "marker/cattle.toml",
        shell_step(&format!(
            "touch {}/ran-$CATTLE_HOST_ID",
            fleet.ws.path().display()
        )),
    );
    let id = fleet.publish(config.parent().unwrap(), &["host-a"]);

    fleet.agent_once("host-b").assert_success();
    assert!(!fleet.ws.child("ran-host-b").exists());
    assert!(
        !fleet
            .bucket
            .keys()
            .iter()
            .any(|k| k.contains("/hosts/host-b/"))
    );

    // Someone with write access to the bucket puts the execution in host-b's inbox.
    let inbox = serde_json::json!({"format": 1, "host": "host-b", "executions": [id]});
    fleet.bucket.put(
        "hosts/host-b/inbox.json",
        serde_json::to_vec(&inbox).unwrap(),
    );
    fleet.agent_once("host-b").assert_success();
    assert!(
        !fleet.ws.child("ran-host-b").exists(),
        "host-b must not run host-a's work"
    );
    let status = fleet.status_json(&id);
    assert_eq!(
        states(&status),
        [("host-a".to_string(), "PENDING".to_string())]
    );
    let refused: serde_json::Value = serde_json::from_slice(
        &fleet
            .bucket
            .get(&format!("executions/{id}/hosts/host-b/status.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(refused["state"], "ERROR");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("not addressed to host `host-b`")
    );

    fleet.agent_once("host-a").assert_success();
    assert!(fleet.ws.child("ran-host-a").exists());
    fleet.cattle(&["status", &id]).assert_success();
}

#[test]
fn clean_is_refused_while_running_then_removes_everything_and_agents_tidy_up() {
    let fleet = Fleet::on_minio();
    let gate = fleet.ws.child("gate");
    let config = fleet.ws.write(
        "slow/cattle.toml",
        shell_step(&format!(
            "while [ ! -e {} ]; do sleep 0.1; done",
            gate.display()
        )),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);
    let mut agent: Background = fleet.agent("h1", &["--interval", "1"]).spawn();

    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            states(&fleet.status_json(&id))[0].1 == "PROGRESS"
        }),
        "the agent never reported PROGRESS: {}",
        agent.stderr()
    );
    let refused = fleet.cattle(&["clean", &id]);
    refused.assert_status(1);
    assert!(
        refused.stderr.contains("still running on 1 host: h1"),
        "{refused}"
    );
    assert!(
        refused.stderr.contains("hint:") && refused.stderr.contains("--force"),
        "{refused}"
    );
    assert!(
        fleet
            .bucket
            .get(&format!("executions/{id}/manifest.json"))
            .is_some()
    );

    std::fs::write(&gate, "").unwrap();
    fleet
        .cattle(&["status", &id, "--wait", "--timeout", "30"])
        .assert_success();

    fleet.cattle(&["clean", &id]).assert_success();
    let left: Vec<String> = fleet.bucket.keys();
    assert!(
        left.iter().all(|k| k.starts_with("hosts/")
            || k.starts_with("inboxes/")
            || k == "publish/version.json"),
        "only the (now empty) inbox, the lease and the version counter may remain: {left:?}"
    );
    let inbox: serde_json::Value = serde_json::from_slice(
        &fleet
            .bucket
            .get(&format!("inboxes/{}.json", group_of("h1")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(inbox["executions"], serde_json::json!([]));

    let local = fleet.state_dir("h1").join("executions").join(&id);
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
            !local.exists()
        }),
        "the agent did not remove its copy of the cleaned execution"
    );
    let stopped = agent.terminate(Duration::from_secs(10));
    assert_eq!(stopped.status, 0, "{stopped}");
    let gone = fleet.cattle(&["status", &id]);
    gone.assert_status(1);
    assert!(
        gone.stderr.contains(&format!("no execution {id}")),
        "{gone}"
    );
}

#[test]
fn a_bad_steps_file_fails_before_anything_is_uploaded() {
    let fleet = Fleet::on_minio();
    let config = fleet.ws.write(
        "bad/cattle.toml",
        "[[step]]\nfacility = \"make_dri\"\npath = \"/x\"\n",
    );
    let hosts = fleet.hosts_file(&["h1"]);
    let out = fleet.cattle(&[
        "publish",
        &config.parent().unwrap().display().to_string(),
        "--hosts",
        &hosts,
    ]);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("cattle.toml:2:12: unknown facility `make_dri`"),
        "{out}"
    );
    assert!(
        out.stderr.contains("hint: valid facilities: `make_dir`"),
        "{out}"
    );
    assert!(out.stdout.is_empty());

    let dup = fleet.ws.write("dup-hosts", "h1\n# comment\nh1\n");
    let out = fleet.cattle(&[
        "publish",
        &example("poem").display().to_string(),
        "--hosts",
        &dup.display().to_string(),
    ]);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("dup-hosts:3: host `h1` is listed twice (first on line 1)"),
        "{out}"
    );

    assert_eq!(fleet.bucket.keys(), Vec::<String>::new());
}

#[test]
fn a_missing_bucket_says_how_to_create_it() {
    let fleet = Fleet::on_minio();
    let hosts = fleet.hosts_file(&["h1"]);
    let out = Cmd::new(cattle_bin())
        .envs(&fleet.minio.cattle_env())
        .args(["--store", "s3://no-such-bucket/x", "publish"])
        .arg(example("poem"))
        .args(["--hosts", &hosts])
        .run();
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("bucket `no-such-bucket` does not exist"),
        "{out}"
    );
    assert!(
        out.stderr.contains("hint: create it first, e.g. `mc mb"),
        "{out}"
    );
}

#[test]
fn missing_or_wrong_credentials_are_named_as_such() {
    let fleet = Fleet::on_minio();
    let env: Vec<(String, String)> = fleet
        .minio
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET"))
        .collect();
    let id = "01a20f43-398c-70f2-a36a-252221b2f74e";
    let status = |extra: &[(String, String)]| {
        Cmd::new(cattle_bin())
            .envs(&env)
            .envs(extra)
            .env("CATTLE_STORE", &fleet.store_url)
            .args(["status", id])
            .run()
    };
    let none = status(&[]);
    none.assert_status(1);
    assert!(
        none.stderr.contains("no credentials for the store"),
        "{none}"
    );
    assert!(
        none.stderr.contains("hint: set AWS_ACCESS_KEY_ID"),
        "{none}"
    );

    let wrong = status(&[
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            fleet.minio.access_key().to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "not-the-secret".to_string(),
        ),
    ]);
    wrong.assert_status(1);
    assert!(
        wrong
            .stderr
            .contains("access denied: SignatureDoesNotMatch"),
        "{wrong}"
    );
}

#[test]
fn a_second_agent_on_the_same_state_dir_refuses_to_start() {
    let fleet = Fleet::on_minio();
    let mut first = fleet.agent("h1", &["--interval", "1"]).spawn();
    let lock = fleet.state_dir("h1").join("agent.lock");
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || { std::fs::read_to_string(&lock).is_ok_and(|pid| !pid.trim().is_empty()) }
    ));

    let second = fleet.agent_once("h1");
    second.assert_status(1);
    let pid = first.id();
    assert!(
        second.stderr.contains(&format!(
            "another cattle-agent (pid {pid}) is using state directory"
        )),
        "{second}"
    );

    first.terminate(Duration::from_secs(10));
    fleet.agent_once("h1").assert_success();
}

#[test]
fn kill_9_at_random_moments_never_loses_or_repeats_a_finished_step() {
    const STEPS: usize = 30;
    const KILLS: usize = 10;
    let fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    // An attempt a kill cuts short counts as one: enough of them that ten kills
    // never use up a step's.
    let config = fleet.ws.write(
        "thirty/cattle.toml",
        counting_steps(&counter, STEPS, None, "sleep 0.1")
            .replace("[[step]]\n", "[[step]]\nattempts = 20\n"),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);

    // Kill moments from a seeded generator; the seed is printed so a failure can be replayed.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill schedule seed: {seed}");
    let mut kills = 0;
    while kills < KILLS {
        let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        std::thread::sleep(Duration::from_millis(150 + (seed >> 33) % 500));
        agent.kill();
        kills += 1;
        let done = std::fs::read_to_string(
            fleet
                .state_dir("h1")
                .join("executions")
                .join(&id)
                .join("STATUS"),
        )
        .is_ok_and(|s| s == "DONE\n");
        if done {
            break;
        }
    }
    fleet.agent_once("h1").assert_success();
    fleet.cattle(&["status", &id]).assert_success();

    let runs: Vec<usize> = std::fs::read_to_string(&counter)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        runs.windows(2).all(|w| w[0] <= w[1]),
        "steps ran out of order: {runs:?}"
    );
    let distinct: std::collections::BTreeSet<usize> = runs.iter().copied().collect();
    assert_eq!(distinct, (1..=STEPS).collect(), "every step ran: {runs:?}");
    let repeats = runs.len() - STEPS;
    assert!(
        repeats <= kills,
        "{repeats} repeats from {kills} kills: {runs:?}"
    );
    println!("kills injected: {kills}, steps re-run: {repeats}, runs completed: 1");
}

#[test]
fn damaged_local_state_neither_reruns_finished_steps_nor_skips_any() {
    let fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    let gate = fleet.ws.child("gate");
    let config = fleet.ws.write(
        "three/cattle.toml",
        counting_steps(&counter, 3, Some((2, &gate)), ""),
    );
    let runs = || {
        std::fs::read_to_string(&counter)
            .unwrap_or_default()
            .replace('\n', " ")
    };

    // A finished execution whose STATUS, then also status.json, are garbage.
    std::fs::write(&gate, "").unwrap();
    let done = fleet.publish(config.parent().unwrap(), &["h1"]);
    fleet.agent_once("h1").assert_success();
    assert_eq!(runs(), "1 2 3 ");
    let local = fleet.state_dir("h1").join("executions").join(&done);
    std::fs::write(local.join("STATUS"), "\0\0garbage").unwrap();
    let out = fleet.agent_once("h1");
    out.assert_success();
    assert!(
        out.stderr
            .contains("STATUS file is damaged; took the state from status.json"),
        "{out}"
    );
    std::fs::write(local.join("status.json"), "{ trunc").unwrap();
    let out = fleet.agent_once("h1");
    out.assert_success();
    assert!(
        out.stderr.contains("treating the execution as interrupted"),
        "{out}"
    );
    assert_eq!(runs(), "1 2 3 ", "no finished step ran again");
    let log = local_log(&local);
    assert!(log.contains("resuming at step 4"), "{log}");
    fleet.cattle(&["status", &done]).assert_success();

    // An interrupted execution whose JOURNAL was cut short: it starts over, verified.
    std::fs::remove_file(&gate).unwrap();
    std::fs::remove_file(&counter).unwrap();
    let cut = fleet.publish(config.parent().unwrap(), &["h1"]);
    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || runs() == "1 2 "
    ));
    agent.kill();
    let local = fleet.state_dir("h1").join("executions").join(&cut);
    std::fs::write(local.join("JOURNAL"), "").unwrap();
    std::fs::write(&gate, "").unwrap();
    let out = fleet.agent_once("h1");
    out.assert_success();
    assert!(
        out.stderr.contains("JOURNAL is damaged; ignoring it"),
        "{out}"
    );
    assert_eq!(runs(), "1 2 1 2 3 ", "started over, skipping nothing");
    fleet.cattle(&["status", &cut]).assert_success();
}

/// A config of three steps: `echo 1`, a reboot (with `reboot_args`, e.g. a
/// timeout), `echo 3`, each echo appending to `steps` in the workspace.
fn reboot_config(fleet: &Fleet, reboot_args: &str) -> PathBuf {
    let ws = fleet.ws.path().display().to_string();
    let config = fleet.ws.write(
        "reboot/cattle.toml",
        [
            shell_step(&format!("echo 1 >> {ws}/steps")),
            format!("[[step]]\nfacility = \"reboot\"\n{reboot_args}\n"),
            shell_step(&format!("echo 3 >> {ws}/steps")),
        ]
        .concat(),
    );
    config.parent().unwrap().to_path_buf()
}

/// What a simulated host has done: its steps and the reboots it was asked for.
fn steps_and_reboots(fleet: &Fleet) -> (String, String) {
    let read = |name: &str| std::fs::read_to_string(fleet.ws.child(name)).unwrap_or_default();
    (read("steps"), read("reboots"))
}

impl Fleet {
    /// The agent of host h1, once, as a host whose kernel boot ID is in the file
    /// `boot` and whose run directory is `run`, with a reboot command that only
    /// records itself.
    fn rebooting_agent(&self, boot: &Path, run: &Path) -> Cmd {
        let ws = self.ws.path().display().to_string();
        self.agent("h1", &["--once"])
            .env("CATTLE_BOOT_ID_FILE", boot)
            .env("CATTLE_RUN_DIR", run)
            .env(
                "CATTLE_REBOOT_COMMAND",
                format!("echo reboot >> {ws}/reboots"),
            )
    }
}

#[test]
fn a_reboot_step_continues_after_the_host_is_back_and_is_asked_for_once() {
    let fleet = Fleet::on_minio();
    let id = fleet.publish(&reboot_config(&fleet, ""), &["h1"]);
    // The "host": a boot ID file we change; its run directory is not a tmpfs,
    // so the boot ID alone tells the reboot.
    let boot = fleet.ws.write("boot_id", "boot-one\n");
    let run = fleet.ws.child("run");
    let agent = || fleet.rebooting_agent(&boot, &run).run();

    agent().assert_success();
    assert_eq!(steps_and_reboots(&fleet), ("1\n".into(), "reboot\n".into()));
    let status = fleet.status_json(&id);
    assert_eq!(status["hosts"][0]["state"], "PROGRESS");
    assert_eq!(status["hosts"][0]["step"]["facility"], "reboot");

    // The agent starts again before the reboot happened: it waits, asking nothing.
    for _ in 0..3 {
        agent().assert_success();
    }
    assert_eq!(steps_and_reboots(&fleet), ("1\n".into(), "reboot\n".into()));

    // The host is back with a new boot ID: step 2 is done, step 3 runs, step 1 does not.
    std::fs::write(&boot, "boot-two\n").unwrap();
    agent().assert_success();
    assert_eq!(
        steps_and_reboots(&fleet),
        ("1\n3\n".into(), "reboot\n".into())
    );
    fleet.cattle(&["status", &id]).assert_success();
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert!(
        log.contains("step 2: the host rebooted (boot ID boot-one became boot ID boot-two)"),
        "{log}"
    );
}

#[test]
fn a_host_that_could_not_tell_a_reboot_is_not_rebooted_and_the_step_fails() {
    let fleet = Fleet::on_minio();
    let id = fleet.publish(&reboot_config(&fleet, ""), &["h1"]);
    // No boot ID, and a run directory that is not a tmpfs.
    let boot = fleet.ws.child("no-such-boot-id");
    let run = fleet.ws.child("run");
    for _ in 0..4 {
        fleet.rebooting_agent(&boot, &run).run().assert_success();
    }
    assert_eq!(steps_and_reboots(&fleet), ("1\n".into(), String::new()));
    let status = fleet.host_status(&id, "h1");
    assert_eq!(status["state"], "ERROR", "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("step 2: cannot tell whether the host rebooted, so it is not rebooted")
            && error.contains("no-such-boot-id")
            && error.contains("is not a tmpfs"),
        "{error}"
    );
}

#[test]
fn a_container_reboot_shows_in_its_run_dir_though_the_boot_id_stays_and_the_machine_id_changes() {
    let fleet = Fleet::on_minio();
    let id = fleet.publish(&reboot_config(&fleet, ""), &["h1"]);
    // As in a container: the kernel's boot ID is the host's and never changes;
    // the container's /run is a tmpfs of its own.
    let boot = fleet.ws.write("boot_id", "the-host-kernel\n");
    let run = cattle_e2e::Tmpfs::mount(fleet.ws.child("run"), "1m");
    let machine_id = fleet
        .ws
        .write("machine-id", "11111111111111111111111111111111\n");
    let agent = |machine_id: &Path| {
        let ws = fleet.ws.path().display().to_string();
        Cmd::new("unshare")
            .envs(&fleet.minio.cattle_env())
            .env("CATTLE_STORE", &fleet.store_url)
            .env("CATTLE_BOOT_ID_FILE", &boot)
            .env("CATTLE_RUN_DIR", run.path())
            .env(
                "CATTLE_REBOOT_COMMAND",
                format!("echo reboot >> {ws}/reboots"),
            )
            .args([
                "--mount",
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/machine-id && exec \"$@\"",
            ])
            .arg(machine_id)
            .arg(agent_bin())
            .args(["--host-id", "h1", "--once", "--state-dir"])
            .arg(fleet.state_dir("h1"))
            .run()
    };
    agent(&machine_id).assert_success();
    agent(&machine_id).assert_success();
    assert_eq!(steps_and_reboots(&fleet), ("1\n".into(), "reboot\n".into()));

    // The container reboots: /run starts empty, and it comes back with a new machine ID.
    run.remount();
    let new_machine_id = fleet
        .ws
        .write("machine-id-2", "22222222222222222222222222222222\n");
    agent(&new_machine_id).assert_success();
    assert_eq!(
        steps_and_reboots(&fleet),
        ("1\n3\n".into(), "reboot\n".into())
    );
    let status = fleet.host_status(&id, "h1");
    assert_eq!(status["state"], "DONE", "{status}");
}

#[test]
fn a_reboot_that_does_not_happen_or_cannot_be_asked_for_fails_the_step() {
    let fleet = Fleet::on_minio();
    let boot = fleet.ws.write("boot_id", "boot-one\n");
    let run = fleet.ws.child("run");

    // The host never reboots: the step fails after its timeout, asked once.
    let id = fleet.publish(&reboot_config(&fleet, "timeout = \"2s\""), &["h1"]);
    fleet.rebooting_agent(&boot, &run).run().assert_success();
    std::thread::sleep(Duration::from_millis(2500));
    fleet.rebooting_agent(&boot, &run).run().assert_success();
    assert_eq!(steps_and_reboots(&fleet), ("1\n".into(), "reboot\n".into()));
    let status = fleet.host_status(&id, "h1");
    assert_eq!(status["state"], "ERROR", "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.starts_with("step 2 failed: asked for a reboot with `echo reboot")
            && error.contains("the host has not rebooted within 2s")
            && error.contains("not asking again"),
        "{error}"
    );

    // The reboot command fails: the step fails at once.
    let id = fleet.publish(&reboot_config(&fleet, ""), &["h1"]);
    fleet
        .rebooting_agent(&boot, &run)
        .env("CATTLE_REBOOT_COMMAND", "exit 3")
        .run()
        .assert_success();
    let status = fleet.host_status(&id, "h1");
    assert_eq!(status["state"], "ERROR", "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("step 2: `exit 3` failed (exit status: 3); the host was not rebooted"),
        "{error}"
    );
}

#[test]
fn a_store_outage_mid_run_does_not_stop_the_host_and_loses_nothing() {
    let mut fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    let config = fleet.ws.write(
        "twenty/cattle.toml",
        counting_steps(&counter, 20, None, "sleep 0.2"),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);
    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    let lines = || std::fs::read_to_string(&counter).map_or(0, |c| c.lines().count());
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || lines() >= 2
    ));

    // The store goes away for more than ten poll intervals (and long enough
    // for a request left unanswered to be logged); the host carries on.
    fleet.minio.pause();
    let paused_at = std::time::Instant::now();
    let local = fleet.state_dir("h1").join("executions").join(&id);
    assert!(
        wait_until(Duration::from_secs(12), Duration::from_millis(100), || {
            std::fs::read_to_string(local.join("STATUS")).is_ok_and(|s| s == "DONE\n")
        }),
        "the run must finish while the store is down"
    );
    std::thread::sleep(
        (paused_at + Duration::from_secs(14)).saturating_duration_since(std::time::Instant::now()),
    );
    fleet.minio.resume();

    let back = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            fleet.cattle(&["status", &id]).success()
        }),
        "DONE never reached the store: {}",
        agent.stderr()
    );
    let delay = back.elapsed();
    println!("DONE in the store {delay:?} after the store came back");
    assert!(
        delay < Duration::from_secs(2),
        "DONE took {delay:?} after the store came back"
    );
    // The final status goes first; the rest of the log follows it.
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || local.join(".delivered").exists()
    ));
    let uploaded = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert_eq!(uploaded, local_log(&local));
    assert_eq!(lines(), 20, "every step ran exactly once");
    // The agent said what it was waiting for, and when it got its answer.
    let said = agent.stderr();
    assert!(
        said.contains("the store has not answered a") && said.contains("still waiting"),
        "{said}"
    );
    assert!(said.contains("the store answered the"), "{said}");
    agent.terminate(Duration::from_secs(10));
}

#[test]
fn status_uploads_refused_for_a_while_are_delivered_once_allowed() {
    let fleet = Fleet::on_minio();
    let policy = |name: &str, deny_status: bool| {
        let deny = if deny_status {
            format!(
                r#",{{"Effect":"Deny","Action":["s3:PutObject"],"Resource":["arn:aws:s3:::{BUCKET}/{PREFIX}/executions/*"]}}"#
            )
        } else {
            String::new()
        };
        // DeleteObject: the agent deletes the probe of the store's self-test
        // it runs before its first poll.
        let text = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:ListBucket"],"Resource":["arn:aws:s3:::{BUCKET}","arn:aws:s3:::{BUCKET}/*"]}}{deny}]}}"#
        );
        let file = fleet.ws.write(format!("{name}.json"), text);
        fleet
            .minio
            .mc(&[
                "admin",
                "policy",
                "create",
                "test",
                name,
                &file.display().to_string(),
            ])
            .assert_success();
    };
    policy("no-status", true);
    policy("host", false);
    fleet
        .minio
        .mc(&["admin", "user", "add", "test", "h1-user", "h1-user-secret"])
        .assert_success();
    fleet
        .minio
        .mc(&[
            "admin",
            "policy",
            "attach",
            "test",
            "no-status",
            "--user",
            "h1-user",
        ])
        .assert_success();

    let id = fleet.publish(&example("flaky"), &["h1"]);
    let mut agent = fleet
        .agent("h1", &["--interval", "1"])
        .env("AWS_ACCESS_KEY_ID", "h1-user")
        .env("AWS_SECRET_ACCESS_KEY", "h1-user-secret")
        .spawn();
    let local = fleet.state_dir("h1").join("executions").join(&id);
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            std::fs::read_to_string(local.join("STATUS")).is_ok_and(|s| s == "DONE\n")
        }),
        "{}",
        agent.stderr()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        states(&fleet.status_json(&id))[0].1,
        "PENDING",
        "uploads were refused"
    );
    assert!(
        agent.stderr().contains("access denied"),
        "{}",
        agent.stderr()
    );

    fleet
        .minio
        .mc(&[
            "admin",
            "policy",
            "detach",
            "test",
            "no-status",
            "--user",
            "h1-user",
        ])
        .assert_success();
    fleet
        .minio
        .mc(&[
            "admin", "policy", "attach", "test", "host", "--user", "h1-user",
        ])
        .assert_success();
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || { fleet.cattle(&["status", &id]).success() && local.join(".delivered").exists() }
    ));
    let uploaded = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert_eq!(uploaded, local_log(&local));
    agent.terminate(Duration::from_secs(10));
}

#[test]
fn a_second_agent_with_the_same_host_id_runs_nothing_and_says_so_in_its_log_and_the_store() {
    let fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    let config = fleet.ws.write(
        "once/cattle.toml",
        shell_step(&format!("echo ran >> {}", counter.display())),
    );
    let dir = config.parent().unwrap();
    let id = fleet.publish(dir, &["h1"]);
    fleet.agent_once("h1").assert_success();
    let before = fleet
        .bucket
        .get(&format!("executions/{id}/hosts/h1/status.json"))
        .unwrap();

    // The same host ID, another agent (another state directory, as on another machine).
    let elsewhere = fleet.ws.child("elsewhere");
    let twin = || {
        Cmd::new(agent_bin())
            .envs(&fleet.minio.cattle_env())
            .env("CATTLE_STORE", &fleet.store_url)
            .args(["--host-id", "h1", "--once", "--state-dir"])
            .arg(&elsewhere)
            .run()
    };
    let second = fleet.publish(dir, &["h1"]);
    let out = twin();
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stderr
            .contains("another agent is active for host ID `h1`")
            && out.stderr.contains("this one ran nothing"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "ran\n",
        "the twin ran nothing"
    );
    let after = fleet
        .bucket
        .get(&format!("executions/{id}/hosts/h1/status.json"))
        .unwrap();
    assert_eq!(before, after, "the twin must not touch the host's status");
    assert!(
        fleet
            .bucket
            .get(&format!("executions/{second}/hosts/h1/status.json"))
            .is_none(),
        "nor report anything of the execution it did not run"
    );
    let conflict: serde_json::Value = serde_json::from_slice(
        &fleet
            .bucket
            .get(&format!("executions/{second}/conflicts/h1"))
            .expect("the twin records that it stood back"),
    )
    .unwrap();
    assert_eq!(conflict["state_dir"], elsewhere.display().to_string());
    // The agent holding the lease runs it.
    fleet.agent_once("h1").assert_success();
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "ran\nran\n");
    // The operator sees the conflict, with both agents named, and a non-zero exit.
    let out = fleet.cattle(&["status", &second]);
    assert_eq!(out.status, 3, "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("CONFLICT h1: a second agent for this host ID"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&elsewhere.display().to_string())
            && line.contains(&fleet.state_dir("h1").display().to_string()),
        "{line}"
    );
    let json = fleet.status_json(&second);
    assert!(json["hosts"][0]["conflict"].is_string(), "{json}");
}

/// A config whose one step appends `<execution> <state dir>` to `runs` and
/// lasts a moment, so that two agents running at once would overlap.
fn runs_config(fleet: &Fleet, runs: &Path) -> PathBuf {
    let config = fleet.ws.write(
        "runs-config/cattle.toml",
        shell_step(&format!(
            "echo start $CATTLE_EXECUTION_ID $PWD >> {0}; sleep 0.3; echo end $CATTLE_EXECUTION_ID >> {0}",
            runs.display()
        )),
    );
    config.parent().unwrap().to_path_buf()
}

/// Check `runs` (see [`runs_config`]): every execution of `ids` ran exactly
/// once, one at a time, all in the agent whose state directory is `by`.
#[track_caller]
fn assert_ran_once_each_by(runs: &Path, ids: &[String], by: &Path) {
    let text = std::fs::read_to_string(runs).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * ids.len(), "{text}");
    for (pair, id) in lines.chunks(2).zip(ids) {
        assert!(
            pair[0].starts_with(&format!("start {id} {}", by.display())),
            "{id} did not start next, in {}:\n{text}",
            by.display()
        );
        assert_eq!(pair[1], format!("end {id}"), "runs overlapped:\n{text}");
    }
}

#[test]
fn two_agents_for_one_host_id_never_split_the_work() {
    let fleet = Fleet::on_minio();
    let runs = fleet.ws.child("runs");
    let dir = runs_config(&fleet, &runs);
    let first_state = fleet.state_dir("h1");
    let twin_state = fleet.ws.child("twin");
    let daemon = |state: &Path| {
        Cmd::new(agent_bin())
            .envs(&fleet.minio.cattle_env())
            .env("CATTLE_STORE", &fleet.store_url)
            .args(["--host-id", "h1", "--interval", "1", "--state-dir"])
            .arg(state)
            .spawn()
    };
    let mut first = daemon(&first_state);
    // The first holds the lease before the twin starts (two agents starting at
    // once race for it, and either may win).
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || first
            .stderr()
            .contains("this agent is the one active for the host")
    ));
    let mut twin = daemon(&twin_state);
    // Five quick publishes while both poll every second.
    let ids: Vec<String> = (0..5).map(|_| fleet.publish(&dir, &["h1"])).collect();
    assert!(wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || ids.iter().all(|id| {
            fleet
                .bucket
                .get(&format!("executions/{id}/done/h1"))
                .is_some()
        })
    ));
    // Give the twin a few more polls, in case it would run something late.
    std::thread::sleep(Duration::from_secs(3));
    let twin_out = twin.terminate(Duration::from_secs(10));
    first.terminate(Duration::from_secs(10));
    assert_ran_once_each_by(&runs, &ids, &first_state);
    // The twin stood back from each, and said so.
    for id in &ids {
        assert!(
            fleet
                .bucket
                .get(&format!("executions/{id}/conflicts/h1"))
                .is_some(),
            "{id}"
        );
    }
    assert!(
        twin_out
            .stderr
            .contains("another agent is active for host ID `h1`"),
        "{twin_out}"
    );
}

#[test]
fn a_cloned_machine_runs_nothing_alongside_its_original() {
    let fleet = Fleet::on_minio();
    let runs = fleet.ws.child("runs");
    let dir = runs_config(&fleet, &runs);
    let original = fleet.state_dir("h1");
    let first = fleet.publish(&dir, &["h1"]);
    fleet.agent_once("h1").assert_success();

    // The machine is cloned, state directory and all, while its agent is stopped.
    let clone = fleet.ws.child("clone");
    let copied = Cmd::new("cp").args(["-a"]).arg(&original).arg(&clone).run();
    copied.assert_success();
    std::fs::remove_file(clone.join("agent.lock")).ok();
    let agent_at = |state: &Path| {
        Cmd::new(agent_bin())
            .envs(&fleet.minio.cattle_env())
            .env("CATTLE_STORE", &fleet.store_url)
            .args(["--host-id", "h1", "--once", "--state-dir"])
            .arg(state)
            .run()
    };
    // Both find their own nonce in the lease; the first to renew it wins and
    // the other sees a nonce it never wrote.
    let ids: Vec<String> = (0..3).map(|_| fleet.publish(&dir, &["h1"])).collect();
    let clone_out = agent_at(&clone);
    clone_out.assert_success();
    let original_out = agent_at(&original);
    assert_eq!(original_out.status, 1, "{original_out}");
    assert!(
        original_out
            .stderr
            .contains("another agent is active for host ID `h1`"),
        "{original_out}"
    );
    let text = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(text.lines().count(), 2 * (1 + ids.len()), "{text}");
    assert!(text.lines().next().unwrap().contains(&first));
    let after_first: String = text.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let later = fleet.ws.write("later-runs", after_first);
    assert_ran_once_each_by(&later, &ids, &clone);
}

#[test]
fn an_agent_knows_its_lease_after_a_reboot_a_new_machine_id_and_a_moved_state_dir() {
    let fleet = Fleet::on_minio();
    let id = fleet.publish(&reboot_config(&fleet, ""), &["h1"]);
    let boot = fleet.ws.write("boot_id", "boot-one\n");
    let run = fleet.ws.child("run");
    let lease = |fleet: &Fleet| -> serde_json::Value {
        serde_json::from_slice(&fleet.bucket.get("hosts/h1/agent.json").unwrap()).unwrap()
    };
    // As a host: its own /etc/machine-id, its own state directory.
    let agent = |machine_id: &Path, state: &Path| {
        let ws = fleet.ws.path().display().to_string();
        Cmd::new("unshare")
            .envs(&fleet.minio.cattle_env())
            .env("CATTLE_STORE", &fleet.store_url)
            .env("CATTLE_BOOT_ID_FILE", &boot)
            .env("CATTLE_RUN_DIR", &run)
            .env(
                "CATTLE_REBOOT_COMMAND",
                format!("echo reboot >> {ws}/reboots"),
            )
            .args([
                "--mount",
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/machine-id && exec \"$@\"",
            ])
            .arg(machine_id)
            .arg(agent_bin())
            .args(["--host-id", "h1", "--once", "--state-dir"])
            .arg(state)
            .run()
    };
    let first_id = fleet
        .ws
        .write("machine-id", "0123456789abcdef0123456789abcdef\n");
    agent(&first_id, &fleet.state_dir("h1")).assert_success();
    assert_eq!(steps_and_reboots(&fleet), ("1\n".into(), "reboot\n".into()));
    let before = fleet.bucket.get("hosts/h1/agent.json");

    // The host comes back with a new boot ID and a new machine ID (re-imaged
    // /etc), and its state directory has moved.
    std::fs::write(&boot, "boot-two\n").unwrap();
    let second_id = fleet
        .ws
        .write("machine-id-2", "fedcba9876543210fedcba9876543210\n");
    let moved = fleet.ws.child("moved-state");
    std::fs::rename(fleet.state_dir("h1"), &moved).unwrap();
    agent(&second_id, &moved).assert_success();
    assert_eq!(
        steps_and_reboots(&fleet),
        ("1\n3\n".into(), "reboot\n".into())
    );
    let status = fleet.host_status(&id, "h1");
    assert_eq!(status["state"], "DONE", "{status}");
    let before: serde_json::Value = serde_json::from_slice(&before.unwrap()).unwrap();
    let after = lease(&fleet);
    assert_eq!(after["machine"], "fedcba9876543210fedcba9876543210");
    assert_eq!(after["state_dir"], moved.display().to_string());
    assert_ne!(after["nonce"], before["nonce"]);
}

#[test]
fn agent_once_fails_when_the_store_is_unreachable() {
    let mut fleet = Fleet::on_minio();
    fleet.minio.stop();
    let out = fleet.agent_once("h1");
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("cannot reach the store"), "{out}");
}

#[test]
fn the_same_flow_works_on_the_file_store() {
    let ws = Workspace::new();
    let store = format!("file://{}", ws.child("store").display());
    let target = ws.child("out");
    let config = ws.write(
        "cfg/cattle.toml",
        format!(
            "[[step]]\nfacility = \"make_dir\"\npath = \"{0}\"\n\n\
             [[step]]\nfacility = \"install_file\"\nsource = \"motd\"\ndest = \"{0}/motd\"\n",
            target.display()
        ),
    );
    ws.write("cfg/motd", "hello from cattle\n");
    let hosts = ws.write("hosts", "a\nb\n");
    let signing = signing_env(ws.path());
    let cattle = |args: &[&str]| {
        Cmd::new(cattle_bin())
            .envs(&signing)
            .env("CATTLE_STORE", &store)
            .args(args)
            .run()
    };

    let out = cattle(&[
        "publish",
        &config.parent().unwrap().display().to_string(),
        "--hosts",
        &hosts.display().to_string(),
    ]);
    out.assert_success();
    let id = out.stdout.trim().to_string();
    for host in ["a", "b"] {
        let state = ws.child(format!("state-{host}")).display().to_string();
        Cmd::new(agent_bin())
            .envs(&signing)
            .env("CATTLE_STORE", &store)
            .args(["--host-id", host, "--state-dir", &state, "--once"])
            .run()
            .assert_success();
    }
    let status = cattle(&["status", &id, "--wait", "--timeout", "10"]);
    status.assert_success();
    assert!(status.stdout.contains("2 hosts: 2 DONE"), "{status}");
    assert_eq!(
        std::fs::read_to_string(target.join("motd")).unwrap(),
        "hello from cattle\n"
    );
    let log = cattle(&["log", &id, "--host", "b"]);
    assert!(
        log.stdout.contains("Step 2 unchanged: already in place"),
        "{log}"
    );

    cattle(&["clean", &id]).assert_success();
    let left: Vec<_> = files_under(&ws.child("store"));
    assert!(
        left.iter().all(|p| p.contains("/hosts/")
            || p.contains("/inboxes/")
            || p.ends_with("/publish/version.json")),
        "{left:?}"
    );
}

#[test]
fn a_sensitive_argument_never_reaches_the_store_the_log_or_apply_output() {
    const SECRET: &str = "e2e-s3cret-9931";
    let ws = Workspace::new();
    let store = format!("file://{}", ws.child("store").display());
    let got = ws.child("got");
    // The program gets the secret, prints it on stdout and stderr, and fails.
    let config = ws.write(
        "cfg/cattle.toml",
        format!(
            "[[step]]\nfacility = \"command\"\n\
             argv = [\"sh\", \"-c\", \"echo token=$TOKEN; echo token=$TOKEN >&2; printf %s $TOKEN > {}; exit 4\"]\n\
             env = {{ TOKEN = \"{SECRET}\" }}\nsensitive = [\"env.TOKEN\"]\nattempts = 2\n",
            got.display()
        ),
    );
    let config_dir = config.parent().unwrap().display().to_string();
    let hosts = ws.write("hosts", "a\n");
    let signing = signing_env(ws.path());
    let cattle = |args: &[&str]| {
        Cmd::new(cattle_bin())
            .envs(&signing)
            .env("CATTLE_STORE", &store)
            .args(args)
            .run()
    };
    let shown = |what: &str, text: &str| {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
        assert!(
            text.contains("[sensitive]"),
            "{what} has no marker:\n{text}"
        );
    };

    let out = cattle(&[
        "publish",
        &config_dir,
        "--hosts",
        &hosts.display().to_string(),
    ]);
    out.assert_success();
    let id = out.stdout.trim().to_string();
    let state = ws.child("state-a");
    let agent = Cmd::new(agent_bin())
        .envs(&signing)
        .env("CATTLE_STORE", &store)
        .env("CATTLE_LOG", "debug")
        .args(["--host-id", "a", "--state-dir"])
        .arg(&state)
        .arg("--once")
        .run();
    agent.assert_success();
    assert!(
        !agent.stdout.contains(SECRET) && !agent.stderr.contains(SECRET),
        "{agent}"
    );
    assert_eq!(std::fs::read_to_string(&got).unwrap(), SECRET);

    let status = cattle(&["status", &id, "--json"]);
    status.assert_status(3);
    shown("cattle status --json", &status.stdout);
    let log = cattle(&["log", &id]);
    log.assert_success();
    shown("cattle log", &log.stdout);
    assert!(log.stdout.contains("step 1: | token=[sensitive]"), "{log}");
    assert!(
        log.stdout.contains("step 1: | stderr: token=[sensitive]"),
        "{log}"
    );

    // What the agent wrote, in the store and in its state directory: the
    // bundle (compressed, and documented to hold the value) is the only exception.
    let written: Vec<String> = files_under(&ws.child("store"))
        .into_iter()
        .chain(files_under(&state))
        .filter(|p| !p.contains("/bundles/") && !p.contains("/config/"))
        .collect();
    for name in ["log/00000000", "status.json"] {
        let in_store = format!("/executions/{id}/hosts/a/{name}");
        assert!(
            written.iter().any(|p| p.ends_with(&in_store)),
            "{written:?}"
        );
    }
    for path in &written {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        assert!(!text.contains(SECRET), "{path} shows the secret:\n{text}");
        if path.ends_with("/log/00000000") || path.ends_with("status.json") {
            shown(path, &text);
        }
    }

    // `cattle apply` reports through the same runner.
    std::fs::remove_file(&got).unwrap();
    let apply_log = ws.child("apply.log");
    let apply = Cmd::new(cattle_bin())
        .args(["apply", &config_dir, "--log"])
        .arg(&apply_log)
        .run();
    apply.assert_status(1);
    assert_eq!(std::fs::read_to_string(&got).unwrap(), SECRET);
    shown("cattle apply", &format!("{}{}", apply.stdout, apply.stderr));
    shown(
        "cattle apply --log",
        &std::fs::read_to_string(&apply_log).unwrap(),
    );
}

#[test]
fn each_binary_gives_its_command_name_with_its_version() {
    // Not the package's name (`cattle-publish`): what the operator types.
    let version = env!("CARGO_PKG_VERSION");
    for (bin, name) in [(cattle_bin(), "cattle"), (agent_bin(), "cattle-agent")] {
        let out = Cmd::new(&bin).arg("--version").run();
        out.assert_success();
        assert_eq!(out.stdout, format!("{name} {version}\n"), "{out}");
    }
}

#[test]
fn apply_runs_the_poem_example_locally_without_a_store() {
    let ws = Workspace::new();
    let var = ws.child("var");
    std::fs::create_dir_all(&var).unwrap();
    let apply = |log: &Path| {
        Cmd::new("unshare")
            .args([
                "--mount",
                "sh",
                "-c",
                "mount --bind \"$0\" /var && exec \"$@\"",
            ])
            .arg(&var)
            .arg(cattle_bin())
            .args(["apply"])
            .arg(example("poem"))
            .arg("--log")
            .arg(log)
            .run()
    };
    let log = ws.child("apply.log");
    let out = apply(&log);
    out.assert_success();
    assert!(out.stderr.contains("config executed successfully"), "{out}");
    assert!(
        out.stderr
            .trim_end()
            .ends_with("recap: changed=3 unchanged=1 failed=0"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), out.stderr);
    let meta = std::fs::metadata(var.join("poems/poem.txt")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o666);

    // Applied again: nothing to change.
    let again = apply(&ws.child("again.log"));
    again.assert_success();
    assert!(
        again
            .stderr
            .trim_end()
            .ends_with("recap: changed=0 unchanged=4 failed=0"),
        "{again}"
    );
}

#[test]
fn a_sensitive_argument_stays_out_of_what_a_host_uploads_to_minio() {
    const SECRET: &str = "minio-s3cret-4417";
    let fleet = Fleet::on_minio();
    // The program prints the secret and fails on its only attempt.
    let config = fleet.ws.write(
        "secret/cattle.toml",
        format!(
            "[[step]]\nfacility = \"command\"\n\
             argv = [\"sh\", \"-c\", \"echo token=$TOKEN; echo token=$TOKEN >&2; exit 4\"]\n\
             env = {{ TOKEN = \"{SECRET}\" }}\nsensitive = [\"env.TOKEN\"]\n"
        ),
    );
    let id = fleet.publish(config.parent().unwrap(), &["host-a"]);
    fleet.agent_once("host-a").assert_success();

    let status = fleet.host_status(&id, "host-a");
    assert_eq!(status["state"], "ERROR", "{status}");
    for (what, text) in [
        (
            "the log in the bucket",
            String::from_utf8(
                fleet
                    .bucket
                    .get(&format!("executions/{id}/hosts/host-a/log/00000000"))
                    .unwrap(),
            )
            .unwrap(),
        ),
        ("status.json in the bucket", status.to_string()),
        (
            "cattle log",
            fleet.cattle(&["log", &id, "--host", "host-a"]).stdout,
        ),
        ("cattle status", fleet.cattle(&["status", &id]).stdout),
    ] {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
        assert!(
            text.contains("[sensitive]"),
            "{what} has no marker:\n{text}"
        );
    }
}

/// A config whose one step appends its execution's ID to `order`, so that a
/// host's runs can be read back in the order they happened.
fn order_config(fleet: &Fleet, name: &str, order: &Path) -> PathBuf {
    let config = fleet.ws.write(
        format!("{name}/cattle.toml"),
        shell_step(&format!("echo $CATTLE_EXECUTION_ID >> {}", order.display())),
    );
    config.parent().unwrap().to_path_buf()
}

/// The execution IDs `order` lists, in the order they ran.
fn ran(order: &Path) -> Vec<String> {
    std::fs::read_to_string(order)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

impl Fleet {
    /// `cattle publish` of `dir` to the hosts in `hosts_file`, started in the background.
    fn publish_in_background(&self, dir: &Path, hosts_file: &str) -> Background {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args(["publish", &dir.display().to_string(), "--hosts", hosts_file])
            .spawn()
    }

    fn counter(&self) -> Vec<u8> {
        self.bucket.get("publish/version.json").unwrap_or_default()
    }

    fn inbox_of(&self, host: &str) -> Vec<String> {
        listed_for(&self.bucket, host)
    }
}

#[test]
fn executions_run_in_publish_order_whatever_the_publishers_clocks() {
    let fleet = Fleet::on_minio();
    let order = fleet.ws.child("order");
    let dir = order_config(&fleet, "config", &order);
    let r1 = fleet.publish(&dir, &["h1"]);
    // The second publisher's clock is five minutes behind: its execution ID
    // sorts before r1's, its version does not.
    let hosts = fleet.hosts_file(&["h1"]);
    // `-m`: `cattle publish` is multi-threaded, which the default library of
    // the wrapper is not made for.
    let out = Cmd::new("faketime")
        .args(["-m", "-f", "-5m"])
        .arg(cattle_bin())
        .args(["publish", &dir.display().to_string(), "--hosts", &hosts])
        .envs(&fleet.minio.cattle_env())
        .env("CATTLE_STORE", &fleet.store_url)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .run();
    out.assert_success();
    let r2 = out.stdout.trim().to_string();
    assert!(
        r2 < r1,
        "the clock behind did not show in the ID: {r1} {r2}"
    );

    fleet.agent_once("h1").assert_success();
    assert_eq!(ran(&order), [r1.clone(), r2.clone()], "in publish order");
    let status = fleet.status_json(&r1);
    assert_eq!(states(&status), [("h1".into(), "DONE".into())]);
    assert_eq!(fleet.host_status(&r2, "h1")["state"], "DONE");
}

#[test]
fn a_publish_overtaken_while_uploading_its_bundle_runs_after_the_one_that_overtook_it() {
    let fleet = Fleet::on_minio();
    let order = fleet.ws.child("order");
    let big = order_config(&fleet, "big", &order);
    // 30 MB that do not compress: the upload takes a while.
    let mut noise = vec![0u8; 30 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut noise))
        .unwrap();
    fleet.ws.write("big/noise.bin", noise);
    let small = order_config(&fleet, "small", &order);
    let hosts = fleet.hosts_file(&["h1"]);

    let counter = fleet.counter();
    let mut publish = fleet.publish_in_background(&big, &hosts);
    // Hold the big publish in the middle of its upload: after its bundle
    // reference, before it takes a version.
    assert!(wait_until(
        Duration::from_secs(60),
        Duration::from_millis(2),
        || fleet.bucket.keys().iter().any(|k| k.contains(".refs/"))
    ));
    publish.signal(cattle_e2e::Signal::SIGSTOP);
    assert_eq!(
        fleet.counter(),
        counter,
        "the big publish took its version before it was held; nothing tested"
    );
    let second = fleet.publish(&small, &["h1"]);
    publish.signal(cattle_e2e::Signal::SIGCONT);
    let out = publish.wait_timeout(Duration::from_secs(120)).unwrap();
    out.assert_success();
    let first = out.stdout.trim().to_string();
    assert!(first < second, "IDs follow the publishes' starts");

    fleet.agent_once("h1").assert_success();
    assert_eq!(
        ran(&order),
        [second.clone(), first.clone()],
        "the publish that finished first runs first, and neither is refused"
    );
    assert_eq!(fleet.host_status(&first, "h1")["state"], "DONE");
    assert_eq!(fleet.host_status(&second, "h1")["state"], "DONE");
}

#[test]
fn a_publish_overtaken_while_addressing_its_hosts_still_runs_late() {
    let fleet = Fleet::on_minio();
    let order = fleet.ws.child("order");
    let dir = order_config(&fleet, "config", &order);
    // h1 is addressed last of 1,500 hosts.
    let mut many: Vec<String> = (0..1499).map(|i| format!("host-{i:04}")).collect();
    many.push("h1".to_string());
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let hosts = fleet.hosts_file(&many);

    let mut publish = fleet.publish_in_background(&dir, &hosts);
    // Hold it once its manifest is signed and stored, before it reaches h1.
    let manifest = || {
        fleet
            .bucket
            .keys()
            .into_iter()
            .find(|k| k.ends_with("/manifest.json"))
    };
    assert!(wait_until(
        Duration::from_secs(60),
        Duration::from_millis(2),
        || manifest().is_some()
    ));
    publish.signal(cattle_e2e::Signal::SIGSTOP);
    let slow = manifest().unwrap()["executions/".len()..][..36].to_string();
    assert!(
        !fleet.inbox_of("h1").contains(&slow),
        "the publish reached h1 before it was held; nothing tested"
    );

    // Meanwhile a small publish to h1 alone, which h1 runs at once.
    let fast_hosts = fleet.ws.write("fast-hosts", "h1\n");
    let out = fleet.cattle(&[
        "publish",
        &dir.display().to_string(),
        "--hosts",
        &fast_hosts.display().to_string(),
    ]);
    out.assert_success();
    let fast = out.stdout.trim().to_string();
    fleet.agent_once("h1").assert_success();
    assert_eq!(ran(&order), std::slice::from_ref(&fast));

    // The held publish reaches h1 after h1 ran a newer version: it still runs,
    // since it was still being addressed when the newer one was signed.
    publish.signal(cattle_e2e::Signal::SIGCONT);
    publish
        .wait_timeout(Duration::from_secs(120))
        .unwrap()
        .assert_success();
    assert!(fleet.inbox_of("h1").contains(&slow));
    fleet.agent_once("h1").assert_success();
    assert_eq!(ran(&order), [fast.clone(), slow.clone()]);
    assert_eq!(
        fleet.host_status(&slow, "h1")["state"],
        "DONE",
        "not refused"
    );
}

#[test]
fn sigterm_is_heard_while_a_big_bundle_is_unpacked() {
    let fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    let config = fleet.ws.write(
        "big/cattle.toml",
        shell_step(&format!("echo ran >> {}", counter.display())),
    );
    // 150 MB that do not compress: unpacking takes a while.
    let mut noise = vec![0u8; 150 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut noise))
        .unwrap();
    fleet.ws.write("big/noise.bin", noise);
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);

    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    let execution = fleet.state_dir("h1").join("executions").join(&id);
    // Extraction writes the config directory once the whole bundle has been checked.
    assert!(wait_until(
        Duration::from_secs(120),
        Duration::from_millis(2),
        || execution.join("config").exists()
    ));
    agent.signal(cattle_e2e::Signal::SIGTERM);
    let out = agent.wait_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(out.status, 0, "{out}");

    // The agent heard the signal while it unpacked, not after.
    let heard = out
        .stderr
        .lines()
        .find(|l| l.contains("shutdown requested"))
        .unwrap_or_else(|| panic!("{out}"));
    let heard = humantime::parse_rfc3339_weak(heard.split_whitespace().next().unwrap()).unwrap();
    let log = cattle_e2e::local_log(&execution);
    let unpacked = log
        .lines()
        .find(|l| l.contains("bundle verified and unpacked"))
        .unwrap_or_else(|| panic!("{log}"));
    let unpacked =
        humantime::parse_rfc3339_weak(unpacked.split_whitespace().next().unwrap()).unwrap();
    assert!(
        heard < unpacked,
        "SIGTERM was heard only after unpacking ended:\n{}\n{log}",
        out.stderr
    );
    // And it started no step.
    assert!(!counter.exists(), "a step ran after SIGTERM");
}

#[test]
fn a_second_agent_takes_over_once_the_first_has_been_silent_for_three_renewals() {
    let fleet = Fleet::on_minio();
    let runs = fleet.ws.child("runs");
    let dir = runs_config(&fleet, &runs);
    let daemon = |state: &Path| {
        Cmd::new(agent_bin())
            .envs(&fleet.minio.cattle_env())
            .env("CATTLE_STORE", &fleet.store_url)
            .args(["--host-id", "h1", "--interval", "1", "--state-dir"])
            .arg(state)
            .spawn()
    };
    let first_state = fleet.ws.child("first");
    let second_state = fleet.ws.child("second");
    let mut first = daemon(&first_state);
    let first_id = fleet.publish(&dir, &["h1"]);
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || fleet
            .bucket
            .get(&format!("executions/{first_id}/done/h1"))
            .is_some()
    ));
    let mut second = daemon(&second_state);
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || second
            .stderr()
            .contains("another agent is active for host ID `h1`")
    ));
    // The first machine dies. Its lease says it renews every 10 s (10 polls of
    // 1 s): the second takes over 30 s after it last saw the lease change, which
    // was at most one renewal before the death.
    first.kill();
    let died = std::time::Instant::now();
    let id = fleet.publish(&dir, &["h1"]);
    assert!(wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || fleet
            .bucket
            .get(&format!("executions/{id}/done/h1"))
            .is_some()
    ));
    let waited = died.elapsed();
    let out = second.terminate(Duration::from_secs(10));
    assert!(
        waited >= Duration::from_secs(15),
        "took over after {waited:?}, before the lease went silent"
    );
    assert!(out.stderr.contains("taking over"), "{out}");
    let text = std::fs::read_to_string(&runs).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("start {id} {}", second_state.display()))),
        "{text}"
    );
}

#[test]
fn a_step_that_brings_the_agent_down_each_time_ends_in_error_instead_of_a_crash_loop() {
    let fleet = Fleet::on_minio();
    let ws = fleet.ws.path().display().to_string();
    // Step 2 kills the agent that runs it, as a facility that panics (a release
    // build aborts) or a step that gets the agent OOM-killed would.
    let config = fleet.ws.write(
        "crash/cattle.toml",
        [
            shell_step(&format!("echo 1 >> {ws}/steps")),
            shell_step(&format!("echo 2 >> {ws}/steps; kill -9 $PPID; sleep 5"))
                .replace("[[step]]\n", "[[step]]\nattempts = 2\n"),
            shell_step(&format!("echo 3 >> {ws}/steps")),
        ]
        .concat(),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);
    let steps = || std::fs::read_to_string(fleet.ws.child("steps")).unwrap_or_default();

    // Each start is one attempt of step 2, until none is left.
    for expected in ["1\n2\n", "1\n2\n2\n"] {
        let out = fleet
            .agent("h1", &["--once"])
            .spawn()
            .wait_timeout(Duration::from_secs(60))
            .unwrap();
        assert_eq!(out.status, 128 + 9, "the agent was killed: {out}");
        assert_eq!(steps(), expected);
    }
    fleet.agent_once("h1").assert_success();
    assert_eq!(steps(), "1\n2\n2\n", "step 2 did not run a third time");
    let status = fleet.host_status(&id, "h1");
    assert_eq!(status["state"], "ERROR", "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "step 2 failed: no attempt left: attempt 2 of 2 did not finish: \
             the agent stopped during it"
        ),
        "{error}"
    );
    // And it stays finished.
    fleet.agent_once("h1").assert_success();
    assert_eq!(steps(), "1\n2\n2\n");
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert!(
        log.contains("step 2: attempt 1 of 2 did not finish: the agent stopped during it"),
        "{log}"
    );
}

#[test]
fn a_forced_clean_stops_the_host_before_its_next_step_and_clean_removes_what_it_left() {
    let fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    let gate = fleet.ws.child("gate");
    let config = fleet.ws.write(
        "gated/cattle.toml",
        counting_steps(&counter, 3, Some((1, &gate)), ""),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);
    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || std::fs::read_to_string(&counter).is_ok_and(|c| c == "1\n")
    ));
    fleet.cattle(&["clean", &id, "--force"]).assert_success();
    // The host hears of it within a poll interval, while step 1 still runs.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&gate, "").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let out = agent.terminate(Duration::from_secs(10));
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "1\n",
        "no step after the clean: {out}"
    );
    assert!(
        out.stderr.contains("cleaned from the store while it ran"),
        "{out}"
    );
    let left: Vec<String> = fleet
        .bucket
        .keys()
        .into_iter()
        .filter(|k| k.contains(&id))
        .collect();
    // What it uploaded while it had not noticed yet, if anything, `cattle clean` removes.
    if !left.is_empty() {
        fleet.cattle(&["clean", &id]).assert_success();
    }
    assert!(
        !fleet.bucket.keys().iter().any(|k| k.contains(&id)),
        "{left:?}"
    );
    // And the host forgot it.
    assert!(!fleet.state_dir("h1").join("executions").join(&id).exists());
}

/// A config that differs per host: a directory and a template named after
/// the host's `role`, a `port`, a secret `token` and a default `greeting`.
fn vars_config(fleet: &Fleet) -> PathBuf {
    fleet.ws.write(
        "vars/app.conf.j2",
        "{{ greeting }} from {{ host }}\nlisten {{ port }}\ntoken {{ token }}\n",
    );
    let steps = "sensitive_vars = [\"token\"]\n\
         [vars]\ngreeting = \"hello\"\n\
         [[step]]\nfacility = \"make_dir\"\npath = \"/var/app-{{ role }}\"\n\
         [[step]]\nfacility = \"template\"\nsource = \"app.conf.j2\"\n\
         path = \"/var/app-{{ role }}/app.conf\"\nmode = \"0600\"\n\
         [[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"echo token is {{ token }} on {{ host }}\"]\n";
    fleet
        .ws
        .write("vars/cattle.toml", steps)
        .parent()
        .unwrap()
        .to_path_buf()
}

const VARS_HOSTS: &str = "web-1 role=web port=8080 token=s3cr3t-one\n\
                          web-2 role=api port=9090 token=\"s3cr3t two\"\n";

impl Fleet {
    fn publish_with_hosts_file(&self, dir: &Path, hosts: &str) -> String {
        let hosts = self.ws.write("hosts-vars", hosts);
        let out = self.cattle(&[
            "publish",
            &dir.display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ]);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    /// `host`'s signed variables for execution `id`, as publish stored them.
    fn vars_of(&self, id: &str, host: &str) -> Option<serde_json::Value> {
        self.bucket
            .get(&format!("executions/{id}/vars/{host}"))
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }

    fn put_vars(&self, id: &str, host: &str, envelope: &serde_json::Value) {
        self.bucket.put(
            &format!("executions/{id}/vars/{host}"),
            serde_json::to_vec(envelope).unwrap(),
        );
    }
}

#[test]
fn per_host_variables_reach_each_host_and_secret_ones_stay_out_of_logs() {
    let fleet = Fleet::on_minio();
    let dir = vars_config(&fleet);
    let id = fleet.publish_with_hosts_file(&dir, VARS_HOSTS);

    // One bundle for the fleet; no host's values in the manifest every host reads.
    let manifest = fleet
        .bucket
        .get(&format!("executions/{id}/manifest.json"))
        .unwrap();
    assert_eq!(manifest_of(&manifest)["vars"], true);
    let manifest = String::from_utf8(manifest).unwrap();
    for value in ["8080", "9090", "s3cr3t"] {
        assert!(!manifest.contains(value), "{manifest}");
    }
    assert_eq!(
        fleet.bucket.list("bundles/").len(),
        2,
        "one bundle and its reference"
    );
    // Each host's object holds its own values only; no inbox holds any.
    let vars = fleet.vars_of(&id, "web-1").unwrap().to_string();
    assert!(vars.contains("8080") && !vars.contains("9090"), "{vars}");
    for key in fleet.bucket.list("inboxes/") {
        let inbox = String::from_utf8(fleet.bucket.get(&key).unwrap()).unwrap();
        assert!(
            !inbox.contains("8080") && !inbox.contains("payload"),
            "{inbox}"
        );
    }

    for host in ["web-1", "web-2"] {
        fleet.agent_once(host).assert_success();
        assert_eq!(fleet.host_status(&id, host)["state"], "DONE");
    }
    let conf = |host: &str, role: &str| {
        let path = fleet.var_dir(host).join(format!("app-{role}/app.conf"));
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        (std::fs::read_to_string(&path).unwrap(), mode)
    };
    assert_eq!(
        conf("web-1", "web"),
        (
            "hello from web-1\nlisten 8080\ntoken s3cr3t-one\n".to_string(),
            0o600
        )
    );
    assert_eq!(
        conf("web-2", "api"),
        (
            "hello from web-2\nlisten 9090\ntoken s3cr3t two\n".to_string(),
            0o600
        )
    );
    assert!(!fleet.var_dir("web-1").join("app-api").exists());

    let log = fleet.cattle(&["log", &id]).stdout;
    assert!(log.contains("token is [sensitive] on web-1"), "{log}");
    assert!(log.contains("token is [sensitive] on web-2"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
    let status = fleet.cattle(&["status", &id, "--json"]).stdout;
    assert!(!status.contains("s3cr3t"), "{status}");

    // The same values again: the files are in place.
    let again = fleet.publish_with_hosts_file(&dir, VARS_HOSTS);
    fleet.agent_once("web-1").assert_success();
    assert_eq!(
        fleet.host_status(&again, "web-1")["results"],
        serde_json::json!(["unchanged", "unchanged", "changed"])
    );

    // Cleaning an execution takes its values away too.
    fleet.cattle(&["clean", &id, "--force"]).assert_success();
    assert_eq!(fleet.vars_of(&id, "web-2"), None);
    assert!(fleet.vars_of(&again, "web-2").is_some());
}

#[test]
fn a_host_refuses_variables_changed_in_the_store_or_taken_from_another_host() {
    let fleet = Fleet::on_minio();
    let dir = vars_config(&fleet);

    // web-2's own, signed values put in web-1's place.
    let swapped = fleet.publish_with_hosts_file(&dir, VARS_HOSTS);
    let theirs = fleet.vars_of(&swapped, "web-2").unwrap();
    fleet.put_vars(&swapped, "web-1", &theirs);
    fleet.agent_once("web-1").assert_success();
    fleet.assert_refused(&swapped, "web-1", "signed for host `web-2`, not `web-1`");

    // web-1's values with the port changed by someone without the key.
    let changed = fleet.publish_with_hosts_file(&dir, VARS_HOSTS);
    let mut envelope = fleet.vars_of(&changed, "web-1").unwrap();
    let payload = envelope["payload"].as_str().unwrap().to_string();
    assert!(payload.contains("8080"), "{payload}");
    envelope["payload"] = payload.replace("8080", "22").into();
    fleet.put_vars(&changed, "web-1", &envelope);
    fleet.agent_once("web-1").assert_success();
    fleet.assert_refused(&changed, "web-1", "does not match their contents");

    // Values removed, so that the config would run with none of them.
    let stripped = fleet.publish_with_hosts_file(&dir, VARS_HOSTS);
    fleet
        .bucket
        .delete(&format!("executions/{stripped}/vars/web-1"));
    fleet.agent_once("web-1").assert_success();
    fleet.assert_refused(&stripped, "web-1", "the store has none for host `web-1`");

    // Nothing of any of them ran on web-1; web-2 ran all three with its own.
    assert!(!fleet.var_dir("web-1").join("app-api").exists());
    assert!(!fleet.var_dir("web-1").join("app-web").exists());
    fleet.agent_once("web-2").assert_success();
    for id in [&swapped, &changed, &stripped] {
        assert_eq!(fleet.host_status(id, "web-2")["state"], "DONE");
    }
}

#[test]
fn an_undefined_variable_fails_publish_naming_host_and_step_and_uploads_nothing() {
    let fleet = Fleet::on_minio();
    let dir = vars_config(&fleet);
    let dir_arg = dir.display().to_string();
    let hosts = fleet.ws.write(
        "hosts-partial",
        "web-1 role=web port=1 token=t\nweb-2 port=2 token=t\nweb-3 port=3 token=t\n",
    );
    let out = fleet.cattle(&["publish", &dir_arg, "--hosts", &hosts.display().to_string()]);
    out.assert_status(1);
    assert!(
        out.stderr.contains(
            "cattle.toml:6:8: for host `web-2` (1 other host fails too): argument `path`: \
             undefined variable `role`"
        ),
        "{out}"
    );
    assert!(
        out.stderr.contains("hint: give it a default in `[vars]`"),
        "{out}"
    );

    // In a template: its file and line.
    fleet
        .ws
        .write("vars/app.conf.j2", "listen {{ port }}\n{{ tokn }}\n");
    let out = fleet.cattle(&[
        "publish",
        &dir_arg,
        "--hosts",
        &fleet.ws.write("h", VARS_HOSTS).display().to_string(),
    ]);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("for host `web-1` (1 other host fails too): template `app.conf.j2:2`: undefined variable `tokn`"),
        "{out}"
    );
    assert_eq!(fleet.bucket.keys(), Vec::<String>::new());
}

#[test]
fn a_dry_run_shows_each_hosts_resolved_plan_and_uploads_nothing() {
    let fleet = Fleet::on_minio();
    let dir = vars_config(&fleet);
    let hosts = fleet.ws.write("h", VARS_HOSTS).display().to_string();
    // No signing key needed: nothing is signed.
    let out = Cmd::new(cattle_bin())
        .envs(&fleet.minio.env())
        .env("CATTLE_STORE", &fleet.store_url)
        .args([
            "publish",
            &dir.display().to_string(),
            "--hosts",
            &hosts,
            "--dry-run",
            "--host",
            "web-2",
            "--var",
            "greeting=hi",
        ])
        .run();
    out.assert_success();
    let plan: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(
        plan,
        [
            "",
            "host web-2:",
            "  1. make_dir: directory /var/app-api exists",
            "       path = \"/var/app-api\"",
            "  2. template: file /var/app-api/app.conf has template app.conf.j2 rendered, mode 0600",
            "       mode = \"0600\"",
            "       path = \"/var/app-api/app.conf\"",
            "       source = \"app.conf.j2\"",
            "  3. command: command `sh -c echo token is [sensitive] on web-2` has run",
            "       argv = [\"sh\", \"-c\", \"echo token is [sensitive] on web-2\"]",
            "  variables: greeting = \"hi\", host = \"web-2\", port = \"9090\", role = \"api\", token = [sensitive]",
        ],
        "{out}"
    );
    assert!(
        out.stdout.starts_with("dry run: nothing uploaded."),
        "{out}"
    );
    assert!(!out.stdout.contains("s3cr3t"), "{out}");
    assert_eq!(fleet.bucket.keys(), Vec::<String>::new());
}

#[test]
fn publish_check_reports_what_would_change_on_each_host_and_changes_nothing() {
    let fleet = Fleet::on_minio();
    let dir = vars_config(&fleet);
    let hosts = fleet
        .ws
        .write("hosts-vars", VARS_HOSTS)
        .display()
        .to_string();
    let publish_check = || {
        let out = fleet.cattle(&[
            "publish",
            &dir.display().to_string(),
            "--hosts",
            &hosts,
            "--check",
            "--diff",
        ]);
        out.assert_success();
        out.stdout.trim().to_string()
    };
    let before = files_under(&fleet.var_dir("web-1"));

    let id = publish_check();
    assert_eq!(
        manifest_of(
            &fleet
                .bucket
                .get(&format!("executions/{id}/manifest.json"))
                .unwrap()
        )["check"],
        true
    );
    fleet.agent_once("web-1").assert_success();
    let status = fleet.host_status(&id, "web-1");
    assert_eq!(status["state"], "DONE", "{status}");
    assert_eq!(
        status["results"],
        serde_json::json!(["would_change", "would_change", "would_change"])
    );
    assert_eq!(
        files_under(&fleet.var_dir("web-1")),
        before,
        "check mode changed the host"
    );
    let table = fleet.cattle(&["status", &id]).stdout;
    assert!(
        table.contains("check mode: hosts only ran their checks; nothing was changed"),
        "{table}"
    );
    // The template's diff: a private file shows its size only.
    let log = fleet.cattle(&["log", &id, "--host", "web-1"]).stdout;
    for line in [
        "+++ /var/app-web/app.conf (as the step leaves it)",
        "new file, mode 0600",
        "contents not shown: the file is not readable by everyone (0 → 46 bytes)",
    ] {
        assert!(log.lines().any(|l| l == line), "log lacks {line:?}:\n{log}");
    }
    assert!(!log.contains("s3cr3t"), "{log}");

    // Once applied for real, the files are in state; the command always runs.
    let real = fleet.publish_with_hosts_file(&dir, VARS_HOSTS);
    fleet.agent_once("web-1").assert_success();
    assert_eq!(fleet.host_status(&real, "web-1")["state"], "DONE");
    let id = publish_check();
    fleet.agent_once("web-1").assert_success();
    assert_eq!(
        fleet.host_status(&id, "web-1")["results"],
        serde_json::json!(["in_state", "in_state", "would_change"])
    );
}

#[test]
fn apply_runs_a_config_here_with_the_variables_a_host_would_get() {
    let ws = Workspace::new();
    ws.write("cfg/app.conf.j2", "{{ role }} {{ port }} {{ host }}\n");
    let dir = ws
        .write(
            "cfg/cattle.toml",
            "[vars]\nroot = \"/nonexistent\"\n[[step]]\nfacility = \"template\"\n\
             source = \"app.conf.j2\"\npath = \"{{ root }}/{{ role }}.conf\"\n",
        )
        .parent()
        .unwrap()
        .display()
        .to_string();
    let hosts = ws
        .write("hosts", "web-1 role=web port=1\nweb-2 role=api port=2\n")
        .display()
        .to_string();
    let root = ws.child("root");
    std::fs::create_dir(&root).unwrap();
    let root_var = format!("root={}", root.display());
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "apply",
            &dir,
            "--hosts",
            &hosts,
            "--host-vars",
            "web-2",
            "--var",
            &root_var,
        ];
        args.extend_from_slice(extra);
        Cmd::new(cattle_bin()).args(args).run()
    };

    apply(&["--check"]).assert_status(5);
    assert_eq!(files_under(&root), Vec::<String>::new());
    apply(&[]).assert_success();
    assert_eq!(
        std::fs::read_to_string(root.join("api.conf")).unwrap(),
        "api 2 web-2\n"
    );
    apply(&["--check"]).assert_success();

    // Not a host of the inventory; no inventory at all: `role` is undefined.
    let out = Cmd::new(cattle_bin())
        .args(["apply", &dir, "--hosts", &hosts, "--host-vars", "db-9"])
        .run();
    out.assert_status(1);
    assert!(out.stderr.contains("host `db-9` is not in"), "{out}");
    let out = Cmd::new(cattle_bin()).args(["apply", &dir]).run();
    out.assert_status(1);
    assert!(out.stderr.contains("undefined variable `role`"), "{out}");
}

#[test]
fn the_agents_own_log_says_what_it_runs_step_by_step_and_nothing_of_the_sdk() {
    let fleet = Fleet::on_minio();
    let id = fleet.publish(&example("flaky"), &["h1"]);
    let hosts = fleet.hosts_file(&["h1"]);
    let out = fleet.cattle_without_key(&[
        "publish",
        &example("poem").display().to_string(),
        "--hosts",
        &hosts,
        "--unsigned",
    ]);
    out.assert_success();
    let forged = out.stdout.trim().to_string();

    // The default level, as under systemd: no CATTLE_LOG.
    let out = fleet.agent_once("h1");
    out.assert_success();
    let log = &out.stderr;
    for (level, line) in [
        (
            "INFO",
            format!("running it: execution {id}: config `flaky`"),
        ),
        ("INFO", "step 1/1 started: flaky".to_string()),
        ("WARN", "step 1: attempt 1 of 3 failed".to_string()),
        ("INFO", "step 1 changed on attempt 3".to_string()),
        (
            "INFO",
            "execution ended: config executed successfully".to_string(),
        ),
        ("ERROR", format!("refused execution {forged}")),
        ("ERROR", "the manifest is not signed".to_string()),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!(" {level} ")) && l.contains(&line)),
            "the agent's log lacks {level} {line:?}:\n{log}"
        );
    }
    // Below warnings every line is Cattle's own: the SDK, hyper and rustls stay
    // quiet (the SDK warns here of the harness's missing AWS config files).
    for l in log.lines().filter(|l| l.starts_with("20")) {
        let mut words = l.split_whitespace().skip(1);
        let (level, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        assert!(
            matches!(level, "WARN" | "ERROR") || target.starts_with("cattle_"),
            "a line not from Cattle: {l}\n{log}"
        );
    }
    // The steps' output only at debug.
    assert!(!log.contains("flaky: attempt"), "{log}");
}

/// Every `connect` that `strace` recorded in `trace`, other than to a Unix
/// socket: `(family, address)` as strace prints them.
fn network_connects(trace: &Path) -> Vec<String> {
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("connect(") && !l.contains("AF_UNIX"))
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn publish_agent_and_status_connect_to_nothing_but_the_store() {
    let fleet = Fleet::on_minio();
    let dir = marker_config(&fleet).display().to_string();
    let hosts = fleet.hosts_file(&["h1"]);
    let port = format!("sin_port=htons({})", fleet.minio.port());
    let to_store = |l: &str| l.contains(&port) && l.contains("inet_addr(\"127.0.0.1\")");
    // As an operator's environment would be: no switch turning the instance
    // metadata service off (the harness sets one for every other test).
    let env: Vec<(String, String)> = fleet
        .minio
        .cattle_env()
        .into_iter()
        .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
        .collect();
    let traced = |name: &str, bin: PathBuf, args: &[&str]| {
        let trace = fleet.ws.child(format!("{name}.strace"));
        let out = Cmd::new("strace")
            .args(["-f", "-qq", "-e", "trace=connect", "-o"])
            .arg(&trace)
            .arg(bin)
            .args(args.iter().copied())
            .envs(&env)
            .env("CATTLE_STORE", &fleet.store_url)
            .run();
        out.assert_success();
        let connects = network_connects(&trace);
        assert!(
            !connects.is_empty(),
            "{name} made no connection at all: the trace is wrong"
        );
        let elsewhere: Vec<&String> = connects.iter().filter(|l| !to_store(l)).collect();
        assert!(
            elsewhere.is_empty(),
            "{name} connected elsewhere than the store: {elsewhere:#?}"
        );
        out
    };

    let out = traced(
        "publish",
        cattle_bin(),
        &["publish", &dir, "--hosts", &hosts],
    );
    let id = out.stdout.lines().last().unwrap().trim().to_string();
    let state = fleet.state_dir("h1").display().to_string();
    traced(
        "agent",
        agent_bin(),
        &["--host-id", "h1", "--state-dir", &state, "--once"],
    );
    assert!(fleet.ws.child(format!("ran-{id}")).exists());
    traced("status", cattle_bin(), &["status", &id]);
    traced("log", cattle_bin(), &["log", &id]);
}

#[test]
fn after_kill_9_a_run_with_variables_resumes_with_the_same_signed_values() {
    let fleet = Fleet::on_minio();
    let counter = fleet.ws.child("counter");
    let gate = fleet.ws.child("gate");
    // Three counting steps, the second waiting for the gate, then a template.
    fleet
        .ws
        .write("gated/app.conf.j2", "port {{ port }} on {{ host }}\n");
    let out = fleet.ws.child("out");
    std::fs::create_dir_all(&out).unwrap();
    let steps = counting_steps(&counter, 3, Some((2, &gate)), "")
        + &format!(
            "[[step]]\nfacility = \"template\"\nsource = \"app.conf.j2\"\npath = \"{}/{{{{ host }}}}.conf\"\n",
            out.display()
        );
    let config = fleet.ws.write("gated/cattle.toml", steps);
    let id = fleet.publish_with_hosts_file(config.parent().unwrap(), "h1 port=8080\n");

    let mut agent = fleet.agent("h1", &["--interval", "1"]).spawn();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || { std::fs::read_to_string(&counter).is_ok_and(|c| c.lines().count() == 2) }
    ));
    agent.kill();
    std::fs::write(&gate, "").unwrap();

    fleet.agent_once("h1").assert_success();
    assert_eq!(fleet.host_status(&id, "h1")["state"], "DONE");
    let runs = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(runs, "1\n2\n2\n3\n", "only the step in flight runs twice");
    assert_eq!(
        std::fs::read_to_string(out.join("h1.conf")).unwrap(),
        "port 8080 on h1\n"
    );
    let log = fleet.cattle(&["log", &id, "--host", "h1"]).stdout;
    assert!(log.contains("resuming at step 2"), "{log}");
}

#[test]
fn under_systemd_the_agents_lines_carry_their_syslog_priority_instead_of_a_time() {
    let fleet = Fleet::on_minio();
    let id = fleet.publish(&marker_config(&fleet), &["h1"]);
    let hosts = fleet.hosts_file(&["h1"]);
    let out = fleet.cattle_without_key(&[
        "publish",
        &marker_config(&fleet).display().to_string(),
        "--hosts",
        &hosts,
        "--unsigned",
    ]);
    out.assert_success();
    let forged = out.stdout.trim().to_string();

    // systemd sets JOURNAL_STREAM when standard error is the journal.
    let out = fleet
        .agent("h1", &["--once"])
        .env("JOURNAL_STREAM", "8:12345")
        .run();
    out.assert_success();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6> INFO ")
                && l.contains(&format!("running it: execution {id}"))),
        "{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>ERROR ")
                && l.contains(&format!("refused execution {forged}"))),
        "{}",
        out.stderr
    );
    for l in lines
        .iter()
        .filter(|l| l.contains(" INFO ") || l.contains(" ERROR "))
    {
        assert!(l.starts_with('<'), "a line without its priority: {l}");
    }
}

#[test]
fn a_custom_facility_exiting_194_has_the_host_rebooted_once_and_the_run_goes_on() {
    let fleet = Fleet::on_minio();
    let ws = fleet.ws.path().display().to_string();
    // In place once its marker exists; apply makes it and asks for a reboot.
    let program = fleet.ws.write(
        "kernel/facilities/kernel_param",
        format!(
            "#!/bin/sh\ncat >/dev/null\ncase $1 in\ndescribe) echo 'kernel parameter set' ;;\n\
             check) [ -e {ws}/param ] || exit 100 ;;\n\
             apply) touch {ws}/param; exit 194 ;;\nesac\n"
        ),
    );
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = fleet.ws.write(
        "kernel/cattle.toml",
        format!(
            "[[step]]\nfacility = \"kernel_param\"\n{}",
            shell_step(&format!("echo 2 >> {ws}/steps"))
        ),
    );
    let id = fleet.publish(config.parent().unwrap(), &["h1"]);
    let boot = fleet.ws.write("boot_id", "boot-one\n");
    let run = fleet.ws.child("run");
    let agent = || fleet.rebooting_agent(&boot, &run).run();

    agent().assert_success();
    assert_eq!(steps_and_reboots(&fleet), ("".into(), "reboot\n".into()));
    assert_eq!(fleet.status_json(&id)["hosts"][0]["state"], "PROGRESS");
    agent().assert_success();
    assert_eq!(steps_and_reboots(&fleet), ("".into(), "reboot\n".into()));

    std::fs::write(&boot, "boot-two\n").unwrap();
    agent().assert_success();
    assert_eq!(steps_and_reboots(&fleet), ("2\n".into(), "reboot\n".into()));
    let status = fleet.host_status(&id, "h1");
    assert_eq!(status["state"], "DONE", "{status}");
    assert_eq!(status["results"], serde_json::json!(["changed", "changed"]));
}

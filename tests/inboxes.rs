//! Grouped inboxes, and the way from per-host inboxes to them, on a real MinIO
//! with the real binaries.
//!
//! A store first published to by this version addresses hosts through the
//! inboxes of their groups only: one object per group, whatever the number of
//! hosts, and each host's variables in an object of their own. A store that
//! older publishers used keeps writing per-host inboxes too (agents older than
//! groups read only those) until `cattle store upgrade`; agents read both
//! meanwhile, so executions that older publishers addressed only to per-host
//! inboxes still run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cattle_e2e::{Background, Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin};
use serde_json::{Value, json};

const BUCKET: &str = "cattle";
const PREFIX: &str = "inboxes";

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
        let ws = Workspace::new();
        ws.write(
            "plain/cattle.toml",
            "[[step]]\nfacility = \"command\"\nargv = [\"true\"]\n",
        );
        // Each host leaves a file named by its own value of `port`.
        let out = ws.child("out");
        std::fs::create_dir_all(&out).unwrap();
        ws.write(
            "vars/cattle.toml",
            format!(
                "[vars]\nport = 1\n\n[[step]]\nfacility = \"command\"\n\
                 argv = [\"touch\", \"{}/{{{{ port }}}}\"]\n",
                out.display()
            ),
        );
        Site { minio, ws, bucket }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.minio.cattle_env();
        env.extend(cattle_e2e::signing_env(self.ws.path()));
        env.push(("CATTLE_STORE".into(), format!("s3://{BUCKET}/{PREFIX}")));
        env.push(("CATTLE_LOG".into(), "error".into()));
        env
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin()).envs(&self.env()).args(args).run()
    }

    /// Publish config `config` to `hosts` (one per line, with variables).
    fn publish(&self, config: &str, hosts: &str) -> String {
        let file = self.ws.write(format!("{config}.hosts"), hosts);
        let dir = self.ws.child(config).display().to_string();
        let out = self.cattle(&["publish", &dir, "--hosts", &file.display().to_string()]);
        out.assert_success();
        out.stdout.trim().to_string()
    }

    fn agent(&self, host: &str) -> Cmd {
        Cmd::new(agent_bin())
            .envs(&self.env())
            .args(["--host-id", host, "--interval", "1s", "--state-dir"])
            .arg(self.ws.child(format!("agents/{host}")))
    }

    fn agent_once(&self, host: &str) {
        self.agent(host).arg("--once").run().assert_success();
    }

    fn state(&self, id: &str, host: &str) -> String {
        self.bucket
            .get(&format!("executions/{id}/hosts/{host}/status.json"))
            .map(|b| serde_json::from_slice::<Value>(&b).unwrap()["state"].to_string())
            .unwrap_or_else(|| "PENDING".into())
    }

    fn wait_done(&self, id: &str, host: &str, agent: &mut Background) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.state(id, host) != "\"DONE\"" {
            if let Some(out) = agent.try_status() {
                panic!("agent {host} exited {out}: {}", agent.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "{host} did not finish {id}: {}",
                agent.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn json(&self, key: &str) -> Option<Value> {
        self.bucket
            .get(key)
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn per_host_inboxes(&self) -> BTreeSet<String> {
        self.bucket
            .list("hosts/")
            .into_iter()
            .filter(|k| k.ends_with("/inbox.json"))
            .collect()
    }

    fn group_inboxes(&self) -> Vec<String> {
        self.bucket.list("inboxes/")
    }

    /// The group inbox that lists execution `id` for `host`.
    fn group_entry(&self, id: &str, host: &str) -> (Value, Vec<String>) {
        for key in self.group_inboxes() {
            let inbox = self.json(&key).unwrap();
            for entry in inbox["executions"].as_array().unwrap() {
                let hosts: Vec<String> = entry["hosts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect();
                if entry["id"] == id && hosts.iter().any(|h| h == host) {
                    return (inbox, hosts);
                }
            }
        }
        panic!("no group inbox lists {id} for {host}")
    }

    /// Take execution `id` out of `host`'s group inbox, as if only its per-host
    /// inbox had been written (by a publisher older than groups).
    fn withdraw_from_group(&self, id: &str, host: &str) {
        let (mut group, _) = self.group_entry(id, host);
        let key = format!("inboxes/{}.json", group["group"].as_str().unwrap());
        group["executions"]
            .as_array_mut()
            .unwrap()
            .retain(|e| e["id"] != id);
        self.bucket.put(&key, serde_json::to_vec(&group).unwrap());
    }

    fn manifest(&self, id: &str) -> Value {
        let envelope = self
            .json(&format!("executions/{id}/manifest.json"))
            .unwrap();
        serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap()
    }

    /// Make this a store that older publishers used: their version counter,
    /// which knows nothing of groups.
    fn as_before_groups(&self) {
        self.bucket.put(
            "publish/version.json",
            serde_json::to_vec(&json!({"format": 2, "version": 1})).unwrap(),
        );
    }
}

#[test]
fn a_new_store_writes_one_inbox_per_group_and_each_hosts_variables_apart() {
    let site = Site::new();
    let hosts: Vec<String> = (0..300).map(|i| format!("host-{i:03} port={i}")).collect();
    let id = site.publish("vars", &(hosts.join("\n") + "\n"));

    // One object per group, no per-host inbox; each group lists exactly its hosts.
    let groups = site.group_inboxes();
    assert!(
        (150..=256).contains(&groups.len()),
        "300 hosts over 256 groups: {}",
        groups.len()
    );
    assert_eq!(site.per_host_inboxes(), BTreeSet::new());
    let mut addressed = 0;
    for key in &groups {
        let inbox = site.json(key).unwrap();
        let group = key.strip_prefix("inboxes/").unwrap().strip_suffix(".json");
        assert_eq!(inbox["group"].as_str(), group, "{inbox}");
        assert_eq!(inbox["per_host"], false, "{inbox}");
        let entries = inbox["executions"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        addressed += entries[0]["hosts"].as_array().unwrap().len();
        // Execution IDs and host names, as the manifest shows: no variables.
        assert!(!inbox.to_string().contains("payload"), "{inbox}");
    }
    assert_eq!(addressed, 300);
    assert_eq!(site.manifest(&id)["grouped"], true);
    assert_eq!(
        site.bucket.list(&format!("executions/{id}/vars/")).len(),
        300
    );

    // A host runs with its own variables, found in their own object.
    site.agent_once("host-007");
    assert_eq!(site.state(&id, "host-007"), "\"DONE\"");
    assert!(site.ws.child("out/7").exists());

    // Its variables changed by someone without the key: refused, nothing ran.
    let again = site.publish("vars", &(hosts.join("\n") + "\n"));
    let key = format!("executions/{again}/vars/host-008");
    let mut envelope = site.json(&key).unwrap();
    let signed = envelope["payload"].as_str().unwrap().to_string();
    let payload = signed.replace("\"port\":\"8\"", "\"port\":\"22\"");
    assert_ne!(payload, signed);
    envelope["payload"] = payload.into();
    site.bucket
        .put(&key, serde_json::to_vec(&envelope).unwrap());
    site.agent_once("host-008");
    let status = site
        .json(&format!("executions/{again}/hosts/host-008/status.json"))
        .unwrap();
    assert_eq!(status["state"], "ERROR", "{status}");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("does not match their contents"),
        "{status}"
    );
    // (`out/8` is there: host-008 ran the first execution.)
    assert!(!site.ws.child("out/22").exists());

    // Clean takes the execution out of every group and its variables away.
    site.cattle(&["clean", &again, "--force"]).assert_success();
    for key in site.group_inboxes() {
        assert!(!site.json(&key).unwrap().to_string().contains(&again));
    }
    assert_eq!(
        site.bucket.list(&format!("executions/{again}/")),
        Vec::<String>::new()
    );
}

#[test]
fn a_store_used_before_groups_keeps_per_host_inboxes_until_it_is_upgraded() {
    let site = Site::new();
    site.as_before_groups();
    let mut agent = site.agent("old-1").spawn();

    // An execution an older publisher addressed: only the per-host inbox
    // lists it (this version's publish to a store before groups, with the
    // group's inbox taken away again, writes exactly that).
    let old = site.publish("plain", "old-1\n");
    let (group, _) = site.group_entry(&old, "old-1");
    assert_eq!(group["per_host"], true, "{group}");
    for key in site.group_inboxes() {
        site.bucket.delete(&key);
    }
    let inbox = site.json("hosts/old-1/inbox.json").unwrap();
    assert_eq!(
        inbox,
        json!({"format": 2, "host": "old-1", "executions": [old]}),
        "the per-host inbox is what agents older than groups read"
    );
    site.wait_done(&old, "old-1", &mut agent);

    // Until the store is upgraded, publishes write both, and the manifest
    // says clean must empty both.
    let both = site.publish("plain", "old-1\nnew-1\n");
    assert_eq!(site.manifest(&both).get("grouped"), None);
    for host in ["old-1", "new-1"] {
        let inbox = site.json(&format!("hosts/{host}/inbox.json")).unwrap();
        assert!(inbox["executions"].to_string().contains(&both), "{inbox}");
        let (group, _) = site.group_entry(&both, host);
        assert_eq!(group["per_host"], true);
    }
    site.wait_done(&both, "old-1", &mut agent);

    // An older publisher still at work meanwhile: its execution reaches the
    // running agent through the per-host inbox alone.
    let late = site.publish("plain", "old-1\n");
    site.bucket.put(
        "hosts/old-1/inbox.json",
        serde_json::to_vec(&json!({"format": 2, "host": "old-1", "executions": [old, both, late]}))
            .unwrap(),
    );
    site.withdraw_from_group(&late, "old-1");
    site.wait_done(&late, "old-1", &mut agent);

    // The upgrade: from now on only the groups' inboxes.
    let out = site.cattle(&["store", "upgrade"]);
    out.assert_success();
    assert!(out.stdout.contains("upgraded"), "{out}");
    let counter = site.json("publish/version.json").unwrap();
    assert_eq!(counter["inboxes"], "grouped", "{counter}");
    let grouped = site.publish("plain", "old-1\nnew-2\n");
    assert_eq!(site.manifest(&grouped)["grouped"], true);
    assert!(site.json("hosts/new-2/inbox.json").is_none());
    let inbox = site.json("hosts/old-1/inbox.json").unwrap();
    assert!(!inbox.to_string().contains(&grouped), "{inbox}");
    let (group, _) = site.group_entry(&grouped, "old-1");
    assert_eq!(group["per_host"], false);
    // The running agent sees it through its group's inbox.
    site.wait_done(&grouped, "old-1", &mut agent);
    let out = site.cattle(&["store", "upgrade"]);
    out.assert_success();
    assert!(out.stdout.contains("already"), "{out}");

    // A restarted agent still finds what only its per-host inbox lists.
    agent.terminate(Duration::from_secs(10)).assert_success();
    let leftover = site.publish("plain", "old-2\n");
    site.bucket.put(
        "hosts/old-2/inbox.json",
        serde_json::to_vec(&json!({"format": 2, "host": "old-2", "executions": [leftover]}))
            .unwrap(),
    );
    site.withdraw_from_group(&leftover, "old-2");
    site.agent_once("old-2");
    assert_eq!(site.state(&leftover, "old-2"), "\"DONE\"");

    // Clean empties the per-host inboxes of an execution published before
    // the upgrade, and the groups' of both kinds.
    site.cattle(&["clean", &both]).assert_success();
    site.cattle(&["clean", &grouped]).assert_success();
    for key in site.per_host_inboxes() {
        let inbox = site.json(&key).unwrap().to_string();
        assert!(
            !inbox.contains(&both) && !inbox.contains(&grouped),
            "{key}: {inbox}"
        );
    }
    for key in site.group_inboxes() {
        let inbox = site.json(&key).unwrap().to_string();
        assert!(
            !inbox.contains(&both) && !inbox.contains(&grouped),
            "{key}: {inbox}"
        );
    }
}

#[test]
fn a_forged_group_inbox_runs_nothing_and_names_the_object() {
    let site = Site::new();
    let id = site.publish("plain", "web-1\n");
    let (group, _) = site.group_entry(&id, "web-1");
    let key = format!("inboxes/{}.json", group["group"].as_str().unwrap());

    // Another group's inbox put in its place: the agent refuses to read it.
    let mut forged = group.clone();
    forged["group"] = "zz\u{1b}[31m".into();
    site.bucket.put(&key, serde_json::to_vec(&forged).unwrap());
    let out = site.agent("web-1").arg("--once").run();
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("is not a valid inbox document")
            && out.stderr.contains(&format!("{PREFIX}/{key}")),
        "{out}"
    );
    assert!(!out.stderr.contains('\u{1b}'), "{out}");
    assert_eq!(site.state(&id, "web-1"), "PENDING");

    // An execution that no one signed, listed for the host: refused.
    let mut unsigned = group.clone();
    let stranger = "0190c0de-0000-7000-8000-000000000000";
    unsigned["executions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": stranger, "hosts": ["web-1"]}));
    site.bucket
        .put(&key, serde_json::to_vec(&unsigned).unwrap());
    site.agent_once("web-1");
    assert_eq!(site.state(&id, "web-1"), "\"DONE\"");
    assert_eq!(site.state(stranger, "web-1"), "PENDING");
}

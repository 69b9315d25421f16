//! `cattle publish --select` end to end: a real agent reports its host's real
//! facts in its lease, and the leases of other hosts are written into a real
//! MinIO as their agents (or a hostile host) would write them. Publishing
//! with `--select` on a fact or on an inventory variable addresses only the
//! hosts that match and signs only them into the manifest; the dry run says,
//! host by host, which term matched from where or which failed and why; a
//! selector that matches nothing fails before anything is uploaded.

use cattle_e2e::{Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin};
use serde_json::{Value, json};

const BUCKET: &str = "cattle";
const PREFIX: &str = "select";

/// Web hosts and a database host. `web-1` has a real agent; `web-2` and
/// `db-1` have leases as agents write them; `web-3` never reported; `evil-1`
/// reports escape sequences; `liar-1`'s lease names another host.
const INVENTORY: &str = r#"
[groups.web]
hosts = ["web-1", "web-2", "web-3", "evil-1", "liar-1"]
vars = { role = "web" }

[groups.db]
hosts = ["db-1"]
vars = { role = "db" }
"#;

/// An OS no test machine runs: `web-2` reports it.
const OTHER_OS: &str = "plan9";

struct Site {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
    /// `os.id` as web-1's real agent reported it: this machine's.
    real_os: String,
}

impl Site {
    fn new() -> Site {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        let ws = Workspace::new();
        ws.write(
            "config/cattle.toml",
            "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"echo role {{ role }}\"]\n",
        );
        ws.write("inventory.toml", INVENTORY);
        let mut site = Site {
            minio,
            ws,
            bucket,
            real_os: String::new(),
        };
        // The real agent's first poll writes its lease, with its facts.
        site.agent_once("web-1");
        let lease = site.lease("web-1");
        site.real_os = lease["heartbeat"]["facts"]["os.id"]
            .as_str()
            .unwrap_or_else(|| panic!("web-1 reports no os.id: {lease:#}"))
            .to_string();
        assert_ne!(site.real_os, OTHER_OS);
        site.put_lease("web-2", lease_of("web-2", &[("os.id", OTHER_OS)]));
        site.put_lease("db-1", lease_of("db-1", &[("os.id", &site.real_os)]));
        site.put_lease(
            "evil-1",
            lease_of(
                "evil-1",
                &[
                    (
                        "os.id",
                        "\u{1b}[2J\u{1b}]52;c;cm0gLXJmIH4=\u{7}plan9\r\u{202e}",
                    ),
                    ("os.pretty_name", "\u{1b}]0;pwned\u{7}"),
                ],
            ),
        );
        site.put_lease("liar-1", lease_of("web-2", &[("os.id", OTHER_OS)]));
        site
    }

    fn store_url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", self.store_url())
            // The SDK's warnings about the test's missing AWS files stay out of snapshots.
            .env("CATTLE_LOG", "error")
            .args(args)
            .run()
    }

    /// `cattle publish config --hosts inventory.toml ARGS`.
    fn publish(&self, args: &[&str]) -> Output {
        let dir = self.ws.child("config").display().to_string();
        let inventory = self.ws.child("inventory.toml").display().to_string();
        let mut all = vec!["publish", &dir, "--hosts", &inventory];
        all.extend_from_slice(args);
        self.cattle(&all)
    }

    fn publish_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.publish(&all);
        out.assert_success();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Run `host`'s real agent until what is addressed to it is done.
    fn agent_once(&self, host: &str) {
        Cmd::new(agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", self.store_url())
            .args(["--host-id", host, "--once", "--state-dir"])
            .arg(self.ws.child(format!("agents/{host}")))
            .run()
            .assert_success();
    }

    fn lease(&self, host: &str) -> Value {
        let bytes = self
            .bucket
            .get(&format!("hosts/{host}/agent.json"))
            .unwrap_or_else(|| panic!("no lease for {host}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn put_lease(&self, host: &str, lease: Value) {
        self.bucket.put(
            &format!("hosts/{host}/agent.json"),
            serde_json::to_vec_pretty(&lease).unwrap(),
        );
    }

    /// The hosts that the groups' inboxes list an execution for.
    fn inboxes(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .bucket
            .list("inboxes/")
            .iter()
            .flat_map(|key| {
                let inbox: Value = serde_json::from_slice(&self.bucket.get(key).unwrap()).unwrap();
                inbox["executions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|e| e["hosts"].as_array().unwrap().clone())
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// The manifest of execution `id` as its signed payload says.
    fn manifest(&self, id: &str) -> Value {
        let bytes = self
            .bucket
            .get(&format!("executions/{id}/manifest.json"))
            .expect("the manifest is there");
        let envelope: Value = serde_json::from_slice(&bytes).unwrap();
        serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap()
    }

    /// Snapshot settings: this machine's OS ID is `[OS_ID]`, the workspace `[TMP]`.
    fn snapshots(&self) -> insta::Settings {
        let mut settings = cattle_e2e::snapshots();
        settings.add_filter(r"/tmp/cattle-e2e-[A-Za-z0-9]+", "[TMP]");
        settings.add_filter(&format!(r"\b{}\b", regex_escape(&self.real_os)), "[OS_ID]");
        settings
    }
}

/// `text` matched literally in a regular expression.
fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// A lease as an agent writes it for `host`, with `facts`.
fn lease_of(host: &str, facts: &[(&str, &str)]) -> Value {
    let facts: serde_json::Map<String, Value> = facts
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "format": 2,
        "host": host,
        "nonce": "5f0c6a52-3c1e-4d8a-9a41-7d2b0c9e8f11",
        "machine": "4c4c4544004d3510804bb4c04f4e4d32",
        "state_dir": "/var/lib/cattle/agent",
        "pid": 812,
        "since": "2026-01-02T03:04:06.000Z",
        "renewed": "2026-01-02T03:09:06.000Z",
        "renew_secs": 300,
        "agent_version": "0.1.0",
        "heartbeat": {
            "interval_secs": 30,
            "polled": "2026-01-02T03:09:06.000Z",
            "clock_offset_secs": 0,
            "inbox": false,
            "execution": null,
            "last": null,
            "facts": facts,
        },
    })
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_fact_or_a_variable_chooses_who_gets_an_inbox_and_the_manifest_says_how() {
    let site = Site::new();
    let os = site.real_os.clone();

    // On a fact (with its alias) and a variable: only web-1, whose real agent
    // reported this machine's OS. db-1 reports it too but is no web host.
    let selector = format!("role=web,os={os}");
    let published = site.publish_json(&["--select", &selector]);
    let id = published["id"].as_str().unwrap().to_string();
    assert_eq!(published["hosts"], 1, "{published:#}");
    let selection = &published["selection"];
    assert_eq!(selection["select"], json!([format!("role=web,os.id={os}")]));
    assert_eq!(selection["considered"], 6);
    assert_eq!(selection["matched"], 1);
    let web1 = selection["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "web-1")
        .unwrap();
    assert_eq!(web1["matched"], true);
    assert_eq!(web1["checks"][0]["source"], "variable");
    assert_eq!(web1["checks"][0]["from"], "inventory");
    assert_eq!(web1["checks"][1]["source"], "fact");
    assert_eq!(web1["checks"][1]["value"], os.as_str());
    assert!(web1["checks"][1]["facts_age_secs"].as_u64().unwrap() < 60);
    assert_eq!(site.inboxes(), ["web-1"]);
    let manifest = site.manifest(&id);
    assert_eq!(manifest["hosts"], json!(["web-1"]));
    assert_eq!(manifest["select"], json!([format!("role=web,os.id={os}")]));

    // The host runs it, and the readers show how its hosts were chosen.
    site.agent_once("web-1");
    let status = site.cattle(&["status", &id, "--json"]);
    status.assert_success();
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        cattle_e2e::states(&status),
        [("web-1".into(), "DONE".into())]
    );
    assert_eq!(
        strings(&status["execution"]["select"]),
        [format!("role=web,os.id={os}")]
    );

    // On an inventory variable alone, and on alternatives.
    let db = site.publish_json(&["--select", "role=db"]);
    assert_eq!(db["hosts"], 1);
    assert_eq!(
        site.manifest(db["id"].as_str().unwrap())["hosts"],
        json!(["db-1"])
    );
    let either = site.publish_json(&["--select", "role=db", "--select", &format!("os={OTHER_OS}")]);
    let either_id = either["id"].as_str().unwrap();
    assert_eq!(site.manifest(either_id)["hosts"], json!(["db-1", "web-2"]));
    assert_eq!(
        site.manifest(either_id)["select"],
        json!(["role=db", format!("os.id={OTHER_OS}")])
    );
    assert_eq!(site.inboxes(), ["db-1", "web-1", "web-2"]);
    // `!=` on a variable, and the host ID as a variable.
    let not_web = site.publish_json(&["--select", "role!=web", "--select", "host=web-3"]);
    assert_eq!(
        site.manifest(not_web["id"].as_str().unwrap())["hosts"],
        json!(["db-1", "web-3"])
    );

    let list = site.cattle(&["list", "--json"]);
    list.assert_success();
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    let row = |id: &str| {
        list["executions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        strings(&row(&id)["select"]),
        [format!("role=web,os.id={os}")]
    );
    assert_eq!(strings(&row(either_id)["select"]).len(), 2);

    // Without `--select`, every host, and no selection.
    let all = site.publish_json(&[]);
    assert_eq!(all["hosts"], 6);
    assert_eq!(all["selection"], Value::Null);
    assert!(
        site.manifest(all["id"].as_str().unwrap())
            .get("select")
            .is_none()
    );
}

#[test]
fn the_dry_run_says_for_every_host_which_term_held_or_failed_and_why() {
    let site = Site::new();
    let before = site.bucket.keys();
    let selector = format!("role=web,os={}", site.real_os);
    let out = site.publish(&["--select", &selector, "--dry-run"]);
    assert_eq!(out.status, 0, "{out}");
    for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(!out.stdout.contains(raw), "raw {raw:?} printed: {out}");
    }
    assert!(out.stdout.contains("host web-1:\n"), "{out}");
    assert!(!out.stdout.contains("host web-2:"), "{out}");
    assert!(
        out.stdout.ends_with(&format!(
            "1 of 6 hosts matches role=web,os.id={}\n",
            site.real_os
        )),
        "{out}"
    );
    assert_eq!(site.bucket.keys(), before, "a dry run uploads nothing");
    site.snapshots().bind(|| {
        insta::assert_snapshot!("select_dry_run", out.snapshot());
    });

    // Alternatives: each says the term of each selector that failed.
    let out = site.publish(&[
        "--select",
        "role=db",
        "--select",
        &format!("os!={}", site.real_os),
        "--dry-run",
        "--host",
        "web-2",
    ]);
    site.snapshots().bind(|| {
        insta::assert_snapshot!("select_dry_run_alternatives", out.snapshot());
    });

    // A selection on variables alone reads nothing from the store: it works
    // without one.
    let dir = site.ws.child("config").display().to_string();
    let inventory = site.ws.child("inventory.toml").display().to_string();
    let offline = Cmd::new(cattle_bin())
        .env("CATTLE_STORE", "s3://no-such-bucket")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("CATTLE_LOG", "error")
        .args(["publish", &dir, "--hosts", &inventory])
        .args(["--select", "role=db", "--dry-run"])
        .run();
    assert_eq!(offline.status, 0, "{offline}");
    assert!(
        offline.stdout.ends_with("1 of 6 hosts matches role=db\n"),
        "{offline}"
    );
}

#[test]
fn a_selector_that_matches_no_host_fails_before_anything_is_uploaded() {
    let site = Site::new();
    let before = site.bucket.keys();
    let out = site.publish(&["--select", "role=web,os=beos"]);
    assert_eq!(out.status, 2, "{out}");
    let dry = site.publish(&["--select", "role=web,os=beos", "--dry-run"]);
    assert_eq!(dry.status, 2, "{dry}");
    // A key that is no variable and no host reports is named.
    let typo = site.publish(&["--select", "rol=web"]);
    assert_eq!(typo.status, 2, "{typo}");
    assert!(
        typo.stderr
            .contains("no host has a variable or reports a fact named `rol`"),
        "{typo}"
    );
    // One that can be neither, and one that does not parse.
    let upper = site.publish(&["--select", "Role=web"]);
    assert_eq!(upper.status, 2, "{upper}");
    let bad = site.publish(&["--select", "role=web,os"]);
    assert_eq!(bad.status, 2, "{bad}");
    assert_eq!(site.bucket.keys(), before, "nothing was uploaded");
    site.snapshots().bind(|| {
        insta::assert_snapshot!("select_no_match", out.snapshot());
        insta::assert_snapshot!("select_no_match_dry_run", dry.snapshot());
        insta::assert_snapshot!("select_unknown_key", upper.snapshot());
        insta::assert_snapshot!("select_bad_selector", bad.snapshot());
    });
}

//! `cattle list`, execution ID prefixes, `publish --message` and `--hosts -`,
//! with the real binaries against a real MinIO.

use std::path::PathBuf;

use cattle_core::hosts::HostId;
use cattle_core::wire::{BundleRef, Envelope, FORMAT, Manifest};
use cattle_e2e::{Bucket, Cmd, Minio, Output, Proxy, Workspace, cattle_bin, snapshots};
use uuid::Uuid;

const BUCKET: &str = "cattle";
const PREFIX: &str = "list";

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

    fn cmd(&self) -> Cmd {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .env("CATTLE_PUBLISHER", "ops@example")
            // The AWS SDK's warnings name the test's temporary directory.
            .env("CATTLE_LOG", "error")
    }

    fn cattle(&self, args: &[&str]) -> Output {
        self.cmd().args(args).run()
    }

    fn config(&self, name: &str) -> PathBuf {
        let path = self.ws.write(
            format!("{name}/cattle.toml"),
            "[[step]]\nfacility = \"command\"\nargv = [\"true\"]\n",
        );
        path.parent().unwrap().to_path_buf()
    }

    fn publish(&self, config: &str, hosts: &[&str], extra: &[&str]) -> String {
        let hosts = self.ws.write("hosts", hosts.join("\n") + "\n");
        let dir = self.config(config);
        let mut args = vec![
            "publish",
            dir.to_str().unwrap(),
            "--hosts",
            hosts.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = self.cattle(&args);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    /// An execution written straight into the bucket, as a publisher (or
    /// anyone with write access) could: an unsigned manifest, nothing else.
    fn forge(&self, config: &str, hosts: &[&str], message: Option<&str>) -> Uuid {
        let id = Uuid::now_v7();
        let manifest = Manifest {
            format: FORMAT,
            id,
            version: 1,
            floor: None,
            created: "2026-01-31T12:00:00.000Z".to_string(),
            expires: "2026-02-07T12:00:00.000Z".to_string(),
            publisher: "ops@example".to_string(),
            config: config.to_string(),
            steps: 1,
            bundle: BundleRef {
                sha256: "0".repeat(64),
                size: 1,
            },
            hosts: hosts.iter().map(|h| HostId::new(h).unwrap()).collect(),
            vars: false,
            check: false,
            diff: false,
            message: message.map(str::to_string),
            rollout: None,
            select: Vec::new(),
            grouped: false,
        };
        self.bucket.put(
            &format!("executions/{id}/manifest.json"),
            serde_json::to_vec(&Envelope::unsigned(&manifest)).unwrap(),
        );
        id
    }
}

/// Snapshot settings for `cattle list`: short IDs (and the padding after
/// them, which depends on how long they are) and versions vary per run.
fn list_snapshots() -> insta::Settings {
    let mut settings = snapshots();
    settings.add_filter(r"(?m)^[0-9a-f]{8}[0-9a-f-]* +", "[SHORT]  ");
    settings.add_filter(r#""short_id": "[0-9a-f-]+""#, r#""short_id": "[SHORT]""#);
    settings.add_filter(r#""version": \d+"#, r#""version": "[VERSION]""#);
    settings
}

#[test]
fn list_shows_executions_newest_first_with_their_hosts_states() {
    let fleet = Fleet::on_minio();
    let first = fleet.publish("poem", &["web-1", "web-2", "db-1"], &["-m", "first try"]);
    // One host finishes (its agent runs it), the others have not started.
    let agent = Cmd::new(cattle_e2e::agent_bin())
        .envs(&fleet.minio.cattle_env())
        .env("CATTLE_STORE", &fleet.store_url)
        .args([
            "--host-id",
            "web-1",
            "--state-dir",
            fleet.ws.child("web-1").to_str().unwrap(),
            "--once",
        ])
        .run();
    agent.assert_success();
    let second = fleet.publish("web", &["web-1"], &[]);
    // Written by a bucket writer: a message that would clear the screen, and
    // entries that are not executions.
    fleet.forge("forged", &["web-2"], Some("\x1b[2Jall good\u{202e}"));
    fleet
        .bucket
        .put("executions/backup-of-yesterday/x", Vec::new());
    let orphan = Uuid::now_v7();
    fleet
        .bucket
        .put(&format!("executions/{orphan}/done/web-1"), Vec::new());

    let out = fleet.cattle(&["list"]);
    out.assert_success();
    list_snapshots().bind(|| insta::assert_snapshot!("list_table", out.snapshot()));
    assert!(!out.stdout.contains('\x1b') && !out.stdout.contains('\u{202e}'));
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert!(rows[4].starts_with(&second[..8]), "{}", out.stdout);
    assert!(rows[5].starts_with(&first[..8]), "{}", out.stdout);

    let json = fleet.cattle(&["list", "--json"]);
    json.assert_success();
    list_snapshots().bind(|| insta::assert_snapshot!("list_json", json.snapshot()));
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["executions"][4]["id"], first.as_str());
    assert_eq!(doc["executions"][4]["states"]["done"], 1);
    assert_eq!(doc["executions"][4]["states"]["pending"], 2);

    // Filters and the limit.
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        let out = fleet.cattle(&all);
        out.assert_success();
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        doc["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["entry"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--host", "db-1"]), [first.as_str()]);
    assert_eq!(ids(&["--state", "done"]), [first.as_str()]);
    assert_eq!(ids(&["--config-name", "WEB"]), [second.as_str()]);
    assert_eq!(ids(&["--host", "web-1", "--limit", "1"]), [second.as_str()]);
    assert!(ids(&["--since", "2000-01-01T00:00:00Z", "--publisher", "nobody"]).is_empty());
    assert_eq!(
        ids(&["--since", "1h"]).len(),
        4,
        "the entry without an ID has no time"
    );
    let limited = fleet.cattle(&["list", "--limit", "2"]);
    assert_eq!(limited.stdout.lines().count(), 3, "{limited}");
    assert!(limited.stderr.contains("showing the newest 2"), "{limited}");
}

#[test]
fn list_reads_only_the_manifests_it_shows_however_many_executions_there_are() {
    let fleet = Fleet::on_minio();
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(fleet.forge("many", &["a", "b"], None));
    }
    // Host `a` finished every one of them.
    for id in &ids {
        fleet
            .bucket
            .put(&format!("executions/{id}/done/a"), Vec::new());
    }
    let proxy = Proxy::to(fleet.minio.addr()).start();
    let out = Cmd::new(cattle_bin())
        .envs(&proxy.env(&fleet.minio.env()))
        .env("CATTLE_STORE", &fleet.store_url)
        .args(["list", "--limit", "20"])
        .run();
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 21, "{out}");
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains("1 done, 1 pending")
    );
    let requests = proxy.requests();
    eprintln!(
        "`cattle list --limit 20` of 300 executions: {} requests",
        requests.len()
    );
    let manifests = requests
        .iter()
        .filter(|r| r.contains("manifest.json"))
        .count();
    assert_eq!(manifests, 20, "{requests:#?}");
    // One listing of `executions/` (delimited), then for each execution shown
    // its manifest, one listing of DONE markers, the status of its one
    // unfinished host and one listing of conflicts.
    assert!(
        requests.len() <= 1 + 20 * 4,
        "{} requests: {requests:#?}",
        requests.len()
    );
    let whole = requests
        .iter()
        .filter(|r| r.contains("list-type=2") && !r.contains("delimiter"))
        .filter(|r| {
            r.contains("prefix=list%2Fexecutions%2F&") || r.ends_with("prefix=list%2Fexecutions%2F")
        })
        .count();
    assert_eq!(
        whole, 0,
        "no listing of every object under executions/: {requests:#?}"
    );
}

#[test]
fn commands_take_a_unique_prefix_of_an_execution_id() {
    let fleet = Fleet::on_minio();
    let first = fleet.publish("poem", &["web-1"], &[]);
    let second = fleet.publish("poem", &["web-2"], &[]);
    let unique = &second[..second.len() - 2];
    assert_ne!(&first[..unique.len()], unique);
    // Without hyphens, as they are in the ID too.
    let compact: String = unique.chars().filter(|c| *c != '-').collect();
    for id in [unique, compact.as_str()] {
        let status = fleet.cattle(&["status", id, "--json"]);
        let doc: serde_json::Value =
            serde_json::from_str(&status.stdout).unwrap_or_else(|e| panic!("{e}: {status}"));
        assert_eq!(doc["execution"]["id"], second.as_str());
    }
    fleet
        .cattle(&["cancel", unique, "--host", "web-2"])
        .assert_success();
    assert!(
        fleet
            .bucket
            .get(&format!("executions/{second}/cancel.json"))
            .is_some()
    );
    fleet.cattle(&["log", unique]).assert_success();

    // Both IDs start with the same four digits (the time they were published).
    let shared = &first[..4];
    let mut settings = snapshots();
    settings.add_filter(&format!("`{shared}`"), "`[PREFIX]`");
    let ambiguous = fleet.cattle(&["status", shared]);
    ambiguous.assert_status(1);
    settings.bind(|| insta::assert_snapshot!("list_prefix_ambiguous", ambiguous.snapshot()));
    assert!(ambiguous.stderr.contains(&first) && ambiguous.stderr.contains(&second));

    let none = fleet.cattle(&["clean", "ffffffff-f"]);
    none.assert_status(1);
    settings.bind(|| insta::assert_snapshot!("list_prefix_none", none.snapshot()));
    let bad = fleet.cattle(&["log", "ffff-ff"]);
    bad.assert_status(1);
    settings.bind(|| insta::assert_snapshot!("list_prefix_invalid", bad.snapshot()));

    fleet.cattle(&["clean", unique]).assert_success();
    assert!(
        fleet
            .bucket
            .get(&format!("executions/{second}/manifest.json"))
            .is_none()
    );
    assert!(
        fleet
            .bucket
            .get(&format!("executions/{first}/manifest.json"))
            .is_some()
    );
}

#[test]
fn publish_message_is_signed_bounded_and_hosts_can_come_from_stdin() {
    let fleet = Fleet::on_minio();
    let dir = fleet.config("poem");
    let dir = dir.to_str().unwrap();

    // Too long: refused before anything is uploaded.
    let long = "x".repeat(1025);
    let refused = fleet.cattle(&["publish", dir, "--hosts", "-", "-m", &long]);
    refused.assert_status(1);
    assert!(
        refused
            .stderr
            .contains("`--message` is 1025 bytes long; at most 1024"),
        "{refused}"
    );
    assert!(fleet.bucket.keys().is_empty(), "{:?}", fleet.bucket.keys());

    // Hosts from standard input; an error names `<stdin>` and the line.
    let bad = fleet
        .cmd()
        .args(["publish", dir, "--hosts", "-"])
        .stdin("web-1\nweb 2!\n")
        .run();
    bad.assert_status(1);
    snapshots().bind(|| insta::assert_snapshot!("list_hosts_stdin_error", bad.snapshot()));
    assert!(fleet.bucket.keys().is_empty());

    let out = fleet
        .cmd()
        .args([
            "publish",
            dir,
            "--hosts",
            "-",
            "--message",
            "rotate the poem",
        ])
        .stdin("web-1\n# a comment\nweb-2 role=db\n")
        .run();
    out.assert_success();
    let id = out.stdout.trim();
    let envelope = fleet
        .bucket
        .get(&format!("executions/{id}/manifest.json"))
        .unwrap();
    let envelope: Envelope = serde_json::from_slice(&envelope).unwrap();
    assert!(!envelope.signatures.is_empty());
    let manifest = envelope.manifest().unwrap();
    assert_eq!(manifest.message.as_deref(), Some("rotate the poem"));
    assert_eq!(manifest.publisher, "ops@example");
    assert_eq!(
        manifest.hosts,
        [HostId::new("web-1").unwrap(), HostId::new("web-2").unwrap()]
    );

    // Without CATTLE_PUBLISHER nor USER: the user's name from the password database.
    let out = Cmd::new(cattle_bin())
        .env_clear()
        .envs(&fleet.minio.cattle_env())
        .env("CATTLE_STORE", &fleet.store_url)
        .args(["publish", dir, "--hosts", "-"])
        .stdin("web-1\n")
        .run();
    out.assert_success();
    let id = out.stdout.trim();
    let envelope: Envelope = serde_json::from_slice(
        &fleet
            .bucket
            .get(&format!("executions/{id}/manifest.json"))
            .unwrap(),
    )
    .unwrap();
    let publisher = envelope.manifest().unwrap().publisher;
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .map_or_else(|| format!("uid {}", nix::unistd::getuid()), |u| u.name);
    assert!(publisher.starts_with(&format!("{user}@")), "{publisher}");
    assert!(!publisher.starts_with("unknown@"), "{publisher}");
}

/// A config whose one step records the execution on its host and fails on a
/// host while `<dir>/broken-<host>` exists; it uses the variable `host`, so
/// every host gets its own signed variables.
fn retry_config(fleet: &Fleet) -> PathBuf {
    let dir = fleet.ws.path().display().to_string();
    let path = fleet.ws.write(
        "flaky/cattle.toml",
        format!(
            "[[step]]\nfacility = \"command\"\nattempts = 1\nargv = [\"sh\", \"-c\", \
             \"echo $CATTLE_EXECUTION_ID >> {dir}/ran-{{{{ host }}}}; \
             test ! -e {dir}/broken-{{{{ host }}}}\"]\n"
        ),
    );
    path.parent().unwrap().to_path_buf()
}

impl Fleet {
    fn agent_once(&self, host: &str) -> Output {
        Cmd::new(cattle_e2e::agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args([
                "--host-id",
                host,
                "--state-dir",
                self.ws.child(format!("agents/{host}")).to_str().unwrap(),
                "--once",
            ])
            .run()
    }

    fn ran(&self, host: &str) -> Vec<String> {
        std::fs::read_to_string(self.ws.child(format!("ran-{host}")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn manifest(&self, id: &str) -> (Envelope, Manifest) {
        let bytes = self
            .bucket
            .get(&format!("executions/{id}/manifest.json"))
            .unwrap();
        let envelope: Envelope = serde_json::from_slice(&bytes).unwrap();
        let manifest = envelope.manifest().unwrap();
        (envelope, manifest)
    }
}

#[test]
fn retry_publishes_again_to_the_failed_hosts_only_and_signs_only_what_it_verified() {
    let fleet = Fleet::on_minio();
    let config = retry_config(&fleet);
    fleet.ws.write("broken-h2", "");
    let hosts = fleet.ws.write("hosts", "h1\nh2\nh3\n");
    let first = fleet.cattle(&[
        "publish",
        config.to_str().unwrap(),
        "--hosts",
        hosts.to_str().unwrap(),
    ]);
    first.assert_success();
    let first = first.stdout.trim().to_string();
    for host in ["h1", "h2", "h3"] {
        fleet.agent_once(host);
    }
    fleet.cattle(&["status", &first]).assert_status(3);
    let (_, old) = fleet.manifest(&first);
    assert!(old.vars, "the config has per-host variables");

    // The config directory is not needed: retry works from the store.
    std::fs::remove_dir_all(&config).unwrap();
    std::fs::remove_file(fleet.ws.child("broken-h2")).unwrap();
    let retried = fleet.cattle(&["retry", &first[..13]]);
    retried.assert_success();
    let second = retried.stdout.trim().to_string();
    assert_ne!(second, first);
    assert!(
        retried.stderr.contains(&format!(
            "retried execution {first} on 1 host (h2) as execution {second}"
        )),
        "{retried}"
    );
    let (envelope, new) = fleet.manifest(&second);
    assert!(!envelope.signatures.is_empty());
    assert_eq!(new.hosts, [HostId::new("h2").unwrap()]);
    assert_eq!(new.bundle, old.bundle);
    assert_eq!(
        new.message.as_deref(),
        Some(format!("retry of {first}").as_str())
    );
    assert!(new.version > old.version);
    assert!(
        fleet
            .bucket
            .get(&format!("bundles/{}.refs/{second}", new.bundle.sha256))
            .is_some()
    );

    for host in ["h1", "h2", "h3"] {
        fleet.agent_once(host).assert_success();
    }
    assert_eq!(fleet.ran("h1"), [first.as_str()]);
    assert_eq!(fleet.ran("h3"), [first.as_str()]);
    assert_eq!(fleet.ran("h2"), [first.as_str(), second.as_str()]);
    fleet.cattle(&["status", &second]).assert_status(0);

    // Nothing left to retry: its own exit code, and nothing published.
    let nothing = fleet.cattle(&["retry", &second]);
    nothing.assert_status(6);
    assert!(
        nothing.stderr.contains(&format!(
            "execution {second} has no host in ERROR or HALTED or CANCELLED"
        )),
        "{nothing}"
    );
    let before = fleet.bucket.list("executions/").len();
    let pending = fleet.cattle(&["retry", &first, "--state", "done", "-m", "again", "--json"]);
    pending.assert_success();
    let doc: serde_json::Value = serde_json::from_str(&pending.stdout).expect("one JSON object");
    assert_eq!(doc["schema"], "cattle.retry.v1");
    assert_eq!(doc["retry_of"], first.as_str());
    assert_eq!(doc["retried_hosts"], serde_json::json!(["h1", "h3"]));
    assert_eq!(doc["hosts"], 2);
    let third = doc["id"].as_str().unwrap().to_string();
    assert_eq!(
        fleet.manifest(&third).1.hosts,
        [HostId::new("h1").unwrap(), HostId::new("h3").unwrap()]
    );
    assert_eq!(fleet.manifest(&third).1.message.as_deref(), Some("again"));
    assert!(fleet.bucket.list("executions/").len() > before);

    // A bucket writer without the key changes the old manifest: refused,
    // nothing signed.
    let key = format!("executions/{first}/manifest.json");
    let original = fleet.bucket.get(&key).unwrap();
    let mut tampered: Envelope = serde_json::from_slice(&original).unwrap();
    tampered.payload = tampered.payload.replace("\"h2\"", "\"h9\"");
    fleet
        .bucket
        .put(&key, serde_json::to_vec(&tampered).unwrap());
    let executions = fleet.bucket.list("executions/").len();
    let refused = fleet.cattle(&["retry", &first, "--state", "pending"]);
    refused.assert_status(1);
    assert!(
        refused
            .stderr
            .contains("its manifest in the store does not verify with key")
            && refused
                .stderr
                .contains("it was changed after it was signed")
            && refused
                .stderr
                .contains("hint: publish the config again instead: `cattle publish DIR --hosts …`"),
        "{refused}"
    );
    // The same, unsigned.
    let mut unsigned = tampered.clone();
    unsigned.signatures.clear();
    fleet
        .bucket
        .put(&key, serde_json::to_vec(&unsigned).unwrap());
    let refused = fleet.cattle(&["retry", &first]);
    refused.assert_status(1);
    assert!(refused.stderr.contains("(it is not signed)"), "{refused}");
    assert_eq!(fleet.bucket.list("executions/").len(), executions);

    // The manifest as it was, but h1's signed variables changed in the store.
    fleet.bucket.put(&key, original);
    fleet.ws.write("broken-h1", "");
    let vars_key = format!("executions/{first}/vars/h1");
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&fleet.bucket.get(&vars_key).unwrap()).unwrap();
    let vars = &mut envelope["payload"];
    *vars = vars.as_str().unwrap().replace("\"h1\"", "\"h2\"").into();
    fleet
        .bucket
        .put(&vars_key, serde_json::to_vec(&envelope).unwrap());
    let refused = fleet.cattle(&["retry", &first, "--state", "done"]);
    refused.assert_status(1);
    assert!(
        refused.stderr.contains("the variables of host `h1`")
            && refused
                .stderr
                .contains("it was changed after it was signed"),
        "{refused}"
    );
    assert_eq!(fleet.bucket.list("executions/").len(), executions);
}

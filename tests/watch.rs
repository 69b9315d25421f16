//! The operator's views of an execution, end to end: `cattle log` of several
//! hosts, with the real `cattle` and `cattle-agent` binaries against a real
//! MinIO.

use cattle_e2e::{
    Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, shell_step, snapshots,
};

const BUCKET: &str = "cattle";
const PREFIX: &str = "watch";

/// A MinIO with an empty bucket, a workspace, and the commands to drive them.
struct Site {
    minio: Minio,
    ws: Workspace,
    _bucket: Bucket,
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
            _bucket: bucket,
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

    /// One poll of `host`'s agent.
    fn agent_once(&self, host: &str) -> Output {
        Cmd::new(agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", &self.store_url)
            .args(self.agent_args(host))
            .arg("--once")
            .run()
    }
}

/// Snapshot settings for this file: also the temporary directories of the
/// harness, the version (a time in ms) and the signing key's ID.
fn settings() -> insta::Settings {
    let mut settings = snapshots();
    for (pattern, replacement) in [
        (r"/tmp/cattle-(e2e|minio)-[A-Za-z0-9]+", "[TMP]"),
        (r"version \d+", "version [VERSION]"),
        (r"trusted key [0-9a-f]+", "trusted key [KEY]"),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings
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

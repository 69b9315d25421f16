//! The operator's view of a large execution, end to end: the real `cattle` binary
//! against a real MinIO, with hosts' reports written straight into the bucket as their
//! agents would write them (a status document, then for DONE the marker), so that a
//! fleet of thousands needs no agent.
//!
//! `cattle status` lists hosts that need attention first and names them in its summary,
//! `--state` shows only some states, `--json` is the versioned `cattle.status.v1`
//! document, and finding the one failing host among 2,000 takes a handful of requests.
//! Errors say each cause once.

use std::time::{Duration, Instant};

use cattle_core::store::{Condition, Store};
use cattle_e2e::{Bucket, Cmd, Minio, Output, Proxy, Workspace, cattle_bin, signing_env};

const BUCKET: &str = "cattle";

/// A MinIO with an execution of a two-step config published to `hosts`, none of
/// which has reported yet.
struct Site {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
    id: String,
}

impl Site {
    fn new(hosts: &[String]) -> Site {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, "");
        bucket.create();
        let ws = Workspace::new();
        let config = ws.write(
            "config/cattle.toml",
            "[[step]]\nfacility = \"command\"\nargv = [\"true\"]\n\n\
             [[step]]\nfacility = \"command\"\nargv = [\"false\"]\n",
        );
        let hosts_file = ws.write("hosts", hosts.join("\n") + "\n");
        let mut site = Site {
            minio,
            ws,
            bucket,
            id: String::new(),
        };
        let out = site.cattle(&[
            "publish",
            &config.parent().unwrap().display().to_string(),
            "--hosts",
            &hosts_file.display().to_string(),
        ]);
        out.assert_success();
        site.id = out.stdout.lines().last().unwrap().trim().to_string();
        site
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.minio.cattle_env();
        env.push(("CATTLE_STORE".to_string(), format!("s3://{BUCKET}")));
        env.extend(signing_env(self.ws.path()));
        env
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin()).envs(&self.env()).args(args).run()
    }

    /// Every host of `reports` reports as its agent would: its status document and,
    /// when DONE, then its DONE marker; 64 writes in flight.
    fn report(&self, reports: Vec<(String, serde_json::Value)>) {
        let id = self.id.clone();
        let store = self.bucket.store.clone();
        self.bucket.block(async move {
            let mut running = tokio::task::JoinSet::new();
            for (host, status) in reports {
                while running.len() >= 64 {
                    running.join_next().await.unwrap().unwrap();
                }
                let (store, id) = (store.clone(), id.clone());
                running.spawn(async move { write_report(&store, &id, &host, status).await });
            }
            while let Some(done) = running.join_next().await {
                done.unwrap();
            }
        });
    }
}

async fn write_report(store: &Store, id: &str, host: &str, status: serde_json::Value) {
    let done = status["state"] == "DONE";
    let key = format!("executions/{id}/hosts/{host}/status.json");
    let bytes = serde_json::to_vec(&status).unwrap();
    store.put(&key, bytes, Condition::Always).await.unwrap();
    if done {
        let marker = format!("executions/{id}/done/{host}");
        store
            .put(&marker, Vec::new(), Condition::Always)
            .await
            .unwrap();
    }
}

/// A status document as an agent writes it: `state` at step `step` of two,
/// with `error`, and the results of the steps that ended.
fn status(
    id: &str,
    host: &str,
    state: &str,
    step: usize,
    error: Option<&str>,
    results: &[&str],
) -> serde_json::Value {
    let time = "2025-01-31T12:00:00.000Z";
    serde_json::json!({
        "format": 1, "execution": id, "host": host, "state": state, "steps": 2,
        "step": {"number": step, "facility": "command",
                 "description": format!("command `{}` has run", ["true", "false"][step - 1]),
                 "attempt": if error.is_some() { 3 } else { 1 }, "attempts": 3},
        "started": time, "updated": time,
        "finished": if state == "PROGRESS" { None } else { Some(time) },
        "error": error, "seq": 7, "agent_version": "0.1.0", "results": results,
    })
}

fn done(id: &str, host: &str) -> (String, serde_json::Value) {
    let status = status(id, host, "DONE", 2, None, &["unchanged", "changed"]);
    (host.to_string(), status)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A fleet of twelve: eight DONE, one ERROR (`web-7`, with a hostile byte in its
/// error), one CANCELLED, one in PROGRESS and one that never reported.
fn small_site() -> Site {
    let hosts = names("web", 12);
    let site = Site::new(&hosts);
    let id = &site.id;
    let mut reports: Vec<(String, serde_json::Value)> = Vec::new();
    for host in &hosts {
        let report = match host.as_str() {
            "web-7" => (
                host.clone(),
                status(
                    id,
                    host,
                    "ERROR",
                    2,
                    Some("step 2 failed: `false` exited with status 1\x1b[2J\r"),
                    &["unchanged", "failed"],
                ),
            ),
            "web-3" => (
                host.clone(),
                status(
                    id,
                    host,
                    "CANCELLED",
                    1,
                    Some("cancelled before step 2"),
                    &["changed"],
                ),
            ),
            "web-11" => (
                host.clone(),
                status(id, host, "PROGRESS", 2, None, &["unchanged"]),
            ),
            "web-12" => continue,
            _ => done(id, host),
        };
        reports.push(report);
    }
    site.report(reports);
    site
}

fn snapshot(name: &str, out: &Output) {
    let mut settings = cattle_e2e::snapshots();
    // What varies with the run and the machine.
    settings.add_filter(r#""version": \d+"#, r#""version": [VERSION]"#);
    settings.add_filter(r#""publisher": "[^"]*""#, r#""publisher": "[PUBLISHER]""#);
    // The SDK's warnings about the harness's empty AWS config files.
    settings.add_filter(r"(?m)^.* WARN aws_runtime::env_config::source: .*\n", "");
    settings.bind(|| insta::assert_snapshot!(name, out.snapshot()));
}

#[test]
fn status_lists_the_failing_host_first_and_names_it_in_the_summary() {
    let site = small_site();
    let out = site.cattle(&["status", &site.id]);
    out.assert_status(3);
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert!(rows[1].starts_with("web-7 "), "{out}");
    assert!(!out.stdout.contains('\x1b') && !out.stdout.contains('\r'));
    snapshot("triage_status_table", &out);

    // Only some states: the summary still counts every host.
    let errors = site.cattle(&["status", &site.id, "--state", "ERROR"]);
    errors.assert_status(3);
    assert_eq!(errors.stdout.lines().count(), 3, "{errors}");
    snapshot("triage_status_state_error", &errors);
    let several = site.cattle(&["status", &site.id, "--state", "pending,Cancelled"]);
    let hosts: Vec<&str> = several
        .stdout
        .lines()
        .skip(1)
        .take(2)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(hosts, ["web-3", "web-12"], "{several}");
    let repeated = site.cattle(&[
        "status",
        &site.id,
        "--state",
        "pending",
        "--state",
        "cancelled",
    ]);
    assert_eq!(repeated.stdout, several.stdout);
    let unknown = site.cattle(&["status", &site.id, "--state", "failed"]);
    unknown.assert_status(2);
    snapshot("triage_status_unknown_state", &unknown);

    // `--steps` adds every host's step results.
    let steps = site.cattle(&["status", &site.id, "--steps"]);
    steps.assert_status(3);
    snapshot("triage_status_steps", &steps);

    // `--wait` ends at its timeout (web-11 and web-12 never finish) with the filter.
    let waited = site.cattle(&[
        "status",
        &site.id,
        "--wait",
        "--timeout",
        "1",
        "--state",
        "progress",
    ]);
    waited.assert_status(3);
    assert_eq!(waited.stdout.lines().count(), 3, "{waited}");
    assert!(waited.stdout.lines().nth(1).unwrap().starts_with("web-11 "));
}

#[test]
fn status_json_is_the_versioned_document() {
    let site = small_site();
    let out = site.cattle(&["status", &site.id, "--json", "--state", "error,progress"]);
    out.assert_status(3);
    assert!(
        out.stdout
            .starts_with("{\n  \"schema\": \"cattle.status.v1\",\n"),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["summary"]["states"]["done"], 8);
    assert_eq!(json["summary"]["shown"], 2);
    assert_eq!(
        json["summary"]["needs_attention"],
        serde_json::json!(["web-3", "web-7"])
    );
    assert!(!out.stdout.contains('\x1b'));
    snapshot("triage_status_json", &out);
}

#[test]
fn finding_the_one_failing_host_among_2000_takes_a_few_requests() {
    const HOSTS: usize = 2000;
    let hosts: Vec<String> = (0..HOSTS).map(|i| format!("web-{i:04}")).collect();
    let site = Site::new(&hosts);
    let failing = "web-1234";
    let reports = hosts
        .iter()
        .map(|host| {
            if host == failing {
                let error = Some("step 2 failed: `false` exited with status 1");
                let status = status(&site.id, host, "ERROR", 2, error, &["unchanged", "failed"]);
                (host.clone(), status)
            } else {
                done(&site.id, host)
            }
        })
        .collect();
    site.report(reports);

    // Timed straight against MinIO; the requests counted by a proxy in between.
    let proxy = Proxy::to(site.minio.addr()).start();
    let env = proxy.env(&site.env());
    let run = |args: &[&str]| {
        let started = Instant::now();
        let direct = site.cattle(args);
        let took = started.elapsed();
        let before = proxy.requests().len();
        let out = Cmd::new(cattle_bin()).envs(&env).args(args).run();
        assert_eq!(out.stdout, direct.stdout);
        (out, proxy.requests().len() - before, took)
    };
    let (out, requests, took) = run(&["status", &site.id]);
    out.assert_status(3);
    assert!(
        out.stdout
            .contains("\n2000 hosts: 1999 DONE, 1 ERROR (web-1234)\n"),
        "{out}"
    );
    assert!(out.stdout.lines().nth(1).unwrap().starts_with("web-1234 "));
    // The manifest, two pages of DONE markers, the conflicts, one status document.
    assert!(
        requests <= 8,
        "{requests} requests:\n{:#?}",
        proxy.requests()
    );
    let (errors, error_requests, error_took) = run(&["status", &site.id, "--state", "error"]);
    errors.assert_status(3);
    assert_eq!(errors.stdout.lines().count(), 3, "{errors}");
    let (steps, steps_requests, steps_took) = run(&["status", &site.id, "--steps"]);
    steps.assert_status(3);
    assert!(steps_requests > HOSTS, "{steps_requests}");
    assert!(
        steps
            .stdout
            .contains("\nsteps: 1999 changed, 2000 unchanged, 1 failed\n"),
        "{steps}"
    );
    eprintln!(
        "cattle status of {HOSTS} hosts, one ERROR: {requests} requests, {took:?}; \
         --state error: {error_requests} requests, {error_took:?}; \
         --steps: {steps_requests} requests, {steps_took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn an_error_says_each_cause_once_and_its_hint() {
    let site = Site::new(&names("web", 1));
    let config = site.ws.child("config").display().to_string();
    let hosts = site.ws.child("hosts").display().to_string();
    let missing = site.cattle(&[
        "publish",
        &config,
        "--hosts",
        &hosts,
        "--key",
        "/nonexistent/publisher.key",
    ]);
    missing.assert_status(1);
    assert_eq!(
        missing.stderr.matches("No such file or directory").count(),
        1
    );
    snapshot("triage_error_missing_key", &missing);

    let no_bucket = Cmd::new(cattle_bin())
        .envs(&site.env())
        .env("CATTLE_STORE", "s3://no-such-bucket")
        .args(["status", &site.id])
        .run();
    no_bucket.assert_status(1);
    assert!(no_bucket.stderr.contains("\nhint: "), "{no_bucket}");
    snapshot("triage_error_no_bucket", &no_bucket);
}

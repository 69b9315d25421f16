//! What watching a large execution costs the store: the real `cattle status --watch`
//! against a real MinIO through a counting [`Proxy`], with 2,000 hosts' reports written
//! straight into the bucket as their agents would write them (a status document, then for
//! DONE the marker), so that the fleet needs no agent.
//!
//! Each poll reads a host's status document only once it changed: the requests of a poll
//! are a few listings and the manifest, plus one read per host that wrote since the poll
//! before, never one per running host.

use std::time::Duration;

use cattle_core::store::{Condition, Store};
use cattle_e2e::{Bucket, Cmd, Minio, Proxy, Workspace, cattle_bin, signing_env};

const BUCKET: &str = "cattle";
const HOSTS: usize = 2000;
const FAILING: &str = "web-1234";

/// A status document as an agent writes it: `state` at `step` of two.
fn status(id: &str, host: &str, state: &str, step: usize) -> Vec<u8> {
    let time = "2025-01-31T12:00:00.000Z";
    let error = (state == "ERROR").then_some("step 2 failed: `false` exited with status 1");
    let results: &[&str] = match (state, step) {
        ("PROGRESS", 1) => &[],
        ("PROGRESS", _) => &["unchanged"],
        ("ERROR", _) => &["unchanged", "failed"],
        _ => &["unchanged", "changed"],
    };
    serde_json::to_vec(&serde_json::json!({
        "format": 1, "execution": id, "host": host, "state": state, "steps": 2,
        "step": {"number": step, "facility": "command",
                 "description": format!("command `{}` has run", ["true", "false"][step - 1]),
                 "attempt": 1, "attempts": 3},
        "started": time, "updated": time,
        "finished": if state == "PROGRESS" { None } else { Some(time) },
        "error": error, "seq": step, "agent_version": "0.1.0", "results": results,
    }))
    .unwrap()
}

/// Each host of `hosts` reports `state` at `step` as its agent would: its status
/// document, then for DONE its marker; 64 writes in flight.
fn report(bucket: &Bucket, id: &str, hosts: &[String], state: &str, step: usize) {
    let writes = hosts.iter().map(|host| {
        let (store, id, host) = (bucket.store.clone(), id.to_string(), host.clone());
        let state = if host == FAILING && state == "DONE" {
            "ERROR"
        } else {
            state
        };
        let (bytes, done) = (status(&id, &host, state, step), state == "DONE");
        async move { write_report(&store, &id, &host, bytes, done).await }
    });
    bucket.block(async move {
        let mut running = tokio::task::JoinSet::new();
        for write in writes {
            while running.len() >= 64 {
                running.join_next().await.unwrap().unwrap();
            }
            running.spawn(write);
        }
        while let Some(done) = running.join_next().await {
            done.unwrap();
        }
    });
}

async fn write_report(store: &Store, id: &str, host: &str, bytes: Vec<u8>, done: bool) {
    let key = format!("executions/{id}/hosts/{host}/status.json");
    store.put(&key, bytes, Condition::Always).await.unwrap();
    if done {
        let marker = format!("executions/{id}/done/{host}");
        store
            .put(&marker, Vec::new(), Condition::Always)
            .await
            .unwrap();
    }
}

/// Hosts whose status documents were written between two places in the proxy's
/// request log: the log's length when the writes began and when they ended.
struct Batch {
    began: usize,
    ended: usize,
    hosts: usize,
}

#[test]
fn watching_2000_running_hosts_reads_only_the_status_documents_that_changed() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, "");
    bucket.create();
    let ws = Workspace::new();
    let config = ws.write(
        "config/cattle.toml",
        "[[step]]\nfacility = \"command\"\nargv = [\"true\"]\n\n\
         [[step]]\nfacility = \"command\"\nargv = [\"false\"]\n",
    );
    let hosts: Vec<String> = (0..HOSTS).map(|i| format!("web-{i:04}")).collect();
    let hosts_file = ws.write("hosts", hosts.join("\n") + "\n");
    let mut env = minio.cattle_env();
    env.push(("CATTLE_STORE".to_string(), format!("s3://{BUCKET}")));
    env.extend(signing_env(ws.path()));
    let published = Cmd::new(cattle_bin())
        .envs(&env)
        .args([
            "publish",
            &config.parent().unwrap().display().to_string(),
            "--hosts",
            &hosts_file.display().to_string(),
        ])
        .run();
    published.assert_success();
    let id = published.stdout.lines().last().unwrap().trim().to_string();
    // Every host is running step 1.
    report(&bucket, &id, &hosts, "PROGRESS", 1);

    let proxy = Proxy::to(minio.addr()).start();
    let mut watch = Cmd::new(cattle_bin())
        .envs(&proxy.env(&env))
        .args(["status", &id, "--watch", "--timeout", "300"])
        .spawn();
    let manifest = format!("GET /{BUCKET}/executions/{id}/manifest.json");
    let polls_started = || {
        proxy
            .requests()
            .iter()
            .filter(|r| r.starts_with(&manifest))
            .count()
    };
    // The first poll reads every host; the changes start with the second.
    while polls_started() < 2 {
        assert!(watch.try_status().is_none(), "{}", watch.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ten batches: each moves 200 hosts to step 2, and those of the batch before to
    // DONE (web-1234 to ERROR); then the last 200 finish.
    let mut batches = Vec::new();
    let mut write = |hosts: &[String], state: &str, step: usize| {
        let began = proxy.requests().len();
        report(&bucket, &id, hosts, state, step);
        let ended = proxy.requests().len();
        batches.push(Batch {
            began,
            ended,
            hosts: hosts.len(),
        });
        std::thread::sleep(Duration::from_millis(400));
    };
    let batch = HOSTS / 10;
    for (i, chunk) in hosts.chunks(batch).enumerate() {
        write(chunk, "PROGRESS", 2);
        if i > 0 {
            write(&hosts[(i - 1) * batch..i * batch], "DONE", 2);
        }
    }
    write(&hosts[HOSTS - batch..], "DONE", 2);

    let out = watch
        .wait_timeout(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("the watch did not end:\n{}", watch.stderr()));
    out.assert_status(3);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{FAILING} ")) && l.contains(" ERROR ")),
        "{out}"
    );
    assert!(
        out.stdout
            .ends_with("2000 hosts: 1999 DONE, 1 ERROR (web-1234)\n"),
        "{}",
        &out.stdout[out.stdout.len().saturating_sub(500)..]
    );

    // The request log cut into polls, each from its read of the manifest.
    let requests = proxy.requests();
    let mut starts: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].starts_with(&manifest))
        .collect();
    starts.push(requests.len());
    let polls: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    assert!(polls.len() >= 3, "{} polls", polls.len());
    let reads = |(from, to): (usize, usize)| {
        requests[from..to]
            .iter()
            .filter(|r| r.split('?').next().unwrap().ends_with("/status.json"))
            .count()
    };
    // The first poll lists the hosts' objects and reads each one's status.
    assert!(reads(polls[0]) <= HOSTS, "{}", reads(polls[0]));
    // The manifest, the DONE markers and the hosts' objects (two pages each at most),
    // the conflicts.
    const LISTINGS: usize = 6;
    let mut summary = Vec::new();
    for (n, window) in polls.windows(2).enumerate() {
        let (before, (from, to)) = (window[0], window[1]);
        // Hosts this poll may not have known of yet: those written after the poll
        // before began and before this one ended.
        let changed: usize = batches
            .iter()
            .filter(|b| b.ended > before.0 && b.began < to)
            .map(|b| b.hosts)
            .sum();
        let count = to - from;
        summary.push(format!("{count} ({} reads)", reads((from, to))));
        assert!(
            count <= LISTINGS + changed,
            "poll {}: {count} requests, {changed} hosts changed:\n{:#?}",
            n + 2,
            &requests[from..to]
        );
    }
    eprintln!(
        "{} polls of {HOSTS} hosts; requests per poll after the first: {}",
        polls.len(),
        summary.join(", ")
    );
}

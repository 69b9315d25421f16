//! `cattle store check` against a real MinIO, and against MinIO behind a
//! proxy that answers as a server ignoring conditions would (as Garage 2.5
//! does with `If-None-Match: *` and `If-Match` on writes, and as a caching
//! proxy may with `If-None-Match` on reads): each missing feature is named
//! with what it breaks, and the command fails. The same check runs before a
//! store's first use: `cattle publish` refuses such a store before it uploads
//! anything, the agent refuses to poll it (exit 78), `check-config` reports
//! it; a pass is remembered (the publisher's cache, the agent's state
//! directory) and costs nothing afterwards.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cattle_e2e::{
    Bucket, Cmd, Minio, Output, Proxy, Verdict, Workspace, agent_bin, cattle_bin, http_response,
};
use serde_json::Value;

const BUCKET: &str = "cattle";

fn check(env: &[(String, String)]) -> (Output, Value) {
    let out = Cmd::new(cattle_bin())
        .envs(env)
        .env("CATTLE_STORE", format!("s3://{BUCKET}/check"))
        .env("CATTLE_LOG", "error")
        .args(["store", "check", "--json"])
        .run();
    let json = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    (out, json)
}

fn failed(json: &Value) -> Vec<String> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["feature"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn minio_honours_everything_cattle_relies_on_and_keeps_nothing_of_the_check() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, "check/");
    bucket.create();
    let (out, json) = check(&minio.cattle_env());
    assert_eq!(out.status, 0, "{out}");
    assert_eq!(json["schema"], "cattle.store-check.v1");
    assert_eq!(json["passed"], true, "{json:#}");
    assert_eq!(json["checks"].as_array().unwrap().len(), 5);
    assert_eq!(bucket.keys(), Vec::<String>::new(), "the probe was left");
    let table = Cmd::new(cattle_bin())
        .envs(&minio.cattle_env())
        .env("CATTLE_STORE", format!("s3://{BUCKET}/check"))
        .args(["store", "check"])
        .run();
    table.assert_success();
    assert!(
        table
            .stdout
            .contains("  ok    create-only write (If-None-Match: *)\n"),
        "{table}"
    );
    assert!(table.stdout.ends_with("all 5 checks passed\n"), "{table}");
}

/// MinIO behind a proxy that, while `bad` is set, answers as a server that
/// ignores conditional writes does (as Garage 2.5 does): the first
/// conditional write goes through; every later one is answered 200.
fn ignoring_conditional_writes(minio: &Minio, bad: Arc<AtomicBool>) -> Proxy {
    let conditional = Arc::new(AtomicUsize::new(0));
    Proxy::to(minio.addr())
        .rewrite(move |request| {
            let is_conditional = request.method == "PUT"
                && (request.header("if-none-match").is_some()
                    || request.header("if-match").is_some());
            if bad.load(Ordering::SeqCst)
                && is_conditional
                && conditional.fetch_add(1, Ordering::SeqCst) > 0
            {
                Verdict::Respond(http_response(200, "OK", &[("ETag", "\"ignored\"")], b""))
            } else {
                Verdict::Forward
            }
        })
        .start()
}

#[test]
fn a_store_that_ignores_conditional_writes_is_refused_naming_what_it_breaks() {
    let minio = Minio::start();
    Bucket::open(&minio, BUCKET, "check/").create();
    let proxy = ignoring_conditional_writes(&minio, Arc::new(AtomicBool::new(true)));
    let (out, json) = check(&proxy.env(&minio.cattle_env()));
    assert_eq!(out.status, 1, "{out}");
    assert_eq!(json["passed"], false);
    let failed = failed(&json);
    assert!(
        failed.starts_with(&[
            "create-only write (If-None-Match: *)".to_string(),
            "compare-and-swap write (If-Match)".to_string()
        ]),
        "{json:#}"
    );
    let create = &json["checks"][0]["problem"];
    assert!(
        create
            .as_str()
            .unwrap()
            .contains("two publishers could both write one manifest"),
        "{json:#}"
    );
    assert!(
        out.stderr
            .contains("does not honour what Cattle relies on; do not use it"),
        "{out}"
    );
}

#[test]
fn a_store_that_answers_a_conditional_read_in_full_is_named() {
    let minio = Minio::start();
    Bucket::open(&minio, BUCKET, "check/").create();
    let proxy = Proxy::to(minio.addr())
        .rewrite(|request| {
            if request.method == "GET" && request.header("if-none-match").is_some() {
                Verdict::Respond(http_response(200, "OK", &[("ETag", "\"other\"")], b"4"))
            } else {
                Verdict::Forward
            }
        })
        .start();
    let (out, json) = check(&proxy.env(&minio.cattle_env()));
    assert_eq!(out.status, 1, "{out}");
    assert_eq!(
        failed(&json),
        ["conditional read (If-None-Match: ETag)"],
        "{json:#}"
    );
    assert!(
        json["checks"][2]["problem"]
            .as_str()
            .unwrap()
            .contains("each idle poll would download the whole inbox"),
        "{json:#}"
    );
}

/// A listing that misses objects (distributed MinIO, after a node came back,
/// for objects overwritten meanwhile): `cattle clean` deletes by name every
/// object the manifest says may exist, so nothing is left behind.
#[test]
fn clean_deletes_what_the_manifest_names_even_when_a_listing_misses_it() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, "check/");
    bucket.create();
    let ws = cattle_e2e::Workspace::new();
    ws.write("config/cattle.toml", cattle_e2e::shell_step("echo hello"));
    let hosts = ws.write("hosts", "h1\nh2\n");
    let cattle = |env: &[(String, String)], args: &[&str]| {
        Cmd::new(cattle_bin())
            .envs(env)
            .env("CATTLE_STORE", format!("s3://{BUCKET}/check"))
            .env("CATTLE_LOG", "error")
            .args(args)
            .run()
    };
    let published = cattle(
        &minio.cattle_env(),
        &[
            "publish",
            &ws.child("config").display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ],
    );
    published.assert_success();
    let id = published.stdout.lines().last().unwrap().trim().to_string();
    for host in ["h1", "h2"] {
        Cmd::new(cattle_e2e::agent_bin())
            .envs(&minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/check"))
            .env("CATTLE_LOG", "error")
            .args(["--host-id", host, "--once", "--state-dir"])
            .arg(ws.child(format!("agents/{host}")))
            .run()
            .assert_success();
    }
    let before = bucket.list(&format!("executions/{id}/"));
    assert!(
        before.len() >= 7,
        "status, log and DONE of each host: {before:#?}"
    );
    // Every listing of the execution's objects comes back empty.
    let proxy = Proxy::hiding_listing(
        minio.addr(),
        BUCKET,
        format!("prefix=check%2Fexecutions%2F{id}%2F"),
    );
    let clean = cattle(&proxy.env(&minio.cattle_env()), &["clean", &id]);
    clean.assert_success();
    let after = bucket.list(&format!("executions/{id}/"));
    assert_eq!(after, Vec::<String>::new(), "left behind: {clean}");
}

/// Requests through `proxy` since the `from`th that touched a self-test probe
/// (the publishers' `selftest/` or a host's `hosts/<host>/selftest/`).
fn selftest_requests(proxy: &Proxy, from: usize) -> Vec<String> {
    proxy.requests()[from..]
        .iter()
        .filter(|r| r.contains("/selftest/") || r.contains("selftest%2F"))
        .cloned()
        .collect()
}

/// The files of the publisher's memory of passed stores under `cache`.
fn remembered(cache: &Path) -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(cache.join("cattle/store-check")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect()
}

/// A one-step config and a hosts file in `ws`: the arguments of `publish`.
fn publish_args(ws: &Workspace, hosts: &str) -> Vec<String> {
    ws.write("config/cattle.toml", cattle_e2e::shell_step("echo hello"));
    let file = ws.write("hosts", format!("{hosts}\n"));
    vec![
        "publish".to_string(),
        ws.child("config").display().to_string(),
        "--hosts".to_string(),
        file.display().to_string(),
    ]
}

fn cattle(env: &[(String, String)], cache: &Path, args: &[String]) -> Output {
    Cmd::new(cattle_bin())
        .envs(env)
        .env("CATTLE_STORE", format!("s3://{BUCKET}/check"))
        .env("CATTLE_LOG", "error")
        .env("XDG_CACHE_HOME", cache)
        .args(args)
        .run()
}

#[test]
fn publish_to_a_store_that_ignores_conditional_writes_is_refused_before_any_upload() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, "check/");
    bucket.create();
    let ws = Workspace::new();
    let cache = ws.child("cache");
    let proxy = ignoring_conditional_writes(&minio, Arc::new(AtomicBool::new(true)));
    let out = cattle(
        &proxy.env(&minio.cattle_env()),
        &cache,
        &publish_args(&ws, "h1"),
    );
    cattle_e2e::snapshots().bind(|| {
        insta::assert_snapshot!("store_check_publish_refused", out.snapshot());
    });
    assert_eq!(out.status, 1, "{out}");
    // Only the check's own requests reached the store, and it left nothing.
    assert_eq!(bucket.keys(), Vec::<String>::new());
    let checked = selftest_requests(&proxy, 0);
    assert!(!checked.is_empty());
    let other: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| !checked.contains(r))
        .collect();
    assert_eq!(other, Vec::<String>::new(), "{out}");
    assert_eq!(remembered(&cache), Vec::<Value>::new());
}

#[test]
fn a_store_that_passed_is_checked_again_only_by_cattle_store_check() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, "check/");
    bucket.create();
    let ws = Workspace::new();
    let cache = ws.child("cache");
    let bad = Arc::new(AtomicBool::new(false));
    let proxy = ignoring_conditional_writes(&minio, bad.clone());
    let env = proxy.env(&minio.cattle_env());
    let publish = publish_args(&ws, "h1");

    cattle(&env, &cache, &publish).assert_success();
    assert!(!selftest_requests(&proxy, 0).is_empty());
    let memory = remembered(&cache);
    assert_eq!(memory.len(), 1, "{memory:?}");
    assert_eq!(
        memory[0]["store"],
        format!("s3://{BUCKET}/check/ at {}", proxy.endpoint())
    );
    assert_eq!(memory[0]["cattle_version"], env!("CARGO_PKG_VERSION"));

    // The second publish asks nothing of the store for the check.
    let before = proxy.requests().len();
    cattle(&env, &cache, &publish).assert_success();
    assert_eq!(selftest_requests(&proxy, before), Vec::<String>::new());

    // Another version of Cattle checks again.
    let file = std::fs::read_dir(cache.join("cattle/store-check"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let older = std::fs::read_to_string(&file)
        .unwrap()
        .replace(env!("CARGO_PKG_VERSION"), "0.0.1");
    std::fs::write(&file, older).unwrap();
    let before = proxy.requests().len();
    cattle(&env, &cache, &publish).assert_success();
    assert!(!selftest_requests(&proxy, before).is_empty());
    assert_eq!(
        remembered(&cache)[0]["cattle_version"],
        env!("CARGO_PKG_VERSION")
    );

    // `cattle store check` always checks; a failure forgets the pass, and
    // the next publish checks again and is refused.
    bad.store(true, Ordering::SeqCst);
    let args = ["store", "check"].map(String::from);
    let before = proxy.requests().len();
    let out = cattle(&env, &cache, &args);
    assert_eq!(out.status, 1, "{out}");
    assert!(!selftest_requests(&proxy, before).is_empty());
    assert_eq!(remembered(&cache), Vec::<Value>::new());
    let executions = bucket.list("executions/").len();
    let out = cattle(&env, &cache, &publish);
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stderr
            .contains("  create-only write (If-None-Match: *): a second create-only write"),
        "{out}"
    );
    assert_eq!(bucket.list("executions/").len(), executions, "{out}");

    // Once it passes again, `cattle store check` remembers it.
    bad.store(false, Ordering::SeqCst);
    cattle(&env, &cache, &args).assert_success();
    assert_eq!(remembered(&cache).len(), 1);
    let before = proxy.requests().len();
    cattle(&env, &cache, &publish).assert_success();
    assert_eq!(selftest_requests(&proxy, before), Vec::<String>::new());
}

fn agent(env: &[(String, String)], state: &Path) -> Cmd {
    Cmd::new(agent_bin())
        .envs(env)
        .env("CATTLE_STORE", format!("s3://{BUCKET}/check"))
        .env("CATTLE_INTERVAL", "1s")
        .args(["--host-id", "a1", "--state-dir"])
        .arg(state)
}

#[test]
fn an_agent_does_not_poll_a_store_that_ignores_conditional_writes() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, "check/");
    bucket.create();
    let ws = Workspace::new();
    let state = ws.child("state");
    let proxy = ignoring_conditional_writes(&minio, Arc::new(AtomicBool::new(true)));
    let mut started = agent(&proxy.env(&minio.cattle_env()), &state).spawn();
    let out = started
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the agent kept running:\n{}", started.stderr()));
    assert_eq!(out.status, 78, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "error: store `s3://{BUCKET}/check/` does not honour what Cattle relies on (3 checks \
             failed): polling it could lose executions, so this agent does not poll"
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains(
            "  create-only write (If-None-Match: *): a second create-only write of the same key \
             succeeded (412 was due): two publishers could both write one manifest"
        ),
        "{out}"
    );
    assert!(
        out.stderr.contains("hint: run `cattle store check`"),
        "{out}"
    );
    // It checked on its own objects, and never read its inbox.
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("PUT /{BUCKET}/check/hosts/a1/selftest/"))),
        "{requests:#?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.contains("inbox.json") || r.contains("/inboxes/")),
        "{requests:#?}"
    );
    assert!(!state.join("STORE_CHECK").exists());
    assert_eq!(bucket.keys(), Vec::<String>::new());

    // check-config says the same, and exits 1.
    let out = agent(&proxy.env(&minio.cattle_env()), &state)
        .arg("check-config")
        .run();
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stdout.contains(
            "FAILED  store self-test: create-only write (If-None-Match: *): a second create-only \
             write"
        ),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("FAILED  store self-test: compare-and-swap write (If-Match): "),
        "{out}"
    );
    assert!(!state.join("STORE_CHECK").exists());
}

#[test]
fn an_agent_remembers_a_pass_and_a_restart_asks_nothing_more_of_the_store() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, "check/");
    bucket.create();
    let ws = Workspace::new();
    let state = ws.child("state");
    let proxy = Proxy::to(minio.addr()).start();
    let env = proxy.env(&minio.cattle_env());

    agent(&env, &state).arg("--once").run().assert_success();
    let checked = selftest_requests(&proxy, 0);
    assert!(
        checked
            .iter()
            .all(|r| r.contains("hosts/a1/selftest/") || r.contains("hosts%2Fa1%2Fselftest%2F")),
        "{checked:#?}"
    );
    assert!(checked.len() >= 5, "{checked:#?}");
    let passed: Value =
        serde_json::from_slice(&std::fs::read(state.join("STORE_CHECK")).unwrap()).unwrap();
    assert_eq!(
        passed["store"],
        format!("s3://{BUCKET}/check/ at {}", proxy.endpoint())
    );

    // A restart polls at once: the same requests as any poll, no check.
    let before = proxy.requests().len();
    agent(&env, &state).arg("--once").run().assert_success();
    assert_eq!(selftest_requests(&proxy, before), Vec::<String>::new());
    let polls = proxy.requests()[before..].to_vec();
    assert!(
        polls[0].starts_with(&format!("GET /{BUCKET}/check/inboxes/{}.json", group("a1"))),
        "{polls:#?}"
    );

    // The same store by another endpoint is another store: checked again.
    let direct = agent(&minio.cattle_env(), &state).arg("--once").run();
    direct.assert_success();
    let passed: Value =
        serde_json::from_slice(&std::fs::read(state.join("STORE_CHECK")).unwrap()).unwrap();
    assert_eq!(
        passed["store"],
        format!("s3://{BUCKET}/check/ at {}", minio.endpoint())
    );
    assert_eq!(bucket.list("hosts/a1/selftest/"), Vec::<String>::new());

    // check-config checks (it always does) and records the pass.
    std::fs::remove_file(state.join("STORE_CHECK")).unwrap();
    let before = proxy.requests().len();
    let out = agent(&env, &state).arg("check-config").run();
    out.assert_success();
    assert!(
        out.stdout
            .contains("ok      store self-test: 5 checks held"),
        "{out}"
    );
    assert!(!selftest_requests(&proxy, before).is_empty());
    let passed: Value =
        serde_json::from_slice(&std::fs::read(state.join("STORE_CHECK")).unwrap()).unwrap();
    assert_eq!(
        passed["store"],
        format!("s3://{BUCKET}/check/ at {}", proxy.endpoint())
    );
    let before = proxy.requests().len();
    agent(&env, &state).arg("--once").run().assert_success();
    assert_eq!(selftest_requests(&proxy, before), Vec::<String>::new());
}

/// A store that cannot be reached has not failed the check: the agent
/// retries as after a failed poll, and remembers nothing.
#[test]
fn an_unreachable_store_is_not_a_failed_check() {
    let ws = Workspace::new();
    let state = ws.child("state");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = vec![
        ("AWS_ENDPOINT_URL".to_string(), endpoint),
        ("AWS_ACCESS_KEY_ID".to_string(), "nobody".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "nothing".to_string()),
        ("AWS_REGION".to_string(), "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        ("CATTLE_ALLOW_UNSIGNED".to_string(), "1".to_string()),
    ];
    let out = agent(&env, &state).arg("--once").run();
    assert_eq!(out.status, 1, "{out}");
    assert!(out.stderr.contains("cannot reach the store"), "{out}");
    assert!(!state.join("STORE_CHECK").exists());

    let mut running = agent(&env, &state).spawn();
    assert!(cattle_e2e::wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || running.stderr().matches("poll failed").count() >= 1
    ));
    assert_eq!(running.try_status(), None, "{}", running.stderr());
    let out = running.terminate(Duration::from_secs(10));
    assert_eq!(out.status, 0, "{out}");
    assert!(!state.join("STORE_CHECK").exists());
}

/// The inbox group of `host`.
fn group(host: &str) -> String {
    cattle_core::keys::inbox_group(&cattle_core::hosts::HostId::new(host).unwrap())
}

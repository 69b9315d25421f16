//! `cattle store check` against a real MinIO, and against MinIO behind a
//! proxy that answers as a server ignoring conditions would (as Garage 2.5
//! does with `If-None-Match: *` and `If-Match` on writes, and as a caching
//! proxy may with `If-None-Match` on reads): each missing feature is named
//! with what it breaks, and the command fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cattle_e2e::{Bucket, Cmd, Minio, Output, Proxy, Verdict, cattle_bin, http_response};
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

#[test]
fn a_store_that_ignores_conditional_writes_is_refused_naming_what_it_breaks() {
    let minio = Minio::start();
    Bucket::open(&minio, BUCKET, "check/").create();
    // The first conditional write goes through; every later one is
    // answered 200, as by a server that ignores the condition.
    let conditional = Arc::new(AtomicUsize::new(0));
    let seen = conditional.clone();
    let proxy = Proxy::to(minio.addr())
        .rewrite(move |request| {
            let is_conditional = request.method == "PUT"
                && (request.header("if-none-match").is_some()
                    || request.header("if-match").is_some());
            if is_conditional && seen.fetch_add(1, Ordering::SeqCst) > 0 {
                Verdict::Respond(http_response(200, "OK", &[("ETag", "\"ignored\"")], b""))
            } else {
                Verdict::Forward
            }
        })
        .start();
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
    let prefix = format!("prefix=check%2Fexecutions%2F{id}%2F");
    let proxy = Proxy::to(minio.addr())
        .rewrite(move |request| {
            let query = request.target.split_once('?').map_or("", |(_, q)| q);
            if request.method == "GET"
                && query.contains("list-type=2")
                && query.split('&').any(|p| p == prefix)
            {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult \
                     xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{BUCKET}</Name>\
                     <Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>\
                     <IsTruncated>false</IsTruncated></ListBucketResult>"
                );
                Verdict::Respond(http_response(
                    200,
                    "OK",
                    &[("Content-Type", "application/xml")],
                    body.as_bytes(),
                ))
            } else {
                Verdict::Forward
            }
        })
        .start();
    let clean = cattle(&proxy.env(&minio.cattle_env()), &["clean", &id]);
    clean.assert_success();
    let after = bucket.list(&format!("executions/{id}/"));
    assert_eq!(after, Vec::<String>::new(), "left behind: {clean}");
}

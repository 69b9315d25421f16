//! A hostile path to the store, end to end: the real `cattle` and `cattle-agent` binaries
//! against a real MinIO behind a fault-injecting proxy, or with a clock 20 minutes off.
//! Faults on the way end in errors that say what is wrong, never in a crash.

use std::path::{Path, PathBuf};

use cattle_core::store::{S3Options, S3Store, Store};
use cattle_e2e::{
    Cmd, Minio, Output, Proxy, Verdict, Workspace, agent_bin, cattle_bin, http_response,
};

/// The bucket the policies in `deploy/minio/` name, without a prefix, so that they apply
/// as written.
const BUCKET: &str = "cattle";
const HOSTS: [&str; 3] = ["host-1", "host-2", "host-3"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn secret(user: &str) -> String {
    format!("{user}-secret-hostile-test")
}

/// A MinIO with the `cattle` bucket, one MinIO user per host with the host policy, and
/// an execution published to [`HOSTS`].
struct Site {
    minio: Minio,
    ws: Workspace,
    id: String,
}

impl Site {
    fn new() -> Site {
        let minio = Minio::start();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let root = open(&runtime, &minio, None);
        let Store::S3(s3) = &root else { unreachable!() };
        runtime.block_on(s3.create_bucket()).unwrap();
        let policy = repo().join("deploy/minio/cattle-host.json");
        let policy = policy.display().to_string();
        minio
            .mc(&["admin", "policy", "create", "test", "cattle-host", &policy])
            .assert_success();
        for host in HOSTS {
            minio
                .mc(&["admin", "user", "add", "test", host, &secret(host)])
                .assert_success();
            minio
                .mc(&[
                    "admin",
                    "policy",
                    "attach",
                    "test",
                    "cattle-host",
                    "--user",
                    host,
                ])
                .assert_success();
        }
        let ws = Workspace::new();
        let config = ws.write(
            "config/cattle.toml",
            "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"echo hello from $CATTLE_HOST_ID\"]\n",
        );
        let hosts = ws.write("hosts", HOSTS.join("\n") + "\n");
        let mut site = Site {
            minio,
            ws,
            id: String::new(),
        };
        let out = site.cattle(&[
            "publish",
            &config.parent().unwrap().display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ]);
        out.assert_success();
        site.id = out.stdout.lines().last().unwrap().trim().to_string();
        site
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.minio.cattle_env();
        env.push(("CATTLE_STORE".to_string(), format!("s3://{BUCKET}")));
        env
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin()).envs(&self.env()).args(args).run()
    }
}

/// The bucket as MinIO's root user, or as the host user `host`.
fn open(runtime: &tokio::runtime::Runtime, minio: &Minio, host: Option<&str>) -> Store {
    let options = match host {
        Some(host) => S3Options {
            credentials: Some((host.to_string(), secret(host))),
            ..minio.store_options()
        },
        None => minio.store_options(),
    };
    Store::S3(
        runtime
            .block_on(S3Store::new(BUCKET.to_string(), String::new(), options))
            .unwrap(),
    )
}

#[test]
fn a_304_answer_to_a_plain_read_is_an_error_with_a_hint_not_a_panic() {
    let site = Site::new();
    // A caching proxy that answers every read of a manifest "not modified".
    let proxy = Proxy::to(site.minio.addr())
        .rewrite(|request| {
            if request.method == "GET" && request.path().ends_with("/manifest.json") {
                Verdict::Respond(http_response(304, "Not Modified", &[], b""))
            } else {
                Verdict::Forward
            }
        })
        .start();
    let env = proxy.env(&site.env());
    let agent = Cmd::new(agent_bin())
        .envs(&env)
        .args(["--host-id", "host-1", "--state-dir"])
        .arg(site.ws.child("agents/host-1"))
        .arg("--once")
        .run();
    assert_eq!(agent.status, 1, "{agent}");
    assert!(!agent.stderr.contains("panicked"), "{agent}");
    let manifest = format!("s3://{BUCKET}/executions/{}/manifest.json", site.id);
    assert!(
        agent.stderr.contains(&format!(
            "error: read `{manifest}`: the store answered 304 Not Modified to a read without \
             If-None-Match"
        )),
        "{agent}"
    );
    assert!(agent.stderr.contains("hint: a caching proxy"), "{agent}");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /cattle/executions/") && r.contains("/manifest.json")),
        "{:?}",
        proxy.requests()
    );

    let status = Cmd::new(cattle_bin())
        .envs(&env)
        .args(["status", &site.id])
        .run();
    status.assert_status(1);
    assert!(!status.stderr.contains("panicked"), "{status}");
    assert!(status.stderr.contains("304 Not Modified"), "{status}");
    assert!(status.stderr.contains("hint: a caching proxy"), "{status}");
}

#[test]
fn a_clock_twenty_minutes_off_is_named_with_a_hint() {
    let site = Site::new();
    // libfaketime moves the wall clock of the command it starts (and its threads) back;
    // the monotonic clock, which timeouts use, stays real. scripts/test.sh installs it.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let faketime = std::env::split_paths(&path)
        .map(|dir| dir.join("faketime"))
        .find(|p| p.is_file())
        .expect(
            "faketime not found: install it with `apt-get install -y faketime` \
             (scripts/test.sh does)",
        );
    let skewed = |bin: PathBuf, args: &[&str]| {
        Cmd::new(&faketime)
            .envs(&site.env())
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .args(["-m", "-f", "-20m"])
            .arg(bin)
            .args(args)
            .run()
    };
    let check = |out: &Output| {
        assert_eq!(out.status, 1, "{out}");
        assert!(
            out.stderr.contains(
                "the store refused the request because of the time it was signed at \
                 (RequestTimeTooSkewed: "
            ),
            "{out}"
        );
        assert!(
            out.stderr
                .contains("this machine's clock is 20m behind the store's"),
            "{out}"
        );
        assert!(
            out.stderr.contains(
                "hint: this machine's clock differs from the store's by more than the store \
                 allows (15 minutes on MinIO and AWS S3); here it is 20m"
            ),
            "{out}"
        );
    };
    check(&skewed(cattle_bin(), &["status", &site.id]));
    let state = site.ws.child("agents/host-1").display().to_string();
    check(&skewed(
        agent_bin(),
        &["--host-id", "host-1", "--state-dir", &state, "--once"],
    ));
}

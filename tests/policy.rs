//! Least privilege on MinIO: the policies in `deploy/minio/`, adapted to the test
//! store with the command `deploy/minio/README.md` gives operators, attached to real
//! MinIO users with `mc`. Every probe uses a user's own credentials against a real
//! server: hosts reach only their own objects, the publisher does its job, and a
//! read-only operator key is enough for `cattle status` and `cattle log`.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::check::{Probe, check_at};
use cattle_core::store::{Condition, Fetched, S3Options, S3Store, Store, StoreError};
use cattle_core::wire::{Envelope, Manifest};
use cattle_e2e::{Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, states};
use uuid::Uuid;

/// Not the policies' own `cattle`, and with a prefix, so that the adaptation is tested.
const BUCKET: &str = "fleet";
const PREFIX: &str = "prod/";
/// Another environment in the same bucket.
const OTHER_PREFIX: &str = "staging/";
const PUBLISHER: &str = "cattle-publisher";
const OPERATOR: &str = "cattle-operator";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The policy for `role` as an operator adapts it to `s3://BUCKET/PREFIX`: with the
/// `sed -E` line of `deploy/minio/README.md`, run as written there.
fn adapted_policy(role: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("deploy/minio/README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sed -E "))
        .expect("deploy/minio/README.md shows the `sed -E` command that adapts the policies");
    let (sed, _) = line
        .split_once(" deploy/minio/")
        .expect("the sed command reads deploy/minio/cattle-$role.json");
    let file = repo().join(format!("deploy/minio/cattle-{role}.json"));
    let out = Cmd::new("/bin/sh")
        .args(["-c", &format!("{sed} \"$0\"")])
        .arg(&file)
        .env("bucket", BUCKET)
        .env("prefix", PREFIX)
        .run();
    out.assert_success();
    let policy: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("adapted {role} policy is not JSON: {e}\n{out}"));
    // Every object ARN is under the bucket and prefix, every listing condition too.
    let bucket_arn = format!("arn:aws:s3:::{BUCKET}");
    for statement in policy["Statement"].as_array().unwrap() {
        for arn in statement["Resource"].as_array().unwrap() {
            let arn = arn.as_str().unwrap();
            assert!(
                arn == bucket_arn || arn.starts_with(&format!("{bucket_arn}/{PREFIX}")),
                "{role}: {arn}"
            );
        }
        if let Some(prefixes) = statement["Condition"]["StringLike"]["s3:prefix"].as_array() {
            for prefix in prefixes {
                assert!(
                    prefix.as_str().unwrap().starts_with(PREFIX),
                    "{role}: {prefix}"
                );
            }
        }
    }
    out.stdout
}

fn secret(user: &str) -> String {
    format!("{user}-secret-policy-test")
}

/// A MinIO whose bucket holds two environments, with the three policies created and
/// a publisher, an operator and one user per host.
struct Site {
    minio: Minio,
    ws: Workspace,
    runtime: tokio::runtime::Runtime,
    /// The store as MinIO's root user sees it, to set up and to check.
    root: Store,
}

impl Site {
    fn new(hosts: &[&str]) -> Site {
        let minio = Minio::start();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ws = Workspace::new();
        let root = open(
            &runtime,
            &minio,
            PREFIX,
            (minio.access_key(), minio.secret_key()),
        );
        let Store::S3(s3) = &root else { unreachable!() };
        runtime.block_on(s3.create_bucket()).unwrap();
        let site = Site {
            minio,
            ws,
            runtime,
            root,
        };
        for role in ["host", "publisher", "operator"] {
            let file = site
                .ws
                .write(format!("cattle-{role}.json"), adapted_policy(role));
            let file = file.display().to_string();
            let name = format!("cattle-{role}");
            site.mc(&["admin", "policy", "create", "test", &name, &file]);
        }
        site.add_user(PUBLISHER, "cattle-publisher");
        site.add_user(OPERATOR, "cattle-operator");
        for host in hosts {
            site.add_user(host, "cattle-host");
        }
        site
    }

    fn mc(&self, args: &[&str]) {
        self.minio.mc(args).assert_success();
    }

    fn add_user(&self, user: &str, policy: &str) {
        self.mc(&["admin", "user", "add", "test", user, &secret(user)]);
        self.mc(&["admin", "policy", "attach", "test", policy, "--user", user]);
    }

    /// The store as MinIO user `user` sees it.
    fn store(&self, user: &str) -> Store {
        self.store_at(user, PREFIX)
    }

    fn store_at(&self, user: &str, prefix: &str) -> Store {
        open(&self.runtime, &self.minio, prefix, (user, &secret(user)))
    }

    /// Another environment of the bucket, as the root user sees it.
    fn root_at(&self, prefix: &str) -> Store {
        let root = (self.minio.access_key(), self.minio.secret_key());
        open(&self.runtime, &self.minio, prefix, root)
    }

    fn block<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// The environment `cattle` and `cattle-agent` run in as MinIO user `user`.
    fn env(&self, user: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .minio
            .cattle_env()
            .into_iter()
            .filter(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY")
            .collect();
        env.extend([
            ("AWS_ACCESS_KEY_ID".to_string(), user.to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), secret(user)),
            (
                "CATTLE_STORE".to_string(),
                format!("s3://{BUCKET}/{PREFIX}"),
            ),
        ]);
        env
    }

    fn cattle(&self, user: &str, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.env(user))
            .args(args)
            .run()
    }

    /// One poll of `host`'s agent, with the host's own MinIO user.
    fn agent_once(&self, host: &str) -> Output {
        let state = self.ws.child(format!("agents/{host}"));
        Cmd::new(agent_bin())
            .envs(&self.env(host))
            .arg("--host-id")
            .arg(host)
            .arg("--state-dir")
            .arg(&state)
            .arg("--once")
            .run()
    }

    /// A one-step config, published by `user` to `hosts`; the execution ID.
    fn publish(&self, user: &str, hosts: &[&str]) -> Result<Uuid, Output> {
        self.publish_with(user, hosts, &[])
    }

    fn publish_with(&self, user: &str, hosts: &[&str], flags: &[&str]) -> Result<Uuid, Output> {
        let config = self.ws.write(
            "config/cattle.toml",
            "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"echo hello from $CATTLE_HOST_ID\"]\n",
        );
        let hosts_file = self.ws.write("hosts", hosts.join("\n") + "\n");
        let dir = config.parent().unwrap().display().to_string();
        let hosts_file = hosts_file.display().to_string();
        let mut args = vec!["publish", &dir, "--hosts", &hosts_file];
        args.extend_from_slice(flags);
        let out = self.cattle(user, &args);
        if !out.success() {
            return Err(out);
        }
        let id = out.stdout.lines().last().unwrap_or("").trim();
        Ok(Uuid::parse_str(id).unwrap_or_else(|e| panic!("{e}: {out}")))
    }

    fn manifest(&self, id: Uuid) -> Manifest {
        let object = self
            .block(self.root.get(&keys::manifest(id), u64::MAX))
            .unwrap()
            .expect("manifest exists");
        let envelope: Envelope = serde_json::from_slice(&object.bytes).unwrap();
        envelope.manifest().unwrap()
    }

    /// Every key in the bucket under `PREFIX`, with its bytes.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.block(async {
            let mut all = Vec::new();
            for key in self.root.list("").await.unwrap() {
                let object = self.root.get(&key, u64::MAX).await.unwrap().unwrap();
                all.push((key, object.bytes));
            }
            all
        })
    }

    fn status_json(&self, user: &str, id: Uuid) -> (i32, serde_json::Value) {
        let out = self.cattle(user, &["status", &id.to_string(), "--json"]);
        let json = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        (out.status, json)
    }
}

fn open(
    runtime: &tokio::runtime::Runtime,
    minio: &Minio,
    prefix: &str,
    (user, secret): (&str, &str),
) -> Store {
    Store::S3(
        runtime
            .block_on(S3Store::new(
                BUCKET.to_string(),
                prefix.to_string(),
                S3Options {
                    credentials: Some((user.to_string(), secret.to_string())),
                    ..minio.store_options()
                },
            ))
            .expect("open the store"),
    )
}

fn host(id: &str) -> HostId {
    HostId::new(id).unwrap()
}

/// `result` is MinIO's refusal of operation `op` on `key`, named as such.
#[track_caller]
fn assert_denied<T: Debug>(result: Result<T, StoreError>, op: &str, store: &Store, key: &str) {
    match &result {
        Err(StoreError::AccessDenied {
            op: denied,
            location,
            message,
        }) if *denied == op && *location == store.location(key) => {
            assert!(message.starts_with("AccessDenied"), "{message}");
        }
        _ => panic!("{op} `{key}`: expected AccessDenied, got {result:?}"),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn each_role_does_its_job_with_its_own_policy() {
    let site = Site::new(&["host-a", "host-b"]);
    let id = site.publish(PUBLISHER, &["host-a", "host-b"]).unwrap();

    let (code, status) = site.status_json(OPERATOR, id);
    assert_eq!(code, 4, "{status}");
    assert_eq!(
        states(&status),
        pairs(&[("host-a", "PENDING"), ("host-b", "PENDING")])
    );

    for host in ["host-a", "host-b"] {
        site.agent_once(host).assert_success();
    }
    let (code, status) = site.status_json(OPERATOR, id);
    assert_eq!(code, 0, "{status}");
    assert_eq!(
        states(&status),
        pairs(&[("host-a", "DONE"), ("host-b", "DONE")])
    );
    let out = site.cattle(OPERATOR, &["status", &id.to_string()]);
    out.assert_success();
    assert!(out.stdout.contains("2 hosts: 2 DONE"), "{out}");
    let log = site.cattle(OPERATOR, &["log", &id.to_string(), "--host", "host-a"]);
    log.assert_success();
    assert!(log.stdout.contains("hello from host-a"), "{log}");
    assert!(!log.stdout.contains("hello from host-b"), "{log}");
    site.cattle(PUBLISHER, &["status", &id.to_string()])
        .assert_success();
    // The publisher checks the store, on objects of its own that it removes.
    let check = site.cattle(PUBLISHER, &["store", "check"]);
    check.assert_success();
    assert!(check.stdout.ends_with("all 5 checks passed\n"), "{check}");
    // Both read the fleet: each agent's lease and heartbeat.
    for user in [OPERATOR, PUBLISHER] {
        let hosts = site.cattle(user, &["hosts"]);
        hosts.assert_success();
        assert!(
            hosts
                .stdout
                .contains("2 hosts: 2 seen in the last 3 heartbeats\n"),
            "{hosts}"
        );
    }

    // The operator's key reads; it changes nothing, and says which object it was refused.
    let before = site.snapshot();
    let clean = site.cattle(OPERATOR, &["clean", &id.to_string()]);
    clean.assert_status(1);
    // It may read the groups' inboxes (`cattle hosts`), not change them.
    let inboxes = site.root.location("inboxes/");
    assert!(
        clean.stderr.contains(&format!("write `{inboxes}"))
            && clean.stderr.contains("access denied"),
        "{clean}"
    );
    let publish = site.publish(OPERATOR, &["host-a"]).unwrap_err();
    publish.assert_status(1);
    let refs = site.root.location("bundles/");
    assert!(
        publish.stderr.contains(&format!("error: write `{refs}"))
            && publish.stderr.contains(".refs/")
            && publish.stderr.contains("`: access denied: AccessDenied"),
        "{publish}"
    );
    let cancel = site.cattle(OPERATOR, &["cancel", &id.to_string()]);
    cancel.assert_status(1);
    let cancel_doc = site.root.location(&keys::cancel(id));
    assert!(
        cancel
            .stderr
            .contains(&format!("read `{cancel_doc}`: access denied")),
        "{cancel}"
    );
    assert_eq!(site.snapshot(), before, "the operator changed the store");

    // The publisher cancels: hosts that have not started never start, and say so.
    let second = site.publish(PUBLISHER, &["host-a", "host-b"]).unwrap();
    site.cattle(PUBLISHER, &["cancel", &second.to_string()])
        .assert_success();
    for host in ["host-a", "host-b"] {
        site.agent_once(host).assert_success();
    }
    let (code, status) = site.status_json(OPERATOR, second);
    assert_eq!(code, 3, "{status}");
    assert_eq!(
        states(&status),
        pairs(&[("host-a", "CANCELLED"), ("host-b", "CANCELLED")])
    );

    // The publisher cleans both: only the (now empty) inboxes, the agents'
    // leases and the version counter are left.
    for id in [id, second] {
        site.cattle(PUBLISHER, &["clean", &id.to_string()])
            .assert_success();
    }
    let keys: Vec<String> = site.snapshot().into_iter().map(|(k, _)| k).collect();
    let mut expected: Vec<String> = ["host-a", "host-b"]
        .iter()
        .map(|h| keys::group_inbox(&keys::inbox_group(&host(h))))
        .collect();
    expected.dedup();
    expected.insert(0, "hosts/host-b/agent.json".into());
    expected.insert(0, "hosts/host-a/agent.json".into());
    expected.push("publish/version.json".into());
    expected.sort();
    assert_eq!(keys, expected);
    // Agents take the clean in their stride and tidy up.
    for host in ["host-a", "host-b"] {
        site.agent_once(host).assert_success();
        let executions = site.ws.child(format!("agents/{host}/executions"));
        let left = std::fs::read_dir(&executions).map_or(0, |d| d.count());
        assert_eq!(left, 0, "{host} kept cleaned executions");
    }
}

/// A rollout runs under the policies, each host writing only its own
/// marker; a host whose turn has not come cannot write the marker of the
/// host it waits for, and the gate it may write opens nothing.
#[test]
fn a_rollout_runs_under_the_policies_and_a_host_cannot_open_its_own_wave() {
    let site = Site::new(&["host-a", "host-b"]);
    let id = site
        .publish_with(PUBLISHER, &["host-a", "host-b"], &["--waves", "1,100%"])
        .unwrap();
    let a = host("host-a");
    let as_b = site.store("host-b");
    for key in [keys::ended(id, "done", &a), keys::done(id, &a)] {
        assert_denied(
            site.block(as_b.put(&key, Vec::new(), Condition::Always)),
            "write",
            &as_b,
            &key,
        );
    }
    site.block(as_b.put(&keys::gate(id), b"{}".to_vec(), Condition::Always))
        .unwrap();
    site.agent_once("host-b").assert_success();
    let (_, status) = site.status_json(OPERATOR, id);
    assert_eq!(
        states(&status),
        pairs(&[("host-a", "PENDING"), ("host-b", "WAITING")])
    );
    site.agent_once("host-a").assert_success();
    site.agent_once("host-b").assert_success();
    let (code, status) = site.status_json(OPERATOR, id);
    assert_eq!(code, 0, "{status}");
    assert_eq!(
        states(&status),
        pairs(&[("host-a", "DONE"), ("host-b", "DONE")])
    );
    let rollout = site.cattle(OPERATOR, &["rollout", "status", &id.to_string()]);
    rollout.assert_success();
    assert!(rollout.stdout.contains(" ended at "), "{rollout}");
    site.cattle(PUBLISHER, &["rollout", "pause", &id.to_string()])
        .assert_success();
    site.cattle(PUBLISHER, &["clean", &id.to_string()])
        .assert_success();
}

#[test]
fn a_host_reaches_nothing_of_another_host_and_changes_nothing_shared() {
    let site = Site::new(&["host-a", "host-b", "host-c"]);
    let id = site.publish(PUBLISHER, &["host-a", "host-b"]).unwrap();
    for h in ["host-a", "host-b"] {
        site.agent_once(h).assert_success();
    }
    let sha = site.manifest(id).bundle.sha256;
    let (a, b) = (host("host-a"), host("host-b"));
    let new_id = Uuid::now_v7();
    // The same host in another environment of the bucket.
    let other = site.root_at(OTHER_PREFIX);
    site.block(other.put(&keys::inbox(&a), b"{}".to_vec(), Condition::Always))
        .unwrap();
    let before = site.snapshot();

    let store = site.store("host-a");
    let denied = |result: Result<(), StoreError>, op: &str, key: &str| {
        assert_denied(result, op, &store, key)
    };
    let read = |key: &str| site.block(store.get(key, u64::MAX)).map(|_| ());
    let write = |key: &str, condition: Condition| {
        site.block(store.put(key, b"forged".to_vec(), condition))
            .map(|_| ())
    };
    let delete = |key: &str| site.block(store.delete(key));
    let list = |prefix: &str| site.block(store.list(prefix)).map(|_| ());

    // Another host's inbox, variables, lease, standby record, status and log are
    // not readable.
    for key in [
        keys::inbox(&b),
        keys::host_vars(id, &b),
        keys::lease(&b),
        keys::standby(&b),
        keys::status(id, &b),
        keys::log_part(id, &b, 0),
    ] {
        denied(read(&key), "read", &key);
    }
    // Nothing of another host is writable, not even a conflict marker of an
    // execution to come.
    for key in [
        keys::status(id, &b),
        keys::log_part(id, &b, 0),
        keys::log_part(id, &b, 7),
        keys::done(id, &b),
        keys::lease(&b),
        keys::conflict(id, &b),
        keys::standby(&b),
    ] {
        denied(write(&key, Condition::Always), "write", &key);
    }
    let key = keys::conflict(new_id, &b);
    denied(write(&key, Condition::IfAbsent), "write", &key);
    // Nor what publishers write: inboxes (its own too), manifests, bundles, cancels,
    // the version counter.
    for (key, condition) in [
        (keys::version_counter(), Condition::Always),
        (keys::inbox(&a), Condition::Always),
        (keys::inbox(&b), Condition::Always),
        (keys::group_inbox(&keys::inbox_group(&a)), Condition::Always),
        (keys::host_vars(id, &a), Condition::Always),
        (keys::manifest(id), Condition::Always),
        (keys::manifest(new_id), Condition::IfAbsent),
        (keys::bundle(&sha), Condition::Always),
        (keys::bundle_ref(&sha, new_id), Condition::Always),
        (keys::cancel(id), Condition::Always),
    ] {
        denied(write(&key, condition), "write", &key);
    }
    // Nothing can be deleted but its own log parts: its own status included,
    // another host's log parts, and keys under its log that are not parts.
    for key in [
        keys::status(id, &a),
        keys::log_part(id, &b, 0),
        format!("{}0000000", keys::log_prefix(id, &a)),
        format!("{}000000000", keys::log_prefix(id, &a)),
        keys::lease(&a),
        keys::done(id, &a),
        keys::inbox(&a),
        keys::group_inbox(&keys::inbox_group(&a)),
        keys::status(id, &b),
        keys::bundle(&sha),
        keys::bundle_ref(&sha, id),
        keys::manifest(id),
    ] {
        denied(delete(&key), "delete", &key);
    }
    // Nothing can be listed, its own log neither.
    for prefix in [
        String::new(),
        "executions/".to_string(),
        "hosts/".to_string(),
        "inboxes/".to_string(),
        "bundles/".to_string(),
        "hosts/host-a/".to_string(),
        keys::execution(id),
        keys::done_prefix(id),
        keys::bundle_refs(&sha),
        keys::log_prefix(id, &a),
    ] {
        denied(list(&prefix), "list", &prefix);
    }
    // Its own inbox in another environment of the bucket is out of reach.
    let elsewhere = site.store_at("host-a", OTHER_PREFIX);
    assert_denied(
        site.block(elsewhere.get(&keys::inbox(&a), u64::MAX)),
        "read",
        &elsewhere,
        &keys::inbox(&a),
    );
    assert_eq!(site.snapshot(), before, "host-a changed the store");

    // What it needs, it has: its group's inbox (a conditional read, as it polls),
    // its own inbox (missing in a store that has groups from the start), the
    // manifest, the bundle, its own lease and status; and it writes and deletes
    // its own log parts (deleting those it drops beyond its bound; a missing one
    // is no error).
    let group = keys::group_inbox(&keys::inbox_group(&a));
    let inbox = match site.block(store.get_if_changed(&group, None, u64::MAX)) {
        Ok(Fetched::Found(object)) => object,
        other => panic!("its group's inbox: {other:?}"),
    };
    assert!(matches!(
        site.block(store.get_if_changed(&group, Some(&inbox.etag), u64::MAX)),
        Ok(Fetched::NotModified)
    ));
    assert!(matches!(
        site.block(store.get_if_changed(&keys::inbox(&a), None, u64::MAX)),
        Ok(Fetched::Missing)
    ));
    for key in [
        keys::manifest(id),
        keys::bundle(&sha),
        keys::lease(&a),
        keys::status(id, &a),
    ] {
        assert!(site.block(store.get(&key, u64::MAX)).unwrap().is_some());
    }
    // It may write its own conflict marker and standby record (as a second agent
    // with its ID would).
    for key in [keys::conflict(id, &a), keys::standby(&a)] {
        site.block(store.put(&key, b"{}".to_vec(), Condition::Always))
            .unwrap();
        site.block(site.root.delete(&key)).unwrap();
    }
    let spare = keys::log_part(id, &a, 99_999_999);
    write(&spare, Condition::Always).unwrap();
    delete(&spare).unwrap();
    delete(&spare).unwrap();
    assert!(
        site.block(site.root.get(&keys::log_part(id, &a, 0), u64::MAX))
            .unwrap()
            .is_some(),
        "its log is in the store"
    );
    // Missing objects it may read are missing (404), not refused, although it may not
    // list: a missing inbox, manifest, cancel document and lease.
    let store_c = site.store("host-c");
    let c = host("host-c");
    assert!(matches!(
        site.block(store_c.get_if_changed(&keys::inbox(&c), None, u64::MAX)),
        Ok(Fetched::Missing)
    ));
    assert!(
        site.block(store_c.get(&keys::lease(&c), u64::MAX))
            .unwrap()
            .is_none()
    );
    for key in [keys::manifest(new_id), keys::cancel(id)] {
        assert!(
            site.block(store.get(&key, u64::MAX)).unwrap().is_none(),
            "{key}"
        );
    }
}

/// The store's self-test, as an agent runs it before its first poll: a host's
/// key runs it on its own `hosts/<host>/selftest/`, and not on another host's
/// or the publishers' `selftest/`, where it can neither read, write, list nor
/// delete.
#[test]
fn a_host_runs_the_store_check_on_its_own_location_only() {
    let site = Site::new(&["host-a", "host-b"]);
    let as_a = site.store("host-a");
    let report = site
        .block(check_at(&as_a, Probe::Host(&host("host-a"))))
        .unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(site.snapshot(), Vec::new(), "the check left its probe");

    for probe in [Probe::Host(&host("host-b")), Probe::Shared] {
        let refused = site.block(check_at(&as_a, probe));
        assert!(
            matches!(refused, Err(StoreError::AccessDenied { op: "write", .. })),
            "{probe:?}: {refused:?}"
        );
    }
    // What host-b's own check writes, host-a cannot touch.
    let b_probe = "hosts/host-b/selftest/01a2326b-ccf5-755d-bd23-d70d2aed054d/probe";
    site.block(site.root.put(b_probe, b"1".to_vec(), Condition::Always))
        .unwrap();
    assert_denied(site.block(as_a.get(b_probe, 1024)), "read", &as_a, b_probe);
    assert_denied(site.block(as_a.delete(b_probe)), "delete", &as_a, b_probe);
    let b_dir = "hosts/host-b/selftest/";
    assert_denied(site.block(as_a.list(b_dir)), "list", &as_a, b_dir);
    // Nor can it list above its own `selftest/`.
    assert_denied(
        site.block(as_a.list("hosts/host-a/")),
        "list",
        &as_a,
        "hosts/host-a/",
    );
    assert!(
        site.block(site.root.get(b_probe, 1024)).unwrap().is_some(),
        "host-a deleted host-b's object"
    );
    // host-b's own key runs it.
    let as_b = site.store("host-b");
    let report = site
        .block(check_at(&as_b, Probe::Host(&host("host-b"))))
        .unwrap();
    assert!(report.passed(), "{report:?}");
}

#[test]
fn host_ids_shaped_like_file_names_reach_only_their_own_objects() {
    // With `executions/*/done/${aws:username}`, host `status.json` could write host
    // `done`'s status (`executions/<id>/hosts/done/status.json` ends the same way).
    let crafted = ["status.json", "log", "agent.json"];
    let mut hosts = vec!["done"];
    hosts.extend(crafted);
    let site = Site::new(&hosts);
    let id = site.publish(PUBLISHER, &hosts).unwrap();
    site.agent_once("done").assert_success();
    let before = site.snapshot();
    let done = host("done");

    for (user, key) in [
        ("status.json", keys::status(id, &done)),
        ("log", keys::log_part(id, &done, 0)),
        ("agent.json", keys::conflict(id, &done)),
    ] {
        let store = site.store(user);
        for key in [
            key,
            // Its own key, nested under another host's or under a made-up ID.
            format!("executions/{id}/hosts/done/hosts/{user}/{user}"),
            format!("executions/{id}/done/done/hosts/{user}/{user}"),
            format!("executions/not-an-execution/hosts/{user}/{user}"),
        ] {
            let result = site.block(store.put(&key, b"forged".to_vec(), Condition::Always));
            assert_denied(result, "write", &store, &key);
        }
    }
    assert_eq!(site.snapshot(), before);

    // And each of them does its own work as usual.
    for user in crafted {
        site.agent_once(user).assert_success();
    }
    let (code, status) = site.status_json(OPERATOR, id);
    assert_eq!(code, 0, "{status}");
    assert!(states(&status).iter().all(|(_, s)| s == "DONE"), "{status}");
}

#[test]
fn publisher_and_operator_cannot_write_what_hosts_report() {
    let site = Site::new(&["host-b"]);
    let id = site.publish(PUBLISHER, &["host-b"]).unwrap();
    site.agent_once("host-b").assert_success();
    let before = site.snapshot();
    let b = host("host-b");
    let sha = site.manifest(id).bundle.sha256;

    // Only a host's agent writes that host's lease, status, log, DONE and conflict markers.
    let publisher = site.store(PUBLISHER);
    for key in [
        keys::status(id, &b),
        keys::log_part(id, &b, 0),
        keys::lease(&b),
        keys::done(id, &b),
        keys::conflict(id, &b),
    ] {
        let result = site.block(publisher.put(&key, b"forged".to_vec(), Condition::Always));
        assert_denied(result, "write", &publisher, &key);
    }
    // Inboxes are emptied, never deleted, and the store is not listed as a whole.
    for key in [keys::inbox(&b), keys::group_inbox(&keys::inbox_group(&b))] {
        assert_denied(
            site.block(publisher.delete(&key)),
            "delete",
            &publisher,
            &key,
        );
    }
    for prefix in ["", "executions/"] {
        assert_denied(
            site.block(publisher.list(prefix)),
            "list",
            &publisher,
            prefix,
        );
    }

    // The operator writes and deletes nothing, and reads only what status and log show.
    let operator = site.store(OPERATOR);
    for key in [
        keys::manifest(id),
        keys::cancel(id),
        keys::inbox(&b),
        keys::group_inbox(&keys::inbox_group(&b)),
        keys::status(id, &b),
        keys::bundle(&sha),
    ] {
        let result = site.block(operator.put(&key, b"forged".to_vec(), Condition::Always));
        assert_denied(result, "write", &operator, &key);
        assert_denied(site.block(operator.delete(&key)), "delete", &operator, &key);
    }
    for key in [keys::inbox(&b), keys::host_vars(id, &b), keys::bundle(&sha)] {
        let result = site.block(operator.get(&key, u64::MAX));
        assert_denied(result, "read", &operator, &key);
    }
    // Nor hosts' standby records (`cattle hosts` reads them).
    for store in [&publisher, &operator] {
        let key = keys::standby(&b);
        let result = site.block(store.put(&key, b"forged".to_vec(), Condition::Always));
        assert_denied(result, "write", store, &key);
    }
    for prefix in ["", "executions/"] {
        assert_denied(site.block(operator.list(prefix)), "list", &operator, prefix);
    }
    assert_eq!(site.snapshot(), before);
}

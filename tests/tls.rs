//! HTTPS to the store with a private CA: the real `cattle` and `cattle-agent`
//! binaries against a real MinIO whose certificate is signed by a CA made for
//! the test, which the system's root CAs do not know. `CATTLE_CA_BUNDLE` names
//! that CA; a wrong CA, no CA and an unusable CA bundle each fail with a
//! message that says so.
//!
//! Like `e2e.rs`, the agent runs in its own mount namespace with a private
//! `/var` (`unshare --mount`, so as root), where the poem example writes.

use std::path::Path;

use cattle_core::store::S3Store;
use cattle_e2e::{Cmd, Minio, Output, TestCa, Workspace, agent_bin, cattle_bin, example};

const BUCKET: &str = "cattle";
const STORE_URL: &str = "s3://cattle/tls";
/// An execution ID no one published: `cattle status` of it must reach the store.
const UNKNOWN_ID: &str = "01a20f43-398c-70f2-a36a-252221b2f74e";

/// The environment of every `cattle` and `cattle-agent` command in these tests:
/// `minio`'s AWS settings, the store URL, and `CATTLE_CA_BUNDLE` when `ca_bundle`
/// is given (unset otherwise).
fn cattle_env(minio: &Minio, ca_bundle: Option<&Path>) -> Vec<(String, String)> {
    let mut env = minio.cattle_env();
    env.push(("CATTLE_STORE".to_string(), STORE_URL.to_string()));
    if let Some(path) = ca_bundle {
        env.push(("CATTLE_CA_BUNDLE".to_string(), path.display().to_string()));
    }
    env
}

/// A MinIO serving HTTPS with a certificate from its own private CA, with an
/// empty bucket created over HTTPS through cattle-core's store client.
fn minio_with_bucket() -> Minio {
    let minio = Minio::start_tls();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(S3Store::new(
            BUCKET.to_string(),
            String::new(),
            minio.store_options(),
        ))
        .unwrap();
    runtime.block_on(store.create_bucket()).unwrap();
    minio
}

fn cattle(env: &[(String, String)], args: &[&str]) -> Output {
    Cmd::new(cattle_bin()).envs(env).args(args).run()
}

/// `cattle-agent --host-id HOST --state-dir … --once` with a private `/var` under `ws`.
fn agent_once(ws: &Workspace, env: &[(String, String)], host: &str) -> Output {
    let state = ws.child(format!("agents/{host}/state"));
    let var = ws.child(format!("agents/{host}/var"));
    std::fs::create_dir_all(&var).unwrap();
    Cmd::new("unshare")
        .envs(env)
        .args([
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" /var && exec \"$@\"",
        ])
        .arg(&var)
        .arg(agent_bin())
        .args(["--host-id", host, "--once", "--state-dir"])
        .arg(&state)
        .run()
}

fn publish(ws: &Workspace, env: &[(String, String)], host: &str) -> Output {
    let hosts = ws.write("hosts", format!("{host}\n"));
    Cmd::new(cattle_bin())
        .envs(env)
        .arg("publish")
        .arg(example("poem"))
        .arg("--hosts")
        .arg(hosts)
        .run()
}

/// `out` failed (exit 1) because the server's certificate is not trusted, and said
/// which endpoint, why, and to check `CATTLE_CA_BUNDLE`.
#[track_caller]
fn assert_untrusted(out: &Output, minio: &Minio) {
    out.assert_status(1);
    for words in [
        "the store's TLS certificate is not trusted",
        &minio.endpoint(),
        "invalid peer certificate: UnknownIssuer",
        "check CATTLE_CA_BUNDLE",
        "hint: set CATTLE_CA_BUNDLE to a PEM file of the CA certificate(s) that signed the store's certificate",
    ] {
        assert!(out.stderr.contains(words), "stderr lacks {words:?}:\n{out}");
    }
}

#[test]
fn publish_agent_and_status_work_over_https_with_the_private_ca() {
    let minio = minio_with_bucket();
    let ws = Workspace::new();
    let env = cattle_env(&minio, Some(minio.ca_bundle()));
    assert!(minio.endpoint().starts_with("https://"));

    let published = publish(&ws, &env, "h1");
    published.assert_success();
    let id = published.stdout.lines().last().unwrap().trim().to_string();

    agent_once(&ws, &env, "h1").assert_success();

    let status = cattle(&env, &["status", &id]);
    status.assert_success();
    assert!(status.stdout.contains("1 host: 1 DONE\n"), "{status}");
    assert_eq!(
        std::fs::read(ws.child("agents/h1/var/poems/poem.txt")).unwrap(),
        std::fs::read(example("poem/poem.txt")).unwrap()
    );
    let log = cattle(&env, &["log", &id, "--host", "h1"]);
    log.assert_success();
    assert!(log.stdout.contains("config executed successfully"), "{log}");

    // mc reaches the same server over HTTPS too.
    let listing = minio.mc(&["ls", "--recursive", "test/cattle/tls/executions/"]);
    listing.assert_success();
    assert!(listing.stdout.contains(&id), "{listing}");
}

#[test]
fn a_different_ca_is_refused_with_a_message_naming_the_endpoint_and_the_reason() {
    let minio = minio_with_bucket();
    let ws = Workspace::new();
    let other = TestCa::new("not the store's");
    let env = cattle_env(&minio, Some(other.certificate()));

    let status = cattle(&env, &["status", UNKNOWN_ID]);
    assert_untrusted(&status, &minio);
    assert!(
        status.stderr.contains(&format!(
            "`{}` must hold the CA that signed it",
            other.certificate().display()
        )),
        "{status}"
    );

    let published = publish(&ws, &env, "h1");
    assert_untrusted(&published, &minio);

    let agent = agent_once(&ws, &env, "h1");
    assert_untrusted(&agent, &minio);

    // Nothing reached the store.
    let listing = minio.mc(&["ls", "--recursive", "test/cattle"]);
    listing.assert_success();
    assert_eq!(listing.stdout, "", "{listing}");
}

#[test]
fn without_a_ca_bundle_the_system_roots_do_not_trust_the_private_ca() {
    let minio = minio_with_bucket();
    let env = cattle_env(&minio, None);

    let status = cattle(&env, &["status", UNKNOWN_ID]);
    assert_untrusted(&status, &minio);
    assert!(
        status.stderr.contains(
            "check CATTLE_CA_BUNDLE: it is not set, so only the system's root CAs are trusted"
        ),
        "{status}"
    );
}

#[test]
fn an_unusable_ca_bundle_is_named_before_any_request() {
    let minio = minio_with_bucket();
    let ws = Workspace::new();
    let missing = ws.child("no-such-ca.pem");
    let empty = ws.write("empty.pem", "");
    let not_pem = ws.write("key-not-cert.pem", "this is not a certificate\n");
    let cases = [
        (&missing, "cannot read it: No such file or directory"),
        (&empty, "it holds no PEM certificate"),
        (&not_pem, "it holds no PEM certificate"),
    ];
    for (path, why) in cases {
        let env = cattle_env(&minio, Some(path));
        let expected = format!("CA bundle `{}` (CATTLE_CA_BUNDLE): {why}", path.display());

        let status = cattle(&env, &["status", UNKNOWN_ID]);
        status.assert_status(1);
        assert!(status.stderr.contains(&expected), "{status}");
        assert!(
            status
                .stderr
                .contains("hint: set CATTLE_CA_BUNDLE to a readable PEM file"),
            "{status}"
        );

        let published = publish(&ws, &env, "h1");
        published.assert_status(1);
        assert!(published.stderr.contains(&expected), "{published}");

        // The agent refuses to start: it exits at once, having polled nothing.
        let agent = agent_once(&ws, &env, "h1");
        assert_ne!(agent.status, 0, "{agent}");
        assert!(agent.stderr.contains(&expected), "{agent}");
    }

    // A directory is not a bundle either.
    let env = cattle_env(&minio, Some(ws.path()));
    let status = cattle(&env, &["status", UNKNOWN_ID]);
    status.assert_status(1);
    assert!(status.stderr.contains("cannot read it"), "{status}");
}

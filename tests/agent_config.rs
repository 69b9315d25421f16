//! The agent set up by its config file alone (`--config`), and `cattle-agent
//! check-config` against a real MinIO: a good store, a missing bucket, wrong
//! credentials, a credentials file others can read.
//!
//! The agent gets no `CATTLE_*` or `AWS_*` variable for what the file says:
//! only the AWS SDK's profile files are pointed nowhere, so that this
//! machine's `~/.aws` cannot stand in for the file's credentials.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cattle_e2e::{
    Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, shell_step, signing_env,
    wait_until,
};

const BUCKET: &str = "cattle";
const PREFIX: &str = "cfg";
const HOST: &str = "web-1";

/// A MinIO with a bucket, a publisher key pair, and an agent config file.
struct Setup {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
}

impl Setup {
    fn new() -> Setup {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        let ws = Workspace::new();
        // Makes publisher.key and publisher.pub in the workspace.
        signing_env(ws.path());
        Setup { minio, ws, bucket }
    }

    /// A credentials file, mode `mode`.
    fn credentials(&self, name: &str, id: &str, secret: &str, mode: u32) -> PathBuf {
        let path = self.ws.write(
            name,
            format!("access_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\n"),
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// An agent config file reaching this MinIO, with `store` and the
    /// credentials file `credentials` (relative to the config's directory).
    fn config(&self, store: &str, credentials: &str) -> PathBuf {
        self.ws.write(
            "agent.toml",
            format!(
                "# agent config for the test\n\
                 host_id = \"{HOST}\"\n\
                 store = \"{store}\"\n\
                 endpoint = \"{endpoint}\"\n\
                 region = \"us-east-1\"\n\
                 credentials_file = \"{credentials}\"\n\
                 state_dir = \"state\"\n\
                 trusted_keys = [\"publisher.pub\"]\n\
                 interval = \"1s\"\n\
                 jitter = \"100ms\"\n\
                 max_log_mib = 8\n\
                 log = \"info\"\n",
                endpoint = self.minio.endpoint(),
            ),
        )
    }

    fn good_config(&self) -> PathBuf {
        self.credentials(
            "credentials",
            self.minio.access_key(),
            self.minio.secret_key(),
            0o600,
        );
        self.config(&format!("s3://{BUCKET}/{PREFIX}"), "credentials")
    }

    /// `cattle-agent` with nothing but `args` and the SDK's profile files pointed nowhere.
    fn agent(&self, args: &[&str]) -> Cmd {
        let nowhere = self.ws.child("no-aws");
        Cmd::new(agent_bin())
            .env("AWS_CONFIG_FILE", nowhere.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", nowhere.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args)
    }

    fn check_config(&self, config: &Path) -> Output {
        self.agent(&["--config", &config.display().to_string(), "check-config"])
            .run()
    }
}

#[test]
fn an_agent_set_up_by_its_config_file_alone_polls_and_runs_what_is_published() {
    let setup = Setup::new();
    let config = setup.good_config();
    let mut agent = setup
        .agent(&["--config", &config.display().to_string()])
        .spawn();

    // Published after the agent started: it has to poll to find it.
    let marker = setup.ws.child("ran");
    let dir = setup.ws.child("config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cattle.toml"),
        shell_step(&format!(
            "echo ran-by-$CATTLE_HOST_ID > {}",
            marker.display()
        )),
    )
    .unwrap();
    let hosts = setup.ws.write("hosts", format!("{HOST}\n"));
    let publish = Cmd::new(cattle_bin())
        .envs(&setup.minio.env())
        .env(
            "CATTLE_SIGNING_KEY",
            setup.ws.child("publisher.key").display().to_string(),
        )
        .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
        .args([
            "publish",
            &dir.display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ])
        .run();
    publish.assert_success();
    let id = publish.stdout.lines().last().unwrap().trim().to_string();

    let status_key = format!("executions/{id}/hosts/{HOST}/status.json");
    let done = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        setup
            .bucket
            .get(&status_key)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|s| s["state"] == "DONE")
    });
    let out = agent.terminate(Duration::from_secs(20));
    assert!(done, "the agent did not run the execution: {out}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        format!("ran-by-{HOST}")
    );
    // The file's state directory (relative to the file) and poll settings were used.
    assert!(
        setup.ws.child("state/executions").join(&id).is_dir(),
        "{out}"
    );
    assert!(
        out.stderr.contains("interval=1s") && out.stderr.contains("jitter=100ms"),
        "{out}"
    );
}

#[test]
fn check_config_against_a_good_store_prints_the_redacted_settings_and_where_they_came_from() {
    let setup = Setup::new();
    let config = setup.good_config();
    let out = setup
        .agent(&[
            "--config",
            &config.display().to_string(),
            "check-config",
            "--interval",
            "2m",
        ])
        .env("CATTLE_MAX_LOG_MIB", "16")
        .run();
    out.assert_success();
    let file = config.display().to_string();
    let line = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no `{key}` line: {out}"))
            .to_string()
    };
    assert!(
        line("store").ends_with(&format!("# file {file}:3")),
        "{out}"
    );
    assert!(line("endpoint").contains(&setup.minio.endpoint()), "{out}");
    assert!(
        line("access_key_id").contains(setup.minio.access_key())
            && line("access_key_id").ends_with(&format!("# file {file}:6")),
        "{out}"
    );
    assert!(line("secret_access_key").contains("[redacted]"), "{out}");
    assert!(!out.stdout.contains(setup.minio.secret_key()), "{out}");
    assert!(
        line("max_log_mib").contains("16")
            && line("max_log_mib").ends_with("# env CATTLE_MAX_LOG_MIB"),
        "{out}"
    );
    assert!(
        line("interval").contains("\"2m\"") && line("interval").ends_with("# flag --interval"),
        "{out}"
    );
    assert!(
        line("jitter").ends_with(&format!("# file {file}:10")),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "ok      store answers (bucket exists, credentials accepted, clock within the store's limit): \
             inbox `s3://cattle/cfg/inboxes/{}.json` of the host's group is absent",
            group("web-1")
        )),
        "{out}"
    );
    assert!(out.stdout.contains("ok      trusted key "), "{out}");
    // Nothing was written to the store.
    assert!(setup.bucket.keys().is_empty(), "{:?}", setup.bucket.keys());
}

#[test]
fn check_config_names_a_missing_bucket_wrong_credentials_and_an_open_credentials_file() {
    let setup = Setup::new();
    setup.credentials(
        "credentials",
        setup.minio.access_key(),
        setup.minio.secret_key(),
        0o600,
    );

    let config = setup.config("s3://no-such-bucket/cfg", "credentials");
    let out = setup.check_config(&config);
    out.assert_status(1);
    assert!(
        out.stdout.contains(
            "FAILED  cannot read the host's inbox: bucket `no-such-bucket` does not exist"
        ) && out.stdout.contains("hint: create it first"),
        "{out}"
    );

    setup.credentials("wrong", setup.minio.access_key(), "not-the-secret", 0o600);
    let config = setup.config(&format!("s3://{BUCKET}/{PREFIX}"), "wrong");
    let out = setup.check_config(&config);
    out.assert_status(1);
    assert!(
        out.stdout.contains(&format!("FAILED  cannot read the host's inbox: read `s3://cattle/cfg/inboxes/{}.json`: access denied: SignatureDoesNotMatch", group("web-1"))),
        "{out}"
    );
    setup.credentials("unknown", "nobody", "not-the-secret", 0o600);
    let config = setup.config(&format!("s3://{BUCKET}/{PREFIX}"), "unknown");
    let out = setup.check_config(&config);
    out.assert_status(1);
    assert!(
        out.stdout.contains("access denied: InvalidAccessKeyId"),
        "{out}"
    );
    assert!(!out.stdout.contains("not-the-secret"), "{out}");

    let open = setup.credentials(
        "open",
        setup.minio.access_key(),
        setup.minio.secret_key(),
        0o644,
    );
    let config = setup.config(&format!("s3://{BUCKET}/{PREFIX}"), "open");
    let out = setup.check_config(&config);
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!(
            "{}:6:20: `{}` holds a secret",
            config.display(),
            open.display()
        )) && out
            .stderr
            .contains(&format!("chmod 600 {}", open.display())),
        "{out}"
    );
    // The agent itself refuses to start on it too.
    let out = setup
        .agent(&["--config", &config.display().to_string(), "--once"])
        .run();
    out.assert_status(1);
    assert!(out.stderr.contains("chmod 600"), "{out}");
}

/// The inbox group of `host`.
fn group(host: &str) -> String {
    cattle_core::keys::inbox_group(&cattle_core::hosts::HostId::new(host).unwrap())
}

//! `cattle` set up by the operator's config file alone, against a real MinIO:
//! publish and status through a named store whose credentials come from a
//! credentials file, `cattle config`, and the mistakes the file can hold (an
//! unknown store name, an unknown key, a credentials file others can read),
//! each refused before anything is uploaded.
//!
//! `cattle` runs with an empty environment but `PATH` and `HOME` (or
//! `XDG_CONFIG_HOME`), pointed at the test's own directory: no `AWS_*` or
//! `CATTLE_*` variable, and no `~/.aws` to fall back on.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cattle_e2e::{
    Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, shell_step, signing_env,
};

const BUCKET: &str = "cattle";
const PREFIX: &str = "prod";
const HOST: &str = "web-1";

/// A MinIO with a bucket, a publisher key pair, a config to publish, and a
/// home directory for the operator.
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
        // Makes publisher.key (mode 0600) and publisher.pub in the workspace.
        signing_env(ws.path());
        let home = ws.child("home/keys");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::copy(ws.child("publisher.key"), home.join("publisher.key")).unwrap();
        ws.write(
            "config/cattle.toml",
            shell_step(&format!(
                "echo ran-by-$CATTLE_HOST_ID > {}",
                ws.child("ran").display()
            )),
        );
        ws.write("hosts", format!("{HOST}\n"));
        Setup { minio, ws, bucket }
    }

    fn home(&self) -> PathBuf {
        self.ws.child("home")
    }

    /// The default config file, under `$HOME/.config`.
    fn config_path(&self) -> PathBuf {
        self.home().join(".config/cattle/config.toml")
    }

    /// Write the operator's config file: the named stores `prod` (this MinIO,
    /// credentials in `prod.credentials` next to the file) and `lab` (a
    /// directory), `prod` the default, the signing key in the home directory;
    /// `extra` goes at the end of `[stores.prod]`.
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "# the operator's settings\n\
             store = \"prod\"\n\
             signing_key = \"~/keys/publisher.key\"\n\
             \n\
             [stores.prod]\n\
             url = \"s3://{BUCKET}/{PREFIX}\"\n\
             endpoint = \"{endpoint}\"\n\
             region = \"us-east-1\"\n\
             credentials_file = \"~/.config/cattle/prod.credentials\"\n\
             {extra}\
             \n\
             [stores.lab]\n\
             url = \"file://{lab}\"\n",
            endpoint = self.minio.endpoint(),
            lab = self.ws.child("lab-store").display(),
        );
        let path = self.config_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The credentials file `prod` names, with MinIO's key and `mode`.
    fn credentials(&self, mode: u32) -> PathBuf {
        let path = self.home().join(".config/cattle/prod.credentials");
        std::fs::write(
            &path,
            format!(
                "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
                self.minio.access_key(),
                self.minio.secret_key()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// `cattle args…` with nothing in its environment but `PATH` and `HOME`.
    fn cattle(&self, args: &[&str]) -> Cmd {
        Cmd::new(cattle_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .args(args)
    }

    fn publish(&self) -> Output {
        let dir = self.ws.child("config").display().to_string();
        let hosts = self.ws.child("hosts").display().to_string();
        self.cattle(&["publish", &dir, "--hosts", &hosts]).run()
    }

    /// The agent for [`HOST`], once, set up with the usual test environment.
    fn run_agent(&self) -> Output {
        let state = self.ws.child("state").display().to_string();
        let trusted = self.ws.child("publisher.pub").display().to_string();
        Cmd::new(agent_bin())
            .envs(&self.minio.env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .args([
                "--host-id",
                HOST,
                "--state-dir",
                &state,
                "--trusted-keys",
                &trusted,
                "--once",
            ])
            .run()
    }
}

/// The line of `out`'s standard output for `key` (`key   = value  # origin`).
fn line<'a>(out: &'a Output, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no `{key}` line: {out}"))
}

#[test]
fn publish_and_status_through_a_named_store_whose_credentials_come_from_a_file() {
    let setup = Setup::new();
    let config = setup.config("").display().to_string();
    setup.credentials(0o600);

    // No store, key, endpoint or credentials but what the file says.
    let out = setup.publish();
    out.assert_success();
    let id = out.stdout.lines().last().unwrap().trim().to_string();
    assert!(
        out.stderr.contains("signed by key"),
        "signed with the file's signing_key: {out}"
    );
    assert!(
        setup
            .bucket
            .get(&format!("executions/{id}/manifest.json"))
            .is_some(),
        "the manifest is not under s3://{BUCKET}/{PREFIX}/: {:?}",
        setup.bucket.keys()
    );

    setup.run_agent().assert_success();
    assert_eq!(setup.ws.read("ran").trim(), format!("ran-by-{HOST}"));

    // `status` reads what the host reported, through the same named store.
    let out = setup.cattle(&["status", &id]).run();
    out.assert_success();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(HOST))
        .unwrap_or_else(|| panic!("no row for {HOST}: {out}"));
    assert!(row.contains("DONE"), "{out}");

    // `cattle config` says where each setting came from, and hides the secret.
    let out = setup.cattle(&["config"]).run();
    out.assert_success();
    assert!(line(&out, "config file").ends_with("# default"), "{out}");
    assert!(
        line(&out, "store").contains("\"prod\"")
            && line(&out, "store").ends_with(&format!("# file {config}:2")),
        "{out}"
    );
    assert!(
        line(&out, "stores.prod.url").contains(&format!("\"s3://{BUCKET}/{PREFIX}/\""))
            && line(&out, "stores.prod.url").ends_with(&format!("# file {config}:6")),
        "{out}"
    );
    assert!(
        line(&out, "endpoint").contains(&setup.minio.endpoint()),
        "{out}"
    );
    assert!(
        line(&out, "access_key_id").contains(setup.minio.access_key())
            && line(&out, "access_key_id").ends_with(&format!("# file {config}:9")),
        "{out}"
    );
    assert!(
        line(&out, "secret_access_key").contains("[redacted]"),
        "{out}"
    );
    assert!(!out.stdout.contains(setup.minio.secret_key()), "{out}");
    assert!(
        line(&out, "signing_key").contains(&format!(
            "\"{}\"",
            setup.home().join("keys/publisher.key").display()
        )),
        "{out}"
    );
    assert!(
        line(&out, "stores").contains("[\"lab\", \"prod\"]"),
        "{out}"
    );

    // A flag picks another named store, and a variable overrides the file.
    let out = setup
        .cattle(&["config", "show", "--store", "lab"])
        .env("CATTLE_SIGNING_KEY", "/elsewhere/publisher.key")
        .run();
    out.assert_success();
    assert!(
        line(&out, "store").ends_with("# flag --store")
            && line(&out, "stores.lab.url").contains("lab-store"),
        "{out}"
    );
    assert!(
        line(&out, "signing_key").ends_with("# env CATTLE_SIGNING_KEY"),
        "{out}"
    );
}

#[test]
fn mistakes_in_the_config_file_are_refused_before_anything_is_uploaded() {
    let setup = Setup::new();
    let config = setup.config("").display().to_string();
    let credentials = setup.credentials(0o644);

    // A credentials file its group or other users can read.
    let out = setup.publish();
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!(
            "{config}:9:20: `{}` holds a secret but its group or other users can read it (mode 0644)",
            credentials.display()
        )) && out
            .stderr
            .contains(&format!("chmod 600 {}", credentials.display())),
        "{out}"
    );
    assert!(!out.stderr.contains(setup.minio.secret_key()), "{out}");
    let out = setup.cattle(&["config"]).run();
    out.assert_status(1);
    assert!(out.stderr.contains("chmod 600"), "{out}");
    assert!(setup.bucket.keys().is_empty(), "{:?}", setup.bucket.keys());

    // An unknown store name, from a flag or the variable: the names the file defines.
    setup.credentials(0o600);
    let out = setup.cattle(&["--store", "staging", "config"]).run();
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!(
            "error: `--store`: unknown store `staging`: `{config}` defines `lab`, `prod`"
        )),
        "{out}"
    );
    let dir = setup.ws.child("config").display().to_string();
    let hosts = setup.ws.child("hosts").display().to_string();
    let out = setup
        .cattle(&["publish", &dir, "--hosts", &hosts])
        .env("CATTLE_STORE", "prdo")
        .run();
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("error: CATTLE_STORE: unknown store `prdo`:"),
        "{out}"
    );
    assert!(setup.bucket.keys().is_empty(), "{:?}", setup.bucket.keys());

    // An unknown key in a store's table, with its line and column.
    setup.config("endpiont = \"https://typo.example:9000\"\n");
    let out = setup.cattle(&["config"]).run();
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!(
            "error: {config}:10:1: unknown key `endpiont`, expected one of `url`, `endpoint`"
        )),
        "{out}"
    );
    let out = setup.publish();
    out.assert_status(1);
    assert!(out.stderr.contains("unknown key `endpiont`"), "{out}");
    assert!(setup.bucket.keys().is_empty(), "{:?}", setup.bucket.keys());

    // Fixed, the same command publishes: nothing else was wrong.
    setup.config("");
    setup.publish().assert_success();
    assert!(!setup.bucket.keys().is_empty());
}

#[test]
fn the_file_is_found_under_xdg_config_home_and_an_explicit_one_must_exist() {
    let ws = Workspace::new();
    let xdg = ws.child("xdg");
    let config = ws.write(
        "xdg/cattle/config.toml",
        "store = \"lab\"\n[stores.lab]\nurl = \"file:///srv/cattle\"\n",
    );
    let cattle = |args: &[&str]| {
        Cmd::new(cattle_bin())
            .env_clear()
            .env("HOME", ws.child("home"))
            .env("XDG_CONFIG_HOME", &xdg)
            .args(args)
    };
    let out = cattle(&["config"]).run();
    out.assert_success();
    assert!(
        line(&out, "stores.lab.url").contains("\"file:///srv/cattle\"")
            && line(&out, "stores.lab.url").ends_with(&format!("# file {}:3", config.display())),
        "{out}"
    );

    let missing = ws.child("missing.toml").display().to_string();
    let out = cattle(&["config"]).env("CATTLE_CONFIG", &missing).run();
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!(
            "cannot read config file `{missing}` (named by env CATTLE_CONFIG)"
        )),
        "{out}"
    );
    // Without any file the CLI works as it always did: the default store.
    let out = cattle(&["config"])
        .env("XDG_CONFIG_HOME", ws.child("empty"))
        .run();
    out.assert_success();
    assert!(
        line(&out, "store").contains("\"file:///var/lib/cattle/store\"")
            && line(&out, "store").ends_with("# default"),
        "{out}"
    );
    // `cattle config` wrote nothing: the workspace holds only what the test wrote.
    assert_eq!(entries(ws.path()), ["xdg"]);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

//! Custom facilities end to end: programs shipped in a config's `facilities/`, in sh
//! and in Python, published with the real `cattle` to a real MinIO and run by the real
//! `cattle-agent`, and applied with `cattle apply`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cattle_e2e::{Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, example, recap};

const BUCKET: &str = "cattle";
const PREFIX: &str = "custom";

/// The key in `examples/authorized-key` (a key nobody holds the secret of).
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMyBZnk21cUlKeI7nHnULYEAxz39YpLt0E0vgc3csBGC deploy@example";

/// A MinIO with an empty bucket, a workspace, and the commands an operator and a host run.
struct Fleet {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
}

impl Fleet {
    fn on_minio() -> Fleet {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        Fleet {
            minio,
            ws: Workspace::new(),
            bucket,
        }
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .args(args)
            .run()
    }

    /// `cattle publish DIR` to host `h1`.
    fn try_publish(&self, dir: &Path) -> Output {
        let hosts = self.ws.write("hosts", "h1\n");
        self.cattle(&[
            "publish",
            &dir.display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ])
    }

    /// The execution ID of a successful publish of `dir` to `h1`.
    fn publish(&self, dir: &Path) -> String {
        let out = self.try_publish(dir);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    /// `h1`'s agent, once: everything addressed to it is run and reported.
    fn agent_once(&self) -> Output {
        Cmd::new(agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .args(["--host-id", "h1", "--once", "--state-dir"])
            .arg(self.ws.child("agent-state"))
            .run()
    }

    /// `h1`'s entry in `cattle status --json`.
    fn status(&self, id: &str) -> serde_json::Value {
        let out = self.cattle(&["status", id, "--json"]);
        let json: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        json["hosts"][0].clone()
    }

    fn log(&self, id: &str) -> String {
        self.cattle(&["log", id, "--host", "h1"]).stdout
    }
}

/// Copy the tree `from` into `to` (created), keeping the files' modes.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_files(&path, &dest);
        } else {
            std::fs::copy(&path, dest).unwrap();
        }
    }
}

/// A config in the workspace's `name/`: `steps` and the custom facilities of the
/// examples `flaky` and `authorized-key`.
fn config(ws: &Workspace, name: &str, steps: &str) -> std::path::PathBuf {
    let dir = ws.child(name);
    for from in ["flaky", "authorized-key"] {
        copy_files(&example(from).join("facilities"), &dir.join("facilities"));
    }
    std::fs::write(dir.join("cattle.toml"), steps).unwrap();
    dir
}

/// A sh facility that prints its request on stdout when it checks, and is in place
/// once the file its argument `marker` names exists.
const SHOWS_REQUEST: &str = r#"#!/bin/sh
request=$(cat)
marker=$(printf '%s' "$request" | sed -n 's/.*"marker":"\([^"]*\)".*/\1/p')
case $1 in
describe) echo 'shows its request' ;;
check) printf '%s\n' "$request"; [ -e "$marker" ] || exit 100 ;;
apply) touch "$marker" ;;
esac
"#;

/// What the steps of the first run leave on the host.
fn keys_file(ws: &Workspace) -> std::path::PathBuf {
    ws.child("home/nobody/.ssh/authorized_keys")
}

#[test]
fn sh_and_python_facilities_change_the_host_once_and_then_find_it_in_place() {
    let fleet = Fleet::on_minio();
    let ws = &fleet.ws;
    let marker = ws.child("flaky-done");
    let home = ws.child("home/nobody");
    std::fs::create_dir_all(&home).unwrap();
    let shown = ws.child("shown");
    let dir = config(
        ws,
        "cfg",
        &format!(
            "[[step]]\nfacility = \"flaky\"\nsucceed_on = 2\ncreates = \"{}\"\n\n\
             [[step]]\nfacility = \"authorized_key\"\nuser = \"nobody\"\nhome = \"{}\"\nkey = \"{KEY}\"\n\n\
             [[step]]\nfacility = \"shows_request\"\nmarker = \"{}\"\n",
            marker.display(),
            home.display(),
            shown.display(),
        ),
    );
    let program = dir.join("facilities/shows_request");
    std::fs::write(&program, SHOWS_REQUEST).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let first = fleet.publish(&dir);
    fleet.agent_once().assert_success();
    let status = fleet.status(&first);
    let log = fleet.log(&first);
    assert_eq!(status["state"], "DONE", "{status}\n{log}");
    assert_eq!(
        status["results"],
        serde_json::json!({"changed": 3, "unchanged": 0, "failed": 0,
                           "would_change": 0, "in_state": 0, "unknown": 0}),
        "{log}"
    );
    assert_eq!(
        status["step_results"],
        serde_json::json!(["changed", "changed", "changed"])
    );
    for line in [
        "Running step 1/3: flaky (a step that fails on purpose before it succeeds)",
        "step 1: attempt 1 of 3 failed: `facilities/flaky apply` exited with status 1: \
         attempt 1: failing on purpose (succeeds on attempt 2)",
        "Step 1 changed on attempt 2",
        "Running step 2/3: authorized_key (an SSH public key in a user's ~/.ssh/authorized_keys)",
        "step 2: | describe: key ssh-ed25519 SHA256:DLzYAID3tU0KbNOgOFKe97/8px8ael6udvbkwuw2s8g \
         (deploy@example)",
        "Step 2 changed\n",
        "Step 3 changed\n",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    assert!(marker.exists());

    // The programs ran from the unpacked bundle (so it kept their exec bits) and
    // the Python one did its work: a directory and a file of the user's, 0700 and 0600.
    let ssh = std::fs::metadata(home.join(".ssh")).unwrap();
    let file = std::fs::metadata(keys_file(ws)).unwrap();
    assert_eq!(
        (ssh.mode() & 0o7777, ssh.uid(), ssh.gid()),
        (0o700, 65534, 65534)
    );
    assert_eq!(
        (file.mode() & 0o7777, file.uid(), file.gid()),
        (0o600, 65534, 65534)
    );
    assert_eq!(
        std::fs::read_to_string(keys_file(ws)).unwrap(),
        format!("{KEY}\n")
    );

    // The request as the program got it: the agent's host and execution, the step and attempt.
    let request = log
        .lines()
        .find_map(|l| l.split_once("step 3: | {\"protocol\"").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("the request is not in the log:\n{log}"));
    let request: serde_json::Value =
        serde_json::from_str(&format!("{{\"protocol\"{request}")).unwrap();
    assert_eq!(
        request,
        serde_json::json!({
            "protocol": 1,
            "verb": "check",
            "facility": "shows_request",
            "args": { "marker": shown.display().to_string() },
            "context": { "host": "h1", "execution": first, "step": 3, "attempt": 1, "check_mode": false },
        })
    );

    // Published again: every step finds its state in place and changes nothing.
    let before = (file.ino(), file.mtime_nsec());
    let second = fleet.publish(&dir);
    fleet.agent_once().assert_success();
    let status = fleet.status(&second);
    let log = fleet.log(&second);
    assert_eq!(
        status["results"],
        serde_json::json!({"changed": 0, "unchanged": 3, "failed": 0,
                           "would_change": 0, "in_state": 0, "unknown": 0}),
        "{log}"
    );
    assert_eq!(
        status["step_results"],
        serde_json::json!(["unchanged", "unchanged", "unchanged"])
    );
    for step in 1..=3 {
        assert!(
            log.contains(&format!("Step {step} unchanged: already in place\n")),
            "{log}"
        );
    }
    assert!(!log.contains("failed"), "{log}");
    let after = std::fs::metadata(keys_file(ws)).unwrap();
    assert_eq!((after.ino(), after.mtime_nsec()), before);
}

#[test]
fn publish_refuses_a_step_its_facilitys_schema_refuses_and_uploads_nothing() {
    let fleet = Fleet::on_minio();
    let ws = &fleet.ws;

    // A typo in a step: the schema of `authorized_key` has no `usr`.
    let dir = config(
        ws,
        "typo",
        &format!("[[step]]\nfacility = \"authorized_key\"\nusr = \"nobody\"\nkey = \"{KEY}\"\n"),
    );
    let out = fleet.try_publish(&dir);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("typo/cattle.toml:3:1: unknown argument `usr` for facility `authorized_key`"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("hint: `authorized_key` takes `user`, `key`, `home`, `attempts`"),
        "{out}"
    );

    // A typo in the schema itself: the error names that file and line.
    let schema = dir.join("facilities/authorized_key.toml");
    let text = std::fs::read_to_string(&schema).unwrap();
    std::fs::write(
        &schema,
        text.replacen("type = \"string\"", "tpye = \"string\"", 1),
    )
    .unwrap();
    std::fs::write(
        dir.join("cattle.toml"),
        format!("[[step]]\nfacility = \"authorized_key\"\nuser = \"nobody\"\nkey = \"{KEY}\"\n"),
    )
    .unwrap();
    let out = fleet.try_publish(&dir);
    out.assert_status(1);
    let line = text.lines().position(|l| l == "type = \"string\"").unwrap() + 1;
    assert!(
        out.stderr.contains(&format!(
            "typo/facilities/authorized_key.toml:{line}:1: unknown field `tpye`"
        )),
        "{out}"
    );

    // A program that is not executable, and one that is not there.
    let dir = config(ws, "plain", "[[step]]\nfacility = \"flaky\"\n");
    std::fs::set_permissions(
        dir.join("facilities/flaky"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = fleet.try_publish(&dir);
    out.assert_status(1);
    assert!(
        out.stderr.contains(
            "plain/cattle.toml:2:12: facility `flaky`: `facilities/flaky` is not executable"
        ),
        "{out}"
    );
    std::fs::write(dir.join("cattle.toml"), "[[step]]\nfacility = \"flakey\"\n").unwrap();
    let out = fleet.try_publish(&dir);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("plain/cattle.toml:2:12: unknown facility `flakey`"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("custom ones in this config: `authorized_key`"),
        "{out}"
    );

    assert_eq!(
        fleet.bucket.keys(),
        Vec::<String>::new(),
        "something was uploaded"
    );
}

#[test]
fn exit_status_78_ends_the_host_in_error_after_one_attempt() {
    let fleet = Fleet::on_minio();
    let dir = fleet.ws.child("refusing");
    std::fs::create_dir_all(dir.join("facilities")).unwrap();
    let program = dir.join("facilities/refuses");
    std::fs::write(
        &program,
        "#!/bin/sh\n[ \"$1\" = describe ] && { echo 'refuses'; exit 0; }\n\
         echo 'no user `ann` here' >&2\nexit 78\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        dir.join("cattle.toml"),
        "[[step]]\nfacility = \"refuses\"\nattempts = 5\n",
    )
    .unwrap();

    let id = fleet.publish(&dir);
    fleet.agent_once().assert_success();
    let status = fleet.status(&id);
    let log = fleet.log(&id);
    let status_out = fleet.cattle(&["status", &id]);
    status_out.assert_status(3);
    assert_eq!(status["state"], "ERROR", "{status}");
    assert_eq!(
        status["error"],
        "step 1 failed: `facilities/refuses check` exited with status 78 \
         (failed, do not retry): no user `ann` here",
        "{status}"
    );
    assert_eq!(status["step_results"], serde_json::json!(["failed"]));
    assert!(
        log.contains(
            "step 1: attempt 1 of 5 failed: `facilities/refuses check` exited with status 78 \
             (failed, do not retry): no user `ann` here; a retry cannot help"
        ),
        "{log}"
    );
    assert!(!log.contains("attempt 2"), "{log}");
}

#[test]
fn cattle_apply_of_the_authorized_key_example_adds_the_key_once() {
    let ws = Workspace::new();
    let home = ws.child("home");
    std::fs::create_dir_all(&home).unwrap();
    // The example as it is, pointed at a user and home of the test's.
    let dir = ws.child("authorized-key");
    copy_files(&example("authorized-key"), &dir);
    let steps = std::fs::read_to_string(dir.join("cattle.toml")).unwrap();
    let ours = steps.replace(
        "user = \"deploy\"\n",
        &format!("user = \"nobody\"\nhome = \"{}\"\n", home.display()),
    );
    assert_ne!(ours, steps, "the example names user `deploy`");
    assert!(ours.contains(KEY), "the example's key is {KEY}");
    std::fs::write(dir.join("cattle.toml"), ours).unwrap();
    let apply = || Cmd::new(cattle_bin()).arg("apply").arg(&dir).run();
    let keys = home.join(".ssh/authorized_keys");

    let first = apply();
    first.assert_success();
    assert_eq!(recap(&first), "changed=1 unchanged=0 failed=0", "{first}");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{KEY}\n"));
    let meta = std::fs::metadata(&keys).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o600, 65534));
    let ssh = std::fs::metadata(home.join(".ssh")).unwrap();
    assert_eq!((ssh.mode() & 0o7777, ssh.uid()), (0o700, 65534));
    // `cattle apply` has no execution; the host is this machine's name.
    assert!(
        first.stderr.contains(
            "step 1: | describe: key ssh-ed25519 SHA256:DLzYAID3tU0KbNOgOFKe97/8px8ael6udvbkwuw2s8g (deploy@example)"
        ),
        "{first}"
    );

    let second = apply();
    second.assert_success();
    assert_eq!(recap(&second), "changed=0 unchanged=1 failed=0", "{second}");
    let again = std::fs::metadata(&keys).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec()),
        (meta.ino(), meta.mtime_nsec()),
        "the second run replaced or touched the file"
    );

    // Another key already there and the file readable by all: the other key stays,
    // the mode is put right.
    std::fs::write(&keys, "ssh-rsa AAAAB3NzaC1yc2E other@example\n").unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let third = apply();
    third.assert_success();
    assert_eq!(recap(&third), "changed=1 unchanged=0 failed=0", "{third}");
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        format!("ssh-rsa AAAAB3NzaC1yc2E other@example\n{KEY}\n")
    );
    assert_eq!(std::fs::metadata(&keys).unwrap().mode() & 0o7777, 0o600);

    // `.ssh` a symbolic link (to root's, say): refused at once, nothing written there.
    let elsewhere = ws.child("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::remove_dir_all(home.join(".ssh")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, home.join(".ssh")).unwrap();
    let out = apply();
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("is a symbolic link; refusing to work through it"),
        "{out}"
    );
    assert!(out.stderr.contains("a retry cannot help"), "{out}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// A sh facility whose exit statuses the step chooses: `check` exits with the
/// argument `check`; `apply` with the first of `apply` (a list), then the next on
/// each later attempt (counted in the file `tries`).
const BY_CODES: &str = r#"#!/bin/sh
request=$(cat)
field() { printf '%s' "$request" | sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
case $1 in
describe) echo "exits as told" ;;
check) exit "$(field check)" ;;
apply)
  tries=$(field tries | tr -d '"')
  n=$(($(cat "$tries" 2>/dev/null || echo 0) + 1)); echo "$n" > "$tries"
  codes=$(printf '%s' "$request" | sed -n 's/.*"apply":\[\([^]]*\)\].*/\1/p' | tr ',' ' ')
  set -- $codes; shift $((n - 1)); echo "apply attempt $n exits ${1:-0}"; exit "${1:-0}" ;;
esac
"#;

#[test]
fn each_exit_status_of_the_protocol_ends_the_step_as_documented() {
    let fleet = Fleet::on_minio();
    let dir = fleet.ws.child("codes");
    std::fs::create_dir_all(dir.join("facilities")).unwrap();
    let program = dir.join("facilities/codes");
    std::fs::write(&program, BY_CODES).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let tries = |n: usize| fleet.ws.child(format!("tries-{n}")).display().to_string();
    let step = |n: usize, check: u8, apply: &str, attempts: u8| {
        format!(
            "[[step]]\nfacility = \"codes\"\ncheck = {check}\napply = [{apply}]\ntries = \"{}\"\nattempts = {attempts}\n",
            tries(n)
        )
    };
    let steps = [
        step(1, 0, "", 3),       // in state: unchanged, apply never runs
        step(2, 100, "0", 3),    // would change, applied: changed
        step(3, 100, "1, 0", 3), // apply fails once (retried), then changes
        step(4, 100, "100", 1),  // 100 is no answer to apply: failed
    ]
    .concat();
    std::fs::write(dir.join("cattle.toml"), steps).unwrap();

    let id = fleet.publish(&dir);
    fleet.agent_once().assert_success();
    let status = fleet.status(&id);
    let log = fleet.log(&id);
    assert_eq!(status["state"], "ERROR", "{status}");
    assert_eq!(
        status["step_results"],
        serde_json::json!(["unchanged", "changed", "changed", "failed"]),
        "{log}"
    );
    assert!(!fleet.ws.child("tries-1").exists(), "step 1 applied: {log}");
    for line in [
        "Step 1 unchanged: already in place",
        "Step 2 changed",
        "step 3: attempt 1 of 3 failed: `facilities/codes apply` exited with status 1",
        "Step 3 changed on attempt 2",
        "apply attempt 2 exits 0",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    let error = status["error"].as_str().unwrap();
    assert!(
        error.starts_with("step 4 failed: `facilities/codes apply` exited with status 100"),
        "{error}"
    );
}

//! `cattle apply --check` and `--diff`, run for real on a tree of a temporary directory:
//! the check changes nothing (every path, byte, mode and modification time stays), names
//! the steps that would change with their diffs, and exits as the README says.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cattle_e2e::{Cmd, Output, Workspace, cattle_bin, recap};

/// One path of a tree: its kind, mode, modification time and bytes (a link's target).
type Node = (&'static str, u32, (i64, i64), Vec<u8>);

/// Everything under `root`, links not followed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut nodes = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let (kind, data) = if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
            ("dir", Vec::new())
        } else if meta.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            ("link", target.as_os_str().as_bytes().to_vec())
        } else {
            ("file", std::fs::read(&path).unwrap())
        };
        let node = (
            kind,
            meta.mode() & 0o7777,
            (meta.mtime(), meta.mtime_nsec()),
            data,
        );
        nodes.insert(path, node);
    }
    nodes
}

/// The output of `cattle apply` without the time at the start of its lines, and with
/// `root` written `ROOT`.
fn shown(out: &Output, root: &Path) -> String {
    let mut text = String::new();
    for line in out.stderr.lines() {
        // `2026-01-02T03:04:05.678Z Step 1 …`: the time is one word.
        let line = match line.split_once(' ') {
            Some((time, rest)) if time.len() == 24 && time.ends_with('Z') => rest,
            _ => line,
        };
        text.push_str(line);
        text.push('\n');
    }
    text.replace(&root.display().to_string(), "ROOT")
}

fn apply(config: &Path, flags: &[&str]) -> Output {
    Cmd::new(cattle_bin())
        .arg("apply")
        .arg(config)
        .args(flags)
        .run()
}

#[test]
fn check_changes_nothing_names_what_would_change_with_its_diff_and_exits_5() {
    let ws = Workspace::new();
    let root = ws.child("host");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let motd = ws.write("host/etc/motd", "Welcome.\nMaintenance on Friday.\n");
    let ssh = ws.write(
        "host/etc/ssh.conf",
        "Port 22\nPermitRootLogin yes\nPasswordAuthentication no\n",
    );
    for path in [&motd, &ssh] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    ws.write("cfg/files/motd", "Welcome.\nNo maintenance planned.\n");
    let r = root.display();
    let config = ws.write(
        "cfg/cattle.toml",
        format!(
            "[[step]]\nfacility = \"make_dir\"\npath = \"{r}/etc\"\n\n\
             [[step]]\nfacility = \"make_dir\"\npath = \"{r}/srv/app\"\n\n\
             [[step]]\nfacility = \"file\"\npath = \"{r}/srv/app/app.env\"\n\
             content = \"PORT=8080\\nMODE=production\\n\"\nmode = \"0640\"\n\n\
             [[step]]\nfacility = \"install_file\"\nsource = \"files/motd\"\ndest = \"{r}/etc/motd\"\n\n\
             [[step]]\nfacility = \"line_in_file\"\npath = \"{r}/etc/ssh.conf\"\n\
             line = \"PermitRootLogin no\"\nregex = \"^PermitRootLogin \"\n\n\
             [[step]]\nfacility = \"chmod\"\npath = \"{r}/etc/ssh.conf\"\nmode = \"0644\"\n\n\
             [[step]]\nfacility = \"chmod\"\npath = \"{r}/srv/app/app.env\"\nmode = \"0640\"\n"
        ),
    );
    let config = config.parent().unwrap();
    let before = snapshot(&root);

    let check = apply(config, &["--check", "--diff"]);
    check.assert_status(5);
    assert_eq!(
        snapshot(&root),
        before,
        "the check changed the tree:\n{check}"
    );
    assert_eq!(
        recap(&check),
        "would_change=4 in_state=2 failed=0 unknown=1",
        "{check}"
    );
    assert_eq!(shown(&check, &root), EXPECTED_CHECK, "{check}");

    // Applied for real: the steps that would change do, and the one that could not be
    // checked finds its state in place. Then checked again: everything is in state.
    let real = apply(config, &[]);
    real.assert_success();
    assert_eq!(recap(&real), "changed=4 unchanged=3 failed=0", "{real}");
    for step in [2, 3, 4, 5] {
        assert!(
            real.stderr.contains(&format!("Step {step} changed\n")),
            "{real}"
        );
    }
    let applied = snapshot(&root);
    assert_ne!(applied, before);
    let again = apply(config, &["--check", "--diff"]);
    again.assert_success();
    assert_eq!(snapshot(&root), applied, "{again}");
    assert_eq!(
        recap(&again),
        "would_change=0 in_state=7 failed=0 unknown=0",
        "{again}"
    );
    assert!(!again.stderr.contains("diff:"), "{again}");
    assert!(
        again
            .stderr
            .contains("check done: every step is in state; nothing would change"),
        "{again}"
    );
}

#[test]
fn a_failing_check_exits_1_and_a_real_run_with_diff_shows_it_before_changing() {
    let ws = Workspace::new();
    let root = ws.child("host");
    let conf = ws.write("host/app.conf", "level=info\n");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = root.display();
    let failing = ws.write(
        "failing/cattle.toml",
        format!(
            "[[step]]\nfacility = \"chmod\"\npath = \"{r}/missing\"\nmode = \"0600\"\n\n\
             [[step]]\nfacility = \"file\"\npath = \"{r}/app.conf\"\ncontent = \"level=debug\\n\"\n"
        ),
    );
    let before = snapshot(&root);
    let out = apply(failing.parent().unwrap(), &["--check"]);
    out.assert_status(1);
    assert_eq!(snapshot(&root), before);
    assert_eq!(
        recap(&out),
        "would_change=0 in_state=0 failed=1 unknown=0",
        "{out}"
    );
    assert!(!out.stderr.contains("Running step 2/2"), "{out}");

    // `--diff` alone: a real run, each diff before the change it shows.
    let config = ws.write(
        "real/cattle.toml",
        format!(
            "[[step]]\nfacility = \"file\"\npath = \"{r}/app.conf\"\ncontent = \"level=debug\\n\"\n"
        ),
    );
    let out = apply(config.parent().unwrap(), &["--diff"]);
    out.assert_success();
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "level=debug\n");
    let text = shown(&out, &root);
    let diff = "step 1: diff:\n--- ROOT/app.conf (on the host)\n\
                +++ ROOT/app.conf (as the step leaves it)\n@@ -1 +1 @@\n-level=info\n+level=debug\n";
    let (Some(diff_at), Some(changed_at)) = (text.find(diff), text.find("Step 1 changed")) else {
        panic!("no diff, or no change:\n{text}");
    };
    assert!(diff_at < changed_at, "{text}");
    assert_eq!(recap(&out), "changed=1 unchanged=0 failed=0");
}

/// What `cattle apply --check --diff` prints for the first test's config and tree.
const EXPECTED_CHECK: &str = r#"starting a config of 7 steps
Running step 1/7: make_dir (directory ROOT/etc exists)
Step 1 in state: already in place
Running step 2/7: make_dir (directory ROOT/srv/app exists)
Step 2 would change
Running step 3/7: file (file ROOT/srv/app/app.env has the contents given, mode 0640)
step 3: diff:
--- ROOT/srv/app/app.env (on the host)
+++ ROOT/srv/app/app.env (as the step leaves it)
new file, mode 0640
contents not shown: the file is not readable by everyone (0 → 26 bytes)
Step 3 would change
Running step 4/7: install_file (file ROOT/etc/motd has the contents of files/motd)
step 4: diff:
--- ROOT/etc/motd (on the host)
+++ ROOT/etc/motd (as the step leaves it)
@@ -1,2 +1,2 @@
 Welcome.
-Maintenance on Friday.
+No maintenance planned.
Step 4 would change
Running step 5/7: line_in_file (ROOT/etc/ssh.conf has the line `PermitRootLogin no` in place of lines matching `^PermitRootLogin `)
step 5: diff:
--- ROOT/etc/ssh.conf (on the host)
+++ ROOT/etc/ssh.conf (as the step leaves it)
@@ -1,3 +1,3 @@
 Port 22
-PermitRootLogin yes
+PermitRootLogin no
 PasswordAuthentication no
Step 5 would change
Running step 6/7: chmod (ROOT/etc/ssh.conf has mode 0644)
Step 6 in state: already in place
Running step 7/7: chmod (ROOT/srv/app/app.env has mode 0640)
Step 7 could not be checked: it may depend on steps 2, 3, 4 and 5, which would change: `ROOT/srv/app/app.env` does not exist; create it in an earlier step
Step 7 unknown
check done: steps 2, 3, 4 and 5 would change; step 7 could not be checked; nothing was changed
recap (check mode): would_change=4 in_state=2 failed=0 unknown=1
"#;

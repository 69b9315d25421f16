//! The seed corpus: how every file in `fuzz/corpus/` that is not a fuzzer's
//! find is made. `tests/corpus.rs` checks the committed files against this,
//! and rewrites them when run with `CATTLE_WRITE_SEEDS=1`.
//!
//! Seeds are named by what the replay test expects of them: `ok-*` inputs must
//! be accepted, `hostile-*` bundles and `bad-*` inputs refused.

use std::io::Write;
use std::path::Path;

use cattle_core::bundle::{self, MAX_UNPACKED_BYTES};
use cattle_core::hosts::HostId;
use cattle_core::wire::{
    BundleRef, Cancel, Conflict, FORMAT, GroupEntry, GroupInbox, HostLease, HostStatus, HostVars,
    Inbox, Manifest, State, StepResult, StepStatus,
};
use tar::EntryType;

/// Where the hostile bundles try to write outside their destination; the
/// replay test checks that nothing ever appears there.
pub const ESCAPE_DIR: &str = "/tmp/cattle-fuzz-escaped";

/// One input of the seed corpus.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The fuzz target, i.e. the directory under `fuzz/corpus/`.
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every seed, made from the repository at `repo` (its `examples/`).
pub fn all(repo: &Path) -> Vec<Seed> {
    let mut seeds = Vec::new();
    bundles(repo, &mut seeds);
    steps(repo, &mut seeds);
    documents(&mut seeds);
    seeds
}

fn add(seeds: &mut Vec<Seed>, target: &'static str, name: &str, bytes: Vec<u8>) {
    seeds.push(Seed {
        target,
        name: name.to_string(),
        bytes,
    });
}

/// A tar archive written header by header, so that it can say anything.
#[derive(Default)]
pub struct RawTar(Vec<u8>);

impl RawTar {
    /// An entry whose header declares `declared` bytes, followed by `data`
    /// (padded to a whole block) whatever its length.
    pub fn entry(
        &mut self,
        name: &[u8],
        kind: EntryType,
        declared: u64,
        data: &[u8],
        link: &[u8],
    ) -> &mut Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(declared);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        if kind == EntryType::GNUSparse {
            header.as_gnu_mut().unwrap().set_real_size(0);
        }
        // Raw bytes: the builder's own setters refuse `..` and absolute paths.
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        header.set_cksum();
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(
            name.as_bytes(),
            EntryType::Regular,
            data.len() as u64,
            data,
            b"",
        )
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Directory, 0, b"", b"")
    }

    pub fn link(&mut self, name: &str, kind: EntryType, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), kind, 0, b"", target.as_bytes())
    }

    /// A PAX extended header for the next entry.
    pub fn pax(&mut self, key: &str, value: &str) -> &mut Self {
        let body = format!(" {key}={value}\n");
        // The length counts its own digits.
        let mut len = body.len() + 1;
        while body.len() + len.to_string().len() != len {
            len = body.len() + len.to_string().len();
        }
        let record = format!("{len}{body}");
        let record = record.as_bytes();
        self.entry(
            b"PaxHeader",
            EntryType::XHeader,
            record.len() as u64,
            record,
            b"",
        )
    }

    /// A GNU long-name record for the next entry.
    pub fn long_name(&mut self, name: &str) -> &mut Self {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        self.entry(
            b"././@LongLink",
            EntryType::GNULongName,
            data.len() as u64,
            &data,
            b"",
        )
    }

    /// Raw bytes, not a whole entry.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    fn pad(&mut self) {
        let rem = self.0.len() % 512;
        if rem != 0 {
            self.0.resize(self.0.len() + 512 - rem, 0);
        }
    }

    /// The archive with its end-of-archive blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.resize(out.len() + 1024, 0);
        out
    }

    /// The archive as it stands, without end-of-archive blocks.
    pub fn cut(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// `bytes` gzipped as small as possible, with no timestamp.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A tar of `count` empty files `0`, `1`, … in one directory: one more than
/// [`bundle::MAX_ENTRIES`] is refused. Too big for the corpus (50 MiB of
/// headers, still over 1 MiB gzipped), so the test builds it, stored rather
/// than compressed to keep that quick.
pub fn many_entries(count: usize) -> Vec<u8> {
    let mut tar = RawTar::default();
    for i in 0..count {
        tar.file(&format!("{i:x}"), b"");
    }
    gz_stored(&tar.finish())
}

/// `bytes` in a gzip stream of stored (uncompressed) blocks: quick to make.
pub fn gz_stored(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::none());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn bundles(repo: &Path, seeds: &mut Vec<Seed>) {
    const T: &str = "bundle_extract";
    let toml = b"[[step]]\nfacility = \"make_dir\"\npath = \"/tmp/x\"\n";

    // Cattle's own bundles.
    for example in ["poem", "flaky"] {
        let bundle = bundle::pack(&repo.join("examples").join(example)).unwrap();
        add(seeds, T, &format!("ok-{example}.tar.gz"), bundle.bytes);
    }
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("a-directory-with-a-long-name/".repeat(5));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(dir.path().join("cattle.toml"), toml).unwrap();
    std::fs::write(
        deep.join("a-file-past-the-hundred-byte-ustar-name"),
        b"deep\n",
    )
    .unwrap();
    let long = bundle::pack(dir.path()).unwrap();
    add(seeds, T, "ok-long-path-gnu.tar.gz", long.bytes);
    let poem = bundle::pack(&repo.join("examples/poem")).unwrap().bytes;

    // Hand-made but acceptable.
    let long_path = format!("{}file", "pax-long-directory/".repeat(12));
    let tar = RawTar::default()
        .pax("path", &long_path)
        .file("short-name", b"pax\n")
        .finish();
    add(seeds, T, "ok-long-path-pax.tar.gz", gz(&tar));
    let tar = RawTar::default()
        .file("a/b/c", b"parents are implied\n")
        .dir("a/b")
        .finish();
    add(seeds, T, "ok-implied-parents.tar.gz", gz(&tar));
    add(seeds, T, "ok-empty.tar.gz", gz(&RawTar::default().finish()));

    // Hostile: every one must be refused before anything is written.
    let escape = format!("{ESCAPE_DIR}/file");
    let mut hostile = |name: &str, bytes: Vec<u8>| add(seeds, T, &format!("hostile-{name}"), bytes);
    hostile(
        "absolute-path.tar.gz",
        gz(&RawTar::default().file(&escape, b"escaped\n").finish()),
    );
    hostile(
        "dotdot.tar.gz",
        gz(&RawTar::default().file("../escaped", b"escaped\n").finish()),
    );
    hostile(
        "dotdot-inside-path.tar.gz",
        gz(&RawTar::default()
            .dir("a")
            .file("a/../../escaped", b"escaped\n")
            .finish()),
    );
    hostile(
        "dot-slash.tar.gz",
        gz(&RawTar::default().file("./cattle.toml", toml).finish()),
    );
    hostile(
        "empty-name.tar.gz",
        gz(&RawTar::default().file("", b"nameless\n").finish()),
    );
    hostile(
        "symlink-out.tar.gz",
        gz(&RawTar::default()
            .link("out", EntryType::Symlink, ESCAPE_DIR)
            .finish()),
    );
    hostile(
        "symlink-then-file-through-it.tar.gz",
        gz(&RawTar::default()
            .link("out", EntryType::Symlink, ESCAPE_DIR)
            .file("out/file", b"escaped\n")
            .finish()),
    );
    hostile(
        "hardlink-out.tar.gz",
        gz(&RawTar::default()
            .link("passwd", EntryType::Link, "/etc/passwd")
            .finish()),
    );
    hostile(
        "hardlink-inside.tar.gz",
        gz(&RawTar::default()
            .file("a", b"a\n")
            .link("b", EntryType::Link, "a")
            .finish()),
    );
    hostile(
        "char-device.tar.gz",
        gz(&RawTar::default()
            .entry(b"null", EntryType::Char, 0, b"", b"")
            .finish()),
    );
    hostile(
        "block-device.tar.gz",
        gz(&RawTar::default()
            .entry(b"disk", EntryType::Block, 0, b"", b"")
            .finish()),
    );
    hostile(
        "fifo.tar.gz",
        gz(&RawTar::default()
            .entry(b"fifo", EntryType::Fifo, 0, b"", b"")
            .finish()),
    );
    hostile(
        "gnu-sparse.tar.gz",
        gz(&RawTar::default()
            .entry(b"sparse", EntryType::GNUSparse, 0, b"", b"")
            .finish()),
    );
    // The header says 10 bytes; 1,000 follow, and their tail reads as a header.
    hostile(
        "file-larger-than-declared.tar.gz",
        gz(&RawTar::default()
            .entry(b"big", EntryType::Regular, 10, &[b'A'; 1000], b"")
            .finish()),
    );
    // The header says 1 MiB; the archive ends after 100 bytes.
    hostile(
        "file-shorter-than-declared.tar.gz",
        gz(&RawTar::default()
            .entry(b"short", EntryType::Regular, 1 << 20, &[b'A'; 100], b"")
            .cut()),
    );
    // 4 KiB that inflate to 4 MiB of zeros under a header declaring more than
    // MAX_UNPACKED_BYTES: refused at the header, before inflating the rest.
    hostile(
        "gzip-bomb.tar.gz",
        gz(&RawTar::default()
            .entry(
                b"bomb",
                EntryType::Regular,
                MAX_UNPACKED_BYTES + 1,
                &vec![0; 4 << 20],
                b"",
            )
            .cut()),
    );
    hostile("truncated-gzip.tar.gz", poem[..poem.len() / 2].to_vec());
    hostile(
        "not-gzip.tar",
        RawTar::default().file("cattle.toml", toml).finish(),
    );
    hostile(
        "pax-path-escape.tar.gz",
        gz(&RawTar::default()
            .pax("path", &format!("{}../../../escaped", "a/".repeat(100)))
            .file("innocent", b"escaped\n")
            .finish()),
    );
    hostile(
        "pax-path-absolute.tar.gz",
        gz(&RawTar::default()
            .pax("path", &escape)
            .file("innocent", b"escaped\n")
            .finish()),
    );
    hostile(
        "gnu-long-name-escape.tar.gz",
        gz(&RawTar::default()
            .long_name(&format!("{}escaped", "../".repeat(40)))
            .file("innocent", b"escaped\n")
            .finish()),
    );
    hostile(
        "name-too-long.tar.gz",
        gz(&RawTar::default()
            .long_name(&"n".repeat(300))
            .file("innocent", b"long\n")
            .finish()),
    );
    hostile(
        "duplicate-entry.tar.gz",
        gz(&RawTar::default()
            .file("cattle.toml", toml)
            .file("cattle.toml", b"[[step]]\nfacility = \"reboot\"\n")
            .finish()),
    );
    hostile(
        "path-through-file.tar.gz",
        gz(&RawTar::default()
            .file("a", b"a file\n")
            .file("a/b", b"through it\n")
            .finish()),
    );
    hostile(
        "file-over-directory.tar.gz",
        gz(&RawTar::default()
            .file("a/b", b"in a directory\n")
            .file("a", b"the same name as a file\n")
            .finish()),
    );
    hostile(
        "good-then-bad.tar.gz",
        gz(&RawTar::default()
            .file("cattle.toml", toml)
            .dir("files")
            .file("files/motd", b"hello\n")
            .file("../escaped", b"escaped\n")
            .finish()),
    );
}

fn steps(repo: &Path, seeds: &mut Vec<Seed>) {
    const T: &str = "steps_parse";
    for example in ["poem", "flaky"] {
        let text = std::fs::read(repo.join("examples").join(example).join("cattle.toml")).unwrap();
        add(seeds, T, &format!("ok-{example}.toml"), text);
    }
    let ok_all = r#"[[step]]
facility = "make_dir"
path = "/var/poems"
timeout = "10m"

[[step]]
facility = "install_file"
source = "files/motd"
dest = "/etc/motd"
attempts = 100

[[step]]
facility = "chmod"
path = "/etc/motd"
mode = "0644"

[[step]]
facility = "chown"
path = "/etc/motd"
owner = "0"
group = "adm"

[[step]]
facility = "symlink"
source = "/etc/motd"
dest = "/etc/motd.link"

[[step]]
facility = "unlink"
path = "/etc/motd.old"

[[step]]
facility = "apt_packages"
packages = ["nginx", "curl"]

[[step]]
facility = "systemd_restart"
service = "nginx"

[[step]]
facility = "command"
argv = ["sh", "flaky.sh"]
creates = "/var/done"
unless = ["test", "-e", "/var/done"]

[[step]]
facility = "reboot"
"#;
    add(
        seeds,
        T,
        "ok-every-facility.toml",
        ok_all.as_bytes().to_vec(),
    );
    add(
        seeds,
        T,
        "ok-custom-facility.toml",
        b"[[step]]\nfacility = \"flaky\"\ncreates = \"/var/done\"\nsensitive = [\"creates\"]\n"
            .to_vec(),
    );
    let bad: &[(&str, &str)] = &[
        ("empty", ""),
        ("no-steps", "# nothing\n[other]\nx = 1\n"),
        ("not-toml", "[[step]\nfacility = \n"),
        ("no-facility", "[[step]]\npath = \"/x\"\n"),
        ("facility-not-string", "[[step]]\nfacility = 3\n"),
        (
            "unknown-facility",
            "[[step]]\nfacility = \"make_dirs\"\npath = \"/x\"\n",
        ),
        (
            "unknown-argument",
            "[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\nmode = \"0755\"\n",
        ),
        (
            "attempts-zero",
            "[[step]]\nfacility = \"reboot\"\nattempts = 0\n",
        ),
        (
            "attempts-huge",
            "[[step]]\nfacility = \"reboot\"\nattempts = 9223372036854775807\n",
        ),
        (
            "timeout-zero",
            "[[step]]\nfacility = \"reboot\"\ntimeout = \"0s\"\n",
        ),
        (
            "timeout-years",
            "[[step]]\nfacility = \"reboot\"\ntimeout = \"99years\"\n",
        ),
        (
            "timeout-number",
            "[[step]]\nfacility = \"reboot\"\ntimeout = 10\n",
        ),
        (
            "relative-path",
            "[[step]]\nfacility = \"make_dir\"\npath = \"var/x\"\n",
        ),
        (
            "source-absolute",
            "[[step]]\nfacility = \"install_file\"\nsource = \"/etc/passwd\"\ndest = \"/x\"\n",
        ),
        (
            "source-dotdot",
            "[[step]]\nfacility = \"install_file\"\nsource = \"../../etc/passwd\"\ndest = \"/x\"\n",
        ),
        (
            "source-missing",
            "[[step]]\nfacility = \"install_file\"\nsource = \"nope.txt\"\ndest = \"/x\"\n",
        ),
        (
            "source-directory",
            "[[step]]\nfacility = \"install_file\"\nsource = \"files\"\ndest = \"/x\"\n",
        ),
        (
            "chown-nobody",
            "[[step]]\nfacility = \"chown\"\npath = \"/x\"\n",
        ),
        (
            "mode-not-octal",
            "[[step]]\nfacility = \"chmod\"\npath = \"/x\"\nmode = \"rwx\"\n",
        ),
        (
            "argv-empty",
            "[[step]]\nfacility = \"command\"\nargv = []\n",
        ),
        (
            "argv-not-strings",
            "[[step]]\nfacility = \"command\"\nargv = [1, 2]\n",
        ),
        ("step-not-table", "step = 3\n"),
        ("unknown-top-level", "[[stepz]]\nfacility = \"reboot\"\n"),
        (
            "multibyte-before-error",
            "# é ü 漢字 🐄\n[[step]]\nfacility = \"🐄\"\n",
        ),
        (
            "crlf",
            "[[step]]\r\nfacility = \"make_dir\"\r\npath = 7\r\n",
        ),
        (
            "second-step-bad",
            "[[step]]\nfacility = \"reboot\"\n\n[[step]]\nfacility = \"unlink\"\n",
        ),
        (
            "custom-unknown-argument",
            "[[step]]\nfacility = \"flaky\"\nsucceed = 2\n",
        ),
        (
            "custom-wrong-type",
            "[[step]]\nfacility = \"flaky\"\nsucceed_on = \"2\"\n",
        ),
        (
            "custom-path-name",
            "[[step]]\nfacility = \"../facilities/flaky\"\n",
        ),
    ];
    for (name, text) in bad {
        add(
            seeds,
            T,
            &format!("bad-{name}.toml"),
            text.as_bytes().to_vec(),
        );
    }
    add(
        seeds,
        T,
        "bad-not-utf8.toml",
        b"[[step]]\nfacility = \"\xff\xfe\"\n".to_vec(),
    );
}

fn documents(seeds: &mut Vec<Seed>) {
    const T: &str = "manifest_parse";
    let id = uuid::Uuid::parse_str("019a3b6e-7c1d-7f00-8a00-0123456789ab").unwrap();
    let host = HostId::new("web-1.example").unwrap();
    let manifest = Manifest {
        format: FORMAT,
        id,
        version: 1_767_323_045_678,
        floor: Some(1_767_323_045_677),
        created: "2026-01-02T03:04:05.678Z".into(),
        expires: "2026-01-09T03:04:05.678Z".into(),
        publisher: "ops@laptop".into(),
        config: "poem".into(),
        steps: 4,
        bundle: BundleRef {
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            size: 1234,
        },
        hosts: vec![host.clone(), HostId::new("db_2").unwrap()],
        vars: false,
        check: false,
        diff: false,
        message: None,
        rollout: None,
        select: Vec::new(),
        grouped: false,
    };
    let inbox = Inbox {
        format: FORMAT,
        host: host.clone(),
        executions: vec![id, uuid::Uuid::nil()],
        vars: Default::default(),
    };
    let status = HostStatus {
        format: FORMAT,
        execution: id,
        host: host.clone(),
        state: State::Progress,
        steps: 4,
        step: Some(StepStatus {
            number: 2,
            facility: "install_file".into(),
            description: "/var/poems/poem.txt has the contents of poem.txt".into(),
            attempt: 1,
            attempts: 3,
        }),
        started: "2026-01-02T03:04:06.000Z".into(),
        updated: "2026-01-02T03:04:07.000Z".into(),
        finished: None,
        error: None,
        seq: 7,
        agent_version: "0.1.0".into(),
        paused: None,
        waiting: None,
        log: None,
        results: vec![Some(StepResult::Changed)],
    };
    let cancel = Cancel {
        format: FORMAT,
        all: false,
        hosts: vec![host.clone()],
    };
    let lease = HostLease {
        format: FORMAT,
        host: host.clone(),
        nonce: uuid::Uuid::parse_str("5f0c6a52-3c1e-4d8a-9a41-7d2b0c9e8f11").unwrap(),
        machine: "4c4c4544004d3510804bb4c04f4e4d32".into(),
        state_dir: "/var/lib/cattle/agent".into(),
        pid: 812,
        since: "2026-01-02T03:04:06.000Z".into(),
        renewed: "2026-01-02T03:09:06.000Z".into(),
        renew_secs: 300,
        agent_version: "0.1.0".into(),
        heartbeat: None,
    };
    let conflict = Conflict {
        format: FORMAT,
        host: host.clone(),
        machine: "9d1e0c3a5b7f4e2d8c6a4b2e0f1d3c5a".into(),
        state_dir: "/var/lib/cattle/agent".into(),
        seen: "2026-01-02T03:05:00.000Z".into(),
        holder_machine: "4c4c4544004d3510804bb4c04f4e4d32".into(),
        holder_state_dir: "/var/lib/cattle/agent".into(),
    };
    add(seeds, T, "ok-manifest.json", json(&manifest));
    // Manifests as the store holds them: in a signed envelope.
    let signed = crate::fuzz_key().sign(&manifest);
    add(seeds, T, "signed-envelope.json", json(&signed));
    let mut other_host = manifest.clone();
    other_host.hosts.push(HostId::new("evil-1").unwrap());
    let mut altered = signed.clone();
    altered.payload = String::from_utf8(json(&other_host)).unwrap();
    add(seeds, T, "forged-altered-payload.json", json(&altered));
    let mut bad_sig = signed.clone();
    bad_sig.signatures[0].sig = "00".repeat(64);
    add(seeds, T, "forged-zero-signature.json", json(&bad_sig));
    let mut short_sig = signed.clone();
    short_sig.signatures[0].sig = "abc".into();
    add(seeds, T, "forged-short-signature.json", json(&short_sig));
    let other_key = cattle_core::signing::SecretKey::from_seed([9; 32], "someone else");
    add(
        seeds,
        T,
        "forged-other-key.json",
        json(&other_key.sign(&manifest)),
    );
    add(
        seeds,
        T,
        "forged-unsigned.json",
        json(&cattle_core::wire::Envelope::unsigned(&manifest)),
    );
    add(seeds, T, "ok-inbox.json", json(&inbox));
    let group = GroupInbox {
        format: FORMAT,
        group: cattle_core::keys::inbox_group(&host),
        executions: vec![GroupEntry {
            id,
            hosts: vec![host.clone()],
        }],
        per_host: true,
    };
    add(seeds, T, "ok-group-inbox.json", json(&group));
    // An inbox carrying a host's signed variables, and those variables alone.
    let vars = HostVars {
        format: FORMAT,
        execution: id,
        host: host.clone(),
        vars: [
            ("port".to_string(), serde_json::json!(8080)),
            ("peers".to_string(), serde_json::json!(["db-1", "db-2"])),
        ]
        .into(),
    };
    let signed_vars = crate::fuzz_key().sign_host_vars(&vars);
    let mut with_vars = inbox.clone();
    with_vars.vars.insert(id, signed_vars.clone());
    add(seeds, T, "ok-inbox-with-vars.json", json(&with_vars));
    add(seeds, T, "ok-vars.json", json(&vars));
    add(seeds, T, "signed-vars.json", json(&signed_vars));
    add(seeds, T, "ok-status.json", json(&status));
    // A check-mode run, finished: every result a status can hold.
    let mut checked = status.clone();
    checked.state = State::Done;
    checked.step = None;
    checked.results = vec![
        Some(StepResult::WouldChange),
        Some(StepResult::InState),
        Some(StepResult::Unknown),
        None,
    ];
    add(seeds, T, "ok-status-check-mode.json", json(&checked));
    add(seeds, T, "ok-cancel.json", json(&cancel));
    add(seeds, T, "ok-lease.json", json(&lease));
    add(seeds, T, "ok-conflict.json", json(&conflict));
    let manifest_text = String::from_utf8(json(&manifest)).unwrap();
    let bad: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("not-json", "manifest".into()),
        (
            "truncated-manifest",
            manifest_text[..manifest_text.len() / 2].into(),
        ),
        ("manifest-bad-host", manifest_text.replace("db_2", "../etc")),
        (
            "manifest-bad-uuid",
            manifest_text.replace("019a3b6e", "zzzz"),
        ),
        (
            "manifest-negative-size",
            manifest_text.replace("1234", "-1"),
        ),
        ("manifest-huge-size", manifest_text.replace("1234", "1e400")),
        (
            "manifest-format-string",
            manifest_text.replace(
                &format!("\"format\": {FORMAT}"),
                &format!("\"format\": \"{FORMAT}\""),
            ),
        ),
        (
            "status-unknown-state",
            String::from_utf8(json(&status))
                .unwrap()
                .replace("PROGRESS", "PENDINGX"),
        ),
        (
            "inbox-null-host",
            String::from_utf8(json(&inbox))
                .unwrap()
                .replace("\"web-1.example\"", "null"),
        ),
        (
            "deep-nesting",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
        (
            "duplicate-key",
            "{\"format\":1,\"format\":2,\"all\":true,\"hosts\":[]}".into(),
        ),
        (
            "lone-surrogate",
            "{\"format\":1,\"host\":\"h\",\"machine\":\"\\ud800\",\"state_dir\":\"/\",\"seen\":\"x\",\"holder_machine\":\"m\",\"holder_state_dir\":\"/\"}".into(),
        ),
    ];
    for (name, text) in bad {
        add(seeds, T, &format!("bad-{name}.json"), text.into_bytes());
    }
}

/// Pretty JSON of a wire document: seeds are easier to read that way.
fn json<T: serde::Serialize>(doc: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(doc).unwrap();
    out.push(b'\n');
    out
}

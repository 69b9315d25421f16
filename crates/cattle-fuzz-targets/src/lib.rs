//! The bodies of Cattle's fuzz targets.
//!
//! Each function takes the fuzzer's bytes, feeds them to one of Cattle's
//! readers of untrusted input and panics if a property every input must keep
//! is broken. The cargo-fuzz targets in `fuzz/` are one-line wrappers around
//! these, and `tests/corpus.rs` replays the seed corpus in `fuzz/corpus/`
//! through the very same functions on stable Rust, so the test suite keeps
//! every seed and every past crash passing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cattle_core::bundle::{self, BundleError};
use cattle_core::signing::{SecretKey, TrustedKeys};
use cattle_core::wire::{
    self, Cancel, Conflict, Envelope, GroupInbox, HostLease, HostStatus, HostVars, Inbox, Manifest,
};
use cattle_stdlib::{Plan, PlanError};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod seeds;

/// The fuzz targets, by name: the directory names under `fuzz/corpus/`.
pub const TARGETS: &[&str] = &["bundle_extract", "steps_parse", "manifest_parse"];

/// Extract `data` as a bundle into a fresh temporary directory.
///
/// Whatever the bytes, extraction must not panic, and must leave only regular
/// files and directories inside the destination, with modes no wider than
/// 0755, and nothing beside it. A refusal must leave nothing at all: the whole
/// archive is checked before a byte is written. Only a failure to write (a
/// full disk) may leave part of the bundle behind, still inside.
///
/// Input that is not gzip is, besides, gzipped and extracted too (its result
/// dropped), so that the fuzzer can work on tar headers directly instead of
/// through the compressor.
pub fn bundle_extract(data: &[u8]) -> Result<(), BundleError> {
    let result = extract_checked(data);
    if !data.starts_with(&[0x1f, 0x8b]) {
        let _ = extract_checked(&seeds::gz_stored(data));
    }
    result
}

fn extract_checked(data: &[u8]) -> Result<(), BundleError> {
    let root = tempfile::tempdir().expect("cannot create a temporary directory");
    let dest = root.path().join("config");
    let result = bundle::extract(data, &dest);

    let beside: Vec<PathBuf> = std::fs::read_dir(root.path())
        .expect("cannot list the temporary directory")
        .map(|e| e.expect("cannot list the temporary directory").path())
        .filter(|p| *p != dest)
        .collect();
    assert!(
        beside.is_empty(),
        "extraction wrote beside its destination: {beside:?}"
    );
    match &result {
        Ok(()) => {
            let mode = std::fs::symlink_metadata(&dest)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o700, "destination mode {mode:o}");
            check_tree(&dest);
        }
        Err(BundleError::Write { .. }) => {
            if dest.exists() {
                check_tree(&dest);
            }
        }
        Err(e) => assert!(!dest.exists(), "refused ({e}) after writing"),
    }
    result
}

/// Everything under `dir` is a regular file or a directory with a sane mode.
fn check_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        assert!(mode & !0o755 == 0, "{} has mode {mode:o}", path.display());
        if meta.is_dir() {
            check_tree(&path);
        } else {
            assert!(
                meta.is_file(),
                "{} is neither a file nor a directory",
                path.display()
            );
        }
    }
}

/// Parse `data` as a steps file, `cattle.toml`, in a config directory that
/// holds a few files (`poem.txt`, `flaky.sh`, `files/motd`, and a directory
/// `files/`) for `install_file` steps to name, and the custom facility
/// `flaky` of `examples/flaky` with its schema.
///
/// Bytes that are not UTF-8 are refused as `Plan::load` refuses them. A plan
/// must describe each of its steps; an error must name a line and column
/// inside the text.
pub fn steps_parse(data: &[u8]) -> Result<Plan, PlanError> {
    let file = Path::new("cattle.toml");
    let Ok(source) = std::str::from_utf8(data) else {
        return Err(PlanError {
            file: file.to_path_buf(),
            position: None,
            message: "cannot read the steps file: stream did not contain valid UTF-8".into(),
            hint: None,
        });
    };
    let result = Plan::parse(source, file, config_dir());
    match &result {
        Ok(plan) => {
            assert!(!plan.steps.is_empty());
            for (i, step) in plan.steps.iter().enumerate() {
                assert_eq!(step.number, i + 1);
                assert!(step.line >= 1 && step.line <= source.split('\n').count());
                assert!(step.attempts >= 1);
                let _ = step.facility.describe();
            }
        }
        Err(e) => {
            if let Some((line, column)) = e.position {
                assert!(line >= 1 && column >= 1, "{e}");
                assert!(line <= source.split('\n').count(), "{e}");
            }
            let _ = e.to_string();
        }
    }
    result
}

/// The config directory `steps_parse` parses in: made once per process.
fn config_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("poem.txt"), "roses are red\n").unwrap();
        std::fs::write(dir.path().join("flaky.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("files/motd"), "hello\n").unwrap();
        let custom = dir.path().join("facilities");
        std::fs::create_dir(&custom).unwrap();
        std::fs::write(custom.join("flaky"), "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(custom.join("flaky"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(
            custom.join("flaky.toml"),
            include_str!("../../../examples/flaky/facilities/flaky.toml"),
        )
        .unwrap();
        dir
    })
    .path()
}

/// Parse `data` as each of the JSON documents Cattle reads from the store, the
/// way its readers do; returns the names of the documents it is valid as.
///
/// Adding a document is one line below.
pub fn manifest_parse(data: &[u8]) -> Vec<&'static str> {
    let mut valid = Vec::new();
    envelope(data, &mut valid);
    document::<Manifest>("manifest", data, &mut valid);
    document::<Inbox>("inbox", data, &mut valid);
    document::<GroupInbox>("group", data, &mut valid);
    document::<HostVars>("vars", data, &mut valid);
    document::<HostStatus>("status", data, &mut valid);
    document::<Cancel>("cancel", data, &mut valid);
    document::<HostLease>("lease", data, &mut valid);
    document::<Conflict>("conflict", data, &mut valid);
    valid
}

/// The key the signed seeds are signed with; `manifest_parse` trusts it.
pub fn fuzz_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed([7; 32], "fuzz"))
}

/// Read `data` as a manifest envelope and check its signature against
/// [`fuzz_key`], as the agent does. Adds `envelope` to `valid` when it reads,
/// and `verified` when the signature holds, which then must be for exactly the
/// manifest in the payload.
fn envelope(data: &[u8], valid: &mut Vec<&'static str>) {
    let before = valid.len();
    document::<Envelope>("envelope", data, valid);
    if valid.len() == before {
        return;
    }
    let envelope: Envelope = serde_json::from_slice(data).unwrap();
    static TRUSTED: OnceLock<TrustedKeys> = OnceLock::new();
    let trusted = TRUSTED.get_or_init(|| {
        let mut trusted = TrustedKeys::default();
        trusted
            .add(&fuzz_key().public().to_string(), Path::new("fuzz.pub"))
            .unwrap();
        trusted
    });
    match envelope.verify(trusted) {
        Ok((manifest, key)) => {
            assert_eq!(key, fuzz_key().public());
            assert_eq!(Ok(manifest), envelope.manifest());
            valid.push("verified");
        }
        Err(refusal) => {
            let _ = refusal.to_string();
        }
    }
    // The same envelope as a host's variables: never both.
    if let Ok((vars, key)) = envelope.verify_host_vars(trusted) {
        assert_eq!(key, fuzz_key().public());
        assert_eq!(Ok(vars), envelope.host_vars());
        assert!(!valid.contains(&"verified"), "a signature verified as both");
        valid.push("verified-vars");
    }
}

/// Read `data` as a `T` as the store's readers do (at most
/// [`wire::MAX_DOCUMENT_BYTES`], `serde_json::from_slice`). A document that
/// reads must write back to JSON that reads as the same document; then `name`
/// is added to `valid`.
pub fn document<T>(name: &'static str, data: &[u8], valid: &mut Vec<&'static str>)
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    if data.len() as u64 > wire::MAX_DOCUMENT_BYTES {
        return;
    }
    let Ok(doc) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let written = serde_json::to_vec(&doc).expect("a document that was read cannot be written");
    let again: T = serde_json::from_slice(&written)
        .unwrap_or_else(|e| panic!("{name} written as {written:?} does not read back: {e}"));
    assert_eq!(again, doc, "{name} changed when written and read back");
    valid.push(name);
}

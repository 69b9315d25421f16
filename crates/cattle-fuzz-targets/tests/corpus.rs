//! Replays `fuzz/corpus/` through the fuzz targets' bodies, so every seed and
//! every input a fuzzer once crashed on keeps passing on stable Rust.
//!
//! `ok-*` inputs must be accepted, `hostile-*` bundles and `bad-*` inputs
//! refused; any other input (a fuzzer's find) only must not panic.

use std::path::{Path, PathBuf};

use cattle_core::bundle::{self, BundleError};
use cattle_fuzz_targets::seeds::{self, ESCAPE_DIR};
use cattle_fuzz_targets::{TARGETS, bundle_extract, manifest_parse, steps_parse};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The inputs of one target, by file name, sorted.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let write = std::env::var_os("CATTLE_WRITE_SEEDS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for seed in seeds::all(&repo()) {
        assert!(TARGETS.contains(&seed.target));
        let path = repo()
            .join("fuzz/corpus")
            .join(seed.target)
            .join(&seed.name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &seed.bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(seed.bytes.as_slice()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seeds differ from what crates/cattle-fuzz-targets/src/seeds.rs makes \
         (rewrite them with `CATTLE_WRITE_SEEDS=1 cargo test -p cattle-fuzz-targets`): {stale:#?}"
    );
}

#[test]
fn bundle_corpus_replays() {
    for (name, bytes) in corpus("bundle_extract") {
        let result = bundle_extract(&bytes);
        println!("{name}: {result:?}");
        if name.starts_with("ok-") {
            result.unwrap_or_else(|e| panic!("{name} refused: {e}"));
        } else if name.starts_with("hostile-") {
            let err = result.expect_err(&name);
            assert!(!matches!(err, BundleError::Write { .. }), "{name}: {err}");
        }
        assert!(!Path::new(ESCAPE_DIR).exists(), "{name} wrote {ESCAPE_DIR}");
    }
}

#[test]
fn too_many_entries_are_refused_before_writing() {
    let err = bundle_extract(&seeds::many_entries(bundle::MAX_ENTRIES + 1)).unwrap_err();
    assert!(matches!(err, BundleError::TooLarge(n) if n == bundle::MAX_ENTRIES as u64));
}

#[test]
fn steps_corpus_replays() {
    for (name, bytes) in corpus("steps_parse") {
        let result = steps_parse(&bytes);
        match &result {
            Ok(plan) => println!("{name}: {} steps", plan.steps.len()),
            Err(e) => println!("{name}: {e}"),
        }
        if name.starts_with("ok-") {
            result.unwrap_or_else(|e| panic!("{name} refused: {e}"));
        } else if name.starts_with("bad-") {
            assert!(result.is_err(), "{name} accepted");
        }
    }
}

#[test]
fn document_corpus_replays() {
    for (name, bytes) in corpus("manifest_parse") {
        let valid = manifest_parse(&bytes);
        println!("{name}: valid as {valid:?}");
        // `ok-KIND.json` or `ok-KIND-VARIANT.json`.
        if let Some(kind) = name
            .strip_prefix("ok-")
            .and_then(|n| n.strip_suffix(".json"))
            .map(|n| n.split_once('-').map_or(n, |(kind, _)| kind))
        {
            assert_eq!(valid, [kind], "{name}");
        } else if name.starts_with("bad-") {
            assert!(valid.is_empty(), "{name} is valid as {valid:?}");
        } else if name.starts_with("signed-vars") {
            assert_eq!(valid, ["envelope", "verified-vars"], "{name}");
        } else if name.starts_with("signed-") {
            assert_eq!(valid, ["envelope", "verified"], "{name}");
        } else if name.starts_with("forged-") {
            assert_eq!(valid, ["envelope"], "{name} must read but not verify");
        }
    }
}

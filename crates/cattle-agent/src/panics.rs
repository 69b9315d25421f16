//! What the agent was doing when it panicked, kept for its next start.
//!
//! The release build aborts on a panic (systemd then restarts a clean
//! process), so nothing in the process can turn a panic into an error. The
//! hook installed here writes the panic's message to `<state-dir>/PANIC` first;
//! the next start reads it and reports it with the interrupted step, and the
//! step's attempts bound how often that can happen, so that a step which makes
//! the agent panic ends in ERROR with the reason instead of a crash loop.

use std::io::Write;
use std::path::{Path, PathBuf};

/// In the state directory: the last panic's time, place and message.
pub const PANIC_FILE: &str = "PANIC";

/// Longest panic message kept.
const MAX_MESSAGE: usize = 4096;

/// Record every panic of this process in `state_dir`, then panic as before.
pub fn record_in(state_dir: &Path) {
    let path = state_dir.join(PANIC_FILE);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        write(&path, info);
        previous(info);
    }));
}

fn write(path: &PathBuf, info: &std::panic::PanicHookInfo<'_>) {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    let mut message: String = message.chars().take(MAX_MESSAGE).collect();
    if let Some(at) = info.location() {
        message.push_str(&format!(" (at {}:{})", at.file(), at.line()));
    }
    let line = format!(
        "{} {}\n",
        cattle_core::now_rfc3339(),
        message.replace('\n', " ")
    );
    // Best effort: the process is going down, and nothing else may fail here.
    if let Ok(mut file) = std::fs::File::create(path) {
        let _ = file.write_all(line.as_bytes());
        let _ = file.sync_all();
    }
}

/// The last panic recorded in `state_dir`, if any, and forget it.
pub fn take(state_dir: &Path) -> Option<String> {
    let path = state_dir.join(PANIC_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_recorded_with_its_place_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        record_in(dir.path());
        let caught = std::panic::catch_unwind(|| panic!("a facility\nfell over: {}", 42));
        // Back to the default hook, so that other tests' panics are not recorded here.
        let _ = std::panic::take_hook();
        assert!(caught.is_err());
        let recorded = take(dir.path()).expect("the panic was recorded");
        assert!(
            recorded.contains("a facility fell over: 42 (at crates/cattle-agent/src/panics.rs:"),
            "{recorded}"
        );
        assert_eq!(take(dir.path()), None, "taken once");
    }
}

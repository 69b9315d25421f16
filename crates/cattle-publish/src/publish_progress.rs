//! Part of the `cattle` binary, not of the library: `cattle publish`'s
//! progress on a terminal. One line on standard error, rewritten in place
//! (`bundle 12.0 of 48.0 MiB uploaded`, `1234/2000 hosts addressed`) and
//! erased once the publish is over, so that what stays on the screen, and
//! all that scripts see when standard error is not a terminal, is the usual
//! output.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cattle_publish::publish::Progress;

/// Redraw at most this often: 2,000 hosts addressed do not mean 2,000 writes.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Where the publish is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stage {
    bundle: Option<(u64, u64)>,
    addressed: Option<(usize, usize)>,
}

/// The line for `stage`: the addressing once it has started, else the bundle.
fn line(stage: Stage) -> String {
    match (stage.addressed, stage.bundle) {
        (Some((done, total)), _) => format!(
            "{done}/{total} {} addressed",
            if total == 1 { "host" } else { "hosts" }
        ),
        (None, Some((sent, total))) if sent < total => {
            format!("uploading the bundle: {} of {}", size(sent), size(total))
        }
        (None, Some((_, total))) => format!("bundle in the store ({}); signing", size(total)),
        (None, None) => String::new(),
    }
}

/// `812 bytes`, `3.4 KiB`, `12.0 MiB`.
fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / KIB),
        _ => format!("{:.1} MiB", bytes as f64 / KIB / KIB),
    }
}

/// Draws the progress line on standard error; erased by [`Drop`].
#[derive(Debug)]
pub struct TerminalProgress {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    stage: Stage,
    drawn: bool,
    last: Option<Instant>,
}

impl TerminalProgress {
    pub fn new() -> TerminalProgress {
        TerminalProgress {
            state: Mutex::new(State {
                stage: Stage::default(),
                drawn: false,
                last: None,
            }),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Stage), finished: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut state.stage);
        let due = state.last.is_none_or(|t| t.elapsed() >= REDRAW_EVERY);
        if !(due || finished) {
            return;
        }
        state.last = Some(Instant::now());
        state.drawn = true;
        // Back to the line's start and erase it, then the new one.
        let _ = write!(std::io::stderr(), "\r\x1b[K{}", line(state.stage));
    }
}

impl Progress for TerminalProgress {
    fn bundle(&self, sent: u64, total: u64) {
        self.update(|s| s.bundle = Some((sent, total)), sent == total);
    }

    fn addressed(&self, done: usize, total: usize) {
        self.update(|s| s.addressed = Some((done, total)), done == total);
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_the_stage_the_publish_is_at() {
        let mut stage = Stage::default();
        assert_eq!(line(stage), "");
        stage.bundle = Some((0, 50 << 20));
        assert_eq!(line(stage), "uploading the bundle: 0 bytes of 50.0 MiB");
        stage.bundle = Some((50 << 20, 50 << 20));
        assert_eq!(line(stage), "bundle in the store (50.0 MiB); signing");
        stage.addressed = Some((1234, 2000));
        assert_eq!(line(stage), "1234/2000 hosts addressed");
        stage.addressed = Some((0, 1));
        assert_eq!(line(stage), "0/1 host addressed");
        assert_eq!(size(3500), "3.4 KiB");
    }
}

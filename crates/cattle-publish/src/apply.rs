//! `cattle apply DIR`: run a config on this machine, with no store at all.
//!
//! The same parser, runner and log lines as an agent's run; the log goes to
//! standard error and, with `--log FILE`, to that file too.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use cattle_stdlib::{Backoff, Context, Event, Observer, Outcome, Plan, Start};

struct Printer {
    file: Option<std::fs::File>,
}

impl Observer for Printer {
    fn event(&mut self, event: &Event<'_>) {
        let line = format!("{} {event}\n", cattle_core::now_rfc3339());
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(file) = &mut self.file {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

pub fn apply(dir: &Path, log: Option<&Path>) -> anyhow::Result<Outcome> {
    let plan = Plan::load(dir)?;
    let file = match log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file `{}`", path.display()))?,
        ),
        None => None,
    };
    let ctx = Context::new(dir);
    Ok(cattle_stdlib::run(
        &plan,
        &ctx,
        &Backoff::STEP,
        &Start::at(1),
        &mut Printer { file },
    ))
}

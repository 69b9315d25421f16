//! `cattle apply DIR`: run a config on this machine, with no store at all.
//!
//! The same parser, runner and log lines as an agent's run; the log goes to
//! standard error and, with `--log FILE`, to that file too. The last line is
//! the recap: how many steps changed something, found their state in place,
//! or failed.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use cattle_stdlib::{Backoff, Environment, Event, Observer, Outcome, Plan, Recap, Start};

struct Printer {
    file: Option<std::fs::File>,
    recap: Recap,
}

impl Printer {
    fn print(&mut self, text: &str) {
        let line = format!("{} {text}\n", cattle_core::now_rfc3339());
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(file) = &mut self.file {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

impl Observer for Printer {
    fn event(&mut self, event: &Event<'_>) {
        if let Event::StepFinished { result, .. } = event {
            self.recap.add(*result);
        }
        self.print(&event.to_string());
    }
}

/// Run the config in `dir` here; how it ended, and the recap of its steps.
pub fn apply(dir: &Path, log: Option<&Path>) -> anyhow::Result<(Outcome, Recap)> {
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
    let mut printer = Printer {
        file,
        recap: Recap::default(),
    };
    let mut environment = Environment::new(dir);
    environment.ca_bundle =
        std::env::var_os(cattle_core::env::CA_BUNDLE).map(std::path::PathBuf::from);
    let outcome = cattle_stdlib::run(
        &plan,
        &environment,
        &Backoff::STEP,
        &Start::at(1),
        &mut printer,
    );
    let recap = printer.recap;
    printer.print(&format!("recap: {recap}"));
    Ok((outcome, recap))
}

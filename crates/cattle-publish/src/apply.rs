//! `cattle apply DIR`: run a config on this machine, with no store at all.
//!
//! The same parser, runner and log lines as an agent's run; the log goes to
//! standard error and, with `--log FILE`, to that file too. The last line is
//! the recap: how many steps changed something, found their state in place,
//! or failed. With `--check` only the steps' checks run and nothing is
//! changed: each step says whether it would change, and the recap counts
//! that (`recap (check mode): would_change=1 in_state=3 failed=0
//! unknown=0`). With `--diff` (with `--check` or not) a step that changes a
//! file shows how, as a unified diff, before it does.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_stdlib::{Backoff, Config, Environment, Event, Observer, Outcome, Recap, Start, Vars};

use crate::exit;
use crate::inventory::{self, Inventory};

/// How a config runs, here (`cattle apply`) or on hosts (`cattle publish`,
/// signed in the manifest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    /// `--check`: run every step's check and nothing else; nothing changes.
    pub check: bool,
    /// `--diff`: show what steps change (or would change) in files.
    pub diff: bool,
}

/// Where `cattle apply` takes variables from: as a host would get them.
#[derive(Debug, Clone, Default)]
pub struct VarSources {
    /// `--hosts`: a hosts file or TOML inventory.
    pub inventory: Option<PathBuf>,
    /// `--host-vars NAME`: the inventory's host whose values to use, and the
    /// `host` variable; without it, this machine's host name.
    pub host: Option<String>,
    /// `--var NAME=VALUE`.
    pub overrides: Vars,
}

impl VarSources {
    /// The variables the host would get from `cattle publish` with the same
    /// inventory and `--var`s.
    pub fn resolve(&self, config: &Config) -> anyhow::Result<Vars> {
        let host = match &self.host {
            Some(name) => HostId::new(name).map_err(anyhow::Error::msg)?,
            None => {
                let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .context("cannot read this machine's host name")?;
                HostId::new(name.trim()).map_err(|e| {
                    anyhow::anyhow!("this machine's host name cannot be a host ID ({e}); pass `--host-vars NAME`")
                })?
            }
        };
        let inventory = match &self.inventory {
            Some(path) => {
                let inventory = Inventory::load(path)?;
                if !inventory.hosts.contains(&host) {
                    anyhow::bail!(
                        "host `{host}` is not in `{}`",
                        inventory::display_name(path)
                    );
                }
                inventory
            }
            None => Inventory::default(),
        };
        inventory::resolve(config.defaults(), &inventory, &self.overrides, &host)
            .map_err(anyhow::Error::msg)
    }
}

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

/// Run the config in `dir` here, as `mode` says; how it ended, and the recap
/// of its steps.
pub fn apply(
    dir: &Path,
    log: Option<&Path>,
    mode: Mode,
    vars: &VarSources,
) -> anyhow::Result<(Outcome, Recap)> {
    let config = Config::load(dir)?;
    let plan = config.plan(&vars.resolve(&config)?)?;
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
        recap: Recap::new(mode.check),
    };
    let mut environment = Environment::new(dir);
    environment.ca_bundle =
        std::env::var_os(cattle_core::env::CA_BUNDLE).map(std::path::PathBuf::from);
    environment.check_mode = mode.check;
    environment.diff = mode.diff;
    let outcome = cattle_stdlib::run(
        &plan,
        &environment,
        &Backoff::STEP,
        &Start::at(1),
        &mut printer,
    );
    let recap = printer.recap;
    let label = if mode.check {
        "recap (check mode)"
    } else {
        "recap"
    };
    printer.print(&format!("{label}: {recap}"));
    Ok((outcome, recap))
}

/// `cattle apply`'s exit code for a run that ended with `outcome` (see
/// [`exit`]): 0 when every step is done, or in check mode in state; 5 in
/// check mode when some step would change; 1 when a step failed or the run
/// was stopped.
pub fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Done => exit::SUCCESS,
        Outcome::Checked { would_change, .. } if would_change.is_empty() => exit::SUCCESS,
        Outcome::Checked { .. } => exit::WOULD_CHANGE,
        Outcome::Failed { .. } | Outcome::Stopped { .. } | Outcome::RebootRequested { .. } => {
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_that_finds_changes_exits_apart_from_success_failure_and_usage() {
        let checked = |would_change: Vec<usize>| Outcome::Checked {
            would_change,
            unknown: Vec::new(),
        };
        assert_eq!(exit_code(&Outcome::Done), exit::SUCCESS);
        assert_eq!(exit_code(&checked(Vec::new())), exit::SUCCESS);
        assert_eq!(exit_code(&checked(vec![2])), exit::WOULD_CHANGE);
        let failed = Outcome::Failed {
            step: 1,
            error: "x".to_string(),
        };
        assert_eq!(exit_code(&failed), exit::FAILURE);
        assert_eq!(exit_code(&Outcome::Stopped { next_step: 2 }), exit::FAILURE);
        let codes = [
            exit::SUCCESS,
            exit::FAILURE,
            exit::USAGE,
            exit::HOSTS_FAILED,
            exit::HOSTS_UNFINISHED,
            exit::WOULD_CHANGE,
        ];
        let distinct: std::collections::BTreeSet<u8> = codes.into_iter().collect();
        assert_eq!(distinct.len(), codes.len());
    }
}

//! The command line of `cattle`, as clap reads it.
//!
//! It lives in the library rather than in `main.rs` so that `cattle-docgen`
//! can build the man pages and shell completions from these very definitions:
//! they cannot drift from what the binary accepts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::settings::Flags;

/// Publish configurations for hosts to pull, and read back what they report.
#[derive(Debug, Parser)]
// `name`: the command is `cattle`, not the package's name, in `--version`,
// usage and the man pages.
#[command(name = "cattle", version, propagate_version = true)]
pub struct Cli {
    /// Settings every command takes; they override the config file and the
    /// environment (see `cattle config`).
    #[command(flatten)]
    pub flags: Flags,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each has a man page `cattle-NAME(1)`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a key pair for signing executions: NAME.key (secret) and NAME.pub.
    Keygen {
        /// Path and name of the key files, without extension.
        name: PathBuf,
        /// A note stored with the key, e.g. who holds it.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Validate and bundle a config directory, upload it and address it to hosts.
    Publish {
        /// The config directory (with `cattle.toml` at its root).
        dir: PathBuf,
        /// The hosts: a hosts file (one host ID per line, optionally followed by
        /// `name=value` variables; `#` comments) or a TOML inventory (`*.toml`).
        #[arg(long)]
        hosts: PathBuf,
        /// Give every host variable NAME this value, over the config's and the
        /// inventory's (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Resolve, check and pack locally, upload nothing, and print each
        /// host's plan: its steps with their arguments as the host runs them.
        #[arg(long)]
        dry_run: bool,
        /// Check mode: hosts run every step's check and change nothing; each
        /// step reports whether it would change (see `cattle status`).
        #[arg(long)]
        check: bool,
        /// Hosts log what file steps change, or would change with `--check`,
        /// as unified diffs (secrets shown as `[sensitive]`).
        #[arg(long)]
        diff: bool,
        /// With `--dry-run`: only this host's plan.
        #[arg(long, requires = "dry_run")]
        host: Option<String>,
        /// Secret key file that signs the execution (from `cattle keygen`); default:
        /// CATTLE_SIGNING_KEY, else `signing_key` in the config file.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Publish without a signature; only agents started with `--allow-unsigned` run it.
        #[arg(long, conflicts_with = "key")]
        unsigned: bool,
        /// Agents do not start the execution once this long has passed (e.g. `12h`, `30d`).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        expires_in: Duration,
        /// Print a JSON object instead of the execution ID.
        #[arg(long, conflicts_with = "dry_run")]
        json: bool,
    },
    /// Show each host's state for an execution. Exit 0 only when all are DONE.
    Status {
        id: Uuid,
        /// Wait until every host is DONE, ERROR or CANCELLED (UNREADABLE hosts:
        /// at most a minute once they are the only ones left).
        #[arg(long)]
        wait: bool,
        /// With `--wait`: give up after this many seconds (exit 4, or 3 if a host needs attention).
        #[arg(long, requires = "wait")]
        timeout: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the hosts whose agents report to the store: last seen, version,
    /// execution, OS; flag silent hosts, hosts that never reported and host IDs
    /// used by two agents. Exit 3 when some host needs attention.
    Hosts {
        /// The hosts expected (a hosts file or TOML inventory, as for
        /// `publish`): those with no agent reporting are flagged `never reported`.
        #[arg(long, value_name = "FILE")]
        hosts: Option<PathBuf>,
        /// A host is `silent` once its agent has not renewed its lease for
        /// this many of its periods (an agent renews every 10 polls).
        #[arg(long, value_name = "N", default_value_t = crate::fleet::DEFAULT_SILENT_AFTER,
              value_parser = clap::value_parser!(u32).range(1..))]
        silent_after: u32,
        /// Also show facts: kernel, architecture, CPUs, memory, IP addresses.
        #[arg(long)]
        facts: bool,
        /// Only the hosts that need attention (silent, never reported,
        /// duplicate, unreadable).
        #[arg(long, conflicts_with = "silent")]
        attention: bool,
        /// Only the silent hosts.
        #[arg(long)]
        silent: bool,
        /// Print JSON (`cattle.hosts.v1`) instead of a table.
        #[arg(long, conflicts_with = "facts")]
        json: bool,
    },
    /// Print the log hosts uploaded for an execution.
    Log {
        id: Uuid,
        /// Only this host's log.
        #[arg(long)]
        host: Option<String>,
        /// The exact bytes hosts uploaded, terminal control sequences included:
        /// only for redirecting into a file or another program.
        #[arg(long)]
        raw: bool,
    },
    /// Remove an execution's objects from the store; agents then delete their copy.
    /// Without a manifest, removes what is left under `executions/ID/`.
    Clean {
        id: Uuid,
        /// Clean even though some hosts are still running it (or their status is unreadable).
        #[arg(long)]
        force: bool,
    },
    /// Stop an execution: hosts finish the step under way, run no other, and report CANCELLED.
    Cancel {
        id: Uuid,
        /// Only on this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Run a config on this machine, without any store.
    Apply {
        dir: PathBuf,
        /// Also append the log to this file.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Run only the steps' checks and change nothing: each step says whether it
        /// would change. Exit 0 when none would, 5 when some would, 1 when a check failed.
        #[arg(long)]
        check: bool,
        /// Show what steps change (with `--check`: would change) in files, as unified diffs.
        #[arg(long)]
        diff: bool,
        /// Give variable NAME this value, over the config's and the inventory's (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// A hosts file or TOML inventory to take this host's variables from.
        #[arg(long)]
        hosts: Option<PathBuf>,
        /// Run with the variables host NAME gets from `--hosts` (and `host` = NAME);
        /// without it, this machine's host name.
        #[arg(long, value_name = "NAME", requires = "hosts")]
        host_vars: Option<String>,
    },
    /// Print the settings in effect, each with where it came from (default,
    /// config file and line, variable or flag), secrets redacted.
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
}

/// What `cattle config` does.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the settings in effect (what `cattle config` alone does).
    Show,
}

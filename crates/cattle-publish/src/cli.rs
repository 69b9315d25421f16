//! The command line of `cattle`, as clap reads it.
//!
//! It lives in the library rather than in `main.rs` so that `cattle-docgen`
//! can build the man pages and shell completions from these very definitions:
//! they cannot drift from what the binary accepts.

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::Flags;
use crate::style::ColorWhen;
use clap::{Parser, Subcommand};

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

    /// Print only results and errors: no notes, no progress.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Output options (every command)"
    )]
    pub quiet: bool,

    /// Say more about what cattle does (`-vv` for debugging); `CATTLE_LOG`
    /// (e.g. `debug`) takes precedence.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Output options (every command)")]
    pub verbose: u8,

    /// Colour: `auto` on a terminal unless NO_COLOR is set, `always`, `never`.
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        default_value = "auto",
        help_heading = "Output options (every command)"
    )]
    pub color: ColorWhen,

    #[command(subcommand)]
    pub command: Command,
}

/// How `cattle publish` rolls an execution out; the agents enforce it.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Rollout options")]
pub struct RolloutArgs {
    /// Start hosts in waves, in the hosts file's order: where each wave ends,
    /// as a host count or a percentage of the hosts, e.g. `1,10%,50%,100%`
    /// (a canary, then up to 10 %, …); hosts left after the last start last.
    /// A wave starts once every host of the waves before it has ended.
    #[arg(long, value_name = "ENDS")]
    pub waves: Option<String>,
    /// Halt the rollout once more hosts than this have failed: a count or a
    /// percentage of the hosts (rounded down). Hosts that have not started
    /// then never start and report HALTED. Default with `--waves`: 0.
    #[arg(long, value_name = "N|P%")]
    pub max_errors: Option<String>,
    /// Wait this long after a wave has ended before the next one starts
    /// (e.g. `5m`), by the store's clock.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub bake: Option<Duration>,
    /// Hosts start only inside this window, in their own time zone, or in UTC
    /// with a ` UTC` suffix: e.g. `Sat 02:00-04:00`, `Mon-Fri 22:00-02:00 UTC`
    /// (repeatable: any of them). A run that has started is not stopped at
    /// the window's end.
    #[arg(long = "window", value_name = "WINDOW")]
    pub windows: Vec<String>,
    /// No host starts before this time: RFC 3339 (`2026-12-05T02:00:00Z`) or
    /// a duration from now (`2h`), by the store's clock.
    #[arg(long, value_name = "TIME")]
    pub not_before: Option<String>,
}

impl RolloutArgs {
    /// Whether any rollout option was given.
    pub fn any(&self) -> bool {
        self.waves.is_some()
            || self.max_errors.is_some()
            || self.bake.is_some()
            || !self.windows.is_empty()
            || self.not_before.is_some()
    }
}

/// `cattle rollout`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Show each wave's hosts by state, the error budget left and what the
    /// next hosts wait for. Exit 3 when the rollout halted or a host failed.
    #[command(
        after_help = "Examples:\n  cattle rollout status 0193a1b2\n  cattle rollout status 0193a1b2 --json | jq '.waves[].done'"
    )]
    Status {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Print a JSON object (schema `cattle.rollout.v1`).
        #[arg(long)]
        json: bool,
    },
    /// Hold hosts that have not started; those running go on. Signed with the
    /// signing key, like the execution.
    #[command(
        after_help = "Examples:\n  cattle rollout pause 0193a1b2\n  cattle rollout pause 0193a1b2 --key /etc/cattle/publisher.key"
    )]
    Pause {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Secret key file (default: CATTLE_SIGNING_KEY, else `signing_key`
        /// in the config file); agents obey only a key they trust.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Let a paused rollout go on.
    #[command(after_help = "Examples:\n  cattle rollout resume 0193a1b2")]
    Resume {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Secret key file (default: CATTLE_SIGNING_KEY, else `signing_key`
        /// in the config file).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

/// The subcommands; each has a man page `cattle-NAME(1)`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a key pair for signing executions: NAME.key (secret) and NAME.pub.
    #[command(
        after_help = "Examples:\n  cattle keygen ~/.config/cattle/ops --comment 'ops team'\n  cattle keygen /etc/cattle/publisher"
    )]
    Keygen {
        /// Path and name of the key files, without extension.
        name: PathBuf,
        /// A note stored with the key, e.g. who holds it.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Validate and bundle a config directory, upload it and address it to hosts.
    #[command(
        after_help = "Examples:\n  cattle publish ./web --hosts web.hosts\n  cattle publish ./web --hosts inventory.toml --var release=42\n  cattle publish ./web --hosts web.hosts --check --diff\n  cattle publish ./web --hosts web.hosts --dry-run --host web-01\n  cattle publish ./web --hosts web.hosts --waves 1,10%,100% --max-errors 2 --bake 5m\n  cattle publish ./web --hosts inventory.toml --select 'role=web,os=debian' --dry-run"
    )]
    Publish {
        /// The config directory (with `cattle.toml` at its root).
        dir: PathBuf,
        /// The hosts: a hosts file (one host ID per line, optionally followed by
        /// `name=value` variables; `#` comments) or a TOML inventory (`*.toml`);
        /// `-` reads a hosts file from standard input.
        #[arg(long)]
        hosts: PathBuf,
        /// Publish only to the hosts of `--hosts` that match: `key=value` and
        /// `key!=value` terms joined by `,`, all of which must hold; repeat
        /// `--select` for alternatives (a host matching any is chosen). A key
        /// that some host has as a variable (inventory, `--var`, the config's
        /// `[vars]`, `host`) is looked up in every host's variables; any other
        /// is a fact the host's agent last reported (`os` is short for `os.id`,
        /// `os.version` for `os.version_id`, `kernel` for `kernel.release`).
        /// `--dry-run` shows who matches and why.
        #[arg(long = "select", value_name = "SELECTOR", value_parser = crate::select::Selector::parse)]
        select: Vec<crate::select::Selector>,
        /// A note on what the execution is for, stored in its signed manifest
        /// and shown by `cattle list` (one line, at most 1 KiB).
        #[arg(short = 'm', long, value_name = "TEXT")]
        message: Option<String>,
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
        #[command(flatten)]
        rollout: RolloutArgs,
    },
    /// Pause, resume or look at the rollout of an execution published with
    /// `--waves`, `--max-errors`, `--window` or `--not-before`.
    #[command(after_help = "Examples:
  cattle rollout status 0193a1b2
  cattle rollout pause 0193a1b2
  cattle rollout resume 0193a1b2
  cattle rollout status 0193a1b2 --json | jq '.waves[] | .done'")]
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
    },
    /// List the executions in the store, newest first, with how many of their
    /// hosts are in each state.
    #[command(
        after_help = "Examples:\n  cattle list\n  cattle list --since 2d --state error\n  cattle list --host web-01 --limit 5\n  cattle list --json | jq -r '.executions[0].id'"
    )]
    List {
        /// Show at most this many executions (the newest).
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Only executions published since then: a duration before now (`2h`,
        /// `7d`) or a time (`2026-01-31T12:00:00Z`, UTC), by the time in their ID.
        #[arg(long, value_name = "DURATION_OR_TIME", value_parser = crate::list::parse_since)]
        since: Option<std::time::SystemTime>,
        /// Only executions addressed to this host.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only executions whose publisher contains this text (any case).
        #[arg(long, value_name = "TEXT")]
        publisher: Option<String>,
        /// Only executions whose config directory's name contains this text
        /// (any case). Not `--config`, which names `cattle`'s config file.
        #[arg(long = "config-name", value_name = "TEXT")]
        config_name: Option<String>,
        /// Only executions with at least one host in this state (done, error,
        /// progress, pending, cancelled, unreadable).
        #[arg(long, value_name = "STATE", ignore_case = true)]
        state: Option<crate::status::HostState>,
        /// Print a JSON object (schema `cattle.list.v1`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show each host's state for an execution, hosts that need attention
    /// first. Exit 0 only when all are DONE.
    #[command(group(clap::ArgGroup::new("waiting").args(["wait", "watch"]).multiple(true)))]
    #[command(
        after_help = "Examples:\n  cattle status 0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b\n  cattle status 0193a1b2 --wait --timeout 600\n  cattle status 0193a1b2 --watch\n  cattle status 0193a1b2 --json | jq '.hosts[] | select(.state == \"ERROR\")'"
    )]
    Status {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Show only hosts in this state (repeatable, or comma-separated):
        /// error, cancelled, unreadable, pending, progress, done. The summary
        /// and the exit code still count every host.
        #[arg(
            long = "state",
            value_name = "STATE",
            value_delimiter = ',',
            ignore_case = true
        )]
        states: Vec<crate::status::HostState>,
        /// Also read the status documents of DONE hosts, for every host's step
        /// results (CHANGED, UNCHANGED, FAILED columns): one request per host.
        /// Always so with `--json` and for a check-mode execution.
        #[arg(long)]
        steps: bool,
        /// Wait until every host is DONE, ERROR, HALTED or CANCELLED (UNREADABLE hosts:
        /// at most a minute once they are the only ones left).
        #[arg(long)]
        wait: bool,
        /// Wait as `--wait` does, showing the hosts as they go: redrawn in
        /// place on a terminal, otherwise a line per host that changes; the
        /// table (or, not on a terminal, its summary) at the end.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// With `--wait` or `--watch`: give up after this many seconds (exit 4,
        /// or 3 if a host needs attention).
        #[arg(long, requires = "waiting")]
        timeout: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the hosts whose agents report to the store: last seen, version,
    /// execution, OS; flag silent hosts, hosts that never reported and host IDs
    /// used by two agents. Exit 3 when some host needs attention.
    #[command(
        after_help = "Examples:\n  cattle hosts\n  cattle hosts --hosts fleet.hosts --attention\n  cattle hosts --facts\n  cattle hosts --json | jq -r '.hosts[] | select(.flags | index(\"silent\")) | .host'"
    )]
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
    /// Print the log hosts uploaded for an execution. With several hosts, every
    /// line starts with `[HOST] `; one host's log (`--host`) is printed bare.
    #[command(
        after_help = "Examples:\n  cattle log 0193a1b2\n  cattle log 0193a1b2 --host web-01\n  cattle log 0193a1b2 --follow\n  cattle log 0193a1b2 | grep 'failed at'\n  cattle log 0193a1b2 --host web-01 --raw > web-01.log"
    )]
    Log {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Only this host's log.
        #[arg(long)]
        host: Option<String>,
        /// The exact bytes hosts uploaded, terminal control sequences included:
        /// only for redirecting into a file or another program (with several
        /// hosts, each line still starts with `[HOST] `).
        #[arg(long)]
        raw: bool,
        /// Print one JSON object (schema `cattle.log.v1`): each host's state and log.
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// Go on printing what hosts upload until every host shown has
        /// finished and its whole log is printed (or Ctrl-C).
        #[arg(short, long, conflicts_with = "json")]
        follow: bool,
    },
    /// Remove an execution's objects from the store; agents then delete their copy.
    /// Without a manifest, removes what is left under `executions/ID/`.
    #[command(after_help = "Examples:\n  cattle clean 0193a1b2\n  cattle clean 0193a1b2 --force")]
    Clean {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Clean even though some hosts are still running it (or their status is unreadable).
        #[arg(long)]
        force: bool,
    },
    /// Stop an execution: hosts finish the step under way, run no other, and report CANCELLED.
    #[command(
        after_help = "Examples:\n  cattle cancel 0193a1b2\n  cattle cancel 0193a1b2 --host web-01"
    )]
    Cancel {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Only on this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Publish an execution again, as a new one, to its hosts that ended in
    /// ERROR, HALTED or CANCELLED, from the bundle already in the store, to
    /// all of them at once. Exit 6 when no host is in those states.
    #[command(
        after_help = "Examples:\n  cattle retry 0193a1b2\n  cattle retry 0193a1b2 --state error --state unreadable -m 'disk cleaned up'"
    )]
    Retry {
        /// The execution: its ID or a unique prefix of it (at least 4 hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// Retry the hosts in this state instead (repeatable: done, error,
        /// halted, progress, waiting, pending, cancelled, unreadable); default
        /// error, halted and cancelled.
        #[arg(long = "state", value_name = "STATE", ignore_case = true)]
        states: Vec<crate::status::HostState>,
        /// Secret key file that signs the new execution; the old one must be
        /// signed by the same key. Default: CATTLE_SIGNING_KEY, else
        /// `signing_key` in the config file.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Retry an unsigned execution, without a signature.
        #[arg(long, conflicts_with = "key")]
        unsigned: bool,
        /// Agents do not start the new execution once this long has passed.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        expires_in: Duration,
        /// The new execution's message (default `retry of ID`).
        #[arg(short = 'm', long, value_name = "TEXT")]
        message: Option<String>,
        /// Print a JSON object (schema `cattle.retry.v1`) instead of the new ID.
        #[arg(long)]
        json: bool,
    },
    /// Run a config on this machine, without any store.
    #[command(
        after_help = "Examples:\n  sudo cattle apply ./web\n  cattle apply ./web --check --diff\n  sudo cattle apply ./web --hosts inventory.toml --host-vars web-01"
    )]
    Apply {
        /// The config directory (with `cattle.toml` at its root).
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
        /// A hosts file or TOML inventory to take this host's variables from
        /// (`-`: a hosts file from standard input).
        #[arg(long)]
        hosts: Option<PathBuf>,
        /// Run with the variables host NAME gets from `--hosts` (and `host` = NAME);
        /// without it, this machine's host name.
        #[arg(long, value_name = "NAME", requires = "hosts")]
        host_vars: Option<String>,
    },
    /// Print the settings in effect, each with where it came from (default,
    /// config file and line, variable or flag), secrets redacted.
    #[command(after_help = "Examples:\n  cattle config\n  cattle --store prod config show")]
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// Look at the store itself.
    #[command(
        after_help = "Examples:\n  cattle store check\n  cattle --store s3://cattle/prod store check --json"
    )]
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
}

/// What `cattle store` does.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Check that the store honours what Cattle relies on: create-only and
    /// compare-and-swap writes (412 when they must fail), conditional reads
    /// (304), listings that show what was just written, deletes. Tried on
    /// objects of its own under `selftest/`, deleted afterwards. Exit 1 when
    /// one fails: do not use that store. `publish` and `retry` run the same
    /// check before their first use of a store, unless a pass is remembered
    /// (`$XDG_CACHE_HOME/cattle/store-check/`); this command always checks,
    /// and refreshes that memory (or forgets it, when a check fails).
    #[command(
        after_help = "Examples:\n  cattle store check\n  cattle --store s3://cattle/prod store check --json"
    )]
    Check {
        /// Print a JSON object (schema `cattle.store-check.v1`).
        #[arg(long)]
        json: bool,
    },
    /// Stop writing per-host inboxes: from now on a publish addresses hosts
    /// only through their groups' inboxes (one write per group, however many
    /// hosts). Agents older than grouped inboxes then no longer see new
    /// executions: upgrade every agent first (`cattle hosts` shows their
    /// versions). A store first published to by this version needs no upgrade.
    #[command(after_help = "Examples:\n  cattle hosts\n  cattle store upgrade")]
    Upgrade,
}

/// What `cattle config` does.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the settings in effect (what `cattle config` alone does).
    #[command(
        after_help = "Examples:\n  cattle config show\n  CATTLE_STORE=prod cattle config show"
    )]
    Show,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// What `--help` and the man pages show: every argument says what it is,
    /// every subcommand shows how it is used.
    /// `--state` is one parser for every command that takes it: any case,
    /// and an unknown state is a usage error listing the valid ones.
    #[test]
    fn state_flags_take_any_case_and_name_the_states() {
        use crate::status::HostState;
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        for (args, want) in [
            (
                &["cattle", "list", "--state", "ERROR"][..],
                HostState::Error,
            ),
            (
                &["cattle", "retry", "0193a1b2", "--state", "Done"][..],
                HostState::Done,
            ),
            (
                &["cattle", "status", "0193a1b2", "--state", "unreadable"][..],
                HostState::Unreadable,
            ),
        ] {
            let got = match parse(args).unwrap() {
                Command::List { state, .. } => state.unwrap(),
                Command::Retry { states, .. } | Command::Status { states, .. } => states[0],
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{args:?}");
        }
        let err = parse(&["cattle", "list", "--state", "failed"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("[possible values: "), "{err}");
    }

    #[test]
    fn every_argument_has_help_and_every_subcommand_an_example() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        let mut stack: Vec<(String, &clap::Command)> = vec![("cattle".to_string(), &cli)];
        while let Some((path, command)) = stack.pop() {
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && !matches!(arg.get_id().as_str(), "help" | "version")
                {
                    missing.push(format!("{path} {}: no help", arg.get_id()));
                }
            }
            let leaf = !command.has_subcommands();
            let example = command
                .get_after_help()
                .is_some_and(|h| h.to_string().starts_with("Examples:\n  "));
            if leaf && path != "cattle" && !example && !path.ends_with(" help") {
                missing.push(format!("{path}: no `Examples:`"));
            }
            for sub in command.get_subcommands() {
                stack.push((format!("{path} {}", sub.get_name()), sub));
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }
}

//! The command line of `cattle-agent`, as clap reads it.
//!
//! It lives in the library rather than in `main.rs` so that `cattle-docgen`
//! can build the man pages and shell completions from these very definitions:
//! they cannot drift from what the binary accepts.

use clap::{Parser, Subcommand};

use crate::settings::Flags;

/// Poll a Cattle store for executions addressed to this host and run them.
///
/// Settings come from the config file (`/etc/cattle/agent.toml`), then
/// environment variables, then these flags, each overriding the one before.
#[derive(Debug, Parser)]
#[command(name = "cattle-agent", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub flags: Flags,

    /// Handle everything pending, then exit (0 if all of it finished and was reported).
    #[arg(long)]
    pub once: bool,

    /// Refuse to start, with exit status 78, unless the config file, the
    /// environment or a flag names the store (the packaged unit passes it, so
    /// that a fresh install waits for its config instead of polling a default).
    #[arg(long, global = true)]
    pub require_store: bool,
}

/// The subcommands; each has a man page `cattle-agent-NAME(1)`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the settings and the store (the host's inbox, and the store's
    /// self-test on `hosts/<host>/selftest/`, recorded in the state directory
    /// when it passes), print the effective settings (secrets redacted) with
    /// where each came from; exit 0 when all is well.
    CheckConfig {
        /// Check the settings only; do not contact the store.
        #[arg(long)]
        offline: bool,
    },
}

//! `cattle`: parse flags, set up logging, call the library, print, exit.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cattle_core::env;
use cattle_core::hosts::HostId;
use cattle_core::signing::SecretKey;
use cattle_core::store::{Store, StoreError};
use cattle_publish::publish::Signer;
use cattle_publish::settings::{Flags, Inputs, Origin, Settings};
use cattle_publish::{exit, terminal};
use clap::{Parser, Subcommand};
use uuid::Uuid;

/// Publish configurations for hosts to pull, and read back what they report.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Settings every command takes; they override the config file and the
    /// environment (see `cattle config`).
    #[command(flatten)]
    flags: Flags,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the settings in effect (what `cattle config` alone does).
    Show,
}

/// How often `status --wait` reads the store.
const WAIT_POLL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(env::log_level(tracing::level_filters::LevelFilter::WARN))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // A closed pipe (`cattle log ID | head`) is not an error.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            report(&err);
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Print an error in the one format: `error:`, `Caused by:` lines, `hint:`.
/// Errors may quote what hosts wrote, so each line goes through [`terminal::line`]:
/// nothing a host wrote acts on the terminal or starts a line of its own.
fn report(err: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    // A steps file error carries its own hint, printed on its own line below.
    let plan = err.downcast_ref::<cattle_stdlib::PlanError>();
    let headline = plan.map_or_else(|| err.to_string(), |e| e.headline());
    let _ = writeln!(stderr, "error: {}", terminal::line(&headline));
    for cause in err.chain().skip(1) {
        let _ = writeln!(
            stderr,
            "  Caused by: {}",
            terminal::line(&cause.to_string())
        );
    }
    let hint = err
        .chain()
        .find_map(|e| e.downcast_ref::<StoreError>())
        .and_then(StoreError::hint)
        .or_else(|| plan.and_then(|e| e.hint.clone()))
        .or_else(|| {
            err.downcast_ref::<cattle_publish::clean::StillRunning>()
                .map(|e| {
                    format!(
                        "wait for them (`cattle status {} --wait`) or pass `--force`",
                        e.id
                    )
                })
        })
        .or_else(|| {
            err.chain()
                .find_map(|e| e.downcast_ref::<cattle_publish::status::InvalidManifest>())
                .map(|e| {
                    format!(
                        "the manifest was changed or damaged in the store after `cattle publish` \
                         wrote it (commands read it without checking its signature; agents refuse \
                         it); look at it, and to remove the execution delete `{}` yourself, then \
                         run `cattle clean {}` to remove what is left of it",
                        e.location, e.id
                    )
                })
        });
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "hint: {}", terminal::line(&hint));
    }
}

/// The settings, from the flags, the environment and the config file. Only
/// commands that use the store or the signing key read them: `keygen`,
/// `apply` and `publish --dry-run` work whatever the config file says.
fn settings(flags: &Flags) -> anyhow::Result<Settings> {
    Ok(Settings::load(flags, &Inputs::system())?)
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = &settings.store.value;
    Store::open_with(url, settings.s3_options())
        .await
        .with_context(|| format!("cannot open store `{url}`"))
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let mut stdout = std::io::stdout().lock();
    let flags = &cli.flags;
    match cli.command {
        Command::Keygen { name, comment } => {
            let key = SecretKey::generate(&comment).context("cannot generate a key")?;
            let (secret, public) = key.save(&name)?;
            eprintln!(
                "wrote secret key {} (keep it with the publisher) and public key {} (key {})\n\
                 publish with `cattle publish --key {} ...`; give agents the public key with \
                 `--trusted-keys {}` or {}",
                secret.display(),
                public.display(),
                key.public().id(),
                secret.display(),
                public.display(),
                env::TRUSTED_KEYS
            );
            writeln!(stdout, "{}", key.public())?;
            Ok(exit::SUCCESS)
        }
        Command::Publish {
            dir,
            hosts,
            vars,
            dry_run,
            check,
            diff,
            host,
            key,
            unsigned,
            expires_in,
            json,
        } => {
            // Everything that can be wrong with the input is found before the
            // first upload: flags, key, config, hosts, every host's plan.
            let overrides = cattle_publish::inventory::parse_var_flags(&vars)?;
            let settings = if dry_run {
                None
            } else {
                Some(settings(flags)?)
            };
            let signer = match &settings {
                None => Signer::Unsigned,
                // `--unsigned` overrides a key from the environment or the config file.
                Some(_) if unsigned => {
                    eprintln!(
                        "warning: publishing WITHOUT a signature: only agents started with \
                         --allow-unsigned will run it, and so would they anything anyone \
                         with write access to the store puts there"
                    );
                    Signer::Unsigned
                }
                Some(settings) => match settings.signing_key(key) {
                    Some(key) => {
                        let loaded = SecretKey::load(&key.value);
                        let loaded = match &key.origin {
                            Origin::File { .. } => loaded.with_context(|| {
                                format!("cannot use `signing_key` ({})", key.origin)
                            })?,
                            _ => loaded?,
                        };
                        Signer::Key(Box::new(loaded))
                    }
                    None => {
                        eprintln!(
                            "error: publishing needs a signing key: give `--key FILE` (made by \
                             `cattle keygen`), set {} or `signing_key` in the config file, or \
                             publish with `--unsigned`",
                            env::SIGNING_KEY
                        );
                        return Ok(exit::USAGE);
                    }
                },
            };
            let prepared = cattle_publish::publish::prepare(&dir, &hosts, &overrides)?;
            if dry_run {
                let only = host
                    .as_deref()
                    .map(HostId::new)
                    .transpose()
                    .map_err(anyhow::Error::msg)?;
                cattle_publish::publish::show_plans(&prepared, only.as_ref(), &mut stdout)?;
                return Ok(exit::SUCCESS);
            }
            let settings = settings.expect("a publish that is not a dry run has its settings");
            let store = open_store(&settings).await?;
            let mode = cattle_publish::publish::Mode { check, diff };
            let published =
                cattle_publish::publish::publish(&store, &dir, prepared, mode, &signer, expires_in)
                    .await?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string(&published)?)?;
            } else {
                eprintln!(
                    "published {}{} ({} steps, bundle {} of {} bytes{}) to {} hosts{}; version {}, {}, expires {}",
                    dir.display(),
                    if published.check {
                        " in check mode (hosts change nothing)"
                    } else {
                        ""
                    },
                    published.steps,
                    &published.bundle_sha256[..12],
                    published.bundle_size,
                    if published.bundle_uploaded {
                        ""
                    } else {
                        ", already in the store"
                    },
                    published.hosts,
                    if published.vars {
                        ", each with its own signed variables"
                    } else {
                        ""
                    },
                    published.version,
                    match &published.key {
                        Some(key) => format!("signed by key {key}"),
                        None => "UNSIGNED".to_string(),
                    },
                    published.expires
                );
                writeln!(stdout, "{}", published.id)?;
            }
            Ok(exit::SUCCESS)
        }
        Command::Status {
            id,
            wait,
            timeout,
            json,
        } => {
            let store = open_store(&settings(flags)?).await?;
            let report = if wait {
                cattle_publish::status::wait(
                    &store,
                    id,
                    timeout.map(Duration::from_secs),
                    WAIT_POLL,
                    cattle_publish::status::UNREADABLE_PATIENCE,
                )
                .await?
            } else {
                cattle_publish::status::fetch(&store, id).await?
            };
            if json {
                writeln!(stdout, "{}", report.json())?;
            } else {
                write!(stdout, "{}", report.table())?;
            }
            Ok(report.exit_code())
        }
        Command::Log { id, host, raw } => {
            let store = open_store(&settings(flags)?).await?;
            let host = host
                .map(|h| HostId::new(&h).map_err(|m| anyhow::anyhow!("invalid `--host`: {m}")))
                .transpose()?;
            let printed = cattle_publish::log::print(&store, id, host, raw, &mut stdout).await?;
            stdout.flush()?;
            for warning in &printed.warnings {
                eprintln!("warning: {}", terminal::line(warning));
            }
            let (shown, unreadable) = (printed.shown, printed.unreadable);
            // One host's log never hides the others': an error only when none could be shown.
            if unreadable > 0 && shown == 0 {
                anyhow::bail!(
                    "no log of execution {id} could be shown: the logs of {unreadable} host(s) \
                     cannot be read (each is marked `(log unreadable: …)` above)"
                );
            }
            if unreadable > 0 {
                eprintln!(
                    "warning: the logs of {unreadable} host(s) cannot be read; each is marked \
                     `(log unreadable: …)` in its place"
                );
            }
            Ok(exit::SUCCESS)
        }
        Command::Clean { id, force } => {
            let store = open_store(&settings(flags)?).await?;
            let cleaned = cattle_publish::clean::clean(&store, id, force).await?;
            for problem in &cleaned.bad_inboxes {
                eprintln!(
                    "warning: {}; left as it is (it cannot list execution {id} for its host)",
                    terminal::line(problem)
                );
            }
            match &cleaned.leftovers {
                Some(keys) => {
                    eprintln!(
                        "execution {id} has no manifest (already cleaned); removed {} object(s) \
                         left of it in `{}`:",
                        cleaned.objects_deleted,
                        store.location("")
                    );
                    for key in keys {
                        eprintln!("  {}", terminal::line(key));
                    }
                }
                None => eprintln!(
                    "cleaned execution {id}: {} objects deleted{}",
                    cleaned.objects_deleted,
                    if cleaned.bundle_deleted {
                        ", bundle included"
                    } else {
                        "; bundle kept, other executions use it"
                    }
                ),
            }
            Ok(exit::SUCCESS)
        }
        Command::Cancel { id, host } => {
            let store = open_store(&settings(flags)?).await?;
            let host = host
                .map(|h| HostId::new(&h).map_err(|m| anyhow::anyhow!("invalid `--host`: {m}")))
                .transpose()?;
            let hosts = cattle_publish::cancel::cancel(&store, id, host).await?;
            eprintln!(
                "cancel of execution {id} requested for {hosts} host(s); each stops before its next step \
                 and reports CANCELLED (`cattle status {id} --wait`)"
            );
            Ok(exit::SUCCESS)
        }
        Command::Apply {
            dir,
            log,
            check,
            diff,
            vars,
            hosts,
            host_vars,
        } => {
            let mode = cattle_publish::apply::Mode { check, diff };
            let sources = cattle_publish::apply::VarSources {
                inventory: hosts,
                host: host_vars,
                overrides: cattle_publish::inventory::parse_var_flags(&vars)?,
            };
            let (outcome, _) = tokio::task::spawn_blocking(move || {
                cattle_publish::apply::apply(&dir, log.as_deref(), mode, &sources)
            })
            .await
            .expect("apply does not panic")?;
            Ok(cattle_publish::apply::exit_code(&outcome))
        }
        Command::Config {
            action: None | Some(ConfigAction::Show),
        } => {
            let settings = settings(flags)?;
            writeln!(
                stdout,
                "# cattle settings (secrets redacted), each with where it came from"
            )?;
            write!(stdout, "{}", settings.describe())?;
            Ok(exit::SUCCESS)
        }
    }
}

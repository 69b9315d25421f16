//! `cattle`: parse flags, set up logging, call the library, print, exit.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cattle_core::env;
use cattle_core::hosts::HostId;
use cattle_core::signing::SecretKey;
use cattle_core::store::{Store, StoreError};
use cattle_publish::cli::{Cli, Command, ConfigAction};
use cattle_publish::publish::Signer;
use cattle_publish::settings::{Flags, Inputs, Origin, Settings};
use cattle_publish::{exit, terminal};
use clap::Parser;

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
        Command::Hosts {
            hosts,
            silent_after,
            facts,
            attention,
            silent,
            json,
        } => {
            use cattle_publish::fleet::{Filter, Options};
            let expected = match &hosts {
                Some(path) => cattle_publish::inventory::Inventory::load(path)?.hosts,
                None => Vec::new(),
            };
            let store = open_store(&settings(flags)?).await?;
            let options = Options {
                expected,
                silent_after,
            };
            let fleet = cattle_publish::fleet::fetch(&store, &options).await?;
            let filter = match (attention, silent) {
                (true, _) => Filter::Attention,
                (_, true) => Filter::Silent,
                _ => Filter::All,
            };
            if json {
                writeln!(stdout, "{}", fleet.json(filter))?;
            } else {
                write!(stdout, "{}", fleet.table(facts, filter))?;
            }
            Ok(fleet.exit_code())
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

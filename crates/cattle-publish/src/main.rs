//! `cattle`: parse flags, set up logging, call the library, print, exit.

mod publish_progress;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_core::signing::SecretKey;
use cattle_core::store::{Store, StoreError};
use cattle_core::{count, env};
use cattle_publish::cli::{Cli, Command, ConfigAction};
use cattle_publish::publish::Signer;
use cattle_publish::settings::{Flags, Inputs, Origin, Settings};
use cattle_publish::style::{Style, Tone};
use cattle_publish::{exit, ids, terminal};
use clap::Parser;
use tracing::level_filters::LevelFilter;

/// Set by `-q`: informational lines are not printed (results, warnings and
/// errors still are).
static QUIET: AtomicBool = AtomicBool::new(false);

/// An informational line on standard error: what was done, what to do next.
/// `-q` drops it.
macro_rules! note {
    ($($arg:tt)*) => {
        if !QUIET.load(Ordering::Relaxed) {
            eprintln!($($arg)*);
        }
    };
}

/// How often `status --wait` reads the store.
const WAIT_POLL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        _ if cli.quiet => LevelFilter::ERROR,
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let stderr_style = Style::for_stderr(cli.color);
    QUIET.store(cli.quiet, Ordering::Relaxed);
    tracing_subscriber::fmt()
        .with_max_level(env::log_level(level))
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
            report(&err, stderr_style);
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Print an error in the one format: `error:`, `Caused by:` lines, `hint:`.
/// Errors may quote what hosts wrote, so each line goes through [`terminal::line`]:
/// nothing a host wrote acts on the terminal or starts a line of its own.
fn report(err: &anyhow::Error, style: Style) {
    let mut stderr = std::io::stderr().lock();
    // A steps file error carries its own hint, printed on its own line below.
    let plan = err.downcast_ref::<cattle_stdlib::PlanError>();
    let headline = plan.map_or_else(|| err.to_string(), |e| e.headline());
    let _ = writeln!(
        stderr,
        "{} {}",
        style.paint(Tone::Bad, "error:"),
        terminal::line(&headline)
    );
    if let Some(ambiguous) = err.downcast_ref::<ids::Ambiguous>() {
        for line in ambiguous.lines() {
            let _ = writeln!(stderr, "  {line}");
        }
    }
    if let Some(refused) = err.downcast_ref::<cattle_publish::store_check::Refused>() {
        for line in &refused.failures {
            let _ = writeln!(stderr, "  {}", terminal::line(line));
        }
    }
    // One line per cause, none repeating what the line before it says.
    for cause in cattle_core::distinct_causes(&err.to_string(), err.chain().skip(1)) {
        let _ = writeln!(stderr, "  Caused by: {}", terminal::line(&cause));
    }
    let hint = err
        .chain()
        .find_map(|e| e.downcast_ref::<StoreError>())
        .and_then(StoreError::hint)
        .or_else(|| plan.and_then(|e| e.hint.clone()))
        .or_else(|| {
            err.chain()
                .find_map(|e| e.downcast_ref::<cattle_core::signing::KeyError>())
                .and_then(cattle_core::signing::KeyError::hint)
        })
        .or_else(|| {
            err.downcast_ref::<cattle_publish::retry::Unverified>()
                .map(|_| {
                    "publish the config again instead: `cattle publish DIR --hosts …` (with \
                     `--hosts -` the hosts can come from standard input)"
                        .to_string()
                })
        })
        .or_else(|| {
            err.downcast_ref::<cattle_publish::store_check::Refused>()
                .map(cattle_publish::store_check::Refused::hint)
        })
        .or_else(|| {
            err.downcast_ref::<ids::NoMatch>().map(|_| {
                format!(
                    "`cattle list` shows the executions in this store (check `--store` or {} \
                     if it is not the one you meant)",
                    env::STORE
                )
            })
        })
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

/// `publish --select` chose no host, or names a key that can be neither a
/// variable nor a fact: exit 2 (as for bad arguments), after the table of why
/// each host did not match in a dry run. Other errors go the usual way.
fn select_failed(err: anyhow::Error, dry_run: bool, stdout: &mut impl Write) -> anyhow::Result<u8> {
    use cattle_publish::select::{NoMatch, UnknownKey};
    if let Some(no_match) = err.downcast_ref::<NoMatch>() {
        if dry_run {
            write!(stdout, "{}", no_match.selection.table())?;
            stdout.flush()?;
        }
        eprintln!("error: {}", terminal::line(&err.to_string()));
        if !dry_run {
            eprintln!("hint: {}", no_match.hint());
        }
        return Ok(exit::USAGE);
    }
    if err.is::<UnknownKey>() {
        eprintln!("error: {}", terminal::line(&err.to_string()));
        return Ok(exit::USAGE);
    }
    Err(err)
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

/// Check `store` before a command first writes to it (`publish`, `retry`),
/// unless this user's cache remembers that it passed: a store that fails is
/// refused before anything is written to it.
async fn check_before_use(store: &Store) -> anyhow::Result<()> {
    use cattle_publish::store_check;
    let memory = store_check::memory_dir(&Inputs::system().env);
    let checked = store_check::before_first_use(store, memory.as_deref())
        .await
        .with_context(|| format!("cannot check store `{}`", store.location("")))?;
    if let Some(warning) = &checked.warning {
        eprintln!("warning: {}", terminal::line(warning));
    }
    match checked.report {
        Some(report) if !report.passed() => Err(store_check::Refused::new(store, &report).into()),
        _ => Ok(()),
    }
}

/// `cattle rollout pause|resume|status`.
async fn rollout(
    flags: &Flags,
    action: cattle_publish::cli::RolloutAction,
    stdout: &mut impl Write,
) -> anyhow::Result<u8> {
    use cattle_publish::cli::RolloutAction;
    let settings = settings(flags)?;
    let store = open_store(&settings).await?;
    match action {
        RolloutAction::Status { id, json } => {
            let id = ids::resolve(&store, &id).await?;
            let report = cattle_publish::status::fetch_view(&store, id, false).await?;
            let status = cattle_publish::rollout::status(&store, &report).await?;
            if json {
                writeln!(stdout, "{}", status.json())?;
            } else {
                write!(stdout, "{}", status.text())?;
            }
            Ok(status.exit_code())
        }
        RolloutAction::Pause { ref id, ref key } | RolloutAction::Resume { ref id, ref key } => {
            let paused = matches!(action, RolloutAction::Pause { .. });
            let key = match cattle_publish::retry::signer(&settings, key.clone())? {
                Some(Signer::Key(key)) => key,
                _ => {
                    eprintln!(
                        "error: pausing or resuming a rollout needs the signing key agents \
                         trust: give `--key FILE`, set {} or `signing_key` in the config file",
                        env::SIGNING_KEY
                    );
                    return Ok(exit::USAGE);
                }
            };
            let id = ids::resolve(&store, id).await?;
            let control = cattle_publish::rollout::control(&store, id, &key, paused).await?;
            note!(
                "{} the rollout of execution {id} ({}); hosts waiting for their turn see it at \
                 their next poll (`cattle rollout status {id}`)",
                if control.paused { "paused" } else { "resumed" },
                if control.paused {
                    "hosts already running go on"
                } else {
                    "hosts start as their waves allow"
                }
            );
            Ok(exit::SUCCESS)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let mut stdout = std::io::stdout().lock();
    let flags = &cli.flags;
    match cli.command {
        Command::Keygen { name, comment } => {
            let key = SecretKey::generate(&comment).context("cannot generate a key")?;
            let (secret, public) = key.save(&name)?;
            note!(
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
            select,
            message,
            vars,
            dry_run,
            check,
            diff,
            host,
            key,
            unsigned,
            expires_in,
            json,
            rollout,
        } => {
            // Everything that can be wrong with the input is found before the
            // first upload: flags, key, config, hosts, every host's plan.
            let overrides = cattle_publish::inventory::parse_var_flags(&vars)?;
            let message = cattle_publish::publish::check_message(message)?;
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
            let prepared = if select.is_empty() {
                cattle_publish::publish::prepare(&dir, &hosts, &overrides)?
            } else {
                // Facts are in the store: a dry run that selects on them reads it too.
                let open = async || match &settings {
                    Some(settings) => open_store(settings).await,
                    None => open_store(&self::settings(flags)?).await,
                };
                match cattle_publish::select::prepare(&dir, &hosts, &overrides, &select, open).await
                {
                    Ok(prepared) => prepared,
                    Err(err) => return select_failed(err, dry_run, &mut stdout),
                }
            };
            let now = std::time::SystemTime::now();
            let rollout = cattle_publish::rollout::plan(&rollout, prepared.hosts.len(), now)?;
            if let Some(at) = rollout.as_ref().and_then(|r| r.not_before())
                && at >= now + expires_in
            {
                anyhow::bail!(
                    "`--not-before` is after the execution expires ({} from now, \
                     `--expires-in`): no host could start it; give a later `--expires-in` \
                     (nothing was uploaded)",
                    humantime::format_duration(expires_in)
                );
            }
            if dry_run {
                let only = host
                    .as_deref()
                    .map(HostId::new)
                    .transpose()
                    .map_err(anyhow::Error::msg)?;
                let shown =
                    cattle_publish::publish::show_plans(&prepared, only.as_ref(), &mut stdout);
                if let Some(selection) = &prepared.selection {
                    if shown.is_ok() {
                        writeln!(stdout)?;
                    }
                    write!(stdout, "{}", selection.table())?;
                }
                if let Some(rollout) = &rollout
                    && shown.is_ok()
                {
                    writeln!(stdout)?;
                    write!(
                        stdout,
                        "{}",
                        cattle_publish::rollout::describe(rollout, &prepared.hosts)
                    )?;
                }
                shown?;
                return Ok(exit::SUCCESS);
            }
            if let Some(selection) = &prepared.selection {
                note!("{}", terminal::line(&selection.summary()));
            }
            let settings = settings.expect("a publish that is not a dry run has its settings");
            let store = open_store(&settings).await?;
            check_before_use(&store).await?;
            let mode = cattle_publish::publish::Mode { check, diff };
            // Progress only for someone watching: a script sees today's output.
            let progress: std::sync::Arc<dyn cattle_publish::publish::Progress> = {
                use std::io::IsTerminal as _;
                if std::io::stderr().is_terminal() {
                    std::sync::Arc::new(publish_progress::TerminalProgress::new())
                } else {
                    std::sync::Arc::new(cattle_publish::publish::Quiet)
                }
            };
            let published = cattle_publish::publish::publish(
                &store,
                &dir,
                prepared,
                mode,
                &signer,
                expires_in,
                message,
                rollout,
                progress.clone(),
            )
            .await;
            // The last reference: the progress line is erased before anything is printed.
            drop(progress);
            let published = published?;
            if json {
                writeln!(stdout, "{}", published.json())?;
            } else {
                note!(
                    "published {}{} ({}, bundle {} of {}{}) to {}{}; version {}, {}, expires {}",
                    dir.display(),
                    if published.check {
                        " in check mode (hosts change nothing)"
                    } else {
                        ""
                    },
                    count(published.steps as u64, "step"),
                    &published.bundle_sha256[..12],
                    count(published.bundle_size, "byte"),
                    if published.bundle_uploaded {
                        ""
                    } else {
                        ", already in the store"
                    },
                    count(published.hosts as u64, "host"),
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
            states,
            steps,
            wait,
            watch,
            timeout,
            json,
        } => {
            let store = open_store(&settings(flags)?).await?;
            let id = ids::resolve(&store, &id).await?;
            // A JSON document is complete: every DONE host's results too.
            let steps = steps || json;
            if watch {
                use std::io::IsTerminal as _;
                let terminal = std::io::stdout().is_terminal();
                return cattle_publish::watch::run(
                    &store,
                    id,
                    timeout.map(Duration::from_secs),
                    WAIT_POLL,
                    &mut stdout,
                    terminal,
                    tokio::signal::ctrl_c(),
                )
                .await;
            }
            let report = if wait {
                cattle_publish::status::wait(
                    &store,
                    id,
                    timeout.map(Duration::from_secs),
                    WAIT_POLL,
                    cattle_publish::status::UNREADABLE_PATIENCE,
                    steps,
                )
                .await?
            } else {
                cattle_publish::status::fetch_view(&store, id, steps).await?
            };
            if json {
                writeln!(stdout, "{}", report.json_of(&states))?;
            } else {
                let style = Style::for_stdout(cli.color);
                write!(stdout, "{}", report.table_styled(&states, style))?;
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
        Command::List {
            limit,
            since,
            host,
            publisher,
            config_name,
            state,
            json,
        } => {
            let store = open_store(&settings(flags)?).await?;
            let host = host
                .map(|h| HostId::new(&h).map_err(|m| anyhow::anyhow!("invalid `--host`: {m}")))
                .transpose()?;
            let filters = cattle_publish::list::Filters {
                limit: limit as usize,
                since,
                host,
                publisher,
                config: config_name,
                state,
            };
            let listing = cattle_publish::list::list(&store, &filters).await?;
            if json {
                writeln!(stdout, "{}", listing.json())?;
            } else {
                write!(stdout, "{}", listing.table())?;
                stdout.flush()?;
                if listing.executions.is_empty() {
                    eprintln!(
                        "no executions in `{}`{}",
                        terminal::line(&listing.store),
                        if filters.is_empty() {
                            ""
                        } else {
                            " match the filters"
                        }
                    );
                } else if listing.truncated {
                    eprintln!(
                        "showing the newest {}; there may be more (`--limit N`, `--since`)",
                        listing.executions.len()
                    );
                }
            }
            Ok(exit::SUCCESS)
        }
        Command::Log {
            id,
            host,
            raw,
            json,
            follow,
        } => {
            let store = open_store(&settings(flags)?).await?;
            let id = ids::resolve(&store, &id).await?;
            let host = host
                .map(|h| HostId::new(&h).map_err(|m| anyhow::anyhow!("invalid `--host`: {m}")))
                .transpose()?;
            if follow {
                return cattle_publish::follow::run(
                    &store,
                    id,
                    host,
                    raw,
                    WAIT_POLL,
                    &mut stdout,
                    tokio::signal::ctrl_c(),
                )
                .await;
            }
            let printed = if json {
                cattle_publish::log::print_json(&store, id, host, &mut stdout).await?
            } else {
                cattle_publish::log::print(&store, id, host, raw, &mut stdout).await?
            };
            stdout.flush()?;
            for warning in &printed.warnings {
                eprintln!("warning: {}", terminal::line(warning));
            }
            let (shown, unreadable) = (printed.shown, printed.unreadable);
            // One host's log never hides the others': an error only when none could be shown.
            if unreadable > 0 && shown == 0 {
                anyhow::bail!(
                    "no log of execution {id} could be shown: the logs of {} \
                     cannot be read (each is marked `(log unreadable: …)` above)",
                    count(unreadable as u64, "host")
                );
            }
            if unreadable > 0 {
                eprintln!(
                    "warning: the logs of {} cannot be read; each is marked \
                     `(log unreadable: …)` in its place",
                    count(unreadable as u64, "host")
                );
            }
            Ok(exit::SUCCESS)
        }
        Command::Clean { id, force } => {
            let store = open_store(&settings(flags)?).await?;
            let id = ids::resolve(&store, &id).await?;
            let cleaned = cattle_publish::clean::clean(&store, id, force).await?;
            for problem in &cleaned.bad_inboxes {
                eprintln!(
                    "warning: {}; left as it is (it cannot list execution {id} for its host)",
                    terminal::line(problem)
                );
            }
            if !cleaned.unconfirmed.is_empty() {
                eprintln!(
                    "warning: a listing still shows {} of execution {id} after they were \
                     deleted (a host still writing?): {}; `cattle clean {id}` removes them later",
                    count(cleaned.unconfirmed.len() as u64, "object"),
                    terminal::line(&cleaned.unconfirmed.join(", "))
                );
            }
            match &cleaned.leftovers {
                Some(keys) => {
                    note!(
                        "execution {id} has no manifest (already cleaned); removed {} \
                         left of it in `{}`:",
                        count(cleaned.objects_deleted as u64, "object"),
                        store.location("")
                    );
                    for key in keys {
                        note!("  {}", terminal::line(key));
                    }
                }
                None => note!(
                    "cleaned execution {id}: {} deleted{}",
                    count(cleaned.objects_deleted as u64, "object"),
                    if cleaned.bundle_deleted {
                        ", bundle included"
                    } else {
                        "; bundle kept, other executions use it"
                    }
                ),
            }
            Ok(exit::SUCCESS)
        }
        Command::Rollout { action } => rollout(flags, action, &mut stdout).await,
        Command::Cancel { id, host } => {
            let store = open_store(&settings(flags)?).await?;
            let id = ids::resolve(&store, &id).await?;
            let host = host
                .map(|h| HostId::new(&h).map_err(|m| anyhow::anyhow!("invalid `--host`: {m}")))
                .transpose()?;
            let hosts = cattle_publish::cancel::cancel(&store, id, host).await?;
            note!(
                "cancel of execution {id} requested for {}; each stops before its next step \
                 and reports CANCELLED (`cattle status {id} --wait`)",
                count(hosts as u64, "host")
            );
            Ok(exit::SUCCESS)
        }
        Command::Retry {
            id,
            states,
            key,
            unsigned,
            expires_in,
            message,
            json,
        } => {
            let message = cattle_publish::publish::check_message(message)?;
            let settings = settings(flags)?;
            let signer = if unsigned {
                eprintln!(
                    "warning: retrying WITHOUT a signature: the old manifest is used unverified, \
                     and only agents started with --allow-unsigned will run the new one"
                );
                Signer::Unsigned
            } else {
                match cattle_publish::retry::signer(&settings, key)? {
                    Some(signer) => signer,
                    None => {
                        eprintln!(
                            "error: retrying needs the signing key that signed the execution: \
                             give `--key FILE`, set {} or `signing_key` in the config file, or \
                             retry an unsigned execution with `--unsigned`",
                            env::SIGNING_KEY
                        );
                        return Ok(exit::USAGE);
                    }
                }
            };
            let store = open_store(&settings).await?;
            let id = ids::resolve(&store, &id).await?;
            check_before_use(&store).await?;
            let options = cattle_publish::retry::Options {
                states: if states.is_empty() {
                    cattle_publish::retry::DEFAULT_STATES.to_vec()
                } else {
                    states
                },
                expires_in,
                message,
            };
            let retried = match cattle_publish::retry::retry(&store, id, &signer, options).await {
                Err(err) if err.is::<cattle_publish::retry::NothingToRetry>() => {
                    eprintln!(
                        "error: {}\nhint: `cattle status {id}` shows its hosts; `--state` \
                         retries hosts in other states (e.g. `--state unreadable`)",
                        terminal::line(&err.to_string())
                    );
                    return Ok(exit::NOTHING_TO_RETRY);
                }
                result => result?,
            };
            if json {
                writeln!(stdout, "{}", retried.json())?;
                return Ok(exit::SUCCESS);
            }
            let published = &retried.published;
            let hosts: Vec<&str> = retried.hosts.iter().map(|h| h.as_str()).collect();
            note!(
                "retried execution {} on {} ({}) as execution {}; version {}, {}, expires {}",
                retried.of,
                count(hosts.len() as u64, "host"),
                terminal::line(&hosts.join(", ")),
                published.id,
                published.version,
                match &published.key {
                    Some(key) => format!("signed by key {key}"),
                    None => "UNSIGNED".to_string(),
                },
                published.expires
            );
            writeln!(stdout, "{}", published.id)?;
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
        Command::Store {
            action: cattle_publish::cli::StoreAction::Upgrade,
        } => {
            let settings = settings(flags)?;
            let store = open_store(&settings).await?;
            let location = terminal::line(&store.location(""));
            match cattle_publish::versions::upgrade(&store).await? {
                cattle_core::wire::InboxLayout::Grouped => writeln!(
                    stdout,
                    "store `{location}` already addresses hosts through group inboxes only"
                )?,
                cattle_core::wire::InboxLayout::PerHostAndGrouped => writeln!(
                    stdout,
                    "store `{location}` upgraded: publishes address hosts through group inboxes \
                     only from now on; executions published before stay where they are"
                )?,
            }
            Ok(exit::SUCCESS)
        }
        Command::Store {
            action: cattle_publish::cli::StoreAction::Check { json },
        } => {
            let settings = settings(flags)?;
            let store = open_store(&settings).await?;
            let location = store.location("");
            let report = cattle_core::store::check::check(&store)
                .await
                .with_context(|| format!("cannot check store `{location}`"))?;
            // What `publish` and `retry` remember, refreshed (or forgotten).
            let memory = cattle_publish::store_check::memory_dir(&Inputs::system().env);
            if let Some(warning) =
                cattle_publish::store_check::remember(&store, memory.as_deref(), &report)
            {
                eprintln!("warning: {}", terminal::line(&warning));
            }
            if json {
                writeln!(
                    stdout,
                    "{}",
                    cattle_publish::store_check::json(&location, &report)
                )?;
            } else {
                write!(
                    stdout,
                    "{}",
                    cattle_publish::store_check::text(&location, &report)
                )?;
            }
            if report.passed() {
                Ok(exit::SUCCESS)
            } else {
                eprintln!(
                    "error: store `{}` does not honour what Cattle relies on; do not use it \
                     (docs/reliability.md says why each matters)",
                    terminal::line(&location)
                );
                Ok(exit::FAILURE)
            }
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

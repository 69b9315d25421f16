//! `cattle-agent`: parse flags, set up logging and signals, run the agent.

use std::process::ExitCode;

use anyhow::Context as _;
use cattle_agent::cli::{Args, Command};
use cattle_agent::logging::{ERR, FilterHandle, WARNING, journal_prefix};
use cattle_agent::settings::{self, Flags, Inputs, Origin, Settings};
use cattle_agent::{AgentError, Config, Shutdown, Trust, systemd};
use cattle_core::env;
use cattle_core::signing::TrustedKeys;
use cattle_core::store::{Store, StoreError};
use clap::Parser;

/// The exit status when `--require-store` finds no store named, or when the
/// store fails its self-test: `EX_CONFIG` of sysexits.h, which the packaged
/// unit lists in `RestartPreventExitStatus=`.
const NOT_CONFIGURED: u8 = 78;

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load(&args.flags, &Inputs::system()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{}error: {err}", journal_prefix(ERR));
            return ExitCode::FAILURE;
        }
    };
    if args.require_store && settings.store.origin == Origin::Default {
        let message = format!(
            "no store named: set `store` in {} (or CATTLE_STORE, or `--store`), then \
             start the agent again (`systemctl start cattle-agent`)",
            settings
                .config_file
                .as_ref()
                .map_or(settings::DEFAULT_CONFIG_FILE.into(), |f| f
                    .value
                    .display()
                    .to_string()),
        );
        eprintln!("{}error: {message}", journal_prefix(WARNING));
        if args.command.is_none() {
            // Under a Type=notify unit, an exit before READY=1 is a failed start; this is a
            // clean "not configured yet" (the unit's SuccessExitStatus=).
            systemd::status(&message);
            systemd::ready();
        }
        return ExitCode::from(NOT_CONFIGURED);
    }
    let log = cattle_agent::logging::init(
        cattle_agent::logging::parse(&settings.log.value)
            .expect("the log setting was checked when it was read"),
    );

    // One thread is plenty for one request per poll, and every extra thread
    // costs resident memory (a stack and a malloc arena). Steps run on tokio's
    // blocking pool, whose threads exit when idle.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    if let Some(Command::CheckConfig { offline }) = args.command {
        let report = runtime.block_on(cattle_agent::check_config::check(&settings, offline));
        print!("{}", report.text);
        return if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match runtime.block_on(run(args.flags, settings, log, args.once)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let error = journal_prefix(ERR);
            eprintln!("{error}error: {err}");
            for cause in cattle_core::distinct_causes(&err.to_string(), err.chain().skip(1)) {
                eprintln!("{error}  Caused by: {cause}");
            }
            if let Some(AgentError::StoreRefused { failures, .. }) = err.downcast_ref() {
                for failure in failures {
                    eprintln!("{error}  {failure}");
                }
                eprintln!(
                    "{error}hint: run `cattle store check` against this store for details \
                     (docs/reliability.md); use a store that passes, or fix this one, then start \
                     the agent again (`systemctl restart cattle-agent`)"
                );
                // Like a missing store, a setup problem that restarting does not fix.
                systemd::status(&err.to_string());
                return ExitCode::from(NOT_CONFIGURED);
            }
            if let Some(hint) = err
                .chain()
                .find_map(|e| {
                    // `AgentError::Store` is transparent: the store error is not its source.
                    e.downcast_ref::<StoreError>()
                        .or(match e.downcast_ref::<AgentError>() {
                            Some(AgentError::Store(store)) => Some(store),
                            _ => None,
                        })
                })
                .and_then(StoreError::hint)
            {
                eprintln!("{error}hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(
    flags: Flags,
    settings: Settings,
    log: FilterHandle,
    once: bool,
) -> anyhow::Result<()> {
    let config = agent_config(&settings, once)?;
    let url = &settings.store.value;
    let store = Store::open_with(url, settings.s3_options())
        .await
        .with_context(|| format!("cannot open store `{url}`"))?;

    let shutdown = Shutdown::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested; finishing the step under way");
        systemd::stopping();
        on_signal.request();
    });

    let (reloaded, reload) = tokio::sync::watch::channel(config.clone());
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    tokio::spawn(reload_on_hangup(hangup, flags, settings, log, reloaded));
    cattle_agent::run(config, store, shutdown, reload).await?;
    Ok(())
}

/// The agent's [`Config`] from `settings`: loads the trusted keys, and refuses
/// to run nothing but unsigned executions by accident.
fn agent_config(settings: &Settings, once: bool) -> anyhow::Result<Config> {
    let keys = TrustedKeys::load(&settings.trusted_keys.value)?;
    if keys.is_empty() && !settings.allow_unsigned.value {
        anyhow::bail!(
            "no trusted keys: give the publisher's public key with `--trusted-keys FILE` (or {}, \
             or `trusted_keys` in the config file), made by `cattle keygen`; or `--allow-unsigned` \
             to try Cattle out without signatures",
            env::TRUSTED_KEYS
        );
    }
    Ok(Config {
        host: settings.host_id.value.clone(),
        state_dir: settings.state_dir.value.clone(),
        interval: settings.interval.value,
        jitter: settings.jitter.value,
        once,
        retry: cattle_stdlib::Backoff::STEP,
        trust: Trust {
            keys,
            allow_unsigned: settings.allow_unsigned.value,
        },
        max_log_mib: settings.max_log_mib.value,
        ca_bundle: settings.ca_bundle.as_ref().map(|c| c.value.clone()),
    })
}

/// On each `SIGHUP` (`systemctl reload cattle-agent`), reads the settings
/// again, from the same flags: the interval, jitter, trusted keys, log bound
/// and log filter take effect; a change to what only a restart can apply (the
/// host ID, the store and how to reach it, the state directory) is named in a
/// warning. Settings that do not load are refused with the reason, and the
/// ones in effect stay.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    flags: Flags,
    mut current: Settings,
    log: FilterHandle,
    reloaded: tokio::sync::watch::Sender<Config>,
) {
    while hangup.recv().await.is_some() {
        systemd::reloading();
        let loaded = Settings::load(&flags, &Inputs::system())
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                let config = agent_config(&settings, false)?;
                Ok((settings, config))
            });
        match loaded {
            Ok((settings, config)) => {
                let restart = current.restart_only_changes(&settings);
                if !restart.is_empty() {
                    tracing::warn!(
                        "changed settings that take effect only after a restart \
                         (`systemctl restart cattle-agent`): {}",
                        restart.join(", ")
                    );
                }
                log.set(
                    cattle_agent::logging::parse(&settings.log.value)
                        .expect("the log setting was checked when it was read"),
                );
                reloaded.send_replace(config);
                current = settings;
            }
            Err(err) => {
                tracing::error!("cannot reload the settings, keeping those in effect: {err:#}")
            }
        }
        systemd::reloaded();
    }
}

#[cfg(test)]
mod tests {
    use super::NOT_CONFIGURED;

    #[test]
    fn the_documented_exit_codes_are_exactly_those_main_returns() {
        let doc = include_str!("../../../docs/exit-codes.md");
        let table: Vec<(u8, String)> = doc[doc.find("## `cattle-agent`\n").unwrap()..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                (
                    cells[1].parse().unwrap(),
                    cells[2].trim_matches('`').to_string(),
                )
            })
            .collect();
        // 0 and 1 are `ExitCode::SUCCESS` and `FAILURE`, 2 is clap's; every
        // other code main returns is an `ExitCode::from` of a constant.
        let source = include_str!("main.rs");
        let mut returned: Vec<(u8, String)> = vec![
            (0, "SUCCESS".into()),
            (1, "FAILURE".into()),
            (2, "USAGE".into()),
        ];
        let froms: Vec<&str> = source
            .split("ExitCode::from(")
            .skip(1)
            .map(|s| &s[..s.find(')').unwrap()])
            .filter(|s| !s.contains('"')) // this test's own text
            .collect();
        assert_eq!(froms, ["NOT_CONFIGURED", "NOT_CONFIGURED"]);
        returned.push((NOT_CONFIGURED, "NOT_CONFIGURED".into()));
        assert_eq!(table, returned);
    }
}

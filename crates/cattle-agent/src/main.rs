//! `cattle-agent`: parse flags, set up logging and signals, run the agent.

use std::process::ExitCode;

use anyhow::Context as _;
use cattle_agent::settings::{Flags, Inputs, Settings};
use cattle_agent::{AgentError, Config, Shutdown, Trust};
use cattle_core::env;
use cattle_core::signing::TrustedKeys;
use cattle_core::store::{Store, StoreError};
use clap::Parser;

/// Poll a Cattle store for executions addressed to this host and run them.
///
/// Settings come from the config file (`/etc/cattle/agent.toml`), then
/// environment variables, then these flags, each overriding the one before.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    flags: Flags,

    /// Handle everything pending, then exit (0 if all of it finished and was reported).
    #[arg(long)]
    once: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the settings and the store, print the effective settings (secrets
    /// redacted) with where each came from; exit 0 when all is well.
    CheckConfig,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load(&args.flags, &Inputs::system()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    cattle_agent::logging::init(
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
    if let Some(Command::CheckConfig) = args.command {
        let report = runtime.block_on(cattle_agent::check_config::check(&settings));
        print!("{}", report.text);
        return if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match runtime.block_on(run(settings, args.once)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
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
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings, once: bool) -> anyhow::Result<()> {
    let keys = TrustedKeys::load(&settings.trusted_keys.value)?;
    if keys.is_empty() && !settings.allow_unsigned.value {
        anyhow::bail!(
            "no trusted keys: give the publisher's public key with `--trusted-keys FILE` (or {}, \
             or `trusted_keys` in the config file), made by `cattle keygen`; or `--allow-unsigned` \
             to try Cattle out without signatures",
            env::TRUSTED_KEYS
        );
    }
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
        on_signal.request();
    });

    let config = Config {
        host: settings.host_id.value,
        state_dir: settings.state_dir.value,
        interval: settings.interval.value,
        jitter: settings.jitter.value,
        once,
        retry: cattle_stdlib::Backoff::STEP,
        trust: Trust {
            keys,
            allow_unsigned: settings.allow_unsigned.value,
        },
        max_log_mib: settings.max_log_mib.value,
        ca_bundle: settings.ca_bundle.map(|c| c.value),
    };
    cattle_agent::run(config, store, shutdown).await?;
    Ok(())
}

//! `cattle-agent`: parse flags, set up logging and signals, run the agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cattle_agent::{AgentError, Config, Shutdown, Trust};
use cattle_core::env;
use cattle_core::hosts::HostId;
use cattle_core::signing::TrustedKeys;
use cattle_core::store::{DEFAULT_STORE, Store, StoreError, StoreUrl};
use clap::Parser;

/// Where the agent keeps its executions unless told otherwise.
const DEFAULT_STATE_DIR: &str = "/var/lib/cattle/agent";

/// Poll a Cattle store for executions addressed to this host and run them.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// This host's ID, as publishers list it in their hosts files.
    #[arg(long, env = env::HOST_ID)]
    host_id: String,

    /// The store: `s3://bucket/prefix` or `file:///path`.
    #[arg(long, env = env::STORE, default_value = DEFAULT_STORE)]
    store: String,

    /// Where executions are unpacked and their STATUS and log kept.
    #[arg(long, env = env::STATE_DIR, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,

    /// Handle everything pending, then exit (0 if all of it finished and was reported).
    #[arg(long)]
    once: bool,

    /// File of public keys (from `cattle keygen`) whose signed executions this
    /// host runs; repeat the flag, or separate files with `:`, to trust several.
    #[arg(long = "trusted-keys", env = env::TRUSTED_KEYS, value_delimiter = ':')]
    trusted_keys: Vec<PathBuf>,

    /// Also run executions without a signature. Anyone who can write to the
    /// store can then run anything on this host: for trying Cattle out only.
    #[arg(long, env = env::ALLOW_UNSIGNED)]
    allow_unsigned: bool,

    /// Seconds between polls (±10 % jitter).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: u64,

    /// The most log kept per execution, locally and in the store, in MiB: its
    /// first half and its last half; what is dropped between them is marked.
    #[arg(long, env = env::MAX_LOG_MIB, default_value_t = cattle_agent::DEFAULT_MAX_LOG_MIB,
          value_parser = clap::value_parser!(u64).range(2..=1_048_576))]
    max_log_mib: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let spec = std::env::var(env::LOG).ok();
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    // journald adds its own timestamps and shows escape codes as text.
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .with(cattle_agent::logging::filter(
                spec.as_deref(),
                tracing::level_filters::LevelFilter::INFO,
            ))
            .init();
    }

    // One thread is plenty for one request per poll, and every extra thread
    // costs resident memory (a stack and a malloc arena). Steps run on tokio's
    // blocking pool, whose threads exit when idle.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(args)) {
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

async fn run(args: Args) -> anyhow::Result<()> {
    let host =
        HostId::new(&args.host_id).map_err(|m| anyhow::anyhow!("invalid `--host-id`: {m}"))?;
    let url =
        StoreUrl::parse(&args.store).map_err(|m| anyhow::anyhow!("invalid `--store`: {m}"))?;
    let keys = TrustedKeys::load(&args.trusted_keys)?;
    if keys.is_empty() && !args.allow_unsigned {
        anyhow::bail!(
            "no trusted keys: give the publisher's public key with `--trusted-keys FILE` (or {}), \
             made by `cattle keygen`; or `--allow-unsigned` to try Cattle out without signatures",
            env::TRUSTED_KEYS
        );
    }
    let store = Store::open(&url)
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
        host,
        state_dir: args.state_dir,
        interval: Duration::from_secs(args.interval),
        once: args.once,
        retry: cattle_stdlib::Backoff::STEP,
        trust: Trust {
            keys,
            allow_unsigned: args.allow_unsigned,
        },
        max_log_mib: args.max_log_mib,
    };
    cattle_agent::run(config, store, shutdown).await?;
    Ok(())
}

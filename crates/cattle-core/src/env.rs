//! Every environment variable Cattle reads or sets, declared once.
//!
//! The standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, …) are read by
//! the AWS SDK as usual. Programs that steps start also get `CATTLE_STEP` and
//! `CATTLE_ATTEMPT` from the stdlib runner.

/// The store URL when `--store` is not given (`cattle` and `cattle-agent`); for `cattle`,
/// also the name of a store its config file defines.
pub const STORE: &str = "CATTLE_STORE";
/// Log level: `off`, `error`, `warn`, `info`, `debug` or `trace` (`cattle` and `cattle-agent`).
pub const LOG: &str = "CATTLE_LOG";
/// The agent's host ID when `--host-id` is not given; also set for programs steps start.
pub const HOST_ID: &str = "CATTLE_HOST_ID";
/// The agent's state directory when `--state-dir` is not given.
pub const STATE_DIR: &str = "CATTLE_STATE_DIR";
/// Set for programs steps start: the execution's ID.
pub const EXECUTION_ID: &str = "CATTLE_EXECUTION_ID";
/// The agent's command for a `reboot` step, run with `sh -c` (default `systemctl reboot`).
pub const REBOOT_COMMAND: &str = "CATTLE_REBOOT_COMMAND";
/// Where the agent reads the boot ID that tells it a reboot happened
/// (default `/proc/sys/kernel/random/boot_id`).
pub const BOOT_ID_FILE: &str = "CATTLE_BOOT_ID_FILE";
/// Where the agent keeps a token of the current boot (default `/run/cattle`): it
/// must be a tmpfs, which every boot starts empty, so that a reboot shows even
/// where the kernel's boot ID does not change (a container).
pub const RUN_DIR: &str = "CATTLE_RUN_DIR";
/// `cattle publish`: the secret key file that signs manifests (`--key`), over the config
/// file's `signing_key`.
pub const SIGNING_KEY: &str = "CATTLE_SIGNING_KEY";
/// `cattle publish`: who publishes, as manifests record it (default: the user
/// name of the real user ID, `@`, the machine's host name).
pub const PUBLISHER: &str = "CATTLE_PUBLISHER";
/// `cattle-agent`: files of public keys whose signatures it accepts, separated by `:` (`--trusted-keys`).
pub const TRUSTED_KEYS: &str = "CATTLE_TRUSTED_KEYS";
/// `cattle-agent`: the most MiB of log kept per execution, locally and in the store (`--max-log-mib`).
pub const MAX_LOG_MIB: &str = "CATTLE_MAX_LOG_MIB";
/// `cattle-agent`: `1` runs unsigned executions too (`--allow-unsigned`); for trying Cattle out only.
pub const ALLOW_UNSIGNED: &str = "CATTLE_ALLOW_UNSIGNED";
/// `cattle-agent`: its config file (`--config`; default `/etc/cattle/agent.toml`).
pub const AGENT_CONFIG: &str = "CATTLE_AGENT_CONFIG";
/// `cattle-agent`: the time between polls, seconds or a duration such as `5m` (`--interval`).
pub const INTERVAL: &str = "CATTLE_INTERVAL";
/// `cattle-agent`: the most each wait between polls is moved at random, either way (`--jitter`).
pub const JITTER: &str = "CATTLE_JITTER";
/// `1` lets the AWS SDK ask the instance metadata service for credentials and region.
pub const S3_IMDS: &str = "CATTLE_S3_IMDS";
/// `1` forces path-style S3 requests, `0` virtual-hosted; unset: path-style iff an endpoint is set.
pub const S3_PATH_STYLE: &str = "CATTLE_S3_PATH_STYLE";
/// Path to a PEM file of one or more CA certificates: when set, the S3 client trusts exactly
/// these roots for HTTPS to the store (a private CA), and not the system's; unset: the system's.
pub const CA_BUNDLE: &str = "CATTLE_CA_BUNDLE";
/// `cattle`: its config file (`--config`; default `$XDG_CONFIG_HOME/cattle/config.toml`,
/// else `~/.config/cattle/config.toml`).
pub const CONFIG: &str = "CATTLE_CONFIG";
/// The base directory of a user's config files (XDG); `cattle` reads
/// `cattle/config.toml` there, else under `$HOME/.config`.
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// The base directory of a user's cache files (XDG); `cattle` remembers there, under
/// `cattle/`, which stores passed their self-test, else under `$HOME/.cache`.
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// The host's time zone, as for every program (else /etc/localtime): `cattle-agent`
/// reads the local times of maintenance windows in it.
pub const TZ: &str = "TZ";
/// The user's home directory: `~` in `cattle`'s config file, and its default place.
pub const HOME: &str = "HOME";
/// The S3 endpoint, a standard AWS SDK variable (`AWS_ENDPOINT_URL_S3` also works).
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// The S3 endpoint, the S3-only spelling of [`AWS_ENDPOINT_URL`].
pub const AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
/// The S3 region, a standard AWS SDK variable.
pub const AWS_REGION: &str = "AWS_REGION";
/// The S3 region, older spelling of [`AWS_REGION`].
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// The store's access key ID, a standard AWS SDK variable.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// The store's secret key, a standard AWS SDK variable.
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// A file holding the access key ID (e.g. systemd's `LoadCredential=`), instead of
/// [`AWS_ACCESS_KEY_ID`]; refused if its group or other users can read it.
pub const AWS_ACCESS_KEY_ID_FILE: &str = "AWS_ACCESS_KEY_ID_FILE";
/// A file holding the secret key, instead of [`AWS_SECRET_ACCESS_KEY`]; refused
/// if its group or other users can read it.
pub const AWS_SECRET_ACCESS_KEY_FILE: &str = "AWS_SECRET_ACCESS_KEY_FILE";

/// The log level [`LOG`] asks for, or `default` when it is unset. A value that is
/// not a level is reported on standard error and `default` is used.
pub fn log_level(
    default: tracing::level_filters::LevelFilter,
) -> tracing::level_filters::LevelFilter {
    match std::env::var(LOG) {
        Err(_) => default,
        Ok(value) => value.trim().parse().unwrap_or_else(|_| {
            eprintln!("warning: {LOG}=`{value}` is not a log level (off, error, warn, info, debug, trace); using {default}");
            default
        }),
    }
}

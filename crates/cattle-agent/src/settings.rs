//! The agent's settings: one place that decides every value, and says where
//! each came from.
//!
//! Four layers, each overriding the one below it, key by key:
//!
//! 1. defaults (the host name from `/proc/sys/kernel/hostname`, the embedded
//!    file store, a 30 s interval, …);
//! 2. the config file, `/etc/cattle/agent.toml` unless `--config PATH` or
//!    `CATTLE_AGENT_CONFIG` names another (`deploy/agent.toml` documents every
//!    key); a missing file at the default path means defaults, a missing file
//!    named explicitly is an error;
//! 3. environment variables (`CATTLE_*`, and the standard `AWS_*` ones for the
//!    endpoint, region and credentials);
//! 4. command-line flags.
//!
//! Flags are parsed by clap without its `env` support, which would make an
//! environment variable and a flag one layer: the environment is read here, so
//! that a flag overrides a variable and a variable overrides the file.
//!
//! Secrets are never in the config file itself: `credentials_file` names a file
//! holding them, and `AWS_ACCESS_KEY_ID_FILE` / `AWS_SECRET_ACCESS_KEY_FILE`
//! name files holding one each (systemd's `LoadCredential=`). Such files are
//! refused when their group or other users can read them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cattle_core::env::{self, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3, AWS_REGION};
use cattle_core::hosts::HostId;
use cattle_core::settings::{
    self as shared, Candidate, ConfigFile, Row, checked, from_flag, pick, read_credentials_file,
};
pub use cattle_core::settings::{Credentials, Origin, SettingsError, Sourced};
use cattle_core::store::{DEFAULT_STORE, S3Options, StoreUrl};
use serde::Deserialize;
use toml::Spanned;
use tracing::level_filters::LevelFilter;

/// Where the agent reads its config file unless told otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/cattle/agent.toml";
/// Where the agent keeps its executions unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cattle/agent";
/// Where the default host ID comes from: the machine's host name.
pub const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";
/// The default poll jitter, as a fraction of the interval: each wait is the
/// interval moved by a random amount of at most this much, either way.
pub const DEFAULT_JITTER_FRACTION: u32 = 10;
/// The range of `interval`.
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
/// The range of `max_log_mib`.
const MAX_LOG_MIB_RANGE: (u64, u64) = (2, 1_048_576);

/// The agent's flags, as given on the command line; `None` (or empty, or
/// `false`) when not given, so that the layers below show through.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// The config file (default `/etc/cattle/agent.toml`; a missing default file is fine).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// This host's ID, as publishers list it in their hosts files (default: the host name).
    #[arg(long, global = true, value_name = "ID")]
    pub host_id: Option<String>,

    /// The store: `s3://bucket/prefix` or `file:///path`.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,

    /// The S3 endpoint, e.g. `https://minio.example.internal:9000` (default: AWS S3).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,

    /// The S3 region (default `us-east-1`, or the AWS profile's).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// A file with `access_key_id = "…"` and `secret_access_key = "…"` (TOML), mode 0600.
    #[arg(long, global = true, value_name = "PATH")]
    pub credentials_file: Option<PathBuf>,

    /// PEM file of the CA certificate(s) to trust for HTTPS to the store, instead of the system's.
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_bundle: Option<PathBuf>,

    /// Where executions are unpacked and their STATUS and log kept.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// File of public keys (from `cattle keygen`) whose signed executions this
    /// host runs; repeat the flag, or separate files with `:`, to trust several.
    #[arg(
        long = "trusted-keys",
        global = true,
        value_delimiter = ':',
        value_name = "FILE"
    )]
    pub trusted_keys: Vec<PathBuf>,

    /// Also run executions without a signature. Anyone who can write to the
    /// store can then run anything on this host: for trying Cattle out only.
    #[arg(long, global = true)]
    pub allow_unsigned: bool,

    /// Time between polls: seconds (`30`) or a duration (`30s`, `5m`); default 30s.
    #[arg(long, global = true, value_name = "DURATION")]
    pub interval: Option<String>,

    /// Each wait between polls is moved by a random amount up to this, either
    /// way (default: a tenth of the interval).
    #[arg(long, global = true, value_name = "DURATION")]
    pub jitter: Option<String>,

    /// The most log kept per execution, locally and in the store, in MiB: its
    /// first half and its last half; what is dropped between them is marked.
    #[arg(long, global = true, value_name = "MIB")]
    pub max_log_mib: Option<u64>,

    /// Log level: off, error, warn, info (default), debug, trace.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log: Option<String>,
}

/// Every setting of the agent, validated, each with its origin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file read, if any, and what named it.
    pub config_file: Option<Sourced<PathBuf>>,
    pub host_id: Sourced<HostId>,
    pub store: Sourced<StoreUrl>,
    pub endpoint: Option<Sourced<String>>,
    pub region: Option<Sourced<String>>,
    /// `None`: the AWS profile files (`AWS_PROFILE`, `~/.aws`), as the SDK finds them.
    pub credentials: Option<Sourced<Credentials>>,
    pub ca_bundle: Option<Sourced<PathBuf>>,
    pub state_dir: Sourced<PathBuf>,
    pub trusted_keys: Sourced<Vec<PathBuf>>,
    pub allow_unsigned: Sourced<bool>,
    pub interval: Sourced<Duration>,
    pub jitter: Sourced<Duration>,
    pub max_log_mib: Sourced<u64>,
    /// A level for Cattle's crates, or `target=level` directives
    /// (see [`crate::logging`]), checked.
    pub log: Sourced<String>,
}

/// What [`Settings::load`] reads besides the flags; [`Inputs::system`] for the
/// real ones, others in tests.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The environment variables.
    pub env: BTreeMap<String, String>,
    /// The config file read when neither `--config` nor `CATTLE_AGENT_CONFIG` names one.
    pub default_config: PathBuf,
    /// The file holding the machine's host name (the default host ID).
    pub hostname_file: PathBuf,
}

impl Inputs {
    /// This process's environment and the real default paths.
    pub fn system() -> Inputs {
        Inputs {
            env: std::env::vars().collect(),
            default_config: PathBuf::from(DEFAULT_CONFIG_FILE),
            hostname_file: PathBuf::from(HOSTNAME_FILE),
        }
    }

    /// A variable's value; empty counts as unset.
    fn var(&self, name: &str) -> Option<&str> {
        shared::var(&self.env, name)
    }
}

/// The config file's keys. Paths in it are relative to its directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    host_id: Option<Spanned<String>>,
    store: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    credentials_file: Option<Spanned<PathBuf>>,
    ca_bundle: Option<Spanned<PathBuf>>,
    state_dir: Option<Spanned<PathBuf>>,
    trusted_keys: Option<Spanned<Vec<PathBuf>>>,
    allow_unsigned: Option<Spanned<bool>>,
    interval: Option<Spanned<toml::Value>>,
    jitter: Option<Spanned<toml::Value>>,
    max_log_mib: Option<Spanned<u64>>,
    log: Option<Spanned<String>>,
}

/// Where every key of the agent's config file is described.
const DOCUMENTED_IN: &str = "deploy/agent.toml";

/// The config file, read: its keys, and how to point at them.
type File = ConfigFile<FileSettings>;

fn from_env(inputs: &Inputs, name: &'static str) -> Option<Candidate<String>> {
    shared::from_env(&inputs.env, name)
}

fn from_file<T: Clone>(file: Option<&File>, value: &Option<Spanned<T>>) -> Option<Candidate<T>> {
    file?.candidate(value.as_ref())
}

fn from_file_path(
    file: Option<&File>,
    value: &Option<Spanned<PathBuf>>,
) -> Option<Candidate<PathBuf>> {
    file?.path_candidate(value.as_ref())
}

fn env_path(inputs: &Inputs, name: &'static str) -> Option<Candidate<PathBuf>> {
    shared::env_path(&inputs.env, name)
}

/// A duration as settings take it: plain seconds (`30`, as `--interval` always
/// took) or a humantime duration (`30s`, `5m`, `1h 30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("`{text}`: {e}"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}): write seconds (`30`) or a duration such as `30s`, `5m`, `1h`")
    })
}

/// A duration from the config file: an integer (seconds) or a string.
fn file_duration(value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::Integer(n) if n >= 0 => Ok(n.to_string()),
        toml::Value::String(s) => Ok(s),
        other => Err(format!(
            "expected seconds or a duration string such as \"30s\", found {}",
            other.type_str()
        )),
    }
}

fn parse_bool(text: String) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{text}` is not a boolean: write `1` or `0`")),
    }
}

fn parse_level(text: String) -> Result<String, String> {
    crate::logging::parse(&text)?;
    Ok(text.trim().to_string())
}

/// The credentials the environment gives, if it gives both halves.
fn env_credentials(inputs: &Inputs) -> Result<Option<Sourced<Credentials>>, SettingsError> {
    shared::env_credentials(&inputs.env)
}

/// Which config file to read, and whether it must exist.
fn config_path(flags: &Flags, inputs: &Inputs) -> (Sourced<PathBuf>, bool) {
    if let Some(path) = &flags.config {
        (Sourced::new(path.clone(), Origin::Flag("--config")), true)
    } else if let Some(path) = inputs.var(env::AGENT_CONFIG) {
        (
            Sourced::new(PathBuf::from(path), Origin::Env(env::AGENT_CONFIG)),
            true,
        )
    } else {
        (
            Sourced::new(inputs.default_config.clone(), Origin::Default),
            false,
        )
    }
}

/// Parse the text of a config file (the skeleton in `deploy/`, in tests).
#[cfg(test)]
fn parse_file(path: &Path, source: String) -> Result<File, SettingsError> {
    File::parse(path, source, DOCUMENTED_IN)
}

impl Settings {
    /// Decide every setting from the flags, the environment, the config file
    /// and the defaults (see the module's documentation for the order).
    pub fn load(flags: &Flags, inputs: &Inputs) -> Result<Settings, SettingsError> {
        let (config_path, required) = config_path(flags, inputs);
        let file = File::read(&config_path, required, DOCUMENTED_IN)?;
        // Absolute, as read: the paths in it are relative to its directory.
        let config_file = file
            .as_ref()
            .map(|f| Sourced::new(f.path.clone(), config_path.origin.clone()));
        let f = file.as_ref();
        let keys = f.map(|f| &f.keys);
        let k = |get: fn(&FileSettings) -> &Option<Spanned<String>>| {
            f.and_then(|f| from_file(Some(f), get(&f.keys)))
        };

        let host_id = match pick(
            from_flag(flags.host_id.clone(), "--host-id"),
            from_env(inputs, env::HOST_ID),
            k(|k| &k.host_id),
        ) {
            Some(c) => checked(c, "host ID", |v| HostId::new(&v))?,
            None => {
                let name = std::fs::read_to_string(&inputs.hostname_file).map_err(|e| {
                    SettingsError(format!(
                        "no host ID given, and the host name cannot be read from `{}`: {e}; \
                         set `host_id` in the config file, {} or `--host-id`",
                        inputs.hostname_file.display(),
                        env::HOST_ID
                    ))
                })?;
                let host = HostId::new(name.trim()).map_err(|m| {
                    SettingsError(format!(
                        "the host name `{}` (from `{}`, the default host ID) is not a valid host ID: {m}; \
                         set `host_id` in the config file, {} or `--host-id`",
                        name.trim(),
                        inputs.hostname_file.display(),
                        env::HOST_ID
                    ))
                })?;
                Sourced::new(host, Origin::Default)
            }
        };

        let store = match pick(
            from_flag(flags.store.clone(), "--store"),
            from_env(inputs, env::STORE),
            k(|k| &k.store),
        ) {
            Some(c) => checked(c, "store URL", |v| StoreUrl::parse(&v))?,
            None => Sourced::new(
                StoreUrl::parse(DEFAULT_STORE).expect("the default store URL parses"),
                Origin::Default,
            ),
        };

        let endpoint = pick(
            from_flag(flags.endpoint.clone(), "--endpoint"),
            from_env(inputs, env::AWS_ENDPOINT_URL)
                .or_else(|| from_env(inputs, AWS_ENDPOINT_URL_S3)),
            k(|k| &k.endpoint),
        )
        .map(|c| checked(c, "endpoint", shared::endpoint_url))
        .transpose()?;

        let region = pick(
            from_flag(flags.region.clone(), "--region"),
            from_env(inputs, AWS_REGION).or_else(|| from_env(inputs, AWS_DEFAULT_REGION)),
            k(|k| &k.region),
        )
        .map(|c| Sourced::new(c.value, c.origin));

        let credentials = match flags.credentials_file.as_ref() {
            Some(path) => Some(Sourced::new(
                read_credentials_file(path, "--credentials-file")?,
                Origin::Flag("--credentials-file"),
            )),
            None => match env_credentials(inputs)? {
                Some(credentials) => Some(credentials),
                None => match f.and_then(|f| f.keys.credentials_file.as_ref().map(|v| (f, v))) {
                    Some((f, value)) => {
                        let path = f.path_value(value);
                        Some(Sourced::new(
                            read_credentials_file(&path.value, &f.at(value.span()))?,
                            path.origin,
                        ))
                    }
                    None => None,
                },
            },
        };

        let ca_bundle = pick(
            from_flag(flags.ca_bundle.clone(), "--ca-bundle"),
            env_path(inputs, env::CA_BUNDLE),
            from_file_path(f, &keys.and_then(|k| k.ca_bundle.clone())),
        )
        .map(|c| Sourced::new(c.value, c.origin));

        let state_dir = pick(
            from_flag(flags.state_dir.clone(), "--state-dir"),
            env_path(inputs, env::STATE_DIR),
            from_file_path(f, &keys.and_then(|k| k.state_dir.clone())),
        )
        .map_or_else(
            || Sourced::new(PathBuf::from(DEFAULT_STATE_DIR), Origin::Default),
            |c| Sourced::new(c.value, c.origin),
        );

        let trusted_keys = pick(
            from_flag(
                (!flags.trusted_keys.is_empty()).then(|| flags.trusted_keys.clone()),
                "--trusted-keys",
            ),
            from_env(inputs, env::TRUSTED_KEYS).map(|c| Candidate {
                value: c
                    .value
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect(),
                origin: c.origin,
                place: c.place,
            }),
            f.and_then(|f| {
                let value = f.keys.trusted_keys.as_ref()?;
                let dir = f.path.parent().unwrap_or(Path::new("/"));
                Some(Candidate {
                    value: value.get_ref().iter().map(|p| dir.join(p)).collect(),
                    origin: f.origin(value.span()),
                    place: f.at(value.span()),
                })
            }),
        )
        .map_or_else(
            || Sourced::new(Vec::new(), Origin::Default),
            |c| Sourced::new(c.value, c.origin),
        );

        let allow_unsigned = match pick(
            from_flag(flags.allow_unsigned.then_some(true), "--allow-unsigned"),
            None,
            None,
        ) {
            Some(c) => Sourced::new(c.value, c.origin),
            None => match from_env(inputs, env::ALLOW_UNSIGNED) {
                Some(c) => checked(c, "value", parse_bool)?,
                None => from_file(f, &keys.and_then(|k| k.allow_unsigned.clone())).map_or_else(
                    || Sourced::new(false, Origin::Default),
                    |c| Sourced::new(c.value, c.origin),
                ),
            },
        };

        let duration_candidate = |flag: Option<String>,
                                  flag_name: &'static str,
                                  var: &'static str,
                                  value: Option<Spanned<toml::Value>>|
         -> Result<Option<Candidate<String>>, SettingsError> {
            let file = match (f, value) {
                (Some(f), Some(value)) => {
                    let text = file_duration(value.get_ref().clone())
                        .map_err(|m| SettingsError(format!("{}: {m}", f.at(value.span()))))?;
                    Some(Candidate {
                        value: text,
                        origin: f.origin(value.span()),
                        place: f.at(value.span()),
                    })
                }
                _ => None,
            };
            Ok(pick(
                from_flag(flag, flag_name),
                from_env(inputs, var),
                file,
            ))
        };

        let interval = match duration_candidate(
            flags.interval.clone(),
            "--interval",
            env::INTERVAL,
            keys.and_then(|k| k.interval.clone()),
        )? {
            Some(c) => checked(c, "interval", |v| {
                let d = parse_duration(&v)?;
                let (low, high) = INTERVAL_RANGE;
                if d < low || d > high {
                    return Err(format!(
                        "{} is outside 1s to 24h",
                        humantime::format_duration(d)
                    ));
                }
                Ok(d)
            })?,
            None => Sourced::new(crate::DEFAULT_INTERVAL, Origin::Default),
        };

        let jitter = match duration_candidate(
            flags.jitter.clone(),
            "--jitter",
            env::JITTER,
            keys.and_then(|k| k.jitter.clone()),
        )? {
            Some(c) => checked(c, "jitter", |v| {
                let d = parse_duration(&v)?;
                if d > interval.value {
                    return Err(format!(
                        "{} is more than the interval ({}, {})",
                        humantime::format_duration(d),
                        humantime::format_duration(interval.value),
                        interval.origin
                    ));
                }
                Ok(d)
            })?,
            None => Sourced::new(interval.value / DEFAULT_JITTER_FRACTION, Origin::Default),
        };

        let max_log_mib = match pick(
            from_flag(flags.max_log_mib.map(|n| n.to_string()), "--max-log-mib"),
            from_env(inputs, env::MAX_LOG_MIB),
            from_file(f, &keys.and_then(|k| k.max_log_mib.clone())).map(|c| Candidate {
                value: c.value.to_string(),
                origin: c.origin,
                place: c.place,
            }),
        ) {
            Some(c) => checked(c, "most MiB of log", |v| {
                let n: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{v}` is not a whole number"))?;
                let (low, high) = MAX_LOG_MIB_RANGE;
                if n < low || n > high {
                    return Err(format!("{n} is outside {low} to {high}"));
                }
                Ok(n)
            })?,
            None => Sourced::new(crate::DEFAULT_MAX_LOG_MIB, Origin::Default),
        };

        let log = match pick(
            from_flag(flags.log.clone(), "--log"),
            from_env(inputs, env::LOG),
            k(|k| &k.log),
        ) {
            Some(c) => checked(c, "log level", parse_level)?,
            None => Sourced::new(
                LevelFilter::INFO.to_string().to_lowercase(),
                Origin::Default,
            ),
        };

        Ok(Settings {
            config_file,
            host_id,
            store,
            endpoint,
            region,
            credentials,
            ca_bundle,
            state_dir,
            trusted_keys,
            allow_unsigned,
            interval,
            jitter,
            max_log_mib,
            log,
        })
    }

    /// How to reach the store: these settings over what the environment says
    /// of path-style requests and the instance metadata service.
    /// The settings in which `new` differs from `self` (those in effect) and
    /// that only a restart applies: the agent's identity, its store and how it
    /// reaches it, and its state directory.
    pub fn restart_only_changes(&self, new: &Settings) -> Vec<&'static str> {
        fn value<T>(setting: &Option<Sourced<T>>) -> Option<&T> {
            setting.as_ref().map(|s| &s.value)
        }
        [
            ("host_id", self.host_id.value != new.host_id.value),
            (
                "store",
                self.store.value.to_string() != new.store.value.to_string(),
            ),
            ("endpoint", value(&self.endpoint) != value(&new.endpoint)),
            ("region", value(&self.region) != value(&new.region)),
            (
                "credentials",
                value(&self.credentials) != value(&new.credentials),
            ),
            ("ca_bundle", value(&self.ca_bundle) != value(&new.ca_bundle)),
            ("state_dir", self.state_dir.value != new.state_dir.value),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    pub fn s3_options(&self) -> S3Options {
        let mut options = S3Options::from_env();
        options.endpoint = self.endpoint.as_ref().map(|e| e.value.clone());
        options.region = self.region.as_ref().map(|r| r.value.clone());
        options.credentials = self.credentials.as_ref().and_then(|c| c.value.for_sdk());
        options.ca_bundle = self.ca_bundle.as_ref().map(|c| c.value.clone());
        options
    }

    /// The effective settings as `key = value  # origin` lines, secrets
    /// shown as `[redacted]`: what `check-config` prints.
    pub fn describe(&self) -> String {
        let mut rows: Vec<Row> = Vec::new();
        let mut row = |key: &'static str, value: String, origin: String| {
            rows.push((key.to_string(), value, origin))
        };
        let quoted = |s: &str| format!("{s:?}");
        let path = |p: &Path| quoted(&p.display().to_string());
        let duration = |d: Duration| quoted(&humantime::format_duration(d).to_string());
        let unset = |what: &str| format!("(unset: {what})");
        match &self.config_file {
            Some(c) => row("config file", path(&c.value), c.origin.to_string()),
            None => row("config file", unset("none read"), String::new()),
        }
        row(
            "host_id",
            quoted(self.host_id.value.as_str()),
            self.host_id.origin.to_string(),
        );
        row(
            "store",
            quoted(&self.store.value.to_string()),
            self.store.origin.to_string(),
        );
        match &self.endpoint {
            Some(e) => row("endpoint", quoted(&e.value), e.origin.to_string()),
            None => row("endpoint", unset("AWS S3"), "default".to_string()),
        }
        match &self.region {
            Some(r) => row("region", quoted(&r.value), r.origin.to_string()),
            None => row(
                "region",
                unset("the AWS profile's, else us-east-1"),
                "default".to_string(),
            ),
        }
        match &self.credentials {
            Some(c) => {
                for (key, value, origin) in shared::credential_rows(c) {
                    row(key, value, origin);
                }
            }
            None => row(
                "credentials",
                unset("AWS_PROFILE or ~/.aws files"),
                "default".to_string(),
            ),
        }
        match &self.ca_bundle {
            Some(c) => row("ca_bundle", path(&c.value), c.origin.to_string()),
            None => row(
                "ca_bundle",
                unset("the system's root CAs"),
                "default".to_string(),
            ),
        }
        row(
            "state_dir",
            path(&self.state_dir.value),
            self.state_dir.origin.to_string(),
        );
        row(
            "trusted_keys",
            format!(
                "[{}]",
                self.trusted_keys
                    .value
                    .iter()
                    .map(|p| path(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            self.trusted_keys.origin.to_string(),
        );
        row(
            "allow_unsigned",
            self.allow_unsigned.value.to_string(),
            self.allow_unsigned.origin.to_string(),
        );
        row(
            "interval",
            duration(self.interval.value),
            self.interval.origin.to_string(),
        );
        row(
            "jitter",
            duration(self.jitter.value),
            self.jitter.origin.to_string(),
        );
        row(
            "max_log_mib",
            self.max_log_mib.value.to_string(),
            self.max_log_mib.origin.to_string(),
        );
        row("log", quoted(&self.log.value), self.log.origin.to_string());
        shared::describe(&rows)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::os::unix::fs::PermissionsExt;

    use cattle_core::env::{
        AWS_ACCESS_KEY_ID as ACCESS_KEY_ID, AWS_ACCESS_KEY_ID_FILE as ACCESS_KEY_ID_FILE,
        AWS_SECRET_ACCESS_KEY as SECRET_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY_FILE as SECRET_ACCESS_KEY_FILE,
    };
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestArgs {
        #[command(flatten)]
        flags: Flags,
    }

    /// A directory with a host name file and, when given, the default config file.
    struct Setup {
        dir: tempfile::TempDir,
        env: BTreeMap<String, String>,
    }

    impl Setup {
        fn new(file: Option<&str>) -> Setup {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("hostname"), "machine-name\n").unwrap();
            if let Some(text) = file {
                std::fs::write(dir.path().join("agent.toml"), text).unwrap();
            }
            Setup {
                dir,
                env: BTreeMap::new(),
            }
        }

        fn env(mut self, name: &str, value: &str) -> Setup {
            self.env.insert(name.to_string(), value.to_string());
            self
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Write a secret file with `mode`.
        fn secret(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let path = self.path(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }

        fn load(&self, args: &[&str]) -> Result<Settings, SettingsError> {
            let flags = TestArgs::try_parse_from(
                std::iter::once("cattle-agent").chain(args.iter().copied()),
            )
            .unwrap()
            .flags;
            Settings::load(
                &flags,
                &Inputs {
                    env: self.env.clone(),
                    default_config: self.path("agent.toml"),
                    hostname_file: self.path("hostname"),
                },
            )
        }
    }

    fn file_origin(setup: &Setup, line: usize) -> Origin {
        Origin::File {
            path: setup.path("agent.toml"),
            line,
        }
    }

    type Getter = fn(&Settings) -> (String, Origin);

    /// One key through the four layers: (key, file line, variable and its
    /// value, flag and its value, the value each layer gives, how to read it).
    struct Layers {
        file: &'static str,
        var: (&'static str, &'static str),
        flag: (&'static str, &'static str),
        /// The value at each layer: default, file, env, flag.
        expect: [&'static str; 4],
        get: Getter,
    }

    fn shown<T: fmt::Debug>(s: &Option<Sourced<T>>) -> (String, Origin) {
        match s {
            Some(s) => (format!("{:?}", s.value), s.origin.clone()),
            None => ("None".to_string(), Origin::Default),
        }
    }

    #[test]
    fn each_layer_overrides_the_one_below_it_key_by_key() {
        let table: Vec<Layers> = vec![
            Layers {
                file: r#"host_id = "from-file""#,
                var: (env::HOST_ID, "from-env"),
                flag: ("--host-id", "from-flag"),
                expect: ["machine-name", "from-file", "from-env", "from-flag"],
                get: |s| (s.host_id.value.to_string(), s.host_id.origin.clone()),
            },
            Layers {
                file: r#"store = "s3://file-bucket/p""#,
                var: (env::STORE, "s3://env-bucket/p"),
                flag: ("--store", "file:///flag/store"),
                expect: [
                    DEFAULT_STORE,
                    "s3://file-bucket/p/",
                    "s3://env-bucket/p/",
                    "file:///flag/store",
                ],
                get: |s| (s.store.value.to_string(), s.store.origin.clone()),
            },
            Layers {
                file: r#"endpoint = "http://file:9000""#,
                var: (env::AWS_ENDPOINT_URL, "http://env:9000"),
                flag: ("--endpoint", "https://flag:9000"),
                expect: [
                    "None",
                    r#""http://file:9000""#,
                    r#""http://env:9000""#,
                    r#""https://flag:9000""#,
                ],
                get: |s| shown(&s.endpoint),
            },
            Layers {
                file: r#"region = "file-1""#,
                var: (AWS_REGION, "env-1"),
                flag: ("--region", "flag-1"),
                expect: ["None", r#""file-1""#, r#""env-1""#, r#""flag-1""#],
                get: |s| shown(&s.region),
            },
            Layers {
                file: r#"ca_bundle = "/file/ca.pem""#,
                var: (env::CA_BUNDLE, "/env/ca.pem"),
                flag: ("--ca-bundle", "/flag/ca.pem"),
                expect: [
                    "None",
                    r#""/file/ca.pem""#,
                    r#""/env/ca.pem""#,
                    r#""/flag/ca.pem""#,
                ],
                get: |s| shown(&s.ca_bundle),
            },
            Layers {
                file: r#"state_dir = "/file/state""#,
                var: (env::STATE_DIR, "/env/state"),
                flag: ("--state-dir", "/flag/state"),
                expect: [
                    DEFAULT_STATE_DIR,
                    "/file/state",
                    "/env/state",
                    "/flag/state",
                ],
                get: |s| {
                    (
                        s.state_dir.value.display().to_string(),
                        s.state_dir.origin.clone(),
                    )
                },
            },
            Layers {
                file: r#"trusted_keys = ["/file/a.pub", "/file/b.pub"]"#,
                var: (env::TRUSTED_KEYS, "/env/a.pub:/env/b.pub"),
                flag: ("--trusted-keys", "/flag/a.pub"),
                expect: [
                    "[]",
                    r#"["/file/a.pub", "/file/b.pub"]"#,
                    r#"["/env/a.pub", "/env/b.pub"]"#,
                    r#"["/flag/a.pub"]"#,
                ],
                get: |s| {
                    (
                        format!("{:?}", s.trusted_keys.value),
                        s.trusted_keys.origin.clone(),
                    )
                },
            },
            Layers {
                file: "allow_unsigned = true",
                var: (env::ALLOW_UNSIGNED, "0"),
                flag: ("--allow-unsigned", ""),
                expect: ["false", "true", "false", "true"],
                get: |s| {
                    (
                        s.allow_unsigned.value.to_string(),
                        s.allow_unsigned.origin.clone(),
                    )
                },
            },
            Layers {
                file: r#"interval = "5m""#,
                var: (env::INTERVAL, "90"),
                flag: ("--interval", "2h"),
                expect: ["30s", "5m", "1m 30s", "2h"],
                get: |s| {
                    (
                        humantime::format_duration(s.interval.value).to_string(),
                        s.interval.origin.clone(),
                    )
                },
            },
            Layers {
                file: r#"jitter = "2s""#,
                var: (env::JITTER, "1s"),
                flag: ("--jitter", "500ms"),
                expect: ["3s", "2s", "1s", "500ms"],
                get: |s| {
                    (
                        humantime::format_duration(s.jitter.value).to_string(),
                        s.jitter.origin.clone(),
                    )
                },
            },
            Layers {
                file: "max_log_mib = 8",
                var: (env::MAX_LOG_MIB, "16"),
                flag: ("--max-log-mib", "32"),
                expect: ["64", "8", "16", "32"],
                get: |s| {
                    (
                        s.max_log_mib.value.to_string(),
                        s.max_log_mib.origin.clone(),
                    )
                },
            },
            Layers {
                file: r#"log = "debug""#,
                var: (env::LOG, "warn"),
                flag: ("--log", "error"),
                expect: ["info", "debug", "warn", "error"],
                get: |s| (s.log.value.to_string(), s.log.origin.clone()),
            },
        ];
        for layers in table {
            let Layers {
                file,
                var,
                flag,
                expect,
                get,
            } = layers;
            // The jitter's default is a tenth of the interval: make that 30s.
            let flag_args: Vec<&str> = if flag.1.is_empty() {
                vec![flag.0]
            } else {
                vec![flag.0, flag.1]
            };
            let flag_name: &'static str = flag.0;
            let cases: [(Option<&str>, bool, bool, Origin); 4] = [
                (None, false, false, Origin::Default),
                (Some(file), false, false, Origin::Default),
                (Some(file), true, false, Origin::Env(var.0)),
                (Some(file), true, true, Origin::Flag(flag_name)),
            ];
            for (layer, ((file, with_env, with_flag, origin), want)) in
                cases.into_iter().zip(expect).enumerate()
            {
                // Line 2 of the file: line 1 is a comment, so the line is checked.
                let setup = Setup::new(file.map(|f| format!("# agent\n{f}\n")).as_deref());
                let setup = if with_env {
                    setup.env(var.0, var.1)
                } else {
                    setup
                };
                let args = if with_flag {
                    flag_args.clone()
                } else {
                    Vec::new()
                };
                let settings = setup
                    .load(&args)
                    .unwrap_or_else(|e| panic!("{file:?} {args:?}: {e}"));
                let (value, got_origin) = get(&settings);
                let origin = if layer == 1 {
                    file_origin(&setup, 2)
                } else {
                    origin.clone()
                };
                assert_eq!(
                    (value.as_str(), &got_origin),
                    (want, &origin),
                    "{flag_name}, layer {layer}"
                );
            }
        }
    }

    #[test]
    fn credentials_come_from_the_flag_then_the_environment_then_the_file() {
        let setup = Setup::new(Some("credentials_file = \"file-creds\"\n"));
        setup.secret(
            "file-creds",
            "access_key_id = \"file-id\"\nsecret_access_key = \"file-secret\"\n",
            0o600,
        );
        let flag_creds = setup.secret(
            "flag-creds",
            "access_key_id = \"flag-id\"\nsecret_access_key = \"flag-secret\"\n",
            0o400,
        );
        let pair = |s: &Settings| {
            let c = s.credentials.as_ref().unwrap();
            (
                c.value.access_key_id.clone(),
                c.value.secret_access_key.clone(),
                c.origin.clone(),
            )
        };
        let from_file = setup.load(&[]).unwrap();
        assert_eq!(
            pair(&from_file),
            (
                "file-id".into(),
                "file-secret".into(),
                file_origin(&setup, 1)
            )
        );
        assert_eq!(
            from_file.s3_options().credentials,
            Some(("file-id".into(), "file-secret".into()))
        );

        let setup = setup
            .env(ACCESS_KEY_ID, "env-id")
            .env(SECRET_ACCESS_KEY, "env-secret");
        let from_env = setup.load(&[]).unwrap();
        assert_eq!(
            pair(&from_env),
            (
                "env-id".into(),
                "env-secret".into(),
                Origin::Env(SECRET_ACCESS_KEY)
            )
        );
        // The SDK reads its own variables (and AWS_SESSION_TOKEN with them).
        assert_eq!(from_env.s3_options().credentials, None);

        let flag = flag_creds.display().to_string();
        let from_flag = setup.load(&["--credentials-file", &flag]).unwrap();
        assert_eq!(
            pair(&from_flag),
            (
                "flag-id".into(),
                "flag-secret".into(),
                Origin::Flag("--credentials-file")
            )
        );

        // Without any, the SDK's profile files are left to decide.
        assert!(Setup::new(None).load(&[]).unwrap().credentials.is_none());
    }

    #[test]
    fn secret_files_readable_by_others_are_refused_with_the_fix() {
        let setup = Setup::new(Some("credentials_file = \"creds\"\n"));
        let creds = setup.secret(
            "creds",
            "access_key_id = \"id\"\nsecret_access_key = \"s3cr3t\"\n",
            0o640,
        );
        let err = setup.load(&[]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{}` holds a secret", creds.display()))
                && err.contains("mode 0640")
                && err.contains(&format!("chmod 600 {}", creds.display()))
                && err.starts_with(&format!("{}:1:20:", setup.path("agent.toml").display())),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");

        let setup = Setup::new(None).env(ACCESS_KEY_ID, "id");
        let secret = setup.secret("secret", "s3cr3t\n", 0o604);
        let setup = setup.env(SECRET_ACCESS_KEY_FILE, &secret.display().to_string());
        let err = setup.load(&[]).unwrap_err().to_string();
        assert!(
            err.starts_with("AWS_SECRET_ACCESS_KEY_FILE: ") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[test]
    fn file_variables_give_the_key_and_the_secret() {
        let setup = Setup::new(None);
        let id = setup.secret("id", "host-7\n", 0o600);
        let secret = setup.secret("secret", "  s3cr3t\n", 0o400);
        let setup = setup
            .env(ACCESS_KEY_ID_FILE, &id.display().to_string())
            .env(SECRET_ACCESS_KEY_FILE, &secret.display().to_string());
        let settings = setup.load(&[]).unwrap();
        let creds = settings.credentials.as_ref().unwrap();
        assert_eq!(creds.origin, Origin::Env(SECRET_ACCESS_KEY_FILE));
        // Passed to the SDK explicitly: it does not know the `_FILE` variables.
        assert_eq!(
            settings.s3_options().credentials,
            Some(("host-7".into(), "s3cr3t".into()))
        );
        let described = settings.describe();
        assert!(
            described.contains("secret_access_key = [redacted]") && !described.contains("s3cr3t"),
            "{described}"
        );
        assert!(!format!("{settings:?}").contains("s3cr3t"));

        let both = setup.env(SECRET_ACCESS_KEY, "other");
        assert_eq!(
            both.load(&[]).unwrap_err().to_string(),
            "both AWS_SECRET_ACCESS_KEY and AWS_SECRET_ACCESS_KEY_FILE are set: set one of them"
        );
        let half = Setup::new(None).env(ACCESS_KEY_ID, "id");
        assert!(
            half.load(&[])
                .unwrap_err()
                .to_string()
                .contains("set both halves")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_with_line_and_column() {
        let setup = Setup::new(Some("store = \"s3://b/p\"\n\n  intervall = \"5m\"\n"));
        let err = setup.load(&[]).unwrap_err().to_string();
        let file = setup.path("agent.toml").display().to_string();
        assert!(
            err.starts_with(&format!(
                "{file}:3:3: unknown key `intervall`, expected one of"
            )) && err.contains("`interval`"),
            "{err}"
        );
        for (text, want) in [
            (
                "max_log_mib = 1\n",
                ":1:15: invalid most MiB of log: 1 is outside 2 to 1048576",
            ),
            (
                "interval = \"soon\"\n",
                ":1:12: invalid interval: `soon` is not a duration",
            ),
            (
                "interval = 0\n",
                ":1:12: invalid interval: 0s is outside 1s to 24h",
            ),
            (
                "interval = true\n",
                ":1:12: expected seconds or a duration string",
            ),
            (
                "store = \"http://x\"\n",
                ":1:9: invalid store URL: `http://x` is not a store URL",
            ),
            (
                "log = \"loud\"\n",
                ":1:7: invalid log level: `loud` is not a log level",
            ),
            ("host_id = \"a b\"\n", ":1:11: invalid host ID"),
            (
                "jitter = \"1m\"\n",
                ":1:10: invalid jitter: 1m is more than the interval (30s, default)",
            ),
        ] {
            let setup = Setup::new(Some(text));
            let err = setup.load(&[]).unwrap_err().to_string();
            let file = setup.path("agent.toml").display().to_string();
            assert!(err.starts_with(&format!("{file}{want}")), "{text}: {err}");
        }
        let err = Setup::new(None)
            .env(env::INTERVAL, "5 parsecs")
            .load(&[])
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CATTLE_INTERVAL: invalid interval: `5 parsecs`"),
            "{err}"
        );
        let err = Setup::new(None).load(&["--max-log-mib", "1"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`--max-log-mib`: invalid most MiB"),
            "{err}"
        );
    }

    #[test]
    fn durations_are_seconds_or_humantime() {
        let secs = |t| parse_duration(t).map(|d| d.as_millis());
        assert_eq!(secs("30"), Ok(30_000));
        assert_eq!(secs("30s"), Ok(30_000));
        assert_eq!(secs("5m"), Ok(300_000));
        assert_eq!(secs("1h 30m"), Ok(5_400_000));
        assert_eq!(secs("250ms"), Ok(250));
        assert!(secs("").is_err());
        assert!(secs("-5").is_err());
        assert!(
            secs("5 minutes and a bit")
                .unwrap_err()
                .contains("write seconds (`30`)")
        );
        // `--interval` as it always was, and as a duration; the file takes integers too.
        let setup = Setup::new(Some("interval = 120\n"));
        assert_eq!(
            setup.load(&[]).unwrap().interval.value,
            Duration::from_secs(120)
        );
        assert_eq!(
            setup.load(&["--interval", "45"]).unwrap().interval.value,
            Duration::from_secs(45)
        );
        let settings = setup.load(&["--interval", "10m"]).unwrap();
        assert_eq!(settings.interval.value, Duration::from_secs(600));
        assert_eq!(
            settings.jitter.value,
            Duration::from_secs(60),
            "a tenth of the interval"
        );
    }

    #[test]
    fn the_config_file_is_optional_only_at_its_default_path() {
        let setup = Setup::new(None);
        let settings = setup.load(&[]).unwrap();
        assert!(settings.config_file.is_none());
        assert_eq!(settings.host_id.value.as_str(), "machine-name");

        let missing = setup.path("nowhere.toml").display().to_string();
        let err = setup.load(&["--config", &missing]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read config file `{missing}` (named by flag --config)"
            )),
            "{err}"
        );
        let err = Setup::new(None)
            .env(env::AGENT_CONFIG, &missing)
            .load(&[])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("(named by env CATTLE_AGENT_CONFIG)"),
            "{err}"
        );

        // Named explicitly, it is read instead of the default one; the flag wins over the variable.
        let setup = Setup::new(Some("host_id = \"default-file\"\n"));
        std::fs::write(setup.path("other.toml"), "host_id = \"other-file\"\n").unwrap();
        let other = setup.path("other.toml").display().to_string();
        let settings = setup.load(&["--config", &other]).unwrap();
        assert_eq!(settings.host_id.value.as_str(), "other-file");
        assert_eq!(
            settings.config_file.unwrap().origin,
            Origin::Flag("--config")
        );
        let setup = setup.env(env::AGENT_CONFIG, "/nonexistent/agent.toml");
        assert_eq!(
            setup
                .load(&["--config", &other])
                .unwrap()
                .host_id
                .value
                .as_str(),
            "other-file"
        );
    }

    #[test]
    fn paths_in_the_file_are_relative_to_its_directory() {
        let setup = Setup::new(Some(
            "state_dir = \"state\"\ntrusted_keys = [\"keys/a.pub\"]\nca_bundle = \"/abs/ca.pem\"\n",
        ));
        let settings = setup.load(&[]).unwrap();
        assert_eq!(settings.state_dir.value, setup.path("state"));
        assert_eq!(settings.trusted_keys.value, vec![setup.path("keys/a.pub")]);
        assert_eq!(
            settings.ca_bundle.unwrap().value,
            PathBuf::from("/abs/ca.pem")
        );
    }

    #[test]
    fn the_deploy_skeleton_documents_every_key_with_a_valid_example() {
        let skeleton = include_str!("../../../deploy/agent.toml");
        let uncommented: String = skeleton
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = parse_file(Path::new("deploy/agent.toml"), uncommented.clone())
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let keys = format!("{:?}", file.keys);
        assert!(
            !keys.contains(": None"),
            "a key is not in the skeleton: {keys}"
        );
        // The examples are valid values, not only known keys.
        let interval = file.keys.interval.unwrap().into_inner();
        assert_eq!(
            parse_duration(&file_duration(interval).unwrap()),
            Ok(crate::DEFAULT_INTERVAL)
        );
        assert!(StoreUrl::parse(file.keys.store.unwrap().get_ref()).is_ok());
        assert!(parse_level(file.keys.log.unwrap().into_inner()).is_ok());
    }
}

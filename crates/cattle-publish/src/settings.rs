//! `cattle`'s settings: the operator's config file, the environment and the
//! flags, each value with where it came from.
//!
//! Four layers, each overriding the one below it, key by key:
//!
//! 1. defaults (the embedded file store; the AWS SDK's profile files for
//!    credentials and region);
//! 2. the config file, `$XDG_CONFIG_HOME/cattle/config.toml`, else
//!    `~/.config/cattle/config.toml`, unless `--config FILE` or
//!    `CATTLE_CONFIG` names another (`deploy/cattle-config.toml` documents
//!    every key); a missing file at the default path means defaults, a missing
//!    file named explicitly is an error;
//! 3. environment variables (`CATTLE_STORE`, `CATTLE_CA_BUNDLE`,
//!    `CATTLE_SIGNING_KEY`, and the standard `AWS_*` ones for the endpoint,
//!    region and credentials);
//! 4. command-line flags.
//!
//! The config file can name stores, as `mc` names aliases: `[stores.prod]`
//! with a `url` and the `endpoint`, `region`, `credentials_file` and
//! `ca_bundle` to reach it. `--store prod` (or `CATTLE_STORE=prod`, or
//! `store = "prod"` in the file) picks one; a value with `://` is a URL. A
//! named store's keys stand in for the file's top-level ones, which apply to
//! every store (and to a store given as a URL); variables and flags still
//! override them. Without a config file, everything is as it was before the
//! file existed: the store from `--store` or `CATTLE_STORE`, the rest from
//! the AWS environment.
//!
//! The layers and what they are made of are shared with the agent
//! ([`cattle_core::settings`]): the same credentials file, refused when others
//! can read it, the same `PATH:LINE:COLUMN` errors, the same redacted table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cattle_core::env::{self, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3, AWS_REGION};
use cattle_core::settings::{
    self as shared, Candidate, ConfigFile, Env, Row, checked, env_path, from_env, from_flag, pick,
    read_credentials_file,
};
pub use cattle_core::settings::{Credentials, Origin, SettingsError, Sourced};
use cattle_core::store::{DEFAULT_STORE, S3Options, StoreUrl};
use serde::Deserialize;
use toml::Spanned;

/// Where every key of the config file is described.
pub const DOCUMENTED_IN: &str = "deploy/cattle-config.toml";
/// The config file's path under the user's config directory.
const CONFIG_FILE: &str = "cattle/config.toml";

/// The flags every `cattle` command takes; `None` when not given, so that the
/// layers below show through.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Store options (every command)")]
pub struct Flags {
    /// The config file (default `~/.config/cattle/config.toml`, or under
    /// `$XDG_CONFIG_HOME`; a missing default file is fine). Env CATTLE_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The store: a name from the config file's `[stores.NAME]`, or a URL,
    /// `s3://bucket/prefix` or `file:///path` (default `file:///var/lib/cattle/store`).
    /// Env CATTLE_STORE.
    #[arg(long, global = true, value_name = "NAME|URL")]
    pub store: Option<String>,

    /// The S3 endpoint, e.g. `https://minio.example.internal:9000` (default:
    /// AWS S3). Env AWS_ENDPOINT_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,

    /// The S3 region (default `us-east-1`, or the AWS profile's). Env AWS_REGION.
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// A file with `access_key_id = "…"` and `secret_access_key = "…"` (TOML), mode 0600.
    #[arg(long, global = true, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,

    /// PEM file of the CA certificate(s) to trust for HTTPS to the store,
    /// instead of the system's. Env CATTLE_CA_BUNDLE.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
}

/// Every setting of `cattle`, validated, each with its origin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file read, if any, and what named it.
    pub config_file: Option<Sourced<PathBuf>>,
    /// When no file was read: the default path, which does not exist (`None`
    /// without `HOME` and `XDG_CONFIG_HOME`).
    pub missing_default: Option<PathBuf>,
    /// The store's name, when it was picked by name from the file's stores.
    pub store_name: Option<Sourced<String>>,
    /// The store's URL: as given, or the named store's `url`.
    pub store: Sourced<StoreUrl>,
    pub endpoint: Option<Sourced<String>>,
    pub region: Option<Sourced<String>>,
    /// `None`: the AWS profile files (`AWS_PROFILE`, `~/.aws`), as the SDK finds them.
    pub credentials: Option<Sourced<Credentials>>,
    pub ca_bundle: Option<Sourced<PathBuf>>,
    /// `cattle publish`'s key when `--key` is not given: `CATTLE_SIGNING_KEY`
    /// or the file's `signing_key` (see [`Settings::signing_key`]).
    pub signing_key: Option<Sourced<PathBuf>>,
    /// The names of the stores the file defines, in order.
    pub store_names: Vec<String>,
}

/// What [`Settings::load`] reads besides the flags: the environment
/// ([`Inputs::system`] for the real one), which also locates the default file.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub env: Env,
}

impl Inputs {
    /// This process's environment.
    pub fn system() -> Inputs {
        Inputs {
            env: std::env::vars().collect(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        shared::var(&self.env, name)
    }

    /// The user's home directory, if `HOME` says.
    fn home(&self) -> Option<PathBuf> {
        self.var(env::HOME).map(PathBuf::from)
    }

    /// `$XDG_CONFIG_HOME/cattle/config.toml` (when that is an absolute path,
    /// as the XDG specification requires), else `$HOME/.config/cattle/config.toml`;
    /// `None` without either.
    pub fn default_config(&self) -> Option<PathBuf> {
        let xdg = self
            .var(env::XDG_CONFIG_HOME)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        xdg.or_else(|| self.home().map(|home| home.join(".config")))
            .map(|dir| dir.join(CONFIG_FILE))
    }
}

/// The config file's keys. Paths in it are relative to its directory, or to
/// the home directory when they start with `~/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    store: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    credentials_file: Option<Spanned<PathBuf>>,
    ca_bundle: Option<Spanned<PathBuf>>,
    signing_key: Option<Spanned<PathBuf>>,
    #[serde(default)]
    stores: BTreeMap<Spanned<String>, StoreKeys>,
}

/// The keys of one named store, `[stores.NAME]`: what it takes to reach it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreKeys {
    url: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    credentials_file: Option<Spanned<PathBuf>>,
    ca_bundle: Option<Spanned<PathBuf>>,
}

/// The config file, read.
type File = ConfigFile<FileSettings>;

/// Whether `value` names a store rather than giving its URL.
fn is_name(value: &str) -> bool {
    !value.contains("://")
}

/// A store name: what `--store` takes, so it has no `://` and needs no quoting.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a store name: letters, digits, `.`, `_` and `-`, starting with a \
             letter or digit"
        ))
    }
}

/// Everything in the file that does not depend on the other layers: store
/// names, store URLs and endpoints, and that the file's own `store` is a URL
/// or one of its names. A bad file is an error whichever store is used.
fn check_file(file: &File) -> Result<(), SettingsError> {
    let bad = |span: std::ops::Range<usize>, what: &str, message: String| {
        SettingsError(format!("{}: invalid {what}: {message}", file.at(span)))
    };
    for (name, keys) in &file.keys.stores {
        check_name(name.get_ref()).map_err(|m| bad(name.span(), "store name", m))?;
        StoreUrl::parse(keys.url.get_ref()).map_err(|m| bad(keys.url.span(), "store URL", m))?;
        if let Some(endpoint) = &keys.endpoint {
            shared::endpoint_url(endpoint.get_ref().clone())
                .map_err(|m| bad(endpoint.span(), "endpoint", m))?;
        }
    }
    if let Some(endpoint) = &file.keys.endpoint {
        shared::endpoint_url(endpoint.get_ref().clone())
            .map_err(|m| bad(endpoint.span(), "endpoint", m))?;
    }
    if let Some(store) = &file.keys.store {
        let value = store.get_ref();
        if !is_name(value) {
            StoreUrl::parse(value).map_err(|m| bad(store.span(), "store URL", m))?;
        } else if !file.keys.stores.contains_key(value.as_str()) {
            return Err(SettingsError(format!(
                "{}: unknown store `{value}`: {}",
                file.at(store.span()),
                defined_stores(file)
            )));
        }
    }
    Ok(())
}

/// What a file says of its stores, for an unknown name.
fn defined_stores(file: &File) -> String {
    if file.keys.stores.is_empty() {
        format!(
            "`{}` defines no stores (add a `[stores.NAME]` table with its `url`, or give a URL: \
             `s3://bucket/prefix` or `file:///absolute/path`)",
            file.path.display()
        )
    } else {
        format!(
            "`{}` defines {} (or give a URL: `s3://bucket/prefix` or `file:///absolute/path`)",
            file.path.display(),
            file.keys
                .stores
                .keys()
                .map(|n| format!("`{}`", n.get_ref()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Which config file to read, and whether it must exist; `None` when there
/// is no default path (no `HOME`, no `XDG_CONFIG_HOME`) and none is named.
fn config_path(flags: &Flags, inputs: &Inputs) -> (Option<Sourced<PathBuf>>, bool) {
    if let Some(path) = &flags.config {
        (
            Some(Sourced::new(path.clone(), Origin::Flag("--config"))),
            true,
        )
    } else if let Some(path) = inputs.var(env::CONFIG) {
        (
            Some(Sourced::new(PathBuf::from(path), Origin::Env(env::CONFIG))),
            true,
        )
    } else {
        (
            inputs
                .default_config()
                .map(|path| Sourced::new(path, Origin::Default)),
            false,
        )
    }
}

/// A path key of the file as a candidate: `~` and `~/…` are under the home
/// directory, other relative paths under the file's directory.
fn file_path(
    file: &File,
    value: Option<&Spanned<PathBuf>>,
    inputs: &Inputs,
) -> Result<Option<Candidate<PathBuf>>, SettingsError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let path = value.get_ref();
    let Ok(rest) = path.strip_prefix("~") else {
        if path.to_str().is_some_and(|p| p.starts_with('~')) {
            return Err(SettingsError(format!(
                "{}: `{}`: only `~/` (this user's home directory) is understood; write the \
                 path out",
                file.at(value.span()),
                path.display()
            )));
        }
        return Ok(file.path_candidate(Some(value)));
    };
    let home = inputs.home().ok_or_else(|| {
        SettingsError(format!(
            "{}: `{}` starts with `~`, but HOME is not set; write the path out",
            file.at(value.span()),
            path.display()
        ))
    })?;
    Ok(Some(Candidate {
        value: home.join(rest),
        origin: file.origin(value.span()),
        place: file.at(value.span()),
    }))
}

/// One of the keys a store may set: the named store's own, else the file's top-level one.
fn store_key<'a, T>(
    named: Option<&'a StoreKeys>,
    own: fn(&StoreKeys) -> &Option<Spanned<T>>,
    top: &'a Option<Spanned<T>>,
) -> Option<&'a Spanned<T>> {
    named.and_then(|s| own(s).as_ref()).or(top.as_ref())
}

impl Settings {
    /// Decide every setting from the flags, the environment, the config file
    /// and the defaults (see the module's documentation for the order).
    pub fn load(flags: &Flags, inputs: &Inputs) -> Result<Settings, SettingsError> {
        let (config_path, required) = config_path(flags, inputs);
        let file = match &config_path {
            Some(path) => File::read(path, required, DOCUMENTED_IN)?,
            None => None,
        };
        if let Some(file) = &file {
            check_file(file)?;
        }
        let f = file.as_ref();
        let config_file = f.map(|f| {
            Sourced::new(
                f.path.clone(),
                config_path
                    .as_ref()
                    .map_or(Origin::Default, |p| p.origin.clone()),
            )
        });
        let missing_default = match (&config_file, &config_path) {
            (None, Some(path)) => Some(path.value.clone()),
            _ => None,
        };

        // The store as asked for: a URL, or the name of one of the file's stores.
        let asked = pick(
            from_flag(flags.store.clone(), "--store"),
            from_env(&inputs.env, env::STORE),
            f.and_then(|f| f.candidate(f.keys.store.as_ref())),
        );
        let (store_name, store, named) = match asked {
            None => (
                None,
                Sourced::new(
                    StoreUrl::parse(DEFAULT_STORE).expect("the default store URL parses"),
                    Origin::Default,
                ),
                None,
            ),
            Some(c) if !is_name(&c.value) => (
                None,
                checked(c, "store URL", |v| StoreUrl::parse(&v))?,
                None,
            ),
            Some(c) => {
                let Some((f, keys)) =
                    f.and_then(|f| f.keys.stores.get(c.value.as_str()).map(|k| (f, k)))
                else {
                    let whence = match (f, &missing_default) {
                        (Some(f), _) => defined_stores(f),
                        (None, Some(path)) => format!(
                            "no config file defines it (`{}` does not exist); give a URL \
                             (`s3://bucket/prefix` or `file:///absolute/path`) or define \
                             `[stores.{}]` there",
                            path.display(),
                            c.value
                        ),
                        (None, None) => format!(
                            "no config file defines it (neither {} nor {} is set to locate one); \
                             give a URL (`s3://bucket/prefix` or `file:///absolute/path`)",
                            env::XDG_CONFIG_HOME,
                            env::HOME
                        ),
                    };
                    return Err(SettingsError(format!(
                        "{}: unknown store `{}`: {whence}",
                        c.place, c.value
                    )));
                };
                let url = f
                    .candidate(Some(&keys.url))
                    .expect("a store has a url")
                    .map(|v| StoreUrl::parse(&v).expect("store URLs were checked"))
                    .sourced();
                (Some(c.sourced()), url, Some(keys))
            }
        };
        let top = f.map(|f| &f.keys);
        let from_file =
            |own: fn(&StoreKeys) -> &Option<Spanned<String>>,
             top_key: fn(&FileSettings) -> &Option<Spanned<String>>| {
                let (f, top) = (f?, top?);
                f.candidate(store_key(named, own, top_key(top)))
            };
        let path_from_file = |own: fn(&StoreKeys) -> &Option<Spanned<PathBuf>>,
                              top_key: fn(&FileSettings) -> &Option<Spanned<PathBuf>>|
         -> Result<Option<Candidate<PathBuf>>, SettingsError> {
            match (f, top) {
                (Some(f), Some(top)) => file_path(f, store_key(named, own, top_key(top)), inputs),
                _ => Ok(None),
            }
        };

        let endpoint = pick(
            from_flag(flags.endpoint.clone(), "--endpoint"),
            from_env(&inputs.env, env::AWS_ENDPOINT_URL)
                .or_else(|| from_env(&inputs.env, AWS_ENDPOINT_URL_S3)),
            from_file(|s| &s.endpoint, |t| &t.endpoint),
        )
        .map(|c| checked(c, "endpoint", shared::endpoint_url))
        .transpose()?;

        let region = pick(
            from_flag(flags.region.clone(), "--region"),
            from_env(&inputs.env, AWS_REGION).or_else(|| from_env(&inputs.env, AWS_DEFAULT_REGION)),
            from_file(|s| &s.region, |t| &t.region),
        )
        .map(Candidate::sourced);

        let credentials = match flags.credentials_file.as_ref() {
            Some(path) => Some(Sourced::new(
                read_credentials_file(path, "--credentials-file")?,
                Origin::Flag("--credentials-file"),
            )),
            None => match shared::env_credentials(&inputs.env)? {
                Some(credentials) => Some(credentials),
                None => match path_from_file(|s| &s.credentials_file, |t| &t.credentials_file)? {
                    Some(c) => Some(Sourced::new(
                        read_credentials_file(&c.value, &c.place)?,
                        c.origin,
                    )),
                    None => None,
                },
            },
        };

        let ca_bundle = pick(
            from_flag(flags.ca_bundle.clone(), "--ca-bundle"),
            env_path(&inputs.env, env::CA_BUNDLE),
            path_from_file(|s| &s.ca_bundle, |t| &t.ca_bundle)?,
        )
        .map(Candidate::sourced);

        let signing_key = pick(
            None,
            env_path(&inputs.env, env::SIGNING_KEY),
            match f {
                Some(f) => file_path(f, f.keys.signing_key.as_ref(), inputs)?,
                None => None,
            },
        )
        .map(Candidate::sourced);

        Ok(Settings {
            config_file,
            missing_default,
            store_name,
            store,
            endpoint,
            region,
            credentials,
            ca_bundle,
            signing_key,
            store_names: f.map_or_else(Vec::new, |f| {
                f.keys.stores.keys().map(|n| n.get_ref().clone()).collect()
            }),
        })
    }

    /// The key that signs what `cattle publish` uploads: `--key` (`flag`),
    /// else `CATTLE_SIGNING_KEY`, else the file's `signing_key`.
    pub fn signing_key(&self, flag: Option<PathBuf>) -> Option<Sourced<PathBuf>> {
        flag.map(|path| Sourced::new(path, Origin::Flag("--key")))
            .or_else(|| self.signing_key.clone())
    }

    /// How to reach the store: these settings over what the environment says
    /// of path-style requests and the instance metadata service.
    pub fn s3_options(&self) -> S3Options {
        let mut options = S3Options::from_env();
        options.endpoint = self.endpoint.as_ref().map(|e| e.value.clone());
        options.region = self.region.as_ref().map(|r| r.value.clone());
        options.credentials = self.credentials.as_ref().and_then(|c| c.value.for_sdk());
        options.ca_bundle = self.ca_bundle.as_ref().map(|c| c.value.clone());
        options
    }

    /// The effective settings as `key = value  # origin` lines, secrets
    /// shown as `[redacted]`: what `cattle config` prints.
    pub fn describe(&self) -> String {
        let mut rows: Vec<Row> = Vec::new();
        let mut row =
            |key: &str, value: String, origin: String| rows.push((key.to_string(), value, origin));
        let quoted = |s: &str| format!("{s:?}");
        let path = |p: &Path| quoted(&p.display().to_string());
        let unset = |what: &str| format!("(unset: {what})");
        let default = || "default".to_string();
        match (&self.config_file, &self.missing_default) {
            (Some(c), _) => row("config file", path(&c.value), c.origin.to_string()),
            (None, Some(p)) => row(
                "config file",
                unset(&format!("`{}` does not exist", p.display())),
                String::new(),
            ),
            (None, None) => row(
                "config file",
                unset(&format!(
                    "neither {} nor {} is set",
                    env::XDG_CONFIG_HOME,
                    env::HOME
                )),
                String::new(),
            ),
        }
        match &self.store_name {
            Some(name) => {
                row("store", quoted(&name.value), name.origin.to_string());
                row(
                    &format!("stores.{}.url", name.value),
                    quoted(&self.store.value.to_string()),
                    self.store.origin.to_string(),
                );
            }
            None => row(
                "store",
                quoted(&self.store.value.to_string()),
                self.store.origin.to_string(),
            ),
        }
        match &self.endpoint {
            Some(e) => row("endpoint", quoted(&e.value), e.origin.to_string()),
            None => row("endpoint", unset("AWS S3"), default()),
        }
        match &self.region {
            Some(r) => row("region", quoted(&r.value), r.origin.to_string()),
            None => row(
                "region",
                unset("the AWS profile's, else us-east-1"),
                default(),
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
                default(),
            ),
        }
        match &self.ca_bundle {
            Some(c) => row("ca_bundle", path(&c.value), c.origin.to_string()),
            None => row("ca_bundle", unset("the system's root CAs"), default()),
        }
        match &self.signing_key {
            Some(k) => row("signing_key", path(&k.value), k.origin.to_string()),
            None => row(
                "signing_key",
                unset("`cattle publish` needs `--key` or `--unsigned`"),
                default(),
            ),
        }
        if let Some(file) = &self.config_file
            && !self.store_names.is_empty()
        {
            row(
                "stores",
                format!(
                    "[{}]",
                    self.store_names
                        .iter()
                        .map(|n| quoted(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("file {}", file.value.display()),
            );
        }
        shared::describe(&rows)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestArgs {
        #[command(flatten)]
        flags: Flags,
    }

    /// A home directory with, when given, the default config file in it.
    struct Setup {
        home: tempfile::TempDir,
        env: Env,
    }

    impl Setup {
        fn new(file: Option<&str>) -> Setup {
            let home = tempfile::tempdir().unwrap();
            let setup = Setup {
                env: [(env::HOME.to_string(), home.path().display().to_string())].into(),
                home,
            };
            if let Some(text) = file {
                std::fs::create_dir_all(setup.config().parent().unwrap()).unwrap();
                std::fs::write(setup.config(), text).unwrap();
            }
            setup
        }

        fn env(mut self, name: &str, value: &str) -> Setup {
            self.env.insert(name.to_string(), value.to_string());
            self
        }

        fn path(&self, name: &str) -> PathBuf {
            self.home.path().join(name)
        }

        /// The default config file.
        fn config(&self) -> PathBuf {
            self.path(".config/cattle/config.toml")
        }

        /// A file `name` (under the home directory) with `text` and `mode`.
        fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let path = self.path(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }

        fn credentials(&self, name: &str, id: &str, mode: u32) -> PathBuf {
            self.file(
                name,
                &format!("access_key_id = \"{id}\"\nsecret_access_key = \"{id}-s3cr3t\"\n"),
                mode,
            )
        }

        fn load(&self, args: &[&str]) -> Result<Settings, SettingsError> {
            let flags =
                TestArgs::try_parse_from(std::iter::once("cattle").chain(args.iter().copied()))
                    .unwrap()
                    .flags;
            Settings::load(
                &flags,
                &Inputs {
                    env: self.env.clone(),
                },
            )
        }

        fn err(&self, args: &[&str]) -> String {
            self.load(args).unwrap_err().to_string()
        }

        fn at(&self, line: usize) -> Origin {
            Origin::File {
                path: self.config(),
                line,
            }
        }
    }

    fn access_key(s: &Settings) -> Option<(&str, &Origin)> {
        s.credentials
            .as_ref()
            .map(|c| (c.value.access_key_id.as_str(), &c.origin))
    }

    #[test]
    fn without_a_config_file_the_store_and_the_aws_variables_decide_as_before() {
        let setup = Setup::new(None);
        let settings = setup.load(&[]).unwrap();
        assert!(settings.config_file.is_none());
        assert_eq!(settings.missing_default, Some(setup.config()));
        assert_eq!(settings.store.value.to_string(), DEFAULT_STORE);
        assert_eq!(settings.store.origin, Origin::Default);
        assert!(settings.endpoint.is_none() && settings.region.is_none());
        assert!(settings.credentials.is_none() && settings.signing_key.is_none());

        let setup = setup
            .env(env::STORE, "s3://env-bucket/p")
            .env(env::AWS_ENDPOINT_URL, "http://127.0.0.1:9000")
            .env(env::AWS_ACCESS_KEY_ID, "id")
            .env(env::AWS_SECRET_ACCESS_KEY, "s3cr3t")
            .env(env::SIGNING_KEY, "/keys/publisher.key");
        let settings = setup.load(&[]).unwrap();
        assert_eq!(settings.store.value.to_string(), "s3://env-bucket/p/");
        assert_eq!(settings.store.origin, Origin::Env(env::STORE));
        assert_eq!(
            settings.s3_options().endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        // The SDK reads its own variables, with AWS_SESSION_TOKEN, as it always did.
        assert_eq!(settings.s3_options().credentials, None);
        assert_eq!(
            settings.signing_key(None).unwrap(),
            Sourced::new(
                PathBuf::from("/keys/publisher.key"),
                Origin::Env(env::SIGNING_KEY)
            )
        );
        assert_eq!(
            settings.signing_key(Some("k.key".into())).unwrap().origin,
            Origin::Flag("--key")
        );
        let settings = setup.load(&["--store", "file:///flag/store"]).unwrap();
        assert_eq!(settings.store.origin, Origin::Flag("--store"));
        // A URL that is not one is refused as before, naming where it came from.
        let err = setup.err(&["--store", "http://x"]);
        assert!(
            err.starts_with("`--store`: invalid store URL: `http://x` is not a store URL"),
            "{err}"
        );
    }

    #[test]
    fn each_layer_overrides_the_one_below_it_key_by_key() {
        let setup = Setup::new(Some(
            "# the operator's file\n\
             store = \"s3://file-bucket/p\"\n\
             endpoint = \"http://file:9000\"\n\
             region = \"file-1\"\n\
             ca_bundle = \"/file/ca.pem\"\n\
             signing_key = \"/file/publisher.key\"\n",
        ));
        let shown = |s: &Settings| {
            [
                (s.store.value.to_string(), s.store.origin.clone()),
                {
                    let e = s.endpoint.clone().unwrap();
                    (e.value, e.origin)
                },
                {
                    let r = s.region.clone().unwrap();
                    (r.value, r.origin)
                },
                {
                    let c = s.ca_bundle.clone().unwrap();
                    (c.value.display().to_string(), c.origin)
                },
            ]
        };
        let file = setup.load(&[]).unwrap();
        assert_eq!(
            shown(&file),
            [
                ("s3://file-bucket/p/".into(), setup.at(2)),
                ("http://file:9000".into(), setup.at(3)),
                ("file-1".into(), setup.at(4)),
                ("/file/ca.pem".into(), setup.at(5)),
            ]
        );
        assert_eq!(file.signing_key.unwrap().origin, setup.at(6));

        let setup = setup
            .env(env::STORE, "s3://env-bucket/p")
            .env(env::AWS_ENDPOINT_URL, "http://env:9000")
            .env(env::AWS_REGION, "env-1")
            .env(env::CA_BUNDLE, "/env/ca.pem")
            .env(env::SIGNING_KEY, "/env/publisher.key");
        let from_env = setup.load(&[]).unwrap();
        assert_eq!(
            shown(&from_env),
            [
                ("s3://env-bucket/p/".into(), Origin::Env(env::STORE)),
                ("http://env:9000".into(), Origin::Env(env::AWS_ENDPOINT_URL)),
                ("env-1".into(), Origin::Env(env::AWS_REGION)),
                ("/env/ca.pem".into(), Origin::Env(env::CA_BUNDLE)),
            ]
        );
        assert_eq!(
            from_env.signing_key.unwrap().origin,
            Origin::Env(env::SIGNING_KEY)
        );

        let from_flags = setup
            .load(&[
                "--store",
                "file:///flag/store",
                "--endpoint",
                "https://flag:9000",
                "--region",
                "flag-1",
                "--ca-bundle",
                "/flag/ca.pem",
            ])
            .unwrap();
        assert_eq!(
            shown(&from_flags),
            [
                ("file:///flag/store".into(), Origin::Flag("--store")),
                ("https://flag:9000".into(), Origin::Flag("--endpoint")),
                ("flag-1".into(), Origin::Flag("--region")),
                ("/flag/ca.pem".into(), Origin::Flag("--ca-bundle")),
            ]
        );
    }

    #[test]
    fn credentials_come_from_the_flag_then_the_environment_then_the_file() {
        let setup = Setup::new(Some("credentials_file = \"file.credentials\"\n"));
        setup.credentials(".config/cattle/file.credentials", "file-id", 0o600);
        let flag = setup.credentials("flag.credentials", "flag-id", 0o400);
        let file = setup.load(&[]).unwrap();
        assert_eq!(access_key(&file), Some(("file-id", &setup.at(1))));
        // Handed to the SDK explicitly: it does not read the file itself.
        assert_eq!(
            file.s3_options().credentials,
            Some(("file-id".into(), "file-id-s3cr3t".into()))
        );

        let setup = setup
            .env(env::AWS_ACCESS_KEY_ID, "env-id")
            .env(env::AWS_SECRET_ACCESS_KEY, "env-secret");
        let from_env = setup.load(&[]).unwrap();
        assert_eq!(
            access_key(&from_env),
            Some(("env-id", &Origin::Env(env::AWS_SECRET_ACCESS_KEY)))
        );
        let from_flag = setup
            .load(&["--credentials-file", &flag.display().to_string()])
            .unwrap();
        assert_eq!(
            access_key(&from_flag),
            Some(("flag-id", &Origin::Flag("--credentials-file")))
        );
        let described = from_flag.describe();
        assert!(
            described.contains("secret_access_key = [redacted]") && !described.contains("s3cr3t"),
            "{described}"
        );
        assert!(!format!("{from_flag:?}").contains("s3cr3t"));
    }

    const STORES: &str = "store = \"prod\"\n\
        endpoint = \"http://top:9000\"\n\
        region = \"top-1\"\n\
        credentials_file = \"~/top.credentials\"\n\
        \n\
        [stores.prod]\n\
        url = \"s3://cattle/prod\"\n\
        endpoint = \"https://prod:9000\"\n\
        credentials_file = \"~/.config/cattle/prod.credentials\"\n\
        ca_bundle = \"private-ca.pem\"\n\
        \n\
        [stores.lab]\n\
        url = \"file:///srv/cattle\"\n";

    fn stores_setup() -> Setup {
        let setup = Setup::new(Some(STORES));
        setup.credentials("top.credentials", "top-id", 0o600);
        setup.credentials(".config/cattle/prod.credentials", "prod-id", 0o600);
        setup
    }

    #[test]
    fn a_named_store_brings_its_own_keys_over_the_files_top_level_ones() {
        let setup = stores_setup();
        let prod = setup.load(&[]).unwrap();
        assert_eq!(
            prod.store_name,
            Some(Sourced::new("prod".to_string(), setup.at(1)))
        );
        assert_eq!(prod.store.value.to_string(), "s3://cattle/prod/");
        assert_eq!(prod.store.origin, setup.at(7));
        assert_eq!(prod.endpoint.clone().unwrap().value, "https://prod:9000");
        assert_eq!(prod.endpoint.clone().unwrap().origin, setup.at(8));
        // Not set for the store: the file's top-level key applies.
        assert_eq!(
            prod.region.clone().unwrap(),
            Sourced::new("top-1".into(), setup.at(3))
        );
        // `~/` is the home directory; other relative paths, the file's directory.
        assert_eq!(access_key(&prod), Some(("prod-id", &setup.at(9))));
        assert_eq!(
            prod.ca_bundle.clone().unwrap().value,
            setup.path(".config/cattle/private-ca.pem")
        );
        assert_eq!(prod.store_names, ["lab", "prod"]);

        // Another name, by flag or variable: that store, with the top-level keys.
        for (args, var, origin) in [
            (&["--store", "lab"][..], None, Origin::Flag("--store")),
            (&[][..], Some("lab"), Origin::Env(env::STORE)),
        ] {
            let setup = match var {
                Some(v) => stores_setup().env(env::STORE, v),
                None => stores_setup(),
            };
            let lab = setup.load(args).unwrap();
            assert_eq!(lab.store_name, Some(Sourced::new("lab".into(), origin)));
            assert_eq!(lab.store.value.to_string(), "file:///srv/cattle");
            assert_eq!(lab.endpoint.as_ref().unwrap().origin, setup.at(2));
            assert_eq!(access_key(&lab), Some(("top-id", &setup.at(4))));
            assert!(lab.ca_bundle.is_none());
        }

        // A URL: none of the named stores' keys, only the top-level ones.
        let url = setup.load(&["--store", "s3://other/x"]).unwrap();
        assert_eq!(url.store_name, None);
        assert_eq!(url.endpoint.as_ref().unwrap().value, "http://top:9000");
        assert_eq!(access_key(&url).unwrap().0, "top-id");

        // The environment and flags still override a named store's keys.
        let setup = stores_setup().env(env::AWS_ENDPOINT_URL, "http://env:9000");
        let prod = setup.load(&["--region", "flag-1"]).unwrap();
        assert_eq!(
            prod.endpoint.unwrap().origin,
            Origin::Env(env::AWS_ENDPOINT_URL)
        );
        assert_eq!(prod.region.unwrap().origin, Origin::Flag("--region"));

        let described = setup.load(&[]).unwrap().describe();
        let config = setup.config().display().to_string();
        for want in [
            format!("# file {config}:1"),
            "stores.prod.url   = \"s3://cattle/prod/\"".to_string(),
            format!("# file {config}:7"),
            "access_key_id     = \"prod-id\"".to_string(),
            "secret_access_key = [redacted]".to_string(),
        ] {
            assert!(described.contains(&want), "{want}\n{described}");
        }
        let stores = described.lines().last().unwrap();
        assert!(
            stores.starts_with("stores            = [\"lab\", \"prod\"]  ")
                && stores.ends_with(&format!("  # file {config}")),
            "{described}"
        );
        assert!(!described.contains("s3cr3t"), "{described}");
    }

    #[test]
    fn an_unknown_store_name_lists_the_names_the_file_defines() {
        let setup = stores_setup();
        let config = setup.config().display().to_string();
        let err = setup.err(&["--store", "staging"]);
        assert_eq!(
            err,
            format!(
                "`--store`: unknown store `staging`: `{config}` defines `lab`, `prod` (or give a \
                 URL: `s3://bucket/prefix` or `file:///absolute/path`)"
            )
        );
        let err = stores_setup().env(env::STORE, "prdo").err(&[]);
        assert!(
            err.starts_with("CATTLE_STORE: unknown store `prdo`: "),
            "{err}"
        );
        // The file's own `store` must be one of its names, whatever overrides it.
        let setup = Setup::new(Some(
            "\nstore = \"prdo\"\n[stores.prod]\nurl = \"file:///p\"\n",
        ));
        let err = setup.err(&["--store", "file:///elsewhere"]);
        assert!(
            err.starts_with(&format!(
                "{}:2:9: unknown store `prdo`: `{}` defines `prod`",
                setup.config().display(),
                setup.config().display()
            )),
            "{err}"
        );
        // No stores, no file.
        let err = Setup::new(Some("region = \"r\"\n")).err(&["--store", "prod"]);
        assert!(err.contains("defines no stores"), "{err}");
        let setup = Setup::new(None);
        let err = setup.err(&["--store", "prod"]);
        assert_eq!(
            err,
            format!(
                "`--store`: unknown store `prod`: no config file defines it (`{}` does not \
                 exist); give a URL (`s3://bucket/prefix` or `file:///absolute/path`) or define \
                 `[stores.prod]` there",
                setup.config().display()
            )
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_with_line_and_column() {
        for (text, want) in [
            (
                "store = \"s3://b/p\"\n\n  stor = \"x\"\n",
                ":3:3: unknown key `stor`, expected one of",
            ),
            (
                "[stores.prod]\nurl = \"file:///p\"\nendpiont = \"http://x\"\n",
                ":3:1: unknown key `endpiont`, expected one of `url`, `endpoint`",
            ),
            (
                "[stores.prod]\nendpoint = \"http://x\"\n",
                ":1:1: missing key `url`",
            ),
            (
                "[stores.prod]\nurl = \"s3://Bad_Bucket/p\"\n",
                ":2:7: invalid store URL: `Bad_Bucket` is not a valid bucket name",
            ),
            (
                "[stores.\"my store\"]\nurl = \"file:///p\"\n",
                ":1:9: invalid store name: `my store` is not a store name",
            ),
            (
                "[stores.prod]\nurl = \"file:///p\"\nendpoint = \"minio:9000\"\n",
                ":3:12: invalid endpoint: `minio:9000` is not an http:// or https:// URL",
            ),
            (
                "store = \"file://relative\"\n",
                ":1:9: invalid store URL: `file://relative` is not an absolute file URL",
            ),
            (
                "signing_key = \"~admin/publisher.key\"\n",
                ":1:15: `~admin/publisher.key`: only `~/` (this user's home directory) is understood",
            ),
            (
                "region = 3\n",
                ":1:10: invalid type: integer `3`, expected a string",
            ),
        ] {
            let setup = Setup::new(Some(text));
            let err = setup.err(&[]);
            let config = setup.config().display().to_string();
            assert!(err.starts_with(&format!("{config}{want}")), "{text}: {err}");
        }
        let err = Setup::new(Some("stor = \"x\"\n")).err(&[]);
        assert!(
            err.ends_with("(every key is described in deploy/cattle-config.toml)"),
            "{err}"
        );
    }

    #[test]
    fn credentials_files_readable_by_others_are_refused_with_the_fix() {
        let setup = Setup::new(Some(
            "[stores.prod]\nurl = \"s3://cattle/prod\"\ncredentials_file = \"~/prod.credentials\"\n",
        ));
        let creds = setup.credentials("prod.credentials", "prod-id", 0o644);
        let err = setup.err(&["--store", "prod"]);
        assert_eq!(
            err,
            format!(
                "{}:3:20: `{}` holds a secret but its group or other users can read it (mode \
                 0644); run `chmod 600 {}`",
                setup.config().display(),
                creds.display(),
                creds.display()
            )
        );
        assert!(!err.contains("s3cr3t"));
        // Unused, it is not read.
        assert!(setup.load(&[]).unwrap().credentials.is_none());
        // Nor from the flag or the `_FILE` variables.
        let flag = setup.credentials("flag.credentials", "flag-id", 0o640);
        let err = setup.err(&["--credentials-file", &flag.display().to_string()]);
        assert!(
            err.starts_with("--credentials-file: ") && err.contains("chmod 600"),
            "{err}"
        );
        let setup = Setup::new(None);
        let id = setup.file("id", "id\n", 0o600);
        let secret = setup.file("secret", "s3cr3t\n", 0o604);
        let setup = setup
            .env(env::AWS_ACCESS_KEY_ID_FILE, &id.display().to_string())
            .env(
                env::AWS_SECRET_ACCESS_KEY_FILE,
                &secret.display().to_string(),
            );
        let err = setup.err(&[]);
        assert!(
            err.starts_with("AWS_SECRET_ACCESS_KEY_FILE: ") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[test]
    fn the_file_is_found_under_xdg_config_home_else_home_and_is_optional_only_there() {
        let setup = Setup::new(Some("region = \"home\"\n"));
        let xdg = setup.path("xdg");
        std::fs::create_dir_all(xdg.join("cattle")).unwrap();
        std::fs::write(xdg.join("cattle/config.toml"), "region = \"xdg\"\n").unwrap();
        let region = |s: &Setup, args: &[&str]| s.load(args).unwrap().region.map(|r| r.value);
        assert_eq!(region(&setup, &[]).as_deref(), Some("home"));
        let setup = setup.env(env::XDG_CONFIG_HOME, &xdg.display().to_string());
        assert_eq!(region(&setup, &[]).as_deref(), Some("xdg"));
        // A relative XDG_CONFIG_HOME is ignored, as the specification says.
        let setup = setup.env(env::XDG_CONFIG_HOME, "relative/dir");
        assert_eq!(region(&setup, &[]).as_deref(), Some("home"));
        // Without HOME or XDG_CONFIG_HOME: no file, no error.
        let none = Setup::new(None);
        let settings = Settings::load(&Flags::default(), &Inputs::default()).unwrap();
        assert!(settings.config_file.is_none() && settings.missing_default.is_none());
        assert!(
            settings
                .describe()
                .starts_with("config file = (unset: neither XDG_CONFIG_HOME nor HOME is set)\n"),
            "{}",
            settings.describe()
        );

        // Named explicitly, it must exist; the flag wins over the variable.
        let missing = none.path("nowhere.toml").display().to_string();
        let err = none.err(&["--config", &missing]);
        assert!(
            err.starts_with(&format!(
                "cannot read config file `{missing}` (named by flag --config)"
            )),
            "{err}"
        );
        let err = Setup::new(None).env(env::CONFIG, &missing).err(&[]);
        assert!(err.contains("(named by env CATTLE_CONFIG)"), "{err}");
        let other = setup.file("other.toml", "region = \"other\"\n", 0o644);
        let other = other.display().to_string();
        let setup = setup.env(env::CONFIG, &missing);
        assert_eq!(
            region(&setup, &["--config", &other]).as_deref(),
            Some("other")
        );
        let settings = setup.load(&["--config", &other]).unwrap();
        assert_eq!(
            settings.config_file.unwrap().origin,
            Origin::Flag("--config")
        );
    }

    #[test]
    fn the_deploy_example_documents_every_key_with_a_valid_value() {
        let example = include_str!("../../../deploy/cattle-config.toml");
        // Commented-out keys and tables (`#key = …`, `#[stores.…]`); prose has a space after `#`.
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| {
                l.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '[')
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let setup = Setup::new(Some(&uncommented));
        let file = File::parse(&setup.config(), uncommented.clone(), DOCUMENTED_IN)
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        check_file(&file).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let stores: Vec<String> = file
            .keys
            .stores
            .values()
            .map(|s| format!("{s:?}"))
            .collect();
        assert!(
            stores.iter().any(|s| !s.contains(": None")),
            "no store in the example sets every key a store may have: {stores:?}"
        );
        let top = format!(
            "{:?}",
            FileSettings {
                stores: BTreeMap::new(),
                ..file.keys
            }
        );
        assert!(
            !top.contains(": None"),
            "a key is not in the example: {top}"
        );
    }
}

//! What the settings of `cattle` and `cattle-agent` are made of.
//!
//! Both programs decide each setting from layers, each overriding the one below
//! it key by key: defaults < a TOML config file < environment variables <
//! flags. Each keeps its own keys, defaults and checks; this module is what
//! they share, so that they name places, treat secrets and print their
//! effective settings the same way:
//!
//! - a value and where it came from ([`Sourced`], [`Origin`]), and the
//!   candidates of one setting from each layer ([`Candidate`], [`pick`]);
//! - a config file whose values know their line and column ([`ConfigFile`]):
//!   an unknown key or a bad value is an error naming `PATH:LINE:COLUMN`;
//! - S3 credentials, read only from files no one but their owner can read
//!   ([`read_credentials_file`], [`env_credentials`]), never shown
//!   ([`Credentials`] redacts its secret);
//! - the `key = value  # origin` table both programs print ([`describe`]).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

/// The environment variables, by name (the process's, or a test's).
pub type Env = BTreeMap<String, String>;

/// A variable's value; empty counts as unset.
pub fn var<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// The config file, and the line of the value in it.
    File {
        path: PathBuf,
        line: usize,
    },
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag, e.g. `--store`.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    pub fn new(value: T, origin: Origin) -> Sourced<T> {
        Sourced { value, origin }
    }
}

/// A setting that cannot be used: the message names the file and
/// line:column, the variable or the flag, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// One setting's candidate from one layer: its raw value, where it came from,
/// and how to name that place in an error.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    pub value: T,
    pub origin: Origin,
    /// `PATH:LINE:COLUMN`, `CATTLE_STORE` or `` `--store` ``.
    pub place: String,
}

impl<T> Candidate<T> {
    /// The same candidate with its value changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Candidate<U> {
        Candidate {
            value: f(self.value),
            origin: self.origin,
            place: self.place,
        }
    }

    /// The value and its origin, taken as they are.
    pub fn sourced(self) -> Sourced<T> {
        Sourced::new(self.value, self.origin)
    }
}

/// The topmost layer that gives a value: flag, else environment, else file.
pub fn pick<T>(
    flag: Option<Candidate<T>>,
    env: Option<Candidate<T>>,
    file: Option<Candidate<T>>,
) -> Option<Candidate<T>> {
    flag.or(env).or(file)
}

/// A flag's value, if it was given.
pub fn from_flag<T>(value: Option<T>, name: &'static str) -> Option<Candidate<T>> {
    value.map(|value| Candidate {
        value,
        origin: Origin::Flag(name),
        place: format!("`{name}`"),
    })
}

/// A variable's value, if it is set and not empty.
pub fn from_env(env: &Env, name: &'static str) -> Option<Candidate<String>> {
    var(env, name).map(|value| Candidate {
        value: value.to_string(),
        origin: Origin::Env(name),
        place: name.to_string(),
    })
}

/// A variable holding a path, if it is set and not empty.
pub fn env_path(env: &Env, name: &'static str) -> Option<Candidate<PathBuf>> {
    from_env(env, name).map(|c| c.map(PathBuf::from))
}

/// Check a candidate's value with `check`, naming its place on failure.
pub fn checked<T, U>(
    candidate: Candidate<T>,
    what: &str,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<Sourced<U>, SettingsError> {
    let Candidate {
        value,
        origin,
        place,
    } = candidate;
    check(value)
        .map(|value| Sourced::new(value, origin))
        .map_err(|message| SettingsError(format!("{place}: invalid {what}: {message}")))
}

/// An S3 endpoint as settings take it: an `http://` or `https://` URL.
pub fn endpoint_url(value: String) -> Result<String, String> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value)
    } else {
        Err(format!("`{value}` is not an http:// or https:// URL"))
    }
}

/// The 1-based line and column of byte `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A config file, read: its keys `K` (values wrapped in [`Spanned`] where
/// their place matters), and how to point at them.
#[derive(Debug)]
pub struct ConfigFile<K> {
    /// Absolute, so that the paths in it can be relative to its directory.
    pub path: PathBuf,
    pub source: String,
    pub keys: K,
}

impl<K> ConfigFile<K> {
    /// The origin of the value at `span`: this file and its line.
    pub fn origin(&self, span: Range<usize>) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line: line_column(&self.source, span.start).0,
        }
    }

    /// `PATH:LINE:COLUMN` of a span, for errors.
    pub fn at(&self, span: Range<usize>) -> String {
        let (line, column) = line_column(&self.source, span.start);
        format!("{}:{line}:{column}", self.path.display())
    }

    /// A path from the file, relative to the file's directory.
    pub fn path_value(&self, value: &Spanned<PathBuf>) -> Sourced<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        Sourced::new(dir.join(value.get_ref()), self.origin(value.span()))
    }

    /// A key's value as a candidate, if the file sets it.
    pub fn candidate<T: Clone>(&self, value: Option<&Spanned<T>>) -> Option<Candidate<T>> {
        let value = value?;
        Some(Candidate {
            value: value.get_ref().clone(),
            origin: self.origin(value.span()),
            place: self.at(value.span()),
        })
    }

    /// A path key's value as a candidate, relative to the file's directory.
    pub fn path_candidate(&self, value: Option<&Spanned<PathBuf>>) -> Option<Candidate<PathBuf>> {
        let value = value?;
        let sourced = self.path_value(value);
        Some(Candidate {
            value: sourced.value,
            origin: sourced.origin,
            place: self.at(value.span()),
        })
    }
}

impl<K: DeserializeOwned> ConfigFile<K> {
    /// Parse `source`, the text of the file at `path`. An error names
    /// `PATH:LINE:COLUMN`, calls an unknown field an unknown key, and points
    /// at `documented_in`, where every key is described.
    pub fn parse(
        path: &Path,
        source: String,
        documented_in: &str,
    ) -> Result<ConfigFile<K>, SettingsError> {
        let keys: K = toml::from_str(&source).map_err(|e| {
            let at = e.span().map_or(path.display().to_string(), |span| {
                let (line, column) = line_column(&source, span.start);
                format!("{}:{line}:{column}", path.display())
            });
            let message = e
                .message()
                .replace("unknown field", "unknown key")
                .replace("missing field", "missing key");
            SettingsError(format!(
                "{at}: {message} (every key is described in {documented_in})"
            ))
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            source,
            keys,
        })
    }

    /// Read and parse the config file at `path` (made absolute first). A
    /// missing file is `None` unless `required` (the file was named
    /// explicitly, by a flag or a variable): then it is an error.
    pub fn read(
        path: &Sourced<PathBuf>,
        required: bool,
        documented_in: &str,
    ) -> Result<Option<ConfigFile<K>>, SettingsError> {
        let absolute = std::path::absolute(&path.value).unwrap_or_else(|_| path.value.clone());
        match std::fs::read_to_string(&absolute) {
            Ok(source) => Ok(Some(ConfigFile::parse(&absolute, source, documented_in)?)),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SettingsError(format!(
                "cannot read config file `{}` (named by {}): {e}",
                absolute.display(),
                path.origin
            ))),
        }
    }
}

/// An S3 access key and its secret. The secret is never shown: `Debug` and
/// [`describe`] print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// They are the SDK's own `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`:
    /// the SDK reads them itself, with `AWS_SESSION_TOKEN` if there is one.
    from_plain_env: bool,
}

impl Credentials {
    /// The pair to hand the S3 client explicitly; `None` when they are the
    /// SDK's own variables, which it reads itself (with a session token).
    pub fn for_sdk(&self) -> Option<(String, String)> {
        (!self.from_plain_env).then(|| (self.access_key_id.clone(), self.secret_access_key.clone()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// Read a file holding a secret, refusing it when others can read it.
/// `named_by` is the place that named the file, for errors.
pub fn read_secret_file(path: &Path, named_by: &str) -> Result<String, SettingsError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path)
        .map_err(|e| SettingsError(format!("{named_by}: cannot read `{}`: {e}", path.display())))?;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SettingsError(format!(
            "{named_by}: `{}` holds a secret but its group or other users can read it (mode {:04o}); \
             run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| SettingsError(format!("{named_by}: cannot read `{}`: {e}", path.display())))
}

/// The credentials file's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
}

/// Read a credentials file: TOML with `access_key_id` and `secret_access_key`,
/// refused when others can read it (see [`read_secret_file`]).
pub fn read_credentials_file(path: &Path, named_by: &str) -> Result<Credentials, SettingsError> {
    let source = read_secret_file(path, named_by)?;
    let keys: CredentialsFile = toml::from_str(&source).map_err(|e| {
        // The message only: toml's own rendering quotes the line, which may hold the secret.
        let position = e.span().map_or(String::new(), |span| {
            let (line, column) = line_column(&source, span.start);
            format!(":{line}:{column}")
        });
        SettingsError(format!(
            "{}{position}: {} (a credentials file holds `access_key_id = \"…\"` and \
             `secret_access_key = \"…\"`)",
            path.display(),
            e.message()
        ))
    })?;
    Ok(Credentials {
        access_key_id: keys.access_key_id,
        secret_access_key: keys.secret_access_key,
        from_plain_env: false,
    })
}

/// One of the pair from the environment: `NAME` or `NAME_FILE` (not both);
/// `true` with the value when it is the plain variable.
fn env_secret(
    env: &Env,
    name: &'static str,
    file_name: &'static str,
) -> Result<Option<(String, bool)>, SettingsError> {
    match (var(env, name), var(env, file_name)) {
        (Some(_), Some(_)) => Err(SettingsError(format!(
            "both {name} and {file_name} are set: set one of them"
        ))),
        (Some(value), None) => Ok(Some((value.to_string(), true))),
        (None, Some(path)) => {
            let text = read_secret_file(Path::new(path), file_name)?;
            let value = text.trim().to_string();
            if value.is_empty() {
                return Err(SettingsError(format!("{file_name}: `{path}` is empty")));
            }
            Ok(Some((value, false)))
        }
        (None, None) => Ok(None),
    }
}

/// The credentials the environment gives, if it gives both halves:
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, or the `_FILE` variables
/// naming files that hold one each (refused when others can read them).
pub fn env_credentials(env: &Env) -> Result<Option<Sourced<Credentials>>, SettingsError> {
    use crate::env::{
        AWS_ACCESS_KEY_ID as ID, AWS_ACCESS_KEY_ID_FILE as ID_FILE,
        AWS_SECRET_ACCESS_KEY as SECRET, AWS_SECRET_ACCESS_KEY_FILE as SECRET_FILE,
    };
    let id = env_secret(env, ID, ID_FILE)?;
    let secret = env_secret(env, SECRET, SECRET_FILE)?;
    match (id, secret) {
        (None, None) => Ok(None),
        (Some((access_key_id, id_plain)), Some((secret_access_key, secret_plain))) => {
            let origin = Origin::Env(if secret_plain { SECRET } else { SECRET_FILE });
            Ok(Some(Sourced::new(
                Credentials {
                    access_key_id,
                    secret_access_key,
                    from_plain_env: id_plain && secret_plain,
                },
                origin,
            )))
        }
        (Some(_), None) => Err(SettingsError(format!(
            "{ID} (or {ID_FILE}) is set but neither {SECRET} nor {SECRET_FILE}: set both halves of the key"
        ))),
        (None, Some(_)) => Err(SettingsError(format!(
            "{SECRET} (or {SECRET_FILE}) is set but neither {ID} nor {ID_FILE}: set both halves of the key"
        ))),
    }
}

/// One line of [`describe`]'s table: the key, its value as shown, and its
/// origin (empty: no comment).
pub type Row = (String, String, String);

/// The rows of a set of credentials: the key ID, and the secret as `[redacted]`.
pub fn credential_rows(credentials: &Sourced<Credentials>) -> [(&'static str, String, String); 2] {
    let origin = credentials.origin.to_string();
    [
        (
            "access_key_id",
            format!("{:?}", credentials.value.access_key_id),
            origin.clone(),
        ),
        ("secret_access_key", "[redacted]".to_string(), origin),
    ]
}

/// Effective settings as aligned `key = value  # origin` lines: keys padded
/// to the longest, values to the longest up to 48 characters.
pub fn describe(rows: &[Row]) -> String {
    let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    let mut out = String::new();
    for (key, value, origin) in rows {
        let line = if origin.is_empty() {
            format!("{key:<width$} = {value}")
        } else {
            format!("{key:<width$} = {value:<value_width$}  # {origin}")
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env;

    #[test]
    fn lines_and_columns_count_characters_from_one() {
        let text = "a = 1\n  béta = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, text.find("= 2").unwrap()), (2, 8));
        assert_eq!(line_column(text, 10_000), (3, 1));
    }

    #[test]
    fn the_table_aligns_keys_and_values_and_leaves_no_trailing_space() {
        let rows: Vec<Row> = vec![
            ("a".into(), "\"x\"".into(), "default".into()),
            ("longer".into(), "1".into(), String::new()),
        ];
        assert_eq!(describe(&rows), "a      = \"x\"  # default\nlonger = 1\n");
    }

    #[test]
    fn plain_sdk_variables_are_left_to_the_sdk() {
        let env: Env = [
            (env::AWS_ACCESS_KEY_ID.to_string(), "id".to_string()),
            (env::AWS_SECRET_ACCESS_KEY.to_string(), "s3cr3t".to_string()),
        ]
        .into();
        let creds = env_credentials(&env).unwrap().unwrap();
        assert_eq!(creds.origin, Origin::Env(env::AWS_SECRET_ACCESS_KEY));
        assert_eq!(creds.value.for_sdk(), None);
        assert!(!format!("{creds:?}").contains("s3cr3t"));
        let rows = credential_rows(&creds);
        assert!(!format!("{rows:?}").contains("s3cr3t"), "{rows:?}");
    }
}

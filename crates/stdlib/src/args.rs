//! A step's arguments, as a facility reads them while building itself.
//!
//! The steps parser hands each facility's `build` function an [`Args`]; every
//! accessor checks a type and takes its key, so that the parser can report
//! the keys nobody asked for, and every error points at the key or value in
//! the steps file.

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use crate::vars::Vars;

/// An argument error found by a facility while building itself from its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl ArgError {
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The arguments of one step, as a facility sees them while building itself.
///
/// Each accessor takes its key out of the step, so that the parser can report
/// keys no facility asked for. Errors point at the key or value in the file.
#[derive(Debug)]
pub struct Args<'a> {
    facility: &'static str,
    /// The arguments the facility accepts, for hints.
    accepted: &'static [&'static str],
    step_span: Range<usize>,
    values: BTreeMap<String, (Range<usize>, Spanned<toml::Value>)>,
    /// Where each value already taken was, so later errors can point at it.
    taken: BTreeMap<String, Range<usize>>,
    config_dir: &'a Path,
    /// The host's variables, for facilities that render templates.
    vars: &'a Vars,
}

impl<'a> Args<'a> {
    /// The arguments `values` (name → span of the name, value) of a step of
    /// `facility`, which accepts `accepted`, spanning `step_span` in the file.
    pub(crate) fn new(
        facility: &'static str,
        accepted: &'static [&'static str],
        step_span: Range<usize>,
        values: BTreeMap<String, (Range<usize>, Spanned<toml::Value>)>,
        config_dir: &'a Path,
        vars: &'a Vars,
    ) -> Self {
        Args {
            facility,
            accepted,
            step_span,
            values,
            taken: BTreeMap::new(),
            config_dir,
            vars,
        }
    }

    /// The variables of the host the plan is for (string arguments are
    /// rendered with them already).
    pub fn vars(&self) -> &'a Vars {
        self.vars
    }

    /// Whether every argument was read: the parser's debug check.
    pub(crate) fn all_taken(&self) -> bool {
        self.values.is_empty()
    }

    /// The config directory, for facilities that read files from it.
    pub fn config_dir(&self) -> &'a Path {
        self.config_dir
    }

    /// An error pointing at `key`'s value (or at the step if the key is absent).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ArgError {
        let span = self
            .values
            .get(key)
            .map(|(_, value)| value.span())
            .or_else(|| self.taken.get(key).cloned())
            .unwrap_or_else(|| self.step_span.clone());
        ArgError {
            span,
            message: message.into(),
            hint: None,
        }
    }

    fn take(&mut self, key: &str) -> Option<Spanned<toml::Value>> {
        let (_, value) = self.values.remove(key)?;
        self.taken.insert(key.to_string(), value.span());
        Some(value)
    }

    fn missing(&self, key: &str) -> ArgError {
        ArgError {
            span: self.step_span.clone(),
            message: format!("step `{}` is missing argument `{key}`", self.facility),
            hint: Some(format!(
                "add `{key} = ...` to this step; `{}` takes {}",
                self.facility,
                list(self.accepted)
            )),
        }
    }

    pub(crate) fn wrong_type(value: &Spanned<toml::Value>, key: &str, expected: &str) -> ArgError {
        ArgError {
            span: value.span(),
            message: format!(
                "argument `{key}` must be {expected}, not {}",
                value.get_ref().type_str()
            ),
            hint: None,
        }
    }

    pub fn optional_str(&mut self, key: &str) -> Result<Option<String>, ArgError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => match value.get_ref() {
                toml::Value::String(s) if !s.is_empty() => Ok(Some(s.clone())),
                toml::Value::String(_) => Err(ArgError {
                    span: value.span(),
                    message: format!("argument `{key}` must not be empty"),
                    hint: None,
                }),
                _ => Err(Self::wrong_type(&value, key, "a string")),
            },
        }
    }

    /// A string that may be empty (a file's contents), if present.
    pub fn optional_text(&mut self, key: &str) -> Result<Option<String>, ArgError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => match value.get_ref() {
                toml::Value::String(s) => Ok(Some(s.clone())),
                _ => Err(Self::wrong_type(&value, key, "a string")),
            },
        }
    }

    pub fn required_str(&mut self, key: &str) -> Result<String, ArgError> {
        let missing = self.missing(key);
        self.optional_str(key)?.ok_or(missing)
    }

    /// A non-empty array of non-empty strings, if present.
    pub fn optional_str_list(&mut self, key: &str) -> Result<Option<Vec<String>>, ArgError> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let expected = "an array of strings, e.g. [\"a\", \"b\"]";
        let toml::Value::Array(items) = value.get_ref() else {
            return Err(Self::wrong_type(&value, key, expected));
        };
        if items.is_empty() {
            return Err(ArgError {
                span: value.span(),
                message: format!("argument `{key}` must not be an empty array"),
                hint: None,
            });
        }
        items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(ArgError {
                    span: value.span(),
                    message: format!("argument `{key}` must be {expected} with no empty strings"),
                    hint: None,
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A non-empty table of strings, e.g. `env = { LANG = "C" }`, if present, in
    /// key order. Errors never quote a value: it may be sensitive.
    pub fn optional_str_table(
        &mut self,
        key: &str,
    ) -> Result<Option<Vec<(String, String)>>, ArgError> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let toml::Value::Table(table) = value.get_ref() else {
            return Err(Self::wrong_type(
                &value,
                key,
                "a table of strings, e.g. { NAME = \"value\" }",
            ));
        };
        if table.is_empty() {
            return Err(ArgError {
                span: value.span(),
                message: format!("argument `{key}` must not be an empty table"),
                hint: None,
            });
        }
        table
            .iter()
            .map(|(name, item)| match item {
                toml::Value::String(s) => Ok((name.clone(), s.clone())),
                other => Err(ArgError {
                    span: value.span(),
                    message: format!(
                        "argument `{key}`: `{name}` must be a string, not {}",
                        other.type_str()
                    ),
                    hint: None,
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn required_str_list(&mut self, key: &str) -> Result<Vec<String>, ArgError> {
        let missing = self.missing(key);
        self.optional_str_list(key)?.ok_or(missing)
    }

    /// A duration such as "90s" or "10m" (from 1 s to 7 days), if present.
    pub fn optional_duration(
        &mut self,
        key: &str,
    ) -> Result<Option<std::time::Duration>, ArgError> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let parsed = match value.get_ref() {
            toml::Value::String(s) => humantime::parse_duration(s).ok(),
            _ => None,
        };
        match parsed {
            Some(d) if d >= std::time::Duration::from_secs(1) && d <= crate::steps::MAX_TIMEOUT => {
                Ok(Some(d))
            }
            _ => Err(ArgError {
                span: value.span(),
                message: format!(
                    "argument `{key}` must be a duration from 1s to 7days, e.g. \"90s\" or \"10m\""
                ),
                hint: None,
            }),
        }
    }

    /// Permission bits written as a quoted octal string ("0644", "4755"), if present.
    pub fn optional_mode(&mut self, key: &str) -> Result<Option<u32>, ArgError> {
        let bad_mode = self.error(
            key,
            format!("argument `{key}` must be a quoted octal string such as \"0644\""),
        );
        let mode = match self.optional_str(key) {
            Ok(Some(mode)) => mode,
            Ok(None) => return Ok(None),
            // Most likely `mode = 644`, which TOML reads as the decimal number 644.
            Err(_) => {
                return Err(bad_mode
                    .with_hint(format!("put the digits in quotes, e.g. `{key} = \"0644\"`")));
            }
        };
        match parse_mode(&mode) {
            Some(bits) => Ok(Some(bits)),
            None => Err(bad_mode.with_hint(format!(
                "`{mode}` is not 3 or 4 digits from 0 to 7, e.g. \"0644\" or \"755\""
            ))),
        }
    }

    /// Permission bits, as [`Args::optional_mode`].
    pub fn mode(&mut self, key: &str) -> Result<u32, ArgError> {
        let missing = self.missing(key);
        self.optional_mode(key)?.ok_or(missing)
    }

    /// An absolute path on the host, if present.
    pub fn optional_absolute_path(&mut self, key: &str) -> Result<Option<PathBuf>, ArgError> {
        let span = self.values.get(key).map(|(_, value)| value.span());
        match self.optional_str(key)? {
            None => Ok(None),
            Some(s) if Path::new(&s).is_absolute() => Ok(Some(PathBuf::from(s))),
            Some(s) => Err(ArgError {
                span: span.unwrap_or_else(|| self.step_span.clone()),
                message: format!("argument `{key}` must be an absolute path, not `{s}`"),
                hint: Some(format!(
                    "write the full path, e.g. `/{}`",
                    s.trim_start_matches("./")
                )),
            }),
        }
    }

    /// An absolute path on the host.
    pub fn absolute_path(&mut self, key: &str) -> Result<PathBuf, ArgError> {
        let missing = self.missing(key);
        self.optional_absolute_path(key)?.ok_or(missing)
    }

    /// `true` or `false`, if present.
    pub fn optional_bool(&mut self, key: &str) -> Result<Option<bool>, ArgError> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        match value.get_ref() {
            toml::Value::Boolean(b) => Ok(Some(*b)),
            toml::Value::String(s) if matches!(s.as_str(), "true" | "false") => {
                Err(Self::wrong_type(&value, key, "`true` or `false`")
                    .with_hint(format!("write `{key} = {s}`, without quotes")))
            }
            _ => Err(Self::wrong_type(&value, key, "`true` or `false`")),
        }
    }

    /// An integer in `range`, if present.
    pub fn optional_int(
        &mut self,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<i64>, ArgError> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        match value.get_ref() {
            toml::Value::Integer(n) if range.contains(n) => Ok(Some(*n)),
            toml::Value::Integer(n) => Err(ArgError {
                span: value.span(),
                message: format!("argument `{key}` must be {expected}, not {n}"),
                hint: None,
            }),
            toml::Value::String(s) if s.parse::<i64>().is_ok() => {
                Err(Self::wrong_type(&value, key, &expected)
                    .with_hint(format!("write `{key} = {s}`, without quotes")))
            }
            _ => Err(Self::wrong_type(&value, key, &expected)),
        }
    }

    /// One of `choices`, if present; the error lists them.
    pub fn optional_choice(
        &mut self,
        key: &str,
        choices: &'static [&'static str],
    ) -> Result<Option<&'static str>, ArgError> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let hint = format!("valid choices: {}", list(choices));
        match value.get_ref() {
            toml::Value::String(s) => match choices.iter().find(|choice| **choice == s.as_str()) {
                Some(choice) => Ok(Some(choice)),
                None => Err(ArgError {
                    span: value.span(),
                    message: format!("argument `{key}` cannot be `{s}`"),
                    hint: Some(hint),
                }),
            },
            _ => Err(Self::wrong_type(&value, key, "a string").with_hint(hint)),
        }
    }

    /// A non-empty string, or an integer as its decimal digits, if present:
    /// for values the host reads as text, such as a sysctl's (`value = 1`).
    pub fn optional_str_or_int(&mut self, key: &str) -> Result<Option<String>, ArgError> {
        match self.values.get(key).map(|(_, value)| value.get_ref()) {
            Some(toml::Value::Integer(n)) => {
                let n = n.to_string();
                self.take(key);
                Ok(Some(n))
            }
            Some(toml::Value::String(_)) | None => self.optional_str(key),
            Some(_) => {
                let value = self.take(key).expect("the key is there");
                Err(Self::wrong_type(&value, key, "a string or an integer"))
            }
        }
    }

    /// An array of non-empty strings, if present; unlike
    /// [`Args::optional_str_list`], `[]` is allowed, for arguments where "none"
    /// means something (a user in no supplementary group).
    pub fn optional_str_list_or_empty(
        &mut self,
        key: &str,
    ) -> Result<Option<Vec<String>>, ArgError> {
        match self.values.get(key).map(|(_, value)| value.get_ref()) {
            Some(toml::Value::Array(items)) if items.is_empty() => {
                self.take(key);
                Ok(Some(Vec::new()))
            }
            _ => self.optional_str_list(key),
        }
    }

    /// A path inside the config directory that exists there as `kind`
    /// (see [`Args::optional_config_path`]).
    pub fn config_path(&mut self, key: &str, kind: ConfigKind) -> Result<PathBuf, ArgError> {
        let missing = self.missing(key);
        self.optional_config_path(key, kind)?.ok_or(missing)
    }

    /// A path inside the config directory that exists there as `kind`, if
    /// present: relative, without `..`, and not a symbolic link.
    pub fn optional_config_path(
        &mut self,
        key: &str,
        kind: ConfigKind,
    ) -> Result<Option<PathBuf>, ArgError> {
        let what = match kind {
            ConfigKind::File => "a regular file",
            ConfigKind::Directory => "a directory",
        };
        let bad = self.error(
            key,
            format!("argument `{key}` must name {what} in the config directory"),
        );
        let Some(source) = self.optional_str(key)? else {
            return Ok(None);
        };
        let source = PathBuf::from(source);
        let shown = source.display();
        if source.is_absolute() {
            return Err(bad.with_hint(format!(
                "`{shown}` is absolute; write it relative to the config directory, e.g. `files/motd`"
            )));
        }
        if source.components().any(|c| c == Component::ParentDir) {
            return Err(bad.with_hint(format!(
                "`{shown}` uses `..`; only files inside the config directory are uploaded"
            )));
        }
        match (
            std::fs::symlink_metadata(self.config_dir.join(&source)),
            kind,
        ) {
            (Ok(meta), ConfigKind::File) if meta.is_file() => Ok(Some(source)),
            (Ok(meta), ConfigKind::Directory) if meta.is_dir() => Ok(Some(source)),
            (Ok(meta), ConfigKind::File) if meta.is_dir() => {
                Err(bad.with_hint(format!("`{shown}` is a directory")))
            }
            (Ok(meta), ConfigKind::Directory) if meta.is_file() => {
                Err(bad.with_hint(format!("`{shown}` is a file")))
            }
            (Ok(_), _) => Err(bad.with_hint(format!(
                "`{shown}` is neither a regular file nor a directory; \
                 bundles hold only those, so copy the real one into the config"
            ))),
            (Err(err), _) if err.kind() == std::io::ErrorKind::NotFound => Err(bad.with_hint(
                format!("there is no `{shown}` in `{}`", self.config_dir.display()),
            )),
            (Err(err), _) => Err(bad.with_hint(format!("cannot inspect `{shown}`: {err}"))),
        }
    }

    /// A regular file of the config directory, named relative to it, if present.
    pub fn optional_config_file(&mut self, key: &str) -> Result<Option<PathBuf>, ArgError> {
        self.optional_config_path(key, ConfigKind::File)
    }

    /// A regular file of the config directory, named relative to it.
    pub fn config_file(&mut self, key: &str) -> Result<PathBuf, ArgError> {
        self.config_path(key, ConfigKind::File)
    }
}

/// What a path in the config directory must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    File,
    Directory,
}

/// "0644" or "644" to 0o644: 3 or 4 octal digits, as chmod(1) takes them.
pub fn parse_mode(s: &str) -> Option<u32> {
    let octal = (3..=4).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
    octal.then(|| u32::from_str_radix(s, 8).ok()).flatten()
}

/// `a`, `b`, `c`: names quoted for messages.
pub(crate) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments in `text` (a TOML table), as a step of facility `test` has them.
    fn args_of<'a>(text: &str, dir: &'a Path) -> Args<'a> {
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> = toml::from_str(text).unwrap();
        let values = table
            .into_iter()
            .map(|(key, value)| {
                let span = key.span();
                (key.into_inner(), (span, value))
            })
            .collect();
        let vars: &'static Vars = Box::leak(Box::default());
        Args::new("test", &["a", "b"], 0..text.len(), values, dir, vars)
    }

    /// The text an error points at.
    fn at<'t>(text: &'t str, err: &ArgError) -> &'t str {
        &text[err.span.clone()]
    }

    #[test]
    fn bools() {
        let dir = Path::new("/nonexistent");
        let text = "a = true\nb = \"false\"\nc = 1\n";
        let mut args = args_of(text, dir);
        assert_eq!(args.optional_bool("a").unwrap(), Some(true));
        assert_eq!(args.optional_bool("z").unwrap(), None);
        let err = args.optional_bool("b").unwrap_err();
        assert_eq!(
            err.message,
            "argument `b` must be `true` or `false`, not string"
        );
        assert_eq!(
            err.hint.as_deref(),
            Some("write `b = false`, without quotes")
        );
        assert_eq!(at(text, &err), "\"false\"");
        let err = args.optional_bool("c").unwrap_err();
        assert_eq!(
            err.message,
            "argument `c` must be `true` or `false`, not integer"
        );
        assert!(args.all_taken());
    }

    #[test]
    fn integers_in_a_range() {
        let dir = Path::new("/nonexistent");
        let text = "a = 7\nb = -1\nc = \"12\"\nd = 1.5\n";
        let mut args = args_of(text, dir);
        assert_eq!(args.optional_int("a", 0..=10).unwrap(), Some(7));
        assert_eq!(args.optional_int("z", 0..=10).unwrap(), None);
        let err = args.optional_int("b", 0..=10).unwrap_err();
        assert_eq!(
            err.message,
            "argument `b` must be an integer from 0 to 10, not -1"
        );
        assert_eq!(at(text, &err), "-1");
        let err = args.optional_int("c", 0..=10).unwrap_err();
        assert_eq!(
            err.message,
            "argument `c` must be an integer from 0 to 10, not string"
        );
        assert_eq!(err.hint.as_deref(), Some("write `c = 12`, without quotes"));
        assert!(args.optional_int("d", 0..=10).is_err());
    }

    #[test]
    fn choices() {
        let dir = Path::new("/nonexistent");
        let text = "a = \"absent\"\nb = \"gone\"\nc = false\n";
        let mut args = args_of(text, dir);
        const STATES: &[&str] = &["present", "absent"];
        assert_eq!(args.optional_choice("a", STATES).unwrap(), Some("absent"));
        assert_eq!(args.optional_choice("z", STATES).unwrap(), None);
        let err = args.optional_choice("b", STATES).unwrap_err();
        assert_eq!(err.message, "argument `b` cannot be `gone`");
        assert_eq!(
            err.hint.as_deref(),
            Some("valid choices: `present`, `absent`")
        );
        assert_eq!(at(text, &err), "\"gone\"");
        let err = args.optional_choice("c", STATES).unwrap_err();
        assert_eq!(err.message, "argument `c` must be a string, not boolean");
    }

    #[test]
    fn strings_or_integers() {
        let dir = Path::new("/nonexistent");
        let text = "a = 1\nb = \"4096 87380\"\nc = []\nd = \"\"\n";
        let mut args = args_of(text, dir);
        assert_eq!(args.optional_str_or_int("a").unwrap().as_deref(), Some("1"));
        assert_eq!(
            args.optional_str_or_int("b").unwrap().as_deref(),
            Some("4096 87380")
        );
        assert_eq!(args.optional_str_or_int("z").unwrap(), None);
        let err = args.optional_str_or_int("c").unwrap_err();
        assert_eq!(
            err.message,
            "argument `c` must be a string or an integer, not array"
        );
        assert!(args.optional_str_or_int("d").is_err());
        assert!(args.all_taken());
    }

    #[test]
    fn lists_that_may_be_empty() {
        let dir = Path::new("/nonexistent");
        let text = "a = []\nb = [\"x\"]\nc = [\"\"]\n";
        let mut args = args_of(text, dir);
        assert_eq!(
            args.optional_str_list_or_empty("a").unwrap(),
            Some(Vec::new())
        );
        assert_eq!(
            args.optional_str_list_or_empty("b").unwrap(),
            Some(vec!["x".to_string()])
        );
        assert!(args.optional_str_list_or_empty("c").is_err());
        assert_eq!(args.optional_str_list_or_empty("z").unwrap(), None);
        assert!(args.all_taken());
    }

    #[test]
    fn config_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("units")).unwrap();
        std::fs::write(dir.path().join("units/a.service"), "").unwrap();
        let text =
            "a = \"units/a.service\"\nb = \"units\"\nc = \"../x\"\nd = \"/etc/x\"\ne = \"nope\"\n";
        let mut args = args_of(text, dir.path());
        assert_eq!(
            args.config_file("a").unwrap(),
            PathBuf::from("units/a.service")
        );
        for (key, hint) in [
            ("b", "is a directory"),
            ("c", "uses `..`"),
            ("d", "is absolute"),
            ("e", "there is no `nope`"),
        ] {
            let err = args.optional_config_file(key).unwrap_err();
            assert_eq!(
                err.message,
                format!("argument `{key}` must name a regular file in the config directory")
            );
            assert!(err.hint.as_deref().unwrap().contains(hint), "{err:?}");
        }
        let err = args.config_file("z").unwrap_err();
        assert_eq!(err.message, "step `test` is missing argument `z`");
    }
}

//! The steps file (`cattle.toml`): parsing and validation into a [`Plan`].
//!
//! A config is a directory with `cattle.toml` at its root. The file lists ordered
//! `[[step]]` tables; each names a `facility` (a built-in, or a program the
//! config ships as `facilities/NAME`: [`crate::custom`]) and gives that
//! facility's arguments. Every error names the file, the line and the column,
//! and an unknown facility or argument lists the valid ones.
//!
//! ```toml
//! [[step]]
//! facility = "make_dir"
//! path = "/var/poems"
//! attempts = 5          # optional, on any step (default 3)
//! timeout = "10m"       # optional, on any step: per attempt (default 1h)
//!
//! [[step]]
//! facility = "command"
//! argv = ["/usr/local/bin/register"]
//! env = { TOKEN = "s3cr3t" }
//! sensitive = ["env.TOKEN"]   # optional, on any step: arguments never shown
//! ```
//!
//! A steps file may also give variables' defaults (`[vars]`) and say which
//! variables are secret (`sensitive_vars`, before any table); any string
//! argument may use them as `{{ name }}` (see [`crate::vars`]). [`Config`]
//! is the file read once; [`Config::plan`] resolves it with one host's
//! variables into a [`Plan`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::args::{ArgError, Args, list};
use crate::custom::{self, Definition, LookupError, Registry};
use crate::facilities::{self, FacilitySpec};
use crate::facility::Facility;
use crate::secrets::Secrets;
use crate::vars::{self, Vars};

/// The name of the steps file at the root of a config directory.
pub const STEPS_FILE: &str = "cattle.toml";

/// Attempts per step when the step does not say.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// The most attempts a step may ask for; more is almost certainly a typo.
pub const MAX_ATTEMPTS: u32 = 100;

/// Keys every step accepts, whatever its facility.
pub(crate) const COMMON_KEYS: &[&str] = &["facility", "attempts", "timeout", "sensitive"];

/// How long one attempt of a step may take when the step does not say. Generous:
/// package installs on slow mirrors take a while; a hung program still ends.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The longest timeout a step may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A validated config: its steps in order, ready to run.
#[derive(Debug)]
pub struct Plan {
    /// The config directory the plan was read from.
    pub config_dir: PathBuf,
    pub steps: Vec<Step>,
    /// The values of the arguments steps mark `sensitive`, which the runner
    /// keeps out of everything it reports.
    pub secrets: Secrets,
}

/// One step of a plan.
#[derive(Debug)]
pub struct Step {
    /// The step's arguments as it runs them, variables resolved (the common
    /// keys `facility`, `attempts`, `timeout` and `sensitive` left out). They
    /// may hold secrets: show them only through the plan's [`Secrets`].
    pub arguments: toml::Table,
    /// 1-based position in the steps file.
    pub number: usize,
    /// Line of the step's `[[step]]` header in the steps file.
    pub line: usize,
    pub attempts: u32,
    /// How long one attempt may take; programs still running then are killed.
    pub timeout: Duration,
    /// The facility's name, as the steps file gives it: a built-in's, or a
    /// custom facility's (`facilities/NAME`).
    pub name: String,
    pub facility: Box<dyn Facility>,
    /// Whether the step marks arguments `sensitive`. Its diffs never show the
    /// lines only the host's file has: they may hold an earlier value of the
    /// secret, which redaction cannot know.
    pub sensitive: bool,
}

/// The steps file could not be read or is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
    pub hint: Option<String>,
}

impl PlanError {
    /// `file:line:column: message`, without the hint.
    pub fn headline(&self) -> String {
        let mut text = self.file.display().to_string();
        if let Some((line, column)) = self.position {
            text.push_str(&format!(":{line}:{column}"));
        }
        format!("{text}: {}", self.message)
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

type StepTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// What a step's `facility` names.
enum Kind {
    BuiltIn(&'static FacilitySpec),
    /// A program `facilities/NAME` in the config directory.
    Custom(std::rc::Rc<Definition>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sensitive_vars: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    vars: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    step: Vec<Spanned<StepTable>>,
}

/// A steps file, read and checked once; [`Config::plan`] makes a [`Plan`] of
/// it for one host's variables.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config directory.
    pub config_dir: PathBuf,
    file: PathBuf,
    source: String,
    steps: Vec<Spanned<StepTable>>,
    defaults: Vars,
    sensitive_vars: Vec<String>,
    uses_vars: bool,
}

impl Config {
    /// Read `cattle.toml` in `config_dir`.
    pub fn load(config_dir: &Path) -> Result<Config, PlanError> {
        let file = config_dir.join(STEPS_FILE);
        let source = std::fs::read_to_string(&file).map_err(|err| PlanError {
            file: file.clone(),
            position: None,
            message: format!("cannot read the steps file: {err}"),
            hint: (err.kind() == std::io::ErrorKind::NotFound)
                .then(|| format!("a config is a directory with `{STEPS_FILE}` at its root")),
        })?;
        Self::parse(&source, &file, config_dir)
    }

    /// Read the steps file text `source`, from `file` in `config_dir`: its
    /// syntax, its steps' presence, its variables' names and defaults. Each
    /// step is checked by [`Config::plan`].
    pub fn parse(source: &str, file: &Path, config_dir: &Path) -> Result<Config, PlanError> {
        let error_at = |span: Option<Range<usize>>, message: String, hint: Option<String>| {
            plan_error(file, source, span, message, hint)
        };
        let raw: RawFile = toml::from_str(source)
            .map_err(|err| error_at(err.span(), err.message().trim_end().to_string(), None))?;
        if raw.step.is_empty() {
            return Err(error_at(
                None,
                "no steps: the file has no `[[step]]` table".to_string(),
                Some("add a step, e.g. `[[step]]` then `facility = \"make_dir\"` and `path = \"/tmp/x\"`".to_string()),
            ));
        }
        let mut defaults = Vars::new();
        for (name, value) in &raw.vars {
            vars::check_name(name.get_ref())
                .and_then(|()| reserved(name.get_ref()))
                .map_err(|message| error_at(Some(name.span()), message, None))?;
            let value = vars::from_toml(value.get_ref()).map_err(|message| {
                error_at(
                    Some(value.span()),
                    format!("variable `{}`: {message}", name.get_ref()),
                    None,
                )
            })?;
            defaults.set(name.get_ref().clone(), value);
        }
        let mut sensitive_vars = Vec::new();
        for name in raw.sensitive_vars.iter().flat_map(|list| list.get_ref()) {
            vars::check_name(name.get_ref())
                .map_err(|message| error_at(Some(name.span()), message, None))?;
            sensitive_vars.push(name.get_ref().clone());
        }
        let uses_vars = !defaults.is_empty()
            || raw.step.iter().any(|step| {
                step.get_ref().iter().any(|(key, value)| {
                    (key.get_ref() == "facility"
                        && value.get_ref().as_str() == Some(crate::facilities::template::SPEC.name))
                        || (key.get_ref() != "facility" && has_template(value.get_ref()))
                })
            });
        Ok(Config {
            config_dir: config_dir.to_path_buf(),
            file: file.to_path_buf(),
            source: source.to_string(),
            steps: raw.step,
            defaults,
            sensitive_vars,
            uses_vars,
        })
    }

    /// The defaults the steps file gives (`[vars]`).
    pub fn defaults(&self) -> &Vars {
        &self.defaults
    }

    /// Whether anything in the config can differ between hosts: defaults,
    /// a `{{ … }}` in an argument, or a `template` step. A config that uses no
    /// variables runs the same everywhere.
    pub fn uses_vars(&self) -> bool {
        self.uses_vars
    }

    /// The variables the steps file marks secret (`sensitive_vars`).
    pub fn sensitive_vars(&self) -> &[String] {
        &self.sensitive_vars
    }

    /// The plan with `vars`, the complete variables of the host it is for
    /// (the config's defaults included: see [`Config::defaults`]): every
    /// string argument rendered, every step checked and built.
    pub fn plan(&self, vars: &Vars) -> Result<Plan, PlanError> {
        let source = self.source.as_str();
        let file = self.file.as_path();
        let config_dir = self.config_dir.as_path();
        let error_at = |span: Option<Range<usize>>, message: String, hint: Option<String>| {
            plan_error(file, source, span, message, hint)
        };
        let mut steps = Vec::with_capacity(self.steps.len());
        let mut secrets = Secrets::default();
        for name in &self.sensitive_vars {
            if let Some(value) = vars.get(name) {
                secrets.add_json(value);
            }
        }
        let secret_vars = !secrets.is_empty();
        let mut custom = Registry::new(config_dir);
        for (i, table) in self.steps.iter().enumerate() {
            let step_span = table.span();
            let number = i + 1;
            let mut values: BTreeMap<String, (Range<usize>, Spanned<toml::Value>)> = table
                .get_ref()
                .iter()
                .map(|(key, value)| (key.get_ref().clone(), (key.span(), value.clone())))
                .collect();

            let Some((_, facility)) = values.remove("facility") else {
                return Err(error_at(
                    Some(step_span),
                    format!("step {number} has no `facility`"),
                    Some(format!("valid facilities: {}", list(&facilities::names()))),
                ));
            };
            let toml::Value::String(name) = facility.get_ref() else {
                return Err(error_at(
                    Some(facility.span()),
                    "`facility` must be a string".to_string(),
                    Some(format!("valid facilities: {}", list(&facilities::names()))),
                ));
            };
            let lookup_error = |err: LookupError| match err {
                LookupError::Step { message, hint } => {
                    error_at(Some(facility.span()), message, hint)
                }
                LookupError::Schema(err) => err,
            };
            let kind = match facilities::lookup(name) {
                Some(spec) => match custom.clash(name) {
                    Some(err) => return Err(lookup_error(err)),
                    None => Kind::BuiltIn(spec),
                },
                None => Kind::Custom(custom.lookup(name).map_err(lookup_error)?),
            };

            let attempts = match values.remove("attempts") {
                None => DEFAULT_ATTEMPTS,
                Some((_, value)) => match value.get_ref() {
                    toml::Value::Integer(n) if (1..=i64::from(MAX_ATTEMPTS)).contains(n) => {
                        *n as u32
                    }
                    _ => {
                        return Err(error_at(
                            Some(value.span()),
                            format!("`attempts` must be an integer from 1 to {MAX_ATTEMPTS}"),
                            None,
                        ));
                    }
                },
            };

            let timeout = match values.remove("timeout") {
                None => DEFAULT_TIMEOUT,
                Some((_, value)) => {
                    let parsed = match value.get_ref() {
                        toml::Value::String(s) => humantime::parse_duration(s).ok(),
                        _ => None,
                    };
                    match parsed {
                        Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => d,
                        _ => {
                            return Err(error_at(
                                Some(value.span()),
                                "`timeout` must be a duration from 1s to 7days, e.g. \"90s\" or \"10m\""
                                    .to_string(),
                                None,
                            ));
                        }
                    }
                }
            };

            let sensitive = values.remove("sensitive");

            // Variables first: everything after sees the values the host runs.
            let templated = values.values().any(|(_, v)| has_template(v.get_ref()))
                || name == facilities::template::SPEC.name;
            for (key, (_, value)) in values.iter_mut() {
                let span = value.span();
                let mut rendered = value.get_ref().clone();
                render_strings(&mut rendered, vars).map_err(|err| {
                    let undefined = err.message.starts_with("undefined variable");
                    error_at(
                        Some(span.clone()),
                        format!("argument `{key}`: {}", secrets.redact(&err.message)),
                        undefined.then(|| UNDEFINED_HINT.to_string()),
                    )
                })?;
                *value = Spanned::new(span, rendered);
            }
            let arguments: toml::Table = values
                .iter()
                .map(|(key, (_, value))| (key.clone(), value.get_ref().clone()))
                .collect();

            let accepted: Option<Vec<&str>> = match &kind {
                Kind::BuiltIn(spec) => Some(spec.args.to_vec()),
                Kind::Custom(definition) => definition.accepted(),
            };
            if let Some(accepted) = &accepted
                && let Some((key, (span, _))) = values
                    .iter()
                    .find(|(key, _)| !accepted.contains(&key.as_str()))
            {
                return Err(error_at(
                    Some(span.clone()),
                    format!("unknown argument `{key}` for facility `{name}`"),
                    Some(valid_args(name, accepted)),
                ));
            }

            let mut step_secrets = match sensitive {
                None => Secrets::default(),
                Some((_, value)) => sensitive_values(&value, &values, source)
                    .map_err(|err| error_at(Some(err.span), err.message, err.hint))?,
            };
            if let Kind::Custom(_) = kind {
                step_secrets.add_json_forms();
            }
            // Its own secrets, or a secret variable's value it may have rendered.
            let sensitive = !step_secrets.is_empty() || (templated && secret_vars);
            // What the step's errors must not show: its secrets and the plan's so far.
            let mut hidden = step_secrets.clone();
            hidden.extend(&secrets);

            let built = match &kind {
                Kind::BuiltIn(spec) => {
                    let mut args = Args::new(
                        spec.name,
                        spec.args,
                        step_span.clone(),
                        values,
                        config_dir,
                        vars,
                    );
                    let built = (spec.build)(&mut args);
                    debug_assert!(
                        built.is_err() || args.all_taken(),
                        "{} left arguments unread",
                        spec.name
                    );
                    built
                }
                Kind::Custom(definition) => custom::build(definition, &values, &step_span),
            };
            // A facility's message may quote the value it refuses.
            let facility = built.map_err(|err| {
                error_at(
                    Some(err.span),
                    hidden.redact(&err.message).into_owned(),
                    err.hint.map(|hint| hidden.redact(&hint).into_owned()),
                )
            })?;
            secrets.extend(&step_secrets);

            steps.push(Step {
                arguments,
                number,
                line: line_column(source, step_span.start).0,
                attempts,
                timeout,
                name: name.clone(),
                facility,
                sensitive,
            });
        }
        // A program may print its JSON request, secret variables' values included.
        if steps
            .iter()
            .any(|step| facilities::lookup(&step.name).is_none())
        {
            secrets.add_json_forms();
        }
        Ok(Plan {
            config_dir: config_dir.to_path_buf(),
            steps,
            secrets,
        })
    }
}

impl Plan {
    /// Read and validate `cattle.toml` in `config_dir`, with the variables'
    /// defaults only.
    pub fn load(config_dir: &Path) -> Result<Plan, PlanError> {
        let config = Config::load(config_dir)?;
        config.plan(config.defaults())
    }

    /// Validate the steps file text `source`, read from `file` in
    /// `config_dir`, with the variables' defaults only.
    pub fn parse(source: &str, file: &Path, config_dir: &Path) -> Result<Plan, PlanError> {
        let config = Config::parse(source, file, config_dir)?;
        config.plan(config.defaults())
    }
}

/// The hint for a variable no source gives.
const UNDEFINED_HINT: &str = "give it a default in `[vars]` of cattle.toml, a value in the \
     inventory (`HOST name=value` in a hosts file), or `--var name=value`";

/// Names the steps file may not give a value.
fn reserved(name: &str) -> Result<(), String> {
    if name == vars::HOST_VAR {
        return Err(format!(
            "`{name}` is every host's own ID, set by Cattle; choose another name"
        ));
    }
    Ok(())
}

fn plan_error(
    file: &Path,
    source: &str,
    span: Option<Range<usize>>,
    message: String,
    hint: Option<String>,
) -> PlanError {
    PlanError {
        file: file.to_path_buf(),
        position: span.map(|s| line_column(source, s.start)),
        message,
        hint,
    }
}

/// Whether any string in `value` is a template.
fn has_template(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => vars::is_template(s),
        toml::Value::Array(items) => items.iter().any(has_template),
        toml::Value::Table(table) => table.values().any(has_template),
        _ => false,
    }
}

/// Render every string in `value` (through arrays and table values) with `vars`.
fn render_strings(value: &mut toml::Value, vars: &Vars) -> Result<(), vars::RenderError> {
    match value {
        toml::Value::String(s) if vars::is_template(s) => *s = vars::render(s, vars)?,
        toml::Value::Array(items) => {
            for item in items {
                render_strings(item, vars)?;
            }
        }
        toml::Value::Table(table) => {
            for (_, item) in table.iter_mut() {
                render_strings(item, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The secrets a step's `sensitive` list names among its arguments `values`:
/// `"key"` for every string in an argument, `"key.entry"` for one entry of a
/// table argument such as `env`.
fn sensitive_values(
    sensitive: &Spanned<toml::Value>,
    values: &BTreeMap<String, (Range<usize>, Spanned<toml::Value>)>,
    source: &str,
) -> Result<Secrets, ArgError> {
    let error = |span: Range<usize>, message: String, hint: Option<String>| ArgError {
        span,
        message,
        hint,
    };
    let arguments: Vec<&str> = values.keys().map(String::as_str).collect();
    let step_has = if arguments.is_empty() {
        "this step has no arguments".to_string()
    } else {
        format!("this step has {}", list(&arguments))
    };
    let expected = || {
        error(
            sensitive.span(),
            "`sensitive` must be an array of this step's argument names, e.g. [\"argv\"] or [\"env.TOKEN\"]"
                .to_string(),
            Some(step_has.clone()),
        )
    };
    let toml::Value::Array(items) = sensitive.get_ref() else {
        return Err(expected());
    };
    let mut secrets = Secrets::default();
    for item in items {
        let toml::Value::String(name) = item else {
            return Err(expected());
        };
        let span = item_span(source, sensitive.span(), name);
        let (key, entry) = match name.split_once('.') {
            Some((key, entry)) => (key, Some(entry)),
            None => (name.as_str(), None),
        };
        let Some((_, argument)) = values.get(key) else {
            return Err(error(
                span,
                format!("`sensitive` names `{key}`, which this step does not have"),
                Some(step_has),
            ));
        };
        let Some(entry) = entry else {
            secrets.add_toml(argument.get_ref());
            continue;
        };
        let toml::Value::Table(table) = argument.get_ref() else {
            return Err(error(
                span,
                format!("`sensitive` names `{name}`, but `{key}` is not a table"),
                Some(format!("name the whole argument: \"{key}\"")),
            ));
        };
        let Some(value) = table.get(entry) else {
            let entries: Vec<&str> = table.keys().map(String::as_str).collect();
            return Err(error(
                span,
                format!("`sensitive` names `{name}`, but `{key}` has no entry `{entry}`"),
                Some(format!("`{key}` has {}", list(&entries))),
            ));
        };
        secrets.add_toml(value);
    }
    Ok(secrets)
}

/// Where `"name"` (or `'name'`) is written inside `array` in `source`; the
/// whole array when it cannot be found (an escaped or multi-line string).
fn item_span(source: &str, array: Range<usize>, name: &str) -> Range<usize> {
    let Some(text) = source.get(array.clone()) else {
        return array;
    };
    ['"', '\'']
        .iter()
        .find_map(|quote| {
            let quoted = format!("{quote}{name}{quote}");
            text.find(&quoted)
                .map(|at| array.start + at..array.start + at + quoted.len())
        })
        .unwrap_or(array)
}

/// What facility `name`, which accepts `accepted`, takes: for hints.
fn valid_args(name: &str, accepted: &[&str]) -> String {
    let mut all: Vec<&str> = accepted.to_vec();
    all.extend(COMMON_KEYS.iter().filter(|k| **k != "facility"));
    format!("`{name}` takes {}", list(&all))
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Plan, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("poem.txt"), "roses\n").unwrap();
        Plan::parse(source, Path::new("cfg/cattle.toml"), dir.path())
    }

    #[test]
    fn parses_steps_in_order_with_attempts() {
        let plan = parse(
            r#"
# comments are allowed
[[step]]
facility = "make_dir"
path = "/var/poems"

[[step]]
facility = "unlink"   # trailing comment
path = "/tmp/x"
attempts = 5
"#,
        )
        .unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[0].name, "make_dir");
        assert_eq!(plan.steps[0].attempts, DEFAULT_ATTEMPTS);
        assert_eq!(plan.steps[0].line, 3);
        assert_eq!(plan.steps[1].name, "unlink");
        assert_eq!(plan.steps[1].attempts, 5);
        assert_eq!(plan.steps[1].number, 2);
    }

    #[test]
    fn unknown_facility_names_line_column_and_lists_valid_ones() {
        let err = parse("[[step]]\nfacility = \"make_dri\"\npath = \"/x\"\n").unwrap_err();
        assert_eq!(err.position, Some((2, 12)));
        assert_eq!(err.message, "unknown facility `make_dri`");
        let hint = err.hint.unwrap();
        for name in facilities::names() {
            assert!(hint.contains(&format!("`{name}`")), "{hint}");
        }
    }

    #[test]
    fn unknown_argument_points_at_the_key_and_lists_valid_ones() {
        let err =
            parse("[[step]]\nfacility = \"chmod\"\npath = \"/x\"\nmod = \"0644\"\n").unwrap_err();
        assert_eq!(err.position, Some((4, 1)));
        assert_eq!(err.message, "unknown argument `mod` for facility `chmod`");
        assert_eq!(
            err.hint.as_deref(),
            Some("`chmod` takes `path`, `mode`, `attempts`, `timeout`, `sensitive`")
        );
    }

    #[test]
    fn missing_argument_points_at_the_step() {
        let err =
            parse("\n[[step]]\nfacility = \"install_file\"\nsource = \"poem.txt\"\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(2));
        assert_eq!(
            err.message,
            "step `install_file` is missing argument `dest`"
        );
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let err = parse("[[step]]\nfacility = \"make_dir\"\npath = 42\n").unwrap_err();
        assert_eq!(err.position, Some((3, 8)));
        assert_eq!(err.message, "argument `path` must be a string, not integer");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse("[[step]]\nfacility = \"make_dir\npath = \"/x\"\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(2));
        let shown = err.to_string();
        assert!(shown.starts_with("cfg/cattle.toml:2:"), "{shown}");
    }

    #[test]
    fn unknown_top_level_key_is_refused() {
        let err =
            parse("steps = 1\n[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(1));
        assert!(
            err.message.contains("unknown field `steps`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn empty_file_is_refused() {
        let err = parse("# nothing\n").unwrap_err();
        assert!(err.message.starts_with("no steps"), "{}", err.message);
    }

    #[test]
    fn timeout_is_a_duration_per_step() {
        let plan = parse(
            "[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\ntimeout = \"90s\"\n\
             [[step]]\nfacility = \"make_dir\"\npath = \"/y\"\n",
        )
        .unwrap();
        assert_eq!(plan.steps[0].timeout, Duration::from_secs(90));
        assert_eq!(plan.steps[1].timeout, DEFAULT_TIMEOUT);
        for bad in ["\"0s\"", "\"soon\"", "90", "\"8days\""] {
            let err = parse(&format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\ntimeout = {bad}\n"
            ))
            .unwrap_err();
            assert_eq!(err.position.map(|p| p.0), Some(4), "{bad}");
            assert!(
                err.message.starts_with("`timeout` must be a duration"),
                "{bad}"
            );
        }
    }

    #[test]
    fn attempts_out_of_range_is_refused() {
        for bad in ["0", "101", "\"3\"", "-1"] {
            let err = parse(&format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\nattempts = {bad}\n"
            ))
            .unwrap_err();
            assert_eq!(err.position.map(|p| p.0), Some(4), "{bad}");
        }
    }

    #[test]
    fn relative_path_is_refused_with_a_hint() {
        let err = parse("[[step]]\nfacility = \"make_dir\"\npath = \"var/poems\"\n").unwrap_err();
        assert_eq!(
            err.message,
            "argument `path` must be an absolute path, not `var/poems`"
        );
        assert_eq!(err.position, Some((3, 8)));
    }

    #[test]
    fn sensitive_names_arguments_or_table_entries_and_collects_their_strings() {
        let plan = parse(
            "[[step]]\nfacility = \"command\"\nargv = [\"true\", \"one\"]\n\
             env = { A = \"two\", B = \"shown\" }\nsensitive = [\"argv\", \"env.A\"]\n\
             [[step]]\nfacility = \"make_dir\"\npath = \"/three\"\nsensitive = [\"path\"]\n\
             [[step]]\nfacility = \"make_dir\"\npath = \"/shown\"\nsensitive = []\n",
        )
        .unwrap();
        assert_eq!(
            plan.secrets.redact("true one two shown /three"),
            "[sensitive] [sensitive] [sensitive] shown [sensitive]"
        );
    }

    #[test]
    fn sensitive_naming_what_the_step_does_not_have_is_an_error_at_that_name() {
        let step = "[[step]]\nfacility = \"command\"\nargv = [\"true\"]\nenv = { TOKEN = \"x\" }\n";
        let err = parse(&format!("{step}sensitive = [\"argv\", \"envv\"]\n")).unwrap_err();
        assert_eq!(err.position, Some((5, 22)));
        assert_eq!(
            err.message,
            "`sensitive` names `envv`, which this step does not have"
        );
        assert_eq!(err.hint.as_deref(), Some("this step has `argv`, `env`"));
        assert!(
            err.to_string().starts_with("cfg/cattle.toml:5:22: "),
            "{err}"
        );

        let err = parse(&format!("{step}sensitive = [\"env.TOKN\"]\n")).unwrap_err();
        assert_eq!(err.position, Some((5, 14)));
        assert_eq!(
            err.message,
            "`sensitive` names `env.TOKN`, but `env` has no entry `TOKN`"
        );
        assert_eq!(err.hint.as_deref(), Some("`env` has `TOKEN`"));

        let err = parse(&format!("{step}sensitive = [\"argv.0\"]\n")).unwrap_err();
        assert_eq!(
            err.message,
            "`sensitive` names `argv.0`, but `argv` is not a table"
        );

        // Common keys are not arguments.
        let err = parse(&format!("{step}sensitive = [\"timeout\"]\n")).unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(5));
        assert!(err.message.contains("`timeout`, which this step"), "{err}");

        for bad in ["\"argv\"", "[1]", "{ argv = true }"] {
            let err = parse(&format!("{step}sensitive = {bad}\n")).unwrap_err();
            assert_eq!(err.position, Some((5, 13)), "{bad}");
            assert!(
                err.message.starts_with("`sensitive` must be an array"),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_argument_error_does_not_quote_a_sensitive_value() {
        let err = parse(
            "[[step]]\nfacility = \"make_dir\"\npath = \"var/s3cret\"\nsensitive = [\"path\"]\n",
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "argument `path` must be an absolute path, not `[sensitive]`"
        );
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn string_arguments_use_the_hosts_variables_and_defaults_give_way() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            "sensitive_vars = [\"token\"]\n[vars]\nport = 80\nname = \"app\"\n\
             [[step]]\nfacility = \"command\"\nargv = [\"serve\", \"{{ name }}:{{ port }}\"]\n\
             env = { TOKEN = \"{{ token }}\" }\n",
            Path::new("cfg/cattle.toml"),
            dir.path(),
        )
        .unwrap();
        assert!(config.uses_vars());
        let mut vars = config.defaults().clone();
        vars.set("port", 8080.into());
        vars.set("token", "s3cr3t".into());
        let plan = config.plan(&vars).unwrap();
        assert_eq!(
            plan.steps[0].arguments["argv"],
            toml::Value::Array(vec!["serve".into(), "app:8080".into()])
        );
        // A sensitive variable's value is a secret of the plan wherever it ends up.
        assert_eq!(plan.secrets.redact("TOKEN=s3cr3t"), "TOKEN=[sensitive]");

        let err = config.plan(config.defaults()).unwrap_err();
        assert_eq!(err.position, Some((8, 7)));
        assert_eq!(err.message, "argument `env`: undefined variable `token`");
        assert!(err.hint.unwrap().contains("--var name=value"));
    }

    #[test]
    fn a_config_without_variables_uses_none_and_names_are_checked() {
        assert!(
            !Config::parse(
                "[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\n",
                Path::new("c"),
                Path::new("/")
            )
            .unwrap()
            .uses_vars()
        );
        for (bad, message) in [
            ("[vars]\nhost = \"x\"\n", "`host` is every host's own ID"),
            (
                "[vars]\n\"my-var\" = 1\n",
                "`my-var` is not a variable name",
            ),
            (
                "[vars]\nwhen = 1979-05-27\n",
                "variable `when`: a date or time",
            ),
            (
                "sensitive_vars = [\"a b\"]\n",
                "`a b` is not a variable name",
            ),
        ] {
            let err = parse(&format!(
                "{bad}[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\n"
            ))
            .unwrap_err();
            assert!(err.message.starts_with(message), "{bad}: {}", err.message);
            assert!(err.position.is_some(), "{bad}");
        }
    }

    #[test]
    fn missing_steps_file_says_what_a_config_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = Plan::load(dir.path()).unwrap_err();
        assert!(err.message.starts_with("cannot read the steps file"));
        assert!(err.hint.unwrap().contains(STEPS_FILE));
    }
}

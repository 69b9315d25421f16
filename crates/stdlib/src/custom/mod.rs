//! Custom facilities: a program shipped in the config directory as
//! `facilities/NAME`, in any language, that steps name like a built-in.
//!
//! The steps parser finds the program here (`Registry`), reads its optional
//! argument schema `facilities/NAME.toml` (`schema`) and checks each step
//! against it; on the host, [`protocol`] runs the program with a verb and a
//! JSON request and reads its exit status. The whole contract, for authors of
//! such programs, is docs/custom-facilities.md.

pub mod protocol;
mod schema;

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use toml::Spanned;

use crate::args::{ArgError, list};
use crate::facility::Facility;
use crate::steps::PlanError;

use protocol::CustomFacility;
use schema::Schema;

/// The directory of the config directory that holds custom facilities.
pub const DIR: &str = "facilities";

/// What a facility's name may be, built-in or custom, and an argument's in a schema.
pub(crate) const NAME_RULE: &str = "names are lower-case letters, digits and `_`, start with a letter, and are at most 64 characters";

/// Whether `name` follows [`NAME_RULE`].
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A custom facility found in the config directory.
#[derive(Debug)]
pub(crate) struct Definition {
    pub name: String,
    /// `None`: no `facilities/NAME.toml`; any arguments are passed on.
    pub schema: Option<Schema>,
}

impl Definition {
    /// The arguments steps may give, when the schema says.
    pub(crate) fn accepted(&self) -> Option<Vec<&str>> {
        self.schema.as_ref().map(Schema::names)
    }
}

/// Why a step's facility cannot be used.
#[derive(Debug)]
pub(crate) enum LookupError {
    /// About the step's `facility = ` value.
    Step {
        message: String,
        hint: Option<String>,
    },
    /// In the schema file, which the error names.
    Schema(PlanError),
}

/// The custom facilities of one config directory, each read once however
/// many steps use it.
#[derive(Debug)]
pub(crate) struct Registry<'a> {
    config_dir: &'a Path,
    found: BTreeMap<String, Rc<Definition>>,
}

impl<'a> Registry<'a> {
    pub(crate) fn new(config_dir: &'a Path) -> Self {
        Registry {
            config_dir,
            found: BTreeMap::new(),
        }
    }

    fn program(&self, name: &str) -> PathBuf {
        self.config_dir.join(DIR).join(name)
    }

    /// The custom facility `name`: an executable regular file
    /// `facilities/NAME`, with its schema if it has one.
    pub(crate) fn lookup(&mut self, name: &str) -> Result<Rc<Definition>, LookupError> {
        if let Some(found) = self.found.get(name) {
            return Ok(found.clone());
        }
        let shown = format!("{DIR}/{name}");
        let step_error =
            |message: String, hint: Option<String>| LookupError::Step { message, hint };
        if !is_valid_name(name) {
            return Err(step_error(
                format!("unknown facility `{name}`"),
                Some(self.valid_hint(None)),
            ));
        }
        match std::fs::symlink_metadata(self.config_dir.join(DIR)) {
            Ok(meta) if meta.is_symlink() => {
                return Err(step_error(
                    format!(
                        "facility `{name}`: `{DIR}` in the config directory is a symbolic link"
                    ),
                    Some(format!(
                        "bundles hold only regular files and directories: make `{DIR}` a real directory"
                    )),
                ));
            }
            _ => {}
        }
        let path = self.program(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(step_error(
                    format!("unknown facility `{name}`"),
                    Some(self.valid_hint(Some(name))),
                ));
            }
            Err(err) => {
                return Err(step_error(
                    format!("facility `{name}`: cannot inspect `{shown}`: {err}"),
                    None,
                ));
            }
        };
        if meta.is_symlink() {
            return Err(step_error(
                format!("facility `{name}`: `{shown}` is a symbolic link"),
                Some(format!(
                    "bundles hold only regular files: copy the program itself to `{shown}`"
                )),
            ));
        }
        if !meta.is_file() {
            return Err(step_error(
                format!("facility `{name}`: `{shown}` is not a regular file"),
                Some(format!(
                    "a custom facility is a program: an executable file `{shown}`"
                )),
            ));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(step_error(
                format!("facility `{name}`: `{shown}` is not executable"),
                Some(format!("make it executable: `chmod +x {shown}`")),
            ));
        }
        let schema = self.schema(name)?;
        let definition = Rc::new(Definition {
            name: name.to_string(),
            schema,
        });
        self.found.insert(name.to_string(), definition.clone());
        Ok(definition)
    }

    /// `facilities/NAME.toml`, if there is one.
    fn schema(&self, name: &str) -> Result<Option<Schema>, LookupError> {
        let file = self.config_dir.join(DIR).join(format!("{name}.toml"));
        let error = |message: String, hint: Option<String>| {
            LookupError::Schema(PlanError {
                file: file.clone(),
                position: None,
                message,
                hint,
            })
        };
        match std::fs::symlink_metadata(&file) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(error(format!("cannot inspect the schema: {err}"), None)),
            Ok(meta) if !meta.is_file() => {
                return Err(error(
                    "the schema is not a regular file".to_string(),
                    Some("bundles hold only regular files and directories: copy the file itself here".to_string()),
                ));
            }
            Ok(_) => {}
        }
        let source = std::fs::read_to_string(&file)
            .map_err(|err| error(format!("cannot read the schema: {err}"), None))?;
        Schema::parse(&source, &file)
            .map(Some)
            .map_err(LookupError::Schema)
    }

    /// When a step names built-in `name`: an error if `facilities/NAME` exists
    /// too. Built-in names are reserved, so that what a step runs never
    /// depends on which of the two would win.
    pub(crate) fn clash(&self, name: &str) -> Option<LookupError> {
        let shown = format!("{DIR}/{name}");
        std::fs::symlink_metadata(self.program(name))
            .is_ok()
            .then(|| LookupError::Step {
                message: format!(
                    "`{name}` is a built-in facility, and the config directory has a custom one of the same name, `{shown}`"
                ),
                hint: Some(format!(
                    "built-in names are reserved: rename `{shown}` (and its schema, if any) and name the new name in the steps"
                )),
            })
    }

    /// The hint for an unknown facility: the built-ins, the custom ones this
    /// config has, and where the custom one `name` would be.
    fn valid_hint(&self, name: Option<&str>) -> String {
        let mut hint = format!("valid facilities: {}", list(&crate::facilities::names()));
        let custom = self.available();
        if !custom.is_empty() {
            let custom: Vec<&str> = custom.iter().map(String::as_str).collect();
            hint.push_str(&format!("; custom ones in this config: {}", list(&custom)));
        }
        match name {
            Some(name) => hint.push_str(&format!(
                "; a custom facility `{name}` is an executable file `{DIR}/{name}` in the config directory"
            )),
            None => hint.push_str(&format!("; {NAME_RULE}")),
        }
        hint
    }

    /// The custom facilities in `facilities/`: executable regular files with
    /// valid names, sorted.
    fn available(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.config_dir.join(DIR)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name().into_string().ok()?;
                let meta = std::fs::symlink_metadata(entry.path()).ok()?;
                (is_valid_name(&name)
                    && crate::facilities::lookup(&name).is_none()
                    && meta.is_file()
                    && meta.permissions().mode() & 0o111 != 0)
                    .then_some(name)
            })
            .collect();
        names.sort();
        names
    }
}

/// Build the step of custom facility `definition` from its arguments
/// `values` (only declared ones, when it has a schema), spanning `step_span`:
/// the schema's checks, then the arguments as JSON with the defaults added.
pub(crate) fn build(
    definition: &Definition,
    values: &BTreeMap<String, (Range<usize>, Spanned<toml::Value>)>,
    step_span: &Range<usize>,
) -> Result<Box<dyn Facility>, ArgError> {
    let name = &definition.name;
    let mut args = serde_json::Map::new();
    if let Some(schema) = &definition.schema {
        schema.check(name, values, step_span)?;
        for arg in &schema.args {
            if let Some(default) = &arg.default
                && !values.contains_key(&arg.name)
            {
                let value = to_json(default).expect("a default is checked against its type");
                args.insert(arg.name.clone(), value);
            }
        }
    }
    for (key, (_, value)) in values {
        let json = to_json(value.get_ref()).ok_or_else(|| ArgError {
            span: value.span(),
            message: format!(
                "argument `{key}` holds a number that is not finite, which JSON cannot carry"
            ),
            hint: None,
        })?;
        args.insert(key.clone(), json);
    }
    let description = definition
        .schema
        .as_ref()
        .and_then(|schema| schema.summary.clone())
        .unwrap_or_else(|| format!("custom facility {DIR}/{name}"));
    Ok(Box::new(CustomFacility {
        name: name.clone(),
        args: serde_json::Value::Object(args),
        description,
    }))
}

/// `value` as JSON: dates and times as their TOML text; `None` for a float
/// that is infinite or not a number.
fn to_json(value: &toml::Value) -> Option<serde_json::Value> {
    Some(match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(n) => serde_json::Value::from(*n),
        toml::Value::Float(f) => serde_json::Value::Number(serde_json::Number::from_f64(*f)?),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Option<_>>()?)
        }
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .iter()
                .map(|(k, v)| Some((k.clone(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::protocol::{EXIT_PERMANENT, EXIT_REBOOT_NEEDED, EXIT_WOULD_CHANGE};
    use super::*;
    use crate::backoff::Backoff;
    use crate::facility::Environment;
    use crate::process::write_fake_program;
    use crate::runner::{Event, Observer, Outcome, Start, run};
    use crate::steps::Plan;
    use std::time::{Duration, Instant};

    /// Every log line of a run, every event's fields, and the waits.
    #[derive(Default)]
    struct Recorder {
        lines: Vec<String>,
        fields: Vec<String>,
        slept: Vec<Duration>,
    }

    impl Observer for Recorder {
        fn event(&mut self, event: &Event<'_>) {
            self.lines.push(event.to_string());
            self.fields.push(format!("{event:?}"));
        }
        fn sleep(&mut self, delay: Duration) {
            self.slept.push(delay);
        }
    }

    impl Recorder {
        fn has(&self, line: &str) -> bool {
            self.lines.iter().any(|l| l == line)
        }
        fn count(&self, part: &str) -> usize {
            self.lines.iter().filter(|l| l.contains(part)).count()
        }
    }

    /// A config directory with `programs` (name, shell body) in `facilities/`.
    fn config(programs: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        for (name, body) in programs {
            write_fake_program(&dir.path().join(DIR), name, body);
        }
        dir
    }

    fn parse(dir: &Path, steps: &str) -> Result<Plan, PlanError> {
        Plan::parse(steps, &dir.join("cattle.toml"), dir)
    }

    fn run_in(dir: &Path, environment: &Environment, steps: &str) -> (Outcome, Recorder) {
        let plan = parse(dir, steps).unwrap_or_else(|err| panic!("{err}"));
        let mut recorder = Recorder::default();
        let outcome = run(
            &plan,
            environment,
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut recorder,
        );
        (outcome, recorder)
    }

    /// A facility whose `check` and `apply` exit with the given statuses;
    /// `apply` leaves a file `applied` in the config directory.
    fn answering(check: i32, apply: i32) -> String {
        format!(
            "case \"$1\" in\n\
             describe) echo 'answers as told' ;;\n\
             check) echo 'checking'; exit {check} ;;\n\
             apply) echo 'applying' >&2; touch applied; exit {apply} ;;\n\
             *) exit 64 ;;\n\
             esac\n"
        )
    }

    fn run_answering(check: i32, apply: i32, attempts: u32) -> (Outcome, Recorder, bool) {
        let dir = config(&[("answers", &answering(check, apply))]);
        let (outcome, recorder) = run_in(
            dir.path(),
            &Environment::new(dir.path()),
            &format!("[[step]]\nfacility = \"answers\"\nattempts = {attempts}\n"),
        );
        (outcome, recorder, dir.path().join("applied").exists())
    }

    #[test]
    fn check_exiting_0_is_in_state_and_apply_does_not_run() {
        let (outcome, rec, applied) = run_answering(0, 0, 3);
        assert_eq!(outcome, Outcome::Done);
        assert!(
            rec.has("Step 1 unchanged: already in place"),
            "{:#?}",
            rec.lines
        );
        assert!(!applied);
        assert!(rec.has("step 1: | checking"), "{:#?}", rec.lines);
        assert!(
            rec.has("step 1: | describe: answers as told"),
            "{:#?}",
            rec.lines
        );
        assert!(
            rec.has("Running step 1/1: answers (custom facility facilities/answers)"),
            "{:#?}",
            rec.lines
        );
    }

    #[test]
    fn check_exiting_100_runs_apply_and_apply_exiting_0_is_changed() {
        let (outcome, rec, applied) = run_answering(EXIT_WOULD_CHANGE, 0, 3);
        assert_eq!(outcome, Outcome::Done);
        assert!(applied);
        assert!(rec.has("Step 1 changed"), "{:#?}", rec.lines);
        assert!(rec.has("step 1: | stderr: applying"), "{:#?}", rec.lines);
    }

    #[test]
    fn apply_exiting_194_asks_for_a_reboot() {
        let (outcome, rec, applied) = run_answering(EXIT_WOULD_CHANGE, EXIT_REBOOT_NEEDED, 3);
        assert_eq!(outcome, Outcome::RebootRequested { step: 1 });
        assert!(applied);
        assert!(
            rec.has("step 1: | `facilities/answers apply` asks for a reboot (exit status 194)"),
            "{:#?}",
            rec.lines
        );
    }

    #[test]
    fn exit_78_fails_the_step_at_once_after_one_attempt() {
        for (check, apply, verb) in [
            (EXIT_PERMANENT, 0, "check"),
            (EXIT_WOULD_CHANGE, EXIT_PERMANENT, "apply"),
        ] {
            let (outcome, rec, _) = run_answering(check, apply, 3);
            let expected =
                format!("`facilities/answers {verb}` exited with status 78 (failed, do not retry)");
            let Outcome::Failed { step: 1, error } = &outcome else {
                panic!("{outcome:?}");
            };
            assert!(error.starts_with(&expected), "{error}");
            assert_eq!(rec.count("failed: "), 1, "{:#?}", rec.lines);
            assert!(
                rec.lines
                    .iter()
                    .any(|l| l.starts_with("step 1: attempt 1 of 3 failed: ")
                        && l.ends_with("; a retry cannot help")),
                "{:#?}",
                rec.lines
            );
            assert!(rec.slept.is_empty(), "{verb}: {:?}", rec.slept);
            assert!(rec.has("Step 1 failed"), "{:#?}", rec.lines);
        }
        // The last line of stderr is the reason.
        let dir = config(&[(
            "refuses",
            "[ \"$1\" = describe ] && { echo refuses; exit 0; }\necho 'no such user: bob' >&2; exit 78",
        )]);
        let (outcome, _) = run_in(
            dir.path(),
            &Environment::new(dir.path()),
            "[[step]]\nfacility = \"refuses\"\n",
        );
        assert_eq!(
            outcome,
            Outcome::Failed {
                step: 1,
                error: "`facilities/refuses check` exited with status 78 (failed, do not retry): \
                        no such user: bob"
                    .to_string()
            }
        );
    }

    #[test]
    fn any_other_status_or_a_signal_fails_the_attempt_and_is_retried() {
        let (outcome, rec, applied) = run_answering(EXIT_WOULD_CHANGE, 1, 2);
        assert!(applied);
        assert_eq!(
            outcome,
            Outcome::Failed {
                step: 1,
                error: "`facilities/answers apply` exited with status 1: applying".to_string()
            }
        );
        assert_eq!(rec.count("failed: "), 2, "{:#?}", rec.lines);
        assert_eq!(rec.slept, [Duration::from_secs(1)]);
        assert!(rec.has("Step 1 failed on attempt 2"), "{:#?}", rec.lines);

        let dir = config(&[(
            "killed",
            "[ \"$1\" = describe ] && { echo killed; exit 0; }\nkill -9 $$",
        )]);
        let (outcome, rec) = run_in(
            dir.path(),
            &Environment::new(dir.path()),
            "[[step]]\nfacility = \"killed\"\nattempts = 2\n",
        );
        assert_eq!(
            outcome,
            Outcome::Failed {
                step: 1,
                error: "`facilities/killed check` was killed by signal SIGKILL".to_string()
            }
        );
        assert_eq!(rec.slept.len(), 1, "{:#?}", rec.lines);
    }

    #[test]
    fn a_status_out_of_its_place_is_a_failure_that_says_what_the_protocol_expects() {
        let (outcome, _, _) = run_answering(EXIT_WOULD_CHANGE, EXIT_WOULD_CHANGE, 1);
        let Outcome::Failed { error, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(
            error,
            "`facilities/answers apply` exited with status 100, which is `check`'s \
             \"would change\" in protocol 1: `apply` exits 0 when it changed the host, \
             194 when it did and the host must reboot, 78 when it failed and a retry \
             cannot help, any other status when it failed"
        );
        let (outcome, _, applied) = run_answering(EXIT_REBOOT_NEEDED, 0, 1);
        assert!(!applied);
        let Outcome::Failed { error, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            error.starts_with(
                "`facilities/answers check` exited with status 194, which is `apply`'s \
                 \"changed, reboot needed\" in protocol 1: `check` exits 0 when the state \
                 is in place, 100 when `apply` must run"
            ),
            "{error}"
        );
    }

    #[test]
    fn describe_must_print_one_line_and_succeed() {
        for (body, error) in [
            (
                "[ \"$1\" = describe ] && { echo one; echo two; exit 0; }\nexit 0",
                "`facilities/talks describe` printed 2 lines on stdout; protocol 1 wants exactly one",
            ),
            (
                "[ \"$1\" = describe ] && exit 0\nexit 0",
                "`facilities/talks describe` printed 0 lines on stdout; protocol 1 wants exactly one",
            ),
            (
                "[ \"$1\" = describe ] && { echo 'broken' >&2; exit 3; }\nexit 0",
                "`facilities/talks describe` exited with status 3: broken",
            ),
            (
                "[ \"$1\" = describe ] && exit 100\nexit 0",
                "`facilities/talks describe` exited with status 100, which is `check`'s",
            ),
        ] {
            let dir = config(&[("talks", body)]);
            let (outcome, _) = run_in(
                dir.path(),
                &Environment::new(dir.path()),
                "[[step]]\nfacility = \"talks\"\nattempts = 1\n",
            );
            let Outcome::Failed { error: got, .. } = &outcome else {
                panic!("{outcome:?}");
            };
            assert!(got.starts_with(error), "{got}");
        }
    }

    /// Where a program writes the request it got for each verb.
    const RECORDS_REQUESTS: &str = "cat > \"request-$1.json\"\n\
         case \"$1\" in describe) echo described ;; check) exit 100 ;; esac\nexit 0";

    fn request(dir: &Path, verb: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(format!("request-{verb}.json"))).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "one line: {text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_request_on_stdin_has_the_verb_the_arguments_with_defaults_and_the_context() {
        let dir = config(&[("records", RECORDS_REQUESTS)]);
        std::fs::write(
            dir.path().join("facilities/records.toml"),
            "[args.name]\ntype = \"string\"\nrequired = true\n\
             [args.count]\ntype = \"integer\"\ndefault = 2\n\
             [args.tags]\ntype = \"array\"\n[args.extra]\ntype = \"table\"\n",
        )
        .unwrap();
        let mut environment = Environment::new(dir.path());
        environment.env = vec![
            (crate::runner::HOST_ID_ENV.to_string(), "web-1".to_string()),
            (
                crate::runner::EXECUTION_ID_ENV.to_string(),
                "0190-abc".to_string(),
            ),
        ];
        let (outcome, rec) = run_in(
            dir.path(),
            &environment,
            "[[step]]\nfacility = \"records\"\nname = \"x\"\n\
             [[step]]\nfacility = \"records\"\nname = \"a \\\"quoted\\\" name\"\n\
             tags = [\"a\", 1, true]\nextra = { when = 1979-05-27T07:32:00Z, ratio = 0.5 }\n",
        );
        assert_eq!(outcome, Outcome::Done, "{:#?}", rec.lines);
        // Step 2's requests, written last.
        for verb in ["describe", "check", "apply"] {
            assert_eq!(
                request(dir.path(), verb),
                serde_json::json!({
                    "protocol": 1,
                    "verb": verb,
                    "facility": "records",
                    "args": {
                        "name": "a \"quoted\" name",
                        "count": 2,
                        "tags": ["a", 1, true],
                        "extra": { "when": "1979-05-27T07:32:00Z", "ratio": 0.5 },
                    },
                    "context": {
                        "host": "web-1",
                        "execution": "0190-abc",
                        "step": 2,
                        "attempt": 1,
                        "check_mode": false,
                    },
                }),
                "{verb}"
            );
        }

        // As `cattle apply` runs it: the machine's name, no execution, and check mode passed on.
        let mut environment = Environment::new(dir.path());
        environment.check_mode = true;
        let (outcome, _) = run_in(
            dir.path(),
            &environment,
            "[[step]]\nfacility = \"records\"\nname = \"x\"\ncount = 7\n",
        );
        // Only the check ran, and it said the step would change.
        assert_eq!(
            outcome,
            Outcome::Checked {
                would_change: vec![1],
                unknown: Vec::new()
            }
        );
        let got = request(dir.path(), "check");
        let host = nix::unistd::gethostname().unwrap();
        assert_eq!(got["context"]["host"], host.to_str().unwrap());
        assert_eq!(got["context"]["execution"], serde_json::Value::Null);
        assert_eq!(got["context"]["check_mode"], true);
        assert_eq!(got["args"], serde_json::json!({"name": "x", "count": 7}));
    }

    #[test]
    fn a_large_request_reaches_a_program_that_reads_it_and_one_that_does_not_read_is_no_error() {
        let big = "x".repeat(3 * 1024 * 1024);
        let steps = format!("[[step]]\nfacility = \"big\"\nblob = \"{big}\"\ntimeout = \"60s\"\n");
        // Reads all of it, and only then answers.
        let dir = config(&[(
            "big",
            "wc -c > \"size-$1\"\n[ \"$1\" = describe ] && echo big\nexit 0",
        )]);
        let started = Instant::now();
        let (outcome, rec) = run_in(dir.path(), &Environment::new(dir.path()), &steps);
        assert_eq!(outcome, Outcome::Done, "{:#?}", rec.lines);
        let size: usize = std::fs::read_to_string(dir.path().join("size-check"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(size > big.len() && size < big.len() + 1024, "{size}");

        // Never reads it, exits at once: no hang, no failure.
        let dir = config(&[("big", "[ \"$1\" = describe ] && echo big\nexit 0")]);
        let (outcome, rec) = run_in(dir.path(), &Environment::new(dir.path()), &steps);
        assert_eq!(outcome, Outcome::Done, "{:#?}", rec.lines);
        assert!(rec.has("Step 1 unchanged: already in place"));
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn the_steps_timeout_kills_the_program_and_its_process_group() {
        // The check starts a child of its own and hangs without reading its input.
        let dir = config(&[(
            "hangs",
            "[ \"$1\" = describe ] && { echo hangs; exit 0; }\n\
             sleep 60 & echo $! > child.pid\nsleep 60",
        )]);
        let started = Instant::now();
        let (outcome, rec) = run_in(
            dir.path(),
            &Environment::new(dir.path()),
            "[[step]]\nfacility = \"hangs\"\ntimeout = \"1s\"\nattempts = 1\n",
        );
        assert_eq!(
            outcome,
            Outcome::Failed {
                step: 1,
                error:
                    "`facilities/hangs check` timed out after 1s; killed it and its process group"
                        .to_string()
            },
            "{:#?}",
            rec.lines
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        crate::facility::testing::assert_gone_soon(&dir.path().join("child.pid"));
    }

    #[test]
    fn a_sensitive_argument_reaches_the_program_but_the_log_shows_the_marker() {
        const SECRET: &str = "hunter2-custom-6502";
        // Escaped in the JSON request: the escaped form is hidden too.
        const QUOTED: &str = r#"pa"ss\word"#;
        // Prints its whole request on stdout and the secret on stderr.
        let dir = config(&[(
            "leaky",
            "request=$(cat)\n\
             show() { printf '%s\\n' \"$request\"; }\n\
             [ \"$1\" = describe ] && { show | sed -n 's/.*\"token\":\"\\([^\"]*\\)\".*/token \\1/p'; exit 0; }\n\
             show\n\
             show | grep -q hunter2 && echo got-it > got\n\
             echo \"token is $(show | sed -n 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/p')\" >&2\n\
             exit 3",
        )]);
        let (outcome, rec) = run_in(
            dir.path(),
            &Environment::new(dir.path()),
            &format!(
                "[[step]]\nfacility = \"leaky\"\ntoken = \"{SECRET}\"\nuser = \"ann\"\n\
                 other = '{QUOTED}'\nsensitive = [\"token\", \"other\"]\nattempts = 1\n"
            ),
        );
        assert!(
            dir.path().join("got").exists(),
            "the program gets the real value"
        );
        for text in rec.lines.iter().chain(&rec.fields) {
            for shown in [SECRET, "pa\\\"ss", "ss\\\\word", "pa\"ss"] {
                assert!(!text.contains(shown), "{shown} shown in: {text}");
            }
        }
        assert!(
            rec.has("step 1: | describe: token [sensitive]"),
            "{:#?}",
            rec.lines
        );
        assert!(
            rec.lines
                .iter()
                .any(|l| l.starts_with("step 1: | {\"protocol\":1")
                    && l.contains("\"token\":\"[sensitive]\"")
                    && l.contains("\"other\":\"[sensitive]\"")
                    && l.contains("\"user\":\"ann\"")),
            "{:#?}",
            rec.lines
        );
        assert!(
            rec.has("step 1: | stderr: token is [sensitive]"),
            "{:#?}",
            rec.lines
        );
        assert_eq!(
            outcome,
            Outcome::Failed {
                step: 1,
                error: "`facilities/leaky check` exited with status 3: token is [sensitive]"
                    .to_string()
            }
        );
    }

    /// The error `steps` gives in a config with `facilities/` as `setup` leaves it.
    fn error(setup: impl FnOnce(&Path), steps: &str) -> PlanError {
        let dir = config(&[]);
        setup(dir.path());
        parse(dir.path(), steps).unwrap_err()
    }

    fn executable(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_facility_that_is_neither_built_in_nor_an_executable_program_is_refused_at_its_name() {
        let step = "[[step]]\nfacility = \"deploy\"\n";
        let err = error(|dir| executable(&dir.join("facilities/other"), 0o755), step);
        assert_eq!(err.position, Some((2, 12)));
        assert_eq!(err.message, "unknown facility `deploy`");
        let hint = err.hint.unwrap();
        assert!(
            hint.contains("`make_dir`") && hint.contains("`command`"),
            "{hint}"
        );
        assert!(
            hint.contains("custom ones in this config: `other`"),
            "{hint}"
        );
        assert!(
            hint.contains("an executable file `facilities/deploy`"),
            "{hint}"
        );

        let err = error(
            |dir| executable(&dir.join("facilities/deploy"), 0o644),
            step,
        );
        assert_eq!(err.position, Some((2, 12)));
        assert_eq!(
            err.message,
            "facility `deploy`: `facilities/deploy` is not executable"
        );
        assert_eq!(
            err.hint.as_deref(),
            Some("make it executable: `chmod +x facilities/deploy`")
        );

        let err = error(
            |dir| {
                executable(&dir.join("outside"), 0o755);
                std::os::unix::fs::symlink("../outside", dir.join("facilities/deploy")).unwrap();
            },
            step,
        );
        assert_eq!(err.position, Some((2, 12)));
        assert_eq!(
            err.message,
            "facility `deploy`: `facilities/deploy` is a symbolic link"
        );

        let err = error(
            |dir| std::fs::create_dir(dir.join("facilities/deploy")).unwrap(),
            step,
        );
        assert_eq!(
            err.message,
            "facility `deploy`: `facilities/deploy` is not a regular file"
        );

        let err = error(
            |dir| {
                std::fs::remove_dir(dir.join("facilities")).unwrap();
                let real = dir.join("real");
                std::fs::create_dir(&real).unwrap();
                executable(&real.join("deploy"), 0o755);
                std::os::unix::fs::symlink("real", dir.join("facilities")).unwrap();
            },
            step,
        );
        assert!(
            err.message
                .contains("`facilities` in the config directory is a symbolic link"),
            "{err}"
        );

        let err = error(|_| {}, "[[step]]\nfacility = \"../bin/sh\"\n");
        assert_eq!(err.message, "unknown facility `../bin/sh`");
        assert!(err.hint.unwrap().contains(NAME_RULE));

        // An executable for its owner only is a program too (bundles make it 0755).
        let dir = config(&[]);
        executable(&dir.path().join("facilities/deploy"), 0o700);
        assert_eq!(parse(dir.path(), step).unwrap().steps[0].name, "deploy");
    }

    #[test]
    fn a_custom_facility_with_a_built_in_name_is_refused_where_a_step_names_it() {
        let err = error(
            |dir| executable(&dir.join("facilities/command"), 0o755),
            "[[step]]\nfacility = \"make_dir\"\npath = \"/x\"\n\
             [[step]]\nfacility = \"command\"\nargv = [\"true\"]\n",
        );
        assert_eq!(err.position, Some((5, 12)));
        assert_eq!(
            err.message,
            "`command` is a built-in facility, and the config directory has a custom one of the same name, `facilities/command`"
        );
        assert!(err.hint.unwrap().starts_with("built-in names are reserved"));
    }

    fn with_schema(schema: &'static str) -> impl FnOnce(&Path) {
        move |dir: &Path| {
            executable(&dir.join("facilities/greet"), 0o755);
            std::fs::write(dir.join("facilities/greet.toml"), schema).unwrap();
        }
    }

    const GREET: &str = "summary = \"a greeting\"\n\
        [args.name]\ntype = \"string\"\nrequired = true\n\
        [args.loud]\ntype = \"boolean\"\n[args.times]\ntype = \"integer\"\ndefault = 1\n";

    #[test]
    fn steps_are_checked_against_the_schema_where_built_ins_are() {
        let err = error(
            with_schema(GREET),
            "[[step]]\nfacility = \"greet\"\nname = \"ann\"\nnmae = \"bob\"\n",
        );
        assert_eq!(err.position, Some((4, 1)));
        assert_eq!(err.message, "unknown argument `nmae` for facility `greet`");
        assert_eq!(
            err.hint.as_deref(),
            Some("`greet` takes `name`, `loud`, `times`, `attempts`, `timeout`, `sensitive`")
        );
        assert!(err.to_string().contains("cattle.toml:4:1: "), "{err}");

        let err = error(
            with_schema(GREET),
            "\n[[step]]\nfacility = \"greet\"\nloud = true\n",
        );
        assert_eq!(err.position.map(|p| p.0), Some(2));
        assert_eq!(err.message, "step `greet` is missing argument `name`");

        let err = error(
            with_schema(GREET),
            "[[step]]\nfacility = \"greet\"\nname = \"ann\"\nloud = \"true\"\n",
        );
        assert_eq!(err.position, Some((4, 8)));
        assert_eq!(
            err.message,
            "argument `loud` must be `true` or `false`, not string"
        );
        assert_eq!(
            err.hint.as_deref(),
            Some("write `loud = true`, without quotes")
        );

        let err = error(
            with_schema(GREET),
            "[[step]]\nfacility = \"greet\"\nname = 7\nsensitive = [\"name\"]\n",
        );
        assert_eq!(err.position, Some((3, 8)));
        assert_eq!(err.message, "argument `name` must be a string, not integer");

        // The common keys work as on any step.
        let dir = config(&[]);
        with_schema(GREET)(dir.path());
        let plan = parse(
            dir.path(),
            "[[step]]\nfacility = \"greet\"\nname = \"ann\"\nattempts = 5\ntimeout = \"2m\"\nsensitive = [\"name\"]\n",
        )
        .unwrap();
        assert_eq!(plan.steps[0].attempts, 5);
        assert_eq!(plan.steps[0].timeout, Duration::from_secs(120));
        assert_eq!(plan.steps[0].facility.describe(), "a greeting");
        assert_eq!(plan.secrets.redact("hi ann"), "hi [sensitive]");
    }

    #[test]
    fn an_invalid_schema_is_an_error_in_that_file() {
        let err = error(
            with_schema("[args.name]\ntype = \"text\"\n"),
            "[[step]]\nfacility = \"greet\"\nname = \"ann\"\n",
        );
        assert!(err.file.ends_with("facilities/greet.toml"), "{err}");
        assert_eq!(err.position, Some((2, 8)));
        assert_eq!(err.message, "argument `name` has unknown type `text`");
        assert!(
            err.to_string().contains("facilities/greet.toml:2:8: "),
            "{err}"
        );
    }

    #[test]
    fn without_a_schema_any_arguments_are_passed_on() {
        let dir = config(&[]);
        executable(&dir.path().join("facilities/greet"), 0o755);
        let plan = parse(
            dir.path(),
            "[[step]]\nfacility = \"greet\"\nanything = { at = [\"all\"] }\nn = 1\n",
        )
        .unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "custom facility facilities/greet"
        );
        let debug = format!("{:?}", plan.steps[0].facility);
        assert!(
            debug.contains("2 arguments") && !debug.contains("all"),
            "{debug}"
        );
        let err = parse(dir.path(), "[[step]]\nfacility = \"greet\"\nx = nan\n").unwrap_err();
        assert_eq!(err.position, Some((3, 5)));
        assert!(err.message.contains("not finite"), "{err}");
    }

    #[test]
    fn built_in_names_follow_the_rule_custom_names_must() {
        for name in crate::facilities::names() {
            assert!(is_valid_name(name), "{name}");
        }
        for bad in ["", "A", "1a", "a-b", "a.b", "é", &"a".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}

/// docs/custom-facilities.md, checked against the code: its example runs, and its
/// request, exit statuses and variables are the ones the code uses.
#[cfg(test)]
mod docs {
    use super::protocol::{
        EXIT_OK, EXIT_PERMANENT, EXIT_REBOOT_NEEDED, EXIT_WOULD_CHANGE, PROTOCOL,
    };
    use super::*;
    use crate::backoff::Backoff;
    use crate::facility::Environment;
    use crate::runner::{self, Event, Observer, Outcome, Start};
    use crate::steps::Plan;
    use std::collections::BTreeSet;

    const DOCS: &str = include_str!("../../../../docs/custom-facilities.md");

    /// The lines of section `## title`.
    fn section(title: &str) -> Vec<&'static str> {
        let heading = format!("## {title}");
        let mut lines = DOCS.lines().skip_while(|l| *l != heading);
        assert!(lines.next().is_some(), "no section `{heading}`");
        lines.take_while(|l| !l.starts_with("## ")).collect()
    }

    /// The code blocks of section `title`: (language, text).
    fn blocks(title: &str) -> Vec<(&'static str, String)> {
        let mut blocks = Vec::new();
        let mut open: Option<(&str, String)> = None;
        for line in section(title) {
            match (&mut open, line.strip_prefix("```")) {
                (None, Some(language)) => open = Some((language, String::new())),
                (Some(_), Some("")) => blocks.push(open.take().unwrap()),
                (Some((_, text)), _) => {
                    text.push_str(line);
                    text.push('\n');
                }
                (None, None) => {}
            }
        }
        blocks
    }

    /// The first cells, between backquotes, of the table rows of section `title`.
    fn first_cells(title: &str) -> BTreeSet<String> {
        section(title)
            .iter()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|row| row.split('`').next().unwrap().to_string())
            .collect()
    }

    /// Write executable `path`, and wait until it can be started: another test
    /// thread forking while it was open for writing makes starting it fail
    /// with "Text file busy" for a moment.
    fn install(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for _ in 0..100 {
            match std::process::Command::new(path)
                .arg("describe")
                .stdin(std::process::Stdio::null())
                .output()
            {
                Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => return,
            }
        }
        panic!("{} stays busy", path.display());
    }

    #[derive(Default)]
    struct Lines(Vec<String>);

    impl Observer for Lines {
        fn event(&mut self, event: &Event<'_>) {
            self.0.push(event.to_string());
        }
        fn sleep(&mut self, _: std::time::Duration) {}
    }

    #[test]
    fn the_minimal_example_in_the_docs_works() {
        let blocks = blocks("A minimal example");
        let [(sh, program), (toml1, schema), (toml2, steps)] = &blocks[..] else {
            panic!("the example has a program, a schema and a steps file: {blocks:#?}");
        };
        assert_eq!([*sh, *toml1, *toml2], ["sh", "toml", "toml"]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        install(&dir.path().join("facilities/greeting"), program);
        std::fs::write(dir.path().join("facilities/greeting.toml"), schema).unwrap();
        let target = dir.path().join("greeting");
        assert!(steps.contains("\"/tmp/greeting\""), "{steps}");
        let steps = steps.replace("/tmp/greeting", target.to_str().unwrap());
        let plan = Plan::parse(&steps, &dir.path().join("cattle.toml"), dir.path()).unwrap();
        assert_eq!(plan.steps[0].facility.describe(), "a file holds a greeting");

        let environment = Environment::new(dir.path());
        for expected in ["Step 1 changed", "Step 1 unchanged: already in place"] {
            let mut lines = Lines::default();
            let outcome = runner::run(
                &plan,
                &environment,
                &Backoff::STEP.without_jitter(),
                &Start::at(1),
                &mut lines,
            );
            assert_eq!(outcome, Outcome::Done, "{:#?}", lines.0);
            assert!(lines.0.iter().any(|l| l == expected), "{:#?}", lines.0);
            let describe = format!("step 1: | describe: {} holds \"hello\"", target.display());
            assert!(lines.0.contains(&describe), "{:#?}", lines.0);
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "hello\n");
    }

    #[test]
    fn the_request_exit_statuses_and_variables_in_the_docs_are_the_codes() {
        // The example request has the fields of a real one.
        let [(json, example)] = &blocks("The request")[..] else {
            panic!("one example request");
        };
        assert_eq!(*json, "json");
        let example: serde_json::Value = serde_json::from_str(example).unwrap();
        assert_eq!(example["protocol"], PROTOCOL);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        install(
            &dir.path().join("facilities/records"),
            "#!/bin/sh\ncat > request\n[ \"$1\" = describe ] && echo records\nexit 0\n",
        );
        let plan = Plan::parse(
            "[[step]]\nfacility = \"records\"\n",
            &dir.path().join("cattle.toml"),
            dir.path(),
        )
        .unwrap();
        let outcome = runner::run(
            &plan,
            &Environment::new(dir.path()),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut Lines::default(),
        );
        assert_eq!(outcome, Outcome::Done);
        let real: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("request")).unwrap())
                .unwrap();
        let keys = |value: &serde_json::Value| -> Vec<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&example), keys(&real));
        assert_eq!(keys(&example["context"]), keys(&real["context"]));
        let fields: BTreeSet<String> = first_cells("The request");
        for key in keys(&real) {
            assert!(
                fields
                    .iter()
                    .any(|f| f == &key || f.starts_with(&format!("{key}."))),
                "the table does not explain `{key}`: {fields:?}"
            );
        }

        let statuses: BTreeSet<String> = first_cells("Exit status");
        let codes: BTreeSet<String> = [
            EXIT_OK,
            EXIT_WOULD_CHANGE,
            EXIT_REBOOT_NEEDED,
            EXIT_PERMANENT,
        ]
        .iter()
        .map(i32::to_string)
        .collect();
        assert_eq!(statuses, codes);

        let variables = first_cells("How a step runs");
        let set: BTreeSet<String> = [
            runner::STEP_ENV,
            runner::ATTEMPT_ENV,
            runner::HOST_ID_ENV,
            runner::EXECUTION_ID_ENV,
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        assert_eq!(variables, set);

        let schema = section("Argument schema").join("\n");
        for kind in schema::Kind::NAMES {
            assert!(
                schema.contains(&format!("`{kind}`")),
                "type `{kind}` undocumented"
            );
        }
    }
}

//! `cron`: a job in `/etc/cron.d/<name>`, or no such file (`state = "absent"`).
//!
//! The file is written as the `file` facility writes one, mode 0644 and owned
//! by root (cron ignores files that others can write): its check compares the
//! whole text, so an edit by hand is put back.

use std::path::{Path, PathBuf};

use super::FacilitySpec;
use super::file::{Contents, Wanted, apply_absent, check_absent, diff_absent};
use crate::args::{ArgError, Args};
use crate::diff::Diff;
use crate::facility::{Applied, Check, Context, Facility, FacilityError};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "cron",
    args: &["name", "schedule", "user", "command", "env", "state"],
    summary: "a job in /etc/cron.d, or no such job",
    build,
};

/// Where the jobs go.
const CRON_DIR: &str = "/etc/cron.d";

/// The first line of every job file.
const HEADER: &str = "# Managed by Cattle (facility `cron`): changes made here are undone.";

/// What `@` schedules cron knows.
const KEYWORDS: &[&str] = &[
    "@reboot",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let name = args.required_str("name")?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(args
            .error(
                "name",
                "argument `name` must be letters, digits, `_` and `-` only",
            )
            .with_hint(format!(
                "cron skips files in {CRON_DIR} whose names hold anything else, \
                 a dot included: `{name}` would never run"
            )));
    }
    let schedule = args.optional_str("schedule")?;
    let user = args.optional_str("user")?;
    let command = args.optional_str("command")?;
    let env = args.optional_str_table("env")?;
    let absent = args.optional_choice("state", &["present", "absent"])? == Some("absent");
    if absent {
        for (key, given) in [
            ("schedule", schedule.is_some()),
            ("user", user.is_some()),
            ("command", command.is_some()),
            ("env", env.is_some()),
        ] {
            if given {
                return Err(args
                    .error(
                        key,
                        format!("argument `{key}` has no use with `state = \"absent\"`"),
                    )
                    .with_hint("an absent job needs only its `name`; remove the argument"));
            }
        }
        return Ok(Box::new(Cron::new(Path::new(CRON_DIR), &name, None)));
    }

    let schedule = match schedule {
        Some(schedule) => schedule,
        None => args.required_str("schedule")?,
    };
    let schedule = parse_schedule(&schedule).map_err(|hint| {
        args.error(
            "schedule",
            "argument `schedule` must be 5 cron fields or an @keyword",
        )
        .with_hint(hint)
    })?;

    let user = user.unwrap_or_else(|| "root".to_string());
    if user.bytes().all(|b| b.is_ascii_digit())
        || user.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(args
            .error("user", "argument `user` must be a user name")
            .with_hint("cron looks the user up by name; a number or a space will not do"));
    }

    let command = match command {
        Some(command) => command,
        None => args.required_str("command")?,
    };
    if command.contains(['\n', '\r']) {
        return Err(args
            .error("command", "argument `command` must be one line")
            .with_hint("put several commands in a script, or join them with `&&`"));
    }

    let mut variables = Vec::new();
    for (key, value) in env.unwrap_or_default() {
        let name_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(args
                .error(
                    "env",
                    format!("argument `env`: `{key}` is not a variable name"),
                )
                .with_hint("names are letters, digits and `_`, not starting with a digit"));
        }
        let value_ok = !value.contains(['\n', '\r'])
            && value.trim() == value
            && !value.starts_with(['"', '\'']);
        if !value_ok {
            return Err(args
                .error(
                    "env",
                    format!("argument `env`: the value of `{key}` cannot be written"),
                )
                .with_hint(
                    "cron takes a value on one line, without spaces around it, \
                     not starting with a quote",
                ));
        }
        variables.push((key, value));
    }

    let job = Job {
        schedule,
        user,
        command,
        env: variables,
    };
    Ok(Box::new(Cron::new(Path::new(CRON_DIR), &name, Some(job))))
}

/// `schedule` with its fields one space apart, or why cron would not take it.
fn parse_schedule(schedule: &str) -> Result<String, String> {
    let schedule = schedule.trim();
    if schedule.starts_with('@') {
        return if KEYWORDS.contains(&schedule) {
            Ok(schedule.to_string())
        } else {
            Err(format!(
                "`{schedule}` is not one of {}",
                KEYWORDS.join(", ")
            ))
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "`{schedule}` has {} field(s); cron wants minute, hour, day of month, month \
             and day of week, e.g. \"*/5 * * * *\", or an @keyword such as \"@daily\"",
            fields.len()
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let rules: [(&str, u32, u32, &[&str]); 5] = [
        ("minute", 0, 59, &[]),
        ("hour", 0, 23, &[]),
        ("day of month", 1, 31, &[]),
        ("month", 1, 12, MONTHS),
        ("day of week", 0, 7, DAYS),
    ];
    for (field, (what, min, max, names)) in fields.iter().zip(rules) {
        let bad = |why: &str| format!("the {what} field `{field}` {why}");
        // A name stands alone: cron takes no ranges or lists of names.
        if names.contains(&field.to_ascii_lowercase().as_str()) {
            continue;
        }
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            let number = |text: &str| -> Result<u32, String> {
                match text.parse::<u32>() {
                    Ok(n)
                        if text.bytes().all(|b| b.is_ascii_digit()) && (min..=max).contains(&n) =>
                    {
                        Ok(n)
                    }
                    _ if names.contains(&text.to_ascii_lowercase().as_str()) => Err(bad(
                        "uses a name in a range or list; cron takes a name only alone",
                    )),
                    _ => Err(bad(&format!(
                        "has `{text}`, not a number from {min} to {max}"
                    ))),
                }
            };
            if range != "*" {
                match range.split_once('-') {
                    Some((low, high)) => {
                        if number(low)? > number(high)? {
                            return Err(bad(&format!("has the range `{range}` backwards")));
                        }
                    }
                    None => {
                        number(range)?;
                    }
                }
            }
            if let Some(step) = step {
                match step.parse::<u32>() {
                    Ok(n)
                        if step.bytes().all(|b| b.is_ascii_digit())
                            && (1..=max.max(1)).contains(&n) => {}
                    _ => {
                        return Err(bad(&format!(
                            "has the step `/{step}`, not a number from 1 to {max}"
                        )));
                    }
                }
            }
        }
    }
    Ok(fields.join(" "))
}

/// A job as the steps file gives it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    schedule: String,
    user: String,
    command: String,
    env: Vec<(String, String)>,
}

impl Job {
    /// The text of its file in /etc/cron.d.
    fn render(&self) -> String {
        let mut text = format!("{HEADER}\n");
        for (name, value) in &self.env {
            if value.is_empty() {
                text.push_str(&format!("{name}=\"\"\n"));
            } else {
                text.push_str(&format!("{name}={value}\n"));
            }
        }
        // In a crontab, `%` ends the command: each one is written escaped so
        // that the command runs as it is given.
        let command = self.command.replace('%', "\\%");
        text.push_str(&format!("{} {} {command}\n", self.schedule, self.user));
        text
    }
}

#[derive(Debug)]
struct Cron {
    path: PathBuf,
    job: Option<Job>,
    /// The file it is written as.
    file: Option<Wanted>,
}

impl Cron {
    /// The job `name` in `dir` (`/etc/cron.d` but in tests), or its absence.
    fn new(dir: &Path, name: &str, job: Option<Job>) -> Cron {
        let path = dir.join(name);
        let file = job.as_ref().map(|job| Wanted {
            path: path.clone(),
            contents: Contents::Inline(job.render().into_bytes()),
            mode: 0o644,
            owner: Some("0".to_string()),
            group: Some("0".to_string()),
        });
        Cron { path, job, file }
    }
}

impl Facility for Cron {
    fn describe(&self) -> String {
        match &self.job {
            Some(job) => format!(
                "cron job {} runs `{}` at {} as {}",
                self.path.display(),
                job.command,
                job.schedule,
                job.user
            ),
            None => format!("cron job {} does not exist", self.path.display()),
        }
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        match &self.file {
            Some(file) => file.check(ctx),
            None => check_absent(&self.path),
        }
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        match &self.file {
            Some(file) => file.apply(ctx),
            None => apply_absent(&self.path),
        }
    }

    fn diff(&self, ctx: &mut Context<'_>) -> Result<Option<Diff>, FacilityError> {
        match &self.file {
            Some(file) => file.diff(ctx),
            None => diff_absent(&self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, converges, is_root};
    use crate::steps::Plan;
    use std::os::unix::fs::MetadataExt;

    fn job(schedule: &str, command: &str, env: &[(&str, &str)]) -> Job {
        Job {
            schedule: schedule.to_string(),
            user: "root".to_string(),
            command: command.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn writes_the_job_as_root_0644_then_changes_nothing() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let cron = Cron::new(
            dir.path(),
            "backup",
            Some(job(
                "*/5 * * * *",
                "/usr/local/bin/backup --date $(date +%F)",
                &[("MAILTO", ""), ("PATH", "/usr/bin:/bin")],
            )),
        );
        converges(&cron, &env, dir.path());
        let path = dir.path().join("backup");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "{HEADER}\nMAILTO=\"\"\nPATH=/usr/bin:/bin\n\
                 */5 * * * * root /usr/local/bin/backup --date $(date +\\%F)\n"
            )
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o644, 0, 0)
        );

        // An edit by hand, or a looser mode, is put back.
        std::fs::write(&path, "* * * * * root rm -rf /\n").unwrap();
        converges(&cron, &env, dir.path());
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        converges(&cron, &env, dir.path());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    }

    #[test]
    fn absent_removes_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        std::fs::write(dir.path().join("old"), "@daily root true\n").unwrap();
        let cron = Cron::new(dir.path(), "old", None);
        converges(&cron, &env, dir.path());
        assert!(!dir.path().join("old").exists());
        assert_eq!(cron.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn schedules_are_five_fields_or_a_keyword() {
        for good in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "  15,45  */2 1 jan * ",
            "0 0 1-31/2 * sun",
            "59 23 31 12 7",
            "@daily",
            "@reboot",
        ] {
            assert!(parse_schedule(good).is_ok(), "{good}");
        }
        assert_eq!(
            parse_schedule("  15,45  */2 1 jan * ").unwrap(),
            "15,45 */2 1 jan *"
        );
        for (bad, why) in [
            ("* * * *", "has 4 field(s)"),
            ("* * * * * *", "has 6 field(s)"),
            ("60 * * * *", "minute field `60`"),
            ("* 24 * * *", "hour field"),
            ("* * 0 * *", "day of month field"),
            ("* * * 13 *", "month field"),
            ("* * * * 8", "day of week field"),
            ("5-1 * * * *", "backwards"),
            ("*/0 * * * *", "step `/0`"),
            ("* * * jan-mar *", "a name only alone"),
            ("* * * * mon,tue", "a name only alone"),
            ("+1 * * * *", "not a number"),
            ("@sometimes", "not one of"),
            ("", "has 0 field(s)"),
        ] {
            let err = parse_schedule(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn parse(args: &str) -> Result<Plan, crate::PlanError> {
        let dir = tempfile::tempdir().unwrap();
        let steps = format!("[[step]]\nfacility = \"cron\"\nname = \"backup\"\n{args}\n");
        Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
    }

    #[test]
    fn build_checks_name_schedule_user_command_and_env() {
        let plan = parse("schedule = \"@daily\"\ncommand = \"/bin/backup\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "cron job /etc/cron.d/backup runs `/bin/backup` at @daily as root"
        );
        let plan = parse("state = \"absent\"").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "cron job /etc/cron.d/backup does not exist"
        );
        let ok = "schedule = \"@daily\"\ncommand = \"true\"";
        for (args, message, line) in [
            (
                "command = \"true\"",
                "step `cron` is missing argument `schedule`",
                1,
            ),
            (
                "schedule = \"@daily\"",
                "step `cron` is missing argument `command`",
                1,
            ),
            (
                "schedule = \"* * *\"\ncommand = \"true\"",
                "argument `schedule` must be 5 cron fields or an @keyword",
                4,
            ),
            (
                &format!("{ok}\nuser = \"0\""),
                "argument `user` must be a user name",
                6,
            ),
            (
                "schedule = \"@daily\"\ncommand = \"a\\nb\"",
                "argument `command` must be one line",
                5,
            ),
            (
                &format!("{ok}\nenv = {{ \"A B\" = \"x\" }}"),
                "argument `env`: `A B` is not a variable name",
                6,
            ),
            (
                &format!("{ok}\nenv = {{ PATH = \" /bin\" }}"),
                "argument `env`: the value of `PATH` cannot be written",
                6,
            ),
            (
                "state = \"absent\"\ncommand = \"true\"",
                "argument `command` has no use with `state = \"absent\"`",
                5,
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.message, message, "{args}");
            assert_eq!(err.position.map(|p| p.0), Some(line), "{args}");
        }
        for bad in ["back.up", "a/b", "..", "x y", "ok~"] {
            let steps = format!(
                "[[step]]\nfacility = \"cron\"\nname = \"{bad}\"\nschedule = \"@daily\"\ncommand = \"true\"\n"
            );
            let dir = tempfile::tempdir().unwrap();
            let err = Plan::parse(&steps, Path::new("cattle.toml"), dir.path()).unwrap_err();
            assert_eq!(
                err.message, "argument `name` must be letters, digits, `_` and `-` only",
                "{bad}"
            );
            assert_eq!(err.position, Some((3, 8)), "{bad}");
        }
    }
}

//! `systemd_unit`: a systemd unit has the unit file, enablement, activity and
//! mask the step gives; what it does not give is left alone.
//!
//! The unit file (`content` or `source`) goes to `/etc/systemd/system/NAME`,
//! replaced atomically; systemd reloads its configuration only when the file
//! changed, or when it has not yet seen the file in place (a reload cut short
//! is finished by the next attempt). Everything else is read from one
//! `systemctl show` and changed with `systemctl`. `restarted` and `reloaded`
//! leave no state to look at, so a step with them always acts.

use std::path::PathBuf;

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{Attributes, write_file};
use crate::process::Program;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "systemd_unit",
    args: &["name", "content", "source", "enabled", "state", "masked"],
    summary: "a systemd unit's file, enablement, activity and mask are as given",
    build,
};

/// The unit types a step may name: those with files an administrator installs.
const SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "target",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
];

const STATES: &[&str] = &["started", "stopped", "restarted", "reloaded"];

/// The longest unit name systemd accepts.
const MAX_NAME_LEN: usize = 255;

/// `UnitFileState`s of units that `systemctl enable` cannot enable by themselves.
const CANNOT_ENABLE: &[&str] = &["static", "indirect", "generated", "transient"];

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_name = args.error("name", "argument `name` must be a systemd unit name");
    let name = args.required_str("name")?;
    if !valid_unit_name(&name) {
        return Err(bad_name.with_hint(format!(
            "`{name}` is not a unit name: letters, digits and : _ . \\ - (one `@` for a \
             template or instance), ending in .{}",
            SUFFIXES.join(", .")
        )));
    }
    let content = args.optional_str("content")?;
    let source = args.optional_config_file("source")?;
    let file_key = if content.is_some() {
        "content"
    } else {
        "source"
    };
    let file = match (content, source) {
        (Some(_), Some(_)) => {
            return Err(args
                .error("source", "give `content` or `source`, not both")
                .with_hint("`content` is the unit file itself, `source` a file of the config"));
        }
        (Some(content), None) => Some(UnitFile::Content(content)),
        (None, Some(source)) => Some(UnitFile::Source(source)),
        (None, None) => None,
    };
    let enabled = args.optional_bool("enabled")?;
    let state = args
        .optional_choice("state", STATES)?
        .map(|state| match state {
            "started" => State::Started,
            "stopped" => State::Stopped,
            "restarted" => State::Restarted,
            _ => State::Reloaded,
        });
    let masked = args.optional_bool("masked")?;

    if file.is_none() && enabled.is_none() && state.is_none() && masked.is_none() {
        return Err(args
            .error("name", "step `systemd_unit` asks for nothing")
            .with_hint("add `content` or `source`, `enabled`, `state` or `masked`"));
    }
    if masked == Some(true) {
        let key = if file.is_some() {
            Some(file_key)
        } else if enabled == Some(true) {
            Some("enabled")
        } else if state.is_some_and(State::runs) {
            Some("state")
        } else {
            None
        };
        if let Some(key) = key {
            return Err(args
                .error(key, format!("a masked unit cannot take `{key}` as given"))
                .with_hint(
                    "a masked unit is linked to /dev/null in /etc/systemd/system: it has no \
                     unit file there, is not enabled and does not run; remove `masked = true` \
                     or this argument",
                ));
        }
    }
    if name.contains("@.") && state.is_some() {
        return Err(args
            .error("state", format!("`{name}` is a template: it cannot run"))
            .with_hint(format!(
                "name an instance, e.g. `{}`",
                name.replacen("@.", "@one.", 1)
            )));
    }
    Ok(Box::new(SystemdUnit {
        name,
        file,
        enabled,
        state,
        masked,
        unit_dir: PathBuf::from("/etc/systemd/system"),
        booted: PathBuf::from("/run/systemd/system"),
    }))
}

/// `prefix.suffix`, as systemd spells unit names, with one of [`SUFFIXES`].
fn valid_unit_name(name: &str) -> bool {
    let Some((prefix, suffix)) = name.rsplit_once('.') else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && SUFFIXES.contains(&suffix)
        && !prefix.is_empty()
        && !prefix.starts_with(['-', '.', '@'])
        && prefix.matches('@').count() <= 1
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.\\-@".contains(c))
}

#[derive(Debug)]
enum UnitFile {
    /// The file's text, given in the step.
    Content(String),
    /// A file of the config directory.
    Source(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

impl State {
    /// Whether the unit runs afterwards.
    fn runs(self) -> bool {
        self != State::Stopped
    }
}

/// What `systemctl show` says about a unit.
#[derive(Debug, Default)]
struct Status {
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`, ...
    load: String,
    /// `active`, `inactive`, `failed`, `activating`, `reloading`, ...
    active: String,
    /// `enabled`, `disabled`, `static`, `masked`, ... (`is-enabled`'s answer).
    unit_file: String,
    need_daemon_reload: bool,
    can_reload: bool,
}

impl Status {
    fn masked(&self) -> bool {
        self.load == "masked" || self.unit_file.starts_with("masked")
    }
}

/// A `systemctl` command: `systemctl VERB NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Mask,
    Unmask,
    Enable,
    Disable,
    Start,
    Stop,
    Restart,
    Reload,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Unmask => "unmask",
            Action::Enable => "enable",
            Action::Disable => "disable",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Reload => "reload",
        }
    }
}

#[derive(Debug)]
struct SystemdUnit {
    name: String,
    file: Option<UnitFile>,
    enabled: Option<bool>,
    state: Option<State>,
    masked: Option<bool>,
    /// Where unit files go: `/etc/systemd/system`.
    unit_dir: PathBuf,
    /// What exists when systemd runs the host: `/run/systemd/system`.
    booted: PathBuf,
}

impl SystemdUnit {
    fn unit_path(&self) -> PathBuf {
        self.unit_dir.join(&self.name)
    }

    fn systemd_runs(&self) -> Result<(), FacilityError> {
        if self.booted.is_dir() {
            return Ok(());
        }
        Err(FacilityError::permanent(format!(
            "systemd does not run this host (there is no `{}`): unit {} cannot be managed here",
            self.booted.display(),
            self.name
        )))
    }

    /// The unit file's bytes as the step gives them, if it gives them.
    fn wanted_file(&self, ctx: &Context<'_>) -> Result<Option<Vec<u8>>, FacilityError> {
        match &self.file {
            None => Ok(None),
            Some(UnitFile::Content(content)) => Ok(Some(content.clone().into_bytes())),
            Some(UnitFile::Source(source)) => {
                let path = ctx.config_dir().join(source);
                std::fs::read(&path)
                    .map(Some)
                    .map_err(|err| FacilityError::io("read", &path, err))
            }
        }
    }

    /// Whether the unit file in place differs from `wanted`.
    fn file_differs(&self, wanted: &[u8]) -> Result<bool, FacilityError> {
        let path = self.unit_path();
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                let current =
                    std::fs::read(&path).map_err(|err| FacilityError::io("read", &path, err))?;
                Ok(current != wanted)
            }
            // A link (a mask, `systemctl link`) is replaced by the file.
            Ok(meta) if meta.is_symlink() => Ok(true),
            Ok(_) => Err(FacilityError::permanent(format!(
                "`{}` is not a regular file; remove it so that unit {} can be installed there",
                path.display(),
                self.name
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(err) => Err(FacilityError::io("inspect", &path, err)),
        }
    }

    fn status(&self, ctx: &mut Context<'_>) -> Result<Status, FacilityError> {
        let ran = ctx
            .run(
                &Program::new("systemctl")
                    .arg("show")
                    .arg(
                        "--property=LoadState,ActiveState,UnitFileState,NeedDaemonReload,CanReload",
                    )
                    .arg(&self.name)
                    .capture()
                    .named(format!("systemctl show {}", self.name)),
            )?
            .ok()?;
        let mut status = Status::default();
        for line in ran.stdout.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "LoadState" => status.load = value.to_string(),
                "ActiveState" => status.active = value.to_string(),
                "UnitFileState" => status.unit_file = value.to_string(),
                "NeedDaemonReload" => status.need_daemon_reload = value == "yes",
                "CanReload" => status.can_reload = value == "yes",
                _ => {}
            }
        }
        if status.load.is_empty() {
            return Err(FacilityError::new(format!(
                "`systemctl show {}` did not say whether the unit is loaded",
                self.name
            )));
        }
        Ok(status)
    }

    /// The mask or unmask the step needs, given `status`.
    fn mask_action(&self, status: &Status) -> Result<Option<Action>, FacilityError> {
        let masked = status.masked();
        match self.masked {
            Some(true) if !masked => Ok(Some(Action::Mask)),
            Some(false) if masked => Ok(Some(Action::Unmask)),
            None if masked
                && (self.enabled == Some(true) || self.state.is_some_and(State::runs)) =>
            {
                Err(FacilityError::permanent(format!(
                    "unit {} is masked, so it cannot be enabled or run; add `masked = false` \
                     to this step to unmask it",
                    self.name
                )))
            }
            _ => Ok(None),
        }
    }

    /// The enable, disable, start, stop, restart or reload the step needs,
    /// given `status` of a unit whose file and mask are in place.
    fn actions(&self, status: &Status) -> Result<Vec<Action>, FacilityError> {
        let wants_enabled = self.enabled == Some(true);
        let wants_running = self.state.is_some_and(State::runs);
        if wants_enabled || wants_running {
            match status.load.as_str() {
                "not-found" => {
                    return Err(FacilityError::permanent(format!(
                        "there is no unit {} on this host: give `content` or `source`, or \
                         install the package that has it in an earlier step",
                        self.name
                    )));
                }
                "bad-setting" | "error" => {
                    return Err(FacilityError::permanent(format!(
                        "unit {} does not load (LoadState={}): `systemctl status {}` says why; \
                         fix its unit file",
                        self.name, status.load, self.name
                    )));
                }
                _ => {}
            }
        }
        let mut actions = Vec::new();
        match self.enabled {
            Some(true) if status.unit_file != "enabled" => {
                if CANNOT_ENABLE.contains(&status.unit_file.as_str()) {
                    return Err(FacilityError::permanent(format!(
                        "unit {} cannot be enabled: it is {} (its unit file has no [Install] \
                         section that says what wants it); remove `enabled` or add the section",
                        self.name, status.unit_file
                    )));
                }
                actions.push(Action::Enable);
            }
            Some(false) if status.unit_file == "enabled" => actions.push(Action::Disable),
            _ => {}
        }
        let running = matches!(status.active.as_str(), "active" | "reloading");
        match self.state {
            Some(State::Started) if !running => actions.push(Action::Start),
            Some(State::Stopped) if !matches!(status.active.as_str(), "inactive" | "failed") => {
                actions.push(Action::Stop)
            }
            Some(State::Restarted) => actions.push(Action::Restart),
            Some(State::Reloaded) if !status.can_reload => {
                return Err(FacilityError::permanent(format!(
                    "unit {} cannot reload (it has no ExecReload=); use `state = \"restarted\"`",
                    self.name
                )));
            }
            // A unit that does not run is started: that reads its configuration too.
            Some(State::Reloaded) if !running => actions.push(Action::Start),
            Some(State::Reloaded) => actions.push(Action::Reload),
            _ => {}
        }
        Ok(actions)
    }

    fn systemctl(&self, ctx: &mut Context<'_>, action: Action) -> Result<(), FacilityError> {
        let verb = action.verb();
        if action == Action::Mask && self.unit_path().is_file() && !self.unit_path().is_symlink() {
            return Err(FacilityError::permanent(format!(
                "cannot mask unit {}: `{}` is a unit file; remove it first (an `unlink` step)",
                self.name,
                self.unit_path().display()
            )));
        }
        let ran = ctx.run(
            &Program::new("systemctl")
                .args([verb, &self.name])
                .named(format!("systemctl {verb} {}", self.name)),
        )?;
        if ran.success() {
            return Ok(());
        }
        let err = ran.error();
        if matches!(action, Action::Start | Action::Restart | Action::Reload) {
            return Err(FacilityError::new(format!(
                "{}; `systemctl status {}` and `journalctl -u {}` say why",
                err.message(),
                self.name,
                self.name
            )));
        }
        Err(err)
    }

    fn daemon_reload(&self, ctx: &mut Context<'_>) -> Result<(), FacilityError> {
        ctx.run(
            &Program::new("systemctl")
                .arg("daemon-reload")
                .named("systemctl daemon-reload"),
        )?
        .ok()
        .map(drop)
    }
}

/// "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

impl Facility for SystemdUnit {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.file {
            Some(UnitFile::Content(_)) => parts.push("has the unit file given".to_string()),
            Some(UnitFile::Source(source)) => {
                parts.push(format!("has the unit file {}", source.display()))
            }
            None => {}
        }
        match self.masked {
            Some(true) => parts.push("is masked".to_string()),
            Some(false) => parts.push("is not masked".to_string()),
            None => {}
        }
        match self.enabled {
            Some(true) => parts.push("is enabled".to_string()),
            Some(false) => parts.push("is not enabled".to_string()),
            None => {}
        }
        match self.state {
            Some(State::Started) => parts.push("runs".to_string()),
            Some(State::Stopped) => parts.push("does not run".to_string()),
            Some(State::Restarted) => parts.push("is restarted".to_string()),
            Some(State::Reloaded) => parts.push("is reloaded".to_string()),
            None => {}
        }
        format!("unit {} {}", self.name, and_list(&parts))
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        self.systemd_runs()?;
        if let Some(wanted) = self.wanted_file(ctx)?
            && self.file_differs(&wanted)?
        {
            return Ok(Check::Run);
        }
        let status = self.status(ctx)?;
        if self.file.is_some() && status.need_daemon_reload {
            return Ok(Check::Run);
        }
        if self.mask_action(&status)?.is_some() {
            return Ok(Check::Run);
        }
        Ok(if self.actions(&status)?.is_empty() {
            Check::AlreadyDone
        } else {
            Check::Run
        })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        self.systemd_runs()?;
        if let Some(wanted) = self.wanted_file(ctx)? {
            if self.file_differs(&wanted)? {
                let attributes = Attributes {
                    mode: 0o644,
                    uid: None,
                    gid: None,
                };
                write_file(&self.unit_path(), &wanted, attributes)?;
                ctx.output(&format!("wrote {}", self.unit_path().display()));
                self.daemon_reload(ctx)?;
            } else if self.status(ctx)?.need_daemon_reload {
                self.daemon_reload(ctx)?;
            }
        }
        let mut status = self.status(ctx)?;
        if let Some(action) = self.mask_action(&status)? {
            self.systemctl(ctx, action)?;
            status = self.status(ctx)?;
        }
        for action in self.actions(&status)? {
            self.systemctl(ctx, action)?;
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply};
    use crate::process::write_fake_program;
    use crate::steps::Plan;
    use std::path::Path;

    /// A host in `dir` whose systemd is a fake `systemctl`: each property of the
    /// one unit is a file in `dir/sd` (`LoadState`, `ActiveState`, ...), which
    /// the verbs change as systemd would; every verb but `show` is logged to
    /// `dir/log`. The unit starts out not found.
    fn fake_systemd(dir: &Path) -> (Environment, SystemdUnit) {
        let sd = dir.join("sd");
        std::fs::create_dir_all(dir.join("run/systemd/system")).unwrap();
        std::fs::create_dir_all(dir.join("etc/systemd/system")).unwrap();
        std::fs::create_dir(&sd).unwrap();
        for (property, value) in [
            ("LoadState", "not-found"),
            ("ActiveState", "inactive"),
            ("UnitFileState", ""),
            ("NeedDaemonReload", "no"),
            ("CanReload", "no"),
        ] {
            std::fs::write(sd.join(property), value).unwrap();
        }
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        write_fake_program(
            &bin,
            "systemctl",
            &format!(
                r#"cd {sd}
set_() {{ printf %s "$2" > "$1"; }}
[ "$1" = show ] || echo "$*" >> {dir}/log
if [ -e fail ] && [ "$1" = "$(cat fail)" ]; then echo "Job for $2 failed." >&2; exit 1; fi
case "$1" in
  show) for p in LoadState ActiveState UnitFileState NeedDaemonReload CanReload; do echo "$p=$(cat $p)"; done ;;
  daemon-reload)
    if [ -e {dir}/etc/systemd/system/unit.service ]; then
      set_ LoadState loaded; set_ NeedDaemonReload no
      [ -n "$(cat UnitFileState)" ] || set_ UnitFileState disabled
    fi ;;
  enable) set_ UnitFileState enabled ;;
  disable) set_ UnitFileState disabled ;;
  mask) set_ UnitFileState masked; set_ LoadState masked ;;
  unmask) set_ UnitFileState disabled; set_ LoadState loaded ;;
  start|restart|reload) set_ ActiveState active ;;
  stop) set_ ActiveState inactive ;;
esac"#,
                sd = sd.display(),
                dir = dir.display()
            ),
        );
        let mut env = Environment::new(dir);
        env.path = Some(format!("{}:/usr/bin:/bin", bin.display()).into());
        (env, base(dir))
    }

    /// `unit.service` on the host `fake_systemd` made in `dir`, asked for nothing yet.
    fn base(dir: &Path) -> SystemdUnit {
        SystemdUnit {
            name: "unit.service".to_string(),
            file: None,
            enabled: None,
            state: None,
            masked: None,
            unit_dir: dir.join("etc/systemd/system"),
            booted: dir.join("run/systemd/system"),
        }
    }

    fn set(dir: &Path, property: &str, value: &str) {
        std::fs::write(dir.join("sd").join(property), value).unwrap();
    }

    fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    }

    fn clear_log(dir: &Path) {
        let _ = std::fs::remove_file(dir.join("log"));
    }

    const UNIT: &str =
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n";

    /// Check (the state is not in place, and looking changed nothing), apply,
    /// check again (it is); the `systemctl` verbs apply ran.
    fn converge(f: &SystemdUnit, env: &Environment, dir: &Path) -> String {
        clear_log(dir);
        assert_eq!(f.check_in(env).unwrap(), Check::Run);
        assert_eq!(log(dir), "", "the check changed something");
        f.apply_in(env).unwrap();
        let verbs = log(dir);
        clear_log(dir);
        assert_eq!(
            f.check_in(env).unwrap(),
            Check::AlreadyDone,
            "after {verbs}"
        );
        verbs
    }

    #[test]
    fn installs_the_file_reloads_enables_and_starts_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        let f = SystemdUnit {
            file: Some(UnitFile::Content(UNIT.to_string())),
            enabled: Some(true),
            state: Some(State::Started),
            ..unit
        };
        assert_eq!(
            f.describe(),
            "unit unit.service has the unit file given, is enabled and runs"
        );
        let (result, lines) = apply(&f, &env);
        result.unwrap();
        let path = f.unit_path();
        assert!(path.starts_with(dir.path()));
        assert_eq!(lines, [format!("wrote {}", path.display())]);
        assert_eq!(
            log(dir.path()),
            "daemon-reload\nenable unit.service\nstart unit.service\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), UNIT);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        clear_log(dir.path());
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);

        // Another content: the file and a reload, nothing else.
        let f = SystemdUnit {
            file: Some(UnitFile::Content(UNIT.replace("infinity", "1d"))),
            ..f
        };
        assert_eq!(converge(&f, &env, dir.path()), "daemon-reload\n");
    }

    #[test]
    fn a_source_file_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        std::fs::write(dir.path().join("unit.service"), UNIT).unwrap();
        let f = SystemdUnit {
            file: Some(UnitFile::Source("unit.service".into())),
            ..unit
        };
        assert_eq!(
            f.describe(),
            "unit unit.service has the unit file unit.service"
        );
        assert_eq!(converge(&f, &env, dir.path()), "daemon-reload\n");
    }

    #[test]
    fn a_reload_cut_short_is_finished_by_the_next_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        let f = SystemdUnit {
            file: Some(UnitFile::Content(UNIT.to_string())),
            ..unit
        };
        std::fs::write(f.unit_path(), UNIT).unwrap();
        set(dir.path(), "LoadState", "loaded");
        set(dir.path(), "UnitFileState", "disabled");
        set(dir.path(), "NeedDaemonReload", "yes");
        assert_eq!(converge(&f, &env, dir.path()), "daemon-reload\n");
    }

    #[test]
    fn disables_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        set(dir.path(), "LoadState", "loaded");
        set(dir.path(), "UnitFileState", "enabled");
        set(dir.path(), "ActiveState", "active");
        let f = SystemdUnit {
            enabled: Some(false),
            state: Some(State::Stopped),
            ..unit
        };
        assert_eq!(
            f.describe(),
            "unit unit.service is not enabled and does not run"
        );
        assert_eq!(
            converge(&f, &env, dir.path()),
            "disable unit.service\nstop unit.service\n"
        );
        // A failed unit does not run either.
        set(dir.path(), "ActiveState", "failed");
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
    }

    #[test]
    fn masks_and_unmasks() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        set(dir.path(), "LoadState", "loaded");
        set(dir.path(), "UnitFileState", "disabled");
        let masked = SystemdUnit {
            masked: Some(true),
            state: Some(State::Stopped),
            ..unit
        };
        assert_eq!(converge(&masked, &env, dir.path()), "mask unit.service\n");

        // Enabling a masked unit needs `masked = false`: then it is unmasked,
        // looked at again, and enabled.
        let enable = SystemdUnit {
            enabled: Some(true),
            ..base(dir.path())
        };
        let err = enable.check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.message(),
            "unit unit.service is masked, so it cannot be enabled or run; add `masked = false` \
             to this step to unmask it"
        );
        let enable = SystemdUnit {
            masked: Some(false),
            ..enable
        };
        assert_eq!(
            converge(&enable, &env, dir.path()),
            "unmask unit.service\nenable unit.service\n"
        );
    }

    #[test]
    fn a_unit_file_in_the_way_of_a_mask_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        set(dir.path(), "LoadState", "loaded");
        let f = SystemdUnit {
            masked: Some(true),
            ..unit
        };
        std::fs::write(f.unit_path(), UNIT).unwrap();
        let err = f.apply_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("cannot mask unit unit.service: `"),
            "{err}"
        );
        assert_eq!(log(dir.path()), "");
    }

    #[test]
    fn restarted_and_reloaded_always_act() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        set(dir.path(), "LoadState", "loaded");
        set(dir.path(), "ActiveState", "active");
        let restart = SystemdUnit {
            state: Some(State::Restarted),
            ..unit
        };
        for _ in 0..2 {
            assert_eq!(restart.check_in(&env).unwrap(), Check::Run);
            restart.apply_in(&env).unwrap();
        }
        assert_eq!(
            log(dir.path()),
            "restart unit.service\nrestart unit.service\n"
        );

        clear_log(dir.path());
        let reload = SystemdUnit {
            state: Some(State::Reloaded),
            ..restart
        };
        let err = reload.check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.message(),
            "unit unit.service cannot reload (it has no ExecReload=); use `state = \"restarted\"`"
        );
        set(dir.path(), "CanReload", "yes");
        assert_eq!(reload.check_in(&env).unwrap(), Check::Run);
        reload.apply_in(&env).unwrap();
        // A unit that does not run is started instead.
        set(dir.path(), "ActiveState", "inactive");
        reload.apply_in(&env).unwrap();
        assert_eq!(log(dir.path()), "reload unit.service\nstart unit.service\n");
    }

    #[test]
    fn what_cannot_be_enabled_or_started_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        let f = SystemdUnit {
            enabled: Some(true),
            ..unit
        };
        let err = f.check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("there is no unit unit.service on this host"),
            "{err}"
        );
        // Not there is fine for a unit that must not run.
        let stopped = SystemdUnit {
            enabled: Some(false),
            state: Some(State::Stopped),
            ..f
        };
        assert_eq!(stopped.check_in(&env).unwrap(), Check::AlreadyDone);

        set(dir.path(), "LoadState", "loaded");
        set(dir.path(), "UnitFileState", "static");
        assert_eq!(stopped.check_in(&env).unwrap(), Check::AlreadyDone);
        let f = SystemdUnit {
            enabled: Some(true),
            state: None,
            ..stopped
        };
        let err = f.check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message()
                .starts_with("unit unit.service cannot be enabled: it is static"),
            "{err}"
        );
        set(dir.path(), "LoadState", "bad-setting");
        let err = f.check_in(&env).unwrap_err();
        assert!(err.message().contains("(LoadState=bad-setting)"), "{err}");
        assert_eq!(log(dir.path()), "");
    }

    #[test]
    fn a_failed_start_says_where_to_look_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        set(dir.path(), "LoadState", "loaded");
        std::fs::write(dir.path().join("sd/fail"), "start").unwrap();
        let f = SystemdUnit {
            state: Some(State::Started),
            ..unit
        };
        let err = f.apply_in(&env).unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(
            err.message(),
            "`systemctl start unit.service` exited with status 1: Job for unit.service failed.; \
             `systemctl status unit.service` and `journalctl -u unit.service` say why"
        );
    }

    #[test]
    fn without_systemd_it_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let (env, unit) = fake_systemd(dir.path());
        std::fs::remove_dir(&unit.booted).unwrap();
        let f = SystemdUnit {
            state: Some(State::Started),
            ..unit
        };
        let err = f.check_in(&env).unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.message().starts_with("systemd does not run this host"),
            "{err}"
        );
        assert!(f.apply_in(&env).is_err());
        assert_eq!(log(dir.path()), "");
    }

    #[test]
    fn unit_names() {
        for good in [
            "nginx.service",
            "backup.timer",
            "getty@tty1.service",
            "getty@.service",
            "dev-sda1.swap",
            "srv-data.mount",
            "system-x\\x2dy.slice",
            "a.b.socket",
        ] {
            assert!(valid_unit_name(good), "{good}");
        }
        for bad in [
            "nginx",
            "nginx.conf",
            ".service",
            "-x.service",
            "a@b@c.service",
            "a b.service",
            "../x.service",
            "x/y.service",
            &format!("{}.service", "a".repeat(250)),
        ] {
            assert!(!valid_unit_name(bad), "{bad}");
        }
    }

    #[test]
    fn builds_from_a_step() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.service"), UNIT).unwrap();
        let parse = |args: &str| {
            let steps = format!("[[step]]\nfacility = \"systemd_unit\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), dir.path())
        };
        let plan = parse(
            "name = \"x.service\"\nsource = \"x.service\"\nenabled = true\nstate = \"restarted\"",
        )
        .unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "unit x.service has the unit file x.service, is enabled and is restarted"
        );
        let bad = [
            (
                "name = \"x\"\nstate = \"started\"",
                "argument `name` must be a systemd unit name",
                (3, 8),
            ),
            (
                "name = \"x.service\"",
                "step `systemd_unit` asks for nothing",
                (3, 8),
            ),
            (
                "name = \"x.service\"\nstate = \"running\"",
                "argument `state` cannot be `running`",
                (4, 9),
            ),
            (
                "name = \"x.service\"\ncontent = \"[Unit]\"\nsource = \"x.service\"",
                "give `content` or `source`, not both",
                (5, 10),
            ),
            (
                "name = \"x.service\"\nsource = \"y.service\"",
                "argument `source` must name a regular file in the config directory",
                (4, 10),
            ),
            (
                "name = \"x.service\"\nmasked = true\ncontent = \"[Unit]\"",
                "a masked unit cannot take `content` as given",
                (5, 11),
            ),
            (
                "name = \"x.service\"\nmasked = true\nsource = \"x.service\"",
                "a masked unit cannot take `source` as given",
                (5, 10),
            ),
            (
                "name = \"x.service\"\nmasked = true\nenabled = true",
                "a masked unit cannot take `enabled` as given",
                (5, 11),
            ),
            (
                "name = \"x.service\"\nmasked = true\nstate = \"reloaded\"",
                "a masked unit cannot take `state` as given",
                (5, 9),
            ),
            (
                "name = \"x@.service\"\nstate = \"started\"",
                "`x@.service` is a template: it cannot run",
                (4, 9),
            ),
            (
                "name = \"x.service\"\nenabled = \"yes\"",
                "argument `enabled` must be `true` or `false`, not string",
                (4, 11),
            ),
        ];
        for (args, message, position) in bad {
            let err = parse(args).unwrap_err();
            assert_eq!(err.message, message, "{args}");
            assert_eq!(err.position, Some(position), "{args}");
        }
        // Masked and stopped is fine.
        parse("name = \"x.service\"\nmasked = true\nstate = \"stopped\"\nenabled = false").unwrap();
    }
}

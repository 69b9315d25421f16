//! Protocol 1: how Cattle runs a custom facility's program and reads its answer.
//!
//! The program is started through [`Context::run`] (the step's deadline, a
//! process group of its own, output to the step's log) with the verb as its
//! only argument and a JSON request on its standard input. Its exit status is
//! the answer; docs/custom-facilities.md has the table this module implements.

use std::fmt;

use serde::Serialize;

use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::Program;
use crate::runner::{ATTEMPT_ENV, EXECUTION_ID_ENV, HOST_ID_ENV, STEP_ENV};

/// The version of the protocol, sent in every request.
pub const PROTOCOL: u32 = 1;

/// Exit status: `check` found the state in place; `apply` changed it;
/// `describe` printed its line.
pub const EXIT_OK: i32 = 0;
/// Exit status of `check`: the state is not in place, `apply` must run.
pub const EXIT_WOULD_CHANGE: i32 = 100;
/// Exit status of `apply`: changed, and the change takes effect once the host
/// has rebooted; the same as a `command`'s ([`crate::REBOOT_EXIT_CODE`]).
pub const EXIT_REBOOT_NEEDED: i32 = crate::REBOOT_EXIT_CODE;
/// Exit status of any verb: failed, and trying again cannot help (`EX_CONFIG`
/// of sysexits.h): the step fails at once.
pub const EXIT_PERMANENT: i32 = 78;

/// What the program is asked to do: its `argv[1]` and the request's `verb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Check,
    Apply,
    Describe,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Check => "check",
            Verb::Apply => "apply",
            Verb::Describe => "describe",
        }
    }

    /// The statuses this verb answers with, for messages about the others.
    fn expects(self) -> &'static str {
        match self {
            Verb::Check => {
                "`check` exits 0 when the state is in place, 100 when `apply` must run, \
                 78 when it failed and a retry cannot help, any other status when it failed"
            }
            Verb::Apply => {
                "`apply` exits 0 when it changed the host, 194 when it did and the host must \
                 reboot, 78 when it failed and a retry cannot help, any other status when it failed"
            }
            Verb::Describe => {
                "`describe` prints one line and exits 0, 78 when it failed and a retry \
                 cannot help, any other status when it failed"
            }
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON document on the program's standard input.
#[derive(Debug, Serialize)]
struct Request<'a> {
    protocol: u32,
    verb: &'a str,
    facility: &'a str,
    args: &'a serde_json::Value,
    context: RequestContext,
}

#[derive(Debug, Serialize)]
struct RequestContext {
    /// The agent's host ID; for `cattle apply`, the machine's host name.
    host: Option<String>,
    /// The execution's ID; none for `cattle apply`.
    execution: Option<String>,
    step: Option<u64>,
    attempt: Option<u64>,
    check_mode: bool,
}

/// A step of a custom facility: the program `facilities/NAME` and the step's
/// arguments, as JSON.
pub(crate) struct CustomFacility {
    pub(crate) name: String,
    /// A JSON object: the step's arguments and the schema's defaults.
    pub(crate) args: serde_json::Value,
    /// The schema's summary, or a line naming the program.
    pub(crate) description: String,
}

/// Names the facility, never the arguments' values: they may be sensitive.
impl fmt::Debug for CustomFacility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.args.as_object().map_or(0, serde_json::Map::len);
        f.debug_struct("CustomFacility")
            .field("name", &self.name)
            .field("args", &format_args!("{count} arguments"))
            .finish()
    }
}

impl CustomFacility {
    /// The request for `verb` in this attempt's context, one line of JSON.
    fn request(&self, verb: Verb, ctx: &Context<'_>) -> Vec<u8> {
        let number = |name: &str| ctx.var(name).and_then(|v| v.parse::<u64>().ok());
        let host = match ctx.var(HOST_ID_ENV) {
            Some(host) => Some(host.to_string()),
            None => nix::unistd::gethostname()
                .ok()
                .map(|name| name.to_string_lossy().into_owned()),
        };
        let request = Request {
            protocol: PROTOCOL,
            verb: verb.as_str(),
            facility: &self.name,
            args: &self.args,
            context: RequestContext {
                host,
                execution: ctx.var(EXECUTION_ID_ENV).map(str::to_string),
                step: number(STEP_ENV),
                attempt: number(ATTEMPT_ENV),
                check_mode: ctx.check_mode(),
            },
        };
        let mut line = serde_json::to_vec(&request).expect("a request is always JSON");
        line.push(b'\n');
        line
    }

    /// Run the program for `verb`: its exit status, or the error if it
    /// failed, timed out, was killed or could not start.
    fn run(&self, verb: Verb, ctx: &mut Context<'_>) -> Result<(i32, String), FacilityError> {
        let what = format!("{}/{} {verb}", super::DIR, self.name);
        let path = std::path::absolute(ctx.config_dir().join(super::DIR).join(&self.name))
            .map_err(|err| FacilityError::new(format!("cannot find `{what}`: {err}")))?;
        let Some(path) = path.to_str() else {
            return Err(FacilityError::permanent(format!(
                "cannot run `{what}`: the config directory's path `{}` is not UTF-8",
                ctx.config_dir().display()
            )));
        };
        let mut program = Program::new(path)
            .arg(verb.as_str())
            .stdin(self.request(verb, ctx))
            .named(what.clone());
        if verb == Verb::Describe {
            program = program.capture();
        }
        let ran = ctx.run(&program).map_err(|err| {
            // The file was there when the steps were read: what is missing is
            // most likely the interpreter its `#!` line names.
            if err.is_permanent() && err.message().starts_with("cannot start") {
                err.map_message(|m| {
                    format!(
                        "{m} (is the interpreter on its first line, `#!…`, installed on this host?)"
                    )
                })
            } else {
                err
            }
        })?;
        let Some(code) = ran.code() else {
            return Err(ran.error());
        };
        match code {
            EXIT_OK => Ok((code, ran.stdout)),
            EXIT_PERMANENT => {
                let mut message =
                    format!("`{what}` exited with status {EXIT_PERMANENT} (failed, do not retry)");
                if let Some(line) = &ran.last_stderr {
                    message.push_str(&format!(": {}", line.trim()));
                }
                Err(FacilityError::permanent(message))
            }
            EXIT_WOULD_CHANGE if verb == Verb::Check => Ok((code, ran.stdout)),
            EXIT_REBOOT_NEEDED if verb == Verb::Apply => Ok((code, ran.stdout)),
            EXIT_WOULD_CHANGE | EXIT_REBOOT_NEEDED => {
                let meaning = if code == EXIT_WOULD_CHANGE {
                    "`check`'s \"would change\""
                } else {
                    "`apply`'s \"changed, reboot needed\""
                };
                Err(FacilityError::new(format!(
                    "`{what}` exited with status {code}, which is {meaning} in protocol \
                     {PROTOCOL}: {}",
                    verb.expects()
                )))
            }
            _ => Err(ran.error()),
        }
    }

    /// Run `describe` and log its line: what the program says the step wants,
    /// in its own words, at the start of each check.
    fn describe_on_host(&self, ctx: &mut Context<'_>) -> Result<(), FacilityError> {
        let (_, stdout) = self.run(Verb::Describe, ctx)?;
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        match lines.as_slice() {
            [line] => {
                ctx.output(&format!("describe: {}", line.trim()));
                Ok(())
            }
            _ => Err(FacilityError::new(format!(
                "`{}/{} describe` printed {} lines on stdout; protocol {PROTOCOL} wants exactly one",
                super::DIR,
                self.name,
                lines.len()
            ))),
        }
    }
}

impl Facility for CustomFacility {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        self.describe_on_host(ctx)?;
        match self.run(Verb::Check, ctx)? {
            (EXIT_WOULD_CHANGE, _) => Ok(Check::Run),
            _ => Ok(Check::AlreadyDone),
        }
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        match self.run(Verb::Apply, ctx)? {
            (EXIT_REBOOT_NEEDED, _) => {
                ctx.output(&format!(
                    "`{}/{} apply` asks for a reboot (exit status {EXIT_REBOOT_NEEDED})",
                    super::DIR,
                    self.name
                ));
                Ok(Applied::RebootNeeded)
            }
            _ => Ok(Applied::Changed),
        }
    }
}

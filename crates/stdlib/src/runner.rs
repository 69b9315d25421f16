//! The step runner: runs a plan's steps in order, retrying each on any failure.
//!
//! Every step gets up to `attempts` tries (3 unless the steps file says
//! otherwise). A try is a check followed, when needed, by an apply; an error
//! from either is a failed try. Between tries the runner waits as the caller's
//! [`Backoff`] says ([`Backoff::STEP`] for agents and `cattle apply`). When a step runs out of tries the run stops with
//! [`Outcome::Failed`]. Everything that happens is reported as an [`Event`] to
//! an [`Observer`], whose `Display` of each event is the log line.
//!
//! In check mode ([`Environment::check_mode`]) every step's check runs and no
//! apply does: each step ends `would change`, `in state` or `failed`. Up to
//! the first step that would change, the checks see the host exactly as a real
//! run would, so a check that fails there would fail the real run too: it is
//! tried as in a real run (retries, backoff) and stops the run. After a step
//! that would change, a failing check may only be seeing what that step has
//! not done yet (a file in a directory it would make): the step ends
//! `unknown`, at once and without retries, since waiting cannot make the
//! earlier step happen, and the run goes on. A check-mode run that gets
//! through every step ends with [`Outcome::Checked`], listing the steps that
//! would change.
//!
//! With [`Environment::diff`] (in check mode or not), a step whose check says
//! it must run reports what it changes in files ([`crate::Facility::diff`])
//! as an [`Event::Diff`], before its apply.
//!
//! Events reach the observer only through `Redacting`, which replaces the
//! values of the plan's sensitive arguments with [`crate::secrets::MARKER`] in
//! every string an event carries; the returned [`Outcome`] is redacted too.

use std::fmt;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::facility::{Applied, Check, Context, Deadline, Environment, FacilityError};
use crate::secrets::Secrets;
use crate::steps::{Plan, Step};

/// Set for every program a step starts: the step's number, 1-based.
pub const STEP_ENV: &str = "CATTLE_STEP";
/// Set for every program a step starts: the attempt's number, 1-based.
pub const ATTEMPT_ENV: &str = "CATTLE_ATTEMPT";
/// Set by an agent in [`Environment::env`] for every program a step starts:
/// its host ID (`cattle_core::env::HOST_ID`).
pub const HOST_ID_ENV: &str = "CATTLE_HOST_ID";
/// Set by an agent in [`Environment::env`] for every program a step starts:
/// the execution's ID (`cattle_core::env::EXECUTION_ID`).
pub const EXECUTION_ID_ENV: &str = "CATTLE_EXECUTION_ID";

/// Where a run starts: a step, and which attempt of it.
///
/// A run resumed after whoever drove it stopped in the middle of a step (a
/// crash, a kill, a power cut) starts that step at the attempt after the one
/// in flight: such attempts count, so that a step that makes its driver crash
/// every time ends in failure instead of a crash loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// 1-based.
    pub step: usize,
    /// The attempt of `step` to make first, 1-based.
    pub attempt: u32,
    /// Why the attempts before `attempt` ended, for the error when none is left.
    pub lost: Option<String>,
}

impl Start {
    /// At the first attempt of `step`.
    pub fn at(step: usize) -> Start {
        Start {
            step,
            attempt: 1,
            lost: None,
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepResult {
    /// Its check found the state out of place, and its apply put it in place.
    Changed,
    /// Its check found the state already in place: nothing was changed.
    Unchanged,
    /// Its last attempt failed, or it failed with an error no retry can help.
    Failed,
    /// Check mode: its check found the state out of place; a real run would
    /// apply it.
    WouldChange,
    /// Check mode: its check found the state already in place.
    InState,
    /// Check mode: its check failed after an earlier step that would change,
    /// which it may depend on: whether it would change cannot be told.
    Unknown,
}

impl StepResult {
    /// `changed`, `unchanged`, `failed`, `would change`, `in state` or
    /// `unknown`, as logs and reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepResult::Changed => "changed",
            StepResult::Unchanged => "unchanged",
            StepResult::Failed => "failed",
            StepResult::WouldChange => "would change",
            StepResult::InState => "in state",
            StepResult::Unknown => "unknown",
        }
    }
}

impl fmt::Display for StepResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many steps ended how: the recap of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recap {
    /// Whether it recaps a check-mode run, which its `Display` shows.
    pub check_mode: bool,
    pub changed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub would_change: usize,
    pub in_state: usize,
    pub unknown: usize,
}

impl Recap {
    /// No step counted yet, of a run in check mode or not.
    pub fn new(check_mode: bool) -> Recap {
        Recap {
            check_mode,
            ..Recap::default()
        }
    }

    pub fn add(&mut self, result: StepResult) {
        match result {
            StepResult::Changed => self.changed += 1,
            StepResult::Unchanged => self.unchanged += 1,
            StepResult::Failed => self.failed += 1,
            StepResult::WouldChange => self.would_change += 1,
            StepResult::InState => self.in_state += 1,
            StepResult::Unknown => self.unknown += 1,
        }
    }
}

impl fmt::Display for Recap {
    /// `changed=2 unchanged=5 failed=0`, as Ansible's recap spells it; in
    /// check mode `would_change=2 in_state=5 failed=0 unknown=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.check_mode {
            write!(
                f,
                "would_change={} in_state={} failed={} unknown={}",
                self.would_change, self.in_state, self.failed, self.unknown
            )
        } else {
            write!(
                f,
                "changed={} unchanged={} failed={}",
                self.changed, self.unchanged, self.failed
            )
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step is done or was already in place.
    Done,
    /// Step `step` failed on its last try with `error`.
    Failed { step: usize, error: String },
    /// The observer asked to stop; steps from `next_step` on did not run.
    Stopped { next_step: usize },
    /// Step `step`'s apply needs the host rebooted ([`Applied::RebootNeeded`]):
    /// whoever drives the run reboots it, and counts the step `changed` once
    /// the host is back; steps after it did not run.
    RebootRequested { step: usize },
    /// Check mode: every step was checked and nothing was changed. The steps
    /// in `would_change` would change in a real run (none: everything is in
    /// place); those in `unknown` could not be checked, as they may depend
    /// on one of those.
    Checked {
        would_change: Vec<usize>,
        unknown: Vec<usize>,
    },
}

/// Something the runner did, in the order it did it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Started {
        steps: usize,
    },
    StepStarted {
        step: usize,
        total: usize,
        facility: &'a str,
        description: &'a str,
        attempts: u32,
    },
    /// A line of output from the step's apply (for example a program's stderr).
    Output {
        step: usize,
        line: &'a str,
    },
    AttemptFailed {
        step: usize,
        attempt: u32,
        attempts: u32,
        error: &'a FacilityError,
        retry_in: Option<Duration>,
    },
    /// What the step changes (check mode: would change) in a file, as
    /// [`crate::Diff::render`] shows it: several lines. Only with
    /// [`Environment::diff`], before the step's apply.
    Diff {
        step: usize,
        text: &'a str,
    },
    /// Check mode: the step's check failed with `error`, but the steps in
    /// `after` (earlier ones) would change, and the check may depend on what
    /// they would do. The step ends `unknown`.
    Unchecked {
        step: usize,
        after: &'a [usize],
        error: &'a FacilityError,
    },
    /// The step is over, on attempt `attempt`: `changed`, `unchanged` or
    /// `failed`; in check mode `would change`, `in state`, `failed` or `unknown`.
    StepFinished {
        step: usize,
        attempt: u32,
        result: StepResult,
    },
    Finished {
        outcome: &'a Outcome,
    },
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Started { steps: 1 } => write!(f, "starting a config of 1 step"),
            Event::Started { steps } => write!(f, "starting a config of {steps} steps"),
            Event::StepStarted {
                step,
                total,
                facility,
                description,
                ..
            } => write!(f, "Running step {step}/{total}: {facility} ({description})"),
            Event::Output { step, line } => write!(f, "step {step}: | {line}"),
            Event::Diff { step, text } => write!(f, "step {step}: diff:\n{text}"),
            Event::Unchecked { step, after, error } => write!(
                f,
                "Step {step} could not be checked: it may depend on {}, which would change: {error}",
                steps_list(after)
            ),
            Event::AttemptFailed {
                step,
                attempt,
                attempts,
                error,
                retry_in,
            } => {
                write!(
                    f,
                    "step {step}: attempt {attempt} of {attempts} failed: {error}"
                )?;
                match retry_in {
                    Some(delay) => write!(f, "; retrying in {}", crate::backoff::describe(delay)),
                    None if error.is_permanent() => write!(f, "; a retry cannot help"),
                    None => write!(f, "; no attempts left"),
                }
            }
            Event::StepFinished {
                step,
                attempt,
                result,
            } => {
                match result {
                    StepResult::Changed => write!(f, "Step {step} changed")?,
                    StepResult::Unchanged => write!(f, "Step {step} unchanged: already in place")?,
                    StepResult::Failed => write!(f, "Step {step} failed")?,
                    StepResult::WouldChange => write!(f, "Step {step} would change")?,
                    StepResult::InState => write!(f, "Step {step} in state: already in place")?,
                    StepResult::Unknown => write!(f, "Step {step} unknown")?,
                }
                if attempt > 1 {
                    write!(f, " on attempt {attempt}")?;
                }
                Ok(())
            }
            Event::Finished { outcome } => match outcome {
                Outcome::Done => write!(f, "config executed successfully"),
                Outcome::Failed { step, error } => {
                    write!(f, "config failed at step {step}: {error}")
                }
                Outcome::Stopped { next_step } => {
                    write!(f, "stopped before step {next_step} as asked")
                }
                Outcome::RebootRequested { step } => {
                    write!(
                        f,
                        "step {step} asks for a reboot of the host; it is done when the host is back"
                    )
                }
                Outcome::Checked {
                    would_change,
                    unknown,
                } => {
                    if would_change.is_empty() {
                        return write!(
                            f,
                            "check done: every step is in state; nothing would change"
                        );
                    }
                    write!(f, "check done: {} would change", steps_list(would_change))?;
                    if !unknown.is_empty() {
                        write!(f, "; {} could not be checked", steps_list(unknown))?;
                    }
                    write!(f, "; nothing was changed")
                }
            },
        }
    }
}

/// `step 3`, `steps 1 and 3`, `steps 1, 2 and 5`; past 10 steps, the first
/// 9 and how many more (`steps 1, 2, …, 9 and 31 more`).
fn steps_list(steps: &[usize]) -> String {
    const SHOWN: usize = 9;
    match steps {
        [] => "no step".to_string(),
        [one] => format!("step {one}"),
        _ if steps.len() > SHOWN + 1 => {
            let shown: Vec<String> = steps[..SHOWN].iter().map(usize::to_string).collect();
            format!(
                "steps {} and {} more",
                shown.join(", "),
                steps.len() - SHOWN
            )
        }
        [first @ .., last] => {
            let first: Vec<String> = first.iter().map(usize::to_string).collect();
            format!("steps {} and {last}", first.join(", "))
        }
    }
}

/// What the runner reports to, and asks about waiting and stopping.
pub trait Observer {
    fn event(&mut self, event: &Event<'_>);

    /// Wait `delay` before the next try. Tests pass a clock that does not sleep.
    fn sleep(&mut self, delay: Duration) {
        std::thread::sleep(delay);
    }

    /// Asked before each step, and again after its `StepStarted` event: `true`
    /// stops the run there, before the step does anything. A running step is
    /// never interrupted.
    fn should_stop(&mut self) -> bool {
        false
    }

    /// Told before each attempt of a step, before it checks or changes
    /// anything: an observer that journals progress records the attempt here,
    /// so that one cut short by a crash is counted after a restart.
    fn attempt_starting(&mut self, _step: usize, _attempt: u32) {}
}

/// Run `plan`'s steps in order, from `from`, until done, failed or stopped.
pub fn run(
    plan: &Plan,
    environment: &Environment,
    policy: &Backoff,
    from: &Start,
    observer: &mut dyn Observer,
) -> Outcome {
    let observer = &mut Redacting {
        inner: observer,
        secrets: &plan.secrets,
    };
    let total = plan.steps.len();
    observer.event(&Event::Started { steps: total });
    let outcome = run_steps(plan, environment, policy, from, observer);
    observer.event(&Event::Finished { outcome: &outcome });
    redact_outcome(&plan.secrets, &outcome)
}

/// The one way events reach the caller's observer: every string an event
/// carries is redacted on the way. Facilities report real values (the step's
/// description, a program's output, errors) and need not know what is secret.
struct Redacting<'a> {
    inner: &'a mut dyn Observer,
    secrets: &'a Secrets,
}

impl Observer for Redacting<'_> {
    fn event(&mut self, event: &Event<'_>) {
        let secrets = self.secrets;
        if secrets.is_empty() {
            return self.inner.event(event);
        }
        // No `..` in these patterns: a new field must be considered here.
        match *event {
            Event::StepStarted {
                step,
                total,
                facility,
                description,
                attempts,
            } => self.inner.event(&Event::StepStarted {
                step,
                total,
                facility: &secrets.redact(facility),
                description: &secrets.redact(description),
                attempts,
            }),
            Event::Output { step, line } => self.inner.event(&Event::Output {
                step,
                line: &secrets.redact(line),
            }),
            Event::Diff { step, text } => self.inner.event(&Event::Diff {
                step,
                text: &secrets.redact(text),
            }),
            Event::Unchecked { step, after, error } => self.inner.event(&Event::Unchecked {
                step,
                after,
                error: &error.map_message(|m| secrets.redact(m).into_owned()),
            }),
            Event::AttemptFailed {
                step,
                attempt,
                attempts,
                error,
                retry_in,
            } => self.inner.event(&Event::AttemptFailed {
                step,
                attempt,
                attempts,
                error: &error.map_message(|m| secrets.redact(m).into_owned()),
                retry_in,
            }),
            Event::Finished { outcome } => self.inner.event(&Event::Finished {
                outcome: &redact_outcome(secrets, outcome),
            }),
            Event::Started { steps } => self.inner.event(&Event::Started { steps }),
            Event::StepFinished {
                step,
                attempt,
                result,
            } => self.inner.event(&Event::StepFinished {
                step,
                attempt,
                result,
            }),
        }
    }

    fn sleep(&mut self, delay: Duration) {
        self.inner.sleep(delay);
    }

    fn should_stop(&mut self) -> bool {
        self.inner.should_stop()
    }

    fn attempt_starting(&mut self, step: usize, attempt: u32) {
        self.inner.attempt_starting(step, attempt);
    }
}

fn redact_outcome(secrets: &Secrets, outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::Failed { step, error } => Outcome::Failed {
            step: *step,
            error: secrets.redact(error).into_owned(),
        },
        Outcome::Done
        | Outcome::Stopped { .. }
        | Outcome::RebootRequested { .. }
        | Outcome::Checked { .. } => outcome.clone(),
    }
}

fn run_steps(
    plan: &Plan,
    environment: &Environment,
    policy: &Backoff,
    from: &Start,
    observer: &mut dyn Observer,
) -> Outcome {
    let total = plan.steps.len();
    let check_mode = environment.check_mode;
    // Check mode: the steps that would change, and those that could not be
    // checked after one of them.
    let mut would_change = Vec::new();
    let mut unknown = Vec::new();
    for step in plan.steps.iter().skip(from.step.max(1) - 1) {
        if observer.should_stop() {
            return Outcome::Stopped {
                next_step: step.number,
            };
        }
        let description = step.facility.describe();
        observer.event(&Event::StepStarted {
            step: step.number,
            total,
            facility: &step.name,
            description: &description,
            attempts: step.attempts,
        });
        // The observer may have waited inside that event (an agent whose disk
        // is full waits until it can record the step) and been asked to stop
        // meanwhile: then the step does not start.
        if observer.should_stop() {
            return Outcome::Stopped {
                next_step: step.number,
            };
        }
        let resumed = step.number == from.step;
        let mut attempt = if resumed { from.attempt.max(1) } else { 1 };
        if attempt > step.attempts {
            // Every attempt was cut short: look once more whether the last
            // one got its work done, and otherwise the step has failed. (In
            // check mode it was a check that was cut short every time.)
            let deadline = Some(Deadline::after(step.timeout));
            let mut output = |line: &str| {
                observer.event(&Event::Output {
                    step: step.number,
                    line,
                })
            };
            // Programs this check starts are told the step, and the attempt
            // whose work it looks for.
            let env = vec![
                (STEP_ENV.to_string(), step.number.to_string()),
                (ATTEMPT_ENV.to_string(), (attempt - 1).to_string()),
            ];
            let mut ctx = Context::new(environment, env, deadline, &mut output);
            // In place now: the attempt cut short most likely put it there.
            if !check_mode && let Ok(Check::AlreadyDone) = step.facility.check(&mut ctx) {
                observer.event(&Event::StepFinished {
                    step: step.number,
                    attempt: attempt - 1,
                    result: StepResult::Changed,
                });
                continue;
            }
            let why = from.lost.as_deref().unwrap_or("it was cut short");
            observer.event(&Event::StepFinished {
                step: step.number,
                attempt: attempt - 1,
                result: StepResult::Failed,
            });
            return Outcome::Failed {
                step: step.number,
                error: format!(
                    "no attempt left: attempt {} of {} did not finish: {why}",
                    attempt - 1,
                    step.attempts
                ),
            };
        }
        // A step's diff is shown once, not again with each retry.
        let mut show_diff = environment.diff;
        loop {
            observer.attempt_starting(step.number, attempt);
            if observer.should_stop() {
                return Outcome::Stopped {
                    next_step: step.number,
                };
            }
            let tried = try_once(step, environment, attempt, &mut show_diff, observer);
            let finished = |result| Event::StepFinished {
                step: step.number,
                attempt,
                result,
            };
            match tried {
                Ok(Tried::Ended(result)) => {
                    if result == StepResult::WouldChange {
                        would_change.push(step.number);
                    }
                    observer.event(&finished(result));
                    break;
                }
                Ok(Tried::RebootNeeded) => {
                    return Outcome::RebootRequested { step: step.number };
                }
                Err(error) if check_mode && !would_change.is_empty() => {
                    observer.event(&Event::Unchecked {
                        step: step.number,
                        after: &would_change,
                        error: &error,
                    });
                    unknown.push(step.number);
                    observer.event(&finished(StepResult::Unknown));
                    break;
                }
                Err(error) => {
                    let retry_in = (attempt < step.attempts && !error.is_permanent())
                        .then(|| policy.delay(attempt));
                    observer.event(&Event::AttemptFailed {
                        step: step.number,
                        attempt,
                        attempts: step.attempts,
                        error: &error,
                        retry_in,
                    });
                    match retry_in {
                        Some(delay) => observer.sleep(delay),
                        None => {
                            observer.event(&finished(StepResult::Failed));
                            return Outcome::Failed {
                                step: step.number,
                                error: error.message().to_string(),
                            };
                        }
                    }
                    attempt += 1;
                }
            }
        }
    }
    if check_mode {
        Outcome::Checked {
            would_change,
            unknown,
        }
    } else {
        Outcome::Done
    }
}

/// How a try that did not fail ended.
enum Tried {
    /// The step is over: `changed` or `unchanged`; in check mode `would
    /// change` or `in state`.
    Ended(StepResult),
    /// The apply needs the host rebooted.
    RebootNeeded,
}

/// One try of `step`: its check, then (unless in check mode) its apply if the
/// check says so. When the check says it must run and `show_diff` is set,
/// the step's diff is reported first, and `show_diff` cleared.
fn try_once(
    step: &Step,
    environment: &Environment,
    attempt: u32,
    show_diff: &mut bool,
    observer: &mut dyn Observer,
) -> Result<Tried, FacilityError> {
    let env = vec![
        (STEP_ENV.to_string(), step.number.to_string()),
        (ATTEMPT_ENV.to_string(), attempt.to_string()),
    ];
    let deadline = Some(Deadline::after(step.timeout));
    let (check, diff) = {
        let mut output = |line: &str| {
            observer.event(&Event::Output {
                step: step.number,
                line,
            })
        };
        let mut ctx = Context::new(environment, env.clone(), deadline, &mut output);
        let check = step.facility.check(&mut ctx)?;
        let diff = (check == Check::Run && *show_diff).then(|| {
            match step.facility.diff(&mut ctx) {
                Ok(diff) => diff.map(|diff| diff.render(step.sensitive)),
                // The step can still run; only its diff cannot be shown.
                Err(error) => Some(format!("cannot show what would change: {error}")),
            }
        });
        (check, diff.flatten())
    };
    if let Some(text) = diff {
        *show_diff = false;
        observer.event(&Event::Diff {
            step: step.number,
            text: &text,
        });
    }
    match (check, environment.check_mode) {
        (Check::AlreadyDone, false) => Ok(Tried::Ended(StepResult::Unchanged)),
        (Check::AlreadyDone, true) => Ok(Tried::Ended(StepResult::InState)),
        (Check::Run, true) => Ok(Tried::Ended(StepResult::WouldChange)),
        (Check::Run, false) => {
            let mut output = |line: &str| {
                observer.event(&Event::Output {
                    step: step.number,
                    line,
                })
            };
            let mut ctx = Context::new(environment, env, deadline, &mut output);
            Ok(match step.facility.apply(&mut ctx)? {
                Applied::Changed => Tried::Ended(StepResult::Changed),
                Applied::RebootNeeded => Tried::RebootNeeded,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::REBOOT_EXIT_CODE;
    use crate::facility::testing::snapshot;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Records log lines and waits instead of sleeping.
    #[derive(Default)]
    struct Recorder {
        lines: Vec<String>,
        slept: Vec<Duration>,
        stop_after_steps: Option<usize>,
        finished: usize,
        results: Vec<StepResult>,
    }

    impl Observer for Recorder {
        fn event(&mut self, event: &Event<'_>) {
            if let Event::StepFinished { result, .. } = event {
                self.finished += 1;
                self.results.push(*result);
            }
            self.lines.push(event.to_string());
        }
        fn sleep(&mut self, delay: Duration) {
            self.slept.push(delay);
        }
        fn should_stop(&mut self) -> bool {
            self.stop_after_steps == Some(self.finished)
        }
    }

    fn plan(dir: &Path, steps: &str) -> Plan {
        Plan::parse(steps, &dir.join("cattle.toml"), dir).unwrap()
    }

    #[test]
    fn runs_then_skips_on_second_run() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out/a");
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n",
                target.display()
            ),
        );
        let ctx = Environment::new(dir.path());
        let mut first = Recorder::default();
        assert_eq!(
            run(
                &p,
                &ctx,
                &Backoff::STEP.without_jitter(),
                &Start::at(1),
                &mut first
            ),
            Outcome::Done
        );
        assert!(target.is_dir());
        assert!(first.lines.iter().any(|l| l == "Step 1 changed"));

        let mut second = Recorder::default();
        assert_eq!(
            run(
                &p,
                &ctx,
                &Backoff::STEP.without_jitter(),
                &Start::at(1),
                &mut second
            ),
            Outcome::Done
        );
        assert!(
            second
                .lines
                .iter()
                .any(|l| l == "Step 1 unchanged: already in place"),
            "{:?}",
            second.lines
        );
        assert_eq!(second.lines.last().unwrap(), "config executed successfully");
    }

    #[test]
    fn a_step_failing_with_a_permanent_error_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be: no retry can change that.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"{}\"\nattempts = 4\n",
                blocker.display()
            ),
        );
        let mut rec = Recorder::default();
        let outcome = run(
            &p,
            &Environment::new(dir.path()),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut rec,
        );
        assert!(
            matches!(&outcome, Outcome::Failed { step: 1, error } if error.contains("is not a directory")),
            "{outcome:?}"
        );
        assert!(rec.slept.is_empty(), "{:?}", rec.slept);
        let failed: Vec<&String> = rec.lines.iter().filter(|l| l.contains("failed")).collect();
        assert_eq!(failed.len(), 3, "{:#?}", rec.lines);
        assert!(
            failed[0].starts_with("step 1: attempt 1 of 4 failed: ")
                && failed[0].ends_with("; a retry cannot help"),
            "{}",
            failed[0]
        );
        assert_eq!(failed[1], "Step 1 failed");
    }

    #[test]
    fn a_failing_step_is_tried_attempts_times_with_backoff_then_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let never = dir.path().join("never");
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"echo 'is not a directory' >&2; exit 1\"]\nattempts = 4\n\
                 [[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n",
                never.display()
            ),
        );
        let mut rec = Recorder::default();
        let outcome = run(
            &p,
            &Environment::new(dir.path()),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut rec,
        );
        let Outcome::Failed { step, error } = outcome else {
            panic!("expected failure, got {outcome:?}");
        };
        assert_eq!(step, 1);
        assert!(error.contains("is not a directory"), "{error}");
        assert_eq!(rec.slept, [1, 2, 4].map(Duration::from_secs));
        let failures = rec.lines.iter().filter(|l| l.contains("failed:")).count();
        assert_eq!(failures, 4);
        assert!(rec.lines.iter().any(|l| l.ends_with("; no attempts left")));
        assert!(rec.lines.iter().any(|l| l == "Step 1 failed on attempt 4"));
        assert!(!never.exists(), "the run must stop at the failed step");
    }

    #[test]
    fn a_reboot_step_or_exit_status_194_asks_for_a_reboot_and_runs_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let after = dir.path().join("after");
        for first in [
            "[[step]]\nfacility = \"reboot\"\n".to_string(),
            format!(
                "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"exit {REBOOT_EXIT_CODE}\"]\n"
            ),
        ] {
            let p = plan(
                dir.path(),
                &format!(
                    "{first}[[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n",
                    after.display()
                ),
            );
            let ctx = Environment::new(dir.path());
            let mut rec = Recorder::default();
            let outcome = run(
                &p,
                &ctx,
                &Backoff::STEP.without_jitter(),
                &Start::at(1),
                &mut rec,
            );
            assert_eq!(outcome, Outcome::RebootRequested { step: 1 }, "{first}");
            assert!(!after.exists());
            assert!(rec.lines.last().unwrap().contains("asks for a reboot"));
            // Once the host is back, whoever drives the plan continues after it.
            assert_eq!(
                run(
                    &p,
                    &ctx,
                    &Backoff::STEP.without_jitter(),
                    &Start::at(2),
                    &mut rec
                ),
                Outcome::Done
            );
            assert!(after.is_dir());
            std::fs::remove_dir(&after).unwrap();
        }
    }

    const ARG_SECRET: &str = "arg-s3cret-4815";
    const ENV_SECRET: &str = "env-s3cret-1623";

    /// The run's log lines, and the strings its events carry, for searching.
    #[derive(Default)]
    struct Everything {
        lines: Vec<String>,
        fields: Vec<String>,
    }

    impl Observer for Everything {
        fn event(&mut self, event: &Event<'_>) {
            self.lines.push(event.to_string());
            self.fields.push(format!("{event:?}"));
        }
        fn sleep(&mut self, _: Duration) {}
    }

    impl Everything {
        fn assert_never_shows(&self, secrets: &[&str]) {
            for text in self.lines.iter().chain(&self.fields) {
                for secret in secrets {
                    assert!(!text.contains(secret), "`{secret}` shown in: {text}");
                }
            }
        }
    }

    #[test]
    fn sensitive_values_reach_the_program_but_never_the_observer_or_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        // The program receives both secrets, prints them on stdout and stderr,
        // and fails, so they would be in the output, the attempt errors and
        // the final error.
        std::fs::write(
            dir.path().join("show.sh"),
            "printf %s \"$1\" > got-arg\nprintf %s \"$TOKEN\" > got-env\n\
             echo \"out $1 $TOKEN\"\necho \"err $1 $TOKEN\" >&2\nexit 3\n",
        )
        .unwrap();
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"show.sh\", \"{ARG_SECRET}\"]\n\
                 env = {{ TOKEN = \"{ENV_SECRET}\", LANG = \"C\" }}\n\
                 sensitive = [\"argv\", \"env.TOKEN\"]\nattempts = 2\n"
            ),
        );
        let mut everything = Everything::default();
        let outcome = run(
            &p,
            &Environment::new(dir.path()),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut everything,
        );

        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(
            read("got-arg"),
            ARG_SECRET,
            "the program gets the real argument"
        );
        assert_eq!(read("got-env"), ENV_SECRET, "and the real environment");

        let Outcome::Failed { step: 1, error } = &outcome else {
            panic!("expected step 1 to fail, got {outcome:?}");
        };
        assert_eq!(
            error,
            "`[sensitive]` exited with status 3: err [sensitive] [sensitive]"
        );
        everything.assert_never_shows(&[ARG_SECRET, ENV_SECRET]);
        let lines = &everything.lines;
        let has = |wanted: &str| lines.iter().any(|l| l == wanted);
        assert!(
            has(
                "Running step 1/1: command (command `[sensitive] [sensitive] [sensitive]` has run)"
            ),
            "{lines:#?}"
        );
        assert!(has("step 1: | out [sensitive] [sensitive]"), "{lines:#?}");
        assert!(
            has("step 1: | stderr: err [sensitive] [sensitive]"),
            "{lines:#?}"
        );
        assert!(
            has(
                "step 1: attempt 1 of 2 failed: `[sensitive]` exited with status 3: \
                 err [sensitive] [sensitive]; retrying in 1.0s"
            ),
            "{lines:#?}"
        );
        assert!(
            has(
                "config failed at step 1: `[sensitive]` exited with status 3: \
                 err [sensitive] [sensitive]"
            ),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_secret_inside_another_and_a_secret_of_an_earlier_step_are_redacted_whole() {
        let dir = tempfile::tempdir().unwrap();
        // Step 1 marks its whole `env` table sensitive; one value contains the
        // other. Step 2 shows what step 1 left behind: still a secret.
        let p = plan(
            dir.path(),
            "[[step]]\nfacility = \"command\"\n\
             argv = [\"sh\", \"-c\", \"echo \\\"$SHORT|$LONG\\\"; echo \\\"$LONG\\\" > left\"]\n\
             env = { SHORT = \"pa55\", LONG = \"xx-pa55-word-yy\" }\nsensitive = [\"env\"]\n\
             [[step]]\nfacility = \"command\"\nargv = [\"cat\", \"left\"]\n",
        );
        let mut everything = Everything::default();
        let outcome = run(
            &p,
            &Environment::new(dir.path()),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut everything,
        );
        assert_eq!(outcome, Outcome::Done, "{:#?}", everything.lines);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("left")).unwrap(),
            "xx-pa55-word-yy\n"
        );
        everything.assert_never_shows(&["pa55", "xx-", "word", "-yy"]);
        let lines = &everything.lines;
        assert!(
            lines
                .iter()
                .any(|l| l == "step 1: | [sensitive]|[sensitive]"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l == "step 2: | [sensitive]"),
            "{lines:#?}"
        );
    }

    /// Asks to stop while it handles the start of step `at`, as an agent
    /// stopped by SIGTERM while it waits for its disk.
    #[derive(Default)]
    struct StopsDuringStart {
        at: usize,
        stop: bool,
        lines: Vec<String>,
    }

    impl Observer for StopsDuringStart {
        fn event(&mut self, event: &Event<'_>) {
            if let Event::StepStarted { step, .. } = event {
                self.stop |= *step == self.at;
            }
            self.lines.push(event.to_string());
        }
        fn should_stop(&mut self) -> bool {
            self.stop
        }
    }

    #[test]
    fn a_stop_asked_for_during_a_steps_start_event_keeps_the_step_from_running() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n\
                 [[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n",
                a.display(),
                b.display()
            ),
        );
        let mut observer = StopsDuringStart {
            at: 2,
            ..Default::default()
        };
        let outcome = run(
            &p,
            &Environment::new(dir.path()),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut observer,
        );
        assert_eq!(outcome, Outcome::Stopped { next_step: 2 });
        assert!(a.is_dir());
        assert!(
            !b.exists(),
            "step 2 ran after the stop: {:#?}",
            observer.lines
        );
    }

    #[test]
    fn stop_is_honoured_between_steps_and_from_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n\
                 [[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n",
                a.display(),
                b.display()
            ),
        );
        let ctx = Environment::new(dir.path());
        let mut rec = Recorder {
            stop_after_steps: Some(1),
            ..Default::default()
        };
        assert_eq!(
            run(
                &p,
                &ctx,
                &Backoff::STEP.without_jitter(),
                &Start::at(1),
                &mut rec
            ),
            Outcome::Stopped { next_step: 2 }
        );
        assert!(a.is_dir() && !b.exists());

        let mut rec = Recorder::default();
        assert_eq!(
            run(
                &p,
                &ctx,
                &Backoff::STEP.without_jitter(),
                &Start::at(2),
                &mut rec
            ),
            Outcome::Done
        );
        assert!(b.is_dir());
        assert!(rec.lines.iter().all(|l| !l.starts_with("Running step 1/")));
    }

    #[test]
    fn a_resumed_step_starts_at_its_next_attempt_and_fails_when_none_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let attempts = dir.path().join("attempts");
        let made = dir.path().join("made");
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"echo $CATTLE_ATTEMPT >> {}\"]\n\
                 [[step]]\nfacility = \"make_dir\"\npath = \"{}\"\n",
                attempts.display(),
                made.display()
            ),
        );
        let ctx = Environment::new(dir.path());
        let policy = Backoff::STEP.without_jitter();

        /// Records the attempts the runner announces.
        #[derive(Default)]
        struct Attempts(Vec<(usize, u32)>, Vec<String>);
        impl Observer for Attempts {
            fn event(&mut self, event: &Event<'_>) {
                self.1.push(event.to_string());
            }
            fn sleep(&mut self, _: Duration) {}
            fn attempt_starting(&mut self, step: usize, attempt: u32) {
                self.0.push((step, attempt));
            }
        }

        // Two attempts of step 1 were cut short: the third (and last) runs.
        let mut seen = Attempts::default();
        let resume = Start {
            step: 1,
            attempt: 3,
            lost: Some("the agent stopped".to_string()),
        };
        assert_eq!(run(&p, &ctx, &policy, &resume, &mut seen), Outcome::Done);
        assert_eq!(std::fs::read_to_string(&attempts).unwrap(), "3\n");
        assert_eq!(seen.0, [(1, 3), (2, 1)]);

        // All three were cut short: the step is not run again, and fails.
        std::fs::remove_file(&attempts).unwrap();
        let exhausted = Start {
            step: 1,
            attempt: 4,
            lost: Some("the agent stopped during it".to_string()),
        };
        let outcome = run(&p, &ctx, &policy, &exhausted, &mut Attempts::default());
        assert_eq!(
            outcome,
            Outcome::Failed {
                step: 1,
                error:
                    "no attempt left: attempt 3 of 3 did not finish: the agent stopped during it"
                        .to_string()
            }
        );
        assert!(!attempts.exists(), "an exhausted step does not run again");

        // Unless its check finds its work done by the attempt that was cut short.
        let exhausted_second = Start {
            step: 2,
            attempt: 4,
            lost: None,
        };
        let mut seen = Attempts::default();
        assert_eq!(
            run(&p, &ctx, &policy, &exhausted_second, &mut seen),
            Outcome::Done
        );
        assert!(
            seen.1.iter().any(|l| l == "Step 2 changed on attempt 3"),
            "{:?}",
            seen.1
        );
    }

    /// `environment` in check mode, with diffs when `diff`.
    fn checking(dir: &Path, diff: bool) -> Environment {
        let mut environment = Environment::new(dir);
        environment.check_mode = true;
        environment.diff = diff;
        environment
    }

    /// The log lines that end steps, and the recap they make.
    fn results(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.starts_with("Step "))
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn check_mode_changes_nothing_and_says_what_each_step_would_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("host");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(dir.path().join("motd"), "hello\n").unwrap();
        std::fs::write(root.join("etc/motd"), "hello\n").unwrap();
        std::fs::write(root.join("etc/app.conf"), "port=80\n").unwrap();
        std::fs::set_permissions(root.join("etc/app.conf"), Permissions::from_mode(0o644)).unwrap();
        let r = root.display();
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"{r}/etc\"\n\
                 [[step]]\nfacility = \"make_dir\"\npath = \"{r}/srv/app\"\n\
                 [[step]]\nfacility = \"file\"\npath = \"{r}/srv/app/app.env\"\ncontent = \"A=1\\n\"\nmode = \"0600\"\n\
                 [[step]]\nfacility = \"install_file\"\nsource = \"motd\"\ndest = \"{r}/etc/motd\"\n\
                 [[step]]\nfacility = \"line_in_file\"\npath = \"{r}/etc/app.conf\"\nline = \"port=8080\"\nregex = \"^port=\"\n\
                 [[step]]\nfacility = \"chmod\"\npath = \"{r}/etc/app.conf\"\nmode = \"0644\"\n\
                 [[step]]\nfacility = \"chmod\"\npath = \"{r}/srv/app/app.env\"\nmode = \"0600\"\n"
            ),
        );
        let before = snapshot(&root);
        let mut rec = Recorder::default();
        let outcome = run(
            &p,
            &checking(dir.path(), true),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut rec,
        );
        assert_eq!(snapshot(&root), before, "check mode changed the host");
        assert_eq!(
            outcome,
            Outcome::Checked {
                would_change: vec![2, 3, 5],
                unknown: vec![7],
            },
            "{:#?}",
            rec.lines
        );
        assert_eq!(
            results(&rec.lines),
            [
                "Step 1 in state: already in place",
                "Step 2 would change",
                "Step 3 would change",
                "Step 4 in state: already in place",
                "Step 5 would change",
                "Step 6 in state: already in place",
                &format!(
                    "Step 7 could not be checked: it may depend on steps 2, 3 and 5, which would \
                     change: `{r}/srv/app/app.env` does not exist; create it in an earlier step"
                ),
                "Step 7 unknown",
            ]
        );
        // Not retried: waiting cannot make the earlier steps happen.
        assert!(rec.slept.is_empty(), "{:?}", rec.slept);
        assert_eq!(
            rec.lines.last().unwrap(),
            "check done: steps 2, 3 and 5 would change; step 7 could not be checked; \
             nothing was changed"
        );
        assert!(
            rec.lines.contains(&format!(
                "step 5: diff:\n--- {r}/etc/app.conf (on the host)\n\
                 +++ {r}/etc/app.conf (as the step leaves it)\n@@ -1 +1 @@\n-port=80\n+port=8080"
            )),
            "{:#?}",
            rec.lines
        );
        let mut recap = Recap::new(true);
        rec.results.iter().for_each(|r| recap.add(*r));
        assert_eq!(
            recap.to_string(),
            "would_change=3 in_state=3 failed=0 unknown=1"
        );

        // Run for real, then checked again: everything is in state.
        let done = run(
            &p,
            &Environment::new(dir.path()),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut Recorder::default(),
        );
        assert_eq!(done, Outcome::Done);
        let applied = snapshot(&root);
        let mut again = Recorder::default();
        let outcome = run(
            &p,
            &checking(dir.path(), true),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut again,
        );
        assert_eq!(
            outcome,
            Outcome::Checked {
                would_change: Vec::new(),
                unknown: Vec::new()
            }
        );
        assert_eq!(snapshot(&root), applied);
        assert!(!again.lines.iter().any(|l| l.contains("diff:")));
        assert_eq!(
            again.lines.last().unwrap(),
            "check done: every step is in state; nothing would change"
        );
    }

    #[test]
    fn a_failing_check_with_no_step_before_it_that_would_change_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("host");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("src"), "new\n").unwrap();
        std::fs::write(root.join("dest"), "old\n").unwrap();
        let r = root.display();
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"{r}\"\n\
                 [[step]]\nfacility = \"install_file\"\nsource = \"src\"\ndest = \"{r}/dest\"\n\
                 [[step]]\nfacility = \"make_dir\"\npath = \"{r}/never\"\n"
            ),
        );
        // The source is gone after the steps file was read: an error a retry may get past.
        std::fs::remove_file(dir.path().join("src")).unwrap();
        let mut rec = Recorder::default();
        let outcome = run(
            &p,
            &checking(dir.path(), false),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut rec,
        );
        let Outcome::Failed { step: 2, error } = &outcome else {
            panic!("{outcome:?}: {:#?}", rec.lines);
        };
        assert!(error.starts_with("cannot read `"), "{error}");
        // Tried as a real run would try it, since it would fail the same way.
        assert_eq!(rec.slept, [1, 2].map(Duration::from_secs));
        assert_eq!(
            results(&rec.lines),
            [
                "Step 1 in state: already in place",
                "Step 2 failed on attempt 3"
            ]
        );
        assert!(
            !rec.lines.iter().any(|l| l.starts_with("Running step 3/")),
            "{:#?}",
            rec.lines
        );
        assert!(!root.join("never").exists());

        // After a step that would change, the same failure is `unknown`, at once.
        std::fs::write(dir.path().join("src"), "new\n").unwrap();
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"make_dir\"\npath = \"{r}/sub\"\n\
                 [[step]]\nfacility = \"install_file\"\nsource = \"src\"\ndest = \"{r}/dest\"\n\
                 [[step]]\nfacility = \"make_dir\"\npath = \"{r}/never\"\n"
            ),
        );
        std::fs::remove_file(dir.path().join("src")).unwrap();
        let before = snapshot(&root);
        let mut rec = Recorder::default();
        let outcome = run(
            &p,
            &checking(dir.path(), false),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut rec,
        );
        assert_eq!(
            outcome,
            Outcome::Checked {
                would_change: vec![1, 3],
                unknown: vec![2]
            }
        );
        assert!(rec.slept.is_empty(), "{:?}", rec.slept);
        assert!(
            rec.lines.iter().any(|l| l.starts_with(
                "Step 2 could not be checked: it may depend on step 1, which would change: \
                 cannot read `"
            )),
            "{:#?}",
            rec.lines
        );
        assert_eq!(snapshot(&root), before);
    }

    #[test]
    fn a_check_failing_for_good_fails_the_check_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"chmod\"\npath = \"{}\"\nmode = \"0600\"\nattempts = 5\n",
                missing.display()
            ),
        );
        let mut rec = Recorder::default();
        let outcome = run(
            &p,
            &checking(dir.path(), true),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut rec,
        );
        assert!(
            matches!(outcome, Outcome::Failed { step: 1, .. }),
            "{outcome:?}"
        );
        assert!(rec.slept.is_empty());
        assert_eq!(results(&rec.lines), ["Step 1 failed"]);
    }

    #[test]
    fn a_diff_is_shown_once_before_the_apply_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "a\nb\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let steps = format!(
            "[[step]]\nfacility = \"file\"\npath = \"{}\"\ncontent = \"a\\nc\\n\"\n",
            path.display()
        );
        let p = plan(dir.path(), &steps);
        let mut rec = Recorder::default();
        let mut environment = Environment::new(dir.path());
        environment.diff = true;
        let policy = Backoff::STEP.without_jitter();
        assert_eq!(
            run(&p, &environment, &policy, &Start::at(1), &mut rec),
            Outcome::Done
        );
        let p_ = path.display();
        let diff = format!(
            "step 1: diff:\n--- {p_} (on the host)\n+++ {p_} (as the step leaves it)\n\
             @@ -1,2 +1,2 @@\n a\n-b\n+c"
        );
        let at = |line: &str| rec.lines.iter().position(|l| l == line);
        assert!(
            at(&diff).unwrap() < at("Step 1 changed").unwrap(),
            "{:#?}",
            rec.lines
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nc\n");

        // Not asked for: no diff, in check mode or not.
        std::fs::write(&path, "a\nb\n").unwrap();
        for environment in [Environment::new(dir.path()), checking(dir.path(), false)] {
            let mut rec = Recorder::default();
            run(&p, &environment, &policy, &Start::at(1), &mut rec);
            assert!(
                !rec.lines.iter().any(|l| l.contains("diff:")),
                "{:#?}",
                rec.lines
            );
        }

        // Retried: the diff is shown once.
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"file\"\npath = \"{}/missing/f\"\ncontent = \"x\\n\"\nattempts = 2\n",
                dir.path().display()
            ),
        );
        let mut rec = Recorder::default();
        let mut environment = Environment::new(dir.path());
        environment.diff = true;
        let outcome = run(&p, &environment, &policy, &Start::at(1), &mut rec);
        assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
        assert_eq!(
            rec.lines.iter().filter(|l| l.contains("diff:")).count(),
            1,
            "{:#?}",
            rec.lines
        );
    }

    #[test]
    fn a_sensitive_value_in_a_diff_is_redacted_and_lines_only_the_host_has_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        // The host's file holds an older password: no redaction knows it.
        std::fs::write(&path, "USER=app\nPASSWORD=old-pa55word\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let other = dir.path().join("other.conf");
        std::fs::write(&other, "x=1\n").unwrap();
        std::fs::set_permissions(&other, Permissions::from_mode(0o644)).unwrap();
        let p = plan(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"file\"\npath = \"{}\"\n\
                 content = \"USER=app\\nPASSWORD={ARG_SECRET}\\n\"\nsensitive = [\"content\"]\n\
                 [[step]]\nfacility = \"line_in_file\"\npath = \"{}\"\nline = \"PASSWORD={ARG_SECRET}\"\n",
                path.display(),
                other.display()
            ),
        );
        let mut everything = Everything::default();
        let outcome = run(
            &p,
            &checking(dir.path(), true),
            &Backoff::STEP.without_jitter(),
            &Start::at(1),
            &mut everything,
        );
        assert_eq!(
            outcome,
            Outcome::Checked {
                would_change: vec![1, 2],
                unknown: Vec::new()
            }
        );
        everything.assert_never_shows(&[ARG_SECRET, "old-pa55word"]);
        let (a, o) = (path.display(), other.display());
        let lines = &everything.lines;
        assert!(
            lines.contains(&format!(
                "step 1: diff:\n--- {a} (on the host)\n+++ {a} (as the step leaves it)\n\
                 @@ -1,2 +1,2 @@\n [sensitive]\n-[sensitive]\n+[sensitive]"
            )),
            "{lines:#?}"
        );
        // Another step's diff shows a secret of the first as `[sensitive]` too.
        assert!(
            lines.contains(&format!(
                "step 2: diff:\n--- {o} (on the host)\n+++ {o} (as the step leaves it)\n\
                 @@ -1 +1,2 @@\n x=1\n+[sensitive]"
            )),
            "{lines:#?}"
        );
    }
}

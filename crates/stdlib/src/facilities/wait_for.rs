//! `wait_for`: a condition holds, within a time limit: a TCP port accepts
//! connections, an HTTP URL answers a status, a file exists, or a command
//! succeeds. The health check a step can gate on (a service is up before the
//! next step uses it).
//!
//! The check looks once: when the condition holds already the step is
//! `unchanged`. Apply looks again every `interval` until it holds (`changed`)
//! or `within` has passed (the attempt fails, and is retried as any other).
//! Nothing on the host is changed either way.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::process::{Program, describe_status};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "wait_for",
    args: &[
        "port", "host", "url", "status", "path", "command", "within", "interval",
    ],
    summary: "wait until a port is open, a URL answers, a file exists or a command succeeds",
    build,
};

/// How long apply waits when the step does not say.
const DEFAULT_WITHIN: Duration = Duration::from_secs(60);
/// How often apply looks when the step does not say.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one connection attempt to a port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let none_or_two = args
        .error(
            "port",
            "step `wait_for` needs exactly one of `port`, `url`, `path` and `command`",
        )
        .with_hint("e.g. `port = 8080`, `url = \"http://127.0.0.1:8080/health\"`, `path = \"/run/app.pid\"` or `command = [\"pg_isready\"]`");
    let port = args.optional_int("port", 1..=65535)?;
    let host = args.optional_str("host")?;
    let url = args.optional_str("url")?;
    let status = args.optional_int("status", 100..=599)?;
    let path = args.optional_absolute_path("path")?;
    let command = args.optional_str_list("command")?;
    let within = args.optional_duration("within")?.unwrap_or(DEFAULT_WITHIN);
    let interval = args
        .optional_duration("interval")?
        .unwrap_or(DEFAULT_INTERVAL);

    let has_host = host.is_some();
    let condition = match (port, url, path, command) {
        (Some(port), None, None, None) => Condition::Port {
            host: host.unwrap_or_else(|| "127.0.0.1".to_string()),
            port: port as u16,
        },
        (None, Some(url), None, None) => {
            if let Err(why) = crate::http::valid_url(&url) {
                return Err(args
                    .error("url", "argument `url` must be an http or https URL")
                    .with_hint(format!("`{url}`: {why}")));
            }
            Condition::Http {
                url,
                status: status.unwrap_or(200) as u16,
            }
        }
        (None, None, Some(path), None) => Condition::File(path),
        (None, None, None, Some(argv)) => Condition::Command(argv),
        _ => return Err(none_or_two),
    };
    if has_host && !matches!(condition, Condition::Port { .. }) {
        return Err(args.error("host", "argument `host` goes with `port` only"));
    }
    if status.is_some() && !matches!(condition, Condition::Http { .. }) {
        return Err(args.error("status", "argument `status` goes with `url` only"));
    }
    if interval > within {
        return Err(args
            .error("interval", "argument `interval` is longer than `within`")
            .with_hint("look more often than the whole wait, e.g. `interval = \"1s\"`"));
    }
    Ok(Box::new(WaitFor {
        condition,
        within,
        interval,
    }))
}

#[derive(Debug)]
enum Condition {
    Port { host: String, port: u16 },
    Http { url: String, status: u16 },
    File(PathBuf),
    Command(Vec<String>),
}

#[derive(Debug)]
struct WaitFor {
    condition: Condition,
    within: Duration,
    interval: Duration,
}

impl WaitFor {
    /// Whether the condition holds now: `Err(why)` when it does not.
    fn holds(&self, ctx: &mut Context<'_>) -> Result<Result<(), String>, FacilityError> {
        Ok(match &self.condition {
            Condition::Port { host, port } => {
                let addrs = match (host.as_str(), *port).to_socket_addrs() {
                    Ok(addrs) => addrs.collect::<Vec<_>>(),
                    Err(err) => return Ok(Err(format!("cannot resolve `{host}`: {err}"))),
                };
                let mut last = format!("`{host}` resolves to no address");
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                        Ok(_) => return Ok(Ok(())),
                        Err(err) => last = format!("connecting to {addr}: {err}"),
                    }
                }
                Err(last)
            }
            Condition::Http { url, status } => {
                let agent = ctx.http(url)?;
                match agent.get(url).call() {
                    Ok(response) if response.status().as_u16() == *status => Ok(()),
                    Ok(response) => Err(format!("answered {}", response.status())),
                    // No amount of waiting makes a refused certificate trusted.
                    Err(err) if crate::http::is_certificate_refused(&err) => {
                        return Err(crate::http::request_error(url, err, ctx.ca_bundle()));
                    }
                    Err(err) => Err(err.to_string()),
                }
            }
            Condition::File(path) => match std::fs::symlink_metadata(path) {
                Ok(_) => Ok(()),
                Err(err) => Err(err.to_string()),
            },
            Condition::Command(argv) => {
                let program =
                    Program::from_argv(argv).expect("the steps parser refuses empty arrays");
                let ran = ctx.run(&program)?;
                if ran.success() {
                    Ok(())
                } else {
                    Err(describe_status(ran.status))
                }
            }
        })
    }
}

impl Facility for WaitFor {
    fn describe(&self) -> String {
        let what = match &self.condition {
            Condition::Port { host, port } => format!("port {port} on {host} is open"),
            Condition::Http { url, status } => format!("{url} answers {status}"),
            Condition::File(path) => format!("{} exists", path.display()),
            Condition::Command(argv) => format!("`{}` succeeds", argv.join(" ")),
        };
        format!(
            "{what} (waiting up to {})",
            humantime::format_duration(self.within)
        )
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        Ok(match self.holds(ctx)? {
            Ok(()) => Check::AlreadyDone,
            Err(_) => Check::Run,
        })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let started = Instant::now();
        // The step's timeout ends the wait too.
        let end = match ctx.deadline() {
            Some(deadline) => (started + self.within).min(deadline.at),
            None => started + self.within,
        };
        loop {
            let why = match self.holds(ctx)? {
                Ok(()) => {
                    ctx.output(&format!(
                        "holds after {}",
                        humantime::format_duration(Duration::from_millis(
                            started.elapsed().as_millis() as u64
                        ))
                    ));
                    return Ok(Applied::Changed);
                }
                Err(why) => why,
            };
            let now = Instant::now();
            if now >= end {
                return Err(FacilityError::new(format!(
                    "still not so after {}: {why}",
                    humantime::format_duration(Duration::from_secs(
                        started.elapsed().as_secs_f64().round() as u64
                    ))
                )));
            }
            std::thread::sleep(self.interval.min(end - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::Try;
    use crate::steps::Plan;
    use std::path::Path;

    fn parse(step: &str) -> Result<Plan, crate::PlanError> {
        let dir = tempfile::tempdir().unwrap();
        Plan::parse(
            &format!("[[step]]\nfacility = \"wait_for\"\n{step}"),
            Path::new("cattle.toml"),
            dir.path(),
        )
    }

    fn wait(condition: Condition, within: Duration) -> WaitFor {
        WaitFor {
            condition,
            within,
            interval: Duration::from_millis(50),
        }
    }

    #[test]
    fn a_port_opened_while_waiting_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        // A free port, closed again: nothing listens there yet.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = wait(
            Condition::Port {
                host: "127.0.0.1".into(),
                port,
            },
            Duration::from_secs(10),
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            drop(listener);
        });
        let started = Instant::now();
        assert_eq!(f.apply_in(&env).unwrap(), Applied::Changed);
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(f.check_in(&env).unwrap(), Check::AlreadyDone);
        opener.join().unwrap();
    }

    #[test]
    fn a_condition_that_never_holds_fails_after_within_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let f = wait(
            Condition::File(dir.path().join("never")),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let err = f.apply_in(&env).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            err.message().starts_with("still not so after")
                && err.message().contains("No such file"),
            "{err}"
        );
        assert!(!err.is_permanent());
    }

    #[test]
    fn a_command_is_run_until_it_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let f = wait(
            Condition::Command(vec![
                "sh".into(),
                "-c".into(),
                "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 2 ]".into(),
            ]),
            Duration::from_secs(10),
        );
        assert_eq!(f.check_in(&env).unwrap(), Check::Run);
        assert_eq!(f.apply_in(&env).unwrap(), Applied::Changed);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("n")).unwrap(),
            "3\n"
        );
    }

    #[test]
    fn exactly_one_condition_and_its_own_options() {
        let plan = parse("port = 8080\nwithin = \"2m\"\n").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "port 8080 on 127.0.0.1 is open (waiting up to 2m)"
        );
        let plan = parse("url = \"http://127.0.0.1:8080/health\"\nstatus = 204\n").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "http://127.0.0.1:8080/health answers 204 (waiting up to 1m)"
        );
        for (bad, message) in [
            ("", "step `wait_for` needs exactly one of"),
            (
                "port = 80\npath = \"/x\"\n",
                "step `wait_for` needs exactly one of",
            ),
            (
                "port = 0\n",
                "argument `port` must be an integer from 1 to 65535",
            ),
            (
                "port = \"80\"\n",
                "argument `port` must be an integer from 1 to 65535",
            ),
            (
                "path = \"/x\"\nhost = \"db\"\n",
                "argument `host` goes with `port` only",
            ),
            (
                "port = 80\nstatus = 200\n",
                "argument `status` goes with `url` only",
            ),
            (
                "url = \"ftp://x/\"\n",
                "argument `url` must be an http or https URL",
            ),
            (
                "port = 80\nwithin = \"soon\"\n",
                "argument `within` must be a duration",
            ),
            (
                "port = 80\nwithin = \"1s\"\ninterval = \"5s\"\n",
                "argument `interval` is longer than `within`",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.message.starts_with(message), "{bad}: {}", err.message);
        }
    }
}

//! `cattle`'s conventions as an operator meets them, on the real binary
//! against a real MinIO: `--version`, `-q`, colour only where a person reads
//! it (a terminal, no `NO_COLOR`) or when forced, and counts in good grammar.
//!
//! A terminal is a real pseudo-terminal: the command runs under `script(1)`.

use std::path::Path;

use cattle_e2e::{Bucket, Cmd, Minio, Output, Workspace, agent_bin, cattle_bin, shell_step};

const BUCKET: &str = "cattle";

struct Setup {
    minio: Minio,
    ws: Workspace,
    _bucket: Bucket,
}

impl Setup {
    fn new() -> Setup {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, "");
        bucket.create();
        let ws = Workspace::new();
        ws.write("config/cattle.toml", shell_step("true"));
        ws.write("hosts", "web-1\n");
        Setup {
            minio,
            ws,
            _bucket: bucket,
        }
    }

    /// `cattle ARGS`; the SDK's warnings about the test's missing AWS files
    /// are turned off (`CATTLE_LOG=error`), so stderr is Cattle's alone.
    fn cattle(&self, args: &[&str]) -> Cmd {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}"))
            .env("CATTLE_LOG", "error")
            .args(args)
    }

    /// `cattle ARGS` on a pseudo-terminal (stdout and stderr both), with `env`.
    fn cattle_on_terminal(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut line = shell_quote(&cattle_bin());
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(Path::new(arg)));
        }
        let mut cmd = Cmd::new("script")
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}"))
            .env("CATTLE_LOG", "error")
            .env("TERM", "xterm")
            .args(["-qec", &line, "/dev/null"]);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.run()
    }

    fn publish(&self, extra: &[&str]) -> Output {
        let dir = self.ws.child("config").display().to_string();
        let hosts = self.ws.child("hosts").display().to_string();
        let mut args = vec!["publish", &dir, "--hosts", &hosts];
        args.extend_from_slice(extra);
        self.cattle(&args).run()
    }
}

fn shell_quote(arg: &Path) -> String {
    format!("'{}'", arg.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn version_names_the_command() {
    let out = Cmd::new(cattle_bin()).arg("--version").run();
    out.assert_success();
    assert_eq!(
        out.stdout,
        format!("cattle {}\n", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
}

#[test]
fn help_puts_each_commands_own_options_first_and_usage_ignores_the_environment() {
    let help = Cmd::new(cattle_bin()).args(["publish", "--help"]).run();
    help.assert_success();
    let at = |heading: &str| {
        help.stdout
            .find(heading)
            .unwrap_or_else(|| panic!("no `{heading}`: {help}"))
    };
    assert!(
        at("Options:") < at("Store options (every command):"),
        "{help}"
    );
    assert!(at("--hosts <HOSTS>") < at("Store options (every command):"));
    assert!(at("Store options (every command):") < at("--store <NAME|URL>"));
    assert!(at("Output options (every command):") < at("--color <WHEN>"));
    assert!(at("Examples:\n  cattle publish ") > at("--color <WHEN>"));

    // Settings from the environment stay out of the usage line.
    let usage = Cmd::new(cattle_bin())
        .env("CATTLE_STORE", "s3://bucket/prefix")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .arg("status")
        .run();
    usage.assert_status(2);
    assert!(
        usage.stderr.contains("\nUsage: cattle status <ID>\n"),
        "{usage}"
    );
}

#[test]
fn quiet_prints_only_results_and_counts_are_in_good_grammar() {
    let setup = Setup::new();
    let loud = setup.publish(&[]);
    loud.assert_success();
    // One step to one host: no `1 steps`, no `1 hosts`.
    assert!(
        loud.stderr.contains("(1 step, bundle ") && loud.stderr.contains(") to 1 host; version"),
        "{loud}"
    );

    let quiet = setup.publish(&["-q"]);
    quiet.assert_success();
    assert_eq!(quiet.stderr, "", "{quiet}");
    let id = quiet.stdout.trim();
    assert_eq!(quiet.stdout.lines().count(), 1, "{quiet}");
    assert_eq!(id.len(), 36, "{quiet}");

    let agent_state = setup.ws.child("agent");
    Cmd::new(agent_bin())
        .envs(&setup.minio.cattle_env())
        .env("CATTLE_STORE", format!("s3://{BUCKET}"))
        .args(["--host-id", "web-1", "--once", "--state-dir"])
        .arg(&agent_state)
        .run()
        .assert_success();

    let cleaned = setup.cattle(&["clean", id, "--quiet"]).run();
    cleaned.assert_success();
    assert_eq!(cleaned.stderr, "", "{cleaned}");
    // The other execution is cleaned loudly; the count reads right.
    let loud_id = loud.stdout.trim();
    let cleaned = setup.cattle(&["clean", loud_id]).run();
    cleaned.assert_success();
    assert!(
        cleaned
            .stderr
            .starts_with(&format!("cleaned execution {loud_id}: ")),
        "{cleaned}"
    );
    assert!(!cleaned.stderr.contains("(s)"), "{cleaned}");

    // -q and -v contradict each other.
    setup
        .cattle(&["-q", "-v", "status", id])
        .run()
        .assert_status(2);
}

#[test]
fn colour_only_on_a_terminal_without_no_color_unless_forced() {
    let setup = Setup::new();
    let missing = "0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b";
    let red_error = "\x1b[1;31merror:\x1b[0m ";

    // The error's line (the SDK may log above it about the test's AWS files).
    let error_line = |text: &str| -> String {
        text.lines()
            .find(|l| l.contains("no execution"))
            .unwrap_or_default()
            .to_string()
    };
    // Into a pipe: plain, unless forced.
    let piped = setup.cattle(&["status", missing]).run();
    piped.assert_status(1);
    assert!(
        error_line(&piped.stderr).starts_with("error: no execution"),
        "{piped}"
    );
    assert!(!piped.stderr.contains("\x1b["), "{piped}");
    let forced = setup
        .cattle(&["--color", "always", "status", missing])
        .run();
    assert!(
        error_line(&forced.stderr).starts_with(red_error),
        "{forced}"
    );

    // On a terminal: painted, unless NO_COLOR or `--color never`.
    let tty = setup.cattle_on_terminal(&["status", missing], &[]);
    tty.assert_status(1);
    assert!(error_line(&tty.stdout).starts_with(red_error), "{tty}");
    let no_color = setup.cattle_on_terminal(&["status", missing], &[("NO_COLOR", "1")]);
    assert!(
        error_line(&no_color.stdout).starts_with("error: no execution"),
        "{no_color}"
    );
    assert!(!no_color.stdout.contains("\x1b["), "{no_color}");
    let never = setup.cattle_on_terminal(&["--color", "never", "status", missing], &[]);
    assert!(!never.stdout.contains("\x1b["), "{never}");
}

//! End-to-end test harness: a throwaway MinIO server, temp workspaces, and helpers to run the
//! built `cattle` and `cattle-agent` binaries with a clean, test-only AWS environment.
//!
//! MinIO must be installed first (`scripts/install-minio.sh`) and the binaries built
//! (`cargo build --workspace --bins`); `scripts/test.sh` does both. Missing prerequisites
//! make the tests panic: they are never silently skipped.
//!
//! [`Proxy`] puts a fault-injecting HTTP proxy between the binaries and MinIO.
//!
//! [`Container`] boots a throwaway Debian with systemd as PID 1, to test what Cattle does to a
//! real host.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal;
/// Unix signals, for [`Background::signal`].
pub use nix::sys::signal::Signal;
use nix::sys::wait::{self, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tempfile::TempDir;

pub mod container;
pub use container::{Container, debian_package};
pub mod cluster;
pub use cluster::MinioCluster;
pub mod servers;
pub use servers::{Garage, S3Server, Seaweed, Versitygw};

/// How long [`Minio::start`] waits for the server to become ready.
const MINIO_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit for [`Cmd::run`].
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Examples and reports
// ---------------------------------------------------------------------------------------------

/// The example config `examples/<name>` of this repository.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// `(host, state)` of every host in the output of `cattle status --json`, in its order.
pub fn states(status: &serde_json::Value) -> Vec<(String, String)> {
    status["hosts"]
        .as_array()
        .expect("`cattle status --json` lists hosts")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The recap `cattle apply` ends its output with: `changed=N unchanged=N failed=N`, or with
/// `--check`, `would_change=N in_state=N failed=N unknown=N`.
pub fn recap(out: &Output) -> &str {
    let last = out.stderr.lines().last().unwrap_or_default();
    match last
        .split_once("recap: ")
        .or_else(|| last.split_once("recap (check mode): "))
    {
        Some((_, recap)) => recap,
        None => panic!("no recap at the end of the run:\n{out}"),
    }
}

/// The log an agent keeps for one execution (`<state-dir>/executions/<id>`): its parts in
/// `log/`, concatenated in order.
pub fn local_log(execution_dir: &Path) -> String {
    let dir = execution_dir.join("log");
    let mut parts: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| {
            let path = e.ok()?.path();
            let n = cattle_core::keys::parse_log_part_name(path.file_name()?.to_str()?)?;
            Some((n, path))
        })
        .collect();
    parts.sort();
    let mut log = Vec::new();
    for (_, path) in parts {
        log.extend(fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())));
    }
    String::from_utf8_lossy(&log).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------------

/// A publisher key pair in `dir` (`publisher.key`, `publisher.pub`), made on first use, and the
/// environment that has `cattle publish` sign with it and `cattle-agent` trust it.
pub fn signing_env(dir: &Path) -> Vec<(String, String)> {
    let name = dir.join("publisher");
    let secret = name.with_extension("key");
    let public = name.with_extension("pub");
    if !secret.exists() {
        cattle_core::signing::SecretKey::generate("e2e publisher")
            .expect("generate a signing key")
            .save(&name)
            .expect("save the signing key");
    }
    vec![
        (
            cattle_core::env::SIGNING_KEY.to_owned(),
            secret.display().to_string(),
        ),
        (
            cattle_core::env::TRUSTED_KEYS.to_owned(),
            public.display().to_string(),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// MinIO
// ---------------------------------------------------------------------------------------------

/// A private MinIO server on a free loopback port, with its data in a temp dir.
///
/// Killed (and its data removed) on drop.
pub struct Minio {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    paused: bool,
    /// The CA that signed the server's certificate, when it serves HTTPS.
    tls: Option<TestCa>,
}

impl fmt::Debug for Minio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minio")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("dir", &self.dir.path())
            .field("paused", &self.paused)
            .finish()
    }
}

impl Minio {
    /// Root user (S3 access key) of every test server.
    pub const ACCESS_KEY: &'static str = "cattle-test";
    /// Root password (S3 secret key) of every test server.
    pub const SECRET_KEY: &'static str = "cattle-test-secret";

    /// Starts a fresh MinIO serving plain HTTP and waits until it serves requests.
    ///
    /// Panics if the MinIO binary is missing (run `scripts/install-minio.sh`) or if the server
    /// does not become ready within 30 s (the panic message includes the tail of its log).
    pub fn start() -> Minio {
        Minio::start_with(None)
    }

    /// Starts a fresh MinIO serving HTTPS with a certificate for `127.0.0.1` and `localhost`
    /// signed by a private CA made for it ([`ca_bundle`](Self::ca_bundle)); the system's root
    /// CAs do not know that CA. Panics as [`start`](Self::start) does, or if `openssl` fails.
    pub fn start_tls() -> Minio {
        Minio::start_with(Some(TestCa::new("MinIO")))
    }

    fn start_with(tls: Option<TestCa>) -> Minio {
        let bin = minio_bin();
        let dir = tempfile::Builder::new()
            .prefix("cattle-minio-")
            .tempdir()
            .expect("create MinIO temp dir");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("create MinIO data dir");
        let log_path = dir.path().join("minio.log");
        let certs = dir.path().join("certs");
        if let Some(ca) = &tls {
            // MinIO serves HTTPS when its certs directory holds `public.crt` and `private.key`;
            // mc trusts the CAs in `certs/CAs` under its config directory.
            ca.issue_server_certificate(&certs.join("public.crt"), &certs.join("private.key"));
            let mc_cas = dir.path().join("mc/certs/CAs");
            fs::create_dir_all(&mc_cas).expect("create mc CA dir");
            fs::copy(ca.certificate(), mc_cas.join("cattle-test-ca.crt")).expect("copy CA for mc");
        }

        // A port picked by binding :0 can in principle be grabbed by someone else before MinIO
        // binds it; if MinIO dies during start-up, retry with new ports.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let (port, console_port) = free_port_pair();
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open MinIO log file");
            let log_err = log.try_clone().expect("clone MinIO log file handle");

            let mut cmd = Command::new(&bin);
            cmd.arg("server")
                .arg(&data)
                .arg("--address")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--console-address")
                .arg(format!("127.0.0.1:{console_port}"))
                .arg("--quiet");
            if tls.is_some() {
                cmd.arg("--certs-dir").arg(&certs);
            }
            cmd.env_clear()
                .envs(
                    std::env::vars_os()
                        .filter(|(k, _)| !k.to_string_lossy().starts_with("MINIO_") && k != "CI"),
                )
                .env("MINIO_ROOT_USER", Self::ACCESS_KEY)
                .env("MINIO_ROOT_PASSWORD", Self::SECRET_KEY)
                .env("MINIO_BROWSER", "off")
                .env("MINIO_UPDATE", "off")
                // CI mode: small buffer pool (256 MiB) and no root-drive checks.
                .env("MINIO_CI_CD", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err));
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("failed to spawn MinIO {}: {e}", bin.display()));

            let ca = tls.as_ref().map(TestCa::certificate);
            match wait_ready(&mut child, port, ca, MINIO_START_TIMEOUT) {
                Ok(()) => {
                    return Minio {
                        child: Some(child),
                        port,
                        dir,
                        paused: false,
                        tls,
                    };
                }
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if matches!(err, StartError::Exited(_)) && attempt < ATTEMPTS {
                        eprintln!(
                            "MinIO on port {port} {err} during start-up; retrying with other ports"
                        );
                        continue;
                    }
                    panic!(
                        "MinIO ({}) did not become ready on 127.0.0.1:{port}: {err}\n\
                         --- last lines of MinIO's log ({}) ---\n{}",
                        bin.display(),
                        log_path.display(),
                        log_tail(&log_path, 60)
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The S3 API's socket address, e.g. for a [`Proxy`] in front of it.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The S3 endpoint: `http://127.0.0.1:PORT`, or `https://…` for [`start_tls`](Self::start_tls).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The PEM file of the private CA that signed the certificate of a
    /// [`start_tls`](Self::start_tls) server; panics for a plain HTTP server.
    pub fn ca_bundle(&self) -> &Path {
        self.tls
            .as_ref()
            .map(TestCa::certificate)
            .expect("ca_bundle: this MinIO serves plain HTTP; use Minio::start_tls")
    }

    /// Options for cattle-core's S3 client to reach this server as its root user (and,
    /// over HTTPS, trust its CA). Override `credentials` to act as another user.
    pub fn store_options(&self) -> cattle_core::store::S3Options {
        cattle_core::store::S3Options {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".to_string()),
            credentials: Some((Self::ACCESS_KEY.to_string(), Self::SECRET_KEY.to_string())),
            ca_bundle: self.tls.as_ref().map(|ca| ca.certificate().to_path_buf()),
            ..Default::default()
        }
    }

    /// The S3 API port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The S3 access key (MinIO root user).
    pub fn access_key(&self) -> &str {
        Self::ACCESS_KEY
    }

    /// The S3 secret key (MinIO root password).
    pub fn secret_key(&self) -> &str {
        Self::SECRET_KEY
    }

    /// The AWS environment pointing the CLI/agent (AWS SDK) at this server: endpoint,
    /// credentials, region `us-east-1`, IMDS disabled, and the AWS config/credentials files
    /// redirected to nonexistent paths so the developer's `~/.aws` never leaks in.
    /// `CATTLE_CA_BUNDLE` is not set, even for an HTTPS server: TLS tests choose it.
    pub fn env(&self) -> Vec<(String, String)> {
        let nowhere = self.dir.path().join("no-aws");
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            (
                "AWS_CONFIG_FILE",
                nowhere.join("config").to_string_lossy().into_owned(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                nowhere.join("credentials").to_string_lossy().into_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// [`env`](Self::env) plus this server's signing key pair (see [`signing_env`]):
    /// what `cattle` and `cattle-agent` need to publish and run signed executions.
    pub fn cattle_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.extend(signing_env(self.dir.path()));
        env
    }

    /// The store URL of a bucket on this server, `s3://BUCKET/`.
    ///
    /// The bucket is not created: tests create it through cattle-core's store client.
    pub fn bucket_url(&self, bucket: &str) -> String {
        format!("s3://{bucket}/")
    }

    /// Whether `GET /minio/health/live` answers 200 within `timeout`.
    pub fn is_live(&self, timeout: Duration) -> bool {
        let ca = self.tls.as_ref().map(TestCa::certificate);
        matches!(health_get(self.addr(), ca, "/minio/health/live", timeout), Ok(r) if r.status == 200)
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never answered,
    /// like an unresponsive store.
    ///
    /// Returns once every thread of the server has stopped.
    pub fn pause(&mut self) {
        self.signal(Signal::SIGSTOP);
        // kill(2) returns before all threads have stopped; a request sent right away could still
        // be answered. Wait for the group stop. WNOWAIT leaves the status pending, so `Child`'s
        // own bookkeeping (which never asks for stops) is unaffected, and an exit is not reaped.
        let pid = pid_of(self.child.as_ref().expect("signal checked the child"));
        let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        match wait::waitid(wait::Id::Pid(pid), flags) {
            Ok(WaitStatus::Stopped(..)) => {}
            other => panic!(
                "MinIO (pid {pid}) did not stop on SIGSTOP: {other:?}\n{}",
                self.log()
            ),
        }
        self.paused = true;
    }

    /// Unfreezes a [`pause`](Self::pause)d server (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(Signal::SIGCONT);
        self.paused = false;
    }

    /// Kills the server and waits for it: connections are then refused. Idempotent.
    /// The data dir is kept until drop.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Run the pinned `mc` (installed beside `minio`) against this server, as its
    /// root user, under the alias `test` (e.g. `mc(&["admin", "user", "add", "test", …])`).
    pub fn mc(&self, args: &[&str]) -> Output {
        let mc = minio_bin().with_file_name("mc");
        if !mc.is_file() {
            panic!(
                "\n\n*** mc not found at {}: install it with `scripts/install-minio.sh`. ***\n\n",
                mc.display()
            );
        }
        // For an HTTPS server, mc trusts the CA copied into its config dir by `start_tls`.
        let (scheme, address) = self
            .endpoint()
            .split_once("://")
            .map(|(s, a)| (s.to_owned(), a.to_owned()))
            .expect("endpoint has a scheme");
        let host = format!(
            "{scheme}://{}:{}@{address}",
            Self::ACCESS_KEY,
            Self::SECRET_KEY,
        );
        Cmd::new(mc)
            .env("MC_HOST_test", host)
            .env("MC_CONFIG_DIR", self.dir.path().join("mc"))
            .args(args)
            .run()
    }

    /// MinIO's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("minio.log")).unwrap_or_default()
    }

    fn signal(&self, sig: Signal) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("MinIO already stopped, cannot send {sig}"));
        signal::kill(pid_of(child), sig)
            .unwrap_or_else(|e| panic!("sending {sig} to MinIO (pid {}): {e}", child.id()));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a stopped process.
            let _ = child.kill();
            let _ = child.wait();
            self.paused = false;
        }
    }
}

impl Drop for Minio {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls MinIO's readiness endpoint until it is ready, the process exits, or `timeout` passes.
/// `ca`: the server speaks HTTPS with a certificate signed by this CA.
fn wait_ready(
    child: &mut Child,
    port: u16,
    ca: Option<&Path>,
    timeout: Duration,
) -> Result<(), StartError> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on MinIO") {
            return Err(StartError::Exited(status));
        }
        // /minio/health/ready answers 200 as soon as the HTTP server is up, but sets
        // `x-minio-server-status: offline` until the object layer is initialised.
        if let Ok(resp) = health_get(addr, ca, "/minio/health/ready", Duration::from_secs(1))
            && resp.status == 200
            && resp.header("x-minio-server-status").is_none()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::Timeout(timeout));
        }
        thread::sleep(Duration::from_millis(25));
    }
}

#[derive(Debug)]
enum StartError {
    Exited(ExitStatus),
    Timeout(Duration),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Exited(status) => write!(f, "exited ({status})"),
            StartError::Timeout(t) => write!(f, "not ready after {t:?}"),
        }
    }
}

/// Locates the MinIO server binary (see [`Minio::start`]).
///
/// Order: `$CATTLE_TEST_MINIO`; then `$GOBIN/minio`, `$(go env GOBIN)/minio`,
/// `$(go env GOPATH)/bin/minio`, `~/go/bin/minio` (the first that exists).
/// Panics with install instructions if none exists.
pub fn minio_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(find_minio) {
        Ok(path) => path.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

fn find_minio() -> Result<PathBuf, String> {
    const INSTALL: &str = "Install it with `scripts/install-minio.sh` \
         (or run all tests with `scripts/test.sh`, which does it).";
    if let Some(path) = std::env::var_os("CATTLE_TEST_MINIO").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "\n\n*** MinIO not found: CATTLE_TEST_MINIO={} does not exist. ***\n{INSTALL}\n\n",
                path.display()
            ))
        };
    }

    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(gobin) = std::env::var_os("GOBIN").filter(|p| !p.is_empty()) {
        dirs.push(gobin.into());
    }
    if let Some(gobin) = go_env("GOBIN") {
        dirs.push(gobin.into());
    }
    if let Some(gopath) = go_env("GOPATH")
        && let Some(first) = std::env::split_paths(&OsString::from(gopath)).next()
    {
        dirs.push(first.join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        dirs.push(Path::new(&home).join("go").join("bin"));
    }

    let candidates: Vec<PathBuf> = dirs
        .into_iter()
        .map(|d| d.join(format!("minio{}", std::env::consts::EXE_SUFFIX)))
        .collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect();
    Err(format!(
        "\n\n*** MinIO server binary not found: the end-to-end tests need it. ***\n\
         {INSTALL}\nLooked in:\n{}\n(set CATTLE_TEST_MINIO=/path/to/minio to override)\n\n",
        looked.join("\n")
    ))
}

/// `go env NAME`, or `None` if `go` is unavailable or the value is empty.
fn go_env(name: &str) -> Option<String> {
    let out = Command::new("go")
        .args(["env", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let value = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !value.is_empty()).then_some(value)
}

/// Two distinct free loopback ports (both listeners are held until both are picked).
fn free_port_pair() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let ports = (
        a.local_addr().expect("local addr").port(),
        b.local_addr().expect("local addr").port(),
    );
    drop((a, b));
    ports
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return "(empty)".to_owned();
    }
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"))
}

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.0 GET
// ---------------------------------------------------------------------------------------------

/// Status and headers of an HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (everything after the headers until the server closed the connection).
    pub body: Vec<u8>,
}

/// The first value of header `name` (case-insensitive) among `headers`, whose
/// names are lower case.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// A plain HTTP/1.0 `GET path` to `addr`; `timeout` bounds connect, each write and each read.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// A `GET path` to MinIO at `addr`: plain HTTP, or HTTPS trusting only `ca`
/// (through `curl`, which the TLS tests need anyway for nothing else).
fn health_get(
    addr: SocketAddr,
    ca: Option<&Path>,
    path: &str,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let Some(ca) = ca else {
        return http_get(addr, path, timeout);
    };
    let out = Command::new("curl")
        .args(["--silent", "--include", "--noproxy", "*", "--http1.1"])
        .arg("--max-time")
        .arg(format!("{:.3}", timeout.as_secs_f64()))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://{addr}{path}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("curl failed ({})", out.status)));
    }
    parse_response(&out.stdout)
}

/// An HTTP/1.x response: status line, headers, blank line, body.
fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, msg.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("incomplete HTTP response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(&format!("bad HTTP status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// A private certificate authority
// ---------------------------------------------------------------------------------------------

/// A throwaway certificate authority (an EC P-256 key and a self-signed CA certificate valid
/// for two days), made with the `openssl` command; removed on drop.
///
/// [`Minio::start_tls`] makes one for its server; make another to have a CA the server's
/// certificate is *not* signed by.
pub struct TestCa {
    /// Holds the files; removed on drop.
    _dir: TempDir,
    certificate: PathBuf,
    key: PathBuf,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("certificate", &self.certificate)
            .finish()
    }
}

impl TestCa {
    /// A new CA whose certificate's common name is `Cattle test CA (NAME)`.
    ///
    /// Panics if `openssl` is missing or fails.
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("cattle-ca-")
            .tempdir()
            .expect("create CA temp dir");
        let certificate = dir.path().join("ca.crt");
        let key = dir.path().join("ca.key");
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .arg("-subj")
                .arg(format!("/CN=Cattle test CA ({name})"))
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&certificate),
        );
        TestCa {
            _dir: dir,
            certificate,
            key,
        }
    }

    /// The CA certificate, PEM: what `CATTLE_CA_BUNDLE` points at.
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }

    /// Writes a new server key to `key` and a certificate for it to `certificate`, valid for
    /// `127.0.0.1` and `localhost` and signed by this CA (both PEM; parent directories are
    /// created).
    pub fn issue_server_certificate(&self, certificate: &Path, key: &Path) {
        for parent in [certificate.parent(), key.parent()].into_iter().flatten() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", "/CN=127.0.0.1"])
                .arg("-CA")
                .arg(&self.certificate)
                .arg("-CAkey")
                .arg(&self.key)
                .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .args(["-addext", "keyUsage=critical,digitalSignature"])
                .args(["-addext", "extendedKeyUsage=serverAuth"])
                .arg("-keyout")
                .arg(key)
                .arg("-out")
                .arg(certificate),
        );
    }
}

/// Runs an `openssl` command quietly; panics with its output if it fails.
fn openssl(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Workspace
// ---------------------------------------------------------------------------------------------

/// A temp directory for one test; removed on drop.
#[derive(Debug)]
pub struct Workspace {
    dir: TempDir,
}

impl Workspace {
    /// Creates an empty temp directory.
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("cattle-e2e-")
            .tempdir()
            .expect("create workspace temp dir");
        Workspace { dir }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path()/rel` (not created).
    pub fn child(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `contents` to `path()/rel`, creating parent directories; returns the full path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.child(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Reads `path()/rel` as UTF-8.
    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        let path = self.child(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Built binaries
// ---------------------------------------------------------------------------------------------

/// The built `cattle` CLI binary, from the same target profile dir as this test executable.
pub fn cattle_bin() -> PathBuf {
    built_bin("cattle")
}

/// The built `cattle-agent` binary, from the same target profile dir as this test executable.
pub fn agent_bin() -> PathBuf {
    built_bin("cattle-agent")
}

/// The cache directory of the commands tests run, unless they name their own: beside the
/// built binaries, shared by the tests (`cattle publish` remembers there which stores passed
/// their self-test; a test that needs a store checked afresh gives its own `XDG_CACHE_HOME`).
pub fn e2e_cache_dir() -> PathBuf {
    built_bin("cattle")
        .parent()
        .expect("a binary is in a directory")
        .join("e2e-cache")
}

fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/e2e-HASH -> target/<profile>
    let mut dir = exe.parent().expect("test executable has a parent dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("deps dir has a parent dir");
    }
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        panic!(
            "\n\n*** {} not found: run `cargo build --workspace --bins` first \
             (scripts/test.sh does). ***\n\n",
            bin.display()
        );
    }
    bin
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// The result of a finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code. For [`run`]/[`Cmd::run`], death by signal panics instead; for
    /// [`Background`], death by signal N is reported as `128 + N` (shell convention).
    pub status: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Whether the exit code is 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Panics (showing stdout and stderr) unless the exit code is 0; returns `self`.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panics (showing stdout and stderr) unless the exit code is `code`; returns `self`.
    #[track_caller]
    pub fn assert_status(&self, code: i32) -> &Self {
        assert_eq!(self.status, code, "unexpected exit code:\n{self}");
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `bin args...` to completion with the clean test environment plus `env`
/// (see [`Cmd`]); panics if it cannot be spawned, is killed by a signal or runs over 120 s.
pub fn run(bin: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    Cmd::new(bin).args(args).envs(env).run()
}

/// Spawns `bin args...` in the background with the clean test environment plus `env`
/// (see [`Cmd`]); killed when the returned handle is dropped.
pub fn spawn(bin: &Path, args: &[&str], env: &[(String, String)]) -> Background {
    Cmd::new(bin).args(args).envs(env).spawn()
}

/// A command builder.
///
/// The child's environment is the test process's environment without any `AWS_*` or `CATTLE_*`
/// variable and without `RUST_LOG` (or nothing, after [`env_clear`](Self::env_clear)), plus the
/// variables given with [`env`](Self::env)/[`envs`](Self::envs). Unless those set `HOME` or
/// `XDG_CONFIG_HOME`, `XDG_CONFIG_HOME` names a directory that does not exist, so that the
/// developer's `~/.config/cattle/config.toml` never stands in for what a test gives `cattle`.
/// Likewise `XDG_CACHE_HOME` names [`e2e_cache_dir`], not the developer's `~/.cache`.
/// Stdin is empty unless [`stdin`](Self::stdin) is given.
#[derive(Debug, Clone)]
pub struct Cmd {
    bin: PathBuf,
    args: Vec<OsString>,
    inherit_env: bool,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    /// A command running `bin`.
    pub fn new(bin: impl AsRef<Path>) -> Cmd {
        Cmd {
            bin: bin.as_ref().to_owned(),
            args: Vec::new(),
            inherit_env: true,
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: DEFAULT_RUN_TIMEOUT,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Cmd {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets environment variables, e.g. `Minio::env()`.
    pub fn envs<'a, I>(mut self, vars: I) -> Cmd
    where
        I: IntoIterator<Item = &'a (String, String)>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Inherits none of the test process's environment: the child gets only the variables
    /// given with [`env`](Self::env)/[`envs`](Self::envs) (e.g. a command run inside a
    /// [`Container`], which must not see the host's variables).
    pub fn env_clear(mut self) -> Cmd {
        self.inherit_env = false;
        self
    }

    /// Runs in `dir` instead of the test's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Feeds `input` to the child's stdin (for [`run`](Self::run) only).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }

    /// Time limit for [`run`](Self::run) (default 120 s); the child is killed and the test
    /// panics when it is exceeded.
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).env_clear();
        if self.inherit_env {
            cmd.envs(std::env::vars_os().filter(|(k, _)| {
                let k = k.to_string_lossy();
                !k.starts_with("AWS_") && !k.starts_with("CATTLE_") && k != "RUST_LOG"
            }));
            if !self
                .env
                .iter()
                .any(|(k, _)| k == "HOME" || k == "XDG_CONFIG_HOME")
            {
                cmd.env("XDG_CONFIG_HOME", "/nonexistent/cattle-e2e/config");
            }
            if !self
                .env
                .iter()
                .any(|(k, _)| k == "HOME" || k == "XDG_CACHE_HOME")
            {
                cmd.env("XDG_CACHE_HOME", e2e_cache_dir());
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    fn describe(&self) -> String {
        let mut s = self.bin.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs to completion and collects the output.
    ///
    /// Panics if the command cannot be spawned, is killed by a signal, or exceeds the timeout.
    #[track_caller]
    pub fn run(&self) -> Output {
        let what = self.describe();
        let mut child = self
            .command()
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{what}`: {e}"));

        let stdin_thread = child.stdin.take().map(|mut pipe| {
            let input = self.stdin.clone().unwrap_or_default();
            // A child that exits without reading its input makes this fail: ignore that.
            thread::spawn(move || drop(pipe.write_all(&input)))
        });
        let stdout_thread = read_in_thread(child.stdout.take().expect("stdout piped"));
        let stderr_thread = read_in_thread(child.stderr.take().expect("stderr piped"));

        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(5));
        };
        if let Some(t) = stdin_thread {
            let _ = t.join();
        }
        // Grandchildren still holding the pipes would block these joins; the commands under
        // test are not expected to leave any behind.
        let stdout = stdout_thread.join().expect("stdout reader");
        let stderr = stderr_thread.join().expect("stderr reader");

        let Some(status) = status else {
            panic!(
                "`{what}` did not finish within {:?} and was killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.timeout
            );
        };
        let Some(code) = status.code() else {
            panic!(
                "`{what}` was killed by a signal ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        };
        Output {
            status: code,
            stdout,
            stderr,
        }
    }

    /// Spawns in the background; stdout/stderr go to files readable through the handle.
    /// The process is killed when the handle is dropped.
    pub fn spawn(&self) -> Background {
        let logs = tempfile::Builder::new()
            .prefix("cattle-bg-")
            .tempdir()
            .expect("create log temp dir");
        let out = fs::File::create(logs.path().join("stdout")).expect("create stdout log");
        let err = fs::File::create(logs.path().join("stderr")).expect("create stderr log");
        let what = self.describe();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{what}`: {e}"));
        Background {
            child: Some(child),
            logs,
            what,
            exit: None,
        }
    }
}

fn read_in_thread<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A process running in the background (e.g. an agent); killed and reaped on drop.
pub struct Background {
    child: Option<Child>,
    logs: TempDir,
    what: String,
    exit: Option<i32>,
}

impl fmt::Debug for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Background")
            .field("command", &self.what)
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("exit", &self.exit)
            .finish()
    }
}

impl Background {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("process handle")
    }

    /// Standard output so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.logs.path().join("stdout"))
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.logs.path().join("stderr"))
    }

    /// Sends `sig` (e.g. `Signal::SIGTERM`) unless the process has already been reaped.
    pub fn signal(&self, sig: Signal) {
        if self.exit.is_some() {
            return;
        }
        if let Some(child) = &self.child {
            let _ = signal::kill(pid_of(child), sig);
        }
    }

    /// The exit code if the process has exited (`128 + N` if killed by signal N).
    pub fn try_status(&mut self) -> Option<i32> {
        if self.exit.is_none()
            && let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait().expect("try_wait")
        {
            self.exit = Some(exit_code(status));
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit; returns its output if it did.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(self.output(status));
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; panics if it does not.
    #[track_caller]
    pub fn terminate(&mut self, timeout: Duration) -> Output {
        self.signal(Signal::SIGTERM);
        match self.wait_timeout(timeout) {
            Some(out) => out,
            None => panic!(
                "`{}` did not exit within {timeout:?} of SIGTERM\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.what,
                self.stdout(),
                self.stderr()
            ),
        }
    }

    /// Kills the process and every process it started (SIGKILL), reaps it
    /// and returns its output.
    pub fn kill(&mut self) -> Output {
        if self.exit.is_none()
            && let Some(child) = self.child.as_mut()
        {
            kill_tree(child);
            let status = child.wait().expect("wait");
            self.exit = Some(exit_code(status));
        }
        let status = self.exit.expect("exit status known after wait");
        self.output(status)
    }

    fn output(&self, status: i32) -> Output {
        Output {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && self.exit.is_none()
        {
            kill_tree(&mut child);
            let _ = child.wait();
        }
    }
}

/// SIGKILL `child` and every process below it. A wrapper (`faketime`,
/// `unshare`, `sh -c`) forks the program it runs, and killing the wrapper
/// alone would leave that program running after the test, polling a store
/// that is gone. The tree is found before anything is killed: once a process
/// dies, its children are moved to another parent.
fn kill_tree(child: &mut Child) {
    let below = descendants(pid_of(child));
    let _ = child.kill();
    for pid in below {
        let _ = signal::kill(pid, Signal::SIGKILL);
    }
}

/// The processes below `root`: its children, theirs, and so on.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        let below = children(parent);
        next.extend(&below);
        found.extend(below);
    }
    found
}

/// The children of `pid` now, as the kernel lists them under each of its
/// threads (`/proc/<pid>/task/<tid>/children`); none once it is gone.
fn children(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .map(Pid::from_raw)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .expect("exit status has a code or a signal")
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// A fault-injecting HTTP proxy
// ---------------------------------------------------------------------------------------------

/// The head of a request passing through a [`Proxy`].
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// E.g. `GET`.
    pub method: String,
    /// The request target as sent: path and query, e.g. `/bucket/key?x-id=GetObject`.
    pub target: String,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl ProxyRequest {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// What a [`Proxy`] does with a request, as its rewrite hook decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it to the upstream server and its answer back.
    Forward,
    /// Answer with these bytes instead (a whole HTTP response: see [`http_response`]),
    /// then close the connection. The upstream server never sees the request.
    Respond(Vec<u8>),
    /// Close the connection without answering.
    Close,
}

type Rewrite = Arc<dyn Fn(&ProxyRequest) -> Verdict + Send + Sync>;

/// An HTTP/1.1 response with `Content-Length` and `Connection: close` added, for
/// [`Verdict::Respond`]. A 1xx, 204 or 304 response gets no body (nor length).
pub fn http_response(status: u16, reason: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let bodiless = status < 200 || status == 204 || status == 304;
    if !bodiless {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    if !bodiless {
        out.extend_from_slice(body);
    }
    out
}

/// A plain-HTTP proxy on a free loopback port in front of one upstream server (e.g.
/// [`Minio::addr`]): point `AWS_ENDPOINT_URL` at [`endpoint`](Proxy::endpoint).
///
/// Every request is shown to an optional rewrite hook, which may forward it (the default),
/// answer it itself or drop the connection; forwarded bytes go both ways unchanged, at most
/// at an optional rate. Each request is forwarded on a new upstream connection with
/// `Connection: close`, so one request is one connection and the hook sees every request
/// (clients reconnect, as they do after any `Connection: close`). SigV4 signatures stay
/// valid: the `Host` header is passed on as the client sent it. Stopped on drop.
pub struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).finish()
    }
}

/// Settings of a [`Proxy`] before it starts: [`Proxy::to`].
pub struct ProxyBuilder {
    upstream: SocketAddr,
    rewrite: Option<Rewrite>,
    bytes_per_second: Option<u64>,
}

impl fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("upstream", &self.upstream)
            .field("rewrite", &self.rewrite.is_some())
            .field("bytes_per_second", &self.bytes_per_second)
            .finish()
    }
}

impl ProxyBuilder {
    /// Decide for each request what to do with it (see [`Verdict`]).
    pub fn rewrite(
        mut self,
        hook: impl Fn(&ProxyRequest) -> Verdict + Send + Sync + 'static,
    ) -> ProxyBuilder {
        self.rewrite = Some(Arc::new(hook));
        self
    }

    /// Pass at most `rate` bytes per second in each direction of each connection.
    pub fn bytes_per_second(mut self, rate: u64) -> ProxyBuilder {
        assert!(rate > 0, "a rate of 0 passes nothing");
        self.bytes_per_second = Some(rate);
        self
    }

    /// Start listening; panics if no loopback port can be bound.
    pub fn start(self) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy to 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy address");
        // Non-blocking, so that the acceptor notices `stop` between connections.
        listener
            .set_nonblocking(true)
            .expect("non-blocking proxy listener");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let stop = stop.clone();
            let requests = requests.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let upstream = self.upstream;
                            let rewrite = self.rewrite.clone();
                            let rate = self.bytes_per_second;
                            let requests = requests.clone();
                            thread::spawn(move || {
                                // A client or server that goes away mid-request ends its
                                // connection, nothing else.
                                let _ = proxy_one(client, upstream, rewrite, rate, &requests);
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Proxy {
            addr,
            stop,
            acceptor: Some(acceptor),
            requests,
        }
    }
}

impl Proxy {
    /// A proxy in front of `upstream`; configure it, then [`start`](ProxyBuilder::start) it.
    pub fn to(upstream: SocketAddr) -> ProxyBuilder {
        ProxyBuilder {
            upstream,
            rewrite: None,
            bytes_per_second: None,
        }
    }

    /// A proxy to `upstream` that answers every ListObjectsV2 whose query has the
    /// parameter `prefix` (as sent, e.g. `prefix=p%2Fexecutions%2F`) with an empty
    /// listing of `bucket`, as a store whose listing misses objects would, and passes
    /// everything else on.
    pub fn hiding_listing(upstream: SocketAddr, bucket: &str, prefix: String) -> Proxy {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{bucket}</Name>\
             <Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>\
             <IsTruncated>false</IsTruncated></ListBucketResult>"
        );
        Proxy::to(upstream)
            .rewrite(move |request| {
                let query = request.target.split_once('?').map_or("", |(_, q)| q);
                if request.method == "GET"
                    && query.contains("list-type=2")
                    && query.split('&').any(|p| p == prefix)
                {
                    Verdict::Respond(http_response(
                        200,
                        "OK",
                        &[("Content-Type", "application/xml")],
                        body.as_bytes(),
                    ))
                } else {
                    Verdict::Forward
                }
            })
            .start()
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `env` (e.g. [`Minio::cattle_env`]) with `AWS_ENDPOINT_URL` pointing at this proxy.
    pub fn env(&self, env: &[(String, String)]) -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| match k.as_str() {
                "AWS_ENDPOINT_URL" => (k.clone(), self.endpoint()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    }

    /// `METHOD TARGET` of every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("request log").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Largest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;

/// Serve one client connection: one request, forwarded or answered.
fn proxy_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    rewrite: Option<Rewrite>,
    rate: Option<u64>,
    requests: &Mutex<Vec<String>>,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let mut first = lines.next().unwrap_or_default().split(' ');
    let request = ProxyRequest {
        method: first.next().unwrap_or_default().to_owned(),
        target: first.next().unwrap_or_default().to_owned(),
        headers: lines
            .clone()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
    };
    requests
        .lock()
        .expect("request log")
        .push(format!("{} {}", request.method, request.target));
    match rewrite.map_or(Verdict::Forward, |hook| hook(&request)) {
        Verdict::Forward => {}
        Verdict::Respond(response) => {
            client.write_all(&response)?;
            client.flush()?;
            let _ = client.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        Verdict::Close => return Ok(()),
    }

    // The same head, with `Connection: close` instead of whatever the client asked for.
    let mut forwarded = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for line in head.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        if !["connection", "keep-alive", "proxy-connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream)?;
    let mut first_bytes = forwarded.into_bytes();
    first_bytes.extend_from_slice(&data[head_end..]);

    // Client to server (the rest of the body) on a thread, server to client here.
    let mut server_writer = server.try_clone()?;
    let mut client_reader = client.try_clone()?;
    let upload = thread::spawn(move || {
        let result = write_limited(&mut server_writer, &first_bytes, rate, Instant::now(), 0)
            .and_then(|sent| copy_limited(&mut client_reader, &mut server_writer, rate, sent));
        let _ = server_writer.shutdown(std::net::Shutdown::Write);
        result
    });
    let download = copy_limited(&mut server, &mut client, rate, 0);
    // The answer is complete (the server closes after it): end both connections, which
    // also ends the upload thread's wait for more from the client.
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = server.shutdown(std::net::Shutdown::Both);
    let _ = upload.join();
    download.map(drop)
}

/// Copy `from` to `to` until `from` ends; returns the bytes copied plus `already`.
fn copy_limited(
    from: &mut TcpStream,
    to: &mut TcpStream,
    rate: Option<u64>,
    already: u64,
) -> io::Result<u64> {
    let started = Instant::now();
    let mut total = already;
    // Small pieces when throttled, so that the rate holds within a tenth of a second.
    let size = rate.map_or(64 * 1024, |r| (r / 10).clamp(1, 64 * 1024) as usize);
    let mut buf = vec![0u8; size];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total = write_limited(to, &buf[..n], rate, started, total - already)? + already;
    }
}

/// Write `bytes` to `to`, first sleeping as long as `rate` asks given that `sent` bytes
/// went since `started`; returns `sent` plus what was written.
fn write_limited(
    to: &mut TcpStream,
    bytes: &[u8],
    rate: Option<u64>,
    started: Instant,
    sent: u64,
) -> io::Result<u64> {
    let sent = sent + bytes.len() as u64;
    if let Some(rate) = rate {
        let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
    }
    to.write_all(bytes)?;
    Ok(sent)
}

// ---------------------------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------------------------

/// Polls `cond` every `every` until it returns true (→ `true`) or `timeout` elapses (→ `false`).
/// For eventually-true assertions, e.g. an agent converging.
pub fn wait_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------------------------
// Direct access to a bucket, and small helpers for configs and files
// ---------------------------------------------------------------------------------------------

/// A bucket of a [`Minio`], as its root user sees it: to look at and tamper with
/// what Cattle wrote. Each call blocks on a runtime of its own.
#[derive(Debug)]
pub struct Bucket {
    runtime: tokio::runtime::Runtime,
    pub store: cattle_core::store::Store,
}

impl Bucket {
    /// The bucket `bucket` of `minio`, keys under `prefix` (empty or ending in `/`).
    pub fn open(minio: &Minio, bucket: &str, prefix: &str) -> Bucket {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s3 = runtime
            .block_on(cattle_core::store::S3Store::new(
                bucket.to_string(),
                prefix.to_string(),
                minio.store_options(),
            ))
            .unwrap();
        Bucket {
            runtime,
            store: cattle_core::store::Store::S3(s3),
        }
    }

    pub fn create(&self) {
        let cattle_core::store::Store::S3(s3) = &self.store else {
            unreachable!("opened on S3")
        };
        self.runtime.block_on(s3.create_bucket()).unwrap();
    }

    /// Run a future of the store (or anything else) to completion.
    pub fn block<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    pub fn keys(&self) -> Vec<String> {
        self.block(self.store.list("")).unwrap()
    }

    /// Every key under `prefix`, in order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.block(self.store.list(prefix)).unwrap()
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.block(self.store.get(key, u64::MAX))
            .unwrap()
            .map(|o| o.bytes)
    }

    pub fn delete(&self, key: &str) {
        self.block(self.store.delete(key)).unwrap();
    }

    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        self.block(
            self.store
                .put(key, bytes, cattle_core::store::Condition::Always),
        )
        .unwrap();
    }
}

/// A `command` step running `script` with `sh -c` (no double quotes in it).
pub fn shell_step(script: &str) -> String {
    format!("[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"{script}\"]\n\n")
}

/// Every file under `dir`, sorted, without hidden ones (a store's lock, temporary files).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// A tmpfs of the test's own
// ---------------------------------------------------------------------------------------------

/// A tmpfs mounted on a directory of the test's, unmounted on `Drop` (tests run
/// as root). [`Tmpfs::remount`] starts it empty again, as a reboot does `/run`.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    size: String,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `"1m"`) on `path`, creating it.
    pub fn mount(path: impl Into<PathBuf>, size: &str) -> Tmpfs {
        let tmpfs = Tmpfs {
            path: path.into(),
            size: size.to_string(),
        };
        fs::create_dir_all(&tmpfs.path).unwrap();
        tmpfs.mount_it();
        tmpfs
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmount it and mount a new, empty one in its place.
    pub fn remount(&self) {
        self.unmount();
        self.mount_it();
    }

    fn mount_it(&self) {
        Cmd::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={},mode=0755", self.size))
            .arg("tmpfs")
            .arg(&self.path)
            .run()
            .assert_success();
    }

    fn unmount(&self) {
        Cmd::new("umount").arg(&self.path).run().assert_success();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// Snapshot tests of what the binaries print (insta): run the assertions inside
/// `harness::snapshots().bind(|| insta::assert_snapshot!(...))`.
///
/// The filters replace what differs from run to run, and only that, so a
/// snapshot still shows every word and column an operator sees: execution IDs
/// become `[ID]`, times `[TIME]`, ages like `12s ago` `[AGE] ago`, sha256
/// digests `[SHA256]`, temporary directories `[TMP]`, loopback ports `[PORT]`.
/// A test adds its own (a short ID prefix, a host's address) with
/// `add_filter` on the settings returned. Write a new or changed snapshot with
/// `INSTA_UPDATE=always cargo test …` and read the `.snap` file before
/// committing it.
pub fn snapshots() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for (pattern, replacement) in [
        // Temporary directories first: they may contain digits that look like other things.
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (r"/tmp/[A-Za-z0-9._-]*\.tmp[A-Za-z0-9]+", "[TMP]"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[ID]",
        ),
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?",
            "[TIME]",
        ),
        (r"\b\d+(\.\d+)?(ms|s|m|h|d) ago\b", "[AGE] ago"),
        (r"(127\.0\.0\.1|localhost):\d+", "$1:[PORT]"),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings
}

impl Output {
    /// The exit code, stdout and stderr in one text, for a snapshot.
    pub fn snapshot(&self) -> String {
        format!(
            "exit code: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minio_starts_pauses_resumes_and_frees_its_port() {
        let t0 = Instant::now();
        let mut minio = Minio::start();
        eprintln!("MinIO ready in {:?} at {}", t0.elapsed(), minio.endpoint());
        let addr = minio.addr();

        let live =
            http_get(addr, "/minio/health/live", Duration::from_secs(5)).expect("health request");
        assert_eq!(live.status, 200, "{live:?}");
        assert!(minio.is_live(Duration::from_secs(5)));
        assert!(minio.endpoint().starts_with("http://127.0.0.1:"));
        assert_eq!(minio.bucket_url("b"), "s3://b/");
        let env = minio.env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("AWS_ENDPOINT_URL"), Some(minio.endpoint()));
        assert_eq!(get("AWS_REGION").as_deref(), Some("us-east-1"));
        assert!(!Path::new(&get("AWS_CONFIG_FILE").unwrap()).exists());

        minio.pause();
        assert!(
            !minio.is_live(Duration::from_millis(300)),
            "health answered while paused"
        );
        minio.resume();
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
                minio.is_live(Duration::from_secs(1))
            }),
            "health did not answer after resume"
        );

        // Dropping a paused server must not hang.
        minio.pause();
        drop(minio);
        TcpListener::bind(addr).expect("port is free after drop");
    }

    #[test]
    fn a_background_process_takes_the_processes_it_started_with_it() {
        // A wrapper that forks what it runs, as `faketime` does.
        let spawn = || Cmd::new("sh").args(["-c", "sleep 600 & wait"]).spawn();
        let alive = |pid: Pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| Some(!stat.rsplit_once(") ")?.1.starts_with('Z')))
                .unwrap_or(false)
        };
        let started = |shell: &Background| {
            let mut sleep = None;
            let found = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                sleep = descendants(Pid::from_raw(shell.id() as i32))
                    .first()
                    .copied();
                sleep.is_some()
            });
            assert!(found, "the shell did not start its child");
            sleep.unwrap()
        };

        let shell = spawn();
        let sleep = started(&shell);
        assert!(alive(sleep));
        drop(shell);
        let gone = |pid: Pid| {
            wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                !alive(pid)
            })
        };
        assert!(gone(sleep), "{sleep} outlived the dropped handle");

        let mut shell = spawn();
        let sleep = started(&shell);
        assert_eq!(shell.kill().status, 128 + 9);
        assert!(gone(sleep), "{sleep} outlived the killed shell");
    }

    #[test]
    fn tls_minio_serves_https_with_its_own_ca_and_mc_trusts_it() {
        let minio = Minio::start_tls();
        assert!(minio.endpoint().starts_with("https://127.0.0.1:"));
        assert!(minio.ca_bundle().is_file());
        assert!(minio.is_live(Duration::from_secs(5)));
        // Plain HTTP is not served.
        let plain = http_get(minio.addr(), "/minio/health/live", Duration::from_secs(5));
        assert!(!matches!(plain, Ok(r) if r.status == 200));

        minio.mc(&["mb", "test/tls-bucket"]).assert_success();
        let ls = minio.mc(&["ls", "test"]);
        ls.assert_success();
        assert!(ls.stdout.contains("tls-bucket/"), "{ls}");

        // Another CA does not vouch for the server's certificate.
        let other = TestCa::new("other");
        let bad = health_get(
            minio.addr(),
            Some(other.certificate()),
            "/minio/health/live",
            Duration::from_secs(5),
        );
        assert!(bad.is_err(), "{bad:?}");
    }

    #[test]
    fn the_proxy_forwards_answers_and_throttles() {
        let minio = Minio::start();
        let proxy = Proxy::to(minio.addr())
            .rewrite(|request| {
                if request.path() == "/teapot" {
                    Verdict::Respond(http_response(418, "I'm a teapot", &[], b"short and stout"))
                } else if request.path() == "/drop" {
                    Verdict::Close
                } else {
                    Verdict::Forward
                }
            })
            .start();
        let live = http_get(proxy.addr(), "/minio/health/live", Duration::from_secs(5)).unwrap();
        assert_eq!(live.status, 200, "{live:?}");
        let tea = http_get(proxy.addr(), "/teapot?x=1", Duration::from_secs(5)).unwrap();
        assert_eq!(
            (tea.status, tea.body.as_slice()),
            (418, &b"short and stout"[..])
        );
        assert!(http_get(proxy.addr(), "/drop", Duration::from_secs(5)).is_err());
        assert_eq!(
            proxy.requests(),
            ["GET /minio/health/live", "GET /teapot?x=1", "GET /drop"]
        );
        assert!(
            proxy
                .env(&minio.env())
                .contains(&("AWS_ENDPOINT_URL".to_string(), proxy.endpoint()))
        );

        // An answer of a few hundred bytes at 1,000 bytes per second takes a few tenths of
        // a second.
        let slow = Proxy::to(minio.addr()).bytes_per_second(1_000).start();
        let t0 = Instant::now();
        let answer = http_get(slow.addr(), "/minio/health/live", Duration::from_secs(5)).unwrap();
        let elapsed = t0.elapsed();
        assert_eq!(answer.status, 200);
        let size: usize = "HTTP/1.1 200 OK\r\n\r\n".len()
            + answer.body.len()
            + answer
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>();
        let least = Duration::from_secs_f64(size as f64 / 1_000.0 * 0.9);
        assert!(elapsed >= least, "{elapsed:?} for {size} bytes");
    }

    #[test]
    fn stop_refuses_connections() {
        let mut minio = Minio::start();
        let addr = minio.addr();
        minio.stop();
        minio.stop();
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn run_cleans_aws_env_and_reports_output() {
        let ws = Workspace::new();
        let script = ws.write(
            "sub/dir/s.sh",
            "echo \"out:${AWS_REGION:-none}:${AWS_PROFILE:-none}:${RUST_LOG:-none}\"; echo err >&2; cat; exit 3\n",
        );
        assert_eq!(ws.read("sub/dir/s.sh").lines().count(), 1);
        let out = Cmd::new("/bin/sh")
            .arg(&script)
            .env("AWS_REGION", "eu-west-1")
            .stdin("piped-in\n")
            .current_dir(ws.path())
            .run();
        assert_eq!(out.status, 3);
        // AWS_PROFILE / RUST_LOG from the developer's env (if any) are removed.
        assert_eq!(out.stdout, "out:eu-west-1:none:none\npiped-in\n");
        assert_eq!(out.stderr, "err\n");

        let out = run(Path::new("/bin/sh"), &["-c", "exit 0"], &[]);
        out.assert_success();
    }

    #[test]
    fn background_is_killed_on_drop_and_terminates() {
        let mut bg = spawn(
            Path::new("/bin/sh"),
            &["-c", "echo started; exec sleep 60"],
            &[],
        );
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || bg.stdout() == "started\n"
        ));
        assert_eq!(bg.try_status(), None);
        let out = bg.terminate(Duration::from_secs(5));
        assert_eq!(out.status, 128 + 15);

        let bg = spawn(Path::new("/bin/sh"), &["-c", "exec sleep 60"], &[]);
        let pid = Pid::from_raw(bg.id() as i32);
        drop(bg);
        // Reaped: the pid no longer exists (ESRCH).
        assert!(signal::kill(pid, None).is_err());
    }
}

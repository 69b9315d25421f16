//! S3-compatible servers other than MinIO, for the compatibility tests
//! (`tests/compat.rs`): [`Versitygw`] (its posix backend), [`Seaweed`] (SeaweedFS)
//! and [`Garage`]. Each is a real server process on free loopback ports with its
//! data in a temp dir, the test credentials of [`Minio`] and the bucket [`BUCKET`]
//! made; it is killed on drop. [`S3Server`] is what tests use of any of them and of
//! [`Minio`], so that one test function runs on every server.
//!
//! `scripts/install-s3-servers.sh` installs the pinned servers (`scripts/test.sh`
//! does it); a missing one makes the fixture panic with that command.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Bucket, Minio, go_env, http_get, log_tail, signing_env};

/// The bucket every fixture of this module makes when it starts.
pub const BUCKET: &str = "cattle";

/// How long a fixture waits for its server to take a write in [`BUCKET`].
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a test needs of an S3 server to run `cattle` and `cattle-agent` against it:
/// the same methods, with the same meaning, as [`Minio`]'s.
pub trait S3Server {
    /// The server and its pinned version, e.g. `versitygw v1.8.0`.
    fn name(&self) -> String;

    /// The S3 API's socket address, e.g. for a [`Proxy`](crate::Proxy) in front of it.
    fn addr(&self) -> SocketAddr;

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Options for cattle-core's S3 client to reach the server with the test credentials.
    fn store_options(&self) -> cattle_core::store::S3Options {
        test_options(self.endpoint())
    }

    /// The AWS environment pointing the CLI and the agent at the server (see [`Minio::env`]).
    fn env(&self) -> Vec<(String, String)>;

    /// [`env`](Self::env) plus a signing key pair (see [`signing_env`]).
    fn cattle_env(&self) -> Vec<(String, String)>;

    /// The server's output so far.
    fn log(&self) -> String;
}

impl S3Server for Minio {
    fn name(&self) -> String {
        "MinIO".to_string()
    }

    fn addr(&self) -> SocketAddr {
        Minio::addr(self)
    }

    fn endpoint(&self) -> String {
        Minio::endpoint(self)
    }

    fn store_options(&self) -> cattle_core::store::S3Options {
        Minio::store_options(self)
    }

    fn env(&self) -> Vec<(String, String)> {
        Minio::env(self)
    }

    fn cattle_env(&self) -> Vec<(String, String)> {
        Minio::cattle_env(self)
    }

    fn log(&self) -> String {
        Minio::log(self)
    }
}

impl Bucket {
    /// The bucket `bucket` of any [`S3Server`], keys under `prefix` (empty or ending in `/`).
    pub fn on(server: &dyn S3Server, bucket: &str, prefix: &str) -> Bucket {
        Bucket::with_options(server.store_options(), bucket, prefix)
    }

    fn with_options(options: cattle_core::store::S3Options, bucket: &str, prefix: &str) -> Bucket {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s3 = runtime
            .block_on(cattle_core::store::S3Store::new(
                bucket.to_string(),
                prefix.to_string(),
                options,
            ))
            .unwrap();
        Bucket {
            runtime,
            store: cattle_core::store::Store::S3(s3),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the fixtures share
// ---------------------------------------------------------------------------------------------

/// A server process with its temp dir and log file, killed on drop.
struct Process {
    name: &'static str,
    child: Option<Child>,
    dir: TempDir,
    log: PathBuf,
    /// Files the server makes outside its temp dir, removed once it is killed.
    leftovers: Vec<PathBuf>,
}

impl Process {
    /// A temp dir for a server called `name`, with its log file, before it starts.
    fn dir(name: &'static str) -> (TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cattle-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("create a temp dir for {name}: {e}"));
        let log = dir.path().join(format!("{name}.log"));
        (dir, log)
    }

    /// Start `cmd`, its output appended to `log`, without the developer's AWS settings.
    fn spawn(name: &'static str, mut cmd: Command, dir: TempDir, log: PathBuf) -> Process {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone the log file handle");
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| !k.to_string_lossy().starts_with("AWS_")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Process {
            name,
            child: Some(child),
            dir,
            log,
            leftovers: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the end of the server's log, unless it is still running.
    fn assert_running(&mut self, doing: &str) {
        let child = self.child.as_mut().expect("the server was started");
        if let Some(status) = child.try_wait().expect("try_wait on the server") {
            panic!(
                "{} exited ({status}) while {doing}\n--- last lines of its log ({}) ---\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 60)
            );
        }
    }

    /// Calls `ready` every 50 ms until it returns `Ok`; panics with the last error and
    /// the end of the server's log if the server exits or `timeout` passes first.
    fn await_ready(
        &mut self,
        doing: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<(), String>,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running(doing);
            let err = match ready() {
                Ok(()) => return,
                Err(err) => err,
            };
            if Instant::now() >= deadline {
                panic!(
                    "{} was not ready after {timeout:?} {doing}: {err}\n\
                     --- last lines of its log ({}) ---\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log, 60)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the server at `endpoint` takes a write in [`BUCKET`], making the
    /// bucket with S3's CreateBucket unless `create` is false.
    fn await_bucket(&mut self, endpoint: String, create: bool) {
        let bucket = Bucket::with_options(test_options(endpoint), BUCKET, "");
        let cattle_core::store::Store::S3(s3) = &bucket.store else {
            unreachable!("opened on S3")
        };
        self.await_ready("writing to its bucket", START_TIMEOUT, || {
            bucket.block(async {
                if create {
                    s3.create_bucket().await.map_err(|e| e.to_string())?;
                }
                let probe = ".cattle-test-probe";
                bucket
                    .store
                    .put(
                        probe,
                        b"ready".to_vec(),
                        cattle_core::store::Condition::Always,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                bucket.store.delete(probe).await.map_err(|e| e.to_string())
            })
        });
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for path in &self.leftovers {
            let _ = fs::remove_file(path);
        }
    }
}

/// Options for cattle-core's S3 client to reach `endpoint` with the test credentials.
fn test_options(endpoint: String) -> cattle_core::store::S3Options {
    cattle_core::store::S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".to_string()),
        credentials: Some((Minio::ACCESS_KEY.to_string(), Minio::SECRET_KEY.to_string())),
        ..Default::default()
    }
}

/// The AWS environment for a server at `endpoint` with the test credentials, the AWS
/// config files redirected under `dir` to paths that do not exist.
fn aws_env(endpoint: String, dir: &Path) -> Vec<(String, String)> {
    let nowhere = dir.join("no-aws");
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", Minio::ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", Minio::SECRET_KEY.to_owned()),
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

/// `n` distinct free loopback ports (all listeners are held until all are picked).
///
/// Below 55536: SeaweedFS takes a port's gRPC twin 10000 above it unless told otherwise.
fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        if listener.local_addr().expect("local addr").port() < 55536 {
            held.push(listener);
        }
    }
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// The installed binary `name`: `$VAR` if set, else the first of `dirs` that has it.
/// Panics naming the install script if none does.
fn find_bin(name: &str, var: &str, dirs: Vec<PathBuf>) -> PathBuf {
    const INSTALL: &str = "Install it with `scripts/install-s3-servers.sh` \
         (or run all tests with `scripts/test.sh`, which does it).";
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "\n\n*** {name} not found: {var}={} does not exist. ***\n{INSTALL}\n\n",
            path.display()
        );
        return path;
    }
    let candidates: Vec<PathBuf> = dirs.into_iter().map(|d| d.join(name)).collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect();
    panic!(
        "\n\n*** {name} not found: the compatibility tests need it. ***\n{INSTALL}\n\
         Looked in:\n{}\n(set {var}=/path/to/{name} to override)\n\n",
        looked.join("\n")
    )
}

/// Where `go install` puts binaries, as [`minio_bin`](crate::minio_bin) looks.
fn go_bin_dirs() -> Vec<PathBuf> {
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
    dirs
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
fn cargo_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|p| !p.is_empty()) {
        dirs.push(Path::new(&home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        dirs.push(Path::new(&home).join(".cargo").join("bin"));
    }
    dirs
}

/// Runs a command to set a server up; panics with its output if it fails.
fn setup(cmd: &mut Command, server: &Process) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}\n--- last lines of {}'s log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            server.name,
            log_tail(&server.log, 40)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// versitygw
// ---------------------------------------------------------------------------------------------

/// versitygw, the Versity S3 gateway, on its posix backend: each bucket a directory of
/// its temp dir, each object a file, metadata in extended attributes.
pub struct Versitygw {
    process: Process,
    port: u16,
}

impl fmt::Debug for Versitygw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Versitygw")
            .field("endpoint", &S3Server::endpoint(self))
            .field("dir", &self.process.path())
            .finish()
    }
}

impl Versitygw {
    /// The version `scripts/install-s3-servers.sh` installs.
    pub const VERSION: &'static str = "v1.8.0";

    /// Starts a fresh gateway and waits until it has made [`BUCKET`] and takes writes in it.
    pub fn start() -> Versitygw {
        let bin = find_bin("versitygw", "CATTLE_TEST_VERSITYGW", go_bin_dirs());
        let (dir, log) = Process::dir("versitygw");
        let root = dir.path().join("posix");
        fs::create_dir(&root).expect("create the posix root");
        let port = free_ports(1)[0];
        let mut cmd = Command::new(bin);
        cmd.arg("--port")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--access", Minio::ACCESS_KEY, "--secret", Minio::SECRET_KEY])
            .args(["--region", "us-east-1", "--health", "/health", "--quiet"])
            .arg("posix")
            .arg(&root);
        let mut gw = Versitygw {
            process: Process::spawn("versitygw", cmd, dir, log),
            port,
        };
        let addr = gw.addr();
        gw.process.await_ready(
            "answering its health check",
            START_TIMEOUT,
            || match http_get(addr, "/health", Duration::from_secs(1)) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("GET /health answered {}", r.status)),
                Err(e) => Err(format!("GET /health: {e}")),
            },
        );
        let endpoint = gw.endpoint();
        gw.process.await_bucket(endpoint, true);
        gw
    }
}

impl S3Server for Versitygw {
    fn name(&self) -> String {
        format!("versitygw {}", Self::VERSION)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn env(&self) -> Vec<(String, String)> {
        aws_env(self.endpoint(), self.process.path())
    }

    fn cattle_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.extend(signing_env(self.process.path()));
        env
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

// ---------------------------------------------------------------------------------------------
// SeaweedFS
// ---------------------------------------------------------------------------------------------

/// SeaweedFS as one `weed server` process: a master, a volume server, a filer and the
/// S3 gateway, each with its HTTP and gRPC port given (none of its fixed defaults).
pub struct Seaweed {
    process: Process,
    port: u16,
}

impl fmt::Debug for Seaweed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seaweed")
            .field("endpoint", &S3Server::endpoint(self))
            .field("dir", &self.process.path())
            .finish()
    }
}

impl Seaweed {
    /// The commit `scripts/install-s3-servers.sh` installs (Go pseudo-version
    /// `v0.0.0-20261109003541-7506e5f91cd6`).
    pub const VERSION: &'static str = "7506e5f91cd6";

    /// Starts a fresh SeaweedFS and waits until its S3 gateway has made [`BUCKET`] and
    /// takes writes in it (the volume server must have joined the master first).
    pub fn start() -> Seaweed {
        let bin = find_bin("weed", "CATTLE_TEST_WEED", go_bin_dirs());
        let (dir, log) = Process::dir("seaweedfs");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("create the SeaweedFS data dir");
        // The S3 gateway's identities: the test credentials, allowed everything.
        let config = dir.path().join("s3.json");
        let identities = serde_json::json!({
            "identities": [{
                "name": "cattle-test",
                "credentials": [{"accessKey": Minio::ACCESS_KEY, "secretKey": Minio::SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]
            }]
        });
        fs::write(&config, identities.to_string()).expect("write the S3 identities");
        let ports = free_ports(8);
        let port = ports[6];
        let mut cmd = Command::new(bin);
        // Its log files in its temp dir, not in /tmp.
        cmd.arg(format!("-logdir={}", dir.path().display()))
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", data.display()))
            .args(["-filer", "-s3", "-master.telemetry=false"])
            .arg(format!("-master.port={}", ports[0]))
            .arg(format!("-master.port.grpc={}", ports[1]))
            .arg(format!("-volume.port={}", ports[2]))
            .arg(format!("-volume.port.grpc={}", ports[3]))
            .arg(format!("-filer.port={}", ports[4]))
            .arg(format!("-filer.port.grpc={}", ports[5]))
            .arg(format!("-s3.port={port}"))
            .arg(format!("-s3.port.grpc={}", ports[7]))
            // The Iceberg and Lance catalogs would take fixed ports (8181, 9101).
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!(
                "-filer.localSocket={}/filer.sock",
                dir.path().display()
            ))
            .arg(format!("-s3.localSocket={}/s3.sock", dir.path().display()))
            // Small volumes: a test writes kilobytes. The volume server refuses
            // writes below its free-space floor (default 1 % of the disk).
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=16"])
            .arg("-volume.minFreeSpace=256MiB");
        let mut process = Process::spawn("SeaweedFS", cmd, dir, log);
        // It also serves each gRPC port on a Unix socket of a fixed name in /tmp.
        for (service, grpc) in [("master", 1), ("volume", 3), ("filer", 5), ("s3", 7)] {
            process.leftovers.push(PathBuf::from(format!(
                "/tmp/seaweedfs-{service}-grpc-{}.sock",
                ports[grpc]
            )));
        }
        let mut weed = Seaweed { process, port };
        let endpoint = weed.endpoint();
        weed.process.await_bucket(endpoint, true);
        weed
    }
}

impl S3Server for Seaweed {
    fn name(&self) -> String {
        format!("SeaweedFS {}", Self::VERSION)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn env(&self) -> Vec<(String, String)> {
        aws_env(self.endpoint(), self.process.path())
    }

    fn cattle_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.extend(signing_env(self.process.path()));
        env
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

// ---------------------------------------------------------------------------------------------
// Garage
// ---------------------------------------------------------------------------------------------

/// A one-node Garage: its configuration written, its layout assigned and applied, the
/// test key imported and allowed to read, write and own [`BUCKET`].
pub struct Garage {
    process: Process,
    bin: PathBuf,
    port: u16,
}

impl fmt::Debug for Garage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Garage")
            .field("endpoint", &S3Server::endpoint(self))
            .field("dir", &self.process.path())
            .finish()
    }
}

impl Garage {
    /// The version `scripts/install-s3-servers.sh` installs.
    pub const VERSION: &'static str = "2.5.0";

    /// Starts a fresh Garage and waits until it takes writes in [`BUCKET`].
    pub fn start() -> Garage {
        let bin = find_bin("garage", "CATTLE_TEST_GARAGE", cargo_bin_dirs());
        let (dir, log) = Process::dir("garage");
        let ports = free_ports(2);
        let (port, rpc) = (ports[0], ports[1]);
        // 32 bytes in hex, as Garage wants its RPC secret.
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let config = dir.path().join("garage.toml");
        let path = dir.path().display();
        fs::write(
            &config,
            format!(
                "metadata_dir = \"{path}/meta\"\n\
                 data_dir = \"{path}/data\"\n\
                 db_engine = \"sqlite\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 \n\
                 [s3_api]\n\
                 s3_region = \"us-east-1\"\n\
                 api_bind_addr = \"127.0.0.1:{port}\"\n"
            ),
        )
        .expect("write the Garage configuration");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c").arg(&config).arg("server");
        let mut garage = Garage {
            process: Process::spawn("Garage", cmd, dir, log),
            bin,
            port,
        };
        // Its CLI answers once the node's RPC is up.
        let status = garage.cli();
        garage
            .process
            .await_ready("answering `garage status`", START_TIMEOUT, || {
                let out = Command::new(&status.0)
                    .args(&status.1)
                    .arg("status")
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            });
        let node = garage.run(&["node", "id", "-q"]);
        let node = node
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        garage.run(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.run(&["layout", "apply", "--version", "1"]);
        garage.run(&[
            "key",
            "import",
            "--yes",
            "-n",
            "cattle-test",
            Minio::ACCESS_KEY,
            Minio::SECRET_KEY,
        ]);
        garage.run(&["bucket", "create", BUCKET]);
        garage.run(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            Minio::ACCESS_KEY,
        ]);
        let endpoint = garage.endpoint();
        garage.process.await_bucket(endpoint, false);
        garage
    }

    /// The program and the arguments that run Garage's CLI on this node.
    fn cli(&self) -> (PathBuf, Vec<OsString>) {
        let config = self.process.path().join("garage.toml");
        (self.bin.clone(), vec!["-c".into(), config.into()])
    }

    /// Runs `garage -c CONFIG ARGS…` and returns its standard output; panics if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let (bin, base) = self.cli();
        setup(Command::new(bin).args(base).args(args), &self.process)
    }
}

impl S3Server for Garage {
    fn name(&self) -> String {
        format!("Garage {}", Self::VERSION)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn env(&self) -> Vec<(String, String)> {
        aws_env(self.endpoint(), self.process.path())
    }

    fn cattle_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.extend(signing_env(self.process.path()));
        env
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

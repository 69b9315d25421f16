//! A distributed MinIO on loopback: four `minio server` processes of four drives each,
//! erasure-coded over all sixteen (EC:4 by default), so that tests can kill nodes and bring
//! them back.
//!
//! With one node down (4 drives) the cluster keeps its read and write quorum (12 of 16);
//! with two down (8 drives) it loses both, and MinIO answers `SlowDownRead` /
//! `SlowDownWrite` (503), while a write waits on its lock (which needs 3 of 4 nodes) before
//! it fails.
//!
//! Starting it on one machine takes what MinIO's distributed setup asks for, spelt out:
//! every process is given the same sixteen endpoints `http://127.0.0.1:PORT/DIR` (the
//! ellipsis form `http://127.0.0.1:{9001...9004}/d{1...4}` would give every process the
//! same directories), `MINIO_CI_CD=1` lets drives live on the root filesystem, and
//! `_MINIO_SERVER_LOCAL=127.0.0.1:PORT` tells each process which endpoints are its own:
//! in a container (`/.dockerenv`, `/run/.containerenv`) MinIO does not resolve that by
//! itself and waits forever; elsewhere it is not read.

use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Bucket, Cmd, Minio, Output, health_get, log_tail, minio_bin, signing_env};

/// How long [`MinioCluster::start`] waits for every node to serve with quorum.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`MinioCluster::restart`] waits for the node to serve again.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A distributed MinIO of [`NODES`](Self::NODES) processes on free loopback ports, each with
/// [`DRIVES`](Self::DRIVES) drive directories in one temp dir, as the same root user as
/// [`Minio`]. Every node is killed, and the data removed, on drop.
pub struct MinioCluster {
    nodes: Vec<Node>,
    dir: TempDir,
}

struct Node {
    port: u16,
    console_port: u16,
    child: Option<Child>,
}

impl fmt::Debug for MinioCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MinioCluster")
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|n| (n.port, n.child.as_ref().map(Child::id)))
                    .collect::<Vec<_>>(),
            )
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl MinioCluster {
    /// Server processes ("nodes").
    pub const NODES: usize = 4;
    /// Drive directories per node.
    pub const DRIVES: usize = 4;

    /// Starts every node, waits until each serves and says the cluster has its write quorum
    /// (`/minio/health/cluster`), then creates `bucket`.
    ///
    /// Panics if the MinIO binary is missing (run `scripts/install-minio.sh`), or with the
    /// tail of each node's log if the cluster is not ready within 60 s.
    pub fn start(bucket: &str) -> MinioCluster {
        let dir = tempfile::Builder::new()
            .prefix("cattle-minio-cluster-")
            .tempdir()
            .expect("create MinIO cluster temp dir");
        // Every listener is held until all ports are picked, so that no two are the same.
        let listeners: Vec<TcpListener> = (0..2 * Self::NODES)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("local addr").port())
            .collect();
        drop(listeners);
        let mut cluster = MinioCluster {
            nodes: (0..Self::NODES)
                .map(|i| Node {
                    port: ports[i],
                    console_port: ports[Self::NODES + i],
                    child: None,
                })
                .collect(),
            dir,
        };
        for i in 0..Self::NODES {
            for d in 0..Self::DRIVES {
                fs::create_dir_all(cluster.drive(i, d)).expect("create a MinIO drive dir");
            }
            cluster.spawn(i);
        }
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        for i in 0..Self::NODES {
            cluster.wait_serving(i, true, deadline);
        }
        Bucket::open_cluster(&cluster, 0, bucket, "").create();
        cluster
    }

    /// Node `i`'s drive `d`: `<dir>/node<i>/drive<d>`.
    fn drive(&self, i: usize, d: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("node{i}"))
            .join(format!("drive{d}"))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}.log"))
    }

    /// The sixteen endpoints every node is given, in the same order.
    fn endpoints(&self) -> Vec<String> {
        (0..Self::NODES)
            .flat_map(|i| {
                (0..Self::DRIVES).map(move |d| {
                    format!(
                        "http://127.0.0.1:{}{}",
                        self.nodes[i].port,
                        self.drive(i, d).display()
                    )
                })
            })
            .collect()
    }

    fn spawn(&mut self, i: usize) {
        let bin = minio_bin();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open MinIO node log");
        let log_err = log.try_clone().expect("clone MinIO log handle");
        let node = &self.nodes[i];
        let child = Command::new(&bin)
            .arg("server")
            .arg("--address")
            .arg(format!("127.0.0.1:{}", node.port))
            .arg("--console-address")
            .arg(format!("127.0.0.1:{}", node.console_port))
            .arg("--quiet")
            .args(self.endpoints())
            .env_clear()
            .envs(
                std::env::vars_os()
                    .filter(|(k, _)| !k.to_string_lossy().starts_with("MINIO_") && k != "CI"),
            )
            .env("MINIO_ROOT_USER", Minio::ACCESS_KEY)
            .env("MINIO_ROOT_PASSWORD", Minio::SECRET_KEY)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            // Drives on the root filesystem, and a small buffer pool.
            .env("MINIO_CI_CD", "1")
            // Which endpoints are this process's own; read only in a container.
            .env("_MINIO_SERVER_LOCAL", format!("127.0.0.1:{}", node.port))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn MinIO {}: {e}", bin.display()));
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` serves S3 (`/minio/health/ready` without the `offline` mark)
    /// and, with `quorum`, says the cluster has its write quorum; panics with the nodes'
    /// logs after `deadline`.
    fn wait_serving(&mut self, i: usize, quorum: bool, deadline: Instant) {
        let addr = self.addr(i);
        loop {
            let child = self.nodes[i].child.as_mut().expect("node is running");
            if let Some(status) = child.try_wait().expect("try_wait on MinIO") {
                panic!(
                    "MinIO node {i} exited ({status}) while starting\n--- its log ---\n{}",
                    log_tail(&self.log_path(i), 60)
                );
            }
            let ready = matches!(
                health_get(addr, None, "/minio/health/ready", Duration::from_secs(1)),
                Ok(r) if r.status == 200 && r.header("x-minio-server-status").is_none()
            );
            if ready && (!quorum || self.has_quorum(i)) {
                return;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = (0..Self::NODES)
                    .map(|n| {
                        format!(
                            "--- node {n} (port {}) ---\n{}",
                            self.nodes[n].port,
                            log_tail(&self.log_path(n), 20)
                        )
                    })
                    .collect();
                panic!(
                    "MinIO node {i} (127.0.0.1:{}) did not serve with quorum in time\n{}",
                    self.nodes[i].port,
                    logs.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether node `i` says the cluster has its write quorum (`GET /minio/health/cluster`
    /// answers 200). It may say so a few seconds before the other nodes have reconnected
    /// to one that came back (they look for it every 15 s).
    pub fn has_quorum(&self, i: usize) -> bool {
        matches!(
            health_get(self.addr(i), None, "/minio/health/cluster", Duration::from_secs(2)),
            Ok(r) if r.status == 200
        )
    }

    /// Whether node `i` is alive (`GET /minio/health/live` answers 200).
    pub fn is_live(&self, i: usize) -> bool {
        matches!(
            health_get(self.addr(i), None, "/minio/health/live", Duration::from_secs(2)),
            Ok(r) if r.status == 200
        )
    }

    /// Kills node `i` (SIGKILL) and waits for it: its port then refuses connections. Its
    /// drives are kept for [`restart`](Self::restart). Idempotent.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again, on the same port and drives, and waits until it serves S3
    /// (which needs enough of the others up for its drives to make a quorum). The nodes
    /// that stayed up reconnect to it within 15 s; until then, reads through them may
    /// miss what is written through it.
    pub fn restart(&mut self, i: usize) {
        assert!(
            self.nodes[i].child.is_none(),
            "restart: MinIO node {i} is running"
        );
        self.spawn(i);
        self.wait_serving(i, false, Instant::now() + NODE_START_TIMEOUT);
    }

    /// Node `i`'s S3 API address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[i].port))
    }

    /// Node `i`'s S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Options for cattle-core's S3 client to reach the cluster through node `i`, as root.
    pub fn store_options(&self, i: usize) -> cattle_core::store::S3Options {
        cattle_core::store::S3Options {
            endpoint: Some(self.endpoint(i)),
            region: Some("us-east-1".to_string()),
            credentials: Some((Minio::ACCESS_KEY.to_string(), Minio::SECRET_KEY.to_string())),
            ..Default::default()
        }
    }

    /// The AWS environment pointing `cattle` or `cattle-agent` at node `i`, as
    /// [`Minio::env`] does at its server.
    pub fn env(&self, i: usize) -> Vec<(String, String)> {
        let nowhere = self.dir.path().join("no-aws");
        [
            ("AWS_ENDPOINT_URL", self.endpoint(i)),
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

    /// [`env`](Self::env) plus the cluster's signing key pair (see [`signing_env`]), the
    /// same for every node.
    pub fn cattle_env(&self, i: usize) -> Vec<(String, String)> {
        let mut env = self.env(i);
        env.extend(signing_env(self.dir.path()));
        env
    }

    /// Run the pinned `mc` against the cluster through node `i`, under the alias `test`
    /// (e.g. `mc(0, &["admin", "info", "test"])`).
    pub fn mc(&self, i: usize, args: &[&str]) -> Output {
        let mc = minio_bin().with_file_name("mc");
        assert!(
            mc.is_file(),
            "mc not found at {}: install it with `scripts/install-minio.sh`",
            mc.display()
        );
        Cmd::new(mc)
            .env(
                "MC_HOST_test",
                format!(
                    "http://{}:{}@127.0.0.1:{}",
                    Minio::ACCESS_KEY,
                    Minio::SECRET_KEY,
                    self.nodes[i].port
                ),
            )
            .env("MC_CONFIG_DIR", self.dir.path().join("mc"))
            .args(args)
            .run()
    }

    /// Node `i`'s combined stdout and stderr so far.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// The temp dir holding the drives and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MinioCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Bucket {
    /// The bucket `bucket` of `cluster` through node `node`, keys under `prefix` (empty or
    /// ending in `/`), as its root user sees it.
    pub fn open_cluster(cluster: &MinioCluster, node: usize, bucket: &str, prefix: &str) -> Bucket {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s3 = runtime
            .block_on(cattle_core::store::S3Store::new(
                bucket.to_string(),
                prefix.to_string(),
                cluster.store_options(node),
            ))
            .unwrap();
        Bucket {
            runtime,
            store: cattle_core::store::Store::S3(s3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_keeps_quorum_with_one_node_down_loses_it_with_two_and_gets_it_back() {
        let mut cluster = MinioCluster::start("probe");
        let bucket = Bucket::open_cluster(&cluster, 0, "probe", "");
        bucket.put("a", b"one".to_vec());
        // Written through one node, read through another.
        let other = Bucket::open_cluster(&cluster, 2, "probe", "");
        assert_eq!(other.get("a").as_deref(), Some(&b"one"[..]));

        cluster.kill(3);
        assert!(!cluster.is_live(3));
        assert!(cluster.has_quorum(0));
        assert_eq!(other.get("a").as_deref(), Some(&b"one"[..]));

        cluster.kill(2);
        assert!(crate::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || !cluster.has_quorum(0)
        ));
        assert!(cluster.is_live(0), "a node without quorum is still alive");

        cluster.restart(2);
        cluster.restart(3);
        assert!(crate::wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || (0..MinioCluster::NODES).all(|i| cluster.has_quorum(i))
        ));
        let info = cluster.mc(0, &["admin", "info", "test"]);
        info.assert_success();
        assert!(info.stdout.contains("EC:4"), "{info}");
    }
}

//! Cattle on a distributed MinIO (4 nodes of 4 drives, erasure-coded), with the real
//! binaries: the whole cycle, a node killed mid-run (the cluster keeps its quorum), two
//! killed (it loses it: agents carry on and deliver once it is back, `cattle` names the lost
//! quorum), and an agent whose endpoint node dies, restarted on another node.
//!
//! Each test starts a cluster of its own (about 5 s); the file takes 30 s to 4 minutes
//! (most of it waiting for MinIO's nodes to reconnect to one that came back, which they
//! try every 15 s, or to drop a killed node's locks, one to two minutes after it died).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cattle_e2e::{
    Background, Bucket, Cmd, Minio, MinioCluster, Output, Proxy, Signal, Workspace, agent_bin,
    cattle_bin, local_log, shell_step, states, wait_until,
};

const BUCKET: &str = "cattle";
const PREFIX: &str = "cluster";

/// A distributed MinIO with a bucket, a workspace, and the commands to drive them through
/// any of its nodes.
struct Site {
    cluster: MinioCluster,
    ws: Workspace,
}

impl Site {
    fn new() -> Site {
        Site {
            cluster: MinioCluster::start(BUCKET),
            ws: Workspace::new(),
        }
    }

    /// `cattle ARGS` through node `node`.
    fn cattle(&self, node: usize, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.cluster.cattle_env(node))
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .env("CATTLE_LOG", "error")
            .args(args)
            .run()
    }

    /// A config of `steps` steps, each printing a line naming its host and step, then
    /// sleeping `pause` seconds and printing another; each step also appends its number to
    /// `<ws>/ran/<host>` so that tests can tell whether a step ran twice.
    fn config(&self, steps: usize, pause: &str) -> PathBuf {
        let ran = self.ws.child("ran");
        std::fs::create_dir_all(&ran).unwrap();
        let text: String = (1..=steps)
            .map(|_| {
                shell_step(&format!(
                    "echo $CATTLE_STEP >> {}/$CATTLE_HOST_ID; \
                     echo start of step $CATTLE_STEP on $CATTLE_HOST_ID; sleep {pause}; \
                     echo end of step $CATTLE_STEP on $CATTLE_HOST_ID",
                    ran.display()
                ))
            })
            .collect();
        let path = self.ws.write(format!("config-{steps}/cattle.toml"), text);
        path.parent().unwrap().to_path_buf()
    }

    /// Publish `config` to `hosts` through node 0; the execution ID.
    fn publish(&self, config: &std::path::Path, hosts: &[&str]) -> String {
        let hosts = self.ws.write("hosts", hosts.join("\n") + "\n");
        let out = self.cattle(
            0,
            &[
                "publish",
                &config.display().to_string(),
                "--hosts",
                &hosts.display().to_string(),
            ],
        );
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    /// `host`'s agent, reaching the store through node `node`, polling every second.
    fn agent(&self, host: &str, node: usize) -> Cmd {
        Cmd::new(agent_bin())
            .envs(&self.cluster.cattle_env(node))
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .args(["--host-id", host, "--interval", "1", "--state-dir"])
            .arg(self.ws.child(format!("agents/{host}")))
    }

    /// `host`'s local directory for execution `id`.
    fn local(&self, host: &str, id: &str) -> PathBuf {
        self.ws.child(format!("agents/{host}/executions/{id}"))
    }

    /// The step numbers `host` started, in order.
    fn ran(&self, host: &str) -> Vec<usize> {
        std::fs::read_to_string(self.ws.child(format!("ran/{host}")))
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// `cattle status ID --json` through `node`, tried for up to 30 s: a node that has not
    /// yet reconnected to one that came back may answer that the quorum is lost.
    fn states(&self, node: usize, id: &str) -> Vec<(String, String)> {
        let t0 = Instant::now();
        loop {
            let out = self.cattle(node, &["status", id, "--json"]);
            match serde_json::from_str(&out.stdout) {
                Ok(json) => return states(&json),
                Err(e) if t0.elapsed() > Duration::from_secs(30) => panic!("{e}: {out}"),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Asserts that `host` ran each of the `steps` steps once, in order, that the log in the
    /// store (read through `node`) is the one it kept, and that it holds what every step
    /// printed, once.
    #[track_caller]
    fn assert_complete(&self, node: usize, id: &str, host: &str, steps: usize) {
        assert_eq!(
            self.ran(host),
            (1..=steps).collect::<Vec<_>>(),
            "{host}: each step once"
        );
        // A node that has not yet reconnected to one that came back (MinIO looks every
        // 15 s) may not find what was written through another meanwhile.
        let local = local_log(&self.local(host, id));
        let mut log = self.cattle(node, &["log", id, "--host", host]);
        let t0 = Instant::now();
        while log.stdout != local && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(500));
            log = self.cattle(node, &["log", id, "--host", host]);
        }
        log.assert_success();
        assert_eq!(log.stdout, local, "{host}'s log");
        for step in 1..=steps {
            for what in ["start", "end"] {
                let line = format!("{what} of step {step} on {host}\n");
                assert_eq!(
                    log.stdout.matches(&line).count(),
                    1,
                    "{line:?} once in {host}'s log:\n{}",
                    log.stdout
                );
            }
        }
    }
}

/// Waits up to `timeout` for `agent`'s local state of `id` to say DONE.
fn done_locally(site: &Site, host: &str, id: &str, timeout: Duration) -> bool {
    let status = site.local(host, id).join("STATUS");
    wait_until(timeout, Duration::from_millis(100), || {
        std::fs::read_to_string(&status).is_ok_and(|s| s == "DONE\n")
    })
}

/// Every host's agent has started a step of its run.
fn all_started(site: &Site, hosts: &[&str]) -> bool {
    wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        hosts.iter().all(|h| !site.ran(h).is_empty())
    })
}

fn all_done(states: &[(String, String)]) -> bool {
    !states.is_empty() && states.iter().all(|(_, s)| s == "DONE")
}

fn stop(agents: Vec<Background>) {
    for mut agent in agents {
        agent.terminate(Duration::from_secs(20));
    }
}

#[test]
fn publish_run_status_log_and_clean_work_through_every_node() {
    let site = Site::new();
    let config = site.config(2, "0");
    let hosts = ["h1", "h2", "h3"];
    let id = site.publish(&config, &hosts);
    // Each host through a node of its own.
    for (node, host) in hosts.iter().enumerate() {
        site.agent(host, node).arg("--once").run().assert_success();
    }
    assert_eq!(
        site.states(3, &id),
        hosts.map(|h| (h.to_string(), "DONE".to_string()))
    );
    let status = site.cattle(2, &["status", &id]);
    status.assert_success();
    assert!(status.stdout.contains("DONE"), "{status}");
    for (node, host) in hosts.iter().enumerate() {
        site.assert_complete(3 - node, &id, host, 2);
    }

    site.cattle(1, &["clean", &id]).assert_success();
    for node in 0..MinioCluster::NODES {
        let bucket = Bucket::open_cluster(&site.cluster, node, BUCKET, &format!("{PREFIX}/"));
        assert_eq!(
            bucket.list("executions/"),
            Vec::<String>::new(),
            "node {node}"
        );
        assert_eq!(bucket.list("bundles/"), Vec::<String>::new(), "node {node}");
    }

    let check = Cmd::new(cattle_bin())
        .envs(&site.cluster.cattle_env(3))
        .env("CATTLE_STORE", format!("s3://{BUCKET}/selftest"))
        .args(["store", "check"])
        .run();
    check.assert_success();
    assert!(check.stdout.ends_with("all 5 checks passed\n"), "{check}");
}

#[test]
fn with_one_node_killed_mid_run_every_host_finishes_and_delivers_its_whole_log() {
    let mut site = Site::new();
    let config = site.config(6, "0.3");
    let hosts = ["h1", "h2", "h3"];
    let id = site.publish(&config, &hosts);
    // Nodes 0 to 2 serve the agents; node 3 dies.
    let agents: Vec<Background> = hosts
        .iter()
        .enumerate()
        .map(|(node, host)| site.agent(host, node).spawn())
        .collect();
    assert!(all_started(&site, &hosts));
    site.cluster.kill(3);

    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            all_done(&site.states(0, &id))
                && hosts
                    .iter()
                    .all(|h| site.local(h, &id).join(".delivered").exists())
        }),
        "{:?}\n{}",
        site.states(0, &id),
        agents.iter().map(Background::stderr).collect::<String>()
    );
    for host in hosts {
        site.assert_complete(1, &id, host, 6);
    }
    stop(agents);

    // `clean` with the node still down removes everything, and nothing comes back
    // with the node.
    let bucket = |site: &Site, node| {
        Bucket::open_cluster(&site.cluster, node, BUCKET, &format!("{PREFIX}/"))
    };
    // The execution's objects and its bundle (the hosts' leases and inboxes stay).
    let written: Vec<String> = bucket(&site, 0)
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("executions/") || k.starts_with("bundles/"))
        .collect();
    assert!(written.len() > 10, "{written:#?}");
    site.cattle(0, &["clean", &id]).assert_success();
    for node in 0..3 {
        for key in &written {
            assert_eq!(
                bucket(&site, node).get(key),
                None,
                "{key} is left after clean"
            );
        }
    }
    site.cluster.restart(3);
    for key in &written {
        assert_eq!(
            bucket(&site, 3).get(key),
            None,
            "{key} came back with node 3"
        );
    }
}

#[test]
fn with_two_nodes_killed_agents_carry_on_cattle_names_the_lost_quorum_and_all_is_delivered_after() {
    let mut site = Site::new();
    // Runs of 6 s: long enough that no host is done before the nodes die, even when
    // the agents start seconds apart on a busy machine.
    let config = site.config(6, "1");
    let hosts = ["h1", "h2", "h3"];
    let id = site.publish(&config, &hosts);
    let agents: Vec<Background> = hosts
        .iter()
        .enumerate()
        .map(|(node, host)| site.agent(host, node).spawn())
        .collect();
    assert!(all_started(&site, &hosts));
    site.cluster.kill(2);
    site.cluster.kill(3);
    // A host that delivered before the nodes died (a very busy machine) proves nothing
    // below; the others must not deliver until the nodes are back.
    let unfinished: Vec<&str> = hosts
        .iter()
        .copied()
        .filter(|h| !site.local(h, &id).join(".delivered").exists())
        .collect();
    assert!(
        !unfinished.is_empty(),
        "every host had delivered before the nodes died"
    );
    let down = Instant::now();
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || !site.cluster.has_quorum(0)
    ));

    // The hosts finish their runs without the store.
    for host in hosts {
        assert!(
            done_locally(&site, host, &id, Duration::from_secs(30)),
            "{host} did not finish while the store had no quorum"
        );
        assert_eq!(site.ran(host), (1..=6).collect::<Vec<_>>());
    }

    // `cattle` says what is wrong and what to do, not MinIO's "reduce your request rate".
    let status = site.cattle(0, &["status", &id]);
    assert_eq!(status.status, 1, "{status}");
    assert!(!status.stderr.contains("request rate"), "{status}");
    cattle_e2e::snapshots().bind(|| {
        insta::assert_snapshot!("cluster_status_without_quorum", status.snapshot());
    });
    for host in &unfinished {
        assert!(
            !site.local(host, &id).join(".delivered").exists(),
            "{host} delivered to a store without quorum"
        );
    }

    site.cluster.restart(2);
    site.cluster.restart(3);
    let back = Instant::now();
    println!("the nodes were down for {:?}", back - down);
    // Up to two minutes and more for a write to an object whose lock a killed node held
    // (see the test below).
    assert!(
        wait_until(Duration::from_secs(300), Duration::from_millis(250), || {
            hosts
                .iter()
                .all(|h| site.local(h, &id).join(".delivered").exists())
        }),
        "{}",
        agents.iter().map(Background::stderr).collect::<String>()
    );
    println!(
        "every host delivered {:?} after the nodes came back",
        back.elapsed()
    );
    assert!(all_done(&site.states(1, &id)), "{:?}", site.states(1, &id));
    for host in hosts {
        site.assert_complete(0, &id, host, 6);
    }
    stop(agents);
}

/// The agent's lease renewals fail once its node is gone, and one may have reached the
/// other nodes all the same: the restarted agent must still know the lease as its own.
/// A write to an object the dead node was writing when it died waits for the cluster to
/// drop that node's lock on it, which MinIO does one to two minutes later (its lock
/// maintenance runs every minute and drops locks unrefreshed for a minute): delivery then
/// takes about 105 s, as measured in about half the runs; otherwise about 6 s.
#[test]
fn an_agent_whose_endpoint_node_dies_finishes_through_another_without_losing_or_repeating_a_step() {
    let mut site = Site::new();
    let config = site.config(8, "1");
    let id = site.publish(&config, &["h1"]);
    let mut agent = site.agent("h1", 0).spawn();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || !site.ran("h1").is_empty()
    ));
    site.cluster.kill(0);

    // The host goes on while its endpoint is gone; the cluster still serves the others.
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || site.ran("h1").len() >= 4
    ));
    agent.signal(Signal::SIGTERM);
    let Some(out) = agent.wait_timeout(Duration::from_secs(30)) else {
        panic!(
            "the agent did not stop after the step under way:\n{}",
            agent.stderr()
        );
    };
    assert_eq!(out.status, 0, "{out}");
    let before = site.ran("h1");
    assert!(before.len() < 8, "the run was over before the restart");

    // The same agent, pointed at node 1: it goes on from where it stopped.
    let mut agent = site.agent("h1", 1).spawn();
    let restarted = Instant::now();
    assert!(
        wait_until(Duration::from_secs(300), Duration::from_millis(250), || {
            site.local("h1", &id).join(".delivered").exists()
        }),
        "{}",
        agent.stderr()
    );
    println!("delivered {:?} after the restart", restarted.elapsed());
    assert_eq!(
        site.states(2, &id),
        [("h1".to_string(), "DONE".to_string())]
    );
    site.assert_complete(2, &id, "h1", 8);
    agent.terminate(Duration::from_secs(20));
}

/// A listing that misses log parts (distributed MinIO, for a while after a node came
/// back, for objects written since): `cattle log` reads the parts the host's status
/// counts by name, so the log is shown whole.
#[test]
fn log_reads_the_parts_the_status_counts_even_when_a_listing_misses_them() {
    let minio = Minio::start();
    let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
    bucket.create();
    let ws = Workspace::new();
    let config = ws.write("config/cattle.toml", shell_step("echo hello from the host"));
    let hosts = ws.write("hosts", "h1\n");
    let cattle = |env: &[(String, String)], args: &[&str]| {
        Cmd::new(cattle_bin())
            .envs(env)
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .env("CATTLE_LOG", "error")
            .args(args)
            .run()
    };
    let published = cattle(
        &minio.cattle_env(),
        &[
            "publish",
            &config.parent().unwrap().display().to_string(),
            "--hosts",
            &hosts.display().to_string(),
        ],
    );
    published.assert_success();
    let id = published.stdout.lines().last().unwrap().trim().to_string();
    Cmd::new(agent_bin())
        .envs(&minio.cattle_env())
        .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
        .args(["--host-id", "h1", "--once", "--state-dir"])
        .arg(ws.child("agent"))
        .run()
        .assert_success();
    let local = local_log(&ws.child(format!("agent/executions/{id}")));
    assert!(local.contains("hello from the host\n"), "{local}");

    // Every listing of the host's log parts comes back empty.
    let proxy = Proxy::hiding_listing(
        minio.addr(),
        BUCKET,
        format!("prefix={PREFIX}%2Fexecutions%2F{id}%2Fhosts%2Fh1%2Flog%2F"),
    );
    let log = cattle(&proxy.env(&minio.cattle_env()), &["log", &id]);
    log.assert_success();
    assert_eq!(log.stdout, local);
    assert!(
        proxy.requests().iter().any(|r| r.contains("list-type=2")),
        "the listing was asked for: {:?}",
        proxy.requests()
    );
}

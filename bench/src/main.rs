//! `cattle-bench`: measures Cattle against its performance goals and prints one table.
//!
//! Run it with `scripts/bench.sh`, which builds the release binaries and installs
//! MinIO and `mc` first. Every scenario runs against a private MinIO on loopback
//! started like the tests start theirs; requests are counted on MinIO's side with
//! `mc admin trace`. Times are medians of several runs, since the machine is shared.
//! It must run as root (the poem example chowns to root).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use cattle_core::store::{Condition, S3Store, Store};
use cattle_e2e::{
    Background, Cmd, Minio, Signal, Workspace, agent_bin, cattle_bin, example, wait_until,
};

/// One line of the result table.
struct Row {
    figure: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

impl Row {
    fn new(
        figure: impl Into<String>,
        value: impl Into<String>,
        goal: impl Into<String>,
        met: Option<bool>,
    ) -> Row {
        Row {
            figure: figure.into(),
            value: value.into(),
            goal: goal.into(),
            met,
        }
    }
}

const BUCKET: &str = "bench";
const SCENARIOS: &[&str] = &[
    "apply", "bundle", "publish", "vars", "status", "idle", "pickup", "output", "triage", "scale",
];
/// Runs of each `output` figure (each prints 1 GB); the median is reported.
const OUTPUT_RUNS: usize = 3;
/// Runs per timed figure; the median is reported.
const RUNS: usize = 5;

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("cattle-bench: run as root (the poem example chowns files to root)");
        std::process::exit(2);
    }
    // Scenarios to run: all, or those named on the command line.
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| chosen.is_empty() || chosen.iter().any(|c| c == name);
    for name in &chosen {
        if !SCENARIOS.contains(&name.as_str()) {
            eprintln!(
                "cattle-bench: unknown scenario `{name}`; choose from {}",
                SCENARIOS.join(", ")
            );
            std::process::exit(2);
        }
    }
    let ws = Workspace::new();
    let mut rows = Vec::new();
    // First: its peak RSS is read from the children this process has waited for.
    if wants("apply") {
        rows.extend(apply_poem(&ws));
    }
    if wants("bundle") {
        rows.extend(bundling(&ws));
    }

    let minio = Minio::start();
    let bench = Bench::new(&minio, &ws);
    if wants("publish") {
        for hosts in [1_000, 10_000] {
            rows.extend(bench.publish_fanout(hosts));
        }
    }
    if wants("vars") {
        rows.extend(bench.publish_with_vars(10_000));
    }
    if wants("status") {
        for hosts in [1_000, 10_000] {
            rows.extend(bench.status_of_reported(hosts));
        }
    }
    if wants("idle") {
        rows.extend(bench.agent_idle());
    }
    if wants("pickup") {
        for grouped in [false, true] {
            rows.push(bench.pickup_latency(100, 5, grouped));
        }
    }
    if wants("output") {
        rows.extend(bench.agent_output());
    }
    if wants("triage") {
        rows.extend(bench.one_failing_host(2_000));
    }
    if wants("scale") {
        for hosts in [10_000, 100_000] {
            rows.extend(bench.publish_layouts(hosts));
        }
        rows.extend(bench.status_of_reported(100_000));
    }

    print_table(&rows);
}

fn print_table(rows: &[Row]) {
    let w0 = rows
        .iter()
        .map(|r| r.figure.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w1 = rows.iter().map(|r| r.value.len()).max().unwrap_or(0).max(5);
    let w2 = rows.iter().map(|r| r.goal.len()).max().unwrap_or(0).max(4);
    println!(
        "| {:w0$} | {:w1$} | {:w2$} | met |",
        "figure", "value", "goal"
    );
    println!(
        "|{}|{}|{}|-----|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2)
    );
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!(
            "| {:w0$} | {:w1$} | {:w2$} | {met:3} |",
            r.figure, r.value, r.goal
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// `cattle apply` of the poem example (retargeted to a temporary directory), timed,
/// and its peak RSS from `getrusage(RUSAGE_CHILDREN)`.
fn apply_poem(ws: &Workspace) -> Vec<Row> {
    let target = ws.child("apply/poems");
    let config = ws.child("apply/config");
    std::fs::create_dir_all(&config).unwrap();
    let steps = std::fs::read_to_string(example("poem/cattle.toml"))
        .unwrap()
        .replace("/var/poems", &target.display().to_string());
    std::fs::write(config.join("cattle.toml"), steps).unwrap();
    std::fs::copy(example("poem/poem.txt"), config.join("poem.txt")).unwrap();

    let mut times = Vec::new();
    for _ in 0..RUNS * 4 {
        let _ = std::fs::remove_dir_all(&target);
        let started = Instant::now();
        let status = Command::new(cattle_bin())
            .arg("apply")
            .arg(&config)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(status.success(), "cattle apply failed");
    }
    assert!(target.join("poem.txt").is_file());
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let peak_mib = usage.max_rss() as f64 / 1024.0;
    let ms = median(times);
    vec![
        Row::new(
            "`cattle apply` of examples/poem, wall time",
            format!("{ms:.1} ms ({:.0}x faster than 350 ms)", 350.0 / ms),
            "≥ 20x faster than 0.35 s (≤ 17.5 ms)",
            Some(ms <= 17.5),
        ),
        Row::new(
            "`cattle apply` of examples/poem, peak RSS",
            format!("{peak_mib:.1} MiB"),
            "< 10 MB",
            Some(peak_mib * 1.048_576 < 10.0),
        ),
    ]
}

/// Pack a generated 100 MB tree (text-like content, so gzip has real work).
fn bundling(ws: &Workspace) -> Vec<Row> {
    let dir = ws.child("bundle-100mb");
    const FILES: usize = 400;
    const FILE_SIZE: usize = 250 * 1000;
    let words: Vec<&str> = "cattle herd host agent store bundle step retry poem facility \
        install chmod chown link service package config manifest status error done \
        progress the a of to and in is it that for on with as by"
        .split_whitespace()
        .collect();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..FILES {
        let mut text = String::with_capacity(FILE_SIZE + 16);
        while text.len() < FILE_SIZE {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.push_str(words[(seed >> 33) as usize % words.len()]);
            text.push(if (seed >> 20).is_multiple_of(13) {
                '\n'
            } else {
                ' '
            });
        }
        text.truncate(FILE_SIZE);
        let path = dir.join(format!("d{}/f{i:04}.txt", i % 10));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let total = (FILES * FILE_SIZE) as f64;
    let mut times = Vec::new();
    let mut packed = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let bundle = cattle_core::bundle::pack(&dir).unwrap();
        times.push(started.elapsed().as_secs_f64());
        packed = bundle.bytes.len();
    }
    let secs = median(times);
    vec![Row::new(
        "bundling a 100 MB config dir (sha256 + gzip)",
        format!(
            "{secs:.2} s ({:.0} MB/s, ratio {:.1})",
            total / secs / 1e6,
            total / packed as f64
        ),
        "≤ 0.5 s on one core",
        Some(secs <= 0.5),
    )]
}

/// The bench's handle on MinIO: the CLI's environment and a store client.
struct Bench<'a> {
    minio: &'a Minio,
    ws: &'a Workspace,
    runtime: tokio::runtime::Runtime,
}

impl<'a> Bench<'a> {
    fn new(minio: &'a Minio, ws: &'a Workspace) -> Bench<'a> {
        let bench = Bench {
            minio,
            ws,
            runtime: tokio::runtime::Runtime::new().unwrap(),
        };
        let Store::S3(s3) = bench.store("") else {
            unreachable!()
        };
        bench.runtime.block_on(s3.create_bucket()).unwrap();
        bench
    }

    fn store(&self, prefix: &str) -> Store {
        Store::S3(
            self.runtime
                .block_on(S3Store::new(
                    BUCKET.to_string(),
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{prefix}/")
                    },
                    self.minio.store_options(),
                ))
                .expect("no CA bundle to read"),
        )
    }

    /// Give `host`'s group an inbox with nothing in it, so that its agent's polls
    /// are idle (a missing inbox would be answered 404, not 304, and would have
    /// the agent read its per-host inbox too, as in a store older than groups).
    fn empty_inbox(&self, store: &Store, host: &str) {
        self.empty_inboxes(store, host, false);
    }

    /// [`Self::empty_inbox`]; with `per_host`, as a store that older
    /// publishers used has them: the host's own inbox too, and the group's
    /// marked `per_host`, so that agents read both.
    fn empty_inboxes(&self, store: &Store, host: &str, per_host: bool) {
        let group = cattle_core::keys::inbox_group(&cattle_core::hosts::HostId::new(host).unwrap());
        let inbox = serde_json::json!({"format": 2, "group": group, "executions": [], "per_host": per_host});
        let mut objects = vec![(format!("inboxes/{group}.json"), inbox)];
        if per_host {
            let own = serde_json::json!({"format": 1, "host": host, "executions": []});
            objects.push((format!("hosts/{host}/inbox.json"), own));
        }
        for (key, body) in objects {
            self.runtime
                .block_on(store.put(&key, serde_json::to_vec(&body).unwrap(), Condition::Always))
                .unwrap();
        }
    }

    fn cattle(&self, prefix: &str, args: &[&str]) -> cattle_e2e::Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{prefix}"))
            .args(args)
            .timeout(Duration::from_secs(600))
            .run()
    }

    fn hosts_file(&self, name: &str, hosts: &[String]) -> String {
        let path = self
            .ws
            .write(format!("{name}.hosts"), hosts.join("\n") + "\n");
        path.display().to_string()
    }

    /// A config whose only step changes nothing, so runs measure Cattle, not the step.
    fn noop_config(&self) -> String {
        let path = self.ws.write(
            "noop/cattle.toml",
            "[[step]]\nfacility = \"command\"\nargv = [\"true\"]\n",
        );
        path.parent().unwrap().display().to_string()
    }

    fn publish_fanout(&self, n: usize) -> Vec<Row> {
        let prefix = format!("fanout-{n}");
        let hosts: Vec<String> = (0..n).map(|i| format!("host-{i:05}")).collect();
        let hosts_file = self.hosts_file(&prefix, &hosts);
        let config = example("poem").display().to_string();
        let mut times = Vec::new();
        let mut uploads = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let out = self.cattle(
                &prefix,
                &["publish", &config, "--hosts", &hosts_file, "--json"],
            );
            times.push(started.elapsed().as_secs_f64());
            out.assert_success();
            let published: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            uploads += usize::from(published["bundle_uploaded"] == true);
        }
        let store = self.store(&prefix);
        let bundles = self
            .runtime
            .block_on(store.list("bundles/"))
            .unwrap()
            .into_iter()
            .filter(|k| k.ends_with(".tar.gz"))
            .count();
        let first = times[0];
        let later = median(times[1..].to_vec());
        vec![Row::new(
            format!("`cattle publish` to {n} hosts"),
            format!(
                "{first:.2} s new inboxes, {later:.2} s existing; bundle uploaded {uploads}x in {RUNS} runs, {bundles} stored"
            ),
            if n == 10_000 {
                "< 3 s; bundle bytes uploaded once"
            } else {
                "-"
            },
            (n == 10_000).then_some(first.max(later) < 3.0 && uploads == 1 && bundles == 1),
        )]
    }

    /// Publishing to `n` hosts in both designs, in one run: a store used before
    /// grouped inboxes (its version counter says nothing of them), where a
    /// publish writes every host's inbox and its group's, and a new store,
    /// where it writes one inbox per group. Runs against a store with the
    /// inboxes already there (the second publish on): the usual case.
    fn publish_layouts(&self, n: usize) -> Vec<Row> {
        let hosts: Vec<String> = (0..n).map(|i| format!("host-{i:06}")).collect();
        let hosts_file = self.hosts_file(&format!("layouts-{n}"), &hosts);
        let config = self.noop_config();
        let mut rows = Vec::new();
        for grouped in [false, true] {
            let design = if grouped { "grouped" } else { "per-host" };
            let prefix = format!("layout-{design}-{n}");
            if !grouped {
                let counter = serde_json::json!({"format": 2, "version": 1});
                self.runtime
                    .block_on(self.store(&prefix).put(
                        "publish/version.json",
                        serde_json::to_vec(&counter).unwrap(),
                        Condition::Always,
                    ))
                    .unwrap();
            }
            // Per-host inboxes at 100,000 hosts take minutes a publish.
            let runs = if !grouped && n >= 100_000 { 2 } else { 4 };
            let mut times = Vec::new();
            for _ in 0..runs {
                let started = Instant::now();
                let out = self.cattle(&prefix, &["publish", &config, "--hosts", &hosts_file]);
                times.push(started.elapsed().as_secs_f64());
                out.assert_success();
            }
            let store = self.store(&prefix);
            let inboxes = self.runtime.block_on(store.list("inboxes/")).unwrap().len();
            let per_host = self.runtime.block_on(store.list("hosts/")).unwrap().len();
            let first = times[0];
            let later = median(times[1..].to_vec());
            let goal = match (grouped, n) {
                (true, 10_000) => Some((1.0, "< 1 s")),
                (true, 100_000) => Some((10.0, "< 10 s")),
                _ => None,
            };
            rows.push(Row::new(
                format!("`cattle publish` to {n} hosts, {design} inboxes"),
                format!(
                    "{later:.2} s (median of {}; first {first:.2} s); {inboxes} group and {per_host} per-host inboxes",
                    runs - 1
                ),
                goal.map_or("-", |(_, text)| text),
                goal.map(|(limit, _)| later < limit),
            ));
        }
        rows
    }

    /// Publishing to `n` hosts, each with its own variables, against the same
    /// config with the values written in: runs alternate, in one MinIO, with
    /// the store's requests counted for one publish of each.
    fn publish_with_vars(&self, n: usize) -> Vec<Row> {
        self.ws.write(
            "vars/app.conf.j2",
            "port {{ port }}\nrole {{ role }}\nhost {{ host }}\n",
        );
        let with_vars = self.ws.write(
            "vars/cattle.toml",
            "[[step]]\nfacility = \"file\"\npath = \"/etc/app.env\"\ncontent = \"PORT={{ port }}\\n\"\n\
             [[step]]\nfacility = \"template\"\npath = \"/etc/app.conf\"\nsource = \"app.conf.j2\"\n",
        );
        self.ws
            .write("plain/app.conf", "port 8080\nrole web\nhost all\n");
        let plain = self.ws.write(
            "plain/cattle.toml",
            "[[step]]\nfacility = \"file\"\npath = \"/etc/app.env\"\ncontent = \"PORT=8080\\n\"\n\
             [[step]]\nfacility = \"file\"\npath = \"/etc/app.conf\"\nsource = \"app.conf\"\n",
        );
        let names: Vec<String> = (0..n).map(|i| format!("host-{i:05}")).collect();
        let plain_hosts = self.hosts_file("vars-plain", &names);
        let vars_lines: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, h)| format!("{h} port={} role=r{}", 10_000 + i, i % 7))
            .collect();
        let vars_hosts = self.hosts_file("vars-each", &vars_lines);
        let runs = [
            (
                "plain",
                plain.parent().unwrap().display().to_string(),
                plain_hosts,
            ),
            (
                "vars",
                with_vars.parent().unwrap().display().to_string(),
                vars_hosts,
            ),
        ];
        let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut requests: BTreeMap<&str, usize> = BTreeMap::new();
        for round in 0..RUNS {
            for (name, config, hosts) in &runs {
                let prefix = format!("vars-{name}");
                let trace = (round == 0).then(|| Trace::start(self.minio, self.ws));
                let started = Instant::now();
                let out = self.cattle(&prefix, &["publish", config, "--hosts", hosts]);
                times
                    .entry(name)
                    .or_default()
                    .push(started.elapsed().as_secs_f64());
                out.assert_success();
                if let Some(trace) = trace {
                    let counted = trace.stop(&format!("/{BUCKET}/{prefix}/"));
                    requests.insert(name, counted.values().sum());
                }
            }
        }
        let (t_plain, t_vars) = (
            median(times["plain"].clone()),
            median(times["vars"].clone()),
        );
        let (r_plain, r_vars) = (requests["plain"], requests["vars"]);
        let time_ratio = t_vars / t_plain;
        let request_ratio = r_vars as f64 / r_plain as f64;
        vec![Row::new(
            format!("`cattle publish` to {n} hosts, each with its own variables"),
            format!(
                "{t_vars:.2} s and {r_vars} requests vs {t_plain:.2} s and {r_plain} without: \
                 {time_ratio:.2}x time, {request_ratio:.2}x requests"
            ),
            "≤ 1.2x the time and requests of the same config without variables",
            Some(time_ratio <= 1.2 && request_ratio <= 1.2),
        )]
    }

    fn status_of_reported(&self, n: usize) -> Vec<Row> {
        let prefix = format!("status-{n}");
        let hosts: Vec<String> = (0..n).map(|i| format!("host-{i:05}")).collect();
        let hosts_file = self.hosts_file(&prefix, &hosts);
        let out = self.cattle(
            &prefix,
            &["publish", &self.noop_config(), "--hosts", &hosts_file],
        );
        out.assert_success();
        let id = out.stdout.trim().to_string();

        // Every host reports DONE, as agents would (written straight to the
        // bucket): the status document, then the DONE marker.
        let store = self.store(&prefix);
        let writing = Instant::now();
        self.runtime.block_on(async {
            let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
            let mut tasks = Vec::new();
            for host in hosts {
                let store = store.clone();
                let permit = semaphore.clone().acquire_owned().await.unwrap();
                let id = id.clone();
                tasks.push(tokio::spawn(async move {
                    let now = cattle_core::now_rfc3339();
                    let status = serde_json::json!({
                        "format": 1, "execution": id, "host": host, "state": "DONE", "steps": 1,
                        "step": {"number": 1, "facility": "command", "description": "command `true` has run", "attempt": 1, "attempts": 3},
                        "started": now, "updated": now, "finished": now, "error": null, "seq": 3,
                        "agent_version": "bench",
                    });
                    let key = format!("executions/{id}/hosts/{host}/status.json");
                    store
                        .put(&key, serde_json::to_vec(&status).unwrap(), Condition::Always)
                        .await
                        .unwrap();
                    let marker = format!("executions/{id}/done/{host}");
                    store.put(&marker, Vec::new(), Condition::Always).await.unwrap();
                    drop(permit);
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
        let put_rate = (2 * n) as f64 / writing.elapsed().as_secs_f64();

        let mut times = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let out = self.cattle(&prefix, &["status", &id]);
            times.push(started.elapsed().as_secs_f64());
            out.assert_success();
            assert!(
                out.stdout.contains(&format!("{n} hosts: {n} DONE")),
                "{out}"
            );
        }
        let secs = median(times);
        // What no `cattle status` can beat: one listing of the DONE markers,
        // with the same client.
        let mut listings = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let listed = self
                .runtime
                .block_on(store.list_entries(&format!("executions/{id}/done/")))
                .unwrap();
            listings.push(started.elapsed().as_secs_f64());
            assert_eq!(listed.len(), n);
        }
        let floor = median(listings);
        let mut rows = vec![Row::new(
            format!("`cattle status` of {n} reported hosts"),
            format!("{secs:.2} s"),
            match n {
                10_000 => "< 2 s",
                100_000 => "< 3 s",
                _ => "-",
            },
            match n {
                10_000 => Some(secs < 2.0),
                100_000 => Some(secs < 3.0),
                _ => None,
            },
        )];
        rows.push(Row::new(
            format!("store floor: one listing of the {n} DONE markers"),
            format!("{floor:.2} s"),
            "-",
            None,
        ));
        if n == 10_000 {
            rows.push(Row::new(
                "store floor: small PUTs to this MinIO, 64 in flight",
                format!(
                    "{put_rate:.0} PUT/s ({:.1} s per 10,000)",
                    10_000.0 / put_rate
                ),
                "-",
                None,
            ));
        }
        rows
    }

    /// One failing host among `n`: a real publish, then the hosts' reports written
    /// straight to the bucket (every host running step 1, then 1 in 10 finishing every
    /// half second: DONE with its marker, one ERROR) while `cattle status --watch` runs
    /// with its output not a terminal; then what the operator runs next. Requests are
    /// the store's (MinIO trace) for the reads of `cattle` only: the bench's own
    /// writes are PUTs, which `cattle status` and `log` never make.
    fn one_failing_host(&self, n: usize) -> Vec<Row> {
        const TRIAGE_RUNS: usize = 3;
        const BATCHES: usize = 10;
        let config = self.ws.write(
            "triage/cattle.toml",
            "[[step]]\nfacility = \"command\"\nargv = [\"true\"]\n\n\
             [[step]]\nfacility = \"command\"\nargv = [\"false\"]\n",
        );
        let config = config.parent().unwrap().display().to_string();
        let hosts: Vec<String> = (0..n).map(|i| format!("host-{i:05}")).collect();
        let failing = hosts[n * 617 / 1000].clone();
        let hosts_file = self.hosts_file("triage", &hosts);
        let mut figures: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut add = |name: &'static str, value: f64| figures.entry(name).or_default().push(value);
        for run in 0..TRIAGE_RUNS {
            let prefix = format!("triage-{run}");
            let started = Instant::now();
            let out = self.cattle(&prefix, &["publish", &config, "--hosts", &hosts_file]);
            add("publish", started.elapsed().as_secs_f64());
            out.assert_success();
            let id = out.stdout.lines().last().unwrap().trim().to_string();
            let store = self.store(&prefix);
            let report = |hosts: &[String], state: &str| {
                let writes: Vec<_> = hosts
                    .iter()
                    .map(|h| {
                        let state = if *h == failing && state == "DONE" {
                            "ERROR"
                        } else {
                            state
                        };
                        (h.clone(), state.to_string())
                    })
                    .collect();
                self.runtime
                    .block_on(write_reports(&store, &id, writes, &failing));
            };
            report(&hosts, "PROGRESS");

            let trace = Trace::start(self.minio, self.ws);
            let mut watch = Cmd::new(cattle_bin())
                .envs(&self.minio.cattle_env())
                .env("CATTLE_STORE", format!("s3://{BUCKET}/{prefix}"))
                .args(["status", &id, "--watch"])
                .spawn();
            // Its first poll shows every running host.
            assert!(wait_until(
                Duration::from_secs(60),
                Duration::from_millis(50),
                || { watch.stdout().lines().count() >= n }
            ));
            for batch in hosts.chunks(n / BATCHES) {
                std::thread::sleep(Duration::from_millis(500));
                report(batch, "DONE");
            }
            let last_report = Instant::now();
            let out = watch
                .wait_timeout(Duration::from_secs(120))
                .expect("the watch ends once every host has finished");
            add("exit", last_report.elapsed().as_secs_f64());
            assert_eq!(out.status, 3, "{out}");
            let entries = trace.entries();
            let reads: Vec<&TraceEntry> =
                entries.iter().filter(|e| e.api != "s3.PutObject").collect();
            let mut polls: Vec<usize> = Vec::new();
            for e in &reads {
                if e.path.ends_with("/manifest.json") {
                    polls.push(0);
                }
                if let Some(poll) = polls.last_mut() {
                    *poll += 1;
                }
            }
            add("first poll", polls[0] as f64);
            add(
                "poll",
                median(polls[1..].iter().map(|&p| p as f64).collect()),
            );
            add(
                "max poll",
                polls[1..].iter().copied().max().unwrap_or(0) as f64,
            );
            add("polls", polls.len() as f64);
            add("watch", reads.len() as f64);
            if run == 0 {
                let summary = out
                    .stdout
                    .lines()
                    .filter(|l| l.contains("ERROR"))
                    .collect::<Vec<_>>();
                eprintln!(
                    "cattle status --watch, its ERROR lines:\n{}",
                    summary.join("\n")
                );
            }

            for (name, args) in [
                ("status", vec!["status", id.as_str()]),
                (
                    "state error",
                    vec!["status", id.as_str(), "--state", "error"],
                ),
                ("log", vec!["log", id.as_str(), "--host", failing.as_str()]),
            ] {
                let trace = Trace::start(self.minio, self.ws);
                let started = Instant::now();
                let out = self.cattle(&prefix, &args);
                add(name, started.elapsed().as_secs_f64());
                let requests = trace.entries().len();
                add(requests_of(name), requests as f64);
                if run == 0 {
                    let head: Vec<&str> = out.stdout.lines().take(4).collect();
                    eprintln!(
                        "cattle {}, exit {}:\n{}",
                        args.join(" "),
                        out.status,
                        head.join("\n")
                    );
                }
            }
        }
        let m = |name: &str| median(figures[name].clone());
        let runs = |name: &str, unit: &str, digits: usize| {
            let values: Vec<String> = figures[name]
                .iter()
                .map(|v| format!("{v:.digits$}"))
                .collect();
            format!("{:.digits$}{unit} (runs: {})", m(name), values.join(", "))
        };
        vec![
            Row::new(
                format!("`cattle publish` to {n} hosts (two steps)"),
                runs("publish", " s", 2),
                "-",
                None,
            ),
            Row::new(
                format!("`cattle status --watch` of {n} running hosts, requests per poll"),
                format!(
                    "first poll {:.0}; then median {:.0}, at most {:.0} while 1 in 10 hosts finished every 0.5 s; {:.0} in all over {:.0} polls",
                    m("first poll"),
                    m("poll"),
                    m("max poll"),
                    m("watch"),
                    m("polls")
                ),
                "far below one per running host",
                Some(m("poll") < n as f64 / 10.0),
            ),
            Row::new(
                "`--watch`: last report to exit",
                runs("exit", " s", 2),
                "≤ one poll (1 s) and the reads",
                Some(m("exit") <= 2.0),
            ),
            Row::new(
                format!("`cattle status ID`, {} DONE and 1 ERROR", n - 1),
                format!("{:.2} s, {:.0} requests", m("status"), m("status requests")),
                "-",
                None,
            ),
            Row::new(
                "`cattle status ID --state error`",
                format!(
                    "{:.2} s, {:.0} requests",
                    m("state error"),
                    m("state error requests")
                ),
                "-",
                None,
            ),
            Row::new(
                "`cattle log ID --host <failing>`",
                format!("{:.2} s, {:.0} requests", m("log"), m("log requests")),
                "-",
                None,
            ),
        ]
    }

    fn agent_idle(&self) -> Vec<Row> {
        let prefix = "idle";
        let host = "idle-host";
        let store = self.store(prefix);
        self.empty_inbox(&store, host);

        let state = self.ws.child("idle-agent");
        let mut agent = Cmd::new(agent_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{prefix}"))
            .args(["--host-id", host, "--interval", "1", "--state-dir"])
            .arg(&state)
            .spawn();
        std::thread::sleep(Duration::from_secs(3));

        const WINDOW: Duration = Duration::from_secs(30);
        let trace = Trace::start(self.minio, self.ws);
        let cpu_before = cpu_ns(agent.id());
        let started = Instant::now();
        let mut idle_rss = 0;
        while started.elapsed() < WINDOW {
            idle_rss = idle_rss.max(rss_kib(agent.id()));
            std::thread::sleep(Duration::from_millis(500));
        }
        let cpu = cpu_ns(agent.id()) - cpu_before;
        // Everything asked of this store: its one agent's polls and leases.
        let requests = trace.stop(&format!("/{BUCKET}/{prefix}/"));
        let gets = requests
            .get(&("s3.GetObject".to_string(), 304))
            .copied()
            .unwrap_or(0);
        let total: usize = requests.values().sum();
        // The lease is renewed with one PUT every `RENEW_POLLS` (10) polls.
        let lease_puts = requests
            .get(&("s3.PutObject".to_string(), 200))
            .copied()
            .unwrap_or(0);
        let others: Vec<String> = requests
            .iter()
            .filter(|((api, code), _)| {
                let poll = api == "s3.GetObject" && *code == 304;
                let lease = api == "s3.PutObject" && *code == 200;
                !(poll || lease)
            })
            .map(|((api, code), n)| format!("{n} {api} {code}"))
            .collect();

        // Then one execution, and back to idle.
        let hosts_file = self.hosts_file("idle", &[host.to_string()]);
        let out = self.cattle(
            prefix,
            &["publish", &self.noop_config(), "--hosts", &hosts_file],
        );
        out.assert_success();
        let id = out.stdout.trim().to_string();
        assert!(wait_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || { self.cattle(prefix, &["status", &id]).success() }
        ));
        std::thread::sleep(Duration::from_secs(5));
        let after_rss = (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(300));
                rss_kib(agent.id())
            })
            .max()
            .unwrap();
        agent.signal(Signal::SIGTERM);
        let _ = agent.wait_timeout(Duration::from_secs(10));

        let polls = gets.max(1) as f64;
        let cpu_ms_per_poll = cpu as f64 / 1e6 / polls;
        let idle_mib = idle_rss as f64 / 1024.0;
        let after_mib = after_rss as f64 / 1024.0;
        vec![
            Row::new(
                "agent idle RSS",
                format!("{idle_mib:.1} MiB"),
                "≤ 8 MB",
                Some(idle_rss as f64 * 1024.0 <= 8e6),
            ),
            Row::new(
                "agent RSS after running an execution",
                format!(
                    "{after_mib:.1} MiB ({:+.2} MiB vs idle)",
                    after_mib - idle_mib
                ),
                "within 1 MB of idle",
                Some((after_rss as f64 - idle_rss as f64) * 1024.0 <= 1e6),
            ),
            Row::new(
                "agent idle CPU",
                format!(
                    "{cpu_ms_per_poll:.2} ms per poll ({gets} polls in {} s)",
                    WINDOW.as_secs()
                ),
                "≤ 1 ms per poll",
                Some(cpu_ms_per_poll <= 1.0),
            ),
            Row::new(
                "requests per idle poll (MinIO trace)",
                if others.is_empty() {
                    format!(
                        "{total} requests: {gets} GetObject inbox answered 304 (1 per poll), \
                         {lease_puts} PutObject lease"
                    )
                } else {
                    format!(
                        "{gets} GetObject 304, {lease_puts} PutObject, plus {}",
                        others.join(", ")
                    )
                },
                "1 conditional GET (304) per poll; ≤ 1 PUT (the lease) per 10 polls; 0 LIST",
                Some(others.is_empty() && gets > 0 && lease_puts <= gets / 10 + 1),
            ),
        ]
    }

    /// The agent's peak RSS while a step prints 1 GB, in 1 KB lines and as one line,
    /// until the execution is delivered (its log bounded to the default 64 MiB).
    fn agent_output(&self) -> Vec<Row> {
        let prefix = "output";
        let mut rows = Vec::new();
        for (what, script) in [
            (
                "1 GB in 1 KB lines",
                "head -c 1000000000 /dev/zero | tr '\\\\0' x | fold -w 1023",
            ),
            (
                "one 1 GB line",
                "head -c 1000000000 /dev/zero | tr '\\\\0' x; echo",
            ),
        ] {
            let mut peaks = Vec::new();
            let mut times = Vec::new();
            for run in 0..OUTPUT_RUNS {
                // A host and a state directory per run: a fresh agent process.
                let host = format!("output-{}-{run}", what.len());
                let config = self.ws.write(
                    format!("{host}/cattle.toml"),
                    format!(
                        "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"{script}\"]\n"
                    ),
                );
                let hosts_file = self.hosts_file(&host, std::slice::from_ref(&host));
                let out = self.cattle(
                    prefix,
                    &[
                        "publish",
                        &config.parent().unwrap().display().to_string(),
                        "--hosts",
                        &hosts_file,
                    ],
                );
                out.assert_success();
                let id = out.stdout.trim().to_string();
                let state = self.ws.child(format!("{host}-state"));
                let mut agent = Cmd::new(agent_bin())
                    .envs(&self.minio.cattle_env())
                    .env("CATTLE_STORE", format!("s3://{BUCKET}/{prefix}"))
                    .args(["--host-id", &host, "--interval", "1", "--state-dir"])
                    .arg(&state)
                    .spawn();
                let started = Instant::now();
                let delivered = state.join("executions").join(&id).join(".delivered");
                assert!(
                    wait_until(Duration::from_secs(900), Duration::from_millis(200), || {
                        delivered.exists()
                    }),
                    "not delivered: {}",
                    agent.stderr()
                );
                times.push(started.elapsed().as_secs_f64());
                peaks.push(peak_rss_kib(agent.id()) as f64 / 1024.0);
                agent.signal(Signal::SIGTERM);
                let _ = agent.wait_timeout(Duration::from_secs(10));
                self.cattle(prefix, &["status", &id]).assert_success();
            }
            let peak = median(peaks.clone());
            let most = peaks.iter().copied().fold(0.0, f64::max);
            rows.push(Row::new(
                format!("agent peak RSS while a step prints {what}"),
                format!(
                    "{peak:.1} MiB (median of {OUTPUT_RUNS}, max {most:.1}); run and delivery {:.1} s",
                    median(times)
                ),
                "< 32 MB",
                Some(most * 1.048_576 < 32.0),
            ));
        }
        rows
    }

    /// Agents start one after another over one interval, so that their polls
    /// are spread over it as a fleet's are, whatever their start costs; then
    /// one publish to all. `grouped`: a new store; otherwise one that older
    /// publishers used, where each host also has its own inbox.
    fn pickup_latency(&self, agents: usize, interval: u64, grouped: bool) -> Row {
        let design = if grouped { "grouped" } else { "per-host" };
        let prefix = format!("pickup-{design}");
        let prefix = prefix.as_str();
        let hosts: Vec<String> = (0..agents).map(|i| format!("p-{i:03}")).collect();
        let store = self.store(prefix);
        if !grouped {
            let counter = serde_json::json!({"format": 2, "version": 1});
            self.runtime
                .block_on(store.put(
                    "publish/version.json",
                    serde_json::to_vec(&counter).unwrap(),
                    Condition::Always,
                ))
                .unwrap();
        }
        for host in &hosts {
            self.empty_inboxes(&store, host, !grouped);
        }
        let stagger = Duration::from_secs(interval) / agents as u32;
        let fleet: Vec<Background> = hosts
            .iter()
            .map(|host| {
                std::thread::sleep(stagger);
                Cmd::new(agent_bin())
                    .envs(&self.minio.cattle_env())
                    .env("CATTLE_STORE", format!("s3://{BUCKET}/{prefix}"))
                    .args([
                        "--host-id",
                        host,
                        "--interval",
                        &interval.to_string(),
                        "--state-dir",
                    ])
                    .arg(self.ws.child(format!("{prefix}/{host}")))
                    .spawn()
            })
            .collect();
        // Let every agent make its first poll and settle into its rhythm.
        std::thread::sleep(Duration::from_secs(interval + 2));

        let hosts_file = self.hosts_file(prefix, &hosts);
        let published_at = SystemTime::now();
        let out = self.cattle(
            prefix,
            &[
                "publish",
                &self.noop_config(),
                "--hosts",
                &hosts_file,
                "--json",
            ],
        );
        out.assert_success();
        let published: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let id = published["id"].as_str().unwrap().to_string();
        assert!(
            wait_until(
                Duration::from_secs(interval * 4 + 30),
                Duration::from_millis(500),
                || { self.cattle(prefix, &["status", &id]).success() }
            ),
            "not every agent finished"
        );
        let latencies: Vec<f64> = hosts
            .iter()
            .map(|host| {
                let key = format!("executions/{id}/hosts/{host}/status.json");
                let object = self
                    .runtime
                    .block_on(store.get(&key, 1 << 20))
                    .unwrap()
                    .unwrap();
                let status: serde_json::Value = serde_json::from_slice(&object.bytes).unwrap();
                let started =
                    humantime::parse_rfc3339(status["started"].as_str().unwrap()).unwrap();
                started
                    .duration_since(published_at)
                    .unwrap_or_default()
                    .as_secs_f64()
            })
            .collect();
        drop(fleet);
        let (p50, p99, max) = (
            percentile(latencies.clone(), 50.0),
            percentile(latencies.clone(), 99.0),
            percentile(latencies, 100.0),
        );
        Row::new(
            format!(
                "pickup latency, publish → agent starts ({agents} agents, interval {interval} s, {design} inboxes)"
            ),
            format!("p50 {p50:.2} s, p99 {p99:.2} s, max {max:.2} s"),
            format!("p99 ≤ interval + 2 s ({} s)", interval + 2),
            Some(p99 <= (interval + 2) as f64),
        )
    }
}

/// `mc admin trace` of the bench MinIO, collecting one JSON line per request.
struct Trace {
    child: Child,
    out: PathBuf,
}

impl Trace {
    fn start(minio: &Minio, ws: &Workspace) -> Trace {
        let out = ws.child("trace.jsonl");
        let mc = mc_bin();
        let endpoint = minio.endpoint().replace("http://", "");
        let child = Command::new(&mc)
            .args(["admin", "trace", "--json", "bench"])
            .env(
                "MC_HOST_bench",
                format!(
                    "http://{}:{}@{endpoint}",
                    minio.access_key(),
                    minio.secret_key()
                ),
            )
            .env("MC_CONFIG_DIR", ws.child("mc"))
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run scripts/install-minio.sh",
                    mc.display()
                )
            });
        // mc subscribes asynchronously; give it time before the measured window.
        std::thread::sleep(Duration::from_secs(2));
        Trace { child, out }
    }

    /// Stop tracing; count requests whose path contains `path_part`, by API and status.
    fn stop(self, path_part: &str) -> BTreeMap<(String, u16), usize> {
        let mut counts = BTreeMap::new();
        for entry in self.entries() {
            if entry.path.contains(path_part) {
                *counts.entry((entry.api, entry.code)).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Stop tracing; every request traced, in the order MinIO logged them.
    fn entries(mut self) -> Vec<TraceEntry> {
        std::thread::sleep(Duration::from_millis(500));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let mut entries = Vec::new();
        for line in std::fs::read_to_string(&self.out).unwrap().lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            entries.push(TraceEntry {
                api: entry["api"].as_str().unwrap_or("?").to_string(),
                path: entry["path"].as_str().unwrap_or("").to_string(),
                code: entry["respInfo"]["statusCode"]
                    .as_u64()
                    .or_else(|| entry["statusCode"].as_u64())
                    .unwrap_or(0) as u16,
            });
        }
        entries
    }
}

/// One request as `mc admin trace` shows it.
struct TraceEntry {
    api: String,
    path: String,
    code: u16,
}

/// The name under which the requests of figure `name` are kept.
fn requests_of(name: &str) -> &'static str {
    match name {
        "status" => "status requests",
        "state error" => "state error requests",
        _ => "log requests",
    }
}

/// Each `(host, state)` reports as its agent would, 64 writes in flight: its status
/// document at step 1 (PROGRESS) or 2 (finished), then for DONE its marker; the
/// `failing` host's ERROR comes with its log.
async fn write_reports(store: &Store, id: &str, writes: Vec<(String, String)>, failing: &str) {
    let log =
        b"step 1/2 command `true`: unchanged\nstep 2/2 command `false`: attempt 3 of 3 failed\n\
                `false` exited with status 1\n"
            .to_vec();
    let mut running = tokio::task::JoinSet::new();
    for (host, state) in writes {
        while running.len() >= 64 {
            running.join_next().await.unwrap().unwrap();
        }
        let (store, id, log) = (store.clone(), id.to_string(), log.clone());
        let with_log = host == failing && state == "ERROR";
        running.spawn(async move {
            let now = cattle_core::now_rfc3339();
            let step = if state == "PROGRESS" { 1 } else { 2 };
            let error = (state == "ERROR").then_some("step 2 failed: `false` exited with status 1");
            let results: &[&str] = match state.as_str() {
                "PROGRESS" => &[],
                "ERROR" => &["unchanged", "failed"],
                _ => &["unchanged", "changed"],
            };
            let status = serde_json::json!({
                "format": 1, "execution": id, "host": host, "state": state, "steps": 2,
                "step": {"number": step, "facility": "command",
                         "description": format!("command `{}` has run", ["true", "false"][step - 1]),
                         "attempt": if error.is_some() { 3 } else { 1 }, "attempts": 3},
                "started": now, "updated": now,
                "finished": if state == "PROGRESS" { None } else { Some(&now) },
                "error": error, "seq": step + 1, "agent_version": "bench", "results": results,
                "log": if with_log { Some(serde_json::json!({"bytes": log.len(), "parts": 1, "dropped": 0})) } else { None },
            });
            if with_log {
                let part = format!("executions/{id}/hosts/{host}/log/00000000");
                store.put(&part, log, Condition::Always).await.unwrap();
            }
            let key = format!("executions/{id}/hosts/{host}/status.json");
            let bytes = serde_json::to_vec(&status).unwrap();
            store.put(&key, bytes, Condition::Always).await.unwrap();
            if state == "DONE" {
                let marker = format!("executions/{id}/done/{host}");
                store.put(&marker, Vec::new(), Condition::Always).await.unwrap();
            }
        });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }
}

fn mc_bin() -> PathBuf {
    cattle_e2e::minio_bin().with_file_name("mc")
}

/// Resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Peak resident set size of process `pid` so far (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of all threads of process `pid`, in nanoseconds (from schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

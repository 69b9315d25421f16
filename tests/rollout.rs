//! Rollouts enforced by the agents alone, end to end: real agents (50 of
//! them, polling every second) against a real MinIO, with nothing else
//! running between `cattle publish` and the hosts. Waves start in order and
//! only once the one before has ended; a failing canary, or failures beyond
//! the budget, halt every host that has not started (HALTED, with the
//! reason); pause and resume; a start time; and a forged gate or marker
//! opens nothing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use cattle_e2e::{
    Background, Bucket, Cmd, Minio, Output, Proxy, Workspace, agent_bin, cattle_bin, wait_until,
};
use serde_json::Value;

const BUCKET: &str = "cattle";
const PREFIX: &str = "rollout";

struct Site {
    minio: Minio,
    ws: Workspace,
    bucket: Bucket,
    hosts: Vec<String>,
    _agents: Vec<Background>,
}

impl Site {
    /// MinIO and `n` agents `h01`…, polling every second.
    fn new(n: usize) -> Site {
        let mut site = Site::without_agents(n);
        site._agents = site.hosts.iter().map(|h| site.agent(h).spawn()).collect();
        site
    }

    /// MinIO and `n` hosts `h01`…, without agents.
    fn without_agents(n: usize) -> Site {
        let minio = Minio::start();
        let bucket = Bucket::open(&minio, BUCKET, &format!("{PREFIX}/"));
        bucket.create();
        Site {
            minio,
            ws: Workspace::new(),
            bucket,
            hosts: (1..=n).map(|i| format!("h{i:02}")).collect(),
            _agents: Vec::new(),
        }
    }

    /// The agent of `host`, polling every second.
    fn agent(&self, host: &str) -> Cmd {
        self.agent_args(Cmd::new(agent_bin()), host)
    }

    /// `cmd` (the agent, or a program that starts it) with the agent's
    /// settings for `host` added.
    fn agent_args(&self, cmd: Cmd, host: &str) -> Cmd {
        cmd.envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .env("CATTLE_LOG", "error")
            .args(["--host-id", host, "--interval", "1", "--state-dir"])
            .arg(self.ws.child(format!("agents/{host}")))
    }

    fn cattle(&self, args: &[&str]) -> Output {
        Cmd::new(cattle_bin())
            .envs(&self.minio.cattle_env())
            .env("CATTLE_STORE", format!("s3://{BUCKET}/{PREFIX}"))
            .env("CATTLE_LOG", "error")
            .args(args)
            .run()
    }

    /// Publish a one-step config whose step runs `script` (hosts whose ID is
    /// in `failing` exit 1 instead), with `flags`; the execution ID.
    fn publish(&self, name: &str, script: &str, failing: &[&str], flags: &[&str]) -> String {
        let fail = if failing.is_empty() {
            String::new()
        } else {
            format!(
                "case $CATTLE_HOST_ID in {}) echo failing; exit 1;; esac; ",
                failing.join("|")
            )
        };
        self.ws.write(
            format!("{name}/cattle.toml"),
            format!(
                "[[step]]\nfacility = \"command\"\nargv = [\"sh\", \"-c\", \"{fail}{script}\"]\nattempts = 1\n"
            ),
        );
        let hosts = self
            .ws
            .write(format!("{name}.hosts"), self.hosts.join("\n") + "\n");
        let dir = self.ws.child(name).display().to_string();
        let mut args = vec!["publish", &dir, "--hosts"];
        let hosts = hosts.display().to_string();
        args.push(&hosts);
        args.extend_from_slice(flags);
        let out = self.cattle(&args);
        out.assert_success();
        out.stdout.lines().last().unwrap().trim().to_string()
    }

    fn status(&self, id: &str) -> Value {
        let out = self.cattle(&["status", id, "--json", "--steps"]);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Each host's status document, by host.
    fn documents(&self, id: &str) -> BTreeMap<String, Value> {
        self.hosts
            .iter()
            .filter_map(|h| {
                let bytes = self
                    .bucket
                    .get(&format!("executions/{id}/hosts/{h}/status.json"))?;
                Some((h.clone(), serde_json::from_slice(&bytes).unwrap()))
            })
            .collect()
    }

    /// Wait until no host is unfinished (at most `secs`); the statuses.
    #[track_caller]
    fn settle(&self, id: &str, secs: u64) -> BTreeMap<String, Value> {
        let out = self.cattle(&["status", id, "--wait", "--timeout", &secs.to_string()]);
        assert!(
            out.status == 0 || out.status == 3,
            "not settled within {secs} s: {out}"
        );
        self.documents(id)
    }
}

/// Wait (at most `secs`) until `cond` holds of the hosts' status documents.
#[track_caller]
fn await_docs(site: &Site, id: &str, secs: u64, cond: impl Fn(&BTreeMap<String, Value>) -> bool) {
    let mut last = BTreeMap::new();
    let held = wait_until(
        Duration::from_secs(secs),
        Duration::from_millis(300),
        || {
            last = site.documents(id);
            cond(&last)
        },
    );
    assert!(held, "not within {secs} s: {last:#?}");
}

fn state(doc: &Value) -> &str {
    doc["state"].as_str().unwrap()
}

fn time(doc: &Value, field: &str) -> SystemTime {
    humantime::parse_rfc3339(doc[field].as_str().unwrap()).unwrap()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn fifty_agents_roll_out_in_waves_and_a_failing_canary_or_a_spent_budget_halts_the_rest() {
    let site = Site::new(50);
    // Waves end at hosts 1, 5 (10 %), 25 (50 %) and 50.
    let id = site.publish("waves", "sleep 1", &[], &["--waves", "1,10%,50%,100%"]);
    let docs = site.settle(&id, 180);
    let waves = [0..1, 1..5, 5..25, 25..50];
    let hosts = &site.hosts;
    let mut latencies = Vec::new();
    for (k, wave) in waves.iter().enumerate() {
        for i in wave.clone() {
            assert_eq!(state(&docs[&hosts[i]]), "DONE", "{}", docs[&hosts[i]]);
        }
        if k == 0 {
            continue;
        }
        // Every host of a wave started after every host of the wave before
        // it had finished (one clock: every agent runs on this machine).
        let ended = waves[k - 1]
            .clone()
            .map(|i| time(&docs[&hosts[i]], "finished"))
            .max()
            .unwrap();
        for i in wave.clone() {
            let started = time(&docs[&hosts[i]], "started");
            let after = started.duration_since(ended).unwrap_or_else(|_| {
                panic!(
                    "{} of wave {} started before wave {k} ended",
                    hosts[i],
                    k + 1
                )
            });
            latencies.push(after);
        }
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    eprintln!(
        "from a wave's last host finishing to each host of the next starting, over {} hosts: \
         median {:.2} s, max {:.2} s (poll interval 1 s)",
        latencies.len(),
        secs(median),
        secs(max)
    );
    // Acted on within two poll intervals, with room for a loaded machine.
    assert!(max < Duration::from_secs(8), "max {max:?}");

    let rollout = site.cattle(&["rollout", "status", &id]);
    assert_eq!(rollout.status, 0, "{rollout}");
    assert!(
        rollout.stdout.contains("4 waves, 0 of 0 errors allowed"),
        "{rollout}"
    );
    assert_eq!(rollout.stdout.matches(" ended at ").count(), 4, "{rollout}");

    // A failing canary halts everything after it: with --waves, no failure is allowed.
    let id = site.publish("canary", "true", &["h01"], &["--waves", "1,100%"]);
    let docs = site.settle(&id, 60);
    assert_eq!(state(&docs["h01"]), "ERROR");
    for h in &hosts[1..] {
        assert_eq!(state(&docs[h]), "HALTED", "{h}: {}", docs[h]);
        let error = docs[h]["error"].as_str().unwrap();
        assert!(
            error.contains("error budget is spent: 1 host failed (h01), none may"),
            "{error}"
        );
    }
    let status = site.cattle(&["status", &id]);
    assert_eq!(status.status, 3, "{status}");
    assert!(status.stdout.contains("HALTED"), "{status}");
    assert!(
        status.stdout.contains("50 hosts: 1 ERROR, 49 HALTED")
            || status.stdout.contains("49 HALTED"),
        "{status}"
    );
    let json = site.status(&id);
    assert_eq!(json["summary"]["states"]["halted"], 49, "{json:#}");

    // A budget of 2 with 3 bad hosts in wave 2 halts wave 3; wave 2's others run.
    let id = site.publish(
        "budget",
        "true",
        &["h03", "h05", "h07"],
        &["--waves", "1,10,100%", "--max-errors", "2"],
    );
    let docs = site.settle(&id, 60);
    for (i, h) in hosts.iter().enumerate() {
        let expected: &[&str] = match i {
            0 => &["DONE"],
            2 | 4 | 6 => &["ERROR"],
            // Wave 2's others run, unless they had not started yet when the
            // third failure was reported (then they halt, as they should).
            1..10 => &["DONE", "HALTED"],
            _ => &["HALTED"],
        };
        assert!(expected.contains(&state(&docs[h])), "{h}: {}", docs[h]);
    }
    let mut not_done: Vec<&str> = hosts
        .iter()
        .filter(|h| state(&docs[h.as_str()]) != "DONE")
        .map(String::as_str)
        .collect();
    not_done.sort_unstable();
    let rollout = site.cattle(&["rollout", "status", &id, "--json"]);
    assert_eq!(rollout.status, 3, "{rollout}");
    let r: Value = serde_json::from_str(&rollout.stdout).unwrap();
    assert_eq!(r["schema"], "cattle.rollout.v1");
    assert_eq!(r["failed"], 3);
    assert_eq!(r["halted"], true);
    assert_eq!(r["waves"][2]["halted"], 40, "{r:#}");
    assert_eq!(r["waves"][2]["state"], "halted", "{r:#}");

    // Overshoot: when the whole of wave 2 fails, the hosts of it that had
    // started fail too (at most the wave beyond the budget); a host of it that
    // had not, and every host of wave 3, halts.
    let wave2: Vec<&str> = hosts[1..10].iter().map(String::as_str).collect();
    let over = site.publish(
        "overshoot",
        "sleep 1",
        &wave2,
        &["--waves", "1,10,100%", "--max-errors", "2"],
    );
    let docs = site.settle(&over, 60);
    let failed = wave2
        .iter()
        .filter(|h| state(&docs[**h]) == "ERROR")
        .count();
    for h in &wave2 {
        assert!(
            matches!(state(&docs[*h]), "ERROR" | "HALTED"),
            "{h}: {}",
            docs[*h]
        );
    }
    for h in &hosts[10..] {
        assert_eq!(state(&docs[h]), "HALTED", "{h}: {}", docs[h]);
    }
    assert!((3..=9).contains(&failed), "{failed} failed");
    eprintln!(
        "overshoot: budget 2, wave 2 of 9 hosts all bad: {failed} failed ({} beyond the \
         budget; bound: the wave's 9 - 2 = 7), 0 of wave 3's 40 started",
        failed - 2
    );

    // `cattle retry` sends the halted and failed hosts the same bundle, at once.
    let retry = site.cattle(&["retry", &id, "--json"]);
    retry.assert_success();
    let retried: Value = serde_json::from_str(&retry.stdout).unwrap();
    let mut retried_hosts: Vec<&str> = retried["retried_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    retried_hosts.sort_unstable();
    // The 3 failed and the 40 of wave 3, plus any of wave 2 that halted.
    assert!(not_done.len() >= 43, "{not_done:?}");
    assert_eq!(retried_hosts, not_done, "{retried:#}");
}

/// The cost of waiting: one conditional GET of the gate per poll, the
/// lease renewed every 10 polls as when idle; when an earlier wave than the
/// one before it ends, the new gate says so and the host does not look.
#[test]
fn a_host_waiting_for_its_wave_reads_one_small_object_per_poll() {
    let mut site = Site::without_agents(3);
    // h01 (wave 1) takes 5 s; h02 (wave 2) has no agent, so h03 (wave 3)
    // waits for ever, and sees wave 1 end while it is counted.
    let id = site.publish(
        "wait",
        "if [ $CATTLE_HOST_ID = h01 ]; then sleep 5; fi",
        &[],
        &["--waves", "1,2,3"],
    );
    let proxy = Proxy::to(site.minio.addr()).start();
    let mut agent = site
        .agent("h03")
        .envs(&proxy.env(&site.minio.cattle_env()))
        .spawn();
    await_docs(&site, &id, 20, |docs| {
        docs.get("h03").is_some_and(|d| state(d) == "WAITING")
    });
    let before = proxy.requests().len();
    site._agents.push(site.agent("h01").spawn());
    std::thread::sleep(Duration::from_secs(40));
    let requests: Vec<String> = proxy.requests()[before..].to_vec();
    let _ = agent.terminate(Duration::from_secs(10));
    let gate: Value =
        serde_json::from_slice(&site.bucket.get(&format!("executions/{id}/gate")).unwrap())
            .unwrap();
    assert_eq!(gate["wave_ended"], 0, "wave 1 ended meanwhile: {gate}");
    assert_eq!(site.documents(&id)["h01"]["state"], "DONE");
    let count = |method: &str, suffix: &str| {
        requests
            .iter()
            .filter(|r| {
                r.starts_with(&format!("{method} "))
                    && r.split('?').next().unwrap().ends_with(suffix)
            })
            .count()
    };
    let polls = count("GET", &format!("/executions/{id}/gate"));
    let lease = count("PUT", "/hosts/h03/agent.json");
    let others = requests.len() - polls - lease;
    eprintln!(
        "a waiting host, {polls} polls in 40 s while an earlier wave ended: {} requests \
         ({polls} conditional GETs of the gate, {lease} lease PUTs, {others} others): {:.2} \
         per poll",
        requests.len(),
        requests.len() as f64 / polls as f64
    );
    // 40 s at 1 s ± 10 %.
    assert!((30..=48).contains(&polls), "{polls} polls: {requests:#?}");
    assert!(
        lease * 10 <= polls + 10,
        "{lease} lease PUTs: {requests:#?}"
    );
    assert_eq!(others, 0, "no inbox, manifest or listing: {requests:#?}");
}

#[test]
fn a_paused_rollout_holds_hosts_that_have_not_started_until_it_is_resumed() {
    let site = Site::new(4);
    let id = site.publish("pause", "sleep 3", &[], &["--waves", "1,100%"]);
    await_docs(&site, &id, 20, |docs| {
        docs.get("h01").is_some_and(|d| state(d) == "PROGRESS")
    });
    let pause = site.cattle(&["rollout", "pause", &id]);
    pause.assert_success();
    // The canary had started before the pause: it goes on. The others wait.
    await_docs(&site, &id, 30, |docs| {
        docs.get("h01").is_some_and(|d| state(d) == "DONE")
            && ["h02", "h03", "h04"].iter().all(|h| {
                docs.get(*h).is_some_and(|d| {
                    state(d) == "WAITING"
                        && d["waiting"]
                            .as_str()
                            .unwrap()
                            .contains("the rollout is paused")
                })
            })
    });
    // Several polls later nothing has started.
    std::thread::sleep(Duration::from_secs(4));
    let docs = site.documents(&id);
    for h in ["h02", "h03", "h04"] {
        assert_eq!(state(&docs[h]), "WAITING", "{}", docs[h]);
    }
    let rollout = site.cattle(&["rollout", "status", &id]);
    assert!(rollout.stdout.contains("paused: by "), "{rollout}");
    assert!(
        rollout.stdout.contains("next: the rollout is paused"),
        "{rollout}"
    );
    let watch_line = site.cattle(&["status", &id]);
    assert!(watch_line.stdout.contains("WAITING"), "{watch_line}");
    // A bucket writer deleting the pause does not resume the hosts that saw it.
    site.bucket.delete(&format!("executions/{id}/rollout.json"));
    site.bucket
        .put(&format!("executions/{id}/gate"), b"{}".to_vec());
    await_docs(&site, &id, 20, |docs| {
        ["h02", "h03", "h04"].iter().all(|h| {
            docs.get(*h).is_some_and(|d| {
                state(d) == "WAITING" && d["waiting"].as_str().unwrap().contains("was removed")
            })
        })
    });

    site.cattle(&["rollout", "resume", &id]).assert_success();
    let docs = site.settle(&id, 60);
    for h in &site.hosts {
        assert_eq!(state(&docs[h]), "DONE", "{h}");
    }
}

/// `daily HH:MM-HH:MM UTC` from `from` to `to` hours from now.
fn window(from: i64, to: i64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |hours: i64| {
        let minutes = ((now / 60 + hours * 60) % (24 * 60) + 24 * 60) % (24 * 60);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    };
    format!("daily {}-{} UTC", at(from), at(to))
}

#[test]
fn hosts_start_inside_their_window_or_after_their_start_time_and_wait_otherwise() {
    let site = Site::new(3);
    // A window open now, and one that opens in two hours.
    let open = site.publish("open", "true", &[], &["--window", &window(-1, 1)]);
    let docs = site.settle(&open, 60);
    assert!(docs.values().all(|d| state(d) == "DONE"), "{docs:#?}");
    let closed = window(2, 3);
    let id = site.publish("closed", "true", &[], &["--window", &closed]);
    await_docs(&site, &id, 20, |docs| {
        docs.len() == 3
            && docs.values().all(|d| {
                state(d) == "WAITING"
                    && d["waiting"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("waiting for the window {closed} (opens in 2h"))
            })
    });
    let status = site.cattle(&["status", &id]);
    assert!(status.stdout.contains("3 WAITING"), "{status}");
    // It holds up what is published after it, which the operator cancels.
    site.cattle(&["cancel", &id]).assert_success();
    let docs = site.settle(&id, 30);
    assert!(docs.values().all(|d| state(d) == "CANCELLED"), "{docs:#?}");

    // A start time in the past is refused before anything is uploaded.
    let past = site.cattle(&[
        "publish",
        &site.ws.child("open").display().to_string(),
        "--hosts",
        &site.ws.child("open.hosts").display().to_string(),
        "--not-before",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(past.status, 1, "{past}");
    assert!(past.stderr.contains("it is in the past"), "{past}");

    let asked = SystemTime::now();
    let id = site.publish("future", "true", &[], &["--not-before", "8s"]);
    await_docs(&site, &id, 6, |docs| {
        docs.len() == 3
            && docs.values().all(|d| {
                state(d) == "WAITING" && d["waiting"].as_str().unwrap().contains("not before")
            })
    });
    let docs = site.settle(&id, 60);
    for (h, d) in &docs {
        assert_eq!(state(d), "DONE", "{h}");
        let started = time(d, "started");
        assert!(
            started >= asked + Duration::from_secs(7),
            "{h} started {:?} after the publish",
            started.duration_since(asked)
        );
    }
}

/// Hosts whose clocks are five minutes behind and ahead of the store's
/// start at the store's time: they judge the start time by the store's clock
/// (as its answers date it), not by their own.
#[test]
fn a_start_time_holds_by_the_stores_clock_on_hosts_whose_clocks_are_off() {
    let mut site = Site::without_agents(2);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let faketime = std::env::split_paths(&path)
        .map(|dir| dir.join("faketime"))
        .find(|p| p.is_file())
        .expect("faketime not found: install it with `apt-get install -y faketime` (scripts/test.sh does)");
    for (host, skew) in [("h01", "-5m"), ("h02", "+5m")] {
        // The wrapper forks the agent; the harness kills both when the test ends.
        let skewed = Cmd::new(&faketime)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .args(["-m", "-f", skew])
            .arg(agent_bin());
        site._agents.push(site.agent_args(skewed, host).spawn());
    }
    let asked = std::time::Instant::now();
    let id = site.publish("skewed", "true", &[], &["--not-before", "12s"]);
    let mut started = BTreeMap::new();
    let all = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        for (host, doc) in site.documents(&id) {
            if state(&doc) != "WAITING" {
                started.entry(host).or_insert_with(|| asked.elapsed());
            }
        }
        started.len() == 2
    });
    assert!(all, "not both started: {started:?}");
    for (host, after) in &started {
        eprintln!("{host} started {after:?} after a publish --not-before 12s");
        // The time is kept to the second; the store's clock is read to the second.
        assert!(
            *after >= Duration::from_secs(10),
            "{host} started early: {after:?}"
        );
        assert!(
            *after < Duration::from_secs(30),
            "{host} started late: {after:?}"
        );
    }
}

#[test]
fn a_forged_gate_or_forged_markers_open_nothing() {
    let site = Site::new(3);
    // The canary takes long; the others must wait for it whatever the bucket says.
    let id = site.publish("forged", "sleep 8", &[], &["--waves", "1,100%"]);
    await_docs(&site, &id, 20, |docs| {
        docs.get("h01").is_some_and(|d| state(d) == "PROGRESS")
    });
    // A bucket writer without the key: markers of hosts not in the
    // execution, of the wrong shape, another execution's; the gate, often.
    for key in [
        "ended/done/h99",
        "ended/finished/h01",
        "ended/done/h01/x",
        "done/h01",
    ] {
        site.bucket
            .put(&format!("executions/{id}/{key}"), Vec::new());
    }
    let other = uuid::Uuid::now_v7();
    site.bucket
        .put(&format!("executions/{other}/ended/done/h01"), Vec::new());
    site.bucket
        .put(&format!("executions/{id}/gate"), vec![b'x'; 100 * 1024]);
    std::thread::sleep(Duration::from_millis(1500));
    for n in 0..4 {
        site.bucket.put(
            &format!("executions/{id}/gate"),
            format!("{{\"open\": {n}}}").into_bytes(),
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    let docs = site.documents(&id);
    assert_eq!(state(&docs["h01"]), "PROGRESS", "{}", docs["h01"]);
    for h in ["h02", "h03"] {
        assert_eq!(state(&docs[h]), "WAITING", "{h}: {}", docs[h]);
    }
    // A control not signed by the key holds the rollout.
    let unsigned = serde_json::json!({
        "format": 2,
        "payload": serde_json::json!({
            "format": 2, "execution": id, "paused": false, "seq": u64::MAX,
            "by": "intruder", "at": "2026-01-01T00:00:00Z"
        }).to_string(),
        "signatures": []
    });
    site.bucket.put(
        &format!("executions/{id}/rollout.json"),
        serde_json::to_vec(&unsigned).unwrap(),
    );
    site.bucket
        .put(&format!("executions/{id}/gate"), b"{}".to_vec());
    await_docs(&site, &id, 30, |docs| {
        state(&docs["h01"]) == "DONE"
            && ["h02", "h03"].iter().all(|h| {
                let d = &docs[*h];
                state(d) == "WAITING"
                    && d["waiting"]
                        .as_str()
                        .unwrap()
                        .contains("not signed by a trusted key")
            })
    });
    // The operator's own resume, signed, lets them go.
    site.cattle(&["rollout", "resume", &id]).assert_success();
    let docs = site.settle(&id, 60);
    for h in ["h02", "h03"] {
        assert_eq!(state(&docs[h]), "DONE", "{h}");
        assert!(time(&docs[h], "started") >= time(&docs["h01"], "finished"));
    }
}

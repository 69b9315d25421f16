//! docs/air-gapped.md, run as it is written: every `sh` block of the page, in order, on the
//! machine its first line names (`# on the store machine`, …), from a clean state: a MinIO
//! installed and started from scratch by the page's commands, its users and policies made
//! with `mc`, the packages built from vendored crates with no network, installed with apt,
//! and the status of a first execution read back.
//!
//! The machines: the connected machine is this one, in a copy of the source tree; the build
//! machine is this one too, in a network namespace with no interface but loopback (down),
//! with its own home directory; the store, the publisher's machine and the host are three
//! containers whose PID 1 is systemd. `$TRANSFER` is one directory of this machine, bound
//! into each container at the same path; `$STORE_ADDRESS` is a free port on loopback, which
//! the containers share with this machine.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cattle_e2e::{Cmd, Container, Output, Workspace};

/// The page this test follows.
const PAGE: &str = "docs/air-gapped.md";
/// The host ID the page's commands are run with.
const HOST_ID: &str = "web-1.example.internal";
/// The build machine's home directory and target directory, kept between runs.
const BUILD_CACHE: &str = "/var/cache/cattle-tests/air-gapped";
/// How long one block may take: the build block does a release build.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The build machine's release profile, overriding the workspace's fat LTO and single
/// codegen unit: this test's first run on two cores took 316 s instead of 371 s.
const FAST_RELEASE: [(&str, &str); 2] = [
    ("CARGO_PROFILE_RELEASE_LTO", "off"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A shell block of the page, and where it runs.
#[derive(Debug)]
struct Block {
    machine: Machine,
    script: String,
    /// Its first line in the page, for messages.
    line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Machine {
    /// The settings every other block uses.
    Every,
    Connected,
    Build,
    Store,
    Publisher,
    Host,
}

/// The page's `sh` blocks in order. Each must start with `# on …` naming its machine.
fn blocks(page: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = page.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim_end() != "```sh" {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim_end() != "```")
            .collect();
        let first = body.first().copied().unwrap_or_default();
        let machine = [
            ("# on every machine", Machine::Every),
            ("# on the connected machine", Machine::Connected),
            ("# on the build machine", Machine::Build),
            ("# on the store machine", Machine::Store),
            ("# on the publisher's machine", Machine::Publisher),
            ("# on each host", Machine::Host),
        ]
        .into_iter()
        .find_map(|(prefix, machine)| first.starts_with(prefix).then_some(machine))
        .unwrap_or_else(|| {
            panic!(
                "{PAGE}:{}: a sh block must start with `# on <machine>`, not {first:?}",
                n + 2
            )
        });
        blocks.push(Block {
            machine,
            script: body.join("\n"),
            line: n + 2,
        });
    }
    blocks
}

/// The page's machines, set up for it.
struct Site {
    ws: Workspace,
    /// `$TRANSFER` and `$STORE_ADDRESS`.
    transfer: PathBuf,
    store_address: String,
    store: Container,
    publisher: Container,
    host: Container,
}

impl Site {
    fn new() -> Site {
        let ws = Workspace::new();
        let transfer = ws.child("transfer");
        fs::create_dir_all(&transfer).unwrap();
        let boot = || Container::builder().bind(&transfer, &transfer).boot();
        // A free port: the kernel's choice, released for MinIO to take.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Site {
            store_address: format!("127.0.0.1:{port}"),
            store: boot(),
            publisher: boot(),
            host: boot(),
            transfer,
            ws,
        }
    }

    /// The settings of the page's first block, with this site's values.
    fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("TRANSFER".into(), self.transfer.display().to_string()),
            ("STORE_ADDRESS".into(), self.store_address.clone()),
            ("HOST_ID".into(), HOST_ID.into()),
        ]
    }

    /// Runs `block` on its machine; panics, with its output, if it fails.
    fn run(&self, block: &Block) -> Output {
        let out = match block.machine {
            Machine::Every => {
                let names: Vec<&str> = block
                    .script
                    .lines()
                    .filter_map(|l| l.strip_prefix("export "))
                    .filter_map(|l| l.split_once('=').map(|(name, _)| name))
                    .collect();
                let ours: Vec<String> = self.vars().into_iter().map(|(k, _)| k).collect();
                assert_eq!(
                    names, ours,
                    "{PAGE}:{}: the settings the test gives",
                    block.line
                );
                return Cmd::new("true").run();
            }
            Machine::Connected => self.connected(&block.script),
            Machine::Build => self.build(&block.script),
            Machine::Store => in_container(&self.store, &block.script, &self.vars()),
            Machine::Publisher => in_container(&self.publisher, &block.script, &self.vars()),
            Machine::Host => in_container(&self.host, &block.script, &self.vars()),
        };
        if !out.success() {
            let journal = match block.machine {
                Machine::Store => journal(&self.store),
                Machine::Publisher => journal(&self.publisher),
                Machine::Host => journal(&self.host),
                _ => String::new(),
            };
            panic!(
                "{PAGE}:{}: the block on {:?} failed:\n{}\n--- its output ---\n{out}\n{journal}",
                block.line, block.machine, block.script
            );
        }
        out
    }

    /// On this machine, in a copy of the source tree as git sees it (no build output).
    fn connected(&self, script: &str) -> Output {
        let src = self.ws.child("src");
        fs::create_dir_all(&src).unwrap();
        Cmd::new("sh")
            .args([
                "-c",
                "git ls-files -z -c -o --exclude-standard | tar --null -T - -cf - | tar -xf - -C \"$1\"",
                "sh",
            ])
            .arg(&src)
            .current_dir(repo())
            .run()
            .assert_success();
        Cmd::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .envs(&self.vars())
            .current_dir(&src)
            .timeout(BLOCK_TIMEOUT)
            .run()
    }

    /// On this machine with no network (a network namespace of its own), in a home
    /// directory of its own, emptied first. The Rust toolchain is this machine's (its
    /// CARGO_HOME and RUSTUP_HOME named, as the home directory moved).
    ///
    /// Cargo compiles vendored crates again when their path changes, so the home directory
    /// is always the same one and the release build's target directory is kept beside it
    /// (under [`BUILD_CACHE`]): the first run compiles everything, later ones only what
    /// changed. What this build must show is that it needs no network, not how the
    /// shipped binaries are optimized, so it is made without link-time optimization and
    /// with 16 codegen units ([`FAST_RELEASE`]).
    fn build(&self, script: &str) -> Output {
        let home = Path::new(BUILD_CACHE).join("home");
        if home.exists() {
            fs::remove_dir_all(&home).unwrap();
        }
        fs::create_dir_all(&home).unwrap();
        let user_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let cargo_home = std::env::var("CARGO_HOME").unwrap_or(format!("{user_home}/.cargo"));
        let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or(format!("{user_home}/.rustup"));
        let target = Path::new(BUILD_CACHE).join("target");
        let path = format!(
            "{}/.cargo/bin:{cargo_home}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            home.display()
        );
        let mut vars = self.vars();
        vars.extend(FAST_RELEASE.map(|(k, v)| (k.to_string(), v.to_string())));
        Cmd::new("unshare")
            .args(["--net", "--", "bash", "-euo", "pipefail", "-c", script])
            .env_clear()
            .envs(&vars)
            .env("HOME", &home)
            .env("PATH", path)
            .env("CARGO_HOME", cargo_home)
            .env("RUSTUP_HOME", rustup_home)
            .env("CARGO_TARGET_DIR", target)
            .current_dir(&home)
            .timeout(BLOCK_TIMEOUT)
            .run()
    }
}

/// The end of `c`'s journal, for a failure's message.
fn journal(c: &Container) -> String {
    let out = c.exec(&["journalctl", "--no-pager", "-n", "40"]);
    format!("--- the end of its journal ---\n{}", out.stdout)
}

/// `script` in `c`, by bash, in root's home directory, with the page's settings.
fn in_container(c: &Container, script: &str, vars: &[(String, String)]) -> Output {
    c.command(&["bash", "-euo", "pipefail", "-c", &format!("cd ~\n{script}")])
        .envs(vars)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .timeout(BLOCK_TIMEOUT)
        .run()
}

#[test]
fn the_air_gapped_installation_page_works_as_written() {
    let page = fs::read_to_string(repo().join(PAGE)).unwrap();
    let blocks = blocks(&page);
    let machines: Vec<Machine> = blocks.iter().map(|b| b.machine).collect();
    for machine in [
        Machine::Connected,
        Machine::Build,
        Machine::Store,
        Machine::Publisher,
        Machine::Host,
    ] {
        assert!(machines.contains(&machine), "no block on {machine:?}");
    }

    let site = Site::new();
    let mut last = None;
    for block in &blocks {
        let started = std::time::Instant::now();
        last = Some(site.run(block));
        eprintln!(
            "{PAGE}:{} on {:?}: {:.1?}",
            block.line,
            block.machine,
            started.elapsed()
        );
    }

    // The last block read the status of the first execution: DONE, and the host has the
    // file it made.
    let status = last.unwrap();
    assert!(
        status.stdout.contains(HOST_ID) && status.stdout.contains("DONE"),
        "{status}"
    );
    assert_eq!(
        fs::read_to_string(site.host.path("/etc/motd")).unwrap(),
        "This host is managed by Cattle.\n"
    );
    // Built with no network: the packages are the vendored build's, and the agent runs
    // under systemd on the host.
    assert_eq!(
        site.host
            .exec(&["systemctl", "is-active", "cattle-agent"])
            .stdout
            .trim(),
        "active"
    );
    // The store is versioned, as the page set it up.
    let versioning = site.store.exec(&["mc", "version", "info", "site/cattle"]);
    assert!(
        versioning.stdout.contains("versioning is enabled"),
        "{versioning}"
    );
}

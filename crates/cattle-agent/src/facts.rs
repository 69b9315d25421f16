//! The host's facts for its heartbeat: OS, kernel, architecture, CPUs,
//! memory, addresses, boot and machine IDs (the keys are listed at
//! [`cattle_core::wire::Facts`]).
//!
//! Gathered when the agent starts and when its settings are reloaded, never
//! on each poll: they cost a few small file reads and one `getifaddrs`. A fact
//! the host cannot tell is left out, never guessed.

use std::collections::BTreeSet;
use std::path::Path;

use cattle_core::wire::{Fact, Facts, MAX_FACT_ITEMS, MAX_FACT_VALUE};

/// Where the facts come from; the real host's in production, a test's tree in tests.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    pub os_release: &'a [&'a str],
    pub meminfo: &'a str,
    pub boot_id: &'a str,
    pub machine_id: &'a str,
}

impl Sources<'static> {
    pub const HOST: Sources<'static> = Sources {
        os_release: &["/etc/os-release", "/usr/lib/os-release"],
        meminfo: "/proc/meminfo",
        boot_id: "/proc/sys/kernel/random/boot_id",
        machine_id: "/etc/machine-id",
    };
}

/// This host's facts.
pub fn gather() -> Facts {
    let mut facts = from_files(&Sources::HOST);
    for (path, key) in [
        ("/proc/sys/kernel/osrelease", "kernel.release"),
        ("/proc/sys/kernel/hostname", "hostname"),
    ] {
        if let Ok(value) = std::fs::read_to_string(path) {
            text(&mut facts, key, &value);
        }
    }
    // What the agent was built for is what the kernel runs it as (`uname -m`
    // for x86_64 and aarch64).
    text(&mut facts, "arch", std::env::consts::ARCH);
    if let Ok(cpus) = std::thread::available_parallelism() {
        text(&mut facts, "cpus", &cpus.to_string());
    }
    let addresses = addresses();
    if !addresses.is_empty() {
        facts.insert("ip".to_string(), Fact::List(addresses));
    }
    facts
}

/// The facts read from files: OS release, memory, boot and machine IDs.
pub fn from_files(sources: &Sources<'_>) -> Facts {
    let mut facts = Facts::new();
    if let Some(release) = sources
        .os_release
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
    {
        for (name, key) in [
            ("ID", "os.id"),
            ("VERSION_ID", "os.version_id"),
            ("PRETTY_NAME", "os.pretty_name"),
        ] {
            if let Some(value) = os_release_value(&release, name) {
                text(&mut facts, key, &value);
            }
        }
    }
    if let Ok(meminfo) = std::fs::read_to_string(sources.meminfo)
        && let Some(kib) = meminfo.lines().find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })
    {
        text(&mut facts, "memory.mib", &(kib / 1024).to_string());
    }
    for (path, key) in [
        (sources.boot_id, "boot_id"),
        (sources.machine_id, "machine_id"),
    ] {
        if let Ok(id) = std::fs::read_to_string(Path::new(path)) {
            text(&mut facts, key, id.trim());
        }
    }
    facts
}

/// `NAME`'s value in an os-release file: `NAME=value`, `NAME="value"` or
/// `NAME='value'`, with the shell's backslash escapes in double quotes.
fn os_release_value(release: &str, name: &str) -> Option<String> {
    let raw = release
        .lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix('='))?
        .trim();
    let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.to_string()
    } else {
        raw.to_string()
    };
    Some(value)
}

/// Add a text fact, unless it is empty; cut to what readers accept.
fn text(facts: &mut Facts, key: &str, value: &str) {
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    facts.insert(key.to_string(), Fact::Text(cut(value)));
}

fn cut(value: &str) -> String {
    let mut end = value.len().min(MAX_FACT_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

/// The host's IPv4 and IPv6 addresses, loopback excluded, in order and once
/// each (an address on two interfaces is listed once).
fn addresses() -> Vec<String> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    for interface in interfaces {
        let Some(address) = interface.address else {
            continue;
        };
        let ip: std::net::IpAddr = if let Some(v4) = address.as_sockaddr_in() {
            v4.ip().into()
        } else if let Some(v6) = address.as_sockaddr_in6() {
            v6.ip().into()
        } else {
            continue;
        };
        if !ip.is_loopback() && !ip.is_unspecified() {
            seen.insert(ip);
        }
    }
    seen.into_iter()
        .take(MAX_FACT_ITEMS)
        .map(|ip| ip.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_memory_and_ids_are_read_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let release = write(
            "os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID='12'\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n",
        );
        let meminfo = write("meminfo", "MemTotal:        8130560 kB\nMemFree: 1 kB\n");
        let boot = write("boot_id", "0b5d1c1e-3f2a-4e5b-9c8d-7a6b5c4d3e2f\n");
        let missing = dir.path().join("absent").display().to_string();
        let facts = from_files(&Sources {
            os_release: &[&missing, &release],
            meminfo: &meminfo,
            boot_id: &boot,
            machine_id: &missing,
        });
        let shown: Vec<(String, String)> = facts
            .iter()
            .map(|(k, v)| (k.clone(), v.display()))
            .collect();
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            shown,
            pairs(&[
                ("boot_id", "0b5d1c1e-3f2a-4e5b-9c8d-7a6b5c4d3e2f"),
                ("memory.mib", "7940"),
                ("os.id", "debian"),
                ("os.pretty_name", "Debian GNU/Linux 12 (bookworm)"),
                ("os.version_id", "12"),
            ])
        );
    }

    #[test]
    fn this_hosts_facts_are_within_what_readers_accept() {
        let facts = gather();
        for key in ["kernel.release", "arch", "cpus"] {
            assert!(facts.contains_key(key), "{key} missing from {facts:?}");
        }
        if let Some(Fact::List(ips)) = facts.get("ip") {
            assert!(ips.iter().all(|ip| ip != "127.0.0.1" && ip != "::1"));
        }
        let heartbeat = cattle_core::wire::Heartbeat {
            interval_secs: 30,
            polled: None,
            clock_offset_secs: None,
            inbox: true,
            execution: None,
            last: None,
            facts,
        };
        assert_eq!(heartbeat.check(), Ok(()));
    }
}

//! `cattle hosts`: the fleet as the store sees it. Which hosts have an agent
//! that reports, when each was last seen, its version, what it runs, its OS
//! and facts, and which hosts need attention: silent, never reported, a host
//! ID used by two agents, an unreadable heartbeat.
//!
//! One listing of `hosts/` (a page per 1,000 objects) says which hosts have
//! an inbox, a lease and a standby record and when each was written, by the
//! store's clock; then each lease (with its heartbeat) and standby record is
//! read, [`CONCURRENCY`](crate::CONCURRENCY) at a time. Everything a host
//! wrote is hostile: read with a size limit, checked to name the host whose key
//! it is under, escaped when printed; a bad one makes that host's row say why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{
    Facts, FinishedExecution, GroupInbox, HostLease, MAX_DOCUMENT_BYTES, MAX_HEARTBEAT_BYTES,
    RunningExecution, Standby,
};
use serde::Serialize;

use crate::{exit, for_each_bounded, terminal};

/// `--silent-after`'s default: a host is silent once its lease has gone
/// unrenewed for this many of its renewal periods (each 10 polls).
pub const DEFAULT_SILENT_AFTER: u32 = 3;

/// A host's clock this far from the store's (either way) is flagged.
pub const CLOCK_FLAG_SECS: i64 = 60;

/// What `cattle hosts` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The fleet as expected (`--hosts FILE`): those without a lease are
    /// flagged as never reported, as are hosts with an inbox and no lease.
    pub expected: Vec<HostId>,
    /// Silent after this many renewal periods without a renewal.
    pub silent_after: u32,
}

/// Why a host needs a look, as `--json` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// Its lease has not been renewed for `--silent-after` of its periods.
    Silent,
    /// It has an inbox, or is in `--hosts`, but no agent ever wrote its lease.
    NeverReported,
    /// A second agent uses its host ID and stands by.
    Duplicate,
    /// Its lease or standby record cannot be read: `reason` says why.
    Unreadable,
    /// Its clock is at least [`CLOCK_FLAG_SECS`] from the store's.
    Clock,
    /// An agent reports under this host ID, but nothing was ever published
    /// to it (no inbox): a new host, or an agent given the wrong store URL.
    NoInbox,
}

impl Flag {
    /// Whether the host needs attention: `cattle hosts` then exits 3.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            Flag::Silent | Flag::NeverReported | Flag::Duplicate | Flag::Unreadable
        )
    }
}

/// The second agent for a host ID, as its standby record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherAgent {
    pub machine: String,
    pub state_dir: String,
    pub agent_version: String,
    /// RFC 3339, by the store's clock: when it last wrote its record.
    pub seen: Option<String>,
}

/// One host's row.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    /// RFC 3339, by the store's clock: when the agent last renewed its lease.
    pub last_seen: Option<String>,
    /// Seconds since then, by the store's clock.
    pub last_seen_secs: Option<u64>,
    /// The host has an inbox: something was published to it.
    pub inbox: bool,
    /// The host is listed in `--hosts`.
    pub expected: bool,
    pub agent_version: Option<String>,
    pub machine: Option<String>,
    pub state_dir: Option<String>,
    /// The agent's poll interval, and how often it renews its lease.
    pub interval_secs: Option<u64>,
    pub heartbeat_secs: Option<u64>,
    /// RFC 3339, by the host's clock: when it last read its inbox (as of its
    /// last renewal).
    pub polled: Option<String>,
    /// The store's clock minus the host's, in seconds.
    pub clock_offset_secs: Option<i64>,
    pub execution: Option<RunningExecution>,
    pub last: Option<FinishedExecution>,
    pub facts: Facts,
    /// A second agent using this host ID, while it stands by.
    pub other_agent: Option<OtherAgent>,
    pub flags: Vec<Flag>,
    /// Why what the host wrote cannot be read, with [`Flag::Unreadable`].
    pub reason: Option<String>,
}

impl HostRow {
    fn new(host: String) -> HostRow {
        HostRow {
            host,
            last_seen: None,
            last_seen_secs: None,
            inbox: false,
            expected: false,
            agent_version: None,
            machine: None,
            state_dir: None,
            interval_secs: None,
            heartbeat_secs: None,
            polled: None,
            clock_offset_secs: None,
            execution: None,
            last: None,
            facts: Facts::new(),
            other_agent: None,
            flags: Vec::new(),
            reason: None,
        }
    }

    fn flag(&mut self, flag: Flag) {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
            self.flags.sort();
        }
    }

    fn unreadable(&mut self, reason: String) {
        self.flag(Flag::Unreadable);
        self.reason = Some(match self.reason.take() {
            None => reason,
            Some(before) => format!("{before}; {reason}"),
        });
    }

    pub fn needs_attention(&self) -> bool {
        self.flags.iter().any(|f| f.needs_attention())
    }
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub hosts: usize,
    /// Hosts whose lease was renewed within `silent_after` periods.
    pub seen: usize,
    pub silent: usize,
    pub never_reported: usize,
    pub duplicate: usize,
    pub unreadable: usize,
    pub no_inbox: usize,
    pub clock: usize,
}

/// The fleet: `cattle hosts`' answer.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    pub schema: &'static str,
    pub store: String,
    pub silent_after: u32,
    pub hosts: Vec<HostRow>,
    pub summary: Summary,
}

/// What the listing says about one host's objects.
#[derive(Debug, Default)]
struct Listed {
    inbox: bool,
    /// `Some(when written)` if the lease exists.
    lease: Option<Option<SystemTime>>,
    standby: Option<Option<SystemTime>>,
}

/// Read the fleet. Fails only when the store fails, never because of what a
/// host wrote.
pub async fn fetch(store: &Store, options: &Options) -> Result<Fleet, StoreError> {
    let prefix = keys::hosts_prefix();
    let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
    for entry in store.list_entries(&prefix).await? {
        let Some((host, name)) = entry
            .key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let slot = match name {
            "inbox.json" | "agent.json" | "standby.json" => {
                listed.entry(host.to_string()).or_default()
            }
            _ => continue,
        };
        match name {
            "inbox.json" => slot.inbox = true,
            "agent.json" => slot.lease = Some(entry.modified),
            _ => slot.standby = Some(entry.modified),
        }
    }
    // Hosts that the groups' inboxes address have an inbox too.
    let (addressed, groups) = addressed(store).await?;
    for host in addressed {
        listed.entry(host).or_default().inbox = true;
    }
    let groups = std::sync::Arc::new(groups);
    // The store's time now, so that ages are measured on one clock.
    let now = shift(SystemTime::now(), store.clock_offset().unwrap_or(0));
    let expected: BTreeSet<String> = options
        .expected
        .iter()
        .map(|h| h.as_str().to_string())
        .collect();
    for host in &expected {
        listed.entry(host.clone()).or_default();
    }
    let items: Vec<(String, Listed)> = listed.into_iter().collect();
    let silent_after = options.silent_after.max(1);
    let rows = for_each_bounded(items, |(host, listed)| {
        let store = store.clone();
        let expected = expected.contains(&host);
        let groups = groups.clone();
        async move { row(&store, host, listed, &groups, expected, now, silent_after).await }
    })
    .await;
    let hosts = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut summary = Summary {
        hosts: hosts.len(),
        ..Summary::default()
    };
    for row in &hosts {
        for flag in &row.flags {
            match flag {
                Flag::Silent => summary.silent += 1,
                Flag::NeverReported => summary.never_reported += 1,
                Flag::Duplicate => summary.duplicate += 1,
                Flag::Unreadable => summary.unreadable += 1,
                Flag::NoInbox => summary.no_inbox += 1,
                Flag::Clock => summary.clock += 1,
            }
        }
        if row.heartbeat_secs.is_some() && !row.flags.contains(&Flag::Silent) {
            summary.seen += 1;
        }
    }
    Ok(Fleet {
        schema: "cattle.hosts.v1",
        store: store.location(""),
        silent_after,
        hosts,
        summary,
    })
}

/// Every host the groups' inboxes list an execution for, and the groups whose
/// inbox exists: one listing of `inboxes/` and a read of each group's inbox
/// (at most [`keys::INBOX_GROUPS`]). An inbox that is not one names no host.
async fn addressed(store: &Store) -> Result<(BTreeSet<String>, BTreeSet<String>), StoreError> {
    let prefix = keys::group_inboxes_prefix();
    let groups: Vec<String> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|key| {
            let group = key.strip_prefix(&prefix)?.strip_suffix(".json")?;
            keys::is_inbox_group(group).then(|| group.to_string())
        })
        .collect();
    let existing: BTreeSet<String> = groups.iter().cloned().collect();
    let read = for_each_bounded(groups, |group| {
        let store = store.clone();
        async move {
            let object = store
                .get(&keys::group_inbox(&group), MAX_DOCUMENT_BYTES)
                .await?;
            Ok::<_, StoreError>(
                object
                    .and_then(|o| serde_json::from_slice::<GroupInbox>(&o.bytes).ok())
                    .filter(|inbox| inbox.group == group),
            )
        }
    })
    .await;
    let mut hosts = BTreeSet::new();
    for inbox in read {
        for entry in inbox?.into_iter().flat_map(|i| i.executions) {
            hosts.extend(entry.hosts.into_iter().map(|h| h.as_str().to_string()));
        }
    }
    Ok((hosts, existing))
}

/// `t` moved by `secs` seconds, either way.
pub(crate) fn shift(t: SystemTime, secs: i64) -> SystemTime {
    let by = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 { t + by } else { t - by }
}

/// One host's row, from what the listing said and its lease and standby record.
async fn row(
    store: &Store,
    name: String,
    listed: Listed,
    groups: &BTreeSet<String>,
    expected: bool,
    now: SystemTime,
    silent_after: u32,
) -> Result<HostRow, StoreError> {
    let mut row = HostRow::new(name.clone());
    row.inbox = listed.inbox;
    row.expected = expected;
    let host = match HostId::new(&name) {
        Ok(host) => host,
        Err(e) => {
            row.unreadable(format!(
                "`hosts/{name}/` is not named by a valid host ID: {e}"
            ));
            return Ok(row);
        }
    };
    let Some(written) = listed.lease else {
        row.flag(Flag::NeverReported);
        return Ok(row);
    };
    let age = written.map(|t| now.duration_since(t).unwrap_or_default().as_secs());
    row.last_seen = written.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    row.last_seen_secs = age;
    let lease = match read::<HostLease>(store, &keys::lease(&host), &host).await? {
        Ok(Some(lease)) => lease,
        // Gone since the listing (an agent deleted it? an operator?).
        Ok(None) => {
            row.flag(Flag::NeverReported);
            return Ok(row);
        }
        Err(reason) => {
            row.unreadable(reason);
            return Ok(row);
        }
    };
    let period = lease.renew_secs.clamp(1, 86_400 * 30);
    row.agent_version = Some(lease.agent_version.clone());
    row.machine = Some(lease.machine.clone());
    row.state_dir = Some(lease.state_dir.clone());
    row.heartbeat_secs = Some(period);
    if age.is_some_and(|age| age > period * u64::from(silent_after)) {
        row.flag(Flag::Silent);
    }
    if let Some(heartbeat) = lease.heartbeat.clone() {
        match heartbeat.check() {
            Err(reason) => row.unreadable(format!(
                "`{}`: {reason}",
                store.location(&keys::lease(&host))
            )),
            Ok(()) => {
                row.interval_secs = Some(heartbeat.interval_secs);
                row.polled = heartbeat.polled;
                row.clock_offset_secs = heartbeat.clock_offset_secs;
                if heartbeat
                    .clock_offset_secs
                    .is_some_and(|o| o.abs() >= CLOCK_FLAG_SECS)
                {
                    row.flag(Flag::Clock);
                }
                row.execution = heartbeat.execution;
                row.last = heartbeat.last;
                row.facts = heartbeat.facts;
                // Its group's inbox exists, and the agent found it there,
                // though no execution listed now is its own (all cleaned).
                row.inbox |= heartbeat.inbox && groups.contains(&keys::inbox_group(&host));
            }
        }
    }
    if !row.inbox {
        row.flag(Flag::NoInbox);
    }
    if let Some(standby_written) = listed.standby {
        match read::<Standby>(store, &keys::standby(&host), &host).await? {
            Ok(Some(standby)) => {
                let fresh = standby_written.is_some_and(|t| {
                    let every = standby.renew_secs.clamp(1, 86_400 * 30);
                    now.duration_since(t).unwrap_or_default().as_secs()
                        <= every * u64::from(silent_after)
                });
                let another =
                    standby.machine != lease.machine || standby.state_dir != lease.state_dir;
                if fresh && another {
                    row.flag(Flag::Duplicate);
                    row.other_agent = Some(OtherAgent {
                        machine: standby.machine,
                        state_dir: standby.state_dir,
                        agent_version: standby.agent_version,
                        seen: standby_written
                            .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                    });
                }
            }
            Ok(None) => {}
            Err(reason) => row.unreadable(reason),
        }
    }
    Ok(row)
}

/// A document a host wrote about itself under `key`: `Ok(Err(reason))` when
/// it cannot be used (too large, not this kind of document, naming another
/// host); `Err` only when the store fails.
pub(crate) async fn read<T>(
    store: &Store,
    key: &str,
    host: &HostId,
) -> Result<Result<Option<T>, String>, StoreError>
where
    T: serde::de::DeserializeOwned + Names,
{
    let object = match store.get(key, MAX_HEARTBEAT_BYTES).await {
        Ok(None) => return Ok(Ok(None)),
        Ok(Some(object)) => object,
        Err(e) => return crate::status::unreadable(store, key, e).map(Err),
    };
    let location = store.location(key);
    let document: T = match serde_json::from_slice(&object.bytes) {
        Ok(document) => document,
        Err(e) => return Ok(Err(format!("`{location}` is not a valid document: {e}"))),
    };
    if document.host() != host {
        return Ok(Err(format!(
            "`{location}` names host `{}`, not `{host}`",
            document.host()
        )));
    }
    Ok(Ok(Some(document)))
}

/// A document that names the host it is about.
pub(crate) trait Names {
    fn host(&self) -> &HostId;
}

impl Names for HostLease {
    fn host(&self) -> &HostId {
        &self.host
    }
}

impl Names for Standby {
    fn host(&self) -> &HostId {
        &self.host
    }
}

/// How long ago, for people: `12s ago`, `5m ago`, `3h ago`, `3d ago`.
pub fn ago(secs: u64) -> String {
    format!("{} ago", span(secs))
}

/// A duration to its largest whole unit: `12s`, `5m`, `3h`, `3d`.
fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..172_800 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// An execution for a cell: its ID's first 13 characters (the time it was
/// published, to the millisecond: enough to tell executions apart).
fn short(id: &uuid::Uuid) -> String {
    id.to_string()[..13].to_string()
}

/// Which rows a table or JSON document shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    #[default]
    All,
    /// Only hosts that need attention.
    Attention,
    /// Only silent hosts.
    Silent,
}

impl Filter {
    fn keeps(self, row: &HostRow) -> bool {
        match self {
            Filter::All => true,
            Filter::Attention => row.needs_attention(),
            Filter::Silent => row.flags.contains(&Flag::Silent),
        }
    }
}

/// The facts `--facts` shows as columns, with their headers.
const FACT_COLUMNS: [(&str, &str); 5] = [
    ("kernel.release", "KERNEL"),
    ("arch", "ARCH"),
    ("cpus", "CPUS"),
    ("memory.mib", "MEMORY MIB"),
    ("ip", "IP"),
];

impl Fleet {
    /// See [`exit`]: 3 when some host needs attention (silent, never
    /// reported, duplicate, unreadable), else 0.
    pub fn exit_code(&self) -> u8 {
        if self.hosts.iter().any(HostRow::needs_attention) {
            exit::HOSTS_FAILED
        } else {
            exit::SUCCESS
        }
    }

    /// One row per host, then the summary line; with `facts`, the facts of
    /// `FACT_COLUMNS` as columns of their own. Every cell from the store is
    /// shown through [`terminal::line`].
    pub fn table(&self, facts: bool, filter: Filter) -> String {
        let mut header: Vec<String> = [
            "HOST",
            "LAST SEEN",
            "VERSION",
            "EXECUTION",
            "FINISHED",
            "OS",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if facts {
            header.extend(FACT_COLUMNS.iter().map(|(_, h)| h.to_string()));
        }
        header.push("FLAGS".to_string());
        let mut rows: Vec<Vec<String>> = vec![header];
        for row in self.hosts.iter().filter(|r| filter.keeps(r)) {
            rows.push(self.cells(row, facts));
        }
        let columns = rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for cells in &rows {
            let mut line = String::new();
            for (c, cell) in cells.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count();
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        for row in self.hosts.iter().filter(|r| filter.keeps(r)) {
            if let Some(other) = &row.other_agent {
                let _ = writeln!(
                    out,
                    "DUPLICATE {}: the agent on machine {} (state directory {}) is active; another, \
                     on machine {} (state directory {}), uses the same host ID and runs nothing: \
                     give each machine its own host ID",
                    terminal::line(&row.host),
                    terminal::line(row.machine.as_deref().unwrap_or("?")),
                    terminal::line(row.state_dir.as_deref().unwrap_or("?")),
                    terminal::line(&other.machine),
                    terminal::line(&other.state_dir),
                );
            }
            if let Some(reason) = &row.reason {
                let _ = writeln!(
                    out,
                    "UNREADABLE {}: {}",
                    terminal::line(&row.host),
                    terminal::line(reason)
                );
            }
        }
        out
    }

    /// A row's cells, escaped.
    fn cells(&self, row: &HostRow, facts: bool) -> Vec<String> {
        let dash = || "-".to_string();
        let execution = row.execution.as_ref().map_or_else(dash, |e| {
            let step = e.step.map_or_else(|| "-".to_string(), |s| s.to_string());
            format!("{} {step}/{}", short(&e.id), e.steps)
        });
        let finished = row
            .last
            .as_ref()
            .map_or_else(dash, |l| format!("{} {}", short(&l.id), l.state.as_str()));
        let fact = |key: &str| row.facts.get(key).map(|f| f.display());
        let os = fact("os.pretty_name")
            .or_else(|| match (fact("os.id"), fact("os.version_id")) {
                (Some(id), Some(version)) => Some(format!("{id} {version}")),
                (id, _) => id,
            })
            .unwrap_or_else(dash);
        let mut cells = vec![
            row.host.clone(),
            row.last_seen_secs.map_or_else(dash, ago),
            row.agent_version.clone().unwrap_or_else(dash),
            execution,
            finished,
            os,
        ];
        if facts {
            cells.extend(
                FACT_COLUMNS
                    .iter()
                    .map(|(key, _)| fact(key).unwrap_or_else(dash)),
            );
        }
        cells.push(self.flags_cell(row));
        cells.iter().map(|c| terminal::line(c)).collect()
    }

    /// The FLAGS cell: `silent`, `never reported`, `duplicate`,
    /// `unreadable`, `clock +5m` (the host's clock ahead of the store's),
    /// `no inbox`.
    fn flags_cell(&self, row: &HostRow) -> String {
        let words: Vec<String> = row
            .flags
            .iter()
            .map(|flag| match flag {
                Flag::Silent => "silent".to_string(),
                Flag::NeverReported => "never reported".to_string(),
                Flag::Duplicate => "duplicate".to_string(),
                Flag::Unreadable => "unreadable".to_string(),
                Flag::NoInbox => "no inbox".to_string(),
                Flag::Clock => {
                    let offset = row.clock_offset_secs.unwrap_or(0);
                    // The offset is the store's clock minus the host's.
                    let sign = if offset <= 0 { '+' } else { '-' };
                    format!("clock {sign}{}", span(offset.unsigned_abs()))
                }
            })
            .collect();
        words.join(", ")
    }

    /// `3 hosts: 2 seen in the last 3 heartbeats, 1 silent, 1 never reported`.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let mut parts = vec![format!(
            "{} seen in the last {}",
            s.seen,
            count(self.silent_after as usize, "heartbeat")
        )];
        for (n, what) in [
            (s.silent, "silent"),
            (s.never_reported, "never reported"),
            (s.duplicate, "duplicate"),
            (s.unreadable, "unreadable"),
            (s.no_inbox, "with no inbox"),
            (s.clock, "with a clock off"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        format!("{}: {}", count(s.hosts, "host"), parts.join(", "))
    }

    /// The fleet as JSON (`cattle.hosts.v1`, docs/json.md), the rows `filter`
    /// keeps, with nothing in it a terminal would act on.
    pub fn json(&self, filter: Filter) -> String {
        let mut shown = self.clone();
        shown.hosts.retain(|r| filter.keeps(r));
        terminal::json(&serde_json::to_string_pretty(&shown).expect("fleets serialize"))
    }
}

/// `1 host`, `2 hosts`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_in_their_largest_whole_unit() {
        assert_eq!(ago(0), "0s ago");
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(60), "1m ago");
        assert_eq!(ago(3_599), "59m ago");
        assert_eq!(ago(3_600), "1h ago");
        assert_eq!(ago(172_799), "47h ago");
        assert_eq!(ago(3 * 86_400 + 5), "3d ago");
    }

    #[test]
    fn only_some_flags_need_attention() {
        assert!(Flag::Silent.needs_attention());
        assert!(Flag::NeverReported.needs_attention());
        assert!(Flag::Duplicate.needs_attention());
        assert!(Flag::Unreadable.needs_attention());
        assert!(!Flag::Clock.needs_attention());
        assert!(!Flag::NoInbox.needs_attention());
    }
}

//! `cattle status ID`: read what hosts reported (`cattle log ID` is in
//! [`crate::log`]).
//!
//! A host writes its own status and log, so one host's objects may be
//! anything: too large, not JSON, about another host. Such a host is shown as
//! [`HostState::Unreadable`] with the reason, and every other host as usual;
//! only a failure of the store itself (unreachable, no credentials) fails a
//! whole command. The manifest is read without checking its signature, so
//! every field of it that could become part of a key is checked first.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{
    Conflict, Envelope, FORMAT, HostStatus, MAX_DOCUMENT_BYTES, Manifest, Recap, State,
};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{exit, for_each_bounded, terminal};

/// How long `cattle status --wait` keeps waiting for hosts whose status is
/// UNREADABLE once no host is PENDING or PROGRESS. Only the host can make its
/// status readable again, by writing a new one, which a running agent does at
/// its next step; a status that stays unreadable must not hold the wait forever.
pub const UNREADABLE_PATIENCE: Duration = Duration::from_secs(60);

/// An execution as the store shows it now.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub manifest: Manifest,
    pub hosts: Vec<HostRow>,
}

/// Where a host is with an execution, as the reader sees it: the states hosts
/// report ([`State`]), and UNREADABLE for a host whose objects cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HostState {
    Pending,
    Progress,
    Done,
    Error,
    Cancelled,
    /// The host's status document cannot be read or is not a valid status of
    /// this host for this execution; [`HostRow::reason`] says why. It is not
    /// final: the host may still be running, and may write a valid one.
    Unreadable,
}

impl From<State> for HostState {
    fn from(state: State) -> HostState {
        match state {
            State::Pending => HostState::Pending,
            State::Progress => HostState::Progress,
            State::Done => HostState::Done,
            State::Error => HostState::Error,
            State::Cancelled => HostState::Cancelled,
        }
    }
}

impl HostState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            HostState::Done | HostState::Error | HostState::Cancelled
        )
    }

    /// PENDING or PROGRESS: the host has work left, as far as anyone can tell.
    pub fn is_unfinished(self) -> bool {
        matches!(self, HostState::Pending | HostState::Progress)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Pending => "PENDING",
            HostState::Progress => "PROGRESS",
            HostState::Done => "DONE",
            HostState::Error => "ERROR",
            HostState::Cancelled => "CANCELLED",
            HostState::Unreadable => "UNREADABLE",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: HostId,
    pub state: HostState,
    /// When the host last reported (RFC 3339); absent for PENDING and UNREADABLE.
    pub updated: Option<String>,
    /// What the host last reported. Absent for PENDING and UNREADABLE, and
    /// for DONE hosts whose status document was not read or is not readable
    /// (their DONE marker is enough to know the state).
    pub status: Option<HostStatus>,
    /// How many of the host's steps changed something, found their state in
    /// place, or failed (in a check-mode run: would change, were in state,
    /// failed or could not be checked); absent when its status is.
    pub results: Option<Recap>,
    /// Why the host's status cannot be read; only for UNREADABLE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A second agent with this host ID found another one active and ran
    /// nothing of the execution: two machines use one host ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
}

impl HostRow {
    fn unreadable(host: HostId, reason: String) -> HostRow {
        HostRow {
            host,
            state: HostState::Unreadable,
            updated: None,
            status: None,
            results: None,
            reason: Some(reason),
            conflict: None,
        }
    }
}

/// A manifest that is not what `cattle publish` writes: it does not parse, or
/// a field that commands build keys from is not valid.
#[derive(Debug, thiserror::Error)]
#[error("`{location}` is not a valid manifest: {message}")]
pub struct InvalidManifest {
    pub id: Uuid,
    pub location: String,
    pub message: String,
}

/// Read the manifest of execution `id`, or say clearly that there is none.
///
/// The signature is not checked: operators only read what hosts reported
/// against it. Hosts check it before running anything. What commands use to
/// build keys is checked instead: the ID, the host IDs (when parsed) and the
/// bundle's sha256.
pub async fn manifest(store: &Store, id: Uuid) -> anyhow::Result<Manifest> {
    find_manifest(store, id).await?.with_context(|| {
        format!(
            "no execution {id} in this store (`{}` does not exist)",
            store.location(&keys::manifest(id))
        )
    })
}

/// [`manifest`], or `None` when there is no manifest object.
pub async fn find_manifest(store: &Store, id: Uuid) -> anyhow::Result<Option<Manifest>> {
    let key = keys::manifest(id);
    let invalid = |message: String| InvalidManifest {
        id,
        location: store.location(&key),
        message,
    };
    let object = match store.get(&key, MAX_DOCUMENT_BYTES).await {
        Ok(Some(object)) => object,
        Ok(None) => return Ok(None),
        Err(StoreError::TooLarge { limit, .. }) => {
            return Err(invalid(format!("it is larger than {limit} bytes")).into());
        }
        Err(e) => return Err(e.into()),
    };
    let manifest = serde_json::from_slice::<Envelope>(&object.bytes)
        .map_err(|e| e.to_string())
        .and_then(|envelope| envelope.manifest().map_err(|e| e.to_string()))
        .map_err(invalid)?;
    if manifest.id != id {
        return Err(invalid(format!(
            "field `id` is {}, not the execution it is stored under",
            manifest.id
        ))
        .into());
    }
    manifest
        .bundle
        .checked_sha256()
        .map_err(|m| invalid(format!("field `bundle.sha256`: {m}")))?;
    Ok(Some(manifest))
}

/// Every host's state and what it reported, for showing: one listing of the
/// DONE markers, and each host's status document (one request per host).
pub async fn fetch(store: &Store, id: Uuid) -> anyhow::Result<Report> {
    let manifest = manifest(store, id).await?;
    let hosts = hosts(store, id, &manifest, Detail::All).await?;
    Ok(Report { manifest, hosts })
}

/// Every host's state, as cheaply as it can be known: hosts that finished
/// DONE from one listing of their DONE markers (a page per 1,000 hosts), and
/// only the others' status documents, one request each.
pub async fn fetch_states(store: &Store, id: Uuid) -> anyhow::Result<Report> {
    let manifest = manifest(store, id).await?;
    let hosts = hosts(store, id, &manifest, Detail::Unfinished).await?;
    Ok(Report { manifest, hosts })
}

/// Whose status documents [`hosts`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Every host's, DONE hosts' included: their step results.
    All,
    /// Only hosts without a DONE marker: enough to know every state.
    Unfinished,
}

/// The row of each host of `manifest`, in its order. Fails only when the
/// store fails, never because of what one host wrote.
pub async fn hosts(
    store: &Store,
    id: Uuid,
    manifest: &Manifest,
    detail: Detail,
) -> Result<Vec<HostRow>, StoreError> {
    let prefix = keys::done_prefix(id);
    let mut done: HashMap<String, Option<SystemTime>> = store
        .list_entries(&prefix)
        .await?
        .into_iter()
        .filter_map(|e| Some((e.key.strip_prefix(&prefix)?.to_string(), e.modified)))
        .collect();
    let hosts: Vec<(HostId, Option<Option<SystemTime>>)> = manifest
        .hosts
        .iter()
        .map(|h| (h.clone(), done.remove(h.as_str())))
        .collect();
    let results = for_each_bounded(hosts, |(host, done)| {
        let store = store.clone();
        async move {
            if let Some(modified) = done {
                // The marker decides the state; the status document, when it
                // can be read, adds the step results.
                let status = match detail {
                    Detail::All => read_status(&store, id, host.clone())
                        .await?
                        .status
                        .filter(|s| s.state == State::Done),
                    Detail::Unfinished => None,
                };
                return Ok(HostRow {
                    host,
                    state: HostState::Done,
                    updated: modified.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                    results: status.as_ref().map(HostStatus::recap),
                    status,
                    reason: None,
                    conflict: None,
                });
            }
            read_status(&store, id, host).await
        }
    })
    .await;
    let mut rows = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    add_conflicts(store, id, &mut rows).await?;
    Ok(rows)
}

/// Mark the hosts for which a second agent recorded that it stood back
/// (`executions/<id>/conflicts/<host>`): one listing, and one read per such host.
async fn add_conflicts(store: &Store, id: Uuid, rows: &mut [HostRow]) -> Result<(), StoreError> {
    let prefix = keys::conflicts_prefix(id);
    let marked: std::collections::HashSet<String> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect();
    for row in rows.iter_mut().filter(|r| marked.contains(r.host.as_str())) {
        let key = keys::conflict(id, &row.host);
        let said = match store.get(&key, MAX_DOCUMENT_BYTES).await {
            Ok(Some(object)) => match serde_json::from_slice::<Conflict>(&object.bytes) {
                Ok(c) => format!(
                    "a second agent for this host ID (machine {}, state directory {}) found the \
                     one on machine {} (state directory {}) active at {} and ran nothing; \
                     give each machine its own host ID",
                    c.machine, c.state_dir, c.holder_machine, c.holder_state_dir, c.seen
                ),
                Err(e) => format!("a second agent for this host ID ran nothing (its record: {e})"),
            },
            Ok(None) => continue,
            Err(e) => format!(
                "a second agent for this host ID ran nothing (its record: {})",
                unreadable(store, &key, e)?
            ),
        };
        row.conflict = Some(said);
    }
    Ok(())
}

/// One host's row from its status document.
async fn read_status(store: &Store, id: Uuid, host: HostId) -> Result<HostRow, StoreError> {
    let key = keys::status(id, &host);
    let object = match store.get(&key, MAX_DOCUMENT_BYTES).await {
        Ok(object) => object,
        Err(e) => {
            return match unreadable(store, &key, e) {
                Ok(reason) => Ok(HostRow::unreadable(host, reason)),
                Err(e) => Err(e),
            };
        }
    };
    let Some(object) = object else {
        return Ok(HostRow {
            host,
            state: HostState::Pending,
            updated: None,
            status: None,
            results: None,
            reason: None,
            conflict: None,
        });
    };
    match parse_status(&object.bytes, id, &host) {
        Ok(status) => Ok(HostRow {
            state: status.state.into(),
            updated: Some(status.updated.clone()),
            host,
            results: Some(status.recap()),
            status: Some(status),
            reason: None,
            conflict: None,
        }),
        Err(why) => Ok(HostRow::unreadable(
            host,
            format!(
                "`{}` is not a valid status document: {why}",
                store.location(&key)
            ),
        )),
    }
}

/// A status document, if it is one and it is about `host` and execution `id`.
fn parse_status(bytes: &[u8], id: Uuid, host: &HostId) -> Result<HostStatus, String> {
    let status = serde_json::from_slice::<HostStatus>(bytes).map_err(|e| e.to_string())?;
    if status.format > FORMAT {
        return Err(format!(
            "it is in format {}, and this cattle reads format {FORMAT} at most; upgrade cattle",
            status.format
        ));
    }
    if status.host != *host {
        return Err(format!(
            "it says it is from host `{}`, but it is stored under host `{host}`",
            status.host
        ));
    }
    if status.execution != id {
        return Err(format!(
            "it says it is about execution {}, but it is stored under execution {id}",
            status.execution
        ));
    }
    if status.results.len() > status.steps {
        return Err(format!(
            "it has results for {} steps, but says the execution has {}",
            status.results.len(),
            status.steps
        ));
    }
    Ok(status)
}

/// Why the object at `key` cannot be read, when the failure is the object's
/// (too large, or the store refuses that one object) rather than the store's;
/// the store's own failures (unreachable, credentials, TLS, clock) come back
/// as they are, since they would fail every other read too.
pub(crate) fn unreadable(store: &Store, key: &str, err: StoreError) -> Result<String, StoreError> {
    match err {
        StoreError::TooLarge { limit, .. } => Ok(format!(
            "`{}` is larger than {limit} bytes",
            store.location(key)
        )),
        StoreError::InvalidDocument { .. }
        | StoreError::AccessDenied { .. }
        | StoreError::Other { .. } => Ok(err.to_string()),
        StoreError::NoSuchBucket { .. }
        | StoreError::PreconditionFailed { .. }
        | StoreError::NoCredentials { .. }
        | StoreError::Unreachable { .. }
        | StoreError::Tls { .. }
        | StoreError::CaBundle { .. }
        | StoreError::InvalidKey { .. }
        | StoreError::UnaskedNotModified { .. }
        | StoreError::ClockSkew { .. } => Err(err),
    }
}

/// Poll every `every` until every host is DONE, ERROR or CANCELLED, or
/// `timeout` passes. Hosts whose status is UNREADABLE are waited for too, but
/// once they are the only unfinished ones, for `patience` at most (see
/// [`UNREADABLE_PATIENCE`]).
pub async fn wait(
    store: &Store,
    id: Uuid,
    timeout: Option<Duration>,
    every: Duration,
    patience: Duration,
) -> anyhow::Result<Report> {
    wait_with(store, id, timeout, every, patience, &mut |_| Ok(())).await
}

/// [`wait`], showing each report read on the way to `seen` (`cattle status
/// --watch`); the last one, with what DONE hosts reported, is returned only.
pub async fn wait_with(
    store: &Store,
    id: Uuid,
    timeout: Option<Duration>,
    every: Duration,
    patience: Duration,
    seen: &mut dyn FnMut(&Report) -> std::io::Result<()>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut only_unreadable_since: Option<Instant> = None;
    loop {
        let report = fetch_states(store, id).await?;
        seen(&report)?;
        let settled = if report.hosts.iter().any(|h| h.state.is_unfinished()) {
            only_unreadable_since = None;
            false
        } else if report.hosts.iter().all(|h| h.state.is_final()) {
            true
        } else {
            let since = *only_unreadable_since.get_or_insert_with(Instant::now);
            since.elapsed() + every > patience
        };
        if settled || timeout.is_some_and(|t| started.elapsed() + every > t) {
            // Once more, with what DONE hosts reported, to show.
            return fetch(store, id).await;
        }
        tokio::time::sleep(every).await;
    }
}

impl Report {
    /// See [`exit`]: 0 all DONE; 3 some ERROR, CANCELLED or UNREADABLE, or a
    /// host ID used by two agents (needs attention); 4 some not finished.
    pub fn exit_code(&self) -> u8 {
        if self.hosts.iter().any(|h| {
            h.conflict.is_some()
                || matches!(
                    h.state,
                    HostState::Error | HostState::Cancelled | HostState::Unreadable
                )
        }) {
            exit::HOSTS_FAILED
        } else if self.hosts.iter().all(|h| h.state == HostState::Done) {
            exit::SUCCESS
        } else {
            exit::HOSTS_UNFINISHED
        }
    }

    pub fn count(&self, state: HostState) -> usize {
        self.hosts.iter().filter(|h| h.state == state).count()
    }

    /// One row per host, then a summary line. Every cell that comes from the
    /// store is shown through [`terminal::line`].
    pub fn table(&self) -> String {
        let width = self
            .hosts
            .iter()
            .map(|h| h.host.as_str().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let state_width = self
            .hosts
            .iter()
            .map(|h| h.state.as_str().len())
            .max()
            .unwrap_or(8)
            .max(8);
        // Check-mode results get columns of their own, shown only when some
        // host has them.
        let check = self
            .hosts
            .iter()
            .any(|h| h.results.is_some_and(|r| r.has_check_results()));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:width$}  {:state_width$}  {:5}  CHANGED  UNCHANGED  FAILED  {}{:24}  DETAIL",
            "HOST",
            "STATE",
            "STEP",
            if check {
                "WOULD CHANGE  IN STATE  UNKNOWN  "
            } else {
                ""
            },
            "UPDATED"
        );
        let mut total = Recap::default();
        for row in &self.hosts {
            let updated = row.updated.clone().unwrap_or_else(|| "-".to_string());
            let (step, detail) = match &row.status {
                None if row.state == HostState::Done => {
                    (format!("{0}/{0}", self.manifest.steps), String::new())
                }
                None => ("-".to_string(), row.reason.clone().unwrap_or_default()),
                Some(s) => {
                    let step = s
                        .step
                        .as_ref()
                        .map_or("-".to_string(), |st| format!("{}/{}", st.number, s.steps));
                    let detail = match (&s.error, &s.step) {
                        (Some(e), _) => e.clone(),
                        (None, _) if s.paused.is_some() => {
                            format!("PAUSED: {}", s.paused.as_deref().unwrap_or_default())
                        }
                        (None, Some(st)) if s.state == State::Progress => {
                            let attempt = if st.attempt > 1 {
                                format!(", attempt {}/{}", st.attempt, st.attempts)
                            } else {
                                String::new()
                            };
                            format!("{} ({}){attempt}", st.facility, st.description)
                        }
                        _ => String::new(),
                    };
                    (step, detail)
                }
            };
            let count = |n: Option<usize>| n.map_or("-".to_string(), |n| n.to_string());
            if let Some(r) = &row.results {
                total.merge(r);
            }
            let check_counts = if check {
                format!(
                    "{:>12}  {:>8}  {:>7}  ",
                    count(row.results.map(|r| r.would_change)),
                    count(row.results.map(|r| r.in_state)),
                    count(row.results.map(|r| r.unknown)),
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:width$}  {:state_width$}  {:5}  {:>7}  {:>9}  {:>6}  {check_counts}{:24}  {}",
                terminal::line(row.host.as_str()),
                row.state.as_str(),
                terminal::line(&step),
                count(row.results.map(|r| r.changed)),
                count(row.results.map(|r| r.unchanged)),
                count(row.results.map(|r| r.failed)),
                terminal::line(&updated),
                terminal::line(first_line(&detail))
            );
        }
        let _ = writeln!(
            out,
            "{} hosts: {} DONE, {} ERROR, {} PROGRESS, {} PENDING{}{}",
            self.hosts.len(),
            self.count(HostState::Done),
            self.count(HostState::Error),
            self.count(HostState::Progress),
            self.count(HostState::Pending),
            match self.count(HostState::Cancelled) {
                0 => String::new(),
                n => format!(", {n} CANCELLED"),
            },
            match self.count(HostState::Unreadable) {
                0 => String::new(),
                n => format!(", {n} UNREADABLE"),
            }
        );
        let _ = write!(
            out,
            "steps: {} changed, {} unchanged, {} failed",
            total.changed, total.unchanged, total.failed
        );
        if check {
            let _ = write!(
                out,
                ", {} would change, {} in state, {} unknown",
                total.would_change, total.in_state, total.unknown
            );
        }
        out.push('\n');
        if self.manifest.check {
            out.push_str("check mode: hosts only ran their checks; nothing was changed\n");
        }
        for row in &self.hosts {
            if let Some(conflict) = &row.conflict {
                let _ = writeln!(
                    out,
                    "CONFLICT {}: {}",
                    terminal::line(row.host.as_str()),
                    terminal::line(first_line(conflict))
                );
            }
        }
        out
    }

    /// The report as JSON, with nothing in it a terminal would act on (see
    /// [`terminal::json`]).
    pub fn json(&self) -> String {
        terminal::json(&serde_json::to_string_pretty(self).expect("reports serialize"))
    }
}

/// The first line of `s`: a table row stays one row.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use cattle_core::store::{Condition, FileStore};
    use cattle_core::wire::BundleRef;

    use super::*;

    fn host(name: &str) -> HostId {
        HostId::new(name).unwrap()
    }

    /// A file store holding an unsigned execution for `hosts`.
    fn execution(dir: &std::path::Path, hosts: &[&str]) -> (Store, Uuid) {
        let store = Store::File(FileStore::open(dir.to_path_buf()).unwrap());
        let id = Uuid::now_v7();
        let manifest = Manifest {
            format: FORMAT,
            id,
            version: 1,
            floor: None,
            created: cattle_core::now_rfc3339(),
            expires: cattle_core::now_rfc3339(),
            publisher: "test".to_string(),
            config: "cfg".to_string(),
            steps: 2,
            bundle: BundleRef {
                sha256: "0".repeat(64),
                size: 1,
            },
            hosts: hosts.iter().map(|h| host(h)).collect(),
            vars: false,
            check: false,
            diff: false,
            message: None,
        };
        put(&store, &keys::manifest(id), &Envelope::unsigned(&manifest));
        (store, id)
    }

    fn put(store: &Store, key: &str, document: &impl Serialize) {
        let bytes = serde_json::to_vec(document).unwrap();
        put_bytes(store, key, bytes);
    }

    fn put_bytes(store: &Store, key: &str, bytes: Vec<u8>) {
        let Store::File(files) = store else {
            unreachable!()
        };
        files.put(key, &bytes, Condition::Always).unwrap();
    }

    fn status(id: Uuid, of: &str, state: State) -> HostStatus {
        HostStatus {
            format: FORMAT,
            execution: id,
            host: host(of),
            state,
            steps: 2,
            step: None,
            started: cattle_core::now_rfc3339(),
            updated: cattle_core::now_rfc3339(),
            finished: None,
            error: None,
            seq: 1,
            agent_version: "test".to_string(),
            paused: None,
            log: None,
            results: Vec::new(),
        }
    }

    fn states(report: &Report) -> Vec<(&str, HostState)> {
        report
            .hosts
            .iter()
            .map(|h| (h.host.as_str(), h.state))
            .collect()
    }

    #[tokio::test]
    async fn one_hosts_bad_status_makes_only_that_host_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b", "c", "d", "e", "f"]);
        put(
            &store,
            &keys::status(id, &host("a")),
            &status(id, "a", State::Done),
        );
        put_bytes(
            &store,
            &keys::status(id, &host("b")),
            br#"{"format":2,"seq":-1}"#.to_vec(),
        );
        // Valid documents, but about another host, another execution, a newer format.
        put(
            &store,
            &keys::status(id, &host("c")),
            &status(id, "a", State::Done),
        );
        let other = Uuid::now_v7();
        put(
            &store,
            &keys::status(id, &host("d")),
            &status(other, "d", State::Done),
        );
        let mut newer = status(id, "e", State::Done);
        newer.format = FORMAT + 1;
        put(&store, &keys::status(id, &host("e")), &newer);

        let report = fetch(&store, id).await.unwrap();
        use HostState::*;
        assert_eq!(
            states(&report),
            [
                ("a", Done),
                ("b", Unreadable),
                ("c", Unreadable),
                ("d", Unreadable),
                ("e", Unreadable),
                ("f", Pending)
            ]
        );
        let reason = |i: usize| report.hosts[i].reason.clone().unwrap();
        let location = store.location(&keys::status(id, &host("b")));
        assert!(
            reason(1).starts_with(&format!("`{location}` is not a valid status document: ")),
            "{}",
            reason(1)
        );
        assert!(
            reason(2).ends_with("it says it is from host `a`, but it is stored under host `c`")
        );
        assert!(reason(3).contains(&format!("it says it is about execution {other}")));
        assert!(reason(4).contains("upgrade cattle"));
        assert_eq!(report.exit_code(), exit::HOSTS_FAILED);
        let table = report.table();
        assert!(
            table.contains("6 hosts: 1 DONE, 0 ERROR, 0 PROGRESS, 1 PENDING, 4 UNREADABLE"),
            "{table}"
        );
        let row = table.lines().find(|l| l.starts_with("b ")).unwrap();
        assert!(
            row.contains("UNREADABLE") && row.contains(&location),
            "{row}"
        );

        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["hosts"][1]["state"], "UNREADABLE");
        assert_eq!(json["hosts"][1]["reason"], reason(1));
        assert!(json["hosts"][0].get("reason").is_none());
    }

    #[tokio::test]
    async fn step_results_are_counted_per_host_and_more_results_than_steps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b"]);
        use cattle_core::wire::StepResult::*;
        let mut counted = status(id, "a", State::Error);
        counted.steps = 4;
        counted.results = vec![Some(Changed), Some(Unchanged), None, Some(Failed)];
        put(&store, &keys::status(id, &host("a")), &counted);
        // A writer without the key claims results for steps the execution lacks.
        let mut padded = status(id, "b", State::Progress);
        padded.steps = 1;
        padded.results = vec![Some(Changed); 1000];
        put(&store, &keys::status(id, &host("b")), &padded);

        let report = fetch(&store, id).await.unwrap();
        assert_eq!(
            report.hosts[0].results,
            Some(Recap {
                changed: 1,
                unchanged: 1,
                failed: 1,
                ..Recap::default()
            })
        );
        assert_eq!(report.hosts[1].state, HostState::Unreadable);
        assert!(
            report.hosts[1]
                .reason
                .as_deref()
                .unwrap()
                .ends_with("it has results for 1000 steps, but says the execution has 1"),
            "{:?}",
            report.hosts[1].reason
        );
        let table = report.table();
        assert!(
            table
                .lines()
                .any(|l| l == "steps: 1 changed, 1 unchanged, 1 failed"),
            "{table}"
        );
        assert!(!table.contains("WOULD CHANGE"), "{table}");
    }

    #[tokio::test]
    async fn check_mode_results_are_counted_in_columns_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b", "c"]);
        use cattle_core::wire::StepResult::*;
        let mut checked = status(id, "a", State::Done);
        checked.steps = 4;
        checked.results = vec![
            Some(WouldChange),
            Some(InState),
            Some(Unknown),
            Some(WouldChange),
        ];
        put(&store, &keys::status(id, &host("a")), &checked);
        let mut failed = status(id, "b", State::Error);
        failed.results = vec![Some(InState), Some(Failed)];
        put(&store, &keys::status(id, &host("b")), &failed);

        let report = fetch(&store, id).await.unwrap();
        let recap = report.hosts[0].results.unwrap();
        assert_eq!(
            (
                recap.would_change,
                recap.in_state,
                recap.unknown,
                recap.changed
            ),
            (2, 1, 1, 0)
        );
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with(
                "HOST  STATE     STEP   CHANGED  UNCHANGED  FAILED  WOULD CHANGE  IN STATE  UNKNOWN  UPDATED"
            ),
            "{table}"
        );
        assert!(
            lines[1].starts_with("a     DONE      -            0          0       0             2         1        1  "),
            "{table}"
        );
        assert!(
            lines[3].starts_with("c     PENDING   -            -          -       -             -         -        -  "),
            "{table}"
        );
        assert!(
            lines.contains(
                &"steps: 0 changed, 0 unchanged, 1 failed, 2 would change, 2 in state, 1 unknown"
            ),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["hosts"][0]["status"]["results"][0], "would_change");
        assert_eq!(json["hosts"][0]["results"]["would_change"], 2);
    }

    #[tokio::test]
    async fn a_status_larger_than_the_limit_is_unreadable_unread() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b"]);
        let key = keys::status(id, &host("a"));
        put_bytes(&store, &key, Vec::new());
        let file = std::fs::File::options()
            .write(true)
            .open(store.location(&key))
            .unwrap();
        // Sparse: the store must refuse it by its size, before reading it.
        file.set_len(MAX_DOCUMENT_BYTES + 1).unwrap();
        let report = fetch(&store, id).await.unwrap();
        assert_eq!(report.hosts[0].state, HostState::Unreadable);
        assert_eq!(
            report.hosts[0].reason.as_deref().unwrap(),
            format!("`{}` is larger than 16777216 bytes", store.location(&key))
        );
        assert_eq!(report.hosts[1].state, HostState::Pending);
    }

    #[tokio::test]
    async fn a_manifest_whose_bundle_hash_could_leave_the_bundles_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a"]);
        let key = keys::manifest(id);
        let mut manifest = manifest(&store, id).await.unwrap();
        manifest.bundle.sha256 = "../../victim/backup".to_string();
        put(&store, &key, &Envelope::unsigned(&manifest));
        let err = fetch(&store, id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` is not a valid manifest: field `bundle.sha256`: `../../victim/backup` is \
                 not a sha256: 64 lower-case hex digits expected",
                store.location(&key)
            )
        );
        manifest.bundle.sha256 = "0".repeat(64);
        manifest.id = Uuid::now_v7();
        put(&store, &key, &Envelope::unsigned(&manifest));
        let err = fetch(&store, id).await.unwrap_err().to_string();
        assert!(err.contains("field `id` is"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_gives_up_on_unreadable_hosts_after_its_patience_only() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b"]);
        put(
            &store,
            &keys::status(id, &host("a")),
            &status(id, "a", State::Done),
        );
        put_bytes(&store, &keys::status(id, &host("b")), b"\x1b[2J".to_vec());
        let every = Duration::from_secs(1);
        let patience = Duration::from_secs(60);

        let started = Instant::now();
        let report = wait(&store, id, None, every, patience).await.unwrap();
        let waited = started.elapsed();
        assert!(
            (Duration::from_secs(59)..=Duration::from_secs(61)).contains(&waited),
            "{waited:?}"
        );
        assert_eq!(report.exit_code(), exit::HOSTS_FAILED);

        // A timeout shorter than the patience still ends the wait.
        let started = Instant::now();
        wait(&store, id, Some(Duration::from_secs(5)), every, patience)
            .await
            .unwrap();
        assert!(started.elapsed() <= Duration::from_secs(5));

        // While another host is unfinished, the patience does not start.
        std::fs::remove_file(store.location(&keys::status(id, &host("a")))).unwrap();
        let started = Instant::now();
        let report = wait(&store, id, Some(Duration::from_secs(300)), every, patience)
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(299));
        assert_eq!(report.exit_code(), exit::HOSTS_FAILED);
    }

    #[tokio::test]
    async fn table_cells_show_what_hosts_wrote_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a"]);
        let mut hostile = status(id, "a", State::Error);
        hostile.error = Some("\x1b[2J\x1b]52;c;aGk=\x07\rStep 2 completed successfully".into());
        hostile.updated = "\x1b]0;owned\x07".to_string();
        put(&store, &keys::status(id, &host("a")), &hostile);
        let report = fetch(&store, id).await.unwrap();
        let table = report.table();
        assert!(!table.contains('\x1b') && !table.contains('\r') && !table.contains('\x07'));
        assert!(
            table.contains("\\x1b[2J\\x1b]52;c;aGk=\\x07\\rStep 2 completed successfully"),
            "{table}"
        );
        assert!(table.contains("\\x1b]0;owned\\x07"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["hosts"][0]["status"]["error"], hostile.error.unwrap());
    }
}

//! `cattle status ID`: read what hosts reported (`cattle log ID` is in
//! [`crate::log`]).
//!
//! A host writes its own status and log, so one host's objects may be
//! anything: too large, not JSON, about another host. Such a host is shown as
//! [`HostState::Unreadable`] with the reason, and every other host as usual;
//! only a failure of the store itself (unreachable, no credentials) fails a
//! whole command. The manifest is read without checking its signature, so
//! every field of it that could become part of a key is checked first.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Fetched, Store, StoreError};
use cattle_core::wire::{
    Conflict, Envelope, FORMAT, HostStatus, MAX_DOCUMENT_BYTES, Manifest, Recap, State, StepResult,
};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::style::Style;
use crate::{exit, for_each_bounded, terminal};

/// How long `cattle status --wait` keeps waiting for hosts whose status is
/// UNREADABLE once no host is PENDING or PROGRESS. Only the host can make its
/// status readable again, by writing a new one, which a running agent does at
/// its next step; a status that stays unreadable must not hold the wait forever.
pub const UNREADABLE_PATIENCE: Duration = Duration::from_secs(60);

/// An execution as the store shows it now.
#[derive(Debug, Clone)]
pub struct Report {
    pub manifest: Manifest,
    /// Every host of the manifest, in its order.
    pub hosts: Vec<HostRow>,
    /// Whether DONE hosts' status documents were read ([`Detail::All`]):
    /// only then are every host's step results known.
    pub steps: bool,
}

/// Where a host is with an execution, as the reader sees it: the states hosts
/// report ([`State`]), and UNREADABLE for a host whose objects cannot be read.
///
/// `cattle status --state` names them in lower case, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[value(rename_all = "lower")]
pub enum HostState {
    Error,
    /// A rolled-out execution the host never started: the rollout's error
    /// budget was spent ([`HostRow::status`]'s `error` says how).
    Halted,
    Cancelled,
    /// The host's status document cannot be read or is not a valid status of
    /// this host for this execution; [`HostRow::reason`] says why. It is not
    /// final: the host may still be running, and may write a valid one.
    Unreadable,
    Pending,
    /// A rolled-out execution the host has not started: it waits for its
    /// wave, a bake, a pause, its window or its start time.
    Waiting,
    Progress,
    Done,
}

impl From<State> for HostState {
    fn from(state: State) -> HostState {
        match state {
            State::Pending => HostState::Pending,
            State::Progress => HostState::Progress,
            State::Done => HostState::Done,
            State::Error => HostState::Error,
            State::Cancelled => HostState::Cancelled,
            State::Waiting => HostState::Waiting,
            State::Halted => HostState::Halted,
        }
    }
}

impl HostState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            HostState::Done | HostState::Error | HostState::Cancelled | HostState::Halted
        )
    }

    /// PENDING, WAITING or PROGRESS: the host has work left, as far as anyone
    /// can tell.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            HostState::Pending | HostState::Waiting | HostState::Progress
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Pending => "PENDING",
            HostState::Progress => "PROGRESS",
            HostState::Done => "DONE",
            HostState::Error => "ERROR",
            HostState::Cancelled => "CANCELLED",
            HostState::Unreadable => "UNREADABLE",
            HostState::Waiting => "WAITING",
            HostState::Halted => "HALTED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HostRow {
    pub host: HostId,
    pub state: HostState,
    /// When the host last reported (RFC 3339); absent for PENDING and UNREADABLE.
    pub updated: Option<String>,
    /// What the host last reported. Absent for PENDING and UNREADABLE, and
    /// for DONE hosts whose status document was not read or is not readable
    /// (their DONE marker is enough to know the state). Boxed: a status
    /// document is several times the size of the rest of a row, and most
    /// rows of a large execution have none.
    pub status: Option<Box<HostStatus>>,
    /// How many of the host's steps changed something, found their state in
    /// place, or failed (in a check-mode run: would change, were in state,
    /// failed or could not be checked); absent when its status is.
    pub results: Option<Recap>,
    /// Why the host's status cannot be read; only for UNREADABLE.
    pub reason: Option<String>,
    /// A second agent with this host ID found another one active and ran
    /// nothing of the execution: two machines use one host ID.
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
    fetch_detail(store, id, |_| Detail::All).await
}

/// Every host's state, as cheaply as it can be known: hosts that finished
/// DONE from one listing of their DONE markers (a page per 1,000 hosts), and
/// only the others' status documents, one request each.
pub async fn fetch_states(store: &Store, id: Uuid) -> anyhow::Result<Report> {
    fetch_detail(store, id, |_| Detail::Unfinished).await
}

/// What `cattle status` shows: every host's state as [`fetch_states`] knows
/// it, and DONE hosts' step results too ([`fetch`]) when `steps` asks for
/// them or the execution is a check-mode one, whose point is its results.
pub async fn fetch_view(store: &Store, id: Uuid, steps: bool) -> anyhow::Result<Report> {
    fetch_detail(store, id, |manifest| view_detail(manifest, steps)).await
}

fn view_detail(manifest: &Manifest, steps: bool) -> Detail {
    if steps || manifest.check {
        Detail::All
    } else {
        Detail::Unfinished
    }
}

async fn fetch_detail(
    store: &Store,
    id: Uuid,
    detail: impl FnOnce(&Manifest) -> Detail,
) -> anyhow::Result<Report> {
    // The markers are listed while the manifest is read and checked: for
    // 100,000 hosts the listing of DONE markers is most of the time `status`
    // takes.
    let (manifest, markers) = tokio::join!(manifest(store, id), markers(store, id));
    let manifest = manifest?;
    let detail = detail(&manifest);
    let hosts = rows(store, id, &manifest, detail, markers?).await?;
    Ok(Report {
        manifest,
        hosts,
        steps: detail == Detail::All,
    })
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
    rows(store, id, manifest, detail, markers(store, id).await?).await
}

/// [`hosts`], given the markers listed (by [`markers`]).
async fn rows(
    store: &Store,
    id: Uuid,
    manifest: &Manifest,
    detail: Detail,
    markers: Markers,
) -> Result<Vec<HostRow>, StoreError> {
    let Markers {
        mut done,
        conflicts,
    } = markers;
    // A DONE host whose results are not asked for needs no request: its row
    // is made here, and only the others' are read (64 at once), so that a
    // status of 100,000 DONE hosts spawns no task per host.
    let mut rows: Vec<Option<HostRow>> = Vec::with_capacity(manifest.hosts.len());
    let mut to_read = Vec::new();
    for (i, host) in manifest.hosts.iter().enumerate() {
        match (done.remove(host.as_str()), detail) {
            (Some(modified), Detail::Unfinished) => {
                rows.push(Some(done_row(host.clone(), modified, None)));
            }
            (marker, _) => {
                rows.push(None);
                to_read.push((i, host.clone(), marker));
            }
        }
    }
    let read = for_each_bounded(to_read, |(i, host, marker)| {
        let store = store.clone();
        async move {
            let row = match marker {
                // The marker decides the state; the status document, when it
                // can be read, adds the step results.
                Some(modified) => {
                    let status = read_status(&store, id, host.clone())
                        .await?
                        .status
                        .filter(|s| s.state == State::Done);
                    done_row(host, modified, status)
                }
                None => read_status(&store, id, host).await?,
            };
            Ok::<_, StoreError>((i, row))
        }
    })
    .await;
    for result in read {
        let (i, row) = result?;
        rows[i] = Some(row);
    }
    let mut rows: Vec<HostRow> = rows
        .into_iter()
        .map(|row| row.expect("every host's row is made or read"))
        .collect();
    add_conflicts(store, id, &mut rows, &conflicts).await?;
    Ok(rows)
}

/// What an execution's markers say of its hosts: who finished DONE, and for
/// whom a second agent stood back.
struct Markers {
    /// The hosts that finished DONE, with when their marker was written.
    done: HashMap<String, Option<SystemTime>>,
    /// The hosts with a conflict marker.
    conflicts: HashSet<String>,
}

/// Both listings of [`Markers`], at once.
async fn markers(store: &Store, id: Uuid) -> Result<Markers, StoreError> {
    let (done, conflicts) = tokio::try_join!(done_markers(store, id), conflict_markers(store, id))?;
    Ok(Markers { done, conflicts })
}

/// The hosts that finished DONE, with when their marker was written: one
/// listing, a page per 1,000 hosts.
async fn done_markers(
    store: &Store,
    id: Uuid,
) -> Result<HashMap<String, Option<SystemTime>>, StoreError> {
    let prefix = keys::done_prefix(id);
    let entries = store.list_entries(&prefix).await?;
    let mut done = HashMap::with_capacity(entries.len());
    done.extend(entries.into_iter().filter_map(|mut e| {
        // The key's own allocation becomes the host's: no copy per host.
        e.key.starts_with(&prefix).then(|| {
            e.key.drain(..prefix.len());
            (e.key, e.modified)
        })
    }));
    Ok(done)
}

/// The row of a host whose DONE marker is there, `modified` when it was
/// written; `status` when its status document was read and says DONE.
fn done_row(
    host: HostId,
    modified: Option<SystemTime>,
    status: Option<Box<HostStatus>>,
) -> HostRow {
    HostRow {
        host,
        state: HostState::Done,
        updated: modified.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        results: status.as_deref().map(HostStatus::recap),
        status,
        reason: None,
        conflict: None,
    }
}

/// How many keys a listing returns per request (S3's ListObjectsV2 at most).
const LIST_PAGE: usize = 1000;

/// Reads an execution's host states poll after poll (`--wait`, `--watch`,
/// `log --follow`) as [`fetch_states`] does, remembering each unfinished
/// host's last status document and its ETag so that it is read again only
/// once it changed.
///
/// Each poll reads the manifest, lists the DONE markers (the marker still
/// decides DONE) and then learns which of the other hosts changed the
/// cheaper of two ways: one listing of every host's objects
/// (`executions/<id>/hosts/`, a page per 1,000 status documents and log
/// parts), then a read of each status document whose tag differs from the
/// one remembered, or a conditional read (If-None-Match) of each unfinished
/// host's status document. With 2,000 hosts running and a few changing per
/// poll that is a handful of requests instead of 2,000; with one host left,
/// one conditional read. A host with no status object in the listing is
/// PENDING unread. Whatever is read is read as [`fetch_states`] reads it: at
/// most [`MAX_DOCUMENT_BYTES`], checked to be about this host and execution,
/// UNREADABLE with the reason otherwise.
#[derive(Debug)]
pub struct Poller {
    id: Uuid,
    seen: HashMap<HostId, Seen>,
    /// How many objects the last listing of the hosts' objects held: what
    /// the next one costs, in pages.
    listed: Option<usize>,
}

/// What a [`Poller`] last read of a host.
#[derive(Debug)]
struct Seen {
    /// The host's row as its status document made it (no conflict).
    row: HostRow,
    /// The ETag the read returned, for a conditional read; none when the
    /// object could not be read.
    got: Option<String>,
    /// The tag the listing that led to that read showed.
    listed: Option<String>,
}

impl Seen {
    /// Whether a listing showing `tag` shows the object as it was read.
    fn shows(&self, tag: &str) -> bool {
        self.listed.as_deref() == Some(tag) || self.got.as_deref() == Some(tag)
    }
}

/// A status document read only if it changed.
enum Read {
    Unchanged,
    /// The host's row, and the ETag of what made it.
    Row(Box<HostRow>, Option<String>),
}

impl Poller {
    pub fn new(id: Uuid) -> Poller {
        Poller {
            id,
            seen: HashMap::new(),
            listed: None,
        }
    }

    /// Every host's state now, as [`fetch_states`] would show it.
    pub async fn poll(&mut self, store: &Store) -> anyhow::Result<Report> {
        let manifest = manifest(store, self.id).await?;
        let hosts = self.hosts(store, &manifest).await?;
        Ok(Report {
            manifest,
            hosts,
            steps: false,
        })
    }

    async fn hosts(
        &mut self,
        store: &Store,
        manifest: &Manifest,
    ) -> Result<Vec<HostRow>, StoreError> {
        let id = self.id;
        let Markers { done, conflicts } = markers(store, id).await?;
        self.seen.retain(|h, _| !done.contains_key(h.as_str()));
        let unfinished = manifest
            .hosts
            .iter()
            .filter(|h| !done.contains_key(h.as_str()))
            .count();
        // The first time, guess one object per host.
        let pages = self
            .listed
            .unwrap_or(manifest.hosts.len())
            .div_ceil(LIST_PAGE)
            .max(1);
        let listing = if pages < unfinished {
            let entries = store.list_entries(&keys::host_objects_prefix(id)).await?;
            self.listed = Some(entries.len());
            Some(
                entries
                    .into_iter()
                    .map(|e| (e.key, e.etag))
                    .collect::<HashMap<String, String>>(),
            )
        } else {
            None
        };
        let mut rows: Vec<Option<HostRow>> = Vec::with_capacity(manifest.hosts.len());
        let mut reads = Vec::new();
        for (i, host) in manifest.hosts.iter().enumerate() {
            if let Some(modified) = done.get(host.as_str()) {
                rows.push(Some(done_row(host.clone(), *modified, None)));
                continue;
            }
            let seen = self.seen.get(host);
            let tag = match &listing {
                Some(listing) => match listing.get(&keys::status(id, host)) {
                    Some(tag) => Some(tag.clone()),
                    None => {
                        self.seen.remove(host);
                        rows.push(Some(pending_row(host.clone())));
                        continue;
                    }
                },
                None => None,
            };
            match (seen, &tag) {
                (Some(seen), Some(tag)) if seen.shows(tag) => rows.push(Some(seen.row.clone())),
                _ => {
                    let got = seen.and_then(|s| s.got.clone());
                    reads.push((i, host.clone(), got, tag));
                    rows.push(None);
                }
            }
        }
        let results = for_each_bounded(reads, |(i, host, got, tag)| {
            let store = store.clone();
            async move {
                let read = read_status_if_changed(&store, id, host.clone(), got.as_deref()).await;
                (i, host, tag, read)
            }
        })
        .await;
        for (i, host, tag, read) in results {
            match read? {
                Read::Unchanged => {
                    let seen = self
                        .seen
                        .get_mut(&host)
                        .expect("only a host read before is read conditionally");
                    if tag.is_some() {
                        seen.listed = tag;
                    }
                    rows[i] = Some(seen.row.clone());
                }
                Read::Row(row, got) => {
                    let row = *row;
                    rows[i] = Some(row.clone());
                    if row.state == HostState::Pending {
                        self.seen.remove(&host);
                    } else {
                        self.seen.insert(
                            host,
                            Seen {
                                row,
                                got,
                                listed: tag,
                            },
                        );
                    }
                }
            }
        }
        let mut rows: Vec<HostRow> = rows
            .into_iter()
            .map(|r| r.expect("every host has a row"))
            .collect();
        add_conflicts(store, id, &mut rows, &conflicts).await?;
        Ok(rows)
    }
}

/// The hosts for which a second agent recorded that it stood back
/// (`executions/<id>/conflicts/<host>`): one listing.
async fn conflict_markers(store: &Store, id: Uuid) -> Result<HashSet<String>, StoreError> {
    let prefix = keys::conflicts_prefix(id);
    Ok(store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// Mark the hosts of `marked` (listed by [`conflict_markers`]) with what
/// their second agent said: one read per such host.
async fn add_conflicts(
    store: &Store,
    id: Uuid,
    rows: &mut [HostRow],
    marked: &HashSet<String>,
) -> Result<(), StoreError> {
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
    match read_status_if_changed(store, id, host.clone(), None).await? {
        Read::Row(row, _) => Ok(*row),
        // Both stores refuse a "not modified" to a read without an ETag.
        Read::Unchanged => Err(StoreError::UnaskedNotModified {
            op: "read",
            location: store.location(&keys::status(id, &host)),
        }),
    }
}

/// [`read_status`], unless its ETag is still `etag`.
async fn read_status_if_changed(
    store: &Store,
    id: Uuid,
    host: HostId,
    etag: Option<&str>,
) -> Result<Read, StoreError> {
    let key = keys::status(id, &host);
    let object = match store.get_if_changed(&key, etag, MAX_DOCUMENT_BYTES).await {
        Ok(Fetched::Found(object)) => object,
        Ok(Fetched::NotModified) => return Ok(Read::Unchanged),
        Ok(Fetched::Missing) => return Ok(Read::Row(Box::new(pending_row(host)), None)),
        Err(e) => {
            return match unreadable(store, &key, e) {
                Ok(reason) => Ok(Read::Row(Box::new(HostRow::unreadable(host, reason)), None)),
                Err(e) => Err(e),
            };
        }
    };
    let row = match parse_status(&object.bytes, id, &host) {
        Ok(status) => HostRow {
            state: status.state.into(),
            updated: Some(status.updated.clone()),
            host,
            results: Some(status.recap()),
            status: Some(Box::new(status)),
            reason: None,
            conflict: None,
        },
        Err(why) => HostRow::unreadable(
            host,
            format!(
                "`{}` is not a valid status document: {why}",
                store.location(&key)
            ),
        ),
    };
    Ok(Read::Row(Box::new(row), Some(object.etag)))
}

/// The row of a host that has not reported.
fn pending_row(host: HostId) -> HostRow {
    HostRow {
        host,
        state: HostState::Pending,
        updated: None,
        status: None,
        results: None,
        reason: None,
        conflict: None,
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
        | StoreError::ClockSkew { .. }
        | StoreError::QuorumLost { .. } => Err(err),
    }
}

/// Poll every `every` until every host is DONE, ERROR, HALTED or CANCELLED, or
/// `timeout` passes. Hosts whose status is UNREADABLE are waited for too, but
/// once they are the only unfinished ones, for `patience` at most (see
/// [`UNREADABLE_PATIENCE`]). Each poll reads only what tells the states,
/// and of that only what changed ([`Poller`]); the report returned has DONE hosts' step results when
/// [`fetch_view`] would (`steps`, or a check-mode execution).
pub async fn wait(
    store: &Store,
    id: Uuid,
    timeout: Option<Duration>,
    every: Duration,
    patience: Duration,
    steps: bool,
) -> anyhow::Result<Report> {
    wait_with(store, id, timeout, every, patience, steps, &mut |_| Ok(())).await
}

/// [`wait`], showing each report read on the way to `seen` (`cattle status
/// --watch`); the last one, with what DONE hosts reported, is returned only.
pub async fn wait_with(
    store: &Store,
    id: Uuid,
    timeout: Option<Duration>,
    every: Duration,
    patience: Duration,
    steps: bool,
    seen: &mut dyn FnMut(&Report) -> std::io::Result<()>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut only_unreadable_since: Option<Instant> = None;
    let mut poller = Poller::new(id);
    loop {
        let report = poller.poll(store).await?;
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
            return match view_detail(&report.manifest, steps) {
                // Once more, with what DONE hosts reported, to show.
                Detail::All => fetch(store, id).await,
                Detail::Unfinished => Ok(report),
            };
        }
        tokio::time::sleep(every).await;
    }
}

impl Report {
    /// See [`exit`]: 0 all DONE; 3 some ERROR, CANCELLED or UNREADABLE, or a
    /// host ID used by two agents (needs attention); 4 some not finished.
    pub fn exit_code(&self) -> u8 {
        if self.hosts.iter().any(HostRow::needs_attention) {
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

    /// The hosts in one of the states `only` names (every host when it is
    /// empty), in the manifest's order.
    fn shown<'a>(&'a self, only: &'a [HostState]) -> impl Iterator<Item = &'a HostRow> + 'a {
        self.hosts
            .iter()
            .filter(move |h| only.is_empty() || only.contains(&h.state))
    }

    /// [`Report::table_of`] every host.
    pub fn table(&self) -> String {
        self.table_of(&[])
    }

    /// One row per host in one of the states `only` names (every host when it
    /// is empty), those that need attention first (ERROR, UNREADABLE, CANCELLED,
    /// other hosts two agents use), then PROGRESS, PENDING and DONE,
    /// then the summary of every host. Step-result columns only when DONE
    /// hosts' results were read ([`Report::steps`]). Every cell that comes
    /// from the store is shown through [`terminal::line`].
    pub fn table_of(&self, only: &[HostState]) -> String {
        self.table_styled(only, Style::default())
    }

    /// [`Report::table_of`], with the state of each host painted in `style`.
    pub fn table_styled(&self, only: &[HostState], style: Style) -> String {
        let mut rows: Vec<&HostRow> = self.shown(only).collect();
        rows.sort_by_key(|r| r.triage());
        // Check-mode results get columns of their own, shown only when some
        // host has them.
        let check = self.steps
            && self
                .hosts
                .iter()
                .any(|h| h.results.is_some_and(|r| r.has_check_results()));
        use Align::{Left, Right};
        let mut columns = vec![("HOST", Left), ("STATE", Left), ("STEP", Left)];
        if self.steps {
            columns.extend([("CHANGED", Right), ("UNCHANGED", Right), ("FAILED", Right)]);
            if check {
                columns.extend([
                    ("WOULD CHANGE", Right),
                    ("IN STATE", Right),
                    ("UNKNOWN", Right),
                ]);
            }
        }
        columns.extend([("UPDATED", Left), ("DETAIL", Left)]);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                let (step, detail) = self.step_and_detail(row);
                let mut cells = vec![
                    terminal::line(row.host.as_str()),
                    row.state.as_str().to_string(),
                    terminal::line_owned(step),
                ];
                if self.steps {
                    let count = |n: fn(&Recap) -> usize| {
                        row.results
                            .as_ref()
                            .map_or("-".to_string(), |r| n(r).to_string())
                    };
                    cells.extend([
                        count(|r| r.changed),
                        count(|r| r.unchanged),
                        count(|r| r.failed),
                    ]);
                    if check {
                        cells.extend([
                            count(|r| r.would_change),
                            count(|r| r.in_state),
                            count(|r| r.unknown),
                        ]);
                    }
                }
                cells.push(terminal::line(row.updated.as_deref().unwrap_or("-")));
                cells.push(terminal::line(first_line(&detail)));
                cells
            })
            .collect();
        // Column 1 is STATE: Cattle's own words, painted once padded.
        let mut out = render(&columns, &cells, |column, padded| {
            (column == 1 && style.enabled()).then(|| style.state(padded.trim_end(), padded.len()))
        });
        let _ = writeln!(out, "{}", self.summary_line(rows.len(), only));
        if self.steps {
            let mut total = Recap::default();
            for results in self.hosts.iter().filter_map(|h| h.results.as_ref()) {
                total.merge(results);
            }
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
        }
        if self.manifest.check {
            out.push_str("check mode: hosts only ran their checks; nothing was changed\n");
        }
        for row in &rows {
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

    /// The STEP and DETAIL cells of `row`, unescaped.
    fn step_and_detail(&self, row: &HostRow) -> (String, String) {
        match &row.status {
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
                    (None, _) if s.state == State::Waiting => s.waiting.clone().unwrap_or_default(),
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
        }
    }

    /// `2000 hosts: 1999 DONE, 1 ERROR (web-1234)`: how many hosts are in
    /// each state (states no host is in are left out), the first hosts of
    /// each state that needs attention by name, the hosts two agents use,
    /// and with `--state`, how many of the hosts are shown.
    pub fn summary_line(&self, shown: usize, only: &[HostState]) -> String {
        use HostState::*;
        let mut parts = Vec::new();
        for state in [
            Done, Error, Halted, Unreadable, Cancelled, Progress, Waiting, Pending,
        ] {
            let hosts: Vec<&HostRow> = self.hosts.iter().filter(|h| h.state == state).collect();
            if hosts.is_empty() {
                continue;
            }
            let mut part = format!("{} {}", hosts.len(), state.as_str());
            if state.needs_attention() {
                let _ = write!(part, " ({})", first_names(&hosts));
            }
            parts.push(part);
        }
        let mut line = format!(
            "{}: {}",
            cattle_core::count(self.hosts.len() as u64, "host"),
            parts.join(", ")
        );
        let conflicts: Vec<&HostRow> = self.hosts.iter().filter(|h| h.conflict.is_some()).collect();
        if !conflicts.is_empty() {
            let _ = write!(
                line,
                "; {} CONFLICT ({})",
                conflicts.len(),
                first_names(&conflicts)
            );
        }
        if !only.is_empty() {
            let names: Vec<String> = only
                .iter()
                .map(|s| s.as_str().to_ascii_lowercase())
                .collect();
            let _ = write!(line, "; {shown} shown (--state {})", names.join(","));
        }
        line
    }

    /// The report as a `cattle.status.v1` JSON document (see `docs/json.md`)
    /// listing every host, with nothing in it a terminal would act on (see
    /// [`terminal::json`]).
    pub fn json(&self) -> String {
        self.json_of(&[])
    }

    /// [`Report::json`] listing only the hosts in one of the states `only`
    /// names (every host when it is empty); the summary counts every host.
    pub fn json_of(&self, only: &[HostState]) -> String {
        let hosts: Vec<HostJson<'_>> = self.shown(only).map(HostJson::of).collect();
        let mut states = StateCounts::default();
        let mut results = ResultCounts::default();
        let mut results_known = 0;
        for row in &self.hosts {
            states.add(row.state);
            if let Some(r) = &row.results {
                results.add(r);
                results_known += 1;
            }
        }
        let m = &self.manifest;
        let document = StatusJson {
            schema: STATUS_SCHEMA,
            execution: ExecutionJson {
                id: m.id,
                version: m.version,
                created: &m.created,
                expires: &m.expires,
                publisher: &m.publisher,
                message: m.message.as_deref(),
                config: &m.config,
                steps: m.steps,
                bundle: BundleJson {
                    sha256: &m.bundle.sha256,
                    size: m.bundle.size,
                },
                vars: m.vars,
                check: m.check,
                diff: m.diff,
                hosts: m.hosts.len(),
                select: &m.select,
            },
            summary: SummaryJson {
                hosts: self.hosts.len(),
                shown: hosts.len(),
                states,
                conflicts: self.hosts.iter().filter(|h| h.conflict.is_some()).count(),
                results,
                results_known,
                exit_code: self.exit_code(),
                needs_attention: self
                    .hosts
                    .iter()
                    .filter(|h| h.needs_attention())
                    .map(|h| h.host.as_str())
                    .collect(),
            },
            hosts,
        };
        terminal::json(&serde_json::to_string_pretty(&document).expect("reports serialize"))
    }
}

impl HostState {
    /// ERROR, CANCELLED, UNREADABLE: an operator must look at the host.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            HostState::Error | HostState::Halted | HostState::Cancelled | HostState::Unreadable
        )
    }
}

impl HostRow {
    /// The host needs attention: its state does, or two agents use its host ID.
    pub fn needs_attention(&self) -> bool {
        self.conflict.is_some() || self.state.needs_attention()
    }

    /// Where the host's row goes in the table: ERROR, UNREADABLE, HALTED,
    /// CANCELLED, other hosts two agents use, PROGRESS, WAITING, PENDING, DONE.
    fn triage(&self) -> u8 {
        match self.state {
            HostState::Error => 0,
            HostState::Unreadable => 1,
            HostState::Halted => 2,
            HostState::Cancelled => 3,
            _ if self.conflict.is_some() => 4,
            HostState::Progress => 5,
            HostState::Waiting => 6,
            HostState::Pending => 7,
            HostState::Done => 8,
        }
    }
}

/// `web-3, web-9, web-12 and 4 more`: the first three hosts by name.
fn first_names(hosts: &[&HostRow]) -> String {
    const NAMED: usize = 3;
    let names: Vec<String> = hosts
        .iter()
        .take(NAMED)
        .map(|h| terminal::line(h.host.as_str()))
        .collect();
    match hosts.len().saturating_sub(NAMED) {
        0 => names.join(", "),
        more => format!("{} and {more} more", names.join(", ")),
    }
}

#[derive(Debug, Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table: a header line and a line per row, each column as wide as its
/// widest cell (header included) and two spaces apart; the last column is not
/// padded and no line ends in spaces. Cells are already escaped. `paint`
/// may replace a row's padded cell (column index, padded text) with a
/// painted one of the same width on screen; the header is never painted.
fn render(
    columns: &[(&str, Align)],
    rows: &[Vec<String>],
    paint: impl Fn(usize, &str) -> Option<String>,
) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (header, _))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // One buffer for the whole table and one for a cell: a table of 100,000
    // hosts is written without an allocation per cell. The last column is
    // not padded, and one long cell in it must not size every line.
    let padded_len: usize = widths.iter().rev().skip(1).map(|w| w + 2).sum();
    let mut out = String::with_capacity((rows.len() + 1) * (padded_len + 1));
    let mut padded = String::new();
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    for (n, cells) in std::iter::once(&header).chain(rows).enumerate() {
        let start = out.len();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            padded.clear();
            match columns[i].1 {
                Align::Left if i + 1 == columns.len() => padded.push_str(cell),
                Align::Left => {
                    padded.push_str(cell);
                    padded.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    padded.extend(std::iter::repeat_n(' ', pad));
                    padded.push_str(cell);
                }
            }
            match (n > 0).then(|| paint(i, &padded)).flatten() {
                Some(painted) => out.push_str(&painted),
                None => out.push_str(&padded),
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    }
    out
}

/// The schema of `cattle status --json`; see `docs/json.md`.
pub const STATUS_SCHEMA: &str = "cattle.status.v1";

/// `cattle status --json`: the fields, in this order, are part of
/// [`STATUS_SCHEMA`]; docs/json.md describes each.
#[derive(Serialize)]
struct StatusJson<'a> {
    schema: &'static str,
    execution: ExecutionJson<'a>,
    summary: SummaryJson<'a>,
    hosts: Vec<HostJson<'a>>,
}

#[derive(Serialize)]
struct ExecutionJson<'a> {
    id: Uuid,
    version: u64,
    created: &'a str,
    expires: &'a str,
    publisher: &'a str,
    message: Option<&'a str>,
    config: &'a str,
    steps: usize,
    bundle: BundleJson<'a>,
    vars: bool,
    check: bool,
    diff: bool,
    hosts: usize,
    select: &'a [String],
}

#[derive(Serialize)]
struct BundleJson<'a> {
    sha256: &'a str,
    size: u64,
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    hosts: usize,
    shown: usize,
    states: StateCounts,
    conflicts: usize,
    results: ResultCounts,
    results_known: usize,
    exit_code: u8,
    needs_attention: Vec<&'a str>,
}

#[derive(Default, Serialize)]
struct StateCounts {
    error: usize,
    halted: usize,
    cancelled: usize,
    unreadable: usize,
    pending: usize,
    waiting: usize,
    progress: usize,
    done: usize,
}

impl StateCounts {
    fn add(&mut self, state: HostState) {
        *match state {
            HostState::Error => &mut self.error,
            HostState::Halted => &mut self.halted,
            HostState::Cancelled => &mut self.cancelled,
            HostState::Unreadable => &mut self.unreadable,
            HostState::Pending => &mut self.pending,
            HostState::Waiting => &mut self.waiting,
            HostState::Progress => &mut self.progress,
            HostState::Done => &mut self.done,
        } += 1;
    }
}

/// Every count of a [`Recap`], the check-mode ones included even when 0.
#[derive(Default, Serialize)]
struct ResultCounts {
    changed: usize,
    unchanged: usize,
    failed: usize,
    would_change: usize,
    in_state: usize,
    unknown: usize,
}

impl ResultCounts {
    fn add(&mut self, r: &Recap) {
        self.changed += r.changed;
        self.unchanged += r.unchanged;
        self.failed += r.failed;
        self.would_change += r.would_change;
        self.in_state += r.in_state;
        self.unknown += r.unknown;
    }
}

#[derive(Serialize)]
struct HostJson<'a> {
    host: &'a str,
    state: HostState,
    step: Option<StepJson<'a>>,
    updated: Option<&'a str>,
    started: Option<&'a str>,
    finished: Option<&'a str>,
    error: Option<&'a str>,
    paused: Option<&'a str>,
    results: Option<ResultCounts>,
    step_results: Option<&'a [Option<StepResult>]>,
    agent_version: Option<&'a str>,
    reason: Option<&'a str>,
    conflict: Option<&'a str>,
}

#[derive(Serialize)]
struct StepJson<'a> {
    number: usize,
    of: usize,
    facility: &'a str,
    description: &'a str,
    attempt: u32,
    attempts: u32,
}

impl<'a> HostJson<'a> {
    /// Everything known of the host, whether or not its status document was
    /// read: a DONE host known from its marker alone has its state and
    /// `updated` (the marker's time), and `null` for what only the document says.
    fn of(row: &'a HostRow) -> HostJson<'a> {
        let status = row.status.as_ref();
        HostJson {
            host: row.host.as_str(),
            state: row.state,
            step: status.and_then(|s| {
                s.step.as_ref().map(|st| StepJson {
                    number: st.number,
                    of: s.steps,
                    facility: &st.facility,
                    description: &st.description,
                    attempt: st.attempt,
                    attempts: st.attempts,
                })
            }),
            updated: row.updated.as_deref(),
            started: status.map(|s| s.started.as_str()),
            finished: status.and_then(|s| s.finished.as_deref()),
            error: status.and_then(|s| s.error.as_deref()),
            paused: status.and_then(|s| s.paused.as_deref()),
            results: row.results.as_ref().map(|r| {
                let mut counts = ResultCounts::default();
                counts.add(r);
                counts
            }),
            step_results: status.map(|s| s.results.as_slice()),
            agent_version: status.map(|s| s.agent_version.as_str()),
            reason: row.reason.as_deref(),
            conflict: row.conflict.as_deref(),
        }
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
            rollout: None,
            select: Vec::new(),
            grouped: false,
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
            waiting: None,
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
            table.contains("6 hosts: 1 DONE, 4 UNREADABLE (b, c, d and 1 more), 1 PENDING\n"),
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
        assert!(json["hosts"][0]["reason"].is_null());
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
                "HOST  STATE    STEP  CHANGED  UNCHANGED  FAILED  WOULD CHANGE  IN STATE  UNKNOWN  UPDATED"
            ),
            "{table}"
        );
        // The host that needs attention first, DONE last.
        assert!(
            lines[1].starts_with(
                "b     ERROR    -           0          0       1             0         1        0  "
            ),
            "{table}"
        );
        assert_eq!(
            lines[2],
            "c     PENDING  -           -          -       -             -         -        -  -",
            "{table}"
        );
        assert!(
            lines[3].starts_with(
                "a     DONE     -           0          0       0             2         1        1  "
            ),
            "{table}"
        );
        assert!(
            lines.contains(
                &"steps: 0 changed, 0 unchanged, 1 failed, 2 would change, 2 in state, 1 unknown"
            ),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["hosts"][0]["step_results"][0], "would_change");
        assert_eq!(json["hosts"][0]["results"]["would_change"], 2);
    }

    /// A host that finished DONE as its agent leaves it: the status document
    /// (one step changed, one unchanged), then the marker.
    fn done(store: &Store, id: Uuid, of: &str) {
        use cattle_core::wire::StepResult::*;
        let mut done = status(id, of, State::Done);
        done.results = vec![Some(Changed), Some(Unchanged)];
        put(store, &keys::status(id, &host(of)), &done);
        put_bytes(store, &keys::done(id, &host(of)), Vec::new());
    }

    fn failed(store: &Store, id: Uuid, of: &str, state: State, error: &str) {
        let mut failed = status(id, of, state);
        failed.error = Some(error.to_string());
        put(store, &keys::status(id, &host(of)), &failed);
    }

    #[tokio::test]
    async fn hosts_that_need_attention_come_first_and_the_summary_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (1..=12).map(|i| format!("web-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (store, id) = execution(dir.path(), &names);
        // Manifest order: DONE, PENDING (web-2), UNREADABLE, CANCELLED, then
        // the ERROR hosts and more DONE ones.
        done(&store, id, "web-1");
        put_bytes(&store, &keys::status(id, &host("web-3")), b"{".to_vec());
        failed(&store, id, "web-4", State::Cancelled, "cancelled");
        for i in 5..=11 {
            failed(
                &store,
                id,
                &format!("web-{i}"),
                State::Error,
                "step 2 failed",
            );
        }
        done(&store, id, "web-12");
        let mut running = status(id, "web-2", State::Progress);
        running.step = Some(cattle_core::wire::StepStatus {
            number: 2,
            facility: "command".into(),
            description: "run".into(),
            attempt: 1,
            attempts: 3,
        });
        put(&store, &keys::status(id, &host("web-2")), &running);

        let report = fetch_view(&store, id, false).await.unwrap();
        assert!(!report.steps);
        let table = report.table();
        let order: Vec<&str> = table
            .lines()
            .skip(1)
            .map_while(|l| l.split_once(' ').map(|(h, _)| h))
            .take(12)
            .collect();
        assert_eq!(
            order,
            [
                "web-5", "web-6", "web-7", "web-8", "web-9", "web-10", "web-11", "web-3", "web-4",
                "web-2", "web-1", "web-12"
            ],
            "{table}"
        );
        assert!(
            table.contains(
                "\n12 hosts: 2 DONE, 7 ERROR (web-5, web-6, web-7 and 4 more), \
                 1 UNREADABLE (web-3), 1 CANCELLED (web-4), 1 PROGRESS\n"
            ),
            "{table}"
        );
        // Without `--steps`, no step-result columns and no step counts.
        assert!(
            !table.contains("CHANGED") && !table.contains("steps:"),
            "{table}"
        );
        // Every column starts at the same place on every line, whatever the
        // states' widths (CANCELLED and UNREADABLE are wider than STATE).
        let lines: Vec<&str> = table.lines().take(13).collect();
        for column in ["STATE", "STEP", "UPDATED", "DETAIL"] {
            let at = lines[0].find(column).unwrap();
            for line in lines[1..].iter().filter(|l| l.len() > at) {
                assert_eq!(&line[at - 2..at], "  ", "{column} in {line:?}:\n{table}");
                assert_ne!(&line[at..at + 1], " ", "{column} in {line:?}:\n{table}");
            }
        }

        let only = report.table_of(&[HostState::Cancelled, HostState::Unreadable]);
        let rows: Vec<&str> = only.lines().collect();
        assert_eq!(rows.len(), 4, "{only}");
        assert!(rows[1].starts_with("web-3  UNREADABLE  "), "{only}");
        assert!(rows[2].starts_with("web-4  CANCELLED   "), "{only}");
        assert!(
            rows[3].ends_with("; 2 shown (--state cancelled,unreadable)"),
            "{only}"
        );
        assert_eq!(report.exit_code(), exit::HOSTS_FAILED);

        // One host: `1 host`, never `1 hosts`.
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["solo"]);
        failed(&store, id, "solo", State::Error, "no");
        let table = fetch_view(&store, id, false).await.unwrap().table();
        assert!(table.contains("\n1 host: 1 ERROR (solo)\n"), "{table}");
    }

    #[tokio::test]
    async fn done_hosts_status_documents_are_read_only_for_their_step_results() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b"]);
        done(&store, id, "a");
        failed(&store, id, "b", State::Error, "boom");

        let quick = fetch_view(&store, id, false).await.unwrap();
        assert_eq!(quick.hosts[0].state, HostState::Done);
        assert!(quick.hosts[0].status.is_none() && quick.hosts[0].results.is_none());
        assert!(quick.hosts[0].updated.is_some(), "the marker's time");
        assert!(quick.hosts[1].results.is_some(), "read: it is not DONE");
        // Its JSON entry says what is known without the document.
        let json: serde_json::Value = serde_json::from_str(&quick.json()).unwrap();
        let a = &json["hosts"][0];
        assert_eq!(a["state"], "DONE");
        assert!(a["updated"].is_string(), "{a}");
        assert!(a["step"].is_null() && a["results"].is_null(), "{a}");
        assert_eq!(json["summary"]["results_known"], 1);

        let full = fetch_view(&store, id, true).await.unwrap();
        assert!(full.steps);
        assert_eq!(full.hosts[0].results.unwrap().changed, 1);
        let table = full.table();
        assert!(
            table
                .lines()
                .next()
                .unwrap()
                .contains("CHANGED  UNCHANGED  FAILED"),
            "{table}"
        );
        assert!(
            table.contains("\nsteps: 1 changed, 1 unchanged, 0 failed\n"),
            "{table}"
        );
    }

    #[tokio::test]
    async fn the_json_document_is_versioned_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b", "c"]);
        done(&store, id, "a");
        failed(&store, id, "c", State::Error, "boom");
        let report = fetch(&store, id).await.unwrap();
        let text = report.json_of(&[HostState::Error]);
        assert!(
            text.starts_with("{\n  \"schema\": \"cattle.status.v1\",\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(json["execution"]["id"], id.to_string());
        assert_eq!(json["execution"]["hosts"], 3);
        let summary = &json["summary"];
        assert_eq!(summary["hosts"], 3);
        assert_eq!(summary["shown"], 1);
        assert_eq!(
            summary["states"],
            serde_json::json!({"error": 1, "halted": 0, "cancelled": 0, "unreadable": 0,
                               "pending": 1, "waiting": 0, "progress": 0, "done": 1})
        );
        assert_eq!(summary["results"]["changed"], 1);
        assert_eq!(summary["results"]["would_change"], 0);
        assert_eq!(summary["exit_code"], exit::HOSTS_FAILED);
        assert_eq!(summary["needs_attention"], serde_json::json!(["c"]));
        let hosts = json["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0]["host"], "c");
        assert_eq!(hosts[0]["error"], "boom");
        // Every field is there, null when not known.
        let all = report.json();
        let json: serde_json::Value = serde_json::from_str(&all).unwrap();
        for host in json["hosts"].as_array().unwrap() {
            assert_eq!(
                keys(host),
                [
                    "agent_version",
                    "conflict",
                    "error",
                    "finished",
                    "host",
                    "paused",
                    "reason",
                    "results",
                    "started",
                    "state",
                    "step",
                    "step_results",
                    "updated"
                ]
            );
        }
        assert_eq!(json["hosts"][1]["state"], "PENDING");
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
        let report = wait(&store, id, None, every, patience, false)
            .await
            .unwrap();
        let waited = started.elapsed();
        assert!(
            (Duration::from_secs(59)..=Duration::from_secs(61)).contains(&waited),
            "{waited:?}"
        );
        assert_eq!(report.exit_code(), exit::HOSTS_FAILED);

        // A timeout shorter than the patience still ends the wait.
        let started = Instant::now();
        wait(
            &store,
            id,
            Some(Duration::from_secs(5)),
            every,
            patience,
            false,
        )
        .await
        .unwrap();
        assert!(started.elapsed() <= Duration::from_secs(5));

        // While another host is unfinished, the patience does not start.
        std::fs::remove_file(store.location(&keys::status(id, &host("a")))).unwrap();
        let started = Instant::now();
        let report = wait(
            &store,
            id,
            Some(Duration::from_secs(300)),
            every,
            patience,
            false,
        )
        .await
        .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(299));
        assert_eq!(report.exit_code(), exit::HOSTS_FAILED);
    }

    #[tokio::test]
    async fn a_poller_shows_what_fetch_states_shows_as_hosts_change() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = execution(dir.path(), &["a", "b", "c", "d"]);
        let mut poller = Poller::new(id);
        let status_of = |of: &str| keys::status(id, &host(of));
        let mut polls = 0;
        let mut same = async |poller: &mut Poller| {
            polls += 1;
            let polled = poller.poll(&store).await.unwrap();
            let fetched = fetch_states(&store, id).await.unwrap();
            assert_eq!(
                format!("{:#?}", polled.hosts),
                format!("{:#?}", fetched.hosts),
                "poll {polls}"
            );
            polled
        };
        // Nothing reported: four hosts to learn about, one listing.
        let report = same(&mut poller).await;
        assert_eq!(report.count(HostState::Pending), 4);

        let mut a = status(id, "a", State::Progress);
        put(&store, &status_of("a"), &a);
        put(&store, &status_of("b"), &status(id, "b", State::Progress));
        failed(&store, id, "c", State::Error, "step 2 failed");
        same(&mut poller).await;

        // A rewrite of the same size; hostile documents.
        a.seq = 2;
        put(&store, &status_of("a"), &a);
        put_bytes(&store, &status_of("b"), b"\x1b[2J".to_vec());
        put(&store, &status_of("d"), &status(id, "c", State::Progress));
        let report = same(&mut poller).await;
        assert_eq!(report.hosts[0].status.as_ref().unwrap().seq, 2);
        assert_eq!(report.count(HostState::Unreadable), 2);
        same(&mut poller).await;

        // DONE by its marker; readable again; too large to read.
        done(&store, id, "a");
        put(&store, &status_of("b"), &status(id, "b", State::Progress));
        let large = vec![b' '; MAX_DOCUMENT_BYTES as usize + 1];
        put_bytes(&store, &status_of("d"), large);
        let report = same(&mut poller).await;
        assert!(
            report.hosts[3]
                .reason
                .as_ref()
                .unwrap()
                .contains("larger than"),
            "{:?}",
            report.hosts[3]
        );

        // One host left: read conditionally, without a listing.
        done(&store, id, "b");
        std::fs::remove_file(store.location(&status_of("d"))).unwrap();
        let report = same(&mut poller).await;
        assert_eq!(report.hosts[3].state, HostState::Pending);
        put(&store, &status_of("d"), &status(id, "d", State::Progress));
        same(&mut poller).await;
        same(&mut poller).await;
        failed(&store, id, "d", State::Cancelled, "cancelled");
        let report = same(&mut poller).await;
        assert!(report.hosts.iter().all(|h| h.state.is_final()));
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
        assert_eq!(json["hosts"][0]["error"], hostile.error.unwrap());
    }
}

//! `cattle status ID`: read what hosts reported (`cattle log ID` is in [`crate::log`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::Store;
use cattle_core::wire::{Envelope, HostStatus, MAX_DOCUMENT_BYTES, Manifest, State};
use serde::Serialize;
use uuid::Uuid;

use crate::{exit, for_each_bounded};

/// An execution as the store shows it now.
#[derive(Debug, Serialize)]
pub struct Report {
    pub manifest: Manifest,
    pub hosts: Vec<HostRow>,
}

#[derive(Debug, Serialize)]
pub struct HostRow {
    pub host: HostId,
    pub state: State,
    /// When the host last reported (RFC 3339); absent for PENDING.
    pub updated: Option<String>,
    /// What the host last reported. Absent for PENDING, and for DONE hosts,
    /// which are known from their DONE marker alone.
    pub status: Option<HostStatus>,
}

/// Read the manifest of execution `id`, or say clearly that there is none.
///
/// The signature is not checked: operators only read what hosts reported
/// against it. Hosts check it before running anything.
pub async fn manifest(store: &Store, id: Uuid) -> anyhow::Result<Manifest> {
    let key = keys::manifest(id);
    let object = store
        .get(&key, MAX_DOCUMENT_BYTES)
        .await?
        .with_context(|| {
            format!(
                "no execution {id} in this store (`{}` does not exist)",
                store.location(&key)
            )
        })?;
    serde_json::from_slice::<Envelope>(&object.bytes)
        .map_err(|e| anyhow::anyhow!(e))
        .and_then(|envelope| envelope.manifest().map_err(|e| anyhow::anyhow!(e)))
        .with_context(|| format!("`{}` is not a valid manifest", store.location(&key)))
}

/// Every host's state. Hosts that finished DONE are known from one listing of
/// their DONE markers (a page per 1,000 hosts); only the others' status
/// documents are read, one request each.
pub async fn fetch(store: &Store, id: Uuid) -> anyhow::Result<Report> {
    let manifest = manifest(store, id).await?;
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
                return anyhow::Ok(HostRow {
                    host,
                    state: State::Done,
                    updated: modified.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                    status: None,
                });
            }
            let key = keys::status(id, &host);
            let status = match store.get(&key, MAX_DOCUMENT_BYTES).await? {
                None => None,
                Some(object) => Some(
                    serde_json::from_slice::<HostStatus>(&object.bytes).with_context(|| {
                        format!("`{}` is not a valid status document", store.location(&key))
                    })?,
                ),
            };
            Ok(HostRow {
                state: status.as_ref().map_or(State::Pending, |s| s.state),
                updated: status.as_ref().map(|s| s.updated.clone()),
                host,
                status,
            })
        }
    })
    .await;
    let hosts = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Report { manifest, hosts })
}

/// Poll until every host is DONE or ERROR, or `timeout` passes.
pub async fn wait(
    store: &Store,
    id: Uuid,
    timeout: Option<Duration>,
    every: Duration,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    loop {
        let report = fetch(store, id).await?;
        let finished = report.hosts.iter().all(|h| h.state.is_final());
        if finished || timeout.is_some_and(|t| started.elapsed() + every > t) {
            return Ok(report);
        }
        tokio::time::sleep(every).await;
    }
}

impl Report {
    /// See [`exit`]: 0 all DONE, 3 some ERROR or CANCELLED, 4 some not finished.
    pub fn exit_code(&self) -> u8 {
        if self
            .hosts
            .iter()
            .any(|h| matches!(h.state, State::Error | State::Cancelled))
        {
            exit::HOSTS_FAILED
        } else if self.hosts.iter().all(|h| h.state == State::Done) {
            exit::SUCCESS
        } else {
            exit::HOSTS_UNFINISHED
        }
    }

    pub fn count(&self, state: State) -> usize {
        self.hosts.iter().filter(|h| h.state == state).count()
    }

    /// One row per host, then a summary line.
    pub fn table(&self) -> String {
        let width = self
            .hosts
            .iter()
            .map(|h| h.host.as_str().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:width$}  {:8}  {:5}  {:24}  DETAIL",
            "HOST", "STATE", "STEP", "UPDATED"
        );
        for row in &self.hosts {
            let updated = row.updated.clone().unwrap_or_else(|| "-".to_string());
            let (step, detail) = match &row.status {
                None if row.state == State::Done => {
                    (format!("{0}/{0}", self.manifest.steps), String::new())
                }
                None => ("-".to_string(), String::new()),
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
            let _ = writeln!(
                out,
                "{:width$}  {:8}  {:5}  {:24}  {}",
                row.host.as_str(),
                row.state.as_str(),
                step,
                updated,
                one_line(&detail)
            );
        }
        let _ = writeln!(
            out,
            "{} hosts: {} DONE, {} ERROR, {} PROGRESS, {} PENDING{}",
            self.hosts.len(),
            self.count(State::Done),
            self.count(State::Error),
            self.count(State::Progress),
            self.count(State::Pending),
            match self.count(State::Cancelled) {
                0 => String::new(),
                n => format!(", {n} CANCELLED"),
            }
        );
        out
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

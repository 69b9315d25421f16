//! `cattle log ID`: the logs hosts uploaded, read part by part.
//!
//! A host's log is a sequence of parts of at most 1 MiB
//! (`executions/<id>/hosts/<host>/log/<n>`, see `cattle_core::wire::LogSummary`).
//! They are read in order and written out one at a time, so memory holds one
//! part whatever the log's size. A log longer than its host's bound lacks its
//! middle; the part where it was cut says so in a line of its own. Every byte
//! written goes through one function, `emit`, so that it can be filtered in one place.

use std::io::Write;

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::Store;
use cattle_core::wire::{HostStatus, LOG_PART_BYTES, MAX_DOCUMENT_BYTES};
use uuid::Uuid;

/// Write the logs of execution `id` to `out`: of `host`, or of every host of
/// the execution, each under a `==> host <==` line. Returns warnings for
/// standard error: which logs are not complete in the store yet.
pub async fn print(
    store: &Store,
    id: Uuid,
    host: Option<HostId>,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<String>> {
    let manifest = crate::status::manifest(store, id).await?;
    let single = host.is_some();
    let hosts = match host {
        Some(host) if !manifest.hosts.contains(&host) => {
            anyhow::bail!("execution {id} is not addressed to host `{host}`")
        }
        Some(host) => vec![host],
        None => manifest.hosts,
    };
    let mut warnings = Vec::new();
    for host in hosts {
        if !single {
            emit(out, format!("==> {host} <==\n").as_bytes())?;
        }
        let parts = parts(store, id, &host).await?;
        if parts.is_empty() {
            if single {
                anyhow::bail!("host `{host}` has not uploaded a log for execution {id} yet");
            }
            emit(out, b"(no log yet)\n")?;
            continue;
        }
        // Where the log read ends, as an offset into the host's whole log.
        let mut end = 0;
        for n in parts {
            let key = keys::log_part(id, &host, n);
            // Gone since the listing: the host dropped it (its log outgrew the
            // bound), and the marker part says so.
            let Some(part) = store.get(&key, LOG_PART_BYTES).await? else {
                continue;
            };
            end = n * LOG_PART_BYTES + part.bytes.len() as u64;
            emit(out, &part.bytes)?;
        }
        if let Some(warning) = incomplete(store, id, &host, end).await? {
            warnings.push(warning);
        }
    }
    Ok(warnings)
}

/// The one way log bytes reach the output.
fn emit(out: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)
}

/// The numbers of the parts of `host`'s log in the store, in order.
async fn parts(store: &Store, id: Uuid, host: &HostId) -> anyhow::Result<Vec<u64>> {
    let prefix = keys::log_prefix(id, host);
    let mut parts: Vec<u64> = store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|key| keys::parse_log_part_name(key.strip_prefix(&prefix)?))
        .collect();
    parts.sort_unstable();
    Ok(parts)
}

/// A warning if `host`'s status says its log goes on past `end`.
async fn incomplete(
    store: &Store,
    id: Uuid,
    host: &HostId,
    end: u64,
) -> anyhow::Result<Option<String>> {
    let key = keys::status(id, host);
    let Some(object) = store.get(&key, MAX_DOCUMENT_BYTES).await? else {
        return Ok(None);
    };
    let status: HostStatus = serde_json::from_slice(&object.bytes)
        .with_context(|| format!("`{}` is not a valid status document", store.location(&key)))?;
    Ok(match status.log {
        Some(log) if end < log.bytes => Some(format!(
            "the log of host `{host}` is incomplete: the store has {end} of its {} bytes; {}",
            log.bytes,
            if status.state.is_final() {
                "the host has finished and is still uploading the rest (`cattle log` again later)"
            } else {
                "the host is still running the execution"
            }
        )),
        _ => None,
    })
}

//! `cattle log ID`: the logs hosts uploaded, read part by part.
//!
//! A host's log is a sequence of parts of at most 1 MiB
//! (`executions/<id>/hosts/<host>/log/<n>`, see `cattle_core::wire::LogSummary`).
//! They are read in order and written out one at a time, so memory holds one
//! part whatever the log's size. A log longer than its host's bound lacks its
//! middle; the part where it was cut says so in a line of its own. Every byte
//! a host wrote goes through one place, `Emit`, which escapes it for a
//! terminal (see [`crate::terminal`]) unless `--raw` asks for the exact bytes.

use std::io::Write;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::Store;
use cattle_core::wire::{HostStatus, LOG_PART_BYTES, MAX_DOCUMENT_BYTES};
use uuid::Uuid;

use crate::terminal;

/// What [`print()`] showed.
#[derive(Debug, Default)]
pub struct Printed {
    /// Hosts whose log (or part of it) was shown.
    pub shown: usize,
    /// Hosts whose log could not be read; each is marked `(log unreadable: …)`.
    pub unreadable: usize,
    /// For standard error: logs that are not complete in the store yet.
    pub warnings: Vec<String>,
}

/// Write the logs of execution `id` to `out`: of `host`, or of every host of
/// the execution, each under a `==> host <==` line. What hosts wrote is passed
/// through [`terminal::Escaper`] unless `raw`. One host's log that cannot be
/// read is marked in its place, and never stops the others; only the store's
/// own failures (and, for a single `host`, its log missing or unreadable) fail
/// the whole command.
pub async fn print(
    store: &Store,
    id: Uuid,
    host: Option<HostId>,
    raw: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Printed> {
    let manifest = crate::status::manifest(store, id).await?;
    let single = host.is_some();
    let hosts = match host {
        Some(host) if !manifest.hosts.contains(&host) => {
            anyhow::bail!("execution {id} is not addressed to host `{host}`")
        }
        Some(host) => vec![host],
        None => manifest.hosts,
    };
    let mut printed = Printed::default();
    for host in hosts {
        if !single {
            out.write_all(format!("==> {host} <==\n").as_bytes())?;
        }
        let parts = parts(store, id, &host).await?;
        if parts.is_empty() {
            if single {
                anyhow::bail!("host `{host}` has not uploaded a log for execution {id} yet");
            }
            out.write_all(b"(no log yet)\n")?;
            continue;
        }
        let mut emit = Emit::new(out, raw);
        // Where the log read ends, as an offset into the host's whole log.
        let mut end = 0;
        let mut problem = None;
        for n in parts {
            let key = keys::log_part(id, &host, n);
            let part = match store.get(&key, LOG_PART_BYTES).await {
                Ok(Some(part)) => part,
                // Gone since the listing: the host dropped it (its log outgrew
                // the bound), and the marker part says so.
                Ok(None) => continue,
                Err(e) => {
                    problem = Some(crate::status::unreadable(store, &key, e)?);
                    break;
                }
            };
            end = n * LOG_PART_BYTES + part.bytes.len() as u64;
            emit.bytes(&part.bytes)?;
        }
        emit.finish()?;
        match problem {
            Some(reason) if single => anyhow::bail!(
                "cannot show the log of host `{host}` for execution {id}: {}",
                terminal::line(&reason)
            ),
            Some(reason) => {
                out.write_all(
                    format!("(log unreadable: {})\n", terminal::line(&reason)).as_bytes(),
                )?;
                printed.unreadable += 1;
            }
            None => printed.shown += 1,
        }
        if let Some(warning) = incomplete(store, id, &host, end).await? {
            printed.warnings.push(warning);
        }
    }
    Ok(printed)
}

/// The one way log bytes reach the output: escaped for a terminal, or raw.
struct Emit<'a> {
    raw: Option<&'a mut dyn Write>,
    escaped: Option<terminal::Escaper<&'a mut dyn Write>>,
}

impl<'a> Emit<'a> {
    fn new(out: &'a mut dyn Write, raw: bool) -> Emit<'a> {
        if raw {
            Emit {
                raw: Some(out),
                escaped: None,
            }
        } else {
            Emit {
                raw: None,
                escaped: Some(terminal::Escaper::new(out)),
            }
        }
    }

    fn bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match (&mut self.raw, &mut self.escaped) {
            (Some(out), _) => out.write_all(bytes),
            (None, Some(escaper)) => escaper.write_all(bytes),
            (None, None) => Ok(()),
        }
    }

    /// Write out what an escape sequence split across parts held back.
    fn finish(self) -> std::io::Result<()> {
        if let Some(escaper) = self.escaped {
            escaper.finish()?;
        }
        Ok(())
    }
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
    // A status that cannot be read is `cattle status`'s to report, not a
    // reason to withhold the log.
    let object = match store.get(&key, MAX_DOCUMENT_BYTES).await {
        Ok(Some(object)) => object,
        Ok(None) => return Ok(None),
        Err(e) => {
            crate::status::unreadable(store, &key, e)?;
            return Ok(None);
        }
    };
    let Ok(status) = serde_json::from_slice::<HostStatus>(&object.bytes) else {
        return Ok(None);
    };
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

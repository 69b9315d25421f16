//! `cattle log ID`: the logs hosts uploaded, read part by part.
//!
//! A host's log is a sequence of parts of at most 1 MiB
//! (`executions/<id>/hosts/<host>/log/<n>`, see `cattle_core::wire::LogSummary`).
//! They are read in order and written out one at a time, so memory holds one
//! part whatever the log's size. A log longer than its host's bound lacks its
//! middle; the part where it was cut says so in a line of its own. Every byte
//! a host wrote goes through one place, [`HostWriter`], which escapes it for a
//! terminal (see [`crate::terminal`]) unless `--raw` asks for the exact bytes,
//! and starts each line with `[HOST] ` when several hosts' logs are shown, so
//! that every line found by `grep` names its host.

use std::io::Write;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::Store;
use cattle_core::wire::{HostStatus, LOG_PART_BYTES, MAX_DOCUMENT_BYTES};
use uuid::Uuid;

use crate::status::HostState;
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

/// The hosts whose logs are shown: `host`, or every host of the execution.
pub(crate) fn selected(
    id: Uuid,
    manifest_hosts: Vec<HostId>,
    host: Option<HostId>,
) -> anyhow::Result<Vec<HostId>> {
    match host {
        Some(host) if !manifest_hosts.contains(&host) => {
            anyhow::bail!("execution {id} is not addressed to host `{host}`")
        }
        Some(host) => Ok(vec![host]),
        None => Ok(manifest_hosts),
    }
}

/// Write the logs of execution `id` to `out`: of `host`, or of every host of
/// the execution. When more than one host is shown, every line starts with
/// `[HOST] `; one host's log is shown as it is. What hosts wrote is passed
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
    let hosts = selected(id, manifest.hosts, host)?;
    let prefixed = hosts.len() > 1;
    let mut printed = Printed::default();
    for host in hosts {
        let mut writer = HostWriter::new(prefixed.then_some(&host), raw, false);
        let parts = parts(store, id, &host).await?;
        if parts.is_empty() {
            if single {
                anyhow::bail!("host `{host}` has not uploaded a log for execution {id} yet");
            }
            writer.note("(no log yet)", out)?;
            continue;
        }
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
            writer.write(&part.bytes, out)?;
        }
        writer.finish(out)?;
        match problem {
            Some(reason) if single => anyhow::bail!(
                "cannot show the log of host `{host}` for execution {id}: {}",
                terminal::line(&reason)
            ),
            Some(reason) => {
                writer.note(
                    &format!("(log unreadable: {})", terminal::line(&reason)),
                    out,
                )?;
                printed.unreadable += 1;
            }
            None => printed.shown += 1,
        }
        if let Some(warning) = incomplete(store, id, &host, end).await? {
            printed.warnings.push(warning);
        }
    }
    out.flush()?;
    Ok(printed)
}

/// `cattle log --json`: one JSON document (schema `cattle.log.v1`, see
/// `docs/json.md`) with each host's state and log. It is written as the
/// parts are read, one part at a time, so memory does not grow with the logs.
/// The log text is the host's bytes as UTF-8 (invalid bytes replaced by
/// U+FFFD), escaped by the JSON encoder and [`terminal::json`].
pub async fn print_json(
    store: &Store,
    id: Uuid,
    host: Option<HostId>,
    out: &mut dyn Write,
) -> anyhow::Result<Printed> {
    let report = crate::status::fetch_states(store, id).await?;
    let hosts = selected(id, report.manifest.hosts.clone(), host)?;
    let mut printed = Printed::default();
    write!(
        out,
        "{{\n  \"schema\": \"cattle.log.v1\",\n  \"execution\": \"{id}\",\n  \"hosts\": ["
    )?;
    for (i, host) in hosts.iter().enumerate() {
        let row = report
            .hosts
            .iter()
            .find(|r| r.host == *host)
            .expect("every host of the manifest has a row");
        write!(
            out,
            "{}\n    {{\n      \"host\": {},\n      \"state\": \"{}\",\n      \"log\": \"",
            if i == 0 { "" } else { "," },
            json_string(host.as_str()),
            row.state.as_str()
        )?;
        let mut text = JsonText::default();
        let mut end = 0;
        let mut dropped = 0;
        let mut problem = None;
        let mut previous: Option<(u64, u64)> = None;
        for n in parts(store, id, host).await? {
            let key = keys::log_part(id, host, n);
            let part = match store.get(&key, LOG_PART_BYTES).await {
                Ok(Some(part)) => part,
                Ok(None) => continue,
                Err(e) => {
                    problem = Some(crate::status::unreadable(store, &key, e)?);
                    break;
                }
            };
            // A part that is neither full nor the last is the marker: the
            // parts from it up to the next one kept were dropped.
            if let Some((p, len)) = previous
                && len < LOG_PART_BYTES
            {
                dropped += (n - p) * LOG_PART_BYTES;
            }
            previous = Some((n, part.bytes.len() as u64));
            end = n * LOG_PART_BYTES + part.bytes.len() as u64;
            text.write(&part.bytes, out, false)?;
        }
        text.write(&[], out, true)?;
        let complete = problem.is_none()
            && match (&row.state, &row.status) {
                // The DONE marker is written once the whole log is in the store.
                (HostState::Done, None) => true,
                (state, Some(status)) if state.is_final() => {
                    status.log.is_none_or(|log| end >= log.bytes)
                }
                _ => false,
            };
        match &problem {
            Some(_) => printed.unreadable += 1,
            None => printed.shown += 1,
        }
        write!(
            out,
            "\",\n      \"bytes\": {end},\n      \"dropped\": {dropped},\n      \"complete\": {complete},\n      \"unreadable\": {}\n    }}",
            problem.as_deref().map_or("null".to_string(), json_string)
        )?;
    }
    writeln!(out, "{}]\n}}", if hosts.is_empty() { "" } else { "\n  " })?;
    out.flush()?;
    Ok(printed)
}

/// `s` as a JSON string, with nothing in it a terminal would act on.
fn json_string(s: &str) -> String {
    terminal::json(&serde_json::to_string(s).expect("strings serialize"))
}

/// A JSON string's contents written in pieces: bytes are decoded as UTF-8
/// (a character split between two pieces is decoded whole; invalid bytes
/// become U+FFFD) and escaped by the JSON encoder and [`terminal::json`].
#[derive(Debug, Default)]
struct JsonText {
    /// The start of a character split between pieces.
    carry: Vec<u8>,
}

impl JsonText {
    fn write(&mut self, bytes: &[u8], out: &mut dyn Write, last: bool) -> std::io::Result<()> {
        self.carry.extend_from_slice(bytes);
        let mut text = String::with_capacity(self.carry.len());
        let mut input = &self.carry[..];
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    text.push_str(s);
                    input = &[];
                    break;
                }
                Err(e) => {
                    let (valid, rest) = input.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).expect("checked by from_utf8"));
                    match e.error_len() {
                        Some(n) => {
                            text.push('\u{fffd}');
                            input = &rest[n..];
                        }
                        None if last => {
                            text.push('\u{fffd}');
                            input = &[];
                            break;
                        }
                        None => {
                            input = rest;
                            break;
                        }
                    }
                }
            }
        }
        self.carry = input.to_vec();
        let encoded = json_string(&text);
        out.write_all(&encoded.as_bytes()[1..encoded.len() - 1])
    }
}

/// Longest line start a [`HostWriter`] holds back waiting for its end; a
/// longer one is written as a line of its own (a host's lines are cut at 16
/// KiB, which escaped fits in this).
const HOLD_LIMIT: usize = 256 * 1024;

/// The one way the bytes of one host's log reach the output: escaped for a
/// terminal (or raw), and with `[HOST] ` at the start of every line when
/// several hosts are shown. A line split between two writes (two parts of
/// the log, two polls of `--follow`) gets one prefix.
#[derive(Debug)]
pub struct HostWriter {
    /// Escapes into its `Vec`, which each write empties; `None` when raw.
    escaper: Option<terminal::Escaper<Vec<u8>>>,
    prefix: Option<Vec<u8>>,
    /// Write only whole lines, holding back the start of one until its end
    /// arrives: several hosts followed at once must not mix within a line.
    hold: bool,
    held: Vec<u8>,
    /// Whether what is written next starts a line.
    at_line_start: bool,
}

impl HostWriter {
    /// A writer for the log of `prefix` (`None`: lines shown bare).
    pub fn new(prefix: Option<&HostId>, raw: bool, hold: bool) -> HostWriter {
        HostWriter {
            escaper: (!raw).then(|| terminal::Escaper::new(Vec::new())),
            prefix: prefix.map(|h| format!("[{}] ", terminal::line(h.as_str())).into_bytes()),
            hold: hold && prefix.is_some(),
            held: Vec::new(),
            at_line_start: true,
        }
    }

    /// Write bytes the host logged.
    pub fn write(&mut self, bytes: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
        match &mut self.escaper {
            Some(escaper) => {
                escaper.write_all(bytes)?;
                let escaped = std::mem::take(escaper.get_mut());
                self.put(&escaped, out)
            }
            None => self.put(bytes, out),
        }
    }

    /// A line of cattle's own (`(no log yet)`), on a line of its own.
    pub fn note(&mut self, note: &str, out: &mut dyn Write) -> std::io::Result<()> {
        self.end_line(out)?;
        self.put(format!("{note}\n").as_bytes(), out)
    }

    /// Write what is held back (an escape sequence or character split at the
    /// end, a line not ended yet), ending a prefixed log's last line.
    pub fn finish(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some(escaper) = self.escaper.take() {
            let rest = escaper.finish()?;
            self.escaper = Some(terminal::Escaper::new(Vec::new()));
            self.put(&rest, out)?;
        }
        if self.prefix.is_some() {
            self.end_line(out)?;
        }
        Ok(())
    }

    /// End the line under way, if one is.
    pub fn end_line(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some(escaper) = self.escaper.take() {
            let rest = escaper.finish()?;
            self.escaper = Some(terminal::Escaper::new(Vec::new()));
            self.put(&rest, out)?;
        }
        if !self.held.is_empty() || !self.at_line_start {
            self.put(b"\n", out)?;
        }
        Ok(())
    }

    fn put(&mut self, text: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let Some(prefix) = &self.prefix else {
            self.at_line_start = text.ends_with(b"\n");
            return out.write_all(text);
        };
        if !self.hold {
            return prefixed(out, prefix, text, &mut self.at_line_start);
        }
        self.held.extend_from_slice(text);
        let whole = match self.held.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if self.held.len() > HOLD_LIMIT => {
                self.held.push(b'\n');
                self.held.len()
            }
            None => return Ok(()),
        };
        let lines: Vec<u8> = self.held.drain(..whole).collect();
        prefixed(out, prefix, &lines, &mut self.at_line_start)
    }
}

/// Write `text` with `prefix` at the start of each of its lines.
fn prefixed(
    out: &mut dyn Write,
    prefix: &[u8],
    text: &[u8],
    at_line_start: &mut bool,
) -> std::io::Result<()> {
    for line in text.split_inclusive(|&b| b == b'\n') {
        if *at_line_start {
            out.write_all(prefix)?;
        }
        out.write_all(line)?;
        *at_line_start = line.ends_with(b"\n");
    }
    Ok(())
}

/// The most parts a host's status can make [`parts`] look for by name: 1 GiB of log.
const MAX_NAMED_PARTS: u64 = 1024;

/// The numbers of the parts of `host`'s log in the store, in order: those a listing
/// shows and, when the listing lacks the last part the host's status counts, every
/// part up to it (at most [`MAX_NAMED_PARTS`]), since a listing can miss objects
/// that a read finds (a distributed MinIO, for a while after a node came back).
/// Readers skip a part that turns out not to exist, as they do a dropped one.
pub(crate) async fn parts(store: &Store, id: Uuid, host: &HostId) -> anyhow::Result<Vec<u64>> {
    let prefix = keys::log_prefix(id, host);
    let mut parts: Vec<u64> = store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|key| keys::parse_log_part_name(key.strip_prefix(&prefix)?))
        .collect();
    parts.sort_unstable();
    let counted = match store.get(&keys::status(id, host), MAX_DOCUMENT_BYTES).await {
        Ok(Some(object)) => serde_json::from_slice::<HostStatus>(&object.bytes)
            .ok()
            .and_then(|status| status.log)
            .map_or(0, |log| log.parts),
        // The status is `cattle status`'s to report; the listing is what there is.
        Ok(None) | Err(_) => 0,
    };
    if counted <= MAX_NAMED_PARTS && parts.last().is_none_or(|last| last + 1 < counted) {
        parts.extend(0..counted);
        parts.sort_unstable();
        parts.dedup();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostId {
        HostId::new(name).unwrap()
    }

    /// What `writer` prints for `pieces` written one after the other.
    fn written(mut writer: HostWriter, pieces: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for piece in pieces {
            writer.write(piece, &mut out).unwrap();
        }
        writer.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_line_gets_one_prefix_wherever_the_parts_split_it() {
        let log = b"Step 1 changed\nStep 2 fai\x1b[2Jled at step 2\nlast line";
        let whole = written(HostWriter::new(Some(&host("web-3")), false, false), &[log]);
        assert_eq!(
            whole,
            "[web-3] Step 1 changed\n[web-3] Step 2 fai\\x1b[2Jled at step 2\n[web-3] last line\n"
        );
        for hold in [false, true] {
            for size in 1..log.len() {
                let pieces: Vec<&[u8]> = log.chunks(size).collect();
                let writer = HostWriter::new(Some(&host("web-3")), false, hold);
                assert_eq!(written(writer, &pieces), whole, "pieces of {size}");
            }
        }
    }

    #[test]
    fn one_host_is_shown_bare_and_raw_keeps_the_bytes() {
        let log: &[u8] = b"a\x1b[31m\r\nb\rc";
        let bare = written(HostWriter::new(None, false, false), &[&log[..3], &log[3..]]);
        assert_eq!(bare, "a\\x1b[31m\r\nb\\rc");
        let raw = written(HostWriter::new(None, true, false), &[log]);
        assert_eq!(raw.as_bytes(), log);
        let prefixed_raw = written(HostWriter::new(Some(&host("h")), true, false), &[log]);
        assert_eq!(prefixed_raw.as_bytes(), b"[h] a\x1b[31m\r\n[h] b\rc\n");
    }

    #[test]
    fn held_lines_are_written_only_when_they_end() {
        let mut writer = HostWriter::new(Some(&host("h")), false, true);
        let mut out = Vec::new();
        writer.write(b"one\ntw", &mut out).unwrap();
        assert_eq!(out, b"[h] one\n");
        writer.write(b"o\n", &mut out).unwrap();
        assert_eq!(out, b"[h] one\n[h] two\n");
        // A line that never ends is written once it is too long to hold.
        writer.write(&vec![b'x'; HOLD_LIMIT + 1], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3, "{}", &text[..40]);
        assert!(text.ends_with("x\n"));
    }

    #[test]
    fn notes_start_a_line_of_their_own() {
        let mut writer = HostWriter::new(Some(&host("h")), false, false);
        let mut out = Vec::new();
        writer.write(b"half a li", &mut out).unwrap();
        writer.note("(log unreadable: gone)", &mut out).unwrap();
        assert_eq!(out, b"[h] half a li\n[h] (log unreadable: gone)\n");
    }

    #[test]
    fn json_text_decodes_characters_split_between_parts_and_escapes_controls() {
        let log = "ü\x1b[2J\r\u{202e}日本\n".as_bytes();
        for size in 1..log.len() {
            let mut text = JsonText::default();
            let mut out = b"\"".to_vec();
            for piece in log.chunks(size) {
                text.write(piece, &mut out, false).unwrap();
            }
            text.write(&[], &mut out, true).unwrap();
            out.push(b'"');
            let encoded = String::from_utf8(out).unwrap();
            assert!(!encoded.contains('\x1b') && !encoded.contains('\u{202e}'));
            let decoded: String = serde_json::from_str(&encoded).unwrap();
            assert_eq!(decoded.as_bytes(), log, "pieces of {size}");
        }
        let mut text = JsonText::default();
        let mut out = Vec::new();
        text.write(b"ok \xff and cut \xe6\x97", &mut out, true)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ok \u{fffd} and cut \u{fffd}"
        );
    }
}

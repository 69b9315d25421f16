//! `cattle log ID --follow`: the logs hosts uploaded, then what they upload
//! next, until every host followed has finished and its whole log is shown.
//!
//! The log is a byte stream in parts of 1 MiB (see [`crate::log`]): a full
//! part is written once, the last one again as it grows. A [`Follower`] keeps
//! the offset into its host's log up to which it has shown it and, each poll,
//! lists the parts and reads only the part that offset is in (with the ETag
//! it had, so an unchanged part costs a 304) and the parts after it. Past its
//! bound the host drops the middle of its log: the first part dropped becomes
//! a marker line and the others disappear. A follower that meets the marker
//! shows it on a line of its own and goes on at the first part kept after it;
//! one that finds parts gone past its offset without having read the marker
//! says how many bytes it could not show. No byte is shown twice, and no part
//! of the marker is taken for the bytes it replaced.

use std::io::Write;
use std::time::Duration;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Fetched, Store};
use cattle_core::wire::LOG_PART_BYTES;
use tokio::time::Instant;
use uuid::Uuid;

use crate::log::HostWriter;
use crate::status::{self, HostRow, HostState};
use crate::{exit, terminal};

/// One host's log as far as it has been shown.
#[derive(Debug)]
pub struct Follower {
    pub host: HostId,
    /// Offset into the host's whole log (dropped bytes included) up to which
    /// it has been shown.
    offset: u64,
    /// The part last read and its ETag: read again only if it changed.
    etag: Option<(u64, String)>,
    /// The part last read and the tag a listing gave it then: when a later
    /// listing gives the same tag, the part is not read at all.
    listed: Option<(u64, String)>,
    writer: HostWriter,
    /// Finished: the host is done and its log shown to the end, or its log
    /// cannot be read.
    done: bool,
}

impl Follower {
    /// Follow `host`'s log from its start; `prefixed` when several hosts are
    /// followed at once (each line `[HOST] `, whole lines only).
    pub fn new(host: HostId, raw: bool, prefixed: bool) -> Follower {
        let writer = HostWriter::new(prefixed.then_some(&host), raw, prefixed);
        Follower {
            host,
            offset: 0,
            etag: None,
            listed: None,
            writer,
            done: false,
        }
    }

    /// The offset into the host's log up to which it has been shown.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Show what the store has of the log past what was shown. Fails only
    /// when the store does; a part that cannot be read is marked in the
    /// output and ends the following of this host.
    pub async fn poll(
        &mut self,
        store: &Store,
        id: Uuid,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let parts = crate::log::parts(store, id, &self.host).await?;
        let parts: Vec<(u64, Option<String>)> = parts.into_iter().map(|n| (n, None)).collect();
        self.show(store, id, &parts, out).await
    }

    /// [`Follower::poll`] with the host's log parts as a listing of them
    /// gave them (numbers in order, with their listing tags): a part whose
    /// tag is the one it had when it was last read is not read again.
    pub async fn poll_listed(
        &mut self,
        store: &Store,
        id: Uuid,
        parts: &[(u64, String)],
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let parts: Vec<(u64, Option<String>)> = parts
            .iter()
            .map(|(n, tag)| (*n, Some(tag.clone())))
            .collect();
        self.show(store, id, &parts, out).await
    }

    async fn show(
        &mut self,
        store: &Store,
        id: Uuid,
        parts: &[(u64, Option<String>)],
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let first = self.offset / LOG_PART_BYTES;
        let wanted: Vec<(u64, Option<String>)> =
            parts.iter().filter(|(n, _)| *n >= first).cloned().collect();
        for (i, (n, tag)) in wanted.iter().enumerate() {
            let n = *n;
            let next = wanted.get(i + 1).map(|(n, _)| *n);
            if let (Some(tag), Some((part, seen))) = (tag, &self.listed)
                && *part == n
                && seen == tag
            {
                continue;
            }
            let key = keys::log_part(id, &self.host, n);
            let etag = match &self.etag {
                Some((part, etag)) if *part == n => Some(etag.as_str()),
                _ => None,
            };
            let part = match store.get_if_changed(&key, etag, LOG_PART_BYTES).await {
                Ok(Fetched::Found(part)) => part,
                Ok(Fetched::NotModified) => {
                    self.listed = tag.clone().map(|tag| (n, tag));
                    continue;
                }
                // Dropped since the listing.
                Ok(Fetched::Missing) => continue,
                Err(e) => {
                    let reason = status::unreadable(store, &key, e)?;
                    self.writer.note(
                        &format!("(log unreadable: {})", terminal::line(&reason)),
                        out,
                    )?;
                    self.done = true;
                    return Ok(());
                }
            };
            self.etag = Some((n, part.etag));
            self.listed = tag.clone().map(|tag| (n, tag));
            let start = n * LOG_PART_BYTES;
            let len = part.bytes.len() as u64;
            // Neither full nor the last: the marker of what was dropped.
            if let Some(next) = next.filter(|_| len < LOG_PART_BYTES) {
                let mut marker = &part.bytes[..];
                if self.offset > start {
                    // Some of the part it replaced was shown: the marker
                    // goes on a line of its own, not after those bytes.
                    self.writer.end_line(out)?;
                    marker = marker.strip_prefix(b"\n").unwrap_or(marker);
                }
                self.writer.write(marker, out)?;
                self.offset = next * LOG_PART_BYTES;
                continue;
            }
            if start > self.offset {
                self.writer.note(
                    &format!(
                        "[… {} bytes of this log were dropped by the host before they could be shown …]",
                        start - self.offset
                    ),
                    out,
                )?;
                self.offset = start;
            }
            let shown = (self.offset - start) as usize;
            // A part shorter than what was shown of it was rewritten; only
            // the marker is, and it was handled above.
            if part.bytes.len() > shown {
                self.writer.write(&part.bytes[shown..], out)?;
                self.offset = start + len;
            }
        }
        Ok(())
    }

    /// Whether the log is complete: `row` (read before the last poll) says
    /// the host has finished, and everything it logged has been shown.
    fn complete(&self, row: &HostRow) -> bool {
        match (&row.state, &row.status) {
            // The DONE marker is written once the whole log is in the store.
            (HostState::Done, None) => true,
            (state, Some(status)) if state.is_final() => {
                status.log.is_none_or(|log| self.offset >= log.bytes)
            }
            _ => false,
        }
    }

    /// The host is finished with: write what is held back.
    fn finish(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        self.done = true;
        self.writer.finish(out)
    }
}

/// `cattle log ID --follow`: show the logs of `host` (or of every host of
/// the execution) and then what hosts add, every `every`, until every host
/// followed has finished (DONE, ERROR, HALTED or CANCELLED) and its whole log is
/// shown. Hosts whose status is UNREADABLE are followed as `status --wait`
/// waits for them: for at most [`status::UNREADABLE_PATIENCE`] once they are
/// the only ones left.
/// Returns 0, or [`exit::INTERRUPTED`] when `interrupted` (Ctrl-C) comes first.
pub async fn run(
    store: &Store,
    id: Uuid,
    host: Option<HostId>,
    raw: bool,
    every: Duration,
    out: &mut dyn Write,
    interrupted: impl Future<Output = std::io::Result<()>>,
) -> anyhow::Result<u8> {
    let patience = status::UNREADABLE_PATIENCE;
    let manifest = status::manifest(store, id).await?;
    let hosts = crate::log::selected(id, manifest.hosts, host)?;
    let prefixed = hosts.len() > 1;
    let mut followers: Vec<Follower> = hosts
        .into_iter()
        .map(|h| Follower::new(h, raw, prefixed))
        .collect();
    let following = async {
        let mut only_unreadable_since: Option<Instant> = None;
        let mut poller = status::Poller::new(id);
        loop {
            // States first: a host finished by then has its log in the store
            // by the time it is read (or its status says how much is missing).
            let report = poller.poll(store).await?;
            // Then every host's log parts from one listing (a page per
            // 1,000 objects): only parts that changed since they were read
            // are read again.
            let mut listed = log_parts(store, id).await?;
            for follower in followers.iter_mut().filter(|f| !f.done) {
                let parts = listed.remove(follower.host.as_str()).unwrap_or_default();
                follower.poll_listed(store, id, &parts, out).await?;
                let row = report
                    .hosts
                    .iter()
                    .find(|r| r.host == follower.host)
                    .expect("every host of the manifest has a row");
                if follower.complete(row) {
                    follower.finish(out)?;
                }
            }
            out.flush()?;
            let left: Vec<HostState> = followers
                .iter()
                .filter(|f| !f.done)
                .filter_map(|f| report.hosts.iter().find(|r| r.host == f.host))
                .map(|r| r.state)
                .collect();
            if left.is_empty() {
                return anyhow::Ok(());
            }
            if left.iter().any(|s| !matches!(s, HostState::Unreadable)) {
                only_unreadable_since = None;
            } else if only_unreadable_since
                .get_or_insert_with(Instant::now)
                .elapsed()
                + every
                > patience
            {
                for follower in followers.iter_mut().filter(|f| !f.done) {
                    follower.finish(out)?;
                }
                out.flush()?;
                return Ok(());
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::select! {
        followed = following => followed.map(|()| exit::SUCCESS),
        _ = interrupted => Ok(exit::INTERRUPTED),
    }
}

/// Every host's log parts of execution `id`, from one listing under
/// `executions/<id>/hosts/`: by host, the part numbers in order with their
/// listing tags. Keys that are not log parts are left out.
async fn log_parts(
    store: &Store,
    id: Uuid,
) -> anyhow::Result<std::collections::HashMap<String, Vec<(u64, String)>>> {
    let prefix = keys::host_objects_prefix(id);
    let mut by_host: std::collections::HashMap<String, Vec<(u64, String)>> =
        std::collections::HashMap::new();
    for entry in store.list_entries(&prefix).await? {
        let Some(rest) = entry.key.strip_prefix(&prefix) else {
            continue;
        };
        let Some((host, name)) = rest.split_once("/log/") else {
            continue;
        };
        if let Some(n) = keys::parse_log_part_name(name) {
            by_host
                .entry(host.to_string())
                .or_default()
                .push((n, entry.etag));
        }
    }
    for parts in by_host.values_mut() {
        parts.sort_unstable_by_key(|(n, _)| *n);
    }
    Ok(by_host)
}

#[cfg(test)]
mod tests {
    use cattle_core::store::{Condition, FileStore};

    use super::*;

    const MIB: usize = LOG_PART_BYTES as usize;

    struct Log {
        store: Store,
        id: Uuid,
        host: HostId,
        _dir: tempfile::TempDir,
    }

    impl Log {
        fn new() -> Log {
            let dir = tempfile::tempdir().unwrap();
            Log {
                store: Store::File(FileStore::open(dir.path().to_path_buf()).unwrap()),
                id: Uuid::now_v7(),
                host: HostId::new("web-3").unwrap(),
                _dir: dir,
            }
        }

        fn put(&self, n: u64, bytes: &[u8]) {
            let Store::File(files) = &self.store else {
                unreachable!()
            };
            files
                .put(
                    &keys::log_part(self.id, &self.host, n),
                    bytes,
                    Condition::Always,
                )
                .unwrap();
        }

        fn delete(&self, n: u64) {
            let Store::File(files) = &self.store else {
                unreachable!()
            };
            files
                .delete(&keys::log_part(self.id, &self.host, n))
                .unwrap();
        }

        async fn poll_listed(&self, follower: &mut Follower, parts: Vec<(u64, String)>) -> String {
            let mut out = Vec::new();
            follower
                .poll_listed(&self.store, self.id, &parts, &mut out)
                .await
                .unwrap();
            String::from_utf8(out).unwrap()
        }

        async fn poll(&self, follower: &mut Follower) -> String {
            let mut out = Vec::new();
            follower.poll(&self.store, self.id, &mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }
    }

    /// A full part of lines `<tag> <n>`, its last line cut by the part's end.
    fn full_part(tag: &str) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(MIB + 32);
        let mut n = 0;
        while bytes.len() < MIB {
            bytes.extend_from_slice(format!("{tag} {n}\n").as_bytes());
            n += 1;
        }
        bytes.truncate(MIB);
        bytes
    }

    #[tokio::test]
    async fn a_part_listed_with_the_tag_it_had_when_read_is_not_read_again() {
        let log = Log::new();
        let mut follower = Follower::new(log.host.clone(), false, false);
        let listed = || async {
            log_parts(&log.store, log.id)
                .await
                .unwrap()
                .remove(log.host.as_str())
                .unwrap_or_default()
        };
        log.put(0, b"one\n");
        let before = listed().await;
        assert_eq!(
            log.poll_listed(&mut follower, before.clone()).await,
            "one\n"
        );
        // The part grows; a listing taken before that still shows the old
        // tag, so the part is not read and nothing is shown...
        log.put(0, b"one\ntwo\n");
        assert_eq!(log.poll_listed(&mut follower, before).await, "");
        // ...until a listing shows it changed: then only the new bytes.
        let after = listed().await;
        assert_eq!(after.len(), 1);
        assert_eq!(log.poll_listed(&mut follower, after.clone()).await, "two\n");
        assert_eq!(log.poll_listed(&mut follower, after).await, "");
        assert_eq!(follower.offset(), 8);
    }

    #[tokio::test]
    async fn a_growing_log_is_shown_once_from_the_offset_it_was_left_at() {
        let log = Log::new();
        let mut follower = Follower::new(log.host.clone(), false, false);
        assert_eq!(log.poll(&mut follower).await, "");
        log.put(0, b"one\ntw");
        assert_eq!(log.poll(&mut follower).await, "one\ntw");
        // Unchanged: nothing again (and the part is not read, its ETag is the same).
        assert_eq!(log.poll(&mut follower).await, "");
        log.put(0, b"one\ntwo\n\x1b[2J\r");
        assert_eq!(log.poll(&mut follower).await, "o\n\\x1b[2J");
        assert_eq!(follower.offset(), 13);

        // The part fills and the next one starts: the rest of the first, then the second.
        let mut part = b"one\ntwo\n\x1b[2J\r".to_vec();
        let whole = full_part("line");
        part.extend_from_slice(&whole[part.len()..]);
        log.put(0, &part);
        log.put(1, b"next part\n");
        let shown = log.poll(&mut follower).await;
        assert!(shown.starts_with("\r\nline 2\n"), "{:?}", &shown[..20]);
        assert!(
            shown.ends_with("next part\n"),
            "{}",
            &shown[shown.len() - 30..]
        );
        assert_eq!(follower.offset(), LOG_PART_BYTES + 10);
        assert_eq!(log.poll(&mut follower).await, "");
    }

    #[tokio::test]
    async fn a_line_split_between_parts_gets_one_prefix() {
        let log = Log::new();
        let mut follower = Follower::new(log.host.clone(), false, true);
        let first = full_part("a");
        log.put(0, &first);
        let shown = log.poll(&mut follower).await;
        // The line cut by the part's end is held back until it ends.
        let cut = first.len() - first.iter().rposition(|&b| b == b'\n').unwrap() - 1;
        assert!(shown.ends_with('\n'));
        log.put(1, b"rest\nb\n");
        let more = log.poll(&mut follower).await;
        let tail = String::from_utf8(first[first.len() - cut..].to_vec()).unwrap();
        assert_eq!(more, format!("[web-3] {tail}rest\n[web-3] b\n"));
        assert!(shown.lines().all(|l| l.starts_with("[web-3] a ")));
    }

    #[tokio::test]
    async fn dropped_middle_parts_show_the_marker_once_and_no_garbage() {
        // Followed from the start of a log that already dropped its middle:
        // head, marker, tail, as `cattle log` shows it.
        let log = Log::new();
        log.put(0, &full_part("head"));
        log.put(1, b"\n[... 2 MiB of output dropped here ...]\n");
        log.put(3, b"tail\n");
        let mut follower = Follower::new(log.host.clone(), false, false);
        let shown = log.poll(&mut follower).await;
        let head = String::from_utf8(full_part("head")).unwrap();
        assert_eq!(
            shown,
            format!("{head}\n[... 2 MiB of output dropped here ...]\ntail\n")
        );
        assert_eq!(shown.matches("dropped").count(), 1);
        assert_eq!(follower.offset(), 3 * LOG_PART_BYTES + 5);
        assert_eq!(log.poll(&mut follower).await, "");

        // Following a log while the host drops the part it was reading: the
        // marker on a line of its own, then what follows the gap.
        let log = Log::new();
        log.put(0, &full_part("head"));
        log.put(1, b"middle line 1\nmiddle li");
        let mut follower = Follower::new(log.host.clone(), false, false);
        let shown = log.poll(&mut follower).await;
        assert!(shown.ends_with("middle line 1\nmiddle li"));
        log.put(1, b"\n[... 3 MiB dropped ...]\n");
        log.put(4, b"tail 1\n");
        let shown = log.poll(&mut follower).await;
        assert_eq!(shown, "\n[... 3 MiB dropped ...]\ntail 1\n");

        // Parts gone past the offset without the marker being read: said once.
        log.delete(4);
        log.put(6, b"later\n");
        let shown = log.poll(&mut follower).await;
        assert_eq!(
            shown,
            format!(
                "[… {} bytes of this log were dropped by the host before they could be shown …]\nlater\n",
                2 * LOG_PART_BYTES - 7
            )
        );
        assert_eq!(log.poll(&mut follower).await, "");
    }
}

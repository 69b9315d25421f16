//! The execution's log on the host, kept as the store keeps it: a byte stream
//! in numbered parts of [`PART`] bytes (`<execution>/log/00000000`, …), every
//! part but the last full, so part `n` always starts at byte `n * PART`.
//!
//! The log is bounded. Past the bound, the parts after the head are dropped one
//! by one from the front of the tail: the first dropped part becomes the
//! *marker*, a line saying how much was dropped, and the others are deleted.
//! So the log keeps its first and its last half of the bound, and a reader that
//! concatenates the parts in order reads head, marker, tail.
//!
//! [`LogWriter`] appends (on the runner's thread); [`Layout::scan`] tells the
//! uploader what is there. The marker is the one part that is neither full nor
//! the last, so both find it from the sizes alone.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cattle_core::keys::{log_part_name, parse_log_part_name};
use cattle_core::wire::{LOG_PART_BYTES, LogSummary};

/// Bytes in every part but the last.
pub const PART: u64 = LOG_PART_BYTES;

const MIB: u64 = 1024 * 1024;

/// The parts in a log directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Part numbers and sizes, in order.
    pub parts: Vec<(u64, u64)>,
    /// The part that says how much was dropped, if anything was.
    pub marker: Option<u64>,
}

impl Layout {
    /// What is in `dir` now; an absent directory holds nothing.
    pub fn scan(dir: &Path) -> std::io::Result<Layout> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Layout::default()),
            Err(e) => return Err(e),
        };
        let mut parts = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(n) = entry.file_name().to_str().and_then(parse_log_part_name) else {
                continue;
            };
            match entry.metadata() {
                Ok(meta) => parts.push((n, meta.len())),
                // Dropped since the listing.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        parts.sort_unstable();
        let last = parts.last().map(|&(n, _)| n);
        let marker = parts
            .iter()
            .find(|&&(n, size)| Some(n) != last && size < PART)
            .map(|&(n, _)| n);
        Ok(Layout { parts, marker })
    }

    /// The last part: the one still growing.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.parts.last().copied()
    }

    /// The first part after the marker: the oldest part of the tail kept.
    pub fn first_tail(&self) -> Option<u64> {
        let marker = self.marker?;
        self.parts.iter().map(|&(n, _)| n).find(|&n| n > marker)
    }

    /// Bytes dropped from the middle of the log.
    pub fn dropped(&self) -> u64 {
        match (self.marker, self.first_tail()) {
            (Some(marker), Some(tail)) => (tail - marker) * PART,
            _ => 0,
        }
    }

    pub fn summary(&self) -> LogSummary {
        let bytes = self.last().map_or(0, |(n, size)| n * PART + size);
        LogSummary {
            bytes,
            parts: match self.last() {
                Some((n, _)) if bytes > 0 => n + 1,
                _ => 0,
            },
            dropped: self.dropped(),
        }
    }
}

/// Appends to an execution's log parts, keeping at most the bound.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    /// The bound, in MiB (at least 2), for the marker's text.
    bound_mib: u64,
    /// Parts kept at the start (the marker comes right after them).
    head: u64,
    /// Parts kept at the end, the growing one included.
    tail: u64,
    layout_marker: Option<u64>,
    /// The oldest part of the tail.
    first_tail: u64,
    /// The growing part, its size, and the file (opened on first write).
    last: u64,
    len: u64,
    file: Option<File>,
    /// The log so far does not end a line (an interrupted write): the next
    /// write starts a new one.
    newline: bool,
}

impl LogWriter {
    /// Continue the log in `dir` (creating it), keeping at most `bound_mib`
    /// MiB: the first half and the last half. A log that already dropped
    /// parts keeps the head it had.
    pub fn open(dir: &Path, bound_mib: u64) -> std::io::Result<LogWriter> {
        std::fs::create_dir_all(dir)?;
        let layout = Layout::scan(dir)?;
        let bound = bound_mib.max(2);
        let head = layout.marker.unwrap_or(bound / 2);
        let (last, len) = layout.last().unwrap_or((0, 0));
        let mut writer = LogWriter {
            dir: dir.to_path_buf(),
            bound_mib: bound,
            head,
            tail: bound.saturating_sub(head).max(1),
            layout_marker: layout.marker,
            first_tail: layout.first_tail().unwrap_or(head),
            last,
            len,
            file: None,
            newline: false,
        };
        if len > 0 {
            writer.newline = writer.last_byte(last, len)? != Some(b'\n');
        }
        if writer.layout_marker.is_some() {
            // The marker may be stale if the agent stopped between dropping a
            // part and rewriting it.
            writer.write_marker()?;
        }
        Ok(writer)
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(log_part_name(n))
    }

    /// Where the log's bytes go now: the growing part.
    pub fn current_path(&self) -> PathBuf {
        self.path(self.last)
    }

    pub fn summary(&self) -> LogSummary {
        LogSummary {
            bytes: self.last * PART + self.len,
            parts: if self.last == 0 && self.len == 0 {
                0
            } else {
                self.last + 1
            },
            dropped: match self.layout_marker {
                Some(marker) => (self.first_tail - marker) * PART,
                None => 0,
            },
        }
    }

    /// Append `bytes`. On an error, returns how many of them were written
    /// (they are in the log): write the rest to continue.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
        let mut written = 0;
        if self.newline {
            self.write_some(b"\n").map_err(|e| (0, e))?;
            self.newline = false;
        }
        while written < bytes.len() {
            match self.write_some(&bytes[written..]) {
                Ok(n) => written += n,
                Err(e) => return Err((written, e)),
            }
        }
        Ok(())
    }

    /// Write some of `bytes` into the growing part, starting the next part
    /// first if it is full; the count written.
    fn write_some(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.len >= PART {
            self.start_next_part()?;
        }
        // Whatever the bound left to do when a write failed.
        self.keep_bound()?;
        let room = (PART - self.len) as usize;
        let chunk = &bytes[..bytes.len().min(room)];
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path(self.last))?,
            ),
        };
        let n = loop {
            match file.write(chunk) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.len += n as u64;
        Ok(n)
    }

    /// Seal the full growing part and start the next.
    fn start_next_part(&mut self) -> std::io::Result<()> {
        if let Some(file) = &self.file {
            file.sync_data()?;
        }
        let next = self.last + 1;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(next))?;
        // Left over from an agent stopped mid-way, it holds nothing of this log.
        file.set_len(0)?;
        self.file = Some(file);
        self.last = next;
        self.len = 0;
        Ok(())
    }

    /// Drop parts from the front of the tail until it is within the bound.
    fn keep_bound(&mut self) -> std::io::Result<()> {
        while self.last >= self.first_tail + self.tail && self.first_tail < self.last {
            let oldest = self.first_tail;
            if self.layout_marker.is_none() {
                // The first part dropped becomes the marker: written in place
                // (truncated first, which frees its space on a full disk), so
                // there is never a gap without one.
                self.layout_marker = Some(oldest);
            } else {
                match std::fs::remove_file(self.path(oldest)) {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            self.first_tail = oldest + 1;
            self.write_marker()?;
        }
        Ok(())
    }

    /// Write the marker's line for what is dropped now.
    fn write_marker(&mut self) -> std::io::Result<()> {
        let Some(marker) = self.layout_marker else {
            return Ok(());
        };
        let dropped_mib = (self.first_tail - marker) * PART / MIB;
        // The head ends wherever its last part is full, usually mid-line.
        let newline = match marker.checked_sub(1) {
            Some(before) => self.last_byte(before, PART)? != Some(b'\n'),
            None => false,
        };
        let text = format!(
            "{}[… {dropped_mib} MiB of output dropped here: the log keeps its first {} MiB \
             and its last {} MiB (--max-log-mib {}) …]\n",
            if newline { "\n" } else { "" },
            self.head * PART / MIB,
            self.tail * PART / MIB,
            self.bound_mib,
        );
        let path = self.path(marker);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if file.metadata()?.len() == text.len() as u64 {
            let mut current = Vec::new();
            file.read_to_end(&mut current)?;
            if current == text.as_bytes() {
                return Ok(());
            }
            file.seek(SeekFrom::Start(0))?;
        }
        file.set_len(0)?;
        file.write_all(text.as_bytes())
    }

    /// The byte at `len - 1` of part `n`, if it has one.
    fn last_byte(&self, n: u64, len: u64) -> std::io::Result<Option<u8>> {
        if len == 0 {
            return Ok(None);
        }
        let mut file = match File::open(self.path(n)) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(len - 1))?;
        let mut byte = [0u8];
        match file.read(&mut byte)? {
            1 => Ok(Some(byte[0])),
            _ => Ok(None),
        }
    }

    /// Make what was written so far durable.
    pub fn sync(&self) -> std::io::Result<()> {
        match &self.file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path) -> Vec<u8> {
        let layout = Layout::scan(dir).unwrap();
        let mut all = Vec::new();
        for (n, _) in layout.parts {
            all.extend(std::fs::read(dir.join(log_part_name(n))).unwrap());
        }
        all
    }

    fn line(i: usize) -> Vec<u8> {
        let mut line = format!("line {i:07} ").into_bytes();
        line.resize(999, b'.');
        line.push(b'\n');
        line
    }

    #[test]
    fn parts_are_full_but_the_last_and_concatenate_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut writer = LogWriter::open(&log, 64).unwrap();
        assert_eq!(writer.summary(), LogSummary::default());
        let mut expected = Vec::new();
        for i in 0..3000 {
            writer.write(&line(i)).unwrap();
            expected.extend(line(i));
        }
        let layout = Layout::scan(&log).unwrap();
        assert_eq!(
            layout.parts,
            [(0, PART), (1, PART), (2, 3_000_000 - 2 * PART)]
        );
        assert_eq!(layout.marker, None);
        assert_eq!(
            layout.summary(),
            LogSummary {
                bytes: 3_000_000,
                parts: 3,
                dropped: 0
            }
        );
        assert_eq!(writer.summary(), layout.summary());
        assert_eq!(read_all(&log), expected);

        // Reopened (an agent restarted), it carries on where it was.
        drop(writer);
        let mut writer = LogWriter::open(&log, 64).unwrap();
        writer.write(b"more\n").unwrap();
        expected.extend(b"more\n");
        assert_eq!(read_all(&log), expected);
    }

    #[test]
    fn beyond_the_bound_the_middle_is_dropped_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // 4 MiB: the first 2 parts and the last 2 are kept.
        let mut writer = LogWriter::open(&log, 4).unwrap();
        let mut expected = Vec::new();
        let lines = 20 * 1024 * 1024 / 1000;
        for i in 0..lines {
            writer.write(&line(i)).unwrap();
            expected.extend(line(i));
        }
        let total = expected.len() as u64;
        let layout = Layout::scan(&log).unwrap();
        let last = total / PART;
        let numbers: Vec<u64> = layout.parts.iter().map(|&(n, _)| n).collect();
        assert_eq!(numbers, [0, 1, 2, last - 1, last]);
        assert_eq!(layout.marker, Some(2));
        let dropped = (last - 1 - 2) * PART;
        assert_eq!(
            layout.summary(),
            LogSummary {
                bytes: total,
                parts: last + 1,
                dropped
            }
        );
        assert_eq!(writer.summary(), layout.summary());

        let kept = read_all(&log);
        let marker = format!(
            "\n[… {} MiB of output dropped here: the log keeps its first 2 MiB and its last 2 MiB \
             (--max-log-mib 4) …]\n",
            dropped / MIB
        );
        let head = &expected[..2 * PART as usize];
        let tail = &expected[((last - 1) * PART) as usize..];
        assert_eq!(kept, [head, marker.as_bytes(), tail].concat());

        // Reopened with another bound, it keeps the head it has.
        drop(writer);
        let mut writer = LogWriter::open(&log, 64).unwrap();
        writer.write(b"end\n").unwrap();
        assert_eq!(Layout::scan(&log).unwrap().marker, Some(2));
    }

    #[test]
    fn a_write_that_fails_half_way_can_be_finished_without_repeating_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut writer = LogWriter::open(&log, 64).unwrap();
        writer.write(b"first\npartial").unwrap();
        // An agent stopped mid-line: the next one starts a new line.
        drop(writer);
        let mut writer = LogWriter::open(&log, 64).unwrap();
        writer.write(b"next\n").unwrap();
        assert_eq!(read_all(&log), b"first\npartial\nnext\n");
    }
}

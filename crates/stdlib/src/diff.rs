//! What a step would change in a file, shown as a unified diff.
//!
//! A facility that keeps a file's contents answers [`crate::Facility::diff`]
//! with a [`Diff`]: the file as it is on the host and as the step leaves it.
//! The runner renders it with [`Diff::render`] (in check mode, or with
//! `--diff`) and reports the text as an event, so that it passes through the
//! runner's one redaction point like everything else it reports.
//!
//! A diff shows the host's own files, which may hold what nobody should read
//! in a log. So the contents of a file that is not readable by everyone (on
//! the host, or as the step leaves it) are never shown, only its size; a
//! step with `sensitive` arguments never shows the lines only the host's file
//! has, which may hold an earlier value of the secret; and control characters
//! are shown escaped (`\x1b`), so no file acts on the terminal of whoever
//! reads the log.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use similar::udiff::UnifiedHunkHeader;
use similar::{ChangeTag, TextDiff};

use crate::facility::FacilityError;
use crate::secrets::MARKER;

/// The largest file whose contents a diff compares line by line; of a larger
/// one it shows the sizes only.
pub const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// The most text one rendered diff holds; the rest is cut with [`CUT`].
pub const MAX_BYTES: usize = 64 * 1024;

/// The most lines one rendered diff holds; the rest is cut with [`CUT`].
pub const MAX_LINES: usize = 1000;

/// The last line of a diff that was cut.
pub const CUT: &str = "… [diff cut]";

/// Unchanged lines shown around each change.
const CONTEXT_LINES: usize = 3;

/// How long the line diff may search for the smallest diff; past it, a
/// larger but still correct diff is shown.
const SEARCH_TIME: Duration = Duration::from_secs(1);

/// One side of a [`Diff`]: a file's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// There is no file.
    Absent,
    /// The file's bytes (at most [`MAX_INPUT_BYTES`]).
    Bytes(Vec<u8>),
    /// A file of this many bytes, too large to compare line by line.
    Large(u64),
    /// Only as [`Diff::new`]: the step leaves the contents as they are
    /// (it changes only the mode or the owner).
    Kept,
}

impl Side {
    /// The contents read from `reader`, a file of `len` bytes at `path`:
    /// read only when it is at most [`MAX_INPUT_BYTES`].
    pub fn read(reader: &mut dyn Read, len: u64, path: &Path) -> Result<Side, FacilityError> {
        if len > MAX_INPUT_BYTES {
            return Ok(Side::Large(len));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        reader
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| FacilityError::io("read", path, err))?;
        Ok(Side::of(bytes))
    }

    /// `bytes` as a side: [`Side::Large`] past [`MAX_INPUT_BYTES`].
    pub fn of(bytes: Vec<u8>) -> Side {
        if bytes.len() as u64 > MAX_INPUT_BYTES {
            Side::Large(bytes.len() as u64)
        } else {
            Side::Bytes(bytes)
        }
    }

    /// The size in bytes; 0 for no file.
    fn len(&self) -> u64 {
        match self {
            Side::Absent | Side::Kept => 0,
            Side::Bytes(bytes) => bytes.len() as u64,
            Side::Large(len) => *len,
        }
    }

    /// The contents as text, if they are text: UTF-8 without NUL bytes.
    fn text(&self) -> Option<&str> {
        match self {
            Side::Absent => Some(""),
            Side::Bytes(bytes) if !bytes.contains(&0) => std::str::from_utf8(bytes).ok(),
            Side::Bytes(_) | Side::Large(_) | Side::Kept => None,
        }
    }
}

/// What a step would change in one file: its contents, mode and owner on
/// the host now, and as the step leaves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub path: PathBuf,
    /// The file on the host now.
    pub old: Side,
    /// The file as the step leaves it.
    pub new: Side,
    /// The mode of the file on the host; `None` when there is none.
    pub old_mode: Option<u32>,
    /// The mode the step leaves; `None` when it leaves no file.
    pub new_mode: Option<u32>,
    /// Other changes a diff of the text cannot show, one line each
    /// (`owner 0 → 65534`).
    pub notes: Vec<String>,
}

impl Diff {
    /// The file at `path` goes from `old` (with mode `old_mode`) to `new`
    /// (with `new_mode`).
    pub fn new(
        path: &Path,
        (old, old_mode): (Side, Option<u32>),
        (new, new_mode): (Side, Option<u32>),
    ) -> Diff {
        Diff {
            path: path.to_path_buf(),
            old,
            new,
            old_mode,
            new_mode,
            notes: Vec::new(),
        }
    }

    /// The same diff with `note` added.
    pub fn note(mut self, note: impl Into<String>) -> Diff {
        self.notes.push(note.into());
        self
    }

    /// The owner and group changes from `current` (uid, gid; `None` for a
    /// new file) to `uid` and `gid` (`None`: as they are), as notes.
    pub fn owner_notes(
        mut self,
        current: Option<(u32, u32)>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Diff {
        for (what, now, wanted) in [
            ("owner", current.map(|c| c.0), uid),
            ("group", current.map(|c| c.1), gid),
        ] {
            match (now, wanted) {
                (Some(now), Some(wanted)) if now != wanted => {
                    self.notes.push(format!("{what} {now} → {wanted}"));
                }
                (None, Some(wanted)) => self.notes.push(format!("{what} {wanted}")),
                _ => {}
            }
        }
        self
    }

    /// The diff as text: `--- PATH (on the host)` and `+++ PATH (as the step
    /// leaves it)`, a line per change of existence, mode and owner, then the
    /// hunks of a unified diff, or one line saying why the contents are not
    /// shown. At most [`MAX_LINES`] lines and [`MAX_BYTES`] bytes, then
    /// [`CUT`]. With `hide_removed` (a step with sensitive arguments), every
    /// line only the host's file has is shown as `-[sensitive]`.
    pub fn render(&self, hide_removed: bool) -> String {
        let mut out = Capped::default();
        let path = escape(&self.path.to_string_lossy()).into_owned();
        out.push(&format!("--- {path} (on the host)"));
        out.push(&format!("+++ {path} (as the step leaves it)"));
        match (&self.old, &self.new, self.old_mode, self.new_mode) {
            (Side::Absent, Side::Absent, _, _) => {}
            (Side::Absent, _, _, Some(mode)) => out.push(&format!("new file, mode {mode:04o}")),
            (Side::Absent, _, _, None) => out.push("new file"),
            (_, Side::Absent, _, _) => out.push("file removed"),
            (_, _, Some(old), Some(new)) if old != new => {
                out.push(&format!("mode {old:04o} → {new:04o}"));
            }
            _ => {}
        }
        for note in &self.notes {
            out.push(&escape(note));
        }
        if self.new == Side::Kept || (self.old == Side::Absent && self.new == Side::Absent) {
            return out.finish();
        }
        let private = [self.old_mode, self.new_mode]
            .iter()
            .flatten()
            .any(|mode| mode & 0o004 == 0);
        let sizes = format!("{} → {} bytes", self.old.len(), self.new.len());
        if private {
            out.push(&format!(
                "contents not shown: the file is not readable by everyone ({sizes})"
            ));
        } else if matches!(self.old, Side::Large(_)) || matches!(self.new, Side::Large(_)) {
            out.push(&format!("contents differ, {sizes}: too large to show"));
        } else if let (Some(old), Some(new)) = (self.old.text(), self.new.text()) {
            hunks(&mut out, old, new, hide_removed);
        } else {
            out.push(&format!("binary file differs, {sizes}"));
        }
        out.finish()
    }
}

/// The hunks of the unified diff from `old` to `new`, into `out`.
fn hunks(out: &mut Capped, old: &str, new: &str, hide_removed: bool) {
    let diff = TextDiff::configure()
        .timeout(SEARCH_TIME)
        .diff_lines(old, new);
    for group in diff.grouped_ops(CONTEXT_LINES) {
        out.push(&UnifiedHunkHeader::new(&group).to_string());
        for op in &group {
            for change in diff.iter_changes(op) {
                let value = change.value();
                let line = value.strip_suffix('\n').unwrap_or(value);
                let shown = match change.tag() {
                    ChangeTag::Delete if hide_removed => format!("-{MARKER}"),
                    tag => format!("{tag}{}", escape(line)),
                };
                out.push(&shown);
                if change.missing_newline() {
                    out.push("\\ No newline at end of file");
                }
                if out.cut {
                    return;
                }
            }
        }
    }
}

/// `text` with control characters but tab shown as escapes (`\r`, `\x1b`).
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Lines joined with `\n`, cut with [`CUT`] past [`MAX_LINES`] or [`MAX_BYTES`].
#[derive(Default)]
struct Capped {
    text: String,
    lines: usize,
    cut: bool,
}

impl Capped {
    /// Add `line`, unless the diff is cut already.
    fn push(&mut self, line: &str) {
        if self.cut {
            return;
        }
        let room = MAX_BYTES.saturating_sub(self.text.len() + 1);
        if self.lines == MAX_LINES || line.len() > room {
            if self.lines < MAX_LINES {
                // As much of this line as fits, cut at a character.
                let mut end = room.min(line.len());
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                if end > 0 {
                    self.add(&line[..end]);
                }
            }
            self.add(CUT);
            self.cut = true;
            return;
        }
        self.add(line);
    }

    fn add(&mut self, line: &str) {
        if self.lines > 0 {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.lines += 1;
    }

    fn finish(self) -> String {
        self.text
    }
}

/// "a symbolic link (to `target`) is replaced by a file", when `path` is a
/// symbolic link: what the diff of a step that writes a file there cannot
/// show otherwise.
pub fn link_note(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(format!(
        "the symbolic link to `{}` is replaced by a file",
        target.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str, old: &str, new: &str, mode: u32) -> Diff {
        Diff::new(
            Path::new(path),
            (Side::Bytes(old.as_bytes().to_vec()), Some(mode)),
            (Side::Bytes(new.as_bytes().to_vec()), Some(mode)),
        )
    }

    #[test]
    fn a_text_change_is_a_unified_diff_with_three_lines_of_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\ni";
        assert_eq!(
            text("/etc/x", old, new, 0o644).render(false),
            "--- /etc/x (on the host)\n\
             +++ /etc/x (as the step leaves it)\n\
             @@ -2,7 +2,8 @@\n \
             b\n \
             c\n \
             d\n\
             -e\n\
             +E\n \
             f\n \
             g\n \
             h\n\
             +i\n\
             \\ No newline at end of file"
        );
    }

    #[test]
    fn new_removed_mode_owner_binary_large_and_private_files_say_so() {
        let path = Path::new("/srv/f");
        let new = Diff::new(
            path,
            (Side::Absent, None),
            (Side::Bytes(b"hi\n".to_vec()), Some(0o640 | 0o004)),
        )
        .owner_notes(None, Some(0), None);
        assert_eq!(
            new.render(false),
            "--- /srv/f (on the host)\n+++ /srv/f (as the step leaves it)\n\
             new file, mode 0644\nowner 0\n@@ -0,0 +1 @@\n+hi"
        );
        let removed = Diff::new(
            path,
            (Side::Bytes(b"bye\n".to_vec()), Some(0o644)),
            (Side::Absent, None),
        );
        assert!(
            removed
                .render(false)
                .ends_with("file removed\n@@ -1 +0,0 @@\n-bye"),
            "{}",
            removed.render(false)
        );
        let mode = Diff::new(
            path,
            (Side::Bytes(b"x".to_vec()), Some(0o666)),
            (Side::Kept, Some(0o644)),
        )
        .owner_notes(Some((0, 0)), Some(65534), Some(0));
        assert_eq!(
            mode.render(false),
            "--- /srv/f (on the host)\n+++ /srv/f (as the step leaves it)\n\
             mode 0666 → 0644\nowner 0 → 65534"
        );
        let binary = Diff::new(
            path,
            (Side::Bytes(vec![0, 1, 2]), Some(0o644)),
            (Side::Bytes(b"text\n".to_vec()), Some(0o644)),
        );
        assert!(
            binary
                .render(false)
                .ends_with("\nbinary file differs, 3 → 5 bytes")
        );
        let large = Diff::new(
            path,
            (Side::Large(MAX_INPUT_BYTES + 1), Some(0o644)),
            (Side::Bytes(b"small\n".to_vec()), Some(0o644)),
        );
        assert!(
            large
                .render(false)
                .ends_with("\ncontents differ, 1048577 → 6 bytes: too large to show")
        );
        // Readable by its owner only, before or after: no line of it is shown.
        for (old, new) in [(0o600, 0o644), (0o644, 0o640)] {
            let private = text("/srv/f", "secret\n", "other\n", old);
            let private = Diff {
                new_mode: Some(new),
                ..private
            };
            let shown = private.render(false);
            assert!(
                shown.ends_with(
                    "\ncontents not shown: the file is not readable by everyone (7 → 6 bytes)"
                ),
                "{shown}"
            );
            assert!(!shown.contains("secret"), "{shown}");
        }
    }

    #[test]
    fn control_characters_are_escaped_and_removed_lines_can_be_hidden() {
        let diff = text(
            "/x\x1b]0;t\x07",
            "keep\nold\r\n",
            "keep\n\x1b[2Jnew\n",
            0o644,
        );
        assert_eq!(
            diff.render(false),
            "--- /x\\x1b]0;t\\x07 (on the host)\n+++ /x\\x1b]0;t\\x07 (as the step leaves it)\n\
             @@ -1,2 +1,2 @@\n keep\n-old\\r\n+\\x1b[2Jnew"
        );
        assert!(
            diff.render(true)
                .ends_with("\n keep\n-[sensitive]\n+\\x1b[2Jnew")
        );
    }

    #[test]
    fn a_long_diff_is_cut_by_lines_and_by_bytes() {
        let new: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let shown = text("/x", "", &new, 0o644).render(false);
        assert_eq!(shown.lines().count(), MAX_LINES + 1);
        assert!(
            shown.ends_with(&format!("\n+line 996\n{CUT}")),
            "{}",
            &shown[shown.len() - 40..]
        );

        let wide = format!("{}\n", "é".repeat(100_000));
        let shown = text("/x", "", &wide, 0o644).render(false);
        assert!(shown.len() <= MAX_BYTES + CUT.len() + 1, "{}", shown.len());
        assert!(shown.ends_with(&format!("é\n{CUT}")));
    }

    #[test]
    fn reading_a_side_stops_at_the_limit() {
        let big = vec![b'a'; MAX_INPUT_BYTES as usize + 10];
        let path = Path::new("/x");
        assert_eq!(
            Side::read(&mut &big[..], big.len() as u64, path).unwrap(),
            Side::Large(MAX_INPUT_BYTES + 10)
        );
        // A file that grew since its size was read.
        assert_eq!(
            Side::read(&mut &big[..], 5, path).unwrap(),
            Side::Large(MAX_INPUT_BYTES + 1)
        );
        assert_eq!(
            Side::read(&mut &b"abc"[..], 3, path).unwrap(),
            Side::Bytes(b"abc".to_vec())
        );
    }
}

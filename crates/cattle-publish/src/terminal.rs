//! Store content made safe to print: the one place where bytes hosts wrote
//! (logs, status fields) and text quoting them (errors) are escaped before
//! they reach an operator's terminal.
//!
//! A host writes its own log and status, so a compromised one could otherwise
//! clear the screen (`ESC[2J`), write the operator's clipboard (OSC 52), set the
//! window title, move the cursor, or overwrite a line with a bare carriage
//! return to forge "completed successfully". Everything that is not plain
//! printable text is shown escaped instead, visibly:
//!
//! - C0 controls other than `\n` and `\t`, and DEL: `\x1b`, `\x07`, `\x7f`, …;
//! - a carriage return not followed by a line feed: `\r` (a `\r\n` line end
//!   is left alone: it overwrites nothing);
//! - C1 controls (U+0080–U+009F; U+009B is a one-character CSI on some
//!   terminals), Unicode bidirectional controls (U+061C, U+200E, U+200F,
//!   U+202A–U+202E, U+2066–U+2069: "Trojan Source" reordering) and the line and
//!   paragraph separators U+2028, U+2029: `\u{9b}`, `\u{202e}`, …;
//! - bytes that are not UTF-8: `\xNN`.
//!
//! [`text`] and [`Escaper`] keep `\n` and `\t` (a log); [`line()`] escapes them
//! too (a table cell, which must stay on its row, and an error line, which a
//! quoted value must not end to start a forged `hint:` of its own). A backslash is left as it
//! is: an escape and the same characters typed by a host look alike, which
//! is harmless; `cattle log --raw` gives the exact bytes. JSON output is
//! already escaped by its encoder except for DEL, C1 and the Unicode controls,
//! which [`json`] adds.

use std::fmt::Write as _;
use std::io::{self, Write};

/// Whether line feeds and tabs are kept (a log) or escaped (one line, a table cell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Line,
}

/// `s` with everything but printable text, `\n` and `\t` escaped.
pub fn text(s: &str) -> String {
    bytes(s.as_bytes())
}

/// `s` on one line: like [`text`], and `\n` and `\t` escaped too.
pub fn line(s: &str) -> String {
    if is_plain(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    escape(&mut out, s.as_bytes(), Mode::Line, true);
    out
}

/// [`line()`] of a string made here: returned as it is when nothing in it
/// needs escaping.
pub fn line_owned(s: String) -> String {
    if is_plain(&s) { s } else { line(&s) }
}

/// Whether `s` is printable ASCII only, which [`line()`] leaves as it is: host
/// IDs, times and Cattle's own words, which need no look at each character.
fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| (b' '..b'\x7f').contains(&b))
}

/// [`text`] of bytes that may not be UTF-8: invalid bytes are shown as `\xNN`.
pub fn bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    escape(&mut out, b, Mode::Text, true);
    out
}

/// A JSON document with DEL, C1 and the Unicode controls (see the module
/// documentation) inside its strings written as `\uXXXX`: the same JSON value,
/// which no terminal acts on. The encoder escapes the C0 controls itself.
pub fn json(document: &str) -> String {
    let mut out = String::with_capacity(document.len());
    for c in document.chars() {
        if c != '\n' && c != '\t' && c != '\r' && needs_escape(c) {
            // Outside strings JSON has only ASCII structure and whitespace, so
            // these characters are inside strings.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is shown escaped in [`Mode::Text`] (`\r` needs a look ahead).
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\x0b'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        | '\u{2028}' | '\u{2029}')
        && c != '\r'
}

/// Escape `input` into `out`; returns how many bytes were used. Unless `last`,
/// a trailing `\r` (a `\n` may follow) and a trailing incomplete UTF-8
/// sequence are left for the next call.
fn escape(out: &mut String, mut input: &[u8], mode: Mode, last: bool) -> usize {
    let total = input.len();
    loop {
        match std::str::from_utf8(input) {
            Ok(s) => return total - escape_str(out, s, mode, last),
            Err(e) => {
                let (valid, rest) = input.split_at(e.valid_up_to());
                let valid = std::str::from_utf8(valid).expect("checked by from_utf8");
                match e.error_len() {
                    Some(n) => {
                        escape_str(out, valid, mode, true);
                        for b in &rest[..n] {
                            let _ = write!(out, "\\x{b:02x}");
                        }
                        input = &rest[n..];
                    }
                    // The input ends inside a character.
                    None if last => {
                        escape_str(out, valid, mode, true);
                        for b in rest {
                            let _ = write!(out, "\\x{b:02x}");
                        }
                        return total;
                    }
                    None => {
                        escape_str(out, valid, mode, true);
                        return total - rest.len();
                    }
                }
            }
        }
    }
}

/// Escape `s` into `out`; returns how many bytes at its end were left (a
/// trailing `\r` when not `last`).
fn escape_str(out: &mut String, s: &str, mode: Mode, last: bool) -> usize {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' if mode == Mode::Text => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => match chars.peek() {
                Some('\n') if mode == Mode::Text => out.push('\r'),
                None if !last => return 1,
                _ => out.push_str("\\r"),
            },
            c if c < ' ' || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    0
}

/// Writes bytes to `inner` as [`bytes`] shows them, in pieces: a character
/// or a `\r\n` split between two writes is escaped as if written at once.
/// Call [`finish`](Escaper::finish) at the end, which writes what is held back.
#[derive(Debug)]
pub struct Escaper<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Escaper<W> {
    pub fn new(inner: W) -> Self {
        Escaper {
            inner,
            pending: Vec::new(),
        }
    }

    /// The writer escaped bytes go to (to take what a `Vec` collected).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Write what is held back (an incomplete character as `\xNN`, a last
    /// `\r` as `\r`), flush, and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut out = String::new();
        escape(&mut out, &self.pending, Mode::Text, true);
        self.pending.clear();
        self.inner.write_all(out.as_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Escaper<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let mut out = String::with_capacity(self.pending.len());
        let used = escape(&mut out, &self.pending, Mode::Text, false);
        self.pending.drain(..used);
        self.inner.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_new_lines_and_tabs_pass_unchanged() {
        let plain = "Step 2 completed successfully\n\tnext: ü, 日本, emoji 🐄, \\x1b typed\r\nend";
        assert_eq!(text(plain), plain);
        assert_eq!(bytes(plain.as_bytes()), plain);
    }

    #[test]
    fn a_line_is_escaped_the_same_whether_borrowed_or_owned() {
        for (input, shown) in [
            ("web-01", "web-01"),
            ("2026-12-02T00:00:00.000Z", "2026-12-02T00:00:00.000Z"),
            ("", ""),
            ("a\tb\nc", "a\\tb\\nc"),
            ("\x1b[2J", "\\x1b[2J"),
            ("\x7f", "\\x7f"),
            ("ü \u{202e}", "ü \\u{202e}"),
        ] {
            assert_eq!(line(input), shown, "{input:?}");
            assert_eq!(line_owned(input.to_string()), shown, "{input:?}");
        }
    }

    #[test]
    fn terminal_control_sequences_are_shown_escaped() {
        for (hostile, shown) in [
            ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
            ("\x1b]52;c;ZWNobyBoaQ==\x07", "\\x1b]52;c;ZWNobyBoaQ==\\x07"),
            ("\x1b]0;title\x1b\\", "\\x1b]0;title\\x1b\\"),
            ("\x1b[1A\x1b[2K", "\\x1b[1A\\x1b[2K"),
            ("\u{9b}2J", "\\u{9b}2J"),
            ("\u{85}\u{80}\u{9f}", "\\u{85}\\u{80}\\u{9f}"),
            ("\x00\x08\x0b\x0c\x7f", "\\x00\\x08\\x0b\\x0c\\x7f"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            (
                "\u{2066}\u{2069}\u{200e}\u{61c}",
                "\\u{2066}\\u{2069}\\u{200e}\\u{61c}",
            ),
            ("a\u{2028}b", "a\\u{2028}b"),
        ] {
            assert_eq!(text(hostile), shown, "{hostile:?}");
            assert!(!text(hostile).contains('\x1b'));
        }
    }

    #[test]
    fn a_bare_carriage_return_cannot_overwrite_a_line() {
        assert_eq!(
            text("Step 3 failed\rStep 3 completed successfully\n"),
            "Step 3 failed\\rStep 3 completed successfully\n"
        );
        assert_eq!(text("a\r\nb\r\r\nc\r"), "a\r\nb\\r\r\nc\\r");
    }

    #[test]
    fn invalid_utf8_is_shown_byte_by_byte() {
        assert_eq!(bytes(b"ok \xff\xfe ok"), "ok \\xff\\xfe ok");
        // A truncated character at the end, and one in the middle.
        assert_eq!(bytes(b"caf\xc3"), "caf\\xc3");
        assert_eq!(bytes(b"a\xe6\x97b"), "a\\xe6\\x97b");
        // A C1 control encoded on its own (not UTF-8) is a byte like any other.
        assert_eq!(bytes(b"\x9b2J"), "\\x9b2J");
    }

    #[test]
    fn one_line_escapes_line_ends_and_tabs_too() {
        assert_eq!(
            line("refused\n\tDONE\r\n\x1b[31m"),
            "refused\\n\\tDONE\\r\\n\\x1b[31m"
        );
    }

    #[test]
    fn escaping_in_pieces_is_escaping_at_once() {
        let input = "héllo\r\nwörld\r\x1b[2J日本\r".as_bytes();
        let whole = bytes(input);
        for size in 1..=input.len() {
            let mut escaper = Escaper::new(Vec::new());
            for piece in input.chunks(size) {
                escaper.write_all(piece).unwrap();
            }
            let out = escaper.finish().unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), whole, "pieces of {size}");
        }
        // What is held back at the end is written by finish, escaped.
        let mut escaper = Escaper::new(Vec::new());
        escaper.write_all(b"x\xe6\x97").unwrap();
        assert_eq!(escaper.finish().unwrap(), b"x\\xe6\\x97");
    }

    #[test]
    fn json_stays_the_same_json_without_terminal_controls() {
        let value = serde_json::json!({
            "error": "\x1b]52;c;aGk=\x07 \u{9b}2J \x7f \u{202e} \r\n\t",
            "ok": "ü 日本",
        });
        let encoded = json(&serde_json::to_string_pretty(&value).unwrap());
        assert!(
            !encoded
                .chars()
                .any(|c| (c.is_control() && c != '\n') || needs_escape(c)),
            "{encoded}"
        );
        assert!(
            encoded.contains("\\u009b") && encoded.contains("\\u202e"),
            "{encoded}"
        );
        let decoded: serde_json::Value = serde_json::from_str(&encoded).unwrap();
        assert_eq!(decoded, value);
    }
}

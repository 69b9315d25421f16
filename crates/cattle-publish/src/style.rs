//! Colour in `cattle`'s output: when to use it, and the few words it paints.
//!
//! Colour is on only where a person reads it: `--color auto` (the default)
//! paints when the stream is a terminal, `NO_COLOR` is unset or empty
//! (<https://no-color.org>) and `TERM` is not `dumb`; `--color always` paints
//! anyway (for `less -R`), `--color never` never does. It only ever wraps
//! Cattle's own words (state names, `error:`, flags in a table), never text a
//! host or the store supplied: that is escaped by [`crate::terminal`] and
//! printed as it is. A painted cell is padded first and painted after, so the
//! escape sequences never count towards a column's width.

use std::io::IsTerminal;

/// `--color`: when to paint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set or `TERM=dumb`.
    #[default]
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

/// What a word means, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Finished well: DONE, in state.
    Good,
    /// Needs attention: ERROR, UNREADABLE, `error:`.
    Bad,
    /// Worth a look: CANCELLED, silent hosts, `warning:`.
    Warn,
    /// Under way: PROGRESS.
    Busy,
    /// Not started, or secondary: PENDING, `-`.
    Dim,
}

/// Whether output is painted; `Style::default()` never paints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    enabled: bool,
}

impl Style {
    /// The style for a stream, given `--color`, whether the stream is a
    /// terminal, and the environment's `NO_COLOR` and `TERM`.
    pub fn decide(
        when: ColorWhen,
        is_terminal: bool,
        no_color: Option<&str>,
        term: Option<&str>,
    ) -> Style {
        let enabled = match when {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb")
            }
        };
        Style { enabled }
    }

    /// [`Style::decide`] for standard output, from the real environment.
    pub fn for_stdout(when: ColorWhen) -> Style {
        Self::for_stream(when, std::io::stdout().is_terminal())
    }

    /// [`Style::decide`] for standard error, from the real environment.
    pub fn for_stderr(when: ColorWhen) -> Style {
        Self::for_stream(when, std::io::stderr().is_terminal())
    }

    fn for_stream(when: ColorWhen, is_terminal: bool) -> Style {
        let no_color = std::env::var("NO_COLOR").ok();
        let term = std::env::var("TERM").ok();
        Style::decide(when, is_terminal, no_color.as_deref(), term.as_deref())
    }

    pub fn enabled(self) -> bool {
        self.enabled
    }

    /// `text` painted in `tone`'s colour, or as it is. `text` must be
    /// Cattle's own (already padded) words, never store content.
    pub fn paint(self, tone: Tone, text: &str) -> String {
        if !self.enabled || text.is_empty() {
            return text.to_string();
        }
        let sgr = match tone {
            Tone::Good => "32",
            Tone::Bad => "1;31",
            Tone::Warn => "33",
            Tone::Busy => "36",
            Tone::Dim => "2",
        };
        // Trailing padding stays outside the colour, so underlines and
        // backgrounds (should a tone ever use them) do not run on.
        let trimmed = text.trim_end_matches(' ');
        let padding = &text[trimmed.len()..];
        format!("\x1b[{sgr}m{trimmed}\x1b[0m{padding}")
    }

    /// A host state word (`DONE`, `ERROR`, …), padded to `width`, painted.
    pub fn state(self, state: &str, width: usize) -> String {
        let tone = match state {
            "DONE" | "IN STATE" => Tone::Good,
            "ERROR" | "UNREADABLE" | "HALTED" => Tone::Bad,
            "CANCELLED" | "CONFLICT" | "WOULD CHANGE" => Tone::Warn,
            "PROGRESS" => Tone::Busy,
            _ => Tone::Dim,
        };
        self.paint(tone, &format!("{state:width$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_paints_only_a_terminal_without_no_color_or_a_dumb_term() {
        use ColorWhen::*;
        let on = |when, tty, no_color, term| Style::decide(when, tty, no_color, term).enabled();
        assert!(on(Auto, true, None, Some("xterm-256color")));
        assert!(on(Auto, true, Some(""), None), "an empty NO_COLOR is unset");
        assert!(!on(Auto, false, None, Some("xterm")), "a pipe");
        assert!(!on(Auto, true, Some("1"), Some("xterm")), "NO_COLOR");
        assert!(!on(Auto, true, None, Some("dumb")));
        assert!(on(Always, false, Some("1"), Some("dumb")), "forced");
        assert!(!on(Never, true, None, Some("xterm")));
    }

    #[test]
    fn a_painted_cell_keeps_its_width_outside_the_escapes() {
        let style = Style::decide(ColorWhen::Always, false, None, None);
        assert_eq!(style.state("DONE", 10), "\x1b[32mDONE\x1b[0m      ");
        assert_eq!(style.state("ERROR", 3), "\x1b[1;31mERROR\x1b[0m");
        assert_eq!(Style::default().state("DONE", 6), "DONE  ");
        assert_eq!(style.paint(Tone::Dim, ""), "");
    }
}

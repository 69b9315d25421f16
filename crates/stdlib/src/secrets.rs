//! Sensitive step arguments: values that never appear in logs, status or errors.
//!
//! A step lists the arguments whose values are secret (`sensitive = ["env.TOKEN"]`);
//! every string under them becomes a secret of the plan. The runner passes
//! everything it reports through [`Secrets::redact`], which replaces each
//! occurrence of a secret with [`MARKER`]. Facilities still get the real values.

use std::borrow::Cow;
use std::fmt;

/// What a secret is replaced with wherever the runner reports it.
pub const MARKER: &str = "[sensitive]";

/// The secret values of a plan, and the redaction of text that may contain them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// Non-empty, unique, longest first.
    values: Vec<String>,
}

/// Never shows the values, only how many there are.
impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} values)", self.values.len())
    }
}

impl Secrets {
    /// Treat `value` as secret. Each of its lines is a secret too, trimmed of
    /// surrounding whitespace: programs print and logs show text line by line,
    /// and error messages trim lines. Empty lines are not secrets.
    pub fn add(&mut self, value: &str) {
        for part in std::iter::once(value).chain(value.lines()) {
            let part = part.trim();
            if !part.is_empty() && !self.values.iter().any(|v| v == part) {
                self.values.push(part.to_string());
            }
        }
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// Add every string in `value`, through arrays and tables (table values, not keys).
    pub fn add_toml(&mut self, value: &toml::Value) {
        match value {
            toml::Value::String(s) => self.add(s),
            toml::Value::Array(items) => items.iter().for_each(|item| self.add_toml(item)),
            toml::Value::Table(table) => table.values().for_each(|item| self.add_toml(item)),
            toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
            | toml::Value::Datetime(_) => {}
        }
    }

    /// Add every string, number and boolean in a variable's `value`, through
    /// arrays and tables (table values, not keys): a secret variable may be a
    /// PIN as well as a password.
    pub fn add_json(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(s),
            serde_json::Value::Number(n) => self.add(&n.to_string()),
            serde_json::Value::Array(items) => items.iter().for_each(|item| self.add_json(item)),
            serde_json::Value::Object(table) => table.values().for_each(|item| self.add_json(item)),
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }

    /// Add all of `other`'s secrets.
    pub fn extend(&mut self, other: &Secrets) {
        for value in &other.values {
            self.add(value);
        }
    }

    /// Also treat each secret as JSON writes it inside a string, where it
    /// differs (quotes, backslashes and control characters escaped): a custom
    /// facility's program gets its arguments in a JSON request and may print
    /// that request as it got it.
    pub(crate) fn add_json_forms(&mut self) {
        let forms: Vec<String> = self
            .values
            .iter()
            .filter_map(|value| {
                let json = serde_json::to_string(value).ok()?;
                let inner = &json[1..json.len() - 1];
                (inner != value).then(|| inner.to_string())
            })
            .collect();
        for form in forms {
            self.add(&form);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every occurrence of every secret replaced by [`MARKER`].
    ///
    /// Occurrences that overlap or touch, of the same secret or of different
    /// ones, become one marker, so no fragment of any secret is left over.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut hidden: Vec<(usize, usize)> = Vec::new();
        for secret in &self.values {
            let mut from = 0;
            while let Some(found) = text[from..].find(secret.as_str()) {
                let start = from + found;
                hidden.push((start, start + secret.len()));
                // Next search from the following character: occurrences may overlap.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        if hidden.is_empty() {
            return Cow::Borrowed(text);
        }
        hidden.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut shown_to = 0;
        let mut i = 0;
        while i < hidden.len() {
            let (start, mut end) = hidden[i];
            i += 1;
            while i < hidden.len() && hidden[i].0 <= end {
                end = end.max(hidden[i].1);
                i += 1;
            }
            out.push_str(&text[shown_to..start]);
            out.push_str(MARKER);
            shown_to = end;
        }
        out.push_str(&text[shown_to..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let mut s = Secrets::default();
        values.iter().for_each(|v| s.add(v));
        s
    }

    #[test]
    fn replaces_every_occurrence() {
        let s = secrets(&["hunter2"]);
        assert_eq!(
            s.redact("pw=hunter2, again hunter2."),
            "pw=[sensitive], again [sensitive]."
        );
        assert!(matches!(s.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_secret_inside_another_leaves_no_fragment() {
        let s = secrets(&["abc", "xxabcxx"]);
        assert_eq!(s.redact("1 xxabcxx 2 abc"), "1 [sensitive] 2 [sensitive]");
        // Overlapping, neither inside the other: one marker for both.
        let s = secrets(&["abcd", "cdef"]);
        assert_eq!(s.redact("<abcdef>"), "<[sensitive]>");
        // Overlapping occurrences of one secret.
        let s = secrets(&["aa"]);
        assert_eq!(s.redact("baaab"), "b[sensitive]b");
    }

    #[test]
    fn empty_values_are_not_secrets_and_lines_are_secrets_of_their_own() {
        let s = secrets(&["", "  "]);
        assert!(s.is_empty());
        assert_eq!(s.redact("text"), "text");
        let s = secrets(&["line one\n  line two \n\n"]);
        assert_eq!(
            s.redact("stderr: line two"),
            "stderr: [sensitive]",
            "a program prints a multi-line secret line by line"
        );
        assert_eq!(s.redact("x line one\n  line two \n"), "x [sensitive] \n");
    }

    #[test]
    fn a_secret_that_is_part_of_the_marker_does_not_mangle_it() {
        let s = secrets(&["e", "top"]);
        assert_eq!(
            s.redact("top secret"),
            "[sensitive] s[sensitive]cr[sensitive]t"
        );
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let s = secrets(&["é"]);
        assert_eq!(s.redact("ééa"), "[sensitive]a");
        assert_eq!(format!("{s:?}"), "Secrets(1 values)");
    }

    #[test]
    fn json_forms_of_secrets_are_secrets_too() {
        let mut s = secrets(&["pa\"ss\\word", "plain"]);
        s.add_json_forms();
        assert_eq!(
            s.redact(r#"{"a":"pa\"ss\\word","b":"plain"} pa"ss\word"#),
            r#"{"a":"[sensitive]","b":"[sensitive]"} [sensitive]"#
        );
    }

    #[test]
    fn collects_strings_through_arrays_and_tables() {
        let value: toml::Value =
            toml::from_str("a = [\"one\", 2, { k = \"two\" }]\nb = { TOKEN = \"three\" }\n")
                .unwrap();
        let mut s = Secrets::default();
        s.add_toml(&value);
        assert_eq!(
            s.redact("one two three k TOKEN 2"),
            "[sensitive] [sensitive] [sensitive] k TOKEN 2"
        );
    }
}

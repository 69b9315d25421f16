//! Host IDs and the hosts file that lists an execution's targets.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The longest host ID accepted (a DNS name's limit).
pub const MAX_HOST_ID_LEN: usize = 253;

/// A host's identity in the store: a safe object-key component.
///
/// ASCII letters, digits, `.`, `_` and `-`; starts with a letter or digit; at
/// most 253 characters. That covers DNS names and common inventory names, and
/// can never escape a key prefix or a directory.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct HostId(String);

impl HostId {
    pub fn new(id: &str) -> Result<HostId, String> {
        let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if id.is_empty() {
            Err("a host ID must not be empty".to_string())
        } else if id.len() > MAX_HOST_ID_LEN {
            Err(format!(
                "host ID is longer than {MAX_HOST_ID_LEN} characters"
            ))
        } else if !first_ok {
            Err(format!("host ID `{id}` must start with a letter or digit"))
        } else if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            Err(format!(
                "host ID `{id}` contains {bad:?}; use only letters, digits, `.`, `_` and `-`"
            ))
        } else if id.contains("..") {
            Err(format!("host ID `{id}` must not contain `..`"))
        } else {
            Ok(HostId(id.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        HostId::new(&s)
    }
}

impl From<HostId> for String {
    fn from(id: HostId) -> String {
        id.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A hosts file line that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct HostsFileError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// One line of a hosts file: a host and the variables it gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLine {
    pub id: HostId,
    /// 1-based.
    pub line: usize,
    /// `name=value` words after the host ID, in order, unquoted. Names are
    /// not checked here (see `cattle_stdlib::vars::check_name`).
    pub vars: Vec<(String, String)>,
}

/// Parse a hosts file: one host ID per line, optionally followed by
/// `name=value` words (`web-1 role=web port=8080`, `motd="two words"`); `#`
/// outside quotes starts a comment, blank lines are ignored. Duplicates and
/// unsafe IDs are refused with their line number.
pub fn parse_hosts_file(text: &str, file: &Path) -> Result<Vec<HostLine>, HostsFileError> {
    let mut seen: HashMap<HostId, usize> = HashMap::new();
    let mut hosts = Vec::new();
    let error = |line, message| HostsFileError {
        file: file.to_path_buf(),
        line,
        message,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let words = words(raw).map_err(|m| error(line, m))?;
        let Some((first, rest)) = words.split_first() else {
            continue;
        };
        let id = HostId::new(first).map_err(|m| error(line, m))?;
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(error(
                line,
                format!("host `{id}` is listed twice (first on line {first})"),
            ));
        }
        let mut vars: Vec<(String, String)> = Vec::new();
        for word in rest {
            let Some((name, value)) = word.split_once('=') else {
                return Err(error(
                    line,
                    format!(
                        "`{word}` is not `name=value`; put one host ID per line, \
                         followed only by its variables"
                    ),
                ));
            };
            if vars.iter().any(|(n, _)| n == name) {
                return Err(error(
                    line,
                    format!("variable `{name}` is given twice for host `{id}`"),
                ));
            }
            vars.push((name.to_string(), value.to_string()));
        }
        hosts.push(HostLine { id, line, vars });
    }
    if hosts.is_empty() {
        return Err(error(0, "no hosts: the file lists no host ID".to_string()));
    }
    Ok(hosts)
}

/// The words of a hosts file line, up to a `#` outside quotes. A double
/// quote starts and ends a part of a word that may hold spaces and `#`; in
/// it, `\"` and `\\` stand for `"` and `\`.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            c if c.is_whitespace() => words.extend(word.take()),
            '"' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err("a quote is not closed".to_string()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            _ => {
                                return Err(
                                    "in quotes, `\\` may only come before `\"` or `\\`".to_string()
                                );
                            }
                        },
                        Some(c) => word.push(c),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_comments_and_blanks() {
        let hosts = parse_hosts_file(
            "# web tier\nweb-1.example.com\n\n  db_2  # primary\n10.0.0.3\n",
            Path::new("hosts"),
        )
        .unwrap();
        let names: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(names, ["web-1.example.com", "db_2", "10.0.0.3"]);
        assert!(hosts.iter().all(|h| h.vars.is_empty()));
        assert_eq!(hosts[1].line, 4);
    }

    #[test]
    fn variables_follow_the_host_quoted_when_they_hold_spaces() {
        let hosts = parse_hosts_file(
            "web-1 role=web port=8080  # the first\n\
             web-2 motd=\"a # b\" empty= q=\"say \\\"hi\\\"\"\n",
            Path::new("hosts"),
        )
        .unwrap();
        let pairs = |h: &HostLine| -> Vec<(String, String)> { h.vars.clone() };
        assert_eq!(
            pairs(&hosts[0]),
            [
                ("role".into(), "web".into()),
                ("port".into(), "8080".into())
            ]
        );
        assert_eq!(
            pairs(&hosts[1]),
            [
                ("motd".into(), "a # b".into()),
                ("empty".into(), String::new()),
                ("q".into(), "say \"hi\"".into())
            ]
        );
        for (text, message) in [
            ("web-1 two words\n", "`two` is not `name=value`"),
            ("web-1 a=1 a=2\n", "variable `a` is given twice"),
            ("web-1 a=\"open\n", "a quote is not closed"),
        ] {
            let err = parse_hosts_file(text, Path::new("h")).unwrap_err();
            assert!(err.message.starts_with(message), "{text:?}: {err}");
            assert_eq!(err.line, 1);
        }
    }

    #[test]
    fn refuses_duplicates_with_both_lines() {
        let err = parse_hosts_file("a\nb\na\n", Path::new("hosts")).unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(
            err.to_string(),
            "hosts:3: host `a` is listed twice (first on line 1)"
        );
    }

    #[test]
    fn refuses_unsafe_ids_with_line_numbers() {
        for (text, line) in [
            ("ok\n../etc\n", 2),
            ("a/b\n", 1),
            ("-x\n", 1),
            ("a..b\n", 1),
            ("ok\nok2\nhé\n", 3),
            (".hidden\n", 1),
        ] {
            let err = parse_hosts_file(text, Path::new("h")).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
        assert!(HostId::new(&"a".repeat(254)).is_err());
        assert!(HostId::new(&"a".repeat(253)).is_ok());
    }

    #[test]
    fn refuses_an_empty_file() {
        assert!(parse_hosts_file("# none\n\n", Path::new("h")).is_err());
    }
}

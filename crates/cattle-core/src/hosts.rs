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

/// Parse a hosts file: one host ID per line, `#` starts a comment, blank lines
/// are ignored. Duplicates and unsafe IDs are refused with their line number.
pub fn parse_hosts_file(text: &str, file: &Path) -> Result<Vec<HostId>, HostsFileError> {
    let mut seen: HashMap<HostId, usize> = HashMap::new();
    let mut hosts = Vec::new();
    let error = |line, message| HostsFileError {
        file: file.to_path_buf(),
        line,
        message,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if content.split_whitespace().nth(1).is_some() {
            return Err(error(
                line,
                format!("`{content}` is more than one word; put one host ID per line"),
            ));
        }
        let id = HostId::new(content).map_err(|m| error(line, m))?;
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(error(
                line,
                format!("host `{id}` is listed twice (first on line {first})"),
            ));
        }
        hosts.push(id);
    }
    if hosts.is_empty() {
        return Err(error(0, "no hosts: the file lists no host ID".to_string()));
    }
    Ok(hosts)
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
        let names: Vec<&str> = hosts.iter().map(HostId::as_str).collect();
        assert_eq!(names, ["web-1.example.com", "db_2", "10.0.0.3"]);
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
            ("two words\n", 1),
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

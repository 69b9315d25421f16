//! `cattle store check`: the findings of `cattle_core::store::check`, as a
//! table or as the `cattle.store-check.v1` JSON document; and the check run
//! before a store's first use by `publish` and `retry`, remembered per store
//! in the user's cache directory.

use std::path::{Path, PathBuf};

use cattle_core::env;
use cattle_core::settings::Env;
use cattle_core::store::check::{Passed, Report, check};
use cattle_core::store::{Store, StoreError};
use serde::Serialize;

use crate::terminal;

/// `ok`/`FAIL` and the feature, a line each, the problem under a failure.
pub fn text(location: &str, report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = format!("store {}\n", terminal::line(location));
    for finding in &report.findings {
        match &finding.failure {
            None => {
                let _ = writeln!(out, "  ok    {}", finding.feature);
            }
            Some(problem) => {
                let _ = writeln!(
                    out,
                    "  FAIL  {}: {}",
                    finding.feature,
                    terminal::line(problem)
                );
            }
        }
    }
    let failed = report.failures().count();
    let _ = writeln!(
        out,
        "{}",
        if failed == 0 {
            format!("all {} checks passed", report.findings.len())
        } else {
            format!("{failed} of {} checks failed", report.findings.len())
        }
    );
    out
}

#[derive(Serialize)]
struct Json<'a> {
    schema: &'static str,
    store: &'a str,
    passed: bool,
    checks: Vec<Check<'a>>,
}

#[derive(Serialize)]
struct Check<'a> {
    feature: &'a str,
    ok: bool,
    problem: Option<&'a str>,
}

/// `cattle.store-check.v1` (docs/json.md).
pub fn json(location: &str, report: &Report) -> String {
    let doc = Json {
        schema: "cattle.store-check.v1",
        store: location,
        passed: report.passed(),
        checks: report
            .findings
            .iter()
            .map(|f| Check {
                feature: f.feature,
                ok: f.failure.is_none(),
                problem: f.failure.as_deref(),
            })
            .collect(),
    };
    terminal::json(&serde_json::to_string_pretty(&doc).expect("serializes"))
}

/// The directory where `cattle` remembers which stores passed the check:
/// `$XDG_CACHE_HOME/cattle/store-check/` (when that is an absolute path, as
/// the XDG specification requires), else `$HOME/.cache/cattle/store-check/`;
/// `None` without either.
pub fn memory_dir(env: &Env) -> Option<PathBuf> {
    let var = |name| cattle_core::settings::var(env, name).map(PathBuf::from);
    var(env::XDG_CACHE_HOME)
        .filter(|p| p.is_absolute())
        .or_else(|| var(env::HOME).map(|home| home.join(".cache")))
        .map(|dir| dir.join("cattle").join("store-check"))
}

/// What [`before_first_use`] did.
#[derive(Debug)]
pub struct Checked {
    /// `None`: a pass by this version was remembered, and nothing was asked
    /// of the store.
    pub report: Option<Report>,
    /// The pass could not be remembered (or a failure forgotten), and why.
    pub warning: Option<String>,
}

/// Check `store` unless `memory` (see [`memory_dir`]) remembers that it
/// passed a check by this version of Cattle; remember a pass, forget a
/// failure. A store that cannot be reached is an error, and nothing is
/// remembered of it.
pub async fn before_first_use(store: &Store, memory: Option<&Path>) -> Result<Checked, StoreError> {
    if let Some(dir) = memory
        && Passed::remembered_in(&dir.join(Passed::file_name(store)), store)
    {
        return Ok(Checked {
            report: None,
            warning: None,
        });
    }
    let report = check(store).await?;
    let warning = remember(store, memory, &report);
    Ok(Checked {
        report: Some(report),
        warning,
    })
}

/// Record in `memory` that `store` passed, or forget that it did when
/// `report` says it failed. What went wrong, as a warning: the check is only
/// run again next time.
pub fn remember(store: &Store, memory: Option<&Path>, report: &Report) -> Option<String> {
    let Some(dir) = memory else {
        return Some(format!(
            "cannot remember that store `{}` passed its self-test: neither {} nor {} is set; \
             it is checked again next time",
            store.location(""),
            env::XDG_CACHE_HOME,
            env::HOME
        ));
    };
    let path = dir.join(Passed::file_name(store));
    if report.passed() {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile_in(dir)?;
            std::io::Write::write_all(&mut tmp.1, &Passed::now(store).to_json())?;
            std::fs::rename(&tmp.0, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp.0);
            })
        };
        write().err().map(|e| {
            format!(
                "cannot remember that store `{}` passed its self-test in `{}`: {e}; it is \
                 checked again next time",
                store.location(""),
                path.display()
            )
        })
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!(
                "cannot forget that store `{}` passed its self-test: cannot remove `{}`: {e}",
                store.location(""),
                path.display()
            )),
        }
    }
}

/// A new file in `dir` for this process to write and rename into place, so
/// that two commands at once never leave half a file.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// A store that failed its self-test, found before a command wrote to it.
#[derive(Debug, thiserror::Error)]
#[error(
    "store `{location}` does not honour what Cattle relies on ({} failed): nothing was \
     published, since with it executions would be lost",
    cattle_core::count(.failures.len() as u64, "check")
)]
pub struct Refused {
    pub location: String,
    /// Each failed check: the feature, what the store did, what it breaks.
    pub failures: Vec<String>,
}

impl Refused {
    pub fn new(store: &Store, report: &Report) -> Refused {
        Refused {
            location: store.location(""),
            failures: report.failure_lines(),
        }
    }

    pub fn hint(&self) -> String {
        "`cattle store check` shows every check (docs/reliability.md says why each matters); use \
         a store that passes, or fix or upgrade this one and run `cattle store check` again"
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cattle_core::store::FileStore;
    use cattle_core::store::check::Finding;

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_memory_is_in_the_xdg_cache_else_under_home() {
        let dir = |vars| memory_dir(&env(vars));
        assert_eq!(
            dir(&[("XDG_CACHE_HOME", "/c"), ("HOME", "/h")]),
            Some(PathBuf::from("/c/cattle/store-check"))
        );
        // A relative XDG_CACHE_HOME is ignored, as the specification says.
        assert_eq!(
            dir(&[("XDG_CACHE_HOME", "c"), ("HOME", "/h")]),
            Some(PathBuf::from("/h/.cache/cattle/store-check"))
        );
        assert_eq!(dir(&[("XDG_CACHE_HOME", "")]), None);
    }

    #[tokio::test]
    async fn a_pass_is_checked_once_and_a_failure_forgets_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::File(FileStore::open(tmp.path().join("store")).unwrap());
        let memory = tmp.path().join("cache");
        let first = before_first_use(&store, Some(&memory)).await.unwrap();
        assert!(first.report.unwrap().passed());
        assert_eq!(first.warning, None);
        let again = before_first_use(&store, Some(&memory)).await.unwrap();
        assert!(again.report.is_none(), "checked again");

        let failed = Report {
            findings: vec![Finding {
                feature: "delete",
                failure: Some("the object was still there".to_string()),
            }],
        };
        assert_eq!(remember(&store, Some(&memory), &failed), None);
        assert_eq!(std::fs::read_dir(&memory).unwrap().count(), 0);
        let refused = Refused::new(&store, &failed);
        assert_eq!(refused.failures, ["delete: the object was still there"]);
        assert!(
            refused.to_string().contains("(1 check failed)"),
            "{refused}"
        );
        let checked = before_first_use(&store, Some(&memory)).await.unwrap();
        assert!(
            checked.report.is_some(),
            "a forgotten pass is checked again"
        );
    }

    #[tokio::test]
    async fn a_cache_that_cannot_be_written_is_a_warning_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::File(FileStore::open(tmp.path().join("store")).unwrap());
        // A file where the directory should be.
        let memory = tmp.path().join("cache");
        std::fs::write(&memory, b"").unwrap();
        let checked = before_first_use(&store, Some(&memory)).await.unwrap();
        assert!(checked.report.unwrap().passed());
        let warning = checked.warning.unwrap();
        assert!(
            warning.contains("cannot remember that store") && warning.contains("checked again"),
            "{warning}"
        );
        let none = before_first_use(&store, None).await.unwrap();
        assert!(
            none.warning
                .unwrap()
                .contains("neither XDG_CACHE_HOME nor HOME is set")
        );
    }
}

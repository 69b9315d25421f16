//! `cattle store check`: the findings of `cattle_core::store::check`, as a
//! table or as the `cattle.store-check.v1` JSON document.

use cattle_core::store::check::Report;
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

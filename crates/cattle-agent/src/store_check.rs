//! The store's self-test before the agent's first poll: a store that ignores
//! conditional writes or reads would lose executions and inbox updates while
//! every request succeeds, so the agent refuses to poll one.
//!
//! The check runs on the host's own `hosts/<host>/selftest/<random>/` (which
//! its MinIO policy lets it write, list and delete), once per store and Cattle
//! version: a pass is written to `<state-dir>/STORE_CHECK`, and an agent that
//! finds it there asks nothing more of the store than its polls.

use std::path::Path;

use cattle_core::store::Store;
use cattle_core::store::check::{Passed, Probe, Report, check_at};

use crate::{AgentError, Config, local};

/// The pass, in the state directory: see [`Passed`].
pub const STORE_CHECK: &str = "STORE_CHECK";

/// Whether `state_dir` remembers that `store` passed a check by this version.
pub fn remembered(state_dir: &Path, store: &Store) -> bool {
    Passed::remembered_in(&state_dir.join(STORE_CHECK), store)
}

/// Check the store once, before the first poll: nothing when `checked`
/// (remembered, or done already); otherwise the check, a pass written to the
/// state directory. A store that fails is [`AgentError::StoreRefused`]; one
/// that cannot be reached, or a pass that cannot be written, an error like a
/// failed poll's, retried as one.
pub async fn before_first_poll(
    config: &Config,
    store: &Store,
    checked: &mut bool,
) -> Result<(), AgentError> {
    if *checked {
        return Ok(());
    }
    let report = check_at(store, Probe::Host(&config.host)).await?;
    if !report.passed() {
        return Err(refused(store, &report));
    }
    record(&config.state_dir, store)?;
    tracing::info!(store = %store.location(""), "the store passed its self-test (create-only and compare-and-swap writes, conditional reads, listings, deletes)");
    *checked = true;
    Ok(())
}

/// Remember in `state_dir` that `store` passed, durably.
pub fn record(state_dir: &Path, store: &Store) -> Result<(), AgentError> {
    local::write_atomic(state_dir, STORE_CHECK, &Passed::now(store).to_json())
        .map_err(|e| AgentError::local(state_dir.join(STORE_CHECK), e))
}

pub fn refused(store: &Store, report: &Report) -> AgentError {
    AgentError::StoreRefused {
        location: store.location(""),
        failures: report.failure_lines(),
    }
}

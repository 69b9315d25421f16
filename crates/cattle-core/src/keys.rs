//! The store's key layout. Every key Cattle reads or writes is built here.
//!
//! ```text
//! bundles/<sha256>.tar.gz                      config bundle, content-addressed, immutable
//! bundles/<sha256>.refs/<execution-id>         empty; one per execution using the bundle
//! executions/<execution-id>/manifest.json      what to run and where, signed (written once, by publish)
//! executions/<execution-id>/hosts/<host>/status.json   written only by <host>'s agent
//! executions/<execution-id>/hosts/<host>/exec.log      written only by <host>'s agent
//! executions/<execution-id>/done/<host>                empty; <host>'s agent, once DONE
//! executions/<execution-id>/cancel.json                which hosts to stop (cattle cancel)
//! executions/<execution-id>/conflicts/<host>          a second agent for <host> ran nothing of it
//! hosts/<host>/inbox.json                      executions addressed to <host> (publish, clean)
//! hosts/<host>/agent.json                      the agent active for <host> (its lease)
//! publish/version.json                         highest manifest version handed out (publish)
//! ```
//!
//! Keys are relative to the store's prefix; the store adds it.

use uuid::Uuid;

use crate::hosts::HostId;

pub fn bundle(sha256: &str) -> String {
    format!("bundles/{sha256}.tar.gz")
}

pub fn bundle_refs(sha256: &str) -> String {
    format!("bundles/{sha256}.refs/")
}

pub fn bundle_ref(sha256: &str, id: Uuid) -> String {
    format!("bundles/{sha256}.refs/{id}")
}

pub fn execution(id: Uuid) -> String {
    format!("executions/{id}/")
}

pub fn manifest(id: Uuid) -> String {
    format!("executions/{id}/manifest.json")
}

pub fn status(id: Uuid, host: &HostId) -> String {
    format!("executions/{id}/hosts/{host}/status.json")
}

pub fn log(id: Uuid, host: &HostId) -> String {
    format!("executions/{id}/hosts/{host}/exec.log")
}

/// Written by a host's agent after its final DONE status, so that `cattle status`
/// learns which hosts are done from a listing instead of one read per host.
pub fn done(id: Uuid, host: &HostId) -> String {
    format!("executions/{id}/done/{host}")
}

pub fn done_prefix(id: Uuid) -> String {
    format!("executions/{id}/done/")
}

pub fn cancel(id: Uuid) -> String {
    format!("executions/{id}/cancel.json")
}

/// Written by an agent that found another agent active for its host ID, for
/// each execution it therefore did not run.
pub fn conflict(id: Uuid, host: &HostId) -> String {
    format!("executions/{id}/conflicts/{host}")
}

pub fn conflicts_prefix(id: Uuid) -> String {
    format!("executions/{id}/conflicts/")
}

/// The lease of the agent active for `host`: only it runs the host's work.
pub fn lease(host: &HostId) -> String {
    format!("hosts/{host}/agent.json")
}

pub fn inbox(host: &HostId) -> String {
    format!("hosts/{host}/inbox.json")
}

pub fn version_counter() -> String {
    "publish/version.json".to_string()
}

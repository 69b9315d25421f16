//! Whether this host runs an execution: the decision, as a pure function of
//! what the agent read from the store and what it knows locally, so that every
//! rule is tested by a table (signature, execution ID, host, expiry, ordering).

use std::time::SystemTime;

use cattle_core::hosts::HostId;
use cattle_core::signing::Refusal;
use cattle_core::wire::{Envelope, Manifest};
use uuid::Uuid;

use crate::Trust;

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The execution the inbox listed.
    pub id: Uuid,
    /// This agent's host.
    pub host: &'a HostId,
    pub trust: &'a Trust,
    /// The manifest envelope as read from the store.
    pub envelope: &'a [u8],
    /// Version and ID of the newest execution this host has started
    /// (`<state-dir>/APPLIED`).
    pub applied: Option<(u64, Uuid)>,
    /// This host started the execution and did not finish it.
    pub interrupted: bool,
    /// The host's clock.
    pub now: SystemTime,
}

/// An execution this host runs.
#[derive(Debug)]
pub struct Admitted {
    pub manifest: Manifest,
    /// Who published it and who signed it, for the execution's log.
    pub note: String,
}

/// Decide whether this host runs the execution: signed by a trusted key (or
/// unsigned and allowed), for this execution ID, addressed to this host, not
/// expired and newer than what the host has already started. An interrupted
/// run that was the last one started is resumed even if it has expired since.
///
/// Returns why not, as the text of the host's refusal.
pub fn admit(request: &Request<'_>) -> Result<Admitted, String> {
    let envelope: Envelope = serde_json::from_slice(request.envelope)
        .map_err(|e| format!("the manifest is not valid: {e}"))?;
    let trust = request.trust;
    let (manifest, signed_by) = match envelope.verify(&trust.keys) {
        Ok((manifest, key)) => (manifest, format!("signed by trusted key {}", key.id())),
        Err(Refusal::Unsigned) if trust.allow_unsigned => (
            envelope.manifest().map_err(|e| e.to_string())?,
            "UNSIGNED, run only because this agent allows unsigned executions".to_string(),
        ),
        Err(Refusal::UnknownKey { .. }) if trust.allow_unsigned && trust.keys.is_empty() => (
            envelope.manifest().map_err(|e| e.to_string())?,
            "signature NOT checked (no trusted keys; this agent allows unsigned executions)"
                .to_string(),
        ),
        Err(refusal @ (Refusal::Unsigned | Refusal::UnknownKey { .. })) => {
            let trusted: Vec<String> = trust
                .keys
                .keys()
                .iter()
                .map(|k| k.id().to_string())
                .collect();
            return Err(format!(
                "{refusal}; this host trusts {}",
                if trusted.is_empty() {
                    "no key".to_string()
                } else {
                    format!("key {}", trusted.join(", "))
                }
            ));
        }
        Err(refusal) => return Err(refusal.to_string()),
    };
    let id = request.id;
    if manifest.id != id {
        return Err(format!(
            "the manifest was signed for execution {}, not {id}",
            manifest.id
        ));
    }
    if !manifest.hosts.contains(request.host) {
        return Err(format!("it is not addressed to host `{}`", request.host));
    }
    // Only the execution started last can be in flight.
    let resuming = request.interrupted && request.applied.is_some_and(|(_, last)| last == id);
    if !resuming {
        let expires = humantime::parse_rfc3339(&manifest.expires).map_err(|e| {
            format!(
                "the manifest's expiry `{}` is not a time: {e}",
                manifest.expires
            )
        })?;
        if request.now > expires {
            return Err(format!(
                "it expired at {} (published {}); publish it again",
                manifest.expires, manifest.created
            ));
        }
        if let Some((version, last)) = request.applied
            && manifest.version <= version
        {
            return Err(format!(
                "its version {} is not newer than version {version} (execution {last}) \
                 that this host already started: a rollback; publish it again to run it",
                manifest.version
            ));
        }
    }
    let note = format!(
        "execution {id}: config `{}` published by {} at {}, version {}, {signed_by}, {} steps",
        manifest.config, manifest.publisher, manifest.created, manifest.version, manifest.steps
    );
    Ok(Admitted { manifest, note })
}

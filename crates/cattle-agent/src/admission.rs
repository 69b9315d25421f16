//! Whether this host runs an execution: the decision, as a pure function of
//! what the agent read from the store and what it knows locally, so that every
//! rule is tested by a table (signature, execution ID, host, expiry, ordering).

use std::time::SystemTime;

use cattle_core::hosts::HostId;
use cattle_core::signing::{PublicKey, Refusal, TrustedKeys};
use cattle_core::wire::{Envelope, Manifest};
use cattle_stdlib::Vars;
use uuid::Uuid;

use crate::Trust;
use crate::local::Applied;

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
    /// The host's signed variables for it, as the inbox gave them.
    pub host_vars: Option<&'a Envelope>,
    /// What this host has started (`<state-dir>/APPLIED`).
    pub applied: &'a Applied,
    /// This host started the execution and did not finish it.
    pub interrupted: bool,
    /// The host's clock.
    pub now: SystemTime,
}

/// An execution this host runs.
#[derive(Debug)]
pub struct Admitted {
    pub manifest: Manifest,
    /// The host's own variables, verified, when the manifest says it has them.
    pub vars: Option<Vars>,
    /// Who published it and who signed it, for the execution's log.
    pub note: String,
}

/// Decide whether this host runs the execution: signed by a trusted key (or
/// unsigned and allowed), for this execution ID, addressed to this host, not
/// expired, not run here before, and not held back past an execution the host
/// has started (its version above their floors; see [`Applied`]). An
/// interrupted run this host started resumes even if it has expired since.
/// When the manifest says hosts have their own variables, this host's must
/// be in the request, signed by the key that signed the manifest, for this
/// execution and this host.
///
/// Returns why not, as the text of the host's refusal.
pub fn admit(request: &Request<'_>) -> Result<Admitted, String> {
    let envelope: Envelope = serde_json::from_slice(request.envelope)
        .map_err(|e| format!("the manifest is not valid: {e}"))?;
    let trust = request.trust;
    let (manifest, signed_by, key) = match envelope.verify(&trust.keys) {
        Ok((manifest, key)) => (
            manifest,
            format!("signed by trusted key {}", key.id()),
            Some(key),
        ),
        Err(Refusal::Unsigned) if trust.allow_unsigned => (
            envelope.manifest().map_err(|e| e.to_string())?,
            "UNSIGNED, run only because this agent allows unsigned executions".to_string(),
            None,
        ),
        Err(Refusal::UnknownKey { .. }) if trust.allow_unsigned && trust.keys.is_empty() => (
            envelope.manifest().map_err(|e| e.to_string())?,
            "signature NOT checked (no trusted keys; this agent allows unsigned executions)"
                .to_string(),
            None,
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
    // Signed, yet it becomes a key: checked like any other value.
    manifest
        .bundle
        .checked_sha256()
        .map_err(|e| format!("its bundle: {e}"))?;
    let vars = if manifest.vars {
        Some(host_vars(request, key.as_ref())?)
    } else {
        None
    };
    // An execution this host started and did not finish resumes, even if it
    // has expired since.
    let applied = request.applied;
    if request.interrupted && applied.has_started(id) {
        return Ok(admitted(manifest, vars, &signed_by));
    }
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
    if applied.has_started(id) {
        return Err(format!(
            "this host has already run execution {id} (its local record is gone); \
             publish it again to run it again"
        ));
    }
    if manifest.version <= applied.floor {
        let by = applied
            .floor_of
            .map_or_else(|| "an execution".to_string(), |e| format!("execution {e}"));
        return Err(format!(
            "its version {} is not above floor {} of {by}, which this host has already started: \
             that one was published after this one had been addressed to all its hosts, \
             so this one was held back (a rollback); publish it again to run it",
            manifest.version, applied.floor
        ));
    }
    Ok(admitted(manifest, vars, &signed_by))
}

/// This host's variables for the execution: signed by `key`, the key that
/// signed the manifest (`None`: the manifest's signature was not checked, and
/// neither is theirs), naming this execution and this host.
fn host_vars(request: &Request<'_>, key: Option<&PublicKey>) -> Result<Vars, String> {
    let Some(envelope) = request.host_vars else {
        return Err(format!(
            "its manifest says each host has its own variables, but the store has none for \
             host `{}` (an interrupted publish, or its variables deleted or rewritten); \
             publish it again",
            request.host
        ));
    };
    let read = match key {
        Some(key) => envelope
            .verify_host_vars(&TrustedKeys::only(key.clone()))
            .map(|(vars, _)| vars),
        None => envelope.host_vars(),
    };
    let vars = read.map_err(|refusal| {
        let why = match refusal {
            Refusal::Unsigned => "they are not signed".to_string(),
            Refusal::UnknownKey { keys } => {
                format!("they are signed by key {keys}, not by the manifest's key")
            }
            Refusal::BadSignature { .. } => {
                "their signature does not match their contents (changed after signing)".to_string()
            }
            Refusal::Malformed(e) => format!("they are not valid: {e}"),
        };
        format!("the host's variables cannot be used: {why}")
    })?;
    if vars.execution != request.id {
        return Err(format!(
            "the host's variables were signed for execution {}, not {}",
            vars.execution, request.id
        ));
    }
    if &vars.host != request.host {
        return Err(format!(
            "the host's variables were signed for host `{}`, not `{}`",
            vars.host, request.host
        ));
    }
    Ok(vars.vars.into_iter().collect())
}

fn admitted(manifest: Manifest, vars: Option<Vars>, signed_by: &str) -> Admitted {
    let note = format!(
        "execution {}: config `{}` published by {} at {}, version {}, {signed_by}, {}",
        manifest.id,
        manifest.config,
        manifest.publisher,
        manifest.created,
        manifest.version,
        cattle_core::count(manifest.steps as u64, "step")
    );
    Admitted {
        manifest,
        vars,
        note,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use cattle_core::signing::{SecretKey, TrustedKeys};
    use cattle_core::wire::{BundleRef, FORMAT};

    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32], "test")
    }

    fn trusting(key: &SecretKey) -> Trust {
        let mut keys = TrustedKeys::default();
        keys.add(&key.public().to_string(), Path::new("trusted.pub"))
            .unwrap();
        Trust {
            keys,
            allow_unsigned: false,
        }
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn manifest(n: u128, version: u64, floor: Option<u64>) -> Manifest {
        Manifest {
            format: FORMAT,
            id: Uuid::from_u128(n),
            version,
            floor,
            created: humantime::format_rfc3339_millis(at(version)).to_string(),
            expires: humantime::format_rfc3339_millis(at(version + 3_600_000)).to_string(),
            publisher: "ops@laptop".to_string(),
            config: "poem".to_string(),
            steps: 1,
            bundle: BundleRef {
                sha256: "ab".repeat(32),
                size: 10,
            },
            hosts: vec![HostId::new("web-1").unwrap()],
            vars: false,
            check: false,
            diff: false,
            message: None,
            rollout: None,
            select: Vec::new(),
            grouped: false,
        }
    }

    fn envelope(signer: Option<&SecretKey>, manifest: &Manifest) -> Vec<u8> {
        let envelope = match signer {
            Some(key) => key.sign(manifest),
            None => Envelope::unsigned(manifest),
        };
        serde_json::to_vec(&envelope).unwrap()
    }

    /// The decision for `manifest` signed by `signer` and listed as execution
    /// `listed`, on host web-1 trusting key 1, with `applied` and at `now`.
    fn decide(
        signer: Option<&SecretKey>,
        manifest: &Manifest,
        listed: u128,
        applied: &Applied,
        interrupted: bool,
        now: u64,
    ) -> Result<u64, String> {
        let host = HostId::new("web-1").unwrap();
        let trust = trusting(&key(1));
        let bytes = envelope(signer, manifest);
        admit(&Request {
            id: Uuid::from_u128(listed),
            host: &host,
            trust: &trust,
            envelope: &bytes,
            host_vars: None,
            applied,
            interrupted,
            now: at(now),
        })
        .map(|a| a.manifest.version)
    }

    #[test]
    fn signature_execution_and_host() {
        let trusted = key(1);
        let other = key(2);
        let nothing = Applied::default();
        let m = manifest(1, T0, None);
        let mut foreign = manifest(1, T0, None);
        foreign.hosts = vec![HostId::new("db-1").unwrap()];
        let mut escaping = manifest(1, T0, None);
        escaping.bundle.sha256 = "../../victim/backup".to_string();
        type Case<'a> = (
            &'a str,
            Option<&'a SecretKey>,
            &'a Manifest,
            u128,
            Result<u64, &'a str>,
        );
        let cases: &[Case<'_>] = &[
            ("signed by a trusted key", Some(&trusted), &m, 1, Ok(T0)),
            (
                "unsigned",
                None,
                &m,
                1,
                Err("the manifest is not signed; this host trusts key"),
            ),
            (
                "another key",
                Some(&other),
                &m,
                1,
                Err("which this host does not trust"),
            ),
            (
                "listed under another ID",
                Some(&trusted),
                &m,
                2,
                Err("was signed for execution"),
            ),
            (
                "for another host",
                Some(&trusted),
                &foreign,
                1,
                Err("not addressed to host `web-1`"),
            ),
            (
                "a bundle hash that is a path",
                Some(&trusted),
                &escaping,
                1,
                Err("its bundle:"),
            ),
        ];
        for (case, signer, manifest, listed, want) in cases {
            let got = decide(*signer, manifest, *listed, &nothing, false, T0);
            match (want, &got) {
                (Ok(v), Ok(g)) => assert_eq!(v, g, "{case}"),
                (Err(part), Err(reason)) => assert!(reason.contains(part), "{case}: {reason}"),
                _ => panic!("{case}: expected {want:?}, got {got:?}"),
            }
        }
        let garbage = admit(&Request {
            id: Uuid::from_u128(1),
            host: &HostId::new("web-1").unwrap(),
            trust: &trusting(&trusted),
            envelope: b"{\"format\":2,\"seq\":-1}",
            host_vars: None,
            applied: &nothing,
            interrupted: false,
            now: at(T0),
        });
        assert!(
            garbage
                .unwrap_err()
                .starts_with("the manifest is not valid")
        );
    }

    /// Host variables `port = port` for `execution` and `host`, signed by `signer`.
    fn host_vars(signer: Option<&SecretKey>, execution: u128, host: &str, port: u64) -> Envelope {
        let vars = cattle_core::wire::HostVars {
            format: FORMAT,
            execution: Uuid::from_u128(execution),
            host: HostId::new(host).unwrap(),
            vars: [("port".to_string(), serde_json::json!(port))].into(),
        };
        match signer {
            Some(key) => key.sign_host_vars(&vars),
            None => Envelope::unsigned_host_vars(&vars),
        }
    }

    #[test]
    fn a_host_runs_only_its_own_variables_signed_with_the_manifest() {
        let (k1, k2) = (key(1), key(2));
        let mut both = trusting(&k1);
        both.keys
            .add(&k2.public().to_string(), Path::new("second.pub"))
            .unwrap();
        let mut with_vars = manifest(1, T0, None);
        with_vars.vars = true;
        let signed = envelope(Some(&k1), &with_vars);
        let host = HostId::new("web-1").unwrap();
        let nothing = Applied::default();
        let admit_with = |vars: Option<&Envelope>, trust: &Trust| {
            admit(&Request {
                id: Uuid::from_u128(1),
                host: &host,
                trust,
                envelope: &signed,
                host_vars: vars,
                applied: &nothing,
                interrupted: false,
                now: at(T0),
            })
            .map(|a| a.vars.and_then(|v| v.get("port").cloned()))
        };
        let own = host_vars(Some(&k1), 1, "web-1", 8080);
        assert_eq!(
            admit_with(Some(&own), &both),
            Ok(Some(serde_json::json!(8080)))
        );

        let mut tampered = own.clone();
        tampered.payload = tampered.payload.replace("8080", "8081");
        let other_host = host_vars(Some(&k1), 1, "web-2", 9090);
        let other_execution = host_vars(Some(&k1), 2, "web-1", 8080);
        let other_key = host_vars(Some(&k2), 1, "web-1", 8080);
        let unsigned = host_vars(None, 1, "web-1", 8080);
        for (case, vars, want) in [
            (
                "none in the store",
                None,
                "the store has none for host `web-1`",
            ),
            (
                "changed by a bucket writer",
                Some(&tampered),
                "does not match their contents",
            ),
            (
                "another host's",
                Some(&other_host),
                "signed for host `web-2`, not `web-1`",
            ),
            (
                "another execution's",
                Some(&other_execution),
                "signed for execution",
            ),
            (
                "another trusted key's",
                Some(&other_key),
                "not by the manifest's key",
            ),
            ("unsigned", Some(&unsigned), "they are not signed"),
        ] {
            let err = admit_with(vars, &both).unwrap_err();
            assert!(err.contains(want), "{case}: {err}");
        }

        // A manifest without variables ignores what the inbox says.
        let plain = envelope(Some(&k1), &manifest(1, T0, None));
        let admitted = admit(&Request {
            envelope: &plain,
            host_vars: Some(&other_host),
            id: Uuid::from_u128(1),
            host: &host,
            trust: &both,
            applied: &nothing,
            interrupted: false,
            now: at(T0),
        })
        .unwrap();
        assert_eq!(admitted.vars, None);
    }

    #[test]
    fn expiry_on_the_injected_clock_and_resuming_after_it() {
        let k = key(1);
        let m = manifest(1, T0, None);
        let an_hour = 3_600_000;
        let nothing = Applied::default();
        assert!(decide(Some(&k), &m, 1, &nothing, false, T0 + an_hour).is_ok());
        let expired = decide(Some(&k), &m, 1, &nothing, false, T0 + an_hour + 1).unwrap_err();
        assert!(expired.contains("it expired at"), "{expired}");
        // Started here and interrupted: it resumes, expired or not.
        let mut started = Applied::default();
        started.start(m.id, m.version, m.floor());
        assert!(decide(Some(&k), &m, 1, &started, true, T0 + 2 * an_hour).is_ok());
        // Not interrupted, yet started before: it is not run twice.
        let again = decide(Some(&k), &m, 1, &started, false, T0).unwrap_err();
        assert!(again.contains("has already run execution"), "{again}");
    }

    /// The ordering rule, both ways: an execution still being addressed when a
    /// newer one was signed runs after it; one held back past a newer one is a
    /// rollback.
    #[test]
    fn ordering_late_but_concurrent_runs_withheld_is_refused() {
        let k = key(1);
        // `big` took version T0 and was still addressing its hosts when `small`
        // was signed, so `small`'s floor is below T0.
        let big = manifest(1, T0, Some(T0 - 1));
        let small = manifest(2, T0 + 1, Some(T0 - 1));
        let mut applied = Applied::default();
        applied.start(small.id, small.version, small.floor());
        assert_eq!(decide(Some(&k), &big, 1, &applied, false, T0), Ok(T0));

        // `r1` had reached every host when `r2` was signed (floor = r1's
        // version): offered after r2 started, r1 was held back.
        let r1 = manifest(3, T0 + 10, Some(T0 + 9));
        let r2 = manifest(4, T0 + 11, Some(T0 + 10));
        let mut applied = Applied::default();
        applied.start(r2.id, r2.version, r2.floor());
        let refused = decide(Some(&k), &r1, 3, &applied, false, T0 + 20).unwrap_err();
        assert!(
            refused.contains("is not above floor")
                && refused.contains("a rollback")
                && refused.contains(&r2.id.to_string()),
            "{refused}"
        );
        // A newer one still runs.
        let r3 = manifest(5, T0 + 12, Some(T0 + 11));
        assert_eq!(
            decide(Some(&k), &r3, 5, &applied, false, T0 + 20),
            Ok(T0 + 12)
        );

        // A manifest without a floor (an older publisher) counts everything
        // older as superseded, as agents always did.
        let old = manifest(6, T0 + 30, None);
        let mut applied = Applied::default();
        applied.start(old.id, old.version, old.floor());
        let older = manifest(7, T0 + 29, Some(T0 + 1));
        assert!(decide(Some(&k), &older, 7, &applied, false, T0 + 30).is_err());
    }
}

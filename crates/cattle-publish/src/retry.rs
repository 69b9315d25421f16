//! `cattle retry ID`: publish an execution again, as a new execution, to
//! those of its hosts that ended in ERROR, HALTED or CANCELLED (or other states
//! asked for), from what is already in the store: no config directory needed.
//!
//! The new execution runs the same bundle (same sha256: a new bundle
//! reference, no upload) with the same steps, mode and, for a config with
//! variables, each host's same values; it gets a new ID, a new version and a
//! new signed manifest through the code path `cattle publish` ends with
//! ([`crate::publish::sign_and_release`]).
//!
//! `cattle` reads manifests without checking their signature, and anyone
//! who can write to the store can change one; signing what was read would
//! turn such a change into a signed execution. So retry signs only what it
//! verified first: the old manifest (and each host's variables) must carry a
//! valid signature by the very key retry signs with, and name this execution
//! (and that host).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::signing::{Refusal, SecretKey, TrustedKeys};
use cattle_core::store::{Condition, Store};
use cattle_core::wire::{Envelope, Inbox, MAX_DOCUMENT_BYTES, Manifest};
use uuid::Uuid;

use crate::publish::{Mode, Published, Release, Signer};
use crate::settings::{Origin, Settings};
use crate::status::{Detail, HostState};

/// The hosts retried unless `--state` says otherwise.
pub const DEFAULT_STATES: [HostState; 3] =
    [HostState::Error, HostState::Halted, HostState::Cancelled];

/// What to retry, and how to sign it.
#[derive(Debug)]
pub struct Options {
    /// Retry the hosts in these states.
    pub states: Vec<HostState>,
    pub expires_in: Duration,
    /// The new manifest's message; default `retry of <ID>`.
    pub message: Option<String>,
}

/// No host of the execution is in the states asked for.
#[derive(Debug, thiserror::Error)]
#[error("execution {id} has no host in {states}: nothing to retry")]
pub struct NothingToRetry {
    pub id: Uuid,
    /// `ERROR or CANCELLED`.
    pub states: String,
}

/// The manifest (or a host's variables) does not verify with the key retry
/// would sign with.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot retry execution {id}: {what} in the store does not verify with key {key} ({why}); \
     `cattle retry` signs only what it can verify was signed by the key it signs with, since \
     anyone with write access to the store can change what commands read there"
)]
pub struct Unverified {
    pub id: Uuid,
    /// `its manifest`, `the variables of host `web-1``.
    pub what: String,
    pub key: String,
    pub why: String,
}

/// What a retry did.
#[derive(Debug)]
pub struct Retried {
    /// The execution retried.
    pub of: Uuid,
    /// The hosts it was published to again.
    pub hosts: Vec<HostId>,
    pub published: Published,
}

/// The schema of `cattle retry --json`; see `docs/json.md`.
pub const RETRY_SCHEMA: &str = "cattle.retry.v1";

impl Retried {
    /// `cattle retry --json`: the execution retried, the hosts, and the new
    /// execution as `cattle publish --json` describes it.
    pub fn json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Document<'a> {
            schema: &'static str,
            retry_of: Uuid,
            retried_hosts: &'a [HostId],
            #[serde(flatten)]
            published: &'a Published,
        }
        crate::terminal::json(
            &serde_json::to_string(&Document {
                schema: RETRY_SCHEMA,
                retry_of: self.of,
                retried_hosts: &self.hosts,
                published: &self.published,
            })
            .expect("a retry serializes"),
        )
    }
}

/// The key `cattle retry` signs with, as `cattle publish` finds it (`--key`,
/// CATTLE_SIGNING_KEY, the config file); `None` when none is given.
pub fn signer(settings: &Settings, key: Option<PathBuf>) -> anyhow::Result<Option<Signer>> {
    let Some(key) = settings.signing_key(key) else {
        return Ok(None);
    };
    let loaded = SecretKey::load(&key.value);
    let loaded = match &key.origin {
        Origin::File { .. } => {
            loaded.with_context(|| format!("cannot use `signing_key` ({})", key.origin))?
        }
        _ => loaded?,
    };
    Ok(Some(Signer::Key(Box::new(loaded))))
}

/// Publish execution `id` again to its hosts in `options.states`.
pub async fn retry(
    store: &Store,
    id: Uuid,
    signer: &Signer,
    options: Options,
) -> anyhow::Result<Retried> {
    let manifest = verified_manifest(store, id, signer).await?;
    let sha256 = manifest
        .bundle
        .checked_sha256()
        .map_err(|m| anyhow::anyhow!("the manifest of execution {id}: `bundle.sha256`: {m}"))?
        .to_string();

    let rows = crate::status::hosts(store, id, &manifest, Detail::Unfinished).await?;
    let hosts: Vec<HostId> = rows
        .into_iter()
        .filter(|r| options.states.contains(&r.state))
        .map(|r| r.host)
        .collect();
    if hosts.is_empty() {
        return Err(NothingToRetry {
            id,
            states: options
                .states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        }
        .into());
    }

    let vars = if manifest.vars {
        let all = crate::for_each_bounded(hosts.clone(), |host| {
            let store = store.clone();
            let trusted = trusted(signer);
            async move { host_vars(&store, id, &host, trusted.as_ref()).await }
        })
        .await;
        Some(all.into_iter().collect::<anyhow::Result<Vec<_>>>()?)
    } else {
        None
    };

    let new = Uuid::now_v7();
    // As publish does: the reference first, so that a clean of the old
    // execution keeps the bundle from now on; then make sure it is there.
    store
        .put(
            &keys::bundle_ref(&sha256, new),
            Vec::new(),
            Condition::Always,
        )
        .await?;
    let bundle_key = keys::bundle(&sha256);
    let size = store.size(&bundle_key).await?;
    if size != Some(manifest.bundle.size) {
        let _ = store.delete(&keys::bundle_ref(&sha256, new)).await;
        anyhow::bail!(
            "cannot retry execution {id}: its bundle `{}` is {}, not {} bytes as the manifest \
             says; publish the config again (`cattle publish DIR --hosts …`)",
            store.location(&bundle_key),
            size.map_or("missing".to_string(), |n| format!("{n} bytes")),
            manifest.bundle.size
        );
    }
    let release = Release {
        id: new,
        config: manifest.config.clone(),
        steps: manifest.steps,
        bundle: manifest.bundle.clone(),
        hosts: hosts.clone(),
        vars,
        mode: Mode {
            check: manifest.check,
            diff: manifest.diff,
        },
        message: Some(options.message.unwrap_or_else(|| format!("retry of {id}"))),
        // The hosts asked for, now: a retry is the operator's own decision.
        rollout: None,
        select: Vec::new(),
    };
    let published = crate::publish::sign_and_release(
        store,
        release,
        signer,
        options.expires_in,
        std::sync::Arc::new(crate::publish::Quiet),
    )
    .await?;
    Ok(Retried {
        of: id,
        hosts,
        published,
    })
}

/// Why a signature check failed, for [`Unverified`].
fn why(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Unsigned => "it is not signed".to_string(),
        Refusal::UnknownKey { keys } => format!("it is signed by key {keys}, not by this key"),
        Refusal::BadSignature { .. } => {
            "its signature does not match its contents: it was changed after it was signed"
                .to_string()
        }
        Refusal::Malformed(message) => format!("it is not valid: {message}"),
    }
}

/// Only the key `signer` signs with; `None` when it signs nothing.
fn trusted(signer: &Signer) -> Option<TrustedKeys> {
    match signer {
        Signer::Key(key) => Some(TrustedKeys::only(key.public())),
        Signer::Unsigned => None,
    }
}

/// The manifest of `id`, verified with the key `signer` signs with (read as
/// it is for `--unsigned`), naming this execution.
async fn verified_manifest(store: &Store, id: Uuid, signer: &Signer) -> anyhow::Result<Manifest> {
    let key = keys::manifest(id);
    let object = store
        .get(&key, MAX_DOCUMENT_BYTES)
        .await?
        .with_context(|| {
            format!(
                "no execution {id} in this store (`{}` does not exist)",
                store.location(&key)
            )
        })?;
    let envelope: Envelope = serde_json::from_slice(&object.bytes)
        .with_context(|| format!("`{}` is not a manifest envelope", store.location(&key)))?;
    let manifest = match trusted(signer) {
        Some(trusted) => {
            envelope
                .verify(&trusted)
                .map_err(|refusal| Unverified {
                    id,
                    what: "its manifest".to_string(),
                    key: trusted.keys()[0].id().to_string(),
                    why: why(&refusal),
                })?
                .0
        }
        None => envelope
            .manifest()
            .with_context(|| format!("`{}` is not a valid manifest", store.location(&key)))?,
    };
    if manifest.id != id {
        anyhow::bail!(
            "cannot retry execution {id}: its manifest `{}` is that of execution {} (copied \
             there by someone with write access to the store)",
            store.location(&key),
            manifest.id
        );
    }
    Ok(manifest)
}

/// `host`'s variables for execution `id`, from its inbox, verified with
/// `trusted` (the key retry signs with; `None`: `--unsigned`) and naming
/// this execution and this host.
async fn host_vars(
    store: &Store,
    id: Uuid,
    host: &HostId,
    trusted: Option<&TrustedKeys>,
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    // Its own object in stores upgraded to groups; its inbox before that.
    let own = keys::host_vars(id, host);
    let (location, envelope) = match store.get(&own, MAX_DOCUMENT_BYTES).await? {
        Some(object) => {
            let location = store.location(&own);
            let envelope: Envelope = serde_json::from_slice(&object.bytes)
                .with_context(|| format!("`{location}` is not a signed envelope"))?;
            (location, envelope)
        }
        None => {
            let key = keys::inbox(host);
            let location = store.location(&key);
            let missing = || {
                anyhow::anyhow!(
                    "cannot retry execution {id}: the store no longer holds the variables of \
                     host `{host}` for it (neither `{}` nor its inbox `{location}`); publish the \
                     config again (`cattle publish DIR --hosts …`)",
                    store.location(&own)
                )
            };
            let object = store
                .get(&key, MAX_DOCUMENT_BYTES)
                .await?
                .ok_or_else(missing)?;
            let inbox: Inbox = serde_json::from_slice(&object.bytes)
                .with_context(|| format!("`{location}` is not a valid inbox"))?;
            let envelope = inbox.vars.get(&id).cloned().ok_or_else(missing)?;
            (location, envelope)
        }
    };
    let vars = match trusted {
        Some(trusted) => {
            envelope
                .verify_host_vars(trusted)
                .map_err(|refusal| Unverified {
                    id,
                    what: format!("the variables of host `{host}` (in `{location}`)"),
                    key: trusted.keys()[0].id().to_string(),
                    why: why(&refusal),
                })?
                .0
        }
        None => envelope
            .host_vars()
            .with_context(|| format!("the variables of host `{host}` in `{location}`"))?,
    };
    if vars.execution != id || vars.host != *host {
        anyhow::bail!(
            "cannot retry execution {id}: the variables in `{location}` are signed for host `{}` \
             and execution {}, not for host `{host}` and execution {id}",
            vars.host,
            vars.execution
        );
    }
    Ok(vars.vars)
}

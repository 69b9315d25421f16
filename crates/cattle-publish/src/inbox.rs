//! Adding executions to and removing them from inboxes, safely against other
//! publishers doing the same at the same time (see [`crate::cas`]): the
//! groups' inboxes, which one write addresses many hosts in, and the per-host
//! inboxes that stores not yet upgraded keep for agents older than groups.

use std::collections::BTreeMap;

use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{Envelope, GroupEntry, GroupInbox, Inbox};
use uuid::Uuid;

/// `hosts` by their inbox group (`keys::inbox_group`), in the order given.
pub fn by_group(hosts: &[HostId]) -> BTreeMap<String, Vec<HostId>> {
    let mut groups: BTreeMap<String, Vec<HostId>> = BTreeMap::new();
    for host in hosts {
        groups
            .entry(keys::inbox_group(host))
            .or_default()
            .push(host.clone());
    }
    groups
}

/// Address execution `id` to `hosts`, all of group `group`, in one write of
/// the group's inbox. `per_host` says whether publishers of this store also
/// write per-host inboxes (agents then keep reading theirs).
pub async fn add_to_group(
    store: &Store,
    group: &str,
    id: Uuid,
    hosts: &[HostId],
    per_host: bool,
) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::group_inbox(group),
        || GroupInbox::new(group),
        |inbox| {
            let mut changed = inbox.per_host != per_host;
            inbox.per_host = per_host;
            match inbox.executions.iter_mut().find(|e| e.id == id) {
                Some(entry) => {
                    for host in hosts {
                        if !entry.hosts.contains(host) {
                            entry.hosts.push(host.clone());
                            changed = true;
                        }
                    }
                }
                None => {
                    inbox.executions.push(GroupEntry {
                        id,
                        hosts: hosts.to_vec(),
                    });
                    changed = true;
                }
            }
            changed
        },
    )
    .await
    .map(drop)
}

/// Withdraw execution `id` from group `group`'s inbox.
pub async fn remove_from_group(store: &Store, group: &str, id: Uuid) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::group_inbox(group),
        || GroupInbox::new(group),
        |inbox| {
            let before = inbox.executions.len();
            inbox.executions.retain(|e| e.id != id);
            inbox.executions.len() != before
        },
    )
    .await
    .map(drop)
}

/// Address execution `id` to `host`, with the host's signed variables if
/// the execution has them.
pub async fn add(
    store: &Store,
    host: &HostId,
    id: Uuid,
    vars: Option<Envelope>,
) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::inbox(host),
        || Inbox::new(host.clone()),
        |inbox| {
            if inbox.executions.contains(&id) {
                false
            } else {
                inbox.executions.push(id);
                if let Some(vars) = &vars {
                    inbox.vars.insert(id, vars.clone());
                }
                true
            }
        },
    )
    .await
    .map(drop)
}

/// Withdraw execution `id` from `host`.
pub async fn remove(store: &Store, host: &HostId, id: Uuid) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::inbox(host),
        || Inbox::new(host.clone()),
        |inbox| {
            let before = inbox.executions.len();
            inbox.executions.retain(|e| *e != id);
            let had_vars = inbox.vars.remove(&id).is_some();
            inbox.executions.len() != before || had_vars
        },
    )
    .await
    .map(drop)
}

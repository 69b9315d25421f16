//! The store's key layout. Every key Cattle reads or writes is built here.
//!
//! ```text
//! bundles/<sha256>.tar.gz                      config bundle, content-addressed, immutable
//! bundles/<sha256>.refs/<execution-id>         empty; one per execution using the bundle
//! executions/<execution-id>/manifest.json      what to run and where, signed (written once, by publish)
//! executions/<execution-id>/hosts/<host>/status.json   written only by <host>'s agent
//! executions/<execution-id>/hosts/<host>/log/<n>      written only by <host>'s agent: the
//!                                                      log in parts of at most 1 MiB, n = 00000000, 00000001, …
//! executions/<execution-id>/done/<host>                empty; <host>'s agent, once DONE
//! executions/<execution-id>/cancel.json                which hosts to stop (cattle cancel)
//! executions/<execution-id>/conflicts/<host>          a second agent for <host> ran nothing of it
//! executions/<execution-id>/ended/<state>/<host>       empty; <host>'s agent, once it ended a rolled-out execution
//! executions/<execution-id>/gate                       a hint that a rolled-out execution's waves may have moved
//! executions/<execution-id>/rollout.json               pause or resume a rollout, signed (cattle rollout)
//! executions/<execution-id>/vars/<host>               <host>'s variables for it, signed (publish)
//! inboxes/<group>.json                         executions addressed to the hosts of a group (publish, clean)
//! hosts/<host>/inbox.json                      executions addressed to <host>, in stores not yet upgraded to groups
//! hosts/<host>/agent.json                      the agent active for <host> (its lease)
//! hosts/<host>/selftest/<random>/probe         <host>'s agent checking the store, deleted by it (store::check)
//! publish/version.json                         highest manifest version handed out (publish)
//! selftest/<random>/probe                      `cattle store check`, deleted by it (store::check)
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

/// Where every host's objects of execution `id` are (status documents and
/// logs): one listing of it shows which hosts' status changed.
pub fn host_objects_prefix(id: Uuid) -> String {
    format!("executions/{id}/hosts/")
}

/// Where `host`'s log of execution `id` is kept, as parts named by [`log_part_name`].
pub fn log_prefix(id: Uuid, host: &HostId) -> String {
    format!("executions/{id}/hosts/{host}/log/")
}

/// Part `n` of `host`'s log of execution `id`: bytes `n` MiB to `n + 1` MiB of
/// everything the run logged (see [`crate::wire::LogSummary`]).
pub fn log_part(id: Uuid, host: &HostId, n: u64) -> String {
    format!("{}{}", log_prefix(id, host), log_part_name(n))
}

/// The name of log part `n`, in the store and in the agent's state directory:
/// eight digits, so that names sort as numbers do.
pub fn log_part_name(n: u64) -> String {
    format!("{n:08}")
}

/// The number of a log part named by [`log_part_name`]; `None` for any other name.
pub fn parse_log_part_name(name: &str) -> Option<u64> {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
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

/// Written by `host`'s agent once a rolled-out execution ended there in
/// `state` (`done`, `error`, `cancelled` or `halted`, see
/// [`crate::rollout::Ended`]): one listing of [`ended_prefix`] tells every
/// agent waiting for its wave how far the earlier waves are.
pub fn ended(id: Uuid, state: &str, host: &HostId) -> String {
    format!("executions/{id}/ended/{state}/{host}")
}

pub fn ended_prefix(id: Uuid) -> String {
    format!("executions/{id}/ended/")
}

/// A hint, written by whoever may have moved a rolled-out execution on (the
/// agent that ended a wave or spent the error budget, `cattle rollout`,
/// `cattle cancel`) and deleted first by `cattle clean`: agents waiting for
/// their wave read it conditionally each poll, and only when it changed do
/// they look at what the hosts reported. Its content is never trusted.
pub fn gate(id: Uuid) -> String {
    format!("executions/{id}/gate")
}

/// `cattle rollout pause|resume`'s signed [`crate::rollout::Control`].
pub fn rollout_control(id: Uuid) -> String {
    format!("executions/{id}/rollout.json")
}

/// The lease of the agent active for `host`: only it runs the host's work.
pub fn lease(host: &HostId) -> String {
    format!("hosts/{host}/agent.json")
}

/// The per-host inbox that publishers wrote before grouped inboxes, and still
/// write, besides the group's, until the store is upgraded (`cattle store
/// upgrade`): agents older than groups read only this.
pub fn inbox(host: &HostId) -> String {
    format!("hosts/{host}/inbox.json")
}

/// How many groups hosts are spread over: a publish writes one inbox per group
/// it addresses, whatever the number of hosts. At 100,000 hosts a group holds
/// about 390, and an execution addressed to all of them adds about 5 KiB to
/// each group's inbox.
pub const INBOX_GROUPS: usize = 256;

/// The group of `host`: the first byte of the sha256 of its ID, as two
/// lower-case hex digits. Anyone can compute it, so neither the publisher nor
/// the agent needs to be told.
pub fn inbox_group(host: &HostId) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(host.as_str().as_bytes());
    format!("{:02x}", digest[0])
}

/// Whether `group` names one of the [`INBOX_GROUPS`] groups.
pub fn is_inbox_group(group: &str) -> bool {
    group.len() == 2
        && group
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The inbox of group `group` (see [`inbox_group`]): every execution
/// addressed to a host of the group, with those hosts.
pub fn group_inbox(group: &str) -> String {
    format!("inboxes/{group}.json")
}

pub fn group_inboxes_prefix() -> String {
    "inboxes/".to_string()
}

/// `host`'s variables for execution `id`, signed for that execution and host
/// (a [`crate::wire::HostVars`] envelope): only that host may read them.
pub fn host_vars(id: Uuid, host: &HostId) -> String {
    format!("executions/{id}/vars/{host}")
}

/// Where a second agent for `host`, which runs nothing while another holds
/// the lease, says so: `cattle hosts` flags the host ID as used twice.
pub fn standby(host: &HostId) -> String {
    format!("hosts/{host}/standby.json")
}

/// Every host's objects (inbox, lease, standby record), for `cattle hosts`.
pub fn hosts_prefix() -> String {
    "hosts/".to_string()
}

/// Where one run of `cattle store check` keeps its probe (see `store::check`).
pub fn selftest_prefix(run: Uuid) -> String {
    format!("selftest/{run}/")
}

pub fn selftest_probe(run: Uuid) -> String {
    format!("selftest/{run}/probe")
}

/// Where one store check by `host`'s agent keeps its probe: under the host's
/// own objects, which its MinIO policy lets it write, list and delete.
pub fn host_selftest_prefix(host: &HostId, run: Uuid) -> String {
    format!("hosts/{host}/selftest/{run}/")
}

pub fn host_selftest_probe(host: &HostId, run: Uuid) -> String {
    format!("hosts/{host}/selftest/{run}/probe")
}

pub fn version_counter() -> String {
    "publish/version.json".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_parts_are_named_so_that_they_sort_as_numbers() {
        let host = HostId::new("web-1").unwrap();
        let id = Uuid::nil();
        assert_eq!(
            log_part(id, &host, 12),
            format!("executions/{id}/hosts/web-1/log/00000012")
        );
        assert!(log_part_name(9) < log_part_name(10));
        assert_eq!(parse_log_part_name("00000012"), Some(12));
        for other in ["12", "0000001x", "000000012", "", ".delivered"] {
            assert_eq!(parse_log_part_name(other), None, "{other}");
        }
    }

    #[test]
    fn hosts_spread_over_every_group_and_a_group_is_two_hex_digits() {
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..25_600 {
            let host = HostId::new(&format!("host-{i:05}")).unwrap();
            let group = inbox_group(&host);
            assert!(is_inbox_group(&group), "{group}");
            *seen.entry(group).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), INBOX_GROUPS);
        // About 100 each: no group gets a crowd.
        assert!(seen.values().all(|&n| (50..=160).contains(&n)), "{seen:?}");
        assert_eq!(
            inbox_group(&HostId::new("web-1").unwrap()),
            inbox_group(&HostId::new("web-1").unwrap())
        );
        for bad in ["", "0", "0g", "AB", "abc", "../"] {
            assert!(!is_inbox_group(bad), "{bad}");
        }
    }
}

//! Versions: the order in which hosts run a store's executions, and the
//! publishes still addressing hosts.
//!
//! Each publish takes a version from `publish/version.json` after its bundle is
//! uploaded and before it signs, and registers itself there as in flight until
//! every host is addressed. Versions only go up (a compare-and-swap), whatever
//! the publishers' clocks, so agents run executions in version order. A
//! manifest's `floor` is just below the oldest publish still in flight when it
//! was signed: every execution at or below it had reached all its hosts, so a
//! host that has started this one and is offered one of those afterwards knows
//! it was withheld (a rollback), while an execution still being addressed when
//! this one was signed is not refused for arriving late.

use std::time::{Duration, SystemTime};

use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{FORMAT, InFlight, InboxLayout, VersionCounter};
use uuid::Uuid;

/// A publish still in flight after this long is taken for dead (killed, or its
/// machine gone) and no longer holds the floor down. Measured on versions,
/// which are at least the publisher's time in milliseconds.
pub const IN_FLIGHT_EXPIRY: Duration = Duration::from_secs(3600);

/// What a publish signs: its version and floor; and how it addresses hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub version: u64,
    pub floor: u64,
    pub inboxes: InboxLayout,
}

/// A store's first counter: a new store addresses hosts through group inboxes
/// only, as no agent can be older than them there.
fn first_counter() -> VersionCounter {
    VersionCounter {
        inboxes: InboxLayout::Grouped,
        ..VersionCounter::default()
    }
}

/// Take the next version for execution `id` and register it as in flight.
pub async fn take(store: &Store, id: Uuid) -> Result<Ticket, StoreError> {
    let counter = crate::cas::update(store, &keys::version_counter(), first_counter, |counter| {
        next(counter, id, now_ms());
        true
    })
    .await?;
    Ok(ticket(&counter, id))
}

/// Execution `id` has addressed every host it will (or given up): it no longer
/// holds later publishes' floors down.
pub async fn release(store: &Store, id: Uuid) -> Result<(), StoreError> {
    crate::cas::update(
        store,
        &keys::version_counter(),
        VersionCounter::default,
        |counter| {
            let before = counter.in_flight.len();
            counter.in_flight.retain(|f| f.id != id);
            counter.in_flight.len() != before
        },
    )
    .await
    .map(drop)
}

/// Stop writing per-host inboxes in this store (`cattle store upgrade`):
/// returns the layout it had.
pub async fn upgrade(store: &Store) -> Result<InboxLayout, StoreError> {
    let before = std::cell::Cell::new(InboxLayout::Grouped);
    crate::cas::update(store, &keys::version_counter(), first_counter, |counter| {
        before.set(counter.inboxes);
        let changed = counter.inboxes != InboxLayout::Grouped;
        counter.format = FORMAT;
        counter.inboxes = InboxLayout::Grouped;
        changed
    })
    .await?;
    Ok(before.get())
}

/// Raise `counter` for execution `id` at time `now_ms`: the next version is
/// one more than the last, or the time in milliseconds if that is higher (so
/// versions keep going up even if the counter is lost), registered as in
/// flight; publishes in flight for longer than [`IN_FLIGHT_EXPIRY`] are dropped.
fn next(counter: &mut VersionCounter, id: Uuid, now_ms: u64) {
    let expiry = IN_FLIGHT_EXPIRY.as_millis() as u64;
    counter.format = FORMAT;
    counter
        .in_flight
        .retain(|f| f.id != id && f.version.saturating_add(expiry) >= now_ms);
    counter.version = counter.version.saturating_add(1).max(now_ms);
    counter.in_flight.push(InFlight {
        version: counter.version,
        id,
    });
}

/// The version `counter` gave execution `id`, and its floor: just below the
/// oldest publish in flight, itself included.
fn ticket(counter: &VersionCounter, id: Uuid) -> Ticket {
    let version = counter
        .in_flight
        .iter()
        .find(|f| f.id == id)
        .map_or(counter.version, |f| f.version);
    let oldest = counter
        .in_flight
        .iter()
        .map(|f| f.version)
        .min()
        .unwrap_or(version)
        .min(version);
    Ticket {
        version,
        floor: oldest.saturating_sub(1),
        inboxes: counter.inboxes,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn versions_go_up_whatever_the_clock_and_the_floor_waits_for_publishes_in_flight() {
        let mut counter = VersionCounter::default();
        let t0 = 1_800_000_000_000;
        // A big publish takes its version and starts addressing.
        next(&mut counter, id(1), t0);
        let big = ticket(&counter, id(1));
        assert_eq!(
            big,
            Ticket {
                version: t0,
                floor: t0 - 1,
                inboxes: InboxLayout::PerHostAndGrouped,
            }
        );
        // A publisher whose clock is five minutes behind still gets a higher
        // version, and its floor stays below the publish still in flight.
        next(&mut counter, id(2), t0 - 300_000);
        let small = ticket(&counter, id(2));
        assert_eq!(
            small,
            Ticket {
                version: t0 + 1,
                floor: t0 - 1,
                inboxes: InboxLayout::PerHostAndGrouped,
            }
        );
        // Once both are done, the next floor is just below the next version.
        counter.in_flight.clear();
        next(&mut counter, id(3), t0 + 10);
        assert_eq!(
            ticket(&counter, id(3)),
            Ticket {
                version: t0 + 10,
                floor: t0 + 9,
                inboxes: InboxLayout::PerHostAndGrouped,
            }
        );
    }

    #[test]
    fn a_publish_in_flight_for_longer_than_the_expiry_no_longer_holds_the_floor() {
        let mut counter = VersionCounter::default();
        let t0 = 1_800_000_000_000;
        next(&mut counter, id(1), t0); // killed while addressing
        let expiry = IN_FLIGHT_EXPIRY.as_millis() as u64;
        next(&mut counter, id(2), t0 + expiry);
        assert_eq!(ticket(&counter, id(2)).floor, t0 - 1, "not expired yet");
        next(&mut counter, id(3), t0 + expiry + 1);
        assert_eq!(
            ticket(&counter, id(3)).floor,
            t0 + expiry - 1,
            "the dead publish is dropped; the other is still in flight"
        );
        assert_eq!(counter.in_flight.len(), 2);
    }
}

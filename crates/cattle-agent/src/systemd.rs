//! Telling systemd how the agent is doing, for a unit with `Type=notify`: it
//! is ready (after its state directory is locked and the store is open), it
//! is reloading its settings or stopping, what it is doing (`STATUS=`, shown
//! by `systemctl status`), and that it is alive (`WATCHDOG=1`, when the unit
//! sets `WatchdogSec=`).
//!
//! The protocol is a datagram of `KEY=VALUE` lines to the socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`),
//! as `sd_notify(3)` describes. Without the variable (not started by systemd,
//! or a unit of another type) every call does nothing. A message that cannot
//! be sent is logged at debug level and otherwise ignored: systemd's view of
//! the agent is never a reason for the agent to stop.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

/// The variable naming systemd's notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The watchdog's timeout in microseconds, set when the unit has `WatchdogSec=`.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The process the watchdog is for; another process's (a step's) is ignored.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Where notifications go, read from the environment once.
fn socket() -> Option<&'static (UnixDatagram, SocketAddr)> {
    static SOCKET: OnceLock<Option<(UnixDatagram, SocketAddr)>> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let name = std::env::var_os(NOTIFY_SOCKET)?;
            let addr = match address(name.as_encoded_bytes()) {
                Ok(addr) => addr,
                Err(e) => {
                    tracing::debug!(error = %e, "{NOTIFY_SOCKET} is not a usable address");
                    return None;
                }
            };
            match UnixDatagram::unbound() {
                Ok(sock) => Some((sock, addr)),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot open a socket to notify systemd");
                    None
                }
            }
        })
        .as_ref()
}

/// The address `NOTIFY_SOCKET` names: a file system path, or with a leading
/// `@` a name in Linux's abstract namespace.
fn address(name: &[u8]) -> std::io::Result<SocketAddr> {
    match name.split_first() {
        Some((b'@', abstract_name)) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(abstract_name)
        }
        Some((b'/', _)) => {
            use std::os::unix::ffi::OsStrExt as _;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name (`@…`)",
        )),
    }
}

/// Sends `state` (`KEY=VALUE` lines) to systemd, if it asked for notifications.
pub fn notify(state: &str) {
    let Some((sock, addr)) = socket() else {
        return;
    };
    if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
        tracing::debug!(error = %e, state, "cannot notify systemd");
    }
}

/// The agent is up: systemd considers the service started.
pub fn ready() {
    notify("READY=1");
}

/// What the agent is doing, for `systemctl status`. One line; newlines and
/// other control characters (from the store's error messages) become spaces.
/// Sent only when it differs from the last one: the idle loop says the same
/// thing after every poll.
pub fn status(text: &str) {
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    if socket().is_none() {
        return;
    }
    let line = status_line(text);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *last != line {
        notify(&format!("STATUS={line}"));
        *last = line;
    }
}

/// `text` as one line of `STATUS=`.
fn status_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The agent is reloading its settings; [`reloaded`] when done.
pub fn reloading() {
    // systemd 253 and later want the time with it; earlier ones ignore it.
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
}

/// Reloading is over (whether or not the new settings were taken).
pub fn reloaded() {
    notify("READY=1");
}

/// The agent is stopping: finishing the step under way, then exiting.
pub fn stopping() {
    notify("STOPPING=1");
}

/// How often to tell the watchdog the agent is alive, if systemd runs one for
/// this process: half its timeout, as `sd_watchdog_enabled(3)` advises.
pub fn watchdog_interval() -> Option<Duration> {
    socket()?;
    let usec: u64 = std::env::var(WATCHDOG_USEC).ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var(WATCHDOG_PID)
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

/// Pings systemd's watchdog forever, every `every`. It runs on the agent's
/// runtime thread among the polls and uploads: if that thread is stuck, the
/// pings stop and systemd restarts the agent. Steps run on other threads, so a
/// long step does not stop them.
pub async fn keep_watchdog(every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        notify("WATCHDOG=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_a_path_or_an_abstract_name() {
        let path = address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        use std::os::linux::net::SocketAddrExt as _;
        let abstract_addr = address(b"@/org/freedesktop/systemd1/notify/123").unwrap();
        assert_eq!(
            abstract_addr.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify/123"[..])
        );
        assert!(address(b"relative/path").is_err());
        assert!(address(b"").is_err());
    }

    #[test]
    fn a_status_is_one_line_whatever_the_store_said() {
        assert_eq!(
            status_line("poll failed: bad\nline\r\u{1b}[2J"),
            "poll failed: bad line  [2J"
        );
    }

    #[test]
    fn a_datagram_of_key_value_lines_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        let addr = address(path.as_os_str().as_encoded_bytes()).unwrap();
        sender.send_to_addr(b"READY=1", &addr).unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}

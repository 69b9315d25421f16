//! What the `cattle` CLI and `cattle-agent` share: names, the wire format, the
//! bundle format and the store client.
//!
//! Nothing here runs steps; that is `cattle-stdlib`'s job. Nothing here prints;
//! errors say what was being attempted and on which object, and the binaries
//! decide how to show them.

pub mod bundle;
pub mod env;
pub mod hosts;
pub mod keys;
pub mod settings;
pub mod signing;
pub mod store;
pub mod wire;

/// The current time as an RFC 3339 timestamp with milliseconds, in UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

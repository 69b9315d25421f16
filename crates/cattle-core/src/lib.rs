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

/// `n` and the noun, in the singular for one: `1 host`, `2 hosts`, `0 hosts`.
/// For nouns whose plural is the noun and an `s`, which are all Cattle prints.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(super::count(1u32, "host"), "1 host");
        assert_eq!(super::count(0u32, "host"), "0 hosts");
        assert_eq!(super::count(2000u32, "step"), "2000 steps");
    }
}

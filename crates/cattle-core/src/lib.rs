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
pub mod rollout;
pub mod settings;
pub mod signing;
pub mod store;
pub mod window;
pub mod wire;

/// The current time as an RFC 3339 timestamp with milliseconds, in UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The texts of an error's causes (`chain`: its sources, outermost first)
/// that say something new after `headline`, each for a `Caused by:` line of
/// its own. A cause is left out when the line before it already contains its
/// text, as when an error quotes its source (`cannot read `key`: No such file
/// or directory`, caused by `No such file or directory`).
pub fn distinct_causes<'a>(
    headline: &str,
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> Vec<String> {
    let mut previous = headline.to_string();
    let mut causes = Vec::new();
    for cause in chain {
        let text = cause.to_string();
        if !previous.contains(&text) {
            causes.push(text.clone());
            previous = text;
        }
    }
    causes
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

#[cfg(test)]
mod tests {
    use std::fmt;

    #[derive(Debug)]
    struct Error(&'static str, Option<Box<Error>>);

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Error {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_cause_the_line_before_it_quotes_is_said_once() {
        let io = Error("No such file or directory (os error 2)", None);
        let read = Error(
            "cannot read `/k`: No such file or directory (os error 2)",
            Some(Box::new(io)),
        );
        let chain = |e: &'static Error| {
            let mut chain: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(e) = next {
                chain.push(e);
                next = e.source();
            }
            chain
        };
        let read: &'static Error = Box::leak(Box::new(read));
        // As the headline's own text, and as a cause of a context.
        assert!(
            super::distinct_causes(&read.to_string(), chain(read).into_iter().skip(1)).is_empty()
        );
        let publish: &'static Error = Box::leak(Box::new(Error(
            "cannot publish",
            Some(Box::new(Error(
                read.0,
                Some(Box::new(Error(
                    "No such file or directory (os error 2)",
                    None,
                ))),
            ))),
        )));
        assert_eq!(
            super::distinct_causes("cannot publish", chain(publish).into_iter().skip(1)),
            ["cannot read `/k`: No such file or directory (os error 2)"]
        );
        // A cause that says something else is kept, even after one left out.
        let other: &'static Error = Box::leak(Box::new(Error(
            "a: b",
            Some(Box::new(Error("b", Some(Box::new(Error("c", None)))))),
        )));
        assert_eq!(super::distinct_causes("top", chain(other)), ["a: b", "c"]);
    }
}

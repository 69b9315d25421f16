//! The `cattle` command's library: publish configurations to a store, and read
//! back and tidy what hosts reported. No command opens a connection to a host.

pub mod apply;
pub mod cancel;
pub mod cas;
pub mod clean;
pub mod cli;
pub mod fleet;
pub mod follow;
pub mod ids;
pub mod inbox;
pub mod inventory;
pub mod list;
pub mod log;
pub mod publish;
pub mod retry;
pub mod rollout;
pub mod select;
pub mod settings;
pub mod status;
pub mod store_check;
pub mod style;
pub mod terminal;
pub mod versions;
pub mod watch;

use std::future::Future;

/// Exit codes of `cattle`, fixed and documented in `docs/exit-codes.md` (a
/// test checks that its table lists exactly these).
pub mod exit {
    /// Everything asked for was done; for `status`, every host is DONE.
    pub const SUCCESS: u8 = 0;
    /// The command failed: bad input, store error, refused clean, failed apply
    /// (or a failed check of `apply --check`).
    pub const FAILURE: u8 = 1;
    /// Bad flags or arguments (clap's own code); also `publish --select`
    /// that matches no host.
    pub const USAGE: u8 = 2;
    /// `status`: some host needs attention: it is in ERROR, HALTED or CANCELLED, what
    /// it wrote cannot be read (UNREADABLE), or two agents use its host ID.
    /// `hosts`: some host is silent, never reported, has a host ID two agents
    /// use, or a heartbeat that cannot be read.
    pub const HOSTS_FAILED: u8 = 3;
    /// `status`: some hosts have not finished (PENDING, WAITING or PROGRESS), e.g. `--wait` timed out.
    pub const HOSTS_UNFINISHED: u8 = 4;
    /// `apply --check`: some step would change (nothing was changed). Not 2,
    /// which clap gives bad flags: a script must tell a typo from a change.
    pub const WOULD_CHANGE: u8 = 5;
    /// `retry`: no host of the execution is in the states to retry (by
    /// default ERROR, HALTED or CANCELLED); nothing was published.
    pub const NOTHING_TO_RETRY: u8 = 6;
    /// `status --watch`, `log --follow`: stopped by Ctrl-C (SIGINT) before the end.
    pub const INTERRUPTED: u8 = 130;
}

/// Requests a command keeps in flight at once when it touches many hosts' objects.
pub const CONCURRENCY: usize = 64;

/// Run `f` over `items` with at most [`CONCURRENCY`] at once; results in input order.
///
/// Futures are created only as slots free up, so memory stays bounded however
/// many items there are.
pub async fn for_each_bounded<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    for_each_limited(items, CONCURRENCY, f).await
}

/// [`for_each_bounded`] with at most `limit` at once: for work items that
/// themselves keep up to [`CONCURRENCY`] requests in flight.
pub async fn for_each_limited<T, R, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut pending = items.into_iter().enumerate();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < limit.max(1) {
            let Some((i, item)) = pending.next() else {
                break;
            };
            let fut = f(item);
            running.spawn(async move { (i, fut.await) });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (i, result) = done.expect("tasks do not panic");
        results[i] = Some(result);
    }
    results
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    /// `(code, name)` of each row of the first table after the line `heading`
    /// in a markdown document whose rows start `| code | `NAME` |`.
    fn table_after(doc: &str, heading: &str) -> Vec<(u8, String)> {
        let rest = &doc[doc.find(heading).expect("the heading is there")..];
        rest.lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2) // the header and its separator
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let code = cells[1].parse().unwrap_or_else(|e| panic!("{row}: {e}"));
                (code, cells[2].trim_matches('`').to_string())
            })
            .collect()
    }

    #[test]
    fn the_documented_exit_codes_are_exactly_the_constants() {
        // The constants, as written in this file's `exit` module.
        let source = include_str!("lib.rs");
        let module = &source[source.find("pub mod exit {").unwrap()..];
        let module = &module[..module.find("\n}").unwrap()];
        let constants: Vec<(u8, String)> = module
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .map(|l| {
                let (name, value) = l.split_once(": u8 = ").unwrap();
                (
                    value.trim_end_matches(';').parse().unwrap(),
                    name.to_string(),
                )
            })
            .collect();
        assert_eq!(constants.len(), 8, "{module}");
        let doc = include_str!("../../../docs/exit-codes.md");
        assert_eq!(table_after(doc, "## `cattle`\n"), constants);
        // The values the program uses are the ones written.
        use super::exit::*;
        assert_eq!(
            constants.iter().map(|c| c.0).collect::<Vec<_>>(),
            [
                SUCCESS,
                FAILURE,
                USAGE,
                HOSTS_FAILED,
                HOSTS_UNFINISHED,
                WOULD_CHANGE,
                NOTHING_TO_RETRY,
                INTERRUPTED
            ]
        );
    }
}

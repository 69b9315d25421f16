//! The `cattle` command's library: publish configurations to a store, and read
//! back and tidy what hosts reported. No command opens a connection to a host.

pub mod apply;
pub mod cancel;
pub mod cas;
pub mod clean;
pub mod cli;
pub mod fleet;
pub mod inbox;
pub mod inventory;
pub mod log;
pub mod publish;
pub mod settings;
pub mod status;
pub mod terminal;
pub mod versions;

use std::future::Future;

/// Exit codes of `cattle`, fixed and documented in the README.
pub mod exit {
    /// Everything asked for was done; for `status`, every host is DONE.
    pub const SUCCESS: u8 = 0;
    /// The command failed: bad input, store error, refused clean, failed apply
    /// (or a failed check of `apply --check`).
    pub const FAILURE: u8 = 1;
    /// Bad flags or arguments (clap's own code).
    pub const USAGE: u8 = 2;
    /// `status`: some host needs attention: it is in ERROR or CANCELLED, what
    /// it wrote cannot be read (UNREADABLE), or two agents use its host ID.
    /// `hosts`: some host is silent, never reported, has a host ID two agents
    /// use, or a heartbeat that cannot be read.
    pub const HOSTS_FAILED: u8 = 3;
    /// `status`: some hosts have not finished (PENDING or PROGRESS), e.g. `--wait` timed out.
    pub const HOSTS_UNFINISHED: u8 = 4;
    /// `apply --check`: some step would change (nothing was changed). Not 2,
    /// which clap gives bad flags: a script must tell a typo from a change.
    pub const WOULD_CHANGE: u8 = 5;
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
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut pending = items.into_iter().enumerate();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < CONCURRENCY {
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

//! The `cattle` command's library: publish configurations to a store, and read
//! back and tidy what hosts reported. No command opens a connection to a host.

pub mod apply;
pub mod clean;
pub mod inbox;
pub mod publish;
pub mod status;

use std::future::Future;

/// Exit codes of `cattle`, fixed and documented in the README.
pub mod exit {
    /// Everything asked for was done; for `status`, every host is DONE.
    pub const SUCCESS: u8 = 0;
    /// The command failed: bad input, store error, refused clean, failed apply.
    pub const FAILURE: u8 = 1;
    /// Bad flags or arguments (clap's own code).
    pub const USAGE: u8 = 2;
    /// `status`: at least one host is in ERROR.
    pub const HOSTS_FAILED: u8 = 3;
    /// `status`: some hosts have not finished (PENDING or PROGRESS), e.g. `--wait` timed out.
    pub const HOSTS_UNFINISHED: u8 = 4;
}

/// Requests a command keeps in flight at once when it touches many hosts' objects.
pub const CONCURRENCY: usize = 32;

/// Run `f` over `items` with at most [`CONCURRENCY`] at once; results in input order.
pub async fn for_each_bounded<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(items.len());
    for item in items {
        let permit = semaphore.clone().acquire_owned();
        let fut = f(item);
        tasks.push(tokio::spawn(async move {
            let _permit = permit.await.expect("semaphore is never closed");
            fut.await
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("tasks do not panic"));
    }
    results
}

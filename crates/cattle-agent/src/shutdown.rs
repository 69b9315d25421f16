//! A shutdown request that both async code and the blocking step runner can see.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Cloneable handle: `request()` once, and every clone sees it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    requested: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// Wait up to `timeout`; `true` if shutdown was requested meanwhile.
    pub async fn wait_timeout(&self, timeout: Duration) -> bool {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Register before checking the flag, so a request in between is not missed.
        notified.as_mut().enable();
        if self.is_requested() {
            return true;
        }
        tokio::time::timeout(timeout, notified).await.is_ok() || self.is_requested()
    }
}

//! Two-step shutdown shared by every stage of a service, the shared `[shutdown]` section, and
//! the signals that start it.
//!
//! `stop`: stop taking new work, finish what is in flight. `abort`: the deadline passed; abandon
//! retries and waits now (abandoned work is not committed and will be redone by the next owner).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::millis;

/// Graceful shutdown (`[shutdown]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM/SIGINT, in-flight work has this long to finish before it is abandoned
    /// (`deadline_ms`; uncommitted, so it is redone by the next owner).
    #[serde(rename = "deadline_ms", with = "millis")]
    pub deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { deadline: Duration::from_millis(10_000) }
    }
}

/// The observing side, cloned into every stage.
#[derive(Clone, Debug)]
pub struct Shutdown {
    stop: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
}

/// The controlling side of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownController {
    stop: watch::Sender<bool>,
    abort: watch::Sender<bool>,
}

impl ShutdownController {
    /// A controller and its first observer.
    pub fn new() -> (Self, Shutdown) {
        let (stop_tx, stop) = watch::channel(false);
        let (abort_tx, abort) = watch::channel(false);
        (Self { stop: stop_tx, abort: abort_tx }, Shutdown { stop, abort })
    }
    /// Stop taking new work.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
    /// Abandon in-flight work now (implies stop).
    pub fn abort(&self) {
        let _ = self.stop.send(true);
        let _ = self.abort.send(true);
    }
}

impl Shutdown {
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
    pub fn is_aborted(&self) -> bool {
        *self.abort.borrow()
    }
    /// Resolves when stopping begins.
    pub async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|v| *v).await;
    }
    /// Resolves when in-flight work must be abandoned.
    pub async fn aborted(&mut self) {
        let _ = self.abort.wait_for(|v| *v).await;
    }
    /// Sleep for `d` unless aborted first; returns false when aborted.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.aborted() => false,
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn abort_cuts_a_sleep_short_and_implies_stop() {
        let (ctl, mut sd) = ShutdownController::new();
        assert!(!sd.is_stopping());
        let mut sleeper = sd.clone();
        let h = tokio::spawn(async move { sleeper.sleep(Duration::from_secs(60)).await });
        ctl.abort();
        assert!(!h.await.unwrap(), "aborted sleeps return false");
        assert!(sd.is_stopping() && sd.is_aborted());
        sd.stopped().await;
    }
}

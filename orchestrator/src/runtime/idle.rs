//! Idle behaviour: how long since the worker last had work, and, on a backend with wake
//! signals, the task that watches them. A worker with work (or woken recently) polls each
//! queue at most `max_idle_poll` apart; one idle for `idle_warm_period` stops polling the
//! queues (but for a rare sweep) and looks only at the wake signals, every
//! `max_idle_poll`. Any new signal makes it poll every queue at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use super::Shared;

/// The most signals one look returns; a full page counts as new.
const PEEK_PAGE: usize = 32;

/// When the worker last had work, and a channel that wakes its polling loops.
pub(crate) struct IdleState {
    last_active: Mutex<Instant>,
    wake: watch::Sender<u64>,
}

impl Default for IdleState {
    fn default() -> Self {
        Self {
            last_active: Mutex::new(Instant::now()),
            wake: watch::channel(0).0,
        }
    }
}

impl IdleState {
    /// Records that the worker had work just now.
    pub(crate) fn mark_active(&self) {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Time since the worker last had work.
    pub(crate) fn idle_for(&self) -> Duration {
        self.last_active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// A receiver that sees the next wake-up.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// Wakes the polling loops.
    pub(crate) fn wake(&self) {
        self.mark_active();
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Looks at the wake signals every `max_idle_poll`; a signal not seen before wakes the
/// polling loops.
pub(crate) async fn watch_wake_signals(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.options.max_idle_poll) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let ids = match shared.backend.peek_wake().await {
            Ok(ids) => ids,
            Err(error) => {
                super::log_retried_failure(&error, "looking at the wake signals failed");
                continue;
            }
        };
        let full_page = ids.len() >= PEEK_PAGE;
        let current: HashSet<String> = ids.into_iter().collect();
        if full_page || current.iter().any(|id| !seen.contains(id)) {
            debug!("woken by a wake signal");
            shared.idle.wake();
        }
        seen = current;
    }
}

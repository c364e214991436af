//! Wake signals: every send also leaves a small message in `<hub>-wake` (at most one per
//! few seconds per process, and one per few-second bucket for delayed messages, made
//! visible when they are), with a short time to live. An idle worker looks at that one
//! queue with a peek (one transaction, nothing hidden or deleted, so every worker sees
//! it) instead of polling every control queue and the work-item queue: about 90 storage
//! transactions per idle hour instead of 600.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowforge_orchestrator::backend::Error;

use crate::backend::AzureBackend;
use crate::error::classify;

/// A process signals an immediate wake at most this often.
const SIGNAL_EVERY: Duration = Duration::from_secs(5);
/// Delayed wakes are grouped into buckets of this many seconds.
const BUCKET_SECS: i64 = 5;
/// How long a signal stays visible: longer than any worker's peek interval.
const SIGNAL_TTL: Duration = Duration::from_secs(15 * 60);

/// What this process has signalled recently.
#[derive(Default)]
pub(crate) struct WakeSignals {
    state: Mutex<Signalled>,
}

#[derive(Default)]
struct Signalled {
    last_immediate: Option<Instant>,
    delayed_buckets: BTreeSet<i64>,
}

impl WakeSignals {
    /// Whether a signal for a message visible at `visible_at` (now when `None`) is due,
    /// and if so, records it.
    fn claim(&self, visible_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match visible_at.filter(|at| *at > now + chrono::Duration::seconds(1)) {
            None => {
                let due = state
                    .last_immediate
                    .is_none_or(|at| at.elapsed() >= SIGNAL_EVERY);
                if due {
                    state.last_immediate = Some(Instant::now());
                }
                due
            }
            Some(at) => {
                let current = now.timestamp() / BUCKET_SECS;
                state.delayed_buckets.retain(|bucket| *bucket >= current);
                state
                    .delayed_buckets
                    .insert(at.timestamp().div_euclid(BUCKET_SECS) + 1)
            }
        }
    }
}

impl AzureBackend {
    /// The queue of wake signals (`<hub>-wake`).
    pub fn wake_queue_name(&self) -> String {
        format!("{}-wake", self.config.task_hub)
    }

    /// Leaves a wake signal for a message just sent, unless one covers it already. A
    /// failure is logged, not returned: the message is sent, and idle workers still sweep
    /// every queue now and then.
    pub(crate) async fn signal_wake(&self, visible_at: Option<DateTime<Utc>>) {
        let now = Utc::now();
        if !self.wake.claim(visible_at, now) {
            return;
        }
        let delay = visible_at
            .and_then(|at| (at - now).to_std().ok())
            .map(|d| Duration::from_secs(d.as_secs() + 1).min(self.config.max_visibility_delay))
            .unwrap_or_default();
        let mut put = self
            .queue_client(&self.wake_queue_name())
            .put_message("d2FrZQ==")
            .ttl(delay + SIGNAL_TTL);
        if !delay.is_zero() {
            put = put.visibility_timeout(delay);
        }
        self.counter.count("queue.put");
        if let Err(error) = put.await {
            tracing::debug!(%error, "leaving a wake signal failed");
        }
    }

    /// The ids of the wake signals visible now (up to 32).
    pub(crate) async fn peek_wake_ids(&self) -> Result<Vec<String>, Error> {
        self.counter.count("queue.peek");
        let response = self
            .queue_client(&self.wake_queue_name())
            .peek_messages()
            .number_of_messages(32)
            .await
            .map_err(|e| classify("wake peek", e))?;
        Ok(response
            .messages
            .into_iter()
            .map(|m| m.message_id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_signals_are_throttled_and_delayed_ones_bucketed() {
        let signals = WakeSignals::default();
        let now = Utc::now();
        assert!(signals.claim(None, now));
        assert!(!signals.claim(None, now), "a second immediate signal waits");
        let later = now + chrono::Duration::seconds(60);
        assert!(signals.claim(Some(later), now));
        assert!(
            !signals.claim(Some(later + chrono::Duration::milliseconds(10)), now),
            "same bucket"
        );
        assert!(signals.claim(Some(later + chrono::Duration::seconds(30)), now));
    }
}

//! Wake signals: every send also leaves a small message in `<hub>-wake` (at most one per
//! few seconds per process, and one per few-second bucket for delayed messages, made
//! visible when they are), with a short time to live. An idle worker looks at that one
//! queue with a peek (one transaction, nothing hidden or deleted, so every worker sees
//! it) instead of polling every control queue and the work-item queue: about 90 storage
//! transactions per idle hour instead of 600. A receive or a lease renewal leaves a delayed
//! signal too, for the moment its lease would lapse, so work held by a worker that dies
//! wakes the idle ones. This file holds the throttling rule (pure); leaving and peeking the
//! signals are queue operations, in `queue_store.rs`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A process signals an immediate wake at most this often.
const SIGNAL_EVERY: Duration = Duration::from_secs(5);
/// Delayed wakes are grouped into buckets of this many seconds.
const BUCKET_SECS: i64 = 5;
/// How long a signal stays visible: longer than any worker's peek interval.
pub(crate) const SIGNAL_TTL: Duration = Duration::from_secs(15 * 60);

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
    pub(crate) fn claim(&self, visible_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
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

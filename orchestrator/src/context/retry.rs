//! Retry policies for activities and sub-orchestrations. The waits between attempts are
//! durable timers, so they are recorded in history and survive a crash.

use std::sync::Arc;
use std::time::Duration;

use crate::history::FailureDetails;

/// Decides whether a failure may be retried.
pub type RetryPredicate = Arc<dyn Fn(&FailureDetails) -> bool + Send + Sync>;

/// How to retry a failed activity or sub-orchestration, as in Durable Functions:
/// the wait before attempt `n + 1` is `first_interval × backoff_coefficient^(n-1)`,
/// capped at `max_interval`.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Wait before the second attempt. Must be greater than zero.
    pub first_interval: Duration,
    /// Total attempts, the first one included.
    pub max_attempts: u32,
    /// Growth of the wait per attempt (1 = constant).
    pub backoff_coefficient: f64,
    /// Upper bound of one wait.
    pub max_interval: Option<Duration>,
    /// No attempt starts later than this after the first one.
    pub retry_timeout: Option<Duration>,
    /// Which failures retry; by default those marked retryable.
    pub handle: Option<RetryPredicate>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("first_interval", &self.first_interval)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_coefficient", &self.backoff_coefficient)
            .field("max_interval", &self.max_interval)
            .field("retry_timeout", &self.retry_timeout)
            .field("handle", &self.handle.as_ref().map(|_| "<predicate>"))
            .finish()
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts, waiting `first_interval` between them.
    pub fn new(max_attempts: u32, first_interval: Duration) -> Self {
        Self {
            first_interval,
            max_attempts,
            backoff_coefficient: 1.0,
            max_interval: None,
            retry_timeout: None,
            handle: None,
        }
    }

    /// Sets the back-off coefficient.
    pub fn with_backoff(mut self, coefficient: f64) -> Self {
        self.backoff_coefficient = coefficient;
        self
    }

    /// Caps each wait.
    pub fn with_max_interval(mut self, max: Duration) -> Self {
        self.max_interval = Some(max);
        self
    }

    /// Stops retrying once this much time has passed since the first attempt.
    pub fn with_retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = Some(timeout);
        self
    }

    /// Retries only failures for which `predicate` is true.
    pub fn with_handle(
        mut self,
        predicate: impl Fn(&FailureDetails) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.handle = Some(Arc::new(predicate));
        self
    }

    /// The wait after failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.first_interval.as_secs_f64() * self.backoff_coefficient.powi(exponent);
        let delay = if secs.is_finite() && secs < 1e12 {
            Duration::from_secs_f64(secs.max(0.0))
        } else {
            Duration::from_secs(1_000_000_000_000)
        };
        match self.max_interval {
            Some(max) => delay.min(max),
            None => delay,
        }
    }

    /// Whether to make another attempt after failed attempt `attempt`, given the failure
    /// and the time elapsed since the first attempt (including the next wait).
    pub fn should_retry(
        &self,
        attempt: u32,
        failure: &FailureDetails,
        elapsed_with_wait: Duration,
    ) -> bool {
        if attempt >= self.max_attempts {
            return false;
        }
        if let Some(timeout) = self.retry_timeout {
            if elapsed_with_wait > timeout {
                return false;
            }
        }
        match &self.handle {
            Some(predicate) => predicate(failure),
            None => failure.retryable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_coefficient_and_are_capped() {
        let policy = RetryPolicy::new(5, Duration::from_secs(2))
            .with_backoff(2.0)
            .with_max_interval(Duration::from_secs(5));
        let delays: Vec<_> = (1..=4).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 5, 5]);
    }

    #[test]
    fn stops_at_max_attempts_timeout_and_non_retryable() {
        let policy =
            RetryPolicy::new(3, Duration::from_secs(1)).with_retry_timeout(Duration::from_secs(10));
        let retryable = FailureDetails::new("Io", "reset");
        assert!(policy.should_retry(1, &retryable, Duration::from_secs(1)));
        assert!(!policy.should_retry(3, &retryable, Duration::from_secs(1)));
        assert!(!policy.should_retry(1, &retryable, Duration::from_secs(11)));
        assert!(!policy.should_retry(
            1,
            &FailureDetails::non_retryable("Bad", "x"),
            Duration::ZERO
        ));
        let only_io = policy.with_handle(|f| f.kind == "Io");
        assert!(!only_io.should_retry(1, &FailureDetails::new("Other", "x"), Duration::ZERO));
    }
}

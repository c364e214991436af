//! Deadlines and outage reports for every storage request of the engine.
//!
//! The SDK's HTTP client has no deadline of its own: a storage account that accepts the
//! connection and never answers (a frozen emulator, a black-holed network path) holds a call
//! forever. [`DeadlinePolicy`] runs in the SDK's pipeline after its retry policy, so each
//! attempt ends within [`AzureConfig::attempt_deadline`](crate::AzureConfig) and the retry
//! policy's budget bounds the whole call. It also tells [`OutageTracker`] what happened, so
//! an outage is logged once when it starts, summarised while it lasts (at most once a
//! minute) and once more when storage answers again — instead of a warning per call.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::{Context, Policy, PolicyResult, Request};
use tracing::{info, warn};

/// How often a continuing outage is summarised in the log.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What the tracker wants logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutageReport {
    /// The first failed attempt after storage answered.
    Started { service: String, reason: String },
    /// The outage goes on.
    Continuing {
        unreachable_for: Duration,
        failed_attempts: u64,
    },
    /// Storage answered again.
    Ended {
        unreachable_for: Duration,
        failed_attempts: u64,
    },
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    last_report: Instant,
    failed_attempts: u64,
}

/// Whether storage answers, from the outcomes of requests (pure: the caller gives the time).
#[derive(Debug, Default)]
pub(crate) struct OutageTracker {
    outage: Option<Outage>,
}

impl OutageTracker {
    /// A request got no answer (deadline, connection error) or a server error.
    pub fn failed(&mut self, now: Instant, service: &str, reason: &str) -> Option<OutageReport> {
        match &mut self.outage {
            None => {
                self.outage = Some(Outage {
                    since: now,
                    last_report: now,
                    failed_attempts: 1,
                });
                Some(OutageReport::Started {
                    service: service.to_owned(),
                    reason: reason.to_owned(),
                })
            }
            Some(outage) => {
                outage.failed_attempts += 1;
                if now.duration_since(outage.last_report) < SUMMARY_EVERY {
                    return None;
                }
                outage.last_report = now;
                Some(OutageReport::Continuing {
                    unreachable_for: now.duration_since(outage.since),
                    failed_attempts: outage.failed_attempts,
                })
            }
        }
    }

    /// A request got an answer (any status below 500: a 404 or a 409 is an answer).
    pub fn answered(&mut self, now: Instant) -> Option<OutageReport> {
        let outage = self.outage.take()?;
        Some(OutageReport::Ended {
            unreachable_for: now.duration_since(outage.since),
            failed_attempts: outage.failed_attempts,
        })
    }

    /// How long storage has been unreachable, if it is.
    pub fn unreachable_for(&self, now: Instant) -> Option<Duration> {
        self.outage.as_ref().map(|o| now.duration_since(o.since))
    }
}

/// The shared tracker of one backend, which logs what it reports.
#[derive(Debug, Default)]
pub(crate) struct StorageHealth {
    tracker: Mutex<OutageTracker>,
}

impl StorageHealth {
    fn record(&self, outcome: impl FnOnce(&mut OutageTracker) -> Option<OutageReport>) {
        let report = {
            let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
            outcome(&mut tracker)
        };
        match report {
            None => {}
            Some(OutageReport::Started { service, reason }) => warn!(
                service,
                reason, "storage is unreachable; work waits for it and is retried"
            ),
            Some(OutageReport::Continuing {
                unreachable_for,
                failed_attempts,
            }) => warn!(
                unreachable_secs = unreachable_for.as_secs(),
                failed_attempts, "storage is still unreachable"
            ),
            Some(OutageReport::Ended {
                unreachable_for,
                failed_attempts,
            }) => info!(
                unreachable_secs = unreachable_for.as_secs(),
                failed_attempts, "storage answers again"
            ),
        }
    }

    /// How long storage has been unreachable, if it is.
    pub fn unreachable_for(&self) -> Option<Duration> {
        let tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        tracker.unreachable_for(Instant::now())
    }
}

/// The per-attempt policy: a deadline on each attempt, outcomes to the tracker.
#[derive(Debug)]
pub(crate) struct DeadlinePolicy {
    pub attempt_deadline: Duration,
    pub health: Arc<StorageHealth>,
}

#[async_trait]
impl Policy for DeadlinePolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let service = request.url().host_str().unwrap_or("storage").to_owned()
            + &request
                .url()
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
        let attempt = tokio::time::timeout(
            self.attempt_deadline,
            next[0].send(ctx, request, next.get(1..).unwrap_or_default()),
        );
        match attempt.await {
            Err(_) => {
                let reason = format!("no answer within {} s", self.attempt_deadline.as_secs_f64());
                self.health
                    .record(|t| t.failed(Instant::now(), &service, &reason));
                // An I/O error, so the SDK's retry policy tries again within its budget.
                Err(azure_core::Error::message(
                    ErrorKind::Io,
                    format!("storage ({service}): {reason}"),
                ))
            }
            Ok(Err(error)) => {
                if error.kind() == &ErrorKind::Io {
                    self.health
                        .record(|t| t.failed(Instant::now(), &service, "connection failed"));
                }
                Err(error)
            }
            Ok(Ok(response)) => {
                let status = u16::from(response.status());
                if status >= 500 {
                    let reason = format!("HTTP {status}");
                    self.health
                        .record(|t| t.failed(Instant::now(), &service, &reason));
                } else {
                    self.health.record(|t| t.answered(Instant::now()));
                }
                Ok(response)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_then_summarised_then_ended() {
        let mut tracker = OutageTracker::default();
        let t0 = Instant::now();
        assert_eq!(tracker.answered(t0), None, "no outage, nothing to say");
        assert!(matches!(
            tracker.failed(t0, "127.0.0.1:10001", "no answer within 20 s"),
            Some(OutageReport::Started { .. })
        ));
        for s in 1..60 {
            assert_eq!(
                tracker.failed(t0 + Duration::from_secs(s), "q", "x"),
                None,
                "failures inside a minute are counted, not logged"
            );
        }
        assert_eq!(
            tracker.failed(t0 + Duration::from_secs(61), "q", "x"),
            Some(OutageReport::Continuing {
                unreachable_for: Duration::from_secs(61),
                failed_attempts: 61,
            })
        );
        assert_eq!(
            tracker.unreachable_for(t0 + Duration::from_secs(70)),
            Some(Duration::from_secs(70))
        );
        assert_eq!(
            tracker.answered(t0 + Duration::from_secs(75)),
            Some(OutageReport::Ended {
                unreachable_for: Duration::from_secs(75),
                failed_attempts: 61,
            })
        );
        assert_eq!(tracker.unreachable_for(t0 + Duration::from_secs(76)), None);
        assert!(
            matches!(
                tracker.failed(t0 + Duration::from_secs(80), "q", "x"),
                Some(OutageReport::Started { .. })
            ),
            "a new outage is reported again"
        );
    }
}

//! Retention: finished instances are purged (state, history, payloads, run logs) once they
//! have been finished for longer than their status's retention, as Durable Task Scheduler
//! does. A pass pages through the finished instances a page at a time and pauses between
//! pages, so that a task hub with a long backlog of old instances does not starve the
//! workers of storage. Purging is idempotent: several workers running passes at once only
//! repeat reads (an instance purged by another counts once).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::{Backend, Error, InstanceQuery};
use crate::status::RuntimeStatus;

/// How long finished instances are kept, by status (`None`: kept until purged by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Completed instances.
    pub completed: Option<Duration>,
    /// Failed instances.
    pub failed: Option<Duration>,
    /// Terminated instances.
    pub terminated: Option<Duration>,
}

/// Why a retention setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention '{setting}': {reason} (e.g. completed=7d,failed=30d,terminated=30d)")]
pub struct PolicyError {
    setting: String,
    reason: String,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(seconds)?))
}

impl RetentionPolicy {
    /// Parses `completed=7d,failed=30d,terminated=30d` (units s, m, h, d; `all=` sets the
    /// three; a status left out is kept).
    pub fn parse(setting: &str) -> Result<Self, PolicyError> {
        let refuse = |reason: String| PolicyError {
            setting: setting.to_owned(),
            reason,
        };
        let mut policy = Self::default();
        for part in setting.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (status, duration) = part
                .split_once('=')
                .ok_or_else(|| refuse(format!("'{part}' is not status=duration")))?;
            let duration = parse_duration(duration)
                .ok_or_else(|| refuse(format!("'{duration}' is not a duration like 7d or 12h")))?;
            match status.trim().to_ascii_lowercase().as_str() {
                "completed" => policy.completed = Some(duration),
                "failed" => policy.failed = Some(duration),
                "terminated" => policy.terminated = Some(duration),
                "all" => {
                    policy.completed = Some(duration);
                    policy.failed = Some(duration);
                    policy.terminated = Some(duration);
                }
                other => {
                    return Err(refuse(format!(
                        "'{other}' is not completed, failed, terminated or all"
                    )))
                }
            }
        }
        if policy == Self::default() {
            return Err(refuse("no status has a retention".to_owned()));
        }
        Ok(policy)
    }

    /// The retention of a status, if it has one.
    pub fn of(&self, status: RuntimeStatus) -> Option<Duration> {
        match status {
            RuntimeStatus::Completed => self.completed,
            RuntimeStatus::Failed => self.failed,
            RuntimeStatus::Terminated => self.terminated,
            _ => None,
        }
    }

    /// Whether an instance of `status` last updated at `updated_at` is past its retention
    /// at `now`.
    pub fn expired(
        &self,
        status: RuntimeStatus,
        updated_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        self.of(status).is_some_and(|keep| {
            chrono::Duration::from_std(keep).is_ok_and(|keep| updated_at + keep <= now)
        })
    }
}

impl fmt::Display for RetentionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("completed", self.completed),
            ("failed", self.failed),
            ("terminated", self.terminated),
        ]
        .into_iter()
        .filter_map(|(name, d)| d.map(|d| format!("{name}={}s", d.as_secs())))
        .collect();
        f.write_str(&parts.join(","))
    }
}

/// How a pass goes easy on storage.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Instances read per page.
    pub page_size: usize,
    /// Pause after each page.
    pub pause: Duration,
    /// Stop after the page during which this much time has passed (`None`: go to the end).
    /// Under the Functions host a pass must end within the invocation's `functionTimeout`;
    /// the next one carries on (what was purged is gone, so it starts further on).
    pub budget: Option<Duration>,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            page_size: 100,
            pause: Duration::from_millis(200),
            budget: None,
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Finished instances read.
    pub scanned: usize,
    /// Instances purged by this pass.
    pub purged: usize,
    /// The pass stopped at its time budget before the last page.
    pub cut_short: bool,
}

/// Purges the finished instances past their retention at `now`.
pub async fn purge_expired(
    backend: &dyn Backend,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    pace: Pace,
) -> Result<RetentionReport, Error> {
    let statuses: Vec<RuntimeStatus> = [
        RuntimeStatus::Completed,
        RuntimeStatus::Failed,
        RuntimeStatus::Terminated,
    ]
    .into_iter()
    .filter(|s| policy.of(*s).is_some())
    .collect();
    let mut query = InstanceQuery {
        statuses,
        page_size: pace.page_size,
        ..InstanceQuery::default()
    };
    let mut report = RetentionReport::default();
    let started = std::time::Instant::now();
    loop {
        let page = backend.list_instances(&query).await?;
        report.scanned += page.instances.len();
        for state in &page.instances {
            if policy.expired(state.status, state.updated_at, now)
                && backend.delete_instance(&state.instance_id).await?
            {
                report.purged += 1;
            }
        }
        match page.continuation {
            Some(_) if pace.budget.is_some_and(|b| started.elapsed() >= b) => {
                report.cut_short = true;
                return Ok(report);
            }
            Some(token) => query.continuation = Some(token),
            None => return Ok(report),
        }
        tokio::time::sleep(pace.pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_units_and_refuse_with_the_reason() {
        let policy = RetentionPolicy::parse("completed=7d, failed=12h,terminated=90m").unwrap();
        assert_eq!(policy.completed, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(policy.failed, Some(Duration::from_secs(12 * 3_600)));
        assert_eq!(policy.terminated, Some(Duration::from_secs(90 * 60)));
        assert_eq!(
            policy.to_string(),
            "completed=604800s,failed=43200s,terminated=5400s"
        );
        let all = RetentionPolicy::parse("all=30s").unwrap();
        assert_eq!(all.failed, Some(Duration::from_secs(30)));
        assert_eq!(
            RetentionPolicy::parse("running=1d")
                .unwrap_err()
                .to_string(),
            "retention 'running=1d': 'running' is not completed, failed, terminated or all \
             (e.g. completed=7d,failed=30d,terminated=30d)"
        );
        assert!(RetentionPolicy::parse("completed=7 days").is_err());
        assert!(RetentionPolicy::parse("completed").is_err());
        assert!(RetentionPolicy::parse("").is_err());
    }

    #[test]
    fn only_finished_instances_past_their_status_retention_expire() {
        let policy = RetentionPolicy::parse("completed=1d").unwrap();
        let updated = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let day = chrono::Duration::days(1);
        assert!(!policy.expired(
            RuntimeStatus::Completed,
            updated,
            updated + day - chrono::Duration::seconds(1)
        ));
        assert!(policy.expired(RuntimeStatus::Completed, updated, updated + day));
        assert!(!policy.expired(RuntimeStatus::Failed, updated, updated + day * 100));
        assert!(!policy.expired(RuntimeStatus::Running, updated, updated + day * 100));
    }
}

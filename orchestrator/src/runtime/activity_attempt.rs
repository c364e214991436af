//! One attempt of an activity, the same whether its work item came from the work-item
//! queue or runs inline: looked up in the registry, bounded by the activity timeout, run in
//! its `activity` span with its log lines captured for the run's logs, and a panic turned
//! into a (retryable) failure of the activity rather than of the worker.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::Utc;
use futures_util::FutureExt as _;
use tracing::{info_span, Instrument};

use super::Shared;
use crate::backend::ActivityWorkItem;
use crate::history::{panic_message, EventKind, FailureDetails, FailureKind};
use crate::registry::ActivityContext;
use crate::run_logs::{AttemptCapture, AttemptKey};
use crate::telemetry::metrics;
use crate::telemetry::spans::ActivitySpan;

/// What an attempt ends with.
pub(crate) type ActivityResult = Result<serde_json::Value, FailureDetails>;

/// The attempt of `item` as its delivery number `delivery`; `inline` only labels the span.
/// The future owns everything it needs (it may be spawned).
pub(crate) fn attempt(
    shared: &Arc<Shared>,
    item: &ActivityWorkItem,
    delivery: u32,
    inline: bool,
) -> impl Future<Output = ActivityResult> + Send + 'static {
    let activity = shared.registry.find_activity(&item.name, &item.version);
    let capture = AttemptCapture::begin();
    let otel = ActivitySpan::start(item, delivery, inline);
    let (trace_id, span_id) = otel.ids();
    // The log lines of the attempt carry its trace and span ids (correlation in any sink).
    let span = info_span!("activity", instance_id = %item.instance_id, activity = %item.name,
        activity_id = item.scheduled_id, delivery, inline, trace_id, span_id,
        trace_parent = item.trace_parent.as_deref().unwrap_or(""), run_log = capture.token());
    let key = AttemptKey {
        instance_id: item.instance_id.clone(),
        execution_id: item.execution_id.clone(),
        activity: item.name.clone(),
        activity_id: item.scheduled_id,
        delivery,
        started_at: Utc::now(),
    };
    let mut context = activity_context(item, delivery);
    if let Some(own) = otel.traceparent() {
        context.trace_parent = Some(own);
    }
    let input = item.input.clone();
    let limit = shared.options.activity_timeout;
    let shared = shared.clone();
    async move {
        let began = std::time::Instant::now();
        let name = key.activity.clone();
        let result = match activity {
            None => Err(FailureDetails::of(
                FailureKind::UnknownActivity,
                format!("no activity named '{name}' is registered"),
            )),
            Some(activity) => {
                let work = bounded(limit, &name, activity(context, input));
                AssertUnwindSafe(work)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(FailureDetails::of(
                            FailureKind::ActivityPanicked,
                            format!("activity '{name}' panicked: {}", panic_message(&panic)),
                        ))
                    })
            }
        };
        let (lines, dropped) = capture.finish();
        shared.run_logs.write(key.into_chunks(lines, dropped));
        let outcome = match &result {
            Ok(_) => "completed",
            Err(failure) => failure.kind.as_str(),
        };
        metrics::activity_attempted(&name, outcome, began.elapsed());
        otel.end(&result);
        result
    }
    .instrument(span)
}

/// An activity's run bounded by `limit`: past it, the activity fails with
/// `ActivityTimedOut` (retryable).
fn bounded(
    limit: Option<std::time::Duration>,
    name: &str,
    work: impl Future<Output = ActivityResult>,
) -> impl Future<Output = ActivityResult> {
    let name = name.to_owned();
    async move {
        let Some(limit) = limit else {
            return work.await;
        };
        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(FailureDetails::of(
                FailureKind::ActivityTimedOut,
                format!("activity '{name}' ran longer than {limit:?}"),
            ))
        })
    }
}

/// What an activity knows about a work item.
fn activity_context(item: &ActivityWorkItem, delivery_count: u32) -> ActivityContext {
    ActivityContext {
        instance_id: item.instance_id.clone(),
        name: item.name.clone(),
        scheduled_id: item.scheduled_id,
        delivery_count,
        trace_parent: item.trace_parent.clone(),
    }
}

/// The event an activity's result becomes in its instance's history.
pub(crate) fn result_kind(scheduled_id: u64, result: ActivityResult) -> EventKind {
    match result {
        Ok(result) => EventKind::ActivityCompleted {
            scheduled_id,
            result,
        },
        Err(failure) => EventKind::ActivityFailed {
            scheduled_id,
            failure,
        },
    }
}

//! The spans of the engine, named and attributed as the Durable Task SDKs do
//! (`create_orchestration:{name}`, `orchestration:{name}`, `activity:{name}`,
//! `orchestration:{name}:timer`; `durabletask.*` attributes). Nothing is emitted while
//! replaying: an execution's span and its timers' spans are emitted once, after the commit
//! that recorded them; an activity's span is its attempt, as it runs. With no tracer
//! provider installed every call here is OpenTelemetry's no-op.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use opentelemetry::trace::{
    Span, SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider,
};
use opentelemetry::{global, Context, KeyValue};

use super::trace_context::{self, orchestration_context};
use crate::backend::ActivityWorkItem;
use crate::history::{EventKind, FailureDetails, HistoryEvent};
use crate::status::{InstanceState, RuntimeStatus};

/// The instrumentation scope of every span and metric.
pub const SCOPE: &str = "flowforge";

fn tracer() -> global::BoxedTracer {
    global::tracer_provider().tracer(SCOPE)
}

fn remote(parent: Option<SpanContext>) -> Context {
    match parent {
        Some(parent) => Context::new().with_remote_span_context(parent),
        None => Context::new(),
    }
}

fn at(time: DateTime<Utc>) -> SystemTime {
    SystemTime::from(time)
}

/// Emits `create_orchestration:{name}` for a start, as a child of the caller's
/// `traceparent` (the web app's), and returns the `traceparent` to keep with the instance:
/// this span's, or the caller's when no tracer is installed.
pub fn create_orchestration(
    name: &str,
    version: &str,
    instance_id: &str,
    caller: Option<&str>,
) -> Option<String> {
    let parent = caller.and_then(trace_context::parse);
    let mut span = tracer()
        .span_builder(format!("create_orchestration:{name}"))
        .with_kind(SpanKind::Producer)
        .with_attributes([
            KeyValue::new("durabletask.type", "orchestration"),
            KeyValue::new("durabletask.task.name", name.to_owned()),
            KeyValue::new("durabletask.task.version", version.to_owned()),
            KeyValue::new("durabletask.task.instance_id", instance_id.to_owned()),
        ])
        .start_with_context(&tracer(), &remote(parent));
    let context = span.span_context().clone();
    span.end();
    if context.is_valid() && context.is_sampled() {
        Some(trace_context::format(&context))
    } else {
        caller.map(str::to_owned)
    }
}

/// An execution that a commit ended (completed, failed, terminated or continued as new).
#[derive(Debug, Clone, PartialEq)]
pub struct EndedExecution {
    /// The state as committed.
    pub state: InstanceState,
    /// When the execution started (its `ExecutionStarted` event).
    pub started_at: DateTime<Utc>,
}

/// The execution a commit from `previous` to `next` ended, if it did.
pub fn ended_execution(
    previous: &InstanceState,
    next: &InstanceState,
    history: &[HistoryEvent],
    new_events: &[HistoryEvent],
) -> Option<EndedExecution> {
    let ended =
        |s: &InstanceState| s.status.is_terminal() || s.status == RuntimeStatus::ContinuedAsNew;
    if !ended(next) || (ended(previous) && previous.execution_id == next.execution_id) {
        return None;
    }
    let started_at = new_events
        .iter()
        .chain(history)
        .find(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }))
        .map_or(next.created_at, |e| e.timestamp);
    Some(EndedExecution {
        state: next.clone(),
        started_at,
    })
}

/// A durable timer a commit recorded as fired.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredTimer {
    /// The `TimerCreated` id.
    pub id: u64,
    /// When the orchestration created it.
    pub created_at: DateTime<Utc>,
    /// When it was due.
    pub fire_at: DateTime<Utc>,
    /// When its firing was recorded.
    pub fired_at: DateTime<Utc>,
}

/// The timers among `new_events` that fired, with their creation from the history.
pub fn fired_timers(history: &[HistoryEvent], new_events: &[HistoryEvent]) -> Vec<FiredTimer> {
    new_events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::TimerFired {
                scheduled_id,
                fire_at,
            } => {
                let created_at = history
                    .iter()
                    .chain(new_events)
                    .find(|e| matches!(e.kind, EventKind::TimerCreated { id, .. } if id == *scheduled_id))
                    .map_or(event.timestamp, |e| e.timestamp);
                Some(FiredTimer {
                    id: *scheduled_id,
                    created_at,
                    fire_at: *fire_at,
                    fired_at: event.timestamp,
                })
            }
            _ => None,
        })
        .collect()
}

fn execution_attributes(state: &InstanceState, kind: &'static str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("durabletask.type", kind),
        KeyValue::new("durabletask.task.name", state.name.clone()),
        KeyValue::new("durabletask.task.version", state.version.clone()),
        KeyValue::new("durabletask.task.instance_id", state.instance_id.clone()),
        KeyValue::new("durabletask.task.execution_id", state.execution_id.clone()),
    ]
}

/// The start `traceparent` of an instance as a remote parent.
fn start_parent(state: &InstanceState) -> Option<SpanContext> {
    state.trace_parent.as_deref().and_then(trace_context::parse)
}

/// Emits `orchestration:{name}` for an ended execution: from its start to now, with the
/// span id every worker derives for it, under the start's span.
pub fn orchestration_ended(ended: &EndedExecution, now: DateTime<Utc>) {
    let state = &ended.state;
    let own = orchestration_context(
        state.trace_parent.as_deref(),
        &state.instance_id,
        &state.execution_id,
    );
    let mut attributes = execution_attributes(state, "orchestration");
    attributes.push(KeyValue::new(
        "durabletask.task.status",
        state.status.as_str(),
    ));
    let tracer = tracer();
    let mut builder = tracer
        .span_builder(format!("orchestration:{}", state.name))
        .with_kind(SpanKind::Server)
        .with_span_id(own.span_id())
        .with_trace_id(own.trace_id())
        .with_start_time(at(ended.started_at))
        .with_attributes(attributes);
    if let Some(parent) = &state.parent {
        builder = builder.with_attributes([KeyValue::new(
            "durabletask.parent_instance_id",
            parent.instance_id.clone(),
        )]);
    }
    let mut span = builder.start_with_context(&tracer, &remote(start_parent(state)));
    if let (RuntimeStatus::Failed, Some(failure)) = (state.status, &state.failure) {
        span.set_status(Status::error(failure.to_string()));
    }
    span.end_with_timestamp(at(now));
}

/// Emits `orchestration:{name}:timer` for each fired timer, under the execution's span.
pub fn timers_fired(state: &InstanceState, timers: &[FiredTimer]) {
    if timers.is_empty() {
        return;
    }
    let parent = orchestration_context(
        state.trace_parent.as_deref(),
        &state.instance_id,
        &state.execution_id,
    );
    let tracer = tracer();
    for timer in timers {
        let mut attributes = execution_attributes(state, "timer");
        attributes.push(KeyValue::new("durabletask.task.task_id", timer.id as i64));
        attributes.push(KeyValue::new(
            "durabletask.fire_at",
            timer.fire_at.to_rfc3339(),
        ));
        let mut span = tracer
            .span_builder(format!("orchestration:{}:timer", state.name))
            .with_kind(SpanKind::Internal)
            .with_start_time(at(timer.created_at))
            .with_attributes(attributes)
            .start_with_context(&tracer, &remote(Some(parent.clone())));
        span.end_with_timestamp(at(timer.fired_at));
    }
}

/// The span of one activity attempt.
pub struct ActivitySpan {
    span: global::BoxedSpan,
}

impl ActivitySpan {
    /// Starts `activity:{name}` for an attempt, under the execution's span (the work
    /// item's `traceparent`).
    pub fn start(item: &ActivityWorkItem, delivery: u32, inline: bool) -> Self {
        let parent = item.trace_parent.as_deref().and_then(trace_context::parse);
        let tracer = tracer();
        let span = tracer
            .span_builder(format!("activity:{}", item.name))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("durabletask.type", "activity"),
                KeyValue::new("durabletask.task.name", item.name.clone()),
                KeyValue::new("durabletask.task.version", item.version.clone()),
                KeyValue::new("durabletask.task.instance_id", item.instance_id.clone()),
                KeyValue::new("durabletask.task.execution_id", item.execution_id.clone()),
                KeyValue::new("durabletask.task.task_id", item.scheduled_id as i64),
                KeyValue::new("flowforge.delivery", i64::from(delivery)),
                KeyValue::new("flowforge.inline", inline),
            ])
            .start_with_context(&tracer, &remote(parent));
        Self { span }
    }

    /// The span's trace and span ids (hex), for log correlation; empty when not recording.
    pub fn ids(&self) -> (String, String) {
        let context = self.span.span_context();
        if context.is_valid() {
            (
                context.trace_id().to_string(),
                context.span_id().to_string(),
            )
        } else {
            (String::new(), String::new())
        }
    }

    /// The span's `traceparent`, for the activity's own outgoing calls; `None` when not
    /// recording.
    pub fn traceparent(&self) -> Option<String> {
        let context = self.span.span_context();
        (context.is_valid() && self.span.is_recording()).then(|| trace_context::format(context))
    }

    /// Ends the span with the attempt's result.
    pub fn end(mut self, result: &Result<serde_json::Value, FailureDetails>) {
        if let Err(failure) = result {
            self.span.set_status(Status::error(failure.to_string()));
            self.span.set_attribute(KeyValue::new(
                "durabletask.error_kind",
                failure.kind.to_string(),
            ));
        }
        self.span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::StartInfo;

    fn event(seq: u64, secs: i64, kind: EventKind) -> HistoryEvent {
        HistoryEvent {
            seq,
            timestamp: DateTime::from_timestamp(secs, 0).unwrap(),
            kind,
        }
    }

    fn state(status: RuntimeStatus, execution: &str) -> InstanceState {
        let mut state = InstanceState::started(
            "i",
            &StartInfo::new("orc", execution, serde_json::Value::Null).into_event(),
            DateTime::from_timestamp(0, 0).unwrap(),
        );
        state.status = status;
        state
    }

    #[test]
    fn an_execution_ends_once_and_starts_at_its_start_event() {
        let started = event(
            0,
            100,
            StartInfo::new("orc", "e1", serde_json::Value::Null).into_event(),
        );
        let running = state(RuntimeStatus::Running, "e1");
        let done = state(RuntimeStatus::Completed, "e1");
        let ended = ended_execution(&running, &done, std::slice::from_ref(&started), &[]).unwrap();
        assert_eq!(ended.started_at, started.timestamp);
        assert!(ended_execution(&done, &done, std::slice::from_ref(&started), &[]).is_none());
        assert!(ended_execution(&running, &running, std::slice::from_ref(&started), &[]).is_none());
        let continued = state(RuntimeStatus::ContinuedAsNew, "e1");
        assert!(ended_execution(&running, &continued, &[started], &[]).is_some());
        // The next execution's end after a continue-as-new is its own.
        let next_done = state(RuntimeStatus::Completed, "e2");
        assert!(ended_execution(&continued, &next_done, &[], &[]).is_some());
    }

    #[test]
    fn fired_timers_carry_their_creation_time() {
        let fire_at = DateTime::from_timestamp(160, 0).unwrap();
        let history = vec![event(3, 100, EventKind::TimerCreated { id: 2, fire_at })];
        let new = vec![event(
            4,
            161,
            EventKind::TimerFired {
                scheduled_id: 2,
                fire_at,
            },
        )];
        let timers = fired_timers(&history, &new);
        assert_eq!(
            timers,
            [FiredTimer {
                id: 2,
                created_at: history[0].timestamp,
                fire_at,
                fired_at: new[0].timestamp
            }]
        );
        assert!(fired_timers(&new, &history).is_empty());
    }
}

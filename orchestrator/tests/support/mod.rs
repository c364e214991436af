//! Test support: a fixed clock, a driver that plays the world around one instance (it
//! answers actions with completions), and the full-replay check.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use flowforge_orchestrator::history::{EventKind, HistoryEvent, StartInfo};
use flowforge_orchestrator::registry::Registry;
use flowforge_orchestrator::replay::{
    run_episode, Action, Episode, ExecutionOutcome, NewEvent, ReplayInput,
};
use serde_json::Value;

pub const INSTANCE: &str = "test-instance";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

pub fn started(name: &str, input: Value) -> NewEvent {
    NewEvent {
        timestamp: t0(),
        kind: StartInfo::new(name, "exec-1", input).into_event(),
    }
}

pub fn inbound(secs: i64, kind: EventKind) -> NewEvent {
    NewEvent {
        timestamp: at(secs),
        kind,
    }
}

pub fn raised(name: &str, input: Value, id: &str) -> EventKind {
    EventKind::EventRaised {
        name: name.into(),
        input,
        event_id: id.into(),
    }
}

/// One episode at `now` seconds.
pub fn episode(
    registry: &Registry,
    history: &[HistoryEvent],
    new: Vec<NewEvent>,
    now: i64,
) -> Episode {
    run_episode(
        registry,
        ReplayInput {
            instance_id: INSTANCE,
            history,
            new_events: new,
            now: at(now),
            max_history_events: 10_000,
        },
    )
}

/// How the driver delivers the world's answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delivery {
    /// One inbound event per episode (the slowest world).
    Incremental,
    /// Everything answerable at once in one episode.
    Batched,
}

/// The world's answer to an action (`None`: no answer, e.g. fire-and-forget).
pub type Responder<'a> = &'a dyn Fn(&Action) -> Option<EventKind>;

/// Result of a drive: final history and outcome.
pub struct Driven {
    pub history: Vec<HistoryEvent>,
    pub outcome: ExecutionOutcome,
    pub actions: Vec<Action>,
}

/// Plays one instance to its end (or until nothing is left to deliver). `extra` are
/// inbound events delivered after the first episode, in order. Time advances 1 s per episode.
pub fn drive(
    registry: &Registry,
    start: NewEvent,
    responder: Responder<'_>,
    extra: Vec<EventKind>,
    delivery: Delivery,
) -> Driven {
    let mut history = Vec::new();
    let mut queue: std::collections::VecDeque<NewEvent> = vec![start].into();
    let mut extra: std::collections::VecDeque<EventKind> = extra.into();
    let mut now = 0;
    let mut all_actions = Vec::new();
    loop {
        let batch: Vec<NewEvent> = match delivery {
            Delivery::Incremental => queue.pop_front().into_iter().collect(),
            Delivery::Batched => queue.drain(..).collect(),
        };
        let batch = if batch.is_empty() {
            match extra.pop_front() {
                Some(kind) => vec![NewEvent {
                    timestamp: at(now),
                    kind,
                }],
                None => break,
            }
        } else {
            batch
        };
        let ep = episode(registry, &history, batch, now);
        history.extend(ep.new_events.clone());
        now += 1;
        for action in &ep.actions {
            all_actions.push(action.clone());
            if let Some(kind) = responder(action) {
                queue.push_back(NewEvent {
                    timestamp: at(now),
                    kind,
                });
            }
        }
        if ep.outcome.is_terminal() {
            return Driven {
                history,
                outcome: ep.outcome,
                actions: all_actions,
            };
        }
    }
    let outcome = episode(registry, &history, vec![], now).outcome;
    Driven {
        history,
        outcome,
        actions: all_actions,
    }
}

/// Full replay: re-running the whole history before the last episode, then that episode's
/// inbound events, must reproduce the last episode exactly.
pub fn assert_full_replay_matches(registry: &Registry, history: &[HistoryEvent]) {
    let last = history
        .iter()
        .rposition(|e| matches!(e.kind, EventKind::OrchestratorStarted))
        .expect("an episode");
    let (old, tail) = history.split_at(last);
    let now = tail[0].timestamp;
    let inbound: Vec<NewEvent> = tail
        .iter()
        .filter(|e| is_inbound(&e.kind))
        .map(|e| NewEvent {
            timestamp: e.timestamp,
            kind: e.kind.clone(),
        })
        .collect();
    let ep = run_episode(
        registry,
        ReplayInput {
            instance_id: INSTANCE,
            history: old,
            new_events: inbound,
            now,
            max_history_events: 10_000,
        },
    );
    assert_eq!(
        ep.new_events, tail,
        "full replay must reproduce the last episode"
    );
}

pub fn is_inbound(kind: &EventKind) -> bool {
    kind.completes_id().is_some()
        || matches!(
            kind,
            EventKind::ExecutionStarted { .. }
                | EventKind::EventRaised { .. }
                | EventKind::ExecutionTerminated { .. }
                | EventKind::ExecutionSuspended { .. }
                | EventKind::ExecutionResumed { .. }
        )
}

/// Answers every activity by calling `f(name, input)`, every timer by firing it.
pub fn world(
    f: impl Fn(&str, &Value) -> Result<Value, String>,
) -> impl Fn(&Action) -> Option<EventKind> {
    move |action| match action {
        Action::ScheduleActivity {
            id, name, input, ..
        } => Some(match f(name, input) {
            Ok(result) => EventKind::ActivityCompleted {
                scheduled_id: *id,
                result,
            },
            Err(message) => EventKind::ActivityFailed {
                scheduled_id: *id,
                failure: flowforge_orchestrator::history::FailureDetails::new(
                    "TestFailure",
                    message,
                ),
            },
        }),
        Action::CreateTimer { id, fire_at } => Some(EventKind::TimerFired {
            scheduled_id: *id,
            fire_at: *fire_at,
        }),
        _ => None,
    }
}

pub fn kinds(history: &[HistoryEvent]) -> Vec<&'static str> {
    history.iter().map(|e| e.kind.type_name()).collect()
}

pub fn completed(outcome: &ExecutionOutcome) -> Value {
    match outcome {
        ExecutionOutcome::Completed(v) => v.clone(),
        other => panic!("expected Completed, got {other:?}"),
    }
}

pub fn failed(outcome: &ExecutionOutcome) -> flowforge_orchestrator::history::FailureDetails {
    match outcome {
        ExecutionOutcome::Failed(f) => f.clone(),
        other => panic!("expected Failed, got {other:?}"),
    }
}

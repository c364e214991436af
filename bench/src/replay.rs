//! Replay of long histories, pure (no storage): the history of a fan-out whose activities
//! have all completed (scheduled in one episode, completed in the next), replayed from the
//! start as a worker does when it loads an instance it has not cached — at 1,000, 10,000
//! and 50,000 events, medians of `runs`. Shows whether replay stays linear in history length.

use std::time::Instant;

use chrono::Utc;
use flowforge_orchestrator::history::{EventKind, HistoryEvent, NewEvent, StartInfo};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::replay::{run_episode, Action, Episode, ExecutionOutcome, ReplayInput};
use flowforge_orchestrator::testing::fan_out;
use serde_json::{json, Value};

const INSTANCE: &str = "replay-bench";

fn replay(registry: &Registry, history: &[HistoryEvent], new_events: Vec<NewEvent>) -> Episode {
    run_episode(
        registry,
        ReplayInput {
            instance_id: INSTANCE,
            history,
            new_events,
            now: Utc::now(),
            max_history_events: usize::MAX,
        },
    )
}

/// A fan-out's history of about `events` events: the start and N activities scheduled in
/// one episode, all but the last completed in the next — so the instance is still running
/// and a replay must run the orchestration over every event (a finished one is not
/// replayed at all).
fn history_of(registry: &Registry, events: usize) -> Vec<HistoryEvent> {
    let activities = (events.saturating_sub(3) / 2).max(1) as u64;
    let start = NewEvent {
        timestamp: Utc::now(),
        kind: StartInfo::new("fan", "exec-1", json!(activities)).into_event(),
    };
    let first = replay(registry, &[], vec![start]);
    let scheduled = first.actions.len();
    let completions = first
        .actions
        .iter()
        .take(scheduled.saturating_sub(1))
        .filter_map(|action| match action {
            Action::ScheduleActivity { id, .. } => Some(NewEvent {
                timestamp: Utc::now(),
                kind: EventKind::ActivityCompleted {
                    scheduled_id: *id,
                    result: json!(1),
                },
            }),
            _ => None,
        })
        .collect();
    let mut history = first.new_events;
    let second = replay(registry, &history, completions);
    history.extend(second.new_events);
    history
}

/// One row per history length: the median time to replay the whole history.
pub fn replay_curve(runs: usize) -> Vec<Value> {
    let registry = fan_out(Registry::new(), "fan", "square");
    let mut rows = Vec::new();
    for events in [1_000usize, 10_000, 50_000] {
        let history = history_of(&registry, events);
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            let episode = replay(&registry, &history, Vec::new());
            times.push(started.elapsed().as_secs_f64());
            assert!(
                episode.new_events.is_empty(),
                "a replay decides nothing new"
            );
            assert_eq!(
                episode.outcome,
                ExecutionOutcome::Running,
                "replayed, not finished"
            );
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        rows.push(json!({
            "backend": "pure",
            "scenario": format!("replay of a {}-event history", history.len()),
            "wall_s": median,
            "per_second": history.len() as f64 / median,
            "notes": format!("{:.1} µs per event, median of {}", median * 1e6 / history.len() as f64, times.len()),
            "events": history.len(),
        }));
    }
    rows
}

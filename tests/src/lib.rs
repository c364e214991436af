//! Shared pieces of the end-to-end tests: the test orchestrations (used in process and by
//! the `test-worker` binary) and history checks.

use std::collections::HashSet;
use std::time::Duration;

use flowforge_orchestrator::history::{EventKind, HistoryEvent};
use flowforge_orchestrator::prelude::*;
use serde_json::{json, Value};

/// The input of the `waves` orchestration: `waves` rounds of `width` parallel activities,
/// each sleeping at least [`WAVE_MIN_MS`]; its output is [`fan_sum`]`(waves × width)`.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Waves {
    /// How many waves run one after another.
    pub waves: u64,
    /// How many activities each wave runs in parallel.
    pub width: u64,
}

/// The shortest sleep of a `slow_square` activity, so of one wave.
pub const WAVE_MIN_MS: u64 = 100;

/// The orchestrations and activities of the end-to-end tests.
pub fn registry() -> Registry {
    Registry::new()
        .orchestration("fan", |ctx: OrchestrationContext, n: u64| async move {
            let calls = (0..n)
                .map(|i| ctx.call_activity::<u64>("square", i))
                .collect();
            let squares: Vec<u64> = ctx
                .join_all(calls)
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            Ok(squares.iter().sum::<u64>())
        })
        .orchestration(
            "waves",
            |ctx: OrchestrationContext, shape: Waves| async move {
                // Waves one after another, so the whole run takes at least
                // `waves × WAVE_MIN_MS` whatever the engine's speed.
                let mut sum = 0;
                for wave in 0..shape.waves {
                    let calls = (0..shape.width)
                        .map(|j| ctx.call_activity::<u64>("slow_square", wave * shape.width + j))
                        .collect();
                    for square in ctx.join_all(calls).await {
                        sum += square?;
                    }
                }
                Ok(sum)
            },
        )
        .orchestration(
            "big",
            |ctx: OrchestrationContext, text: String| async move {
                let echoed: String = ctx.call_activity("reverse", &text).await?;
                Ok(echoed)
            },
        )
        .orchestration(
            "sleeper",
            |ctx: OrchestrationContext, secs: u64| async move {
                let before = ctx.utc_now();
                ctx.sleep(Duration::from_secs(secs)).await;
                Ok(json!({"before": before, "after": ctx.utc_now()}))
            },
        )
        .orchestration(
            "collect",
            |ctx: OrchestrationContext, n: usize| async move {
                let mut values = Vec::new();
                for _ in 0..n {
                    let v: Value = ctx.wait_for_event("item").await?;
                    values.push(v);
                }
                Ok(values)
            },
        )
        .orchestration("hangs", |ctx: OrchestrationContext, _: Value| async move {
            let v: Value = ctx.call_activity("hang", ()).await?;
            Ok(v)
        })
        .activity("square", |_ctx, i: u64| async move {
            // A little work so that a kill lands while activities are in flight.
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(i * i)
        })
        .activity("slow_square", |_ctx, i: u64| async move {
            tokio::time::sleep(Duration::from_millis(WAVE_MIN_MS + (i * 37) % 50)).await;
            Ok(i * i)
        })
        .activity("reverse", |_ctx, text: String| async move {
            Ok(text.chars().rev().collect::<String>())
        })
        .activity("hang", |_ctx, _: Value| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(json!("never"))
        })
}

/// The sum `fan` computes for `n`.
pub fn fan_sum(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

/// The invariants of a finished history: unique, gap-free sequence numbers; every action id
/// scheduled once; every completion once, for a scheduled action; the status agreeing with
/// the last event. Returns the number of activity completions.
pub fn check_history(history: &[HistoryEvent], status: RuntimeStatus) -> Result<usize, String> {
    for (i, event) in history.iter().enumerate() {
        if event.seq != i as u64 {
            return Err(format!("event {i} has seq {}", event.seq));
        }
    }
    let mut scheduled = HashSet::new();
    let mut completed = HashSet::new();
    for event in history {
        if let Some(id) = event.kind.scheduling_id() {
            if !scheduled.insert(id) {
                return Err(format!("action {id} scheduled twice"));
            }
        }
        if let Some(id) = event.kind.completes_id() {
            if !scheduled.contains(&id) {
                return Err(format!("completion of unscheduled action {id}"));
            }
            if !completed.insert(id) {
                return Err(format!("action {id} completed twice"));
            }
        }
    }
    let last = history.last().map(|e| e.kind.type_name());
    let expected = match status {
        RuntimeStatus::Completed => Some("ExecutionCompleted"),
        RuntimeStatus::Failed => Some("ExecutionFailed"),
        RuntimeStatus::Terminated => Some("ExecutionTerminated"),
        _ => None,
    };
    if expected.is_some() && last != expected {
        return Err(format!("status {status} but the last event is {last:?}"));
    }
    Ok(history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActivityCompleted { .. }))
        .count())
}

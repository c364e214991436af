//! Shared pieces of the end-to-end tests: the test orchestrations (used in process and by
//! the `test-worker` binary) and history checks.

pub mod processes;

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

/// The input of the `chaos` orchestration, one generation of a run of several (linked by
/// continue-as-new).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Chaos {
    /// Picks the run's shape and values.
    pub seed: u64,
    /// Which generation this is (0 first).
    pub generation: u32,
    /// What the earlier generations computed.
    pub acc: u64,
}

/// Generations of a `chaos` run.
pub const CHAOS_GENERATIONS: u32 = 3;

/// The fan-out width of a `chaos` run.
pub fn chaos_width(seed: u64) -> u64 {
    2 + seed % 6
}

/// The value of the `poke` event the chaos test raises for a run.
pub fn chaos_poke(seed: u64) -> u64 {
    seed * 1000 + 7
}

/// The output a `chaos` run must end with.
pub fn chaos_expected(seed: u64) -> u64 {
    let width = chaos_width(seed);
    let squares: u64 = (seed..seed + width).map(|i| i * i).sum();
    u64::from(CHAOS_GENERATIONS) * (squares + fan_sum(width)) + chaos_poke(seed)
}

/// The orchestrations and activities of the end-to-end tests.
pub fn registry() -> Registry {
    // Every "waves" run that completes starts "waves_report" with its sum (the crash test
    // checks each starts exactly once, whatever the kills).
    let report: flowforge_orchestrator::chain::Chain = serde_json::from_value(json!({
        "name": "report", "after": "waves", "start": "waves_report",
        "input": {"sum": "{{output}}", "of": "{{instanceId}}"}
    }))
    .unwrap_or_else(|e| unreachable!("a valid chain: {e}"));
    flowforge_orchestrator::testing::fan_out(Registry::new(), "fan", "square")
        .chain(report)
        .orchestration(
            "waves_report",
            |_ctx: OrchestrationContext, report: Value| async move { Ok(report["sum"].clone()) },
        )
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
        .orchestration("chain", |ctx: OrchestrationContext, n: u64| async move {
            // One quick activity after another: the steps a group commit takes together.
            let mut sum = 0;
            for i in 0..n {
                sum += ctx.call_activity::<u64>("square", i).await?;
            }
            Ok(sum)
        })
        .orchestration(
            "chaos",
            |ctx: OrchestrationContext, run: Chaos| async move {
                // Each generation: a fan-out, a durable timer, a sub-orchestration; the first
                // also waits for an event that may arrive before the run has started.
                let width = chaos_width(run.seed);
                let calls = (0..width)
                    .map(|j| ctx.call_activity::<u64>("square", run.seed + j))
                    .collect();
                let mut sum = 0;
                for square in ctx.join_all(calls).await {
                    sum += square?;
                }
                ctx.sleep(Duration::from_millis(100 + (run.seed % 4) * 100))
                    .await;
                let child = format!("{}-g{}", ctx.instance_id(), run.generation);
                let sub: u64 = ctx
                    .call_sub_orchestration("fan", Some(&child), width)
                    .await?;
                let poke: u64 = if run.generation == 0 {
                    ctx.wait_for_event("poke").await?
                } else {
                    0
                };
                let acc = run.acc + sum + sub + poke;
                if run.generation + 1 < CHAOS_GENERATIONS {
                    ctx.continue_as_new(Chaos {
                        generation: run.generation + 1,
                        acc,
                        ..run
                    });
                    return Ok(0);
                }
                Ok(acc)
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

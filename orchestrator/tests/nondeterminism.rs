//! Changed orchestration code under recorded history fails the instance with the named
//! nondeterminism error (code FFD-ND01) saying which action mismatched and how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use flowforge_orchestrator::history::EventKind;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::replay::NONDETERMINISM_CODE;
use serde_json::{json, Value};
use support::*;

/// Records the history of the original code `a; b; c` up to the point where `b` completed
/// and `c` is scheduled.
fn original_history() -> Vec<flowforge_orchestrator::history::HistoryEvent> {
    let original = Registry::new().orchestration(
        "pipeline",
        |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("a", ()).await?;
            let _: Value = ctx.call_activity("b", ()).await?;
            let _: Value = ctx.call_activity("c", ()).await?;
            Ok(())
        },
    );
    let ep1 = episode(&original, &[], vec![started("pipeline", json!(null))], 0);
    let mut history = ep1.new_events;
    let ep2 = episode(
        &original,
        &history,
        vec![inbound(
            1,
            EventKind::ActivityCompleted {
                scheduled_id: 0,
                result: json!(1),
            },
        )],
        1,
    );
    history.extend(ep2.new_events);
    let ep3 = episode(
        &original,
        &history,
        vec![inbound(
            2,
            EventKind::ActivityCompleted {
                scheduled_id: 1,
                result: json!(2),
            },
        )],
        2,
    );
    history.extend(ep3.new_events);
    history
}

fn replay_changed(changed: Registry) -> flowforge_orchestrator::history::FailureDetails {
    let history = original_history();
    let ep = episode(
        &changed,
        &history,
        vec![inbound(
            3,
            EventKind::ActivityCompleted {
                scheduled_id: 2,
                result: json!(3),
            },
        )],
        3,
    );
    assert!(ep.actions.is_empty(), "diverged code must not act");
    assert_eq!(
        ep.new_events.last().map(|e| e.kind.type_name()),
        Some("ExecutionFailed")
    );
    let failure = failed(&ep.outcome);
    assert_eq!(failure.kind, "NondeterminismError");
    assert!(
        failure.message.contains(NONDETERMINISM_CODE),
        "{}",
        failure.message
    );
    assert!(!failure.retryable);
    failure
}

/// Original: `a; b; c`. Changed: `a; renamed; c` → action #1 mismatch names both.
#[test]
fn changed_activity_name() {
    let changed = Registry::new().orchestration(
        "pipeline",
        |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("a", ()).await?;
            let _: Value = ctx.call_activity("renamed", ()).await?;
            let _: Value = ctx.call_activity("c", ()).await?;
            Ok(())
        },
    );
    let failure = replay_changed(changed);
    assert!(failure.message.contains("action #1"), "{}", failure.message);
    assert!(
        failure.message.contains("ActivityScheduled 'b'"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("ActivityScheduled 'renamed'"),
        "{}",
        failure.message
    );
}

/// Original: `a; b; c`. Changed: `a; c` (b removed) → action #1 was 'b', code gives 'c'.
#[test]
fn removed_step() {
    let changed = Registry::new().orchestration(
        "pipeline",
        |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("a", ()).await?;
            let _: Value = ctx.call_activity("c", ()).await?;
            Ok(())
        },
    );
    let failure = replay_changed(changed);
    assert!(failure.message.contains("action #1"), "{}", failure.message);
    assert!(
        failure.message.contains("'b'") && failure.message.contains("'c'"),
        "{}",
        failure.message
    );
}

/// Original: `a; b; c`. Changed: `a` only (the tail removed) → history records #1 that the
/// code no longer produces.
#[test]
fn removed_tail() {
    let changed = Registry::new().orchestration(
        "pipeline",
        |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("a", ()).await?;
            Ok(())
        },
    );
    let failure = replay_changed(changed);
    assert!(
        failure.message.contains("no longer produces"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .contains("action #1 as ActivityScheduled 'b'"),
        "{}",
        failure.message
    );
}

/// Original: `a; b; c`. Changed: `b; a; c` (reordered) → action #0 mismatch.
#[test]
fn reordered_steps() {
    let changed = Registry::new().orchestration(
        "pipeline",
        |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("b", ()).await?;
            let _: Value = ctx.call_activity("a", ()).await?;
            let _: Value = ctx.call_activity("c", ()).await?;
            Ok(())
        },
    );
    let failure = replay_changed(changed);
    assert!(failure.message.contains("action #0"), "{}", failure.message);
}

/// Original: `a; b; c`. Changed: a timer where `b` was → kind mismatch is named.
#[test]
fn changed_kind_of_step() {
    let changed = Registry::new().orchestration(
        "pipeline",
        |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("a", ()).await?;
            ctx.sleep(std::time::Duration::from_secs(1)).await;
            Ok(())
        },
    );
    let failure = replay_changed(changed);
    assert!(
        failure.message.contains("TimerCreated"),
        "{}",
        failure.message
    );
}

/// The same code replays cleanly (the control case).
#[test]
fn unchanged_code_replays_cleanly() {
    let same = Registry::new().orchestration(
        "pipeline",
        |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("a", ()).await?;
            let _: Value = ctx.call_activity("b", ()).await?;
            let _: Value = ctx.call_activity("c", ()).await?;
            Ok(())
        },
    );
    let history = original_history();
    let ep = episode(
        &same,
        &history,
        vec![inbound(
            3,
            EventKind::ActivityCompleted {
                scheduled_id: 2,
                result: json!(3),
            },
        )],
        3,
    );
    assert_eq!(completed(&ep.outcome), json!(null));
}

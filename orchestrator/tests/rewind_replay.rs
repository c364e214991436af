//! Rewind in the pure replay core: which failures a rewind undoes, what it sends again, and
//! that the rewound history then completes and replays from scratch to the same end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use flowforge_orchestrator::history::{EventKind, FailureDetails, HistoryEvent};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::replay::{Action, ExecutionOutcome, NewEvent};
use serde_json::{json, Value};
use support::*;

fn registry() -> Registry {
    Registry::new()
        .orchestration(
            "retrying",
            |ctx: OrchestrationContext, _: Value| async move {
                let first: u64 = ctx.call_activity("ok", 1).await?;
                let policy = RetryPolicy::new(3, Duration::from_secs(1));
                let second: u64 = ctx.call_activity_with_retry("flaky", 2, policy).await?;
                Ok(first + second)
            },
        )
        .orchestration(
            "handled",
            |ctx: OrchestrationContext, _: Value| async move {
                // The first failure is caught and the code goes on: only the second ends it.
                let fallback = match ctx.call_activity::<u64>("flaky", 1).await {
                    Ok(n) => n,
                    Err(_) => ctx.call_activity::<u64>("also_flaky", 2).await?,
                };
                Ok(fallback)
            },
        )
}

fn failing(name: &str, input: &Value) -> Result<Value, String> {
    match name {
        "ok" => Ok(input.clone()),
        _ => Err(format!("{name} failed")),
    }
}

fn rewind_request() -> NewEvent {
    inbound(
        100,
        EventKind::ExecutionRewound {
            reason: "fixed".into(),
            failures: Vec::new(),
        },
    )
}

fn seq_of_failure(history: &[HistoryEvent], scheduled: u64) -> Vec<u64> {
    history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActivityFailed { scheduled_id, .. } if scheduled_id == scheduled))
        .map(|e| e.seq)
        .collect()
}

/// Fails the instance, rewinds it, answers the re-sent work with success; returns the
/// whole history, checked to replay from scratch to the same completion.
fn fail_rewind_complete(name: &str) -> (Vec<HistoryEvent>, Vec<Action>, Vec<u64>) {
    let registry = registry();
    let respond = world(failing);
    let driven = drive(
        &registry,
        started(name, Value::Null),
        &respond,
        Vec::new(),
        Delivery::Incremental,
    );
    failed(&driven.outcome);
    let mut history = driven.history;
    let rewound = episode(&registry, &history, vec![rewind_request()], 100);
    assert_eq!(rewound.outcome, ExecutionOutcome::Running);
    let [marker] = rewound.new_events.as_slice() else {
        panic!("one marker event: {:?}", rewound.new_events)
    };
    assert_eq!(
        marker.seq,
        history.len() as u64,
        "numbered after the committed events"
    );
    let EventKind::ExecutionRewound { failures, .. } = &marker.kind else {
        panic!("{marker:?}")
    };
    let failures = failures.clone();
    history.extend(rewound.new_events.clone());
    // The world is fixed: the re-sent work succeeds.
    let mut answers: Vec<NewEvent> = rewound
        .actions
        .iter()
        .map(|action| match action {
            Action::ScheduleActivity { id, .. } => inbound(
                101,
                EventKind::ActivityCompleted {
                    scheduled_id: *id,
                    result: json!(40),
                },
            ),
            other => panic!("only activities are sent again here: {other:?}"),
        })
        .collect();
    let done = episode(&registry, &history, std::mem::take(&mut answers), 101);
    history.extend(done.new_events.clone());
    let output = completed(&done.outcome);
    // From scratch, the whole history (failures, marker, re-run) replays to the same end.
    let again = episode(&registry, &history, Vec::new(), 200);
    assert_eq!(completed(&again.outcome), output);
    assert!(again.actions.is_empty() && again.new_events.is_empty());
    (history, rewound.actions, failures)
}

#[test]
fn after_retries_only_the_last_attempt_is_undone_and_sent_again() {
    let (history, actions, failures) = fail_rewind_complete("retrying");
    let attempts: Vec<u64> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ActivityScheduled { id, name, .. } if name == "flaky" => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(attempts.len(), 3, "three attempts, each scheduled once");
    let last = *attempts.last().unwrap();
    assert_eq!(failures, seq_of_failure(&history, last));
    assert!(
        matches!(actions.as_slice(), [Action::ScheduleActivity { id, name, .. }] if *id == last && name == "flaky")
    );
    let ExecutionOutcome::Completed(output) =
        episode(&registry(), &history, Vec::new(), 300).outcome
    else {
        panic!()
    };
    assert_eq!(output, json!(41));
}

#[test]
fn a_failure_the_code_handled_stays() {
    let (history, actions, failures) = fail_rewind_complete("handled");
    let ids: Vec<(u64, String)> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ActivityScheduled { id, name, .. } => Some((*id, name.clone())),
            _ => None,
        })
        .collect();
    let (also_flaky, _) = ids.iter().find(|(_, n)| n == "also_flaky").unwrap();
    assert_eq!(failures, seq_of_failure(&history, *also_flaky));
    assert!(
        matches!(actions.as_slice(), [Action::ScheduleActivity { name, .. }] if name == "also_flaky")
    );
}

#[test]
fn a_rewind_of_a_running_instance_changes_nothing() {
    let registry = registry();
    let first = episode(&registry, &[], vec![started("retrying", Value::Null)], 0);
    let ep = episode(&registry, &first.new_events, vec![rewind_request()], 1);
    assert!(ep.new_events.is_empty() && ep.actions.is_empty());
    assert_eq!(ep.outcome, ExecutionOutcome::Running);
}

#[test]
fn a_failure_of_the_code_itself_cannot_be_rewound() {
    let registry = Registry::new().orchestration(
        "refuses",
        |_ctx: OrchestrationContext, _: Value| async move {
            Err::<(), _>(FailureDetails::non_retryable("Refused", "no"))
        },
    );
    let failed_run = episode(&registry, &[], vec![started("refuses", Value::Null)], 0);
    failed(&failed_run.outcome);
    let ep = episode(&registry, &failed_run.new_events, vec![rewind_request()], 1);
    assert!(ep.new_events.is_empty() && ep.actions.is_empty());
    assert!(matches!(ep.outcome, ExecutionOutcome::Failed(_)));
}

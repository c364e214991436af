//! Replay of every context operation from canned worlds. Each case runs both incrementally
//! (one inbound event per episode) and batched (all answers at once), and the last episode
//! of each is re-derived by a full replay of the history before it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use flowforge_orchestrator::history::{EventKind, FailureDetails};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::replay::{Action, ExecutionOutcome};
use rstest::rstest;
use serde_json::{json, Value};
use support::*;

fn echo_world() -> impl Fn(&Action) -> Option<EventKind> {
    world(|name, input| Ok(json!(format!("{name}({input})"))))
}

/// Events: Started · ActivityScheduled a · ActivityCompleted · ActivityScheduled b ·
/// ActivityCompleted · ExecutionCompleted.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn activities_in_sequence(#[case] delivery: Delivery) {
    let registry =
        Registry::new().orchestration("seq", |ctx: OrchestrationContext, n: u32| async move {
            let a: String = ctx.call_activity("a", n).await?;
            let b: String = ctx.call_activity("b", &a).await?;
            Ok(b)
        });
    let run = drive(
        &registry,
        started("seq", json!(7)),
        &echo_world(),
        vec![],
        delivery,
    );
    assert_eq!(completed(&run.outcome), json!("b(\"a(7)\")"));
    let scheduled: Vec<_> = run
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ActivityScheduled { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled, vec!["a", "b"]);
    assert_full_replay_matches(&registry, &run.history);
}

/// A failed activity reaches the code as an error it can handle.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn activity_failure_is_an_error_the_code_sees(#[case] delivery: Delivery) {
    let registry =
        Registry::new().orchestration("handle", |ctx: OrchestrationContext, _: Value| async move {
            match ctx.call_activity::<Value>("boom", ()).await {
                Ok(_) => Ok("unexpected".to_owned()),
                Err(f) => Ok(format!("caught {}", f.message)),
            }
        });
    let run = drive(
        &registry,
        started("handle", json!(null)),
        &world(|_, _| Err("disk full".into())),
        vec![],
        delivery,
    );
    assert_eq!(completed(&run.outcome), json!("caught disk full"));
    assert_full_replay_matches(&registry, &run.history);
}

/// Retry: the activity fails twice; back-off waits are TimerCreated events at
/// episode time + 10 s, then + 20 s (coefficient 2); the third attempt succeeds.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn retry_waits_are_durable_timers(#[case] delivery: Delivery) {
    let registry =
        Registry::new().orchestration("retry", |ctx: OrchestrationContext, _: Value| async move {
            let policy = RetryPolicy::new(5, Duration::from_secs(10)).with_backoff(2.0);
            ctx.call_activity_with_retry::<u32>("flaky", (), policy)
                .await
        });
    let attempts = std::cell::Cell::new(0);
    let flaky = world(|_, _| {
        attempts.set(attempts.get() + 1);
        if attempts.get() < 3 {
            Err("transient".into())
        } else {
            Ok(json!(42))
        }
    });
    let run = drive(
        &registry,
        started("retry", json!(null)),
        &flaky,
        vec![],
        delivery,
    );
    assert_eq!(completed(&run.outcome), json!(42));
    let timers: Vec<_> = run
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TimerCreated { fire_at, .. } => Some((*fire_at - e.timestamp).num_seconds()),
            _ => None,
        })
        .collect();
    assert_eq!(
        timers,
        vec![10, 20],
        "back-off delays recorded as durable timers"
    );
    assert_full_replay_matches(&registry, &run.history);
}

/// The retry predicate stops retrying a non-retryable failure at once.
#[test]
fn retry_predicate_stops_on_non_retryable_failure() {
    let registry =
        Registry::new().orchestration("retry", |ctx: OrchestrationContext, _: Value| async move {
            let policy =
                RetryPolicy::new(5, Duration::from_secs(1)).with_handle(|f| f.kind != "BadInput");
            ctx.call_activity_with_retry::<u32>("strict", (), policy)
                .await
        });
    let bad_input = |action: &Action| match action {
        Action::ScheduleActivity { id, .. } => Some(EventKind::ActivityFailed {
            scheduled_id: *id,
            failure: FailureDetails::new("BadInput", "column 'dep_delay' is not numeric"),
        }),
        _ => None,
    };
    let run = drive(
        &registry,
        started("retry", json!(null)),
        &bad_input,
        vec![],
        Delivery::Incremental,
    );
    assert_eq!(failed(&run.outcome).kind, "BadInput");
    assert_eq!(run.actions.len(), 1, "one attempt, no timer, no retry");
}

/// A sub-orchestration's result and its failure (with details) reach the parent.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn sub_orchestration_results_and_failures(#[case] delivery: Delivery) {
    let registry =
        Registry::new().orchestration("parent", |ctx: OrchestrationContext, _: Value| async move {
            let ok: u32 = ctx
                .call_sub_orchestration("child", Some("child-1"), 1)
                .await?;
            let err = ctx
                .call_sub_orchestration::<u32>("child", None, 2)
                .await
                .unwrap_err();
            Ok(json!({"ok": ok, "err_kind": err.kind, "inner": err.inner.map(|i| i.message)}))
        });
    let children = |action: &Action| match action {
        Action::StartSubOrchestration {
            id,
            input,
            instance_id,
            ..
        } => Some(if input == &json!(1) {
            assert_eq!(instance_id, "child-1");
            EventKind::SubOrchestrationCompleted {
                scheduled_id: *id,
                result: json!(10),
            }
        } else {
            assert_eq!(instance_id, &format!("{INSTANCE}:{id}"), "derived child id");
            EventKind::SubOrchestrationFailed {
                scheduled_id: *id,
                failure: FailureDetails::new("ActivityError", "silver: 3 rows rejected"),
            }
        }),
        _ => None,
    };
    let run = drive(
        &registry,
        started("parent", json!(null)),
        &children,
        vec![],
        delivery,
    );
    assert_eq!(
        completed(&run.outcome),
        json!({"ok": 10, "err_kind": "SubOrchestrationFailed", "inner": "silver: 3 rows rejected"})
    );
    assert_full_replay_matches(&registry, &run.history);
}

/// A durable timer fires at its time; `utc_now` is the episode time, the same on replay.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn timer_and_replay_safe_time(#[case] delivery: Delivery) {
    let registry =
        Registry::new().orchestration("timer", |ctx: OrchestrationContext, _: Value| async move {
            let before = ctx.utc_now();
            ctx.sleep(Duration::from_secs(3600)).await;
            let after = ctx.utc_now();
            Ok(json!({"before": before, "after": after, "guid": ctx.new_guid()}))
        });
    let run = drive(
        &registry,
        started("timer", json!(null)),
        &echo_world(),
        vec![],
        delivery,
    );
    let out = completed(&run.outcome);
    assert_eq!(out["before"], json!(at(0)));
    assert_eq!(
        out["after"],
        json!(at(1)),
        "time of the episode that delivered the timer"
    );
    let fire_at = run.history.iter().find_map(|e| match &e.kind {
        EventKind::TimerCreated { fire_at, .. } => Some(*fire_at),
        _ => None,
    });
    assert_eq!(fire_at, Some(at(3600)));
    assert_full_replay_matches(&registry, &run.history);
}

/// `new_guid` is deterministic across replays and distinct per call.
#[test]
fn new_guid_is_deterministic() {
    let registry =
        Registry::new().orchestration("guid", |ctx: OrchestrationContext, _: Value| async move {
            let a = ctx.new_guid();
            let b = ctx.new_guid();
            let _: Value = ctx.call_activity("x", ()).await?;
            Ok(json!([a, b, ctx.is_replaying()]))
        });
    let first = drive(
        &registry,
        started("guid", json!(null)),
        &echo_world(),
        vec![],
        Delivery::Incremental,
    );
    let second = drive(
        &registry,
        started("guid", json!(null)),
        &echo_world(),
        vec![],
        Delivery::Incremental,
    );
    let out = completed(&first.outcome);
    assert_eq!(out, completed(&second.outcome));
    assert_ne!(out[0], out[1]);
    assert_eq!(
        out[2],
        json!(false),
        "not replaying once past recorded history"
    );
}

/// An external event, and a wait with timeout: event first → Some, timer first → None.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn external_event_and_timeout_outcomes(#[case] delivery: Delivery) {
    let registry = Registry::new().orchestration(
        "approve",
        |ctx: OrchestrationContext, _: Value| async move {
            let plain: String = ctx.wait_for_event("go").await?;
            let quick: Option<String> = ctx
                .wait_for_event_with_timeout("approve", Duration::from_secs(60))
                .await?;
            Ok(json!({"plain": plain, "approve": quick}))
        },
    );
    // Event arrives before the timer fires: no timer answer from the world.
    let no_timers = |_: &Action| None;
    let run = drive(
        &registry,
        started("approve", json!(null)),
        &no_timers,
        vec![
            raised("go", json!("now"), "e1"),
            raised("approve", json!("yes"), "e2"),
        ],
        delivery,
    );
    assert_eq!(
        completed(&run.outcome),
        json!({"plain": "now", "approve": "yes"})
    );
    assert_full_replay_matches(&registry, &run.history);
    // Nobody approves: the timer fires and the wait yields None.
    let run = drive(
        &registry,
        started("approve", json!(null)),
        &echo_world(),
        vec![raised("go", json!("now"), "e1")],
        delivery,
    );
    assert_eq!(
        completed(&run.outcome),
        json!({"plain": "now", "approve": null})
    );
    assert_full_replay_matches(&registry, &run.history);
}

/// An event that arrives after its wait timed out stays buffered for the next waiter.
#[test]
fn late_event_after_timeout_goes_to_the_next_waiter() {
    let registry =
        Registry::new().orchestration("late", |ctx: OrchestrationContext, _: Value| async move {
            let first: Option<u32> = ctx
                .wait_for_event_with_timeout("v", Duration::from_secs(5))
                .await?;
            let second: u32 = ctx.wait_for_event("v").await?;
            Ok(json!([first, second]))
        });
    let h1 = episode(&registry, &[], vec![started("late", json!(null))], 0);
    let timer_id = h1
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreateTimer { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    let mut history = h1.new_events;
    let h2 = episode(
        &registry,
        &history,
        vec![
            inbound(
                5,
                EventKind::TimerFired {
                    scheduled_id: timer_id,
                    fire_at: at(5),
                },
            ),
            inbound(6, raised("v", json!(9), "late-1")),
        ],
        6,
    );
    history.extend(h2.new_events);
    assert_eq!(completed(&h2.outcome), json!([null, 9]));
}

/// Fan-out/fan-in: outputs in input order whatever the completion order.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn join_all_keeps_input_order(#[case] delivery: Delivery) {
    let registry =
        Registry::new().orchestration("fan", |ctx: OrchestrationContext, n: u32| async move {
            let calls = (0..n)
                .map(|i| ctx.call_activity::<u32>("square", i))
                .collect();
            let results: Vec<u32> = ctx
                .join_all(calls)
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            Ok(results)
        });
    let square = world(|_, input| Ok(json!(input.as_u64().unwrap().pow(2))));
    let run = drive(
        &registry,
        started("fan", json!(20)),
        &square,
        vec![],
        delivery,
    );
    assert_eq!(
        completed(&run.outcome),
        json!((0..20u64).map(|i| i * i).collect::<Vec<_>>())
    );
    assert_full_replay_matches(&registry, &run.history);
}

/// first_of picks the winner in history order, not poll order: both results are already
/// delivered when the race is polled, and the later-listed one came first in history.
#[test]
fn first_of_resolves_in_history_order() {
    let registry =
        Registry::new().orchestration("race", |ctx: OrchestrationContext, _: Value| async move {
            let slow = ctx.call_activity::<String>("slow", ());
            let fast = ctx.call_activity::<String>("fast", ());
            let gate: String = ctx.wait_for_event("gate").await?;
            let (winner, value) = ctx.first_of(vec![slow, fast]).await;
            Ok(json!({"winner": winner, "value": value?, "gate": gate}))
        });
    let ep1 = episode(&registry, &[], vec![started("race", json!(null))], 0);
    let mut history = ep1.new_events;
    // fast (id 1) completes before slow (id 0), then the gate opens.
    let ep2 = episode(
        &registry,
        &history,
        vec![
            inbound(
                1,
                EventKind::ActivityCompleted {
                    scheduled_id: 1,
                    result: json!("fast"),
                },
            ),
            inbound(
                2,
                EventKind::ActivityCompleted {
                    scheduled_id: 0,
                    result: json!("slow"),
                },
            ),
            inbound(3, raised("gate", json!("open"), "g")),
        ],
        3,
    );
    history.extend(ep2.new_events);
    assert_eq!(
        completed(&ep2.outcome),
        json!({"winner": 1, "value": "fast", "gate": "open"})
    );
    assert_full_replay_matches(&registry, &history);
}

/// Continue-as-new ends the execution with the next input; an event the execution did
/// not consume is carried over.
#[test]
fn continue_as_new_carries_over_unconsumed_events() {
    let registry =
        Registry::new().orchestration("counter", |ctx: OrchestrationContext, n: u32| async move {
            let step: u32 = ctx.wait_for_event("add").await?;
            ctx.continue_as_new(n + step);
            Ok(n)
        });
    let ep1 = episode(&registry, &[], vec![started("counter", json!(1))], 0);
    let ep2 = episode(
        &registry,
        &ep1.new_events,
        vec![
            inbound(1, raised("add", json!(5), "a1")),
            inbound(1, raised("add", json!(7), "a2")),
        ],
        1,
    );
    match &ep2.outcome {
        ExecutionOutcome::ContinuedAsNew { input, carryover } => {
            assert_eq!(input, &json!(6));
            assert_eq!(carryover.len(), 1);
            assert_eq!(carryover[0].kind, raised("add", json!(7), "a2"));
        }
        other => panic!("expected ContinuedAsNew, got {other:?}"),
    }
    assert_eq!(
        ep2.new_events.last().map(|e| e.kind.type_name()),
        Some("ContinuedAsNew")
    );
}

/// Custom status is recorded when it changes; fire-and-forget starts and sent events are
/// actions with deterministic identities.
#[rstest]
#[case::incremental(Delivery::Incremental)]
#[case::batched(Delivery::Batched)]
fn custom_status_start_and_send(#[case] delivery: Delivery) {
    let registry =
        Registry::new().orchestration("misc", |ctx: OrchestrationContext, _: Value| async move {
            ctx.set_custom_status(json!({"stage": "bronze"}));
            let child = ctx.start_orchestration("audit", None, json!({"x": 1}));
            ctx.send_event("other-instance", "ping", 1);
            let _: Value = ctx.call_activity("work", ()).await?;
            ctx.set_custom_status(json!({"stage": "done"}));
            Ok(child)
        });
    let run = drive(
        &registry,
        started("misc", json!(null)),
        &echo_world(),
        vec![],
        delivery,
    );
    assert_eq!(completed(&run.outcome), json!(format!("{INSTANCE}:0")));
    let statuses: Vec<_> = run
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CustomStatusSet { status } => Some(status["stage"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![json!("bronze"), json!("done")]);
    assert!(matches!(run.actions[0], Action::StartOrchestration { .. }));
    assert!(matches!(run.actions[1], Action::SendEvent { .. }));
    assert_full_replay_matches(&registry, &run.history);
}

/// Suspended: events are recorded but delivered only on resume; terminate ends at once.
#[test]
fn suspend_holds_events_until_resume_and_terminate_ends() {
    let registry =
        Registry::new().orchestration("wait", |ctx: OrchestrationContext, _: Value| async move {
            let v: u32 = ctx.wait_for_event("v").await?;
            Ok(v)
        });
    let ep1 = episode(&registry, &[], vec![started("wait", json!(null))], 0);
    let mut history = ep1.new_events;
    let ep2 = episode(
        &registry,
        &history,
        vec![
            inbound(
                1,
                EventKind::ExecutionSuspended {
                    reason: "maintenance".into(),
                },
            ),
            inbound(1, raised("v", json!(3), "v1")),
        ],
        1,
    );
    assert_eq!(ep2.outcome, ExecutionOutcome::Running);
    assert!(ep2.suspended);
    history.extend(ep2.new_events);
    let ep3 = episode(
        &registry,
        &history,
        vec![inbound(
            2,
            EventKind::ExecutionResumed {
                reason: String::new(),
            },
        )],
        2,
    );
    assert_eq!(completed(&ep3.outcome), json!(3));

    let ep4 = episode(
        &registry,
        &history,
        vec![inbound(
            2,
            EventKind::ExecutionTerminated {
                reason: "stop".into(),
            },
        )],
        2,
    );
    assert_eq!(ep4.outcome, ExecutionOutcome::Terminated("stop".into()));
    assert!(ep4.actions.is_empty());
}

/// Bad input: an input that does not deserialize fails the instance with a typed error;
/// an unknown orchestration name fails it with a message listing the registered ones.
#[test]
fn bad_input_and_unknown_orchestration_fail_clearly() {
    let registry = Registry::new()
        .orchestration("typed", |_ctx: OrchestrationContext, n: u32| async move {
            Ok(n)
        });
    let ep = episode(
        &registry,
        &[],
        vec![started("typed", json!("not a number"))],
        0,
    );
    let failure = failed(&ep.outcome);
    assert_eq!(failure.kind, "InputDeserialization");
    assert!(
        failure.message.contains("invalid type"),
        "{}",
        failure.message
    );

    let ep = episode(&registry, &[], vec![started("missing", json!(1))], 0);
    let failure = failed(&ep.outcome);
    assert_eq!(failure.kind, "UnknownOrchestration");
    assert!(
        failure.message.contains("'missing'") && failure.message.contains("typed"),
        "{}",
        failure.message
    );
}

/// A panicking orchestration fails its instance instead of crashing the worker.
#[test]
fn a_panic_in_orchestration_code_fails_the_instance() {
    let registry = Registry::new().orchestration(
        "panics",
        |_ctx: OrchestrationContext, _: Value| async move {
            if true {
                panic!("index out of bounds");
            }
            Ok(())
        },
    );
    let ep = episode(&registry, &[], vec![started("panics", json!(null))], 0);
    let failure = failed(&ep.outcome);
    assert_eq!(failure.kind, "OrchestrationPanicked");
    assert!(failure.message.contains("index out of bounds"));
}

/// History beyond the configured bound fails the instance with a clear error.
#[test]
fn history_limit_fails_the_instance() {
    let registry =
        Registry::new().orchestration("big", |ctx: OrchestrationContext, _: Value| async move {
            let calls = (0..50)
                .map(|i| ctx.call_activity::<Value>("a", i))
                .collect();
            ctx.join_all(calls).await;
            Ok(())
        });
    let ep = flowforge_orchestrator::replay::run_episode(
        &registry,
        flowforge_orchestrator::replay::ReplayInput {
            instance_id: INSTANCE,
            history: &[],
            new_events: vec![started("big", json!(null))],
            now: at(0),
            max_history_events: 20,
        },
    );
    assert_eq!(failed(&ep.outcome).kind, "HistoryLimitExceeded");
    assert!(ep.actions.is_empty());
}

/// `join_all` over leaves completing out of order and a retrying composite: the retry's
/// timer is decided when its failure arrives (not when the leaves before it are done), the
/// join resolves only with the last leaf, outputs in input order; a full replay of the
/// history reproduces every episode.
#[test]
fn join_all_mixes_leaves_out_of_order_with_a_retrying_composite() {
    let registry =
        Registry::new().orchestration("mixed", |ctx: OrchestrationContext, _: Value| async move {
            let mut calls: Vec<_> = (0..3u32)
                .map(|i| ctx.call_activity::<u32>("leaf", i))
                .collect();
            let policy = RetryPolicy::new(3, Duration::from_secs(5));
            calls.push(ctx.call_activity_with_retry::<u32>("flaky", (), policy));
            let all: Vec<u32> = ctx
                .join_all(calls)
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            Ok(all)
        });
    let first = episode(&registry, &[], vec![started("mixed", json!(null))], 0);
    let ids: Vec<u64> = first
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ScheduleActivity { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 4, "three leaves and the first attempt at once");
    let mut history = first.new_events;
    let done = |id: u64, v: u32| EventKind::ActivityCompleted {
        scheduled_id: id,
        result: json!(v),
    };
    // The last leaf, the retry's failure, the middle leaf: the first leaf is still out.
    let second = episode(
        &registry,
        &history,
        vec![
            inbound(1, done(ids[2], 20)),
            inbound(
                1,
                EventKind::ActivityFailed {
                    scheduled_id: ids[3],
                    failure: FailureDetails::new("Transient", "try again"),
                },
            ),
            inbound(1, done(ids[1], 10)),
        ],
        1,
    );
    let timer = second
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreateTimer { id, fire_at } => Some((*id, *fire_at)),
            _ => None,
        })
        .expect("the retry's back-off timer, decided at once");
    assert_eq!(second.outcome, ExecutionOutcome::Running);
    history.extend(second.new_events);
    let third = episode(
        &registry,
        &history,
        vec![inbound(
            7,
            EventKind::TimerFired {
                scheduled_id: timer.0,
                fire_at: timer.1,
            },
        )],
        7,
    );
    let retry = third
        .actions
        .iter()
        .find_map(|a| match a {
            Action::ScheduleActivity { id, name, .. } if name == "flaky" => Some(*id),
            _ => None,
        })
        .expect("the second attempt");
    history.extend(third.new_events);
    let fourth = episode(&registry, &history, vec![inbound(8, done(retry, 42))], 8);
    assert_eq!(
        fourth.outcome,
        ExecutionOutcome::Running,
        "the first leaf is still out"
    );
    history.extend(fourth.new_events);
    let fifth = episode(&registry, &history, vec![inbound(9, done(ids[0], 0))], 9);
    history.extend(fifth.new_events);
    assert_eq!(completed(&fifth.outcome), json!([0, 10, 20, 42]));
    assert_full_replay_matches(&registry, &history);
}

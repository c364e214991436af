//! Exactly-once state transitions over at-least-once delivery: any duplication and
//! batching of the messages an instance receives leaves its final history unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use flowforge_orchestrator::history::{EventKind, HistoryEvent};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::replay::{Action, NewEvent};
use proptest::prelude::*;
use serde_json::{json, Value};
use support::*;

fn registry() -> Registry {
    Registry::new().orchestration("fan", |ctx: OrchestrationContext, n: u32| async move {
        let calls = (0..n)
            .map(|i| ctx.call_activity::<u32>("double", i))
            .collect();
        let values: Vec<u32> = ctx
            .join_all(calls)
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let bonus: u32 = ctx.wait_for_event("bonus").await?;
        ctx.sleep(std::time::Duration::from_secs(5)).await;
        Ok(values.iter().sum::<u32>() + bonus)
    })
}

/// Delivers `deliveries` (indices into `messages`, possibly repeated) in batches of the
/// given sizes, one episode per batch, until all are delivered. Returns the final history
/// after delivering any timer the code created.
fn run(messages: &[NewEvent], deliveries: &[usize], batch_sizes: &[usize]) -> Vec<HistoryEvent> {
    let registry = registry();
    let first = episode(&registry, &[], vec![started("fan", json!(6))], 0);
    let mut history = first.new_events;
    let mut pending: Vec<NewEvent> = deliveries.iter().map(|i| messages[*i].clone()).collect();
    let mut sizes = batch_sizes.iter().cycle();
    let now = 1;
    let mut timer = None;
    while !pending.is_empty() {
        let size = (*sizes.next().unwrap()).clamp(1, pending.len());
        let batch: Vec<_> = pending.drain(..size).collect();
        let ep = episode(&registry, &history, batch, now);
        timer = timer.or(ep.actions.iter().find_map(|a| match a {
            Action::CreateTimer { id, fire_at } => Some((*id, *fire_at)),
            _ => None,
        }));
        history.extend(ep.new_events);
        // Time stands still, so the timer's fire time does not depend on the batching.
    }
    let (id, fire_at) = timer.expect("timer created once everything arrived");
    for _ in 0..2 {
        // The timer message itself is delivered twice.
        let fired = NewEvent {
            timestamp: fire_at,
            kind: EventKind::TimerFired {
                scheduled_id: id,
                fire_at,
            },
        };
        let ep = episode(&registry, &history, vec![fired], now);
        history.extend(ep.new_events);
    }
    history
}

fn messages() -> Vec<NewEvent> {
    let mut messages: Vec<NewEvent> = (0..6u64)
        .map(|i| {
            inbound(
                1,
                EventKind::ActivityCompleted {
                    scheduled_id: i,
                    result: json!(i * 2),
                },
            )
        })
        .collect();
    messages.push(inbound(1, raised("bonus", json!(100), "bonus-1")));
    messages
}

/// Strips what legitimately depends on batching (episode markers, times, seq) so that
/// histories with the same first-delivery order compare equal.
fn essence(history: &[HistoryEvent]) -> Vec<EventKind> {
    history
        .iter()
        .map(|e| e.kind.clone())
        .filter(|k| !matches!(k, EventKind::OrchestratorStarted))
        .collect()
}

fn output(history: &[HistoryEvent]) -> Value {
    match &history.last().unwrap().kind {
        EventKind::ExecutionCompleted { output } => output.clone(),
        other => panic!("not completed: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any order of first deliveries, with any duplicates sprinkled after them and any
    /// batching, yields the same output and the same events as clean delivery in that order.
    #[test]
    fn duplicates_and_batching_change_nothing(
        order in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle(),
        duplicates in proptest::collection::vec((0..7usize, 0..20usize), 0..15),
        batch_sizes in proptest::collection::vec(1..5usize, 1..5),
    ) {
        let messages = messages();
        let clean = run(&messages, &order, &[1]);
        let mut noisy: Vec<usize> = order.clone();
        for (message, position) in duplicates {
            // A duplicate comes after its original (it is a redelivery).
            let original = noisy.iter().position(|m| *m == message).unwrap();
            let at = (original + 1 + position).min(noisy.len());
            noisy.insert(at, message);
        }
        let noisy_history = run(&messages, &noisy, &batch_sizes);
        prop_assert_eq!(output(&noisy_history), json!(2 * (0..6).sum::<u32>() + 100));
        prop_assert_eq!(essence(&noisy_history), essence(&clean));
        let seqs: Vec<u64> = noisy_history.iter().map(|e| e.seq).collect();
        prop_assert_eq!(seqs, (0..noisy_history.len() as u64).collect::<Vec<_>>());
        let completions = noisy_history.iter().filter(|e| matches!(e.kind, EventKind::ActivityCompleted { .. })).count();
        prop_assert_eq!(completions, 6, "each result recorded exactly once");
    }
}

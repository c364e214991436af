//! Runs activities from the work-item queue and reports their results to the instance.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info_span, warn, Instrument};

use super::activity_attempt::{self, result_kind, ActivityResult};
use super::episode_effects::to_instance;
use super::{idle_or_stop, lease, next_idle, Shared};
use crate::backend::{ActivityWorkItem, QueueMessage, QueueName, Received};
use crate::history::{FailureDetails, FailureKind};

pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let queue = QueueName::Work;
    let permits = shared.activity_slots.clone();
    let mut running = JoinSet::new();
    let mut idle = shared.options.min_idle_poll;
    loop {
        if *stop.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = permits.available_permits().min(shared.options.batch_size);
        if free == 0 {
            // Every slot busy (here or by inline activities): wait for one to free up.
            tokio::select! {
                slot = permits.acquire() => drop(slot),
                _ = stop.changed() => break,
            }
            continue;
        }
        let batch = match shared
            .backend
            .receive(&queue, free, shared.options.lock_timeout)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                super::log_retried_failure(&error, "receiving work items failed");
                Vec::new()
            }
        };
        if batch.is_empty() {
            if idle_or_stop(&shared, std::slice::from_ref(&queue), idle, &mut stop).await {
                break;
            }
            idle = next_idle(idle, &shared);
            continue;
        }
        idle = shared.options.min_idle_poll;
        shared.idle.mark_active();
        for received in batch {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let shared = shared.clone();
            running.spawn(async move {
                handle(&shared, received).await;
                drop(permit);
            });
        }
    }
    while running.join_next().await.is_some() {}
}

pub(crate) async fn handle(shared: &Arc<Shared>, received: Received) {
    let queue = QueueName::Work;
    let item = match &received.message {
        Ok(QueueMessage::Activity(item)) => item.clone(),
        Ok(other) => {
            let reason = format!(
                "an orchestrator message for '{}' on the work-item queue",
                other.instance_id()
            );
            dead_letter(shared, &received, &reason).await;
            return;
        }
        Err(reason) => {
            dead_letter(shared, &received, reason).await;
            return;
        }
    };
    let span = info_span!("work_item", instance_id = %item.instance_id, activity = %item.name,
        activity_id = item.scheduled_id);
    async {
        let mut receipt = received.receipt.clone();
        let result = if received.dequeue_count > shared.options.max_dequeue_count {
            let reason = format!(
                "the work item was delivered {} times (limit {}) without completing",
                received.dequeue_count, shared.options.max_dequeue_count
            );
            dead_letter(shared, &received, &reason).await;
            Err(FailureDetails::of(FailureKind::PoisonMessage, reason))
        } else {
            let work = activity_attempt::attempt(shared, &item, received.dequeue_count, false);
            lease::renewing(shared, &queue, &mut receipt, work).await
        };
        let reported = report(shared, &item, result).await;
        if reported && received.dequeue_count <= shared.options.max_dequeue_count {
            if let Err(error) = shared.backend.delete(&queue, &receipt).await {
                debug!(%error, "work item already gone (redelivered elsewhere)");
            }
        }
    }
    .instrument(span)
    .await
}

/// Sends the result to the instance; false when it could not (the work item then stays
/// and is retried after its lock expires).
async fn report(shared: &Shared, item: &ActivityWorkItem, result: ActivityResult) -> bool {
    let kind = result_kind(item.scheduled_id, result);
    let message = to_instance(
        &item.instance_id,
        Some(&item.execution_id),
        kind,
        shared.clock.now(),
        None,
        shared.backend.control_partitions(),
    );
    // Sent before the work item is deleted: a crash in between re-runs the activity, and
    // the instance ignores the second result (at-least-once activities, exactly-once results).
    let mut attempt = 0;
    while let Err(error) = shared.backend.send(&message).await {
        attempt += 1;
        warn!(%error, attempt, "sending an activity result failed");
        if attempt >= 5 {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
    }
    true
}

async fn dead_letter(shared: &Shared, received: &Received, reason: &str) {
    warn!(
        reason,
        dequeue_count = received.dequeue_count,
        "dead-lettering a work item"
    );
    if let Err(error) = shared
        .backend
        .dead_letter(&QueueName::Work, received, reason)
        .await
    {
        warn!(%error, "dead-lettering failed");
    }
}

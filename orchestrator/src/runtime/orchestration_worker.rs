//! The orchestration poll loop: receive a batch of control messages, sort it (poison,
//! malformed and misrouted messages, timers that surfaced early, bundles of starts split
//! into their pieces), and give each instance
//! its turn (`instance_turn.rs`), instances in parallel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

pub(crate) use super::instance_turn::Sessions;
use super::settling::{dead_letter, poison, poison_bundle};
use super::{idle_or_stop, instance_turn, next_idle, Shared, SESSION_SLOTS};
use crate::backend::{OrchestratorMessage, QueueMessage, QueueName, Received};
use crate::history::EventKind;

/// While the worker is busy, a control queue that stays empty is asked at most this often,
/// so a busy worker does not pay an empty receive per idle partition per batch, and a new
/// instance on a quiet partition still starts within this delay.
const BUSY_POLL_CEILING: Duration = Duration::from_millis(500);

/// How long the worker counts as busy after its last non-empty receive.
const BUSY_WINDOW: Duration = Duration::from_secs(2);

/// Polling state of one control queue.
struct PolledQueue {
    queue: QueueName,
    backoff: Duration,
    next_at: Instant,
    in_flight: bool,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    queues: Vec<QueueName>,
    mut stop: watch::Receiver<bool>,
) {
    let concurrency = shared.options.orchestration_concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let mut polled: Vec<PolledQueue> = queues
        .iter()
        .map(|queue| PolledQueue {
            queue: queue.clone(),
            backoff: shared.options.min_idle_poll,
            next_at: start,
            in_flight: false,
        })
        .collect();
    let mut busy_until = start;
    // One batch in flight per partition: partitions proceed in parallel, and the messages
    // that arrive for a busy partition gather into the next batch (one episode per instance
    // for many of them). Inline sessions continue detached, so they do not hold it up.
    let mut batches: JoinSet<usize> = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        while let Some(done) = batches.try_join_next() {
            if let Ok(index) = done {
                polled[index].in_flight = false;
            }
        }
        let now = Instant::now();
        let mut received_any = false;
        for (index, entry) in polled.iter_mut().enumerate() {
            if entry.in_flight || entry.next_at > now {
                continue;
            }
            let free = permits.available_permits().min(shared.options.batch_size);
            if free == 0 {
                break;
            }
            let batch = match shared
                .backend
                .receive(&entry.queue, free, shared.options.lock_timeout)
                .await
            {
                Ok(batch) => batch,
                Err(error) => {
                    super::log_retried_failure(&error, "receiving control messages failed");
                    Vec::new()
                }
            };
            if batch.is_empty() {
                entry.backoff = next_idle(entry.backoff, &shared);
                let cap = if now < busy_until {
                    BUSY_POLL_CEILING
                } else {
                    shared.idle_ceiling()
                };
                entry.next_at = Instant::now() + entry.backoff.min(cap);
                continue;
            }
            received_any = true;
            shared.idle.mark_active();
            busy_until = Instant::now() + BUSY_WINDOW;
            entry.backoff = shared.options.min_idle_poll;
            entry.next_at = Instant::now();
            entry.in_flight = true;
            let (shared, queue, permits) = (shared.clone(), entry.queue.clone(), permits.clone());
            batches.spawn(async move {
                process_batch(&shared, &queue, batch, &permits, Sessions::Detached).await;
                index
            });
        }
        if received_any {
            continue;
        }
        let now = Instant::now();
        let earliest = polled
            .iter()
            .filter(|p| !p.in_flight)
            .map(|p| p.next_at)
            .min();
        if !batches.is_empty() && earliest.is_none_or(|at| at > now) {
            // Wait for a batch to finish or the next poll, whichever comes first.
            let until = earliest.unwrap_or(now + BUSY_POLL_CEILING);
            tokio::select! {
                Some(done) = batches.join_next() => {
                    if let Ok(index) = done {
                        polled[index].in_flight = false;
                    }
                }
                _ = tokio::time::sleep_until(until) => {}
                _ = stop.changed() => break,
            }
            continue;
        }
        let earliest = earliest.unwrap_or(now);
        let wait = earliest.saturating_duration_since(now);
        if wait.is_zero() {
            continue;
        }
        if idle_or_stop(&shared, &queues, wait, &mut stop).await {
            break;
        }
        // Woken before the earliest poll: a backend that can notify says messages arrived.
        let woke = Instant::now();
        if woke + Duration::from_millis(1) < earliest {
            for entry in &mut polled {
                entry.next_at = woke;
                entry.backoff = shared.options.min_idle_poll;
            }
        }
    }
    while batches.join_next().await.is_some() {}
    // Episodes waiting for a busy instance hold a permit each (and may start a session):
    // having all permits means they are done; then all session slots, every session.
    let _all = permits.acquire_many(concurrency as u32).await;
    let _sessions = shared.session_slots.acquire_many(SESSION_SLOTS).await;
}

/// Handles one batch: malformed and poison messages first, then one episode per instance,
/// instances in parallel. Returns when every episode of the batch is done.
pub(crate) async fn process_batch(
    shared: &Arc<Shared>,
    queue: &QueueName,
    batch: Vec<Received>,
    permits: &Arc<Semaphore>,
    sessions: Sessions,
) {
    let mut by_instance: BTreeMap<String, Vec<(Received, OrchestratorMessage)>> = BTreeMap::new();
    for received in batch {
        match received.message.clone() {
            Ok(QueueMessage::Orchestrator(message)) => {
                if received.dequeue_count > shared.options.max_dequeue_count {
                    poison(shared, queue, &received, &message).await;
                } else if rearm_early_timer(shared, queue, &received, &message).await {
                    // A timer beyond the queue's visibility limit: re-armed, not yet due.
                } else {
                    by_instance
                        .entry(message.instance_id.clone())
                        .or_default()
                        .push((received, message));
                }
            }
            Ok(QueueMessage::Starts { starts }) => {
                if received.dequeue_count > shared.options.max_dequeue_count {
                    poison_bundle(shared, queue, &received, &starts).await;
                    continue;
                }
                let pieces = shared.start_bundles.open(
                    queue,
                    &received,
                    starts,
                    shared.clock.now(),
                    shared.options.lock_timeout,
                );
                for (piece, start) in pieces {
                    by_instance
                        .entry(start.instance_id.clone())
                        .or_default()
                        .push((piece, start));
                }
            }
            Ok(QueueMessage::Activity(item)) => {
                let reason = format!("a work item for '{}' on a control queue", item.instance_id);
                dead_letter(shared, queue, &received, &reason).await;
            }
            Err(reason) => dead_letter(shared, queue, &received, &reason).await,
        }
    }
    let mut episodes = JoinSet::new();
    for (instance_id, messages) in by_instance {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let span = info_span!("episode", instance_id = %instance_id);
        let free = shared.instance_locks.try_lock(&instance_id);
        let waits = free.is_none() && sessions == Sessions::Detached;
        let (shared, queue) = (shared.clone(), queue.clone());
        let episode = async move {
            let busy = match free {
                Some(guard) => guard,
                None => shared.instance_locks.lock(&instance_id).await,
            };
            instance_turn::process_instance(
                shared,
                queue,
                instance_id,
                messages,
                busy,
                permit,
                sessions,
            )
            .await
        }
        .instrument(span);
        if waits {
            // The instance is busy here (an inline session): its messages wait for it
            // without holding up this partition's next batch.
            tokio::spawn(episode);
        } else {
            episodes.spawn(episode);
        }
    }
    while episodes.join_next().await.is_some() {}
}

/// A timer message that became visible before its fire time (its delay was capped at the
/// queue's visibility limit) is sent again for the remaining time. True when re-armed.
async fn rearm_early_timer(
    shared: &Shared,
    queue: &QueueName,
    received: &Received,
    message: &OrchestratorMessage,
) -> bool {
    let EventKind::TimerFired { fire_at, .. } = &message.event.kind else {
        return false;
    };
    if *fire_at <= shared.clock.now() {
        return false;
    }
    let again = crate::backend::Outbound {
        queue: queue.clone(),
        message: QueueMessage::Orchestrator(message.clone()),
        visible_at: Some(*fire_at),
    };
    match shared.backend.send(&again).await {
        Ok(()) => {
            debug!(instance_id = %message.instance_id, %fire_at, "timer re-armed");
            if let Err(error) = shared.backend.delete(queue, &received.receipt).await {
                debug!(%error, "re-armed timer's old message already gone");
            }
        }
        Err(error) => warn!(%error, "re-arming a timer failed; it will be seen again"),
    }
    true
}

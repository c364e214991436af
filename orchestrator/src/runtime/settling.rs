//! Settling the messages of a turn: delete what was consumed, put back what must be seen
//! again, hold events early for their start (without using the poison budget), dead-letter
//! what cannot be processed, and fail the instance of a poison message.

use std::time::Duration;

use tracing::{debug, warn};

use super::{start_bundles, Shared};
use crate::backend::{
    EpisodeCommit, Error, HistoryWrite, OrchestratorMessage, QueueMessage, QueueName, Received,
};
use crate::history::{EventKind, FailureDetails, FailureKind, HistoryEvent};
use crate::status::RuntimeStatus;

/// What to do with each consumed message once the episode is decided.
pub(crate) enum Disposition {
    Delete,
    /// Seen again after the delay, as another delivery (a retry).
    Defer,
    /// An event early for its instance's start: held, not a failed delivery.
    Hold,
    DeadLetter(String),
}

pub(crate) async fn settle(
    shared: &Shared,
    queue: &QueueName,
    messages: &[(Received, OrchestratorMessage)],
    decide: impl Fn(&OrchestratorMessage) -> Disposition,
    defer_delay: Duration,
) {
    for (received, message) in messages {
        let disposition = decide(message);
        if start_bundles::is_piece(&received.receipt) {
            settle_piece(shared, queue, received, message, disposition, defer_delay).await;
            continue;
        }
        let result = match disposition {
            Disposition::Delete => shared.backend.delete(queue, &received.receipt).await,
            Disposition::Defer => shared
                .backend
                .abandon(queue, &received.receipt, defer_delay)
                .await
                .map(|_| ()),
            Disposition::Hold => hold(shared, queue, received, message, defer_delay).await,
            Disposition::DeadLetter(reason) => {
                dead_letter(shared, queue, received, &reason).await;
                Ok(())
            }
        };
        if let Err(error) = result {
            debug!(%error, "settling a message failed; it will be redelivered and deduplicated");
        }
    }
}

/// Settles a start that came in a bundle: consumed, or sent again alone after the delay
/// (then consumed too, so one start's lost race does not hold back its bundle for a lock
/// timeout). A start to dead-letter leaves the bundle to come back (a bundle delivered too
/// often is dead-lettered whole, `start_bundles::poison_bundle`).
async fn settle_piece(
    shared: &Shared,
    queue: &QueueName,
    received: &Received,
    message: &OrchestratorMessage,
    disposition: Disposition,
    delay: Duration,
) {
    let consumed = match disposition {
        Disposition::Delete => true,
        Disposition::Defer | Disposition::Hold => {
            let copy = QueueMessage::Orchestrator(message.clone())
                .encode_copy(received.dequeue_count, None);
            let visible_at =
                shared.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
            match shared
                .backend
                .send_raw(queue, &copy, Some(visible_at))
                .await
            {
                Ok(()) => true,
                Err(error) => {
                    debug!(%error, "re-sending a bundled start failed; its bundle will come back");
                    false
                }
            }
        }
        Disposition::DeadLetter(_) => false,
    };
    start_bundles::settle_piece(shared, &received.receipt, consumed).await;
}

/// Holds an event that came before its instance's start: a copy that says since when it
/// has waited goes back on the queue after `delay`, and this delivery is deleted, so the
/// waiting does not use up the poison budget. Past `early_event_hold` it is dead-lettered.
async fn hold(
    shared: &Shared,
    queue: &QueueName,
    received: &Received,
    message: &OrchestratorMessage,
    delay: Duration,
) -> Result<(), Error> {
    let now = shared.clock.now();
    let since = QueueMessage::held_since(&received.raw).unwrap_or(now);
    let waited = (now - since).to_std().unwrap_or_default();
    if waited > shared.options.early_event_hold {
        let reason = format!(
            "a {} event for instance '{}' waited {} s for the instance's start, which never came",
            message.event.kind.type_name(),
            message.instance_id,
            waited.as_secs()
        );
        warn!(instance_id = %message.instance_id, reason, "giving up an early event");
        return shared.backend.dead_letter(queue, received, &reason).await;
    }
    let copy = QueueMessage::Orchestrator(message.clone())
        .encode_copy(received.dequeue_count.saturating_sub(1), Some(since));
    let visible_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
    shared
        .backend
        .send_raw(queue, &copy, Some(visible_at))
        .await?;
    shared.backend.delete(queue, &received.receipt).await
}

pub(crate) async fn dead_letter(
    shared: &Shared,
    queue: &QueueName,
    received: &Received,
    reason: &str,
) {
    warn!(
        reason,
        dequeue_count = received.dequeue_count,
        "dead-lettering a control message"
    );
    if let Err(error) = shared.backend.dead_letter(queue, received, reason).await {
        warn!(%error, "dead-lettering failed");
    }
}

/// A message that keeps failing: dead-letter it and fail its instance, with the reason.
pub(crate) async fn poison(
    shared: &Shared,
    queue: &QueueName,
    received: &Received,
    message: &OrchestratorMessage,
) {
    let reason = format!(
        "a {} message was delivered {} times (limit {}) without being processed",
        message.event.kind.type_name(),
        received.dequeue_count,
        shared.options.max_dequeue_count
    );
    warn!(instance_id = %message.instance_id, reason, "a poison message fails its instance");
    dead_letter(shared, queue, received, &reason).await;
    if let Err(error) = fail_instance(shared, &message.instance_id, &reason).await {
        warn!(%error, instance_id = %message.instance_id, "could not mark the instance Failed");
    }
}

/// Appends `ExecutionFailed` and sets the status to Failed (unless already finished).
pub(crate) async fn fail_instance(
    shared: &Shared,
    instance_id: &str,
    reason: &str,
) -> Result<(), Error> {
    for _ in 0..5 {
        let Some(loaded) = shared.backend.load_instance(instance_id).await? else {
            return Ok(());
        };
        if loaded.state.status.is_terminal() {
            return Ok(());
        }
        let now = shared.clock.now();
        let failure = FailureDetails::of(FailureKind::PoisonMessage, reason);
        let seq = loaded.history.len() as u64;
        let event = HistoryEvent {
            seq,
            timestamp: now,
            kind: EventKind::ExecutionFailed {
                failure: failure.clone(),
            },
        };
        let mut state = loaded.state.clone();
        state.status = RuntimeStatus::Failed;
        state.output = serde_json::Value::String(failure.to_string());
        state.failure = Some(failure);
        state.updated_at = now;
        state.history_len = seq + 1;
        let commit = EpisodeCommit {
            state,
            expected: Some(loaded.etag),
            history: HistoryWrite::Append(vec![event]),
            messages: Vec::new(),
        };
        match shared.backend.commit_episode(instance_id, commit).await {
            Err(Error::Conflict(_)) => continue,
            other => return other.map(|_| ()),
        }
    }
    Err(Error::Conflict(format!(
        "instance '{instance_id}' kept changing"
    )))
}

/// A bundle delivered too often: dead-lettered whole, and each of its instances whose start
/// never committed is marked Failed with the reason (instances it did start keep running).
pub(crate) async fn poison_bundle(
    shared: &Shared,
    queue: &QueueName,
    received: &Received,
    starts: &[OrchestratorMessage],
) {
    let ids: Vec<&str> = starts.iter().map(|s| s.instance_id.as_str()).collect();
    let reason = format!(
        "a bundle of {} starts (instances {ids:?}) was delivered {} times (limit {}) without being processed",
        starts.len(),
        received.dequeue_count,
        shared.options.max_dequeue_count
    );
    warn!(
        reason,
        "a poison bundle of starts fails the instances it did not start"
    );
    dead_letter(shared, queue, received, &reason).await;
    fail_unstarted(shared, starts, &reason).await;
}

/// Marks Failed, with the reason, each instance of `starts` whose start never committed
/// (instances it did start keep running).
pub(crate) async fn fail_unstarted(shared: &Shared, starts: &[OrchestratorMessage], reason: &str) {
    for start in starts {
        let never_started = match shared.backend.read_state(&start.instance_id).await {
            Ok(Some((state, _))) => state.history_len == 0,
            Ok(None) => false,
            Err(error) => {
                warn!(%error, instance_id = %start.instance_id, "could not read a poisoned start's instance");
                false
            }
        };
        if never_started {
            if let Err(error) = fail_instance(shared, &start.instance_id, reason).await {
                warn!(%error, instance_id = %start.instance_id, "could not mark the instance Failed");
            }
        }
    }
}

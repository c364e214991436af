//! Runs orchestration episodes: receive a batch of control messages, group them by
//! instance, load, replay, commit under the state row's ETag, then delete what was consumed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

use super::episode_effects::{pending_messages, to_instance};
use super::episode_step::{commit, decide, Base, Decided, Decision};
use super::inline_session::InlineActivities;
use super::instance_locks::InstanceGuard;
use super::{idle_or_stop, inline_session, instance_cache, next_idle, Shared, SESSION_SLOTS};
use crate::backend::{
    ETag, EpisodeCommit, Error, HistoryWrite, LoadedInstance, OrchestratorMessage, QueueMessage,
    QueueName, Received, StartCondition,
};
use crate::history::{EventKind, FailureDetails, HistoryEvent, HISTORY_FORMAT_VERSION};
use crate::replay::NewEvent;
use crate::status::{InstanceState, RuntimeStatus};

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

/// Whether a batch waits for the inline sessions its episodes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sessions {
    /// The batch returns when its episodes are committed; sessions settle their own
    /// messages later (the standalone worker).
    Detached,
    /// The batch returns when everything is settled (a host that deletes on return).
    Awaited,
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
            process_instance(shared, queue, instance_id, messages, busy, permit, sessions).await
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

/// What to do with each consumed message once the episode is decided.
enum Disposition {
    Delete,
    /// Seen again after the delay, as another delivery (a retry).
    Defer,
    /// An event early for its instance's start: held, not a failed delivery.
    Hold,
    DeadLetter(String),
}

async fn process_instance(
    shared: Arc<Shared>,
    queue: QueueName,
    instance_id: String,
    messages: Vec<(Received, OrchestratorMessage)>,
    busy: InstanceGuard,
    permit: OwnedSemaphorePermit,
    sessions: Sessions,
) {
    let redelivered = messages.iter().any(|(r, _)| r.dequeue_count > 1);
    let first = match shared.instance_cache.take(&instance_id) {
        // After a redelivery the episode starts from storage (re-derivation needs it).
        Some(cached) if !redelivered => {
            match run_instance_episode(&shared, &instance_id, &messages, Some(cached)).await {
                Ok(Attempt::Done(decide, session)) => Some(Ok((decide, session))),
                Ok(Attempt::Unconfirmed) => None,
                // Not a stale cache (the commit may have landed and its sends failed): the
                // messages must come back for re-derivation, as without a cache.
                Err(error) => Some(Err(error)),
            }
        }
        _ => None,
    };
    let outcome = match first {
        Some(outcome) => outcome,
        None => match run_instance_episode(&shared, &instance_id, &messages, None).await {
            Ok(Attempt::Done(decide, session)) => Ok((decide, session)),
            Ok(Attempt::Unconfirmed) => Err(Error::Transient("unreachable: no cache".into())),
            Err(error) => Err(error),
        },
    };
    let (decide, session) = match outcome {
        Ok(outcome) => outcome,
        Err(Error::Conflict(reason)) => {
            debug!(
                reason,
                "episode lost a race; its messages will be seen again"
            );
            settle(
                &shared,
                &queue,
                &messages,
                |_| Disposition::Defer,
                Duration::ZERO,
            )
            .await;
            return;
        }
        Err(error) => {
            warn!(%error, "episode failed; its messages will be retried");
            let delay = shared.options.defer_delay;
            settle(&shared, &queue, &messages, |_| Disposition::Defer, delay).await;
            return;
        }
    };
    let Some(session) = session else {
        settle(
            &shared,
            &queue,
            &messages,
            decide,
            shared.options.defer_delay,
        )
        .await;
        return;
    };
    let slots = shared.session_slots.clone();
    let finish = async move {
        let mut messages = messages;
        let Session {
            state,
            etag,
            history,
            activities,
            ready,
        } = *session;
        let durable = inline_session::run(
            &shared,
            &instance_id,
            (state, etag, history),
            activities,
            ready,
            (busy, &queue, &mut messages),
        )
        .await;
        let delay = shared.options.defer_delay;
        if durable {
            settle(&shared, &queue, &messages, decide, delay).await;
        } else {
            // Keep the messages: when they come back, the work is re-derived from history.
            settle(&shared, &queue, &messages, |_| Disposition::Defer, delay).await;
        }
    };
    match sessions {
        Sessions::Detached => {
            // A session lasts as long as its activities: it gives its episode permit back
            // (so long activities do not starve other instances) and holds a session slot.
            let Ok(slot) = slots.acquire_owned().await else {
                return;
            };
            drop(permit);
            tokio::spawn(
                async move {
                    finish.await;
                    drop(slot);
                }
                .in_current_span(),
            );
        }
        Sessions::Awaited => {
            finish.await;
            drop(permit);
        }
    }
}

type Decider = Box<dyn Fn(&OrchestratorMessage) -> Disposition + Send + Sync>;

/// A committed episode whose activities run in this process.
struct Session {
    state: InstanceState,
    etag: ETag,
    history: Vec<HistoryEvent>,
    activities: InlineActivities,
    ready: Vec<NewEvent>,
}

/// Runs and commits one episode. Returns how each consumed message is to be settled, and
/// the inline session to run first when the episode decided activities this process runs.
async fn run_instance_episode(
    shared: &Arc<Shared>,
    instance_id: &str,
    messages: &[(Received, OrchestratorMessage)],
    cached: Option<LoadedInstance>,
) -> Result<Attempt, Error> {
    let now = shared.clock.now();
    let from_cache = cached.is_some();
    let loaded = match cached {
        Some(cached) => Some(cached),
        None => load(shared, instance_id, messages).await?,
    };
    let start = messages.iter().find_map(|(_, m)| match &m.event.kind {
        EventKind::ExecutionStarted { execution_id, .. } => Some((m, execution_id.clone())),
        _ => None,
    });
    let (mut state, etag, mut history) = match loaded {
        Some(loaded) => (loaded.state, Some(loaded.etag), loaded.history),
        None => match &start {
            // A sub-orchestration or a fire-and-forget start creates its instance here.
            Some((message, _)) => (new_state(instance_id, message, now), None, Vec::new()),
            None => {
                let decide: Decider = Box::new(|m| {
                    Disposition::DeadLetter(format!(
                        "a {} message for instance '{}', which does not exist",
                        m.event.kind.type_name(),
                        m.instance_id
                    ))
                });
                return Ok(Attempt::Done(decide, None));
            }
        },
    };
    if messages
        .iter()
        .any(|(received, _)| received.dequeue_count > 1)
        && etag.is_some()
    {
        // A message came back: a previous attempt may have died between its commit and its
        // sends, or during an inline session. Re-send what the committed history decided
        // (duplicates are harmless).
        let pending = pending_messages(&state, &history, shared.backend.control_partitions(), now);
        debug!(
            count = pending.len(),
            "re-sending decided messages after a redelivery"
        );
        for outbound in &pending {
            shared.backend.send(outbound).await?;
        }
        shared.idle.wake();
    }
    if from_cache && start.is_some() {
        // A start decides from the current state (new execution, or refused): confirm it.
        return Ok(Attempt::Unconfirmed);
    }
    let mut replace_history = false;
    if let Some((message, execution_id)) = &start {
        if execution_id != &state.execution_id {
            let finished =
                state.status.is_terminal() || state.status == RuntimeStatus::ContinuedAsNew;
            let allowed = StartCondition::allows(message.start_if.as_ref(), &state.execution_id);
            if !allowed {
                // Its caller was refused, or another start won: it is dropped below as a
                // message for another execution.
                info!(
                    execution_id,
                    current = %state.execution_id,
                    "a start that was refused or lost a race is dropped"
                );
            } else if finished {
                state = new_state(instance_id, message, now);
                history = Vec::new();
                replace_history = true;
            } else {
                refuse_duplicate_start(shared, message, &state).await;
            }
        }
    }
    let current = state.execution_id.clone();
    let mut events = Vec::new();
    for (_, message) in messages {
        match &message.execution_id {
            Some(execution) if execution != &current => {
                debug!(execution, "dropping a message for another execution")
            }
            _ => events.push(message.event.clone()),
        }
    }
    let waiting_for_start = !replace_history
        && history.is_empty()
        && !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }));
    let waiting_for_next_execution =
        state.status == RuntimeStatus::ContinuedAsNew && !replace_history;
    let drops_messages = messages.len() != events.len();
    if from_cache && (waiting_for_start || waiting_for_next_execution || drops_messages) {
        // Settling without a commit must not rest on an unconfirmed cache.
        return Ok(Attempt::Unconfirmed);
    }
    if waiting_for_start || waiting_for_next_execution {
        // Events that raced ahead of the (next) start wait for it; stale ones go.
        let decide: Decider = Box::new(move |m| match m.execution_id {
            None => Disposition::Hold,
            Some(_) => Disposition::Delete,
        });
        return Ok(Attempt::Done(decide, None));
    }
    let base = Base {
        state: &state,
        etag: etag.as_ref(),
        history: &history,
        replace_history,
    };
    let decided = match decide(shared, instance_id, &base, events) {
        Decision::Changed(decided) => *decided,
        _ if from_cache => return Ok(Attempt::Unconfirmed),
        Decision::NotStarted => return Ok(Attempt::Done(Box::new(|_| Disposition::Defer), None)),
        Decision::Unchanged => {
            // Confirmed from storage: keep it for the next episode.
            if let Some(etag) = etag.clone() {
                shared
                    .instance_cache
                    .put(instance_cache::entry(state, etag, history));
            }
            return Ok(Attempt::Done(Box::new(|_| Disposition::Delete), None));
        }
    };
    let (decided, running, ready) = run_quick_activities(shared, instance_id, &base, decided).await;
    let committed = match commit(shared, instance_id, &base, decided).await {
        Ok(committed) => committed,
        // The cached row changed or was purged: nothing was written, redo from storage.
        Err(Error::Conflict(_) | Error::NotFound(_)) if from_cache => {
            return Ok(Attempt::Unconfirmed)
        }
        Err(error) => return Err(error),
    };
    if replace_history {
        history.clear();
    }
    history.extend(committed.new_events);
    let activities = match running {
        Some(running) => running,
        None => InlineActivities::start(shared, committed.inline),
    };
    let session = if activities.is_empty() && ready.is_empty() {
        shared.instance_cache.put(instance_cache::entry(
            committed.state,
            committed.etag,
            history,
        ));
        None
    } else {
        Some(Box::new(Session {
            state: committed.state,
            etag: committed.etag,
            history,
            activities,
            ready,
        }))
    };
    Ok(Attempt::Done(Box::new(|_| Disposition::Delete), session))
}

/// An episode that only started activities this process runs: they start before its
/// commit, and if they all finish within `inline_merge_window` the episode their results
/// cause is decided too and both are committed as one (one table transaction instead of
/// two for a short orchestration). If the process dies first, nothing was written and the
/// messages come back: the activities run again (at least once, as always). Returns what
/// to commit, the activities still running (`None`: start `Committed::inline` after the
/// commit) and results already in hand.
async fn run_quick_activities(
    shared: &Arc<Shared>,
    instance_id: &str,
    base: &Base<'_>,
    mut decided: Decided,
) -> (Decided, Option<InlineActivities>, Vec<NewEvent>) {
    let window = shared.options.inline_merge_window;
    if decided.inline.is_empty() || !decided.queued.is_empty() || window.is_zero() {
        return (decided, None, Vec::new());
    }
    let mut running = InlineActivities::start(shared, std::mem::take(&mut decided.inline));
    let (results, all_done) = running.results_by(shared, Instant::now() + window).await;
    if !all_done {
        return (decided, Some(running), results);
    }
    let mut so_far: Vec<HistoryEvent> = if base.replace_history {
        Vec::new()
    } else {
        base.history.to_vec()
    };
    so_far.extend(decided.new_events.iter().cloned());
    let after = Base {
        state: &decided.state,
        etag: base.etag,
        history: &so_far,
        replace_history: false,
    };
    match decide(shared, instance_id, &after, results.clone()) {
        Decision::Changed(next) => (decided.then(*next), None, Vec::new()),
        // Not expected for completions of the activities just decided; the session
        // delivers them after the commit instead.
        Decision::Unchanged | Decision::NotStarted => (decided, Some(running), results),
    }
}

/// The instance from storage. A first delivery of a start usually finds a brand-new
/// instance: its state row alone (a point read) tells whether it has any history, and the
/// partition is read only if it has.
async fn load(
    shared: &Shared,
    instance_id: &str,
    messages: &[(Received, OrchestratorMessage)],
) -> Result<Option<LoadedInstance>, Error> {
    let fresh_start = messages
        .iter()
        .all(|(received, _)| received.dequeue_count <= 1)
        && messages
            .iter()
            .any(|(_, m)| matches!(m.event.kind, EventKind::ExecutionStarted { .. }));
    if fresh_start {
        match shared.backend.read_state(instance_id).await? {
            None => return Ok(None),
            Some((state, etag)) if state.history_len == 0 => {
                return Ok(Some(LoadedInstance {
                    state,
                    etag,
                    history: Vec::new(),
                }))
            }
            Some(_) => {}
        }
    }
    shared.backend.load_instance(instance_id).await
}

/// How an episode attempt ended.
enum Attempt {
    /// Decided (and committed, when it changed anything).
    Done(Decider, Option<Box<Session>>),
    /// Built on the cache and not confirmed by a commit: to be redone from storage.
    Unconfirmed,
}

/// The state row of an instance created by a start message.
fn new_state(
    instance_id: &str,
    message: &OrchestratorMessage,
    now: chrono::DateTime<chrono::Utc>,
) -> InstanceState {
    let (name, version, execution_id, input, parent, trace_parent) = match &message.event.kind {
        EventKind::ExecutionStarted {
            name,
            version,
            execution_id,
            input,
            parent,
            trace_parent,
            ..
        } => (
            name.clone(),
            version.clone(),
            execution_id.clone(),
            input.clone(),
            parent.clone(),
            trace_parent.clone(),
        ),
        _ => Default::default(),
    };
    InstanceState {
        instance_id: instance_id.to_owned(),
        name,
        version,
        execution_id,
        status: RuntimeStatus::Pending,
        input,
        output: serde_json::Value::Null,
        failure: None,
        custom_status: serde_json::Value::Null,
        created_at: now,
        updated_at: now,
        parent,
        trace_parent,
        history_len: 0,
        format_version: HISTORY_FORMAT_VERSION,
    }
}

/// A start for an instance that is still running: the parent (if any) learns it failed.
async fn refuse_duplicate_start(
    shared: &Shared,
    message: &OrchestratorMessage,
    state: &InstanceState,
) {
    warn!(status = %state.status, "a start for an instance that is still running was refused");
    if let EventKind::ExecutionStarted {
        parent: Some(parent),
        ..
    } = &message.event.kind
    {
        let failure = FailureDetails::non_retryable(
            "InstanceAlreadyRunning",
            format!(
                "instance '{}' is already {}",
                state.instance_id, state.status
            ),
        );
        let reply = to_instance(
            &parent.instance_id,
            Some(&parent.execution_id),
            EventKind::SubOrchestrationFailed {
                scheduled_id: parent.scheduled_id,
                failure,
            },
            shared.clock.now(),
            None,
            shared.backend.control_partitions(),
        );
        if let Err(error) = shared.backend.send(&reply).await {
            warn!(%error, "could not tell the parent");
        }
    }
}

async fn settle(
    shared: &Shared,
    queue: &QueueName,
    messages: &[(Received, OrchestratorMessage)],
    decide: impl Fn(&OrchestratorMessage) -> Disposition,
    defer_delay: std::time::Duration,
) {
    for (received, message) in messages {
        let result = match decide(message) {
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

/// Holds an event that came before its instance's start: a copy that says since when it
/// has waited goes back on the queue after `delay`, and this delivery is deleted, so the
/// waiting does not use up the poison budget. Past `early_event_hold` it is dead-lettered.
async fn hold(
    shared: &Shared,
    queue: &QueueName,
    received: &Received,
    message: &OrchestratorMessage,
    delay: std::time::Duration,
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

async fn dead_letter(shared: &Shared, queue: &QueueName, received: &Received, reason: &str) {
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
async fn poison(
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
        let failure = FailureDetails::non_retryable("PoisonMessage", reason);
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

//! One instance's turn: the messages delivered for it, taken in by the intake rules
//! (`intake.rs`), replayed over its state and history, committed under the state row's
//! ETag, its inline activities run, and the messages settled (`settling.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn, Instrument};

use super::episode_effects::{pending_messages, to_instance};
use super::inline_activities::InlineActivities;
use super::instance_locks::InstanceGuard;
use super::intake::{self, Intake, Replay};
use super::settling::{settle, Disposition};
use super::step_group::{self, Group};
use super::turn::{Decision, InstanceTurn};
use super::{inline_session, Shared};
use crate::backend::{Error, LoadedInstance, OrchestratorMessage, QueueName, Received};
use crate::history::{EventKind, FailureDetails, FailureKind};
use crate::replay::NewEvent;
use crate::status::InstanceState;

/// Whether a batch waits for the inline sessions its episodes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sessions {
    /// The batch returns when its episodes are committed; sessions settle their own
    /// messages later (the standalone worker).
    Detached,
    /// The batch returns when everything is settled (a host that deletes on return).
    Awaited,
}

pub(crate) async fn process_instance(
    shared: Arc<Shared>,
    queue: QueueName,
    instance_id: String,
    messages: Vec<(Received, OrchestratorMessage)>,
    busy: InstanceGuard,
    permit: OwnedSemaphorePermit,
    sessions: Sessions,
) {
    let redelivered = messages.iter().any(|(r, _)| r.dequeue_count > 1);
    // An instance this process just created starts from its state row as created, like a
    // cached one (the commit's If-Match confirms it; a conflict redoes it from storage).
    let cached = match shared.instance_cache.take(&instance_id) {
        Some(cached) => Some(cached),
        None => shared
            .backend
            .take_created(&instance_id)
            .await
            .map(|(state, etag)| LoadedInstance {
                state,
                etag,
                history: Vec::new(),
            }),
    };
    let first = match cached {
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
            turn,
            activities,
            ready,
        } = *session;
        let durable = inline_session::run(
            &shared,
            &instance_id,
            turn,
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
    turn: InstanceTurn,
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
    let snapshot = match cached {
        Some(cached) => Some(cached),
        None => load(shared, instance_id, messages).await?,
    };
    if let Some(loaded) = &snapshot {
        if !from_cache && messages.iter().any(|(r, _)| r.dequeue_count > 1) {
            resend_decided(shared, loaded, now).await?;
        }
    }
    let delivered: Vec<&OrchestratorMessage> = messages.iter().map(|(_, m)| m).collect();
    let replay = match intake::take_in(instance_id, snapshot, &delivered, from_cache, now) {
        Intake::Unconfirmed => return Ok(Attempt::Unconfirmed),
        Intake::NoInstance => {
            let decide: Decider = Box::new(|m| {
                Disposition::DeadLetter(format!(
                    "a {} message for instance '{}', which does not exist",
                    m.event.kind.type_name(),
                    m.instance_id
                ))
            });
            return Ok(Attempt::Done(decide, None));
        }
        Intake::AwaitStart => {
            // Events that raced ahead of the (next) start wait for it; stale ones go.
            let decide: Decider = Box::new(move |m| match m.execution_id {
                None => Disposition::Hold,
                Some(_) => Disposition::Delete,
            });
            return Ok(Attempt::Done(decide, None));
        }
        Intake::Replay(replay) => replay,
    };
    if replay.dropped_start {
        info!(
            current = %replay.turn.state.execution_id,
            "a start that was refused or lost a race is dropped"
        );
    }
    if replay.dropped > 0 {
        debug!(
            count = replay.dropped,
            "dropping messages for another execution"
        );
    }
    if let Some(start) = &replay.refused_start {
        refuse_duplicate_start(shared, start, &replay.turn.state).await;
    }
    let Replay {
        turn: mut instance,
        events,
        ..
    } = *replay;
    let decided = match instance.decide(shared, events) {
        Decision::Changed(decided) => *decided,
        _ if from_cache => return Ok(Attempt::Unconfirmed),
        Decision::NotStarted => return Ok(Attempt::Done(Box::new(|_| Disposition::Defer), None)),
        Decision::Unchanged => {
            // Confirmed from storage: keep it for the next episode.
            if let Some(confirmed) = instance.into_committed() {
                shared.instance_cache.put(confirmed);
            }
            return Ok(Attempt::Done(Box::new(|_| Disposition::Delete), None));
        }
    };
    // The activities it decided run before the commit, and the steps they lead to join it.
    let Group {
        decided,
        running,
        ready,
    } = step_group::run_before_commit(shared, &instance, decided).await;
    let inline = match instance.commit(shared, decided).await {
        Ok(inline) => inline,
        Err(error) => {
            // What runs was decided by steps that were not written: stop it.
            if let Some(running) = running {
                running.abandon();
            }
            return match error {
                // The cached row changed or was purged: nothing was written, redo from storage.
                Error::Conflict(_) | Error::NotFound(_) if from_cache => Ok(Attempt::Unconfirmed),
                error => Err(error),
            };
        }
    };
    let activities = match running {
        Some(running) => running,
        None => InlineActivities::start(shared, inline),
    };
    let session = if activities.is_empty() && ready.is_empty() {
        if let Some(committed) = instance.into_committed() {
            shared.instance_cache.put(committed);
        }
        None
    } else {
        Some(Box::new(Session {
            turn: instance,
            activities,
            ready,
        }))
    };
    Ok(Attempt::Done(Box::new(|_| Disposition::Delete), session))
}

/// A message came back: a previous attempt may have died between its commit and its sends,
/// or during an inline session. Re-sends what the committed history decided (duplicates
/// are harmless).
async fn resend_decided(
    shared: &Shared,
    loaded: &LoadedInstance,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let pending = pending_messages(
        &loaded.state,
        &loaded.history,
        shared.registry.chains(),
        shared.backend.control_partitions(),
        now,
    );
    debug!(
        count = pending.len(),
        "re-sending decided messages after a redelivery"
    );
    for outbound in &pending {
        shared.backend.send(outbound).await?;
    }
    shared.idle.wake();
    Ok(())
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
        let failure = FailureDetails::of(
            FailureKind::InstanceAlreadyRunning,
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

//! Inline activities: after an episode commits, the activities it decided run in this
//! process and their results feed the next episode directly, with the instance's state,
//! history and ETag kept in memory, until the orchestration waits for something else.
//!
//! Durability comes from the messages that started the session: they stay locked (not
//! deleted) until every inline result is committed. If the process dies, they come back
//! with a dequeue count above one and the worker re-derives the unanswered activities from
//! history and sends them through the work-item queue. While activities run, the session
//! renews the messages' lease every `lease_renewal`; if a renewal fails, the activities
//! still running are handed over the same way, explicitly. Each commit (a step, or a group
//! of steps: `step_group`) is conditional on the state row's ETag, so a concurrent writer
//! makes the session reload, never overwrite.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::inline_activities::InlineActivities;
use super::instance_locks::InstanceGuard;
use super::step_group::{self, Group};
use super::turn::{Decision, InstanceTurn};
use super::{lease, Shared};
use crate::backend::{
    ActivityWorkItem, Error, OrchestratorMessage, Outbound, QueueMessage, QueueName, Received,
};
use crate::replay::NewEvent;

/// Conflicts (another writer committed first) a session absorbs by reloading.
const MAX_RELOADS: usize = 5;

/// Runs a committed episode's inline activities and the episodes that follow. `ready`:
/// results already in hand, delivered first. Returns true when everything decided is
/// durable (committed, or handed to the work-item queue); false when the caller must let
/// its messages come back so the work is re-derived.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    instance_id: &str,
    mut known: InstanceTurn,
    mut activities: InlineActivities,
    ready: Vec<NewEvent>,
    (busy, queue, messages): (
        InstanceGuard,
        &QueueName,
        &mut [(Received, OrchestratorMessage)],
    ),
) -> bool {
    // Renewals off: hand the activities over before the messages' lock runs out.
    let renewal = lease::renewal_period(&shared.options);
    let period = renewal.unwrap_or(shared.options.lock_timeout / 2);
    let mut renew_at = Instant::now() + period;
    let mut stop = shared.stop.subscribe();
    let mut pending = (!ready.is_empty()).then_some(ready);
    let mut busy = Some(busy);
    loop {
        let events = match pending.take() {
            Some(events) => events,
            None if activities.is_empty() => break,
            None => {
                // The instance is free while its activities run: an event or a terminate
                // for it is not held up by them (their commit makes this session reload).
                drop(busy.take());
                let results = tokio::select! {
                    results = activities.next_results(shared, renew_at) => results,
                    // The worker stops: what still runs goes to the work-item queue.
                    () = stopped(&mut stop) => {
                        return hand_over(shared, activities.abandon().into_iter()).await;
                    }
                };
                busy = Some(shared.instance_locks.lock(instance_id).await);
                match results {
                    Some(events) => events,
                    None => {
                        // Still running: keep the messages hidden for another lock.
                        let receipts = messages.iter_mut().map(|(m, _)| &mut m.receipt);
                        if renewal.is_none() || !lease::renew_all(shared, queue, receipts).await {
                            return hand_over(shared, activities.abandon().into_iter()).await;
                        }
                        renew_at = Instant::now() + period;
                        continue;
                    }
                }
            }
        };
        // Grouping runs the next steps' activities itself: only when no others are running.
        let grouping = activities.is_empty();
        match commit_results(shared, instance_id, &mut known, events, grouping).await {
            // A finished or terminated instance takes no more results: the activities
            // still running are stopped rather than handed over.
            Ok(_) if known.state.status.is_terminal() => {
                activities.abandon();
                break;
            }
            Ok(committed) => {
                match committed.running {
                    Some(running) => activities = running,
                    None => activities.spawn_all(shared, committed.inline),
                }
                pending = (!committed.ready.is_empty()).then_some(committed.ready);
            }
            Err(events) => {
                // The results could not be committed: send them as messages instead, and
                // the activities still running through the work-item queue.
                let reported = report(shared, instance_id, &known, events).await;
                return hand_over(shared, activities.abandon().into_iter()).await && reported;
            }
        }
    }
    // Everything committed: the next episode of this instance can start from here.
    if let Some(committed) = known.into_committed() {
        shared.instance_cache.put(committed);
    }
    true
}

/// Returns once the worker is asked to stop.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The sender lives in `Shared`, as long as any session: an error cannot happen.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// What a commit of results leaves to the session.
#[derive(Default)]
struct Committed {
    /// Inline activities the last committed step decided, to start.
    inline: Vec<ActivityWorkItem>,
    /// Or: the group's last activities, already running.
    running: Option<InlineActivities>,
    /// Results in hand that the group did not take, to deliver next.
    ready: Vec<NewEvent>,
}

/// Commits results, with the steps they lead to when `grouping` (see `step_group`); on a
/// conflict, reloads the instance and tries again. Returns what is left to run, or the
/// events it could not commit.
async fn commit_results(
    shared: &Arc<Shared>,
    instance_id: &str,
    known: &mut InstanceTurn,
    events: Vec<NewEvent>,
    grouping: bool,
) -> Result<Committed, Vec<NewEvent>> {
    for _ in 0..MAX_RELOADS {
        let decided = match known.decide(shared, events.clone()) {
            Decision::Changed(decided) => *decided,
            Decision::Unchanged | Decision::NotStarted => return Ok(Committed::default()),
        };
        let Group {
            decided,
            running,
            ready,
        } = if grouping {
            step_group::run_before_commit(shared, known, decided).await
        } else {
            Group::ended(decided)
        };
        let error = match known.commit(shared, decided).await {
            Ok(inline) => {
                return Ok(Committed {
                    inline,
                    running,
                    ready,
                })
            }
            Err(error) => error,
        };
        // What runs was decided by steps that were not written: stop it.
        if let Some(running) = running {
            running.abandon();
        }
        match error {
            Error::Conflict(reason) => {
                debug!(reason, "inline results met a concurrent commit; reloading");
                match shared.backend.load_instance(instance_id).await {
                    Ok(Some(loaded)) if loaded.state.execution_id == known.state.execution_id => {
                        *known = InstanceTurn::loaded(loaded);
                    }
                    // Purged, or a new execution: these results belong to nobody now.
                    Ok(_) => return Ok(Committed::default()),
                    Err(error) => {
                        warn!(%error, "reloading after a conflict failed");
                        return Err(events);
                    }
                }
            }
            error => {
                warn!(%error, "committing inline results failed");
                return Err(events);
            }
        }
    }
    Err(events)
}

/// Sends the work items of activities the session stops waiting for.
async fn hand_over(shared: &Shared, items: impl Iterator<Item = ActivityWorkItem>) -> bool {
    let mut all_sent = true;
    for item in items {
        debug!(activity = %item.name, id = item.scheduled_id, "handing an inline activity to the work-item queue");
        let outbound = Outbound {
            queue: QueueName::Work,
            message: QueueMessage::Activity(item),
            visible_at: None,
        };
        if let Err(error) = shared.backend.send(&outbound).await {
            warn!(%error, "handing over an activity failed; it will be re-derived");
            all_sent = false;
        }
    }
    shared.idle.wake();
    all_sent
}

/// Sends results as control messages (as the activity worker does).
async fn report(
    shared: &Shared,
    instance_id: &str,
    known: &InstanceTurn,
    events: Vec<NewEvent>,
) -> bool {
    let mut all_sent = true;
    for event in events {
        let message = super::episode_effects::to_instance(
            instance_id,
            Some(&known.state.execution_id),
            event.kind,
            event.timestamp,
            None,
            shared.backend.control_partitions(),
        );
        if let Err(error) = shared.backend.send(&message).await {
            warn!(%error, "reporting an inline result failed; it will be re-derived");
            all_sent = false;
        }
    }
    all_sent
}

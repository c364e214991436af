//! Group commit: consecutive inline steps of one instance are decided and run before any of
//! them is committed, and written as one commit (one table transaction) when the group
//! ends — a chain of quick activities costs a fraction of a transaction per step.
//!
//! The durability window: the steps of a group are in memory only until its commit, at most
//! `group_commit_window` after the group's first decision and [`MAX_STEPS_PER_COMMIT`]
//! steps. Nothing of them is visible before the commit (status, history, outputs). If the
//! process dies first, nothing was written: the messages that caused the group are still
//! locked, come back, and the steps are replayed and their activities run again — at least
//! once, as activities always are.

use std::sync::Arc;

use tokio::time::Instant;

use super::inline_activities::InlineActivities;
use super::turn::{Decided, Decision, InstanceTurn};
use super::Shared;
use crate::replay::NewEvent;

/// Steps one commit carries at most, so one slow replay of a long group cannot hold back
/// an instance's progress, and a crash re-runs a bounded amount of work.
pub(crate) const MAX_STEPS_PER_COMMIT: usize = 64;

/// A group ready to commit.
pub(crate) struct Group {
    /// The steps decided, as one commit.
    pub decided: Decided,
    /// Activities of the last step still running when the group ended (`None`: start the
    /// ones the commit returns, if any).
    pub running: Option<InlineActivities>,
    /// Results already in hand that the group did not take: delivered after the commit.
    pub ready: Vec<NewEvent>,
}

impl Group {
    /// A group of the one step `decided`.
    pub(crate) fn ended(decided: Decided) -> Self {
        Self {
            decided,
            running: None,
            ready: Vec::new(),
        }
    }
}

/// Runs `decided`'s inline activities before it is committed and, while they finish within
/// the window, decides the steps their results cause over `turn` as it will be once the
/// group is committed. Ends at a step that sends messages (they must follow their
/// commit), a finished instance, an activity still running at the window's end, or when
/// the next step would make a commit that fits one atomic write (one table transaction)
/// not fit it (a step already past it, such as a big fan-out, takes the next one in).
pub(crate) async fn run_before_commit(
    shared: &Arc<Shared>,
    turn: &InstanceTurn,
    mut decided: Decided,
) -> Group {
    let window = shared.options.group_commit_window;
    // A turn that writes its instance's first row (its start overtook the row the creator
    // writes) commits first: the creator's insert usually wins that race, and activities
    // run before a commit that then fails would run again on the redo.
    if window.is_zero() || turn.etag.is_none() {
        return Group::ended(decided);
    }
    let deadline = Instant::now() + window;
    let events_per_commit = shared.backend.events_per_atomic_commit();
    // The turn as it will be once the group so far is committed.
    let mut ahead = turn.after(&decided);
    for _ in 0..MAX_STEPS_PER_COMMIT {
        if decided.inline.is_empty()
            || !decided.queued.is_empty()
            || decided.state.status.is_terminal()
        {
            break;
        }
        let mut running = InlineActivities::start(shared, std::mem::take(&mut decided.inline));
        let (results, all_done) = running.results_by(shared, deadline).await;
        if !all_done {
            return Group {
                decided,
                running: Some(running),
                ready: results,
            };
        }
        let next = match ahead.decide(shared, results.clone()) {
            Decision::Changed(next) => *next,
            // Not expected for completions of the activities just decided; the session
            // delivers them after the commit instead.
            Decision::Unchanged | Decision::NotStarted => return with_results(decided, results),
        };
        let fits = |events: usize| events <= events_per_commit;
        if fits(decided.new_events.len()) && !fits(decided.new_events.len() + next.new_events.len())
        {
            // One atomic write would become several: commit what fits; the results are
            // decided again over the committed turn.
            return with_results(decided, results);
        }
        ahead.advance(&next);
        decided = decided.then(next);
    }
    Group::ended(decided)
}

fn with_results(decided: Decided, results: Vec<NewEvent>) -> Group {
    Group {
        decided,
        running: None,
        ready: results,
    }
}

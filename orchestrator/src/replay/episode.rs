//! The entry point of the replay core: one episode, or the rewind of a failed execution
//! when a rewind request is among the new events.

use super::engine::{finished_before, replay_over};
use super::{rewind, Episode, ExecutionOutcome, ReplayInput};
use crate::registry::Registry;

/// Runs one episode. Pure: same input, same episode.
pub fn run_episode(registry: &Registry, input: ReplayInput<'_>) -> Episode {
    let committed = input.history.len();
    let replayed = crate::history::as_replayed(input.history);
    if let Some(reason) = rewind::requested(&input.new_events) {
        if let Some(ExecutionOutcome::Failed(_)) = finished_before(&replayed) {
            return rewind::rewind(registry, &input, &replayed, committed, reason);
        }
    }
    replay_over(registry, &input, &replayed, committed)
}

//! The pure replay core: (history, new events) → (new history events, actions).
//!
//! No I/O and no clock: the episode time comes in with the input, and everything the code
//! learns about the world comes from history.

mod action;
mod engine;
mod episode;
mod inbox;
mod nondeterminism;
mod rewind;
pub(crate) mod state;

pub use crate::history::NewEvent;
pub use crate::history::StartInfo;
pub use action::Action;
pub use engine::{Episode, ExecutionOutcome, ReplayInput};
pub use episode::run_episode;
pub use inbox::accept_new_events;
pub use nondeterminism::{NondeterminismError, NONDETERMINISM_CODE};

//! What an instance has done: the versioned history event model.

mod event;
mod failure;
mod new_event;

pub use event::{EventKind, HistoryEvent, ParentRef, HISTORY_FORMAT_VERSION};
pub use failure::{FailureDetails, FailureKind};
pub use new_event::NewEvent;

//! What an instance has done: the versioned history event model.

mod client_json;
mod event;
mod failure;
mod new_event;
mod rewind;
mod start_info;

pub use client_json::decode_client_value;
pub use event::{EventKind, HistoryEvent, ParentRef, HISTORY_FORMAT_VERSION};
pub(crate) use failure::panic_message;
pub use failure::{FailureDetails, FailureKind, ENGINE_FAILURE_KINDS};
pub use new_event::NewEvent;
pub use rewind::as_replayed;
pub use start_info::StartInfo;

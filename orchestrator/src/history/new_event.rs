//! An event on its way into an instance: carried by a queue message, not yet in history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::EventKind;

/// An event entering the instance (from a message), not yet in history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// When it arrived.
    pub timestamp: DateTime<Utc>,
    /// What it is.
    pub kind: EventKind,
}

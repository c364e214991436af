//! The start data of an execution, as its `ExecutionStarted` event records it: the one place
//! that takes the event apart (the replay core, the state row of a new execution).

use serde_json::Value;

use super::{EventKind, ParentRef};

/// The start data of the execution, from its `ExecutionStarted` event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartInfo {
    /// Orchestration name.
    pub name: String,
    /// Orchestration version.
    pub version: String,
    /// Execution id.
    pub execution_id: String,
    /// Input.
    pub input: Value,
    /// Parent, for a sub-orchestration.
    pub parent: Option<ParentRef>,
    /// Trace context.
    pub trace_parent: Option<String>,
}

impl StartInfo {
    /// The start data of an `ExecutionStarted` event; `None` for any other event.
    pub fn from_event(kind: &EventKind) -> Option<Self> {
        match kind {
            EventKind::ExecutionStarted {
                name,
                version,
                execution_id,
                input,
                parent,
                trace_parent,
                ..
            } => Some(Self {
                name: name.clone(),
                version: version.clone(),
                execution_id: execution_id.clone(),
                input: input.clone(),
                parent: parent.clone(),
                trace_parent: trace_parent.clone(),
            }),
            _ => None,
        }
    }
}

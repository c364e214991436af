//! The start data of an execution, as its `ExecutionStarted` event records it: the one place
//! that takes the event apart (the replay core, the state row of a new execution) and puts
//! it together (a client's start, continue-as-new, a sub-orchestration).

use serde_json::Value;

use super::{EventKind, ParentRef, HISTORY_FORMAT_VERSION};

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
    /// A top-level start of orchestration `name` (default version) as execution
    /// `execution_id` with `input`.
    pub fn new(name: &str, execution_id: &str, input: Value) -> Self {
        Self {
            name: name.to_owned(),
            execution_id: execution_id.to_owned(),
            input,
            ..Self::default()
        }
    }

    /// The `ExecutionStarted` event of this start, in the current history format.
    pub fn into_event(self) -> EventKind {
        EventKind::ExecutionStarted {
            name: self.name,
            version: self.version,
            execution_id: self.execution_id,
            input: self.input,
            parent: self.parent,
            format_version: HISTORY_FORMAT_VERSION,
            trace_parent: self.trace_parent,
        }
    }

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

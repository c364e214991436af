//! Runtime statuses and the status a client reads, formatted as Durable Functions does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{
    EventKind, FailureDetails, HistoryEvent, ParentRef, StartInfo, HISTORY_FORMAT_VERSION,
};

/// The runtime status of an instance (names as in Durable Functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RuntimeStatus {
    /// Created; its first episode has not run yet.
    Pending,
    /// Running (waiting for activities, timers or events).
    Running,
    /// Finished with an output.
    Completed,
    /// Restarted itself; a new execution follows.
    ContinuedAsNew,
    /// Failed.
    Failed,
    /// Terminated by a client.
    Terminated,
    /// Suspended by a client.
    Suspended,
}

impl RuntimeStatus {
    /// Whether the instance has finished (Completed, Failed or Terminated).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Terminated)
    }

    /// All statuses.
    pub const ALL: [RuntimeStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::ContinuedAsNew,
        Self::Failed,
        Self::Terminated,
        Self::Suspended,
    ];

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::ContinuedAsNew => "ContinuedAsNew",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
            Self::Suspended => "Suspended",
        }
    }
}

impl std::str::FromStr for RuntimeStatus {
    type Err = String;

    /// Parses a status name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown runtime status '{s}'; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authoritative state of an instance (the state row of its partition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Instance id.
    pub instance_id: String,
    /// Orchestration name.
    pub name: String,
    /// Orchestration version.
    #[serde(default)]
    pub version: String,
    /// Current execution id.
    pub execution_id: String,
    /// Runtime status.
    pub status: RuntimeStatus,
    /// Input of the current execution.
    #[serde(default)]
    pub input: Value,
    /// Output, once completed.
    #[serde(default)]
    pub output: Value,
    /// Failure, once failed.
    #[serde(default)]
    pub failure: Option<FailureDetails>,
    /// Custom status set by the code.
    #[serde(default)]
    pub custom_status: Value,
    /// When the instance was created.
    pub created_at: DateTime<Utc>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
    /// The parent, for a sub-orchestration.
    #[serde(default)]
    pub parent: Option<ParentRef>,
    /// W3C trace context of the start request.
    #[serde(default)]
    pub trace_parent: Option<String>,
    /// Number of history events of the current execution (the next sequence number).
    #[serde(default)]
    pub history_len: u64,
    /// The history format version that wrote the state.
    #[serde(default)]
    pub format_version: u32,
}

impl InstanceState {
    /// The Pending state row of an execution that `started` (an `ExecutionStarted` event)
    /// begins; any other event gives an empty row.
    pub fn started(instance_id: &str, started: &EventKind, now: DateTime<Utc>) -> Self {
        let StartInfo {
            name,
            version,
            execution_id,
            input,
            parent,
            trace_parent,
        } = StartInfo::from_event(started).unwrap_or_default();
        Self {
            instance_id: instance_id.to_owned(),
            name,
            version,
            execution_id,
            status: RuntimeStatus::Pending,
            input,
            output: Value::Null,
            failure: None,
            custom_status: Value::Null,
            created_at: now,
            updated_at: now,
            parent,
            trace_parent,
            history_len: 0,
            format_version: HISTORY_FORMAT_VERSION,
        }
    }
}

/// What a client sees of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Orchestration name.
    pub name: String,
    /// Instance id.
    pub instance_id: String,
    /// Runtime status.
    pub runtime_status: RuntimeStatus,
    /// Input (when asked for).
    pub input: Option<Value>,
    /// Custom status.
    pub custom_status: Value,
    /// Output (the failure, for a failed instance).
    pub output: Value,
    /// Failure details of a failed instance.
    pub failure: Option<FailureDetails>,
    /// Creation time.
    pub created_time: DateTime<Utc>,
    /// Last update time.
    pub last_updated_time: DateTime<Utc>,
    /// History (when asked for).
    pub history: Option<Vec<HistoryEvent>>,
}

//! The history event model: what an orchestration instance has done, in order.
//!
//! Rows written with this model outlive every deployment, so it is versioned on purpose:
//! variants are tagged by name (`#[serde(tag = "type")]`), fields added later carry
//! `#[serde(default)]`, and every execution starts with the [`HISTORY_FORMAT_VERSION`] that wrote it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::FailureDetails;

/// The version of the history format written by this build. Bump it when a change needs
/// readers to behave differently; never reuse a number.
pub const HISTORY_FORMAT_VERSION: u32 = 1;

/// One recorded event of an instance's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Position in the instance's history, gap-free from 0 within one execution.
    pub seq: u64,
    /// When the event was recorded (episode time for decisions, arrival time for messages).
    pub timestamp: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Identifies the parent of a sub-orchestration, so its result can be sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent's instance id.
    pub instance_id: String,
    /// The parent's execution id when it scheduled this instance.
    pub execution_id: String,
    /// The id of the `SubOrchestrationScheduled` event in the parent's history.
    pub scheduled_id: u64,
}

/// The kinds of history events. Scheduling events carry an `id` that the matching
/// completion refers to as `scheduled_id`; replay matches them to the code's actions by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// The execution began, with its input.
    ExecutionStarted {
        /// Orchestration name.
        name: String,
        /// Orchestration version (empty: the latest registered).
        #[serde(default)]
        version: String,
        /// Identifies this execution; changes on continue-as-new and restart.
        execution_id: String,
        /// Orchestration input.
        #[serde(default)]
        input: Value,
        /// The parent, when this is a sub-orchestration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentRef>,
        /// The history format version that wrote this execution.
        #[serde(default = "format_v1")]
        format_version: u32,
        /// W3C trace context of the request that started the instance.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_parent: Option<String>,
    },
    /// An episode began; its timestamp is the replay-safe current time for the code.
    OrchestratorStarted,
    /// The execution finished with an output.
    ExecutionCompleted {
        /// Orchestration output.
        #[serde(default)]
        output: Value,
    },
    /// The execution failed.
    ExecutionFailed {
        /// Why.
        failure: FailureDetails,
    },
    /// A client terminated the execution.
    ExecutionTerminated {
        /// The reason given by the client.
        #[serde(default)]
        reason: String,
    },
    /// The execution restarted itself with new input and a fresh history.
    ContinuedAsNew {
        /// The input of the next execution.
        #[serde(default)]
        input: Value,
    },
    /// The execution was suspended: new events are recorded but not delivered until resumed.
    ExecutionSuspended {
        /// The reason given by the client.
        #[serde(default)]
        reason: String,
    },
    /// The execution was resumed.
    ExecutionResumed {
        /// The reason given by the client.
        #[serde(default)]
        reason: String,
    },
    /// A client rewound the failed execution: replay no longer sees the failures listed
    /// (by `seq`) nor the `ExecutionFailed` before this event, so their tasks run again and
    /// every other result is kept (`history/rewind.rs`).
    ExecutionRewound {
        /// The reason given by the client.
        #[serde(default)]
        reason: String,
        /// The `seq` of each failure rewound; empty in the client's request, filled in by
        /// the episode that records the rewind.
        #[serde(default)]
        failures: Vec<u64>,
    },
    /// The code scheduled an activity.
    ActivityScheduled {
        /// Action id.
        id: u64,
        /// Activity name.
        name: String,
        /// Activity version.
        #[serde(default)]
        version: String,
        /// Activity input.
        #[serde(default)]
        input: Value,
    },
    /// An activity returned a result.
    ActivityCompleted {
        /// The `ActivityScheduled` id.
        scheduled_id: u64,
        /// Activity output.
        #[serde(default)]
        result: Value,
    },
    /// An activity failed.
    ActivityFailed {
        /// The `ActivityScheduled` id.
        scheduled_id: u64,
        /// Why.
        failure: FailureDetails,
    },
    /// The code created a durable timer.
    TimerCreated {
        /// Action id.
        id: u64,
        /// When it fires.
        fire_at: DateTime<Utc>,
    },
    /// A durable timer fired.
    TimerFired {
        /// The `TimerCreated` id.
        scheduled_id: u64,
        /// When it was due.
        fire_at: DateTime<Utc>,
    },
    /// The code started a sub-orchestration and waits for it.
    SubOrchestrationScheduled {
        /// Action id.
        id: u64,
        /// Orchestration name.
        name: String,
        /// Orchestration version.
        #[serde(default)]
        version: String,
        /// The child's instance id.
        instance_id: String,
        /// Its input.
        #[serde(default)]
        input: Value,
    },
    /// A sub-orchestration completed.
    SubOrchestrationCompleted {
        /// The `SubOrchestrationScheduled` id.
        scheduled_id: u64,
        /// Its output.
        #[serde(default)]
        result: Value,
    },
    /// A sub-orchestration failed.
    SubOrchestrationFailed {
        /// The `SubOrchestrationScheduled` id.
        scheduled_id: u64,
        /// Why.
        failure: FailureDetails,
    },
    /// The code started another orchestration without waiting for it (fire and forget).
    OrchestrationStartSent {
        /// Action id.
        id: u64,
        /// Orchestration name.
        name: String,
        /// Orchestration version.
        #[serde(default)]
        version: String,
        /// The new instance's id.
        instance_id: String,
        /// Its input.
        #[serde(default)]
        input: Value,
    },
    /// An external event arrived.
    EventRaised {
        /// Event name (matched case-sensitively).
        name: String,
        /// Event data.
        #[serde(default)]
        input: Value,
        /// Identity of the message that carried it; duplicates are ignored.
        #[serde(default)]
        event_id: String,
    },
    /// The code sent an event to another instance.
    EventSent {
        /// Action id.
        id: u64,
        /// The target instance.
        instance_id: String,
        /// Event name.
        name: String,
        /// Event data.
        #[serde(default)]
        input: Value,
    },
    /// The code set its custom status.
    CustomStatusSet {
        /// The new custom status (null clears it).
        #[serde(default)]
        status: Value,
    },
}

fn format_v1() -> u32 {
    1
}

impl EventKind {
    /// The variant name, as written in the `type` tag (and shown as `EventType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ExecutionStarted { .. } => "ExecutionStarted",
            Self::OrchestratorStarted => "OrchestratorStarted",
            Self::ExecutionCompleted { .. } => "ExecutionCompleted",
            Self::ExecutionFailed { .. } => "ExecutionFailed",
            Self::ExecutionTerminated { .. } => "ExecutionTerminated",
            Self::ContinuedAsNew { .. } => "ContinuedAsNew",
            Self::ExecutionSuspended { .. } => "ExecutionSuspended",
            Self::ExecutionResumed { .. } => "ExecutionResumed",
            Self::ExecutionRewound { .. } => "ExecutionRewound",
            Self::ActivityScheduled { .. } => "ActivityScheduled",
            Self::ActivityCompleted { .. } => "ActivityCompleted",
            Self::ActivityFailed { .. } => "ActivityFailed",
            Self::TimerCreated { .. } => "TimerCreated",
            Self::TimerFired { .. } => "TimerFired",
            Self::SubOrchestrationScheduled { .. } => "SubOrchestrationScheduled",
            Self::SubOrchestrationCompleted { .. } => "SubOrchestrationCompleted",
            Self::SubOrchestrationFailed { .. } => "SubOrchestrationFailed",
            Self::OrchestrationStartSent { .. } => "OrchestrationStartSent",
            Self::EventRaised { .. } => "EventRaised",
            Self::EventSent { .. } => "EventSent",
            Self::CustomStatusSet { .. } => "CustomStatusSet",
        }
    }

    /// The action id of a scheduling event (one the code's actions must reproduce on replay).
    pub fn scheduling_id(&self) -> Option<u64> {
        match self {
            Self::ActivityScheduled { id, .. }
            | Self::TimerCreated { id, .. }
            | Self::SubOrchestrationScheduled { id, .. }
            | Self::OrchestrationStartSent { id, .. }
            | Self::EventSent { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The action id a completion event answers.
    pub fn completes_id(&self) -> Option<u64> {
        match self {
            Self::ActivityCompleted { scheduled_id, .. }
            | Self::ActivityFailed { scheduled_id, .. }
            | Self::TimerFired { scheduled_id, .. }
            | Self::SubOrchestrationCompleted { scheduled_id, .. }
            | Self::SubOrchestrationFailed { scheduled_id, .. } => Some(*scheduled_id),
            _ => None,
        }
    }

    /// Whether this event ends an execution.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::ExecutionCompleted { .. }
                | Self::ExecutionFailed { .. }
                | Self::ExecutionTerminated { .. }
                | Self::ContinuedAsNew { .. }
        )
    }
}

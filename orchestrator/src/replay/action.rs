//! Actions: what an episode decided that the worker must carry out after its commit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One decision of the orchestration code, to be sent once the episode is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Action {
    /// Run an activity and report its result.
    ScheduleActivity {
        /// Action id (the `ActivityScheduled` id).
        id: u64,
        /// Activity name.
        name: String,
        /// Activity version.
        version: String,
        /// Activity input.
        input: Value,
    },
    /// Fire a timer at `fire_at`.
    CreateTimer {
        /// Action id (the `TimerCreated` id).
        id: u64,
        /// When it fires.
        fire_at: DateTime<Utc>,
    },
    /// Start a child orchestration whose result comes back to this instance.
    StartSubOrchestration {
        /// Action id.
        id: u64,
        /// Orchestration name.
        name: String,
        /// Orchestration version.
        version: String,
        /// The child's instance id.
        instance_id: String,
        /// The child's execution id (deterministic, so a re-sent start is recognised).
        execution_id: String,
        /// Its input.
        input: Value,
    },
    /// Start an independent orchestration (fire and forget).
    StartOrchestration {
        /// Action id.
        id: u64,
        /// Orchestration name.
        name: String,
        /// Orchestration version.
        version: String,
        /// The new instance's id.
        instance_id: String,
        /// Its execution id.
        execution_id: String,
        /// Its input.
        input: Value,
    },
    /// Rewind a failed child orchestration (part of rewinding this one); its result then
    /// comes back to this instance as a new one.
    RewindSubOrchestration {
        /// The `SubOrchestrationScheduled` id.
        id: u64,
        /// The child's instance id.
        instance_id: String,
        /// The reason given for the rewind.
        reason: String,
    },
    /// Raise an event on another instance.
    SendEvent {
        /// Action id.
        id: u64,
        /// Target instance.
        instance_id: String,
        /// Event name.
        name: String,
        /// Event data.
        input: Value,
        /// Deterministic identity of the event, so a re-send is deduplicated.
        event_id: String,
    },
}

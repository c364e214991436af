//! The messages the engine sends over its queues (schema versioned by `v`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{EventKind, NewEvent};

/// Newest version of the message schema this build reads. Version 2 added
/// [`QueueMessage::Starts`]; every other message is still written as version 1, so a build
/// that reads only version 1 refuses (dead-letters, with the reason) bundles alone.
pub const MESSAGE_FORMAT_VERSION: u32 = 2;

/// The schema version of messages without bundles.
const FIRST_FORMAT_VERSION: u32 = 1;

/// A queue of the task hub.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueName {
    /// A control queue partition: events for orchestration instances.
    Control(u32),
    /// The work-item queue: activities to run.
    Work,
}

impl QueueName {
    /// The control partition of an instance: a stable FNV-1a hash of its id.
    pub fn control_for(instance_id: &str, partitions: u32) -> Self {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in instance_id.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        Self::Control(hash % partitions.max(1))
    }

    /// The queue a [`suffix`](Self::suffix) names.
    pub fn from_suffix(suffix: &str) -> Option<Self> {
        if suffix == "workitems" {
            return Some(Self::Work);
        }
        suffix
            .strip_prefix("control-")
            .and_then(|p| p.parse().ok())
            .map(Self::Control)
    }

    /// A short name (`control-00`, `workitems`) for queue names and logs.
    pub fn suffix(&self) -> String {
        match self {
            Self::Control(p) => format!("control-{p:02}"),
            Self::Work => "workitems".to_owned(),
        }
    }
}

/// An event for an orchestration instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrchestratorMessage {
    /// Target instance.
    pub instance_id: String,
    /// Target execution; `None` for events meant for whichever execution is current
    /// (external events, terminate, suspend, resume).
    #[serde(default)]
    pub execution_id: Option<String>,
    /// The event.
    pub event: NewEvent,
    /// For a start: when it may start an execution (see [`StartCondition`]). `None`:
    /// whenever the instance has no live execution (sub-orchestrations, older messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_if: Option<StartCondition>,
}

/// What a start message was sent against, checked when it is processed: a start whose
/// caller was refused (409) or that lost a race leaves its message queued, and that
/// message must never start a second execution later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "when", rename_all = "snake_case")]
pub enum StartCondition {
    /// The instance did not exist when the start was sent.
    Absent,
    /// The instance's execution was this one (finished, or continued as new).
    Replacing {
        /// The execution the start replaces.
        execution_id: String,
    },
}

impl StartCondition {
    /// Whether a start with this condition may start over an instance whose current
    /// execution is `current`.
    pub fn allows(condition: Option<&Self>, current: &str) -> bool {
        match condition {
            None => true,
            Some(Self::Absent) => false,
            Some(Self::Replacing { execution_id }) => execution_id == current,
        }
    }
}

/// An activity to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityWorkItem {
    /// The instance that scheduled it.
    pub instance_id: String,
    /// Its execution.
    pub execution_id: String,
    /// The `ActivityScheduled` id.
    pub scheduled_id: u64,
    /// Activity name.
    pub name: String,
    /// Activity version.
    #[serde(default)]
    pub version: String,
    /// Input.
    #[serde(default)]
    pub input: Value,
    /// W3C trace context.
    #[serde(default)]
    pub trace_parent: Option<String>,
}

/// Everything that travels on a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum QueueMessage {
    /// For the orchestration worker.
    Orchestrator(OrchestratorMessage),
    /// For the activity worker.
    Activity(ActivityWorkItem),
    /// Starts of several instances of one control partition, sent together by clients
    /// that start many at once (one queue write instead of one per start); the message
    /// is deleted when every start in it is committed.
    Starts {
        /// The start messages, each as it would travel alone.
        starts: Vec<OrchestratorMessage>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    /// Deliveries of earlier copies of this message: a host that owns deliveries (the
    /// Functions host) counts each copy from 1 again, so the count travels in the body.
    #[serde(default, skip_serializing_if = "is_zero")]
    prior_deliveries: u32,
    /// Since when an early event has been held back for its instance's start (copies of a
    /// held message do not count as failed deliveries; the hold is bounded by time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held_since: Option<DateTime<Utc>>,
    #[serde(flatten)]
    message: QueueMessage,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl QueueMessage {
    /// The instance the message belongs to.
    pub fn instance_id(&self) -> &str {
        match self {
            Self::Orchestrator(m) => &m.instance_id,
            Self::Activity(w) => &w.instance_id,
            Self::Starts { starts } => starts.first().map_or("", |m| m.instance_id.as_str()),
        }
    }

    /// Serialises with the schema version.
    pub fn encode(&self) -> String {
        self.encode_copy(0, None)
    }

    /// Serialises a copy that carries the failed deliveries of the copies before it, and
    /// since when it has been held for its instance's start, if it has.
    pub fn encode_copy(&self, prior_deliveries: u32, held_since: Option<DateTime<Utc>>) -> String {
        let version = match self {
            Self::Starts { .. } => MESSAGE_FORMAT_VERSION,
            _ => FIRST_FORMAT_VERSION,
        };
        let envelope = Envelope {
            v: version,
            prior_deliveries,
            held_since,
            message: self.clone(),
        };
        serde_json::to_string(&envelope).unwrap_or_default()
    }

    /// Since when a body says it has been held for its instance's start.
    pub fn held_since(raw: &str) -> Option<DateTime<Utc>> {
        // Every receive asks: parse only the bodies that can say it.
        if !raw.contains("\"held_since\"") {
            return None;
        }
        serde_json::from_str::<serde_json::Value>(raw)
            .ok()?
            .get("held_since")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The deliveries of earlier copies a body says it had (0 when it says nothing or is
    /// not an engine message).
    pub fn prior_deliveries(raw: &str) -> u32 {
        // Every receive asks: parse only the bodies that can say it.
        if !raw.contains("\"prior_deliveries\"") {
            return 0;
        }
        serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .and_then(|v| {
                v.get("prior_deliveries")
                    .and_then(serde_json::Value::as_u64)
            })
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    }

    /// Parses a message body; the error says what is wrong with it.
    pub fn decode(raw: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("not a valid engine message: {e}"))?;
        let version = value
            .get("v")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if version > u64::from(MESSAGE_FORMAT_VERSION) {
            return Err(format!(
                "message schema version {version} is newer than this build understands ({MESSAGE_FORMAT_VERSION})"
            ));
        }
        let envelope: Envelope = serde_json::from_value(value)
            .map_err(|e| format!("not a valid engine message: {e}"))?;
        Ok(envelope.message)
    }
}

/// A message to send, possibly delayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// Where.
    pub queue: QueueName,
    /// What.
    pub message: QueueMessage,
    /// Not visible before this time (timers).
    pub visible_at: Option<DateTime<Utc>>,
}

impl Outbound {
    /// The same start message, checked against `condition` when processed.
    pub fn with_start_condition(mut self, condition: StartCondition) -> Self {
        if let QueueMessage::Orchestrator(message) = &mut self.message {
            message.start_if = Some(condition);
        }
        self
    }
}

/// The receipt that deletes, abandons or renews a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Message id.
    pub message_id: String,
    /// Pop receipt of this delivery.
    pub pop_receipt: String,
    /// The body as the service stores it, for services that need it to change a message's
    /// visibility (Storage Queues); empty where not needed.
    pub stored_body: String,
}

/// A received message: decoded, or malformed with the reason.
#[derive(Debug, Clone)]
pub struct Received {
    /// Receipt of this delivery.
    pub receipt: Receipt,
    /// Deliveries so far, this one included.
    pub dequeue_count: u32,
    /// The raw body.
    pub raw: String,
    /// The decoded message, or why it could not be decoded.
    pub message: Result<QueueMessage, String>,
}

/// A message moved to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The raw body.
    pub raw: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Deliveries before it was.
    pub dequeue_count: u32,
}

/// A dead letter kept in the task hub's archive until an operator requeues or deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedLetter {
    /// Its id in the archive (sorts newest first).
    pub id: String,
    /// The queue it was dead-lettered from.
    pub queue: QueueName,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// The letter.
    pub letter: DeadLetter,
}

impl ArchivedLetter {
    /// An archive id for a letter archived at `at`: newer letters sort first (within one
    /// process even in the same microsecond, by a decreasing sequence).
    pub fn new_id(at: DateTime<Utc>) -> String {
        static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let inverted = 9_999_999_999_999_999_i64.saturating_sub(at.timestamp_micros());
        let seq = u32::MAX - SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        format!("{inverted:016}-{seq:010}-{}", &unique[..8])
    }

    /// The instance the letter's message was for, when it can be read.
    pub fn instance_id(&self) -> Option<String> {
        QueueMessage::decode(&self.letter.raw)
            .ok()
            .map(|m| m.instance_id().to_owned())
    }
}

/// A message carrying an event to an instance (to its control queue).
pub fn to_instance(
    instance_id: &str,
    execution_id: Option<&String>,
    kind: EventKind,
    timestamp: DateTime<Utc>,
    visible_at: Option<DateTime<Utc>>,
    partitions: u32,
) -> Outbound {
    Outbound {
        queue: QueueName::control_for(instance_id, partitions),
        message: QueueMessage::Orchestrator(OrchestratorMessage {
            instance_id: instance_id.to_owned(),
            execution_id: execution_id.cloned(),
            event: NewEvent { timestamp, kind },
            start_if: None,
        }),
        visible_at,
    }
}

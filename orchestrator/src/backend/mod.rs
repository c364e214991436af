//! The storage API of the engine, split by concern: instance state and history
//! ([`InstanceStore`]), queues ([`QueueStore`]), large payloads ([`PayloadStore`]), run
//! logs ([`RunLogStore`]) and small shared documents such as schedules ([`DocumentStore`]).
//! [`MemoryBackend`] implements them all in process; the Azure Storage backend implements
//! them over Tables, Queues and Blobs. Every implementation must pass the conformance suite
//! (feature `conformance`).

#[cfg(feature = "conformance")]
pub mod conformance;
mod memory;
mod message;
mod store;

pub use memory::MemoryBackend;
pub use message::{
    to_instance, ActivityWorkItem, ArchivedLetter, DeadLetter, OrchestratorMessage, Outbound,
    QueueMessage, QueueName, Receipt, Received, StartCondition, MESSAGE_FORMAT_VERSION,
};
pub use store::{
    Backend, Document, DocumentStore, ETag, EpisodeCommit, Error, HistoryPage, HistoryWrite,
    InstancePage, InstanceQuery, InstanceStore, LoadedInstance, PayloadStore, QueueDepth,
    QueueStore, RunLogStore, WriteCondition,
};

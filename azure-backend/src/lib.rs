//! The Azure Storage backend of FlowForge Durable.
//!
//! - State and history in Table Storage, the instances of a control partition in one table
//!   partition, each episode committed under the state row's ETag, the writes of instances
//!   made at once sharing transactions (see [`rows`] for the layout).
//! - Work items, events and timers over Storage Queues (partitioned control queues, one
//!   work-item queue, and the `<queue>-poison` queues the Functions host moves messages
//!   to); message bodies base64 as the Functions host expects.
//! - Dead letters kept with their reason in an archive table until an operator requeues or
//!   deletes them.
//! - Activity attempts' run logs in their own table, removed with the instance.
//! - Values too large for a property or a message in Blob Storage by reference.
//!
//! Built on the Azure SDK crates of the 0.21 family, the one that serves Tables, Queues
//! and Blobs with both shared key (Azurite) and Entra ID today.

#[cfg(feature = "azurite")]
pub mod azurite;
mod backend;
mod config;
mod counter;
mod created_here;
mod dead_letter_store;
mod document_store;
mod error;
pub mod identity;
mod index_batcher;
mod instance_store;
mod layout;
mod list_query;
mod local_arrivals;
mod partition_queue;
mod payload;
mod payload_store;
mod queue_store;
mod ranges_cache;
mod row_batcher;
pub mod rows;
mod run_log_store;
mod start_bundler;
mod status_index;
mod status_index_store;
mod storage_health;
mod table_op;
mod table_writes;
mod wake;

pub use backend::AzureBackend;
pub use config::{
    AccountAccess, AccountCredential, AzureConfig, Credentials, Endpoints, AZURITE_ACCOUNT,
};
pub use layout::LayoutMove;

//! The lake's Delta tables (silver, gold, rejects): polars writes the parquet files,
//! delta-rs commits them (one commit per run, idempotent on the run id) and reads the log
//! back. Readers — Synapse Serverless, Fabric, Databricks, DuckDB, the `deltalake` Python
//! package — see each table's current version and can travel to older ones until vacuum
//! removes their files (7 days after they left the table; the log is kept 30 days).

mod commit;
mod read;
pub mod schema;
mod store;

use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use flowforge_orchestrator::history::FailureDetails;
use object_store::ObjectStore;
use url::Url;

pub use commit::{
    partition_dir, run_transaction, write_run, write_run_opened, EncodedFile, TableCommit,
    TableFile, TableWrite, WriteMode,
};
pub use read::{read_table, table_files};
pub use store::container_store;

/// A Delta table of the lake: a folder of a container.
#[derive(Clone)]
pub struct Table {
    container: String,
    path: String,
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Table {
    /// The table at `path` of `container`, reached through `store` (the container's).
    pub fn new(container: &str, path: &str, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            container: container.to_owned(),
            path: path.trim_matches('/').to_owned(),
            store,
        }
    }

    /// `container/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.container, self.path)
    }

    /// The container.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The folder inside the container.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// delta-rs's address of the table (`az://container/path`).
    fn url(&self) -> Result<Url, FailureDetails> {
        Url::parse(&format!("az://{}/{}", self.container, self.path)).map_err(|e| {
            FailureDetails::non_retryable("InvalidTablePath", format!("{}: {e}", self.name()))
        })
    }
}

/// The table, loaded at its latest version (or `version`) if it exists; unloaded (no
/// version) if it does not yet.
pub async fn open_at(table: &Table, version: Option<u64>) -> Result<DeltaTable, FailureDetails> {
    store::register_azure_scheme();
    let url = table.url()?;
    let failed = |e: DeltaTableError| {
        FailureDetails::new("TableReadFailed", format!("{}: {e}", table.name()))
    };
    let mut delta = DeltaTableBuilder::from_url(url.clone())
        .map_err(failed)?
        .with_storage_backend(table.store.clone(), url)
        .build()
        .map_err(failed)?;
    // A table not created yet is a normal case (a first run): asked before loading, so the
    // kernel does not log it as an error.
    if version.is_none()
        && !delta
            .log_store()
            .is_delta_table_location()
            .await
            .map_err(failed)?
    {
        return Ok(delta);
    }
    let loaded = match version {
        None => delta.load().await,
        Some(v) => delta.load_version(v).await,
    };
    match loaded {
        Ok(()) => Ok(delta),
        Err(DeltaTableError::NotATable(_)) if version.is_none() => Ok(delta),
        Err(e) => Err(failed(e)),
    }
}

/// The table at its latest version, or unloaded if it does not exist yet.
pub async fn open(table: &Table) -> Result<DeltaTable, FailureDetails> {
    open_at(table, None).await
}

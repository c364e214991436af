//! The data lake through the Blob API (Azurite locally, ADLS Gen2 in Azure, which accepts
//! the Blob API), with the engine's credentials: containers `landing`, `bronze`, `silver`,
//! `gold`, and `rejects` (what silver left out, outside its path).

use azure_storage_blobs::prelude::{BlobServiceClient, ContainerClient};
use flowforge_orchestrator::history::{FailureDetails, FailureKind};
use futures::StreamExt;

/// The containers of the lake.
pub const CONTAINERS: [&str; 5] = ["landing", "bronze", "silver", "gold", "rejects"];

/// Blob access for the activities.
#[derive(Clone)]
pub struct DataLake {
    service: BlobServiceClient,
}

fn storage_failure(what: &str, error: azure_core::Error) -> FailureDetails {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.split('?').next().unwrap_or_default();
    FailureDetails::of(FailureKind::StorageError, format!("{what}: {first}"))
}

impl DataLake {
    /// A lake over a Blob service client.
    pub fn new(service: BlobServiceClient) -> Self {
        Self { service }
    }

    fn container(&self, name: &str) -> ContainerClient {
        self.service.container_client(name)
    }

    /// Creates the lake's containers when missing.
    pub async fn ensure_containers(&self) -> Result<(), FailureDetails> {
        for name in CONTAINERS {
            if let Err(error) = self.container(name).create().await {
                if !error.to_string().contains("ContainerAlreadyExists")
                    && !error.to_string().contains("409")
                {
                    return Err(storage_failure(&format!("create container {name}"), error));
                }
            }
        }
        Ok(())
    }

    /// Blob names under a prefix, sorted.
    pub async fn list(&self, container: &str, prefix: &str) -> Result<Vec<String>, FailureDetails> {
        let mut names = Vec::new();
        let mut pages = self
            .container(container)
            .list_blobs()
            .prefix(prefix.to_owned())
            .into_stream();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| storage_failure(&format!("list {container}/{prefix}"), e))?;
            names.extend(page.blobs.blobs().map(|b| b.name.clone()));
        }
        names.sort();
        Ok(names)
    }

    /// A blob's bytes.
    pub async fn get(&self, container: &str, name: &str) -> Result<Vec<u8>, FailureDetails> {
        let result = self
            .container(container)
            .blob_client(name)
            .get_content()
            .await;
        let error = match result {
            Ok(bytes) => return Ok(bytes),
            Err(error) => error,
        };
        let text = error.to_string();
        if text.contains("416") {
            // An empty blob answers a ranged read with 416: it is simply empty.
            return Ok(Vec::new());
        }
        if text.contains("404") || text.contains("BlobNotFound") {
            return Err(FailureDetails::non_retryable(
                "NotFound",
                format!("{container}/{name} does not exist"),
            ));
        }
        Err(storage_failure(&format!("read {container}/{name}"), error))
    }

    /// Writes a blob (replacing it).
    pub async fn put(
        &self,
        container: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), FailureDetails> {
        self.container(container)
            .blob_client(name)
            .put_block_blob(bytes)
            .await
            .map(|_| ())
            .map_err(|e| storage_failure(&format!("write {container}/{name}"), e))
    }

    /// Deletes every blob under a prefix.
    pub async fn delete_prefix(
        &self,
        container: &str,
        prefix: &str,
    ) -> Result<usize, FailureDetails> {
        let names = self.list(container, prefix).await?;
        for name in &names {
            self.container(container)
                .blob_client(name)
                .delete()
                .await
                .map_err(|e| storage_failure(&format!("delete {container}/{name}"), e))?;
        }
        Ok(names.len())
    }
}

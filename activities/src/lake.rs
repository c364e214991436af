//! The data lake through the Blob API (Azurite locally, ADLS Gen2 in Azure, which accepts
//! the Blob API), with the engine's credentials: containers `landing`, `bronze`, `silver`,
//! `gold`, and `rejects` (what silver left out, outside its path).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use azure_storage_blobs::prelude::{BlobServiceClient, ContainerClient};
use flowforge_azure::{AccountAccess, AzureConfig};
use flowforge_orchestrator::history::{FailureDetails, FailureKind};
use futures::StreamExt;
use object_store::ObjectStore;

use crate::lineage_endpoint::LineageEndpoint;
use crate::tables::{container_store, Table};

/// The containers of the lake.
pub const CONTAINERS: [&str; 5] = ["landing", "bronze", "silver", "gold", "rejects"];

/// Blob access for the activities, and the Delta tables of the lake.
#[derive(Clone)]
pub struct DataLake {
    service: BlobServiceClient,
    access: AccountAccess,
    /// A folder inside each container under which the tables live ("" by default): lets
    /// several environments, or tests, share one account.
    tables_root: String,
    stores: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
    lineage: Option<LineageEndpoint>,
}

/// What a failed read of a blob means: `None` for an empty blob (it answers a ranged read
/// with 416), `NotFound` when it does not exist, else a storage failure.
fn read_failure(container: &str, name: &str, error: azure_core::Error) -> Option<FailureDetails> {
    let text = error.to_string();
    if text.contains("416") {
        return None;
    }
    if text.contains("404") || text.contains("BlobNotFound") {
        return Some(FailureDetails::non_retryable(
            "NotFound",
            format!("{container}/{name} does not exist"),
        ));
    }
    Some(storage_failure(&format!("read {container}/{name}"), error))
}

fn storage_failure(what: &str, error: azure_core::Error) -> FailureDetails {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.split('?').next().unwrap_or_default();
    FailureDetails::of(FailureKind::StorageError, format!("{what}: {first}"))
}

/// Bytes asked for per ranged read of a blob: few round trips for a landing file, while
/// a failed range is still retried alone.
const READ_CHUNK: u64 = 8 << 20;

impl DataLake {
    /// The lake of the storage account `config` names, with its credentials.
    pub fn from_config(config: &AzureConfig) -> Result<Self, String> {
        Ok(Self {
            service: config.blob_service()?,
            access: config.account_access()?,
            tables_root: String::new(),
            stores: Arc::default(),
            lineage: None,
        })
    }

    /// The same lake, emitting each run's OpenLineage event to `endpoint` too.
    pub fn with_lineage_endpoint(mut self, endpoint: Option<LineageEndpoint>) -> Self {
        self.lineage = endpoint;
        self
    }

    /// Where lineage events are emitted, if anywhere.
    pub fn lineage_endpoint(&self) -> Option<&LineageEndpoint> {
        self.lineage.as_ref()
    }

    /// The address of a folder of a container as other tools name it: `abfss://…` on
    /// Azure (ADLS Gen2's DFS endpoint), the blob URL on an emulator.
    pub fn location(&self, container: &str, path: &str) -> String {
        let path = path.trim_matches('/');
        match &self.access.blob_endpoint {
            Some(endpoint) => format!("{endpoint}/{container}/{path}"),
            None => format!(
                "abfss://{container}@{}.dfs.core.windows.net/{path}",
                self.access.account
            ),
        }
        .trim_end_matches('/')
        .to_owned()
    }

    /// The same lake with its tables under `root` (a folder) in each container.
    pub fn with_tables_root(mut self, root: &str) -> Self {
        let root = root.trim_matches('/');
        self.tables_root = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        self
    }

    /// The folder of the tables inside each container (`""` or ending in `/`).
    pub fn tables_root(&self) -> &str {
        &self.tables_root
    }

    /// The Delta table at `path` (under the tables' root) of `container`.
    pub fn table(&self, container: &str, path: &str) -> Result<Table, FailureDetails> {
        let store = {
            let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
            match stores.get(container) {
                Some(store) => store.clone(),
                None => {
                    let store = container_store(&self.access, container)
                        .map_err(|e| FailureDetails::non_retryable("LakeMisconfigured", e))?;
                    stores.insert(container.to_owned(), store.clone());
                    store
                }
            }
        };
        Ok(Table::new(
            container,
            &format!("{}{path}", self.tables_root),
            store,
        ))
    }

    /// A blob's name under the tables' root (for files beside the tables).
    pub fn under_root(&self, name: &str) -> String {
        format!("{}{name}", self.tables_root)
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
        match self.read_blob(container, name).await {
            Ok(bytes) => Ok(bytes),
            Err(error) => read_failure(container, name, error).map_or(Ok(Vec::new()), Err),
        }
    }

    /// A blob's bytes in ranges of 8 MiB, each sent to `to` as it arrives, in
    /// order, so that the receiver works on the start of a large file while the rest is
    /// read. A failure is sent last (as [`get`](Self::get) would return it); the end of
    /// the channel without one is the end of the blob. Stops when the receiver does.
    pub async fn send_ranges(
        &self,
        container: &str,
        name: &str,
        to: tokio::sync::mpsc::Sender<Result<Vec<u8>, FailureDetails>>,
    ) {
        if let Err(error) = self.read_ranges(container, name, &to).await {
            if let Some(failure) = read_failure(container, name, error) {
                let _ = to.send(Err(failure)).await;
            }
        }
    }

    async fn read_ranges(
        &self,
        container: &str,
        name: &str,
        to: &tokio::sync::mpsc::Sender<Result<Vec<u8>, FailureDetails>>,
    ) -> azure_core::Result<()> {
        let client = self.container(container).blob_client(name);
        let mut stream = client.get().chunk_size(READ_CHUNK).into_stream();
        while let Some(answer) = stream.next().await {
            let answer = answer?;
            let mut range = Vec::with_capacity(READ_CHUNK as usize);
            let mut body = answer.data;
            while let Some(piece) = body.next().await {
                range.extend_from_slice(&piece?);
            }
            if to.send(Ok(range)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A blob's bytes, read in ranges of [`READ_CHUNK`] into one buffer of the blob's
    /// size (a blob longer than the first range has its size asked for). The SDK's
    /// `get_content` reads 1 MiB ranges into a buffer grown by doubling: a 30 MB landing
    /// file cost 31 round trips and several times its size in freshly touched memory,
    /// which was most of the read's time on a VM, where touching a fresh page is the
    /// expensive part.
    async fn read_blob(&self, container: &str, name: &str) -> azure_core::Result<Vec<u8>> {
        let client = self.container(container).blob_client(name);
        let mut stream = client.get().chunk_size(READ_CHUNK).into_stream();
        let mut blob = Vec::new();
        while let Some(answer) = stream.next().await {
            let answer = answer?;
            if blob.capacity() == 0 {
                let size = match answer.remaining_range {
                    None => answer.blob.properties.content_length,
                    Some(_) => {
                        client
                            .get_properties()
                            .await?
                            .blob
                            .properties
                            .content_length
                    }
                };
                blob.reserve_exact(usize::try_from(size).unwrap_or(0));
            }
            let mut body = answer.data;
            while let Some(piece) = body.next().await {
                blob.extend_from_slice(&piece?);
            }
        }
        Ok(blob)
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

//! Payloads by reference in the task hub's blob container.

use async_trait::async_trait;
use flowforge_orchestrator::backend::{Error, PayloadStore};
use futures::StreamExt;

use crate::backend::AzureBackend;
use crate::error::classify;

impl AzureBackend {
    /// Names of the payload blobs under a prefix (tools and tests).
    pub async fn payload_names(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        let mut pages = self
            .payloads
            .list_blobs()
            .prefix(prefix.to_owned())
            .into_stream();
        while let Some(page) = pages.next().await {
            self.counter.count("blob.list");
            let page = page.map_err(|e| classify("blob list", e))?;
            names.extend(page.blobs.blobs().map(|b| b.name.clone()));
        }
        Ok(names)
    }
}

#[async_trait]
impl PayloadStore for AzureBackend {
    async fn put_payload(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        self.counter.count("blob.put");
        self.payloads
            .blob_client(key)
            .put_block_blob(bytes)
            .await
            .map(|_| ())
            .map_err(|e| classify("blob put", e))
    }

    async fn get_payload(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.counter.count("blob.get");
        match self
            .payloads
            .blob_client(key)
            .get_content()
            .await
            .map_err(|e| classify("blob get", e))
        {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete_payloads(&self, prefix: &str) -> Result<usize, Error> {
        let names = self.payload_names(prefix).await?;
        for name in &names {
            self.counter.count("blob.delete");
            match self
                .payloads
                .blob_client(name)
                .delete()
                .await
                .map_err(|e| classify("blob delete", e))
            {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(names.len())
    }
}

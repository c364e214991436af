//! Which backend a command uses: the Azure Storage task hub named by the settings (a
//! connection string, or an account with Entra ID), or the in-memory backend.

use std::sync::Arc;

use clap::Args;
use flowforge_azure::{AzureBackend, AzureConfig};
use flowforge_orchestrator::backend::{Backend, MemoryBackend};

/// Storage settings, from flags or the environment (as in a Functions app's settings).
#[derive(Debug, Args, Clone)]
pub struct StorageArgs {
    /// Storage connection string (`UseDevelopmentStorage=true` or account name + key).
    #[arg(
        long,
        global = true,
        env = "AzureWebJobsStorage",
        hide_env_values = true
    )]
    pub storage: Option<String>,
    /// Storage account for Entra ID (managed identity, workload identity, Azure CLI);
    /// used when no connection string is given.
    #[arg(long, global = true, env = "FLOWFORGE_STORAGE_ACCOUNT")]
    pub storage_account: Option<String>,
    /// Task hub name (prefix of every table, queue and container).
    #[arg(
        long,
        global = true,
        env = "FLOWFORGE_TASK_HUB",
        default_value = "flowforge"
    )]
    pub task_hub: String,
    /// Number of control queues.
    #[arg(
        long,
        global = true,
        env = "FLOWFORGE_CONTROL_PARTITIONS",
        default_value_t = 4
    )]
    pub partitions: u32,
    /// Use the in-memory backend (nothing persists; for trying things out).
    #[arg(long, global = true)]
    pub in_memory: bool,
}

impl StorageArgs {
    /// The Azure configuration these settings describe.
    pub fn azure_config(&self) -> anyhow::Result<AzureConfig> {
        let mut config = match (&self.storage, &self.storage_account) {
            (Some(connection), _) => {
                AzureConfig::from_connection_string(&self.task_hub, connection)
                    .map_err(|e| anyhow::anyhow!("AzureWebJobsStorage: {e}"))?
            }
            (None, Some(account)) => AzureConfig::entra_id(&self.task_hub, account),
            (None, None) => anyhow::bail!(
                "no storage configured: set AzureWebJobsStorage (connection string) or \
                 FLOWFORGE_STORAGE_ACCOUNT (Entra ID), or pass --in-memory"
            ),
        };
        config.control_partitions = self.partitions;
        Ok(config)
    }

    /// The data lake on the same account and credentials (none in memory).
    pub fn lake(&self) -> anyhow::Result<Option<flowforge_activities::DataLake>> {
        if self.in_memory {
            return Ok(None);
        }
        let service = self
            .azure_config()?
            .blob_service()
            .map_err(anyhow::Error::msg)?;
        Ok(Some(flowforge_activities::DataLake::new(service)))
    }

    /// Connects the backend.
    pub async fn connect(&self) -> anyhow::Result<Arc<dyn Backend>> {
        if self.in_memory {
            return Ok(Arc::new(
                MemoryBackend::new().with_partitions(self.partitions),
            ));
        }
        let backend = AzureBackend::connect(self.azure_config()?).await?;
        Ok(backend)
    }
}

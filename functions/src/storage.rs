//! Which backend a command uses: the Azure Storage task hub named by the settings (a
//! connection string, or an account with Entra ID), or the in-memory backend.

use std::sync::Arc;

use clap::Args;
use flowforge_azure::identity::choose_credential;
use flowforge_azure::{AzureBackend, AzureConfig};

/// The connection's name: the host's own storage connection, which the engine shares.
const CONNECTION: &str = "AzureWebJobsStorage";
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
    /// Maintain the status index, so that listings by status read about as many rows as
    /// they return at any task-hub size (a write ahead and a delete behind on each status
    /// change; once on, every process of the hub keeps it).
    #[arg(long, global = true, env = "FLOWFORGE_STATUS_INDEX")]
    pub status_index: bool,
    /// Use the in-memory backend (nothing persists; for trying things out).
    #[arg(long, global = true)]
    pub in_memory: bool,
}

impl StorageArgs {
    /// The Azure configuration these settings describe.
    pub fn azure_config(&self) -> anyhow::Result<AzureConfig> {
        let env = |name: &str| std::env::var(name).ok();
        let connection = self.storage.as_deref().filter(|s| !s.trim().is_empty());
        let identity = AzureConfig::from_identity_settings(&self.task_hub, &env, CONNECTION)
            .map_err(|e| anyhow::anyhow!("{CONNECTION}__*: {e}"))?;
        let mut config = match (connection, identity, &self.storage_account) {
            (Some(connection), _, _) => {
                AzureConfig::from_connection_string(&self.task_hub, connection)
                    .map_err(|e| anyhow::anyhow!("{CONNECTION}: {e}"))?
            }
            (None, Some(identity), _) => identity,
            (None, None, Some(account)) => {
                let credential = choose_credential(&env, CONNECTION).map_err(anyhow::Error::msg)?;
                AzureConfig::entra_id(&self.task_hub, account, credential)
            }
            (None, None, None) => anyhow::bail!(
                "no storage configured: set AzureWebJobsStorage (connection string), \
                 AzureWebJobsStorage__accountName (identity-based, as the Functions host \
                 reads it) or FLOWFORGE_STORAGE_ACCOUNT, or pass --in-memory"
            ),
        };
        config.control_partitions = self.partitions;
        config.status_index = self.status_index;
        Ok(config)
    }

    /// Whether a storage account is configured at all (a connection string, the
    /// identity-based settings, or an account name), as opposed to none.
    pub fn is_configured(&self) -> bool {
        let env = |name: &str| std::env::var(name).ok();
        self.storage
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
            || self.storage_account.is_some()
            || matches!(
                AzureConfig::from_identity_settings(&self.task_hub, &env, CONNECTION),
                Ok(Some(_)) | Err(_)
            )
    }

    /// The data lake on the same account and credentials (none in memory).
    pub fn lake(&self) -> anyhow::Result<Option<flowforge_activities::DataLake>> {
        if self.in_memory {
            return Ok(None);
        }
        lake_on(&self.azure_config()?).map(Some)
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

/// The lake on `config`'s account: tables under `FLOWFORGE_LAKE_ROOT` (a folder in each
/// container, none by default), lineage events also to `OPENLINEAGE_URL` when set.
pub fn lake_on(config: &AzureConfig) -> anyhow::Result<flowforge_activities::DataLake> {
    let env = |name: &str| std::env::var(name).ok();
    let root = env("FLOWFORGE_LAKE_ROOT").unwrap_or_default();
    Ok(flowforge_activities::DataLake::from_config(config)
        .map_err(anyhow::Error::msg)?
        .with_tables_root(&root)
        .with_lineage_endpoint(flowforge_activities::lineage::LineageEndpoint::from_env(
            &env,
        )))
}

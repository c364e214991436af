//! The Azure Storage backend: clients, task hub lifecycle and large-value offload.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use azure_core::{ClientOptions, ExponentialRetryOptions, Policy, RetryOptions};
use azure_data_tables::clients::{TableClient, TableServiceClient, TableServiceClientBuilder};
use azure_storage_blobs::prelude::{BlobServiceClient, ClientBuilder, ContainerClient};
use azure_storage_queues::{QueueClient, QueueServiceClient, QueueServiceClientBuilder};
use flowforge_orchestrator::backend::{Backend, Error, QueueName};

use crate::config::AzureConfig;
use crate::counter::Counter;
use crate::created_here::CreatedHere;
use crate::error::classify;
use crate::index_batcher::IndexBatcher;
use crate::local_arrivals::LocalArrivals;
use crate::payload::{as_blob_ref, blob_name, blob_ref_text};
use crate::ranges_cache::RangesCache;
use crate::row_batcher::RowBatcher;
use crate::start_bundler::StartBundler;
use crate::status_index::StatusIndex;
use crate::storage_health::{DeadlinePolicy, StorageHealth};
use crate::wake::WakeSignals;

/// The Azure Storage backend of one task hub.
pub struct AzureBackend {
    pub(crate) config: AzureConfig,
    pub(crate) table: TableClient,
    pub(crate) dead_letters: TableClient,
    pub(crate) run_logs: TableClient,
    pub(crate) documents: TableClient,
    queues: QueueServiceClient,
    pub(crate) payloads: ContainerClient,
    pub(crate) counter: Counter,
    pub(crate) ranges: RangesCache,
    pub(crate) wake: WakeSignals,
    pub(crate) arrivals: LocalArrivals,
    pub(crate) created: CreatedHere,
    pub(crate) start_bundler: StartBundler,
    pub(crate) index: StatusIndex,
    pub(crate) index_batcher: IndexBatcher,
    pub(crate) row_batcher: RowBatcher,
    /// Table partitions of the instances table, from the hub's layout row (`layout`).
    pub(crate) table_partitions: AtomicU32,
    health: Arc<StorageHealth>,
}

impl AzureBackend {
    /// Connects to the task hub and creates its tables, queues and container if missing.
    /// A hub whose instances table is in an older layout is refused (see
    /// [`connect_to_migrate`](Self::connect_to_migrate)).
    pub async fn connect(config: AzureConfig) -> Result<Arc<Self>, Error> {
        let backend = Self::open(config).await?;
        backend.prepare_layout().await?;
        backend.prepare_status_index().await?;
        Ok(backend)
    }

    /// Connects to a task hub to move it to the current layout
    /// ([`migrate_layout`](Self::migrate_layout)), whatever layout it holds.
    pub async fn connect_to_migrate(config: AzureConfig) -> Result<Arc<Self>, Error> {
        Self::open(config).await
    }

    async fn open(config: AzureConfig) -> Result<Arc<Self>, Error> {
        config.validate().map_err(Error::Permanent)?;
        let credentials = config.storage_credentials().map_err(Error::Permanent)?;
        let health = Arc::new(StorageHealth::default());
        let options = client_options(&config, &health);
        let tables: TableServiceClient = TableServiceClientBuilder::with_location(
            config.location(&config.endpoints.table),
            credentials.clone(),
        )
        .client_options(options.clone())
        .build();
        let queues = QueueServiceClientBuilder::with_location(
            config.location(&config.endpoints.queue),
            credentials.clone(),
        )
        .client_options(options.clone())
        .build();
        let blobs: BlobServiceClient =
            ClientBuilder::with_location(config.location(&config.endpoints.blob), credentials)
                .client_options(options)
                .blob_service_client();
        let table = tables.table_client(format!("{}instances", config.task_hub));
        let dead_letters = tables.table_client(format!("{}deadletters", config.task_hub));
        let run_logs = tables.table_client(format!("{}runlogs", config.task_hub));
        let documents = tables.table_client(format!("{}documents", config.task_hub));
        let payloads = blobs.container_client(format!("{}-payloads", config.task_hub));
        let index = StatusIndex {
            table: tables.table_client(format!("{}statusindex", config.task_hub)),
            on: false.into(),
            complete: false.into(),
            left: Default::default(),
            left_signal: Default::default(),
            flushing: Default::default(),
        };
        let backend = Arc::new(Self {
            config,
            table,
            dead_letters,
            run_logs,
            documents,
            queues,
            payloads,
            counter: Counter::default(),
            ranges: RangesCache::default(),
            wake: WakeSignals::default(),
            arrivals: LocalArrivals::default(),
            created: CreatedHere::default(),
            start_bundler: StartBundler::default(),
            index,
            index_batcher: IndexBatcher::default(),
            row_batcher: RowBatcher::default(),
            table_partitions: AtomicU32::new(0),
            health,
        });
        let index_writer: std::sync::Weak<dyn crate::index_batcher::IndexWriter> =
            Arc::downgrade(&backend) as _;
        backend.index_batcher.attach(index_writer);
        let row_writer: std::sync::Weak<dyn crate::row_batcher::RowWriter> =
            Arc::downgrade(&backend) as _;
        backend.row_batcher.attach(row_writer);
        let writer: std::sync::Weak<dyn crate::start_bundler::StartWriter> =
            Arc::downgrade(&backend) as _;
        backend.start_bundler.attach(writer);
        backend.create_task_hub().await?;
        Ok(backend)
    }

    async fn create_task_hub(&self) -> Result<(), Error> {
        ignore_exists(self.table.create().await.map(|_| ()), "create table")?;
        ignore_exists(self.dead_letters.create().await.map(|_| ()), "create table")?;
        ignore_exists(self.run_logs.create().await.map(|_| ()), "create table")?;
        ignore_exists(self.documents.create().await.map(|_| ()), "create table")?;
        for queue in self.all_queue_names() {
            ignore_exists(
                self.queue_client(&queue).create().await.map(|_| ()),
                "create queue",
            )?;
        }
        ignore_exists(
            self.queue_client(&self.wake_queue_name())
                .create()
                .await
                .map(|_| ()),
            "create queue",
        )?;
        ignore_exists(self.payloads.create().await.map(|_| ()), "create container")?;
        Ok(())
    }

    /// Deletes the whole task hub: its table, queues (with their dead-letter queues) and
    /// payload container.
    pub async fn delete_task_hub(&self) -> Result<(), Error> {
        ignore_missing(self.table.delete().await.map(|_| ()), "delete table")?;
        ignore_missing(self.dead_letters.delete().await.map(|_| ()), "delete table")?;
        ignore_missing(self.run_logs.delete().await.map(|_| ()), "delete table")?;
        ignore_missing(self.documents.delete().await.map(|_| ()), "delete table")?;
        ignore_missing(self.index.table.delete().await.map(|_| ()), "delete table")?;
        for queue in self.all_queue_names() {
            ignore_missing(
                self.queue_client(&queue).delete().await.map(|_| ()),
                "delete queue",
            )?;
        }
        ignore_missing(
            self.queue_client(&self.wake_queue_name())
                .delete()
                .await
                .map(|_| ()),
            "delete queue",
        )?;
        ignore_missing(self.payloads.delete().await.map(|_| ()), "delete container")?;
        Ok(())
    }

    /// The approximate number of messages (visible or not) in each of the task hub's queues,
    /// by storage queue name: the backlog an operator or a test looks at.
    pub async fn queue_depths(&self) -> Result<BTreeMap<String, usize>, Error> {
        let mut depths = BTreeMap::new();
        let mut names = self.all_queue_names();
        names.push(self.wake_queue_name());
        for name in names {
            self.counter.count("queue.metadata");
            let metadata = self
                .queue_client(&name)
                .get_metadata()
                .await
                .map_err(|e| classify("queue metadata", e))?;
            depths.insert(name, metadata.approximate_messages_count);
        }
        Ok(depths)
    }

    /// The storage queue name of an engine queue (`<hub>-control-00`, `<hub>-workitems`).
    pub fn queue_name(&self, queue: &QueueName) -> String {
        format!("{}-{}", self.config.task_hub, queue.suffix())
    }

    /// The dead-letter queue of an engine queue (`<queue>-poison`, as the Functions host names it).
    pub fn poison_queue_name(&self, queue: &QueueName) -> String {
        format!("{}-poison", self.queue_name(queue))
    }

    fn all_queue_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut queues: Vec<QueueName> = (0..self.config.control_partitions)
            .map(QueueName::Control)
            .collect();
        queues.push(QueueName::Work);
        for queue in &queues {
            names.push(self.queue_name(queue));
            names.push(self.poison_queue_name(queue));
        }
        names
    }

    pub(crate) fn queue_client(&self, name: &str) -> QueueClient {
        self.queues.queue_client(name)
    }

    /// Stores `text` inline when small, else in a blob, returning what goes in its place.
    pub(crate) async fn offload(
        &self,
        instance_id: &str,
        text: String,
        limit: usize,
    ) -> Result<String, Error> {
        if text.len() <= limit {
            return Ok(text);
        }
        let name = blob_name(instance_id, text.as_bytes());
        self.counter.count("blob.put");
        self.payloads
            .blob_client(&name)
            .put_block_blob(text.into_bytes())
            .await
            .map_err(|e| classify("offload payload", e))?;
        Ok(blob_ref_text(&name))
    }

    /// Undoes [`offload`](Self::offload).
    pub(crate) async fn inline(&self, text: String) -> Result<String, Error> {
        match as_blob_ref(&text) {
            None => Ok(text),
            Some(name) => {
                self.counter.count("blob.get");
                let bytes = self
                    .payloads
                    .blob_client(&name)
                    .get_content()
                    .await
                    .map_err(|e| classify("read offloaded payload", e))?;
                String::from_utf8(bytes)
                    .map_err(|_| Error::Permanent(format!("payload {name} is not UTF-8")))
            }
        }
    }
}

impl Backend for AzureBackend {
    fn transaction_counts(&self) -> BTreeMap<String, u64> {
        self.counter.snapshot()
    }

    fn unreachable_for(&self) -> Option<std::time::Duration> {
        self.health.unreachable_for()
    }
}

/// The SDK pipeline options of every engine client: a deadline per attempt (reported to
/// `health`) and a bounded retry budget, so no storage call waits forever.
fn client_options(config: &AzureConfig, health: &Arc<StorageHealth>) -> ClientOptions {
    let deadline: Arc<dyn Policy> = Arc::new(DeadlinePolicy {
        attempt_deadline: config.attempt_deadline,
        health: health.clone(),
    });
    ClientOptions::default()
        .retry(RetryOptions::exponential(
            ExponentialRetryOptions::default()
                .max_total_elapsed(config.retry_budget)
                .max_delay(std::time::Duration::from_secs(5)),
        ))
        .per_retry_policies(vec![deadline])
}

pub(crate) fn ignore_exists(result: azure_core::Result<()>, what: &str) -> Result<(), Error> {
    match result.map_err(|e| classify(what, e)) {
        Err(Error::Conflict(_)) => Ok(()),
        other => other,
    }
}

fn ignore_missing(result: azure_core::Result<()>, what: &str) -> Result<(), Error> {
    match result.map_err(|e| classify(what, e)) {
        Err(Error::NotFound(_)) => Ok(()),
        other => other,
    }
}

//! Running under a host that owns the queue messages (the Azure Functions host with queue
//! triggers): the host receives a message, hands it over in an invocation, and deletes it
//! when the handler answers 2xx. The same episode and activity code runs; only settling
//! differs ([`host_queue`]), and each invocation says whether its message's effect is
//! durable, so that the host's own visibility and `maxDequeueCount` take over otherwise.
//!
//! - Poison comes before the host's own limit: the engine dead-letters a message one
//!   delivery before the host would and fails its instance (visible in the status). The
//!   deliveries of earlier copies (re-sent by the handler) count too.
//! - The host invokes many messages at once (`batchSize + newBatchThreshold` per queue
//!   function): messages for one instance are coalesced into one episode and one commit
//!   ([`coalesce`]).
//! - Every invocation is bounded by the invocation budget, set below the host's
//!   `functionTimeout`: a timeout restarts the whole handler, killing every invocation in
//!   flight. An episode that cannot finish within the budget fails its instance clearly at
//!   the last delivery instead of timing out forever.

mod coalesce;
mod host_queue;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::warn;

use super::{activity_worker, orchestration_worker, settling, Shared, WorkerOptions};
use crate::backend::{
    Backend, Error, OrchestratorMessage, QueueMessage, QueueName, Receipt, Received,
};
use crate::clock::{Clock, SystemClock};
use crate::registry::Registry;
use host_queue::{host_body, HostQueue, Settled, HOST_RECEIPT};

/// How the host runs the handler.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The host's `maxDequeueCount` (host.json `extensions.queues`).
    pub max_dequeue_count: u32,
    /// Longest one invocation may work: below `functionTimeout`, with room to answer.
    pub invocation_budget: Duration,
}

impl HostOptions {
    /// The budget for a `functionTimeout`: 80 % of it, at most a minute less.
    pub fn for_function_timeout(max_dequeue_count: u32, function_timeout: Duration) -> Self {
        let margin = (function_timeout / 5).min(Duration::from_secs(60));
        Self {
            max_dequeue_count,
            invocation_budget: function_timeout.saturating_sub(margin),
        }
    }
}

/// Why an invocation must be answered non-2xx (the host then delivers the message again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSettled(pub String);

impl std::fmt::Display for NotSettled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Processes host-delivered messages through the engine.
pub struct HostedWorker {
    shared: Arc<Shared>,
    host_queue: Arc<HostQueue>,
    permits: Arc<Semaphore>,
    options: HostOptions,
    mailbox: coalesce::Mailbox,
}

impl HostedWorker {
    /// A hosted worker. Activities go through the work-item queue (each its own invocation,
    /// bounded by the invocation budget), never inline in a control-queue invocation.
    pub fn new(
        backend: Arc<dyn Backend>,
        registry: Registry,
        mut worker: WorkerOptions,
        options: HostOptions,
    ) -> Self {
        worker.max_dequeue_count = options.max_dequeue_count.saturating_sub(1).max(1);
        worker.inline_activities = false;
        worker.replay_off_runtime = true;
        let activity_limit = options
            .invocation_budget
            .saturating_sub(Duration::from_secs(5));
        worker.activity_timeout = Some(match worker.activity_timeout {
            Some(set) => set.min(activity_limit),
            None => activity_limit,
        });
        let host_queue = Arc::new(HostQueue::new(backend));
        let backend: Arc<dyn Backend> = host_queue.clone();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let permits = Arc::new(Semaphore::new(worker.orchestration_concurrency.max(1)));
        Self {
            shared: Arc::new(Shared::new(backend, registry, worker, clock)),
            host_queue,
            permits,
            options,
            mailbox: coalesce::Mailbox::default(),
        }
    }

    /// Takes in one invocation's message: what the engine sees of it, and its id (whose
    /// settlement is then recorded afresh).
    async fn intake(
        &self,
        raw: &str,
        host_dequeue_count: u32,
        message_id: &str,
    ) -> Result<(Received, String), NotSettled> {
        let received = self.received(raw, host_dequeue_count, message_id).await?;
        let message_id = received.receipt.message_id.clone();
        self.host_queue.forget(&message_id);
        Ok((received, message_id))
    }

    /// The delivery as the engine sees it: the body resolved (large bodies are stored by
    /// reference), and the deliveries of earlier copies added to the host's count.
    async fn received(
        &self,
        raw: &str,
        host_dequeue_count: u32,
        message_id: &str,
    ) -> Result<Received, NotSettled> {
        let raw = self
            .host_queue
            .inner
            .resolve_body(raw)
            .await
            .map_err(|e| NotSettled(format!("reading the message's stored body: {e}")))?;
        let prior = QueueMessage::prior_deliveries(&raw);
        let dequeue_count = host_dequeue_count.max(1).saturating_add(prior);
        let message_id = if message_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            message_id.to_owned()
        };
        Ok(Received {
            receipt: Receipt {
                message_id,
                pop_receipt: HOST_RECEIPT.to_owned(),
                stored_body: host_body(&raw, dequeue_count),
            },
            dequeue_count,
            message: QueueMessage::decode(&raw),
            raw,
        })
    }

    /// Handles one message of a control queue (an orchestrator queue trigger). `Ok`: the
    /// host may delete the message.
    ///
    /// The work runs on a thread of its own (the blocking pool): a replay is synchronous
    /// code that a timeout cannot interrupt and that would hold an async worker meanwhile.
    /// The answer goes out at the budget while the work finishes behind it, and the host
    /// never reaches `functionTimeout`.
    pub async fn handle_control(
        self: &Arc<Self>,
        queue: QueueName,
        raw: &str,
        dequeue_count: u32,
        message_id: &str,
    ) -> Result<(), NotSettled> {
        let (received, message_id) = self.intake(raw, dequeue_count, message_id).await?;
        // A bundle of starts belongs to no one instance: it is not coalesced with an
        // instance's deliveries, and over budget it is retried, not failed.
        let instance_id = received
            .message
            .as_ref()
            .ok()
            .filter(|m| !matches!(m, QueueMessage::Starts { .. }))
            .map(|m| m.instance_id().to_owned());
        let last_delivery = received.dequeue_count >= self.shared.options.max_dequeue_count;
        let (this, target) = (self.clone(), instance_id.clone());
        let runtime = tokio::runtime::Handle::current();
        let work = tokio::task::spawn_blocking(move || {
            runtime.block_on(async {
                match target {
                    Some(ref instance_id) => {
                        this.mailbox
                            .deliver(instance_id, received, |batch| this.run_batch(&queue, batch))
                            .await
                    }
                    None => this.run_batch(&queue, vec![received]).await,
                }
            })
        });
        if tokio::time::timeout(self.options.invocation_budget, work)
            .await
            .is_err()
        {
            return self
                .over_budget(&message_id, instance_id.as_deref(), last_delivery)
                .await;
        }
        self.outcome(&message_id)
    }

    async fn run_batch(&self, queue: &QueueName, batch: Vec<Received>) {
        orchestration_worker::process_batch(
            &self.shared,
            queue,
            batch,
            &self.permits,
            orchestration_worker::Sessions::Awaited,
        )
        .await;
    }

    /// An episode that did not finish within the budget. Before the last delivery the host
    /// tries again (the work may have been slow storage); at the last one the instance is
    /// failed with the reason, so it does not time out forever.
    async fn over_budget(
        &self,
        message_id: &str,
        instance_id: Option<&str>,
        last_delivery: bool,
    ) -> Result<(), NotSettled> {
        self.host_queue.take_outcome(message_id);
        let budget = self.options.invocation_budget.as_secs_f64();
        let reason = format!(
            "the episode did not finish within the invocation budget of {budget:.0} s \
             (set below the host's functionTimeout)"
        );
        let (Some(instance_id), true) = (instance_id, last_delivery) else {
            warn!(
                instance_id,
                reason, "invocation over budget; the host will retry"
            );
            return Err(NotSettled(reason));
        };
        warn!(
            instance_id,
            reason, "failing the instance at its last delivery"
        );
        settling::fail_instance(&self.shared, instance_id, &reason)
            .await
            .map_err(|e| NotSettled(format!("{reason}; failing the instance: {e}")))
    }

    fn outcome(&self, message_id: &str) -> Result<(), NotSettled> {
        match self.host_queue.take_outcome(message_id) {
            Some(Settled::Durable) => Ok(()),
            Some(Settled::Failed(reason)) => Err(NotSettled(reason)),
            None => Err(NotSettled(
                "the message's effect is not durable yet (storage failed); the host will \
                 deliver it again"
                    .into(),
            )),
        }
    }

    /// Handles one work item (the activity queue trigger). `Ok`: the host may delete it.
    pub async fn handle_work_item(
        self: &Arc<Self>,
        raw: &str,
        dequeue_count: u32,
        message_id: &str,
    ) -> Result<(), NotSettled> {
        let (received, message_id) = self.intake(raw, dequeue_count, message_id).await?;
        // Heavy activities in parallel: at most `activity_concurrency` run at once here.
        let slots = self.shared.activity_slots.clone();
        let shared = self.shared.clone();
        let work = tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            activity_worker::handle(&shared, received).await;
        });
        if tokio::time::timeout(self.options.invocation_budget, work)
            .await
            .is_err()
        {
            self.host_queue.take_outcome(&message_id);
            return Err(NotSettled(
                "the activity did not finish within the invocation budget".into(),
            ));
        }
        self.outcome(&message_id)
    }

    /// Marks an instance Failed with a reason (unless it already finished): for messages
    /// the host dead-lettered on its own.
    pub async fn fail_instance(&self, instance_id: &str, reason: &str) -> Result<(), Error> {
        settling::fail_instance(&self.shared, instance_id, reason).await
    }

    /// Marks Failed each instance of a bundle of starts the host dead-lettered on its own
    /// whose start never committed (the others keep running).
    pub async fn fail_unstarted(&self, starts: &[OrchestratorMessage], reason: &str) {
        settling::fail_unstarted(&self.shared, starts, reason).await;
    }

    /// The backend the engine sees (host-owned settling included).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.shared.backend.clone()
    }

    /// A message body made whole (large bodies are stored by reference).
    pub async fn resolve_body(&self, body: &str) -> Result<String, Error> {
        self.host_queue.inner.resolve_body(body).await
    }
}

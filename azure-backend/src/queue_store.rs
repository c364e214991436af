//! Engine queues over Storage Queues: base64 bodies (what the Functions host expects),
//! large bodies by blob reference, delays capped at the service's visibility limit (the
//! runtime re-arms longer timers), dead letters in the archive table (`dead_letter_store`).

use std::time::Duration;

use async_trait::async_trait;
use azure_storage_queues::prelude::*;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use flowforge_orchestrator::backend::{
    ArchivedLetter, DeadLetter, Error, Outbound, QueueDepth, QueueMessage, QueueName, QueueStore,
    Receipt, Received,
};

use crate::backend::AzureBackend;
use crate::error::classify;
use crate::start_bundler::{StartBundler, StartWriter};
use crate::wake::SIGNAL_TTL;

/// Time to live of every message: beyond the longest visibility delay, so that a timer
/// message never expires before it is seen (the service's default is 7 days).
const MESSAGE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Queue puts in flight at once when an episode sends many messages.
const SEND_CONCURRENCY: usize = 32;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Decodes a base64 body; a body that is not base64 is taken as plain text (tolerant of
/// messages put by other tools).
fn unb64(body: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| body.to_owned())
}

impl AzureBackend {
    /// Puts a text (base64-encoded, as the Functions host expects) into a storage queue by
    /// name. For tools and the host harness.
    pub async fn put_raw(&self, queue_name: &str, text: &str) -> Result<(), Error> {
        self.counter.count("queue.put");
        self.queue_client(queue_name)
            .put_message(b64(text))
            .ttl(MESSAGE_TTL)
            .await
            .map(|_| ())
            .map_err(|e| classify("queue put", e))
    }

    /// Receives raw texts from a storage queue by name (base64-decoded, as the Functions
    /// host delivers them). For tools and the host harness.
    pub async fn receive_raw(
        &self,
        queue_name: &str,
        max: u8,
        lock: Duration,
    ) -> Result<Vec<(Receipt, u32, String)>, Error> {
        self.counter.count("queue.get");
        let response = self
            .queue_client(queue_name)
            .get_messages()
            .number_of_messages(max.clamp(1, 32))
            .visibility_timeout(lock.max(Duration::from_secs(1)))
            .await
            .map_err(|e| classify("queue get", e))?;
        Ok(response
            .messages
            .into_iter()
            .map(|m| {
                let text = unb64(&m.message_text);
                let receipt = Receipt {
                    message_id: m.message_id,
                    pop_receipt: m.pop_receipt,
                    stored_body: m.message_text,
                };
                (
                    receipt,
                    m.dequeue_count.try_into().unwrap_or(u32::MAX),
                    text,
                )
            })
            .collect())
    }

    /// Deletes a message from a storage queue by name.
    pub async fn delete_raw(&self, queue_name: &str, receipt: &Receipt) -> Result<(), Error> {
        self.counter.count("queue.delete");
        self.queue_client(queue_name)
            .pop_receipt_client(PopReceipt::new(
                receipt.message_id.clone(),
                receipt.pop_receipt.clone(),
            ))
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| classify("queue delete", e))
    }

    /// Makes a message of a storage queue visible again after `delay` (as the Functions
    /// host does with its `visibilityTimeout` after a failed invocation).
    pub async fn release_raw(
        &self,
        queue_name: &str,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<(), Error> {
        self.counter.count("queue.update");
        self.queue_client(queue_name)
            .pop_receipt_client(PopReceipt::new(
                receipt.message_id.clone(),
                receipt.pop_receipt.clone(),
            ))
            .update(receipt.stored_body.clone(), VisibilityTimeout::new(delay))
            .await
            .map(|_| ())
            .map_err(|e| classify("queue update", e))
    }

    /// Sends messages concurrently (an episode may decide hundreds).
    pub(crate) async fn send_all(&self, messages: &[Outbound]) -> Result<(), Error> {
        for chunk in messages.chunks(SEND_CONCURRENCY) {
            futures::future::try_join_all(chunk.iter().map(|m| self.send(m))).await?;
        }
        Ok(())
    }

    /// Sends a start message without waking this process's workers: the caller wakes them
    /// ([`Self::arrived`]) once the instance's state row is written, so they find it.
    /// The queue to wake for, when the message is visible now.
    pub(crate) async fn send_start(&self, outbound: &Outbound) -> Result<Option<String>, Error> {
        let queue = self.queue_name(&outbound.queue);
        let instance = outbound.message.instance_id().to_owned();
        if let (QueueMessage::Orchestrator(start), None) = (&outbound.message, outbound.visible_at)
        {
            let bytes = outbound.message.encode().len();
            if StartBundler::takes(bytes) {
                let visible_now = self
                    .start_bundler
                    .send(&queue, start.clone(), bytes)
                    .await?;
                return Ok(visible_now.then_some(queue));
            }
        }
        let visible_now = self
            .put_quietly(
                &queue,
                outbound.message.encode(),
                outbound.visible_at,
                &instance,
            )
            .await?;
        Ok(visible_now.then_some(queue))
    }

    /// Wakes this process's workers for a message put on `queue` (see `local_arrivals`).
    pub(crate) fn arrived(&self, queue: &str) {
        self.arrivals.sent(queue);
    }

    /// Puts a body (offloaded when large), visible at `visible_at` capped at the limit;
    /// this process's workers are woken for it when it is visible now.
    async fn put(
        &self,
        queue: &str,
        body: String,
        visible_at: Option<chrono::DateTime<Utc>>,
        instance_hint: &str,
    ) -> Result<(), Error> {
        if self
            .put_quietly(queue, body, visible_at, instance_hint)
            .await?
        {
            self.arrivals.sent(queue);
        }
        Ok(())
    }

    /// Puts a body; whether it is visible now.
    async fn put_quietly(
        &self,
        queue: &str,
        body: String,
        visible_at: Option<chrono::DateTime<Utc>>,
        instance_hint: &str,
    ) -> Result<bool, Error> {
        let instance = if instance_hint.is_empty() {
            QueueMessage::decode(&body)
                .map(|m| m.instance_id().to_owned())
                .unwrap_or_else(|_| "_raw".into())
        } else {
            instance_hint.to_owned()
        };
        let body = self
            .offload(&instance, body, self.config.max_inline_message)
            .await?;
        let mut put = self
            .queue_client(queue)
            .put_message(b64(&body))
            .ttl(MESSAGE_TTL);
        let mut visible_now = true;
        if let Some(at) = visible_at {
            let delay = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            // The service counts whole seconds: round up, never fire early.
            let delay = Duration::from_secs(delay.as_secs() + u64::from(delay.subsec_nanos() > 0));
            let delay = delay.min(self.config.max_visibility_delay);
            if !delay.is_zero() {
                put = put.visibility_timeout(delay);
                visible_now = false;
            }
        }
        self.counter.count("queue.put");
        put.await.map_err(|e| classify("queue put", e))?;
        self.signal_wake(visible_at).await;
        Ok(visible_now)
    }
}

#[async_trait]
impl StartWriter for AzureBackend {
    fn bundler(&self) -> &StartBundler {
        &self.start_bundler
    }

    async fn put_start(&self, queue: &str, body: String, hint: &str) -> Result<bool, Error> {
        self.put_quietly(queue, body, None, hint).await
    }
}

#[async_trait]
impl QueueStore for AzureBackend {
    fn control_partitions(&self) -> u32 {
        self.config.control_partitions
    }

    async fn send(&self, outbound: &Outbound) -> Result<(), Error> {
        let instance = outbound.message.instance_id().to_owned();
        self.put(
            &self.queue_name(&outbound.queue),
            outbound.message.encode(),
            outbound.visible_at,
            &instance,
        )
        .await
    }

    async fn send_raw(
        &self,
        queue: &QueueName,
        raw: &str,
        visible_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<(), Error> {
        self.put(&self.queue_name(queue), raw.to_owned(), visible_at, "")
            .await
    }

    async fn resolve_body(&self, body: &str) -> Result<String, Error> {
        self.inline(body.to_owned()).await
    }

    fn has_wake_signals(&self) -> bool {
        true
    }

    async fn peek_wake(&self) -> Result<Vec<String>, Error> {
        self.peek_wake_ids().await
    }

    async fn wait_for_messages(&self, queues: &[QueueName], max_wait: Duration) {
        let names: Vec<String> = queues.iter().map(|q| self.queue_name(q)).collect();
        self.arrivals.wait(&names, max_wait).await;
    }

    async fn queue_depth(&self, queue: &QueueName) -> Result<QueueDepth, Error> {
        let client = self.queue_client(&self.queue_name(queue));
        self.counter.count("queue.metadata");
        let metadata = client
            .get_metadata()
            .await
            .map_err(|e| classify("queue metadata", e))?;
        self.counter.count("queue.peek");
        let peeked = client
            .peek_messages()
            .number_of_messages(1)
            .await
            .map_err(|e| classify("queue peek", e))?;
        let now = time::OffsetDateTime::now_utc();
        let oldest_age = peeked.messages.first().map(|m| {
            let age = now - m.insertion_time;
            Duration::from_secs_f64(age.as_seconds_f64().max(0.0))
        });
        Ok(QueueDepth {
            messages: metadata.approximate_messages_count as u64,
            oldest_age,
        })
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        lock: Duration,
    ) -> Result<Vec<Received>, Error> {
        self.counter.count("queue.get");
        let name = self.queue_name(queue);
        self.arrivals.receiving(&name);
        let response = self
            .queue_client(&name)
            .get_messages()
            .number_of_messages(max.clamp(1, 32) as u8)
            .visibility_timeout(lock.max(Duration::from_secs(1)))
            .await
            .map_err(|e| classify("queue get", e))?;
        if !response.messages.is_empty() {
            // Should this process die holding them, they surface when the lease lapses: a
            // wake signal then makes idle workers look (bucketed, so at most one put per
            // few seconds), instead of the hourly sweep.
            self.signal_wake(Some(Utc::now() + lease_lapse(lock))).await;
        }
        let mut received = Vec::with_capacity(response.messages.len());
        for message in response.messages {
            let text = unb64(&message.message_text);
            let stored_body = message.message_text.clone();
            let raw = match self.inline(text.clone()).await {
                Ok(raw) => raw,
                Err(e) => format!("<offloaded body unreadable: {e}> {text}"),
            };
            received.push(Received {
                receipt: Receipt {
                    message_id: message.message_id,
                    pop_receipt: message.pop_receipt,
                    stored_body,
                },
                // Copies re-sent by the engine carry the failed deliveries before them.
                dequeue_count: u32::try_from(message.dequeue_count)
                    .unwrap_or(u32::MAX)
                    .saturating_add(QueueMessage::prior_deliveries(&raw)),
                message: QueueMessage::decode(&raw),
                raw,
            });
        }
        Ok(received)
    }

    async fn delete(&self, queue: &QueueName, receipt: &Receipt) -> Result<(), Error> {
        self.delete_raw(&self.queue_name(queue), receipt).await
    }

    async fn abandon(
        &self,
        queue: &QueueName,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<Receipt, Error> {
        self.counter.count("queue.update");
        let client = self
            .queue_client(&self.queue_name(queue))
            .pop_receipt_client(PopReceipt::new(
                receipt.message_id.clone(),
                receipt.pop_receipt.clone(),
            ));
        // The update rewrites the text too: give back the stored body unchanged.
        let response = client
            .update(
                receipt.stored_body.clone(),
                VisibilityTimeout::new(delay.min(self.config.max_visibility_delay)),
            )
            .await
            .map_err(|e| classify("queue update", e))?;
        // A deferred message, or a renewed lease that may lapse with its holder: wake idle
        // workers when it surfaces.
        self.signal_wake(Some(Utc::now() + lease_lapse(delay)))
            .await;
        Ok(Receipt {
            message_id: receipt.message_id.clone(),
            pop_receipt: response.pop_receipt,
            stored_body: receipt.stored_body.clone(),
        })
    }

    async fn put_dead_letter(&self, queue: &QueueName, letter: &DeadLetter) -> Result<(), Error> {
        self.archive_letter(queue, letter).await
    }

    async fn list_dead_letters(&self, limit: usize) -> Result<Vec<ArchivedLetter>, Error> {
        self.archived_letters(limit).await
    }

    async fn remove_dead_letter(&self, id: &str) -> Result<bool, Error> {
        self.remove_letter(id).await
    }
}

/// Wake signals (see `wake.rs`): leaving them and looking at them.
impl AzureBackend {
    /// The queue of wake signals (`<hub>-wake`).
    pub fn wake_queue_name(&self) -> String {
        format!("{}-wake", self.config.task_hub)
    }

    /// Leaves a wake signal for a message just sent, unless one covers it already. A
    /// failure is logged, not returned: the message is sent, and idle workers still sweep
    /// every queue now and then.
    pub(crate) async fn signal_wake(&self, visible_at: Option<DateTime<Utc>>) {
        let now = Utc::now();
        if !self.wake.claim(visible_at, now) {
            return;
        }
        let delay = visible_at
            .and_then(|at| (at - now).to_std().ok())
            .map(|d| Duration::from_secs(d.as_secs() + 1).min(self.config.max_visibility_delay))
            .unwrap_or_default();
        let mut put = self
            .queue_client(&self.wake_queue_name())
            .put_message("d2FrZQ==")
            .ttl(delay + SIGNAL_TTL);
        if !delay.is_zero() {
            put = put.visibility_timeout(delay);
        }
        self.counter.count("queue.put");
        if let Err(error) = put.await {
            tracing::debug!(%error, "leaving a wake signal failed");
        }
    }

    /// The ids of the wake signals visible now (up to 32).
    pub(crate) async fn peek_wake_ids(&self) -> Result<Vec<String>, Error> {
        self.counter.count("queue.peek");
        let response = self
            .queue_client(&self.wake_queue_name())
            .peek_messages()
            .number_of_messages(32)
            .await
            .map_err(|e| classify("wake peek", e))?;
        Ok(response
            .messages
            .into_iter()
            .map(|m| m.message_id)
            .collect())
    }
}

/// When a message hidden for `hidden` surfaces, from now.
fn lease_lapse(hidden: Duration) -> chrono::Duration {
    chrono::Duration::from_std(hidden).unwrap_or_default()
}

//! Traces and metrics through the OpenTelemetry API (see `docs/observability.md`): the
//! engine records spans and measurements where the work happens; the binary decides where
//! they go by installing a provider (OTLP, Application Insights) or none (the API's no-op:
//! nothing is built or sent). Pure trace-context arithmetic in [`trace_context`].

pub mod metrics;
pub mod spans;
pub mod trace_context;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::{global, KeyValue};

use crate::backend::{Backend, QueueName};

/// The latest backlog reading of each queue: (messages, oldest visible message's age in s).
type Backlog = Arc<Mutex<BTreeMap<String, (u64, f64)>>>;

/// Observes what needs storage to know, as gauges read at each export: every queue's
/// backlog (`flowforge.queue.backlog`) and its oldest message's age
/// (`flowforge.queue.oldest_age`, seconds), read every `every` by a task this starts (one
/// metadata read and one peek per queue: a few transactions a minute), and the storage
/// transactions made so far by kind (`flowforge.storage.transactions`, from the backend's
/// own count). Call once, after installing a meter provider; drop the handle to stop.
pub fn observe_backend(backend: Arc<dyn Backend>, every: Duration) -> tokio::task::JoinHandle<()> {
    let backlog: Backlog = Arc::default();
    let meter = global::meter_provider().meter(spans::SCOPE);
    let read = backlog.clone();
    let _backlog_gauge = meter
        .u64_observable_gauge("flowforge.queue.backlog")
        .with_description("Messages in each queue (approximate)")
        .with_callback(move |observer| {
            let readings = read.lock().unwrap_or_else(|e| e.into_inner());
            for (queue, (messages, _)) in readings.iter() {
                observer.observe(*messages, &[KeyValue::new("queue", queue.clone())]);
            }
        })
        .build();
    let read = backlog.clone();
    let _age_gauge = meter
        .f64_observable_gauge("flowforge.queue.oldest_age")
        .with_unit("s")
        .with_description("Age of each queue's oldest visible message")
        .with_callback(move |observer| {
            let readings = read.lock().unwrap_or_else(|e| e.into_inner());
            for (queue, (_, age)) in readings.iter() {
                observer.observe(*age, &[KeyValue::new("queue", queue.clone())]);
            }
        })
        .build();
    let counted = backend.clone();
    let _transactions = meter
        .u64_observable_counter("flowforge.storage.transactions")
        .with_description("Storage transactions, by service and operation")
        .with_callback(move |observer| {
            for (kind, count) in counted.transaction_counts() {
                observer.observe(count, &[KeyValue::new("kind", kind)]);
            }
        })
        .build();
    tokio::spawn(async move {
        let mut queues: Vec<QueueName> = (0..backend.control_partitions())
            .map(QueueName::Control)
            .collect();
        queues.push(QueueName::Work);
        loop {
            for queue in &queues {
                // A reading that fails (or hangs past a deadline) keeps the last one.
                let read =
                    tokio::time::timeout(Duration::from_secs(10), backend.queue_depth(queue));
                if let Ok(Ok(depth)) = read.await {
                    let age = depth.oldest_age.map_or(0.0, |a| a.as_secs_f64());
                    backlog
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(queue.suffix(), (depth.messages, age));
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

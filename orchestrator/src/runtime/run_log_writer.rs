//! Writes run-log chunks in the background, batched per instance: a fan-out's thousand
//! attempts cost a handful of table transactions, not a thousand. Best effort by design:
//! a write that keeps failing is dropped with a warning; logs never hold up a run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::warn;

use crate::backend::Backend;
use crate::run_logs::LogChunk;

/// How long the writer gathers chunks before writing them.
const LINGER: Duration = Duration::from_millis(50);
/// Chunks per write (one entity group transaction on Table Storage allows 100).
const CHUNKS_PER_WRITE: usize = 100;
/// Instances written at once.
const PARALLEL_WRITES: usize = 8;
/// Tries per write.
const TRIES: u32 = 3;

enum Command {
    Chunks(Vec<LogChunk>),
    Flush(oneshot::Sender<()>),
}

/// The handle the activity attempts write through.
pub(crate) struct RunLogWriter {
    sender: Option<mpsc::UnboundedSender<Command>>,
}

impl RunLogWriter {
    /// Starts the writer on the current tokio runtime (outside one: run logs are off).
    pub(crate) fn start(backend: Arc<dyn Backend>) -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self { sender: None };
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run(backend, receiver));
        Self {
            sender: Some(sender),
        }
    }

    /// Queues an attempt's chunks.
    pub(crate) fn write(&self, chunks: Vec<LogChunk>) {
        if chunks.is_empty() {
            return;
        }
        if let Some(sender) = &self.sender {
            // The writer ends only when this handle is dropped.
            let _ = sender.send(Command::Chunks(chunks));
        }
    }

    /// Returns once every chunk queued before the call is written (or given up).
    pub(crate) async fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (done, written) = oneshot::channel();
        if sender.send(Command::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

async fn run(backend: Arc<dyn Backend>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let slots = Arc::new(Semaphore::new(PARALLEL_WRITES));
    while let Some(first) = commands.recv().await {
        let mut pending: BTreeMap<String, Vec<LogChunk>> = BTreeMap::new();
        let mut flushes = Vec::new();
        let mut take = |command: Command, flushes: &mut Vec<oneshot::Sender<()>>| match command {
            Command::Chunks(chunks) => {
                for chunk in chunks {
                    let instance = chunk.attempt.instance_id.clone();
                    pending.entry(instance).or_default().push(chunk);
                }
            }
            Command::Flush(done) => flushes.push(done),
        };
        take(first, &mut flushes);
        let linger_until = Instant::now() + LINGER;
        while flushes.is_empty() {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => take(command, &mut flushes),
                    None => break,
                },
                () = tokio::time::sleep_until(linger_until) => break,
            }
        }
        let mut writes = JoinSet::new();
        for (instance_id, chunks) in pending {
            for batch in chunks.chunks(CHUNKS_PER_WRITE) {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let backend = backend.clone();
                let (instance_id, batch) = (instance_id.clone(), batch.to_vec());
                writes.spawn(async move {
                    write(&*backend, &instance_id, &batch).await;
                    drop(slot);
                });
            }
        }
        while writes.join_next().await.is_some() {}
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(backend: &dyn Backend, instance_id: &str, chunks: &[LogChunk]) {
    for attempt in 1..=TRIES {
        match backend.append_run_logs(instance_id, chunks).await {
            Ok(()) => return,
            Err(error) if error.is_transient() && attempt < TRIES => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(error) => {
                warn!(%error, instance_id, chunks = chunks.len(), "run logs could not be written; dropped");
                return;
            }
        }
    }
}

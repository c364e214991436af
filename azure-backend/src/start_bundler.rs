//! Coalesced starts: while a start is being put on a control queue, the starts that arrive
//! for the same queue wait and then go out together as one message
//! ([`QueueMessage::Starts`]). A lone start goes out at once, as a message of its own, so
//! coalescing adds no delay; under load many `create_instance` calls share one queue
//! write, and the worker deletes the bundle once every start in it is committed. Each
//! caller still writes its own state row after its start is on the queue, so no start is
//! lost and each status is readable when its start returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use flowforge_orchestrator::backend::{Error, OrchestratorMessage, QueueMessage};
use tokio::sync::oneshot;

/// What the bundler writes through: the backend's queue put and its bundler.
#[async_trait]
pub(crate) trait StartWriter: Send + Sync + 'static {
    /// The bundler of this backend.
    fn bundler(&self) -> &StartBundler;
    /// Puts a body on a control queue by name; whether it is visible now.
    async fn put_start(&self, queue: &str, body: String, hint: &str) -> Result<bool, Error>;
}

/// Starts in one bundle at most (a turn per start follows on the worker).
pub(crate) const MAX_STARTS_PER_BUNDLE: usize = 64;

/// Encoded bytes of a bundle at most: well inside a queue message (64 KiB after base64),
/// so a bundle is never offloaded to a blob. A start larger than a quarter of it goes alone.
pub(crate) const MAX_BUNDLE_BYTES: usize = 40 << 10;

/// A start waiting for its queue's next write.
struct Waiting {
    start: OrchestratorMessage,
    bytes: usize,
    sent: oneshot::Sender<Result<bool, Error>>,
}

/// The starts waiting per control queue, and whether a writer is busy with that queue.
#[derive(Default)]
struct Queues {
    waiting: HashMap<String, Vec<Waiting>>,
    writing: std::collections::HashSet<String>,
}

/// Coalesces the starts of one backend.
#[derive(Default)]
pub(crate) struct StartBundler {
    queues: Mutex<Queues>,
    backend: std::sync::OnceLock<Weak<dyn StartWriter>>,
}

impl StartBundler {
    /// Gives the bundler its backend (for the writer task it spawns).
    pub(crate) fn attach(&self, backend: Weak<dyn StartWriter>) {
        let _ = self.backend.set(backend);
    }

    /// Whether a start of `bytes` encoded bytes may share a message.
    pub(crate) fn takes(bytes: usize) -> bool {
        bytes <= MAX_BUNDLE_BYTES / 4
    }

    /// Puts `start` on `queue`, alone or in a bundle with the starts that arrive meanwhile;
    /// whether it is visible now (always, for a start).
    pub(crate) async fn send(
        &self,
        queue: &str,
        start: OrchestratorMessage,
        bytes: usize,
    ) -> Result<bool, Error> {
        let Some(backend) = self
            .backend
            .get()
            .and_then(Weak::<dyn StartWriter>::upgrade)
        else {
            return Err(Error::Permanent("the start bundler has no backend".into()));
        };
        let (sent, outcome) = oneshot::channel();
        let lead = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues
                .waiting
                .entry(queue.to_owned())
                .or_default()
                .push(Waiting { start, bytes, sent });
            queues.writing.insert(queue.to_owned())
        };
        if lead {
            // A task of its own: the writer outlives a caller that stops waiting.
            tokio::spawn(write_until_empty(backend, queue.to_owned()));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(Error::Transient(
                "the start's queue write was interrupted".into(),
            ))
        })
    }

    /// Takes the next message's worth of starts for `queue`, or ends the writer's turn.
    fn next_batch(&self, queue: &str) -> Option<Vec<Waiting>> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = queues.waiting.entry(queue.to_owned()).or_default();
        if waiting.is_empty() {
            queues.waiting.remove(queue);
            queues.writing.remove(queue);
            return None;
        }
        let mut bytes = 0;
        let mut count = 0;
        for item in waiting.iter() {
            if count == MAX_STARTS_PER_BUNDLE
                || (count > 0 && bytes + item.bytes > MAX_BUNDLE_BYTES)
            {
                break;
            }
            bytes += item.bytes;
            count += 1;
        }
        Some(waiting.drain(..count.max(1)).collect())
    }
}

/// The body of a message carrying `starts`: a start alone as it always travelled, several
/// as a bundle.
fn body(starts: &[&OrchestratorMessage]) -> String {
    match starts {
        [one] => QueueMessage::Orchestrator((*one).clone()).encode(),
        many => QueueMessage::Starts {
            starts: many.iter().map(|s| (*s).clone()).collect(),
        }
        .encode(),
    }
}

/// Writes the waiting starts of `queue`, a message at a time, until none wait.
async fn write_until_empty(backend: Arc<dyn StartWriter>, queue: String) {
    while let Some(batch) = backend.bundler().next_batch(&queue) {
        let starts: Vec<&OrchestratorMessage> = batch.iter().map(|w| &w.start).collect();
        let hint = starts[0].instance_id.clone();
        let result = backend.put_start(&queue, body(&starts), &hint).await;
        for waiting in batch {
            let _ = waiting.sent.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowforge_orchestrator::history::{EventKind, NewEvent};

    fn start(id: &str) -> OrchestratorMessage {
        OrchestratorMessage {
            instance_id: id.into(),
            execution_id: None,
            event: NewEvent {
                timestamp: chrono::Utc::now(),
                kind: EventKind::OrchestratorStarted,
            },
            start_if: None,
        }
    }

    fn waiting(id: &str, bytes: usize) -> Waiting {
        Waiting {
            start: start(id),
            bytes,
            sent: oneshot::channel().0,
        }
    }

    #[test]
    fn a_batch_stops_at_the_count_or_the_size_and_a_large_start_goes_alone() {
        let bundler = StartBundler::default();
        {
            let mut queues = bundler.queues.lock().unwrap();
            let list = queues.waiting.entry("q".into()).or_default();
            for i in 0..70 {
                list.push(waiting(&format!("i{i}"), 100));
            }
            list.push(waiting("big", MAX_BUNDLE_BYTES));
            list.push(waiting("after", 100));
            queues.writing.insert("q".into());
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| bundler.next_batch("q"))
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![MAX_STARTS_PER_BUNDLE, 6, 1, 1]);
        assert!(bundler.queues.lock().unwrap().writing.is_empty());
    }

    #[test]
    fn one_start_travels_as_it_always_did_and_several_as_a_bundle() {
        let (a, b) = (start("a"), start("b"));
        let alone = QueueMessage::decode(&body(&[&a])).unwrap();
        assert!(matches!(alone, QueueMessage::Orchestrator(m) if m.instance_id == "a"));
        let both = QueueMessage::decode(&body(&[&a, &b])).unwrap();
        match both {
            QueueMessage::Starts { starts } => {
                let ids: Vec<&str> = starts.iter().map(|s| s.instance_id.as_str()).collect();
                assert_eq!(ids, ["a", "b"]);
            }
            other => panic!("expected a bundle, got {other:?}"),
        }
    }
}

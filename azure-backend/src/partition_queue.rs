//! What the batchers share (`index_batcher`, `row_batcher`): per table partition, the items
//! waiting to be written and whether a writer of that partition is running. The first item
//! of an idle partition starts a writer; the items that arrive while it writes wait for its
//! next transaction; the writer stops when none waits.

use std::collections::HashMap;
use std::sync::Mutex;

/// Items waiting per partition.
pub(crate) struct PartitionQueue<T> {
    partitions: Mutex<HashMap<String, Waiting<T>>>,
}

struct Waiting<T> {
    in_flight: bool,
    items: Vec<T>,
}

impl<T> Default for PartitionQueue<T> {
    fn default() -> Self {
        Self {
            partitions: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> PartitionQueue<T> {
    /// Queues an item; `true` when the partition had no writer and the caller must start one.
    pub(crate) fn push(&self, partition: &str, item: T) -> bool {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = partitions
            .entry(partition.to_owned())
            .or_insert_with(|| Waiting {
                in_flight: false,
                items: Vec::new(),
            });
        waiting.items.push(item);
        !std::mem::replace(&mut waiting.in_flight, true)
    }

    /// The items `take` picks from those waiting (in arrival order), or `None` — and the
    /// writer done — when none waits.
    pub(crate) fn next(
        &self,
        partition: &str,
        take: impl FnOnce(&mut Vec<T>) -> Vec<T>,
    ) -> Option<Vec<T>> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = partitions.get_mut(partition)?;
        if waiting.items.is_empty() {
            waiting.in_flight = false;
            return None;
        }
        Some(take(&mut waiting.items))
    }

    /// Drops a partition's waiting items (no writer can run: their callers get an error).
    pub(crate) fn abandon(&self, partition: &str) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        partitions.remove(partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_per_partition_until_none_waits() {
        let queue = PartitionQueue::default();
        assert!(queue.push("a", 1));
        assert!(!queue.push("a", 2));
        assert!(queue.push("b", 3));
        assert_eq!(queue.next("a", std::mem::take), Some(vec![1, 2]));
        assert!(!queue.push("a", 4));
        assert_eq!(
            queue.next("a", |items| items.drain(..1).collect()),
            Some(vec![4])
        );
        assert_eq!(queue.next("a", std::mem::take), None);
        // The writer stopped: the next item starts another.
        assert!(queue.push("a", 5));
    }
}

//! Counts storage transactions by `service.operation`, for the benchmark and tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A transaction counter.
#[derive(Default)]
pub(crate) struct Counter {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Counter {
    pub fn count(&self, op: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(op.to_owned()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

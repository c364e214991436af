//! Run logs: what an activity logs through `tracing` while it runs, kept per instance and
//! activity attempt in the task hub (Durable Functions keeps none per instance).
//!
//! - [`RunLogLayer`] (install it in the process's subscriber) captures the events of each
//!   activity attempt's span into a bounded buffer;
//! - the runtime cuts an attempt's lines into [`LogChunk`]s when it ends and writes them,
//!   batched per instance, through [`crate::backend::RunLogStore`];
//! - purging an instance removes its logs; the API serves them in pages.

mod capture;

pub use capture::{AttemptCapture, RunLogLayer};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Lines kept per activity attempt; past it the rest are counted, not kept.
pub const MAX_LINES_PER_ATTEMPT: usize = 1_000;
/// Characters kept of one line's message (and of each field's value).
pub const MAX_LINE_CHARS: usize = 2_000;
/// Characters of one chunk's lines as JSON: a chunk fits one table property (32 K UTF-16
/// units) with room to spare.
pub const MAX_CHUNK_CHARS: usize = 24_000;

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// When it was logged.
    pub timestamp: DateTime<Utc>,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The `tracing` target (usually the module path).
    pub target: String,
    /// The message.
    pub message: String,
    /// The other fields of the event, as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// Which activity attempt lines belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptKey {
    /// The instance.
    pub instance_id: String,
    /// Its execution.
    pub execution_id: String,
    /// The activity's name.
    pub activity: String,
    /// The `ActivityScheduled` id (a retry under a retry policy is a new id).
    pub activity_id: u64,
    /// The delivery of the work item this attempt ran (1 unless redelivered).
    pub delivery: u32,
    /// When the attempt started: orders attempts of one activity id.
    pub started_at: DateTime<Utc>,
}

/// Some of one attempt's lines, in order: the unit stored and paged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogChunk {
    /// Sorts the chunks of an instance: execution, activity id, attempt start, chunk number.
    pub key: String,
    /// The attempt.
    #[serde(flatten)]
    pub attempt: AttemptKey,
    /// The lines.
    pub lines: Vec<LogLine>,
    /// Lines of the attempt left out past [`MAX_LINES_PER_ATTEMPT`] (on its last chunk).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One page of an instance's log chunks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogPage {
    /// Chunks in key order.
    pub chunks: Vec<LogChunk>,
    /// The key to continue after, when more may follow.
    pub continuation: Option<String>,
}

impl AttemptKey {
    /// The stored key of chunk `n` of this attempt.
    pub fn chunk_key(&self, n: usize) -> String {
        format!(
            "{}-{:010}-{:013}-{n:05}",
            self.execution_id,
            self.activity_id,
            self.started_at.timestamp_millis().max(0)
        )
    }

    /// An attempt's lines as chunks of at most [`MAX_CHUNK_CHARS`] each; `dropped` goes on
    /// the last. No lines and nothing dropped: no chunk.
    pub fn into_chunks(self, lines: Vec<LogLine>, dropped: u64) -> Vec<LogChunk> {
        let mut chunks: Vec<LogChunk> = Vec::new();
        let mut current: Vec<LogLine> = Vec::new();
        let mut size = 0;
        for line in lines {
            let line_size = serde_json::to_string(&line).map_or(0, |s| s.len());
            if !current.is_empty() && size + line_size > MAX_CHUNK_CHARS {
                let key = self.chunk_key(chunks.len());
                chunks.push(self.chunk(key, std::mem::take(&mut current), 0));
                size = 0;
            }
            size += line_size;
            current.push(line);
        }
        if !current.is_empty() || dropped > 0 {
            let key = self.chunk_key(chunks.len());
            chunks.push(self.chunk(key, current, dropped));
        }
        chunks
    }

    fn chunk(&self, key: String, lines: Vec<LogLine>, dropped: u64) -> LogChunk {
        LogChunk {
            key,
            attempt: self.clone(),
            lines,
            dropped,
        }
    }
}

/// Cuts `text` to `max` characters, marking the cut.
pub(crate) fn truncated(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> AttemptKey {
        AttemptKey {
            instance_id: "i".into(),
            execution_id: "e1".into(),
            activity: "a".into(),
            activity_id: 7,
            delivery: 1,
            started_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default(),
        }
    }

    fn line(message: &str) -> LogLine {
        LogLine {
            timestamp: DateTime::UNIX_EPOCH,
            level: "INFO".into(),
            target: "t".into(),
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    #[test]
    fn chunks_keep_order_and_size_and_sort_by_key() {
        let lines: Vec<_> = (0..100)
            .map(|i| line(&format!("{i}:{}", "x".repeat(1_000))))
            .collect();
        let chunks = attempt().into_chunks(lines, 3);
        assert!(chunks.len() >= 5, "{} chunks", chunks.len());
        for chunk in &chunks {
            let size: usize = chunk
                .lines
                .iter()
                .map(|l| serde_json::to_string(l).map_or(0, |s| s.len()))
                .sum();
            assert!(size <= MAX_CHUNK_CHARS);
        }
        let messages: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.lines)
            .map(|l| l.message.split(':').next().unwrap_or(""))
            .collect();
        let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(messages, expected);
        let keys: Vec<_> = chunks.iter().map(|c| c.key.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(chunks.last().map(|c| c.dropped), Some(3));
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.dropped == 0));
    }

    #[test]
    fn an_attempt_that_logged_nothing_stores_nothing() {
        assert!(attempt().into_chunks(Vec::new(), 0).is_empty());
        assert_eq!(attempt().into_chunks(Vec::new(), 2).len(), 1);
    }

    #[test]
    fn keys_order_attempts_of_one_activity_by_start() {
        let first = attempt();
        let mut second = attempt();
        second.started_at += chrono::Duration::milliseconds(5);
        second.delivery = 2;
        assert!(first.chunk_key(3) < second.chunk_key(0));
        let mut later_activity = attempt();
        later_activity.activity_id = 8;
        assert!(second.chunk_key(0) < later_activity.chunk_key(0));
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(truncated("héllo".into(), 2), "hé…");
        assert_eq!(truncated("ok".into(), 2), "ok");
    }
}

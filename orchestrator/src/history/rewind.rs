//! Rewind, as replay sees it. History stays append-only: a rewind appends
//! `ExecutionRewound` naming the failures it undoes, and replay reads the history with
//! those failures and the `ExecutionFailed` before the marker left out. Their tasks then
//! look unanswered, so the re-run results are accepted as the first ones; the original
//! events stay in history for the record.

use std::borrow::Cow;
use std::collections::HashSet;

use super::{EventKind, HistoryEvent};

/// The history replay reads: without the failures each `ExecutionRewound` undoes and the
/// `ExecutionFailed` events before it.
pub fn as_replayed(history: &[HistoryEvent]) -> Cow<'_, [HistoryEvent]> {
    let Some(last_rewind) = history
        .iter()
        .rposition(|e| matches!(e.kind, EventKind::ExecutionRewound { .. }))
    else {
        return Cow::Borrowed(history);
    };
    let hidden: HashSet<u64> = history
        .iter()
        .flat_map(|e| match &e.kind {
            EventKind::ExecutionRewound { failures, .. } => failures.clone(),
            _ => Vec::new(),
        })
        .collect();
    Cow::Owned(
        history
            .iter()
            .enumerate()
            .filter(|(position, e)| {
                let failed_before_a_rewind =
                    *position < last_rewind && matches!(e.kind, EventKind::ExecutionFailed { .. });
                !hidden.contains(&e.seq) && !failed_before_a_rewind
            })
            .map(|(_, e)| e.clone())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::FailureDetails;
    use chrono::Utc;
    use serde_json::json;

    fn event(seq: u64, kind: EventKind) -> HistoryEvent {
        HistoryEvent {
            seq,
            timestamp: Utc::now(),
            kind,
        }
    }

    fn failed(seq: u64, scheduled_id: u64) -> HistoryEvent {
        event(
            seq,
            EventKind::ActivityFailed {
                scheduled_id,
                failure: FailureDetails::new("Boom", "boom"),
            },
        )
    }

    fn scheduled(seq: u64, id: u64) -> HistoryEvent {
        event(
            seq,
            EventKind::ActivityScheduled {
                id,
                name: "a".into(),
                version: String::new(),
                input: json!(id),
            },
        )
    }

    #[test]
    fn a_history_without_rewinds_is_read_as_it_is() {
        let history = vec![scheduled(0, 0), failed(1, 0)];
        assert!(matches!(as_replayed(&history), Cow::Borrowed(_)));
    }

    #[test]
    fn the_rewound_failures_and_the_failed_ending_are_left_out() {
        let history = vec![
            scheduled(0, 0),
            scheduled(1, 1),
            failed(2, 0),
            failed(3, 1),
            event(
                4,
                EventKind::ExecutionFailed {
                    failure: FailureDetails::new("Boom", "boom"),
                },
            ),
            event(
                5,
                EventKind::ExecutionRewound {
                    reason: "fixed".into(),
                    failures: vec![3],
                },
            ),
        ];
        let seqs: Vec<u64> = as_replayed(&history).iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            vec![0, 1, 2, 5],
            "failure 2 was handled by the code: kept"
        );
    }

    #[test]
    fn a_failure_after_the_rewind_counts_again() {
        let history = vec![
            scheduled(0, 0),
            failed(1, 0),
            event(
                2,
                EventKind::ExecutionFailed {
                    failure: FailureDetails::new("Boom", "boom"),
                },
            ),
            event(
                3,
                EventKind::ExecutionRewound {
                    reason: String::new(),
                    failures: vec![1],
                },
            ),
            failed(4, 0),
            event(
                5,
                EventKind::ExecutionFailed {
                    failure: FailureDetails::new("Boom", "again"),
                },
            ),
        ];
        let seqs: Vec<u64> = as_replayed(&history).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![0, 3, 4, 5]);
    }
}

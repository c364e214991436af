//! The engine's metrics, recorded where the work happens: episodes, executions ended,
//! activity attempts, dead letters (counters and latency histograms by name). The gauges
//! that need storage (queue backlog and age, storage transactions) are observed by
//! [`super::observe_backend`]. With no meter provider installed every call here is
//! OpenTelemetry's no-op.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::{global, KeyValue};

use super::spans::SCOPE;
use crate::status::RuntimeStatus;

struct Instruments {
    episodes: Counter<u64>,
    episode_duration: Histogram<f64>,
    started: Counter<u64>,
    ended: Counter<u64>,
    execution_duration: Histogram<f64>,
    activity_attempts: Counter<u64>,
    activity_duration: Histogram<f64>,
    dead_letters: Counter<u64>,
}

/// Instruments are made on first use: the binary installs its provider before any work.
fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = global::meter_provider().meter(SCOPE);
        Instruments {
            episodes: meter
                .u64_counter("flowforge.episodes")
                .with_description("Orchestration episodes committed")
                .build(),
            episode_duration: meter
                .f64_histogram("flowforge.episode.duration")
                .with_unit("s")
                .with_description("Replay and commit of one episode")
                .build(),
            started: meter
                .u64_counter("flowforge.orchestrations.started")
                .with_description("Orchestration instances created")
                .build(),
            ended: meter
                .u64_counter("flowforge.orchestrations.ended")
                .with_description("Executions ended, by final status")
                .build(),
            execution_duration: meter
                .f64_histogram("flowforge.orchestration.duration")
                .with_unit("s")
                .with_description("Start to end of an execution")
                .build(),
            activity_attempts: meter
                .u64_counter("flowforge.activity.attempts")
                .with_description("Activity attempts, by outcome")
                .build(),
            activity_duration: meter
                .f64_histogram("flowforge.activity.duration")
                .with_unit("s")
                .with_description("One activity attempt")
                .build(),
            dead_letters: meter
                .u64_counter("flowforge.dead_letters")
                .with_description("Messages dead-lettered, by queue")
                .build(),
        }
    })
}

/// An episode of `orchestration` committed after `took`.
pub fn episode_committed(orchestration: &str, took: Duration) {
    let attributes = [KeyValue::new("orchestration", orchestration.to_owned())];
    let instruments = instruments();
    instruments.episodes.add(1, &attributes);
    instruments
        .episode_duration
        .record(took.as_secs_f64(), &attributes);
}

/// An instance of `orchestration` was created.
pub fn orchestration_started(orchestration: &str) {
    instruments().started.add(
        1,
        &[KeyValue::new("orchestration", orchestration.to_owned())],
    );
}

/// An execution of `orchestration` ended with `status` after `took`.
pub fn execution_ended(orchestration: &str, status: RuntimeStatus, took: Duration) {
    let attributes = [
        KeyValue::new("orchestration", orchestration.to_owned()),
        KeyValue::new("status", status.as_str()),
    ];
    let instruments = instruments();
    instruments.ended.add(1, &attributes);
    instruments
        .execution_duration
        .record(took.as_secs_f64(), &attributes);
}

/// An attempt of `activity` ended (`outcome`: `completed`, or the failure's kind).
pub fn activity_attempted(activity: &str, outcome: &str, took: Duration) {
    let attributes = [
        KeyValue::new("activity", activity.to_owned()),
        KeyValue::new("outcome", outcome.to_owned()),
    ];
    let instruments = instruments();
    instruments.activity_attempts.add(1, &attributes);
    instruments
        .activity_duration
        .record(took.as_secs_f64(), &attributes);
}

/// A message of `queue` was dead-lettered.
pub fn dead_lettered(queue: &str) {
    instruments()
        .dead_letters
        .add(1, &[KeyValue::new("queue", queue.to_owned())]);
}

//! A task hub that has grown: `n` instances on Azurite (1 in 100 Running, 1 in 1,000
//! Failed, the rest Completed, ids in creation order), then what an operator does with it —
//! a page by status, a page by creation window, a page of each rare status, and a purge by
//! filter — each timed (median of `runs`) with the storage transactions it took, with the
//! status index or without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowforge_orchestrator::backend::{to_instance, Backend, InstanceQuery};
use flowforge_orchestrator::history::StartInfo;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::status::InstanceState;
use serde_json::{json, Value};

use crate::measure;

/// Instances written at once while filling the hub.
const FILL_CONCURRENCY: u64 = 64;

/// Fills a hub with `n` instances and measures the operator's calls on it.
pub async fn task_hub(
    backend: Arc<dyn Backend>,
    n: u64,
    runs: usize,
    status_index: bool,
) -> anyhow::Result<Vec<Value>> {
    let filled = Instant::now();
    let mut created_at = Vec::with_capacity(n as usize);
    for first in (0..n).step_by(FILL_CONCURRENCY as usize) {
        let writes: Vec<_> = (first..(first + FILL_CONCURRENCY).min(n))
            .map(|i| tokio::spawn(create(backend.clone(), i)))
            .collect();
        for write in writes {
            created_at.push(write.await??);
        }
    }
    let fill = filled.elapsed();
    eprintln!("filled {n} instances in {:.1} s", fill.as_secs_f64());
    let client = Client::new(backend.clone());
    let page = |statuses: Vec<RuntimeStatus>| InstanceQuery {
        statuses,
        page_size: 100,
        ..Default::default()
    };
    // The middle tenth of the creation times.
    let (from, to) = (
        created_at[(n as usize) * 45 / 100],
        created_at[(n as usize) * 55 / 100],
    );
    let window = InstanceQuery {
        created_from: Some(from),
        created_to: Some(to),
        ..page(vec![RuntimeStatus::Completed])
    };
    let mut rows = Vec::new();
    let listings = [
        (
            "a page of 100 Completed (the common status)",
            page(vec![RuntimeStatus::Completed]),
        ),
        (
            "a page of 100 Completed created in the middle tenth of the time",
            window,
        ),
        (
            "a page of 100 Running (1 in 100 instances)",
            page(vec![RuntimeStatus::Running]),
        ),
        (
            "a page of 100 Failed (1 in 1,000 instances)",
            page(vec![RuntimeStatus::Failed]),
        ),
    ];
    let row = |n: u64, label: &str, wall: Duration, notes: String| {
        let index = if status_index {
            "status index"
        } else {
            "no index"
        };
        row(n, &format!("{label} [{index}]"), wall, notes)
    };
    for (label, query) in listings {
        let mut times = Vec::new();
        let mut transactions = 0;
        let mut listed = 0;
        for _ in 0..runs {
            let before = backend.transaction_counts();
            let started = Instant::now();
            let (statuses, _) = client.list(&query, false).await?;
            times.push(started.elapsed());
            transactions =
                measure::transactions(&measure::delta(&before, &backend.transaction_counts()));
            listed = statuses.len();
        }
        rows.push(row(
            n,
            label,
            median(times),
            format!("{listed} listed, {transactions} storage transactions"),
        ));
    }
    // A purge by filter of 1,000 finished instances (one id prefix), as an operator would.
    let purge = InstanceQuery {
        instance_id_prefix: Some("hub-001".into()),
        ..Default::default()
    };
    let before = backend.transaction_counts();
    let started = Instant::now();
    let purged = client.purge_many(&purge).await?;
    let took = started.elapsed();
    let transactions =
        measure::transactions(&measure::delta(&before, &backend.transaction_counts()));
    rows.push(row(
        n,
        "purge by filter (an id prefix: 1,000 instances, 990 finished)",
        took,
        format!(
            "{purged} purged, {:.1} storage transactions each, {:.0} per second",
            transactions as f64 / purged.max(1) as f64,
            purged as f64 / took.as_secs_f64()
        ),
    ));
    rows.push(row(
        n,
        "filling the hub (create, 64 at once)",
        fill,
        format!("{:.0} instances per second", n as f64 / fill.as_secs_f64()),
    ));
    Ok(rows)
}

/// Instance `i`: Running when `i % 100 == 50`, Failed when `i % 1000 == 500`, else
/// Completed.
async fn create(backend: Arc<dyn Backend>, i: u64) -> anyhow::Result<DateTime<Utc>> {
    let id = format!("hub-{i:06}");
    let now = Utc::now();
    let start = StartInfo::new("one", "e1", json!(i)).into_event();
    let status = if i % 1000 == 500 {
        RuntimeStatus::Failed
    } else if i % 100 == 50 {
        RuntimeStatus::Running
    } else {
        RuntimeStatus::Completed
    };
    let state = InstanceState {
        status,
        ..InstanceState::started(&id, &start, now)
    };
    // Its start message goes to a queue no worker reads here (the hub is never run).
    let message = to_instance(
        &id,
        Some(&"e1".to_owned()),
        start,
        now,
        None,
        backend.control_partitions(),
    );
    backend.create_instance(&state, &message, None).await?;
    Ok(now)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn row(n: u64, label: &str, wall: Duration, notes: String) -> Value {
    json!({
        "backend": "azurite",
        "scenario": format!("task hub of {n} instances: {label}"),
        "wall_s": wall.as_secs_f64(),
        "per_second": null,
        "notes": notes,
    })
}

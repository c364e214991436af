//! Figures: timings, percentiles, storage transactions, process memory and CPU.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

/// One run of a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Wall time.
    pub wall: Duration,
    /// Work units (activities or events).
    pub units: usize,
    /// Start-to-complete latencies, if measured.
    pub latencies: Vec<Duration>,
    /// Storage transactions during the run, by `service.operation`.
    pub transactions: BTreeMap<String, u64>,
    /// Azurite CPU time during the run.
    pub azurite_cpu: Option<Duration>,
}

/// Storage transactions counted by a backend, summed.
pub fn transactions(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// Transactions between two snapshots of a backend's counters, by operation.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or_default()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Resident and peak memory of this process, in MiB, from /proc.
pub fn memory_mib(pid: Option<u32>) -> (f64, f64) {
    let path = pid.map_or("/proc/self/status".to_owned(), |p| {
        format!("/proc/{p}/status")
    });
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of a process and its children that were waited for, from /proc.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn per_unit(count: u64, units: usize) -> Option<f64> {
    (units > 0 && count > 0).then(|| (count as f64 / units as f64 * 1000.0).round() / 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[index].as_secs_f64() * 1000.0)
}

/// The median run of a scenario as a result row.
pub fn median_row(
    backend: &str,
    scenario: &str,
    mut runs: Vec<RunResult>,
    _azurite: Option<u32>,
) -> Value {
    runs.sort_by_key(|r| r.wall);
    let all_walls: Vec<f64> = runs.iter().map(|r| r.wall.as_secs_f64()).collect();
    let median = runs[runs.len() / 2].clone();
    let mut latencies = median.latencies.clone();
    latencies.sort();
    let per_second = median.units as f64 / median.wall.as_secs_f64().max(1e-9);
    json!({
        "backend": backend,
        "scenario": scenario,
        "wall_s": median.wall.as_secs_f64(),
        "runs_wall_s": all_walls,
        "units": median.units,
        "per_second": per_second,
        "p50_ms": percentile(&latencies, 0.50),
        "p95_ms": percentile(&latencies, 0.95),
        "p99_ms": percentile(&latencies, 0.99),
        "transactions_per_unit": per_unit(transactions(&median.transactions), median.units),
        "transactions_per_unit_by_operation": median.transactions.iter()
            .map(|(op, n)| (op.clone(), json!(per_unit(*n, median.units))))
            .collect::<serde_json::Map<_, _>>(),
        "azurite_cpu_s": median.azurite_cpu.map(|d| d.as_secs_f64()),
        // The benchmark's whole process (engine, worker and client) since it started: a
        // scenario's own peak when it runs alone (`--scenarios <one>`).
        "peak_rss_mib": memory_mib(None).1,
        "notes": format!("peak RSS of the benchmark process so far {:.0} MiB", memory_mib(None).1),
    })
}

/// Prints the rows as a markdown table.
pub fn print_table(rows: &[Value]) {
    println!("| backend | scenario | wall (s) | per second | p50 / p95 / p99 (ms) | storage tx per unit | notes |");
    println!("| --- | --- | ---: | ---: | --- | ---: | --- |");
    let num = |v: &Value, digits: usize| {
        v.as_f64()
            .map_or("–".to_owned(), |x| format!("{x:.digits$}"))
    };
    for row in rows {
        let latency = if row["p50_ms"].is_null() {
            "–".to_owned()
        } else {
            format!(
                "{} / {} / {}",
                num(&row["p50_ms"], 0),
                num(&row["p95_ms"], 0),
                num(&row["p99_ms"], 0)
            )
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row["backend"].as_str().unwrap_or(""),
            row["scenario"].as_str().unwrap_or(""),
            num(&row["wall_s"], 3),
            num(&row["per_second"], 0),
            latency,
            num(&row["transactions_per_unit"], 2),
            row["notes"].as_str().unwrap_or(""),
        );
    }
}

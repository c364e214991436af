//! What telemetry costs: the chain and fan-out scenarios run twice, each in a child
//! process of this benchmark (the OpenTelemetry providers are process-wide, and the
//! engine's instruments bind to the provider of their first use): export off, and export
//! on to a local OTLP/HTTP receiver (protobuf, the production default, through the same
//! `flowforge_telemetry::Telemetry` the binary installs). Reported side by side with the
//! throughput ratio.

use std::process::Command;

use flowforge_telemetry::receiver::OtlpReceiver;
use flowforge_telemetry::{Protocol, Telemetry, TelemetrySettings};
use serde_json::{json, Value};

/// Installs export to a receiver started here (for `--telemetry`).
pub async fn export_locally() -> anyhow::Result<(Telemetry, OtlpReceiver)> {
    let receiver = OtlpReceiver::start().await?;
    // The exporters read the endpoint from the environment, as in the binary.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    let settings = TelemetrySettings {
        otlp: Some(Protocol::HttpBinary),
        app_insights: None,
        service_name: "flowforge-bench".into(),
    };
    Ok((Telemetry::install(&settings)?, receiver))
}

fn child(backend: &str, runs: usize, azurite_runs: usize, on: bool) -> anyhow::Result<Vec<Value>> {
    let json = std::env::temp_dir().join(format!(
        "flowforge-bench-telemetry-{on}-{}.json",
        std::process::id()
    ));
    let mut command = Command::new(std::env::current_exe()?);
    command.args([
        "--backend",
        backend,
        "--scenarios",
        "chain,fan_out",
        "--runs",
        &runs.to_string(),
        "--azurite-runs",
        &azurite_runs.to_string(),
        "--json",
    ]);
    command.arg(&json);
    if on {
        command.arg("--telemetry");
    }
    let status = command.status()?;
    anyhow::ensure!(
        status.success(),
        "the telemetry {} run failed",
        if on { "on" } else { "off" }
    );
    let rows: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let _ = std::fs::remove_file(&json);
    Ok(rows["results"].as_array().cloned().unwrap_or_default())
}

/// Runs both children and returns one row per scenario and backend: per second off and
/// on, and on/off.
pub fn compare(backend: &str, runs: usize, azurite_runs: usize) -> anyhow::Result<Vec<Value>> {
    eprintln!("telemetry cost: export off");
    let off = child(backend, runs, azurite_runs, false)?;
    eprintln!("telemetry cost: export on (OTLP/HTTP protobuf to a local receiver)");
    let on = child(backend, runs, azurite_runs, true)?;
    let mut rows = Vec::new();
    for without in &off {
        let Some(with) = on
            .iter()
            .find(|r| r["backend"] == without["backend"] && r["scenario"] == without["scenario"])
        else {
            continue;
        };
        let (a, b) = (
            without["per_second"].as_f64().unwrap_or(0.0),
            with["per_second"].as_f64().unwrap_or(0.0),
        );
        let ratio = if a > 0.0 { b / a } else { 0.0 };
        rows.push(json!({
            "backend": without["backend"],
            "scenario": format!("{} — telemetry export on vs off", without["scenario"].as_str().unwrap_or_default()),
            "wall_s": with["wall_s"],
            "runs_wall_s": with["runs_wall_s"],
            "units": with["units"],
            "per_second": b,
            "per_second_off": a,
            "on_vs_off": ratio,
            "wall_s_off": without["wall_s"],
            "transactions_per_unit": with["transactions_per_unit"],
            "notes": format!("{:.0}/s on vs {:.0}/s off: {:+.1} %", b, a, (ratio - 1.0) * 100.0),
        }));
    }
    Ok(rows)
}

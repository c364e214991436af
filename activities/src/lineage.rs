//! What a run publishes for catalogs and lineage tools once gold is committed:
//! - a catalog manifest per run and a current one (`gold/_catalog/<dataset>/<table>/`):
//!   the Delta table's location, version, partition columns and schema in Delta/Spark
//!   type names (what Purview, Synapse and Fabric read);
//! - an OpenLineage `RunEvent` (`COMPLETE`; inputs: the landing files; outputs: the silver,
//!   rejects and gold tables with their versions, row counts and gold's schema), written to
//!   `gold/_lineage/<dataset>/` and, when `OPENLINEAGE_URL` is set, POSTed to
//!   `{OPENLINEAGE_URL}/api/v1/lineage` (the OpenLineage HTTP transport; bearer
//!   `OPENLINEAGE_API_KEY` if set). Emission is best effort with a 10 s deadline: a
//!   lineage server that is down is logged, never fails the run.

use std::time::Duration;

use flowforge_orchestrator::history::FailureDetails;
use serde_json::{json, Value};
use tracing::warn;

use crate::lake::DataLake;
pub use crate::lineage_endpoint::LineageEndpoint;
use crate::medallion::silver::SilverOutput;
use crate::spec::DatasetSpec;
use crate::tables::schema::{type_name, TableColumn};
use crate::tables::TableCommit;

/// The OpenLineage producer of our events.
pub const PRODUCER: &str = "https://github.com/flowforge/flowforge-durable";
const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str = "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json";
const STATISTICS_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json";
const VERSION_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json";

/// What gold knows of the run when it publishes.
pub struct RunFacts<'a> {
    /// Dataset.
    pub dataset: &'a str,
    /// Run id.
    pub run_id: &'a str,
    /// Landing files read.
    pub sources: &'a [String],
    /// Silver's output.
    pub silver: &'a SilverOutput,
    /// Gold's commit.
    pub gold: &'a TableCommit,
    /// Gold's columns.
    pub gold_columns: &'a [TableColumn],
    /// Gold's partition columns.
    pub gold_partitions: &'a [String],
}

/// Where the run's manifest and lineage event were written.
pub struct Published {
    /// The run's manifest (container `gold`).
    pub manifest_path: String,
    /// The run's OpenLineage event (container `gold`).
    pub lineage_path: String,
}

/// A run id as a blob name segment.
fn file_name(run_id: &str) -> String {
    run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The Delta schema of columns as the log writes it (`{"type":"struct","fields":[…]}`).
pub fn delta_schema(columns: &[TableColumn]) -> Value {
    json!({
        "type": "struct",
        "fields": columns.iter().map(|c| json!({
            "name": c.name, "type": type_name(&c.kind), "nullable": c.nullable, "metadata": {}
        })).collect::<Vec<_>>(),
    })
}

/// The catalog manifest of gold's table after this run.
pub fn manifest(lake: &DataLake, spec: &DatasetSpec, facts: &RunFacts<'_>) -> Value {
    let (container, path) = facts.gold.table.split_once('/').unwrap_or(("gold", ""));
    json!({
        "name": format!("{}.{}", spec.name, spec.gold.table),
        "description": spec.description,
        "format": "delta",
        "location": lake.location(container, path),
        "table_version": facts.gold.version,
        "partition_columns": facts.gold_partitions,
        "schema": delta_schema(facts.gold_columns),
        "row_count": facts.gold.rows,
        "source_run": facts.run_id,
        "source_rows": facts.silver.rows_out,
        "sources": [{
            "table": facts.silver.table.table,
            "location": lake.location("silver", facts.silver.table.table.split_once('/').map_or("", |t| t.1)),
            "version": facts.silver.table.version,
        }],
        "lineage": format!("_lineage/{}/{}.json", spec.name, file_name(facts.run_id)),
    })
}

fn output_dataset(lake: &DataLake, commit: &TableCommit, columns: Option<&[TableColumn]>) -> Value {
    let (container, path) = commit.table.split_once('/').unwrap_or(("", &commit.table));
    let mut facets = json!({
        "version": {"_producer": PRODUCER, "_schemaURL": VERSION_FACET,
            "datasetVersion": commit.version.map(|v| v.to_string())},
    });
    if let Some(columns) = columns {
        facets["schema"] = json!({
            "_producer": PRODUCER, "_schemaURL": SCHEMA_FACET,
            "fields": columns.iter().map(|c| json!({"name": c.name, "type": type_name(&c.kind)})).collect::<Vec<_>>(),
        });
    }
    json!({
        "namespace": lake.location(container, ""),
        "name": path,
        "facets": facets,
        "outputFacets": {"outputStatistics": {
            "_producer": PRODUCER, "_schemaURL": STATISTICS_FACET, "rowCount": commit.rows,
        }},
    })
}

/// The run's OpenLineage `RunEvent` (`COMPLETE`).
pub fn run_event(lake: &DataLake, facts: &RunFacts<'_>, event_time: &str) -> Value {
    let run = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("flowforge-run:{}:{}", facts.dataset, facts.run_id).as_bytes(),
    );
    let mut outputs = vec![output_dataset(lake, &facts.silver.table, None)];
    outputs.extend(
        facts
            .silver
            .rejects
            .iter()
            .map(|c| output_dataset(lake, c, None)),
    );
    outputs.extend(
        facts
            .silver
            .duplicate_rows
            .iter()
            .map(|c| output_dataset(lake, c, None)),
    );
    outputs.push(output_dataset(lake, facts.gold, Some(facts.gold_columns)));
    json!({
        "eventType": "COMPLETE",
        "eventTime": event_time,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": run.to_string(), "facets": {}},
        "job": {"namespace": "flowforge", "name": format!("medallion.{}", facts.dataset), "facets": {}},
        "inputs": facts.sources.iter().map(|file| json!({
            "namespace": lake.location("landing", ""), "name": file, "facets": {},
        })).collect::<Vec<_>>(),
        "outputs": outputs,
    })
}

/// Writes the manifests and the lineage event, and emits the event.
pub async fn publish(
    lake: &DataLake,
    spec: &DatasetSpec,
    facts: &RunFacts<'_>,
) -> Result<Published, FailureDetails> {
    let catalog = lake.under_root(&format!("_catalog/{}/{}", spec.name, spec.gold.table));
    let manifest = serde_json::to_vec_pretty(&manifest(lake, spec, facts))
        .map_err(|e| FailureDetails::non_retryable("GoldFailed", e.to_string()))?;
    let manifest_path = format!("{catalog}/runs/{}.json", file_name(facts.run_id));
    let event = run_event(lake, facts, &chrono::Utc::now().to_rfc3339());
    let lineage_path = lake.under_root(&format!(
        "_lineage/{}/{}.json",
        spec.name,
        file_name(facts.run_id)
    ));
    let bytes = serde_json::to_vec_pretty(&event)
        .map_err(|e| FailureDetails::non_retryable("GoldFailed", e.to_string()))?;
    // Independent writes, at once; a retried gold writes them all again.
    let current = async {
        // A rerun of a run already committed does not move the current manifest back.
        if facts.gold.already_committed {
            return Ok(());
        }
        lake.put(
            "gold",
            &format!("{catalog}/manifest.json"),
            manifest.clone(),
        )
        .await
    };
    futures::try_join!(
        lake.put("gold", &manifest_path, manifest.clone()),
        current,
        lake.put("gold", &lineage_path, bytes)
    )?;
    if let Some(endpoint) = lake.lineage_endpoint() {
        emit(endpoint, &event).await;
    }
    Ok(Published {
        manifest_path,
        lineage_path,
    })
}

async fn emit(endpoint: &LineageEndpoint, event: &Value) {
    let url = format!("{}/{}", endpoint.url, endpoint.path);
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            warn!(%error, "lineage: no HTTP client");
            return;
        }
    };
    let mut request = client
        .post(&url)
        .header("content-type", "application/json")
        .body(event.to_string());
    if let Some(key) = &endpoint.api_key {
        request = request.bearer_auth(key);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            warn!(%url, status = %response.status(), "lineage: the endpoint refused the event")
        }
        Err(error) => {
            warn!(%url, error = %error.without_url(), "lineage: the event was not delivered")
        }
    }
}

//! gold: silver joined with its dimensions and aggregated as the spec says, written as
//! parquet under `gold/<dataset>/<table>/run_id=…/` with a `_manifest.json` (schema, row
//! counts, files, source run) for a catalog or a serverless SQL external table.

use flowforge_orchestrator::history::FailureDetails;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::frames::{blocking, failure, from_parquet, read_csv_as_text, to_parquet};
use super::spec_for;
use crate::lake::DataLake;
use crate::spec::{Aggregation, DatasetSpec};

/// Input of `gold`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoldInput {
    /// Dataset name.
    pub dataset: String,
    /// Run id.
    pub run_id: String,
    /// This run's silver partition files.
    pub silver_paths: Vec<String>,
    /// Rows silver wrote (for the manifest).
    pub silver_rows: usize,
}

/// Output of `gold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldOutput {
    /// The parquet file written.
    pub path: String,
    /// Its rows.
    pub rows: usize,
    /// The manifest.
    pub manifest_path: String,
}

/// The silver columns gold reads: group keys, metric inputs and join keys that silver has
/// (the others come from the dimensions). Reading only these keeps gold's frame small.
fn silver_columns_used(spec: &DatasetSpec) -> Vec<String> {
    let wanted = spec
        .gold
        .group_by
        .iter()
        .chain(spec.gold.metrics.iter().filter_map(|m| m.column.as_ref()))
        .chain(spec.dimensions.iter().map(|d| &d.key));
    let mut columns: Vec<String> = Vec::new();
    for name in wanted {
        if spec.column(name).is_some() && !columns.contains(name) {
            columns.push(name.clone());
        }
    }
    columns
}

fn aggregate(
    spec: &DatasetSpec,
    silver: Vec<DataFrame>,
    dimensions: Vec<DataFrame>,
) -> PolarsResult<DataFrame> {
    let lazy: Vec<LazyFrame> = silver.into_iter().map(DataFrame::lazy).collect();
    let mut frame = concat(lazy, UnionArgs::default())?;
    for (dimension, table) in spec.dimensions.iter().zip(dimensions) {
        let mut columns = vec![col(dimension.key.as_str())];
        columns.extend(
            dimension
                .columns
                .iter()
                .map(|(from, to)| col(from.as_str()).alias(to.as_str())),
        );
        let right = table.lazy().select(columns).unique_stable_generic(
            Some(vec![col(dimension.key.as_str())]),
            UniqueKeepStrategy::First,
        );
        frame = frame.left_join(
            right,
            col(dimension.key.as_str()),
            col(dimension.key.as_str()),
        );
    }
    let metrics: Vec<Expr> = spec
        .gold
        .metrics
        .iter()
        .map(|m| {
            let column = m.column.as_deref().unwrap_or_default();
            let expr = match m.agg {
                Aggregation::Count => len().cast(DataType::Int64),
                Aggregation::NullCount => col(column).null_count().cast(DataType::Int64),
                Aggregation::Mean => col(column).cast(DataType::Float64).mean(),
                Aggregation::P90 => col(column)
                    .cast(DataType::Float64)
                    .quantile(lit(0.9), QuantileMethod::Linear),
            };
            expr.alias(m.name.as_str())
        })
        .collect();
    let group: Vec<Expr> = spec.gold.group_by.iter().map(|g| col(g.as_str())).collect();
    let names: Vec<PlSmallStr> = spec
        .gold
        .group_by
        .iter()
        .map(|g| g.as_str().into())
        .collect();
    frame
        .group_by(group)
        .agg(metrics)
        .sort(names, SortMultipleOptions::default())
        .collect()
}

/// The gold activity.
pub async fn gold(lake: DataLake, input: GoldInput) -> Result<GoldOutput, FailureDetails> {
    let spec = spec_for(&input.dataset)?;
    let mut silver_bytes = Vec::new();
    for path in &input.silver_paths {
        silver_bytes.push(lake.get("silver", path).await?);
    }
    let mut dimension_bytes = Vec::new();
    for dimension in &spec.dimensions {
        dimension_bytes.push(lake.get("landing", &dimension.landing).await?);
    }
    let dir = format!("{}/{}", spec.name, spec.gold.table);
    let path = format!("{dir}/run_id={}/part-0.parquet", input.run_id);
    let work_spec = spec.clone();
    let (bytes, table) = blocking(move || {
        let spec = work_spec;
        let columns = silver_columns_used(&spec);
        let silver = silver_bytes
            .iter()
            .map(|bytes| from_parquet(bytes, Some(columns.clone())))
            .collect::<PolarsResult<Vec<_>>>()
            .map_err(|e| failure("GoldFailed", "reading silver", e))?;
        let dimensions = dimension_bytes
            .into_iter()
            .zip(&spec.dimensions)
            .map(|(bytes, d)| {
                read_csv_as_text(&bytes, &spec.landing.null_values)
                    .map_err(|e| failure("GoldFailed", &format!("reading dimension {}", d.name), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut table = aggregate(&spec, silver, dimensions)
            .map_err(|e| failure("GoldFailed", "aggregating", e))?;
        let bytes =
            to_parquet(&mut table).map_err(|e| failure("GoldFailed", "writing parquet", e))?;
        Ok((bytes, table))
    })
    .await?;
    lake.put("gold", &path, bytes).await?;
    let schema: Vec<_> = table
        .schema()
        .iter()
        .map(|(name, dtype)| json!({"name": name.as_str(), "type": dtype.to_string()}))
        .collect();
    let manifest = json!({
        "dataset": spec.name,
        "table": spec.gold.table,
        "format": "parquet",
        "source_run": input.run_id,
        "files": [path],
        "location": format!("gold/{dir}/run_id={}/", input.run_id),
        "partitions": [],
        "row_count": table.height(),
        "source_rows": input.silver_rows,
        "schema": schema,
    });
    let manifest_path = format!("{dir}/_manifest.json");
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| FailureDetails::non_retryable("GoldFailed", e.to_string()))?;
    lake.put("gold", &manifest_path, text).await?;
    Ok(GoldOutput {
        path,
        rows: table.height(),
        manifest_path,
    })
}

//! gold: silver joined with its dimensions and aggregated as the spec says, committed to
//! the Delta table `gold/<dataset>/<table>` (partitioned by the spec's partition columns
//! that gold groups by; the run replaces the partitions it covers), with a catalog
//! manifest per run and a current one (`gold/_catalog/<dataset>/<table>/`) and the run's
//! OpenLineage event (`gold/_lineage/<dataset>/`).

use flowforge_orchestrator::history::FailureDetails;
use futures::{StreamExt, TryStreamExt};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::frames::{blocking, failure, from_parquet, read_csv_as_text};
use super::silver::{dtype, partition_files, SilverOutput};
use super::spec_for;
use crate::lake::DataLake;
use crate::lineage::{self, RunFacts};
use crate::spec::{Aggregation, DatasetSpec};
use crate::tables::schema::table_columns;
use crate::tables::{open, write_run_opened, TableCommit, TableWrite, WriteMode};

/// Silver files read from storage at once.
const READS_AT_ONCE: usize = 8;

/// Input of `gold`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoldInput {
    /// Dataset name.
    pub dataset: String,
    /// Run id.
    pub run_id: String,
    /// What silver committed for this run (gold reads its files).
    pub silver: SilverOutput,
    /// The landing files of the run (for the lineage).
    #[serde(default)]
    pub sources: Vec<String>,
}

/// Output of `gold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldOutput {
    /// The gold table's commit for this run.
    pub table: TableCommit,
    /// Its rows.
    pub rows: usize,
    /// The run's catalog manifest (container `gold`); `manifest.json` beside it is the
    /// table's current one.
    pub manifest_path: String,
    /// The run's OpenLineage event (container `gold`).
    pub lineage_path: String,
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

/// The columns gold's table is partitioned by: the spec's partition columns it groups by.
pub fn gold_partitions(spec: &DatasetSpec) -> Vec<String> {
    spec.partition_by
        .iter()
        .filter(|p| spec.gold.group_by.contains(p))
        .cloned()
        .collect()
}

/// The non-nullable columns of gold: group keys the schema says are never missing, and
/// the counts.
fn required_columns(spec: &DatasetSpec) -> Vec<String> {
    let keys = spec
        .gold
        .group_by
        .iter()
        .filter(|g| spec.column(g).is_some_and(|c| !c.nullable))
        .cloned();
    let counts = spec
        .gold
        .metrics
        .iter()
        .filter(|m| matches!(m.agg, Aggregation::Count | Aggregation::NullCount))
        .map(|m| m.name.clone());
    keys.chain(counts).collect()
}

/// The gold activity.
pub async fn gold(lake: DataLake, input: GoldInput) -> Result<GoldOutput, FailureDetails> {
    let spec = spec_for(&input.dataset)?;
    let silver_table = lake.table("silver", &spec.name)?;
    // The files are independent reads: a few at once, not one round trip after another.
    let silver_reads: Vec<_> = input
        .silver
        .table
        .files
        .iter()
        .map(|file| {
            let name = format!("{}/{}", silver_table.path(), file.path);
            let (lake, values) = (lake.clone(), file.partition_values.clone());
            async move {
                let bytes = lake.get("silver", &name).await?;
                Ok::<_, FailureDetails>((bytes, values))
            }
        })
        .collect();
    let dimension_reads = spec
        .dimensions
        .iter()
        .map(|dimension| lake.get("landing", &dimension.landing));
    let (silver_bytes, dimension_bytes) = futures::try_join!(
        futures::stream::iter(silver_reads)
            .buffered(READS_AT_ONCE)
            .try_collect::<Vec<_>>(),
        futures::future::try_join_all(dimension_reads)
    )?;
    let work_spec = spec.clone();
    let run_id = input.run_id.clone();
    let gold_table = lake.table("gold", &format!("{}/{}", spec.name, spec.gold.table))?;
    // The gold table is opened while the rows are aggregated.
    let work = blocking(move || {
        let spec = work_spec;
        let columns: Vec<String> = silver_columns_used(&spec)
            .into_iter()
            .filter(|c| !spec.partition_by.contains(c))
            .collect();
        let silver = silver_bytes
            .iter()
            .map(|(bytes, values)| {
                let frame = from_parquet(bytes, Some(columns.clone()))?;
                // Partition columns live in the table's log, not in its files.
                let partition_columns: Vec<Expr> = values
                    .iter()
                    .filter_map(|(name, value)| {
                        let kind = dtype(spec.column(name)?.kind);
                        let value = value.clone().map_or(lit(NULL), lit);
                        Some(value.cast(kind).alias(name.as_str()))
                    })
                    .collect();
                frame.lazy().with_columns(partition_columns).collect()
            })
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
        // A run whose rows were all rejected has no silver file: gold aggregates an empty
        // frame of silver's columns, so its table still gets its schema.
        let silver = if silver.is_empty() {
            let schema: Schema = silver_columns_used(&spec)
                .iter()
                .filter_map(|name| Some((name.as_str().into(), dtype(spec.column(name)?.kind))))
                .collect();
            vec![DataFrame::empty_with_schema(&schema)]
        } else {
            silver
        };
        let table = aggregate(&spec, silver, dimensions)
            .map_err(|e| failure("GoldFailed", "aggregating", e))?;
        let required = required_columns(&spec);
        let required: Vec<&str> = required.iter().map(String::as_str).collect();
        let partition_by = gold_partitions(&spec);
        let files = partition_files(&partition_by, &table)
            .map_err(|e| failure("GoldFailed", "writing parquet", e))?;
        let columns = table_columns(table.schema(), &required)
            .map_err(|e| FailureDetails::non_retryable("GoldFailed", e))?;
        let mut facts = serde_json::Map::new();
        facts.insert("flowforge.rows".into(), table.height().into());
        let write = TableWrite {
            columns,
            partition_by,
            mode: WriteMode::ReplacePartitions,
            run_id,
            files,
            run_facts: facts,
        };
        Ok((write, table))
    });
    let ((write, table), gold_delta) = futures::try_join!(work, open(&gold_table))?;
    let columns = write.columns.clone();
    let committed = write_run_opened(&gold_table, gold_delta, write).await?;
    let partitions = gold_partitions(&spec);
    let facts = RunFacts {
        dataset: &spec.name,
        run_id: &input.run_id,
        sources: &input.sources,
        silver: &input.silver,
        gold: &committed,
        gold_columns: &columns,
        gold_partitions: &partitions,
    };
    let published = lineage::publish(&lake, &spec, &facts).await?;
    Ok(GoldOutput {
        rows: table.height(),
        table: committed,
        manifest_path: published.manifest_path,
        lineage_path: published.lineage_path,
    })
}

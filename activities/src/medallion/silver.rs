//! silver: bronze cast to the schema (the landing's null markers, such as `NA`, read as
//! missing), quality rules applied, duplicates removed on the primary key, written as
//! parquet partitioned by the spec's partition columns. What is left out goes to the
//! `rejects` container, outside silver's path, with the reason, source file and run id:
//! `rejects/<dataset>/run_id=…/rejects.parquet` (the rows as text, with `_reject_reason`)
//! and `…/duplicates.parquet` (typed rows dropped as repeats of an earlier row's key).

use std::collections::BTreeMap;

use flowforge_orchestrator::history::FailureDetails;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::frames::{blocking, failure, parquet_slices, stack, to_parquet};
use super::spec_for;
use crate::lake::DataLake;
use crate::spec::{ColumnType, DatasetSpec, Rule};

/// Input of `silver`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SilverInput {
    /// Dataset name.
    pub dataset: String,
    /// Run id.
    pub run_id: String,
    /// This run's bronze files.
    pub bronze_paths: Vec<String>,
}

/// Output of `silver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilverOutput {
    /// Rows read from bronze.
    pub rows_in: usize,
    /// Rows written to silver.
    pub rows_out: usize,
    /// Rows rejected, by reason.
    pub rejected: BTreeMap<String, usize>,
    /// Rows dropped as duplicates of the primary key.
    pub duplicates: usize,
    /// Partition files written.
    pub partitions: Vec<String>,
    /// The rejects file (container `rejects`), if any row was rejected.
    pub rejects_path: Option<String>,
    /// The dropped duplicates file (container `rejects`), if any row was dropped.
    #[serde(default)]
    pub duplicates_path: Option<String>,
}

/// The polars type of a schema type.
pub fn dtype(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::String => DataType::String,
    }
}

fn typed(spec: &DatasetSpec, name: &str) -> Expr {
    match spec.column(name) {
        Some(column) => col(name).cast(dtype(column.kind)),
        None => col(name),
    }
}

/// The first reason a row is rejected (null when it passes): cast failures, missing
/// required values, then the quality rules in order.
fn reject_reason(spec: &DatasetSpec) -> Expr {
    let mut checks: Vec<(Expr, String)> = Vec::new();
    for column in &spec.schema {
        let name = column.name.as_str();
        if column.kind != ColumnType::String {
            checks.push((
                col(name).is_not_null().and(typed(spec, name).is_null()),
                format!("cast: {name} is not {:?}", column.kind).to_lowercase(),
            ));
        }
        if column.kind == ColumnType::Float64 {
            // "NaN" and "inf" parse as floats; no measurement here is either.
            checks.push((
                typed(spec, name).is_finite().not(),
                format!("value: {name} is not a finite number"),
            ));
        }
        if !column.nullable {
            checks.push((col(name).is_null(), format!("required: {name} is missing")));
        }
    }
    for rule in &spec.quality_rules {
        let broken = match rule {
            Rule::In { column, values, .. } => {
                let allowed = values
                    .iter()
                    .map(|v| typed(spec, column).eq(lit(v.clone())))
                    .reduce(|a, b| a.or(b))
                    .unwrap_or(lit(false));
                typed(spec, column).is_not_null().and(allowed.not())
            }
            Rule::Between {
                column, min, max, ..
            } => {
                let value = typed(spec, column).cast(DataType::Float64);
                value
                    .clone()
                    .lt(lit(*min))
                    .or(value.gt(lit(*max)))
                    .fill_null(lit(false))
            }
            Rule::RequiredIfPresent {
                column,
                when_present,
                ..
            } => col(when_present.as_str())
                .is_not_null()
                .and(col(column.as_str()).is_null()),
        };
        checks.push((broken, format!("rule: {}", rule.name())));
    }
    // Built from the last check backwards, so the first failing check names the reason.
    checks.into_iter().rev().fold(
        lit(NULL).cast(DataType::String),
        |otherwise, (condition, reason)| {
            when(condition.fill_null(lit(false)))
                .then(lit(reason))
                .otherwise(otherwise)
        },
    )
}

/// Bronze rows decoded at a time: the text columns of one slice are the largest frame
/// silver holds besides the typed rows it keeps.
const SLICE_ROWS: usize = 65_536;

struct SilverFrames {
    rows_in: usize,
    rejects: DataFrame,
    good: DataFrame,
    /// The rows dropped as repeats of an earlier row's primary key.
    dropped: DataFrame,
}

/// The landing's null markers (`NA`, …) as missing values, in every schema column: bronze
/// keeps them as text.
fn null_markers(spec: &DatasetSpec) -> Vec<Expr> {
    let markers: Vec<&str> = spec
        .landing
        .null_values
        .iter()
        .map(String::as_str)
        .collect();
    spec.schema
        .iter()
        .map(|c| {
            let name = c.name.as_str();
            let is_marker = markers
                .iter()
                .map(|m| col(name).eq(lit(*m)))
                .reduce(|a, b| a.or(b))
                .unwrap_or(lit(false));
            when(is_marker.fill_null(lit(false)))
                .then(lit(NULL).cast(DataType::String))
                .otherwise(col(name))
                .alias(name)
        })
        .collect()
}

/// Which rows repeat the primary key of an earlier row (in order). Only called when the
/// distinct count says there are some.
fn repeats(valid: &DataFrame, key: &[String]) -> PolarsResult<BooleanChunked> {
    let columns: Vec<&Column> = key
        .iter()
        .map(|k| valid.column(k.as_str()))
        .collect::<PolarsResult<_>>()?;
    let mut seen = std::collections::HashSet::with_capacity(valid.height());
    let mut repeated = Vec::with_capacity(valid.height());
    for row in 0..valid.height() {
        let mut text = String::new();
        for column in &columns {
            text.push_str(&column.get(row)?.to_string());
            text.push('\u{1f}');
        }
        repeated.push(!seen.insert(text));
    }
    Ok(BooleanChunked::from_slice("_repeat".into(), &repeated))
}

/// Casts and checks bronze one slice at a time (text columns are dropped as soon as a slice
/// is typed), then removes duplicates of the primary key.
fn transform(spec: &DatasetSpec, bronze: Vec<Vec<u8>>) -> PolarsResult<SilverFrames> {
    let reason = reject_reason(spec).alias("_reject_reason");
    let markers = null_markers(spec);
    let mut keep: Vec<Expr> = spec
        .schema
        .iter()
        .map(|c| typed(spec, &c.name).alias(c.name.as_str()))
        .collect();
    keep.extend(["_ingested_at", "_source_file", "_run_id"].map(col));
    let mut rows_in = 0;
    let mut rejects = Vec::new();
    let mut valid = Vec::new();
    for file in bronze {
        parquet_slices(&file, SLICE_ROWS, |slice| {
            rows_in += slice.height();
            let checked = slice
                .lazy()
                .with_columns(markers.clone())
                .with_column(reason.clone())
                .collect()?;
            rejects.push(
                checked
                    .clone()
                    .lazy()
                    .filter(col("_reject_reason").is_not_null())
                    .collect()?,
            );
            valid.push(
                checked
                    .lazy()
                    .filter(col("_reject_reason").is_null())
                    .select(keep.clone())
                    .collect()?,
            );
            Ok(())
        })?;
    }
    let rejects = stack(rejects)?;
    let valid = stack(valid)?;
    let key: Vec<Expr> = spec.primary_key.iter().map(|k| col(k.as_str())).collect();
    // Counting distinct keys needs only the key columns; the rows are copied only when
    // there are duplicates to drop.
    let distinct = valid
        .clone()
        .lazy()
        .select(key.clone())
        .unique_generic(None, UniqueKeepStrategy::Any)
        .collect()?
        .height();
    let (good, dropped) = if valid.height() == distinct {
        let dropped = valid.clear();
        (valid, dropped)
    } else {
        let repeated = repeats(&valid, &spec.primary_key)?;
        let dropped = valid.filter(&repeated)?;
        (valid.filter(&!&repeated)?, dropped)
    };
    Ok(SilverFrames {
        rows_in,
        rejects,
        good,
        dropped,
    })
}

/// The rows of each partition (by the spec's partition columns, in order of first
/// appearance) with its path segment, without copying the frame.
fn partitions(spec: &DatasetSpec, good: &DataFrame) -> PolarsResult<Vec<(String, IdxCa)>> {
    if spec.partition_by.is_empty() {
        let all = IdxCa::from_vec("_row".into(), (0..good.height() as IdxSize).collect());
        return Ok(vec![(String::new(), all)]);
    }
    let index = good
        .select(spec.partition_by.iter().map(String::as_str))?
        .with_row_index("_row".into(), None)?;
    index
        .partition_by_stable(spec.partition_by.iter().map(String::as_str), true)?
        .into_iter()
        .map(|part| {
            Ok((
                partition_dir(spec, &part)?,
                part.column("_row")?.idx()?.clone(),
            ))
        })
        .collect()
}

fn count_reasons(rejects: &DataFrame) -> PolarsResult<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    let reasons = rejects.column("_reject_reason")?.str()?;
    for i in 0..reasons.len() {
        if let Some(reason) = reasons.get(i) {
            *counts.entry(reason.to_owned()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Partition path segment values (`year=2013/month=1`) of a one-partition frame.
fn partition_dir(spec: &DatasetSpec, part: &DataFrame) -> PolarsResult<String> {
    let mut segments = Vec::new();
    for name in &spec.partition_by {
        let value = part.column(name)?.get(0)?;
        let text = match value {
            AnyValue::String(s) => s.to_owned(),
            AnyValue::Null => "__null__".to_owned(),
            other => other.to_string(),
        };
        segments.push(format!("{name}={text}"));
    }
    Ok(segments.join("/"))
}

/// The silver activity.
pub async fn silver(lake: DataLake, input: SilverInput) -> Result<SilverOutput, FailureDetails> {
    let spec = spec_for(&input.dataset)?;
    let mut frames_bytes = Vec::new();
    for path in &input.bronze_paths {
        frames_bytes.push(lake.get("bronze", path).await?);
    }
    let run_id = input.run_id.clone();
    let work_spec = spec.clone();
    let (files, left_out, output) = blocking(move || {
        let spec = work_spec;
        let result = transform(&spec, frames_bytes)
            .map_err(|e| failure("SilverFailed", "transforming", e))?;
        let rejected = count_reasons(&result.rejects)
            .map_err(|e| failure("SilverFailed", "counting rejects", e))?;
        let mut files = Vec::new();
        let parts = partitions(&spec, &result.good)
            .map_err(|e| failure("SilverFailed", "partitioning", e))?;
        for (dir, rows) in parts {
            let path = format!("{}/{dir}/run_id={run_id}.parquet", spec.name).replace("//", "/");
            let written = |e| failure("SilverFailed", "writing parquet", e);
            let mut part = result.good.take(&rows).map_err(written)?;
            files.push((path, to_parquet(&mut part).map_err(written)?));
        }
        let table =
            |frame: &DataFrame, name: &str| -> Result<Option<(String, Vec<u8>)>, FailureDetails> {
                if frame.height() == 0 {
                    return Ok(None);
                }
                let mut frame = frame.clone();
                let bytes = to_parquet(&mut frame)
                    .map_err(|e| failure("SilverFailed", &format!("writing {name}"), e))?;
                Ok(Some((
                    format!("{}/run_id={run_id}/{name}.parquet", spec.name),
                    bytes,
                )))
            };
        let rejects_file = table(&result.rejects, "rejects")?;
        let dropped = result
            .dropped
            .clone()
            .lazy()
            .with_column(
                lit("duplicate: the primary key of an earlier row").alias("_reject_reason"),
            )
            .collect()
            .map_err(|e| failure("SilverFailed", "marking duplicates", e))?;
        let duplicates_file = table(&dropped, "duplicates")?;
        let output = SilverOutput {
            rows_in: result.rows_in,
            rows_out: result.good.height(),
            rejected,
            duplicates: result.dropped.height(),
            partitions: files.iter().map(|(p, _)| p.clone()).collect(),
            rejects_path: rejects_file.as_ref().map(|(p, _)| p.clone()),
            duplicates_path: duplicates_file.as_ref().map(|(p, _)| p.clone()),
        };
        let left_out: Vec<(String, Vec<u8>)> =
            rejects_file.into_iter().chain(duplicates_file).collect();
        Ok((files, left_out, output))
    })
    .await?;
    // A re-run of the same run id replaces its files, never adds beside them.
    let suffix = format!("run_id={}.parquet", input.run_id);
    for stale in lake.list("silver", &format!("{}/", spec.name)).await? {
        if stale.ends_with(&suffix) && !output.partitions.contains(&stale) {
            lake.delete_prefix("silver", &stale).await?;
        }
    }
    for (path, bytes) in files {
        lake.put("silver", &path, bytes).await?;
    }
    lake.delete_prefix(
        "rejects",
        &format!("{}/run_id={}/", spec.name, input.run_id),
    )
    .await?;
    for (path, bytes) in left_out {
        lake.put("rejects", &path, bytes).await?;
    }
    Ok(output)
}

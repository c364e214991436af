//! silver: bronze cast to the schema (the landing's null markers, such as `NA`, read as
//! missing; timestamps as UTC instants), quality rules applied, duplicates removed on the
//! primary key, committed to the Delta table `silver/<dataset>` partitioned by the spec's
//! partition columns (the run replaces the partitions it covers). What is left out goes to
//! Delta tables of the `rejects` container, outside silver's path, appended per run with
//! the reason, source file and run id: `rejects/<dataset>/rejects` (the schema's columns as
//! landed, as text, with `_reject_reason`) and `rejects/<dataset>/duplicates` (typed rows
//! dropped as repeats of an earlier row's key).

use std::collections::BTreeMap;

use flowforge_orchestrator::history::FailureDetails;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::frames::{blocking, failure, parquet_ranges, read_parquet_rows, stack, to_parquet};
use super::keys::{repeated_keys, value_runs};
use super::spec_for;
use crate::lake::DataLake;
use crate::spec::{ColumnType, DatasetSpec, Rule};
use crate::tables::schema::table_columns;
use crate::tables::{
    open, write_run, write_run_opened, EncodedFile, TableCommit, TableWrite, WriteMode,
};

/// The columns bronze adds to every row, never null.
pub const LINEAGE_COLUMNS: [&str; 3] = ["_ingested_at", "_source_file", "_run_id"];

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
    /// The silver table's commit for this run (its files are what gold reads).
    pub table: TableCommit,
    /// The rejects table's commit, if any row was rejected.
    pub rejects: Option<TableCommit>,
    /// The dropped duplicates table's commit, if any row was dropped.
    #[serde(default)]
    pub duplicate_rows: Option<TableCommit>,
}

/// The polars type of a schema type.
pub fn dtype(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::String => DataType::String,
        ColumnType::Timestamp => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
    }
}

/// RFC 3339 text (`2013-01-01T10:00:00Z`, `…T10:00:00.5+01:00`) as a UTC instant; null when
/// it is not one. polars' `%:z` has no `Z`, so the one `Z` a valid instant can hold (its
/// end) becomes `+00:00` first — a literal replace, not a regular expression, since this
/// runs over every row.
pub fn instant(text: Expr) -> Expr {
    text.str()
        .replace(lit("Z"), lit("+00:00"), true)
        .str()
        .to_datetime(
            Some(TimeUnit::Microseconds),
            Some(TimeZone::UTC),
            StrptimeOptions {
                format: Some("%Y-%m-%dT%H:%M:%S%.f%:z".into()),
                strict: false,
                exact: true,
                cache: true,
            },
            lit("raise"),
        )
}

/// The column holding `name`'s typed value while a slice is checked: computed once per
/// row and used by every check and by the kept row.
fn typed_name(name: &str) -> String {
    format!("__typed_{name}")
}

/// Whether the landed text of `name` is a landing null marker (`NA`, …).
fn is_marker(spec: &DatasetSpec, name: &str) -> Expr {
    spec.landing
        .null_values
        .iter()
        .map(|m| col(name).eq(lit(m.as_str())))
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(false))
        .fill_null(lit(false))
}

/// Whether `name` holds a value: not null and not a null marker.
fn present(spec: &DatasetSpec, name: &str) -> Expr {
    col(name).is_not_null().and(is_marker(spec, name).not())
}

/// The typed value of a schema column from its landed text: null for a missing value, a
/// null marker, or text that is not of the column's type.
fn typed(spec: &DatasetSpec, name: &str) -> Expr {
    match spec.column(name).map(|c| c.kind) {
        Some(ColumnType::Timestamp) => instant(col(name)),
        Some(ColumnType::String) => when(is_marker(spec, name))
            .then(lit(NULL).cast(DataType::String))
            .otherwise(col(name)),
        Some(kind) => col(name).cast(dtype(kind)),
        None => col(name),
    }
}

/// The checks a row must pass, each with the reason it is rejected for when it fails:
/// cast failures, missing required values, then the quality rules, in that order. Read
/// the typed columns ([`typed_name`]) and the landed text.
fn checks(spec: &DatasetSpec) -> Vec<(Expr, String)> {
    let value = |name: &str| col(typed_name(name));
    let mut checks: Vec<(Expr, String)> = Vec::new();
    for column in &spec.schema {
        let name = column.name.as_str();
        if column.kind != ColumnType::String {
            checks.push((
                present(spec, name).and(value(name).is_null()),
                format!("cast: {name} is not {:?}", column.kind).to_lowercase(),
            ));
        }
        if column.kind == ColumnType::Float64 {
            // "NaN" and "inf" parse as floats; no measurement here is either.
            checks.push((
                value(name).is_finite().not(),
                format!("value: {name} is not a finite number"),
            ));
        }
        if !column.nullable {
            checks.push((
                present(spec, name).not(),
                format!("required: {name} is missing"),
            ));
        }
    }
    for rule in &spec.quality_rules {
        let broken = match rule {
            Rule::In { column, values, .. } => {
                let allowed = values
                    .iter()
                    .map(|v| value(column).eq(lit(v.clone())))
                    .reduce(|a, b| a.or(b))
                    .unwrap_or(lit(false));
                value(column).is_not_null().and(allowed.not())
            }
            Rule::Between {
                column, min, max, ..
            } => {
                let number = value(column).cast(DataType::Float64);
                number
                    .clone()
                    .lt(lit(*min))
                    .or(number.gt(lit(*max)))
                    .fill_null(lit(false))
            }
            Rule::RequiredIfPresent {
                column,
                when_present,
                ..
            } => present(spec, when_present).and(present(spec, column).not()),
        };
        checks.push((broken, format!("rule: {}", rule.name())));
    }
    checks
        .into_iter()
        .map(|(condition, reason)| (condition.fill_null(lit(false)), reason))
        .collect()
}

/// Whether a row fails any check: a few bitmap operations per row, where naming the
/// reason builds a text column per check — so reasons are named for rejected rows only.
fn fails_a_check(checks: &[(Expr, String)]) -> Expr {
    checks
        .iter()
        .map(|(condition, _)| condition.clone())
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(false))
}

/// The first failing check's reason (null when the row passes).
fn reject_reason(checks: &[(Expr, String)]) -> Expr {
    // Built from the last check backwards, so the first failing check names the reason.
    checks.iter().rev().fold(
        lit(NULL).cast(DataType::String),
        |otherwise, (condition, reason)| {
            when(condition.clone())
                .then(lit(reason.clone()))
                .otherwise(otherwise)
        },
    )
}

/// The most bronze rows decoded as one range: a range's text columns are the largest
/// frames silver holds besides the typed rows it keeps. Bronze's row groups (one per
/// 8 MiB of landing text, about 90,000 flights) are read whole.
const SLICE_ROWS: usize = 131_072;

/// A range of bronze rows, checked.
struct CheckedRange {
    rows: usize,
    rejects: DataFrame,
    valid: DataFrame,
}

struct SilverFrames {
    rows_in: usize,
    rejects: DataFrame,
    good: DataFrame,
    /// The rows dropped as repeats of an earlier row's primary key.
    dropped: DataFrame,
}

/// Casts and checks bronze a range of rows at a time (each column typed once; text columns
/// are dropped as soon as a range is typed), then removes duplicates of the primary key.
fn transform(spec: &DatasetSpec, bronze: Vec<Vec<u8>>) -> PolarsResult<SilverFrames> {
    let typed_columns: Vec<Expr> = spec
        .schema
        .iter()
        .map(|c| typed(spec, &c.name).alias(typed_name(&c.name)))
        .collect();
    let checks = checks(spec);
    let rejected = fails_a_check(&checks).alias("_rejected");
    let reason = reject_reason(&checks).alias("_reject_reason");
    let ingested = instant(col("_ingested_at")).alias("_ingested_at");
    let mut keep: Vec<Expr> = spec
        .schema
        .iter()
        .map(|c| col(typed_name(&c.name)).alias(c.name.as_str()))
        .collect();
    keep.push(ingested.clone());
    keep.extend(["_source_file", "_run_id"].map(col));
    // The rejects keep the schema's columns as landed (text, null markers as missing),
    // whatever else the file had.
    let mut as_landed: Vec<Expr> = spec
        .schema
        .iter()
        .map(|c| {
            when(is_marker(spec, &c.name))
                .then(lit(NULL).cast(DataType::String))
                .otherwise(col(c.name.as_str()))
                .alias(c.name.as_str())
        })
        .collect();
    as_landed.push(ingested);
    as_landed.extend(["_source_file", "_run_id", "_reject_reason"].map(col));
    // One range's text columns typed, checked and split into rejected and kept rows.
    let check = |bytes: &[u8], range: (usize, usize)| -> PolarsResult<CheckedRange> {
        let slice = read_parquet_rows(bytes, range)?;
        let rows = slice.height();
        let checked = slice
            .lazy()
            .with_columns(typed_columns.clone())
            .with_column(rejected.clone())
            .collect()?;
        let rejects = checked
            .clone()
            .lazy()
            .filter(col("_rejected"))
            .with_column(reason.clone())
            .select(as_landed.clone())
            .collect()?;
        let valid = checked
            .lazy()
            .filter(col("_rejected").not())
            .select(keep.clone())
            .collect()?;
        Ok(CheckedRange {
            rows,
            rejects,
            valid,
        })
    };
    let mut ranges = Vec::new();
    for file in &bronze {
        for range in parquet_ranges(file, SLICE_ROWS)? {
            ranges.push((file.as_slice(), range));
        }
    }
    // Ranges are checked side by side: within one range polars leaves a core idle much
    // of the time (short steps, each planned and run in turn). Results keep file and
    // row order, which the removal of duplicates depends on (the first row is kept).
    use rayon::prelude::*;
    let checked: Vec<CheckedRange> = polars_core::runtime::THREAD_POOL.install(|| {
        ranges
            .par_iter()
            .map(|(bytes, range)| check(bytes, *range))
            .collect::<PolarsResult<_>>()
    })?;
    drop(bronze);
    let rows_in = checked.iter().map(|c| c.rows).sum();
    let (rejects, valid): (Vec<DataFrame>, Vec<DataFrame>) =
        checked.into_iter().map(|c| (c.rejects, c.valid)).unzip();
    let rejects = stack(rejects)?;
    let valid = stack(valid)?;
    let (good, dropped) = match repeated_keys(&valid, &spec.primary_key)? {
        None => {
            let dropped = valid.clear();
            (valid, dropped)
        }
        Some(repeated) => {
            let dropped = valid.filter(&repeated)?;
            (valid.filter(&!&repeated)?, dropped)
        }
    };
    Ok(SilverFrames {
        rows_in,
        rejects,
        good,
        dropped,
    })
}

/// A partition's values, `(column, value as text)` in the spec's order.
type PartitionValues = Vec<(String, Option<String>)>;

/// The partition files of a frame: each partition's rows without the partition columns
/// (Delta keeps their values in the log), as parquet.
pub fn partition_files(
    partition_by: &[String],
    frame: &DataFrame,
) -> PolarsResult<Vec<EncodedFile>> {
    if frame.height() == 0 {
        return Ok(Vec::new());
    }
    let runs = match partition_by.is_empty() {
        true => vec![vec![(0, frame.height())]],
        false => value_runs(frame, partition_by)?,
    };
    let encode = |runs: &Vec<(usize, usize)>| {
        let rows = rows_of(frame, runs)?;
        let values = partition_values(partition_by, &rows)?;
        let part = rows.drop_many(partition_by.iter().map(String::as_str));
        Ok(EncodedFile {
            partition_values: values,
            rows: part.height(),
            bytes: to_parquet(&part)?,
        })
    };
    // Partitions are encoded side by side: one month's file is too small for polars to
    // keep both cores busy encoding its columns.
    use rayon::prelude::*;
    polars_core::runtime::THREAD_POOL.install(|| runs.par_iter().map(encode).collect())
}

/// The rows of the given runs `(start, length)` of a frame: a zero-copy slice for one run
/// (a landing file in date order puts each month's rows together), else slices stacked.
fn rows_of(frame: &DataFrame, runs: &[(usize, usize)]) -> PolarsResult<DataFrame> {
    let slices = runs
        .iter()
        .map(|&(start, length)| frame.slice(start as i64, length))
        .collect();
    stack(slices)
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

/// The partition values of a one-partition frame, as Delta writes them (text).
fn partition_values(partition_by: &[String], part: &DataFrame) -> PolarsResult<PartitionValues> {
    let mut values = Vec::new();
    for name in partition_by {
        let value = match part.column(name)?.get(0)? {
            AnyValue::Null => None,
            AnyValue::String(s) => Some(s.to_owned()),
            other => Some(other.to_string()),
        };
        values.push((name.clone(), value));
    }
    Ok(values)
}

/// The non-nullable columns of silver: the spec's and the lineage columns.
fn required_columns(spec: &DatasetSpec) -> Vec<&str> {
    spec.schema
        .iter()
        .filter(|c| !c.nullable)
        .map(|c| c.name.as_str())
        .chain(LINEAGE_COLUMNS)
        .collect()
}

/// A run's write of `frame` to a table.
fn table_write(
    frame: &DataFrame,
    required: &[&str],
    partition_by: &[String],
    mode: WriteMode,
    run_id: &str,
) -> Result<TableWrite, FailureDetails> {
    let columns = table_columns(frame.schema(), required)
        .map_err(|e| FailureDetails::non_retryable("SilverFailed", e))?;
    let files = partition_files(partition_by, frame)
        .map_err(|e| failure("SilverFailed", "writing parquet", e))?;
    let mut facts = serde_json::Map::new();
    facts.insert("flowforge.rows".into(), frame.height().into());
    Ok(TableWrite {
        columns,
        partition_by: partition_by.to_vec(),
        mode,
        run_id: run_id.to_owned(),
        files,
        run_facts: facts,
    })
}

/// Commits a run's left-out rows (if any) to `rejects/<dataset>/<table>`.
async fn write_left_out(
    lake: &DataLake,
    spec: &DatasetSpec,
    table: &str,
    write: Option<TableWrite>,
) -> Result<Option<TableCommit>, FailureDetails> {
    match write {
        Some(write) => {
            let location = lake.table("rejects", &format!("{}/{table}", spec.name))?;
            write_run(&location, write).await.map(Some)
        }
        None => Ok(None),
    }
}

/// The silver activity.
pub async fn silver(lake: DataLake, input: SilverInput) -> Result<SilverOutput, FailureDetails> {
    let spec = spec_for(&input.dataset)?;
    let started = std::time::Instant::now();
    let mut frames_bytes = Vec::new();
    for path in &input.bronze_paths {
        frames_bytes.push(lake.get("bronze", path).await?);
    }
    let read_ms = started.elapsed().as_millis();
    let run_id = input.run_id.clone();
    let work_spec = spec.clone();
    // The silver table is opened while the rows are worked out (the rejects and duplicates
    // tables only once it is known that the run has rows for them).
    let silver_table = lake.table("silver", &spec.name)?;
    let work = blocking(move || {
        let spec = work_spec;
        let started = std::time::Instant::now();
        let result = transform(&spec, frames_bytes)
            .map_err(|e| failure("SilverFailed", "transforming", e))?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "silver transform"
        );
        let rejected = count_reasons(&result.rejects)
            .map_err(|e| failure("SilverFailed", "counting rejects", e))?;
        let required = required_columns(&spec);
        let silver = table_write(
            &result.good,
            &required,
            &spec.partition_by,
            WriteMode::ReplacePartitions,
            &run_id,
        )?;
        let mut left_out_required = LINEAGE_COLUMNS.to_vec();
        left_out_required.push("_reject_reason");
        let rejects = (result.rejects.height() > 0)
            .then(|| {
                table_write(
                    &result.rejects,
                    &left_out_required,
                    &[],
                    WriteMode::Append,
                    &run_id,
                )
            })
            .transpose()?;
        let dropped = result
            .dropped
            .clone()
            .lazy()
            .with_column(
                lit("duplicate: the primary key of an earlier row").alias("_reject_reason"),
            )
            .collect()
            .map_err(|e| failure("SilverFailed", "marking duplicates", e))?;
        let mut dropped_required = required.clone();
        dropped_required.push("_reject_reason");
        let duplicates = (dropped.height() > 0)
            .then(|| table_write(&dropped, &dropped_required, &[], WriteMode::Append, &run_id))
            .transpose()?;
        let counts = (
            result.rows_in,
            result.good.height(),
            rejected,
            result.dropped.height(),
        );
        Ok((counts, silver, rejects, duplicates))
    });
    let ((counts, silver_write, rejects_write, duplicates_write), silver_delta) =
        futures::try_join!(work, open(&silver_table))?;
    let (rows_in, rows_out, rejected, duplicates) = counts;
    let encoded_ms = started.elapsed().as_millis();
    // The three tables are independent commits, each idempotent per run (its transaction
    // id): a retry after one failed finds the others committed and writes nothing to them.
    let (table, rejects, duplicate_rows) = futures::try_join!(
        write_run_opened(&silver_table, silver_delta, silver_write),
        write_left_out(&lake, &spec, "rejects", rejects_write),
        write_left_out(&lake, &spec, "duplicates", duplicates_write)
    )?;
    tracing::debug!(
        read_ms = read_ms as u64,
        encoded_ms = encoded_ms as u64,
        done_ms = started.elapsed().as_millis() as u64,
        "silver phases (cumulative)"
    );
    Ok(SilverOutput {
        rows_in,
        rows_out,
        rejected,
        duplicates,
        table,
        rejects,
        duplicate_rows,
    })
}

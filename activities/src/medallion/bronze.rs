//! bronze: a landing file as it came, plus lineage columns, as parquet under
//! `bronze/<dataset>/ingest_date=…/run_id=…/<file>.parquet`. Same run id, same path: a
//! re-run overwrites.

use flowforge_orchestrator::history::FailureDetails;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::frames::{blocking, failure, read_csv_as_text, to_parquet};
use super::spec_for;
use crate::lake::DataLake;

/// Input of `bronze`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BronzeInput {
    /// Dataset name.
    pub dataset: String,
    /// Landing blob name.
    pub file: String,
    /// Run id.
    pub run_id: String,
    /// Ingestion time (the orchestration's replay-safe time), RFC 3339.
    pub ingested_at: String,
}

/// Output of `bronze`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BronzeOutput {
    /// Parquet blob written in `bronze`.
    pub path: String,
    /// Rows.
    pub rows: usize,
}

/// The bronze activity.
pub async fn bronze(lake: DataLake, input: BronzeInput) -> Result<BronzeOutput, FailureDetails> {
    let spec = spec_for(&input.dataset)?;
    let bytes = lake.get("landing", &input.file).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FailureDetails::non_retryable(
            "EmptyFile",
            format!("landing file {} is empty", input.file),
        ));
    }
    let date = input.ingested_at.get(..10).unwrap_or("unknown").to_owned();
    let stem = input
        .file
        .rsplit('/')
        .next()
        .unwrap_or(&input.file)
        .trim_end_matches(".csv")
        .to_owned();
    let path = format!(
        "{}/ingest_date={date}/run_id={}/{stem}.parquet",
        spec.name, input.run_id
    );
    let file = input.file.clone();
    let (parquet, rows) = blocking(move || {
        let df = read_csv_as_text(bytes, &spec.landing.null_values).map_err(|e| {
            failure(
                "NotCsv",
                &format!("landing file {file} is not readable CSV"),
                e,
            )
        })?;
        let found: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let missing: Vec<&str> = spec
            .schema
            .iter()
            .map(|c| c.name.as_str())
            .filter(|c| !found.iter().any(|f| f == c))
            .collect();
        if !missing.is_empty() {
            return Err(FailureDetails::non_retryable(
                "MissingColumns",
                format!("landing file {file} lacks columns {missing:?}; it has {found:?}"),
            ));
        }
        let rows = df.height();
        let mut df = df
            .lazy()
            .with_columns([
                lit(input.ingested_at.clone()).alias("_ingested_at"),
                lit(file.clone()).alias("_source_file"),
                lit(input.run_id.clone()).alias("_run_id"),
            ])
            .collect()
            .map_err(|e| failure("BronzeFailed", "adding lineage", e))?;
        let parquet =
            to_parquet(&mut df).map_err(|e| failure("BronzeFailed", "writing parquet", e))?;
        Ok((parquet, rows))
    })
    .await?;
    lake.put("bronze", &path, parquet).await?;
    Ok(BronzeOutput { path, rows })
}

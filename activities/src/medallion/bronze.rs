//! bronze: a landing file as it came, plus lineage columns, as parquet under
//! `bronze/<dataset>/ingest_date=…/run_id=…/<file>.parquet`. Same run id, same path: a
//! re-run overwrites.

use flowforge_orchestrator::history::FailureDetails;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::frames::{
    blocking, csv_pieces, failure, read_csv_as_text, rows_reaching, ParquetPieces,
};
use super::spec_for;
use crate::lake::DataLake;
use crate::spec::DatasetSpec;

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

/// CSV bytes parsed at a time: a few MiB keeps one piece's frame small while polars
/// still parses each piece on all threads.
const PIECE_BYTES: usize = 8 << 20;

/// Where a landing file's rows came from, added to every row.
struct Lineage<'a> {
    file: &'a str,
    ingested_at: &'a str,
    run_id: &'a str,
}

/// One piece of a landing file (after its header) as text columns with lineage.
fn bronze_frame(
    spec: &DatasetSpec,
    header: &[u8],
    piece: &[u8],
    lineage: &Lineage,
) -> Result<DataFrame, FailureDetails> {
    let file = lineage.file;
    let text = [header, piece].concat();
    let df = read_landing(spec, file, &text)?;
    df.lazy()
        .with_columns([
            lit(lineage.ingested_at).alias("_ingested_at"),
            lit(file).alias("_source_file"),
            lit(lineage.run_id).alias("_run_id"),
        ])
        .collect()
        .map_err(|e| failure("BronzeFailed", "adding lineage", e))
}

/// CSV text of a landing file as text columns, or `NotCsv`.
fn read_landing(spec: &DatasetSpec, file: &str, text: &[u8]) -> Result<DataFrame, FailureDetails> {
    read_csv_as_text(text, &spec.landing.null_values).map_err(|e| {
        failure(
            "NotCsv",
            &format!("landing file {file} is not readable CSV"),
            e,
        )
    })
}

/// Fails when the landing file's header lacks a column of the schema.
fn check_columns(spec: &DatasetSpec, file: &str, header: &[u8]) -> Result<(), FailureDetails> {
    let df = read_landing(spec, file, header)?;
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
    Ok(())
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
        let (header, body) = bytes.split_at(rows_reaching(&bytes, 1));
        let lineage = Lineage {
            file: &file,
            ingested_at: &input.ingested_at,
            run_id: &input.run_id,
        };
        let mut pieces = csv_pieces(body, PIECE_BYTES).into_iter();
        let first = pieces.next().unwrap_or_default();
        check_columns(&spec, &file, header)?;
        let mut frame = bronze_frame(&spec, header, first, &lineage)?;
        let written = |e| failure("BronzeFailed", "writing parquet", e);
        let mut parquet = Vec::new();
        let mut writer = ParquetPieces::new(&mut parquet, frame.schema()).map_err(written)?;
        let mut rows = 0;
        loop {
            rows += frame.height();
            writer.write(&mut frame).map_err(written)?;
            match pieces.next() {
                Some(piece) => frame = bronze_frame(&spec, header, piece, &lineage)?,
                None => break,
            }
        }
        writer.finish().map_err(written)?;
        Ok((parquet, rows))
    })
    .await?;
    lake.put("bronze", &path, parquet).await?;
    Ok(BronzeOutput { path, rows })
}

//! polars helpers: CSV and parquet in and out of memory.

use std::io::Cursor;

use flowforge_orchestrator::history::FailureDetails;
use polars::prelude::*;

/// Reads a CSV with every column as text (bronze keeps values as they came).
pub fn read_csv_as_text(bytes: Vec<u8>, null_values: &[String]) -> PolarsResult<DataFrame> {
    let nulls = if null_values.is_empty() {
        None
    } else {
        Some(NullValues::AllColumns(
            null_values.iter().map(|v| v.as_str().into()).collect(),
        ))
    };
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_raise_if_empty(true)
        .map_parse_options(|options| options.with_null_values(nulls.clone()))
        .into_reader_with_file_handle(Cursor::new(bytes))
        .finish()
}

/// Parquet bytes of a frame (zstd).
pub fn to_parquet(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buffer = Vec::new();
    ParquetWriter::new(&mut buffer)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)?;
    Ok(buffer)
}

/// A frame from parquet bytes.
pub fn from_parquet(bytes: Vec<u8>) -> PolarsResult<DataFrame> {
    ParquetReader::new(Cursor::new(bytes)).finish()
}

/// A polars error as a non-retryable failure of the given kind.
pub fn failure(kind: &str, context: &str, error: PolarsError) -> FailureDetails {
    FailureDetails::non_retryable(kind, format!("{context}: {error}"))
}

/// Runs CPU-heavy frame work off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FailureDetails> + Send + 'static,
) -> Result<T, FailureDetails> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FailureDetails::non_retryable("ActivityPanicked", e.to_string()))?
}

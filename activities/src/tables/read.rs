//! Reading a table's version back into polars (for the CLI, tests and the benchmark; the
//! pipeline itself reads the files its previous stage reported).

use std::collections::BTreeMap;
use std::io::Cursor;

use deltalake::kernel::DataType as DeltaType;
use flowforge_orchestrator::history::FailureDetails;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use polars::prelude::*;

use super::{open_at, Table, TableFile};

/// The files of the table's latest version (or `version`), in path order.
pub async fn table_files(
    table: &Table,
    version: Option<u64>,
) -> Result<Vec<TableFile>, FailureDetails> {
    let delta = open_at(table, version).await?;
    if delta.version().is_none() {
        return Ok(Vec::new());
    }
    let state = delta
        .snapshot()
        .map_err(|e| FailureDetails::new("TableReadFailed", e.to_string()))?;
    let log_store = delta.log_store();
    let mut files: Vec<TableFile> = state
        .snapshot()
        .file_views(log_store.as_ref(), None)
        .map_ok(|view| TableFile {
            path: view.path().into_owned(),
            partition_values: view.partition_values_map().into_iter().collect(),
            rows: view.num_records().unwrap_or_default(),
        })
        .try_collect()
        .await
        .map_err(|e| FailureDetails::new("TableReadFailed", e.to_string()))?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn polars_type(kind: &DeltaType) -> DataType {
    match kind {
        k if *k == DeltaType::INTEGER => DataType::Int32,
        k if *k == DeltaType::LONG => DataType::Int64,
        k if *k == DeltaType::DOUBLE => DataType::Float64,
        k if *k == DeltaType::BOOLEAN => DataType::Boolean,
        _ => DataType::String,
    }
}

/// The rows of the table's latest version (or `version`), partition columns included
/// (typed as the table says), files in path order.
pub async fn read_table(table: &Table, version: Option<u64>) -> Result<DataFrame, FailureDetails> {
    let delta = open_at(table, version).await?;
    let failed =
        |e: String| FailureDetails::new("TableReadFailed", format!("{}: {e}", table.name()));
    let state = delta.snapshot().map_err(|e| failed(e.to_string()))?;
    let partition_types: BTreeMap<String, DataType> = state
        .schema()
        .fields()
        .filter(|f| state.metadata().partition_columns().contains(f.name()))
        .map(|f| (f.name().clone(), polars_type(f.data_type())))
        .collect();
    let files = table_files(table, version).await?;
    let mut frames = Vec::new();
    for file in files {
        let bytes = table
            .store
            .get(&Path::from(format!("{}/{}", table.path, file.path)))
            .await
            .map_err(|e| failed(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let frame = ParquetReader::new(Cursor::new(bytes.to_vec()))
            .finish()
            .map_err(|e| failed(e.to_string()))?;
        let partition_columns: Vec<Expr> = partition_types
            .iter()
            .map(|(name, kind)| {
                let value = file.partition_values.get(name).cloned().flatten();
                value
                    .map_or(lit(NULL), lit)
                    .cast(kind.clone())
                    .alias(name.as_str())
            })
            .collect();
        let frame = frame
            .lazy()
            .with_columns(partition_columns)
            .collect()
            .map_err(|e| failed(e.to_string()))?;
        frames.push(frame.lazy());
    }
    if frames.is_empty() {
        return Ok(DataFrame::empty());
    }
    concat(frames, UnionArgs::default())
        .and_then(LazyFrame::collect)
        .map_err(|e| failed(e.to_string()))
}

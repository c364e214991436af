//! bronze: a landing file as it came, plus lineage columns, as parquet under
//! `bronze/<dataset>/ingest_date=…/run_id=…/<file>.parquet`. Same run id, same path: a
//! re-run overwrites. Every value is kept as the text that landed (`NA` stays `NA`); only
//! an empty field becomes null. A file that is empty, binary, header-only or lacks a
//! column of the schema fails before anything is written.

use flowforge_orchestrator::history::FailureDetails;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::frames::{
    blocking, failure, read_csv_as_text, read_csv_rows_as_text, MinMax, ParquetPieces,
};
use super::landing_text::LandingText;
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

/// One piece of a landing file (rows after its header) as text columns with lineage.
fn bronze_frame(
    names: &[PlSmallStr],
    piece: &[u8],
    lineage: &Lineage,
) -> Result<DataFrame, FailureDetails> {
    let file = lineage.file;
    let df = read_csv_rows_as_text(piece, names).map_err(|e| {
        failure(
            "NotCsv",
            &format!("landing file {file} is not readable CSV"),
            e,
        )
    })?;
    df.lazy()
        .with_columns([
            lit(lineage.ingested_at).alias("_ingested_at"),
            lit(file).alias("_source_file"),
            lit(lineage.run_id).alias("_run_id"),
        ])
        .collect()
        .map_err(|e| failure("BronzeFailed", "adding lineage", e))
}

/// The column names of a landing file's header row.
fn header_names(file: &str, header: &[u8]) -> Result<Vec<PlSmallStr>, FailureDetails> {
    Ok(read_landing(file, header)?
        .get_column_names()
        .into_iter()
        .cloned()
        .collect())
}

/// CSV text of a landing file as text columns (as landed: no null markers applied), or
/// `NotCsv`.
fn read_landing(file: &str, text: &[u8]) -> Result<DataFrame, FailureDetails> {
    read_csv_as_text(text, &[]).map_err(|e| {
        failure(
            "NotCsv",
            &format!("landing file {file} is not readable CSV"),
            e,
        )
    })
}

/// How much of a file is looked at to tell text from binary.
const SNIFF_BYTES: usize = 64 << 10;

/// Fails (`NotCsv`) when the start of a file is not text: a NUL byte, or bytes that are
/// not UTF-8 (a multi-byte character cut by the end of the window is fine, unless the
/// window holds the whole file). `bytes` is the start of the file, `whole` whether it is
/// all of it.
fn check_text(file: &str, bytes: &[u8], whole: bool) -> Result<(), FailureDetails> {
    let window = &bytes[..bytes.len().min(SNIFF_BYTES)];
    let window_is_file = whole && window.len() == bytes.len();
    let bad = match (
        window.iter().position(|b| *b == 0),
        std::str::from_utf8(window),
    ) {
        (Some(at), _) => Some(at),
        (None, Err(e)) if e.error_len().is_some() || window_is_file => Some(e.valid_up_to()),
        _ => None,
    };
    match bad {
        Some(at) => Err(FailureDetails::non_retryable(
            "NotCsv",
            format!(
                "landing file {file} is not CSV text: byte 0x{:02x} at offset {at} (binary content?)",
                window[at.min(window.len().saturating_sub(1))]
            ),
        )),
        None => Ok(()),
    }
}

/// At most this many of a header's names go into a message, each at most this long.
const NAMES_SHOWN: usize = 30;
const NAME_CHARS: usize = 40;

/// Fails when the landing file's header lacks a column of the schema.
fn check_columns(
    spec: &DatasetSpec,
    file: &str,
    names: &[PlSmallStr],
) -> Result<(), FailureDetails> {
    let found: Vec<String> = names.iter().map(|c| c.to_string()).collect();
    let missing: Vec<&str> = spec
        .schema
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !found.iter().any(|f| f == c))
        .collect();
    if !missing.is_empty() {
        let mut shown: Vec<String> = found
            .iter()
            .take(NAMES_SHOWN)
            .map(|name| match name.char_indices().nth(NAME_CHARS) {
                Some((cut, _)) => format!("{}…", &name[..cut]),
                None => name.clone(),
            })
            .collect();
        if found.len() > NAMES_SHOWN {
            shown.push(format!("… {} more", found.len() - NAMES_SHOWN));
        }
        return Err(FailureDetails::non_retryable(
            "MissingColumns",
            format!("landing file {file} lacks columns {missing:?}; it has {shown:?}"),
        ));
    }
    Ok(())
}

/// Landing ranges read ahead of the parsing (each [`crate::lake`] read range, 8 MiB).
const RANGES_AHEAD: usize = 2;

/// A landing file's text as parquet, piece by piece as its ranges arrive: the file's
/// checks (empty, not text, no rows, missing columns) before anything is written, then
/// each piece of whole rows parsed against the header and written as a row group.
fn encode_landing<I: Iterator<Item = Result<Vec<u8>, FailureDetails>>>(
    spec: &DatasetSpec,
    mut landing: LandingText<I>,
    lineage: &Lineage,
) -> Result<(Vec<u8>, usize), FailureDetails> {
    let file = lineage.file;
    if !landing.read_past_whitespace()? {
        return Err(FailureDetails::non_retryable(
            "EmptyFile",
            format!("landing file {file} is empty"),
        ));
    }
    landing.read_at_least(SNIFF_BYTES)?;
    check_text(file, landing.rest(), landing.ended())?;
    let header = landing.next_rows(1)?.unwrap_or_default();
    let names = header_names(file, &landing.rest()[..header])?;
    landing.take(header);
    let has_rows = landing.read_past_whitespace()?;
    check_columns(spec, file, &names)?;
    if !has_rows {
        return Err(FailureDetails::non_retryable(
            "NoRows",
            format!("landing file {file} has a header but no rows"),
        ));
    }
    let written = |e| failure("BronzeFailed", "writing parquet", e);
    // One piece's frame at a time: each is written and dropped before the next is parsed.
    let piece = |landing: &mut LandingText<I>, length: usize| {
        let frame = bronze_frame(&names, &landing.rest()[..length], lineage);
        landing.take(length);
        frame
    };
    let first = landing.next_rows(PIECE_BYTES)?.unwrap_or_default();
    let frame = piece(&mut landing, first)?;
    let mut parquet = Vec::new();
    let mut writer =
        ParquetPieces::new(&mut parquet, frame.schema(), MinMax::Left).map_err(written)?;
    let mut rows = frame.height();
    writer.write(&frame).map_err(written)?;
    drop(frame);
    while let Some(length) = landing.next_rows(PIECE_BYTES)? {
        let frame = piece(&mut landing, length)?;
        rows += frame.height();
        writer.write(&frame).map_err(written)?;
    }
    writer.finish().map_err(written)?;
    Ok((parquet, rows))
}

/// The bronze activity.
pub async fn bronze(lake: DataLake, input: BronzeInput) -> Result<BronzeOutput, FailureDetails> {
    let spec = spec_for(&input.dataset)?;
    let started = std::time::Instant::now();
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
    // The file is parsed as it is read: its first piece while later ranges arrive.
    let (ranges, mut arrived) = tokio::sync::mpsc::channel(RANGES_AHEAD);
    let reading = lake.send_ranges("landing", &input.file, ranges);
    let work_input = input.clone();
    let encoding = blocking(move || {
        let lineage = Lineage {
            file: &work_input.file,
            ingested_at: &work_input.ingested_at,
            run_id: &work_input.run_id,
        };
        let ranges = std::iter::from_fn(move || arrived.blocking_recv());
        encode_landing(&spec, LandingText::new(ranges), &lineage)
    });
    let ((), encoded) = tokio::join!(reading, encoding);
    let (parquet, rows) = encoded?;
    let encoded_ms = started.elapsed().as_millis() as u64;
    lake.put("bronze", &path, parquet).await?;
    tracing::debug!(
        encoded_ms,
        done_ms = started.elapsed().as_millis() as u64,
        "bronze phases (cumulative)"
    );
    Ok(BronzeOutput { path, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_files_are_told_from_text() {
        let png = [0x89, b'P', b'N', b'G', 0, 0xff, 0xfe, 1, 2, 3];
        let error = check_text("flights/x.csv", &png, true).unwrap_err();
        assert_eq!(error.kind.as_str(), "NotCsv");
        assert!(
            error.message.contains("0x00 at offset 4"),
            "{}",
            error.message
        );
        let latin1 = b"year,month\n2013,\xe9\n";
        assert!(check_text("f.csv", latin1, true).is_err());
        assert!(check_text("f.csv", "year,city\n2013,Zürich\n".as_bytes(), true).is_ok());
        // A multi-byte character cut by the sniffing window is not an error.
        let mut long = vec![b'a'; SNIFF_BYTES - 1];
        long.extend("é and more".as_bytes());
        assert!(check_text("f.csv", &long, true).is_ok());
        // The window read so far (not yet the whole file) may cut a character too.
        assert!(check_text("f.csv", &long[..SNIFF_BYTES], false).is_ok());
    }
}

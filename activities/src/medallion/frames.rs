//! polars helpers: CSV and parquet in and out of memory.

use std::io::Cursor;
use std::sync::OnceLock;

use flowforge_orchestrator::history::{FailureDetails, FailureKind};
use polars::prelude::*;
use polars_parquet::read::ParquetError;
use polars_parquet::write::{
    array_to_columns, get_dtype_encoding, to_parquet_schema, CompressedPage, Encoding, ParquetType,
    Version, WriteOptions,
};

use super::page_zstd;

/// Reads a CSV with every column as text (bronze keeps values as they came).
pub fn read_csv_as_text(bytes: &[u8], null_values: &[String]) -> PolarsResult<DataFrame> {
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

/// CSV rows without their header as text columns named `names`, parsed as
/// [`read_csv_as_text`] parses them (bronze reads a landing file piece by piece against
/// its header, read once, instead of copying the header in front of every piece).
pub fn read_csv_rows_as_text(bytes: &[u8], names: &[PlSmallStr]) -> PolarsResult<DataFrame> {
    let schema: Schema = names
        .iter()
        .map(|name| Field::new(name.clone(), DataType::String))
        .collect();
    CsvReadOptions::default()
        .with_has_header(false)
        .with_schema(Some(Arc::new(schema)))
        .with_raise_if_empty(true)
        .into_reader_with_file_handle(Cursor::new(bytes))
        .finish()
}

/// A parquet file written one frame at a time (zstd; each frame becomes one row group), so
/// a stage holds one frame, not the whole file's.
///
/// polars' own writer builds each column's dictionary on its pool but encodes the pages and
/// compresses them one column after the other while it writes; bronze left a core idle
/// for about a third of its encoding. Here each column is encoded and compressed on the
/// pool side by side and the finished row group handed to polars' writer, which lays it
/// out and keeps the footer, as it does for its own streaming sink.
pub struct ParquetPieces<W: std::io::Write> {
    writer: polars::io::parquet::write::BatchedWriter<W>,
    /// The parquet type of each column, in the frame's order.
    fields: Vec<ParquetType>,
    /// The encodings polars chooses for each column's leaves.
    encodings: Vec<Vec<Encoding>>,
    options: WriteOptions,
}

/// Whether a file's columns carry min/max statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinMax {
    /// With min/max (readers prune row groups by them).
    Kept,
    /// Null counts only: bronze's text columns as landed, where min/max cost a comparison
    /// of every value and serve no reader (silver reads bronze whole).
    Left,
}

impl<W: std::io::Write> ParquetPieces<W> {
    /// A writer of frames of `schema` into `sink`.
    pub fn new(sink: W, schema: &Schema, min_max: MinMax) -> PolarsResult<Self> {
        let statistics = match min_max {
            MinMax::Kept => StatisticsOptions::default(),
            MinMax::Left => StatisticsOptions {
                min_value: false,
                max_value: false,
                ..StatisticsOptions::default()
            },
        };
        let arrow = schema.to_arrow(CompatLevel::newest());
        let fields = to_parquet_schema(&arrow)?.fields().to_vec();
        let encodings = arrow
            .iter_values()
            .map(|field| get_dtype_encoding(&field.dtype))
            .collect();
        // polars' own options for these settings (`ParquetWriter::materialize_options`).
        let options = WriteOptions {
            statistics,
            compression: ParquetCompression::Zstd(None).into(),
            version: Version::V1,
            data_page_size: None,
        };
        let writer = ParquetWriter::new(sink)
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(statistics)
            .batched(schema)?;
        Ok(Self {
            writer,
            fields,
            encodings,
            options,
        })
    }

    /// Appends a frame as one row group.
    pub fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        if df.height() == 0 {
            return Ok(());
        }
        let options = self.options;
        let work: Vec<_> = df
            .columns()
            .iter()
            .zip(&self.fields)
            .zip(&self.encodings)
            .collect();
        use rayon::prelude::*;
        let columns = polars_core::runtime::THREAD_POOL.install(|| {
            work.par_iter()
                .map(|((column, field), encodings)| {
                    // One chunk per column, one column at a time: a frame parsed in many
                    // chunks is never copied whole, only each column as it is encoded.
                    let column = column.as_materialized_series().rechunk();
                    let array = column.to_arrow(0, CompatLevel::newest());
                    compressed_pages(&array, field, encodings, options)
                })
                .collect::<PolarsResult<Vec<_>>>()
        })?;
        let leaves: Vec<Vec<CompressedPage>> = columns.into_iter().flatten().collect();
        self.writer.write_row_group(df.height() as u64, &leaves)
    }

    /// Writes the footer.
    pub fn finish(self) -> PolarsResult<()> {
        self.writer.finish().map(drop)
    }
}

/// A column's pages, encoded and compressed, per parquet leaf (one for a flat column).
fn compressed_pages(
    array: &ArrayRef,
    field: &ParquetType,
    encodings: &[Encoding],
    options: WriteOptions,
) -> PolarsResult<Vec<Vec<CompressedPage>>> {
    array_to_columns(array, field.clone(), options, encodings)?
        .into_iter()
        .map(|pages| {
            pages
                .map(|page| {
                    let page = page
                        .map_err(|e| ParquetError::FeatureNotSupported(format!("encoding: {e}")))?;
                    page_zstd::compress_page(page)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(PolarsError::from)
        })
        .collect()
}

/// Where the first row end outside quotes at or after `at_least` bytes is (just past its
/// newline), if `text` has one (RFC 4180: a doubled quote inside a quoted field toggles
/// twice).
pub fn row_end_reaching(text: &[u8], at_least: usize) -> Option<usize> {
    let mut quoted = false;
    for (i, byte) in text.iter().enumerate() {
        match byte {
            b'"' => quoted = !quoted,
            b'\n' if !quoted && i + 1 >= at_least => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Parquet bytes of a frame (zstd, min/max statistics): row groups of at most
/// [`ROW_GROUP_ROWS`] rows, as polars' writer cuts them.
pub fn to_parquet(df: &DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut writer = ParquetPieces::new(&mut buffer, df.schema(), MinMax::Kept)?;
    let mut offset = 0;
    while offset < df.height() || offset == 0 {
        writer.write(&df.slice(offset as i64, ROW_GROUP_ROWS))?;
        offset += ROW_GROUP_ROWS;
    }
    writer.finish()?;
    Ok(buffer)
}

/// The most rows of one row group of [`to_parquet`] (polars' `ParquetWriter` default).
pub const ROW_GROUP_ROWS: usize = 512 * 512;

/// A frame from parquet bytes: all columns, or only the named ones.
pub fn from_parquet(bytes: &[u8], columns: Option<Vec<String>>) -> PolarsResult<DataFrame> {
    ParquetReader::new(Cursor::new(bytes))
        .with_columns(columns)
        .finish()
}

/// The row ranges `(offset, length)` a parquet file is read in: its row groups, each cut
/// into equal parts of at most `most` rows (at least one range, maybe empty). A range never
/// spans two row groups, so each group's pages and dictionaries are decoded once, and
/// ranges can be decoded side by side ([`read_parquet_rows`]).
pub fn parquet_ranges(bytes: &[u8], most: usize) -> PolarsResult<Vec<(usize, usize)>> {
    let mut reader = ParquetReader::new(Cursor::new(bytes));
    let groups: Vec<usize> = reader
        .get_metadata()?
        .row_groups
        .iter()
        .map(|group| group.num_rows())
        .collect();
    let mut ranges = Vec::new();
    let mut offset = 0;
    for rows in groups.into_iter().filter(|rows| *rows > 0) {
        let parts = rows.div_ceil(most.max(1));
        let mut start = 0;
        for part in 0..parts {
            let end = rows * (part + 1) / parts;
            ranges.push((offset + start, end - start));
            start = end;
        }
        offset += rows;
    }
    if ranges.is_empty() {
        ranges.push((0, 0));
    }
    Ok(ranges)
}

/// The rows `(offset, length)` of a parquet file.
pub fn read_parquet_rows(bytes: &[u8], range: (usize, usize)) -> PolarsResult<DataFrame> {
    ParquetReader::new(Cursor::new(bytes))
        .with_slice(Some(range))
        .finish()
}

/// Frames of one schema one under the other (their chunks are kept, not copied); at
/// least one frame.
pub fn stack(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut frames = frames.into_iter();
    let mut all = frames
        .next()
        .ok_or_else(|| polars_err!(NoData: "no frames to stack"))?;
    for frame in frames {
        all.vstack_mut_owned(frame)?;
    }
    Ok(all)
}

/// A polars error as a non-retryable failure of the given kind.
pub fn failure(kind: &str, context: &str, error: PolarsError) -> FailureDetails {
    FailureDetails::non_retryable(kind, format!("{context}: {error}"))
}

/// Runs CPU-heavy frame work off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FailureDetails> + Send + 'static,
) -> Result<T, FailureDetails> {
    tokio::task::spawn_blocking(move || {
        let result = work();
        release_freed_memory();
        result
    })
    .await
    .map_err(|e| FailureDetails::of(FailureKind::ActivityPanicked, e.to_string()))?
}

/// What hands a thread's freed memory back to the system, set by the binary that chose the
/// allocator ([`set_memory_release`]).
static RELEASE_FREED: OnceLock<fn()> = OnceLock::new();

/// Sets what each stage calls, on its own thread and on each of polars' pool threads,
/// once its frame work is done. With mimalloc a block freed by another thread than the
/// one that allocated it (polars builds chunks on its pool and the stage drops them)
/// stays counted in its page until the owning thread collects; without a collect the
/// medallion on the full flights file held 60–70 MiB more at its peak (276–281 against
/// 210–219 MiB) and faulted more fresh pages, the costly part on a VM.
pub fn set_memory_release(release: fn()) {
    let _ = RELEASE_FREED.set(release);
}

fn release_freed_memory() {
    if let Some(release) = RELEASE_FREED.get() {
        release();
        polars_core::runtime::THREAD_POOL.broadcast(|_| release());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length of the first rows of `text` that reach at least `at_least` bytes, or the
    /// whole text.
    fn rows_reaching(text: &[u8], at_least: usize) -> usize {
        row_end_reaching(text, at_least).unwrap_or(text.len())
    }

    /// CSV rows in pieces of about `target` bytes, cut as bronze cuts them (at least one
    /// piece, empty for empty text).
    fn csv_pieces(text: &[u8], target: usize) -> Vec<&[u8]> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() || pieces.is_empty() {
            let (piece, tail) = rest.split_at(rows_reaching(rest, target));
            pieces.push(piece);
            rest = tail;
        }
        pieces
    }

    #[test]
    fn pieces_end_at_row_ends_and_cover_the_text() {
        let text = b"a,b\n1,2\n3,4\n5,6\n";
        let pieces = csv_pieces(text, 5);
        assert_eq!(pieces, vec![&b"a,b\n1,2\n"[..], b"3,4\n5,6\n"]);
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn a_newline_inside_quotes_is_not_a_row_end() {
        let text = b"\"x\ny\",1\n\"say \"\"hi\"\"\n\",2\n3,4";
        let pieces = csv_pieces(text, 1);
        assert_eq!(
            pieces,
            vec![&b"\"x\ny\",1\n"[..], b"\"say \"\"hi\"\"\n\",2\n", b"3,4"]
        );
    }

    #[test]
    fn the_header_is_the_first_row() {
        let text = b"\"a\nb\",c\r\n1,2\r\n";
        assert_eq!(&text[..rows_reaching(text, 1)], b"\"a\nb\",c\r\n");
        assert_eq!(rows_reaching(b"only,a,header", 1), 13);
    }

    #[test]
    fn frames_written_with_pages_encoded_side_by_side_read_back_equal() {
        let rows = 3 * ROW_GROUP_ROWS / 2;
        let text: Vec<Option<String>> = (0..rows)
            .map(|i| (i % 7 != 0).then(|| format!("value {}", i % 1000)))
            .collect();
        let frame = df!(
            "n" => (0..rows as i64).collect::<Vec<_>>(),
            "x" => (0..rows).map(|i| i as f64 / 3.0).collect::<Vec<_>>(),
            "text" => text,
            "wide" => (0..rows).map(|i| format!("a longer text that is not inlined {i}")).collect::<Vec<_>>(),
        )
        .unwrap();
        let bytes = to_parquet(&frame).unwrap();
        // Cut into row groups as polars' writer cuts them.
        assert_eq!(
            parquet_ranges(&bytes, usize::MAX).unwrap(),
            [(0, ROW_GROUP_ROWS), (ROW_GROUP_ROWS, rows - ROW_GROUP_ROWS)]
        );
        assert!(from_parquet(&bytes, None).unwrap().equals_missing(&frame));
        let empty = to_parquet(&frame.clear()).unwrap();
        assert_eq!(from_parquet(&empty, None).unwrap().height(), 0);
    }

    #[test]
    fn empty_text_is_one_empty_piece() {
        assert_eq!(csv_pieces(b"", 8), vec![&b""[..]]);
    }

    #[test]
    fn pieces_parse_to_the_same_rows_as_the_whole() {
        let mut text = b"n,s\n".to_vec();
        for i in 0..1000 {
            text.extend(format!("{i},\"row\n{i}\"\n").bytes());
        }
        let (header, body) = text.split_at(rows_reaching(&text, 1));
        let whole = read_csv_as_text(&text, &[]).unwrap();
        let parts: Vec<DataFrame> = csv_pieces(body, 1000)
            .into_iter()
            .map(|piece| read_csv_as_text(&[header, piece].concat(), &[]).unwrap())
            .collect();
        assert!(parts.len() > 5);
        assert!(stack(parts).unwrap().equals(&whole));
    }

    #[test]
    fn pieces_written_one_by_one_read_back_in_ranges_of_their_row_groups() {
        let frame =
            |from: i64, rows: i64| df!("n" => (from..from + rows).collect::<Vec<_>>()).unwrap();
        let mut bytes = Vec::new();
        let first = frame(0, 100);
        let mut writer = ParquetPieces::new(&mut bytes, first.schema(), MinMax::Left).unwrap();
        writer.write(&first).unwrap();
        writer.write(&frame(100, 150)).unwrap();
        writer.finish().unwrap();
        let ranges = parquet_ranges(&bytes, 64).unwrap();
        // 100 rows in two parts of 50, 150 in three of 50: no range crosses a row group.
        assert_eq!(ranges, [(0, 50), (50, 50), (100, 50), (150, 50), (200, 50)]);
        let slices: Vec<DataFrame> = ranges
            .iter()
            .map(|range| read_parquet_rows(&bytes, *range).unwrap())
            .collect();
        let all = stack(slices).unwrap();
        assert!(all.equals(&frame(0, 250)));
        assert_eq!(
            parquet_ranges(&bytes, 1000).unwrap(),
            [(0, 100), (100, 150)]
        );
    }
}

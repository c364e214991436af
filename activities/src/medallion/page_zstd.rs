//! Parquet pages compressed with zstd through one context per thread.
//!
//! polars-parquet's `Compressor` calls `zstd::bulk::compress_to_buffer` for each page,
//! which makes a compression context, sizes its tables for the page and frees it again:
//! zstd allocates through the C library, so each page mapped fresh memory, zeroed it and
//! unmapped it (7 % of the medallion's CPU, with the page faults it caused). The pages are
//! the same bytes either way: same library, same level (zstd's default, which polars'
//! `Zstd(None)` means), one frame per page.
//!
//! A context stays with its thread (polars' pool threads live as long as the process):
//! its tables and buffers, sized for the largest page it compressed, stay in memory.

use std::cell::RefCell;

use polars_parquet::parquet::compression::Compression;
use polars_parquet::parquet::error::{ParquetError, ParquetResult};
use polars_parquet::parquet::page::{
    CompressedDataPage, CompressedDictPage, CompressedPage, DataPageHeader, Page,
};
use polars_parquet::parquet::CowBuffer;

thread_local! {
    /// This thread's zstd context, made on its first page.
    static CONTEXT: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// `input` as one zstd frame at zstd's default level.
fn compress(input: &[u8]) -> ParquetResult<Vec<u8>> {
    CONTEXT.with(|slot| {
        let mut slot = slot.borrow_mut();
        let context = match slot.as_mut() {
            Some(context) => context,
            None => slot.insert(zstd::bulk::Compressor::new(0).map_err(zstd_error)?),
        };
        context.compress(input).map_err(zstd_error)
    })
}

fn zstd_error(error: std::io::Error) -> ParquetError {
    ParquetError::OutOfSpec(format!("zstd: {error}"))
}

/// A page compressed with zstd (the levels of a version 2 data page stay uncompressed in
/// front, as the format says).
pub fn compress_page(page: Page) -> ParquetResult<CompressedPage> {
    match page {
        Page::Data(page) => {
            let buffer = page.buffer();
            let compressed = match page.header() {
                DataPageHeader::V1(_) => compress(buffer)?,
                DataPageHeader::V2(header) => {
                    let levels = (header.repetition_levels_byte_length
                        + header.definition_levels_byte_length)
                        as usize;
                    let mut compressed = buffer[..levels].to_vec();
                    compressed.extend(compress(&buffer[levels..])?);
                    compressed
                }
            };
            let rows = page.num_rows().ok_or_else(|| {
                ParquetError::InvalidParameter("a data page to write without its row count".into())
            })?;
            Ok(CompressedPage::Data(CompressedDataPage::new(
                page.header().clone(),
                CowBuffer::Owned(compressed),
                Compression::Zstd,
                buffer.len(),
                page.descriptor.clone(),
                rows,
            )))
        }
        Page::Dict(page) => Ok(CompressedPage::Dict(CompressedDictPage::new(
            CowBuffer::Owned(compress(&page.buffer)?),
            Compression::Zstd,
            page.buffer.len(),
            page.num_values,
            page.is_sorted,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that compresses somewhat, as a parquet page does.
    fn page_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 7 == 0 {
                    (state >> 59) as u8 + b'a'
                } else {
                    b"carrier,origin,dest;"[i % 20]
                }
            })
            .collect()
    }

    #[test]
    fn frames_from_one_context_are_the_bytes_a_fresh_context_makes() {
        // Large, small, empty and large again: the kept context's tables sized for one page
        // must not change the next page's frame.
        for (len, seed) in [(1 << 20, 1), (3_000, 2), (0, 3), (200_000, 4), (1 << 20, 5)] {
            let input = page_bytes(len, seed);
            let ours = compress(&input).unwrap();
            assert_eq!(
                ours,
                zstd::bulk::compress(&input, 0).unwrap(),
                "{len} bytes"
            );
            assert_eq!(zstd::bulk::decompress(&ours, len).unwrap(), input);
        }
    }
}

//! Row keys without a group-by: which rows repeat an earlier row's primary key, and the
//! runs of equal partition values. polars answers both with a hash group-by over
//! row-encoded keys, which on the full flights file took 100–210 ms and tens of MiB of
//! fresh memory per question; here a 64-bit hash per row settles almost every row, and
//! the few rows whose hashes meet are compared value by value, so the answers are exact.

use std::collections::HashMap;
use std::hash::BuildHasher;

use polars::prelude::*;

/// A fixed-seed hasher: the same row hashes the same way in every process.
fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x5eed_f10f_0f0e)
}

/// Mixes one value's hash into a row's.
fn mix(row: u64, value: u64) -> u64 {
    (row.rotate_left(23) ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Mixes every value of `column` into `hashes` (one per row); a null hashes as a value of
/// its own.
fn mix_column(column: &Column, hashes: &mut [u64]) -> PolarsResult<()> {
    const NULL: u64 = 0x6e75_6c6c;
    let state = hasher();
    let series = column.as_materialized_series().to_physical_repr();
    macro_rules! each {
        ($values:expr, $hash:expr) => {
            for (row, value) in hashes.iter_mut().zip($values) {
                *row = mix(*row, value.map_or(NULL, $hash));
            }
        };
    }
    match series.dtype() {
        DataType::Int32 => each!(series.i32()?.iter(), |v| state.hash_one(v)),
        DataType::Int64 => each!(series.i64()?.iter(), |v| state.hash_one(v)),
        DataType::Float64 => each!(series.f64()?.iter(), |v: f64| state.hash_one(v.to_bits())),
        DataType::String => each!(series.str()?.iter(), |v| state.hash_one(v)),
        DataType::Boolean => each!(series.bool()?.iter(), |v| state.hash_one(v)),
        _ => {
            let text = series.cast(&DataType::String)?;
            each!(text.str()?.iter(), |v| state.hash_one(v))
        }
    }
    Ok(())
}

/// One hash per row of the named columns of `frame`.
fn row_hashes(frame: &DataFrame, names: &[String]) -> PolarsResult<Vec<u64>> {
    let mut hashes = vec![0u64; frame.height()];
    for name in names {
        mix_column(frame.column(name)?, &mut hashes)?;
    }
    Ok(hashes)
}

/// Whether two rows hold equal values in every named column (nulls equal nulls).
fn same_values(columns: &[&Column], a: usize, b: usize) -> PolarsResult<bool> {
    for column in columns {
        if column.get(a)? != column.get(b)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Which rows repeat the key (the named columns) of an earlier row, in row order; `None`
/// when no row does.
pub fn repeated_keys(frame: &DataFrame, key: &[String]) -> PolarsResult<Option<BooleanChunked>> {
    let hashes = row_hashes(frame, key)?;
    let columns: Vec<&Column> = key
        .iter()
        .map(|k| frame.column(k))
        .collect::<PolarsResult<_>>()?;
    // The first row of each hash, then (only for hashes met again) every distinct key's
    // first row under that hash.
    let mut first: HashMap<u64, usize, _> =
        HashMap::with_capacity_and_hasher(hashes.len(), hasher());
    let mut met_again: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut repeated: Option<Vec<bool>> = None;
    for (row, hash) in hashes.iter().enumerate() {
        let Some(&earlier) = first.get(hash) else {
            first.insert(*hash, row);
            continue;
        };
        let keys = met_again.entry(*hash).or_insert_with(|| vec![earlier]);
        let mut repeat = false;
        for &other in keys.iter() {
            if same_values(&columns, other, row)? {
                repeat = true;
                break;
            }
        }
        if repeat {
            repeated.get_or_insert_with(|| vec![false; hashes.len()])[row] = true;
        } else {
            keys.push(row);
        }
    }
    Ok(repeated.map(|rows| BooleanChunked::from_slice("_repeat".into(), &rows)))
}

/// The rows of each distinct combination of the named columns' values, in order of first
/// appearance, each as runs of consecutive rows `(start, length)` (a file in date order
/// gives one run per partition). Exact: a new run starts wherever a row's values differ
/// from the row before it, and runs are put together only when their values are equal.
pub fn value_runs(frame: &DataFrame, names: &[String]) -> PolarsResult<Vec<Vec<(usize, usize)>>> {
    let height = frame.height();
    if height == 0 {
        return Ok(Vec::new());
    }
    let columns: Vec<&Column> = names
        .iter()
        .map(|n| frame.column(n))
        .collect::<PolarsResult<_>>()?;
    let starts = run_starts(frame, names)?;
    // Only the first row of each run is looked up: hash those rows alone.
    let firsts = IdxCa::from_vec(
        "_start".into(),
        starts.iter().map(|&row| row as IdxSize).collect(),
    );
    let hashes = row_hashes(
        &frame
            .select(names.iter().map(String::as_str))?
            .take(&firsts)?,
        names,
    )?;
    // Per hash, the groups (by index into `groups`) whose values hash so.
    let mut by_hash: HashMap<u64, Vec<usize>, _> = HashMap::with_hasher(hasher());
    let mut groups: Vec<Vec<(usize, usize)>> = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(height);
        let candidates = by_hash.entry(hashes[i]).or_default();
        let mut found = None;
        for &group in candidates.iter() {
            if same_values(&columns, groups[group][0].0, start)? {
                found = Some(group);
                break;
            }
        }
        let group = match found {
            Some(group) => group,
            None => {
                groups.push(Vec::new());
                candidates.push(groups.len() - 1);
                groups.len() - 1
            }
        };
        groups[group].push((start, end - start));
    }
    Ok(groups)
}

/// The rows at which the named columns' values differ from the row before (row 0
/// always), compared exactly and null-aware by polars.
fn run_starts(frame: &DataFrame, names: &[String]) -> PolarsResult<Vec<usize>> {
    let changed = names
        .iter()
        .map(|n| col(n.as_str()).neq_missing(col(n.as_str()).shift(lit(1))))
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(false))
        .fill_null(lit(true))
        .alias("_starts");
    let flags = frame
        .select(names.iter().map(String::as_str))?
        .lazy()
        .select([changed])
        .collect()?;
    let flags = flags.column("_starts")?.bool()?.clone();
    Ok(flags
        .iter()
        .enumerate()
        .filter_map(|(row, start)| (row == 0 || start == Some(true)).then_some(row))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn repeats_are_found_exactly_and_first_rows_kept() {
        let frame = df!(
            "a" => [Some(1i32), Some(1), None, Some(1), None, Some(2)],
            "b" => [Some("x"), Some("y"), Some("x"), Some("x"), Some("x"), None],
        )
        .unwrap();
        let repeated = repeated_keys(&frame, &names(&["a", "b"])).unwrap().unwrap();
        let rows: Vec<bool> = repeated.iter().map(|r| r == Some(true)).collect();
        assert_eq!(rows, [false, false, false, true, true, false]);
        let distinct = df!("a" => [1i64, 2, 3], "f" => [0.5f64, 0.5, -0.0]).unwrap();
        assert!(repeated_keys(&distinct, &names(&["a", "f"]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn rows_whose_hashes_meet_are_compared_by_value() {
        // Many distinct keys over a text column: any hash collision is settled by values,
        // so exactly the one true repeat is reported.
        let mut keys: Vec<String> = (0..50_000).map(|i| format!("k{i}")).collect();
        keys.push("k123".into());
        let frame = df!("k" => keys).unwrap();
        let repeated = repeated_keys(&frame, &names(&["k"])).unwrap().unwrap();
        assert_eq!(repeated.sum(), Some(1));
        assert_eq!(repeated.get(50_000), Some(true));
    }

    #[test]
    fn runs_of_equal_values_are_grouped_in_order_of_first_appearance() {
        let frame = df!(
            "y" => [2013i32, 2013, 2013, 2013, 2014, 2013],
            "m" => [Some(1i32), Some(1), Some(2), None, Some(1), Some(1)],
        )
        .unwrap();
        let groups = value_runs(&frame, &names(&["y", "m"])).unwrap();
        assert_eq!(
            groups,
            vec![
                vec![(0, 2), (5, 1)],
                vec![(2, 1)],
                vec![(3, 1)],
                vec![(4, 1)],
            ]
        );
        let empty = frame.clear();
        assert!(value_runs(&empty, &names(&["y"])).unwrap().is_empty());
    }
}

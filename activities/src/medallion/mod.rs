//! The medallion pipeline: bronze → silver → gold activities in polars and the
//! `medallion` orchestration that runs them.

pub mod bronze;
mod frames;
pub mod gold;
mod keys;
mod landing_text;
pub mod orchestration;
mod page_zstd;
pub mod silver;

use flowforge_orchestrator::history::FailureDetails;
pub use frames::set_memory_release;

use crate::spec::{self, DatasetSpec};

/// The validated spec of a dataset, or a clear failure.
pub fn spec_for(dataset: &str) -> Result<DatasetSpec, FailureDetails> {
    match spec::builtin(dataset) {
        Some(Ok(spec)) => Ok(spec),
        Some(Err(e)) => Err(FailureDetails::non_retryable(
            "InvalidDatasetSpec",
            e.to_string(),
        )),
        None => Err(FailureDetails::non_retryable(
            "UnknownDataset",
            format!("no dataset named '{dataset}'"),
        )),
    }
}

//! Activities of the FlowForge data platform: the medallion pipeline (bronze → silver →
//! gold in polars, parquet in the lake's containers) and its orchestration.
//!
//! polars lives in this crate only, so that the engine and its tests build without it.

pub mod lake;
pub mod lineage;
pub mod lineage_endpoint;
pub mod medallion;
pub mod spec;
pub mod synapse;
pub mod tables;

use flowforge_orchestrator::history::FailureDetails;
use flowforge_orchestrator::registry::Registry;

pub use lake::DataLake;
use medallion::bronze::BronzeInput;
use medallion::gold::GoldInput;
use medallion::orchestration::ListLandingInput;
use medallion::silver::SilverInput;
use tracing::{error, info, warn};

/// Adds the medallion orchestration and its activities, working on `lake`.
pub fn register(registry: Registry, lake: DataLake) -> Registry {
    let (l1, l2, l3, l4) = (lake.clone(), lake.clone(), lake.clone(), lake);
    registry
        .orchestration("medallion", medallion::orchestration::medallion)
        .activity("list_landing", move |_ctx, input: ListLandingInput| {
            let lake = l1.clone();
            async move { list_landing(lake, input).await }
        })
        .activity("bronze", move |_ctx, input: BronzeInput| {
            let lake = l2.clone();
            async move {
                info!(file = %input.file, run_id = %input.run_id, "bronze: reading the landing file");
                let written = medallion::bronze::bronze(lake, input).await;
                if let Ok(out) = &written {
                    info!(path = %out.path, rows = out.rows, "bronze: written as landed");
                }
                logged_failure("bronze", written)
            }
        })
        .activity("silver", move |_ctx, input: SilverInput| {
            let lake = l3.clone();
            async move {
                info!(files = input.bronze_paths.len(), "silver: cleaning the bronze files");
                let written = medallion::silver::silver(lake, input).await;
                if let Ok(out) = &written {
                    info!(rows_in = out.rows_in, rows_out = out.rows_out,
                        duplicates = out.duplicates, files = out.table.files.len(), version = ?out.table.version,
                        "silver: written");
                    for (reason, rows) in &out.rejected {
                        warn!(reason = %reason, rows, "silver: rows rejected");
                    }
                }
                logged_failure("silver", written)
            }
        })
        .activity("gold", move |_ctx, input: GoldInput| {
            let lake = l4.clone();
            async move {
                info!(silver_rows = input.silver.rows_out, "gold: aggregating silver");
                let written = medallion::gold::gold(lake, input).await;
                if let Ok(out) = &written {
                    info!(table = %out.table.table, version = ?out.table.version, rows = out.rows, manifest = %out.manifest_path, "gold: written");
                }
                logged_failure("gold", written)
            }
        })
}

/// A layer's failure, logged (so the run's logs say what went wrong where), then returned.
fn logged_failure<T>(layer: &str, result: Result<T, FailureDetails>) -> Result<T, FailureDetails> {
    if let Err(failure) = &result {
        error!(kind = %failure.kind, "{layer} failed: {}", failure.message);
    }
    result
}

async fn list_landing(
    lake: DataLake,
    input: ListLandingInput,
) -> Result<Vec<String>, FailureDetails> {
    let spec = medallion::spec_for(&input.dataset)?;
    let prefix = input.landing_path.unwrap_or(spec.landing.prefix);
    let files = lake.list("landing", &prefix).await?;
    Ok(files.into_iter().filter(|f| f.ends_with(".csv")).collect())
}

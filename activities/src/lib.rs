//! Activities of the FlowForge data platform: the medallion pipeline (bronze → silver →
//! gold in polars, parquet in the lake's containers) and its orchestration.
//!
//! polars lives in this crate only, so that the engine and its tests build without it.

pub mod lake;
pub mod medallion;
pub mod spec;

use flowforge_orchestrator::history::FailureDetails;
use flowforge_orchestrator::registry::Registry;

pub use lake::DataLake;
use medallion::orchestration::ListLandingInput;

/// Adds the medallion orchestration and its activities, working on `lake`.
pub fn register(registry: Registry, lake: DataLake) -> Registry {
    let (l1, l2, l3, l4) = (lake.clone(), lake.clone(), lake.clone(), lake);
    registry
        .orchestration("medallion", medallion::orchestration::medallion)
        .activity("list_landing", move |_ctx, input: ListLandingInput| {
            let lake = l1.clone();
            async move { list_landing(lake, input).await }
        })
        .activity("bronze", move |_ctx, input| {
            medallion::bronze::bronze(l2.clone(), input)
        })
        .activity("silver", move |_ctx, input| {
            medallion::silver::silver(l3.clone(), input)
        })
        .activity("gold", move |_ctx, input| {
            medallion::gold::gold(l4.clone(), input)
        })
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

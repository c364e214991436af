//! The `medallion` orchestration: bronze per landing file in parallel, then silver, then
//! gold; retries with back-off on transient storage errors; custom status with the stage
//! and progress; output = paths and row counts per layer.

use std::time::Duration;

use flowforge_orchestrator::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::bronze::{BronzeInput, BronzeOutput};
use super::gold::{GoldInput, GoldOutput};
use super::silver::{SilverInput, SilverOutput};

/// What the web app sends to start a pipeline run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MedallionInput {
    /// The web app's workflow id.
    pub workflow_id: String,
    /// The web app's job id (also the run id unless `run_id` is given).
    pub job_id: String,
    /// Dataset name (a spec in `activities/datasets/`).
    pub dataset: String,
    /// Landing prefix; the spec's when absent.
    #[serde(default)]
    pub landing_path: Option<String>,
    /// Business date of the run (`YYYY-MM-DD`); informational.
    #[serde(default)]
    pub run_date: Option<String>,
    /// Run id; re-using one overwrites that run's files.
    #[serde(default)]
    pub run_id: Option<String>,
}

/// Input of `list_landing`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListLandingInput {
    /// Dataset.
    pub dataset: String,
    /// Prefix override.
    pub landing_path: Option<String>,
}

/// What a run wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MedallionOutput {
    /// Run id.
    pub run_id: String,
    /// Workflow and job ids, echoed.
    pub workflow_id: String,
    /// Job id.
    pub job_id: String,
    /// Bronze files and rows.
    pub bronze: Vec<BronzeOutput>,
    /// Silver counts and files.
    pub silver: SilverOutput,
    /// Gold table.
    pub gold: GoldOutput,
}

fn storage_retry() -> RetryPolicy {
    RetryPolicy::new(4, Duration::from_secs(1))
        .with_backoff(2.0)
        .with_max_interval(Duration::from_secs(30))
}

/// The orchestration.
pub async fn medallion(
    ctx: OrchestrationContext,
    input: MedallionInput,
) -> Result<MedallionOutput, FailureDetails> {
    let run_id = input.run_id.clone().unwrap_or_else(|| input.job_id.clone());
    let ingested_at = ctx.utc_now().to_rfc3339();
    ctx.set_custom_status(json!({"stage": "listing", "run_id": run_id}));
    let files: Vec<String> = ctx
        .call_activity_with_retry(
            "list_landing",
            ListLandingInput {
                dataset: input.dataset.clone(),
                landing_path: input.landing_path.clone(),
            },
            storage_retry(),
        )
        .await?;
    if files.is_empty() {
        return Err(FailureDetails::non_retryable(
            "NoLandingFiles",
            "no landing files to ingest",
        ));
    }
    ctx.set_custom_status(json!({"stage": "bronze", "files": files.len(), "run_id": run_id}));
    let calls = files
        .iter()
        .map(|file| {
            let bronze = BronzeInput {
                dataset: input.dataset.clone(),
                file: file.clone(),
                run_id: run_id.clone(),
                ingested_at: ingested_at.clone(),
            };
            ctx.call_activity_with_retry::<BronzeOutput>("bronze", bronze, storage_retry())
        })
        .collect();
    let bronze: Vec<BronzeOutput> = ctx
        .join_all(calls)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let bronze_rows: usize = bronze.iter().map(|b| b.rows).sum();
    ctx.set_custom_status(json!({"stage": "silver", "bronze_rows": bronze_rows, "run_id": run_id}));
    let silver: SilverOutput = ctx
        .call_activity_with_retry(
            "silver",
            SilverInput {
                dataset: input.dataset.clone(),
                run_id: run_id.clone(),
                bronze_paths: bronze.iter().map(|b| b.path.clone()).collect(),
            },
            storage_retry(),
        )
        .await?;
    ctx.set_custom_status(
        json!({"stage": "gold", "silver_rows": silver.rows_out, "run_id": run_id}),
    );
    let gold: GoldOutput = ctx
        .call_activity_with_retry(
            "gold",
            GoldInput {
                dataset: input.dataset.clone(),
                run_id: run_id.clone(),
                silver: silver.clone(),
                sources: files.clone(),
            },
            storage_retry(),
        )
        .await?;
    ctx.set_custom_status(json!({"stage": "done", "gold_rows": gold.rows, "run_id": run_id}));
    Ok(MedallionOutput {
        run_id,
        workflow_id: input.workflow_id,
        job_id: input.job_id,
        bronze,
        silver,
        gold,
    })
}

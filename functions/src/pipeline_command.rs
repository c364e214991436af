//! `flowforge pipeline`: the main job. Uploads the landing files (the sample shipped in
//! `data/sample/`, or the full flights file), runs a worker in this process, runs the
//! `medallion` orchestration end to end, and prints what each layer holds. On a private
//! Azurite it starts (and throws away) itself, unless a storage account is given
//! (`--storage`, `--storage-account`, or the same settings in the environment): then on
//! that account, whose outputs stay.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use flowforge_activities::medallion::orchestration::{MedallionInput, MedallionOutput};
use flowforge_activities::tables::TableCommit;
use flowforge_activities::DataLake;
use flowforge_azure::azurite::Azurite;
use flowforge_azure::AzureBackend;
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;

/// Options of the main job.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Folder of landing files: `flights/*.csv` and `airlines/airlines.csv`.
    #[arg(long, default_value = "data/sample")]
    pub landing: PathBuf,
    /// Run on the full flights file instead (a CSV, e.g. from `scripts/fetch-nycflights13`);
    /// the airlines table still comes from `--landing`.
    #[arg(long)]
    pub full: Option<PathBuf>,
    /// Job id (also the run id).
    #[arg(long, default_value = "job-1")]
    pub job_id: String,
}

/// Runs the main job.
pub async fn run(args: PipelineArgs, storage: crate::storage::StorageArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    anyhow::ensure!(
        !storage.in_memory,
        "the pipeline needs blob storage for its lake: give --storage or --storage-account, or nothing (a private Azurite)"
    );
    let (config, azurite) = if storage.is_configured() {
        let config = storage.azure_config()?;
        println!(
            "on the configured storage account (task hub '{}'); the outputs stay",
            config.task_hub
        );
        (config, None)
    } else {
        let azurite = Azurite::start()
            .map_err(anyhow::Error::msg)
            .context("starting Azurite")?;
        println!(
            "Azurite up on ports {}/{}/{} (blob/queue/table)",
            azurite.blob_port, azurite.queue_port, azurite.table_port
        );
        (azurite.config(&storage.task_hub), Some(azurite))
    };
    let lake = crate::storage::lake_on(&config)?;
    lake.ensure_containers()
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let uploaded = upload_landing(&lake, &args).await?;
    println!("uploaded {uploaded} landing files");
    let backend = AzureBackend::connect(config).await?;
    let registry = crate::app_registry(Some(lake.clone()))?;
    let options = WorkerOptions {
        max_idle_poll: Duration::from_millis(200),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(backend.clone(), registry, options).start();
    let client = Client::new(backend);
    let input = MedallionInput {
        workflow_id: "main-job".into(),
        job_id: args.job_id.clone(),
        dataset: "flights".into(),
        landing_path: None,
        run_date: Some(chrono::Utc::now().format("%Y-%m-%d").to_string()),
        run_id: None,
    };
    let id = client
        .start(
            "medallion",
            StartOptions::with_instance_id(format!("medallion-{}", args.job_id)),
            &input,
        )
        .await?;
    println!("started medallion instance {id}");
    let mut last = serde_json::Value::Null;
    let status = loop {
        let status = client.status(&id, StatusOptions::default()).await?;
        if status.custom_status != last {
            println!("  {} {}", status.runtime_status, status.custom_status);
            last = status.custom_status.clone();
        }
        if status.runtime_status.is_terminal() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    worker.shutdown().await;
    print_stage_times(&client, &id).await?;
    let orchestration = (status.last_updated_time - status.created_time)
        .to_std()
        .unwrap_or_default();
    println!(
        "stage orchestration (start to completion): {:.3} s",
        orchestration.as_secs_f64()
    );
    if status.runtime_status != RuntimeStatus::Completed {
        anyhow::bail!(
            "the pipeline ended {}: {}",
            status.runtime_status,
            status.output
        );
    }
    let output: MedallionOutput = serde_json::from_value(status.output)?;
    print_summary(&output);
    println!("done in {:.2} s", started.elapsed().as_secs_f64());
    drop(azurite);
    Ok(())
}

async fn upload_file(lake: &DataLake, path: &Path, name: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    lake.put("landing", name, bytes)
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))
}

async fn upload_landing(lake: &DataLake, args: &PipelineArgs) -> anyhow::Result<usize> {
    let mut count = 0;
    upload_file(
        lake,
        &args.landing.join("airlines/airlines.csv"),
        "airlines/airlines.csv",
    )
    .await?;
    count += 1;
    match &args.full {
        Some(file) => {
            upload_file(lake, file, "flights/flights.csv").await?;
            count += 1;
        }
        None => {
            let dir = args.landing.join("flights");
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "csv"))
                .collect();
            files.sort();
            for file in files {
                let name = format!(
                    "flights/{}",
                    file.file_name().unwrap_or_default().to_string_lossy()
                );
                upload_file(lake, &file, &name).await?;
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Wall time per stage from the history: first schedule to last completion of each activity.
async fn print_stage_times(client: &Client, id: &str) -> anyhow::Result<()> {
    use flowforge_orchestrator::history::EventKind;
    let options = StatusOptions::with_history();
    let history = client
        .status(id, options)
        .await?
        .history
        .unwrap_or_default();
    let mut names = std::collections::HashMap::new();
    let mut spans: Vec<(
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )> = Vec::new();
    for event in &history {
        match &event.kind {
            EventKind::ActivityScheduled { id, name, .. } => {
                names.insert(*id, name.clone());
                match spans.iter_mut().find(|(n, _, _)| n == name) {
                    Some(_) => {}
                    None => spans.push((name.clone(), event.timestamp, event.timestamp)),
                }
            }
            EventKind::ActivityCompleted { scheduled_id, .. }
            | EventKind::ActivityFailed { scheduled_id, .. } => {
                if let Some(span) = names
                    .get(scheduled_id)
                    .and_then(|n| spans.iter_mut().find(|(s, _, _)| s == n))
                {
                    span.2 = span.2.max(event.timestamp);
                }
            }
            _ => {}
        }
    }
    for (name, start, end) in spans {
        println!(
            "stage {name}: {:.3} s",
            (end - start).num_milliseconds() as f64 / 1000.0
        );
    }
    Ok(())
}

fn print_summary(output: &MedallionOutput) {
    println!();
    println!(
        "run {} (workflow {}, job {})",
        output.run_id, output.workflow_id, output.job_id
    );
    println!("| layer | rows | where |");
    println!("| --- | ---: | --- |");
    let bronze_rows: usize = output.bronze.iter().map(|b| b.rows).sum();
    println!(
        "| bronze | {bronze_rows} | {} file(s): bronze/{} |",
        output.bronze.len(),
        output.bronze.first().map(|b| b.path.as_str()).unwrap_or("")
    );
    let s = &output.silver;
    let version = |c: &TableCommit| {
        c.version.map_or_else(
            || "committed earlier".to_owned(),
            |v| format!("version {v}"),
        )
    };
    let already = |c: &TableCommit| {
        if c.already_committed {
            " (this run was already committed: nothing new)"
        } else {
            ""
        }
    };
    println!(
        "| silver | {} | Delta table {}, {}, {} file(s){} |",
        s.rows_out,
        s.table.table,
        version(&s.table),
        s.table.files.len(),
        already(&s.table)
    );
    let rejected: usize = s.rejected.values().sum();
    println!(
        "| silver rejects | {rejected} | {} |",
        s.rejects.as_ref().map_or_else(
            || "(none)".to_owned(),
            |c| format!("Delta table {}, {}", c.table, version(c))
        )
    );
    for (reason, n) in &s.rejected {
        println!("|   {reason} | {n} | |");
    }
    println!(
        "| silver duplicates dropped | {} | {} |",
        s.duplicates,
        s.duplicate_rows.as_ref().map_or_else(
            || "(none)".to_owned(),
            |c| format!("Delta table {}, {}", c.table, version(c))
        )
    );
    let g = &output.gold;
    println!(
        "| gold | {} | Delta table {}, {}{} (manifest gold/{}, lineage gold/{}) |",
        g.rows,
        g.table.table,
        version(&g.table),
        already(&g.table),
        g.manifest_path,
        g.lineage_path
    );
}

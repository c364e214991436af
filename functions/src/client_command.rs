//! The client subcommands, like Core Tools' `func durable …`. They talk to the task hub's
//! storage directly (no running API needed, and no key to distribute): the same settings
//! as the worker select it.

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use flowforge_azure::AzureBackend;
use flowforge_orchestrator::backend::InstanceQuery;
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;
use serde_json::Value;

use crate::api::{letter_json, status_json};
use crate::storage::StorageArgs;

/// Client operations on a task hub.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Start an orchestration.
    Start {
        /// Orchestration name.
        name: String,
        /// Instance id (default: a new one).
        #[arg(long)]
        id: Option<String>,
        /// Input as JSON.
        #[arg(long, default_value = "null")]
        input: String,
        /// Wait for the end, showing the status as it changes.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits, in seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
    /// Show an instance's status.
    Status {
        /// Instance id.
        id: String,
        /// Include the history.
        #[arg(long)]
        history: bool,
    },
    /// List instances.
    List {
        /// Only these statuses (comma-separated).
        #[arg(long)]
        status: Option<String>,
        /// Instance id prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        top: usize,
    },
    /// Raise an event on an instance.
    RaiseEvent {
        /// Instance id.
        id: String,
        /// Event name.
        event: String,
        /// Event data as JSON.
        #[arg(long, default_value = "null")]
        data: String,
    },
    /// Terminate an instance.
    Terminate {
        /// Instance id.
        id: String,
        /// Reason.
        #[arg(long, default_value = "terminated from the command line")]
        reason: String,
    },
    /// Suspend an instance.
    Suspend {
        /// Instance id.
        id: String,
        /// Reason.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a suspended instance.
    Resume {
        /// Instance id.
        id: String,
        /// Reason.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Rewind a failed instance: re-run the activities and sub-orchestrations whose failure
    /// ended it, keeping every other result.
    Rewind {
        /// Instance id.
        id: String,
        /// Reason.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Restart an instance with its original input.
    Restart {
        /// Instance id.
        id: String,
        /// Under a new instance id.
        #[arg(long)]
        new_id: bool,
    },
    /// Purge a finished instance (state, history, payloads).
    Purge {
        /// Instance id.
        id: String,
    },
    /// The dead-letter archive: messages that could not be processed, with their reasons.
    DeadLetters {
        /// What to do.
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Operate the task hub's schedules (configured ones are seeded from the same
    /// `FLOWFORGE_SCHEDULES` the worker reads).
    Schedule {
        /// What to do.
        #[command(subcommand)]
        action: ScheduleAction,
        /// The schedules.
        #[command(flatten)]
        schedules: crate::schedules::SchedulesArgs,
    },
    /// Delete the whole task hub (tables, queues, payloads).
    DeleteTaskHub {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Move a task hub's instances table to the current layout (format 2: instances share
    /// their control partition's table partition). Stop the hub's workers first; safe to
    /// run again after an interruption.
    MigrateLayout,
}

/// Operations on the task hub's schedules.
#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// List the schedules with their state.
    List,
    /// Add a schedule: its spec as JSON (name, cron, orchestration, input, overlap,
    /// timeZone).
    Create {
        /// The spec, or `@file` to read it from a file.
        spec: String,
    },
    /// Replace a schedule's spec (the name stays).
    Update {
        /// Schedule name.
        name: String,
        /// The spec, or `@file`.
        spec: String,
    },
    /// Stop a schedule's occurrences until it is resumed.
    Pause {
        /// Schedule name.
        name: String,
        /// Why (shown on the dashboard).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused schedule from its next occurrence.
    Resume {
        /// Schedule name.
        name: String,
        /// Also run the occurrences that fell in the pause (a backfill of its range).
        #[arg(long)]
        catch_up: bool,
    },
    /// Delete a schedule (its runs stay).
    Delete {
        /// Schedule name.
        name: String,
    },
    /// Start every occurrence of a past range that has not run, each once.
    Backfill {
        /// Schedule name.
        name: String,
        /// Range start (RFC 3339), included.
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// Range end (RFC 3339), included.
        #[arg(long)]
        to: chrono::DateTime<chrono::Utc>,
        /// Refuse a range of more occurrences than this (at most 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only list what would start.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a schedule now.
    Trigger {
        /// Schedule name.
        name: String,
    },
}

/// Operations on the dead-letter archive.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// List dead letters, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        top: usize,
    },
    /// Show one dead letter with its message.
    Show {
        /// Dead letter id (from `list`).
        id: String,
    },
    /// Send a dead letter's message back to its queue and remove it from the archive.
    Requeue {
        /// Dead letter id.
        id: String,
    },
    /// Delete a dead letter from the archive.
    Delete {
        /// Dead letter id.
        id: String,
    },
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))
}

/// Runs one client command and prints its result as JSON.
pub async fn run(command: ClientCommand, storage: StorageArgs) -> anyhow::Result<()> {
    if let ClientCommand::DeleteTaskHub { yes } = command {
        anyhow::ensure!(
            yes,
            "this deletes every instance of task hub '{}': pass --yes",
            storage.task_hub
        );
        let backend = AzureBackend::connect_to_migrate(storage.azure_config()?).await?;
        backend.delete_task_hub().await?;
        println!("task hub '{}' deleted", storage.task_hub);
        return Ok(());
    }
    if let ClientCommand::MigrateLayout = command {
        let backend = AzureBackend::connect_to_migrate(storage.azure_config()?).await?;
        let moved = backend.migrate_layout().await?;
        println!(
            "task hub '{}': {} instances moved to the current table layout ({} rows written)",
            storage.task_hub, moved.instances, moved.rows
        );
        return Ok(());
    }
    let client = Client::new(storage.connect().await?);
    let show = |value: Value| {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )
    };
    match command {
        ClientCommand::Schedule { action, schedules } => {
            let book = crate::schedules::ScheduleBook::new(client.clone(), schedules.load()?);
            let now = chrono::Utc::now();
            let spec_of = |text: &str| -> anyhow::Result<crate::schedules::ScheduleSpec> {
                let text = match text.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?,
                    None => text.to_owned(),
                };
                serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("the spec is not a schedule: {e}"))
            };
            let record = |entry: crate::schedules::BookEntry| {
                serde_json::to_value(entry.record).unwrap_or_default()
            };
            match action {
                ScheduleAction::List => {
                    let all = book.all().await?;
                    show(Value::Array(all.into_iter().map(record).collect()));
                }
                ScheduleAction::Create { spec } => {
                    show(record(book.create(spec_of(&spec)?, now).await?));
                }
                ScheduleAction::Update { name, spec } => {
                    show(record(book.update(&name, spec_of(&spec)?, now).await?));
                }
                ScheduleAction::Pause { name, reason } => {
                    show(record(book.pause(&name, &reason, now).await?));
                }
                ScheduleAction::Resume { name, catch_up } => {
                    let (entry, paused_at) = book.resume(&name, now).await?;
                    if let (true, Some(from)) = (catch_up, paused_at) {
                        let done = crate::schedules::backfill(
                            &client,
                            &entry.schedule,
                            from,
                            now,
                            crate::schedules::MAX_BACKFILL,
                            false,
                        )
                        .await?;
                        show(serde_json::to_value(done)?);
                    }
                    show(record(entry));
                }
                ScheduleAction::Delete { name } => {
                    book.delete(&name, now).await?;
                    println!("deleted {name}");
                }
                ScheduleAction::Backfill {
                    name,
                    from,
                    to,
                    limit,
                    dry_run,
                } => {
                    let entry = book.get(&name).await?;
                    let done = crate::schedules::backfill(
                        &client,
                        &entry.schedule,
                        from,
                        to,
                        limit,
                        dry_run,
                    )
                    .await?;
                    show(serde_json::to_value(done)?);
                }
                ScheduleAction::Trigger { name } => {
                    let entry = book.get(&name).await?;
                    let id = crate::schedules::trigger_now(&client, &entry.schedule, now)
                        .await
                        .map_err(anyhow::Error::msg)?;
                    println!("started {id}");
                }
            }
        }
        ClientCommand::Start {
            name,
            id,
            input,
            wait,
            timeout_secs,
        } => {
            let options = StartOptions {
                instance_id: id,
                ..StartOptions::default()
            };
            let id = client
                .start_value(&name, options, parse_json("--input", &input)?)
                .await?;
            println!("started {id}");
            if wait {
                let status = wait_with_progress(&client, &id, timeout_secs).await?;
                show(status_json::status(&status));
                ended_well(&status)?;
            }
        }
        ClientCommand::Status { id, history } => {
            let options = StatusOptions {
                show_history: history,
                show_history_output: history,
                show_input: true,
            };
            show(status_json::status(&client.status(&id, options).await?));
        }
        ClientCommand::List {
            status,
            prefix,
            top,
        } => {
            let statuses = match status {
                Some(list) => list
                    .split(',')
                    .map(|s| s.parse().map_err(anyhow::Error::msg))
                    .collect::<anyhow::Result<_>>()?,
                None => Vec::new(),
            };
            let query = InstanceQuery {
                statuses,
                instance_id_prefix: prefix,
                page_size: top,
                ..Default::default()
            };
            let (page, next) = client.list(&query, false).await?;
            show(Value::Array(page.iter().map(status_json::status).collect()));
            if next.is_some() {
                eprintln!("(more instances: raise --top)");
            }
        }
        ClientCommand::RaiseEvent { id, event, data } => {
            client
                .raise_event(&id, &event, &parse_json("--data", &data)?)
                .await?;
            println!("event '{event}' sent to {id}");
        }
        ClientCommand::Terminate { id, reason } => {
            client.terminate(&id, &reason).await?;
            println!("termination of {id} requested");
        }
        ClientCommand::Suspend { id, reason } => {
            client.suspend(&id, &reason).await?;
            println!("suspension of {id} requested");
        }
        ClientCommand::Resume { id, reason } => {
            client.resume(&id, &reason).await?;
            println!("resumption of {id} requested");
        }
        ClientCommand::Rewind { id, reason } => {
            client.rewind(&id, &reason).await?;
            println!("rewind of {id} requested");
        }
        ClientCommand::Restart { id, new_id } => {
            println!("restarted as {}", client.restart(&id, new_id).await?)
        }
        ClientCommand::Purge { id } => {
            client.purge(&id).await?;
            println!("purged {id}");
        }
        ClientCommand::DeadLetters { action } => match action {
            DeadLetterAction::List { top } => {
                let letters = client.dead_letters(top).await?;
                show(Value::Array(letters.iter().map(letter_json).collect()));
            }
            DeadLetterAction::Show { id } => show(letter_json(&client.dead_letter(&id).await?)),
            DeadLetterAction::Requeue { id } => {
                let letter = client.requeue_dead_letter(&id).await?;
                println!("requeued {id} to {}", letter.queue.suffix());
            }
            DeadLetterAction::Delete { id } => {
                client.delete_dead_letter(&id).await?;
                println!("deleted {id}");
            }
        },
        ClientCommand::DeleteTaskHub { .. } | ClientCommand::MigrateLayout => {}
    }
    Ok(())
}

/// `start --wait` exits non-zero unless the instance completed: a script or a CI step that
/// runs a workflow learns it failed from the exit code, with the failure on stderr.
fn ended_well(status: &InstanceStatus) -> anyhow::Result<()> {
    use flowforge_orchestrator::status::RuntimeStatus;
    match status.runtime_status {
        RuntimeStatus::Completed => Ok(()),
        other => match &status.failure {
            Some(failure) => {
                anyhow::bail!("instance {} ended {other}: {failure}", status.instance_id)
            }
            None => anyhow::bail!(
                "instance {} ended {other}: {}",
                status.instance_id,
                status.output
            ),
        },
    }
}

/// Polls until the instance ends, printing each change of status or custom status.
async fn wait_with_progress(
    client: &Client,
    id: &str,
    timeout_secs: u64,
) -> anyhow::Result<InstanceStatus> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    let mut last = None;
    loop {
        let status = client
            .status(
                id,
                StatusOptions {
                    show_input: false,
                    ..Default::default()
                },
            )
            .await?;
        let shown = (status.runtime_status, status.custom_status.clone());
        if last.as_ref() != Some(&shown) {
            eprintln!("  {} {}", status.runtime_status, status.custom_status);
            last = Some(shown);
        }
        if status.runtime_status.is_terminal() {
            return Ok(status);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "instance {id} still {} after {timeout_secs} s",
            status.runtime_status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

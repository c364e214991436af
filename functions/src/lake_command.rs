//! `flowforge lake …`: the lake's Delta tables as an operator sees them, and the Synapse
//! Serverless SQL over them.

use clap::Subcommand;
use flowforge_activities::medallion::spec_for;
use flowforge_activities::tables::{open_at, table_files};
use serde_json::json;

use crate::storage::{lake_on, StorageArgs};

/// Lake commands.
#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Print the Synapse Serverless SQL views over a dataset's tables.
    SynapseSql {
        /// Dataset name.
        #[arg(long, default_value = "flights")]
        dataset: String,
    },
    /// Show a table: version, partition columns, schema, files and rows (as JSON).
    Show {
        /// `container/path` of the table, e.g. `gold/flights/carrier_month` (under
        /// `FLOWFORGE_LAKE_ROOT`).
        table: String,
        /// An older version (time travel).
        #[arg(long)]
        version: Option<u64>,
    },
}

/// Runs a lake command.
pub async fn run(command: LakeCommand, storage: StorageArgs) -> anyhow::Result<()> {
    match command {
        LakeCommand::SynapseSql { dataset } => {
            let spec = spec_for(&dataset).map_err(|f| anyhow::anyhow!("{}", f.message))?;
            print!("{}", flowforge_activities::synapse::synapse_sql(&spec));
            Ok(())
        }
        LakeCommand::Show { table, version } => {
            let (container, path) = table
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("give the table as container/path"))?;
            let lake = lake_on(&storage.azure_config()?)?;
            let table = lake
                .table(container, path)
                .map_err(|f| anyhow::anyhow!("{}", f.message))?;
            let delta = open_at(&table, version)
                .await
                .map_err(|f| anyhow::anyhow!("{}", f.message))?;
            let Some(current) = delta.version() else {
                anyhow::bail!("{} is not a Delta table (yet)", table.name());
            };
            let state = delta.snapshot()?;
            let schema: Vec<_> = state
                .schema()
                .fields()
                .map(|f| json!({"name": f.name(), "type": f.data_type(), "nullable": f.is_nullable()}))
                .collect();
            let files = table_files(&table, Some(current))
                .await
                .map_err(|f| anyhow::anyhow!("{}", f.message))?;
            let shown = json!({
                "table": table.name(),
                "location": lake.location(table.container(), table.path()),
                "version": current,
                "partition_columns": state.metadata().partition_columns(),
                "schema": schema,
                "files": files.len(),
                "rows": files.iter().map(|f| f.rows).sum::<usize>(),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
    }
}

//! The instances table's layout format (`rows`): which one a hub holds, recorded in its
//! layout row, and the move of a format 1 hub (a partition per instance) to format 2
//! (instances sharing their control partition's table partition).
//!
//! A new hub gets a layout row at its first connection, with the table partition count it
//! was created with: that count, not the configuration's, places its instances from then
//! on. A hub with format 1 rows and no layout row is refused with the command that moves
//! it; the move runs with the hub's workers stopped, copies each instance (history first,
//! its state row last) and then deletes its old rows (history first, the state row last),
//! so it can stop anywhere and be run again.

use std::sync::atomic::Ordering;

use flowforge_orchestrator::backend::Error;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::AzureBackend;
use crate::error::classify;
use crate::rows::{
    odata_quote, parse_history_key, Row, LAYOUT_FORMAT, LAYOUT_PARTITION, LAYOUT_ROW, STATE_KIND,
    V1_STATE_ROW,
};
use crate::table_op::{Op, BATCH};

/// The hub's layout row.
#[derive(Debug, Serialize, Deserialize)]
struct LayoutRow {
    #[serde(rename = "PartitionKey")]
    partition_key: String,
    #[serde(rename = "RowKey")]
    row_key: String,
    #[serde(rename = "Format")]
    format: u32,
    #[serde(rename = "Partitions")]
    partitions: u32,
}

/// What a layout move did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayoutMove {
    /// Instances moved to format 2.
    pub instances: usize,
    /// Rows written in format 2 (state and history).
    pub rows: usize,
}

impl AzureBackend {
    /// The number of table partitions instances are placed in (the hub's layout row).
    pub(crate) fn table_partitions(&self) -> u32 {
        self.table_partitions.load(Ordering::Acquire).max(1)
    }

    /// Reads the hub's layout, or records format 2 on a hub without instances; refuses a
    /// hub that holds format 1 rows.
    pub(crate) async fn prepare_layout(&self) -> Result<(), Error> {
        if let Some(layout) = self.read_layout().await? {
            return self.adopt(&layout);
        }
        if self.has_v1_rows().await? {
            return Err(Error::Permanent(format!(
                "task hub '{}' holds instances in table layout format 1 (one partition per \
                 instance); stop its workers and run `flowforge migrate-layout` once to move \
                 it to format {LAYOUT_FORMAT}",
                self.config.task_hub
            )));
        }
        self.record_layout().await
    }

    /// Moves a format 1 hub to format 2 (the hub's workers stopped) and records the layout.
    /// On a hub already in format 2 it moves nothing.
    pub async fn migrate_layout(&self) -> Result<LayoutMove, Error> {
        let mut moved = LayoutMove::default();
        if let Some(layout) = self.read_layout().await? {
            self.adopt(&layout)?;
        } else {
            self.table_partitions
                .store(self.config.control_partitions, Ordering::Release);
        }
        loop {
            // A page of format 1 state rows at a time: the moved ones are gone from it.
            let ids = self.v1_instance_ids(100).await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                moved.rows += self.move_instance(&id).await?;
                moved.instances += 1;
            }
        }
        if self.read_layout().await?.is_none() {
            self.record_layout().await?;
        }
        Ok(moved)
    }

    fn adopt(&self, layout: &LayoutRow) -> Result<(), Error> {
        if layout.format != LAYOUT_FORMAT || layout.partitions == 0 {
            return Err(Error::Permanent(format!(
                "task hub '{}' has table layout format {} with {} partitions; this build \
                 reads format {LAYOUT_FORMAT}",
                self.config.task_hub, layout.format, layout.partitions
            )));
        }
        self.table_partitions
            .store(layout.partitions, Ordering::Release);
        Ok(())
    }

    async fn read_layout(&self) -> Result<Option<LayoutRow>, Error> {
        self.counter.count("table.get");
        let got = self
            .table
            .partition_key_client(LAYOUT_PARTITION)
            .entity_client(LAYOUT_ROW)
            .get::<LayoutRow>()
            .await
            .map_err(|e| classify("read layout", e));
        match got {
            Ok(got) => Ok(Some(got.entity)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the layout row of a new hub (another process's, written first, wins).
    async fn record_layout(&self) -> Result<(), Error> {
        let row = LayoutRow {
            partition_key: LAYOUT_PARTITION.into(),
            row_key: LAYOUT_ROW.into(),
            format: LAYOUT_FORMAT,
            partitions: self.config.control_partitions,
        };
        self.counter.count("table.write");
        let inserted = self
            .table
            .insert::<_, serde_json::Value>(&row)
            .map_err(|e| Error::Permanent(format!("building a request: {e}")))?
            .await
            .map_err(|e| classify("write layout", e));
        match inserted {
            Ok(_) => self.adopt(&row),
            Err(Error::Conflict(_)) => match self.read_layout().await? {
                Some(layout) => self.adopt(&layout),
                None => Err(Error::Transient("layout row vanished".into())),
            },
            Err(e) => Err(e),
        }
    }

    async fn has_v1_rows(&self) -> Result<bool, Error> {
        Ok(!self.v1_instance_ids(1).await?.is_empty())
    }

    /// Up to `max` instance ids that still have a format 1 state row.
    async fn v1_instance_ids(&self, max: u32) -> Result<Vec<String>, Error> {
        let mut stream = self
            .table
            .query()
            .filter(format!("RowKey eq '{V1_STATE_ROW}'"))
            .select("PartitionKey,RowKey")
            .top(azure_data_tables::Top::new(max))
            .into_stream::<Row>();
        let mut ids = Vec::new();
        while let Some(response) = stream.next().await {
            self.counter.count("table.query");
            let rows = response.map_err(|e| classify("table query", e))?.entities;
            ids.extend(rows.into_iter().map(|row| row.partition_key));
            if ids.len() >= max as usize {
                break;
            }
        }
        ids.truncate(max as usize);
        Ok(ids)
    }

    /// Copies one format 1 instance into format 2, then deletes its old rows; the rows
    /// written.
    async fn move_instance(&self, instance_id: &str) -> Result<usize, Error> {
        let filter = format!("PartitionKey eq '{}'", odata_quote(instance_id));
        let mut stream = self.table.query().filter(filter).into_stream::<Row>();
        let mut old = Vec::new();
        while let Some(response) = stream.next().await {
            self.counter.count("table.query");
            old.extend(response.map_err(|e| classify("table query", e))?.entities);
        }
        let keys = self.keys(instance_id);
        let mut state = None;
        let mut history = Vec::new();
        for row in &old {
            let mut moved = Row {
                partition_key: keys.partition.clone(),
                etag: None,
                timestamp: None,
                ..row.clone()
            };
            if row.row_key == V1_STATE_ROW {
                moved.row_key = keys.state_row();
                moved.kind = Some(STATE_KIND.into());
                state = Some(moved);
            } else if let Some((execution, seq, gen)) = parse_history_key(&row.row_key) {
                moved.row_key = keys.history_row(execution, seq, gen);
                history.push(Op::Upsert(moved));
            }
        }
        let written = history.len() + usize::from(state.is_some());
        for chunk in history.chunks(BATCH) {
            self.transact(&self.table, &keys.partition, chunk.to_vec())
                .await?;
        }
        if let Some(state) = state {
            self.transact(&self.table, &keys.partition, vec![Op::Upsert(state)])
                .await?;
        }
        // The old rows: history first, the state row last (a rerun finds the instance).
        let (old_state, old_history): (Vec<_>, Vec<_>) =
            old.into_iter().partition(|r| r.row_key == V1_STATE_ROW);
        for chunk in old_history.chunks(BATCH) {
            let ops = chunk
                .iter()
                .map(|r| Op::Delete(r.row_key.clone()))
                .collect();
            self.transact(&self.table, instance_id, ops).await?;
        }
        for row in old_state {
            let etag = row.etag.unwrap_or_default();
            let delete = vec![Op::DeleteIf(V1_STATE_ROW.into(), etag)];
            self.transact(&self.table, instance_id, delete).await?;
        }
        Ok(written)
    }
}

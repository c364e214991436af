//! Instance state and history in Table Storage, committed per the engine invariants: an
//! instance's rows in its control partition's table partition (`rows`), every commit
//! conditional on the state row's ETag, multi-batch appends under a claim with
//! generation-tagged row keys, the state row written last.

use async_trait::async_trait;
use flowforge_orchestrator::backend::{
    ETag, EpisodeCommit, Error, HistoryPage, HistoryWrite, InstancePage, InstanceQuery,
    InstanceStore, LoadedInstance, Outbound, PayloadStore,
};
use flowforge_orchestrator::history::HistoryEvent;
use flowforge_orchestrator::status::InstanceState;
use futures::StreamExt;

use crate::backend::AzureBackend;
use crate::error::classify;
use crate::list_query;
use crate::rows::{
    gen_of, history_part, id_of_state_row, odata_quote, parse_history_key, partition_key,
    InstanceKeys, Range, Row, ATOMIC_GEN, STATE_KIND,
};
use crate::status_index::{self, IndexEntry, IndexKey};
use crate::table_op::{Op, BATCH};

const DEFAULT_PAGE_SIZE: usize = 100;
/// How long a worker waits for a creation in flight in this process (its row write) before
/// it reads storage instead.
const CREATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[async_trait]
impl crate::row_batcher::RowWriter for AzureBackend {
    fn row_batcher(&self) -> &crate::row_batcher::RowBatcher {
        &self.row_batcher
    }

    async fn transact_rows(
        &self,
        partition: &str,
        ops: Vec<Op>,
    ) -> Result<Vec<Option<String>>, Error> {
        self.transact_each(&self.table, partition, ops).await
    }
}

impl AzureBackend {
    /// The table partition and RowKey prefix of an instance in this hub.
    pub(crate) fn keys(&self, instance_id: &str) -> InstanceKeys {
        InstanceKeys::of(instance_id, self.table_partitions())
    }

    /// The state row: the state, its history ranges and its ETag.
    async fn read_state_row(
        &self,
        instance_id: &str,
    ) -> Result<Option<(InstanceState, Vec<Range>, ETag)>, Error> {
        self.counter.count("table.get");
        let keys = self.keys(instance_id);
        let got = self
            .table
            .partition_key_client(&keys.partition)
            .entity_client(keys.state_row())
            .get::<Row>()
            .await;
        match got.map_err(|e| classify("read state", e)) {
            Ok(got) => {
                let (state, ranges) = self.decode_state(&got.entity).await?;
                let etag = got.etag.to_string();
                let index = IndexEntry::of_row(&state, &got.entity);
                self.ranges.put(instance_id, &etag, ranges.clone(), index);
                Ok(Some((state, ranges, ETag(etag))))
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The events `seqs` of the current execution among `rows`, in order, read from the
    /// generation `ranges` names for each (a stale writer's rows are skipped); `None` when
    /// one is missing (a commit landed between the reads).
    async fn visible_events(
        &self,
        keys: &InstanceKeys,
        rows: &[Row],
        state: &InstanceState,
        ranges: &[Range],
        seqs: std::ops::Range<u64>,
    ) -> Result<Option<Vec<HistoryEvent>>, Error> {
        let mut events: Vec<Option<HistoryEvent>> =
            vec![None; seqs.end.saturating_sub(seqs.start) as usize];
        for row in rows {
            let Some((execution, seq, gen)) =
                history_part(keys, &row.row_key).and_then(parse_history_key)
            else {
                continue;
            };
            if execution != state.execution_id || !seqs.contains(&seq) || gen != gen_of(ranges, seq)
            {
                continue;
            }
            let text = self.inline(row.event.clone().unwrap_or_default()).await?;
            let event: HistoryEvent = serde_json::from_str(&text).map_err(|e| {
                Error::Permanent(format!("history row {} unreadable: {e}", row.row_key))
            })?;
            events[(seq - seqs.start) as usize] = Some(event);
        }
        Ok(events.into_iter().collect())
    }

    /// Every row of an instance: one range of its table partition.
    async fn instance_rows(&self, keys: &InstanceKeys) -> Result<Vec<Row>, Error> {
        let filter = format!(
            "PartitionKey eq '{}' and RowKey ge '{}' and RowKey lt '{}'",
            keys.partition,
            odata_quote(&keys.prefix),
            odata_quote(&keys.rows_end()),
        );
        self.query_rows(filter).await
    }

    async fn query_rows(&self, filter: String) -> Result<Vec<Row>, Error> {
        let mut stream = self.table.query().filter(filter).into_stream::<Row>();
        let mut rows = Vec::new();
        while let Some(page) = stream.next().await {
            self.counter.count("table.query");
            rows.extend(page.map_err(|e| classify("table query", e))?.entities);
        }
        Ok(rows)
    }

    async fn decode_state(&self, row: &Row) -> Result<(InstanceState, Vec<Range>), Error> {
        let body = self.inline(row.body.clone().unwrap_or_default()).await?;
        let state: InstanceState = serde_json::from_str(&body).map_err(|e| {
            Error::Permanent(format!("state row '{}' is unreadable: {e}", row.row_key))
        })?;
        let ranges = match &row.ranges {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Error::Permanent(format!("ranges of '{}' unreadable: {e}", row.row_key))
            })?,
            None => Vec::new(),
        };
        Ok((state, ranges))
    }

    /// The state row of `state`; `index_etag`: the ETag of its status index entry as
    /// written ahead (see `status_index`), which the delete behind it will be made on.
    async fn state_row(
        &self,
        state: &InstanceState,
        ranges: &[Range],
        index_etag: Option<&str>,
    ) -> Result<Row, Error> {
        let id = &state.instance_id;
        let body = serde_json::to_string(state).map_err(|e| Error::Permanent(e.to_string()))?;
        let limit = self.config.max_inline_property;
        let keys = self.keys(id);
        Ok(Row {
            partition_key: keys.partition.clone(),
            row_key: keys.state_row(),
            kind: Some(STATE_KIND.into()),
            status: Some(state.status.as_str().into()),
            name: Some(state.name.clone()),
            created_at: Some(state.created_at.to_rfc3339()),
            body: Some(self.offload(id, body, limit).await?),
            ranges: Some(serde_json::to_string(ranges).unwrap_or_else(|_| "[]".into())),
            index_etag: index_etag.map(str::to_owned),
            ..Row::default()
        })
    }

    async fn history_row(
        &self,
        instance_id: &str,
        execution_id: &str,
        event: &HistoryEvent,
        gen: &str,
    ) -> Result<Row, Error> {
        let text = serde_json::to_string(event).map_err(|e| Error::Permanent(e.to_string()))?;
        let keys = self.keys(instance_id);
        Ok(Row {
            partition_key: keys.partition.clone(),
            row_key: keys.history_row(execution_id, event.seq, gen),
            event: Some(
                self.offload(instance_id, text, self.config.max_inline_property)
                    .await?,
            ),
            ..Row::default()
        })
    }

    /// The ranges of the committed state row (read again: commits must build on them).
    async fn current_ranges(
        &self,
        instance_id: &str,
        expected: &ETag,
    ) -> Result<Vec<Range>, Error> {
        if let Some(ranges) = self.ranges.get(instance_id, &expected.0) {
            return Ok(ranges);
        }
        self.counter.count("table.get");
        let keys = self.keys(instance_id);
        let got = self
            .table
            .partition_key_client(&keys.partition)
            .entity_client(keys.state_row())
            .get::<Row>()
            .await
            .map_err(|e| classify("read state", e))?;
        if got.etag.to_string() != expected.0 {
            return Err(Error::Conflict(format!("instance '{instance_id}' changed")));
        }
        Ok(self.decode_state(&got.entity).await?.1)
    }

    /// How many table rows an instance has (tools and tests).
    pub async fn load_instance_rows(&self, instance_id: &str) -> Result<usize, Error> {
        Ok(self.instance_rows(&self.keys(instance_id)).await?.len())
    }
}

#[async_trait]
impl InstanceStore for AzureBackend {
    async fn create_instance(
        &self,
        state: &InstanceState,
        start: &Outbound,
        replace: Option<&ETag>,
    ) -> Result<ETag, Error> {
        // The start message goes first: a worker that sees it before the state row exists
        // creates the instance itself, so no crash between the two writes loses the start.
        // This process's workers wait for the row instead (`take_created`). The status
        // index entry is written ahead of the row (see `status_index`).
        let index = IndexKey::of(state);
        let _in_flight = self.created.begin(&state.instance_id);
        // The index entry beside the message, not before it (so starts made at once still
        // share bundles): it need only precede the state row. A worker that creates the
        // instance from the message writes its own entry ahead of its row.
        let (index_etag, queue) = tokio::join!(
            self.index_ahead(&state.instance_id, None, &index),
            self.send_start(start)
        );
        let (index_etag, queue) = (index_etag?, queue?);
        let row = self.state_row(state, &[], index_etag.as_deref()).await;
        let op = row.map(|row| match replace {
            None => Op::Insert(row),
            Some(etag) => Op::Update(row, etag.0.clone()),
        });
        // With the other starts and commits of its table partition made at once.
        let partition = self.keys(&state.instance_id).partition;
        let written = match op {
            Ok(op) => self
                .row_batcher
                .write(&partition, vec![op])
                .await
                .map(|etags| etags.into_iter().last().flatten()),
            Err(error) => Err(error),
        };
        let created = match written {
            Ok(etag) => {
                let etag = ETag(etag.unwrap_or_default());
                // The row as written (no history ranges yet), for this process's worker:
                // its first commit builds on it without reading it back.
                let index = IndexEntry {
                    key: index.clone(),
                    etag: index_etag.clone(),
                };
                self.ranges
                    .put(&state.instance_id, &etag.0, Vec::new(), index);
                self.created.put(state, &etag);
                Ok(etag)
            }
            Err(Error::Conflict(reason)) => match self.read_state(&state.instance_id).await? {
                // The worker got there first with the same execution.
                Some((existing, etag)) if existing.execution_id == state.execution_id => Ok(etag),
                _ => Err(Error::Conflict(reason)),
            },
            Err(e) => Err(e),
        };
        // This process's workers look at the start once its state row is there (or its
        // write failed: then the worker creates the instance itself, as from any process).
        if let Some(queue) = queue {
            self.arrived(&queue);
        }
        created
    }

    async fn take_created(&self, instance_id: &str) -> Option<(InstanceState, ETag)> {
        self.created
            .take_when_created(instance_id, CREATION_WAIT)
            .await
    }

    fn events_per_atomic_commit(&self) -> usize {
        // One batch: the events and the state row.
        BATCH - 1
    }

    async fn load_instance(&self, instance_id: &str) -> Result<Option<LoadedInstance>, Error> {
        let keys = self.keys(instance_id);
        let rows = self.instance_rows(&keys).await?;
        let state_key = keys.state_row();
        let Some(state_row) = rows.iter().find(|r| r.row_key == state_key) else {
            return Ok(None);
        };
        let (state, ranges) = self.decode_state(state_row).await?;
        let etag = ETag(state_row.etag.clone().unwrap_or_default());
        let index = IndexEntry::of_row(&state, state_row);
        self.ranges.put(instance_id, &etag.0, ranges.clone(), index);
        let history = self
            .visible_events(&keys, &rows, &state, &ranges, 0..state.history_len)
            .await?;
        match history {
            Some(history) => Ok(Some(LoadedInstance {
                state,
                etag,
                history,
            })),
            // A commit landed between the pages of the query: read again later.
            None => Err(Error::Transient(format!(
                "history of '{instance_id}' changed while read"
            ))),
        }
    }

    async fn read_state(&self, instance_id: &str) -> Result<Option<(InstanceState, ETag)>, Error> {
        Ok(self
            .read_state_row(instance_id)
            .await?
            .map(|(state, _, etag)| (state, etag)))
    }

    async fn read_history(
        &self,
        instance_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Option<HistoryPage>, Error> {
        let Some((state, ranges, _)) = self.read_state_row(instance_id).await? else {
            return Ok(None);
        };
        let to = from.saturating_add(max as u64).min(state.history_len);
        let keys = self.keys(instance_id);
        let rows = if to > from {
            // Only the page's rows: history keys sort by sequence within an execution.
            let execution = &state.execution_id;
            let filter = format!(
                "PartitionKey eq '{}' and RowKey ge '{}' and RowKey lt '{}'",
                keys.partition,
                odata_quote(&format!("{}h-{execution}-{from:010}", keys.prefix)),
                odata_quote(&format!("{}h-{execution}-{to:010}", keys.prefix)),
            );
            self.query_rows(filter).await?
        } else {
            Vec::new()
        };
        let events = self
            .visible_events(&keys, &rows, &state, &ranges, from..to)
            .await?;
        let Some(events) = events else {
            // A commit landed between the reads: read again later.
            return Err(Error::Transient(format!(
                "history of '{instance_id}' changed while read"
            )));
        };
        let next = (to < state.history_len).then_some(to);
        Ok(Some(HistoryPage {
            state,
            events,
            next,
        }))
    }

    async fn commit_episode(
        &self,
        instance_id: &str,
        commit: EpisodeCommit,
    ) -> Result<ETag, Error> {
        let execution = commit.state.execution_id.clone();
        let keys = self.keys(instance_id);
        let new_index = IndexKey::of(&commit.state);
        let old_index = match &commit.expected {
            Some(expected) => self.index_entry_left(instance_id, expected).await?,
            None => None,
        };
        let old_key = old_index.as_ref().map(|entry| &entry.key);
        let written = self.index_ahead(instance_id, old_key, &new_index).await?;
        // The entry's ETag as of this commit: the one just written, or the one it keeps.
        let new_index = IndexEntry {
            etag: written.or_else(|| {
                old_index
                    .as_ref()
                    .filter(|old| old.key == new_index)
                    .and_then(|old| old.etag.clone())
            }),
            key: new_index,
        };
        let index_etag = new_index.etag.as_deref();
        let (events, replace) = match commit.history {
            HistoryWrite::Append(events) => (events, false),
            HistoryWrite::Replace(events) => (events, true),
        };
        let mut ranges = match (&commit.expected, replace) {
            (Some(expected), false) => self.current_ranges(instance_id, expected).await?,
            _ => Vec::new(),
        };
        let first_seq = events.first().map(|e| e.seq);
        let etag = if events.len() < BATCH {
            if let Some(from_seq) = first_seq {
                if gen_of(&ranges, from_seq) != ATOMIC_GEN {
                    ranges.push(Range {
                        from_seq,
                        gen: ATOMIC_GEN.into(),
                    });
                }
            }
            let mut ops = Vec::with_capacity(events.len() + 1);
            for event in &events {
                ops.push(Op::Upsert(
                    self.history_row(instance_id, &execution, event, ATOMIC_GEN)
                        .await?,
                ));
            }
            let state = self.state_row(&commit.state, &ranges, index_etag).await?;
            ops.push(match &commit.expected {
                None => Op::Insert(state),
                Some(etag) => Op::Update(state, etag.0.clone()),
            });
            // With the commits of the other instances of its partition made at once.
            let etags = self.row_batcher.write(&keys.partition, ops).await?;
            etags.into_iter().last().flatten()
        } else {
            // Too many rows for one batch: claim the instance first (If-Match), so no stale
            // worker writes a row; write the rows under this claim's generation; then make
            // them visible by updating the state row under the claim's ETag.
            let claim = uuid::Uuid::new_v4().simple().to_string();
            let claim_etag = match &commit.expected {
                Some(etag) => {
                    let row = Row {
                        partition_key: keys.partition.clone(),
                        row_key: keys.state_row(),
                        claim: Some(claim.clone()),
                        ..Row::default()
                    };
                    self.transact(
                        &self.table,
                        &keys.partition,
                        vec![Op::Merge(row, etag.0.clone())],
                    )
                    .await?
                }
                None => {
                    let mut placeholder = commit.state.clone();
                    placeholder.status = flowforge_orchestrator::status::RuntimeStatus::Pending;
                    placeholder.history_len = 0;
                    let row = self.state_row(&placeholder, &[], index_etag).await?;
                    self.transact(&self.table, &keys.partition, vec![Op::Insert(row)])
                        .await?
                }
            }
            .unwrap_or_default();
            for chunk in events.chunks(BATCH) {
                let mut ops = Vec::with_capacity(chunk.len());
                for event in chunk {
                    ops.push(Op::Upsert(
                        self.history_row(instance_id, &execution, event, &claim)
                            .await?,
                    ));
                }
                self.transact(&self.table, &keys.partition, ops).await?;
            }
            if let Some(from_seq) = first_seq {
                ranges.push(Range {
                    from_seq,
                    gen: claim,
                });
            }
            let state = self.state_row(&commit.state, &ranges, index_etag).await?;
            self.transact(
                &self.table,
                &keys.partition,
                vec![Op::Update(state, claim_etag)],
            )
            .await?
        };
        if let Some(etag) = &etag {
            self.ranges
                .put(instance_id, etag, ranges, new_index.clone());
        }
        if let Some(old) = &old_index {
            self.index_behind(instance_id, old, &new_index.key).await;
        }
        // Decided messages go out only now. If this process dies before they are all sent,
        // the consumed messages come back and the runtime re-derives them from history.
        self.send_all(&commit.messages).await?;
        Ok(ETag(etag.unwrap_or_default()))
    }

    async fn list_instances(&self, query: &InstanceQuery) -> Result<InstancePage, Error> {
        let size = if query.page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            query.page_size
        };
        if let Some(page) = self.list_by_index(query, size).await? {
            return Ok(page);
        }
        // One query per table partition, merged in instance id order: the page is complete
        // at one match more than it holds (that one says a next page exists), and the rest
        // of the hub is not read.
        let top = list_query::rows_per_request(size);
        let mut partitions: Vec<PartitionRows> = (0..self.table_partitions())
            .map(|n| {
                let filter = list_query::service_filter(query, &partition_key(n));
                PartitionRows::new(
                    self.table
                        .query()
                        .filter(filter)
                        .top(azure_data_tables::Top::new(top))
                        .into_stream::<Row>(),
                )
            })
            .collect();
        let mut states = Vec::new();
        while states.len() <= size {
            let counter = &self.counter;
            futures::future::try_join_all(partitions.iter_mut().map(|rows| rows.fill(counter)))
                .await?;
            let next = partitions
                .iter_mut()
                .filter(|rows| !rows.buffered.is_empty())
                .min_by(|a, b| a.buffered[0].row_key.cmp(&b.buffered[0].row_key));
            let Some(rows) = next else {
                break;
            };
            let Some(row) = rows.buffered.pop_front() else {
                break;
            };
            let Some(id) = id_of_state_row(&row.row_key) else {
                continue;
            };
            if list_query::past_prefix(query, &id) {
                // This partition has no more ids with the prefix.
                rows.done = true;
                rows.buffered.clear();
                continue;
            }
            let (state, _) = self.decode_state(&row).await?;
            if query.matches(&state) {
                states.push(state);
            }
        }
        Ok(InstancePage::from_matches(states, size))
    }

    async fn delete_instance(&self, instance_id: &str) -> Result<bool, Error> {
        let keys = self.keys(instance_id);
        let state_key = keys.state_row();
        let rows = self.instance_rows(&keys).await?;
        let existed = rows.iter().any(|r| r.row_key == state_key);
        let index = rows
            .iter()
            .find(|r| r.row_key == state_key)
            .and_then(status_index::key_of_row)
            .map(|key| IndexEntry { key, etag: None });
        // Two purges of one instance at once (two callers, a purge by filter beside a purge
        // of the id): a batch that meets a row the other already deleted fails with 404;
        // the rows left are read again and deleted, so both purges succeed.
        let mut deleted = self.delete_rows(instance_id, &keys, rows).await;
        for _ in 0..3 {
            if !matches!(deleted, Err(Error::NotFound(_))) {
                break;
            }
            let rows = self.instance_rows(&keys).await?;
            deleted = self.delete_rows(instance_id, &keys, rows).await;
        }
        deleted?;
        // Behind the state row, with the other entries left behind (purges of a filter
        // share batches): a purge that dies before the sweep leaves a stale index row,
        // which a listing drops.
        if let Some(index) = index {
            self.index_leave(index);
        }
        Ok(existed)
    }
}

impl AzureBackend {
    /// Deletes `rows` of an instance and its payloads.
    async fn delete_rows(
        &self,
        instance_id: &str,
        keys: &InstanceKeys,
        rows: Vec<Row>,
    ) -> Result<(), Error> {
        // History first, the state row last: a purge that dies half-way leaves an instance
        // that still reads as itself and can be purged again.
        let state_key = keys.state_row();
        let (state, history): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r.row_key == state_key);
        if !state.is_empty() && history.len() < BATCH {
            // All its rows in one transaction, shared with the purges of other instances
            // of the partition made at once; the run logs first and the payloads after, so
            // the instance reads as itself until its rows go.
            self.delete_run_logs(instance_id).await?;
            let ops = history
                .iter()
                .chain(&state)
                .map(|r| Op::Delete(r.row_key.clone()))
                .collect();
            self.row_batcher.write(&keys.partition, ops).await?;
            self.delete_payloads(&format!("{instance_id}/")).await?;
            self.ranges.forget(instance_id);
            return Ok(());
        }
        for chunk in history.chunks(BATCH) {
            let ops = chunk
                .iter()
                .map(|r| Op::Delete(r.row_key.clone()))
                .collect();
            self.transact(&self.table, &keys.partition, ops).await?;
        }
        self.delete_run_logs(instance_id).await?;
        if !state.is_empty() {
            self.transact(&self.table, &keys.partition, vec![Op::Delete(state_key)])
                .await?;
        }
        self.delete_payloads(&format!("{instance_id}/")).await?;
        self.ranges.forget(instance_id);
        Ok(())
    }
}

/// A listing's rows of one table partition, read a response at a time as the merge needs.
struct PartitionRows {
    stream: futures::stream::BoxStream<
        'static,
        azure_core::Result<azure_data_tables::operations::QueryEntityResponse<Row>>,
    >,
    buffered: std::collections::VecDeque<Row>,
    done: bool,
}

impl PartitionRows {
    fn new(
        stream: impl futures::Stream<
                Item = azure_core::Result<azure_data_tables::operations::QueryEntityResponse<Row>>,
            > + Send
            + 'static,
    ) -> Self {
        Self {
            stream: stream.boxed(),
            buffered: Default::default(),
            done: false,
        }
    }

    /// Reads responses until a row is buffered or the partition has no more.
    async fn fill(&mut self, counter: &crate::counter::Counter) -> Result<(), Error> {
        while self.buffered.is_empty() && !self.done {
            match self.stream.next().await {
                Some(response) => {
                    counter.count("table.query");
                    let rows = response.map_err(|e| classify("table query", e))?.entities;
                    self.buffered.extend(rows);
                }
                None => self.done = true,
            }
        }
        Ok(())
    }
}

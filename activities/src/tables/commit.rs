//! One run's write to a Delta table: parquet files made by polars, committed by delta-rs
//! in one Delta commit that carries the run's application transaction
//! (`txn.appId = flowforge-run:<run id>`), so a retried or restarted run never commits
//! twice: a run whose transaction the table already holds writes nothing and reports the
//! version that holds it. Two writers of one table meet in delta-rs's conflict check (the
//! loser's activity fails retryably and its retry finds the table moved on).

use std::collections::BTreeMap;

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Metadata, Protocol, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};
use flowforge_orchestrator::history::FailureDetails;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::schema::{evolution, TableColumn};
use super::{open, Table};

/// How a run's files relate to the table's current files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The run's partitions replace the same partitions' current files (Spark's dynamic
    /// partition overwrite); other partitions stay.
    ReplacePartitions,
    /// The run's files are added to the table.
    Append,
}

/// One data file of a run: its partition values (in the table's partition column order)
/// and its parquet bytes, without the partition columns.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    /// `(column, value)` for each partition column; `None`: null.
    pub partition_values: Vec<(String, Option<String>)>,
    /// Parquet bytes.
    pub bytes: Vec<u8>,
    /// Rows in the file.
    pub rows: usize,
}

/// What a run writes to one table.
#[derive(Debug, Clone)]
pub struct TableWrite {
    /// The table's columns (partition columns included).
    pub columns: Vec<TableColumn>,
    /// Partition columns, in path order.
    pub partition_by: Vec<String>,
    /// Replace or append.
    pub mode: WriteMode,
    /// The run.
    pub run_id: String,
    /// The files.
    pub files: Vec<EncodedFile>,
    /// Shown in the table's history (`commitInfo`), e.g. the rows and the source files.
    pub run_facts: serde_json::Map<String, serde_json::Value>,
}

/// A file of a table, as a reader finds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableFile {
    /// Path from the table's root.
    pub path: String,
    /// Partition values by column.
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Rows.
    pub rows: usize,
}

/// What a run's write did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCommit {
    /// `container/path` of the table.
    pub table: String,
    /// The Delta version that holds the run's data (`None`: committed more than 100
    /// versions ago).
    pub version: Option<u64>,
    /// The run's commit was already in the table: nothing was written now.
    pub already_committed: bool,
    /// The run's files.
    pub files: Vec<TableFile>,
    /// Rows written.
    pub rows: usize,
}

/// The application transaction id of a run.
pub fn run_transaction(run_id: &str) -> String {
    format!("flowforge-run:{run_id}")
}

/// How far back a rerun looks for the version that holds its commit.
const LOOK_BACK: u64 = 100;

fn table_failure(table: &Table, what: &str, error: DeltaTableError) -> FailureDetails {
    // Storage and conflict errors pass with a retry; the retry reloads the table.
    FailureDetails::new(
        "TableCommitFailed",
        format!("{} {what}: {error}", table.name()),
    )
}

/// Hive-style partition directory (`year=2013/month=1`), values percent-encoded as Delta
/// and Spark write them; a null value is Spark's default partition.
pub fn partition_dir(values: &[(String, Option<String>)]) -> String {
    values
        .iter()
        .map(|(column, value)| {
            let value = match value {
                Some(text) => escape_partition_value(text),
                None => "__HIVE_DEFAULT_PARTITION__".to_owned(),
            };
            format!("{column}={value}")
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn escape_partition_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || "-_.".contains(ch) || (!ch.is_ascii() && !ch.is_control())
        {
            out.push(ch);
        } else {
            let mut buffer = [0u8; 4];
            for byte in ch.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// The file name of a run's `index`th file: deterministic per run, table and partition, so
/// a retry after a crash before the commit overwrites its own uncommitted files instead of
/// leaving more beside them.
fn file_path(table: &Table, run_id: &str, index: usize, file: &EncodedFile) -> String {
    let dir = partition_dir(&file.partition_values);
    let name = format!("{}:{run_id}:{dir}:{index}", table.name());
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes());
    let file_name = format!("part-{index:05}-{id}-c000.zstd.parquet");
    if dir.is_empty() {
        file_name
    } else {
        format!("{dir}/{file_name}")
    }
}

/// Writes and commits a run's files to `table`, creating the table with its first run.
pub async fn write_run(table: &Table, write: TableWrite) -> Result<TableCommit, FailureDetails> {
    write_run_opened(table, open(table).await?, write).await
}

/// [`write_run`] on `table` as [`open`] found it: a stage opens its table while it
/// computes the run's rows, so loading the log is off the stage's path. A commit another
/// writer makes meanwhile meets delta-rs's conflict check, as one made while the files
/// upload always did (the same run's commit too: the run's transaction id is in both).
pub async fn write_run_opened(
    table: &Table,
    mut delta: DeltaTable,
    mut write: TableWrite,
) -> Result<TableCommit, FailureDetails> {
    let app_id = run_transaction(&write.run_id);
    let files: Vec<TableFile> = write
        .files
        .iter()
        .enumerate()
        .map(|(index, file)| TableFile {
            path: file_path(table, &write.run_id, index, file),
            partition_values: file.partition_values.iter().cloned().collect(),
            rows: file.rows,
        })
        .collect();
    let rows = files.iter().map(|f| f.rows).sum();
    let exists = delta.version().is_some();
    if exists {
        let state = delta
            .snapshot()
            .map_err(|e| table_failure(table, "snapshot", e))?;
        let held = state
            .transaction_version(delta.log_store().as_ref(), &app_id)
            .await
            .map_err(|e| table_failure(table, "reading its transactions", e))?;
        if held.is_some() {
            return Ok(TableCommit {
                table: table.name(),
                version: version_holding(&delta, &app_id).await,
                already_committed: true,
                files,
                rows,
            });
        }
    }
    let store = delta.log_store().object_store(None);
    let now = chrono::Utc::now().timestamp_millis();
    let mut adds = Vec::with_capacity(files.len());
    let mut puts = Vec::with_capacity(files.len());
    for (file, encoded) in files.iter().zip(write.files.iter_mut()) {
        let bytes = std::mem::take(&mut encoded.bytes);
        adds.push(Action::Add(Add {
            path: file.path.clone(),
            partition_values: file.partition_values.clone().into_iter().collect(),
            size: bytes.len() as i64,
            modification_time: now,
            data_change: true,
            stats: Some(format!("{{\"numRecords\":{}}}", file.rows)),
            ..Add::default()
        }));
        let store = store.clone();
        let path = file.path.clone();
        puts.push(async move {
            store
                .put(&Path::from(path.as_str()), bytes.into())
                .await
                .map_err(|e| {
                    FailureDetails::new(
                        "TableCommitFailed",
                        format!("{} writing {path}: {e}", table.name()),
                    )
                })
        });
    }
    // The files go up eight at a time; the commit follows only when all are there.
    futures::stream::iter(puts)
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let mut facts = write.run_facts.clone();
    facts.insert("flowforge.runId".into(), write.run_id.clone().into());
    let properties = CommitProperties::default()
        .with_application_transaction(Transaction::new(&app_id, 0))
        .with_metadata(facts);
    let version = if exists {
        commit_to_existing(table, &mut delta, &write, adds, properties).await?
    } else {
        create_with(table, &delta, &write, adds, properties).await?
    };
    // Only a replacing write to an existing table removes files; a new table or an
    // appending one has nothing for vacuum to find.
    if exists && write.mode == WriteMode::ReplacePartitions {
        vacuum(table, delta).await;
    }
    Ok(TableCommit {
        table: table.name(),
        version: Some(version),
        already_committed: false,
        files,
        rows,
    })
}

/// Creates the table with the run's files as its version 0: the protocol and metadata
/// delta-rs's `CreateBuilder` writes for these columns and properties (reader 1, writer 2:
/// the properties set here enable no table feature), committed with `If-None-Match`, so a
/// table another writer created meanwhile goes through delta-rs's conflict check. The
/// builder then reads the new log back (a listing and the commit twice, eight requests) to
/// hand over a loaded table; this write needs only the version, so it stops there.
async fn create_with(
    table: &Table,
    delta: &DeltaTable,
    write: &TableWrite,
    adds: Vec<Action>,
    properties: CommitProperties,
) -> Result<u64, FailureDetails> {
    let (protocol, metadata) =
        new_table_actions(write).map_err(|e| table_failure(table, "describing the table", e))?;
    let operation = DeltaOperation::Create {
        mode: SaveMode::ErrorIfExists,
        location: deltalake::table::normalize_table_url(delta.log_store().root_url()),
        protocol: protocol.clone(),
        metadata: metadata.clone(),
    };
    let mut actions = vec![Action::Protocol(protocol), Action::Metadata(metadata)];
    actions.extend(adds);
    let committed = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(None, delta.log_store(), operation)
        .into_prepared_commit_future()
        .await
        .map_err(|e| table_failure(table, "creating the table", e))?
        .await
        .map_err(|e| table_failure(table, "creating the table", e))?;
    Ok(committed.version)
}

/// The properties every table is created with: its log kept 30 days, removed files 7 days
/// (what time travel can reach; vacuum deletes files older).
const TABLE_PROPERTIES: [(TableProperty, &str); 2] = [
    (TableProperty::LogRetentionDuration, "interval 30 days"),
    (
        TableProperty::DeletedFileRetentionDuration,
        "interval 7 days",
    ),
];

/// The protocol and metadata actions of a new table for `write`, as `CreateBuilder` makes
/// them (it too goes through their JSON form: delta-kernel has no public constructor).
fn new_table_actions(write: &TableWrite) -> Result<(Protocol, Metadata), DeltaTableError> {
    let schema = StructType::try_new(write.columns.iter().map(TableColumn::field))?;
    let protocol = serde_json::from_value(serde_json::json!({
        "minReaderVersion": 1,
        "minWriterVersion": 2,
    }))?;
    let metadata = serde_json::from_value(serde_json::json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "format": { "provider": "parquet", "options": {} },
        "schemaString": serde_json::to_string(&schema)?,
        "partitionColumns": write.partition_by,
        "configuration": TABLE_PROPERTIES
            .iter()
            .map(|(property, value)| (property.as_ref(), *value))
            .collect::<BTreeMap<_, _>>(),
        "createdTime": chrono::Utc::now().timestamp_millis(),
    }))?;
    Ok((protocol, metadata))
}

async fn commit_to_existing(
    table: &Table,
    delta: &mut DeltaTable,
    write: &TableWrite,
    adds: Vec<Action>,
    properties: CommitProperties,
) -> Result<u64, FailureDetails> {
    let state = delta
        .snapshot()
        .map_err(|e| table_failure(table, "snapshot", e))?;
    let partitioned_by: Vec<String> = state.metadata().partition_columns().to_vec();
    if partitioned_by != write.partition_by {
        return Err(incompatible(
            table,
            &format!(
                "the table is partitioned by {partitioned_by:?}, this run by {:?}",
                write.partition_by
            ),
        ));
    }
    let existing: Vec<TableColumn> = state
        .schema()
        .fields()
        .map(|f| TableColumn {
            name: f.name().clone(),
            kind: f.data_type().clone(),
            nullable: f.is_nullable(),
        })
        .collect();
    let added = evolution(&existing, &write.columns).map_err(|why| incompatible(table, &why))?;
    if !added.is_empty() {
        // The new columns get their own commit, before the run's data.
        let current = std::mem::replace(delta, DeltaTable::new(delta.log_store()));
        *delta = current
            .add_columns()
            .with_fields(added.iter().map(TableColumn::field).collect::<Vec<_>>())
            .await
            .map_err(|e| table_failure(table, "adding columns", e))?;
    }
    let state = delta
        .snapshot()
        .map_err(|e| table_failure(table, "snapshot", e))?;
    let mut actions = adds;
    if write.mode == WriteMode::ReplacePartitions {
        let written: Vec<BTreeMap<String, Option<String>>> = write
            .files
            .iter()
            .map(|f| f.partition_values.iter().cloned().collect())
            .collect();
        let log_store = delta.log_store();
        let removes: Vec<Action> = state
            .snapshot()
            .file_views(log_store.as_ref(), None)
            .try_filter_map(|view| {
                let values: BTreeMap<String, Option<String>> =
                    view.partition_values_map().into_iter().collect();
                let replaced = written.contains(&values);
                async move { Ok(replaced.then(|| Action::Remove(view.remove_action(true)))) }
            })
            .try_collect()
            .await
            .map_err(|e| table_failure(table, "listing its files", e))?;
        actions.extend(removes);
    }
    let (mode, predicate) = match write.mode {
        WriteMode::ReplacePartitions => (SaveMode::Overwrite, Some(replaced_predicate(write))),
        WriteMode::Append => (SaveMode::Append, None),
    };
    let operation = DeltaOperation::Write {
        mode,
        partition_by: Some(write.partition_by.clone()).filter(|p| !p.is_empty()),
        predicate,
    };
    let committed = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(state), delta.log_store(), operation)
        .await
        .map_err(|e| table_failure(table, "committing", e))?;
    Ok(committed.version())
}

/// The partitions a replacing write covers, as the predicate shown in the history.
fn replaced_predicate(write: &TableWrite) -> String {
    let mut partitions: Vec<String> = write
        .files
        .iter()
        .map(|f| {
            f.partition_values
                .iter()
                .map(|(column, value)| match value {
                    Some(v) => format!("{column} = '{}'", v.replace('\'', "''")),
                    None => format!("{column} IS NULL"),
                })
                .collect::<Vec<_>>()
                .join(" AND ")
        })
        .collect();
    partitions.sort();
    partitions.dedup();
    if partitions.iter().all(String::is_empty) {
        return "true".to_owned();
    }
    partitions
        .into_iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn incompatible(table: &Table, why: &str) -> FailureDetails {
    FailureDetails::non_retryable(
        "IncompatibleSchema",
        format!("{}: {why}; nothing was written", table.name()),
    )
}

/// The version whose commit carries `app_id`, looking back at most [`LOOK_BACK`] versions.
async fn version_holding(delta: &DeltaTable, app_id: &str) -> Option<u64> {
    let latest = delta.version()?;
    let needle = format!("\"appId\":\"{}\"", app_id.replace('"', "\\\""));
    let log_store = delta.log_store();
    for version in (latest.saturating_sub(LOOK_BACK - 1)..=latest).rev() {
        if let Ok(Some(bytes)) = log_store.read_commit_entry(version).await {
            if String::from_utf8_lossy(&bytes).contains(&needle) {
                return Some(version);
            }
        }
    }
    None
}

/// Removes files no version within the table's retention still reads (Delta's vacuum, at
/// the table's `delta.deletedFileRetentionDuration`, 7 days). Best effort: a failure is
/// logged and the next run's vacuum tries again.
async fn vacuum(table: &Table, delta: DeltaTable) {
    let mut delta = delta;
    if let Err(error) = delta.load().await {
        warn!(table = %table.name(), %error, "vacuum skipped: reloading the table failed");
        return;
    }
    if let Err(error) = delta.vacuum().await {
        warn!(table = %table.name(), %error, "vacuum failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use serde_json::Value;

    use super::*;

    fn file(values: &[(&str, Option<&str>)]) -> EncodedFile {
        EncodedFile {
            partition_values: values
                .iter()
                .map(|(c, v)| ((*c).to_owned(), v.map(str::to_owned)))
                .collect(),
            bytes: Vec::new(),
            rows: 1,
        }
    }

    /// The actions of a table's version 0, one JSON value per line.
    async fn first_actions(store: &dyn object_store::ObjectStore, table: &str) -> Vec<Value> {
        let path = Path::from(format!("{table}/_delta_log/00000000000000000000.json"));
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_new_table_is_described_as_delta_rs_creates_it_and_reads_back() {
        use deltalake::kernel::DataType as DeltaType;
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
        let columns = vec![
            TableColumn {
                name: "carrier".into(),
                kind: DeltaType::STRING,
                nullable: false,
            },
            TableColumn {
                name: "delay".into(),
                kind: DeltaType::DOUBLE,
                nullable: true,
            },
            TableColumn {
                name: "year".into(),
                kind: DeltaType::INTEGER,
                nullable: false,
            },
        ];
        let write = || TableWrite {
            columns: columns.clone(),
            partition_by: vec!["year".into()],
            mode: WriteMode::ReplacePartitions,
            run_id: "run-1".into(),
            files: vec![EncodedFile {
                partition_values: vec![("year".into(), Some("2013".into()))],
                bytes: b"parquet bytes".to_vec(),
                rows: 7,
            }],
            run_facts: Default::default(),
        };
        let ours = Table::new("lake", "ours", store.clone());
        let first = write_run(&ours, write()).await.unwrap();
        assert_eq!((first.version, first.rows), (Some(0), 7));
        assert!(!first.already_committed);

        // delta-rs's own builder, same columns and properties, beside it.
        let theirs = Table::new("lake", "theirs", store.clone());
        open(&theirs)
            .await
            .unwrap()
            .create()
            .with_columns(columns.iter().map(TableColumn::field))
            .with_partition_columns(["year"])
            .with_configuration(
                TABLE_PROPERTIES
                    .iter()
                    .map(|(property, value)| (property.as_ref(), Some(*value))),
            )
            .await
            .unwrap();
        let (mine, built) = (
            first_actions(store.as_ref(), "ours").await,
            first_actions(store.as_ref(), "theirs").await,
        );
        let described = |actions: &[Value]| {
            let protocol = actions.iter().find_map(|a| a.get("protocol")).cloned();
            let mut metadata = actions.iter().find_map(|a| a.get("metaData")).cloned();
            for key in ["id", "createdTime"] {
                metadata
                    .as_mut()
                    .and_then(|m| m.as_object_mut()?.remove(key));
            }
            (protocol, metadata)
        };
        assert!(described(&mine).0.is_some() && described(&mine).1.is_some());
        assert_eq!(described(&mine), described(&built));
        let configuration = described(&mine)
            .1
            .and_then(|m| m.get("configuration").cloned());
        assert_eq!(
            configuration,
            Some(serde_json::json!({
                "delta.logRetentionDuration": "interval 30 days",
                "delta.deletedFileRetentionDuration": "interval 7 days",
            }))
        );
        let operation = mine.iter().find_map(|a| a.pointer("/commitInfo/operation"));
        assert_eq!(operation, Some(&Value::from("CREATE TABLE")));

        // A reader loads the new table with the run's file; the run again writes nothing.
        let loaded = open(&ours).await.unwrap();
        assert_eq!(loaded.version(), Some(0));
        let files: Vec<String> = loaded.get_file_uris().unwrap().collect();
        assert_eq!(files.len(), 1);
        assert!(files[0].contains("year=2013/part-00000-"), "{files:?}");
        let again = write_run(&ours, write()).await.unwrap();
        assert!(again.already_committed);
        assert_eq!(again.version, Some(0));
    }

    #[test]
    fn partition_directories_are_hive_style_and_escaped() {
        assert_eq!(
            partition_dir(&file(&[("year", Some("2013")), ("month", Some("1"))]).partition_values),
            "year=2013/month=1"
        );
        assert_eq!(
            partition_dir(&file(&[("k", Some("a/b c=%"))]).partition_values),
            "k=a%2Fb%20c%3D%25"
        );
        assert_eq!(
            partition_dir(&file(&[("k", None)]).partition_values),
            "k=__HIVE_DEFAULT_PARTITION__"
        );
    }

    #[test]
    fn the_predicate_names_each_replaced_partition_once() {
        let write = TableWrite {
            columns: Vec::new(),
            partition_by: vec!["year".into(), "month".into()],
            mode: WriteMode::ReplacePartitions,
            run_id: "r".into(),
            files: vec![
                file(&[("year", Some("2013")), ("month", Some("2"))]),
                file(&[("year", Some("2013")), ("month", Some("1"))]),
                file(&[("year", Some("2013")), ("month", Some("1"))]),
            ],
            run_facts: Default::default(),
        };
        assert_eq!(
            replaced_predicate(&write),
            "(year = '2013' AND month = '1') OR (year = '2013' AND month = '2')"
        );
    }
}

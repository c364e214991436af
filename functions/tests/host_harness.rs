//! A harness that plays the Azure Functions host for the packaged app: it packages the app
//! with `deploy/package.sh`, reads host.json and every function.json, starts the binary as
//! the host does (`FUNCTIONS_CUSTOMHANDLER_PORT`), waits for readiness on `GET /`, forwards
//! HTTP requests as envelopes, polls the Azurite queues named in the queue triggers and
//! invokes their routes with the host's envelopes (`DequeueCount` as a string, messages
//! sometimes double-encoded), applies the host's retry and `maxDequeueCount` → `-poison`
//! rules, and fires timer envelopes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use flowforge_azure::{azurite, AzureBackend};
use serde_json::{json, Value};

const HUB: &str = "hostharness";

struct Package {
    dir: PathBuf,
    zip: PathBuf,
}

fn package() -> Package {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = std::env::temp_dir().join(format!("flowforge-package-{}", std::process::id()));
    let status = Command::new(root.join("deploy/package.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_flowforge"), "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "deploy/package.sh failed");
    Package {
        dir: out.join("app"),
        zip: out.join("flowforge-app.zip"),
    }
}

struct Function {
    name: String,
    trigger: Value,
}

fn functions(app: &Path) -> Vec<Function> {
    let mut list = Vec::new();
    for entry in std::fs::read_dir(app).unwrap() {
        let path = entry.unwrap().path();
        let definition = path.join("function.json");
        if definition.exists() {
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(definition).unwrap()).unwrap();
            let trigger = json["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["direction"] == "in")
                .unwrap()
                .clone();
            list.push(Function {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                trigger,
            });
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

struct Host {
    child: Child,
    base: String,
    http: reqwest::Client,
    backend: Arc<AzureBackend>,
    functions: Vec<Function>,
    max_dequeue_count: u32,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    async fn start(pkg: &Package) -> Host {
        let host_json: Value =
            serde_json::from_str(&std::fs::read_to_string(pkg.dir.join("host.json")).unwrap())
                .unwrap();
        let description = &host_json["customHandler"]["description"];
        let exe = pkg
            .dir
            .join(description["defaultExecutablePath"].as_str().unwrap());
        let args: Vec<String> = description["arguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let max_dequeue_count = host_json["extensions"]["queues"]["maxDequeueCount"]
            .as_u64()
            .unwrap() as u32;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let schedules = json!([
            {"name": "minutely", "cron": "0 * * * * *", "orchestration": "await_approval", "input": 3600, "overlap": "allow"},
            {"name": "hourly", "cron": "0 0 * * * *", "orchestration": "await_approval", "input": 3600, "overlap": "skip"}
        ]);
        let child = Command::new(exe)
            .args(&args)
            .current_dir(&pkg.dir)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_WORKER_RUNTIME", "custom")
            .env("AzureWebJobsStorage", azurite::shared().connection_string())
            .env("FLOWFORGE_TASK_HUB", HUB)
            .env("FLOWFORGE_CONTROL_PARTITIONS", "4")
            .env(
                "FLOWFORGE_HOST_MAX_DEQUEUE_COUNT",
                max_dequeue_count.to_string(),
            )
            .env("FLOWFORGE_SCHEDULES", schedules.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut config = azurite::shared().config(HUB);
        config.control_partitions = 4;
        let backend = AzureBackend::connect(config).await.unwrap();
        let host = Host {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            backend,
            functions: functions(&pkg.dir),
            max_dequeue_count,
        };
        // Readiness: the host sends GET / until any answer comes back.
        for _ in 0..600 {
            if host
                .http
                .get(format!("{}/", host.base))
                .send()
                .await
                .is_ok()
            {
                return host;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the handler never answered GET /");
    }

    async fn invoke(&self, function: &str, envelope: Value) -> (u16, Value) {
        let reply = self
            .http
            .post(format!("{}/{function}", self.base))
            .header("X-Azure-Functions-InvocationId", uuid_like())
            .header("X-Azure-Functions-HostVersion", "4.1000.0")
            .json(&envelope)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    /// An HTTP request through the HTTP trigger functions, as the host sends it.
    async fn http(
        &self,
        function: &str,
        method: &str,
        path_and_query: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let query: BTreeMap<String, String> = BTreeMap::new();
        let envelope = json!({
            "Data": {"req": {
                "Url": format!("https://flowforge-app.azurewebsites.net{path_and_query}"),
                "Method": method,
                "Query": query,
                "Headers": {"Content-Type": ["application/json"], "traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]},
                "Params": {},
                "Identities": [],
                "Body": body.map(|b| b.to_string()).unwrap_or_default()
            }},
            "Metadata": {"sys": {"MethodName": function, "UtcNow": "2026-11-25T00:00:00Z", "RandGuid": uuid_like()}}
        });
        let (status, reply) = self.invoke(function, envelope).await;
        assert_eq!(status, 200, "{function}: {reply}");
        let res = &reply["Outputs"]["res"];
        let code: u16 = res["statusCode"].as_str().unwrap().parse().unwrap();
        let body = res["body"]
            .as_str()
            .expect("HTTP output bodies are strings");
        (code, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// One polling pass over every queue trigger: deliver each visible message, settle it
    /// as the host would. Returns how many messages were delivered.
    async fn pump_queues(&self, round: u32) -> usize {
        let mut delivered = 0;
        for function in &self.functions {
            if function.trigger["type"] != "queueTrigger" {
                continue;
            }
            let queue = function.trigger["queueName"]
                .as_str()
                .unwrap()
                .replace("%FLOWFORGE_TASK_HUB%", HUB);
            let name = function.trigger["name"].as_str().unwrap();
            let messages = self
                .backend
                .receive_raw(&queue, 16, Duration::from_secs(30))
                .await
                .unwrap();
            for (receipt, dequeue_count, text) in messages {
                delivered += 1;
                // Alternate plain and double-encoded strings, as the host does for strings.
                let data = if (round + delivered as u32) % 2 == 0 {
                    json!(text)
                } else {
                    json!(serde_json::to_string(&text).unwrap())
                };
                let envelope = json!({
                    "Data": {name: data},
                    "Metadata": {"DequeueCount": dequeue_count.to_string(), "Id": receipt.message_id, "PopReceipt": receipt.pop_receipt,
                                 "sys": {"MethodName": function.name}}
                });
                let (status, _) = self.invoke(&function.name, envelope).await;
                if (200..300).contains(&status) {
                    self.backend.delete_raw(&queue, &receipt).await.unwrap();
                } else if dequeue_count >= self.max_dequeue_count {
                    self.backend
                        .put_raw(&format!("{queue}-poison"), &text)
                        .await
                        .unwrap();
                    self.backend.delete_raw(&queue, &receipt).await.unwrap();
                } else {
                    self.backend.release_raw(&queue, &receipt).await.unwrap();
                }
            }
        }
        delivered
    }

    async fn fire_timer(&self, past_due: bool) -> Value {
        let envelope = json!({
            "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": past_due}},
            "Metadata": {"sys": {"MethodName": "Schedules"}}
        });
        let (status, reply) = self.invoke("Schedules", envelope).await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// Pumps the queues until the instance's status answers 200 (finished).
    async fn run_until_done(&self, id: &str) -> Value {
        for round in 0..600 {
            self.pump_queues(round).await;
            let (code, body) = self
                .http("HttpInstance", "GET", &format!("/api/instances/{id}"), None)
                .await;
            if code == 200 {
                return body;
            }
            assert_eq!(code, 202, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{id} never finished");
    }

    async fn list(&self, prefix: &str) -> Vec<Value> {
        let (code, body) = self
            .http(
                "HttpInstances",
                "GET",
                &format!("/api/instances?instanceIdPrefix={prefix}"),
                None,
            )
            .await;
        assert_eq!(code, 200);
        body.as_array().unwrap().clone()
    }
}

fn uuid_like() -> String {
    format!(
        "{:032x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_app_runs_under_a_host_harness() {
    let pkg = package();
    let host = Host::start(&pkg).await;

    // Every function.json maps to a route the binary serves, and the binary serves no
    // function that is not declared.
    let declared: Vec<&str> = host.functions.iter().map(|f| f.name.as_str()).collect();
    let served: Vec<String> = flowforge::host::functions::all()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut served_sorted: Vec<&str> = served.iter().map(String::as_str).collect();
    served_sorted.sort();
    assert_eq!(declared, served_sorted);
    for function in &host.functions {
        let (status, _) = host
            .invoke(&function.name, json!({"Data": {}, "Metadata": {}}))
            .await;
        assert_ne!(status, 404, "{} is declared but not served", function.name);
    }
    assert_eq!(host.invoke("NotAFunction", json!({})).await.0, 404);

    // Start over HTTP, run to completion entirely through host-style invocations.
    let input = json!({"files": ["landing/a.csv", "flaky-1.csv"], "pause_ms": 0});
    let (code, check) = host
        .http("HttpStart", "POST", "/api/orchestrators/demo", Some(input))
        .await;
    assert_eq!(code, 202, "{check}");
    let status_uri = check["statusQueryGetUri"].as_str().unwrap();
    assert!(
        status_uri.starts_with("https://flowforge-app.azurewebsites.net/api/instances/"),
        "{status_uri}"
    );
    let id = check["id"].as_str().unwrap().to_owned();
    let done = host.run_until_done(&id).await;
    assert_eq!(done["runtimeStatus"], "Completed");
    assert_eq!(done["output"]["sizes"].as_array().unwrap().len(), 2);

    // A schedule fired twice for the same occurrence starts one instance.
    host.fire_timer(false).await;
    host.fire_timer(false).await;
    let minutely = host.list("schedule-minutely-").await;
    assert!(
        minutely.len() <= 2,
        "at most this minute's and (at a minute boundary) the next: {minutely:?}"
    );
    let distinct: std::collections::HashSet<_> =
        minutely.iter().map(|s| s["instanceId"].clone()).collect();
    assert_eq!(distinct.len(), minutely.len());
    assert!(!minutely.is_empty());
    // Past due: the latest missed occurrence (the last full hour) starts, once.
    host.fire_timer(true).await;
    host.fire_timer(true).await;
    let hourly = host.list("schedule-hourly-").await;
    assert_eq!(hourly.len(), 1, "{hourly:?}");

    // A message the host dead-lettered on its own still ends its instance Failed.
    let waiting = hourly[0]["instanceId"].as_str().unwrap().to_owned();
    for round in 0..20 {
        host.pump_queues(round).await;
    }
    let poisoned = json!({"v": 1, "kind": "Activity", "instance_id": waiting, "execution_id": "x", "scheduled_id": 0, "name": "measure", "input": null});
    host.backend
        .put_raw(&format!("{HUB}-workitems-poison"), &poisoned.to_string())
        .await
        .unwrap();
    let failed = host.run_until_done(&waiting).await;
    assert_eq!(failed["runtimeStatus"], "Failed", "{failed}");
    assert!(
        failed["output"].as_str().unwrap().contains("dead-lettered"),
        "{failed}"
    );

    // The zip keeps the exec bit of the binary.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&pkg.zip).unwrap()).unwrap();
    let binary = archive.by_name("flowforge").unwrap();
    let mode = binary.unix_mode().unwrap();
    assert_eq!(mode & 0o111, 0o111, "exec bits in the zip: {mode:o}");
    drop(binary);
    for function in &host.functions {
        assert!(archive
            .by_name(&format!("{}/function.json", function.name))
            .is_ok());
    }
    assert!(archive.by_name("host.json").is_ok());
}

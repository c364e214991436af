//! A stand-in for the Azure Functions host that follows its source as written down in the
//! team's notes on the host (functions-custom-handler.md, with the host file for each
//! fact), for the packaged app (`deploy/package.sh`):
//!
//! - start-up: the executable and arguments of host.json, `FUNCTIONS_CUSTOMHANDLER_PORT`
//!   and `FUNCTIONS_APP_ROOT_PATH`; readiness is any answer to `GET /`;
//! - queue triggers: one listener per queue function, up to `batchSize + newBatchThreshold`
//!   invocations at once (24 with 16 and 8); `DequeueCount` as a string, `Id` quoted, the
//!   message text encoded once more; a message past `maxDequeueCount` is moved to
//!   `<queue>-poison` without an invocation; 2xx deletes, anything else makes the message
//!   visible again after `visibilityTimeout`, or moves it to `-poison` at the limit;
//! - HTTP triggers: every request header passed, `Body` only with a `Content-Length` above
//!   0; the output body rendered as the host does (a string as is, anything else with
//!   `ToString()`), and Kestrel's check that a `content-length` header matches what is
//!   written (a mismatch is a 500);
//! - `functionTimeout`: an invocation that outlasts it restarts the whole handler process,
//!   failing every invocation in flight; a handler that exits is restarted, and three
//!   crashes in 30 minutes stop the host;
//! - logs: every stderr line that does not contain "warn" counts as an error.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowforge_azure::{azurite, AzureBackend};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// The host.json settings the stand-in honours (tests may shorten them).
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub function_timeout: Duration,
    pub batch_size: usize,
    pub new_batch_threshold: usize,
    pub max_dequeue_count: u32,
    pub visibility_timeout: Duration,
}

impl HostSettings {
    /// host.json's own settings, as packaged.
    pub fn from_host_json(host_json: &Value) -> Self {
        let queues = &host_json["extensions"]["queues"];
        let timespan = |v: &Value| {
            flowforge::host::host_json::parse_timespan(v.as_str().unwrap_or("00:00:00")).unwrap()
        };
        Self {
            function_timeout: timespan(&host_json["functionTimeout"]),
            batch_size: queues["batchSize"].as_u64().unwrap_or(16) as usize,
            new_batch_threshold: queues["newBatchThreshold"].as_u64().unwrap_or(8) as usize,
            max_dequeue_count: queues["maxDequeueCount"].as_u64().unwrap_or(5) as u32,
            visibility_timeout: timespan(&queues["visibilityTimeout"]),
        }
    }
}

/// A packaged app (built once per test binary): the test build of the binary, or the one
/// `FLOWFORGE_HARNESS_BINARY` names (the static release build, for the plan's figures).
pub struct Package {
    pub dir: PathBuf,
    pub zip: PathBuf,
}

pub fn package() -> &'static Package {
    static PACKAGE: std::sync::OnceLock<Package> = std::sync::OnceLock::new();
    PACKAGE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        // One folder in the target's temporary space, replaced by each run (a folder per run
        // under /tmp filled the disk of a developer machine: the package is ~340 MB).
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("strict-host-package");
        let _ = std::fs::remove_dir_all(&out);
        let binary = std::env::var("FLOWFORGE_HARNESS_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_flowforge").to_owned());
        let status = Command::new(root.join("deploy/package.sh"))
            .args(["--binary", binary.as_str(), "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "deploy/package.sh failed");
        Package {
            dir: out.join("app"),
            zip: out.join("flowforge-app.zip"),
        }
    })
}

pub struct Function {
    pub name: String,
    pub trigger: Value,
}

pub fn functions(app: &Path) -> Vec<Function> {
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

/// The web app's 500 when the invocation got no answer (timeout, handler restarting).
pub const INVOCATION_FAILED: &str = "the invocation failed";

/// What the host saw.
#[derive(Default)]
pub struct Observed {
    /// stderr lines without "warn": the host logs each as an Error.
    pub error_lines: Mutex<Vec<String>>,
    /// Handler exits the host did not cause.
    pub crashes: Mutex<Vec<Instant>>,
    /// Restarts for `functionTimeout`.
    pub timeouts: AtomicU32,
    /// Queue invocations, and those answered non-2xx.
    pub invocations: AtomicU64,
    pub failed_invocations: AtomicU64,
    /// Messages moved to `-poison` by the host.
    pub poisoned: AtomicU64,
    /// Three crashes within 30 minutes: the host stops.
    pub stopped: AtomicBool,
}

struct Process {
    child: Option<Child>,
    /// Set while the host itself restarts the handler (a timeout): not a crash.
    restarting: bool,
}

pub struct Host {
    pub hub: String,
    pub settings: HostSettings,
    pub base: String,
    pub http: reqwest::Client,
    pub backend: Arc<AzureBackend>,
    pub functions: Vec<Function>,
    pub observed: Arc<Observed>,
    exe: PathBuf,
    args: Vec<String>,
    app: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    process: Mutex<Process>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Host {
    /// Starts the packaged handler for task hub `hub` and the queue listeners.
    pub async fn start(hub: &str, settings: HostSettings, env: &[(&str, &str)]) -> Arc<Host> {
        let pkg = package();
        let host_json: Value =
            serde_json::from_str(&std::fs::read_to_string(pkg.dir.join("host.json")).unwrap())
                .unwrap();
        let description = &host_json["customHandler"]["description"];
        let exe = pkg
            .dir
            .join(description["defaultExecutablePath"].as_str().unwrap());
        let args = description["arguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut all_env: Vec<(String, String)> = vec![
            ("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into()),
            (
                "AzureWebJobsStorage".into(),
                azurite::shared().connection_string(),
            ),
            ("FLOWFORGE_TASK_HUB".into(), hub.into()),
            ("FLOWFORGE_CONTROL_PARTITIONS".into(), "4".into()),
            (
                "FLOWFORGE_FUNCTION_TIMEOUT_SECS".into(),
                settings.function_timeout.as_secs().to_string(),
            ),
            (
                "FLOWFORGE_HOST_MAX_DEQUEUE_COUNT".into(),
                settings.max_dequeue_count.to_string(),
            ),
            ("FLOWFORGE_HARNESS_ORCHESTRATIONS".into(), "1".into()),
        ];
        all_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut config = azurite::shared().config(hub);
        config.control_partitions = 4;
        // The host's queue listener talks to storage through the .NET Azure SDK: 100 s per
        // try (`RetryOptions.NetworkTimeout`) and 3 retries. A shorter deadline here would
        // cut off a receive that storage, slow for a moment, still applies: its messages
        // would then stay hidden for the 10-minute dequeue visibility, a stall the real host
        // does not have.
        config.attempt_deadline = Duration::from_secs(100);
        config.retry_budget = Duration::from_secs(300);
        let backend = AzureBackend::connect(config).await.unwrap();
        let (stop, _) = tokio::sync::watch::channel(false);
        let host = Arc::new(Host {
            hub: hub.to_owned(),
            settings,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            backend,
            functions: functions(&pkg.dir),
            observed: Arc::new(Observed::default()),
            exe,
            args,
            app: pkg.dir.clone(),
            port,
            env: all_env,
            process: Mutex::new(Process {
                child: None,
                restarting: false,
            }),
            stop,
        });
        host.spawn_handler();
        host.wait_ready().await;
        tokio::spawn(host.clone().supervise());
        for function in &host.functions {
            if function.trigger["type"] == "queueTrigger" {
                tokio::spawn(
                    host.clone()
                        .listen(function.name.clone(), function.trigger.clone()),
                );
            }
        }
        host
    }

    fn spawn_handler(&self) {
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .current_dir(&self.app)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", self.port.to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", &self.app)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The handler's own log lines (JSON), kept for a failing test's reader when
        // FLOWFORGE_HARNESS_LOG_DIR names a folder.
        let mut keep = std::env::var_os("FLOWFORGE_HARNESS_LOG_DIR").map(|dir| {
            let path = Path::new(&dir).join(format!("{}.log", self.hub));
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap()
        });
        std::thread::spawn(move || {
            use std::io::Write as _;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(file) = keep.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let observed = self.observed.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // HttpWorkerDescription: UseStdErrorStreamForErrorsOnly.
                if !line.to_ascii_lowercase().contains("warn") {
                    eprintln!("[handler stderr, an error to the host] {line}");
                    observed.error_lines.lock().unwrap().push(line);
                }
            }
        });
        self.process.lock().unwrap().child = Some(child);
    }

    async fn wait_ready(&self) {
        let started = Instant::now();
        // HttpWorkerOptions: 30 s to come up, polled every 25 ms.
        while started.elapsed() < Duration::from_secs(30) {
            if self
                .http
                .get(format!("{}/", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the handler did not answer GET / within 30 s");
    }

    /// Restarts a handler that exited on its own (a crash), as the host does.
    async fn supervise(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            let exited = {
                let mut process = self.process.lock().unwrap();
                let exited = match process.child.as_mut() {
                    Some(child) => child.try_wait().unwrap().is_some(),
                    None => false,
                };
                exited && !process.restarting
            };
            if !exited {
                continue;
            }
            let now = Instant::now();
            let recent = {
                let mut crashes = self.observed.crashes.lock().unwrap();
                crashes.push(now);
                crashes
                    .iter()
                    .filter(|t| now.duration_since(**t) < Duration::from_secs(1800))
                    .count()
            };
            if recent >= 3 {
                self.observed.stopped.store(true, Ordering::SeqCst);
                return;
            }
            self.spawn_handler();
            self.wait_ready().await;
        }
    }

    /// `functionTimeout`: the host restarts the whole handler process.
    async fn restart_for_timeout(&self) {
        {
            let mut process = self.process.lock().unwrap();
            if process.restarting {
                return;
            }
            process.restarting = true;
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.observed.timeouts.fetch_add(1, Ordering::SeqCst);
        self.spawn_handler();
        self.wait_ready().await;
        self.process.lock().unwrap().restarting = false;
    }

    /// Kills the handler with SIGKILL (a crash the host will see and restart).
    pub fn kill_handler(&self) {
        let process = self.process.lock().unwrap();
        if let Some(child) = process.child.as_ref() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: sending a signal to our own child process.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// One invocation, bounded by `functionTimeout`. `None`: no answer (timeout or the
    /// handler went away): the invocation failed.
    async fn invoke(&self, function: &str, envelope: &Value) -> Option<(u16, Value)> {
        let call = self
            .http
            .post(format!("{}/{function}", self.base))
            .header(
                "X-Azure-Functions-InvocationId",
                uuid::Uuid::new_v4().to_string(),
            )
            .header("X-Azure-Functions-HostVersion", "4.1036.1")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .json(envelope)
            .timeout(self.settings.function_timeout)
            .send();
        match call.await {
            Ok(reply) => {
                let status = reply.status().as_u16();
                let body = reply.json().await.unwrap_or(Value::Null);
                Some((status, body))
            }
            Err(e) if e.is_timeout() => {
                eprintln!("[host] {function} reached functionTimeout: restarting the handler");
                self.restart_for_timeout().await;
                None
            }
            Err(_) => None,
        }
    }

    /// The queue listener of one function.
    async fn listen(self: Arc<Self>, function: String, trigger: Value) {
        let queue = trigger["queueName"]
            .as_str()
            .unwrap()
            .replace("%FLOWFORGE_TASK_HUB%", &self.hub);
        let binding = trigger["name"].as_str().unwrap().to_owned();
        let parallel = self.settings.batch_size + self.settings.new_batch_threshold;
        let slots = Arc::new(Semaphore::new(parallel));
        let mut stop = self.stop.subscribe();
        let mut idle = Duration::from_millis(20);
        loop {
            if *stop.borrow() || self.observed.stopped.load(Ordering::SeqCst) {
                return;
            }
            let free = slots.available_permits().min(self.settings.batch_size);
            let messages = if free == 0 {
                Vec::new()
            } else {
                self.backend
                    .receive_raw(&queue, free as u8, Duration::from_secs(600))
                    .await
                    .unwrap_or_default()
            };
            if messages.is_empty() {
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(idle) => {}
                }
                idle = (idle * 2).min(Duration::from_millis(500));
                continue;
            }
            idle = Duration::from_millis(20);
            for (receipt, dequeue_count, text) in messages {
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (host, function, binding, queue) = (
                    self.clone(),
                    function.clone(),
                    binding.clone(),
                    queue.clone(),
                );
                tokio::spawn(async move {
                    host.deliver(&function, &binding, &queue, receipt, dequeue_count, text)
                        .await;
                    drop(permit);
                });
            }
        }
    }

    async fn deliver(
        &self,
        function: &str,
        binding: &str,
        queue: &str,
        receipt: flowforge_orchestrator::backend::Receipt,
        dequeue_count: u32,
        text: String,
    ) {
        let poison = format!("{queue}-poison");
        // QueueProcessor.BeginProcessingMessageAsync: past the limit, no invocation.
        if dequeue_count > self.settings.max_dequeue_count {
            self.move_to_poison(queue, &poison, &receipt, &text).await;
            return;
        }
        let now = chrono::Utc::now().to_rfc3339();
        let envelope = json!({
            "Data": {binding: serde_json::to_string(&text).unwrap()},
            "Metadata": {
                "DequeueCount": dequeue_count.to_string(),
                "Id": serde_json::to_string(&receipt.message_id).unwrap(),
                "PopReceipt": serde_json::to_string(&receipt.pop_receipt).unwrap(),
                "InsertionTime": now, "ExpirationTime": now, "NextVisibleTime": now,
                "sys": {"MethodName": function, "UtcNow": now, "RandGuid": uuid::Uuid::new_v4().to_string()}
            }
        });
        self.observed.invocations.fetch_add(1, Ordering::SeqCst);
        let succeeded = matches!(self.invoke(function, &envelope).await, Some((200..=299, _)));
        if succeeded {
            let _ = self.backend.delete_raw(queue, &receipt).await;
            return;
        }
        self.observed
            .failed_invocations
            .fetch_add(1, Ordering::SeqCst);
        if dequeue_count >= self.settings.max_dequeue_count {
            self.move_to_poison(queue, &poison, &receipt, &text).await;
        } else {
            let _ = self
                .backend
                .release_raw(queue, &receipt, self.settings.visibility_timeout)
                .await;
        }
    }

    async fn move_to_poison(
        &self,
        queue: &str,
        poison: &str,
        receipt: &flowforge_orchestrator::backend::Receipt,
        text: &str,
    ) {
        self.observed.poisoned.fetch_add(1, Ordering::SeqCst);
        self.backend.put_raw(poison, text).await.unwrap();
        let _ = self.backend.delete_raw(queue, receipt).await;
    }

    /// An HTTP request through an HTTP-triggered function, as the host passes it and
    /// renders the answer. `chunked`: the request had no Content-Length.
    pub async fn http(
        &self,
        function: &str,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
        chunked: bool,
    ) -> HttpReply {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        headers.insert(
            "Host".into(),
            vec!["flowforge-app.azurewebsites.net".into()],
        );
        headers.insert("User-Agent".into(), vec!["web-app/1.0".into()]);
        headers.insert(
            "traceparent".into(),
            vec!["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()],
        );
        let length = body.map_or(0, <[u8]>::len);
        if chunked {
            headers.insert("Transfer-Encoding".into(), vec!["chunked".into()]);
        } else if body.is_some() {
            headers.insert("Content-Length".into(), vec![length.to_string()]);
        }
        if body.is_some() {
            headers.insert("Content-Type".into(), vec!["application/json".into()]);
        }
        let query: BTreeMap<String, String> = path_and_query
            .split_once('?')
            .map(|(_, q)| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let mut req = json!({
            "Url": format!("https://flowforge-app.azurewebsites.net{path_and_query}"),
            "Method": method.to_uppercase(),
            "Query": query,
            "Headers": headers,
            "Params": {},
            "Identities": []
        });
        // HttpRequestExtensions: Body only when Content-Length > 0 (chunked bodies are lost).
        if let (Some(body), false) = (body, chunked) {
            if length > 0 {
                req["Body"] = json!(String::from_utf8_lossy(body));
            }
        }
        let envelope = json!({
            "Data": {"req": req},
            "Metadata": {"sys": {"MethodName": function, "UtcNow": chrono::Utc::now().to_rfc3339(), "RandGuid": uuid::Uuid::new_v4().to_string()}}
        });
        let Some((status, reply)) = self.invoke(function, &envelope).await else {
            return HttpReply::server_error(INVOCATION_FAILED);
        };
        if !(200..300).contains(&status) {
            return HttpReply::server_error(&format!("invocation answered {status}"));
        }
        render(&reply["Outputs"]["res"])
    }

    /// An Event Grid event through an Event Grid-triggered function, once the host's
    /// extension has done the subscription handshake: `Data.<binding name>` = the event as
    /// given (an object or JSON text: the live host's form is not verified here, so the
    /// handler takes both). Returns the invocation's status.
    pub async fn event_grid(&self, function: &str, event: Value) -> u16 {
        let name = self
            .functions
            .iter()
            .find(|f| f.name == function)
            .and_then(|f| f.trigger["name"].as_str())
            .unwrap_or("event")
            .to_owned();
        let envelope = json!({
            "Data": {name: event},
            "Metadata": {"sys": {"MethodName": function, "UtcNow": chrono::Utc::now().to_rfc3339(), "RandGuid": uuid::Uuid::new_v4().to_string()}}
        });
        self.invoke(function, &envelope).await.map_or(0, |(s, _)| s)
    }

    /// Fires the timer function.
    pub async fn fire_timer(&self, past_due: bool) -> u16 {
        let envelope = json!({
            "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": past_due}},
            "Metadata": {"sys": {"MethodName": "Schedules"}}
        });
        self.invoke("Schedules", &envelope)
            .await
            .map_or(0, |(s, _)| s)
    }

    /// Fires the `Retention` timer function once, as the timer extension invokes a timer
    /// function; returns the status and the handler's log lines.
    pub async fn fire_retention(&self) -> (u16, Vec<String>) {
        let envelope = json!({
            "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
            "Metadata": {"sys": {"MethodName": "Retention"}}
        });
        match self.invoke("Retention", &envelope).await {
            Some((status, body)) => {
                let logs = body["Logs"].as_array().cloned().unwrap_or_default();
                let logs = logs
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect();
                (status, logs)
            }
            None => (0, Vec::new()),
        }
    }

    /// Polls an instance over HTTP until it has finished, as the web app does (a poll that
    /// failed while the handler restarted is tried again).
    pub async fn wait_done(&self, status_path: &str, within: Duration) -> Value {
        let started = Instant::now();
        loop {
            let reply = self
                .http("HttpInstance", "GET", status_path, None, false)
                .await;
            if reply.status == 500 && reply.body == INVOCATION_FAILED {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            // Storage too slow for the API's deadline under this load: the web app retries
            // a 503 after its Retry-After.
            if reply.status == 503 {
                eprintln!("{status_path}: 503 {}", reply.body);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            assert!(
                reply.status == 200 || reply.status == 202,
                "{status_path}: {} {}",
                reply.status,
                reply.body
            );
            if reply.status == 200 {
                return reply.json();
            }
            assert!(
                !self.observed.stopped.load(Ordering::SeqCst),
                "the host stopped: three handler crashes"
            );
            assert!(
                started.elapsed() < within,
                "{status_path} not finished after {within:?}: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The handler's peak resident memory so far, in MiB (Linux `VmHWM`).
    pub fn handler_peak_mib(&self) -> Option<u64> {
        let pid = self.process.lock().unwrap().child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024)
    }

    /// The error-level lines so far.
    pub fn error_lines(&self) -> Vec<String> {
        self.observed.error_lines.lock().unwrap().clone()
    }

    pub fn crashes(&self) -> usize {
        self.observed.crashes.lock().unwrap().len()
    }

    pub fn timeouts(&self) -> u32 {
        self.observed.timeouts.load(Ordering::SeqCst)
    }

    /// Stops the listeners and the handler.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        let mut process = self.process.lock().unwrap();
        process.restarting = true;
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An HTTP answer as the web app receives it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl HttpReply {
    fn server_error(why: &str) -> Self {
        Self {
            status: 500,
            headers: BTreeMap::new(),
            body: why.to_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// RawScriptResult: a string body is written as is; anything else as `ToString()` of the
/// JSON token (indented for objects and arrays, `True`/`False`, an unquoted string, an
/// empty body for null). Kestrel then refuses a body whose length differs from a
/// `content-length` header the handler set: the web app gets a 500.
pub fn render(res: &Value) -> HttpReply {
    let status: u16 = match &res["statusCode"] {
        Value::String(s) => s.parse().unwrap_or(500),
        Value::Number(n) => n.as_u64().unwrap_or(500) as u16,
        _ => 200,
    };
    let body = match &res["body"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other @ (Value::Object(_) | Value::Array(_)) => {
            serde_json::to_string_pretty(other).unwrap()
        }
        other => other.to_string(),
    };
    let mut headers = BTreeMap::new();
    if let Some(map) = res["headers"].as_object() {
        for (k, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            headers.insert(k.to_ascii_lowercase(), value);
        }
    }
    if let Some(length) = headers.get("content-length") {
        if length.parse::<usize>().ok() != Some(body.len()) {
            return HttpReply::server_error(&format!(
                "Kestrel: response Content-Length mismatch ({length} declared, {} written)",
                body.len()
            ));
        }
    }
    HttpReply {
        status,
        headers,
        body,
    }
}

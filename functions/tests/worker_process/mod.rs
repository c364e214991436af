//! `flowforge worker` as a real process on loopback against the shared Azurite, killed when
//! dropped; for the tests that use the binary as the web app and the official clients do.
// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flowforge_azure::azurite;

/// A running worker and its API's base URL.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:<port>/api/`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a worker on task hub `hub` of the shared Azurite with API key `key` and extra
    /// arguments, and waits for its API to answer.
    pub async fn start(hub: &str, key: &str, extra: &[&str]) -> Self {
        Self::start_on(&azurite::shared().connection_string(), hub, key, extra).await
    }

    /// [`Server::start`] on the storage account of `connection`.
    pub async fn start_on(connection: &str, hub: &str, key: &str, extra: &[&str]) -> Self {
        Self::start_with_env(connection, hub, key, extra, &[]).await
    }

    /// [`Server::start_on`] with extra environment variables.
    pub async fn start_with_env(
        connection: &str,
        hub: &str,
        key: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_flowforge"))
            .args(["worker", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .envs(env.iter().copied())
            .env("AzureWebJobsStorage", connection)
            .env("FLOWFORGE_TASK_HUB", hub)
            .env("FLOWFORGE_LAKE_ROOT", hub)
            .env("FLOWFORGE_API_KEY", key)
            .env("FLOWFORGE_MAX_IDLE_POLL_SECS", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}/api/"),
        };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http
                .get(format!("{}openapi.json", server.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the worker never answered");
    }
}

impl Server {
    /// Polls `GET instances/{id}` with the API key until the instance has finished (200),
    /// as the web app does; its status.
    pub async fn finished(&self, key: &str, id: &str, within: Duration) -> serde_json::Value {
        let http = reqwest::Client::new();
        flowforge_orchestrator::testing::eventually(&format!("{id} finished"), within, || async {
            let reply = http
                .get(format!("{}instances/{id}", self.base))
                .header("x-functions-key", key)
                .send()
                .await
                .ok()?;
            (reply.status() == 200).then_some(())?;
            reply.json::<serde_json::Value>().await.ok()
        })
        .await
    }
}

/// Puts committed sample files (`data/sample/<local>`) into the landing container of task
/// hub `hub`'s lake on the shared Azurite (the worker's lake is the same account), as
/// `(name in landing, local)` pairs.
pub async fn land_sample(hub: &str, files: &[(&str, &str)]) {
    let lake = flowforge_activities::DataLake::from_config(&azurite::shared().config(hub))
        .unwrap()
        .with_tables_root(hub);
    lake.ensure_containers().await.unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    for (name, local) in files {
        let bytes = std::fs::read(root.join(local)).unwrap();
        lake.put("landing", name, bytes).await.unwrap();
    }
}

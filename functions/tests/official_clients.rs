//! The official Durable Functions clients, unchanged, against a real `flowforge worker` on
//! Azurite: the JavaScript client (`durable-functions`, from npm) in its URL-template mode
//! with the key as the required `code` parameter and in its `rpcBaseUrl` mode, and the
//! Python client (`azure-functions-durable`, from PyPI), which has only the `rpcBaseUrl`
//! mode. The `rpcBaseUrl` mode talks to the worker's `--local-rpc` listener: no key,
//! loopback only, as the Functions host serves the extension's local endpoint.
//!
//! The scripts in `tests/clients/` make every call the clients have and assert what they
//! get back; `scripts/test` installs both clients (npm ci; a venv in `.venv` from `tests/requirements.txt`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod worker_process;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use worker_process::{free_port, Server};

const KEY: &str = "clients-key-7";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client script to its end; its output is shown, and it must exit 0.
fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{} {args:?} failed",
        program.display()
    );
    stdout
}

fn python() -> PathBuf {
    let python = std::env::var("FLOWFORGE_PYTHON")
        .map_or_else(|_| root().join(".venv/bin/python"), PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which installs the Python client",
        python.display()
    );
    python
}

async fn worker(hub: &str) -> (Server, String) {
    let rpc_port = free_port();
    let server = Server::start(hub, KEY, &["--local-rpc", &format!("127.0.0.1:{rpc_port}")]).await;
    (server, format!("http://127.0.0.1:{rpc_port}/api/"))
}

async fn history_of(server: &Server, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}instances/{id}?showHistory=true&showHistoryOutput=true&code={KEY}",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_client_in_both_modes() {
    let (server, rpc) = worker("jsclient").await;
    let node = PathBuf::from("node");
    let js = script("js_client.mjs");
    let keyed = run(
        &node,
        &[
            js.to_str().unwrap(),
            "url-template",
            &server.base,
            KEY,
            "js-tpl",
        ],
    );
    assert!(keyed.contains("all calls agree"), "{keyed}");
    let local = run(&node, &[js.to_str().unwrap(), "rpc", &rpc, "", "js-rpc"]);
    assert!(local.contains("all calls agree"), "{local}");
    // What the client saw agrees with the engine's own history.
    let status = history_of(&server, "js-tpl-approve").await;
    assert_eq!(status["output"], "approved by ada");
    let raised: Vec<&Value> = status["historyEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["EventType"] == "EventRaised")
        .collect();
    assert_eq!(raised.len(), 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_through_the_local_endpoint() {
    let (server, rpc) = worker("pyclient").await;
    let out = run(
        &python(),
        &[script("py_client.py").to_str().unwrap(), &rpc, "py"],
    );
    assert!(out.contains("all calls agree"), "{out}");
    // The input arrived encoded twice and was stored as sent; the orchestration decoded it.
    let status = history_of(&server, "py-demo").await;
    assert_eq!(status["output"]["total"], 11264, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_endpoint_refuses_a_non_loopback_address() {
    let out = Command::new(env!("CARGO_BIN_EXE_flowforge"))
        .args(["worker", "--in-memory", "--local-rpc", "0.0.0.0:17071"])
        .env("FLOWFORGE_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_and_the_route_handler_example() {
    let tsc = root().join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "npm ci installs TypeScript (scripts/test runs it)"
    );
    run(&tsc, &["-p", "clients/typescript"]);
    run(&tsc, &["-p", "examples/nextjs"]);
    let server = Server::start("tsclient", KEY, &[]).await;
    let out = Command::new("node")
        .args(["--test", "clients/typescript/test/"])
        .current_dir(root())
        .env("FLOWFORGE_BASE", &server.base)
        .env("FLOWFORGE_KEY", KEY)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "node --test failed");
    assert!(report.contains("# pass 5"), "five tests passed: {report}");
}

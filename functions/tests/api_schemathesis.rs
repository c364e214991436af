//! Schemathesis, the property-based OpenAPI fuzzer, over the whole API of a real
//! `flowforge worker` on Azurite, with a bounded budget: every check (no 5xx, no status or
//! content type the document does not list, bodies that match their schemas, schema-valid
//! requests accepted and invalid ones refused, the key enforced) on examples, coverage,
//! fuzzing and stateful sequences. `FLOWFORGE_SCHEMATHESIS_EXAMPLES` (20) and
//! `FLOWFORGE_SCHEMATHESIS_SEED` (fixed, so a failure reproduces) widen or vary it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod worker_process;

use std::path::Path;
use std::process::Command;

use worker_process::Server;

const KEY: &str = "fuzz-key-11";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_over_the_whole_api() {
    let server = Server::start("schemathesis", KEY, &[]).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let binary = root.join(".venv/bin/schemathesis");
    assert!(
        binary.exists(),
        "{} is missing: run scripts/test, which installs it",
        binary.display()
    );
    let examples = std::env::var("FLOWFORGE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".into());
    let seed = std::env::var("FLOWFORGE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261202".into());
    let out = Command::new(&binary)
        .arg("--config-file")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml"))
        .args(["run", &format!("{}openapi.json", server.base)])
        .args(["--header", &format!("x-functions-key: {KEY}")])
        .args([
            "--checks",
            "all",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
        ])
        .args([
            "--phases",
            "examples,coverage,fuzzing,stateful",
            // One worker: schemathesis's workers are threads, and CPython 3.11's AST builder
            // keeps its recursion depth in shared state, so two threads describing lambdas at
            // once fail with "AST constructor recursion depth mismatch" (python/cpython#106905),
            // an error in the fuzzer, not in the API (seen once in CI).
            "--workers",
            "1",
        ])
        .args(["--request-timeout", "60", "--no-color"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "schemathesis found failures (seed {seed})"
    );
    assert!(report.contains(" passed"), "{report}");
}

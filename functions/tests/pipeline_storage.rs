//! `flowforge pipeline --storage <connection string>` runs on that account and leaves the
//! outputs there (it used to ignore the flag and throw a private Azurite away).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use flowforge_azure::azurite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_runs_on_the_account_it_is_given_and_leaves_its_outputs() {
    let shared = azurite::shared();
    let landing = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    let out = Command::new(env!("CARGO_BIN_EXE_flowforge"))
        .args([
            "pipeline",
            "--job-id",
            "given-account-1",
            "--task-hub",
            "pipelinegiven",
        ])
        .arg("--landing")
        .arg(&landing)
        .arg("--storage")
        .arg(shared.connection_string())
        .env_remove("AzureWebJobsStorage")
        .env("FLOWFORGE_LAKE_ROOT", "pipelinegiven")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("on the configured storage account"),
        "{stdout}"
    );
    assert!(!stdout.contains("Azurite up"), "{stdout}");
    // The outputs are on the given account, after the process has gone.
    let lake = flowforge_activities::DataLake::from_config(&shared.config("pipelinegiven"))
        .unwrap()
        .with_tables_root("pipelinegiven");
    let gold = lake.list("gold", "pipelinegiven/").await.unwrap();
    for written in [
        "pipelinegiven/flights/carrier_month/_delta_log/00000000000000000000.json",
        "pipelinegiven/_catalog/flights/carrier_month/runs/given-account-1.json",
        "pipelinegiven/_lineage/flights/given-account-1.json",
    ] {
        assert!(
            gold.iter().any(|name| name == written),
            "{written}: {gold:?}"
        );
    }
}

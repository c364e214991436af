//! Lint-level checks of the infrastructure files (the Bicep CLI is not available here, so
//! `main.bicep` is not compiled: see deploy/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn bicep() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/main.bicep")).unwrap()
}

#[test]
fn main_bicep_is_balanced_and_declares_what_the_app_needs() {
    let text = bicep();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    for (open, close) in [('{', '}'), ('[', ']'), ('(', ')')] {
        assert_eq!(
            code.matches(open).count(),
            code.matches(close).count(),
            "unbalanced {open}{close}"
        );
    }
    assert_eq!(code.matches('\'').count() % 2, 0, "unbalanced quotes");
    for needle in [
        "isHnsEnabled: true",
        "allowSharedKeyAccess: false",
        "'landing', 'bronze', 'silver', 'gold', 'rejects'",
        "kind: 'functionapp,linux'",
        "type: 'SystemAssigned'",
        "'FUNCTIONS_WORKER_RUNTIME', value: 'custom'",
        "Microsoft.Insights/components",
        // The host's identity-based connection, read by the engine too.
        "'AzureWebJobsStorage__accountName', value: storage.name",
        "'AzureWebJobsStorage__credential', value: 'managedidentity'",
        // Run from the package blob with the app's identity.
        "'WEBSITE_RUN_FROM_PACKAGE', value: packageUri",
        "'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID', value: 'SystemAssigned'",
        "'AzureFunctionsJobHost__functionTimeout', value: functionTimeout",
        "@allowed(['ElasticPremium', 'FlexConsumption'])",
        "runtime: { name: 'custom', version: '1.0' }",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b", // Storage Blob Data Owner (the host's blobs)
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88", // Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", // Storage Table Data Contributor
        // Landing files start runs: the system topic, the subscription to the function,
        // BlobCreated in landing only, dead letters with the topic's identity.
        "Microsoft.EventGrid/systemTopics@",
        "topicType: 'Microsoft.Storage.StorageAccounts'",
        "endpointType: 'AzureFunction'",
        "resourceId: '${app.id}/functions/LandingBlobCreated'",
        "includedEventTypes: ['Microsoft.Storage.BlobCreated']",
        "subjectBeginsWith: '/blobServices/default/containers/landing/blobs/'",
        "deadLetterWithResourceIdentity",
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe", // Storage Blob Data Contributor (dead letters)
    ] {
        assert!(text.contains(needle), "main.bicep lacks {needle}");
    }
    // Settings that would break a keyless account or that nothing reads.
    for absent in [
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "AccountKey",
        "AZURE_CREDENTIAL_KIND",
        "FLOWFORGE_API_KEY",
        "Microsoft.KeyVault",
    ] {
        assert!(!code.contains(absent), "main.bicep sets {absent}");
    }
    // Every FLOWFORGE_ setting it writes is one the handler reads.
    let handler = [
        include_str!("../src/storage.rs"),
        include_str!("../src/serve_command.rs"),
    ]
    .concat();
    for setting in code.split('\'').filter(|s| s.starts_with("FLOWFORGE_")) {
        assert!(handler.contains(setting), "{setting} is read by nothing");
    }
    for line in text.lines().filter(|l| l.starts_with("resource ")) {
        assert!(
            line.contains('@') && line.contains(" = "),
            "resource without type@apiVersion: {line}"
        );
    }
}

/// The alerts and the workbook query metrics the engine emits, under the names it emits
/// them (a renamed metric would leave an alert that never fires).
#[test]
fn alerts_and_the_workbook_read_the_metrics_the_engine_emits() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = bicep();
    for needle in [
        "Microsoft.OperationalInsights/workspaces@",
        "WorkspaceResourceId: logs.id",
        "Microsoft.Insights/scheduledQueryRules@",
        "Microsoft.Insights/actionGroups@",
        "Microsoft.Insights/workbooks@",
        "serializedData: loadTextContent('workbook.json')",
        "name: 'failure-rate'",
        "name: 'dead-letters'",
        "name: 'queue-age'",
    ] {
        assert!(text.contains(needle), "main.bicep lacks {needle}");
    }
    let workbook = std::fs::read_to_string(format!("{root}/deploy/workbook.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&workbook).unwrap();
    let titles: Vec<&str> = parsed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["content"]["title"].as_str())
        .collect();
    assert!(
        titles.iter().any(|t| t.starts_with("Runs by final status")),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t.starts_with("Slowest activities")),
        "{titles:?}"
    );
    let emitted = std::fs::read_to_string(format!("{root}/orchestrator/src/telemetry/metrics.rs"))
        .unwrap()
        + &std::fs::read_to_string(format!("{root}/orchestrator/src/telemetry/mod.rs")).unwrap();
    let mut referenced = 0;
    for source in [&text, &workbook] {
        for (at, _) in source.match_indices("flowforge.") {
            let name: String = source[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            let name = name.trim_end_matches('.');
            if name.contains('.') && name != "flowforge." {
                referenced += 1;
                assert!(
                    emitted.contains(&format!("\"{name}\"")),
                    "{name} is queried but not emitted"
                );
            }
        }
    }
    assert!(referenced >= 6, "{referenced}");
    // Activity spans are `activity:{name}` (requests in Application Insights).
    let spans =
        std::fs::read_to_string(format!("{root}/orchestrator/src/telemetry/spans.rs")).unwrap();
    assert!(
        workbook.contains("startswith \\\"activity:\\\"")
            && spans.contains("format!(\"activity:{}\"")
    );
}

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
        "'landing', 'bronze', 'silver', 'gold'",
        "kind: 'functionapp,linux'",
        "type: 'SystemAssigned'",
        "'FUNCTIONS_WORKER_RUNTIME', value: 'custom'",
        "Microsoft.Insights/components",
        "@Microsoft.KeyVault(SecretUri=",
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", // Storage Table Data Contributor
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88", // Storage Queue Data Contributor
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe", // Storage Blob Data Contributor
    ] {
        assert!(text.contains(needle), "main.bicep lacks {needle}");
    }
    for line in text.lines().filter(|l| l.starts_with("resource ")) {
        assert!(
            line.contains('@') && line.contains(" = "),
            "resource without type@apiVersion: {line}"
        );
    }
}

//! The `flowforge` binary's library: the management API, the standalone worker command,
//! the client commands and the demonstration orchestration. `main.rs` only parses the
//! command line.

pub mod api;
pub mod client_command;
pub mod demo;
pub mod host;
pub mod lake_command;
pub mod landing_events;
#[cfg(all(test, target_arch = "x86_64", not(target_env = "musl")))]
mod native_memcpy;
pub mod pipeline_command;
pub mod schedules;
pub mod serve_command;
pub mod shutdown;
pub mod storage;
pub mod worker_command;

use flowforge_activities::DataLake;
use flowforge_orchestrator::registry::Registry;

/// Every orchestration and activity this app runs; the medallion pipeline needs the data
/// lake (Blob Storage), so it is registered only with one. The chained runs declared in
/// `FLOWFORGE_CHAINS` (a JSON array, see README "Triggers") are added; a bad declaration
/// is an error that names it.
pub fn app_registry(lake: Option<DataLake>) -> anyhow::Result<Registry> {
    let registry = match lake {
        Some(lake) => flowforge_activities::register(demo::registry(), lake),
        None => demo::registry(),
    };
    let registry = if std::env::var("FLOWFORGE_HARNESS_ORCHESTRATIONS").is_ok_and(|v| v == "1") {
        demo::with_harness_orchestrations(registry)
    } else {
        registry
    };
    let declared = std::env::var("FLOWFORGE_CHAINS").unwrap_or_default();
    with_chains(registry, &declared).map_err(anyhow::Error::msg)
}

/// Adds the chains of a JSON array (empty text: none), checked: valid names, end statuses,
/// and orchestrations the registry has.
pub fn with_chains(mut registry: Registry, json: &str) -> Result<Registry, String> {
    if json.trim().is_empty() {
        return Ok(registry);
    }
    let chains: Vec<flowforge_orchestrator::chain::Chain> =
        serde_json::from_str(json).map_err(|e| format!("FLOWFORGE_CHAINS: {e}"))?;
    let known = registry.orchestration_names();
    for chain in chains {
        chain
            .validate()
            .map_err(|e| format!("FLOWFORGE_CHAINS: {e}"))?;
        for name in [&chain.after, &chain.start] {
            if !known.contains(name) {
                return Err(format!(
                    "FLOWFORGE_CHAINS: chain '{}' names '{name}', which is not a registered orchestration",
                    chain.name
                ));
            }
        }
        registry = registry.chain(chain);
    }
    refuse_cycles(registry.chains())?;
    Ok(registry)
}

/// A chain back to where it started would start runs for ever: refused.
fn refuse_cycles(chains: &[flowforge_orchestrator::chain::Chain]) -> Result<(), String> {
    for first in chains {
        let mut reached = vec![first.start.as_str()];
        let mut next = 0;
        while next < reached.len() {
            let from = reached[next];
            next += 1;
            if from == first.after {
                return Err(format!(
                    "FLOWFORGE_CHAINS: chain '{}' leads back to '{}' (a loop of runs)",
                    first.name, first.after
                ));
            }
            for chain in chains.iter().filter(|c| c.after == from) {
                if !reached.contains(&chain.start.as_str()) {
                    reached.push(&chain.start);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_checked_against_the_registry() {
        let registry = || app_registry(None).unwrap();
        let ok = r#"[{"name": "wait", "after": "demo", "start": "await_approval", "input": 60}]"#;
        assert_eq!(with_chains(registry(), ok).unwrap().chains().len(), 1);
        let again = r#"[{"name": "again", "after": "demo", "start": "demo"}]"#;
        let error = with_chains(registry(), again).err().unwrap();
        assert!(error.contains("loop"), "{error}");
        let round = r#"[{"name": "a", "after": "demo", "start": "await_approval"},
                        {"name": "b", "after": "await_approval", "start": "demo"}]"#;
        assert!(with_chains(registry(), round)
            .err()
            .unwrap()
            .contains("loop"));
        let unknown = r#"[{"name": "x", "after": "demo", "start": "nope"}]"#;
        let error = with_chains(registry(), unknown).err().unwrap();
        assert!(error.contains("'nope'"), "{error}");
        let running =
            r#"[{"name": "x", "after": "demo", "start": "await_approval", "on": ["Running"]}]"#;
        assert!(with_chains(registry(), running).is_err());
        let bad = with_chains(registry(), "not json").err().unwrap();
        assert!(bad.starts_with("FLOWFORGE_CHAINS"), "{bad}");
        assert!(with_chains(registry(), " ").unwrap().chains().is_empty());
    }
}

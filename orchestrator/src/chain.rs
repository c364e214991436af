//! Chained runs: "when orchestration A ends (with one of these statuses, optionally with an
//! output that matches), start B with an input built from A's". Declared in the registry,
//! carried out by the runtime as part of A's final commit: B's start is one of the messages
//! that commit decides, so a worker that dies before sending it re-sends it when A's
//! message comes back, and B's deterministic id with the start condition "absent" makes a
//! second start a no-op. Pure: which chains fire, B's id and B's input.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::{InstanceState, RuntimeStatus};

/// One chained run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    /// Name (letters, digits, `-`, `_`); part of B's instance id.
    pub name: String,
    /// A: the orchestration whose end fires the chain.
    pub after: String,
    /// The statuses of A that fire it (default: Completed).
    #[serde(default = "completed_only")]
    pub on: Vec<RuntimeStatus>,
    /// Only when A's output has this value at this JSON pointer.
    #[serde(default)]
    pub when: Option<OutputMatch>,
    /// B: the orchestration to start.
    pub start: String,
    /// B's input: any JSON, where the string `"{{output}}"` becomes A's output,
    /// `"{{output/<pointer>}}"` the value there, `"{{input/<pointer>}}"` the value in A's
    /// input, and `{{instanceId}}` inside a string A's instance id. Absent: A's output.
    #[serde(default)]
    pub input: Option<Value>,
}

/// A simple condition on A's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputMatch {
    /// A JSON pointer into the output (`/status`).
    pub pointer: String,
    /// The value it must have.
    pub equals: Value,
}

fn completed_only() -> Vec<RuntimeStatus> {
    vec![RuntimeStatus::Completed]
}

impl Chain {
    /// Checks a declared chain.
    pub fn validate(&self) -> Result<(), String> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !plain(&self.name) {
            return Err(format!(
                "chain name '{}' must be letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.after.is_empty() || self.start.is_empty() {
            return Err(format!("chain '{}' needs 'after' and 'start'", self.name));
        }
        if self.on.is_empty() || self.on.iter().any(|s| !s.is_terminal()) {
            return Err(format!(
                "chain '{}': 'on' must list end statuses (Completed, Failed, Terminated)",
                self.name
            ));
        }
        Ok(())
    }

    /// Whether A's end (its state row as committed) fires this chain.
    pub fn fires_for(&self, a: &InstanceState) -> bool {
        self.fires_on(&a.name, a.status, &a.output)
    }

    /// Whether an end of orchestration `name` with this status and output fires it.
    pub fn fires_on(&self, name: &str, status: RuntimeStatus, output: &Value) -> bool {
        name == self.after
            && self.on.contains(&status)
            && self
                .when
                .as_ref()
                .is_none_or(|m| output.pointer(&m.pointer) == Some(&m.equals))
    }

    /// B's instance id: `<A>-then-<chain>`, the same for every re-send of A's end (a name
    /// GUID when that would be too long for an instance id).
    pub fn instance_id(&self, a: &InstanceState) -> String {
        self.instance_id_after(&a.instance_id)
    }

    /// B's instance id after instance `a_id` (see [`Chain::instance_id`]).
    pub fn instance_id_after(&self, a_id: &str) -> String {
        let id = format!("{a_id}-then-{}", self.name);
        if id.len() <= 200 {
            id
        } else {
            let guid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes());
            format!("then-{}-{guid}", self.name)
        }
    }

    /// B's execution id: derived from A's execution, so every re-send is the same start.
    pub fn execution_id(&self, a: &InstanceState) -> String {
        let key = format!("{}|{}|then|{}", a.instance_id, a.execution_id, self.name);
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string()
    }

    /// B's input, built from A.
    pub fn input_for(&self, a: &InstanceState) -> Value {
        match &self.input {
            None => a.output.clone(),
            Some(template) => fill(template, a),
        }
    }
}

fn fill(template: &Value, a: &InstanceState) -> Value {
    match template {
        Value::String(text) => {
            if text == "{{output}}" {
                return a.output.clone();
            }
            if let Some(pointer) = text
                .strip_prefix("{{output")
                .and_then(|r| r.strip_suffix("}}"))
            {
                return a.output.pointer(pointer).cloned().unwrap_or(Value::Null);
            }
            if let Some(pointer) = text
                .strip_prefix("{{input")
                .and_then(|r| r.strip_suffix("}}"))
            {
                return a.input.pointer(pointer).cloned().unwrap_or(Value::Null);
            }
            Value::String(text.replace("{{instanceId}}", &a.instance_id))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, a)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, a))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::StartInfo;
    use serde_json::json;

    fn ended(status: RuntimeStatus, output: Value) -> InstanceState {
        let started = StartInfo::new(
            "medallion",
            "e1",
            json!({"workflow_id": "w-7", "job_id": "j"}),
        )
        .into_event();
        InstanceState {
            status,
            output,
            ..InstanceState::started("run-1", &started, chrono::Utc::now())
        }
    }

    fn chain(json: Value) -> Chain {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fires_on_the_declared_statuses_and_condition_only() {
        let plain = chain(json!({"name": "publish", "after": "medallion", "start": "publish"}));
        assert!(plain.fires_for(&ended(RuntimeStatus::Completed, json!({}))));
        assert!(!plain.fires_for(&ended(RuntimeStatus::Failed, json!({}))));
        let guarded = chain(
            json!({"name": "big", "after": "medallion", "start": "publish",
            "on": ["Completed", "Failed"], "when": {"pointer": "/gold/ok", "equals": true}}),
        );
        assert!(guarded.fires_for(&ended(RuntimeStatus::Failed, json!({"gold": {"ok": true}}))));
        assert!(!guarded.fires_for(&ended(
            RuntimeStatus::Completed,
            json!({"gold": {"ok": false}})
        )));
        let other = chain(json!({"name": "x", "after": "other", "start": "publish"}));
        assert!(!other.fires_for(&ended(RuntimeStatus::Completed, json!({}))));
    }

    #[test]
    fn the_input_is_built_from_a_and_the_ids_are_stable() {
        let c = chain(
            json!({"name": "publish", "after": "medallion", "start": "publish",
            "input": {"rows": "{{output/gold/rows}}", "workflow_id": "{{input/workflow_id}}",
                      "note": "after {{instanceId}}", "all": "{{output}}"}}),
        );
        let a = ended(RuntimeStatus::Completed, json!({"gold": {"rows": 185}}));
        assert_eq!(
            c.input_for(&a),
            json!({"rows": 185, "workflow_id": "w-7", "note": "after run-1",
                   "all": {"gold": {"rows": 185}}})
        );
        assert_eq!(c.instance_id(&a), "run-1-then-publish");
        assert_eq!(c.execution_id(&a), c.execution_id(&a));
        let bare = chain(json!({"name": "p", "after": "medallion", "start": "publish"}));
        assert_eq!(bare.input_for(&a), json!({"gold": {"rows": 185}}));
    }

    #[test]
    fn bad_declarations_are_refused() {
        let running = chain(json!({"name": "p", "after": "a", "start": "b", "on": ["Running"]}));
        assert!(running.validate().is_err());
        let named = chain(json!({"name": "a b", "after": "a", "start": "b"}));
        assert!(named.validate().is_err());
        assert!(serde_json::from_value::<Chain>(json!({"name": "p", "after": "a"})).is_err());
    }
}

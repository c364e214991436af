//! Orchestrations and activities registered by name (and version), written as plain async
//! Rust functions with serde-typed inputs and outputs.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::context::OrchestrationContext;
use crate::history::{FailureDetails, FailureKind};

/// The future of an orchestration run: local (not `Send`), polled by the replay engine.
pub type OrchestrationFuture = Pin<Box<dyn Future<Output = Result<Value, FailureDetails>>>>;
/// A type-erased orchestration.
pub type OrchestrationFn =
    Arc<dyn Fn(OrchestrationContext, Value) -> OrchestrationFuture + Send + Sync>;
/// The future of an activity run (`Send`: activities run on the tokio pool).
pub type ActivityFuture = Pin<Box<dyn Future<Output = Result<Value, FailureDetails>> + Send>>;
/// A type-erased activity.
pub type ActivityFn = Arc<dyn Fn(ActivityContext, Value) -> ActivityFuture + Send + Sync>;

/// What an activity knows about its invocation.
#[derive(Debug, Clone)]
pub struct ActivityContext {
    /// The orchestration instance that scheduled it.
    pub instance_id: String,
    /// The activity name.
    pub name: String,
    /// The `ActivityScheduled` id in the instance's history.
    pub scheduled_id: u64,
    /// How many times this work item was delivered (1 on the first try).
    pub delivery_count: u32,
    /// The W3C trace context of the instance, if any.
    pub trace_parent: Option<String>,
}

/// The registered orchestrations and activities.
#[derive(Clone, Default)]
pub struct Registry {
    /// name → versions in registration order (the last one is the latest).
    orchestrations: HashMap<String, Vec<(String, OrchestrationFn)>>,
    activities: HashMap<String, Vec<(String, ActivityFn)>>,
    /// Runs that start runs (see [`crate::chain`]).
    chains: Vec<crate::chain::Chain>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an orchestration: `async fn(ctx, input: I) -> Result<O, FailureDetails>`.
    pub fn orchestration<I, O, F, Fut>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned + 'static,
        O: Serialize + 'static,
        F: Fn(OrchestrationContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, FailureDetails>> + 'static,
    {
        self.orchestration_version(name, "", f)
    }

    /// Registers a version of an orchestration; the last registered version is the default.
    pub fn orchestration_version<I, O, F, Fut>(mut self, name: &str, version: &str, f: F) -> Self
    where
        I: DeserializeOwned + 'static,
        O: Serialize + 'static,
        F: Fn(OrchestrationContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, FailureDetails>> + 'static,
    {
        let f = Arc::new(f);
        let erased: OrchestrationFn = Arc::new(move |ctx, input| {
            // Its input may come from a client that encodes it once more.
            let typed = decode_input::<I>(input, crate::history::decode_client_value);
            let f = f.clone();
            Box::pin(async move { encode_output(f(ctx, typed?).await) })
        });
        self.orchestrations
            .entry(name.to_owned())
            .or_default()
            .push((version.to_owned(), erased));
        self
    }

    /// Registers an activity: `async fn(ctx, input: I) -> Result<O, FailureDetails>`.
    pub fn activity<I, O, F, Fut>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(ActivityContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, FailureDetails>> + Send + 'static,
    {
        self.activity_version(name, "", f)
    }

    /// Registers a version of an activity.
    pub fn activity_version<I, O, F, Fut>(mut self, name: &str, version: &str, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(ActivityContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, FailureDetails>> + Send + 'static,
    {
        let f = Arc::new(f);
        let erased: ActivityFn = Arc::new(move |ctx, input| {
            let typed = decode_input::<I>(input, serde_json::from_value);
            let f = f.clone();
            Box::pin(async move { encode_output(f(ctx, typed?).await) })
        });
        self.activities
            .entry(name.to_owned())
            .or_default()
            .push((version.to_owned(), erased));
        self
    }

    /// Finds an orchestration; an empty version means the latest.
    pub fn find_orchestration(&self, name: &str, version: &str) -> Option<OrchestrationFn> {
        find(&self.orchestrations, name, version)
    }

    /// Finds an activity; an empty version means the latest.
    pub fn find_activity(&self, name: &str, version: &str) -> Option<ActivityFn> {
        find(&self.activities, name, version)
    }

    /// Whether an orchestration of this name is registered.
    pub fn has_orchestration(&self, name: &str) -> bool {
        self.orchestrations.contains_key(name)
    }

    /// Declares a chained run: when `chain.after` ends as declared, `chain.start` starts.
    pub fn chain(mut self, chain: crate::chain::Chain) -> Self {
        self.chains.push(chain);
        self
    }

    /// The declared chains.
    pub fn chains(&self) -> &[crate::chain::Chain] {
        &self.chains
    }

    /// Registered orchestration names, sorted.
    pub fn orchestration_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.orchestrations.keys().cloned().collect();
        names.sort();
        names
    }
}

fn find<T: Clone>(map: &HashMap<String, Vec<(String, T)>>, name: &str, version: &str) -> Option<T> {
    let versions = map.get(name)?;
    if version.is_empty() {
        return versions.last().map(|(_, f)| f.clone());
    }
    versions
        .iter()
        .find(|(v, _)| v == version)
        .map(|(_, f)| f.clone())
}

fn decode_input<I: DeserializeOwned>(
    input: Value,
    decode: fn(Value) -> Result<I, serde_json::Error>,
) -> Result<I, FailureDetails> {
    decode(input).map_err(|e| {
        FailureDetails::of(
            FailureKind::InputDeserialization,
            format!("cannot decode input: {e}"),
        )
    })
}

fn encode_output<O: Serialize>(output: Result<O, FailureDetails>) -> Result<Value, FailureDetails> {
    serde_json::to_value(output?).map_err(|e| {
        FailureDetails::of(
            FailureKind::OutputSerialization,
            format!("cannot encode output: {e}"),
        )
    })
}

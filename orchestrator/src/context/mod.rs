//! The orchestration context: the only door through which orchestration code touches the
//! world. Every operation is recorded in (or replayed from) history, so the code stays
//! deterministic across replays.

mod durable_future;
mod retry;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use durable_future::{DurableFuture, FirstOf, JoinAll};
pub use retry::{RetryPolicy, RetryPredicate};

use crate::history::{EventKind, FailureDetails, FailureKind};
use crate::replay::state::{Completion, ReplayState, Source};
use crate::replay::Action;

/// Namespace of the deterministic GUIDs (`new_guid`), a fixed random UUID.
const GUID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_41a2_93c4_4d0e_9a51_1f0c_2d7e_5b38);

/// Handle given to orchestration code. Cheap to clone; not `Send` (an orchestration runs
/// on the replaying thread only).
#[derive(Clone)]
pub struct OrchestrationContext {
    state: Rc<RefCell<ReplayState>>,
}

/// Result of a durable task: the typed output, or why it failed.
pub type TaskResult<T> = Result<T, FailureDetails>;

impl OrchestrationContext {
    pub(crate) fn new(state: Rc<RefCell<ReplayState>>) -> Self {
        Self { state }
    }

    /// This instance's id.
    pub fn instance_id(&self) -> String {
        self.state.borrow().instance_id.clone()
    }

    /// This execution's id (changes with continue-as-new and restart).
    pub fn execution_id(&self) -> String {
        self.state.borrow().execution_id.clone()
    }

    /// Replay-safe current time: the start time of the episode being replayed.
    pub fn utc_now(&self) -> DateTime<Utc> {
        self.state.borrow().current_time
    }

    /// True while the code re-runs history it has already recorded (use it to skip logging).
    pub fn is_replaying(&self) -> bool {
        self.state.borrow().is_replaying
    }

    /// A deterministic GUID, name-based on instance id, episode time and a counter.
    pub fn new_guid(&self) -> uuid::Uuid {
        let mut state = self.state.borrow_mut();
        state.guid_counter += 1;
        let name = format!(
            "{}|{}|{}|{}",
            state.instance_id,
            state.execution_id,
            state.current_time.to_rfc3339(),
            state.guid_counter
        );
        uuid::Uuid::new_v5(&GUID_NAMESPACE, name.as_bytes())
    }

    /// Sets the custom status a client sees while the instance runs (small JSON).
    pub fn set_custom_status(&self, status: impl Serialize) {
        self.state.borrow_mut().custom_status = to_value(status);
    }

    /// Ends this execution and starts a new one with `input` and a fresh history once the
    /// code returns. External events not yet received carry over to the new execution.
    pub fn continue_as_new(&self, input: impl Serialize) {
        self.state.borrow_mut().continue_as_new = Some(to_value(input));
    }

    /// Calls an activity by name (latest version).
    pub fn call_activity<O: DeserializeOwned + 'static>(
        &self,
        name: &str,
        input: impl Serialize,
    ) -> DurableFuture<TaskResult<O>> {
        self.call_activity_version(name, "", input)
    }

    /// Calls a given version of an activity.
    pub fn call_activity_version<O: DeserializeOwned + 'static>(
        &self,
        name: &str,
        version: &str,
        input: impl Serialize,
    ) -> DurableFuture<TaskResult<O>> {
        let input = to_value(input);
        let id = self.state.borrow_mut().record_action(|id| {
            (
                EventKind::ActivityScheduled {
                    id,
                    name: name.to_owned(),
                    version: version.to_owned(),
                    input: input.clone(),
                },
                Action::ScheduleActivity {
                    id,
                    name: name.to_owned(),
                    version: version.to_owned(),
                    input,
                },
            )
        });
        DurableFuture::leaf(self.state.clone(), Source::Task(id), decode::<O>)
    }

    /// Calls an activity, retrying failures as `policy` says; the waits are durable timers.
    pub fn call_activity_with_retry<O: DeserializeOwned + 'static>(
        &self,
        name: &str,
        input: impl Serialize,
        policy: RetryPolicy,
    ) -> DurableFuture<TaskResult<O>> {
        let ctx = self.clone();
        let name = name.to_owned();
        let input = to_value(input);
        self.with_retry(policy, move || ctx.call_activity::<O>(&name, input.clone()))
    }

    /// Starts a sub-orchestration and waits for its output. Without an instance id, one is
    /// derived deterministically from this instance's id and the action id.
    pub fn call_sub_orchestration<O: DeserializeOwned + 'static>(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: impl Serialize,
    ) -> DurableFuture<TaskResult<O>> {
        let input = to_value(input);
        let parent = self.instance_id();
        let execution = self.execution_id();
        let id = self.state.borrow_mut().record_action(|id| {
            let child = instance_id.map_or_else(|| format!("{parent}:{id}"), str::to_owned);
            let child_execution = derived_id(&parent, &execution, id);
            (
                EventKind::SubOrchestrationScheduled {
                    id,
                    name: name.to_owned(),
                    version: String::new(),
                    instance_id: child.clone(),
                    input: input.clone(),
                },
                Action::StartSubOrchestration {
                    id,
                    name: name.to_owned(),
                    version: String::new(),
                    instance_id: child,
                    execution_id: child_execution,
                    input,
                },
            )
        });
        DurableFuture::leaf(self.state.clone(), Source::Task(id), decode::<O>)
    }

    /// A sub-orchestration with retries.
    pub fn call_sub_orchestration_with_retry<O: DeserializeOwned + 'static>(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: impl Serialize,
        policy: RetryPolicy,
    ) -> DurableFuture<TaskResult<O>> {
        let ctx = self.clone();
        let name = name.to_owned();
        let instance_id = instance_id.map(str::to_owned);
        let input = to_value(input);
        self.with_retry(policy, move || {
            ctx.call_sub_orchestration::<O>(&name, instance_id.as_deref(), input.clone())
        })
    }

    /// Starts another orchestration and does not wait for it. Returns its instance id.
    pub fn start_orchestration(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: impl Serialize,
    ) -> String {
        let input = to_value(input);
        let parent = self.instance_id();
        let execution = self.execution_id();
        let mut chosen = String::new();
        self.state.borrow_mut().record_action(|id| {
            let child = instance_id.map_or_else(|| format!("{parent}:{id}"), str::to_owned);
            chosen = child.clone();
            (
                EventKind::OrchestrationStartSent {
                    id,
                    name: name.to_owned(),
                    version: String::new(),
                    instance_id: child.clone(),
                    input: input.clone(),
                },
                Action::StartOrchestration {
                    id,
                    name: name.to_owned(),
                    version: String::new(),
                    instance_id: child,
                    execution_id: derived_id(&parent, &execution, id),
                    input,
                },
            )
        });
        chosen
    }

    /// Raises an event on another instance.
    pub fn send_event(&self, instance_id: &str, name: &str, input: impl Serialize) {
        let input = to_value(input);
        let me = self.instance_id();
        let execution = self.execution_id();
        self.state.borrow_mut().record_action(|id| {
            (
                EventKind::EventSent {
                    id,
                    instance_id: instance_id.to_owned(),
                    name: name.to_owned(),
                    input: input.clone(),
                },
                Action::SendEvent {
                    id,
                    instance_id: instance_id.to_owned(),
                    name: name.to_owned(),
                    input,
                    event_id: derived_id(&me, &execution, id),
                },
            )
        });
    }

    /// A durable timer that fires at `fire_at`.
    pub fn create_timer(&self, fire_at: DateTime<Utc>) -> DurableFuture<()> {
        let id = self.state.borrow_mut().record_action(|id| {
            (
                EventKind::TimerCreated { id, fire_at },
                Action::CreateTimer { id, fire_at },
            )
        });
        DurableFuture::leaf(self.state.clone(), Source::Task(id), |_| ())
    }

    /// A durable timer that fires `delay` after the replay-safe current time.
    pub fn sleep(&self, delay: Duration) -> DurableFuture<()> {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let fire_at = self
            .utc_now()
            .checked_add_signed(delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.create_timer(fire_at)
    }

    /// Waits for the next external event called `name`.
    pub fn wait_for_event<T: DeserializeOwned + 'static>(
        &self,
        name: &str,
    ) -> DurableFuture<TaskResult<T>> {
        let waiter = self.state.borrow_mut().add_waiter(name);
        DurableFuture::leaf(self.state.clone(), Source::Event(waiter), decode_event::<T>)
    }

    /// Waits for an event, at most `timeout`: `Ok(Some(data))`, or `Ok(None)` on timeout.
    /// On timeout the waiter is withdrawn, so a later event stays for the next waiter.
    pub fn wait_for_event_with_timeout<T: DeserializeOwned + 'static>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> DurableFuture<TaskResult<Option<T>>> {
        let event = self.wait_for_event::<T>(name);
        let timer = self.sleep(timeout);
        let event =
            DurableFuture::composite(self.state.clone(), async move { event.await.map(Some) });
        let timer = DurableFuture::composite(self.state.clone(), async move {
            timer.await;
            Ok(None)
        });
        let race = self.first_of(vec![event, timer]);
        DurableFuture::composite(self.state.clone(), async move { race.await.1 })
    }

    /// Waits for all futures; outputs in input order.
    pub fn join_all<T: 'static>(&self, futures: Vec<DurableFuture<T>>) -> JoinAll<T> {
        JoinAll::new(futures)
    }

    /// Waits for the first future to complete *in history order*: `(index, output)`.
    /// The others are dropped.
    pub fn first_of<T: 'static>(&self, futures: Vec<DurableFuture<T>>) -> FirstOf<T> {
        FirstOf::new(futures)
    }

    /// Wraps any future built from durable futures, so it can join a `first_of` race.
    pub fn durable<T: 'static>(
        &self,
        future: impl std::future::Future<Output = T> + 'static,
    ) -> DurableFuture<T> {
        DurableFuture::composite(self.state.clone(), future)
    }

    fn with_retry<O: 'static>(
        &self,
        policy: RetryPolicy,
        attempt: impl Fn() -> DurableFuture<TaskResult<O>> + 'static,
    ) -> DurableFuture<TaskResult<O>> {
        let ctx = self.clone();
        DurableFuture::composite(self.state.clone(), async move {
            let started = ctx.utc_now();
            let mut number = 1;
            loop {
                let failure = match attempt().await {
                    Ok(value) => return Ok(value),
                    Err(failure) => failure,
                };
                let wait = policy.delay_after(number);
                let elapsed = (ctx.utc_now() - started).to_std().unwrap_or_default() + wait;
                if !policy.should_retry(number, &failure, elapsed) {
                    return Err(failure);
                }
                ctx.sleep(wait).await;
                number += 1;
            }
        })
    }
}

/// Serialises an input; a value that cannot be serialised becomes a string saying why
/// (the activity then fails to decode it with a clear error instead of a panic here).
fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value)
        .unwrap_or_else(|e| Value::String(format!("<unserialisable input: {e}>")))
}

fn decode<O: DeserializeOwned>(completion: Completion) -> TaskResult<O> {
    let value = completion?;
    serde_json::from_value(value).map_err(|e| {
        FailureDetails::of(
            FailureKind::OutputDeserialization,
            format!("cannot decode result: {e}"),
        )
    })
}

/// Event data may come from a client that encodes it once more (history/client_json.rs).
fn decode_event<T: DeserializeOwned>(completion: Completion) -> TaskResult<T> {
    let value = completion?;
    crate::history::decode_client_value(value).map_err(|e| {
        FailureDetails::of(
            FailureKind::OutputDeserialization,
            format!("cannot decode the event's data: {e}"),
        )
    })
}

/// A deterministic id for something this execution starts or sends.
pub(crate) fn derived_id(instance_id: &str, execution_id: &str, action_id: u64) -> String {
    let name = format!("{instance_id}|{execution_id}|{action_id}");
    uuid::Uuid::new_v5(&GUID_NAMESPACE, name.as_bytes()).to_string()
}

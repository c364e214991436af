//! The client: start, query and control instances (the operations of the Durable Functions
//! client), over any backend.

mod dead_letters;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::backend::to_instance;
use crate::backend::{self, Backend, ETag, InstanceQuery, StartCondition};
use crate::clock::{Clock, SystemClock};
use crate::history::{EventKind, StartInfo};
use crate::ids;
use crate::status::{InstanceState, InstanceStatus, RuntimeStatus};

/// Instances a purge by filter deletes at once.
pub const PURGE_CONCURRENCY: usize = 8;

/// Errors of client operations; each maps to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad id, name or input). → 400
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// No such instance. → 404
    #[error("instance '{0}' does not exist")]
    NotFound(String),
    /// No dead letter with this id in the archive. → 404
    #[error("dead letter '{0}' does not exist")]
    DeadLetterNotFound(String),
    /// The instance already runs and the start policy refuses a second one. → 409
    #[error("instance '{id}' is already {status}")]
    AlreadyRunning {
        /// Instance id.
        id: String,
        /// Its status.
        status: RuntimeStatus,
    },
    /// The instance has finished and cannot take this operation. → 410
    #[error("instance '{id}' has already finished ({status})")]
    Finished {
        /// Instance id.
        id: String,
        /// Its status.
        status: RuntimeStatus,
    },
    /// The instance is still running and cannot be purged. → 409
    #[error("instance '{id}' is still {status}; terminate it before purging")]
    NotFinished {
        /// Instance id.
        id: String,
        /// Its status.
        status: RuntimeStatus,
    },
    /// Only a failed instance with a failed activity or sub-orchestration can be rewound.
    /// → 412
    #[error("instance '{id}' cannot be rewound: {why}")]
    NotRewindable {
        /// Instance id.
        id: String,
        /// Why not.
        why: String,
    },
    /// `wait_for_completion` ran out of time.
    #[error("instance '{id}' did not finish within {timeout:?} (last status {status})")]
    Timeout {
        /// Instance id.
        id: String,
        /// Time waited.
        timeout: Duration,
        /// The last status seen.
        status: RuntimeStatus,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] backend::Error),
}

impl From<ids::Error> for Error {
    fn from(e: ids::Error) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

/// What to do when starting an instance id that is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IfRunning {
    /// Refuse with [`Error::AlreadyRunning`] (HTTP 409), as Durable Functions does.
    #[default]
    Fail,
    /// Return the running instance's id without starting anything (deduplicate).
    ReturnExisting,
    /// Start only if no instance has this id, running or finished; otherwise return its
    /// id and start nothing: a start that must happen once per id (one per delivered
    /// event, however often it is delivered). A purged instance counts as never started.
    OncePerId,
}

/// Options of a start.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The instance id; a new random one when `None`.
    pub instance_id: Option<String>,
    /// Orchestration version (empty: latest).
    pub version: String,
    /// Do not start before this time.
    pub start_at: Option<DateTime<Utc>>,
    /// Policy for an id that is still running.
    pub if_running: IfRunning,
    /// W3C trace context to carry through the instance.
    pub trace_parent: Option<String>,
}

impl StartOptions {
    /// Start with the given instance id.
    pub fn with_instance_id(id: impl Into<String>) -> Self {
        Self {
            instance_id: Some(id.into()),
            ..Self::default()
        }
    }
}

/// What to include in a status.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusOptions {
    /// Include the history of the current execution.
    pub show_history: bool,
    /// Include activity results and inputs in the history (otherwise they are nulled).
    pub show_history_output: bool,
    /// Include the input.
    pub show_input: bool,
}

impl StatusOptions {
    /// The status with the current execution's history (results nulled, as by default).
    pub fn with_history() -> Self {
        Self {
            show_history: true,
            ..Self::default()
        }
    }
}

/// The client.
#[derive(Clone)]
pub struct Client {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
}

impl Client {
    /// A client over a backend, on the system clock.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            clock: Arc::new(SystemClock),
        }
    }

    /// How long storage has been unreachable, if it is now (see
    /// [`Backend::unreachable_for`]).
    pub fn storage_unreachable_for(&self) -> Option<std::time::Duration> {
        self.backend.unreachable_for()
    }

    /// The task hub's shared documents (the schedules live there).
    pub fn documents(&self) -> &dyn crate::backend::DocumentStore {
        self.backend.as_ref()
    }

    /// A client on the given clock.
    pub fn with_clock(backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Self {
        Self { backend, clock }
    }

    /// Starts an orchestration; returns its instance id. The status is readable as soon as
    /// this returns. Starting an id that has finished starts it anew.
    pub async fn start(
        &self,
        name: &str,
        options: StartOptions,
        input: &impl Serialize,
    ) -> Result<String, Error> {
        let input = serde_json::to_value(input)
            .map_err(|e| Error::InvalidInput(format!("input is not serialisable: {e}")))?;
        self.start_value(name, options, input).await
    }

    /// [`start`](Self::start) with a JSON input.
    pub async fn start_value(
        &self,
        name: &str,
        options: StartOptions,
        input: Value,
    ) -> Result<String, Error> {
        ids::validate_name(name)?;
        let generated = options.instance_id.is_none();
        let id = options
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        ids::validate_instance_id(&id)?;
        // A fresh random id cannot exist yet: only a chosen one needs the policy check.
        let existing = if generated {
            None
        } else {
            self.backend.read_state(&id).await?
        };
        let (replace, start_if): (Option<ETag>, StartCondition) = match existing {
            Some(_) if options.if_running == IfRunning::OncePerId => return Ok(id),
            Some((state, _)) if !state.status.is_terminal() => {
                return match options.if_running {
                    IfRunning::Fail => Err(Error::AlreadyRunning {
                        id,
                        status: state.status,
                    }),
                    IfRunning::ReturnExisting | IfRunning::OncePerId => Ok(id),
                }
            }
            Some((state, etag)) => (
                Some(etag),
                StartCondition::Replacing {
                    execution_id: state.execution_id,
                },
            ),
            None => (None, StartCondition::Absent),
        };
        let now = self.clock.now();
        let execution_id = uuid::Uuid::new_v4().simple().to_string();
        // The instance keeps the start's span (a child of the caller's traceparent) as the
        // parent of every execution's span.
        let trace_parent = crate::telemetry::spans::create_orchestration(
            name,
            &options.version,
            &id,
            options.trace_parent.as_deref(),
        );
        let started = StartInfo {
            version: options.version,
            trace_parent,
            ..StartInfo::new(name, &execution_id, input)
        }
        .into_event();
        let state = InstanceState::started(&id, &started, now);
        let start = to_instance(
            &id,
            Some(&execution_id),
            started,
            now,
            options.start_at,
            self.backend.control_partitions(),
        )
        // Checked when processed: if this call is refused (409), its message, already
        // queued, must never start an execution later.
        .with_start_condition(start_if);
        match self
            .backend
            .create_instance(&state, &start, replace.as_ref())
            .await
        {
            Ok(_) => Ok(id),
            Err(backend::Error::Conflict(_)) => {
                // Someone started the same id at the same moment.
                let status = self.read(&id).await?.status;
                match options.if_running {
                    IfRunning::ReturnExisting | IfRunning::OncePerId => Ok(id),
                    IfRunning::Fail => Err(Error::AlreadyRunning { id, status }),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The status of an instance.
    pub async fn status(&self, id: &str, options: StatusOptions) -> Result<InstanceStatus, Error> {
        ids::validate_instance_id(id)?;
        if options.show_history {
            let loaded = self
                .backend
                .load_instance(id)
                .await?
                .ok_or_else(|| Error::NotFound(id.to_owned()))?;
            let mut history = loaded.history;
            if !options.show_history_output {
                for event in &mut history {
                    hide_payloads(&mut event.kind);
                }
            }
            let mut status = to_status(loaded.state, options.show_input);
            status.history = Some(history);
            return Ok(status);
        }
        Ok(to_status(self.read(id).await?, options.show_input))
    }

    /// The status with at most `max` events of the current execution's history from
    /// sequence number `from` (only those are read), and where the next page starts
    /// (`None` on the last page). Payloads in the events are nulled unless `show_output`.
    pub async fn status_with_history_page(
        &self,
        id: &str,
        from: u64,
        max: usize,
        show_output: bool,
        show_input: bool,
    ) -> Result<(InstanceStatus, Option<u64>), Error> {
        ids::validate_instance_id(id)?;
        let page = self
            .backend
            .read_history(id, from, max)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let mut events = page.events;
        if !show_output {
            for event in &mut events {
                hide_payloads(&mut event.kind);
            }
        }
        let mut status = to_status(page.state, show_input);
        status.history = Some(events);
        Ok((status, page.next))
    }

    /// One page of instances matching the query, and the token of the next page.
    pub async fn list(
        &self,
        query: &InstanceQuery,
        show_input: bool,
    ) -> Result<(Vec<InstanceStatus>, Option<String>), Error> {
        let page = self.backend.list_instances(query).await?;
        let statuses = page
            .instances
            .into_iter()
            .map(|s| to_status(s, show_input))
            .collect();
        Ok((statuses, page.continuation))
    }

    /// Raises an external event on a running instance.
    pub async fn raise_event(
        &self,
        id: &str,
        name: &str,
        data: &impl Serialize,
    ) -> Result<(), Error> {
        ids::validate_name(name)?;
        let data = serde_json::to_value(data)
            .map_err(|e| Error::InvalidInput(format!("event data is not serialisable: {e}")))?;
        let kind = EventKind::EventRaised {
            name: name.to_owned(),
            input: data,
            event_id: uuid::Uuid::new_v4().simple().to_string(),
        };
        self.send_to_running(id, kind).await
    }

    /// Terminates a running instance.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.send_to_running(
            id,
            EventKind::ExecutionTerminated {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Rewinds a failed instance, as Durable Functions' rewind and more: the activities and
    /// sub-orchestrations whose failure ended it run again (sub-orchestrations rewound in
    /// turn), every other result is kept, and the execution goes on from there. The worker
    /// decides which failures to undo by replay (`replay/rewind.rs`); history keeps the
    /// failures and records the rewind.
    pub async fn rewind(&self, id: &str, reason: &str) -> Result<(), Error> {
        ids::validate_instance_id(id)?;
        let loaded = self
            .backend
            .load_instance(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let not_rewindable = |why: String| Error::NotRewindable {
            id: id.to_owned(),
            why,
        };
        if loaded.state.status != RuntimeStatus::Failed {
            return Err(not_rewindable(format!(
                "it is {}, not Failed",
                loaded.state.status
            )));
        }
        let replayed = crate::history::as_replayed(&loaded.history);
        let failed_task = replayed.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::ActivityFailed { .. } | EventKind::SubOrchestrationFailed { .. }
            )
        });
        if !failed_task {
            return Err(not_rewindable(
                "its failure did not come from an activity or a sub-orchestration, so a \
                 rewind would replay the same failure"
                    .into(),
            ));
        }
        let message = to_instance(
            id,
            Some(&loaded.state.execution_id),
            EventKind::ExecutionRewound {
                reason: reason.to_owned(),
                failures: Vec::new(),
            },
            self.clock.now(),
            None,
            self.backend.control_partitions(),
        );
        self.backend.send(&message).await?;
        Ok(())
    }

    /// Suspends a running instance: its events are kept but not delivered until resumed.
    pub async fn suspend(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.send_to_running(
            id,
            EventKind::ExecutionSuspended {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Resumes a suspended instance.
    pub async fn resume(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.send_to_running(
            id,
            EventKind::ExecutionResumed {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Starts an instance again with its original name and input, under the same id
    /// (which must have finished) or a new one. Returns the id started.
    pub async fn restart(&self, id: &str, new_instance_id: bool) -> Result<String, Error> {
        let state = self.read(id).await?;
        let options = StartOptions {
            instance_id: (!new_instance_id).then(|| id.to_owned()),
            version: state.version.clone(),
            trace_parent: state.trace_parent.clone(),
            ..StartOptions::default()
        };
        self.start_value(&state.name, options, state.input).await
    }

    /// A page of an instance's run logs (what its activities logged, per attempt), after
    /// the key `after` (a page's continuation), at most `limit` chunks.
    pub async fn run_logs(
        &self,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::run_logs::LogPage, Error> {
        self.read(id).await?;
        Ok(self.backend.read_run_logs(id, after, limit).await?)
    }

    /// Deletes a finished instance's state, history, payloads and run logs.
    pub async fn purge(&self, id: &str) -> Result<(), Error> {
        let state = self.read(id).await?;
        if !state.status.is_terminal() {
            return Err(Error::NotFinished {
                id: id.to_owned(),
                status: state.status,
            });
        }
        // Deletes state, history and the instance's payloads.
        self.backend.delete_instance(id).await?;
        Ok(())
    }

    /// Purges every finished instance matching the query, a page at a time, deleting
    /// [`PURGE_CONCURRENCY`] instances at once (enough to go tens of times faster than one
    /// by one, few enough that workers on the same account keep their share). Returns how
    /// many were deleted.
    pub async fn purge_many(&self, query: &InstanceQuery) -> Result<usize, Error> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let mut query = query.clone();
        if query.statuses.is_empty() {
            query.statuses = vec![
                RuntimeStatus::Completed,
                RuntimeStatus::Failed,
                RuntimeStatus::Terminated,
            ];
        }
        let mut deleted = 0;
        loop {
            let page = self.backend.list_instances(&query).await?;
            let finished = page
                .instances
                .into_iter()
                .filter(|s| s.status.is_terminal())
                .map(|s| s.instance_id);
            deleted += stream::iter(finished)
                .map(|id| async move { self.backend.delete_instance(&id).await })
                .buffer_unordered(PURGE_CONCURRENCY)
                // One purged meanwhile by another caller is not counted.
                .try_fold(0, |n, existed| async move { Ok(n + usize::from(existed)) })
                .await?;
            match page.continuation {
                // The next page starts after this one's last id, deleted or not.
                Some(token) => query.continuation = Some(token),
                None => break,
            }
        }
        Ok(deleted)
    }

    /// Waits until the instance finishes (Completed, Failed or Terminated): woken at once
    /// when a worker of this process commits the end, else reading the status again at
    /// growing intervals (5 ms up to 250 ms).
    pub async fn wait_for_completion(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<InstanceStatus, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        // Subscribed before the first read: an end committed in between is not missed.
        let mut endings = crate::runtime::endings::subscribe();
        loop {
            let status = self
                .status(
                    id,
                    StatusOptions {
                        show_input: true,
                        ..Default::default()
                    },
                )
                .await?;
            if status.runtime_status.is_terminal() {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    id: id.to_owned(),
                    timeout,
                    status: status.runtime_status,
                });
            }
            let nap = pause.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(nap) => {
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                _ = crate::runtime::endings::ended(&mut endings, id) => {}
            }
        }
    }

    async fn read(&self, id: &str) -> Result<InstanceState, Error> {
        ids::validate_instance_id(id)?;
        match self.backend.read_state(id).await? {
            Some((state, _)) => Ok(state),
            None => Err(Error::NotFound(id.to_owned())),
        }
    }

    async fn send_to_running(&self, id: &str, kind: EventKind) -> Result<(), Error> {
        let state = self.read(id).await?;
        if state.status.is_terminal() {
            return Err(Error::Finished {
                id: id.to_owned(),
                status: state.status,
            });
        }
        let message = to_instance(
            id,
            None,
            kind,
            self.clock.now(),
            None,
            self.backend.control_partitions(),
        );
        self.backend.send(&message).await?;
        Ok(())
    }
}

fn to_status(state: InstanceState, show_input: bool) -> InstanceStatus {
    InstanceStatus {
        name: state.name,
        instance_id: state.instance_id,
        runtime_status: state.status,
        input: show_input.then_some(state.input),
        custom_status: state.custom_status,
        output: state.output,
        failure: state.failure,
        created_time: state.created_at,
        last_updated_time: state.updated_at,
        history: None,
    }
}

/// Nulls inputs and results in a history shown without `showHistoryOutput`.
fn hide_payloads(kind: &mut EventKind) {
    match kind {
        EventKind::ActivityScheduled { input, .. }
        | EventKind::SubOrchestrationScheduled { input, .. }
        | EventKind::OrchestrationStartSent { input, .. }
        | EventKind::EventSent { input, .. }
        | EventKind::EventRaised { input, .. }
        | EventKind::ExecutionStarted { input, .. } => *input = Value::Null,
        EventKind::ActivityCompleted { result, .. }
        | EventKind::SubOrchestrationCompleted { result, .. } => *result = Value::Null,
        EventKind::ExecutionCompleted { output } => *output = Value::Null,
        _ => {}
    }
}

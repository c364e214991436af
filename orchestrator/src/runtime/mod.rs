//! The worker runtime: polls the task hub's queues, runs orchestration episodes and
//! activities with bounded concurrency, and stops gracefully.

mod activity_attempt;
mod activity_worker;
pub(crate) mod endings;
pub mod episode_effects;
mod hosted;
mod idle;
mod inline_activities;
mod inline_session;
mod instance_cache;
mod instance_locks;
mod instance_turn;
mod intake;
mod lease;
mod orchestration_worker;
mod retention_loop;
mod run_log_writer;
mod settling;
mod start_bundles;
mod step_group;
mod turn;

pub use hosted::{HostOptions, HostedWorker, NotSettled};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::backend::{Backend, QueueName};
use crate::clock::{Clock, SystemClock};
use crate::registry::Registry;

/// Tuning of a worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Instances whose episodes run at once.
    pub orchestration_concurrency: usize,
    /// Activities that run at once in this worker, from the work-item queue and inline.
    pub activity_concurrency: usize,
    /// Messages per receive call (the queue service allows at most 32).
    pub batch_size: usize,
    /// How long a received message stays hidden while it is being processed.
    pub lock_timeout: Duration,
    /// Deliveries after which a message is dead-lettered.
    pub max_dequeue_count: u32,
    /// First idle wait; doubles while idle up to `max_idle_poll`.
    pub min_idle_poll: Duration,
    /// Longest a new message waits to be noticed by an idle worker: the ceiling of the
    /// idle wait per queue, or, on a backend with wake signals, how often the wake queue is
    /// looked at.
    pub max_idle_poll: Duration,
    /// On a backend with wake signals: once the worker has been idle for
    /// `idle_warm_period`, each queue is still swept this often (a safety net for messages
    /// that came without a signal).
    pub idle_sweep: Duration,
    /// How long after its last message (or wake signal) a worker keeps polling every queue
    /// at `max_idle_poll` before relying on wake signals.
    pub idle_warm_period: Duration,
    /// Upper bound of history events per execution.
    pub max_history_events: usize,
    /// Delay before a message that must wait (instance not started yet) is seen again.
    pub defer_delay: Duration,
    /// Which control partitions this worker polls (`None`: all).
    pub partitions: Option<Vec<u32>>,
    /// Run the activities an episode decides in this process, when registered here, instead
    /// of sending them through the work-item queue (see `inline_session`). Saves a queue
    /// round trip and an episode load per activity; durability is unchanged.
    pub inline_activities: bool,
    /// While an activity runs (from the work-item queue or inline), the messages it came
    /// from are hidden again for `lock_timeout` this often (a lease renewal; capped at half
    /// the lock timeout), so work may outlast the lock without being delivered twice.
    /// Zero turns renewals off: an inline session then hands its running activities to the
    /// work-item queue at half the lock, and an activity's lock that runs out means a
    /// delivery again.
    pub lease_renewal: Duration,
    /// Longest an activity may run, inline or from the work-item queue; past it the
    /// activity fails with `ActivityTimedOut` (retryable, so a retry policy may run it
    /// again). `None`: no limit (the Functions host's `functionTimeout` still bounds the
    /// invocation there). Work inside `spawn_blocking` cannot be interrupted: its result
    /// is dropped when it comes.
    pub activity_timeout: Option<Duration>,
    /// Group commit (`step_group`): how long, from a step's decision, the steps that follow
    /// it through quick inline activities may run before they are committed together — the
    /// durability window: a crash inside it re-runs those steps' activities (at least
    /// once, as always) and nothing of them was visible. Zero: every step commits before
    /// its activities start.
    pub group_commit_window: Duration,
    /// Replays hand their async worker's queue to another thread first
    /// (`block_in_place`), so a long replay holds up nothing else. Costs a thread hand-off
    /// per episode; on under the Functions host, where an invocation held up past
    /// `functionTimeout` restarts the whole handler.
    pub replay_off_runtime: bool,
    /// How long an event that arrived before its instance's start is held for it (re-sent
    /// every `defer_delay`; the holding is not a failed delivery, so it does not use up
    /// `max_dequeue_count`). Past it the event is dead-lettered with its instance named.
    /// Twice the longest time a start can stay hidden in a dead process's hands.
    pub early_event_hold: Duration,
    /// Purge finished instances past their status's retention (`None`: keep them until
    /// purged by hand), in a pass every `retention_interval`.
    pub retention: Option<crate::retention::RetentionPolicy>,
    /// How often the retention pass runs (the first one after one interval).
    pub retention_interval: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            orchestration_concurrency: 32,
            activity_concurrency: 32,
            batch_size: 32,
            // Short, since leases are renewed while work runs: work held by a process that
            // died is taken over within this.
            lock_timeout: Duration::from_secs(30),
            max_dequeue_count: 5,
            min_idle_poll: Duration::from_millis(10),
            max_idle_poll: Duration::from_secs(40),
            idle_sweep: Duration::from_secs(3600),
            idle_warm_period: Duration::from_secs(300),
            max_history_events: 100_000,
            defer_delay: Duration::from_millis(200),
            partitions: None,
            inline_activities: true,
            lease_renewal: Duration::from_secs(10),
            activity_timeout: None,
            group_commit_window: Duration::from_millis(100),
            replay_off_runtime: false,
            early_event_hold: Duration::from_secs(20 * 60),
            retention: None,
            retention_interval: Duration::from_secs(3600),
        }
    }
}

/// A worker over a backend with a registry.
pub struct Worker {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub backend: Arc<dyn Backend>,
    pub registry: Registry,
    pub options: WorkerOptions,
    pub clock: Arc<dyn Clock>,
    pub instance_locks: Arc<instance_locks::InstanceLocks>,
    pub idle: idle::IdleState,
    pub instance_cache: instance_cache::InstanceCache,
    /// Set once the worker is asked to stop: the loops stop taking messages and inline
    /// sessions hand their running activities to the work-item queue.
    pub stop: watch::Sender<bool>,
    /// One per detached inline session (which may last as long as its activities, so it
    /// gives its episode permit back): stopping waits until it has them all again.
    pub session_slots: Arc<Semaphore>,
    /// `activity_concurrency` slots, shared by queued and inline activities.
    pub activity_slots: Arc<Semaphore>,
    /// Where activity attempts' log lines go.
    pub run_logs: run_log_writer::RunLogWriter,
    /// Bundles of starts whose pieces are still being taken in.
    pub start_bundles: start_bundles::StartBundles,
}

/// Detached inline sessions that may run at once (far above any real load; past it a
/// batch waits for a session to end).
pub(crate) const SESSION_SLOTS: u32 = 1 << 16;

impl Shared {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        registry: Registry,
        options: WorkerOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let activity_slots = Arc::new(Semaphore::new(options.activity_concurrency.max(1)));
        Self {
            run_logs: run_log_writer::RunLogWriter::start(backend.clone()),
            backend,
            registry,
            options,
            clock,
            instance_locks: Default::default(),
            idle: Default::default(),
            instance_cache: Default::default(),
            start_bundles: Default::default(),
            stop: watch::Sender::new(false),
            session_slots: Arc::new(Semaphore::new(SESSION_SLOTS as usize)),
            activity_slots,
        }
    }
}

impl Worker {
    /// A worker on the system clock.
    pub fn new(backend: Arc<dyn Backend>, registry: Registry, options: WorkerOptions) -> Self {
        Self::with_clock(backend, registry, options, Arc::new(SystemClock))
    }

    /// A worker on the given clock (a manual clock in tests).
    pub fn with_clock(
        backend: Arc<dyn Backend>,
        registry: Registry,
        options: WorkerOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(backend, registry, options, clock)),
        }
    }

    /// Starts the polling loops on the current tokio runtime.
    pub fn start(self) -> WorkerHandle {
        let stop_rx = self.shared.stop.subscribe();
        let mut tasks = JoinSet::new();
        let partitions = self
            .shared
            .options
            .partitions
            .clone()
            .unwrap_or_else(|| (0..self.shared.backend.control_partitions()).collect());
        let control: Vec<QueueName> = partitions.into_iter().map(QueueName::Control).collect();
        tasks.spawn(orchestration_worker::run(
            self.shared.clone(),
            control,
            stop_rx.clone(),
        ));
        tasks.spawn(activity_worker::run(self.shared.clone(), stop_rx.clone()));
        if let Some(policy) = self.shared.options.retention.clone() {
            tasks.spawn(retention_loop::run(
                self.shared.clone(),
                policy,
                stop_rx.clone(),
            ));
        }
        if self.shared.backend.has_wake_signals() {
            tasks.spawn(idle::watch_wake_signals(self.shared.clone(), stop_rx));
        }
        WorkerHandle {
            shared: self.shared,
            tasks,
        }
    }
}

/// A running worker.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl WorkerHandle {
    /// Stops taking new messages, lets in-flight episodes and queued activities finish,
    /// hands inline activities still running to the work-item queue, and returns.
    /// Messages not finished stay in their queues and are seen again by the next worker.
    pub async fn shutdown(mut self) {
        self.shared.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        self.shared.run_logs.flush().await;
    }
}

/// Waits for `delay`, a wake signal, or until asked to stop; true when asked to stop.
pub(crate) async fn idle_or_stop(
    shared: &Shared,
    queues: &[QueueName],
    delay: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    if *stop.borrow() {
        return true;
    }
    let mut woken = shared.idle.subscribe();
    tokio::select! {
        _ = shared.backend.wait_for_messages(queues, delay) => false,
        _ = woken.changed() => false,
        _ = stop.changed() => true,
    }
}

/// Logs a failed storage call of a loop that tries again by itself: debug when the fault is
/// transient (the storage backend reports an outage once, when it starts and ends, rather
/// than once per loop and call), a warning otherwise.
pub(crate) fn log_retried_failure(error: &crate::backend::Error, what: &'static str) {
    if error.is_transient() {
        tracing::debug!(%error, what);
    } else {
        tracing::warn!(%error, "{what}");
    }
}

/// The next idle wait: doubles up to the ceiling of the moment (see [`idle::IdleState`]).
pub(crate) fn next_idle(current: Duration, shared: &Shared) -> Duration {
    let ceiling = shared.idle_ceiling();
    if ceiling > shared.options.max_idle_poll {
        // Idle past the warm period: straight to the sweep interval, wake signals do the rest.
        return ceiling;
    }
    (current * 2).clamp(shared.options.min_idle_poll, ceiling)
}

impl Shared {
    /// The longest wait between two polls of one queue right now.
    pub(crate) fn idle_ceiling(&self) -> Duration {
        let options = &self.options;
        if self.backend.has_wake_signals() && self.idle.idle_for() >= options.idle_warm_period {
            options.idle_sweep.max(options.max_idle_poll)
        } else {
            options.max_idle_poll
        }
    }
}

//! Test support shared by the suites of every crate and the benchmark (feature `testing`):
//! [`eventually`], the one way a test waits for something it can observe, and
//! [`fan_out`], the fan-out orchestration they all run.
// Test-support code: a condition that never comes is a failed test.
#![allow(clippy::panic)]

use std::future::Future;
use std::time::Duration;

use crate::context::OrchestrationContext;
use crate::registry::Registry;

/// Probes until `probe` gives a value, and returns it; panics naming `what` if none came
/// `within`. For waiting on an observable event (a status, a queue, a history), never for
/// asserting that something did not happen.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Registers orchestration `name`: calls `activity(i)` for every `i` below its input `n`
/// at once and returns the sum of the results (`u64`).
pub fn fan_out(registry: Registry, name: &str, activity: &'static str) -> Registry {
    registry.orchestration(name, move |ctx: OrchestrationContext, n: u64| async move {
        let calls = (0..n)
            .map(|i| ctx.call_activity::<u64>(activity, i))
            .collect();
        let mut sum = 0;
        for result in ctx.join_all(calls).await {
            sum += result?;
        }
        Ok(sum)
    })
}

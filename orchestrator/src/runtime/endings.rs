//! Executions ended in this process, announced as they commit, so a waiter in the same
//! process (the API's long poll through `Client::wait_for_completion`) learns of an end at
//! once instead of at its next poll. Waiters for instances another process runs still poll.

use std::sync::OnceLock;

use tokio::sync::broadcast;

/// Ends kept for slow receivers; one that falls further behind reads storage again.
const CAPACITY: usize = 1024;

fn channel() -> &'static broadcast::Sender<String> {
    static ENDINGS: OnceLock<broadcast::Sender<String>> = OnceLock::new();
    ENDINGS.get_or_init(|| broadcast::channel(CAPACITY).0)
}

/// Says that `instance_id`'s execution ended (committed Completed, Failed or Terminated).
pub(crate) fn announce(instance_id: &str) {
    // No waiter is the common case: nothing is sent.
    if channel().receiver_count() > 0 {
        let _ = channel().send(instance_id.to_owned());
    }
}

/// The ends announced from now on.
pub(crate) fn subscribe() -> broadcast::Receiver<String> {
    channel().subscribe()
}

/// Resolves when `instance_id`'s end is announced (or announcements were missed, so the
/// caller should look again).
pub(crate) async fn ended(endings: &mut broadcast::Receiver<String>, instance_id: &str) {
    loop {
        match endings.recv().await {
            Ok(id) if id == instance_id => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

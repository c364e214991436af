//! The named error for orchestration code that no longer matches its recorded history.

use crate::history::{FailureDetails, FailureKind};

/// Stable code of the nondeterminism error, for logs, alerts and troubleshooting docs.
pub const NONDETERMINISM_CODE: &str = "FFD-ND01";

/// Replayed code diverged from the history it is replaying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NondeterminismError {
    /// The code produced a different action where history recorded one.
    #[error(
        "nondeterministic orchestration ({NONDETERMINISM_CODE}): action #{action_id} was recorded \
         in history as {recorded} but the code now produces {produced}"
    )]
    Mismatch {
        /// The action id where the two differ.
        action_id: u64,
        /// The recorded event, described.
        recorded: String,
        /// What the code produced instead, described.
        produced: String,
    },
    /// History holds an action the code no longer produces.
    #[error(
        "nondeterministic orchestration ({NONDETERMINISM_CODE}): history records action \
         #{action_id} as {recorded} but the code no longer produces it"
    )]
    Missing {
        /// The action id the code did not reproduce.
        action_id: u64,
        /// The recorded event, described.
        recorded: String,
    },
}

impl NondeterminismError {
    /// The failure recorded when an instance fails with this error.
    pub fn to_failure(&self) -> FailureDetails {
        FailureDetails::of(FailureKind::NondeterminismError, self.to_string())
    }
}

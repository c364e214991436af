//! Failure details carried by failed activities, sub-orchestrations and executions.

use serde::{Deserialize, Serialize};

/// Why a task or an execution failed, as recorded in history and shown in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureDetails {
    /// A short machine-readable kind, such as `ActivityError`, `Nondeterminism`, `Timeout`.
    pub kind: String,
    /// A human-readable message.
    pub message: String,
    /// Whether a retry policy may retry this failure (a hint for retry predicates).
    #[serde(default = "default_true")]
    pub retryable: bool,
    /// The failure that caused this one, for example the failure of a sub-orchestration's activity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<Box<FailureDetails>>,
}

fn default_true() -> bool {
    true
}

impl FailureDetails {
    /// A retryable failure of the given kind.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable: true,
            inner: None,
        }
    }

    /// A failure that retry policies should not retry.
    pub fn non_retryable(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::new(kind, message)
        }
    }

    /// Attaches the failure that caused this one.
    pub fn with_inner(mut self, inner: FailureDetails) -> Self {
        self.inner = Some(Box::new(inner));
        self
    }
}

impl std::fmt::Display for FailureDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(inner) = &self.inner {
            write!(f, " (caused by {inner})")?;
        }
        Ok(())
    }
}

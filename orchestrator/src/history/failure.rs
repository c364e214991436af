//! Failure details carried by failed activities, sub-orchestrations and executions.

use serde::{Deserialize, Serialize};

/// Why a task or an execution failed, as recorded in history and shown in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureDetails {
    /// A short machine-readable kind (see [`FailureKind`]).
    pub kind: FailureKind,
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

/// What kind of failure: the kinds the engine itself reports, and an open variant for the
/// kinds activities and orchestrations define. Recorded (and serialised) as its name, so
/// histories written before the enum read the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FailureKind {
    /// An activity panicked (retryable: a panic may come from a transient state).
    ActivityPanicked,
    /// An activity ran past its timeout (retryable).
    ActivityTimedOut,
    /// A message kept failing and was dead-lettered (not retryable).
    PoisonMessage,
    /// An input could not be decoded into the function's type (not retryable).
    InputDeserialization,
    /// An output could not be encoded (not retryable).
    OutputSerialization,
    /// The code no longer matches its history, `FFD-ND01` (not retryable).
    NondeterminismError,
    /// A sub-orchestration failed (see the inner failure).
    SubOrchestrationFailed,
    /// A sub-orchestration's instance id is already running (not retryable).
    InstanceAlreadyRunning,
    /// A storage call of an activity failed (retryable).
    StorageError,
    /// No orchestration of the recorded name and version is registered (not retryable).
    UnknownOrchestration,
    /// No activity of the scheduled name and version is registered (not retryable).
    UnknownActivity,
    /// An execution outgrew the history limit (not retryable: continue as new instead).
    HistoryLimitExceeded,
    /// A task's result could not be decoded into the type the code asked for (not retryable).
    OutputDeserialization,
    /// A kind an application defined.
    Other(String),
}

/// Every kind the engine reports, with its code (for the code table and its tests).
pub const ENGINE_FAILURE_KINDS: [FailureKind; 13] = [
    FailureKind::ActivityPanicked,
    FailureKind::ActivityTimedOut,
    FailureKind::PoisonMessage,
    FailureKind::InputDeserialization,
    FailureKind::OutputSerialization,
    FailureKind::NondeterminismError,
    FailureKind::SubOrchestrationFailed,
    FailureKind::InstanceAlreadyRunning,
    FailureKind::StorageError,
    FailureKind::UnknownOrchestration,
    FailureKind::UnknownActivity,
    FailureKind::HistoryLimitExceeded,
    FailureKind::OutputDeserialization,
];

impl FailureKind {
    /// The kind's name, as recorded.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ActivityPanicked => "ActivityPanicked",
            Self::ActivityTimedOut => "ActivityTimedOut",
            Self::PoisonMessage => "PoisonMessage",
            Self::InputDeserialization => "InputDeserialization",
            Self::OutputSerialization => "OutputSerialization",
            Self::NondeterminismError => "NondeterminismError",
            Self::SubOrchestrationFailed => "SubOrchestrationFailed",
            Self::InstanceAlreadyRunning => "InstanceAlreadyRunning",
            Self::StorageError => "StorageError",
            Self::UnknownOrchestration => "UnknownOrchestration",
            Self::UnknownActivity => "UnknownActivity",
            Self::HistoryLimitExceeded => "HistoryLimitExceeded",
            Self::OutputDeserialization => "OutputDeserialization",
            Self::Other(kind) => kind,
        }
    }

    /// The stable code of an engine-reported kind (`FFD-…`, each explained in
    /// `docs/errors/<code>.md`); none for an application's own kinds.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            Self::ActivityPanicked => "FFD-AC01",
            Self::ActivityTimedOut => "FFD-AC02",
            Self::UnknownActivity => "FFD-AC03",
            Self::PoisonMessage => "FFD-MS01",
            Self::InputDeserialization => "FFD-DA01",
            Self::OutputSerialization => "FFD-DA02",
            Self::OutputDeserialization => "FFD-DA03",
            Self::NondeterminismError => "FFD-ND01",
            Self::SubOrchestrationFailed => "FFD-SO01",
            Self::InstanceAlreadyRunning => "FFD-SO02",
            Self::StorageError => "FFD-ST01",
            Self::UnknownOrchestration => "FFD-OR01",
            Self::HistoryLimitExceeded => "FFD-OR02",
            Self::Other(_) => return None,
        })
    }

    /// Whether a retry policy may retry a failure of this kind unless told otherwise.
    pub fn retryable_by_default(&self) -> bool {
        !matches!(
            self,
            Self::PoisonMessage
                | Self::InputDeserialization
                | Self::OutputSerialization
                | Self::NondeterminismError
                | Self::InstanceAlreadyRunning
                | Self::UnknownOrchestration
                | Self::UnknownActivity
                | Self::HistoryLimitExceeded
                | Self::OutputDeserialization
        )
    }
}

impl From<String> for FailureKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "ActivityPanicked" => Self::ActivityPanicked,
            "ActivityTimedOut" => Self::ActivityTimedOut,
            "PoisonMessage" => Self::PoisonMessage,
            "InputDeserialization" => Self::InputDeserialization,
            "OutputSerialization" => Self::OutputSerialization,
            "NondeterminismError" => Self::NondeterminismError,
            "SubOrchestrationFailed" => Self::SubOrchestrationFailed,
            "InstanceAlreadyRunning" => Self::InstanceAlreadyRunning,
            "StorageError" => Self::StorageError,
            "UnknownOrchestration" => Self::UnknownOrchestration,
            "UnknownActivity" => Self::UnknownActivity,
            "HistoryLimitExceeded" => Self::HistoryLimitExceeded,
            "OutputDeserialization" => Self::OutputDeserialization,
            _ => Self::Other(name),
        }
    }
}

impl From<&str> for FailureKind {
    fn from(name: &str) -> Self {
        Self::from(name.to_owned())
    }
}

impl From<FailureKind> for String {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::Other(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for FailureKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FailureKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FailureDetails {
    /// A failure of `kind`, retryable as the kind is by default.
    pub fn of(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            retryable: kind.retryable_by_default(),
            kind,
            message: message.into(),
            inner: None,
        }
    }

    /// A retryable failure of the given kind.
    pub fn new(kind: impl Into<FailureKind>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable: true,
            inner: None,
        }
    }

    /// A failure that retry policies should not retry.
    pub fn non_retryable(kind: impl Into<FailureKind>, message: impl Into<String>) -> Self {
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

/// The text of a panic's payload (what `panic!` was given), for a failure's message.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn every_engine_kind_has_its_own_code_and_a_page() {
        let mut codes = std::collections::HashSet::new();
        for kind in ENGINE_FAILURE_KINDS {
            let code = kind.code().unwrap_or_else(|| panic!("{kind} has no code"));
            assert!(codes.insert(code), "{code} is used twice");
            let page = format!("{}/../docs/errors/{code}.md", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.contains(kind.as_str()), "{page} names {kind}");
            assert_eq!(FailureKind::from(kind.as_str()), kind, "round trip");
        }
        assert_eq!(FailureKind::from("MyKind").code(), None);
    }

    #[test]
    fn kinds_round_trip_by_name_and_keep_application_kinds() {
        for kind in [
            FailureKind::ActivityPanicked,
            FailureKind::PoisonMessage,
            FailureKind::NondeterminismError,
            FailureKind::Other("SilverFailed".into()),
        ] {
            let json = serde_json::to_value(&kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<FailureKind>(json).unwrap(), kind);
        }
        assert_eq!(
            FailureKind::from("PoisonMessage"),
            FailureKind::PoisonMessage
        );
        assert!(FailureDetails::of(FailureKind::ActivityPanicked, "x").retryable);
        assert!(!FailureDetails::of(FailureKind::PoisonMessage, "x").retryable);
        assert_eq!(FailureKind::ActivityTimedOut, "ActivityTimedOut");
    }
}

//! Maps Azure SDK errors to the engine's backend errors, without URLs or credentials.

use azure_core::error::ErrorKind;
use flowforge_orchestrator::backend::Error;

/// Classifies an SDK error: 404 → NotFound, 409/412 → Conflict, 408/429/5xx and I/O →
/// Transient, the rest → Permanent. The message keeps the status and the service's error
/// code only.
pub(crate) fn classify(what: &str, error: azure_core::Error) -> Error {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let code = error_code.as_deref().unwrap_or("");
            let message = format!("{what}: HTTP {} {code}", u16::from(*status));
            match u16::from(*status) {
                404 => Error::NotFound(message),
                409 | 412 => Error::Conflict(message),
                408 | 429 | 500..=599 => Error::Transient(message),
                _ => Error::Permanent(message),
            }
        }
        ErrorKind::Io => Error::Transient(format!("{what}: I/O error")),
        ErrorKind::Credential => Error::Permanent(format!("{what}: credential error: {error}")),
        _ => Error::Transient(format!("{what}: {}", first_line(&error.to_string()))),
    }
}

fn first_line(text: &str) -> String {
    // SDK messages may embed request URLs; keep the first line and drop query strings.
    let line = text.lines().next().unwrap_or_default();
    match line.find('?') {
        Some(at) => line[..at].to_owned(),
        None => line.to_owned(),
    }
}

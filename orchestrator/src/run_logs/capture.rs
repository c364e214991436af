//! Capturing the `tracing` events of an activity attempt.
//!
//! The runtime opens each attempt's `activity` span with a `run_log` field naming an
//! [`AttemptCapture`]; [`RunLogLayer`] finds that span above every event (nested spans
//! included) and appends the event to the capture's buffer. The buffer is bounded: past
//! [`MAX_LINES_PER_ATTEMPT`] lines are counted, not kept.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use chrono::Utc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{Filtered, LevelFilter};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{truncated, LogLine, MAX_LINES_PER_ATTEMPT, MAX_LINE_CHARS};

/// The span field that names a capture.
pub(crate) const CAPTURE_FIELD: &str = "run_log";

#[derive(Default)]
struct Buffer {
    lines: Vec<LogLine>,
    dropped: u64,
}

type Shared = Arc<Mutex<Buffer>>;

/// Captures open now, by token (the layer resolves a span's token once, when it opens).
static OPEN: LazyLock<Mutex<HashMap<u64, Shared>>> = LazyLock::new(Default::default);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// The lines of one activity attempt, captured while it runs.
pub struct AttemptCapture {
    token: u64,
    buffer: Shared,
}

impl AttemptCapture {
    /// Opens a capture; record [`Self::token`] as the `run_log` field of the attempt's span.
    pub fn begin() -> Self {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let buffer = Shared::default();
        lock(&OPEN).insert(token, buffer.clone());
        Self { token, buffer }
    }

    /// The value of the span's `run_log` field.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Closes the capture: the lines in order, and how many were left out.
    pub fn finish(self) -> (Vec<LogLine>, u64) {
        let mut buffer = lock(&self.buffer);
        (std::mem::take(&mut buffer.lines), buffer.dropped)
    }
}

impl Drop for AttemptCapture {
    fn drop(&mut self) {
        lock(&OPEN).remove(&self.token);
    }
}

/// A poisoned lock only means a panic elsewhere while holding it; the buffer stays usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `tracing` layer that captures activity attempts' events (level INFO and above).
/// Add it to the process's subscriber, beside the formatting layer:
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let subscriber = tracing_subscriber::registry()
///     .with(flowforge_orchestrator::run_logs::RunLogLayer::new().at_info());
/// # drop(subscriber);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct RunLogLayer;

impl RunLogLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }

    /// The layer with its own level filter (INFO): events below it cost nothing here,
    /// whatever the other layers let through.
    pub fn at_info<S>(self) -> Filtered<Self, LevelFilter, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.with_filter(LevelFilter::INFO)
    }
}

impl<S> Layer<S> for RunLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut token = TokenVisitor(None);
        attrs.record(&mut token);
        let Some(token) = token.0 else { return };
        let Some(buffer) = lock(&OPEN).get(&token).cloned() else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(buffer);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let extensions = span.extensions();
            let Some(buffer) = extensions.get::<Shared>() else {
                continue;
            };
            let mut buffer = lock(buffer);
            if buffer.lines.len() >= MAX_LINES_PER_ATTEMPT {
                buffer.dropped += 1;
                return;
            }
            let mut fields = LineVisitor::default();
            event.record(&mut fields);
            let metadata = event.metadata();
            buffer.lines.push(LogLine {
                timestamp: Utc::now(),
                level: metadata.level().to_string(),
                target: metadata.target().to_owned(),
                message: truncated(fields.message, MAX_LINE_CHARS),
                fields: fields.fields,
            });
            return;
        }
    }
}

struct TokenVisitor(Option<u64>);

impl Visit for TokenVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == CAPTURE_FIELD {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn Debug) {}
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: BTreeMap<String, String>,
}

impl LineVisitor {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else if self.fields.len() < 32 {
            let value = truncated(value, MAX_LINE_CHARS);
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.put(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{info, info_span, warn};
    use tracing_subscriber::prelude::*;

    #[test]
    fn captures_the_events_of_its_span_and_nested_spans_only() {
        let subscriber = tracing_subscriber::registry().with(RunLogLayer::new().at_info());
        tracing::subscriber::with_default(subscriber, || {
            let capture = AttemptCapture::begin();
            let other = AttemptCapture::begin();
            info!("outside every attempt");
            info_span!("activity", run_log = capture.token()).in_scope(|| {
                info!(rows = 3, path = "a/b", "read the file");
                tracing::debug!("below the level");
                info_span!("inner").in_scope(|| warn!("nested"));
            });
            info_span!("activity", run_log = other.token()).in_scope(|| info!("other attempt"));
            let (lines, dropped) = capture.finish();
            assert_eq!(dropped, 0);
            let messages: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
            assert_eq!(messages, ["read the file", "nested"]);
            assert_eq!(lines[0].fields.get("rows").map(String::as_str), Some("3"));
            assert_eq!(lines[0].fields.get("path").map(String::as_str), Some("a/b"));
            assert_eq!(lines[1].level, "WARN");
            assert_eq!(other.finish().0.len(), 1);
        });
    }

    #[test]
    fn past_the_limit_lines_are_counted_not_kept() {
        let subscriber = tracing_subscriber::registry().with(RunLogLayer::new().at_info());
        tracing::subscriber::with_default(subscriber, || {
            let capture = AttemptCapture::begin();
            info_span!("activity", run_log = capture.token()).in_scope(|| {
                for i in 0..MAX_LINES_PER_ATTEMPT + 5 {
                    info!(i, "line");
                }
            });
            let (lines, dropped) = capture.finish();
            assert_eq!(lines.len(), MAX_LINES_PER_ATTEMPT);
            assert_eq!(dropped, 5);
        });
    }
}

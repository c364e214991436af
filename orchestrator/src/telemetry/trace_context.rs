//! W3C trace context as the engine keeps it: the `traceparent` of an instance's start, and
//! the span of each execution, whose id is derived from the instance and execution ids so
//! that every worker, before and after a restart, parents activities, timers and
//! sub-orchestrations on the same span without storing it (pure, no I/O).

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// A parsed `traceparent` (`00-<trace id>-<span id>-<flags>`); `None` when malformed or
/// all-zero, as the W3C rules say a receiver must then start afresh.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The `traceparent` header of a span context.
pub fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

fn derived(key: &str) -> [u8; 16] {
    *uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).as_bytes()
}

/// The span id of an execution's `orchestration:{name}` span.
pub fn orchestration_span_id(instance_id: &str, execution_id: &str) -> SpanId {
    let bytes = derived(&format!("orchestration|{instance_id}|{execution_id}"));
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0u8; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

/// The span context of an execution's `orchestration:{name}` span: in the trace of the
/// start's `traceparent`, or (a start without one) a trace derived from the instance id.
pub fn orchestration_context(
    start: Option<&str>,
    instance_id: &str,
    execution_id: &str,
) -> SpanContext {
    let (trace_id, flags) = match start.and_then(parse) {
        Some(parent) => (parent.trace_id(), parent.trace_flags()),
        None => (
            TraceId::from_bytes(derived(&format!("trace|{instance_id}"))),
            TraceFlags::SAMPLED,
        ),
    };
    SpanContext::new(
        trace_id,
        orchestration_span_id(instance_id, execution_id),
        flags,
        true,
        TraceState::default(),
    )
}

/// The `traceparent` the work of an execution carries (activities, timers,
/// sub-orchestrations and chained runs are children of its span).
pub fn orchestration_traceparent(
    start: Option<&str>,
    instance_id: &str,
    execution_id: &str,
) -> String {
    format(&orchestration_context(start, instance_id, execution_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_header_round_trips_and_bad_ones_are_refused() {
        let context = parse(HEADER).unwrap();
        assert_eq!(format(&context), HEADER);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_execution_span_is_the_same_everywhere_and_in_the_start_trace() {
        let a = orchestration_context(Some(HEADER), "i1", "e1");
        let b = orchestration_context(Some(HEADER), "i1", "e1");
        assert_eq!(a, b);
        assert_eq!(a.trace_id(), parse(HEADER).unwrap().trace_id());
        assert_ne!(a.span_id(), orchestration_span_id("i1", "e2"));
        assert_ne!(a.span_id(), orchestration_span_id("i2", "e1"));
        // Without a start header: one derived trace for all executions of the instance.
        let c = orchestration_context(None, "i1", "e1");
        let d = orchestration_context(None, "i1", "e2");
        assert_eq!(c.trace_id(), d.trace_id());
        assert!(c.is_valid() && c.is_sampled());
        assert!(parse(&orchestration_traceparent(None, "i1", "e1")).is_some());
    }
}

//! W3C Trace Context (`traceparent`, `tracestate`) in and out of HTTP headers and gRPC
//! metadata.
//!
//! What comes in is read by the global propagator (the SDK's `TraceContextPropagator`,
//! the only one either binary installs). What goes out, on every gRPC call, is written
//! here: the propagator would format the `traceparent` through `core::fmt` into a new
//! `String` (about 2,500 instructions a call, 2 % of the gateway's work on a plain
//! request) and build a `tracestate` string even when the trace has none. [`inject`]
//! writes the same 55 bytes with the `hex` crate into a buffer on the stack; a test
//! checks it against the propagator's own output, byte for byte. Should anything but
//! W3C Trace Context ever be propagated (baggage, another format), `inject` must go
//! back to the global propagator.

use opentelemetry::Context;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags};
use tonic::metadata::{AsciiMetadataValue, MetadataKey, MetadataMap};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The remote parent carried by HTTP headers (gRPC metadata travels as HTTP/2 headers too).
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Makes `span` a child of the trace in `headers`, if they carry one. Call before the
/// span is first entered.
pub fn set_parent_from(span: &tracing::Span, headers: &http::HeaderMap) {
    // A disabled span has no trace to continue: skip reading the headers. (The spans of
    // a request's trace, under `TRACE`, are never disabled.)
    if span.is_disabled() {
        return;
    }
    let parent = extract(headers);
    if parent.has_active_span() {
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s trace context into outgoing gRPC metadata: its `traceparent`, and
/// the trace's `tracestate` when it has one (an empty header is optional, and would only
/// be encoded here and decoded by the flow service on every call). As the W3C
/// propagator does: nothing for a span without a valid context.
pub fn inject(span: &tracing::Span, metadata: &mut MetadataMap) {
    write(&span.context(), metadata);
}

/// [`inject`] for a context.
fn write(context: &Context, metadata: &mut MetadataMap) {
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    metadata.insert(
        MetadataKey::from_static("traceparent"),
        traceparent(span_context),
    );
    let state = span_context.trace_state().header();
    if !state.is_empty()
        && let Ok(value) = AsciiMetadataValue::try_from(state)
    {
        metadata.insert(MetadataKey::from_static("tracestate"), value);
    }
}

/// `00-<trace id>-<span id>-<flags>`, lower-case hex, the flags but the sampled bit
/// cleared: version 00 of the header, as the W3C propagator writes it.
fn traceparent(span_context: &SpanContext) -> AsciiMetadataValue {
    let mut header = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let flags = span_context.trace_flags() & TraceFlags::SAMPLED;
    for (bytes, digits) in [
        (&span_context.trace_id().to_bytes()[..], 3..35),
        (&span_context.span_id().to_bytes()[..], 36..52),
        (&[flags.to_u8()][..], 53..55),
    ] {
        hex::encode_to_slice(bytes, &mut header[digits]).expect("two digits a byte");
    }
    AsciiMetadataValue::try_from(&header).expect("hex digits and dashes are visible ASCII")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanId, TraceId, TraceState};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    /// What [`write`] puts in the metadata is, byte for byte, what the SDK's W3C
    /// propagator writes (less its empty `tracestate`), for ids with leading zeros and
    /// without, every kind of flags, remote and local contexts, with a trace state and
    /// without; and nothing, as there, for an invalid context.
    #[test]
    fn writes_what_the_w3c_propagator_writes() {
        let propagator = TraceContextPropagator::new();
        let state = TraceState::from_key_value([("vendor", "opaque"), ("other", "x-1")]).unwrap();
        let trace_ids = [
            0,
            1,
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            u128::MAX,
            0x00ab_0000_0000_0000_0000_0000_0000_00cd,
        ];
        let span_ids = [0, 1, 0x00f0_67aa_0ba9_02b7, u64::MAX];
        let mut compared = 0;
        for trace_id in trace_ids {
            for span_id in span_ids {
                for flags in [0x00, 0x01, 0x02, 0x03, 0xff] {
                    for remote in [false, true] {
                        for state in [TraceState::NONE, state.clone()] {
                            let span_context = SpanContext::new(
                                TraceId::from(trace_id),
                                SpanId::from(span_id),
                                TraceFlags::new(flags),
                                remote,
                                state,
                            );
                            let context = Context::new().with_remote_span_context(span_context);
                            let mut expected = HashMap::new();
                            propagator.inject_context(&context, &mut expected);
                            expected.retain(|_, value: &mut String| !value.is_empty());

                            let mut metadata = MetadataMap::new();
                            write(&context, &mut metadata);
                            let written: HashMap<String, String> = metadata
                                .into_headers()
                                .iter()
                                .map(|(name, value)| {
                                    (name.to_string(), value.to_str().unwrap().to_owned())
                                })
                                .collect();
                            assert_eq!(written, expected, "{context:?}");
                            compared += usize::from(!expected.is_empty());
                        }
                    }
                }
            }
        }
        // Every context with both ids non-zero is valid and wrote a header.
        assert_eq!(compared, 4 * 3 * 5 * 2 * 2);
    }
}

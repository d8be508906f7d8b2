//! W3C Trace Context (`traceparent`, `tracestate`) in and out of HTTP headers and gRPC
//! metadata, through the global propagator.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
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

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        use tonic::metadata::{MetadataKey, MetadataValue};
        // The propagator writes a `tracestate` on every call, empty unless the trace
        // has one; the header is optional, and an empty one would only be encoded here
        // and decoded by the flow service on every call.
        if value.is_empty() {
            return;
        }
        // The W3C propagator's two names are known: not parsed and copied on each call.
        let key = match key {
            "traceparent" => MetadataKey::from_static("traceparent"),
            "tracestate" => MetadataKey::from_static("tracestate"),
            other => match MetadataKey::from_bytes(other.as_bytes()) {
                Ok(key) => key,
                Err(_) => return,
            },
        };
        if let Ok(value) = MetadataValue::try_from(value) {
            self.0.insert(key, value);
        }
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
    if opentelemetry::trace::TraceContextExt::has_active_span(&parent) {
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s trace context into outgoing gRPC metadata.
pub fn inject(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(metadata))
    });
}

//! The server span of a request and its access log line, built by tower-http's
//! `TraceLayer` with our own [`ServerSpan`] and [`LogAnswer`].
//!
//! [`ServerSpan`] names the fields every request has (route, flow, request id, trace
//! id) and leaves empty the ones known later: the handler records `action`, `screen`
//! and `token` (hashed) on the current span, and [`LogAnswer`] records `outcome` and
//! `http.status` from the answer. An incoming `traceparent` becomes the span's remote
//! parent here, before `TraceLayer` first enters the span: tracing-opentelemetry
//! ignores a parent set on a span already entered.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use crate::routes::Flow;
use crate::telemetry::Labels;

/// The `TraceLayer` of the endpoint: our span, our log line, and nothing else (the
/// default callbacks would log every request twice more and 5xx answers as errors).
pub type Layer =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, ServerSpan, (), LogAnswer, (), (), ()>;

/// The span and log layer for the route configured at `route`.
pub fn layer(route: &str) -> Layer {
    TraceLayer::new_for_http()
        .make_span_with(ServerSpan {
            route: route.into(),
        })
        .on_request(())
        .on_response(LogAnswer)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Makes the `flowgate.request` span of one request.
#[derive(Debug, Clone)]
pub struct ServerSpan {
    /// The configured path, a bounded label (never the request's own path).
    route: Arc<str>,
}

impl<B> MakeSpan<B> for ServerSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let flow = request
            .extensions()
            .get::<Flow>()
            .map_or("", |flow| flow.0.as_str());
        let span = tracing::info_span!(
            target: flowgate_telemetry::TRACE,
            "flowgate.request",
            otel.name = "POST flow endpoint",
            otel.kind = "server",
            request_id = super::request_id::of(request),
            trace_id = tracing::field::Empty,
            route = &*self.route,
            flow,
            action = tracing::field::Empty,
            screen = tracing::field::Empty,
            token = tracing::field::Empty,
            outcome = tracing::field::Empty,
            http.status = tracing::field::Empty,
        );
        // A remote parent must be set before the span is first entered.
        flowgate_telemetry::propagation::set_parent_from(&span, request.headers());
        flowgate_telemetry::record_trace_id(&span, &span);
        span
    }
}

/// Records how a request ended on its span and writes the one log line per request.
#[derive(Debug, Clone, Copy)]
pub struct LogAnswer;

impl<B> OnResponse<B> for LogAnswer {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        let Labels { action, outcome } = Labels::of(response);
        let status = response.status().as_u16();
        tracing::record_all!(span, outcome = outcome, http.status = status);
        // `TraceLayer` calls this with the span entered, so the line is in it.
        tracing::info!(
            action,
            outcome,
            status,
            elapsed_ms = latency.as_millis() as u64,
            "flow request",
        );
    }
}

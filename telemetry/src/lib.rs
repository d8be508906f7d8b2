//! Logs, traces and metrics, the same way in the gateway and the flow service.
//!
//! - [`init`] installs the global `tracing` subscriber: logs as text or JSON on stderr
//!   (filtered by `RUST_LOG`, default `info`), and an OpenTelemetry layer so every span
//!   has a trace. Spans are exported over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the exporter reads the standard
//!   `OTEL_*` variables, the sampler `OTEL_TRACES_SAMPLER`, the resource `OTEL_SERVICE_NAME`.
//! - [`Telemetry::shutdown`] flushes pending spans; call it on exit.
//! - [`propagation`] carries W3C `traceparent` in HTTP headers and gRPC metadata.
//! - [`metrics_recorder`] installs the Prometheus recorder and returns the handle whose
//!   `render()` serves `GET /metrics`.

pub mod propagation;

use std::str::FromStr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Latency buckets (seconds) that put edges at WhatsApp's p90 alert thresholds: 1, 5 and 7 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.0, 10.0, 15.0,
];

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, with the fields of the current span (request id, trace id).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// What [`init`] set up; keep it until exit, then call [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans leave the process.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes pending spans and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs logging and tracing for the process. `service` names the service unless
/// `OTEL_SERVICE_NAME` does. Must be called inside a Tokio runtime (the exporter
/// batches on it).
pub fn init(service: &'static str, format: LogFormat) -> Result<Telemetry, TelemetryError> {
    let exporting = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()));
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    install_with(provider.tracer(service), format, exporting)?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(Telemetry {
        provider,
        exporting,
    })
}

/// Installs the subscriber with a given tracer (tests bring an in-memory exporter).
pub fn install(
    tracer: opentelemetry_sdk::trace::Tracer,
    format: LogFormat,
) -> Result<(), TelemetryError> {
    install_with(tracer, format, true)
}

/// [`install`]; `exporting` says whether spans leave the process. When they do not,
/// every span still has its trace (the trace id in the logs, `traceparent` to the
/// flow service), but what only an exported span would show is not collected: code
/// locations, targets, thread names, busy/idle times, log events as span events, and the
/// OpenTelemetry context made current on each poll. That was about a tenth of the
/// gateway's CPU per request.
fn install_with(
    tracer: opentelemetry_sdk::trace::Tracer,
    format: LogFormat,
    exporting: bool,
) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    subscriber(tracer, format, exporting, filter)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(())
}

/// The subscriber [`install_with`] installs: the OpenTelemetry layer (spans only unless
/// exporting), the log lines, and `filter` (`RUST_LOG`) over both.
///
/// The filter is the outermost layer. Under the OpenTelemetry layer's own per-layer
/// filter, a level filter placed innermost cannot tell `tracing` that a callsite is
/// off for good: the stack then reports no maximum level and every disabled `debug!`
/// or `info_span!` of every crate (h2, hyper, tonic, ours) is asked again on each hit.
/// Outermost, it turns a disabled callsite off once, and the macros skip it below the
/// level at no cost.
fn subscriber(
    tracer: opentelemetry_sdk::trace::Tracer,
    format: LogFormat,
    exporting: bool,
    filter: EnvFilter,
) -> impl tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(exporting)
        .with_target(exporting)
        .with_threads(exporting)
        .with_tracked_inactivity(exporting)
        .with_context_activation(exporting)
        .with_filter(tracing_subscriber::filter::filter_fn(move |metadata| {
            exporting || metadata.is_span()
        }));
    // Colours only for a person at a terminal: in a file or a log collector they are
    // escape codes, and formatting them costs on every line.
    let ansi = std::io::stderr().is_terminal();
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(lines)
        .with(filter)
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (tests); the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The trace id of a span, as 32 hex digits, when it has one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;
    use tracing::level_filters::LevelFilter;

    fn tracer() -> opentelemetry_sdk::trace::Tracer {
        SdkTracerProvider::builder().build().tracer("test")
    }

    /// The filter's level reaches `tracing` as the stack's maximum, in every set-up, so
    /// that callsites below it are off without being asked on each hit; what it
    /// enables still reaches the layers.
    #[test]
    fn the_log_filter_caps_the_level_of_every_callsite() {
        for format in [LogFormat::Text, LogFormat::Json] {
            for exporting in [false, true] {
                for (directives, level) in [
                    ("warn", LevelFilter::WARN),
                    ("info", LevelFilter::INFO),
                    ("warn,flowgate_telemetry=debug", LevelFilter::DEBUG),
                ] {
                    let subscriber =
                        subscriber(tracer(), format, exporting, EnvFilter::new(directives));
                    assert_eq!(
                        tracing::Subscriber::max_level_hint(&subscriber),
                        Some(level),
                        "{format:?} {exporting} {directives}"
                    );
                }
                let subscriber = subscriber(tracer(), format, exporting, EnvFilter::new("warn"));
                tracing::subscriber::with_default(subscriber, || {
                    assert!(tracing::enabled!(Level::WARN));
                    assert!(!tracing::enabled!(Level::INFO));
                    assert!(tracing::info_span!("off").is_disabled());
                    assert!(!tracing::warn_span!("on").is_disabled());
                    // Spans reach the OpenTelemetry layer: an enabled one has a trace.
                    assert!(trace_id(&tracing::warn_span!("traced")).is_some());
                });
            }
        }
    }
}

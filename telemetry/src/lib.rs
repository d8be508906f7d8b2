//! Logs, traces and metrics, the same way in the gateway and the flow service.
//!
//! - [`init`] installs the global `tracing` subscriber: logs as text or JSON on stderr
//!   (filtered by `RUST_LOG`, default `info`), and an OpenTelemetry layer so every span
//!   has a trace. The spans of a request's trace are made under the target [`TRACE`],
//!   whatever `RUST_LOG` says: the log level chooses log lines, not whether a request
//!   has a trace. Spans are exported over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the exporter reads the standard
//!   `OTEL_*` variables, the sampler `OTEL_TRACES_SAMPLER`, the resource `OTEL_SERVICE_NAME`.
//! - [`Telemetry::shutdown`] flushes pending spans; call it on exit.
//! - [`propagation`] carries W3C `traceparent` in HTTP headers and gRPC metadata.
//! - [`metrics_recorder`] installs the Prometheus recorder and returns the handle whose
//!   `render()` serves `GET /metrics`.

mod ids_only;
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

/// The target of the spans that make a request's trace (`info_span!(target: TRACE, …)`).
/// The OpenTelemetry layer takes them at every `RUST_LOG`; the log lines show them as
/// the context of a line when `RUST_LOG` enables `info` for this target (the default
/// does; `RUST_LOG=warn,flowgate::trace=info` keeps them on warnings only).
pub const TRACE: &str = "flowgate::trace";

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
/// gateway's CPU per request. Nor are the spans' field values, enters, exits and closes
/// ([`ids_only`]): about 8 % of the gateway's instructions and 7 % of the flow service's
/// for a plain request at `RUST_LOG=warn` (5–6 % of the gateway's at `info`), and with
/// the layer's filter inside the wrapper another 4–5 % of each.
fn install_with(
    tracer: opentelemetry_sdk::trace::Tracer,
    format: LogFormat,
    exporting: bool,
) -> Result<(), TelemetryError> {
    let directives = log_directives(std::env::var("RUST_LOG").ok());
    subscriber(tracer, format, exporting, &directives)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(())
}

/// The log filter's directives: `RUST_LOG`, or `info` when it is unset, not Unicode, or
/// empty (an empty `RUST_LOG` would otherwise turn every line off).
fn log_directives(rust_log: Option<String>) -> String {
    rust_log
        .filter(|directives| !directives.trim().is_empty())
        .unwrap_or_else(|| "info".into())
}

/// The subscriber [`install_with`] installs: the OpenTelemetry layer and the log lines,
/// each behind its own filter.
///
/// - The log lines: `directives` (`RUST_LOG`), events and spans alike.
/// - The OpenTelemetry layer: the spans of [`TRACE`] at `info` and above, always. When
///   exporting, also what `directives` enables (events become span events). When not,
///   nothing else: another span's ids would be shown nowhere (the log lines show the
///   trace id that the gateway and the flow service record on the trace's spans), and
///   the layer and its filter sit inside [`ids_only`], which skips both on each enter,
///   exit, record and close.
///
/// `RUST_LOG` cannot take the trace's spans away; when exporting, a span it enables joins
/// the trace too.
///
/// Every filter here decides from a callsite's metadata alone (unless `RUST_LOG` has
/// span or field directives, as before) and tells its maximum level, so `tracing` learns
/// once per callsite whether anything wants it, and turns off for good every callsite
/// none does (h2's, hyper's and tonic's `debug!`, our own `info!` at `RUST_LOG=warn`);
/// the macros then skip them at the cost of one load.
fn subscriber(
    tracer: opentelemetry_sdk::trace::Tracer,
    format: LogFormat,
    exporting: bool,
    directives: &str,
) -> impl tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a> {
    use std::io::IsTerminal;
    use tracing::Level;
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    // Directives that do not parse fall back to the default, as
    // `EnvFilter::try_from_default_env` did.
    let filter = || {
        EnvFilter::builder()
            .parse(directives)
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    fn trace_span(metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_span() && metadata.target() == TRACE && *metadata.level() <= Level::INFO
    }
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(exporting)
        .with_target(exporting)
        .with_threads(exporting)
        .with_tracked_inactivity(exporting)
        .with_context_activation(exporting);
    let otel = if exporting {
        let trace_spans = filter_fn(trace_span).with_max_level_hint(LevelFilter::INFO);
        otel.with_filter(trace_spans.or(filter())).boxed()
    } else {
        ids_only::filtered(otel, trace_span, LevelFilter::INFO).boxed()
    };
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
    }
    .with_filter(filter());
    tracing_subscriber::registry().with(otel).with(lines)
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

/// Records the trace id of `of` (when it has one) as the `trace_id` field of `span`,
/// which declares it (`trace_id = tracing::field::Empty`). Recorded as a display value:
/// only a log line that shows the field formats it. `of` is `span` itself, or a span of
/// the same trace whose context is built already (asking a span for its context builds
/// it).
pub fn record_trace_id(span: &tracing::Span, of: &tracing::Span) {
    if let Some(trace_id) = trace_id(of) {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// The trace id of a span, when it has one; it displays as 32 hex digits. Record it as
/// `tracing::field::display(id)` ([`record_trace_id`]).
pub fn trace_id(span: &tracing::Span) -> Option<opentelemetry::trace::TraceId> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;
    use tracing::level_filters::LevelFilter;

    fn tracer() -> opentelemetry_sdk::trace::Tracer {
        SdkTracerProvider::builder().build().tracer("test")
    }

    /// The metadata of a callsite of its own with this target, level and kind, as a
    /// `tracing` macro would register it.
    macro_rules! callsite {
        ($target:expr, $level:ident, $kind:ident) => {{
            use tracing::callsite::{Callsite, Identifier};
            use tracing::field::FieldSet;
            use tracing::metadata::Kind;
            use tracing::subscriber::Interest;
            struct Site;
            static SITE: Site = Site;
            static METADATA: tracing::Metadata<'static> = tracing::Metadata::new(
                "callsite",
                $target,
                Level::$level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                Kind::$kind,
            );
            impl Callsite for Site {
                fn set_interest(&self, _: Interest) {}
                fn metadata(&self) -> &tracing::Metadata<'_> {
                    &METADATA
                }
            }
            &METADATA
        }};
    }

    /// With no exporter, the OpenTelemetry layer gets each span's ids and parent but none
    /// of its values ([`ids_only`]); with one, it gets them all.
    #[test]
    fn only_an_exported_span_collects_its_values() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        for exporting in [false, true] {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let dispatch = tracing::Dispatch::new(subscriber(
                provider.tracer("test"),
                LogFormat::Text,
                exporting,
                "warn",
            ));
            // Without an exporter, a span is built only once its context is asked for
            // (as the gateway does for the trace id and the `traceparent`), and ends when
            // it is dropped; so each span here is asked for its trace id once.
            let started = |span: tracing::Span| {
                assert!(trace_id(&span).is_some());
                span
            };
            tracing::dispatcher::with_default(&dispatch, || {
                let request = tracing::info_span!(
                    target: TRACE,
                    "request",
                    route = "/flow-endpoint",
                    outcome = tracing::field::Empty,
                );
                request.record("outcome", "screen");
                request.in_scope(|| {
                    let call = tracing::info_span!(target: TRACE, "call", attempt = 1);
                    started(call).in_scope(|| {});
                    // An explicit root inside the request, and an explicit child of it
                    // outside: the parent is the one named, not the current span.
                    started(tracing::info_span!(target: TRACE, parent: None, "root"))
                        .in_scope(|| {});
                });
                started(tracing::info_span!(target: TRACE, parent: &request, "child"))
                    .in_scope(|| {});
                // A span of the trace that nothing asks about: exported, it is built
                // when it closes; not exported, never.
                tracing::info_span!(target: TRACE, "unasked").in_scope(|| {});
                started(request).in_scope(|| {});
            });
            let spans = exporter.get_finished_spans().unwrap();
            let span = |name: &str| {
                spans
                    .iter()
                    .find(|span| span.name == name)
                    .unwrap_or_else(|| panic!("no {name} span: {spans:?}"))
            };
            let (request, call) = (span("request"), span("call"));
            for child in [call, span("child")] {
                assert_eq!(
                    child.span_context.trace_id(),
                    request.span_context.trace_id()
                );
                assert_eq!(child.parent_span_id, request.span_context.span_id());
            }
            assert_eq!(
                spans.iter().any(|span| span.name == "unasked"),
                exporting,
                "{spans:?}"
            );
            let root = span("root");
            assert_eq!(root.parent_span_id, opentelemetry::trace::SpanId::INVALID);
            assert_ne!(
                root.span_context.trace_id(),
                request.span_context.trace_id()
            );
            let keys = |span: &opentelemetry_sdk::trace::SpanData| -> Vec<String> {
                span.attributes
                    .iter()
                    .map(|kv| kv.key.to_string())
                    .collect()
            };
            if exporting {
                for key in ["route", "outcome"] {
                    assert!(keys(request).iter().any(|k| k == key), "{request:?}");
                }
                assert!(keys(call).iter().any(|k| k == "attempt"), "{call:?}");
            } else {
                assert!(request.attributes.is_empty(), "{request:?}");
                assert!(call.attributes.is_empty(), "{call:?}");
            }
        }
    }

    /// With no exporter, a request's span still continues the caller's `traceparent`
    /// and sends its own on, with the caller's `tracestate` when there is one; an empty
    /// one is not sent.
    #[test]
    fn a_remote_parent_is_continued_and_sent_on_without_an_exporter() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        for state in [None, Some("vendor=opaque")] {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "traceparent",
                format!("00-{trace}-{parent}-01").parse().unwrap(),
            );
            if let Some(state) = state {
                headers.insert("tracestate", state.parse().unwrap());
            }
            let dispatch =
                tracing::Dispatch::new(subscriber(tracer(), LogFormat::Json, false, "warn"));
            tracing::dispatcher::with_default(&dispatch, || {
                let request = tracing::info_span!(target: TRACE, "request");
                propagation::set_parent_from(&request, &headers);
                assert_eq!(
                    trace_id(&request).map(|id| id.to_string()).as_deref(),
                    Some(trace)
                );
                let call = request.in_scope(|| tracing::info_span!(target: TRACE, "call"));
                let mut metadata = tonic::metadata::MetadataMap::new();
                propagation::inject(&call, &mut metadata);
                let sent = metadata.get("traceparent").unwrap().to_str().unwrap();
                let parts: Vec<&str> = sent.split('-').collect();
                assert_eq!(parts.len(), 4, "{sent}");
                assert_eq!(
                    (parts[0], parts[1], parts[3]),
                    ("00", trace, "01"),
                    "{sent}"
                );
                assert_ne!(parts[2], parent, "the call's own span id: {sent}");
                assert_eq!(
                    metadata
                        .get("tracestate")
                        .map(|value| value.to_str().unwrap()),
                    state,
                    "{metadata:?}"
                );
            });
        }
    }

    /// Without an exporter, the OpenTelemetry layer's filter sits inside [`ids_only`]'s
    /// wrapper, which spares it the registry lookup on every enter, exit, record and
    /// close; with one, the layer is not wrapped.
    #[test]
    fn only_without_an_exporter_is_the_filter_inside_the_wrapper() {
        type Wrapped = ids_only::IdsOnly<
            tracing_subscriber::filter::Filtered<
                tracing_opentelemetry::OpenTelemetryLayer<
                    tracing_subscriber::Registry,
                    opentelemetry_sdk::trace::Tracer,
                >,
                tracing_subscriber::filter::FilterFn,
                tracing_subscriber::Registry,
            >,
        >;
        for exporting in [false, true] {
            let dispatch =
                tracing::Dispatch::new(subscriber(tracer(), LogFormat::Text, exporting, "warn"));
            assert_eq!(
                dispatch.downcast_ref::<Wrapped>().is_some(),
                !exporting,
                "exporting: {exporting}"
            );
        }
    }

    #[test]
    fn an_unset_or_empty_rust_log_means_info() {
        assert_eq!(log_directives(None), "info");
        assert_eq!(log_directives(Some(String::new())), "info");
        assert_eq!(log_directives(Some(" \t".into())), "info");
        assert_eq!(log_directives(Some("warn".into())), "warn");
    }

    /// The stack tells `tracing` its maximum level, in every set-up: the log filter's, or
    /// `info` for the trace's spans when that is higher. A callsite nothing wants is off
    /// for good (`never`), so it is not asked again on each hit; what a filter enables
    /// still reaches the layers.
    #[test]
    fn every_callsite_is_decided_once_and_the_level_is_capped() {
        for format in [LogFormat::Text, LogFormat::Json] {
            for exporting in [false, true] {
                for (directives, level) in [
                    ("error", LevelFilter::INFO),
                    ("warn", LevelFilter::INFO),
                    ("info", LevelFilter::INFO),
                    ("warn,flowgate_telemetry=debug", LevelFilter::DEBUG),
                    ("not a [valid directive", LevelFilter::INFO),
                ] {
                    let subscriber = subscriber(tracer(), format, exporting, directives);
                    assert_eq!(
                        tracing::Subscriber::max_level_hint(&subscriber),
                        Some(level),
                        "{format:?} {exporting} {directives}"
                    );
                }
                // A dispatcher for `directives`, once each callsite is checked to be off
                // for good (`never`) or not.
                let decided =
                    |directives: &str, sites: &[(&'static tracing::Metadata<'static>, bool)]| {
                        let dispatch = tracing::Dispatch::new(subscriber(
                            tracer(),
                            format,
                            exporting,
                            directives,
                        ));
                        for &(site, never) in sites {
                            assert_eq!(
                                dispatch.register_callsite(site).is_never(),
                                never,
                                "{directives}: {site:?}"
                            );
                        }
                        dispatch
                    };
                // Directives that do not parse mean `info`, events included. (Dropped at
                // once: a callsite's interest is shared by every live dispatcher.)
                drop(decided(
                    "not a [valid directive",
                    &[
                        (callsite!("ours", INFO, EVENT), false),
                        (callsite!("ours", DEBUG, EVENT), true),
                    ],
                ));
                let dispatch = decided(
                    "warn",
                    &[
                        (callsite!("h2", INFO, SPAN), true),
                        (callsite!("ours", INFO, EVENT), true),
                        (callsite!(TRACE, DEBUG, SPAN), true),
                        (callsite!(TRACE, INFO, EVENT), true),
                        // Wanted by one layer and not the other: asked on each hit.
                        (callsite!(TRACE, INFO, SPAN), false),
                        (callsite!("ours", WARN, EVENT), false),
                    ],
                );
                tracing::dispatcher::with_default(&dispatch, || {
                    assert!(tracing::enabled!(Level::WARN));
                    assert!(!tracing::enabled!(Level::INFO));
                    assert!(!tracing::enabled!(target: TRACE, Level::INFO));
                    assert!(tracing::info_span!("off").is_disabled());
                    assert!(tracing::debug_span!(target: TRACE, "below").is_disabled());
                    assert!(!tracing::warn_span!("on").is_disabled());
                    // A span of the trace has one even when the log level leaves it
                    // out; another span the log level enables joins it only when
                    // exporting (without an exporter, its ids would be shown nowhere).
                    assert_eq!(
                        trace_id(&tracing::warn_span!("traced")).is_some(),
                        exporting
                    );
                    let request = tracing::info_span!(target: TRACE, "request");
                    let id = trace_id(&request).expect("a trace span has a trace at warn");
                    let child = request.in_scope(|| tracing::info_span!(target: TRACE, "call"));
                    assert_eq!(trace_id(&child), Some(id));
                });
            }
        }
    }
}

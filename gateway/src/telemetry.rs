//! The gateway's metrics, named `flowgate_*`, and where they are recorded. Served as
//! Prometheus text at `GET /metrics` on the admin listener. Labels are bounded: the
//! configured route, the action, stable outcome codes, status codes.
//!
//! Logging and tracing are set up by `flowgate_telemetry::init` (JSON logs with
//! `FLOWGATE_LOG_FORMAT=json`, OTLP export with the standard `OTEL_*` variables).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::Response;
use metrics::{Counter, Gauge, Histogram, SharedString};

/// How a request ended, in bounded labels: attached to its answer for the metrics
/// layer and the span. The handler sets it; `GatewayError::into_response` sets it for
/// refusals made before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    /// The action as WhatsApp names it; empty before the payload is parsed.
    pub action: &'static str,
    /// An answer's kind, or an error's stable code.
    pub outcome: &'static str,
}

impl Labels {
    /// The labels attached to `response`; `unknown` where none are.
    pub fn of<B>(response: &Response<B>) -> Self {
        response
            .extensions()
            .get::<Labels>()
            .copied()
            .unwrap_or(Labels {
                action: "",
                outcome: "unknown",
            })
    }
}

/// The request series of one configured route, with their handles kept: looking a
/// series up in the recorder hashes and allocates its labels on every request, a kept
/// handle is an atomic add. The label values are bounded (see the module), so is this.
#[derive(Debug)]
pub struct RouteSeries {
    route: Arc<str>,
    series: Mutex<HashMap<SeriesKey, (Counter, Histogram)>>,
}

/// Action, outcome and status.
type SeriesKey = (&'static str, &'static str, u16);

impl RouteSeries {
    pub fn new(route: &str) -> Self {
        // A handle taken before the recorder is installed would count nowhere.
        flowgate_telemetry::metrics_recorder();
        Self {
            route: route.into(),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request and its latency.
    pub fn request(
        &self,
        action: &'static str,
        outcome: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let action = if action.is_empty() { "unknown" } else { action };
        let (counter, histogram) = {
            let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            series
                .entry((action, outcome, status))
                .or_insert_with(|| {
                    let route = SharedString::from(self.route.clone());
                    (
                        metrics::counter!(
                            "flowgate_requests_total",
                            "route" => route.clone(),
                            "action" => action,
                            "outcome" => outcome,
                            "status" => status.to_string(),
                        ),
                        metrics::histogram!(
                            "flowgate_request_duration_seconds",
                            "route" => route,
                            "action" => action,
                        ),
                    )
                })
                .clone()
        };
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
        match outcome {
            "cannot_decrypt" => metrics::counter!("flowgate_decrypt_failures_total").increment(1),
            "invalid_signature" => {
                metrics::counter!("flowgate_signature_failures_total").increment(1)
            }
            "token_invalid" => metrics::counter!("flowgate_token_invalid_total").increment(1),
            _ => {}
        }
    }
}

/// The error keys WhatsApp documents for error notifications. Only these become
/// `error_key` label values: the key is the client's text, so any open rule (such as
/// "short lowercase words") would still let a client create series at will.
pub const KNOWN_ERROR_KEYS: &[&str] = &["invalid-screen-transition", "payload-schema-error"];

/// The `error_key` label for a notification's key: the key itself when WhatsApp
/// documents it, else `other`.
pub fn error_key_label(error_key: &str) -> &'static str {
    KNOWN_ERROR_KEYS
        .iter()
        .find(|known| **known == error_key)
        .copied()
        .unwrap_or("other")
}

/// Counts an error notification by its key, bounded by [`error_key_label`].
pub fn error_notification(error_key: &str) {
    metrics::counter!("flowgate_error_notifications_total", "error_key" => error_key_label(error_key))
        .increment(1);
}

/// Counts a request refused because the gateway was at `FLOWGATE_MAX_IN_FLIGHT`.
pub fn shed() {
    metrics::counter!("flowgate_shed_total").increment(1);
}

/// One backend call attempt, by method and final gRPC code.
pub fn backend_call(method: &'static str, code: tonic::Code, elapsed: Duration) {
    type Series = Mutex<HashMap<(&'static str, tonic::Code), Histogram>>;
    static SERIES: OnceLock<Series> = OnceLock::new();
    let histogram = SERIES
        .get_or_init(|| {
            flowgate_telemetry::metrics_recorder();
            Mutex::default()
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((method, code))
        .or_insert_with(|| {
            metrics::histogram!(
                "flowgate_backend_call_duration_seconds",
                "method" => method,
                "code" => format!("{code:?}"),
            )
        })
        .clone();
    histogram.record(elapsed.as_secs_f64());
}

/// One retry of a backend call.
pub fn retry(method: &'static str) {
    metrics::counter!("flowgate_backend_retries_total", "method" => method).increment(1);
}

/// Tracks `flowgate_in_flight` for as long as it lives.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        Self::gauge().increment(1.0);
        InFlight(())
    }

    fn gauge() -> &'static Gauge {
        static GAUGE: OnceLock<Gauge> = OnceLock::new();
        GAUGE.get_or_init(|| {
            flowgate_telemetry::metrics_recorder();
            metrics::gauge!("flowgate_in_flight")
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        Self::gauge().decrement(1.0);
    }
}

/// Moves `flowgate_connections_open{listener}`, the connections a listener holds
/// open, by `change` (0 makes the series appear before the first connection).
pub fn connections_open(listener: &'static str, change: f64) {
    metrics::gauge!("flowgate_connections_open", "listener" => listener).increment(change);
}

/// Moves `flowgate_connections_parked{listener}`, the idle HTTP/1 connections held as
/// their TLS stream alone (`server/connection.rs`).
pub fn connections_parked(listener: &'static str, change: f64) {
    metrics::gauge!("flowgate_connections_parked", "listener" => listener).increment(change);
}

/// Counts a connection closed at once because a connection cap was reached.
pub fn connection_refused(listener: &'static str, reason: &'static str) {
    metrics::counter!("flowgate_connections_refused_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

/// Counts a connection the gateway closed because it held its slot unused
/// (`handshake_timeout`, `header_timeout`, `idle_timeout`).
pub fn connection_closed(listener: &'static str, reason: &'static str) {
    metrics::counter!("flowgate_connections_closed_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_documented_error_keys_become_labels() {
        for key in KNOWN_ERROR_KEYS {
            assert_eq!(error_key_label(key), *key);
        }
        // Made-up keys, plain-looking or not, all share one label.
        for key in [
            "made-up-key-1",
            "payload",
            "",
            "Payload-Schema-Error",
            "a\nb",
        ] {
            assert_eq!(error_key_label(key), "other", "{key:?}");
        }
    }
}

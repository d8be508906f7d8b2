//! Observability as an operator meets it, with the real binaries: one trace across the
//! gateway and the flow service exported over OTLP to a receiver built from
//! `opentelemetry-proto`, continuing the caller's `traceparent`; `/metrics` on both
//! admin listeners; JSON logs with request id and trace id, and no raw token or screen
//! value anywhere in them.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde_json::{Value, json};

use crate::support::{free_port, service_bin, stderr_lines, wait_ready};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TOKEN: &str = "raw-token-never-logged";
const SCREEN_VALUE: &str = "private@example.com";

/// An OTLP/gRPC trace receiver that keeps what it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ResourceSpans>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .unwrap()
            .extend(request.into_inner().resource_spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Spawns a binary with its stderr collected into a shared buffer.
fn spawn(command: &mut Command) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    (child, lines)
}

fn stop(child: &mut Child) {
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn service_name(resource_spans: &ResourceSpans) -> String {
    resource_spans
        .resource
        .iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            AnyValue::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

/// Both binaries, logging JSON lines at a given `RUST_LOG` and, when asked, exporting
/// spans over OTLP to a receiver of their own.
struct Pair {
    receiver: Receiver,
    http: reqwest::Client,
    gateway_port: u16,
    gateway_admin: u16,
    service_admin: u16,
    gateway: Child,
    service: Child,
    gateway_log: Arc<Mutex<Vec<String>>>,
    service_log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn start(log_level: &str, exporting: bool) -> Pair {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let otlp = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        let dir = tempfile::tempdir().unwrap();
        let (service_port, service_admin, gateway_port, gateway_admin) =
            (free_port(), free_port(), free_port(), free_port());
        let gateway_bin = env!("CARGO_BIN_EXE_flowgate-gateway");
        let otel = |command: &mut Command| {
            command
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .env("RUST_LOG", log_level);
            if exporting {
                command
                    .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
                    .env("OTEL_BSP_SCHEDULE_DELAY", "100");
            }
        };
        let mut service_command = Command::new(service_bin());
        service_command
            .env("FLOW_SERVICE_LISTEN", format!("127.0.0.1:{service_port}"))
            .env(
                "FLOW_SERVICE_ADMIN_LISTEN",
                format!("127.0.0.1:{service_admin}"),
            )
            .env(
                "FLOW_SERVICE_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("flows.db").display()),
            )
            .env("FLOW_SERVICE_DRAIN_DELAY", "0s")
            .env("FLOW_SERVICE_LOG_FORMAT", "json");
        otel(&mut service_command);
        let (service, service_log) = spawn(&mut service_command);
        let mut gateway_command = Command::new(gateway_bin);
        gateway_command
            .env("FLOWGATE_LISTEN", format!("127.0.0.1:{gateway_port}"))
            .env(
                "FLOWGATE_ADMIN_LISTEN",
                format!("127.0.0.1:{gateway_admin}"),
            )
            .env(
                "FLOWGATE_BACKEND",
                format!("http://127.0.0.1:{service_port}"),
            )
            .env("FLOWGATE_TLS", "off")
            .env("FLOWGATE_SHUTDOWN_GRACE", "1s")
            .env("FLOWGATE_LOG_FORMAT", "json");
        otel(&mut gateway_command);
        let (gateway, gateway_log) = spawn(&mut gateway_command);

        let pair = Pair {
            receiver,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            gateway_port,
            gateway_admin,
            service_admin,
            gateway,
            service,
            gateway_log,
            service_log,
            _dir: dir,
        };
        wait_ready(&pair.http, gateway_admin, || {
            format!(
                "{:?}\n{:?}",
                pair.gateway_log.lock().unwrap(),
                pair.service_log.lock().unwrap()
            )
        })
        .await;
        pair
    }

    /// The sign-up step, continuing the caller's trace.
    async fn traced_step(&self) {
        let body = json!({"version": "3.0", "action": "data_exchange", "flow_token": TOKEN,
                          "screen": "WELCOME_SCREEN", "data": {"email": SCREEN_VALUE}});
        let response = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/flow-endpoint",
                self.gateway_port
            ))
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// Stops both binaries, which flushes their last spans, and checks the trace of
    /// [`Pair::traced_step`]: the request span continues the caller's, both services'
    /// spans are in it, and nothing private is in any of them.
    async fn stop_and_check_the_trace(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let spans = loop {
            let spans = self.receiver.0.lock().unwrap().clone();
            let services: Vec<String> = spans.iter().map(service_name).collect();
            if services.iter().any(|s| s == "flowgate-gateway")
                && services.iter().any(|s| s == "flow-service")
            {
                break spans;
            }
            assert!(
                Instant::now() < deadline,
                "spans from both services expected, got {services:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let trace_id = hex(TRACE_ID);
        let mut names = Vec::new();
        for resource in &spans {
            let service = service_name(resource);
            for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                if span.trace_id != trace_id {
                    continue;
                }
                names.push((service.clone(), span.name.clone()));
                // The spans whose fields a log line shows as its context carry the
                // trace id (the gateway's request span; in the flow service, the call's
                // and its handler's, where a flow's own lines are logged).
                let value = |key: &str| {
                    span.attributes
                        .iter()
                        .find(|kv| kv.key == key)
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                        .map(|value| format!("{value:?}"))
                };
                if matches!(
                    (service.as_str(), span.name.as_str()),
                    ("flowgate-gateway", "POST flow endpoint")
                        | ("flow-service", "flowgate.v1.FlowService/DataExchange")
                        | ("flow-service", "flow.handler")
                ) {
                    assert!(
                        value("trace_id").is_some_and(|id| id.contains(TRACE_ID)),
                        "{service} {}: {:?}",
                        span.name,
                        span.attributes
                    );
                    assert!(
                        value("request_id").is_some_and(|id| id.len() > 20),
                        "{service} {}: {:?}",
                        span.name,
                        span.attributes
                    );
                }
                if span.name == "POST flow endpoint" {
                    assert_eq!(
                        span.parent_span_id,
                        hex(PARENT_ID),
                        "the request span continues the caller's trace"
                    );
                }
                let attributes = format!("{:?}", span.attributes);
                assert!(
                    !attributes.contains(TOKEN) && !attributes.contains(SCREEN_VALUE),
                    "{attributes}"
                );
            }
        }
        for (service, name) in [
            ("flowgate-gateway", "POST flow endpoint"),
            ("flowgate-gateway", "flowgate.v1.FlowService/DataExchange"),
            ("flow-service", "flowgate.v1.FlowService/DataExchange"),
            ("flow-service", "flow.handler"),
        ] {
            assert!(
                names.iter().any(|(s, n)| s == service && n == name),
                "no {name} from {service} in the trace: {names:?}"
            );
        }
    }

    /// Stops both binaries (with SIGTERM: they flush their last spans).
    fn stop(&mut self) {
        stop(&mut self.gateway);
        stop(&mut self.service);
    }

    /// Both binaries' log lines so far, each parsed and named by its binary; every one
    /// is a JSON object with a level, and none holds the raw token or screen data.
    fn lines(&self) -> Vec<(&'static str, Value)> {
        let mut parsed = Vec::new();
        for (binary, log) in [
            ("gateway", &self.gateway_log),
            ("flow-service", &self.service_log),
        ] {
            for line in log.lock().unwrap().iter() {
                assert!(
                    !line.contains(TOKEN),
                    "{binary} logged the raw token: {line}"
                );
                assert!(
                    !line.contains(SCREEN_VALUE),
                    "{binary} logged screen data: {line}"
                );
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{binary}: not JSON ({e}): {line}"));
                assert!(value["level"].is_string(), "{binary}: {line}");
                parsed.push((binary, value));
            }
        }
        parsed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_metrics_and_logs_across_both_binaries() {
    let mut pair = Pair::start("info", true).await;
    pair.traced_step().await;
    let http = &pair.http;
    // A request the gateway refuses, for the error counters.
    let refused = http
        .post(format!(
            "http://127.0.0.1:{}/flow-endpoint",
            pair.gateway_port
        ))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // Metrics on both admin listeners.
    let scrape = |port: u16| {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let metrics = scrape(pair.gateway_admin).await;
    for expected in [
        r#"flowgate_requests_total{route="/flow-endpoint",action="data_exchange",outcome="screen",status="200"} 1"#,
        r#"flowgate_requests_total{route="/flow-endpoint",action="unknown",outcome="invalid_json",status="400"} 1"#,
        r#"flowgate_request_duration_seconds_bucket{route="/flow-endpoint",action="data_exchange",le="1"}"#,
        r#"le="5""#,
        r#"le="7""#,
        r#"flowgate_backend_call_duration_seconds_count{method="DataExchange",code="Ok"} 1"#,
        "flowgate_in_flight",
    ] {
        assert!(
            metrics.contains(expected),
            "gateway /metrics lacks {expected}:\n{metrics}"
        );
    }
    let metrics = scrape(pair.service_admin).await;
    for expected in [
        r#"flow_service_calls_total{method="DataExchange",code="Ok"} 1"#,
        "flow_service_call_duration_seconds_bucket",
        "flow_service_contract_violations_total 0",
    ] {
        assert!(
            metrics.contains(expected),
            "flow-service /metrics lacks {expected}:\n{metrics}"
        );
    }

    pair.stop_and_check_the_trace().await;

    // JSON logs: one object a line, request id and trace id on the request line, and
    // nothing private anywhere.
    let lines = pair.lines();
    for binary in ["gateway", "flow-service"] {
        assert!(
            lines.iter().any(|(b, _)| *b == binary),
            "{binary} logged nothing"
        );
    }
    let request_line = request_line(lines);
    assert_eq!(request_line["span"]["trace_id"], TRACE_ID, "{request_line}");
    assert!(
        request_line["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{request_line}"
    );
    assert_eq!(
        request_line["span"]["token"],
        flowgate_proto::token_hash(TOKEN),
        "{request_line}"
    );
}

/// `RUST_LOG` chooses log lines, not traces: with warnings only, there is no line per
/// request, and the request still has its one trace across both services, continuing
/// the caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_has_its_trace_when_only_warnings_are_logged() {
    let mut pair = Pair::start("warn", true).await;
    pair.traced_step().await;
    pair.stop_and_check_the_trace().await;
    // Not a line below `warn` in either binary, so no line per request either.
    for (binary, line) in pair.lines() {
        assert!(
            line["level"] == "WARN" || line["level"] == "ERROR",
            "{binary} logged below warn: {line}"
        );
    }
}

/// Without an exporter (the default), a request still continues the caller's trace: the
/// line per request carries the caller's trace id, read through the OpenTelemetry layer
/// that is given no span values then, in the gateway and, through the `traceparent` the
/// gateway sends on, in the flow service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_a_request_still_continues_the_callers_trace() {
    let mut pair = Pair::start("info", false).await;
    pair.traced_step().await;
    pair.stop();
    let lines = pair.lines();
    let call_line = traced_step_line(&lines, "flow-service", "flow call");
    assert_eq!(call_line["span"]["trace_id"], TRACE_ID, "{call_line}");
    let request_line = request_line(lines);
    assert_eq!(request_line["span"]["trace_id"], TRACE_ID, "{request_line}");
    assert_eq!(
        request_line["span"]["token"],
        flowgate_proto::token_hash(TOKEN),
        "{request_line}"
    );
    assert!(pair.receiver.0.lock().unwrap().is_empty());
}

/// The gateway's line for [`Pair::traced_step`].
fn request_line(lines: Vec<(&'static str, Value)>) -> Value {
    traced_step_line(&lines, "gateway", "flow request")
}

/// `binary`'s line with `message` for [`Pair::traced_step`].
fn traced_step_line(lines: &[(&'static str, Value)], binary: &str, message: &str) -> Value {
    lines
        .iter()
        .find(|(b, v)| {
            *b == binary
                && v["fields"]["message"] == message
                && v["span"]["action"] == "data_exchange"
        })
        .map(|(_, line)| line.clone())
        .unwrap_or_else(|| panic!("no {message:?} line from {binary}"))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

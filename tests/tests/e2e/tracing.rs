//! One trace across the gateway and the flow service, seen through the SDK's in-memory
//! exporter: the incoming `traceparent` is the parent of the gateway's request span,
//! which is the parent of the gRPC client span, whose context crosses the hop in gRPC
//! metadata to become the parent of the flow service's server span and handler span.
//! No raw token or screen value reaches a span.

use std::collections::HashMap;

use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_both_services() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    flowgate_telemetry::install(provider.tracer("test"), flowgate_telemetry::LogFormat::Text)
        .unwrap();

    let service = Service::start(Probe::default()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    let token = "raw-token-do-not-log";
    let response = gateway
        .client
        .post(format!("{}/flow-endpoint", gateway.base))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&whatsapp(
            "data_exchange",
            token,
            "WELCOME_SCREEN",
            json!({"email": "private@example.com"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(gateway);
    service.stop().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let by_name: HashMap<&str, &SpanData> = spans.iter().map(|s| (s.name.as_ref(), s)).collect();
    let find = |name: &str| {
        *by_name
            .get(name)
            .unwrap_or_else(|| panic!("no span {name}: {:?}", by_name.keys().collect::<Vec<_>>()))
    };
    let request = find("POST flow endpoint");
    let client = find("flowgate.v1.FlowService/DataExchange");
    let server = spans
        .iter()
        .find(|s| {
            s.name == "flowgate.v1.FlowService/DataExchange"
                && s.span_kind == opentelemetry::trace::SpanKind::Server
        })
        .expect("a server span");
    let client = if client.span_kind == opentelemetry::trace::SpanKind::Client {
        client
    } else {
        spans
            .iter()
            .find(|s| {
                s.name == "flowgate.v1.FlowService/DataExchange"
                    && s.span_kind == opentelemetry::trace::SpanKind::Client
            })
            .expect("a client span")
    };
    let handler = find("flow.handler");

    let trace_id = TraceId::from_hex(TRACE_ID).unwrap();
    for span in [request, client, server, handler] {
        assert_eq!(
            span.span_context.trace_id(),
            trace_id,
            "{} is in another trace",
            span.name
        );
    }
    assert_eq!(request.parent_span_id, SpanId::from_hex(PARENT_ID).unwrap());
    assert_eq!(client.parent_span_id, request.span_context.span_id());
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert!(server.parent_span_is_remote);
    assert_eq!(handler.parent_span_id, server.span_context.span_id());

    // The request span says what happened, with the token hashed.
    let attribute = |span: &SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attribute(request, "action").as_deref(),
        Some("data_exchange")
    );
    assert_eq!(
        attribute(request, "screen").as_deref(),
        Some("WELCOME_SCREEN")
    );
    assert_eq!(attribute(request, "outcome").as_deref(), Some("screen"));
    assert_eq!(attribute(request, "http.status").as_deref(), Some("200"));
    assert_eq!(
        attribute(request, "token"),
        Some(flowgate_proto::token_hash(token))
    );
    assert_eq!(attribute(request, "trace_id").as_deref(), Some(TRACE_ID));
    for span in &spans {
        let text = format!("{:?}", span.attributes);
        assert!(!text.contains(token), "raw token in {}: {text}", span.name);
        assert!(
            !text.contains("private@example.com"),
            "screen data in {}: {text}",
            span.name
        );
    }
}

//! The endpoint's middleware stack, driven through `app(state)` with no socket: what
//! each layer refuses, and in which order the layers run. A real `grpc.health.v1`
//! server on 127.0.0.1:0 stands in for the flow service where a request must succeed.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use flowgate_gateway::AppState;
use flowgate_gateway::crypto::signature::AppSecrets;
use flowgate_gateway::envelope::{Envelope, Meta};
use flowgate_gateway::upstream::Upstream;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const SECRET: &str = "app-secret";

/// A flow service that only answers health checks (SERVING), on 127.0.0.1:0.
async fn health_only() -> String {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    url
}

/// A gateway over `backend` with the given envelope, budget and admission limit.
fn gateway(backend: &str, envelope: Envelope, timeout: Duration, max_in_flight: usize) -> Router {
    let upstream = Upstream::new(backend, Duration::from_secs(60)).unwrap();
    flowgate_gateway::app(
        AppState::single("/flow-endpoint", envelope, upstream, timeout)
            .with_max_in_flight(max_in_flight),
    )
}

/// A Meta route that checks signatures with [`SECRET`] (and has no key: any request
/// that passes the check fails to decrypt, 421).
fn meta() -> Envelope {
    Envelope::Meta(Arc::new(Meta::new(
        Vec::new(),
        Some(AppSecrets::new(&[SECRET])),
    )))
}

fn signature(body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

/// A body whose bytes never arrive.
fn stalled() -> Body {
    Body::from_stream(tokio_stream::pending::<Result<Bytes, std::io::Error>>())
}

/// Sends a request; answers the status, the error code or JSON body, and the request id.
async fn send(app: &Router, request: Request<Body>) -> (u16, Value, String) {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json, id)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_at_once() {
    let app = gateway(
        "http://127.0.0.1:1",
        Envelope::Plain,
        Duration::from_secs(60),
        1,
    );
    let mut request = post("/flow-endpoint", stalled());
    request
        .headers_mut()
        .insert("content-length", (1024 * 1024 + 1).into());
    // The body never comes: only the declared length can have refused it.
    let (status, body, _) = tokio::time::timeout(Duration::from_secs(5), send(&app, request))
        .await
        .expect("refused without waiting for the body");
    assert_eq!((status, code(&body)), (413, "payload_too_large"));

    // A body that turns out larger than it said is refused too, once read.
    let (status, body, _) = send(&app, post("/flow-endpoint", vec![b' '; 1024 * 1024 + 1])).await;
    assert_eq!((status, code(&body)), (413, "payload_too_large"));
}

#[tokio::test]
async fn a_stalled_body_holds_no_in_flight_slot() {
    let backend = health_only().await;
    let app = gateway(&backend, Envelope::Plain, Duration::from_millis(500), 1);
    let stalled = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post("/flow-endpoint", stalled())).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!stalled.is_finished());

    // The only slot is free: a real request is admitted and answered.
    let (status, body, _) = send(&app, post("/flow-endpoint", r#"{"action":"ping"}"#)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "active");

    // The stalled request ends at its body budget.
    let (status, body, _) = stalled.await.unwrap();
    assert_eq!((status, code(&body)), (408, "body_timeout"));
}

#[tokio::test]
async fn a_body_still_arriving_when_the_answer_margin_starts_is_late() {
    // A budget of 1 s keeps its last 100 ms to answer: a body that is whole only at
    // 950 ms is the client's lateness (408), not the flow service's (504), and the
    // flow service is not called without time to answer.
    let backend = health_only().await;
    let app = gateway(&backend, Envelope::Plain, Duration::from_secs(1), 1);
    let late = Body::from_stream(futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(950)).await;
        Ok::<_, std::io::Error>(Bytes::from_static(
            br#"{"version":"3.0","action":"INIT","flow_token":"t"}"#,
        ))
    }));
    let started = std::time::Instant::now();
    let (status, body, _) = send(&app, post("/flow-endpoint", late)).await;
    assert_eq!((status, code(&body)), (408, "body_timeout"), "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(950),
        "refused when the margin started, not when the body came: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn admission_comes_after_the_body_and_the_signature() {
    // No slot at all: whatever reaches admission is refused there.
    let app = gateway("http://127.0.0.1:1", meta(), Duration::from_secs(60), 0);
    let body = br#"{"encrypted_flow_data":"","encrypted_aes_key":"","initial_vector":""}"#;

    let forged = Request::post("/flow-endpoint")
        .header("x-hub-signature-256", signature(b"something else"))
        .body(Body::from(&body[..]))
        .unwrap();
    let (status, json, _) = send(&app, forged).await;
    assert_eq!((status, code(&json)), (432, "invalid_signature"));

    let oversized = vec![b' '; 1024 * 1024 + 1];
    let (status, json, _) = send(&app, post("/flow-endpoint", oversized)).await;
    assert_eq!((status, code(&json)), (413, "payload_too_large"));

    let signed = Request::post("/flow-endpoint")
        .header("x-hub-signature-256", signature(body))
        .body(Body::from(&body[..]))
        .unwrap();
    let response = app.clone().oneshot(signed).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let json: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(code(&json), "overloaded");

    // With a slot, the same signed request gets as far as decryption (no key: 421).
    let app = gateway("http://127.0.0.1:1", meta(), Duration::from_secs(60), 1);
    let signed = Request::post("/flow-endpoint")
        .header("x-hub-signature-256", signature(body))
        .body(Body::from(&body[..]))
        .unwrap();
    let (status, json, _) = send(&app, signed).await;
    assert_eq!((status, code(&json)), (421, "cannot_decrypt"));
}

#[tokio::test]
async fn request_ids_are_kept_only_when_plain_and_always_sent_back() {
    let app = gateway(
        "http://127.0.0.1:1",
        Envelope::Plain,
        Duration::from_secs(60),
        1,
    );
    let with_id = |id: &str| {
        Request::post("/flow-endpoint")
            .header("x-request-id", id)
            .body(Body::from("{"))
            .unwrap()
    };
    let (status, body, id) = send(&app, with_id("abc-123")).await;
    assert_eq!(
        (status, code(&body), id.as_str()),
        (400, "invalid_json", "abc-123")
    );

    let (_, _, id) = send(&app, with_id("has space")).await;
    assert_ne!(id, "has space");
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let (_, _, id) = send(&app, post("/flow-endpoint", "{")).await;
    assert_eq!(id.len(), 36, "a UUID: {id}");

    // Refusals made by a layer carry it too.
    let mut oversized = with_id("big-1");
    oversized
        .headers_mut()
        .insert("content-length", (1024 * 1024 + 1).into());
    let (status, _, id) = send(&app, oversized).await;
    assert_eq!((status, id.as_str()), (413, "big-1"));
}

#[tokio::test]
async fn malformed_flow_names_and_other_paths_are_not_found() {
    let app = gateway(
        "http://127.0.0.1:1",
        Envelope::Plain,
        Duration::from_secs(60),
        1,
    );
    // `%FF` decodes to a byte that is not UTF-8: axum's own rejection is plain text.
    for path in ["/flows/a.b", "/flows/a%20b", "/flows/%FF", "/elsewhere"] {
        let (status, body, _) = send(&app, post(path, "{}")).await;
        assert_eq!((status, code(&body)), (404, "not_found"), "{path}");
    }
    let get = Request::get("/flow-endpoint").body(Body::empty()).unwrap();
    let (status, body, _) = send(&app, get).await;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));
}

#[tokio::test]
async fn refusals_made_by_layers_are_counted_with_their_code() {
    let metrics = flowgate_telemetry::metrics_recorder();
    let app = gateway("http://127.0.0.1:1", meta(), Duration::from_secs(60), 0);
    let oversized = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(send(&app, post("/flow-endpoint", oversized)).await.0, 413);
    assert_eq!(send(&app, post("/flow-endpoint", "{}")).await.0, 432);
    let signed = Request::post("/flow-endpoint")
        .header("x-hub-signature-256", signature(b"{}"))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&app, signed).await.0, 503);

    let text = metrics.render();
    for expected in [
        r#"flowgate_requests_total{route="/flow-endpoint",action="unknown",outcome="payload_too_large",status="413"} 1"#,
        r#"flowgate_requests_total{route="/flow-endpoint",action="unknown",outcome="invalid_signature",status="432"} 1"#,
        r#"flowgate_requests_total{route="/flow-endpoint",action="unknown",outcome="overloaded",status="503"} 1"#,
        "flowgate_signature_failures_total 1",
        "flowgate_shed_total 1",
    ] {
        assert!(
            text.contains(expected),
            "/metrics lacks {expected}:\n{text}"
        );
    }
}

//! The plain-JSON Flows endpoint end to end: HTTPS client → gateway → gRPC → flow service.

use std::time::{Duration, Instant};

use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, eventually, read, whatsapp};
use serde_json::json;

async fn stack() -> (Service, Gateway, Probe) {
    let probe = Probe::default();
    let service = Service::start(probe.clone()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    (service, gateway, probe)
}

#[tokio::test]
async fn the_request_context_reaches_the_flow() {
    let (_service, gateway, _) = stack().await;
    let request = whatsapp(
        "INIT",
        "tok",
        "",
        json!({"n": 1, "nested": {"list": [true, null, 2.5]}}),
    );
    let response = gateway
        .client
        .post(format!("{}/flows/probe", gateway.base))
        .header("x-request-id", "req-42")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let (status, body) = read(response).await;
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["flow"], "probe");
    assert_eq!(data["request_id"], "req-42");
    assert_eq!(data["attempt"], 1);
    assert_eq!(data["version"], "3.0");
    assert_eq!(data["signature_verified"], false);
    assert_eq!(data["flow_token"], "tok");
    assert_eq!(
        data["data"],
        json!({"n": 1, "nested": {"list": [true, null, 2.5]}})
    );
    let key = data["idempotency_key"].as_str().unwrap();
    assert_eq!(key.len(), 64);

    // The same request again is the same call: the service answers it with the first
    // call's stored outcome (request id included) instead of running the flow again.
    let (_, again) = gateway.post("/flows/probe", &request).await;
    assert_eq!(again, body);
    // Other data, another key.
    let (_, other) = gateway
        .post(
            "/flows/probe",
            &whatsapp("INIT", "tok", "", json!({"n": 2})),
        )
        .await;
    assert_ne!(other["data"]["idempotency_key"], key);
}

#[tokio::test]
async fn error_notifications_are_forwarded_and_acknowledged() {
    let (_service, gateway, probe) = stack().await;
    let acknowledged = (200, json!({"data": {"acknowledged": true}}));
    let notification = whatsapp(
        "data_exchange",
        "tok",
        "WELCOME",
        json!({"error": "invalid-screen-transition", "error_message": "Screen NOPE is not allowed"}),
    );
    assert_eq!(
        gateway.post("/flows/probe", &notification).await,
        acknowledged
    );
    let keyed = whatsapp(
        "INIT",
        "tok",
        "",
        json!({"error_key": "payload-schema-error", "error_message": "bad"}),
    );
    assert_eq!(gateway.post("/flows/probe", &keyed).await, acknowledged);
    // The default flow acknowledges too.
    assert_eq!(
        gateway.post("/flow-endpoint", &notification).await,
        acknowledged
    );

    let notices = probe.notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[0].error_key, "invalid-screen-transition");
    assert_eq!(notices[0].error_message, "Screen NOPE is not allowed");
    assert_eq!(notices[0].action, "data_exchange");
    assert_eq!(notices[0].screen, "WELCOME");
    assert_eq!(notices[0].flow_token, "tok");
    assert_eq!(notices[1].error_key, "payload-schema-error");
    assert_eq!(notices[1].action, "INIT");
}

#[tokio::test]
async fn outcomes_and_service_failures_map_to_whatsapp_answers() {
    let (_service, gateway, _) = stack().await;
    let cases = [
        (
            "EXPIRED",
            json!({}),
            427,
            json!({"error_msg": "This sign-up link has expired."}),
        ),
        (
            "DONE",
            json!({"order": 7, "flow_token": "forged"}),
            200,
            json!({"screen": "SUCCESS", "data": {
            "extension_message_response": {"params": {"order": 7, "flow_token": "tok"}}}}),
        ),
        (
            "ECHO",
            json!({"x": "y"}),
            200,
            json!({"screen": "ECHO", "data": {"x": "y"}}),
        ),
    ];
    for (screen, data, status, body) in cases {
        // A token of its own per case, as completing uses a token up.
        let token = if screen == "DONE" { "tok" } else { screen };
        assert_eq!(
            gateway
                .post(
                    "/flows/probe",
                    &whatsapp("data_exchange", token, screen, data)
                )
                .await,
            (status, body),
            "{screen}"
        );
    }
    let errors = [
        ("FAIL", 503, "service_unavailable"),
        ("DOWN", 503, "service_unavailable"),
        ("INVALID", 400, "rejected"),
        ("NOT_OBJECT", 503, "service_unavailable"),
        ("SUCCESS", 502, "bad_upstream_response"),
    ];
    for (screen, status, code) in errors {
        let (got_status, body) = gateway
            .post(
                "/flows/probe",
                &whatsapp("data_exchange", "tok-2", screen, json!({})),
            )
            .await;
        assert_eq!(
            (got_status, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{screen}: {body}"
        );
        assert!(body["error"]["message"].is_string());
        // Internals stay in the logs.
        assert!(!body.to_string().contains("on purpose"), "{body}");
        assert!(!body.to_string().contains("database"), "{body}");
    }
    // The signup flow refuses a screen it does not have.
    let (status, body) = gateway
        .post(
            "/flow-endpoint",
            &whatsapp("data_exchange", "tok-2", "NOPE", json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("rejected"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("NOPE"));
}

/// A service that hangs gets a 504 before the request deadline.
#[tokio::test]
async fn a_slow_service_gets_a_504_before_the_deadline() {
    let service = Service::start(Probe::default()).await;
    let mut options = GatewayOptions::new(service.url());
    options.request_timeout = Duration::from_millis(1000);
    let gateway = Gateway::start(options).await;
    // Warm the connection so the timing below is the call alone.
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0,
        200
    );

    let started = Instant::now();
    let (status, body) = gateway
        .post(
            "/flows/probe",
            &whatsapp("data_exchange", "tok", "SLOW", json!({"ms": 5000})),
        )
        .await;
    let elapsed = started.elapsed();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("upstream_timeout")),
        "{body}"
    );
    assert!(
        elapsed < Duration::from_millis(1000),
        "answered after the deadline: {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(800),
        "gave up long before the deadline: {elapsed:?}"
    );

    // A call that fits in the budget still succeeds.
    let (status, _) = gateway
        .post(
            "/flows/probe",
            &whatsapp("data_exchange", "tok", "SLOW", json!({"ms": 50})),
        )
        .await;
    assert_eq!(status, 200);
}

/// The service going away gives fast 503s; when it comes back, so does the gateway.
#[tokio::test]
async fn service_down_then_back() {
    let probe = Probe::default();
    let service = Service::start(probe.clone()).await;
    let addr = service.addr;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    let init = whatsapp("INIT", "tok", "", json!({}));
    assert_eq!(gateway.post("/flow-endpoint", &init).await.0, 200);

    service.kill().await;
    let started = Instant::now();
    let (status, body) = gateway.post("/flow-endpoint", &init).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Ping and readiness follow the service's health (answers are cached up to 1 s).
    eventually(|| async {
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0
            == 503
    })
    .await;
    eventually(|| async { gateway.admin("/readyz").await.0 == 503 }).await;
    let (_, body) = gateway
        .post("/flow-endpoint", &json!({"action": "ping"}))
        .await;
    assert_eq!(body["error"]["code"], "service_unavailable");

    let _service = Service::start_at(addr, probe).await;
    eventually(|| async { gateway.post("/flow-endpoint", &init).await.0 == 200 }).await;
    eventually(|| async {
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0
            == 200
    })
    .await;
    eventually(|| async { gateway.admin("/readyz").await.0 == 200 }).await;
}

#[tokio::test]
async fn nothing_listening_gives_503_quickly() {
    // A port that was just free: connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = Gateway::start(GatewayOptions::new(format!("http://127.0.0.1:{port}"))).await;
    let started = Instant::now();
    let (status, body) = gateway
        .post("/flow-endpoint", &whatsapp("INIT", "tok", "", json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("service_unavailable"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0,
        503
    );
    assert_eq!(
        gateway.admin("/readyz").await,
        (503, json!({"status": "not_ready"}))
    );
}

#[tokio::test]
async fn plain_http_when_tls_is_off() {
    let service = Service::start(Probe::default()).await;
    let mut options = GatewayOptions::new(service.url());
    options.tls = false;
    let gateway = Gateway::start(options).await;
    assert!(gateway.base.starts_with("http://"));
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0,
        200
    );
}

/// On shutdown the gateway stops accepting but finishes what is in flight.
#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (_service, gateway, _) = stack().await;
    let client = gateway.client.clone();
    let url = format!("{}/flows/probe", gateway.base);
    let in_flight = tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&whatsapp(
                "data_exchange",
                "tok",
                "SLOW",
                json!({"ms": 500}),
            ))
            .send()
            .await
            .unwrap();
        read(response).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = gateway.shutdown();
    assert_eq!(
        in_flight.await.unwrap(),
        (200, json!({"screen": "SLOW", "data": {"slept_ms": 500}}))
    );
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("gateway stops")
        .unwrap()
        .unwrap();
}

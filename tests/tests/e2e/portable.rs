//! The tests every implementation of the `flowgate.v1` contract must pass, behind
//! the real gateway: health and ping, the sign-up journey, error notifications,
//! bad input, unknown flows, idempotent resends and a service that stops; and, over
//! gRPC directly, the bearer token a service may require. They
//! use only the contract and the reference `signup` flow, so they run against the
//! in-process Rust service by default and against `examples/python` with
//! `FLOWGATE_E2E_FLOW_SERVICE=python` (see the harness's crate doc).

use std::time::{Duration, Instant};

use flowgate_e2e::backend::Backend;
use flowgate_e2e::{Alpn, Gateway, GatewayOptions, eventually, https_builder, read, whatsapp};
use serde_json::{Value, json};

async fn stack() -> (Backend, Gateway) {
    let service = Backend::start().await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    (service, gateway)
}

#[tokio::test]
async fn ping_is_active_while_the_service_serves() {
    let (_service, gateway) = stack().await;
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await,
        (200, json!({"data": {"status": "active"}}))
    );
    assert_eq!(
        gateway
            .post(
                "/flows/signup",
                &json!({"action": "ping", "version": "3.0"})
            )
            .await,
        (200, json!({"data": {"status": "active"}}))
    );
    assert_eq!(
        gateway.admin("/healthz").await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        gateway.admin("/readyz").await,
        (200, json!({"status": "ready"}))
    );
}

/// A service given a bearer token (`FLOW_SERVICE_AUTH_TOKEN`) refuses every call that
/// does not carry it, `UNAUTHENTICATED`, before any handler runs; gRPC health needs
/// none, so that probes and the gateway's health watch work without it.
#[tokio::test]
async fn a_service_with_a_token_refuses_calls_without_it() {
    use flowgate_proto::v1::{self, flow_service_client::FlowServiceClient};
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let token = "portable-test-token-0123456789";
    let service = Backend::start_with_token(token).await;
    let channel = tonic::transport::Endpoint::from_shared(service.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let mut client = FlowServiceClient::new(channel);
    let init = |authorization: Option<&str>| {
        let mut request = tonic::Request::new(v1::InitRequest {
            context: crate::grpc::context("signup"),
            flow_token: "tok".into(),
            ..Default::default()
        });
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    };
    for refused in [
        None,
        Some("Bearer another-token-0123456789"),
        Some(&*format!("Basic {token}")),
        Some(&*format!("Bearer {token}x")),
    ] {
        let status = client.init(init(refused)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{refused:?}");
    }
    let answer = client
        .init(init(Some(&format!("Bearer {token}"))))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::flow_response::Outcome::NextScreen(next)) = answer.outcome else {
        panic!("{answer:?}")
    };
    assert_eq!(next.screen, "WELCOME_SCREEN");
}

/// The sign-up journey of the provider's guide, over HTTP/2 and HTTP/1.1.
#[tokio::test]
async fn signup_journey() {
    let (_service, gateway) = stack().await;
    let welcome = json!({"welcome_message": "Welcome! Enter your email address to sign up."});
    for (path, token) in [("/flow-endpoint", "tok-1"), ("/flows/signup", "tok-4")] {
        let steps = [
            (
                whatsapp("INIT", token, "", json!({})),
                json!({"screen": "WELCOME_SCREEN", "data": welcome}),
            ),
            (
                whatsapp(
                    "data_exchange",
                    token,
                    "WELCOME_SCREEN",
                    json!({"email": "not-an-email"}),
                ),
                json!({"screen": "WELCOME_SCREEN", "data": {
                    "welcome_message": welcome["welcome_message"],
                    "error_message": "Please enter a valid email address.",
                }}),
            ),
            (
                whatsapp(
                    "data_exchange",
                    token,
                    "WELCOME_SCREEN",
                    json!({"email": "ada@example.com"}),
                ),
                json!({"screen": "CONFIRMATION_SCREEN", "data": {"user_email": "ada@example.com"}}),
            ),
            (
                whatsapp("BACK", token, "CONFIRMATION_SCREEN", json!({})),
                json!({"screen": "WELCOME_SCREEN", "data": welcome}),
            ),
            (
                whatsapp(
                    "data_exchange",
                    token,
                    "CONFIRMATION_SCREEN",
                    json!({"email": "ada@example.com"}),
                ),
                json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {
                    "flow_token": token,
                    "email": "ada@example.com",
                }}}}),
            ),
        ];
        for (request, expected) in steps {
            assert_eq!(
                gateway.post(path, &request).await,
                (200, expected),
                "{path}: {request}"
            );
        }
    }
    // INIT and BACK without screen or data at all.
    let bare = json!({"version": "3.0", "action": "BACK", "flow_token": "tok-2"});
    assert_eq!(
        gateway.post("/flow-endpoint", &bare).await.1["screen"],
        "WELCOME_SCREEN"
    );

    // The same over each HTTP version, checking which one was spoken.
    let cert = gateway.cert_pem.clone().expect("TLS gateway");
    for (builder, version) in [
        (
            https_builder(&cert, Alpn::Http1).http1_only(),
            reqwest::Version::HTTP_11,
        ),
        (
            https_builder(&cert, Alpn::Http2).http2_prior_knowledge(),
            reqwest::Version::HTTP_2,
        ),
    ] {
        let response = builder
            .build()
            .unwrap()
            .post(format!("{}/flow-endpoint", gateway.base))
            .json(&whatsapp("INIT", "tok-3", "", json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(read(response).await.1["screen"], "WELCOME_SCREEN");
    }
}

#[tokio::test]
async fn bad_input_gets_a_stable_json_error() {
    let (_service, gateway) = stack().await;
    let init = |extra: Value| {
        let mut body = whatsapp("INIT", "tok", "", json!({}));
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body.to_string().into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/flow-endpoint", b"{not json".to_vec(), 400, "invalid_json"),
        ("/flow-endpoint", b"".to_vec(), 400, "invalid_json"),
        ("/flow-endpoint", b"[1,2]".to_vec(), 400, "invalid_body"),
        ("/flow-endpoint", b"{}".to_vec(), 400, "missing_action"),
        ("/flow-endpoint", init(json!({"action": "navigate"})), 400, "unknown_action"),
        ("/flow-endpoint", init(json!({"version": "2.0"})), 400, "unsupported_version"),
        ("/flow-endpoint", init(json!({"version": null})), 400, "missing_version"),
        ("/flow-endpoint", init(json!({"flow_token": null})), 400, "missing_flow_token"),
        ("/flow-endpoint", init(json!({"flow_token": ""})), 400, "missing_flow_token"),
        ("/flow-endpoint", init(json!({"data": [1]})), 400, "invalid_field"),
        ("/flow-endpoint", init(json!({"action": "data_exchange", "screen": null})), 400, "missing_screen"),
        (
            "/flow-endpoint",
            br#"{"version":"3.0","action":"INIT","flow_token":"t","data":{"id":12345678901234567890123}}"#.to_vec(),
            400,
            "number_out_of_range",
        ),
        ("/flows/nope", init(json!({})), 404, "unknown_flow"),
        ("/flows/a.b", init(json!({})), 404, "not_found"),
        ("/elsewhere", init(json!({})), 404, "not_found"),
        ("/flow-endpoint", vec![b' '; 1024 * 1024 + 1], 413, "payload_too_large"),
    ];
    for (path, body, status, code) in cases {
        let (got_status, got) = gateway.post_raw(path, body.clone()).await;
        assert_eq!(
            (got_status, got["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {}: {got}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        );
        assert!(
            got["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{got}"
        );
    }
    // A body of exactly the limit is read (and then refused only as JSON).
    let (status, got) = gateway
        .post_raw("/flow-endpoint", vec![b' '; 1024 * 1024])
        .await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = gateway
            .client
            .request(method.clone(), format!("{}/flow-endpoint", gateway.base))
            .send()
            .await
            .unwrap();
        let (status, got) = read(response).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (405, Some("method_not_allowed")),
            "{method}"
        );
    }
}

/// Notifications are acknowledged once the service has them; only the service
/// knows its flows, so one for an unknown flow is a 404.
#[tokio::test]
async fn error_notifications_are_acknowledged() {
    let (_service, gateway) = stack().await;
    let acknowledged = (200, json!({"data": {"acknowledged": true}}));
    let notifications = [
        whatsapp(
            "data_exchange",
            "tok",
            "WELCOME_SCREEN",
            json!({"error": "invalid-screen-transition", "error_message": "Screen NOPE is not allowed"}),
        ),
        whatsapp(
            "INIT",
            "tok",
            "",
            json!({"error_key": "payload-schema-error", "error_message": "bad"}),
        ),
        // Without a flow token: forwarded all the same.
        json!({"version": "3.0", "action": "BACK", "data": {"error": "unknown-error"}}),
    ];
    for notification in &notifications {
        for path in ["/flow-endpoint", "/flows/signup"] {
            assert_eq!(
                gateway.post(path, notification).await,
                acknowledged,
                "{path}: {notification}"
            );
        }
        let (status, body) = gateway.post("/flows/nope", notification).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("unknown_flow")),
            "{notification}: {body}"
        );
    }
}

/// A flow the service does not have is a 404 for every action, and the service
/// stays healthy.
#[tokio::test]
async fn an_unknown_flow_is_a_404_for_every_action() {
    let (_service, gateway) = stack().await;
    for (action, screen) in [
        ("INIT", ""),
        ("data_exchange", "WELCOME_SCREEN"),
        ("BACK", ""),
    ] {
        let request = whatsapp(action, "tok", screen, json!({"email": "ada@example.com"}));
        let (status, body) = gateway.post("/flows/nope", &request).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("unknown_flow")),
            "{action}: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    assert_eq!(
        gateway
            .post("/flows/nope", &json!({"action": "ping"}))
            .await,
        (200, json!({"data": {"status": "active"}}))
    );
    // A screen the flow does not have is refused as sent, naming it.
    let (status, body) = gateway
        .post(
            "/flow-endpoint",
            &whatsapp("data_exchange", "tok", "NOPE", json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("rejected")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("NOPE"));
}

/// WhatsApp resending a request whose answer was lost gets the first answer; a
/// completed token is refused on anything else.
#[tokio::test]
async fn a_completed_token_is_refused_except_a_resend_of_its_completion() {
    let (_service, gateway) = stack().await;
    let confirm = whatsapp(
        "data_exchange",
        "tok-done",
        "CONFIRMATION_SCREEN",
        json!({"email": "ada@example.com"}),
    );
    let success = json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {
        "flow_token": "tok-done",
        "email": "ada@example.com",
    }}}});
    assert_eq!(
        gateway.post("/flow-endpoint", &confirm).await,
        (200, success.clone())
    );
    assert_eq!(
        gateway.post("/flow-endpoint", &confirm).await,
        (200, success)
    );
    for request in [
        whatsapp("INIT", "tok-done", "", json!({})),
        whatsapp(
            "data_exchange",
            "tok-done",
            "WELCOME_SCREEN",
            json!({"email": "ada@example.com"}),
        ),
    ] {
        let (status, body) = gateway.post("/flow-endpoint", &request).await;
        assert_eq!(status, 427, "{request}: {body}");
        assert!(
            body["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

/// A service told to stop reports NOT_SERVING while it drains, which the gateway
/// sees at once; once it has exited, calls get a fast 503; when it comes back on
/// the same port, so does the gateway.
#[tokio::test]
async fn a_stopping_service_turns_unavailable_then_comes_back() {
    let mut service =
        Backend::start_with("127.0.0.1:0".parse().unwrap(), Duration::from_secs(3)).await;
    let addr = service.addr;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    let init = whatsapp("INIT", "tok", "", json!({}));
    let ping = json!({"action": "ping"});
    assert_eq!(gateway.post("/flow-endpoint", &init).await.0, 200);
    assert_eq!(gateway.post("/flow-endpoint", &ping).await.0, 200);

    service.begin_stop();
    // Ping and readiness follow the service's health (answers are cached up to 1 s).
    eventually(|| async { gateway.post("/flow-endpoint", &ping).await.0 == 503 }).await;
    eventually(|| async { gateway.admin("/readyz").await.0 == 503 }).await;
    assert!(
        service.is_running(),
        "the gateway saw the service only once it had exited, not its NOT_SERVING"
    );

    service.stop().await;
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

    let _service = Backend::start_with(addr, Duration::from_millis(200)).await;
    eventually(|| async { gateway.post("/flow-endpoint", &init).await.0 == 200 }).await;
    eventually(|| async { gateway.post("/flow-endpoint", &ping).await.0 == 200 }).await;
    eventually(|| async { gateway.admin("/readyz").await.0 == 200 }).await;
}

/// The preview (`FLOWGATE_PREVIEW=on`) through the contract's optional `ListFlows`
/// and `GetFlow`: the routes with the signup flow, its Flow JSON, and the journey's
/// first steps run as the endpoint runs them, each answer checked against that Flow
/// JSON.
#[tokio::test]
async fn the_preview_lists_shows_and_runs_the_signup_flow() {
    let service = Backend::start().await;
    let gateway = Gateway::start(GatewayOptions {
        preview: true,
        ..GatewayOptions::new(service.url())
    })
    .await;
    let signup = json!({"name": "signup", "is_default": true, "signed_tokens": false});

    let (status, listed) = gateway.admin("/preview/api/routes").await;
    assert_eq!(status, 200, "{listed}");
    let routes = listed["routes"].as_array().unwrap();
    assert_eq!(
        routes[0],
        json!({"route": "/flow-endpoint", "mode": "plain", "flows": [signup], "flows_error": null})
    );
    assert_eq!(routes[1]["route"], "/flows/{flow}");
    assert!(
        routes[1]["flows"].as_array().unwrap().contains(&signup),
        "{listed}"
    );

    let file: Value =
        serde_json::from_str(include_str!("../../../flow-service/flows/signup.json")).unwrap();
    for query in [
        "route=%2Fflow-endpoint",
        "route=%2Fflows%2F%7Bflow%7D&flow=signup",
    ] {
        let (status, flow) = gateway.admin(&format!("/preview/api/flow?{query}")).await;
        assert_eq!(status, 200, "{query}: {flow}");
        assert_eq!(
            flow,
            json!({"name": "signup", "flow_json": file}),
            "{query}"
        );
    }

    let token = format!("preview-{}", flowgate_e2e::unique());
    let welcome = "Welcome! Enter your email address to sign up.";
    for (request, answer) in [
        (
            whatsapp("INIT", &token, "", json!({})),
            json!({"screen": "WELCOME_SCREEN", "data": {"welcome_message": welcome}}),
        ),
        (
            whatsapp(
                "data_exchange",
                &token,
                "WELCOME_SCREEN",
                json!({"email": "not-an-email"}),
            ),
            json!({"screen": "WELCOME_SCREEN", "data": {
                "welcome_message": welcome,
                "error_message": "Please enter a valid email address.",
            }}),
        ),
    ] {
        let (status, exchanged) = gateway
            .admin_post(
                "/preview/api/exchange",
                &json!({"route": "/flow-endpoint", "flow": "signup", "flow_json": null, "request": request}),
            )
            .await;
        assert_eq!(status, 200, "{exchanged}");
        assert_eq!(exchanged["status"], 200, "{exchanged}");
        assert_eq!(exchanged["answer"], answer);
        assert_eq!(exchanged["violations"], json!([]));
        assert_eq!(exchanged["checked_against"], "service");
        assert!(
            exchanged["latency_ms"].as_f64().unwrap() > 0.0,
            "{exchanged}"
        );
    }
}

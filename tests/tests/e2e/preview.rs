//! The flow preview on the admin listener (`FLOWGATE_PREVIEW`), beyond the portable
//! journey (`portable::the_preview_lists_shows_and_runs_the_signup_flow`): answers
//! checked against a given Flow JSON, a flow service without the optional RPCs, a
//! flow without a Flow JSON, malformed calls, and the preview off.

use std::net::SocketAddr;

use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, unique, whatsapp};
use flowgate_proto::json::struct_from_json;
use flowgate_proto::v1::flow_service_server::{FlowService, FlowServiceServer};
use flowgate_proto::v1::{self, FlowResponse, NextScreen, flow_response};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

const SIGNUP: &str = include_str!("../../../flow-service/flows/signup.json");

async fn preview(backend: String) -> Gateway {
    Gateway::start(GatewayOptions {
        preview: true,
        ..GatewayOptions::new(backend)
    })
    .await
}

fn exchange(route: &str, flow_json: Value, request: Value) -> Value {
    json!({"route": route, "flow": "signup", "flow_json": flow_json, "request": request})
}

/// An answer that breaks the Flow JSON is shown as the endpoint sends it, with the
/// violation the SDK finds: here a Flow JSON whose first screen has another name.
#[tokio::test]
async fn an_answer_that_breaks_the_flow_json_is_reported() {
    let service = Service::start(Probe::default()).await;
    let gateway = preview(service.url()).await;
    let renamed: Value = serde_json::from_str(&SIGNUP.replace("WELCOME_SCREEN", "HELLO")).unwrap();
    let request = whatsapp("INIT", &unique(), "", json!({}));
    let (status, exchanged) = gateway
        .admin_post(
            "/preview/api/exchange",
            &exchange("/flow-endpoint", renamed, request.clone()),
        )
        .await;
    assert_eq!(status, 200, "{exchanged}");
    assert_eq!(exchanged["status"], 200);
    assert_eq!(exchanged["answer"]["screen"], "WELCOME_SCREEN");
    assert_eq!(exchanged["checked_against"], "request");
    assert_eq!(
        exchanged["violations"],
        json!([{
            "message": "answered screen `WELCOME_SCREEN`, which the Flow JSON does not declare",
            "error_key": "invalid-screen-transition",
            "path": "screen",
        }])
    );

    // The same request against the service's own Flow JSON is clean.
    let (_, exchanged) = gateway
        .admin_post(
            "/preview/api/exchange",
            &exchange("/flows/{flow}", Value::Null, request),
        )
        .await;
    assert_eq!(exchanged["violations"], json!([]), "{exchanged}");
    assert_eq!(exchanged["checked_against"], "service");
}

/// The endpoint's refusals come back as the endpoint sends them, inside a 200.
#[tokio::test]
async fn the_endpoints_refusals_are_answers_too() {
    let service = Service::start(Probe::default()).await;
    let gateway = preview(service.url()).await;
    for (request, status, code) in [
        (
            json!({"action": "INIT", "version": "3.0"}),
            400,
            "missing_flow_token",
        ),
        (
            whatsapp("data_exchange", &unique(), "NO_SUCH_SCREEN", json!({})),
            400,
            "rejected",
        ),
    ] {
        let (http, exchanged) = gateway
            .admin_post(
                "/preview/api/exchange",
                &exchange("/flow-endpoint", Value::Null, request),
            )
            .await;
        assert_eq!(http, 200, "{exchanged}");
        assert_eq!(exchanged["status"], status, "{exchanged}");
        assert_eq!(exchanged["answer"]["error"]["code"], code, "{exchanged}");
        assert_eq!(exchanged["violations"], json!([]));
    }
    let (http, exchanged) = gateway
        .admin_post(
            "/preview/api/exchange",
            &json!({"route": "/flows/{flow}", "flow": "nope", "request": whatsapp("INIT", "t", "", json!({}))}),
        )
        .await;
    assert_eq!(http, 200);
    assert_eq!(
        (&exchanged["status"], &exchanged["answer"]["error"]["code"]),
        (&json!(404), &json!("unknown_flow")),
        "{exchanged}"
    );
}

/// A flow service that runs the signup flow's first screen and nothing else: no
/// `ListFlows`, no `GetFlow` (the generated defaults answer UNIMPLEMENTED).
struct InitOnly;

#[tonic::async_trait]
impl FlowService for InitOnly {
    async fn init(&self, _: Request<v1::InitRequest>) -> Result<Response<FlowResponse>, Status> {
        let data = json!({"welcome_message": "Hello"});
        Ok(Response::new(FlowResponse {
            outcome: Some(flow_response::Outcome::NextScreen(NextScreen {
                screen: "WELCOME_SCREEN".into(),
                data: Some(struct_from_json(data.as_object().unwrap(), "data").unwrap()),
                error_message: None,
            })),
        }))
    }
}

#[tokio::test]
async fn a_service_without_the_optional_rpcs_leaves_a_file_to_choose() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlowServiceServer::new(InitOnly))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let gateway = preview(format!("http://{addr}")).await;

    let (status, listed) = gateway.admin("/preview/api/routes").await;
    assert_eq!(status, 200, "{listed}");
    let routes = listed["routes"].as_array().unwrap();
    assert!(!routes.is_empty(), "{listed}");
    for route in routes {
        assert_eq!(route["flows"], json!([]), "{route}");
        assert_eq!(route["flows_error"]["code"], "unimplemented", "{route}");
    }

    let (status, flow) = gateway
        .admin("/preview/api/flow?route=%2Fflow-endpoint")
        .await;
    assert_eq!(
        (status, &flow["error"]["code"]),
        (501, &json!("unimplemented")),
        "{flow}"
    );

    // With the file the page asks for, the exchange is checked against it.
    let signup: Value = serde_json::from_str(SIGNUP).unwrap();
    let (_, exchanged) = gateway
        .admin_post(
            "/preview/api/exchange",
            &exchange(
                "/flow-endpoint",
                signup,
                whatsapp("INIT", "t", "", json!({})),
            ),
        )
        .await;
    assert_eq!(exchanged["status"], 200, "{exchanged}");
    assert_eq!(exchanged["checked_against"], "request");
    assert_eq!(exchanged["violations"], json!([]));
    // Without it, nothing to check against.
    let (_, exchanged) = gateway
        .admin_post(
            "/preview/api/exchange",
            &exchange(
                "/flow-endpoint",
                Value::Null,
                whatsapp("INIT", "t", "", json!({})),
            ),
        )
        .await;
    assert_eq!(exchanged["status"], 200, "{exchanged}");
    assert_eq!(exchanged["checked_against"], Value::Null);
}

#[tokio::test]
async fn flows_and_routes_that_are_not_there() {
    let service = Service::start(Probe::default()).await;
    let gateway = preview(service.url()).await;
    for (query, status, code) in [
        // The probe flow is registered without a Flow JSON.
        (
            "route=%2Fflows%2F%7Bflow%7D&flow=probe",
            501,
            "no_flow_json",
        ),
        ("route=%2Fflows%2F%7Bflow%7D&flow=nope", 404, "unknown_flow"),
        (
            "route=%2Fflows%2F%7Bflow%7D&flow=a%2Fb",
            404,
            "unknown_flow",
        ),
        ("route=%2Fnowhere", 404, "unknown_route"),
        ("route=%2Fflows%2F%7Bflow%7D", 400, "bad_request"),
        ("flow=signup", 400, "bad_request"),
    ] {
        let (http, body) = gateway.admin(&format!("/preview/api/flow?{query}")).await;
        assert_eq!(
            (http, &body["error"]["code"]),
            (status, &json!(code)),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn malformed_calls_are_400() {
    let service = Service::start(Probe::default()).await;
    let gateway = preview(service.url()).await;
    for (path, body) in [
        ("/preview/api/exchange", json!({"route": "/flow-endpoint"})),
        (
            "/preview/api/exchange",
            json!({"route": "/flow-endpoint", "request": "INIT"}),
        ),
        ("/preview/api/exchange", json!([])),
        (
            "/preview/api/exchange",
            json!({"route": "/flow-endpoint", "flow_json": {"screens": 1}, "request": {}}),
        ),
        ("/preview/api/check", json!({})),
        ("/preview/api/check", json!({"flow_json": {}, "extra": 1})),
    ] {
        let (status, answer) = gateway.admin_post(path, &body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("bad_request")),
            "{path} {body}: {answer}"
        );
    }
    let (status, answer) = gateway
        .admin_post(
            "/preview/api/exchange",
            &json!({"route": "/nowhere", "request": {}}),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &json!("unknown_route"))
    );
}

#[tokio::test]
async fn a_flow_json_file_is_checked_by_the_sdk() {
    let service = Service::start(Probe::default()).await;
    let gateway = preview(service.url()).await;
    let check = |flow_json: Value| {
        let gateway = &gateway;
        async move {
            let (status, answer) = gateway
                .admin_post("/preview/api/check", &json!({"flow_json": flow_json}))
                .await;
            assert_eq!(status, 200, "{answer}");
            answer
        }
    };
    let screen = |id: &str| json!({"id": id, "terminal": true, "layout": {"type": "SingleColumnLayout", "children": []}});

    let answer = check(serde_json::from_str(SIGNUP).unwrap()).await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["flow"]["has_endpoint"], true);
    assert_eq!(answer["flow"]["screens"][0], "WELCOME_SCREEN");

    // Without `data_api_version`: no endpoint, still a flow to preview.
    let answer = check(json!({"version": "7.3", "screens": [screen("ONLY")]})).await;
    assert_eq!(
        answer,
        json!({"ok": true, "flow": {"screens": ["ONLY"], "has_endpoint": false}, "violations": []})
    );

    let answer = check(json!({
        "version": "7.3",
        "routing_model": {"ONLY": []},
        "screens": [screen("ONLY")],
    }))
    .await;
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["flow"], Value::Null);
    assert_eq!(answer["violations"][0]["path"], "routing_model", "{answer}");
}

#[tokio::test]
async fn the_preview_is_off_unless_turned_on() {
    let service = Service::start(Probe::default()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    for path in [
        "/preview/",
        "/preview/api/routes",
        "/preview/api/flow?route=%2Fflow-endpoint",
    ] {
        let (status, body) = gateway.admin(path).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("not_found")),
            "{path}"
        );
    }
    let (status, _) = gateway
        .admin_post(
            "/preview/api/exchange",
            &json!({"route": "/flow-endpoint", "request": {}}),
        )
        .await;
    assert_eq!(status, 404);
    // The rest of the admin listener is as before.
    assert_eq!(gateway.admin("/healthz").await.0, 200);
}

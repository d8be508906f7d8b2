//! The flow service's gRPC surface as an implementer in another language sees it,
//! and the gateway against flow services that break the contract.

use std::net::SocketAddr;

use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service, whatsapp};
use flowgate_proto::v1::flow_service_client::FlowServiceClient;
use flowgate_proto::v1::flow_service_server::{FlowService, FlowServiceServer};
use flowgate_proto::v1::{self, FlowResponse, RequestContext, flow_response::Outcome};
use serde_json::json;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// A channel to `service`, connected.
pub(crate) async fn channel(service: &Service) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(service.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_reports_serving() {
    let service = Service::start(Probe::default()).await;
    let mut health = HealthClient::new(channel(&service).await);
    for name in ["", "flowgate.v1.FlowService"] {
        let response = health
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{name:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let service = Service::start(Probe::default()).await;
    let mut reflection = ServerReflectionClient::new(channel(&service).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["flowgate.v1.FlowService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

/// A first attempt's context for `flow`, as a gateway would send it.
pub(crate) fn context(flow: &str) -> Option<RequestContext> {
    Some(RequestContext {
        flow: flow.into(),
        request_id: "r".into(),
        attempt: 1,
        ..Default::default()
    })
}

#[tokio::test]
async fn the_service_speaks_the_contract_directly() {
    let service = Service::start(Probe::default()).await;
    let mut client = FlowServiceClient::new(channel(&service).await);

    let init = |flow: &str, token: &str| v1::InitRequest {
        context: context(flow),
        flow_token: token.into(),
        screen: String::new(),
        data: None,
    };
    let response = client.init(init("", "tok")).await.unwrap().into_inner();
    let Some(Outcome::NextScreen(next)) = response.outcome else {
        panic!("{response:?}")
    };
    assert_eq!(next.screen, "WELCOME_SCREEN");
    assert!(next.error_message.is_none());

    let status = client.init(init("nope", "tok")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope"));

    let status = client.init(init("signup", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = client
        .data_exchange(v1::DataExchangeRequest {
            context: context("signup"),
            flow_token: "tok".into(),
            screen: "NO_SUCH_SCREEN".into(),
            data: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// A flow service that answers OK with an empty `FlowResponse`.
struct NoOutcome;

#[tonic::async_trait]
impl FlowService for NoOutcome {
    async fn init(&self, _: Request<v1::InitRequest>) -> Result<Response<FlowResponse>, Status> {
        Ok(Response::new(FlowResponse { outcome: None }))
    }
    async fn data_exchange(
        &self,
        _: Request<v1::DataExchangeRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        Err(Status::resource_exhausted("too busy"))
    }
    async fn back(&self, _: Request<v1::BackRequest>) -> Result<Response<FlowResponse>, Status> {
        Err(Status::deadline_exceeded("ran out of time"))
    }
    async fn notify_error(
        &self,
        _: Request<v1::NotifyErrorRequest>,
    ) -> Result<Response<v1::NotifyErrorResponse>, Status> {
        Err(Status::unavailable("cannot store notifications"))
    }
}

#[tokio::test]
async fn the_gateway_maps_contract_breaches_and_statuses() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlowServiceServer::new(NoOutcome))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let gateway = Gateway::start(GatewayOptions::new(format!("http://{addr}"))).await;

    let (status, body) = gateway
        .post("/flow-endpoint", &whatsapp("INIT", "tok", "", json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("bad_upstream_response")),
        "{body}"
    );

    let response = gateway
        .client
        .post(format!("{}/flow-endpoint", gateway.base))
        .json(&whatsapp("data_exchange", "tok", "A", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (status, body) = flowgate_e2e::read(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("overloaded")),
        "{body}"
    );

    let (status, body) = gateway
        .post("/flow-endpoint", &whatsapp("BACK", "tok", "A", json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("upstream_timeout")),
        "{body}"
    );

    // An error notification the service could not take is not acknowledged.
    let notification = whatsapp(
        "data_exchange",
        "tok",
        "A",
        json!({"error": "x", "error_message": "y"}),
    );
    let (status, body) = gateway.post("/flow-endpoint", &notification).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );

    // No health service at all: not serving.
    assert_eq!(
        gateway
            .post("/flow-endpoint", &json!({"action": "ping"}))
            .await
            .0,
        503
    );
}

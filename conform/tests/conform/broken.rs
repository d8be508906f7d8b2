//! Deliberately broken implementations, each named correctly in the report: a
//! screen outside the routing model, a missing declared field, a wrong type, a slow
//! answer (behind the real gateway, served without strict mode so the answers
//! leave), a plain JSON answer on an encrypted route (a tiny HTTPS endpoint), and, straight
//! on the proto, a flow service that runs a repeated idempotency key again or refuses the
//! changed data the check sends (and, beside them, one that refuses a reused key: correct).

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use flow_service::sdk::{Flow, FlowError, Outcome, Request};
use flow_service::service::Flows;
use flowgate_e2e::{Gateway, GatewayOptions, Service};
use flowgate_proto::json::{struct_from_json, struct_to_json};
use flowgate_proto::v1::flow_response::Outcome as Wire;
use flowgate_proto::v1::flow_service_server::{FlowService, FlowServiceServer};
use flowgate_proto::v1::{self, FlowResponse};
use serde_json::json;

const WELCOME: &str = "Welcome!";

/// What the `signup` look-alike gets wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// A valid email moves to `ELSEWHERE`, a screen the Flow JSON does not have.
    OffModel,
    /// INIT answers `WELCOME_SCREEN` without its declared `welcome_message`.
    MissingField,
    /// INIT answers `welcome_message` as a number.
    WrongType,
    /// Every answer takes 1.2 s.
    Slow,
}

/// `signup.json`'s screens with one fault.
#[derive(Debug)]
struct Broken(Fault);

#[async_trait::async_trait]
impl Flow for Broken {
    async fn init(&self, _request: Request) -> Result<Outcome, FlowError> {
        self.pause().await;
        Ok(match self.0 {
            Fault::MissingField => Outcome::screen("WELCOME_SCREEN", json!({})),
            Fault::WrongType => Outcome::screen("WELCOME_SCREEN", json!({"welcome_message": 42})),
            _ => Outcome::screen("WELCOME_SCREEN", json!({"welcome_message": WELCOME})),
        })
    }

    async fn data_exchange(&self, request: Request) -> Result<Outcome, FlowError> {
        self.pause().await;
        let email = request
            .data
            .get("email")
            .and_then(|e| e.as_str())
            .unwrap_or("");
        Ok(match request.screen.as_str() {
            "CONFIRMATION_SCREEN" => Outcome::Complete {
                params: json!({"email": email}),
            },
            _ if !email.contains('@') => {
                Outcome::screen("WELCOME_SCREEN", json!({"welcome_message": WELCOME}))
                    .with_error("Please enter a valid email address.")
            }
            _ => match self.0 {
                Fault::OffModel => Outcome::screen("ELSEWHERE", json!({})),
                _ => Outcome::screen("CONFIRMATION_SCREEN", json!({"user_email": email})),
            },
        })
    }
}

impl Broken {
    async fn pause(&self) {
        if let Fault::Slow = self.0 {
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    }
}

/// Runs the walk through the real gateway in front of a service holding only the
/// broken flow (not strict, so its answers leave).
async fn report(fault: Fault) -> flowgate_conform::report::Report {
    let flows = Flows::new().register("signup", Broken(fault));
    let service = Service::serve("127.0.0.1:0".parse().unwrap(), flows).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    let url = format!("{}/flows/signup", gateway.base);
    endpoint(url, gateway.cert_pem.as_deref().unwrap(), "signup", false).await
}

#[tokio::test]
async fn a_screen_outside_the_routing_model_is_named() {
    let report = report(Fault::OffModel).await;
    assert!(!report.success());
    let reason = report
        .failure("walk 1: data_exchange on WELCOME_SCREEN")
        .expect("the move is a failure");
    assert!(reason.contains("`ELSEWHERE`"), "{reason}");
    assert!(reason.contains("invalid-screen-transition"), "{reason}");
    // The next screen was never reached, and that is a failure too, not a skip.
    let unreached = report
        .failure("screen CONFIRMATION_SCREEN reached")
        .unwrap();
    assert!(unreached.contains("`WELCOME_SCREEN`"), "{unreached}");
}

#[tokio::test]
async fn a_missing_declared_field_is_named() {
    let report = report(Fault::MissingField).await;
    let reason = report.failure("walk 1: INIT").expect("INIT fails");
    assert!(reason.contains("screen `WELCOME_SCREEN`"), "{reason}");
    assert!(
        reason.contains("declared field `welcome_message` is missing"),
        "{reason}"
    );
    assert!(reason.contains("payload-schema-error"), "{reason}");
}

#[tokio::test]
async fn a_wrong_type_is_named() {
    let report = report(Fault::WrongType).await;
    let reason = report.failure("walk 1: INIT").expect("INIT fails");
    assert!(
        reason.contains("`welcome_message` should be a string, found a number"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_slow_answer_fails_the_p90() {
    let report = report(Fault::Slow).await;
    // Every answer is otherwise right.
    assert!(report.failure("walk 1").is_none(), "{}", report.text());
    let reason = report.failure("latency p90").expect("p90 fails");
    assert!(
        reason.contains("past WhatsApp's 1 s alert threshold"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_plain_json_answer_on_an_encrypted_route_is_named() {
    use axum::routing::post;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert_pem.clone().into_bytes(),
        key_pem.into_bytes(),
    )
    .await
    .unwrap();
    // Answers every request in plain JSON, as an endpoint that forgot to encrypt.
    let app = axum::Router::new().route(
        "/flow",
        post(|| async { axum::Json(json!({"data": {"status": "active"}})) }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(server.serve(app.into_make_service()));
    let report = endpoint(
        format!("https://localhost:{port}/flow"),
        &cert_pem,
        "signup",
        true,
    )
    .await;
    let reason = report.failure("ping").expect("ping fails");
    assert!(
        reason.contains("a plain JSON answer on an encrypted route"),
        "{reason}"
    );
    let reason = report.failure("walk 1: INIT").expect("INIT fails");
    assert!(
        reason.contains("a plain JSON answer on an encrypted route"),
        "{reason}"
    );
    assert!(report.failure("undecryptable body answers 421").is_some());
}

/// `signup` straight on the proto: INIT and BACK answer the welcome screen, an error
/// notification is acknowledged, and `data_exchange` is the function it holds.
struct OnProto<F>(F);

type Exchanged = Result<FlowResponse, tonic::Status>;

fn next_screen(screen: &str, data: serde_json::Value, error: Option<&str>) -> FlowResponse {
    FlowResponse {
        outcome: Some(Wire::NextScreen(v1::NextScreen {
            screen: screen.into(),
            data: Some(struct_from_json(data.as_object().unwrap(), "data").unwrap()),
            error_message: error.map(str::to_owned),
        })),
    }
}

fn welcome(error: Option<&str>) -> FlowResponse {
    next_screen("WELCOME_SCREEN", json!({"welcome_message": WELCOME}), error)
}

/// `signup`'s answer to a `data_exchange`, by its data alone.
fn exchange(request: &v1::DataExchangeRequest) -> FlowResponse {
    let data = struct_to_json(request.data.clone().unwrap_or_default(), "data").unwrap();
    let email = data["email"].as_str().unwrap_or("");
    match request.screen.as_str() {
        "CONFIRMATION_SCREEN" => FlowResponse {
            outcome: Some(Wire::Complete(v1::Complete {
                params: Some(
                    struct_from_json(json!({"email": email}).as_object().unwrap(), "params")
                        .unwrap(),
                ),
            })),
        },
        _ if !email.contains('@') => welcome(Some("Please enter a valid email address.")),
        _ => next_screen("CONFIRMATION_SCREEN", json!({"user_email": email}), None),
    }
}

#[tonic::async_trait]
impl<F> FlowService for OnProto<F>
where
    F: Fn(&v1::DataExchangeRequest) -> Exchanged + Send + Sync + 'static,
{
    async fn init(
        &self,
        _: tonic::Request<v1::InitRequest>,
    ) -> Result<tonic::Response<FlowResponse>, tonic::Status> {
        Ok(tonic::Response::new(welcome(None)))
    }

    async fn data_exchange(
        &self,
        request: tonic::Request<v1::DataExchangeRequest>,
    ) -> Result<tonic::Response<FlowResponse>, tonic::Status> {
        (self.0)(request.get_ref()).map(tonic::Response::new)
    }

    async fn back(
        &self,
        _: tonic::Request<v1::BackRequest>,
    ) -> Result<tonic::Response<FlowResponse>, tonic::Status> {
        Ok(tonic::Response::new(welcome(None)))
    }

    async fn notify_error(
        &self,
        _: tonic::Request<v1::NotifyErrorRequest>,
    ) -> Result<tonic::Response<v1::NotifyErrorResponse>, tonic::Status> {
        Ok(tonic::Response::new(v1::NotifyErrorResponse {}))
    }
}

/// Answers each call by its data alone: it ignores idempotency keys and never refuses
/// a completed token, so every call runs again.
fn forgetful(request: &v1::DataExchangeRequest) -> Exchanged {
    Ok(exchange(request))
}

/// [`forgetful`]'s answers, kept by idempotency key: a repeated key with the same data
/// gets the first answer, and with other data `FAILED_PRECONDITION`, as HTTP APIs that
/// refuse a reused key with another payload do. A correct service.
fn strict() -> impl Fn(&v1::DataExchangeRequest) -> Exchanged {
    let answers = std::sync::Mutex::new(HashMap::<
        String,
        (Option<prost_types::Struct>, FlowResponse),
    >::new());
    move |request| {
        let key = request.context.clone().unwrap_or_default().idempotency_key;
        let mut answers = answers.lock().unwrap();
        let (data, answer) = answers
            .entry(key)
            .or_insert_with(|| (request.data.clone(), exchange(request)));
        if *data != request.data {
            return Err(tonic::Status::failed_precondition(
                "the idempotency key was used with other data",
            ));
        }
        Ok(answer.clone())
    }
}

/// [`forgetful`], with a flow that refuses the field the check adds to the changed data
/// (`flowgate_conform`) with `code`, key or no key.
fn picky(code: tonic::Code) -> impl Fn(&v1::DataExchangeRequest) -> Exchanged {
    move |request| {
        let data = struct_to_json(request.data.clone().unwrap_or_default(), "data").unwrap();
        if data.contains_key("flowgate_conform") {
            return Err(tonic::Status::new(code, "unexpected input"));
        }
        forgetful(request)
    }
}

/// Serves `service` (with `grpc.health.v1`) on 127.0.0.1:0 and runs the gRPC checks
/// of `signup` against it.
async fn grpc_report(service: impl FlowService) -> flowgate_conform::report::Report {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(FlowServiceServer::new(service))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    grpc(url, "signup").await
}

#[tokio::test]
async fn a_service_that_ignores_keys_and_refuses_the_changed_data_is_named() {
    // Its refusal is of the data: the same data under a new key is refused too.
    for code in [
        tonic::Code::InvalidArgument,
        tonic::Code::FailedPrecondition,
    ] {
        let report = grpc_report(OnProto(picky(code))).await;
        assert!(report.failure("walk 1").is_none(), "{}", report.text());
        let reason = report
            .failure("a repeated idempotency key gets the first outcome")
            .unwrap_or_else(|| panic!("{code:?} passed:\n{}", report.text()));
        assert!(reason.contains("other data"), "{code:?}: {reason}");
    }
}

#[tokio::test]
async fn a_service_that_refuses_a_key_reused_with_other_data_passes() {
    let report = grpc_report(OnProto(strict())).await;
    assert!(
        report.failure("a repeated idempotency key").is_none(),
        "{}",
        report.text()
    );
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "a repeated idempotency key gets the first outcome")
    );
}

#[tokio::test]
async fn a_service_that_runs_a_repeated_key_again_is_named() {
    let report = grpc_report(OnProto(forgetful)).await;
    // Every answer of the walk is right: only the repeated key tells this service apart.
    assert!(report.failure("walk 1").is_none(), "{}", report.text());
    let reason = report
        .failure("a repeated idempotency key gets the first outcome")
        .unwrap_or_else(|| panic!("a rerun passed:\n{}", report.text()));
    assert!(reason.contains("the handler ran again"), "{reason}");
    assert!(reason.contains("again."), "{reason}");
}

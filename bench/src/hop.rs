//! The hop baselines: the no-hop baseline's HTTPS + JSON front, answering the sign-up
//! step through a bare gRPC client and a bare tonic server in this process — the same
//! `flowgate.v1` calls and `Struct` translation as flowgate, over loopback TCP with
//! Nagle's algorithm off, but nothing else: no store, no middleware, no tracing, no
//! metrics, no retries or balancing. They are the least a gateway and a flow service
//! spend on one step when a gRPC hop joins them, so they tell flowgate's own costs on
//! either side from the hop's.
//!
//! The front's client is either tonic's ([`Client::Tonic`], a `Channel`, as the gateway
//! has) or a bare HTTP/2 client ([`Client::H2`]: the `h2` crate, one connection, the
//! gRPC message framing written here), which shows what a lighter transport than
//! tonic's would save.
//!
//! The front and the service run on runtimes of their own, with threads named
//! [`FRONT_THREADS`] and [`SERVICE_THREADS`], so each side's CPU is measured apart, like
//! the gateway's and the flow service's.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::{BufMut, Bytes, BytesMut};
use flowgate_proto::json::{struct_from_json, struct_to_json};
use flowgate_proto::v1::flow_response::Outcome;
use flowgate_proto::v1::flow_service_client::FlowServiceClient;
use flowgate_proto::v1::flow_service_server::{FlowService, FlowServiceServer};
use flowgate_proto::v1::{
    BackRequest, DataExchangeRequest, FlowResponse, GetFlowRequest, GetFlowResponse, InitRequest,
    ListFlowsRequest, ListFlowsResponse, NextScreen, NotifyErrorRequest, NotifyErrorResponse,
    RequestContext,
};
use prost::Message;
use serde_json::{Map, Value, json};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::baseline::{Baseline, answer, runtime, serve_https};
use crate::cert::Cert;

/// The name prefix of the front's threads (the gateway's side).
pub const FRONT_THREADS: &str = "bench-hop-front";
/// The name prefix of the service's threads (the flow service's side).
pub const SERVICE_THREADS: &str = "bench-hop-svc";

/// The front's gRPC client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// tonic's generated client on a lazily connected `Channel`.
    Tonic,
    /// One `h2` connection, requests and answers framed by hand.
    H2,
}

/// Starts the service, then the front that calls it with `kind`, both on 127.0.0.1.
pub fn start(cert: &Cert, kind: ClientKind) -> anyhow::Result<Baseline> {
    let service = runtime(SERVICE_THREADS)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let service_addr = listener.local_addr()?;
    let incoming = {
        let _entered = service.enter();
        TcpIncoming::from(tokio::net::TcpListener::from_std(listener)?).with_nodelay(Some(true))
    };
    service.spawn(
        Server::builder()
            .add_service(FlowServiceServer::new(Bare))
            .serve_with_incoming(incoming),
    );

    let front = runtime(FRONT_THREADS)?;
    let client = match kind {
        ClientKind::Tonic => {
            // The channel's worker task runs on the runtime it is made in.
            let _entered = front.enter();
            Client::Tonic(FlowServiceClient::new(
                Endpoint::from_shared(format!("http://{service_addr}"))?
                    .tcp_nodelay(true)
                    .connect_lazy(),
            ))
        }
        // Connected on the front's runtime, where its connection task then runs; from
        // a thread of its own, since this one may be inside another runtime.
        ClientKind::H2 => std::thread::scope(|scope| {
            scope
                .spawn(|| front.block_on(H2Client::connect(service_addr)))
                .join()
                .map_err(|_| anyhow::anyhow!("connecting the h2 client panicked"))?
        })
        .map(Client::H2)?,
    };
    let app = axum::Router::new()
        .route("/flow-endpoint", post(relay))
        .with_state(client);
    let addr = serve_https(cert, &front, app).context("serving the hop baseline's front")?;
    Ok(Baseline {
        addr,
        runtimes: vec![front, service],
    })
}

/// The front's client, either kind.
#[derive(Clone)]
enum Client {
    Tonic(FlowServiceClient<Channel>),
    H2(H2Client),
}

impl Client {
    async fn init(&mut self, request: InitRequest) -> anyhow::Result<FlowResponse> {
        match self {
            Client::Tonic(client) => Ok(client.init(request).await?.into_inner()),
            Client::H2(client) => client.call("Init", &request).await,
        }
    }

    async fn data_exchange(
        &mut self,
        request: DataExchangeRequest,
    ) -> anyhow::Result<FlowResponse> {
        match self {
            Client::Tonic(client) => Ok(client.data_exchange(request).await?.into_inner()),
            Client::H2(client) => client.call("DataExchange", &request).await,
        }
    }
}

/// The front: JSON in, one gRPC call, JSON out.
async fn relay(
    State(mut client): State<Client>,
    Json(request): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let empty = Map::new();
    let data = struct_from_json(request["data"].as_object().unwrap_or(&empty), "data")
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let context = Some(RequestContext {
        flow: "signup".to_owned(),
        attempt: 1,
        version: request["version"].as_str().unwrap_or_default().to_owned(),
        ..RequestContext::default()
    });
    let flow_token = request["flow_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let screen = request["screen"].as_str().unwrap_or_default().to_owned();
    let answered = match request["action"].as_str() {
        Some("INIT") => {
            client
                .init(InitRequest {
                    context,
                    flow_token,
                    screen,
                    data: Some(data),
                })
                .await
        }
        Some("data_exchange") => {
            client
                .data_exchange(DataExchangeRequest {
                    context,
                    flow_token,
                    screen,
                    data: Some(data),
                })
                .await
        }
        _ => return Err(StatusCode::BAD_REQUEST),
    };
    let outcome = answered.map_err(|_| StatusCode::BAD_GATEWAY)?.outcome;
    let Some(Outcome::NextScreen(next)) = outcome else {
        return Err(StatusCode::BAD_GATEWAY);
    };
    let data = struct_to_json(next.data.unwrap_or_default(), "data")
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(Json(json!({"screen": next.screen, "data": data})))
}

/// A unary gRPC client on one `h2` connection: the request as one length-prefixed,
/// uncompressed message; the answer's messages read whole, then `grpc-status` from the
/// trailers (or from the headers, for an answer with no body). Only what this baseline
/// needs: no deadlines, no metadata, no reconnecting.
#[derive(Clone)]
struct H2Client {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

impl H2Client {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(connection);
        Ok(Self {
            send,
            authority: addr.to_string(),
        })
    }

    async fn call<M: Message>(&self, method: &str, message: &M) -> anyhow::Result<FlowResponse> {
        let mut send = self.send.clone().ready().await?;
        let request = http::Request::post(format!(
            "http://{}/flowgate.v1.FlowService/{method}",
            self.authority
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
        let (answer, mut stream) = send.send_request(request, false)?;
        let len = message.encoded_len();
        let mut frame = BytesMut::with_capacity(5 + len);
        frame.put_u8(0);
        frame.put_u32(u32::try_from(len)?);
        message.encode(&mut frame)?;
        stream.send_data(frame.freeze(), true)?;

        let (parts, mut body) = answer.await?.into_parts();
        anyhow::ensure!(
            parts.status == http::StatusCode::OK,
            "HTTP {}",
            parts.status
        );
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            body.flow_control().release_capacity(chunk.len())?;
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await?.unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .or_else(|| parts.headers.get("grpc-status"))
            .map(|value| value.as_bytes());
        anyhow::ensure!(status == Some(b"0"), "grpc-status {status:?}");
        anyhow::ensure!(
            data.len() >= 5 && data[0] == 0,
            "not one uncompressed message"
        );
        Ok(FlowResponse::decode(&data[5..])?)
    }
}

/// The service: the sign-up flow's answer, and nothing else.
#[derive(Debug, Clone, Copy)]
struct Bare;

impl Bare {
    fn next(action: &str, screen: &str, data: Option<prost_types::Struct>) -> FlowResult {
        let data = struct_to_json(data.unwrap_or_default(), "data")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (screen, data) = answer(Some(action), Some(screen), &Value::Object(data))
            .ok_or_else(|| Status::invalid_argument("not a step of the sign-up flow"))?;
        let data = match data {
            Value::Object(data) => {
                struct_from_json(&data, "data").map_err(|e| Status::internal(e.to_string()))?
            }
            _ => prost_types::Struct::default(),
        };
        Ok(Response::new(FlowResponse {
            outcome: Some(Outcome::NextScreen(NextScreen {
                screen: screen.to_owned(),
                data: Some(data),
                error_message: None,
            })),
        }))
    }
}

type FlowResult = Result<Response<FlowResponse>, Status>;

#[tonic::async_trait]
impl FlowService for Bare {
    async fn init(&self, request: Request<InitRequest>) -> FlowResult {
        let request = request.into_inner();
        Self::next("INIT", &request.screen, request.data)
    }

    async fn data_exchange(&self, request: Request<DataExchangeRequest>) -> FlowResult {
        let request = request.into_inner();
        Self::next("data_exchange", &request.screen, request.data)
    }

    async fn back(&self, _: Request<BackRequest>) -> FlowResult {
        Err(Status::unimplemented(
            "the hop baseline answers INIT and data_exchange",
        ))
    }

    async fn notify_error(
        &self,
        _: Request<NotifyErrorRequest>,
    ) -> Result<Response<NotifyErrorResponse>, Status> {
        Err(Status::unimplemented(
            "the hop baseline answers INIT and data_exchange",
        ))
    }

    async fn list_flows(
        &self,
        _: Request<ListFlowsRequest>,
    ) -> Result<Response<ListFlowsResponse>, Status> {
        Err(Status::unimplemented(
            "the hop baseline answers INIT and data_exchange",
        ))
    }

    async fn get_flow(
        &self,
        _: Request<GetFlowRequest>,
    ) -> Result<Response<GetFlowResponse>, Status> {
        Err(Status::unimplemented(
            "the hop baseline answers INIT and data_exchange",
        ))
    }
}

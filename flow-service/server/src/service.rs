//! [`FlowServer`]: the `flowgate.v1.FlowService` implementation that routes each
//! call to a registered [`Flow`], checks the answer against the flow's Flow JSON, and
//! converts between proto messages and the SDK's types.
//!
//! Around every handler runs the same pipeline of steps, in `src/pipeline.rs`: token
//! policy, idempotency claim, single use, session, handler, Flow JSON check, commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flowgate_proto::json::{struct_from_json, struct_to_json};
use flowgate_proto::v1::flow_service_server::FlowService;
use flowgate_proto::v1::{self, FlowResponse, flow_response};
use serde_json::Value;
use tonic::{Request as GrpcRequest, Response, Status};

use crate::pipeline::{self, Calls, Incoming};
use crate::sdk::{Action, Context, ErrorNotice, Flow, FlowError, Outcome};
use crate::store::Store;
use crate::tokens::TokenPolicy;
use flowgate_sdk::excerpt::{STATUS_EXCERPT_CHARS, excerpt};

/// What WhatsApp shows the user when a flow token is refused: already completed,
/// unsigned, tampered with, expired or for another flow.
pub const TOKEN_NO_LONGER_VALID: &str = "This form is no longer available.";

/// The flows a service runs, by name, and which one the gateway's main path reaches.
///
/// Answers of a flow with a Flow JSON ([`Flow::flow_json`]) are checked before they
/// leave. A violation is always logged and counted ([`Flows::violations`]); in strict
/// mode ([`Flows::strict`]) the answer is also refused with `INTERNAL`, which the
/// gateway turns into a 503, so that tests and staging fail loudly where production
/// would have shown the user a WhatsApp error.
#[derive(Clone, Default)]
pub struct Flows {
    by_name: HashMap<String, Arc<dyn Flow>>,
    default: Option<String>,
    pub(crate) strict: bool,
    /// Shared by clones, so the caller keeps a handle on what the server counts.
    pub(crate) violations: Arc<AtomicU64>,
    /// Where completions, outcomes and sessions go; `None` until set, and then
    /// [`crate::server::run`] uses a private [`MemoryStore`](crate::store::MemoryStore).
    store: Option<Arc<dyn Store>>,
    pub(crate) tokens: TokenPolicy,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.by_name.keys().collect();
        names.sort();
        let mut unchecked: Vec<_> = self
            .by_name
            .iter()
            .filter(|(_, flow)| flow.flow_json().is_none())
            .map(|(name, _)| name)
            .collect();
        unchecked.sort();
        f.debug_struct("Flows")
            .field("names", &names)
            .field("default", &self.default)
            .field("strict", &self.strict)
            .field("unchecked", &unchecked)
            .field("store", &self.store.as_ref().map(|store| store.url()))
            .field(
                "tokens",
                &match self.tokens {
                    TokenPolicy::Open => "open",
                    TokenPolicy::Signed(_) => "signed",
                },
            )
            .finish()
    }
}

impl Flows {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `flow` under `name` (reached at the gateway's `/flows/{name}`).
    /// The first flow registered is the default until [`Flows::default_flow`] says otherwise.
    ///
    /// A flow with a Flow JSON has it checked here, so a broken file stops the service
    /// at start rather than failing requests.
    pub fn register(mut self, name: impl Into<String>, flow: impl Flow) -> Self {
        let _ = flow.flow_json();
        let name = name.into();
        self.default.get_or_insert_with(|| name.clone());
        self.by_name.insert(name, Arc::new(flow));
        self
    }

    /// Makes the flow `name` the one reached by an empty flow name.
    pub fn default_flow(mut self, name: impl Into<String>) -> Self {
        self.default = Some(name.into());
        self
    }

    /// In strict mode, an answer that breaks the flow's Flow JSON is refused
    /// (`INTERNAL`) instead of sent. Off by default; `FLOW_SERVICE_STRICT=1` turns it on.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Keeps completions, call outcomes and sessions in `store` (see
    /// [`crate::store::connect`], or [`MemoryStore`](crate::store::MemoryStore) for a
    /// flow's own tests).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The store set with [`Flows::store`].
    pub fn get_store(&self) -> Option<&Arc<dyn Store>> {
        self.store.as_ref()
    }

    /// Which flow tokens are accepted; [`TokenPolicy::Open`] by default.
    pub fn tokens(mut self, policy: TokenPolicy) -> Self {
        self.tokens = policy;
        self
    }

    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The registered flows' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// How many answers broke their flow's Flow JSON since start, in either mode.
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    /// What `ListFlows` answers: every flow, sorted by name.
    pub fn summaries(&self) -> Vec<v1::FlowSummary> {
        let signed_tokens = matches!(self.tokens, TokenPolicy::Signed(_));
        self.names()
            .into_iter()
            .map(|name| v1::FlowSummary {
                name: name.to_owned(),
                is_default: self.default.as_deref() == Some(name),
                signed_tokens,
            })
            .collect()
    }

    /// The flow for a context's flow name; empty means the default flow.
    pub(crate) fn get(&self, name: &str) -> Result<(&str, &Arc<dyn Flow>), Status> {
        let name = if name.is_empty() {
            self.default.as_deref().unwrap_or_default()
        } else {
            name
        };
        self.by_name
            .get_key_value(name)
            .map(|(name, flow)| (name.as_str(), flow))
            .ok_or_else(|| {
                // The name is the caller's; the status quotes it short and escaped.
                Status::not_found(format!(
                    "no flow named {}",
                    excerpt(name, STATUS_EXCERPT_CHARS)
                ))
            })
    }
}

/// Serves `flowgate.v1.FlowService` for a set of [`Flows`], keeping state in a [`Store`].
/// Clones share everything, including the calls in flight: one server, one single
/// flight (see `src/pipeline.rs`).
#[derive(Debug, Clone)]
pub struct FlowServer {
    flows: Arc<Flows>,
    store: Arc<dyn Store>,
    calls: Arc<Calls>,
}

impl FlowServer {
    pub fn new(flows: Flows, store: Arc<dyn Store>) -> Self {
        Self {
            flows: Arc::new(flows),
            store,
            calls: Arc::default(),
        }
    }

    /// The calls with a key still running, its caller gone or not: what shutdown waits
    /// for before the store closes.
    pub(crate) fn calls(&self) -> Arc<Calls> {
        self.calls.clone()
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        action: Action,
        deadline: Option<std::time::Instant>,
        context: Option<v1::RequestContext>,
        flow_token: String,
        screen: String,
        data: Option<prost_types::Struct>,
    ) -> Result<Response<FlowResponse>, Status> {
        let incoming = Incoming {
            action,
            deadline,
            context,
            flow_token,
            screen,
            data,
        };
        pipeline::run(&self.flows, &self.store, &self.calls, incoming)
            .await
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl FlowService for FlowServer {
    async fn init(
        &self,
        request: GrpcRequest<v1::InitRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        let deadline = pipeline::deadline(request.metadata());
        let r = request.into_inner();
        self.exchange(
            Action::Init,
            deadline,
            r.context,
            r.flow_token,
            r.screen,
            r.data,
        )
        .await
    }

    async fn data_exchange(
        &self,
        request: GrpcRequest<v1::DataExchangeRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        let deadline = pipeline::deadline(request.metadata());
        let r = request.into_inner();
        self.exchange(
            Action::DataExchange,
            deadline,
            r.context,
            r.flow_token,
            r.screen,
            r.data,
        )
        .await
    }

    async fn back(
        &self,
        request: GrpcRequest<v1::BackRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        let deadline = pipeline::deadline(request.metadata());
        let r = request.into_inner();
        self.exchange(
            Action::Back,
            deadline,
            r.context,
            r.flow_token,
            r.screen,
            r.data,
        )
        .await
    }

    async fn notify_error(
        &self,
        request: GrpcRequest<v1::NotifyErrorRequest>,
    ) -> Result<Response<v1::NotifyErrorResponse>, Status> {
        let r = request.into_inner();
        let context = context_from_proto(r.context);
        let (name, flow) = self.flows.get(&context.flow)?;
        let span = tracing::Span::current();
        span.record("flow", name);
        span.record("action", "error_notification");
        span.record("token_hash", flowgate_proto::token_hash(&r.flow_token));
        span.record("request_id", context.request_id.as_str());
        span.record("attempt", context.attempt);
        let notice = ErrorNotice {
            context,
            flow_token: r.flow_token,
            screen: r.screen,
            action: r.action,
            error_key: r.error_key,
            error_message: r.error_message,
            data: struct_to_json(r.data.unwrap_or_default(), "data")
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        };
        flow.on_error(notice).await.map_err(to_status)?;
        Ok(Response::new(v1::NotifyErrorResponse {}))
    }

    async fn list_flows(
        &self,
        _: GrpcRequest<v1::ListFlowsRequest>,
    ) -> Result<Response<v1::ListFlowsResponse>, Status> {
        Ok(Response::new(v1::ListFlowsResponse {
            flows: self.flows.summaries(),
        }))
    }

    /// The Flow JSON text as registered; empty for a flow registered without one
    /// ([`Flow::flow_json`] is optional), which the contract allows.
    async fn get_flow(
        &self,
        request: GrpcRequest<v1::GetFlowRequest>,
    ) -> Result<Response<v1::GetFlowResponse>, Status> {
        let (name, flow) = self.flows.get(&request.get_ref().flow)?;
        Ok(Response::new(v1::GetFlowResponse {
            name: name.to_owned(),
            flow_json: flow
                .flow_json()
                .map(|json| json.source().to_owned())
                .unwrap_or_default(),
        }))
    }
}

pub(crate) fn context_from_proto(context: Option<v1::RequestContext>) -> Context {
    let c = context.unwrap_or_default();
    Context {
        flow_token_signature: crate::wire::token_signature_from_proto(c.flow_token_signature()),
        flow: c.flow,
        request_id: c.request_id,
        attempt: c.attempt,
        idempotency_key: c.idempotency_key,
        version: c.version,
        signature_verified: c.signature_verified,
    }
}

/// Converts an SDK outcome into the wire message. Data that is not a JSON object is a
/// bug in the flow, reported as `INTERNAL`.
pub fn outcome_to_proto(outcome: Outcome) -> Result<FlowResponse, Status> {
    outcome_ref_to_proto(&outcome)
}

/// [`outcome_to_proto`] of a borrowed outcome: the pipeline keeps the outcome for the
/// store and for resends, and converting from a reference spares a deep copy of its
/// data on every call.
pub(crate) fn outcome_ref_to_proto(outcome: &Outcome) -> Result<FlowResponse, Status> {
    let object = |value: &Value, what: &str| match value {
        Value::Object(object) => struct_from_json(object, what)
            .map_err(|e| Status::internal(format!("the flow answered unusable {what}: {e}"))),
        _ => Err(Status::internal(format!(
            "the flow answered {what} that is not a JSON object"
        ))),
    };
    let outcome = match outcome {
        Outcome::Screen {
            screen,
            data,
            error_message,
        } => flow_response::Outcome::NextScreen(v1::NextScreen {
            screen: screen.clone(),
            data: Some(object(data, "data")?),
            error_message: error_message.clone(),
        }),
        Outcome::Complete { params } => flow_response::Outcome::Complete(v1::Complete {
            params: Some(object(params, "params")?),
        }),
        Outcome::TokenInvalid { message } => {
            flow_response::Outcome::TokenInvalid(v1::TokenInvalid {
                message: message.clone(),
            })
        }
    };
    Ok(FlowResponse {
        outcome: Some(outcome),
    })
}

/// The one mapping of a flow's error to a gRPC status, logged here when it is the
/// service's trouble (the call's fields are on the span).
pub(crate) fn to_status(error: FlowError) -> Status {
    match error {
        FlowError::UnknownScreen(_) | FlowError::Invalid(_) => {
            Status::invalid_argument(error.to_string())
        }
        FlowError::Unavailable(_) => {
            tracing::warn!(%error, "flow dependency unavailable");
            Status::unavailable(error.to_string())
        }
        FlowError::Internal(_) => {
            tracing::error!(%error, "flow failed");
            Status::internal("the flow failed; see the flow service's log")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::Request;
    use crate::store::MemoryStore;
    use flowgate_sdk::FlowJson;
    use flowgate_sdk::Router;
    use serde_json::json;

    /// A flow whose INIT answers whatever screen `data.answer` names, with no data.
    fn wayward() -> Router {
        let flow_json = FlowJson::parse(
            &json!({
                "version": "7.3", "data_api_version": "3.0",
                "routing_model": {"START": ["END"], "END": []},
                "screens": [
                    {"id": "START", "layout": {"type": "SingleColumnLayout", "children": []}},
                    {"id": "END", "terminal": true,
                     "layout": {"type": "SingleColumnLayout", "children": []}}
                ]
            })
            .to_string(),
        )
        .unwrap();
        Router::new(flow_json).on_init(|r: Request| async move {
            let screen = r.text("answer").unwrap_or("START").to_owned();
            Ok(Outcome::screen(screen, json!({})))
        })
    }

    async fn init(server: &FlowServer, answer: &str) -> Result<FlowResponse, Status> {
        let data = json!({"answer": answer});
        server
            .init(GrpcRequest::new(v1::InitRequest {
                context: Some(v1::RequestContext {
                    flow: "wayward".into(),
                    ..Default::default()
                }),
                flow_token: "tok".into(),
                screen: String::new(),
                data: Some(struct_from_json(data.as_object().unwrap(), "data").unwrap()),
            }))
            .await
            .map(Response::into_inner)
    }

    async fn server(flows: &Flows) -> FlowServer {
        FlowServer::new(flows.clone(), Arc::new(MemoryStore::default()))
    }

    #[tokio::test]
    async fn strict_mode_refuses_answers_that_break_the_flow_json() {
        let flows = Flows::new().register("wayward", wayward()).strict(true);
        let server = server(&flows).await;
        assert!(init(&server, "START").await.is_ok());
        assert_eq!(flows.violations(), 0);
        for (answer, message) in [
            ("END", "INIT answered `END`, which is not an entry screen"),
            (
                "ELSEWHERE",
                "answered screen `ELSEWHERE`, which the Flow JSON does not declare",
            ),
        ] {
            let status = init(&server, answer).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::Internal);
            assert!(status.message().contains(message), "{status:?}");
        }
        assert_eq!(flows.violations(), 2);
    }

    /// A flow registered without a Flow JSON, which [`Flow::flow_json`] allows.
    struct Bare;

    #[async_trait::async_trait]
    impl Flow for Bare {
        async fn init(&self, _: Request) -> Result<Outcome, FlowError> {
            Ok(Outcome::screen("START", json!({})))
        }
        async fn data_exchange(&self, _: Request) -> Result<Outcome, FlowError> {
            Ok(Outcome::screen("START", json!({})))
        }
    }

    /// Serves `flows` on 127.0.0.1:0 and returns a client of it; the server stops
    /// when the returned sender is dropped.
    async fn grpc(
        flows: Flows,
    ) -> (
        v1::flow_service_client::FlowServiceClient<tonic::transport::Channel>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = crate::server::ServeOptions {
            drain_delay: std::time::Duration::ZERO,
            ..Default::default()
        };
        tokio::spawn(crate::server::run_with(
            listener,
            flows,
            async {
                let _ = stopped.await;
            },
            options,
        ));
        let client = v1::flow_service_client::FlowServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        (client, stop)
    }

    #[tokio::test]
    async fn list_flows_names_each_flow_its_default_and_the_token_policy() {
        let flows = Flows::new()
            .register("wayward", wayward())
            .register("bare", Bare)
            .default_flow("bare");
        let (mut client, _stop) = grpc(flows.clone()).await;
        let listed = client
            .list_flows(v1::ListFlowsRequest {})
            .await
            .unwrap()
            .into_inner()
            .flows;
        let summary = |name: &str, is_default, signed_tokens| v1::FlowSummary {
            name: name.into(),
            is_default,
            signed_tokens,
        };
        assert_eq!(
            listed,
            [
                summary("bare", true, false),
                summary("wayward", false, false)
            ]
        );

        let secret = crate::tokens::Secret::new(&[7; 32]).unwrap();
        let (mut client, _stop) = grpc(flows.tokens(TokenPolicy::Signed(secret))).await;
        let listed = client
            .list_flows(v1::ListFlowsRequest {})
            .await
            .unwrap()
            .into_inner()
            .flows;
        assert!(listed.iter().all(|f| f.signed_tokens), "{listed:?}");
    }

    #[tokio::test]
    async fn get_flow_answers_the_flow_json_text_as_registered() {
        let flows = Flows::new()
            .register("wayward", wayward())
            .register("bare", Bare);
        let (mut client, _stop) = grpc(flows).await;
        let get = |flow: &str| v1::GetFlowRequest { flow: flow.into() };

        // The default flow, by its empty name, answers with its own name.
        let answer = client.get_flow(get("")).await.unwrap().into_inner();
        assert_eq!(answer.name, "wayward");
        assert_eq!(answer.flow_json, wayward().flow_json().unwrap().source());
        let parsed: Value = serde_json::from_str(&answer.flow_json).unwrap();
        assert_eq!(parsed["routing_model"]["START"], json!(["END"]));

        let answer = client.get_flow(get("wayward")).await.unwrap().into_inner();
        assert_eq!(answer.name, "wayward");
        assert!(!answer.flow_json.is_empty());

        // A flow without a Flow JSON: known, with nothing to show.
        let answer = client.get_flow(get("bare")).await.unwrap().into_inner();
        assert_eq!(
            (answer.name.as_str(), answer.flow_json.as_str()),
            ("bare", "")
        );

        let status = client.get_flow(get("nope")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().contains("nope"), "{status:?}");
    }

    #[tokio::test]
    async fn lenient_mode_counts_and_sends() {
        let flows = Flows::new().register("wayward", wayward());
        assert!(!flows.is_strict());
        let server = server(&flows).await;
        let response = init(&server, "END").await.unwrap();
        let Some(flow_response::Outcome::NextScreen(next)) = response.outcome else {
            panic!("{response:?}");
        };
        assert_eq!(next.screen, "END");
        assert_eq!(flows.violations(), 1);
    }
}

//! [`FlowServer`]: the `flowgate.v1.FlowService` implementation that routes each
//! call to a registered [`Flow`], checks the answer against the flow's Flow JSON, and
//! converts between proto messages and the SDK's types.
//!
//! Around every handler, for every flow, in this order:
//!
//! 1. the token policy: under `signed`, a token that is not valid for this flow is
//!    answered "token no longer valid" without touching the database;
//! 2. the idempotency key: a call seen before gets its stored outcome, and the handler
//!    does not run again (a call still in progress elsewhere: `UNAVAILABLE`) — except
//!    that once the token is completed only the completion itself is answered again;
//! 3. a completed token is answered "token no longer valid";
//! 4. the handler runs, with the token's session loaded;
//! 5. its outcome — and, for a completion, the completion record — is committed in one
//!    transaction before the answer leaves. Of two calls racing to complete one token,
//!    the database's primary key lets one win; the other is answered "token no longer
//!    valid".
//!
//! Any database failure is `UNAVAILABLE` (HTTP 503), and nothing half-written remains.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use flowgate_proto::json::{struct_from_json, struct_to_json};
use flowgate_proto::token_hash;
use flowgate_proto::v1::flow_service_server::FlowService;
use flowgate_proto::v1::{self, FlowResponse, flow_response};
use serde_json::Value;
use tonic::{Request as GrpcRequest, Response, Status};
use tracing::Instrument;

use crate::sdk::{Action, Context, ErrorNotice, Flow, FlowError, Outcome, Request, Session};
use crate::store::{Claim, Finished, Store, StoreError};
use crate::tokens::{self, TokenPolicy};

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
    strict: bool,
    /// Shared by clones, so the caller keeps a handle on what the server counts.
    violations: Arc<AtomicU64>,
    /// Where completions, outcomes and sessions go; `None` until set, and then
    /// [`crate::server::run`] uses a private in-memory database.
    store: Option<Store>,
    tokens: TokenPolicy,
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
            .field("store", &self.store.as_ref().map(Store::url))
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

    /// Keeps completions, call outcomes and sessions in `store`.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The store set with [`Flows::store`].
    pub fn get_store(&self) -> Option<&Store> {
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

    /// The flow for a context's flow name; empty means the default flow.
    fn get(&self, name: &str) -> Result<(&str, &Arc<dyn Flow>), Status> {
        let name = if name.is_empty() {
            self.default.as_deref().unwrap_or_default()
        } else {
            name
        };
        self.by_name
            .get_key_value(name)
            .map(|(name, flow)| (name.as_str(), flow))
            .ok_or_else(|| Status::not_found(format!("no flow named `{name}`")))
    }
}

/// Serves `flowgate.v1.FlowService` for a set of [`Flows`], keeping state in a [`Store`].
#[derive(Debug, Clone)]
pub struct FlowServer {
    flows: Flows,
    store: Store,
}

/// What is known about a call before its handler runs.
struct Call<'a> {
    flow: &'a str,
    action: Action,
    token: String,
    request_id: String,
    screen: String,
}

impl FlowServer {
    pub fn new(flows: Flows, store: Store) -> Self {
        Self { flows, store }
    }

    async fn exchange(
        &self,
        action: Action,
        context: Option<v1::RequestContext>,
        flow_token: String,
        screen: String,
        data: Option<prost_types::Struct>,
    ) -> Result<Response<FlowResponse>, Status> {
        let context = context_from_proto(context);
        let (name, flow) = self.flows.get(&context.flow)?;
        if flow_token.is_empty() {
            return Err(Status::invalid_argument("flow_token is required"));
        }
        let call = Call {
            flow: name,
            action,
            token: token_hash(&flow_token),
            request_id: context.request_id.clone(),
            screen: screen.clone(),
        };
        let claims = match &self.flows.tokens {
            TokenPolicy::Open => None,
            TokenPolicy::Signed(secret) => {
                match tokens::verify(secret, &flow_token, name, SystemTime::now()) {
                    Ok(claims) => Some(claims),
                    Err(reason) => {
                        call.log_refused(&reason.to_string());
                        return token_invalid();
                    }
                }
            }
        };
        let mut request = Request {
            flow_token,
            screen,
            data: struct_to_json(&data.unwrap_or_default(), "data")
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
            session: Session::default(),
            claims,
            context,
        };
        let key = Some(request.context.idempotency_key.clone()).filter(|k| !k.is_empty());
        if let Some(key) = &key {
            match self
                .store
                .claim(&request.flow_token, key)
                .await
                .map_err(|e| call.unavailable(e))?
            {
                Claim::Claimed => {}
                // A completion is answered again as it was; any other stored answer
                // gives way once the token is completed (the user reopening a finished
                // flow sends the same INIT as the first time).
                Claim::Done(outcome @ Outcome::Complete { .. }) => {
                    call.log("repeated call answered with its stored outcome", &outcome);
                    return outcome_to_proto(outcome).map(Response::new);
                }
                Claim::Done(outcome) => {
                    if self
                        .store
                        .is_completed(&request.flow_token)
                        .await
                        .map_err(|e| call.unavailable(e))?
                    {
                        call.log_refused("the token was already completed");
                        return token_invalid();
                    }
                    call.log("repeated call answered with its stored outcome", &outcome);
                    return outcome_to_proto(outcome).map(Response::new);
                }
                Claim::InProgress => {
                    tracing::info!(
                        flow = name,
                        action = action.as_str(),
                        token = call.token,
                        request_id = call.request_id,
                        "the same call is still in progress",
                    );
                    return Err(Status::unavailable(
                        "the same call is still in progress; retry shortly",
                    ));
                }
            }
        }
        let token = request.flow_token.clone();
        let answer = self.run(&call, flow, &mut request, key.as_deref()).await;
        if let (Some(key), Err(_)) = (&key, &answer) {
            // Nothing was recorded for this call: free its key so a retry runs it.
            if let Err(e) = self.store.release(&token, key).await {
                tracing::warn!(
                    token = call.token,
                    error = %e,
                    "could not release an idempotency key; it lapses by itself",
                );
            }
        }
        answer
    }

    /// Steps 3 to 5 for a claimed call: completed token, handler, commit.
    async fn run(
        &self,
        call: &Call<'_>,
        flow: &Arc<dyn Flow>,
        request: &mut Request,
        key: Option<&str>,
    ) -> Result<Response<FlowResponse>, Status> {
        let store_error = |e| call.unavailable(e);
        if self
            .store
            .is_completed(&request.flow_token)
            .await
            .map_err(store_error)?
        {
            call.log_refused("the token was already completed");
            return token_invalid();
        }
        let session = Session::new(
            self.store
                .session(&request.flow_token)
                .await
                .map_err(store_error)?,
        );
        request.session = session.clone();
        let token = request.flow_token.clone();
        // The handler's own span, a child of the server span the gRPC layer opened.
        let span = tracing::info_span!(
            "flow.handler",
            flow = call.flow,
            action = call.action.as_str(),
            screen = %request.screen,
        );
        let outcome = async {
            match call.action {
                Action::Init => flow.init(request.clone()).await,
                Action::Back => flow.back(request.clone()).await,
                Action::DataExchange => flow.data_exchange(request.clone()).await,
            }
        }
        .instrument(span)
        .await;
        let outcome = outcome.map_err(|e| to_status(e, call.flow, call.action.as_str()))?;
        self.check(call, flow, &outcome)?;
        // Refuse unusable data before anything is recorded.
        let response = outcome_to_proto(outcome.clone())?;
        match self
            .store
            .finish(call.flow, &token, key, &outcome, session.changes().as_ref())
            .await
            .map_err(store_error)?
        {
            Finished::Recorded => {
                call.log("flow call", &outcome);
                Ok(Response::new(response))
            }
            Finished::AlreadyCompleted => {
                call.log_refused("another call completed the token first");
                token_invalid()
            }
        }
    }

    /// Checks an answer against the flow's Flow JSON: always counted and logged, and
    /// refused in strict mode.
    fn check(
        &self,
        call: &Call<'_>,
        flow: &Arc<dyn Flow>,
        outcome: &Outcome,
    ) -> Result<(), Status> {
        let violation = flow
            .flow_json()
            .and_then(|flow_json| flow_json.check(call.action, &call.screen, outcome).err());
        let Some(violation) = violation else {
            return Ok(());
        };
        self.flows.violations.fetch_add(1, Ordering::Relaxed);
        // Violations name screens and fields, never their values.
        if self.flows.strict {
            tracing::error!(
                flow = call.flow,
                action = call.action.as_str(),
                screen = call.screen,
                token = call.token,
                request_id = call.request_id,
                error_key = violation.error_key(),
                %violation,
                "answer refused: it breaks the flow's Flow JSON (strict mode)",
            );
            return Err(Status::internal(format!(
                "the flow's answer breaks its Flow JSON: {violation}"
            )));
        }
        tracing::warn!(
            flow = call.flow,
            action = call.action.as_str(),
            screen = call.screen,
            token = call.token,
            request_id = call.request_id,
            error_key = violation.error_key(),
            %violation,
            "answer breaks the flow's Flow JSON; sent anyway",
        );
        Ok(())
    }
}

impl Call<'_> {
    fn log(&self, message: &str, outcome: &Outcome) {
        tracing::info!(
            flow = self.flow,
            action = self.action.as_str(),
            screen = self.screen,
            token = self.token,
            request_id = self.request_id,
            outcome = outcome_kind(outcome),
            "{message}",
        );
    }

    fn log_refused(&self, reason: &str) {
        tracing::info!(
            flow = self.flow,
            action = self.action.as_str(),
            screen = self.screen,
            token = self.token,
            request_id = self.request_id,
            reason,
            "flow token refused",
        );
    }

    /// The one mapping of a store failure: logged here, `UNAVAILABLE` to the caller.
    fn unavailable(&self, error: StoreError) -> Status {
        tracing::warn!(
            flow = self.flow,
            action = self.action.as_str(),
            token = self.token,
            request_id = self.request_id,
            %error,
            "database unavailable",
        );
        Status::unavailable("the flow service's database is unavailable")
    }
}

fn token_invalid() -> Result<Response<FlowResponse>, Status> {
    outcome_to_proto(Outcome::token_invalid(TOKEN_NO_LONGER_VALID)).map(Response::new)
}

#[tonic::async_trait]
impl FlowService for FlowServer {
    async fn init(
        &self,
        request: GrpcRequest<v1::InitRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        let r = request.into_inner();
        self.exchange(Action::Init, r.context, r.flow_token, r.screen, r.data)
            .await
    }

    async fn data_exchange(
        &self,
        request: GrpcRequest<v1::DataExchangeRequest>,
    ) -> Result<Response<FlowResponse>, Status> {
        let r = request.into_inner();
        self.exchange(
            Action::DataExchange,
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
        let r = request.into_inner();
        self.exchange(Action::Back, r.context, r.flow_token, r.screen, r.data)
            .await
    }

    async fn notify_error(
        &self,
        request: GrpcRequest<v1::NotifyErrorRequest>,
    ) -> Result<Response<v1::NotifyErrorResponse>, Status> {
        let r = request.into_inner();
        let context = context_from_proto(r.context);
        let (name, flow) = self.flows.get(&context.flow)?;
        let notice = ErrorNotice {
            context,
            flow_token: r.flow_token,
            screen: r.screen,
            action: r.action,
            error_key: r.error_key,
            error_message: r.error_message,
            data: struct_to_json(&r.data.unwrap_or_default(), "data")
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        };
        flow.on_error(notice)
            .await
            .map_err(|e| to_status(e, name, "error_notification"))?;
        Ok(Response::new(v1::NotifyErrorResponse {}))
    }
}

fn context_from_proto(context: Option<v1::RequestContext>) -> Context {
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

fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Screen {
            error_message: None,
            ..
        } => "screen",
        Outcome::Screen {
            error_message: Some(_),
            ..
        } => "screen_with_error",
        Outcome::Complete { .. } => "complete",
        Outcome::TokenInvalid { .. } => "token_invalid",
    }
}

/// Converts an SDK outcome into the wire message. Data that is not a JSON object is a
/// bug in the flow, reported as `INTERNAL`.
pub fn outcome_to_proto(outcome: Outcome) -> Result<FlowResponse, Status> {
    let object = |value: Value, what: &str| match value {
        Value::Object(object) => struct_from_json(&object, what)
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
            screen,
            data: Some(object(data, "data")?),
            error_message,
        }),
        Outcome::Complete { params } => flow_response::Outcome::Complete(v1::Complete {
            params: Some(object(params, "params")?),
        }),
        Outcome::TokenInvalid { message } => {
            flow_response::Outcome::TokenInvalid(v1::TokenInvalid { message })
        }
    };
    Ok(FlowResponse {
        outcome: Some(outcome),
    })
}

fn to_status(error: FlowError, flow: &str, action: &str) -> Status {
    match error {
        FlowError::UnknownScreen(_) | FlowError::Invalid(_) => {
            Status::invalid_argument(error.to_string())
        }
        FlowError::Unavailable(_) => {
            tracing::warn!(flow, action, %error, "flow dependency unavailable");
            Status::unavailable(error.to_string())
        }
        FlowError::Internal(_) => {
            tracing::error!(flow, action, %error, "flow failed");
            Status::internal("the flow failed; see the flow service's log")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::FlowJson;
    use crate::router::Router;
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
        FlowServer::new(flows.clone(), Store::memory().await.unwrap())
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

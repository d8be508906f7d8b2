//! The preview's JSON API, under `/preview/api/`:
//!
//! - `GET routes`: each configured route, its mode, and the flows it reaches (from the
//!   flow service's optional `ListFlows`; a route to one flow shows that flow only),
//!   or `flows_error` when the listing failed;
//! - `GET flow?route=…&flow=…`: the flow's Flow JSON (`GetFlow`), parsed;
//! - `POST check`: a Flow JSON file checked by the SDK (`FlowJson::parse_any`), so a
//!   flow without an endpoint is valid too;
//! - `POST exchange`: one WhatsApp request run through the route exactly as the
//!   endpoint runs it ([`respond`]: translate → flow service with its retries and
//!   deadline → answer), minus the envelope; the answer is what the endpoint would
//!   send, with the SDK's `FlowJson::check` of it against the flow's Flow JSON.
//!
//! A malformed call of the API is 400 `{"error":{"code":"bad_request","message"}}`;
//! an unknown route or flow 404; a flow service that does not offer the optional
//! RPCs 501 `unimplemented` (the page then asks for a file), or that has no Flow
//! JSON for the flow 501 `no_flow_json`; one that fails 502, 503 or 504. An exchange
//! is always 200: the endpoint's own status is inside.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flowgate_proto::v1;
use flowgate_sdk::excerpt::{STATUS_EXCERPT_CHARS, excerpt};
use flowgate_sdk::{Action, FlowJson, FlowJsonError, Outcome, Violation};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{FlowSource, valid_flow_name};
use crate::envelope::Envelope;
use crate::error::GatewayError;
use crate::layers::deadline::Deadline;
use crate::routes::{AppState, Route, respond};
use crate::translate::{Answer, AnswerKind, Call};
use crate::upstream::Reply;

/// How long a Flow JSON from `GetFlow` is reused to check answers: a run of clicks
/// asks once, and an edited file is seen within seconds.
const FLOW_JSON_TTL: Duration = Duration::from_secs(5);

/// (route path, flow as sent) → when fetched, and the parsed Flow JSON.
type FlowJsons = HashMap<(String, String), (Instant, Arc<FlowJson>)>;

/// The routes, and the Flow JSONs recently fetched for checking answers.
struct Preview {
    routes: Vec<Route>,
    request_timeout: Duration,
    flow_jsons: Mutex<FlowJsons>,
}

/// `/preview/api/…` for the routes of `state`.
pub fn router(state: &AppState) -> Router {
    let preview = Arc::new(Preview {
        routes: state.routes.clone(),
        request_timeout: state.request_timeout,
        flow_jsons: Mutex::default(),
    });
    Router::new()
        .route("/preview/api/routes", get(routes))
        .route("/preview/api/flow", get(flow))
        .route("/preview/api/check", post(check))
        .route("/preview/api/exchange", post(exchange))
        .with_state(preview)
}

/// A refusal of the API: `{"error":{"code","message"}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    /// A call to the flow service that failed, for a preview call on `flow`.
    fn upstream(error: GatewayError, flow: &str) -> Self {
        error.log();
        let (status, code) = match &error {
            GatewayError::Unimplemented { .. } => (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
            GatewayError::UnknownFlow(_) => (StatusCode::NOT_FOUND, "unknown_flow"),
            GatewayError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            GatewayError::Unavailable { .. }
            | GatewayError::Overloaded
            | GatewayError::GatewayBusy => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            GatewayError::Rejected(_) => (StatusCode::BAD_GATEWAY, "rejected"),
            _ => (StatusCode::BAD_GATEWAY, "bad_upstream_response"),
        };
        let message = match error {
            GatewayError::UnknownFlow(_) => GatewayError::UnknownFlow(quote(flow)).to_string(),
            GatewayError::Unimplemented { .. } => {
                "the flow service does not offer ListFlows and GetFlow (optional); choose a Flow JSON file"
                    .to_owned()
            }
            error => error.to_string(),
        };
        Self {
            status,
            code,
            message,
        }
    }

    fn body(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.body()}))).into_response()
    }
}

/// A name from the caller, short and escaped, for a message.
fn quote(text: &str) -> String {
    excerpt(text, STATUS_EXCERPT_CHARS).to_string()
}

impl Preview {
    fn route(&self, path: &str) -> Result<&Route, ApiError> {
        self.routes
            .iter()
            .find(|route| route.path == path)
            .ok_or_else(|| {
                ApiError::not_found(
                    "unknown_route",
                    format!("no route `{}` is configured", quote(path)),
                )
            })
    }

    /// When a preview call's answer from the flow service is due: as for a request
    /// arriving now at the endpoint.
    fn deadline(&self) -> Instant {
        Deadline::of(Instant::now(), self.request_timeout).0
    }

    /// The Flow JSON of `flow` on `route` to check answers against: fetched within the
    /// last [`FLOW_JSON_TTL`], or fetched now. `None` when there is none to be had.
    async fn flow_json(&self, route: &Route, flow: &str) -> Option<Arc<FlowJson>> {
        let key = (route.path.clone(), flow.to_owned());
        if let Some((at, flow_json)) = self.flow_jsons.lock().expect("not poisoned").get(&key) {
            if at.elapsed() < FLOW_JSON_TTL {
                return Some(flow_json.clone());
            }
        }
        let (_, text) = get_flow(route, flow, self.deadline()).await.ok()?;
        let flow_json = Arc::new(FlowJson::parse_any(&text).ok()?);
        self.remember(key, flow_json.clone());
        Some(flow_json)
    }

    fn remember(&self, key: (String, String), flow_json: Arc<FlowJson>) {
        let mut cache = self.flow_jsons.lock().expect("not poisoned");
        cache.retain(|_, (at, _)| at.elapsed() < FLOW_JSON_TTL);
        cache.insert(key, (Instant::now(), flow_json));
    }
}

/// The flow a preview call on `route` runs, as the endpoint would name it in the
/// call: a route to the default flow sends an empty name whatever was asked.
fn flow_of(route: &Route, asked: Option<&str>) -> Result<String, ApiError> {
    match (&route.flow, asked.filter(|f| !f.is_empty())) {
        (FlowSource::Default, _) => Ok(String::new()),
        (FlowSource::Named(name), None) => Ok(name.clone()),
        (FlowSource::Named(name), Some(asked)) if asked == name => Ok(name.clone()),
        (FlowSource::Named(name), Some(asked)) => Err(ApiError::not_found(
            "unknown_flow",
            format!(
                "route `{}` runs flow `{name}` only, not `{}`",
                route.path,
                quote(asked)
            ),
        )),
        (FlowSource::FromPath, Some(asked)) if valid_flow_name(asked) => Ok(asked.to_owned()),
        (FlowSource::FromPath, Some(asked)) => Err(ApiError::not_found(
            "unknown_flow",
            format!("`{}` is not a flow name", quote(asked)),
        )),
        (FlowSource::FromPath, None) => Err(ApiError::bad_request(format!(
            "route `{}` needs `flow`",
            route.path
        ))),
    }
}

fn mode(route: &Route) -> &'static str {
    match route.envelope {
        Envelope::Plain => "plain",
        Envelope::Meta(_) => "meta",
    }
}

/// `ListFlows` on the route's flow service.
async fn list_flows(route: &Route, deadline: Instant) -> Result<Vec<v1::FlowSummary>, ApiError> {
    match route
        .upstream
        .call(Call::ListFlows(v1::ListFlowsRequest {}), deadline)
        .await
    {
        Ok(Reply::Flows(listed)) => Ok(listed.flows),
        Ok(_) => Err(ApiError::upstream(mismatched("ListFlows"), "")),
        Err(e) => Err(ApiError::upstream(e, "")),
    }
}

/// `GetFlow` on the route's flow service: the flow's name and Flow JSON text.
async fn get_flow(
    route: &Route,
    flow: &str,
    deadline: Instant,
) -> Result<(String, String), ApiError> {
    let request = v1::GetFlowRequest {
        flow: flow.to_owned(),
    };
    match route.upstream.call(Call::GetFlow(request), deadline).await {
        Ok(Reply::FlowJson(found)) => Ok((found.name, found.flow_json)),
        Ok(_) => Err(ApiError::upstream(mismatched("GetFlow"), flow)),
        Err(e) => Err(ApiError::upstream(e, flow)),
    }
}

fn mismatched(method: &str) -> GatewayError {
    GatewayError::BadUpstreamResponse {
        detail: format!("{method} was answered with another method's reply"),
    }
}

fn summary(flow: &v1::FlowSummary) -> Value {
    json!({"name": flow.name, "is_default": flow.is_default, "signed_tokens": flow.signed_tokens})
}

/// `GET /preview/api/routes`.
async fn routes(State(preview): State<Arc<Preview>>) -> Json<Value> {
    let deadline = preview.deadline();
    let listings = futures_util::future::join_all(
        preview
            .routes
            .iter()
            .map(|route| list_flows(route, deadline)),
    )
    .await;
    let routes: Vec<Value> = preview
        .routes
        .iter()
        .zip(listings)
        .map(|(route, listing)| {
            let reached = |flow: &v1::FlowSummary| match &route.flow {
                FlowSource::FromPath => true,
                FlowSource::Default => flow.is_default,
                FlowSource::Named(name) => flow.name == *name,
            };
            let (flows, error) = match listing {
                Ok(flows) => {
                    let flows: Vec<Value> =
                        flows.iter().filter(|f| reached(f)).map(summary).collect();
                    let error = match &route.flow {
                        FlowSource::Named(name) if flows.is_empty() => Some(ApiError::not_found(
                            "unknown_flow",
                            GatewayError::UnknownFlow(name.clone()).to_string(),
                        )),
                        _ => None,
                    };
                    (flows, error)
                }
                Err(e) => (Vec::new(), Some(e)),
            };
            json!({
                "route": route.path,
                "mode": mode(route),
                "flows": flows,
                "flows_error": error.map(|e| e.body()),
            })
        })
        .collect();
    Json(json!({ "routes": routes }))
}

/// Reads `route` and `flow` from a query string.
fn flow_query(query: Option<&str>) -> Result<(String, Option<String>), ApiError> {
    let (mut route, mut flow) = (None, None);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "route" => route = Some(value.into_owned()),
            "flow" => flow = Some(value.into_owned()),
            _ => {}
        }
    }
    let route = route.ok_or_else(|| ApiError::bad_request("`route` is missing"))?;
    Ok((route, flow))
}

/// `GET /preview/api/flow?route=…&flow=…`.
async fn flow(
    State(preview): State<Arc<Preview>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (route, flow) = flow_query(query.as_deref())?;
    let route = preview.route(&route)?;
    let flow = flow_of(route, flow.as_deref())?;
    let (name, text) = get_flow(route, &flow, preview.deadline()).await?;
    if text.is_empty() {
        return Err(ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            code: "no_flow_json",
            message: format!(
                "the flow service has no Flow JSON for flow `{}`; choose a Flow JSON file",
                quote(&name)
            ),
        });
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| ApiError {
        status: StatusCode::BAD_GATEWAY,
        code: "bad_flow_json",
        message: format!("the flow service's Flow JSON is not JSON: {e}"),
    })?;
    if let Ok(parsed) = FlowJson::parse_any(&text) {
        preview.remember((route.path.clone(), flow), Arc::new(parsed));
    }
    Ok(Json(json!({"name": name, "flow_json": value})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    flow_json: Value,
}

fn bad_body(rejection: JsonRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

/// `POST /preview/api/check`.
async fn check(body: Result<Json<CheckBody>, JsonRejection>) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(bad_body)?;
    Ok(Json(
        match FlowJson::parse_any(&body.flow_json.to_string()) {
            Ok(flow) => json!({
                "ok": true,
                "flow": {
                    "screens": flow.screens().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                    "has_endpoint": flow.has_endpoint(),
                },
                "violations": [],
            }),
            Err(e) => json!({"ok": false, "flow": null, "violations": [file_violation(&e)]}),
        },
    ))
}

/// Why a Flow JSON file cannot be used, where the SDK says.
fn file_violation(error: &FlowJsonError) -> Value {
    match error {
        FlowJsonError::Invalid { at, reason } => json!({"message": reason, "path": at}),
        error => json!({"message": error.to_string(), "path": null}),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeBody {
    route: String,
    #[serde(default)]
    flow: Option<String>,
    /// Checks answers against this instead of the flow service's Flow JSON.
    #[serde(default)]
    flow_json: Option<Value>,
    /// The WhatsApp request, as the endpoint would receive it decrypted.
    request: Map<String, Value>,
}

/// `POST /preview/api/exchange`.
async fn exchange(
    State(preview): State<Arc<Preview>>,
    body: Result<Json<ExchangeBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(bad_body)?;
    let route = preview.route(&body.route)?;
    let flow = flow_of(route, body.flow.as_deref())?;
    let given = match &body.flow_json {
        Some(value) => Some(Arc::new(FlowJson::parse_any(&value.to_string()).map_err(
            |e| ApiError::bad_request(format!("`flow_json` cannot be used: {e}")),
        )?)),
        None => None,
    };
    let payload = Bytes::from(Value::Object(body.request.clone()).to_string());
    let request_id = uuid::Uuid::new_v4().to_string();
    // The fields `respond` records, as on the endpoint's server span.
    let span = tracing::info_span!(
        target: flowgate_telemetry::TRACE,
        "flowgate.preview",
        request_id = %request_id,
        route = %route.path,
        flow = %flow,
        action = tracing::field::Empty,
        screen = tracing::field::Empty,
        token = tracing::field::Empty,
    );
    let started = Instant::now();
    let (action, result) = respond(
        route,
        &flow,
        &request_id,
        preview.deadline(),
        false,
        &payload,
    )
    .instrument(span.clone())
    .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, answer, violations, checked_against) = match result {
        Ok(answer) => {
            let from = body
                .request
                .get("screen")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let checked = match outcome(action, &answer) {
                None => None,
                Some((action, outcome)) => {
                    let (flow_json, source) = match given {
                        Some(given) => (Some(given), "request"),
                        None => (preview.flow_json(route, &flow).await, "service"),
                    };
                    flow_json.map(|flow_json| {
                        let violations = match flow_json.check(action, from, &outcome) {
                            Ok(()) => Vec::new(),
                            Err(violation) => vec![answer_violation(&violation)],
                        };
                        (violations, source)
                    })
                }
            };
            let (violations, source) = checked.map_or((Vec::new(), None), |(v, s)| (v, Some(s)));
            (answer.status, answer.json, violations, source)
        }
        Err(e) => {
            span.in_scope(|| e.log());
            (e.status(), e.body(), Vec::new(), None)
        }
    };
    Ok(Json(json!({
        "status": status.as_u16(),
        "answer": answer,
        "latency_ms": latency_ms,
        "violations": violations,
        "checked_against": checked_against,
    })))
}

/// The flow's outcome behind an answer, to check it as the flow service does; `None`
/// for answers with nothing to check (a ping, an acknowledgement, a token refused).
fn outcome(action: &str, answer: &Answer) -> Option<(Action, Outcome)> {
    let action = match action {
        "INIT" => Action::Init,
        "data_exchange" => Action::DataExchange,
        "BACK" => Action::Back,
        _ => return None,
    };
    let screen = answer.json.get("screen")?.as_str()?.to_owned();
    let mut data = answer.json.get("data").cloned().unwrap_or(Value::Null);
    let outcome = match answer.kind {
        AnswerKind::Complete => Outcome::Complete {
            params: data
                .pointer("/extension_message_response/params")
                .cloned()
                .unwrap_or(Value::Null),
        },
        AnswerKind::Screen | AnswerKind::ScreenWithError => {
            // The gateway put the outcome's error message into `data`; take it back out.
            let error_message = match data.as_object_mut() {
                Some(data) if answer.kind == AnswerKind::ScreenWithError => data
                    .remove(flowgate_sdk::contract::ERROR_MESSAGE)
                    .and_then(|m| m.as_str().map(str::to_owned)),
                _ => None,
            };
            Outcome::Screen {
                screen,
                data,
                error_message,
            }
        }
        AnswerKind::TokenInvalid | AnswerKind::Acknowledged | AnswerKind::Active => return None,
    };
    Some((action, outcome))
}

/// A [`Violation`] of an answer: its text, the WhatsApp error it would cause, and
/// where in the answer it is.
fn answer_violation(violation: &Violation) -> Value {
    let path = match violation {
        Violation::UnknownScreen { .. }
        | Violation::NotEntry { .. }
        | Violation::NotRouted { .. }
        | Violation::NotBack { .. }
        | Violation::NotTerminal { .. } => "screen".to_owned(),
        Violation::NotAnObject { .. } => "data".to_owned(),
        Violation::Missing { field, .. }
        | Violation::WrongType { field, .. }
        | Violation::Undeclared { field, .. } => format!("data.{field}"),
    };
    json!({
        "message": violation.to_string(),
        "error_key": violation.error_key(),
        "path": path,
    })
}

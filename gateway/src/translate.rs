//! WhatsApp Flows JSON ⇄ `flowgate.v1` messages. Pure: no I/O, no clocks.
//!
//! [`parse`] reads a decrypted (or plain) request body into an [`Inbound`],
//! checking everything the contract requires; [`answer`] turns the flow
//! service's [`FlowResponse`] into an [`Answer`]: the WhatsApp JSON, the HTTP
//! status, and the [`AnswerKind`] that names it in metrics and traces.

use axum::http::StatusCode;
use flowgate_proto::json::{struct_from_json, struct_to_json};
use flowgate_proto::v1::{self, FlowResponse, flow_response::Outcome};
use flowgate_sdk::excerpt::{STATUS_EXCERPT_CHARS, excerpt};
use prost::Message;
use serde_json::{Map, Value, json};

use crate::error::GatewayError;

pub use flowgate_sdk::protocol::{
    ERROR_MESSAGE, EXTENSION_MESSAGE_RESPONSE, SUCCESS, SUPPORTED_VERSIONS, TOKEN_INVALID_STATUS,
};

/// The deepest nesting of objects and arrays `data` may have (the top-level object is
/// level 1). The flow service decodes `data` as a protobuf `Struct`, where each level
/// costs three levels of message nesting, and prost refuses messages nested deeper than
/// 100: deeper data would fail there, as a 5xx, instead of here as a 400.
pub const MAX_DEPTH: usize = 32;

/// The longest `screen` and `action`, in bytes. Real ones are short identifiers; the
/// limit keeps them out of trouble downstream (they are quoted in logs and traces).
pub const MAX_NAME_BYTES: usize = 256;

/// A request, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `{"action":"ping"}`: a health check.
    Ping,
    /// A request whose `data` carries `error` or `error_key`, whatever its action.
    ErrorNotification(Notification),
    Init(Exchange),
    DataExchange(Exchange),
    Back(Exchange),
}

/// The fields of `INIT`, `data_exchange` and `BACK`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub version: String,
    pub flow_token: String,
    /// Empty when absent (allowed on INIT and BACK only).
    pub screen: String,
    /// Empty when absent (allowed on INIT and BACK only).
    pub data: Map<String, Value>,
    /// The JWT WhatsApp may send alongside the token.
    pub flow_token_signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub version: String,
    pub action: String,
    pub flow_token: String,
    pub screen: String,
    pub error_key: String,
    pub error_message: String,
    pub data: Map<String, Value>,
    pub flow_token_signature: Option<String>,
}

impl Inbound {
    /// The action as WhatsApp names it, for logs and metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Inbound::Ping => "ping",
            Inbound::ErrorNotification(_) => "error_notification",
            Inbound::Init(_) => "INIT",
            Inbound::DataExchange(_) => "data_exchange",
            Inbound::Back(_) => "BACK",
        }
    }

    /// The data API version, where the request has one.
    pub fn version(&self) -> &str {
        match self {
            Inbound::Ping => "",
            Inbound::ErrorNotification(n) => &n.version,
            Inbound::Init(e) | Inbound::DataExchange(e) | Inbound::Back(e) => &e.version,
        }
    }

    /// The screen the request comes from, where it names one.
    pub fn screen(&self) -> Option<&str> {
        let screen = match self {
            Inbound::Ping => return None,
            Inbound::ErrorNotification(n) => &n.screen,
            Inbound::Init(e) | Inbound::DataExchange(e) | Inbound::Back(e) => &e.screen,
        };
        Some(screen.as_str()).filter(|s| !s.is_empty())
    }

    /// The `flow_token_signature`, where the request has one.
    pub fn flow_token_signature(&self) -> Option<&str> {
        match self {
            Inbound::Ping => None,
            Inbound::ErrorNotification(n) => n.flow_token_signature.as_deref(),
            Inbound::Init(e) | Inbound::DataExchange(e) | Inbound::Back(e) => {
                e.flow_token_signature.as_deref()
            }
        }
    }

    /// The flow token, where the request has one.
    pub fn flow_token(&self) -> Option<&str> {
        match self {
            Inbound::Ping => None,
            Inbound::ErrorNotification(n) => Some(n.flow_token.as_str()).filter(|t| !t.is_empty()),
            Inbound::Init(e) | Inbound::DataExchange(e) | Inbound::Back(e) => Some(&e.flow_token),
        }
    }
}

/// Parses and validates a request body.
///
/// Error notifications are recognised before routing by action, as WhatsApp
/// sends them with an ordinary action such as `data_exchange`.
pub fn parse(body: &[u8]) -> Result<Inbound, GatewayError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(GatewayError::NotAnObject);
    };
    let action = optional_string(&object, "action")?
        .ok_or(GatewayError::MissingAction)?
        .to_owned();
    check_length("action", &action)?;
    let action = action.as_str();
    let version = optional_string(&object, "version")?;
    if let Some(version) = version {
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(GatewayError::UnsupportedVersion(excerpt(
                version,
                STATUS_EXCERPT_CHARS,
            )));
        }
    }
    let version = version.map(str::to_owned);
    let data = match object.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(_) => return Err(invalid("data", "an object")),
    };
    let flow_token = optional_string(&object, "flow_token")?
        .unwrap_or_default()
        .to_owned();
    let screen = optional_string(&object, "screen")?
        .unwrap_or_default()
        .to_owned();
    check_length("screen", &screen)?;
    if data.values().any(|value| depth(value) + 1 > MAX_DEPTH) {
        return Err(GatewayError::TooDeep {
            field: "data",
            limit: MAX_DEPTH,
        });
    }
    let flow_token_signature = optional_string(&object, "flow_token_signature")?.map(str::to_owned);

    if data.contains_key("error") || data.contains_key("error_key") {
        let text = |key: &'static str| match data.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(key, "a string")),
        };
        let error_key = match text("error_key")? {
            key if key.is_empty() => text("error")?,
            key => key,
        };
        let error_message = text("error_message")?;
        return Ok(Inbound::ErrorNotification(Notification {
            version: version.ok_or(GatewayError::MissingVersion)?,
            action: action.to_owned(),
            flow_token,
            screen,
            error_key,
            error_message,
            data,
            flow_token_signature,
        }));
    }

    if action == "ping" {
        return Ok(Inbound::Ping);
    }
    let constructor = match action {
        "INIT" => Inbound::Init,
        "data_exchange" => Inbound::DataExchange,
        "BACK" => Inbound::Back,
        other => {
            return Err(GatewayError::UnknownAction(excerpt(
                other,
                STATUS_EXCERPT_CHARS,
            )));
        }
    };
    let version = version.ok_or(GatewayError::MissingVersion)?;
    if flow_token.is_empty() {
        return Err(GatewayError::MissingFlowToken);
    }
    if action == "data_exchange" && screen.is_empty() {
        return Err(GatewayError::MissingScreen);
    }
    Ok(constructor(Exchange {
        version,
        flow_token,
        screen,
        data,
        flow_token_signature,
    }))
}

fn optional_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, GatewayError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field, "a string")),
    }
}

fn check_length(field: &'static str, value: &str) -> Result<(), GatewayError> {
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(field, "at most 256 bytes long"));
    }
    Ok(())
}

/// How deeply `value` nests objects and arrays: 0 for a scalar, 1 for a flat object.
/// `serde_json` refuses input nested beyond 128 levels, which bounds the recursion.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn invalid(field: &'static str, expected: &'static str) -> GatewayError {
    GatewayError::InvalidField { field, expected }
}

/// Converts screen data for the wire, refusing numbers a double cannot hold exactly.
pub fn data_to_proto(data: &Map<String, Value>) -> Result<prost_types::Struct, GatewayError> {
    struct_from_json(data, "data").map_err(GatewayError::NumberOutOfRange)
}

/// The start of every [`Call::path`].
const SERVICE_PATH: &str = "/flowgate.v1.FlowService/";

/// A call to the flow service.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Init(v1::InitRequest),
    DataExchange(v1::DataExchangeRequest),
    Back(v1::BackRequest),
    NotifyError(v1::NotifyErrorRequest),
    /// The preview's questions (optional RPCs; no WhatsApp request makes them).
    ListFlows(v1::ListFlowsRequest),
    GetFlow(v1::GetFlowRequest),
}

impl Call {
    /// The RPC's name: the last segment of its [`path`](Self::path).
    pub fn method(&self) -> &'static str {
        &self.path()[SERVICE_PATH.len()..]
    }

    /// The RPC's path, `/flowgate.v1.FlowService/<method>`.
    pub fn path(&self) -> &'static str {
        match self {
            Call::Init(_) => "/flowgate.v1.FlowService/Init",
            Call::DataExchange(_) => "/flowgate.v1.FlowService/DataExchange",
            Call::Back(_) => "/flowgate.v1.FlowService/Back",
            Call::NotifyError(_) => "/flowgate.v1.FlowService/NotifyError",
            Call::ListFlows(_) => "/flowgate.v1.FlowService/ListFlows",
            Call::GetFlow(_) => "/flowgate.v1.FlowService/GetFlow",
        }
    }

    /// Writes the request message, protobuf-encoded, into `buf`.
    pub fn encode(&self, buf: &mut impl bytes::BufMut) -> Result<(), prost::EncodeError> {
        match self {
            Call::Init(r) => r.encode(buf),
            Call::DataExchange(r) => r.encode(buf),
            Call::Back(r) => r.encode(buf),
            Call::NotifyError(r) => r.encode(buf),
            Call::ListFlows(r) => r.encode(buf),
            Call::GetFlow(r) => r.encode(buf),
        }
    }

    /// Numbers the call as attempt `attempt` (its idempotency key unchanged), in place.
    pub fn set_attempt(&mut self, attempt: u32) {
        let context = match self {
            Call::Init(r) => &mut r.context,
            Call::DataExchange(r) => &mut r.context,
            Call::Back(r) => &mut r.context,
            Call::NotifyError(r) => &mut r.context,
            // No context: nothing to number.
            Call::ListFlows(_) | Call::GetFlow(_) => return,
        };
        if let Some(context) = context {
            context.attempt = attempt;
        }
    }
}

/// Builds the flow service call for a request; `None` for a ping, which is
/// answered from the service's health instead.
pub fn to_call(
    inbound: Inbound,
    context: v1::RequestContext,
) -> Result<Option<Call>, GatewayError> {
    let context = Some(context);
    Ok(Some(match inbound {
        Inbound::Ping => return Ok(None),
        Inbound::ErrorNotification(n) => Call::NotifyError(v1::NotifyErrorRequest {
            context,
            flow_token: n.flow_token,
            screen: n.screen,
            action: n.action,
            error_key: n.error_key,
            error_message: n.error_message,
            data: Some(data_to_proto(&n.data)?),
        }),
        Inbound::Init(e) => Call::Init(v1::InitRequest {
            context,
            flow_token: e.flow_token,
            screen: e.screen,
            data: Some(data_to_proto(&e.data)?),
        }),
        Inbound::DataExchange(e) => Call::DataExchange(v1::DataExchangeRequest {
            context,
            flow_token: e.flow_token,
            screen: e.screen,
            data: Some(data_to_proto(&e.data)?),
        }),
        Inbound::Back(e) => Call::Back(v1::BackRequest {
            context,
            flow_token: e.flow_token,
            screen: e.screen,
            data: Some(data_to_proto(&e.data)?),
        }),
    }))
}

/// A content-derived idempotency key: equal for the gateway's retries of one
/// call and for a resend of the same request (same flow, action, token, screen,
/// data and `flow_token_signature`), different otherwise. Hex SHA-256 over a
/// length-prefixed encoding.
pub fn idempotency_key(flow: &str, inbound: &Inbound) -> String {
    // The fields are encoded into one buffer and hashed at once: a digest update per
    // field costs more than the hashing itself at these sizes.
    fn field(encoded: &mut Vec<u8>, bytes: &[u8]) {
        encoded.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        encoded.extend_from_slice(bytes);
    }
    let (token, screen, data) = match inbound {
        Inbound::Ping => ("", "", None),
        Inbound::ErrorNotification(n) => (n.flow_token.as_str(), n.screen.as_str(), Some(&n.data)),
        Inbound::Init(e) | Inbound::DataExchange(e) | Inbound::Back(e) => {
            (e.flow_token.as_str(), e.screen.as_str(), Some(&e.data))
        }
    };
    let mut encoded = Vec::with_capacity(256);
    field(&mut encoded, flow.as_bytes());
    field(&mut encoded, inbound.action().as_bytes());
    field(&mut encoded, token.as_bytes());
    field(&mut encoded, screen.as_bytes());
    // The data's length goes before it: its place is kept, and filled in once it is
    // serialised in place. serde_json's map is ordered by key, so this is canonical.
    let at = encoded.len();
    encoded.extend_from_slice(&[0; 8]);
    if let Some(data) = data {
        serde_json::to_writer(&mut encoded, data).expect("JSON values serialise");
    }
    let length = (encoded.len() - at - 8) as u64;
    encoded[at..at + 8].copy_from_slice(&length.to_be_bytes());
    // The signature decides the verdict the flow is told: a request resent with another
    // one is another call, not a resend.
    match inbound.flow_token_signature() {
        Some(signature) => {
            field(&mut encoded, b"signed");
            field(&mut encoded, signature.as_bytes());
        }
        None => field(&mut encoded, b""),
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &encoded);
    let mut hex = [0; 64];
    hex::encode_to_slice(digest.as_ref(), &mut hex).expect("64 hex digits for 32 bytes");
    String::from_utf8(hex.to_vec()).expect("hex digits are ASCII")
}

/// A WhatsApp answer: the HTTP status, the JSON to seal, and what kind of answer it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub kind: AnswerKind,
}

/// What an answer says, named for metrics and traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// The next screen.
    Screen,
    /// A screen again, with `data.error_message`.
    ScreenWithError,
    /// `SUCCESS`: the flow is complete.
    Complete,
    /// 427: the flow token is no longer valid.
    TokenInvalid,
    /// An error notification was received.
    Acknowledged,
    /// A ping while the flow service is serving.
    Active,
}

impl AnswerKind {
    /// The bounded label of the `outcome` metric label and span field.
    pub fn label(self) -> &'static str {
        match self {
            AnswerKind::Screen => "screen",
            AnswerKind::ScreenWithError => "screen_with_error",
            AnswerKind::Complete => "complete",
            AnswerKind::TokenInvalid => "token_invalid",
            AnswerKind::Acknowledged => "acknowledged",
            AnswerKind::Active => "active",
        }
    }
}

impl Answer {
    fn ok(kind: AnswerKind, json: Value) -> Self {
        Self {
            status: StatusCode::OK,
            json,
            kind,
        }
    }
}

/// The answer to a ping while the flow service is serving.
pub fn ping_answer() -> Answer {
    Answer::ok(AnswerKind::Active, json!({"data": {"status": "active"}}))
}

/// The answer to an error notification once the flow service has it.
pub fn acknowledged_answer() -> Answer {
    Answer::ok(
        AnswerKind::Acknowledged,
        json!({"data": {"acknowledged": true}}),
    )
}

/// Turns the flow service's outcome into the HTTP status and WhatsApp JSON.
pub fn answer(response: FlowResponse, flow_token: &str) -> Result<Answer, GatewayError> {
    let bad = |detail: String| GatewayError::BadUpstreamResponse { detail };
    match response.outcome {
        None => Err(bad("FlowResponse has no outcome".into())),
        Some(Outcome::NextScreen(next)) => {
            if next.screen.is_empty() {
                return Err(bad("NextScreen.screen is empty".into()));
            }
            if next.screen == SUCCESS {
                return Err(bad(
                    "NextScreen.screen is the reserved name SUCCESS; use Complete".into(),
                ));
            }
            let mut data = struct_to_json(next.data.unwrap_or_default(), "data")
                .map_err(|e| bad(format!("NextScreen: {e}")))?;
            let kind = match next.error_message {
                Some(message) => {
                    data.insert(ERROR_MESSAGE.into(), Value::String(message));
                    AnswerKind::ScreenWithError
                }
                None => AnswerKind::Screen,
            };
            Ok(Answer::ok(
                kind,
                json!({"screen": next.screen, "data": data}),
            ))
        }
        Some(Outcome::Complete(complete)) => {
            let mut params = struct_to_json(complete.params.unwrap_or_default(), "params")
                .map_err(|e| bad(format!("Complete: {e}")))?;
            params.insert("flow_token".into(), Value::String(flow_token.to_owned()));
            Ok(Answer::ok(
                AnswerKind::Complete,
                json!({
                    "screen": SUCCESS,
                    "data": {EXTENSION_MESSAGE_RESPONSE: {"params": params}},
                }),
            ))
        }
        Some(Outcome::TokenInvalid(invalid)) => {
            let message = if invalid.message.is_empty() {
                "This flow is no longer available.".to_owned()
            } else {
                invalid.message
            };
            Ok(Answer {
                status: StatusCode::from_u16(TOKEN_INVALID_STATUS).expect("427 is a valid status"),
                json: json!({"error_msg": message}),
                kind: AnswerKind::TokenInvalid,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_proto::v1::{Complete, NextScreen, TokenInvalid};

    /// One helper for every parse case: the body, then the expected result as
    /// either the parsed request or the stable error code.
    fn check(body: &str, expected: Result<Inbound, &str>) {
        let got = parse(body.as_bytes()).map_err(|e| e.code());
        assert_eq!(got, expected, "body: {body}");
    }

    fn exchange(token: &str, screen: &str, data: Value) -> Exchange {
        let Value::Object(data) = data else {
            panic!("data must be an object")
        };
        Exchange {
            version: "3.0".into(),
            flow_token: token.into(),
            screen: screen.into(),
            data,
            flow_token_signature: None,
        }
    }

    #[test]
    fn parses_every_action() {
        check(r#"{"action":"ping"}"#, Ok(Inbound::Ping));
        check(r#"{"action":"ping","version":"3.0"}"#, Ok(Inbound::Ping));
        check(
            r#"{"action":"INIT","version":"3.0","flow_token":"t"}"#,
            Ok(Inbound::Init(exchange("t", "", json!({})))),
        );
        check(
            r#"{"action":"INIT","version":"3.0","flow_token":"t","screen":"","data":{}}"#,
            Ok(Inbound::Init(exchange("t", "", json!({})))),
        );
        check(
            r#"{"action":"data_exchange","version":"3.0","flow_token":"t","screen":"A","data":{"x":1}}"#,
            Ok(Inbound::DataExchange(exchange("t", "A", json!({"x": 1})))),
        );
        check(
            r#"{"action":"BACK","version":"3.0","flow_token":"t","screen":"B","data":null}"#,
            Ok(Inbound::Back(exchange("t", "B", json!({})))),
        );
    }

    #[test]
    fn recognises_error_notifications_before_the_action() {
        let notification = |action: &str, key: &str, data: Value| {
            let Value::Object(data) = data else {
                unreachable!()
            };
            Inbound::ErrorNotification(Notification {
                version: "3.0".into(),
                action: action.into(),
                flow_token: "t".into(),
                screen: String::new(),
                error_key: key.into(),
                error_message: "boom".into(),
                data,
                flow_token_signature: None,
            })
        };
        check(
            r#"{"action":"data_exchange","version":"3.0","flow_token":"t","data":{"error":"invalid-screen-transition","error_message":"boom"}}"#,
            Ok(notification(
                "data_exchange",
                "invalid-screen-transition",
                json!({"error":"invalid-screen-transition","error_message":"boom"}),
            )),
        );
        check(
            r#"{"action":"INIT","version":"3.0","flow_token":"t","data":{"error_key":"payload-schema-error","error_message":"boom"}}"#,
            Ok(notification(
                "INIT",
                "payload-schema-error",
                json!({"error_key":"payload-schema-error","error_message":"boom"}),
            )),
        );
        // Even with an action the endpoint would otherwise refuse.
        check(
            r#"{"action":"ping","version":"3.0","flow_token":"t","data":{"error":"x","error_message":"boom"}}"#,
            Ok(notification(
                "ping",
                "x",
                json!({"error":"x","error_message":"boom"}),
            )),
        );
    }

    #[test]
    fn refuses_bad_input_with_stable_codes() {
        let cases = [
            ("", "invalid_json"),
            ("{", "invalid_json"),
            ("[]", "invalid_body"),
            ("\"ping\"", "invalid_body"),
            ("{}", "missing_action"),
            (r#"{"action":null}"#, "missing_action"),
            (r#"{"action":5}"#, "invalid_field"),
            (
                r#"{"action":"navigate","version":"3.0","flow_token":"t"}"#,
                "unknown_action",
            ),
            (
                r#"{"action":"ping","version":"2.0"}"#,
                "unsupported_version",
            ),
            (r#"{"action":"INIT","flow_token":"t"}"#, "missing_version"),
            (
                r#"{"action":"INIT","version":3.0,"flow_token":"t"}"#,
                "invalid_field",
            ),
            (
                r#"{"action":"INIT","version":"4.0","flow_token":"t"}"#,
                "unsupported_version",
            ),
            (r#"{"action":"INIT","version":"3.0"}"#, "missing_flow_token"),
            (
                r#"{"action":"INIT","version":"3.0","flow_token":""}"#,
                "missing_flow_token",
            ),
            (
                r#"{"action":"INIT","version":"3.0","flow_token":7}"#,
                "invalid_field",
            ),
            (
                r#"{"action":"INIT","version":"3.0","flow_token":"t","data":[]}"#,
                "invalid_field",
            ),
            (
                r#"{"action":"INIT","version":"3.0","flow_token":"t","data":"x"}"#,
                "invalid_field",
            ),
            (
                r#"{"action":"INIT","version":"3.0","flow_token":"t","screen":{}}"#,
                "invalid_field",
            ),
            (
                r#"{"action":"data_exchange","version":"3.0","flow_token":"t","data":{}}"#,
                "missing_screen",
            ),
            (
                r#"{"action":"data_exchange","version":"3.0","flow_token":"t","data":{"error":1}}"#,
                "invalid_field",
            ),
            (
                r#"{"action":"BACK","version":"9","flow_token":"t","data":{"error":"x"}}"#,
                "unsupported_version",
            ),
            (
                r#"{"action":"BACK","flow_token":"t","data":{"error":"x"}}"#,
                "missing_version",
            ),
        ];
        for (body, code) in cases {
            check(body, Err(code));
        }
    }

    #[test]
    fn each_call_names_its_rpc_and_path() {
        let calls = [
            (Call::Init(Default::default()), "Init"),
            (Call::DataExchange(Default::default()), "DataExchange"),
            (Call::Back(Default::default()), "Back"),
            (Call::NotifyError(Default::default()), "NotifyError"),
            (Call::ListFlows(Default::default()), "ListFlows"),
            (Call::GetFlow(Default::default()), "GetFlow"),
        ];
        for (call, method) in calls {
            assert_eq!(call.method(), method);
            assert_eq!(call.path(), format!("/flowgate.v1.FlowService/{method}"));
        }
    }

    #[test]
    fn data_numbers_beyond_2_pow_53_are_refused() {
        let inbound = parse(
            br#"{"action":"INIT","version":"3.0","flow_token":"t","data":{"id":123456789012345678901234}}"#,
        )
        .unwrap();
        let Inbound::Init(exchange) = inbound else {
            panic!("expected INIT")
        };
        let err = data_to_proto(&exchange.data).unwrap_err();
        assert_eq!(err.code(), "number_out_of_range");
        assert!(err.to_string().contains("data.id"), "{err}");
    }

    #[test]
    fn a_long_version_or_action_is_quoted_short_and_escaped() {
        let long = "9\n".repeat(10_000);
        for body in [
            json!({"action": "INIT", "version": long, "flow_token": "t"}),
            json!({"action": long, "version": "3.0", "flow_token": "t"}),
        ] {
            let err = parse(body.to_string().as_bytes()).unwrap_err();
            let message = err.to_string();
            assert!(message.len() < 200, "{} bytes", message.len());
            assert!(!message.contains('\n'), "{message}");
            if message.starts_with("unsupported version") {
                assert!(message.contains("…"), "{message}");
            }
        }
    }

    #[test]
    fn idempotency_keys_follow_content() {
        let parse_ok = |body: &str| parse(body.as_bytes()).unwrap();
        let a = parse_ok(
            r#"{"action":"data_exchange","version":"3.0","flow_token":"t","screen":"A","data":{"x":1,"y":2}}"#,
        );
        let reordered = parse_ok(
            r#"{"version":"3.0","data":{"y":2,"x":1},"screen":"A","flow_token":"t","action":"data_exchange"}"#,
        );
        let other_token = parse_ok(
            r#"{"action":"data_exchange","version":"3.0","flow_token":"u","screen":"A","data":{"x":1,"y":2}}"#,
        );
        let other_data = parse_ok(
            r#"{"action":"data_exchange","version":"3.0","flow_token":"t","screen":"A","data":{"x":1,"y":3}}"#,
        );
        let key = idempotency_key("", &a);
        assert_eq!(key.len(), 64);
        assert_eq!(key, idempotency_key("", &reordered));
        assert_ne!(key, idempotency_key("booking", &a));
        assert_ne!(key, idempotency_key("", &other_token));
        assert_ne!(key, idempotency_key("", &other_data));
        let signed = |signature: &str| {
            parse_ok(&format!(
                r#"{{"action":"data_exchange","version":"3.0","flow_token":"t","screen":"A","data":{{"x":1,"y":2}},"flow_token_signature":"{signature}"}}"#
            ))
        };
        assert_ne!(key, idempotency_key("", &signed("j.w.t")));
        assert_ne!(
            idempotency_key("", &signed("j.w.t")),
            idempotency_key("", &signed("j.w.u"))
        );
        assert_eq!(
            idempotency_key("", &signed("j.w.t")),
            idempotency_key("", &signed("j.w.t"))
        );
    }

    /// Keys are kept by the flow service across versions, so their bytes never change:
    /// SHA-256 over each field as its length (8 bytes, big-endian) and its bytes, in
    /// lowercase hex.
    #[test]
    fn idempotency_keys_keep_their_encoding() {
        let key_of = |fields: &[&[u8]]| {
            let mut encoded = Vec::new();
            for field in fields {
                encoded.extend_from_slice(&(field.len() as u64).to_be_bytes());
                encoded.extend_from_slice(field);
            }
            hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                &encoded,
            ))
        };
        // Signed: two fields, `signed` and the signature; unsigned: one empty field in
        // their place. An INIT's data is `{}`; a ping has no token, screen or data.
        // The flow, the body, and the fields of its key.
        type Case<'a> = (&'a str, &'a [u8], Vec<&'a [u8]>);
        let cases: [Case; 4] = [
            (
                "booking",
                br#"{"action":"data_exchange","version":"3.0","flow_token":"t","screen":"A","data":{"y":2,"x":1},"flow_token_signature":"j.w.t"}"#,
                vec![b"booking", b"data_exchange", b"t", b"A", br#"{"x":1,"y":2}"#, b"signed", b"j.w.t"],
            ),
            (
                "",
                br#"{"action":"INIT","version":"3.0","flow_token":"t"}"#,
                vec![b"", b"INIT", b"t", b"", b"{}", b""],
            ),
            (
                "",
                br#"{"action":"ping","version":"3.0"}"#,
                vec![b"", b"ping", b"", b"", b"", b""],
            ),
            (
                "signup",
                br#"{"action":"data_exchange","version":"3.0","flow_token":"t","screen":"S","data":{"error_message":"boom","error":"x"}}"#,
                vec![b"signup", b"error_notification", b"t", b"S", br#"{"error":"x","error_message":"boom"}"#, b""],
            ),
        ];
        // The signed case, from Python's hashlib over the same encoding.
        assert_eq!(
            key_of(&cases[0].2),
            "23a57fe89e8bb037858919e659c4454ec080a0781f6193c4ffc47f10df727f3d"
        );
        for (flow, body, fields) in &cases {
            let inbound = parse(body).unwrap();
            assert_eq!(
                idempotency_key(flow, &inbound),
                key_of(fields),
                "{inbound:?}"
            );
        }
    }

    fn data(value: Value) -> Option<prost_types::Struct> {
        let Value::Object(object) = value else {
            panic!("data must be an object")
        };
        Some(struct_from_json(&object, "data").unwrap())
    }

    #[test]
    fn answers_become_whatsapp_json() {
        type Case = (
            Option<Outcome>,
            Result<(u16, Value, &'static str), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                Some(Outcome::NextScreen(NextScreen {
                    screen: "WELCOME".into(),
                    data: data(json!({"greeting": "hi", "n": 3})),
                    error_message: None,
                })),
                Ok((
                    200,
                    json!({"screen": "WELCOME", "data": {"greeting": "hi", "n": 3}}),
                    "screen",
                )),
            ),
            (
                Some(Outcome::NextScreen(NextScreen {
                    screen: "WELCOME".into(),
                    data: None,
                    error_message: Some("Invalid email".into()),
                })),
                Ok((
                    200,
                    json!({"screen": "WELCOME", "data": {"error_message": "Invalid email"}}),
                    "screen_with_error",
                )),
            ),
            (
                Some(Outcome::Complete(Complete {
                    params: data(json!({"email": "a@b.c", "flow_token": "forged"})),
                })),
                Ok((
                    200,
                    json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {"email": "a@b.c", "flow_token": "tok"}}}}),
                    "complete",
                )),
            ),
            (
                Some(Outcome::Complete(Complete { params: None })),
                Ok((
                    200,
                    json!({"screen": "SUCCESS", "data": {"extension_message_response": {"params": {"flow_token": "tok"}}}}),
                    "complete",
                )),
            ),
            (
                Some(Outcome::TokenInvalid(TokenInvalid {
                    message: "Already submitted".into(),
                })),
                Ok((
                    427,
                    json!({"error_msg": "Already submitted"}),
                    "token_invalid",
                )),
            ),
            (
                Some(Outcome::TokenInvalid(TokenInvalid {
                    message: String::new(),
                })),
                Ok((
                    427,
                    json!({"error_msg": "This flow is no longer available."}),
                    "token_invalid",
                )),
            ),
            (None, Err("bad_upstream_response")),
            (
                Some(Outcome::NextScreen(NextScreen {
                    screen: "SUCCESS".into(),
                    data: None,
                    error_message: None,
                })),
                Err("bad_upstream_response"),
            ),
            (
                Some(Outcome::NextScreen(NextScreen {
                    screen: String::new(),
                    data: None,
                    error_message: None,
                })),
                Err("bad_upstream_response"),
            ),
        ];
        for (outcome, expected) in cases {
            let got = answer(
                FlowResponse {
                    outcome: outcome.clone(),
                },
                "tok",
            )
            .map(|answer| (answer.status.as_u16(), answer.json, answer.kind.label()))
            .map_err(|e| e.code());
            assert_eq!(got, expected, "outcome: {outcome:?}");
        }
    }

    fn exchange_with(screen: &str, data: Value) -> Vec<u8> {
        json!({"action": "data_exchange", "version": "3.0", "flow_token": "t", "screen": screen, "data": data})
            .to_string()
            .into_bytes()
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!({"a": inner}))
    }

    #[test]
    fn data_nested_beyond_the_limit_is_refused() {
        // `data` itself is level 1.
        assert!(parse(&exchange_with("S", nested(MAX_DEPTH))).is_ok());
        let err = parse(&exchange_with("S", nested(MAX_DEPTH + 1))).unwrap_err();
        assert_eq!(err.code(), "too_deep");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("`data`"), "{err}");
        let arrays = (0..MAX_DEPTH).fold(json!(1), |inner, _| json!([inner]));
        let err = parse(&exchange_with("S", json!({"a": arrays}))).unwrap_err();
        assert_eq!(err.code(), "too_deep");
    }

    #[test]
    fn long_screens_and_actions_are_refused() {
        let limit = "S".repeat(MAX_NAME_BYTES);
        assert!(parse(&exchange_with(&limit, json!({}))).is_ok());
        let err = parse(&exchange_with(&format!("{limit}S"), json!({}))).unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert_eq!(
            err.to_string(),
            format!("`screen` must be at most {MAX_NAME_BYTES} bytes long")
        );
        let body = json!({"action": "x".repeat(MAX_NAME_BYTES + 1), "version": "3.0"});
        let err = parse(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`action` must be at most {MAX_NAME_BYTES} bytes long")
        );
    }
}

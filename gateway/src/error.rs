//! [`GatewayError`]: every way a request can fail, mapped once to an HTTP status
//! and a stable JSON body `{"error":{"code":"…","message":"…"}}`.
//!
//! The `code` strings are part of the public contract: callers and alerting may
//! match on them. Upstream details are logged here, never sent to the caller.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flowgate_proto::json::JsonError;
use serde_json::json;

use crate::telemetry::Labels;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("`action` is missing")]
    MissingAction,
    /// The action, as a short escaped excerpt.
    #[error("unknown action {0}; expected ping, INIT, data_exchange or BACK")]
    UnknownAction(String),
    #[error("`version` is missing")]
    MissingVersion,
    /// The version, as a short escaped excerpt.
    #[error("unsupported version {0}; this endpoint speaks 3.0")]
    UnsupportedVersion(String),
    #[error("`flow_token` is missing or empty")]
    MissingFlowToken,
    #[error("`screen` is missing or empty")]
    MissingScreen,
    #[error("`{field}` must be {expected}")]
    InvalidField {
        field: &'static str,
        expected: &'static str,
    },
    #[error(transparent)]
    NumberOutOfRange(JsonError),
    /// A field nested deeper than [`crate::translate::MAX_DEPTH`] objects and arrays.
    #[error("`{field}` is nested deeper than {limit} levels")]
    TooDeep { field: &'static str, limit: usize },
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("the body could not be read: {0}")]
    BodyUnreadable(String),
    /// Meta mode: the body could not be decrypted (421: the client re-fetches the public
    /// key and retries once). The reason is logged, not sent.
    #[error("the request could not be decrypted")]
    CannotDecrypt(String),
    /// Meta mode: `X-Hub-Signature-256` missing or matching no app secret.
    #[error("the request signature is missing or invalid")]
    InvalidSignature,
    #[error("method not allowed; use POST")]
    MethodNotAllowed,
    #[error("no such endpoint")]
    NotFound,
    /// The flow service has no flow of this name; an empty name is the default flow.
    #[error("{}", unknown_flow(.0))]
    UnknownFlow(String),
    /// The flow service refused the request as invalid; its message is meant for the caller.
    #[error("the flow service rejected the request: {0}")]
    Rejected(String),
    /// The gateway has `FLOWGATE_MAX_IN_FLIGHT` requests in hand already.
    #[error("the gateway is at capacity; retry later")]
    GatewayBusy,
    /// The flow service said it is overloaded.
    #[error("the flow service is overloaded; retry later")]
    Overloaded,
    /// Unreachable, failing or not serving. `detail` is logged, not sent.
    #[error("the flow service is unavailable")]
    Unavailable { detail: String },
    /// The flow service refused the gateway's credentials (`UNAUTHENTICATED`,
    /// `PERMISSION_DENIED`): a configuration problem, never retried. `detail` is
    /// logged, not sent.
    #[error("the gateway is not allowed to call the flow service")]
    BackendUnauthenticated { detail: String },
    /// The flow service does not offer the method (`UNIMPLEMENTED`): a 503 like
    /// [`GatewayError::Unavailable`] on the endpoint; the preview tells it apart (501).
    #[error("the flow service does not offer this")]
    Unimplemented { detail: String },
    #[error("the flow service did not answer in time")]
    Timeout,
    /// The flow service answered something the gateway cannot turn into a WhatsApp answer.
    /// `detail` is logged, not sent.
    #[error("the flow service gave an invalid answer")]
    BadUpstreamResponse { detail: String },
}

/// The message of [`GatewayError::UnknownFlow`]: an endpoint that reaches the default
/// flow names no flow.
fn unknown_flow(name: &str) -> String {
    if name.is_empty() {
        "the flow service has no default flow".to_owned()
    } else {
        format!("the flow service has no flow `{name}`")
    }
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidJson(_)
            | NotAnObject
            | MissingAction
            | UnknownAction(_)
            | MissingVersion
            | UnsupportedVersion(_)
            | MissingFlowToken
            | MissingScreen
            | InvalidField { .. }
            | NumberOutOfRange(_)
            | TooDeep { .. }
            | Rejected(_)
            | BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            CannotDecrypt(_) => StatusCode::from_u16(421).expect("valid status"),
            InvalidSignature => StatusCode::from_u16(432).expect("valid status"),
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NotFound | UnknownFlow(_) => StatusCode::NOT_FOUND,
            Overloaded | GatewayBusy | Unavailable { .. } | Unimplemented { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Timeout => StatusCode::GATEWAY_TIMEOUT,
            BadUpstreamResponse { .. } => StatusCode::BAD_GATEWAY,
            BackendUnauthenticated { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code of the JSON body.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            InvalidJson(_) => "invalid_json",
            NotAnObject => "invalid_body",
            MissingAction => "missing_action",
            UnknownAction(_) => "unknown_action",
            MissingVersion => "missing_version",
            UnsupportedVersion(_) => "unsupported_version",
            MissingFlowToken => "missing_flow_token",
            MissingScreen => "missing_screen",
            InvalidField { .. } => "invalid_field",
            NumberOutOfRange(_) => "number_out_of_range",
            TooDeep { .. } => "too_deep",
            PayloadTooLarge { .. } => "payload_too_large",
            BodyTimeout => "body_timeout",
            CannotDecrypt(_) => "cannot_decrypt",
            InvalidSignature => "invalid_signature",
            BodyUnreadable(_) => "body_unreadable",
            MethodNotAllowed => "method_not_allowed",
            NotFound => "not_found",
            UnknownFlow(_) => "unknown_flow",
            Rejected(_) => "rejected",
            Overloaded | GatewayBusy => "overloaded",
            Unavailable { .. } | Unimplemented { .. } => "service_unavailable",
            Timeout => "upstream_timeout",
            BadUpstreamResponse { .. } => "bad_upstream_response",
            BackendUnauthenticated { .. } => "backend_unauthenticated",
        }
    }

    /// The JSON body sent to the caller.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code(), "message": self.to_string()}})
    }
}

impl GatewayError {
    /// The one place errors are logged: server-side trouble loudly, with the detail
    /// the caller does not get; caller mistakes quietly.
    pub fn log(&self) {
        match self {
            GatewayError::Unavailable { detail }
            | GatewayError::Unimplemented { detail }
            | GatewayError::BadUpstreamResponse { detail } => {
                tracing::warn!(code = self.code(), %detail, "request failed upstream");
            }
            GatewayError::BackendUnauthenticated { detail } => {
                tracing::error!(
                    code = self.code(),
                    %detail,
                    "the flow service refused the gateway's credentials: a configuration problem; FLOWGATE_BACKEND_AUTH_TOKEN must equal the service's FLOW_SERVICE_AUTH_TOKEN, and with FLOW_SERVICE_TLS_CLIENT_CA set the gateway needs FLOWGATE_BACKEND_CLIENT_CERT"
                );
            }
            GatewayError::Timeout | GatewayError::Overloaded | GatewayError::GatewayBusy => {
                tracing::warn!(code = self.code(), "request failed upstream");
            }
            GatewayError::CannotDecrypt(reason) => {
                tracing::info!(code = self.code(), reason, "request refused")
            }
            GatewayError::InvalidSignature => tracing::info!(code = self.code(), "request refused"),
            _ => tracing::debug!(code = self.code(), error = %self, "request rejected"),
        }
    }

    /// `Retry-After` for errors that ask the caller to come back.
    pub fn retry_after(&self) -> Option<HeaderValue> {
        matches!(self, GatewayError::Overloaded | GatewayError::GatewayBusy)
            .then(|| HeaderValue::from_static("1"))
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        response.extensions_mut().insert(Labels {
            action: "",
            outcome: self.code(),
        });
        if let Some(retry_after) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_default_flow_is_called_so() {
        let message = |name: &str| GatewayError::UnknownFlow(name.into()).to_string();
        assert_eq!(message(""), "the flow service has no default flow");
        assert_eq!(message("signup"), "the flow service has no flow `signup`");
    }
}

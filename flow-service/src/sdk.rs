//! The flow SDK: what a business developer writes against.
//!
//! A flow is a type implementing [`Flow`]: one async method per WhatsApp
//! action, each taking a [`Request`] and returning an [`Outcome`]. The SDK
//! turns outcomes into `flowgate.v1` messages; the gateway turns those into
//! WhatsApp JSON, so a flow never builds WhatsApp JSON by hand. Most flows are
//! shorter as a [`Router`](crate::router::Router) of handlers by action and screen.
//!
//! ```
//! use flow_service::sdk::{Flow, FlowError, Outcome, Request};
//! use serde_json::json;
//!
//! struct Hello;
//!
//! #[async_trait::async_trait]
//! impl Flow for Hello {
//!     async fn init(&self, _request: Request) -> Result<Outcome, FlowError> {
//!         Ok(Outcome::screen("HELLO", json!({"greeting": "Hi!"})))
//!     }
//!
//!     async fn data_exchange(&self, request: Request) -> Result<Outcome, FlowError> {
//!         match request.screen.as_str() {
//!             "HELLO" => Ok(Outcome::complete(json!({"said": "hi"}))),
//!             other => Err(FlowError::UnknownScreen(other.to_owned())),
//!         }
//!     }
//! }
//! ```

use std::fmt;

use flowgate_proto::v1::FlowTokenSignature;
use serde_json::{Map, Value};

use crate::contract::FlowJson;

/// The WhatsApp action a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Init,
    DataExchange,
    Back,
}

impl Action {
    /// The name WhatsApp uses: `INIT`, `data_exchange`, `BACK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Init => "INIT",
            Action::DataExchange => "data_exchange",
            Action::Back => "BACK",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What travels with every call (see `RequestContext` in `flow.proto`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The flow's name as routed; empty for the default flow.
    pub flow: String,
    pub request_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Equal for retries and resends of the same call.
    pub idempotency_key: String,
    /// The WhatsApp data API version, e.g. "3.0".
    pub version: String,
    pub signature_verified: bool,
    pub flow_token_signature: FlowTokenSignature,
}

/// An `INIT`, `data_exchange` or `BACK` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub context: Context,
    /// Never empty.
    pub flow_token: String,
    /// The screen the user is on (empty on INIT, sometimes on BACK).
    pub screen: String,
    /// The screen's payload (empty when none was sent).
    pub data: Map<String, Value>,
}

impl Request {
    /// A string field of `data`, trimmed; `None` when absent, empty or not a string.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.data
            .get(field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

/// An error notification from the WhatsApp client about an earlier answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorNotice {
    pub context: Context,
    /// May be empty.
    pub flow_token: String,
    pub screen: String,
    pub action: String,
    /// e.g. `invalid-screen-transition`, `payload-schema-error`.
    pub error_key: String,
    pub error_message: String,
    pub data: Map<String, Value>,
}

/// What a flow answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Show `screen` with `data`; with `error_message`, as a validation error.
    Screen {
        screen: String,
        data: Value,
        error_message: Option<String>,
    },
    /// The flow is done; `params` reach the business with the completion message.
    Complete { params: Value },
    /// The flow token is no longer valid; WhatsApp shows `message` to the user.
    TokenInvalid { message: String },
}

impl Outcome {
    /// Show a screen. `data` must be a JSON object (use `json!({})` for none).
    pub fn screen(screen: impl Into<String>, data: Value) -> Self {
        Outcome::Screen {
            screen: screen.into(),
            data,
            error_message: None,
        }
    }

    /// Adds a validation error to a screen outcome; other outcomes are returned as they are.
    pub fn with_error(self, message: impl Into<String>) -> Self {
        match self {
            Outcome::Screen { screen, data, .. } => Outcome::Screen {
                screen,
                data,
                error_message: Some(message.into()),
            },
            other => other,
        }
    }

    /// Finish the flow. `params` must be a JSON object; the gateway adds `flow_token`.
    pub fn complete(params: Value) -> Self {
        Outcome::Complete { params }
    }

    /// The flow token is no longer valid.
    pub fn token_invalid(message: impl Into<String>) -> Self {
        Outcome::TokenInvalid {
            message: message.into(),
        }
    }
}

/// Why a flow could not answer. Business outcomes are [`Outcome`]s, not errors.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The request names a screen this flow does not handle (`INVALID_ARGUMENT`, HTTP 400).
    #[error("unknown screen `{0}`")]
    UnknownScreen(String),
    /// The request cannot be handled as sent (`INVALID_ARGUMENT`, HTTP 400); the message
    /// is shown to the caller.
    #[error("{0}")]
    Invalid(String),
    /// A dependency is down (`UNAVAILABLE`, HTTP 503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or unexpected failure (`INTERNAL`, HTTP 503); logged, not shown.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A WhatsApp Flow, one method per action.
#[async_trait::async_trait]
pub trait Flow: Send + Sync + 'static {
    /// The user opened the flow: answer with the first screen.
    async fn init(&self, request: Request) -> Result<Outcome, FlowError>;

    /// The user submitted a screen, or a component asked for data.
    async fn data_exchange(&self, request: Request) -> Result<Outcome, FlowError>;

    /// The user went back to a screen with `refresh_on_back`. By default, the
    /// flow starts over as on INIT.
    async fn back(&self, request: Request) -> Result<Outcome, FlowError> {
        self.init(request).await
    }

    /// The flow's Flow JSON: every answer is checked against it before it leaves (see
    /// [`crate::contract`]). `None`, the default, leaves answers unchecked.
    fn flow_json(&self) -> Option<&FlowJson> {
        None
    }

    /// The WhatsApp client reports a problem with an earlier answer. By default it is
    /// logged (with the token hashed) and acknowledged.
    async fn on_error(&self, notice: ErrorNotice) -> Result<(), FlowError> {
        tracing::warn!(
            flow = %notice.context.flow,
            token = %flowgate_proto::token_hash(&notice.flow_token),
            screen = %notice.screen,
            error_key = %notice.error_key,
            error_message = %notice.error_message,
            "the WhatsApp client reported an error",
        );
        Ok(())
    }
}

//! What a business developer writes against.
//!
//! A flow is a type implementing [`Flow`]: one async method per WhatsApp
//! action, each taking a [`Request`] and returning an [`Outcome`]. The service
//! turns outcomes into `flowgate.v1` messages; the gateway turns those into
//! WhatsApp JSON, so a flow never builds WhatsApp JSON by hand. Most flows are
//! shorter as a [`Router`](crate::router::Router) of handlers by action and screen.
//!
//! ```
//! use flowgate_sdk::{Flow, FlowError, Outcome, Request};
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
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::claims::Claims;
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

/// What the gateway found of the request's `flow_token_signature` (see
/// `FlowTokenSignature` in `flow.proto`; the service converts between the two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FlowTokenSignature {
    /// The request carried no `flow_token_signature`.
    #[default]
    Unspecified,
    /// Present, and its HS256 MAC matched a configured app secret.
    Valid,
    /// Present, but malformed or its MAC matched no configured app secret.
    Invalid,
    /// Present, but no app secret is configured to check it.
    Unchecked,
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
    /// Whether the request's `flow_token_signature` was present and checked.
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
    /// What this flow keeps for this token between screens; see [`Session`].
    pub session: Session,
    /// The signed token's claims (flow, subject, expiry) under the `signed` token
    /// policy; `None` under `open`.
    pub claims: Option<Claims>,
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

/// State a flow keeps per flow token across screens, stored with the call's outcome.
///
/// The service loads it before a handler runs and saves it, in the same transaction as
/// the answer, only when the handler changed it. It expires
/// `FLOW_SERVICE_SESSION_TTL` after its last change, and is deleted when the token
/// completes. A resent call is answered from the store and does not touch it.
///
/// ```
/// # use flowgate_sdk::Session;
/// # use serde_json::json;
/// let session = Session::default();
/// session.set("department", json!("cardiology"));
/// assert_eq!(session.get("department"), Some(json!("cardiology")));
/// assert_eq!(session.text("department").as_deref(), Some("cardiology"));
/// ```
///
/// Clones share the same state, so a handler may pass it on.
#[derive(Clone, Default)]
pub struct Session(Arc<Mutex<SessionState>>);

#[derive(Default)]
struct SessionState {
    values: Map<String, Value>,
    changed: bool,
}

impl Session {
    /// A session holding `values`, unchanged.
    pub fn new(values: Map<String, Value>) -> Self {
        Session(Arc::new(Mutex::new(SessionState {
            values,
            changed: false,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        // A handler that panicked while holding the lock left whole values behind.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.state().values.get(key).cloned()
    }

    /// The string stored under `key`.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: impl Into<String>, value: impl Into<Value>) {
        let mut state = self.state();
        state.values.insert(key.into(), value.into());
        state.changed = true;
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut state = self.state();
        let old = state.values.remove(key);
        state.changed |= old.is_some();
        old
    }

    /// Everything stored.
    pub fn values(&self) -> Map<String, Value> {
        self.state().values.clone()
    }

    /// Everything stored, when a handler changed it since it was loaded.
    pub fn changes(&self) -> Option<Map<String, Value>> {
        let state = self.state();
        state.changed.then(|| state.values.clone())
    }
}

impl fmt::Debug for Session {
    /// Names the keys only: values are user data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("keys", &state.values.keys().collect::<Vec<_>>())
            .field("changed", &state.changed)
            .finish()
    }
}

impl PartialEq for Session {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.values() == other.values()
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

/// What a flow answers. It serialises to JSON as stored for idempotent retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
    /// Its message quotes the screen as a short [`excerpt`](crate::excerpt::excerpt):
    /// it travels in a gRPC status, an HTTP/2 header of bounded size.
    #[error(
        "unknown screen {}",
        crate::excerpt::excerpt(.0, crate::excerpt::STATUS_EXCERPT_CHARS)
    )]
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
    /// logged (with the token hashed, the client's text escaped and cut) and acknowledged.
    async fn on_error(&self, notice: ErrorNotice) -> Result<(), FlowError> {
        use crate::excerpt::{LOG_EXCERPT_CHARS, excerpt};
        tracing::warn!(
            flow = %notice.context.flow,
            token = %crate::token_hash(&notice.flow_token),
            screen = %excerpt(&notice.screen, LOG_EXCERPT_CHARS),
            error_key = %excerpt(&notice.error_key, LOG_EXCERPT_CHARS),
            error_message = %excerpt(&notice.error_message, LOG_EXCERPT_CHARS),
            "the WhatsApp client reported an error",
        );
        Ok(())
    }
}

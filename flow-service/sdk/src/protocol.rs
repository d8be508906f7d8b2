//! The names and numbers of the WhatsApp Flows endpoint protocol, defined once: the
//! gateway speaks them on the wire, the SDK checks answers against them, and the
//! conformance command expects them.

/// The data API versions the endpoint speaks (`version` in every request but `ping`).
pub const SUPPORTED_VERSIONS: &[&str] = &["3.0"];

/// The screen name WhatsApp reserves for completion: no real screen may use it.
pub const SUCCESS: &str = "SUCCESS";

/// The data field WhatsApp shows as a validation error; the gateway fills it from an
/// outcome's error message.
pub const ERROR_MESSAGE: &str = "error_message";

/// The completion's data field that carries the `params` (with `flow_token`).
pub const EXTENSION_MESSAGE_RESPONSE: &str = "extension_message_response";

/// HTTP 427: the flow token is no longer valid (WhatsApp's own status code).
pub const TOKEN_INVALID_STATUS: u16 = 427;

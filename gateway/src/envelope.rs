//! How request and answer bodies are wrapped on the wire. Pure: no I/O.
//!
//! [`Envelope::open`] turns the raw body into the JSON payload and a [`Sealer`]
//! that wraps every answer to that request, errors included, the same way.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::GatewayError;

/// The wrapping a route uses.
#[derive(Debug, Clone)]
pub enum Envelope {
    /// JSON in, JSON out (`Content-Type: application/json`).
    Plain,
}

impl Envelope {
    /// Unwraps a request body.
    pub fn open(&self, _headers: &HeaderMap, body: Bytes) -> Result<(Bytes, Sealer), GatewayError> {
        match self {
            Envelope::Plain => Ok((body, Sealer::Plain)),
        }
    }
}

/// Wraps the answers to one opened request.
#[derive(Debug)]
pub enum Sealer {
    Plain,
}

impl Sealer {
    pub fn seal(self, status: StatusCode, answer: &Value) -> Response {
        match self {
            Sealer::Plain => (status, axum::Json(answer)).into_response(),
        }
    }

    pub fn seal_error(self, error: GatewayError) -> Response {
        match self {
            Sealer::Plain => error.into_response(),
        }
    }
}

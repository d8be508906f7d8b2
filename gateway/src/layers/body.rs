//! [`BufferBody`]: reads the request body whole, within its own limits, before
//! anything is spent on the request, and hands it on as `Request<Bytes>`.
//!
//! - A declared `Content-Length` over the size limit is refused at once (413
//!   `payload_too_large`), without reading a byte.
//! - A body that grows past the limit while read is refused the same way.
//! - A body not complete within its time budget, or by the request's [`Deadline`]
//!   (the end of its budget less the margin kept to answer), whichever comes first, is
//!   refused with 408 `body_timeout`: a late body is the client's, not the flow
//!   service's, and the flow service is not called without time to answer.
//!
//! Why a layer of our own: tower-http's `RequestBodyLimitLayer` answers in its own
//! plain-text shape, not our JSON error, and leaves the reading to whoever comes
//! later; its `RequestBodyTimeoutLayer` bounds the gaps between frames, not the whole
//! body. Reading here, under one budget, is what lets admission come after it: a
//! client that sends its body slowly, or never, holds no in-flight slot. For the same
//! reason [`BufferBody`] is always ready and asks the layers below for readiness only
//! once the body is in hand; passing `poll_ready` down would take the slot first.

use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{self, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::BoxFuture;
use super::deadline::Deadline;
use crate::error::GatewayError;

/// How much body a request may bring, and how long it may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// Counted from when reading starts, never past the request's [`Deadline`].
    pub budget: Duration,
}

/// Adds [`BufferBody`].
#[derive(Debug, Clone, Copy)]
pub struct BufferBodyLayer {
    limits: BodyLimits,
}

impl BufferBodyLayer {
    pub fn new(limits: BodyLimits) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferBody {
            inner,
            limits: self.limits,
        }
    }
}

/// Reads the body, then calls the inner service with it.
#[derive(Debug, Clone)]
pub struct BufferBody<S> {
    inner: S,
    limits: BodyLimits,
}

impl<S> Service<Request> for BufferBody<S>
where
    S: Service<http::Request<Bytes>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    /// Always ready: the inner service's readiness is asked for after the body is read.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inner = self.inner.clone();
        let limits = self.limits;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let deadline = parts.extensions.get::<Deadline>().copied();
            match read(&parts.headers, body, limits, deadline).await {
                Ok(bytes) => inner.oneshot(http::Request::from_parts(parts, bytes)).await,
                Err(refusal) => Ok(refusal.into_response()),
            }
        })
    }
}

/// Reads the whole body within `limits`.
async fn read(
    headers: &http::HeaderMap,
    body: Body,
    limits: BodyLimits,
    deadline: Option<Deadline>,
) -> Result<Bytes, GatewayError> {
    let too_large = GatewayError::PayloadTooLarge {
        limit: limits.max_bytes,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_bytes as u64) {
        return Err(too_large);
    }
    let mut until = Instant::now() + limits.budget;
    if let Some(Deadline(deadline)) = deadline {
        until = until.min(deadline);
    }
    let limited = http_body_util::Limited::new(body, limits.max_bytes);
    match tokio::time::timeout_at(until, limited.collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Ok(Err(e)) => Err(GatewayError::BodyUnreadable(e.to_string())),
    }
}

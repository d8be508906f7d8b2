//! [`CheckSignature`]: Meta mode's `X-Hub-Signature-256` check over the raw body, before
//! the request is admitted or decrypted (432 `invalid_signature` otherwise). The result
//! travels on as a [`SignatureVerified`] extension, for the request context.
//!
//! Why a layer of our own: the check is Meta's HMAC over the exact bytes received,
//! with two secrets during a rotation, which no stock layer knows; tower-http's
//! `ValidateRequestHeaderLayer` sees headers only. Like [`super::body`], it is always
//! ready and asks the layers below for readiness only once the check has passed, so a
//! forged request never takes an in-flight slot.

use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service, ServiceExt};

use super::BoxFuture;
use crate::envelope::Envelope;

/// Whether the body's signature matched a configured app secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureVerified(pub bool);

/// Adds [`CheckSignature`] for a Meta route.
#[derive(Debug, Clone)]
pub struct CheckSignatureLayer {
    envelope: Envelope,
}

impl CheckSignatureLayer {
    /// The check for a route's envelope; `None` in plain mode, which has no signature.
    pub fn for_envelope(envelope: &Envelope) -> Option<Self> {
        matches!(envelope, Envelope::Meta(_)).then(|| Self {
            envelope: envelope.clone(),
        })
    }
}

impl<S> Layer<S> for CheckSignatureLayer {
    type Service = CheckSignature<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckSignature {
            inner,
            envelope: self.envelope.clone(),
        }
    }
}

/// Refuses a request whose signature does not match.
#[derive(Debug, Clone)]
pub struct CheckSignature<S> {
    inner: S,
    envelope: Envelope,
}

impl<S> Service<Request<Bytes>> for CheckSignature<S>
where
    S: Service<Request<Bytes>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    /// Always ready: the inner service's readiness is asked for after the check.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Bytes>) -> Self::Future {
        match self
            .envelope
            .check_signature(request.headers(), request.body())
        {
            Ok(verified) => {
                request.extensions_mut().insert(SignatureVerified(verified));
                Box::pin(self.inner.clone().oneshot(request))
            }
            Err(refusal) => {
                let response = refusal.into_response();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

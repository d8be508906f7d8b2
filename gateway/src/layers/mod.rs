//! The layers of the endpoint's middleware stack, which [`crate::routes::app`] pushes
//! in one `ServiceBuilder`, outermost first:
//!
//! - [`deadline`] — the request's budget starts on arrival.
//! - [`request_id`] — `x-request-id`: the caller's when plain, else a new one; echoed back.
//! - [`span`] — the server span, continuing an incoming `traceparent`, and the access log.
//! - [`metrics`] — `flowgate_requests_total` and `flowgate_request_duration_seconds`.
//! - [`body`] — the body read whole, within its size limit and time budget.
//! - [`signature`] — Meta mode: `X-Hub-Signature-256` over the raw body.
//! - [`admission`] — the in-flight limit, refusing at once instead of queueing.
//!
//! Most concerns are tower or tower-http layers configured here; a module defines a
//! `Layer` + `Service` pair of its own only where no stock layer fits, and says why.

pub mod admission;
pub mod body;
pub mod deadline;
pub mod metrics;
pub mod request_id;
pub mod signature;
pub mod span;

use std::future::Future;
use std::pin::Pin;

/// The future of a layer written here: boxed, as the stack's services are cloned per
/// request by axum anyway.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

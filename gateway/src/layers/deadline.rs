//! The request's budget ([`Deadline`]), started when the request arrives: the body
//! read never runs past it, and the gRPC deadline is what remains of it, minus a
//! margin to write the answer. Set by a stock `map_request` at the top of the stack.

use std::time::Duration;

use axum::extract::Request;
use tokio::time::Instant;

/// When the whole request must be answered by, kept in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// Stamps each request with a [`Deadline`] `budget` from now.
pub fn start(budget: Duration) -> impl Fn(Request) -> Request + Clone + Send + Sync + 'static {
    move |mut request: Request| {
        request
            .extensions_mut()
            .insert(Deadline(Instant::now() + budget));
        request
    }
}

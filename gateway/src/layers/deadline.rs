//! The request's budget ([`Deadline`]), started when the request arrives. The budget
//! ends with a margin kept back to write the answer; the [`Deadline`] is where the
//! margin starts: the body read never runs past it, and the gRPC deadline is what
//! remains of it. Set by a stock `map_request` at the top of the stack.

use std::time::Duration;

use axum::extract::Request;
use tokio::time::Instant;

/// When the body must be in and the flow service's answer due, for a request: its
/// budget less [`answer_margin`]. Kept in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The deadline of a request of `budget` that arrives at `arrival`.
    pub fn of(arrival: Instant, budget: Duration) -> Self {
        Self(arrival + budget - answer_margin(budget))
    }
}

/// The end of a budget kept back to write the answer: a tenth, at most 500 ms. A body
/// that is still arriving then is refused as late (408) rather than passed on to a
/// call that would have no time left.
pub fn answer_margin(budget: Duration) -> Duration {
    (budget / 10).min(Duration::from_millis(500))
}

/// Stamps each request with the [`Deadline`] of a `budget` starting now.
pub fn start(budget: Duration) -> impl Fn(Request) -> Request + Clone + Send + Sync + 'static {
    move |mut request: Request| {
        request
            .extensions_mut()
            .insert(Deadline::of(Instant::now(), budget));
        request
    }
}

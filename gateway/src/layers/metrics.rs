//! [`RequestMetrics`]: counts every answered request in `flowgate_requests_total` and
//! times it in `flowgate_request_duration_seconds`, labelled by the configured route and
//! the action and outcome the answer carries ([`Labels`]).
//!
//! No stock layer fits: tower-http's metrics count requests in flight only, and our
//! labels come from the answer (what the handler or a refusing layer attached to it),
//! which a generic layer cannot know.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::telemetry::{Labels, RouteSeries};

/// Adds [`RequestMetrics`] for the route configured at `route`.
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    series: Arc<RouteSeries>,
}

impl RequestMetricsLayer {
    pub fn new(route: &str) -> Self {
        Self {
            series: Arc::new(RouteSeries::new(route)),
        }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            series: self.series.clone(),
        }
    }
}

/// Records the request metrics once the answer is ready.
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    series: Arc<RouteSeries>,
}

impl<S> Service<Request> for RequestMetrics<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let series = self.series.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let Labels { action, outcome } = Labels::of(&response);
            series.request(
                action,
                outcome,
                response.status().as_u16(),
                started.elapsed(),
            );
            Ok(response)
        })
    }
}

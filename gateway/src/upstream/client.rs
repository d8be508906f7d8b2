//! The stack under the balancer, one per replica and attempt, top to bottom:
//!
//! 1. [`Trace`]: the client span of the attempt (`flowgate.backend_call`), the
//!    `flowgate_backend_call_duration_seconds` metric with the final code;
//! 2. [`Deadline`]: the attempt ends at the request's deadline, whatever the
//!    replica does (a local bound: the connection may be stuck);
//! 3. [`Grpc`]: the typed call on the replica's tonic client, with the remaining
//!    time as `grpc-timeout` (tonic's `Endpoint::timeout` would send none) and the
//!    span's trace context as `traceparent`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use flowgate_proto::v1::FlowResponse;
use tokio::time::Instant;
use tonic::metadata::KeyAndMutValueRef;
use tonic::{Code, Status};
use tower::{Layer, Service, ServiceBuilder};
use tracing::Instrument;

use super::classify::classify;
use super::pool::{Client, Replica};
use super::{Attempt, CallError, Reply};
use crate::translate::Call;

pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Reply, CallError>> + Send>>;

/// The stack for one attempt on `replica`.
pub fn stack(
    replica: &Replica,
) -> impl Service<Attempt, Response = Reply, Error = CallError, Future = BoxFuture> + use<> {
    ServiceBuilder::new()
        .layer(TraceLayer { addr: replica.addr })
        .layer(DeadlineLayer)
        .service(Grpc {
            client: replica.client.clone(),
            addr: replica.addr,
        })
}

/// Adds [`Trace`].
#[derive(Debug, Clone)]
pub struct TraceLayer {
    addr: SocketAddr,
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            addr: self.addr,
        }
    }
}

/// A client span and a duration metric per attempt.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    addr: SocketAddr,
}

impl<S> Service<Attempt> for Trace<S>
where
    S: Service<Attempt, Response = Reply, Error = CallError>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = CallError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, attempt: Attempt) -> BoxFuture {
        let method = attempt.call.method();
        let span = tracing::info_span!(
            "flowgate.backend_call",
            otel.name = %format!("flowgate.v1.FlowService/{method}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.method = method,
            attempt = attempt.number,
            replica = %self.addr,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        // Entered while the request is built, so that its metadata carries this span.
        let future = span.in_scope(|| self.inner.call(attempt));
        let recorder = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(_) => Code::Ok,
                    Err(CallError::Status { status, .. }) => status.code(),
                    Err(CallError::Timeout | CallError::NoReplica) => Code::DeadlineExceeded,
                };
                recorder.record("rpc.grpc.status_code", code as i32);
                crate::telemetry::backend_call(method, code, started.elapsed());
                result
            }
            .instrument(span),
        )
    }
}

/// Adds [`Deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// Ends an attempt with [`CallError::Timeout`] at its deadline; an attempt already
/// late is not sent.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S> Service<Attempt> for Deadline<S>
where
    S: Service<Attempt, Response = Reply, Error = CallError>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = CallError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, attempt: Attempt) -> BoxFuture {
        let deadline = attempt.deadline;
        if Instant::now() >= deadline {
            return Box::pin(std::future::ready(Err(CallError::Timeout)));
        }
        let future = self.inner.call(attempt);
        Box::pin(async move {
            tokio::time::timeout_at(deadline, future)
                .await
                .unwrap_or(Err(CallError::Timeout))
        })
    }
}

/// The headers of a call whose values are new on every call (the trace context's, on
/// every trace).
const UNIQUE_PER_CALL: [&str; 3] = ["grpc-timeout", "traceparent", "tracestate"];

/// A call's request: the deadline travels as `grpc-timeout`, the trace as
/// `traceparent`.
fn request<T>(message: T, timeout: Duration, span: &tracing::Span) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    flowgate_telemetry::propagation::inject(span, request.metadata_mut());
    // HPACK would add each of these values to the connection's header table, where they
    // only push out the entries that do repeat and lengthen the search of every later
    // header of the same name; sent as never indexed, they stay out of it.
    // One pass over the few entries there are: a lookup by name costs more than the
    // whole pass, for each name looked up.
    for entry in request.metadata_mut().iter_mut() {
        if let KeyAndMutValueRef::Ascii(name, value) = entry
            && UNIQUE_PER_CALL.contains(&name.as_str())
        {
            value.set_sensitive(true);
        }
    }
    request
}

/// One typed call on one replica.
#[derive(Debug, Clone)]
pub struct Grpc {
    client: Client,
    addr: SocketAddr,
}

impl Service<Attempt> for Grpc {
    type Response = Reply;
    type Error = CallError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        // The generated client waits for its channel inside each call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt) -> BoxFuture {
        let timeout = attempt.deadline.saturating_duration_since(Instant::now());
        let span = tracing::Span::current();
        let mut client = self.client.clone();
        let replica = self.addr;
        let flow = |r: tonic::Response<FlowResponse>| Reply::Flow(r.into_inner());
        let failed = move |status: Status| CallError::Status {
            failure: classify(&status),
            status,
            replica,
        };
        match attempt.call {
            Call::Init(r) => {
                let request = request(r, timeout, &span);
                Box::pin(async move { client.init(request).await.map(flow).map_err(failed) })
            }
            Call::DataExchange(r) => {
                let request = request(r, timeout, &span);
                Box::pin(async move {
                    client
                        .data_exchange(request)
                        .await
                        .map(flow)
                        .map_err(failed)
                })
            }
            Call::Back(r) => {
                let request = request(r, timeout, &span);
                Box::pin(async move { client.back(request).await.map(flow).map_err(failed) })
            }
            Call::NotifyError(r) => {
                let request = request(r, timeout, &span);
                Box::pin(async move {
                    client
                        .notify_error(request)
                        .await
                        .map(|_| Reply::Acknowledged)
                        .map_err(failed)
                })
            }
            Call::ListFlows(r) => {
                let request = request(r, timeout, &span);
                Box::pin(async move {
                    client
                        .list_flows(request)
                        .await
                        .map(|r| Reply::Flows(r.into_inner()))
                        .map_err(failed)
                })
            }
            Call::GetFlow(r) => {
                let request = request(r, timeout, &span);
                Box::pin(async move {
                    client
                        .get_flow(request)
                        .await
                        .map(|r| Reply::FlowJson(r.into_inner()))
                        .map_err(failed)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_proto::v1::InitRequest;

    #[test]
    fn the_values_new_on_every_call_are_never_indexed() {
        let request = request(
            InitRequest::default(),
            Duration::from_millis(1500),
            &tracing::Span::none(),
        );
        // The header map h2 is handed keeps the flag, by which h2 keeps it out of HPACK's
        // table.
        let headers = request.into_parts().0.into_headers();
        let timeout = &headers["grpc-timeout"];
        assert_eq!(timeout, "1500000u");
        assert!(timeout.is_sensitive());
    }
}

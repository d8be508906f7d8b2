//! The stack under the balancer, one per replica and attempt, top to bottom:
//!
//! 1. [`Trace`]: the client span of the attempt (`flowgate.backend_call`), the
//!    `flowgate_backend_call_duration_seconds` metric with the final code;
//! 2. [`Deadline`]: the attempt ends at the request's deadline, whatever the
//!    replica does (a local bound: the connection may be stuck);
//! 3. [`Grpc`]: the call on the replica's tonic client, with the remaining time as
//!    `grpc-timeout` (tonic's `Endpoint::timeout` would send none) and the span's trace
//!    context as `traceparent`; its message is encoded from the attempt's shared
//!    [`Call`], not from a copy of it.

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flowgate_proto::v1::NotifyErrorResponse;
use http::uri::PathAndQuery;
use tokio::time::Instant;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::metadata::KeyAndMutValueRef;
use tonic::{Code, Status};
use tonic_prost::ProstDecoder;
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
            target: flowgate_telemetry::TRACE,
            "flowgate.backend_call",
            // `flowgate.v1.FlowService/<method>`: the path without its leading `/`.
            otel.name = %&attempt.call.path()[1..],
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

/// The headers of a call whose values change from call to call: the time left, the
/// call's own span id, and a caller's `tracestate` (sent only when there is one), the
/// same within one trace only.
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

/// One call on one replica.
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
        // The client waits for its connection inside each call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt) -> BoxFuture {
        let timeout = attempt.deadline.saturating_duration_since(Instant::now());
        let span = tracing::Span::current();
        let call = Unary {
            client: self.client.clone(),
            path: PathAndQuery::from_static(attempt.call.path()),
            replica: self.addr,
        };
        let request = request(attempt.call, timeout, &span);
        // Which answer the call's RPC returns, and what it becomes.
        match &**request.get_ref() {
            Call::Init(_) | Call::DataExchange(_) | Call::Back(_) => {
                call.send(request, Reply::Flow)
            }
            Call::NotifyError(_) => {
                call.send(request, |_: NotifyErrorResponse| Reply::Acknowledged)
            }
            Call::ListFlows(_) => call.send(request, Reply::Flows),
            Call::GetFlow(_) => call.send(request, Reply::FlowJson),
        }
    }
}

/// One unary call on a replica.
struct Unary {
    client: Client,
    path: PathAndQuery,
    replica: SocketAddr,
}

impl Unary {
    /// The call answered by a `U`, made a [`Reply`] by `reply`: what the generated
    /// client's methods do, but with the request message encoded from the shared
    /// [`Call`].
    fn send<U>(self, request: tonic::Request<Arc<Call>>, reply: fn(U) -> Reply) -> BoxFuture
    where
        U: prost::Message + Default + Send + Sync + 'static,
    {
        let Unary {
            mut client,
            path,
            replica,
        } = self;
        Box::pin(async move {
            let answer = async {
                client
                    .ready()
                    .await
                    .map_err(|e| Status::unknown(format!("the connection was not ready: {e}")))?;
                client
                    .unary(request, path, SharedCall::<U>(PhantomData))
                    .await
            };
            match answer.await {
                Ok(answer) => Ok(reply(answer.into_inner())),
                Err(status) => Err(CallError::Status {
                    failure: classify(&status),
                    status,
                    replica,
                }),
            }
        })
    }
}

/// The codec of a call whose request is a shared [`Call`] and whose answer is a `U`:
/// the request is encoded from the call in place, so that the retry layer's copy of an
/// attempt needs no copy of its message; the answer is decoded as tonic's prost codec
/// does.
struct SharedCall<U>(PhantomData<U>);

impl<U> Codec for SharedCall<U>
where
    U: prost::Message + Default + Send + 'static,
{
    type Encode = Arc<Call>;
    type Decode = U;
    type Encoder = CallEncoder;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> CallEncoder {
        CallEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<U> {
        ProstDecoder::default()
    }
}

/// Encodes the request message of a shared [`Call`].
struct CallEncoder;

impl Encoder for CallEncoder {
    type Item = Arc<Call>;
    type Error = Status;

    fn encode(&mut self, call: Arc<Call>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // An `EncodeBuf` grows as it is written: prost's only error, too little room,
        // cannot happen (tonic's own prost encoder says the same).
        call.encode(buf)
            .expect("an EncodeBuf has room for any message");
        Ok(())
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

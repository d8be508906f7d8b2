//! The gRPC client of a flow service: replicas found from a list of URLs and DNS
//! names ([`pool`]), balanced by load, with per-call deadlines, retries where no
//! business effect can have happened twice, and the one mapping of
//! `tonic::Status` to [`GatewayError`].
//!
//! What is retried, on another replica when there is one:
//! - a call that could not connect (nothing was sent);
//! - `UNAVAILABLE` (the replica refused the call: draining, overloaded connection);
//! - a call whose connection broke before the answer. The replica may have run it, so
//!   the retry carries the same idempotency key, which the service must honour.
//!
//! Never retried: any answer, including business outcomes and other status codes;
//! anything once the deadline is near. Retries draw on a budget of about 20 % of
//! calls, with jittered backoff, and at most [`MAX_ATTEMPTS`] attempts per request.

pub mod pool;

use std::sync::Arc;
use std::time::Duration;

use flowgate_proto::v1::FlowResponse;
use tokio::time::Instant;
use tonic::{Code, Status};
use tower::retry::budget::{Budget, TpsBudget};
use tracing::Instrument;

use crate::error::GatewayError;
use crate::translate::Call;
use pool::{Pool, Target};

/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// How long a ping or readiness check waits for the first health answers at start.
const HEALTH_WAIT: Duration = Duration::from_secs(1);
/// Backoff before a retry: full jitter over an exponential base, capped.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// What the flow service answered.
#[derive(Debug)]
pub enum Reply {
    Flow(FlowResponse),
    Acknowledged,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid backend `{url}`: {reason}")]
pub struct BackendError {
    url: String,
    reason: String,
}

/// A handle on one flow service (all its replicas); cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The backend list as configured, to recognise the same flow service.
    url: Arc<str>,
    pool: Pool,
    budget: Arc<TpsBudget>,
}

impl Upstream {
    /// Starts following the replicas of `backend`: comma-separated `http://host:port`
    /// URLs, where a host that is a name is re-resolved every `refresh`. Nothing
    /// connects until needed. Must be called inside a Tokio runtime.
    pub fn new(backend: &str, refresh: Duration) -> Result<Self, BackendError> {
        Self::with_resolver(backend, refresh, pool::system_resolver())
    }

    /// [`Upstream::new`] with a given resolver for the names.
    pub fn with_resolver(
        backend: &str,
        refresh: Duration,
        resolver: pool::Resolver,
    ) -> Result<Self, BackendError> {
        let targets = parse_targets(backend)?;
        Ok(Self {
            url: backend.into(),
            pool: Pool::with_resolver(targets, refresh, resolver),
            // At least 10 retries a second, and beyond that 20 % of calls.
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        })
    }

    /// The backend as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether both handles call the same flow service.
    pub fn same_backend(&self, other: &Upstream) -> bool {
        self.url == other.url
    }

    /// The replicas, for readiness reports and tests.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether at least one replica reports SERVING over `grpc.health.v1`.
    pub async fn serving(&self) -> bool {
        self.pool.serving(HEALTH_WAIT).await
    }

    /// Makes one call, retrying where safe, and answers by `deadline` whatever the
    /// replicas do. The remaining time travels as the gRPC deadline (`grpc-timeout`).
    pub async fn call(&self, call: Call, deadline: Instant) -> Result<Reply, GatewayError> {
        self.budget.deposit();
        let mut tried = Vec::new();
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(GatewayError::Timeout);
            }
            // Prefer a replica not tried yet; with none left, one that still looks callable.
            let Some(replica) = self.pool.pick(&tried).or_else(|| self.pool.pick(&[])) else {
                return Err(GatewayError::Unavailable {
                    detail: "no serving replica".into(),
                });
            };
            let method = call.method();
            let span = tracing::info_span!(
                "flowgate.backend_call",
                otel.name = %format!("flowgate.v1.FlowService/{method}"),
                otel.kind = "client",
                rpc.system = "grpc",
                rpc.method = method,
                attempt,
                replica = %replica.addr,
                rpc.grpc.status_code = tracing::field::Empty,
            );
            let started = Instant::now();
            let result = {
                let _pending = replica.start_call();
                let client = replica.client.clone();
                let send = send(client, call.with_attempt(attempt), remaining, span.clone());
                tokio::time::timeout_at(deadline, send.instrument(span.clone())).await
            };
            let code = match &result {
                Ok(Ok(_)) => Code::Ok,
                Ok(Err(status)) => status.code(),
                Err(_) => Code::DeadlineExceeded,
            };
            span.record("rpc.grpc.status_code", code as i32);
            crate::telemetry::backend_call(method, &format!("{code:?}"), started.elapsed());
            let status = match result {
                Ok(Ok(reply)) => return Ok(reply),
                // The deadline passed, locally or remotely: a timeout, whatever the code says.
                Err(_) => return Err(GatewayError::Timeout),
                Ok(Err(_)) if Instant::now() >= deadline => return Err(GatewayError::Timeout),
                Ok(Err(status)) => status,
            };
            let failure = classify(&status);
            tracing::debug!(replica = %replica.addr, attempt, code = ?status.code(), ?failure, "call failed");
            if failure == Failure::NotConnected {
                replica.mark_unreachable(self.pool.changes());
            }
            let error = from_status(status);
            if failure == Failure::Final || attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            let backoff = backoff(attempt);
            if Instant::now() + backoff >= deadline || !self.budget.withdraw() {
                return Err(error);
            }
            tried.push(replica.addr);
            crate::telemetry::retry(method);
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }
}

/// Full jitter over `BACKOFF_BASE · 2^(attempt-1)`, capped at `BACKOFF_MAX`.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << (attempt - 1).min(10))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(fastrand::f64())
}

async fn send(
    mut client: flowgate_proto::v1::flow_service_client::FlowServiceClient<
        tonic::transport::Channel,
    >,
    call: Call,
    timeout: Duration,
    span: tracing::Span,
) -> Result<Reply, Status> {
    // The deadline travels as `grpc-timeout`, the trace as `traceparent`.
    fn request<T>(message: T, timeout: Duration, span: &tracing::Span) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        flowgate_telemetry::propagation::inject(span, request.metadata_mut());
        request
    }
    let flow = |r: tonic::Response<FlowResponse>| Reply::Flow(r.into_inner());
    match call {
        Call::Init(r) => client.init(request(r, timeout, &span)).await.map(flow),
        Call::DataExchange(r) => client
            .data_exchange(request(r, timeout, &span))
            .await
            .map(flow),
        Call::Back(r) => client.back(request(r, timeout, &span)).await.map(flow),
        Call::NotifyError(r) => client
            .notify_error(request(r, timeout, &span))
            .await
            .map(|_| Reply::Acknowledged),
    }
}

/// How a failed call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No connection could be made: nothing was sent.
    NotConnected,
    /// Refused (`UNAVAILABLE`) or the connection broke before an answer.
    Retryable,
    /// An answer: final.
    Final,
}

fn classify(status: &Status) -> Failure {
    let transport = transport_error(status);
    match (status.code(), transport) {
        (_, Some(TransportFailure::Connect)) => Failure::NotConnected,
        (Code::Unavailable, _) => Failure::Retryable,
        (Code::Unknown | Code::Internal | Code::Cancelled, Some(TransportFailure::Broken)) => {
            Failure::Retryable
        }
        _ => Failure::Final,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportFailure {
    Connect,
    Broken,
}

/// Whether a status was made by the client's transport rather than sent by the
/// service, and whether the connection was never made or broke.
fn transport_error(status: &Status) -> Option<TransportFailure> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    let mut transport = None;
    while let Some(error) = source {
        if let Some(e) = error.downcast_ref::<hyper::Error>() {
            transport = Some(
                if e.is_canceled() || e.is_incomplete_message() || e.is_closed() {
                    TransportFailure::Broken
                } else {
                    transport.unwrap_or(TransportFailure::Broken)
                },
            );
        } else if error.downcast_ref::<h2::Error>().is_some() {
            transport = Some(TransportFailure::Broken);
        } else if let Some(e) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            transport = Some(match e.kind() {
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
                | TimedOut => TransportFailure::Connect,
                _ => TransportFailure::Broken,
            });
        } else if error.to_string().contains("connect") && transport.is_none() {
            // tonic's connector wraps connect errors (including its connect timeout).
            transport = Some(TransportFailure::Connect);
        } else if error.downcast_ref::<tonic::transport::Error>().is_some() && transport.is_none() {
            transport = Some(TransportFailure::Broken);
        }
        source = error.source();
    }
    transport
}

/// Checks a backend list and turns it into targets.
pub fn parse_targets(backend: &str) -> Result<Vec<Target>, BackendError> {
    let error = |reason: &str| BackendError {
        url: backend.to_owned(),
        reason: reason.to_owned(),
    };
    let mut targets = Vec::new();
    for url in backend.split(',').map(str::trim) {
        let expected = || {
            error(&format!(
                "`{url}`: expected http://host:port, comma-separated"
            ))
        };
        let rest = url.strip_prefix("http://").ok_or_else(expected)?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return Err(expected());
        }
        let uri: http::Uri = url.parse().map_err(|_| expected())?;
        let host = uri.host().ok_or_else(expected)?;
        let port = uri
            .port_u16()
            .ok_or_else(|| error(&format!("`{url}`: the port is required")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(expected());
        }
        targets.push(match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Target::Addr((ip, port).into()),
            Err(_) => Target::Name {
                host: host.to_owned(),
                port,
            },
        });
    }
    Ok(targets)
}

/// The one mapping of gRPC status codes to gateway errors (documented in `flow.proto`).
fn from_status(status: Status) -> GatewayError {
    match status.code() {
        Code::NotFound => GatewayError::UnknownFlow(status.message().to_owned()),
        Code::InvalidArgument => GatewayError::Rejected(status.message().to_owned()),
        Code::ResourceExhausted => GatewayError::Overloaded,
        Code::DeadlineExceeded => GatewayError::Timeout,
        code => GatewayError::Unavailable {
            detail: format!("{code:?}: {}", status.message()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_lists() {
        let targets =
            parse_targets("http://127.0.0.1:50051, http://flow-service:50051,http://[::1]:7")
                .unwrap();
        assert_eq!(
            targets,
            [
                Target::Addr("127.0.0.1:50051".parse().unwrap()),
                Target::Name {
                    host: "flow-service".into(),
                    port: 50051
                },
                Target::Addr("[::1]:7".parse().unwrap()),
            ]
        );
        for bad in [
            "",
            "127.0.0.1:50051",
            "https://x:1",
            "http://x",
            "http://x:1/path",
            "http://:1",
            "http://a:1,,http://b:2",
        ] {
            assert!(parse_targets(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_stays_within_its_cap() {
        for attempt in 1..20 {
            assert!(backoff(attempt) <= BACKOFF_MAX);
        }
        assert!(backoff(1) <= BACKOFF_BASE);
    }
}

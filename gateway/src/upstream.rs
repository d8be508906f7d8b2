//! The gRPC client of the flow service: one lazily connected channel with a
//! connect timeout and HTTP/2 keepalive, per-call deadlines, a cached health
//! check, and the one mapping of `tonic::Status` to [`GatewayError`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_proto::v1::FlowResponse;
use flowgate_proto::v1::flow_service_client::FlowServiceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::GatewayError;
use crate::translate::Call;

/// How long a health answer is reused, so a burst of pings costs one check.
const HEALTH_CACHE: Duration = Duration::from_secs(1);
/// The longest a health check may take; pings must be answered fast.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// A refused or unroutable connection must fail fast, well inside any deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings notice half-open connections that TCP alone would not.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the flow service answered.
#[derive(Debug)]
pub enum Reply {
    Flow(FlowResponse),
    Acknowledged,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid backend URL `{url}`: {reason}")]
pub struct BackendError {
    url: String,
    reason: String,
}

/// A handle on the flow service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    url: Arc<str>,
    flows: FlowServiceClient<Channel>,
    health: HealthClient<Channel>,
    last_health: Arc<Mutex<Option<(Instant, bool)>>>,
}

impl Upstream {
    /// Prepares a channel to `url` (`http://host:port`). Nothing connects yet: the
    /// channel connects on first use and reconnects by itself after a failure.
    /// Must be called inside a Tokio runtime.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        let channel = endpoint(url)?.connect_lazy();
        Ok(Self {
            url: url.into(),
            flows: FlowServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            last_health: Arc::default(),
        })
    }

    /// The flow service's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether both handles call the same flow service.
    pub fn same_backend(&self, other: &Upstream) -> bool {
        self.url == other.url
    }

    /// Makes one call, answering by `deadline` whatever the service does. The
    /// remaining time travels as the gRPC deadline (`grpc-timeout`).
    pub async fn call(&self, call: Call, deadline: Instant) -> Result<Reply, GatewayError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(GatewayError::Timeout);
        }
        let mut flows = self.flows.clone();
        let attempt = async move {
            match call {
                Call::Init(r) => flows
                    .init(request(r, remaining))
                    .await
                    .map(|r| Reply::Flow(r.into_inner())),
                Call::DataExchange(r) => flows
                    .data_exchange(request(r, remaining))
                    .await
                    .map(|r| Reply::Flow(r.into_inner())),
                Call::Back(r) => flows
                    .back(request(r, remaining))
                    .await
                    .map(|r| Reply::Flow(r.into_inner())),
                Call::NotifyError(r) => flows
                    .notify_error(request(r, remaining))
                    .await
                    .map(|_| Reply::Acknowledged),
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(reply)) => Ok(reply),
            // A status raised because the deadline passed (locally or remotely) is a timeout,
            // whatever code it carries.
            Ok(Err(_)) | Err(_) if Instant::now() >= deadline => Err(GatewayError::Timeout),
            Ok(Err(status)) => Err(from_status(status)),
            Err(_) => Err(GatewayError::Timeout),
        }
    }

    /// Whether the flow service reports SERVING for the overall server (`""`) over
    /// `grpc.health.v1`. Answers are reused for up to a second.
    pub async fn serving(&self) -> bool {
        if let Some((at, serving)) = *self.last_health.lock().expect("health cache lock") {
            if at.elapsed() < HEALTH_CACHE {
                return serving;
            }
        }
        let mut health = self.health.clone();
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(HEALTH_TIMEOUT);
        let serving = match tokio::time::timeout(HEALTH_TIMEOUT, health.check(request)).await {
            Ok(Ok(response)) => response.into_inner().status() == ServingStatus::Serving,
            Ok(Err(status)) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "health check failed");
                false
            }
            Err(_) => false,
        };
        *self.last_health.lock().expect("health cache lock") = Some((Instant::now(), serving));
        serving
    }
}

/// Checks a backend URL and sets the connection options.
pub fn endpoint(url: &str) -> Result<Endpoint, BackendError> {
    let error = |reason: &str| BackendError {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| error("expected http://host:port"))?;
    if authority.is_empty() || authority.contains('/') && !authority.ends_with('/') {
        return Err(error("expected http://host:port"));
    }
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| error(&e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
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

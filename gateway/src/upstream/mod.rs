//! The gRPC client of a flow service: a tower stack that finds the replicas, balances
//! calls over them, bounds each attempt by the request's deadline and retries where
//! no business effect can have happened twice; and the one mapping of
//! `tonic::Status` to [`GatewayError`].
//!
//! The stack, top to bottom (one [`Attempt`] travels down it per try):
//!
//! 1. [`Upstream::call`]: the request's deadline, and the mapping of what comes out
//!    to a [`GatewayError`];
//! 2. `tower::retry::Retry` with [`retry::RetryPolicy`]: at most
//!    [`MAX_ATTEMPTS`], under a budget of about 20 % of calls, full-jitter backoff
//!    (≤ 100 ms), never past the deadline; same idempotency key, `attempt` + 1, and
//!    the failed replica noted so the retry goes elsewhere;
//! 3. [`balance::Balance`]: power of two choices on calls in flight among the callable
//!    replicas, avoiding those already tried; marks a replica unreachable when a
//!    connect fails;
//! 4. per replica ([`client`]): the client span and metric of the attempt, the
//!    attempt's timeout at the deadline, and the tonic call with `grpc-timeout` and
//!    `traceparent`, its message encoded from the attempt's shared call.
//!
//! Beside the stack, [`pool::Pool`] follows the discovery stream
//! ([`resolve::resolve`]: listed addresses, DNS names re-resolved every
//! `FLOWGATE_DNS_REFRESH`) and each replica's `grpc.health.v1` status, which decide
//! the replicas the balancer may choose.
//!
//! What is retried, on another replica when there is one ([`classify`]):
//! - a call that could not connect (nothing was sent);
//! - `UNAVAILABLE` (the replica refused the call: draining, overloaded connection);
//! - a call whose connection broke before the answer. The replica may have run it, so
//!   the retry carries the same idempotency key, which the service must honour.
//!
//! Never retried: any answer, including business outcomes and other status codes;
//! anything once the deadline is near.

mod balance;
mod classify;
mod client;
pub mod hop;
pub mod pool;
mod resolve;
mod retry;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flowgate_proto::v1::FlowResponse;
use tokio::time::Instant;
use tonic::{Code, Status};
use tower::ServiceExt;
use tower::retry::Retry;

use crate::error::GatewayError;
use crate::translate::Call;
use balance::Balance;
pub use classify::Failure;
pub use hop::{Hop, HopTls};
use pool::{Pool, Target};
pub use retry::MAX_ATTEMPTS;
use retry::RetryPolicy;

/// How long a ping or readiness check waits for the first health answers at start.
const HEALTH_WAIT: Duration = Duration::from_secs(1);

/// What the flow service answered.
#[derive(Debug)]
pub enum Reply {
    Flow(FlowResponse),
    Acknowledged,
    /// `ListFlows`, for the preview.
    Flows(flowgate_proto::v1::ListFlowsResponse),
    /// `GetFlow`, for the preview.
    FlowJson(flowgate_proto::v1::GetFlowResponse),
}

/// One attempt at a call, as it travels down the stack.
///
/// Cheap to clone: the retry layer keeps a copy of every attempt but the last in case it
/// fails, and the call is shared with that copy rather than copied (a retry numbers its
/// own copy of the call, [`Arc::make_mut`]).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The call, its request context numbered with `number`.
    pub call: Arc<Call>,
    /// 1 for the first attempt.
    pub number: u32,
    /// When the answer is due: the attempt's local timeout and its `grpc-timeout`.
    pub deadline: Instant,
    /// Replicas where earlier attempts failed; the balancer avoids them when it can.
    pub tried: Vec<SocketAddr>,
}

impl Attempt {
    /// The first attempt at `call`, due by `deadline`.
    pub fn first(mut call: Call, deadline: Instant) -> Self {
        call.set_attempt(1);
        Self {
            call: Arc::new(call),
            number: 1,
            deadline,
            tried: Vec::new(),
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A status, from the flow service or made by the client's transport.
    #[error("{replica}: {status}")]
    Status {
        status: Status,
        failure: Failure,
        replica: SocketAddr,
    },
    /// The deadline passed.
    #[error("deadline passed")]
    Timeout,
    /// No replica may be called.
    #[error("no serving replica")]
    NoReplica,
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
    /// The retry policy in `stack`, whose budget another thread's handle shares.
    retry: RetryPolicy,
    /// The stack; cloned per call (an `Arc` and a pool handle).
    stack: Retry<RetryPolicy, Balance>,
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
        Self::with_hop(backend, refresh, resolver, &Hop::default())
    }

    /// [`Upstream::with_resolver`] with the hop's TLS settings (for `https://`
    /// backends) and bearer token. The TLS settings are tried here, so that what
    /// cannot work (no CA and no system roots, a bad certificate) fails at start.
    pub fn with_hop(
        backend: &str,
        refresh: Duration,
        resolver: pool::Resolver,
        hop: &Hop,
    ) -> Result<Self, BackendError> {
        Self::with_retry(backend, refresh, resolver, hop, RetryPolicy::new())
    }

    /// The same flow service for another thread: its own replicas, connections and
    /// health watches, made on the runtime this is called in and running there, under
    /// the same retry budget as `self` (so the threads together retry no more than one
    /// handle would). `refresh`, `resolver` and `hop` as `self` was made with.
    pub fn for_thread(
        &self,
        refresh: Duration,
        resolver: pool::Resolver,
        hop: &Hop,
    ) -> Result<Self, BackendError> {
        Self::with_retry(&self.url, refresh, resolver, hop, self.retry.clone())
    }

    fn with_retry(
        backend: &str,
        refresh: Duration,
        resolver: pool::Resolver,
        hop: &Hop,
        retry: RetryPolicy,
    ) -> Result<Self, BackendError> {
        let parsed = parse_backend(backend)?;
        let tls = match parsed.tls {
            true => Some(hop.tls.client_config().map_err(|e| BackendError {
                url: backend.to_owned(),
                reason: format!("cannot set up TLS: {}", error_chain(&e)),
            })?),
            false => None,
        };
        let auth = hop::Auth::new(hop.token.as_ref());
        let pool = Pool::with_hop(parsed.targets, tls, refresh, resolver, auth);
        let stack = tower::ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(retry.clone()))
            .service(Balance::new(pool.clone()));
        Ok(Self {
            url: backend.into(),
            pool,
            retry,
            stack,
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
        if Instant::now() >= deadline {
            return Err(GatewayError::Timeout);
        }
        let attempt = Attempt::first(call, deadline);
        match self.stack.clone().oneshot(attempt).await {
            Ok(reply) => Ok(reply),
            Err(CallError::Timeout) => Err(GatewayError::Timeout),
            Err(CallError::NoReplica) => Err(GatewayError::Unavailable {
                detail: "no serving replica".into(),
            }),
            // The deadline passed, locally or remotely: a timeout, whatever the code says.
            Err(CallError::Status { .. }) if Instant::now() >= deadline => {
                Err(GatewayError::Timeout)
            }
            Err(CallError::Status { status, .. }) => Err(from_status(status)),
        }
    }
}

/// A checked backend list: its replicas, and whether they speak TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBackend {
    /// `https://` URLs: every replica is reached over TLS.
    pub tls: bool,
    pub targets: Vec<Target>,
}

/// Checks a backend list and turns it into targets.
pub fn parse_targets(backend: &str) -> Result<Vec<Target>, BackendError> {
    parse_backend(backend).map(|parsed| parsed.targets)
}

/// Checks a backend list: comma-separated `http://host:port` or `https://host:port`
/// URLs, all of one scheme.
pub fn parse_backend(backend: &str) -> Result<ParsedBackend, BackendError> {
    let error = |reason: &str| BackendError {
        url: backend.to_owned(),
        reason: reason.to_owned(),
    };
    let mut targets = Vec::new();
    let mut tls = None;
    for url in backend.split(',').map(str::trim) {
        let expected = || {
            error(&format!(
                "`{url}`: expected http://host:port or https://host:port, comma-separated"
            ))
        };
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(expected()),
        };
        if *tls.get_or_insert(https) != https {
            return Err(error(
                "mixes http:// and https://; one flow service is reached one way",
            ));
        }
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
    Ok(ParsedBackend {
        tls: tls.unwrap_or(false),
        targets,
    })
}

/// An error and its sources, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line.push_str(": ");
        line.push_str(&e.to_string());
        source = e.source();
    }
    line
}

/// The one mapping of gRPC status codes to gateway errors (documented in `flow.proto`).
fn from_status(status: Status) -> GatewayError {
    match status.code() {
        // The service refused the gateway's token or certificate: configuration.
        Code::Unauthenticated | Code::PermissionDenied => GatewayError::BackendUnauthenticated {
            detail: format!("{:?}: {}", status.code(), status.message()),
        },
        Code::NotFound => GatewayError::UnknownFlow(status.message().to_owned()),
        Code::InvalidArgument => GatewayError::Rejected(status.message().to_owned()),
        Code::ResourceExhausted => GatewayError::Overloaded,
        Code::DeadlineExceeded => GatewayError::Timeout,
        // An optional RPC the service does not offer: told apart for the preview only.
        Code::Unimplemented => GatewayError::Unimplemented {
            detail: status.message().to_owned(),
        },
        code => GatewayError::Unavailable {
            detail: format!("{code:?}: {}", status.message()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another thread's handle on a flow service: its own replicas and connections,
    /// the first handle's retry budget.
    #[tokio::test]
    async fn a_handle_for_another_thread_shares_only_the_retry_budget() {
        let first = Upstream::new("http://127.0.0.1:1", Duration::from_secs(5)).unwrap();
        let other = first
            .for_thread(
                Duration::from_secs(5),
                pool::system_resolver(),
                &Hop::default(),
            )
            .unwrap();
        assert!(other.same_backend(&first));
        assert!(other.retry.shares_budget_with(&first.retry));
        assert!(!other.retry.shares_budget_with(&RetryPolicy::new()));
        let (a, b) = (first.pool.replicas(), other.pool.replicas());
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 1);
        assert!(!Arc::ptr_eq(&a[0], &b[0]), "a replica of its own");
    }

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
            "ftp://x:1",
            "http://a:1,https://b:2",
            "http://x",
            "http://x:1/path",
            "http://:1",
            "http://a:1,,http://b:2",
        ] {
            assert!(parse_targets(bad).is_err(), "{bad:?}");
        }
        let parsed = parse_backend("https://flows.internal:50051,https://10.0.0.7:50051").unwrap();
        assert!(parsed.tls);
        assert_eq!(parsed.targets.len(), 2);
        assert!(!parse_backend("http://a:1").unwrap().tls);
        let mixed = parse_backend("http://a:1,https://b:2").unwrap_err();
        assert!(
            mixed.to_string().contains("mixes http:// and https://"),
            "{mixed}"
        );
    }

    /// A flow service on 127.0.0.1 that records each INIT's key, attempt and
    /// `grpc-timeout`, and refuses with UNAVAILABLE or answers after `delay`.
    #[derive(Clone, Default)]
    struct Recorder {
        refuse: bool,
        /// Answer UNAUTHENTICATED, as a service with another token does.
        unauthenticated: bool,
        delay: Duration,
        seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    }

    /// An INIT's idempotency key, attempt, and `grpc-timeout` header.
    type Seen = (String, u32, Option<String>);

    #[tonic::async_trait]
    impl flowgate_proto::v1::flow_service_server::FlowService for Recorder {
        async fn init(
            &self,
            request: tonic::Request<flowgate_proto::v1::InitRequest>,
        ) -> Result<tonic::Response<FlowResponse>, Status> {
            let timeout = request
                .metadata()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_owned());
            let context = request.into_inner().context.unwrap_or_default();
            self.seen
                .lock()
                .unwrap()
                .push((context.idempotency_key, context.attempt, timeout));
            tokio::time::sleep(self.delay).await;
            if self.refuse {
                return Err(Status::unavailable("refusing"));
            }
            if self.unauthenticated {
                return Err(Status::unauthenticated("wrong token"));
            }
            Ok(tonic::Response::new(FlowResponse::default()))
        }
        async fn data_exchange(
            &self,
            _: tonic::Request<flowgate_proto::v1::DataExchangeRequest>,
        ) -> Result<tonic::Response<FlowResponse>, Status> {
            Err(Status::unimplemented(""))
        }
        async fn back(
            &self,
            _: tonic::Request<flowgate_proto::v1::BackRequest>,
        ) -> Result<tonic::Response<FlowResponse>, Status> {
            Err(Status::unimplemented(""))
        }
        async fn notify_error(
            &self,
            _: tonic::Request<flowgate_proto::v1::NotifyErrorRequest>,
        ) -> Result<tonic::Response<flowgate_proto::v1::NotifyErrorResponse>, Status> {
            Err(Status::unimplemented(""))
        }
    }

    async fn serve(recorder: Recorder) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    flowgate_proto::v1::flow_service_server::FlowServiceServer::new(recorder),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }

    fn init(key: &str) -> Call {
        Call::Init(flowgate_proto::v1::InitRequest {
            context: Some(flowgate_proto::v1::RequestContext {
                idempotency_key: key.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_refused_call_is_retried_on_the_other_replica_with_its_key() {
        let refuser = Recorder {
            refuse: true,
            ..Default::default()
        };
        let answerer = Recorder::default();
        let backend = format!(
            "{},{}",
            serve(refuser.clone()).await,
            serve(answerer.clone()).await
        );
        let upstream = Upstream::new(&backend, Duration::from_secs(60)).unwrap();
        for i in 0..20 {
            let deadline = Instant::now() + Duration::from_secs(5);
            let reply = upstream.call(init(&format!("key-{i}")), deadline).await;
            assert!(matches!(reply, Ok(Reply::Flow(_))), "{reply:?}");
        }
        let refused = refuser.seen.lock().unwrap().clone();
        let answered = answerer.seen.lock().unwrap().clone();
        assert!(
            !refused.is_empty(),
            "random choice never chose the refuser in 20"
        );
        // The refuser saw only first attempts: every retry went to the other replica,
        // as attempt 2 with the refused call's key.
        for (key, attempt, _) in &refused {
            assert_eq!(*attempt, 1);
            assert!(
                answered.iter().any(|(k, a, _)| k == key && *a == 2),
                "{key}"
            );
        }
        assert_eq!(answered.len(), 20);
    }

    #[tokio::test]
    async fn an_unauthenticated_call_is_final_and_never_retried() {
        let refuser = Recorder {
            unauthenticated: true,
            ..Default::default()
        };
        let answerer = Recorder::default();
        let backend = format!(
            "{},{}",
            serve(refuser.clone()).await,
            serve(answerer.clone()).await
        );
        let upstream = Upstream::new(&backend, Duration::from_secs(60)).unwrap();
        let mut refused = 0;
        for i in 0..20 {
            let deadline = Instant::now() + Duration::from_secs(5);
            match upstream.call(init(&format!("key-{i}")), deadline).await {
                Ok(Reply::Flow(_)) => {}
                Err(error @ GatewayError::BackendUnauthenticated { .. }) => {
                    assert_eq!(error.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
                    assert_eq!(error.code(), "backend_unauthenticated");
                    refused += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refused > 0, "random choice never chose the refuser in 20");
        assert_eq!(refuser.seen.lock().unwrap().len(), refused);
        // Nothing the refuser was asked went on to the other replica.
        assert!(
            answerer
                .seen
                .lock()
                .unwrap()
                .iter()
                .all(|(_, a, _)| *a == 1)
        );
        assert_eq!(answerer.seen.lock().unwrap().len(), 20 - refused);
    }

    #[tokio::test]
    async fn an_attempt_carries_its_deadline_and_ends_there() {
        let slow = Recorder {
            delay: Duration::from_secs(5),
            ..Default::default()
        };
        let upstream = Upstream::new(&serve(slow.clone()).await, Duration::from_secs(60)).unwrap();
        let started = Instant::now();
        let reply = upstream
            .call(init("slow"), started + Duration::from_millis(300))
            .await;
        assert!(matches!(reply, Err(GatewayError::Timeout)), "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
        let seen = slow.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "a timeout is not retried");
        // `grpc-timeout` is the time left, at most 300 ms (tonic sends it in µs or ms).
        let timeout = seen[0].2.clone().expect("grpc-timeout sent");
        let (value, unit) = timeout.split_at(timeout.len() - 1);
        let value: u64 = value.parse().unwrap();
        let left = match unit {
            "u" => Duration::from_micros(value),
            "m" => Duration::from_millis(value),
            "n" => Duration::from_nanos(value),
            other => panic!("unit {other}"),
        };
        assert!(
            left <= Duration::from_millis(300) && left > Duration::from_millis(100),
            "{timeout}"
        );
    }
}

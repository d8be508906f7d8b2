//! Who may call: the shared bearer token and the client certificate of the gRPC hop.
//!
//! [`CallerCheckLayer`] sits in the server's stack between the call metrics and the
//! router (see [`crate::server`]). Every call except `grpc.health.v1` — flow calls,
//! reflection, made-up paths — must carry `authorization: Bearer <token>` when the
//! service has a token, and come over a connection with a verified client
//! certificate when client certificates are required; otherwise it is answered
//! `UNAUTHENTICATED` with a fixed message, before any handler runs. Health stays open
//! so that probes need no credentials.
//!
//! The token is compared in constant time, as SHA-256 digests (so its length does not
//! show either), and never logged.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_lc_rs::{constant_time, digest};

/// The metadata key of the token.
pub const METADATA_KEY: &str = "authorization";

/// The answer to a call without the right token.
pub const REFUSED_TOKEN: &str = "this flow service requires `authorization: Bearer <token>` with its token (FLOW_SERVICE_AUTH_TOKEN); the call had none or another";

/// The answer to a call over a connection without a client certificate.
pub const REFUSED_CERTIFICATE: &str =
    "this flow service requires a client certificate (FLOW_SERVICE_TLS_CLIENT_CA); the connection presented none";

/// Calls to this prefix need no credentials.
const OPEN_PREFIX: &str = "/grpc.health.v1.Health/";

/// The token the callers must present. `Debug` never shows it.
#[derive(Clone)]
pub struct AuthToken {
    /// SHA-256 of the whole expected header value, `Bearer <token>`.
    expected: Arc<[u8]>,
}

impl AuthToken {
    /// The token as configured (`FLOW_SERVICE_AUTH_TOKEN`); see
    /// `flowgate_cli::bearer_token` for what the binary accepts.
    pub fn new(token: &str) -> Self {
        let expected = digest::digest(&digest::SHA256, format!("Bearer {token}").as_bytes());
        Self {
            expected: expected.as_ref().into(),
        }
    }

    /// Whether `header` is exactly `Bearer <token>`, compared in constant time.
    pub fn matches(&self, header: &[u8]) -> bool {
        let seen = digest::digest(&digest::SHA256, header);
        constant_time::verify_slices_are_equal(seen.as_ref(), &self.expected).is_ok()
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(***)")
    }
}

/// What a caller must present; the default asks for nothing.
#[derive(Debug, Clone, Default)]
pub struct CallerCheckLayer {
    token: Option<AuthToken>,
    client_certificate: bool,
}

impl CallerCheckLayer {
    pub fn new(token: Option<AuthToken>, client_certificate: bool) -> Self {
        Self {
            token,
            client_certificate,
        }
    }

    /// Why `request` is refused, if it is.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<&'static str> {
        if request.uri().path().starts_with(OPEN_PREFIX) {
            return None;
        }
        if self.client_certificate && !has_client_certificate(request) {
            return Some(REFUSED_CERTIFICATE);
        }
        match &self.token {
            Some(token) => {
                let header = request.headers().get(METADATA_KEY);
                (!header.is_some_and(|value| token.matches(value.as_bytes())))
                    .then_some(REFUSED_TOKEN)
            }
            None => None,
        }
    }
}

/// Whether the connection presented a certificate. With client certificates
/// required, the TLS layer accepts a connection without one (so that health stays
/// open) but verifies every certificate presented against the client CA: one that is
/// present here is verified.
fn has_client_certificate<B>(request: &http::Request<B>) -> bool {
    request
        .extensions()
        .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .is_some_and(|certs| !certs.is_empty())
}

impl<S> tower::Layer<S> for CallerCheckLayer {
    type Service = CallerCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerCheck {
            inner,
            check: self.clone(),
        }
    }
}

/// See [`CallerCheckLayer`].
#[derive(Debug, Clone)]
pub struct CallerCheck<S> {
    inner: S,
    check: CallerCheckLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for CallerCheck<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.check.refusal(&request) {
            Some(message) => {
                let answer = tonic::Status::unauthenticated(message).into_http::<R>();
                Box::pin(std::future::ready(Ok(answer)))
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_header_matches() {
        let token = AuthToken::new("0123456789abcdef");
        assert!(token.matches(b"Bearer 0123456789abcdef"));
        for other in [
            &b""[..],
            b"0123456789abcdef",
            b"bearer 0123456789abcdef",
            b"Bearer 0123456789abcde",
            b"Bearer 0123456789abcdef ",
            b"Basic 0123456789abcdef",
        ] {
            assert!(!token.matches(other), "{}", String::from_utf8_lossy(other));
        }
        assert_eq!(format!("{token:?}"), "AuthToken(***)");
    }

    #[test]
    fn health_is_open_and_everything_else_is_checked() {
        let check = CallerCheckLayer::new(Some(AuthToken::new("0123456789abcdef")), false);
        let request = |path: &str, header: Option<&str>| {
            let mut request = http::Request::builder().uri(path);
            if let Some(header) = header {
                request = request.header(METADATA_KEY, header);
            }
            request.body(()).unwrap()
        };
        assert_eq!(check.refusal(&request("/grpc.health.v1.Health/Check", None)), None);
        for path in [
            "/flowgate.v1.FlowService/DataExchange",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/made.up.Service/Method",
            "/grpc.health.v1.HealthX/Check",
        ] {
            assert_eq!(check.refusal(&request(path, None)), Some(REFUSED_TOKEN), "{path}");
            assert_eq!(
                check.refusal(&request(path, Some("Bearer wrong-token-wrong"))),
                Some(REFUSED_TOKEN),
                "{path}"
            );
            assert_eq!(
                check.refusal(&request(path, Some("Bearer 0123456789abcdef"))),
                None,
                "{path}"
            );
        }
        // Without a TLS connection there is no client certificate.
        let certs = CallerCheckLayer::new(None, true);
        assert_eq!(
            certs.refusal(&request("/flowgate.v1.FlowService/Init", None)),
            Some(REFUSED_CERTIFICATE)
        );
        assert_eq!(certs.refusal(&request("/grpc.health.v1.Health/Watch", None)), None);
    }
}

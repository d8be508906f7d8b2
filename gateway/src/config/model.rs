//! The checked route model the rest of the gateway reads: which path reaches which
//! flow, how bodies are wrapped, where the flow service is.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A secret value: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Which flow a route reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSource {
    /// The flow service's default flow.
    Default,
    /// A fixed flow.
    Named(String),
    /// The last path segment (`/…/{flow}`).
    FromPath,
}

/// How a route's bodies are wrapped, as configured (`FLOWGATE_MODE`, `mode = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// JSON in, JSON out: a solution provider's endpoint.
    #[default]
    Plain,
    /// Meta's encrypted endpoint.
    Meta,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "plain" => Ok(Mode::Plain),
            "meta" => Ok(Mode::Meta),
            _ => Err("expected plain or meta".to_owned()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Plain => "plain",
            Mode::Meta => "meta",
        })
    }
}

/// How a route's bodies are wrapped, with what Meta mode needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeConfig {
    /// JSON in, JSON out.
    Plain,
    /// Meta's encrypted endpoint.
    Meta(MetaConfig),
}

impl ModeConfig {
    pub fn mode(&self) -> Mode {
        match self {
            ModeConfig::Plain => Mode::Plain,
            ModeConfig::Meta(_) => Mode::Meta,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaConfig {
    /// Tried in order for each request.
    pub private_keys: Vec<PathBuf>,
    pub passphrase: Option<Secret>,
    /// Empty: signatures are not checked.
    pub app_secrets: Vec<Secret>,
}

/// A checked flow service address: comma-separated `http://host:port` (or all
/// `https://host:port`) URLs, kept as
/// written (it names the backend in logs and is what the upstream pool resolves).
/// It reads as a `&str` wherever one is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend(String);

impl Backend {
    /// Checks `text` the way the upstream pool will read it.
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::upstream::parse_targets(text).map_err(|e| e.to_string())?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Backend {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Backend {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Backend {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Backend> for &str {
    fn eq(&self, other: &Backend) -> bool {
        *self == other.0
    }
}

impl PartialEq<Backend> for str {
    fn eq(&self, other: &Backend) -> bool {
        self == other.0
    }
}

/// One endpoint path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// An exact path, or one ending in `/{flow}`.
    pub path: String,
    pub flow: FlowSource,
    pub mode: ModeConfig,
    pub backend: Backend,
    /// Where the route was configured, for error messages (`FLOWGATE_MODE`, or
    /// `FLOWGATE_CONFIG route 2 (/whatsapp)`).
    pub origin: String,
}

/// Where the public listener gets its TLS from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Plain HTTP, for use behind a TLS-terminating proxy.
    Off,
    /// A self-signed certificate generated at start.
    Generated,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// The gateway's checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` when the admin listener is off.
    pub admin_listen: Option<SocketAddr>,
    /// The flow preview at `/preview/` on the admin listener (`FLOWGATE_PREVIEW`).
    pub preview: bool,
    pub routes: Vec<RouteConfig>,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub tls: TlsSource,
    pub dns_refresh: Duration,
    pub max_in_flight: usize,
    /// The threads that serve connections, at least one (`FLOWGATE_WORKER_THREADS`, with
    /// `0` counted as the CPUs).
    pub worker_threads: usize,
    pub log_format: flowgate_telemetry::LogFormat,
    /// TLS towards `https://` backends and the bearer token of every call.
    pub hop: crate::upstream::Hop,
}

/// Flow names are 1–64 ASCII letters, digits, `_` or `-`.
pub fn valid_flow_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks an endpoint path: absolute, and no pattern syntax except a final `/{flow}`.
/// A segment may not start with `:`, the router's old capture syntax (`/wa/:flow`),
/// which the router refuses rather than match literally.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    let body = path.strip_suffix("/{flow}").unwrap_or(path);
    if !path.starts_with('/') || path.len() < 2 || body.contains(['{', '}', '*', '?', '#', ' ']) {
        return Err(
            "expected a path like /flow-endpoint or /flows/{flow} (no other {, }, *, ?, # or spaces)"
                .to_owned(),
        );
    }
    if body.split('/').any(|segment| segment.starts_with(':')) {
        return Err(
            "a segment starts with `:`; a flow name taken from the path is written /{flow}, last"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_accepted_is_one_the_router_takes() {
        // The router panics on a path it refuses: each one accepted here must be taken.
        let candidates = [
            "/flow-endpoint",
            "/flows/{flow}",
            "/wa/:flow",
            "/:x",
            "/a/b:c",
            "/a//b",
            "/a/",
            "/é",
            "/%3Aflow",
            "/a/{flow}/b",
            "/a/*rest",
            "/a/{*rest}",
            "/a:b/{flow}",
            "/:a/{flow}",
        ];
        let mut accepted = 0;
        for path in candidates {
            if check_path(path).is_err() {
                continue;
            }
            accepted += 1;
            let route = std::panic::catch_unwind(|| {
                axum::Router::<()>::new().route(path, axum::routing::post(|| async {}))
            });
            assert!(route.is_ok(), "{path} accepted but refused by the router");
        }
        assert_eq!(accepted, 8, "the candidates still test both sides");
        assert!(check_path("/wa/:flow").unwrap_err().contains("`:`"));
    }

    #[test]
    fn modes_read_and_print() {
        for mode in [Mode::Plain, Mode::Meta] {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        assert_eq!(
            "json".parse::<Mode>(),
            Err("expected plain or meta".to_owned())
        );
    }

    #[test]
    fn a_backend_reads_as_its_text() {
        let backend = Backend::parse("http://a:1, http://b:2").unwrap();
        assert_eq!(backend, "http://a:1, http://b:2");
        assert!("http://a:1, http://b:2" == backend);
        assert_eq!(backend.len(), 22);
        let err = Backend::parse("http://a").unwrap_err();
        assert!(err.contains("the port is required"), "{err}");
    }

    #[test]
    fn flow_names() {
        assert!(valid_flow_name("signup_2-b"));
        for bad in ["", "no spaces", "é", &"x".repeat(65)] {
            assert!(!valid_flow_name(bad), "{bad:?}");
        }
    }
}

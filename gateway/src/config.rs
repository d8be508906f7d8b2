//! Configuration from environment variables, each with a matching command-line
//! flag (flags win), and optionally a TOML file of routes (`FLOWGATE_CONFIG`).
//! Every value is checked at start; a bad one stops the gateway with one line
//! naming the variable (or the file and route).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Deserialize;

/// The raw flags and variables, as clap reads them. Values stay strings here so
/// that [`Config::from_args`] can name the variable in every error.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flowgate-gateway",
    version,
    about = "The flowgate HTTPS edge for WhatsApp Flows endpoints.",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address of the public HTTPS listener.
    #[arg(long, env = "FLOWGATE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: String,
    /// Address of the admin listener (`GET /healthz`, `GET /readyz`), or `off`.
    #[arg(long, env = "FLOWGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9464")]
    pub admin_listen: String,
    /// The flow service: comma-separated `http://host:port` URLs; names are re-resolved so
    /// every replica behind them is used (the default for FLOWGATE_CONFIG routes too).
    #[arg(
        long,
        env = "FLOWGATE_BACKEND",
        default_value = "http://127.0.0.1:50051"
    )]
    pub backend: String,
    /// How often backend names are resolved again.
    #[arg(long, env = "FLOWGATE_DNS_REFRESH", default_value = "5s")]
    pub dns_refresh: String,
    /// Requests handled at once; beyond, 503 with Retry-After at once.
    #[arg(long, env = "FLOWGATE_MAX_IN_FLIGHT", default_value = "1024")]
    pub max_in_flight: String,
    /// The path that reaches the flow service's default flow [default: /flow-endpoint].
    /// `/flows/{name}` reaches flow `name`.
    #[arg(long, env = "FLOWGATE_PATH")]
    pub path: Option<String>,
    /// `plain` (JSON in, JSON out: a solution provider's endpoint) or `meta` (Meta's
    /// encrypted endpoint) [default: plain].
    #[arg(long, env = "FLOWGATE_MODE")]
    pub mode: Option<String>,
    /// Meta mode: PEM private key file(s), comma-separated for rotation (PKCS#1,
    /// PKCS#8, or encrypted PKCS#8).
    #[arg(long, env = "FLOWGATE_PRIVATE_KEY")]
    pub private_key: Option<String>,
    /// Meta mode: the passphrase of encrypted private keys.
    #[arg(long, env = "FLOWGATE_PRIVATE_KEY_PASSPHRASE", hide_env_values = true)]
    pub private_key_passphrase: Option<String>,
    /// Meta mode: the app secret(s) that sign requests (`X-Hub-Signature-256`),
    /// comma-separated during a rotation. Unset: no signature check (warns).
    #[arg(long, env = "FLOWGATE_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// A TOML file listing several routes, each with its own path, flow, mode, keys,
    /// secrets and backend. Replaces FLOWGATE_PATH, FLOWGATE_MODE, FLOWGATE_PRIVATE_KEY,
    /// FLOWGATE_PRIVATE_KEY_PASSPHRASE and FLOWGATE_APP_SECRET.
    #[arg(long, env = "FLOWGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The whole budget of a request, from arrival to answer (like `10s`, `1500ms`).
    #[arg(long, env = "FLOWGATE_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: String,
    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    #[arg(long, env = "FLOWGATE_SHUTDOWN_GRACE", default_value = "15s")]
    pub shutdown_grace: String,
    /// Log lines as `text` or `json` (one object per line, with request id and trace id).
    #[arg(long, env = "FLOWGATE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// `on`, or `off` to serve plain HTTP behind a TLS-terminating proxy.
    #[arg(long, env = "FLOWGATE_TLS", default_value = "on")]
    pub tls: String,
    /// PEM certificate chain. With neither this nor the key, a self-signed certificate is generated.
    #[arg(long, env = "FLOWGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for the certificate.
    #[arg(long, env = "FLOWGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How long a client may take to finish the TLS handshake.
    #[arg(long, env = "FLOWGATE_HANDSHAKE_TIMEOUT", default_value = "5s")]
    pub handshake_timeout: String,
    /// How long a new connection may take to send its first request's headers.
    #[arg(long, env = "FLOWGATE_HEADER_TIMEOUT", default_value = "10s")]
    pub header_timeout: String,
    /// How long a connection with no request in flight stays open (keep-alive).
    #[arg(long, env = "FLOWGATE_IDLE_TIMEOUT", default_value = "75s")]
    pub idle_timeout: String,
    /// How often an HTTP/2 connection is pinged when the client sends nothing.
    #[arg(long, env = "FLOWGATE_KEEPALIVE_INTERVAL", default_value = "20s")]
    pub keepalive_interval: String,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    #[arg(long, env = "FLOWGATE_KEEPALIVE_TIMEOUT", default_value = "10s")]
    pub keepalive_timeout: String,
    /// Open public connections at most (beyond, closed at once), or `auto`: what
    /// the open-file limit allows, less a reserve.
    #[arg(long, env = "FLOWGATE_MAX_CONNECTIONS", default_value = "auto")]
    pub max_connections: String,
    /// Open public connections from one IP address at most; 0 is no limit.
    #[arg(
        long,
        env = "FLOWGATE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value = "0"
    )]
    pub max_connections_per_address: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Generate an RSA-2048 key pair for Meta's encrypted endpoint: writes the private
    /// key (PKCS#8) to FILE and prints the public key to upload.
    Keygen {
        /// Where to write the private key; refuses to overwrite.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encrypt the private key with the passphrase in FLOWGATE_PRIVATE_KEY_PASSPHRASE.
        #[arg(long)]
        encrypt: bool,
    },
    /// Ask a running gateway on this host whether it is ready (`GET /readyz` on the
    /// admin listener, FLOWGATE_ADMIN_LISTEN): exit 0 on 200, 1 otherwise. Made for
    /// container healthchecks, where the image has no shell and no curl.
    Healthcheck {
        /// The admin path to ask: `/readyz` (the flow service is serving) or
        /// `/healthz` (the gateway is alive).
        #[arg(long, default_value = "/readyz")]
        path: String,
        /// How long to wait for the whole answer (like `2s`, `500ms`).
        #[arg(long, default_value = "2s")]
        timeout: String,
    },
}

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

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// How a route's bodies are wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeConfig {
    /// JSON in, JSON out.
    Plain,
    /// Meta's encrypted endpoint.
    Meta(MetaConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaConfig {
    /// Tried in order for each request.
    pub private_keys: Vec<PathBuf>,
    pub passphrase: Option<Secret>,
    /// Empty: signatures are not checked.
    pub app_secrets: Vec<Secret>,
}

/// One endpoint path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// An exact path, or one ending in `/{flow}`.
    pub path: String,
    pub flow: FlowSource,
    pub mode: ModeConfig,
    pub backend: String,
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
    pub routes: Vec<RouteConfig>,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub tls: TlsSource,
    pub dns_refresh: Duration,
    pub max_in_flight: usize,
    pub log_format: flowgate_telemetry::LogFormat,
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}{flag} {value}: {reason}")]
pub struct ConfigError {
    /// The variable, or `FLOWGATE_CONFIG route N (path)`.
    pub var: String,
    /// ` (--flag)`, or empty.
    pub flag: String,
    /// The offending value, quoted, or empty for secrets.
    pub value: String,
    pub reason: String,
}

fn error(var: &str, flag: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        var: var.to_owned(),
        flag: if flag.is_empty() {
            String::new()
        } else {
            format!(" (--{flag})")
        },
        value: format!("{value:?}"),
        reason: reason.to_owned(),
    }
}

/// The same, for a secret: the value is not repeated.
fn secret_error(var: &str, flag: &str, reason: &str) -> ConfigError {
    ConfigError {
        value: "(value hidden)".into(),
        ..error(var, flag, "", reason)
    }
}

/// The route file (`FLOWGATE_CONFIG`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    /// The default backend of the routes in this file.
    backend: Option<String>,
    #[serde(default, rename = "route")]
    routes: Vec<RouteEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    path: String,
    flow: Option<String>,
    #[serde(default = "plain")]
    mode: String,
    backend: Option<String>,
    #[serde(default)]
    private_keys: Vec<PathBuf>,
    private_key_passphrase: Option<String>,
    /// The name of an environment variable holding the passphrase.
    private_key_passphrase_env: Option<String>,
    #[serde(default)]
    app_secrets: Vec<String>,
    /// The name of an environment variable holding comma-separated app secrets.
    app_secrets_env: Option<String>,
}

fn plain() -> String {
    "plain".into()
}

impl Config {
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let addr = |var, flag, value: &str| {
            value
                .parse::<SocketAddr>()
                .map_err(|_| error(var, flag, value, "expected an address like 0.0.0.0:8443"))
        };
        let duration = |var, flag, value: &str| {
            flowgate_proto::parse_duration(value).map_err(|reason| error(var, flag, value, &reason))
        };

        let listen = addr("FLOWGATE_LISTEN", "listen", &args.listen)?;
        let admin_listen = match args.admin_listen.as_str() {
            "off" => None,
            value => Some(addr("FLOWGATE_ADMIN_LISTEN", "admin-listen", value)?),
        };
        check_backend("FLOWGATE_BACKEND", "backend", &args.backend)?;
        let routes = match &args.config {
            Some(file) => routes_from_file(file, &args)?,
            None => routes_from_env(&args)?,
        };
        let request_timeout = duration(
            "FLOWGATE_REQUEST_TIMEOUT",
            "request-timeout",
            &args.request_timeout,
        )?;
        if request_timeout < Duration::from_millis(100) {
            return Err(error(
                "FLOWGATE_REQUEST_TIMEOUT",
                "request-timeout",
                &args.request_timeout,
                "must be at least 100ms",
            ));
        }
        let shutdown_grace = duration(
            "FLOWGATE_SHUTDOWN_GRACE",
            "shutdown-grace",
            &args.shutdown_grace,
        )?;
        let dns_refresh = duration("FLOWGATE_DNS_REFRESH", "dns-refresh", &args.dns_refresh)?;
        if dns_refresh < Duration::from_millis(100) {
            let reason = "must be at least 100ms";
            return Err(error(
                "FLOWGATE_DNS_REFRESH",
                "dns-refresh",
                &args.dns_refresh,
                reason,
            ));
        }
        let max_in_flight = match args.max_in_flight.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                let reason = "expected a whole number above 0";
                let value = &args.max_in_flight;
                return Err(error(
                    "FLOWGATE_MAX_IN_FLIGHT",
                    "max-in-flight",
                    value,
                    reason,
                ));
            }
        };
        let log_format = args.log_format.parse().map_err(|reason: String| {
            error(
                "FLOWGATE_LOG_FORMAT",
                "log-format",
                &args.log_format,
                &reason,
            )
        })?;
        let tls = match (args.tls.as_str(), args.tls_cert, args.tls_key) {
            ("off", None, None) => TlsSource::Off,
            ("off", _, _) => {
                return Err(error(
                    "FLOWGATE_TLS",
                    "tls",
                    "off",
                    "FLOWGATE_TLS_CERT and FLOWGATE_TLS_KEY must not be set with TLS off",
                ));
            }
            ("on", None, None) => TlsSource::Generated,
            ("on", Some(cert), Some(key)) => TlsSource::Files { cert, key },
            ("on", Some(cert), None) => {
                let reason = format!(
                    "must be set together with FLOWGATE_TLS_CERT ({})",
                    cert.display()
                );
                return Err(error("FLOWGATE_TLS_KEY", "tls-key", "", &reason));
            }
            ("on", None, Some(key)) => {
                let reason = format!(
                    "must be set together with FLOWGATE_TLS_KEY ({})",
                    key.display()
                );
                return Err(error("FLOWGATE_TLS_CERT", "tls-cert", "", &reason));
            }
            (other, _, _) => return Err(error("FLOWGATE_TLS", "tls", other, "expected on or off")),
        };
        Ok(Config {
            listen,
            admin_listen,
            routes,
            request_timeout,
            shutdown_grace,
            tls,
            dns_refresh,
            max_in_flight,
            log_format,
        })
    }
}

/// The one-route shortcut: `FLOWGATE_PATH` reaches the default flow and
/// `/flows/{flow}` reaches the others, both with the same mode and backend.
fn routes_from_env(args: &Args) -> Result<Vec<RouteConfig>, ConfigError> {
    let path = args.path.clone().unwrap_or_else(|| "/flow-endpoint".into());
    check_path("FLOWGATE_PATH", "path", &path)?;
    if path.ends_with("/{flow}") || path.starts_with("/flows/") {
        return Err(error(
            "FLOWGATE_PATH",
            "path",
            &path,
            "must not be under /flows/, which names flows",
        ));
    }
    let split = |value: &Option<String>| -> Vec<String> {
        value
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mode = match args.mode.as_deref().unwrap_or("plain") {
        "plain" => {
            for (var, flag, set) in [
                (
                    "FLOWGATE_PRIVATE_KEY",
                    "private-key",
                    args.private_key.is_some(),
                ),
                (
                    "FLOWGATE_APP_SECRET",
                    "app-secret",
                    args.app_secret.is_some(),
                ),
            ] {
                if set {
                    return Err(secret_error(
                        var,
                        flag,
                        "applies to FLOWGATE_MODE=meta only",
                    ));
                }
            }
            ModeConfig::Plain
        }
        "meta" => {
            let private_keys: Vec<PathBuf> = split(&args.private_key)
                .into_iter()
                .map(PathBuf::from)
                .collect();
            if private_keys.is_empty() {
                return Err(error(
                    "FLOWGATE_PRIVATE_KEY",
                    "private-key",
                    "",
                    "FLOWGATE_MODE=meta needs at least one private key file",
                ));
            }
            ModeConfig::Meta(MetaConfig {
                private_keys,
                passphrase: args.private_key_passphrase.clone().map(Secret::new),
                app_secrets: split(&args.app_secret)
                    .into_iter()
                    .map(Secret::new)
                    .collect(),
            })
        }
        other => {
            return Err(error(
                "FLOWGATE_MODE",
                "mode",
                other,
                "expected plain or meta",
            ));
        }
    };
    // Start-up errors of this route are about its key files, when it has any.
    let origin = match mode {
        ModeConfig::Meta(_) => "FLOWGATE_PRIVATE_KEY",
        ModeConfig::Plain => "FLOWGATE_MODE",
    }
    .to_owned();
    let route = |path: String, flow| RouteConfig {
        path,
        flow,
        mode: mode.clone(),
        backend: args.backend.clone(),
        origin: origin.clone(),
    };
    Ok(vec![
        route(path, FlowSource::Default),
        route("/flows/{flow}".into(), FlowSource::FromPath),
    ])
}

fn routes_from_file(file: &std::path::Path, args: &Args) -> Result<Vec<RouteConfig>, ConfigError> {
    let shown = file.display().to_string();
    for (var, flag, set) in [
        ("FLOWGATE_PATH", "path", args.path.is_some()),
        ("FLOWGATE_MODE", "mode", args.mode.is_some()),
        (
            "FLOWGATE_PRIVATE_KEY",
            "private-key",
            args.private_key.is_some(),
        ),
        (
            "FLOWGATE_PRIVATE_KEY_PASSPHRASE",
            "private-key-passphrase",
            args.private_key_passphrase.is_some(),
        ),
        (
            "FLOWGATE_APP_SECRET",
            "app-secret",
            args.app_secret.is_some(),
        ),
    ] {
        if set {
            return Err(secret_error(
                var,
                flag,
                "cannot be combined with FLOWGATE_CONFIG; set it in the route file",
            ));
        }
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        error(
            "FLOWGATE_CONFIG",
            "config",
            &shown,
            &format!("cannot read the file: {e}"),
        )
    })?;
    let parsed: RouteFile = toml::from_str(&text).map_err(|e| {
        let reason = format!("not a valid route file: {}", e.message());
        error("FLOWGATE_CONFIG", "config", &shown, &reason)
    })?;
    if parsed.routes.is_empty() {
        return Err(error(
            "FLOWGATE_CONFIG",
            "config",
            &shown,
            "no [[route]] entries",
        ));
    }
    let default_backend = parsed.backend.unwrap_or_else(|| args.backend.clone());
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, entry) in parsed.routes.into_iter().enumerate() {
        let origin = format!("FLOWGATE_CONFIG route {} ({})", i + 1, entry.path);
        let fail = |reason: &str| ConfigError {
            var: origin.clone(),
            flag: String::new(),
            value: format!("in {shown}"),
            reason: reason.to_owned(),
        };
        check_path(&origin, "", &entry.path).map_err(|e| fail(&e.reason))?;
        if routes.iter().any(|r| r.path == entry.path) {
            return Err(fail("the path is already used by an earlier route"));
        }
        let flow = match (entry.path.ends_with("/{flow}"), entry.flow) {
            (true, None) => FlowSource::FromPath,
            (true, Some(_)) => {
                return Err(fail(
                    "a path ending in /{flow} takes the flow from the path; remove `flow`",
                ));
            }
            (false, None) => FlowSource::Default,
            (false, Some(name)) if valid_flow_name(&name) => FlowSource::Named(name),
            (false, Some(_)) => return Err(fail("`flow` must be 1 to 64 letters, digits, _ or -")),
        };
        let backend = entry.backend.unwrap_or_else(|| default_backend.clone());
        check_backend(&origin, "", &backend).map_err(|e| fail(&e.reason))?;
        let from_env = |var: &Option<String>| -> Result<Option<String>, ConfigError> {
            match var {
                None => Ok(None),
                Some(name) => std::env::var(name)
                    .map(Some)
                    .map_err(|_| fail(&format!("environment variable {name} is not set"))),
            }
        };
        let mode = match entry.mode.as_str() {
            "plain" => {
                if !entry.private_keys.is_empty()
                    || !entry.app_secrets.is_empty()
                    || entry.app_secrets_env.is_some()
                {
                    return Err(fail(
                        "private keys and app secrets apply to mode = \"meta\" only",
                    ));
                }
                ModeConfig::Plain
            }
            "meta" => {
                if entry.private_keys.is_empty() {
                    return Err(fail("mode = \"meta\" needs private_keys"));
                }
                let passphrase = match (
                    entry.private_key_passphrase,
                    from_env(&entry.private_key_passphrase_env)?,
                ) {
                    (Some(_), Some(_)) => {
                        return Err(fail(
                            "set private_key_passphrase or private_key_passphrase_env, not both",
                        ));
                    }
                    (a, b) => a.or(b).map(Secret::new),
                };
                let mut app_secrets: Vec<Secret> =
                    entry.app_secrets.into_iter().map(Secret::new).collect();
                if let Some(value) = from_env(&entry.app_secrets_env)? {
                    app_secrets.extend(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(Secret::new),
                    );
                }
                ModeConfig::Meta(MetaConfig {
                    private_keys: entry.private_keys,
                    passphrase,
                    app_secrets,
                })
            }
            other => {
                return Err(fail(&format!(
                    "unknown mode `{other}`; expected plain or meta"
                )));
            }
        };
        routes.push(RouteConfig {
            path: entry.path,
            flow,
            mode,
            backend,
            origin,
        });
    }
    Ok(routes)
}

fn check_path(var: &str, flag: &str, path: &str) -> Result<(), ConfigError> {
    let body = path.strip_suffix("/{flow}").unwrap_or(path);
    if !path.starts_with('/') || path.len() < 2 || body.contains(['{', '}', '*', '?', '#', ' ']) {
        return Err(error(
            var,
            flag,
            path,
            "expected a path like /flow-endpoint or /flows/{flow} (no other {, }, *, ?, # or spaces)",
        ));
    }
    Ok(())
}

fn check_backend(var: &str, flag: &str, url: &str) -> Result<(), ConfigError> {
    crate::upstream::parse_targets(url)
        .map(drop)
        .map_err(|e| error(var, flag, url, &e.to_string()))
}

/// Where a healthcheck on the same host reaches the admin listener configured as
/// `admin_listen`: that address, with an unspecified IP (`0.0.0.0`, `[::]`) replaced
/// by loopback, since a listener bound to every interface answers there too.
pub fn admin_probe_address(admin_listen: &str) -> Result<SocketAddr, ConfigError> {
    let var = "FLOWGATE_ADMIN_LISTEN";
    if admin_listen == "off" {
        return Err(error(
            var,
            "admin-listen",
            admin_listen,
            "the admin listener is off, so there is nothing to ask",
        ));
    }
    let mut addr: SocketAddr = admin_listen.parse().map_err(|_| {
        error(
            var,
            "admin-listen",
            admin_listen,
            "expected an address like 0.0.0.0:9464",
        )
    })?;
    if addr.port() == 0 {
        return Err(error(
            var,
            "admin-listen",
            admin_listen,
            "port 0 is chosen at start, so a healthcheck cannot know it",
        ));
    }
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    Ok(addr)
}

/// Flow names are 1–64 ASCII letters, digits, `_` or `-`.
pub fn valid_flow_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["flowgate-gateway"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_args(args(&[])).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(config.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.tls, TlsSource::Generated);
        let paths: Vec<_> = config
            .routes
            .iter()
            .map(|r| (r.path.as_str(), &r.flow, &r.mode))
            .collect();
        assert_eq!(
            paths,
            [
                ("/flow-endpoint", &FlowSource::Default, &ModeConfig::Plain),
                ("/flows/{flow}", &FlowSource::FromPath, &ModeConfig::Plain)
            ]
        );
        assert!(
            config
                .routes
                .iter()
                .all(|r| r.backend == "http://127.0.0.1:50051")
        );
    }

    #[test]
    fn meta_mode_from_the_environment() {
        let config = Config::from_args(args(&[
            "--mode",
            "meta",
            "--private-key",
            "a.pem, b.pem",
            "--private-key-passphrase",
            "pass",
            "--app-secret",
            "s1,s2",
        ]))
        .unwrap();
        let ModeConfig::Meta(meta) = &config.routes[0].mode else {
            panic!("meta expected")
        };
        assert_eq!(
            meta.private_keys,
            [PathBuf::from("a.pem"), PathBuf::from("b.pem")]
        );
        assert_eq!(meta.passphrase, Some(Secret::new("pass")));
        assert_eq!(meta.app_secrets, [Secret::new("s1"), Secret::new("s2")]);
        // Secrets never show in Debug output.
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("pass\"") && !debug.contains("s1"),
            "{debug}"
        );
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "nowhere"], "FLOWGATE_LISTEN"),
            (&["--admin-listen", "1.2.3.4"], "FLOWGATE_ADMIN_LISTEN"),
            (&["--backend", "grpc://x"], "FLOWGATE_BACKEND"),
            (&["--backend", "http://"], "FLOWGATE_BACKEND"),
            (&["--path", "flow"], "FLOWGATE_PATH"),
            (&["--path", "/flows/x"], "FLOWGATE_PATH"),
            (&["--path", "/"], "FLOWGATE_PATH"),
            (&["--mode", "json"], "FLOWGATE_MODE"),
            (&["--mode", "meta"], "FLOWGATE_PRIVATE_KEY"),
            (&["--app-secret", "s"], "FLOWGATE_APP_SECRET"),
            (&["--request-timeout", "10"], "FLOWGATE_REQUEST_TIMEOUT"),
            (&["--request-timeout", "5ms"], "FLOWGATE_REQUEST_TIMEOUT"),
            (&["--shutdown-grace", "soon"], "FLOWGATE_SHUTDOWN_GRACE"),
            (&["--dns-refresh", "1ms"], "FLOWGATE_DNS_REFRESH"),
            (&["--log-format", "xml"], "FLOWGATE_LOG_FORMAT"),
            (&["--max-in-flight", "0"], "FLOWGATE_MAX_IN_FLIGHT"),
            (&["--max-in-flight", "many"], "FLOWGATE_MAX_IN_FLIGHT"),
            (&["--backend", "http://a:1,ftp://b:2"], "FLOWGATE_BACKEND"),
            (&["--tls", "maybe"], "FLOWGATE_TLS"),
            (&["--tls-cert", "c.pem"], "FLOWGATE_TLS_KEY"),
            (&["--tls-key", "k.pem"], "FLOWGATE_TLS_CERT"),
            (&["--tls", "off", "--tls-key", "k.pem"], "FLOWGATE_TLS"),
            (&["--config", "/nonexistent/routes.toml"], "FLOWGATE_CONFIG"),
            (&["--config", "r.toml", "--mode", "meta"], "FLOWGATE_MODE"),
        ];
        for (argv, var) in cases {
            let err = Config::from_args(args(argv)).unwrap_err();
            assert_eq!(err.var, *var, "{argv:?}");
            let line = err.to_string();
            assert!(line.starts_with(&format!("invalid {var} ")), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        // A secret is never echoed back.
        let err = Config::from_args(args(&["--app-secret", "hunter2"])).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn healthchecks_ask_the_admin_listener_on_loopback() {
        let cases = [
            ("0.0.0.0:9464", Ok("127.0.0.1:9464")),
            ("[::]:9464", Ok("[::1]:9464")),
            ("127.0.0.1:9000", Ok("127.0.0.1:9000")),
            ("10.1.2.3:9464", Ok("10.1.2.3:9464")),
            ("off", Err("is off")),
            ("127.0.0.1:0", Err("port 0")),
            ("9464", Err("expected an address")),
        ];
        for (listen, expected) in cases {
            match (admin_probe_address(listen), expected) {
                (Ok(addr), Ok(want)) => assert_eq!(addr, want.parse().unwrap(), "{listen}"),
                (Err(e), Err(want)) => {
                    assert_eq!(e.var, "FLOWGATE_ADMIN_LISTEN");
                    assert!(e.to_string().contains(want), "{listen}: {e}");
                }
                (got, want) => panic!("{listen}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn tls_choices() {
        assert_eq!(
            Config::from_args(args(&["--tls", "off"])).unwrap().tls,
            TlsSource::Off
        );
        assert_eq!(
            Config::from_args(args(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]))
                .unwrap()
                .tls,
            TlsSource::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
        assert_eq!(
            Config::from_args(args(&["--admin-listen", "off"]))
                .unwrap()
                .admin_listen,
            None
        );
    }

    fn from_file(toml: &str) -> Result<Vec<RouteConfig>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, toml).unwrap();
        Config::from_args(args(&["--config", path.to_str().unwrap()])).map(|c| c.routes)
    }

    #[test]
    fn route_files() {
        let routes = from_file(
            r#"
            backend = "http://flows:50051"

            [[route]]
            path = "/whatsapp"
            flow = "signup"
            mode = "meta"
            private_keys = ["/keys/new.pem", "/keys/old.pem"]
            private_key_passphrase = "pass"
            app_secrets = ["s1", "s2"]

            [[route]]
            path = "/provider/{flow}"
            backend = "http://other:50051"
            "#,
        )
        .unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].path, "/whatsapp");
        assert_eq!(routes[0].flow, FlowSource::Named("signup".into()));
        assert_eq!(routes[0].backend, "http://flows:50051");
        let ModeConfig::Meta(meta) = &routes[0].mode else {
            panic!("meta expected")
        };
        assert_eq!(meta.private_keys.len(), 2);
        assert_eq!(meta.app_secrets.len(), 2);
        assert_eq!(routes[1].flow, FlowSource::FromPath);
        assert_eq!(routes[1].mode, ModeConfig::Plain);
        assert_eq!(routes[1].backend, "http://other:50051");
    }

    #[test]
    fn bad_route_files_say_which_route() {
        let cases = [
            ("", "no [[route]]"),
            ("[[route]]\npath = \"/a\"\nmode = \"xml\"", "route 1 (/a)"),
            (
                "[[route]]\npath = \"/a\"\nmode = \"meta\"",
                "needs private_keys",
            ),
            (
                "[[route]]\npath = \"/a\"\n[[route]]\npath = \"/a\"",
                "route 2 (/a)",
            ),
            (
                "[[route]]\npath = \"/a/{flow}\"\nflow = \"x\"",
                "takes the flow from the path",
            ),
            (
                "[[route]]\npath = \"/a\"\nflow = \"no spaces\"",
                "`flow` must be",
            ),
            (
                "[[route]]\npath = \"/a\"\nbackend = \"ftp://x\"",
                "expected http://host:port",
            ),
            (
                "[[route]]\npath = \"/a\"\nprivate_keys = [\"k.pem\"]",
                "apply to mode = \"meta\" only",
            ),
            ("[[route]]\npath = \"a\"", "expected a path"),
            (
                "[[route]]\npath = \"/a\"\ncolour = \"blue\"",
                "unknown field",
            ),
            (
                "[[route]]\npath = \"/a\"\nmode = \"meta\"\nprivate_keys = [\"k\"]\napp_secrets_env = \"FLOWGATE_TEST_UNSET_VAR\"",
                "FLOWGATE_TEST_UNSET_VAR is not set",
            ),
        ];
        for (toml, expected) in cases {
            let err = from_file(toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}

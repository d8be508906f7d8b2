//! The command line of `flowgate-gateway`: every flag with its environment variable and
//! default, each value read into its type as clap parses it, and the subcommands.
//! A value that cannot be read stops the gateway with one line naming the variable
//! (see `flowgate_cli::checked`); checks that need several values are in `load`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flowgate_cli::{ConfigError, HealthcheckTimeout, checked, parse_duration, positive_duration};
use flowgate_telemetry::LogFormat;

use super::model::{Backend, Mode, Secret, check_path};

/// The flags and variables, each already of its type.
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
    #[arg(
        long,
        env = "FLOWGATE_LISTEN",
        default_value = "0.0.0.0:8443",
        value_parser = checked(address)
    )]
    pub listen: SocketAddr,
    /// Address of the admin listener (`GET /healthz`, `GET /readyz`), or `off`.
    #[arg(
        long,
        env = "FLOWGATE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9464",
        value_parser = checked(AdminListen::parse)
    )]
    pub admin_listen: AdminListen,
    /// `on` serves the flow preview at `/preview/` on the admin listener: a page that
    /// runs flows through the routes without Meta's envelope or signature.
    #[arg(
        long,
        env = "FLOWGATE_PREVIEW",
        default_value = "off",
        value_parser = checked(on_off),
        action = clap::ArgAction::Set
    )]
    pub preview: bool,
    /// The flow service: comma-separated `http://host:port` URLs; names are re-resolved so
    /// every replica behind them is used (the default for FLOWGATE_CONFIG routes too).
    #[arg(
        long,
        env = "FLOWGATE_BACKEND",
        default_value = "http://127.0.0.1:50051",
        value_parser = checked(Backend::parse)
    )]
    pub backend: Backend,
    /// The bearer token sent on every flowgate.v1 call (`authorization: Bearer
    /// <token>`): the flow service's FLOW_SERVICE_AUTH_TOKEN.
    #[arg(long, env = "FLOWGATE_BACKEND_AUTH_TOKEN", hide_env_values = true)]
    pub backend_auth_token: Option<String>,
    /// A file holding that token (trimmed), instead of FLOWGATE_BACKEND_AUTH_TOKEN.
    #[arg(long, env = "FLOWGATE_BACKEND_AUTH_TOKEN_FILE")]
    pub backend_auth_token_file: Option<PathBuf>,
    /// `https://` backends: PEM CA bundle to trust [default: the system's roots].
    #[arg(long, env = "FLOWGATE_BACKEND_CA")]
    pub backend_ca: Option<PathBuf>,
    /// `https://` backends: PEM client certificate chain, for mutual TLS.
    #[arg(long, env = "FLOWGATE_BACKEND_CLIENT_CERT")]
    pub backend_client_cert: Option<PathBuf>,
    /// PEM private key of FLOWGATE_BACKEND_CLIENT_CERT.
    #[arg(long, env = "FLOWGATE_BACKEND_CLIENT_KEY")]
    pub backend_client_key: Option<PathBuf>,
    /// How often backend names are resolved again.
    #[arg(
        long,
        env = "FLOWGATE_DNS_REFRESH",
        default_value = "5s",
        value_parser = checked(from_100ms_to_1d)
    )]
    pub dns_refresh: Duration,
    /// Requests handled at once; beyond, 503 with Retry-After at once.
    #[arg(
        long,
        env = "FLOWGATE_MAX_IN_FLIGHT",
        default_value = "1024",
        value_parser = checked(above_zero)
    )]
    pub max_in_flight: usize,
    /// Threads that serve the connections; 0 is one for each CPU the process may use.
    /// Each thread runs its own share of the connections and its own HTTP/2 connection
    /// to each flow service replica, so a request is never handed from one thread to
    /// another. A connection stays on the thread it was given at accept, so one busy
    /// request (a Meta request's RSA decryption is a few hundred microseconds of CPU)
    /// holds up the others on its thread meanwhile. TOKIO_WORKER_THREADS is not read.
    #[arg(
        long,
        env = "FLOWGATE_WORKER_THREADS",
        default_value = "0",
        value_parser = checked(flowgate_cli::thread_count)
    )]
    pub worker_threads: usize,
    /// The path that reaches the flow service's default flow [default: /flow-endpoint].
    /// `/flows/{name}` reaches flow `name`.
    #[arg(long, env = "FLOWGATE_PATH", value_parser = checked(default_path))]
    pub path: Option<String>,
    /// `plain` (JSON in, JSON out: a solution provider's endpoint) or `meta` (Meta's
    /// encrypted endpoint) [default: plain].
    #[arg(long, env = "FLOWGATE_MODE", value_parser = checked(str::parse::<Mode>))]
    pub mode: Option<Mode>,
    /// Meta mode: PEM private key file(s), comma-separated for rotation (PKCS#1,
    /// PKCS#8, or encrypted PKCS#8).
    #[arg(long, env = "FLOWGATE_PRIVATE_KEY", value_parser = checked(key_files))]
    pub private_key: Option<KeyFiles>,
    /// Meta mode: the passphrase of encrypted private keys.
    #[arg(
        long,
        env = "FLOWGATE_PRIVATE_KEY_PASSPHRASE",
        hide_env_values = true,
        value_parser = checked(secret)
    )]
    pub private_key_passphrase: Option<Secret>,
    /// Meta mode: the app secret(s) that sign requests (`X-Hub-Signature-256`),
    /// comma-separated during a rotation. Unset: no signature check (warns).
    #[arg(
        long,
        env = "FLOWGATE_APP_SECRET",
        hide_env_values = true,
        value_parser = checked(app_secrets)
    )]
    pub app_secret: Option<AppSecrets>,
    /// A TOML file listing several routes, each with its own path, flow, mode, keys,
    /// secrets and backend. Replaces FLOWGATE_PATH, FLOWGATE_MODE, FLOWGATE_PRIVATE_KEY,
    /// FLOWGATE_PRIVATE_KEY_PASSPHRASE and FLOWGATE_APP_SECRET.
    #[arg(long, env = "FLOWGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The whole budget of a request, from arrival to answer (like `10s`, `1500ms`).
    #[arg(
        long,
        env = "FLOWGATE_REQUEST_TIMEOUT",
        default_value = "10s",
        value_parser = checked(from_100ms_to_1d)
    )]
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    #[arg(
        long,
        env = "FLOWGATE_SHUTDOWN_GRACE",
        default_value = "15s",
        value_parser = checked(parse_duration)
    )]
    pub shutdown_grace: Duration,
    /// Log lines as `text` or `json` (one object per line, with request id and trace id).
    #[arg(
        long,
        env = "FLOWGATE_LOG_FORMAT",
        default_value = "text",
        value_parser = checked(str::parse::<LogFormat>)
    )]
    pub log_format: LogFormat,
    /// `on`, or `off` to serve plain HTTP behind a TLS-terminating proxy.
    #[arg(
        long,
        env = "FLOWGATE_TLS",
        default_value = "on",
        value_parser = checked(on_off),
        action = clap::ArgAction::Set
    )]
    pub tls: bool,
    /// PEM certificate chain. With neither this nor the key, a self-signed certificate is generated.
    #[arg(long, env = "FLOWGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for the certificate.
    #[arg(long, env = "FLOWGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How long a client may take to finish the TLS handshake.
    #[arg(
        long,
        env = "FLOWGATE_HANDSHAKE_TIMEOUT",
        default_value = "5s",
        value_parser = checked(positive_duration)
    )]
    pub handshake_timeout: Duration,
    /// How long a new connection may take to send its first request's headers.
    #[arg(
        long,
        env = "FLOWGATE_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = checked(positive_duration)
    )]
    pub header_timeout: Duration,
    /// How long a connection with no request in flight stays open (keep-alive).
    #[arg(
        long,
        env = "FLOWGATE_IDLE_TIMEOUT",
        default_value = "75s",
        value_parser = checked(positive_duration)
    )]
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged when the client sends nothing.
    #[arg(
        long,
        env = "FLOWGATE_KEEPALIVE_INTERVAL",
        default_value = "20s",
        value_parser = checked(positive_duration)
    )]
    pub keepalive_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    #[arg(
        long,
        env = "FLOWGATE_KEEPALIVE_TIMEOUT",
        default_value = "10s",
        value_parser = checked(positive_duration)
    )]
    pub keepalive_timeout: Duration,
    /// Open public connections at most (beyond, closed at once), or `auto`: what
    /// the open-file limit allows, less a reserve.
    #[arg(
        long,
        env = "FLOWGATE_MAX_CONNECTIONS",
        default_value = "auto",
        value_parser = checked(max_connections)
    )]
    pub max_connections: MaxConnections,
    /// Open public connections from one IP address at most; 0 is no limit.
    #[arg(
        long,
        env = "FLOWGATE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value = "0",
        value_parser = checked(whole_number)
    )]
    pub max_connections_per_address: usize,
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
    /// Write a new random bearer token for the gRPC hop (32 random bytes, base64url) to
    /// PATH, readable by its owner only, unless PATH exists already: then keep it.
    /// Made for containers that share the token through a volume.
    GenToken {
        /// Where to write the token; parent directories are created.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Ask a running gateway on this host whether it is ready (`GET /readyz` on the
    /// admin listener, FLOWGATE_ADMIN_LISTEN): exit 0 on 200, 1 otherwise. Made for
    /// container healthchecks, where the image has no shell and no curl.
    Healthcheck {
        /// The admin path to ask: `/readyz` (the flow service is serving) or
        /// `/healthz` (the gateway is alive).
        #[arg(long, default_value = "/readyz", value_parser = checked(probe_path))]
        path: String,
        #[command(flatten)]
        timeout: HealthcheckTimeout,
    },
}

/// The admin listener's address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    Off,
    At(SocketAddr),
}

impl AdminListen {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(AdminListen::Off),
            _ => text
                .parse()
                .map(AdminListen::At)
                .map_err(|_| "expected an address like 127.0.0.1:9464, or off".to_owned()),
        }
    }

    /// `None` when off.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            AdminListen::Off => None,
            AdminListen::At(addr) => Some(addr),
        }
    }
}

/// `FLOWGATE_PRIVATE_KEY`: the files, in order; blank entries are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles(pub Vec<PathBuf>);

/// `FLOWGATE_APP_SECRET`: at least one secret; blank entries are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSecrets(pub Vec<Secret>);

/// Where a healthcheck on the same host reaches the admin listener configured as
/// `admin_listen`: that address, with an unspecified IP (`0.0.0.0`, `[::]`) replaced
/// by loopback, since a listener bound to every interface answers there too.
pub fn admin_probe_address(admin_listen: AdminListen) -> Result<SocketAddr, ConfigError> {
    let refuse = |value: &str, reason: &str| {
        ConfigError::new("FLOWGATE_ADMIN_LISTEN", "admin-listen", value, reason)
    };
    let mut addr = match admin_listen {
        AdminListen::Off => {
            return Err(refuse(
                "off",
                "the admin listener is off, so there is nothing to ask",
            ));
        }
        AdminListen::At(addr) => addr,
    };
    if addr.port() == 0 {
        return Err(refuse(
            &addr.to_string(),
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

/// Splits a comma-separated list, dropping blank entries.
pub(crate) fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "expected an address like 0.0.0.0:8443".to_owned())
}

/// A budget or period below 100 ms cannot be met (or would spin); one beyond a day
/// means nothing for a request or a lookup. (Durations the clock cannot hold are
/// refused by `parse_duration` itself.)
fn from_100ms_to_1d(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d < Duration::from_millis(100) => Err("must be at least 100ms".to_owned()),
        d if d > Duration::from_secs(86_400) => Err("must be at most 1d".to_owned()),
        d => Ok(d),
    }
}

/// `FLOWGATE_MAX_CONNECTIONS`: a cap, or `None` for `auto` (derived from the open-file limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxConnections(pub Option<usize>);

fn max_connections(text: &str) -> Result<MaxConnections, String> {
    match text {
        "auto" => Ok(MaxConnections(None)),
        _ => above_zero(text)
            .map(|n| MaxConnections(Some(n)))
            .map_err(|_| "expected auto or a whole number above 0".to_owned()),
    }
}

fn whole_number(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .map_err(|_| "expected a whole number".to_owned())
}

fn above_zero(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number above 0".to_owned()),
    }
}

/// `FLOWGATE_PATH` reaches the default flow, so it cannot be a `/flows/` path.
fn default_path(text: &str) -> Result<String, String> {
    check_path(text)?;
    if text.ends_with("/{flow}") || text.starts_with("/flows/") {
        return Err("must not be under /flows/, which names flows".to_owned());
    }
    Ok(text.to_owned())
}

fn key_files(text: &str) -> Result<KeyFiles, String> {
    Ok(KeyFiles(split_list(text).map(PathBuf::from).collect()))
}

fn secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

fn app_secrets(text: &str) -> Result<AppSecrets, String> {
    let secrets: Vec<Secret> = split_list(text).map(Secret::new).collect();
    if secrets.is_empty() {
        return Err("no app secret in the list; leave it unset to check no signatures".to_owned());
    }
    Ok(AppSecrets(secrets))
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".to_owned()),
    }
}

/// The path goes into a request line as is: refuse anything that could end it.
fn probe_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("expected a path like /readyz".to_owned());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthchecks_ask_the_admin_listener_on_loopback() {
        let cases = [
            ("0.0.0.0:9464", Ok("127.0.0.1:9464")),
            ("[::]:9464", Ok("[::1]:9464")),
            ("127.0.0.1:9000", Ok("127.0.0.1:9000")),
            ("10.1.2.3:9464", Ok("10.1.2.3:9464")),
            ("off", Err("is off")),
            ("127.0.0.1:0", Err("port 0")),
        ];
        for (listen, expected) in cases {
            let listen = AdminListen::parse(listen).unwrap();
            match (admin_probe_address(listen), expected) {
                (Ok(addr), Ok(want)) => assert_eq!(addr, want.parse().unwrap(), "{listen:?}"),
                (Err(e), Err(want)) => {
                    assert_eq!(e.var, "FLOWGATE_ADMIN_LISTEN");
                    assert!(e.to_string().contains(want), "{listen:?}: {e}");
                }
                (got, want) => panic!("{listen:?}: got {got:?}, want {want:?}"),
            }
        }
        let err = AdminListen::parse("9464").unwrap_err();
        assert!(err.contains("expected an address"), "{err}");
    }

    #[test]
    fn lists_drop_blank_entries() {
        assert_eq!(
            key_files(" a.pem,, b.pem ,").unwrap(),
            KeyFiles(vec!["a.pem".into(), "b.pem".into()])
        );
        assert_eq!(
            app_secrets("s1, ,s2").unwrap(),
            AppSecrets(vec![Secret::new("s1"), Secret::new("s2")])
        );
        let err = app_secrets(" , ").unwrap_err();
        assert!(err.starts_with("no app secret"), "{err}");
    }
}

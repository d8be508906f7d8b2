//! Configuration from environment variables, each with a matching flag.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
pub use flowgate_cli::ConfigError;
use flowgate_cli::{
    HealthcheckTimeout, SecretVars, bearer_token, checked, parse_duration, positive_duration,
    secret as value_or_file,
};

use crate::auth::AuthToken;
use crate::server::ServerTls;
use crate::store::StoreOptions;
use crate::tokens::{Secret, TokenPolicy};

/// The store without FLOW_SERVICE_DATABASE_URL or its `_FILE`: a SQLite file in the
/// working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://flow-service.db";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flow-service",
    version,
    about = "The flowgate reference flow service (gRPC, flowgate.v1)."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address of the gRPC listener. Beyond loopback, set FLOW_SERVICE_AUTH_TOKEN or
    /// FLOW_SERVICE_TLS_CLIENT_CA too (see "Securing the hop" in the README).
    #[arg(long, env = "FLOW_SERVICE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,

    /// The bearer token every call but gRPC health must carry (`authorization: Bearer
    /// <token>`, the gateway's FLOWGATE_BACKEND_AUTH_TOKEN); others get UNAUTHENTICATED.
    #[arg(long, env = "FLOW_SERVICE_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// A file holding that token (trimmed), instead of FLOW_SERVICE_AUTH_TOKEN.
    #[arg(long, env = "FLOW_SERVICE_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// PEM certificate chain of the gRPC listener; with FLOW_SERVICE_TLS_KEY, turns TLS on.
    #[arg(long, env = "FLOW_SERVICE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of FLOW_SERVICE_TLS_CERT.
    #[arg(long, env = "FLOW_SERVICE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: every call but gRPC health must come with a client certificate it
    /// signed (mutual TLS). Needs FLOW_SERVICE_TLS_CERT and FLOW_SERVICE_TLS_KEY.
    #[arg(long, env = "FLOW_SERVICE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Refuse (INTERNAL) answers that break their flow's Flow JSON instead of sending
    /// them with a warning: 1/true/on/yes or 0/false/off/no. `--strict` alone means 1.
    #[arg(
        long,
        env = "FLOW_SERVICE_STRICT",
        default_value = "0",
        num_args = 0..=1,
        default_missing_value = "1"
    )]
    pub strict: String,

    /// After SIGTERM, how long to keep serving while reporting NOT_SERVING, so that
    /// gateways move traffic away first.
    #[arg(long, env = "FLOW_SERVICE_DRAIN_DELAY", default_value = "2s")]
    pub drain_delay: String,

    /// At shutdown, once every connection has closed, how long calls whose caller went
    /// away may still run before the store closes (a call with a deadline ends at it):
    /// at least the gateway's FLOWGATE_REQUEST_TIMEOUT.
    #[arg(long, env = "FLOW_SERVICE_SETTLE_TIMEOUT", default_value = "10s")]
    pub settle_timeout: String,

    /// Address of the admin listener (`GET /metrics`), or `off`.
    #[arg(
        long,
        env = "FLOW_SERVICE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9465"
    )]
    pub admin_listen: String,

    /// Log lines as `text` or `json` (one object per line, with request id and trace id).
    #[arg(long, env = "FLOW_SERVICE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Flow calls handled at once; beyond, RESOURCE_EXHAUSTED (the gateway's 503).
    #[arg(long, env = "FLOW_SERVICE_MAX_IN_FLIGHT", default_value = "512")]
    pub max_in_flight: String,

    /// Threads that run the calls: 1 runs every call on one thread (the default: a
    /// call's own work is tens of microseconds, and on a two-core machine a pool of two
    /// spent more CPU a call than one thread, in hand-overs between threads); N above 1
    /// a pool of N; 0 one for each CPU the process may use. TOKIO_WORKER_THREADS is not
    /// read. SQLite's writer has a thread of its own either way; a read of a SQLite file
    /// runs on the thread of its call, so while one waits for a lock (up to half of
    /// FLOW_SERVICE_DATABASE_TIMEOUT) or for a stalled disk, the thread's other calls
    /// wait too.
    #[arg(long, env = "FLOW_SERVICE_WORKER_THREADS", default_value = "1")]
    pub worker_threads: String,

    /// Where completions, call outcomes and sessions are kept: sqlite://PATH (created if
    /// missing), postgres://USER:PASSWORD@HOST:PORT/DB (several replicas), or memory:
    /// (this process only, lost on exit: for development) [default:
    /// sqlite://flow-service.db].
    #[arg(long, env = "FLOW_SERVICE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// A file holding that URL (trimmed), instead of FLOW_SERVICE_DATABASE_URL: a
    /// mounted secret, since the URL holds the database's password.
    #[arg(long, env = "FLOW_SERVICE_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Bound on each database operation; past it the call fails with UNAVAILABLE (HTTP
    /// 503). A read of a SQLite file waits at most half of it for a lock.
    #[arg(long, env = "FLOW_SERVICE_DATABASE_TIMEOUT", default_value = "2s")]
    pub database_timeout: String,

    /// Bound on opening the database at start: connecting and migrating its schema
    /// (creating a SQLite file); past it the start fails.
    #[arg(
        long,
        env = "FLOW_SERVICE_DATABASE_CONNECT_TIMEOUT",
        default_value = "10s"
    )]
    pub database_connect_timeout: String,

    /// How long a call's outcome is kept, so that a retry or resend gets it again.
    #[arg(long, env = "FLOW_SERVICE_IDEMPOTENCY_TTL", default_value = "24h")]
    pub idempotency_ttl: String,

    /// How long a flow token's session lives after its last change.
    #[arg(long, env = "FLOW_SERVICE_SESSION_TTL", default_value = "24h")]
    pub session_ttl: String,

    /// Which flow tokens are accepted: `open` (any non-empty token) or `signed` (only
    /// tokens made with FLOW_SERVICE_TOKEN_SECRET, e.g. by `flow-service issue-token`).
    #[arg(long, env = "FLOW_SERVICE_TOKEN_POLICY", default_value = "open")]
    pub token_policy: String,

    /// The secret that signs flow tokens: at least 32 bytes. Required by the `signed`
    /// policy and by `issue-token`.
    #[arg(
        long,
        env = "FLOW_SERVICE_TOKEN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub token_secret: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Prints a signed flow token for the Flow message a business sends.
    IssueToken {
        /// The flow the token opens (its name, e.g. `signup`).
        #[arg(long)]
        flow: String,
        /// How long the token is valid, e.g. 90s, 15m, 24h.
        #[arg(long)]
        ttl: String,
        /// The business's identifier for the recipient, handed to the flow's handlers.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Ask a flow service running on this host (FLOW_SERVICE_LISTEN) whether it is
    /// serving, over `grpc.health.v1`: exit 0 if SERVING, 1 otherwise. Made for
    /// container healthchecks, where the image has no shell and no grpcurl.
    Healthcheck {
        /// The service name to ask about; empty means the whole server.
        #[arg(long, default_value = "")]
        service: String,
        #[command(flatten)]
        timeout: HealthcheckTimeout,
        /// The same wait in milliseconds; `--timeout` is the spelling both binaries share.
        #[arg(
            long,
            value_name = "MS",
            hide = true,
            conflicts_with = "timeout",
            value_parser = checked(healthcheck_ms)
        )]
        timeout_ms: Option<u64>,
    },
}

/// `--timeout-ms`: whole milliseconds, up to a day.
fn healthcheck_ms(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(ms) if (1..=86_400_000).contains(&ms) => Ok(ms),
        _ => Err("expected whole milliseconds from 1 to 86400000".to_owned()),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The PEM certificate chain the listener serves (`FLOW_SERVICE_TLS_CERT`), when TLS
    /// is on: the healthcheck expects exactly this certificate.
    pub tls_cert_pem: Option<Vec<u8>>,
    /// See [`crate::service::Flows::strict`].
    pub strict: bool,
    pub serve: crate::server::ServeOptions,
    /// `None` when the admin listener is off.
    pub admin_listen: Option<SocketAddr>,
    pub log_format: flowgate_telemetry::LogFormat,
    pub worker_threads: WorkerThreads,
    /// See [`crate::store::connect`].
    pub database_url: String,
    pub store: StoreOptions,
    pub tokens: TokenPolicy,
}

/// The threads that run the calls (`FLOW_SERVICE_WORKER_THREADS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerThreads {
    /// Every call, and every task, on the one thread that runs the runtime: no
    /// hand-over between threads, no thread woken to steal work.
    One,
    /// A pool of this many worker threads.
    Pool(usize),
    /// A pool with one worker for each CPU the process may use.
    PerCpu,
}

impl WorkerThreads {
    /// The threads a run of `command` gets: a health probe makes one call, so one
    /// thread, whatever the service it asks runs on; the service gets its setting.
    pub fn for_command(command: Option<&Command>, config: &Config) -> WorkerThreads {
        match command {
            Some(Command::Healthcheck { .. }) => WorkerThreads::One,
            _ => config.worker_threads,
        }
    }

    /// The runtime for this setting, with I/O and timers.
    pub fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        let pool = |threads| {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        };
        let mut builder = match self {
            WorkerThreads::One => tokio::runtime::Builder::new_current_thread(),
            WorkerThreads::Pool(n) => pool(n),
            // Counted here rather than left to tokio, which would obey
            // TOKIO_WORKER_THREADS.
            WorkerThreads::PerCpu => pool(flowgate_cli::cpus()),
        };
        builder.enable_all().build()
    }
}

/// What `flow-service issue-token` was asked for.
#[derive(Debug, Clone)]
pub struct IssueToken {
    pub secret: Secret,
    pub flow: String,
    pub ttl: Duration,
    pub subject: Option<String>,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let listen = args.listen.parse().map_err(|_| {
            ConfigError::new(
                "FLOW_SERVICE_LISTEN",
                "listen",
                &args.listen,
                "expected an address like 0.0.0.0:50051",
            )
        })?;
        let strict = match args.strict.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => true,
            "0" | "false" | "off" | "no" | "" => false,
            _ => {
                return Err(ConfigError::new(
                    "FLOW_SERVICE_STRICT",
                    "strict",
                    &args.strict,
                    "expected 1/true/on/yes or 0/false/off/no",
                ));
            }
        };
        type Parse = fn(&str) -> Result<Duration, String>;
        let duration = |parse: Parse, var: &str, flag: &str, value: &str| {
            parse(value).map_err(|reason| ConfigError::new(var, flag, value, reason))
        };
        let store = StoreOptions {
            timeout: duration(
                positive_duration,
                "FLOW_SERVICE_DATABASE_TIMEOUT",
                "database-timeout",
                &args.database_timeout,
            )?,
            connect_timeout: duration(
                positive_duration,
                "FLOW_SERVICE_DATABASE_CONNECT_TIMEOUT",
                "database-connect-timeout",
                &args.database_connect_timeout,
            )?,
            idempotency_ttl: duration(
                parse_duration,
                "FLOW_SERVICE_IDEMPOTENCY_TTL",
                "idempotency-ttl",
                &args.idempotency_ttl,
            )?,
            session_ttl: duration(
                parse_duration,
                "FLOW_SERVICE_SESSION_TTL",
                "session-ttl",
                &args.session_ttl,
            )?,
            ..StoreOptions::default()
        };
        // Where the URL came from, for a refusal to name.
        let (url, url_var, url_flag) = value_or_file(
            args.database_url.as_deref(),
            args.database_url_file.as_deref(),
            SecretVars {
                var: "FLOW_SERVICE_DATABASE_URL",
                flag: "database-url",
                file_var: "FLOW_SERVICE_DATABASE_URL_FILE",
                file_flag: "database-url-file",
            },
            "URL",
        )?
        .unwrap_or_else(|| {
            let default = DEFAULT_DATABASE_URL.to_owned();
            (default, "FLOW_SERVICE_DATABASE_URL", "database-url")
        });
        if !["memory:", "sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::new(
                url_var,
                url_flag,
                crate::store::redact(&url),
                "expected sqlite://PATH, postgres://USER:PASSWORD@HOST:PORT/DB or memory:",
            ));
        }
        let tokens = match args.token_policy.trim() {
            "open" | "" => TokenPolicy::Open,
            "signed" => TokenPolicy::Signed(secret(&args)?),
            _ => {
                return Err(ConfigError::new(
                    "FLOW_SERVICE_TOKEN_POLICY",
                    "token-policy",
                    &args.token_policy,
                    "expected open or signed",
                ));
            }
        };
        let drain_delay = duration(
            parse_duration,
            "FLOW_SERVICE_DRAIN_DELAY",
            "drain-delay",
            &args.drain_delay,
        )?;
        let settle_timeout = duration(
            parse_duration,
            "FLOW_SERVICE_SETTLE_TIMEOUT",
            "settle-timeout",
            &args.settle_timeout,
        )?;
        let max_in_flight = match args.max_in_flight.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ConfigError::new(
                    "FLOW_SERVICE_MAX_IN_FLIGHT",
                    "max-in-flight",
                    &args.max_in_flight,
                    "expected a whole number above 0",
                ));
            }
        };
        let worker_threads = match flowgate_cli::thread_count(&args.worker_threads) {
            Ok(0) => WorkerThreads::PerCpu,
            Ok(1) => WorkerThreads::One,
            Ok(n) => WorkerThreads::Pool(n),
            Err(reason) => {
                return Err(ConfigError::new(
                    "FLOW_SERVICE_WORKER_THREADS",
                    "worker-threads",
                    &args.worker_threads,
                    reason,
                ));
            }
        };
        let admin_listen = match args.admin_listen.as_str() {
            "off" => None,
            value => Some(value.parse().map_err(|_| {
                ConfigError::new(
                    "FLOW_SERVICE_ADMIN_LISTEN",
                    "admin-listen",
                    value,
                    "expected an address like 127.0.0.1:9465, or off",
                )
            })?),
        };
        let log_format = args.log_format.parse().map_err(|reason: String| {
            ConfigError::new(
                "FLOW_SERVICE_LOG_FORMAT",
                "log-format",
                &args.log_format,
                reason,
            )
        })?;
        let auth = bearer_token(
            args.auth_token.as_deref(),
            args.auth_token_file.as_deref(),
            SecretVars {
                var: "FLOW_SERVICE_AUTH_TOKEN",
                flag: "auth-token",
                file_var: "FLOW_SERVICE_AUTH_TOKEN_FILE",
                file_flag: "auth-token-file",
            },
        )?
        .map(|token| AuthToken::new(&token));
        let (tls, tls_cert_pem) = server_tls(&args)?.unzip();
        Ok(Config {
            listen,
            tls_cert_pem,
            strict,
            database_url: url,
            store,
            tokens,
            admin_listen,
            log_format,
            worker_threads,
            serve: crate::server::ServeOptions {
                drain_delay,
                max_in_flight,
                auth,
                tls,
                // The store is this process's own: its SQLite file is left whole at exit.
                close_store: true,
                settle_timeout,
            },
        })
    }

    /// Whether the gRPC listener is reachable beyond loopback and admits anyone: no
    /// token and no client certificates. The binary warns at start when it is.
    pub fn exposed(&self) -> bool {
        exposed(self.listen, &self.serve)
    }
}

/// See [`Config::exposed`].
pub fn exposed(listen: SocketAddr, serve: &crate::server::ServeOptions) -> bool {
    let client_certificates = serve
        .tls
        .as_ref()
        .is_some_and(ServerTls::requires_client_certificates);
    !listen.ip().is_loopback() && serve.auth.is_none() && !client_certificates
}

/// TLS of the gRPC listener from its files, with the certificate PEM; `None` when off.
/// A certificate without its key (or the reverse), or a client CA without both, is an
/// error naming the missing variable.
fn server_tls(args: &Args) -> Result<Option<(ServerTls, Vec<u8>)>, ConfigError> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (None, None) => {
            if let Some(ca) = &args.tls_client_ca {
                return Err(ConfigError::new(
                    "FLOW_SERVICE_TLS_CLIENT_CA",
                    "tls-client-ca",
                    ca.display().to_string(),
                    "needs FLOW_SERVICE_TLS_CERT and FLOW_SERVICE_TLS_KEY (client certificates need TLS)",
                ));
            }
            return Ok(None);
        }
        (Some(cert), Some(key)) => (cert, key),
        (Some(cert), None) => {
            return Err(ConfigError::new(
                "FLOW_SERVICE_TLS_KEY",
                "tls-key",
                "",
                format!(
                    "must be set together with FLOW_SERVICE_TLS_CERT ({})",
                    cert.display()
                ),
            ));
        }
        (None, Some(key)) => {
            return Err(ConfigError::new(
                "FLOW_SERVICE_TLS_CERT",
                "tls-cert",
                "",
                format!(
                    "must be set together with FLOW_SERVICE_TLS_KEY ({})",
                    key.display()
                ),
            ));
        }
    };
    let cert_pem = read_pem(cert, "FLOW_SERVICE_TLS_CERT", "tls-cert")?;
    let key_pem = read_pem(key, "FLOW_SERVICE_TLS_KEY", "tls-key")?;
    let ca_pem = args
        .tls_client_ca
        .as_deref()
        .map(|ca| read_pem(ca, "FLOW_SERVICE_TLS_CLIENT_CA", "tls-client-ca"))
        .transpose()?;
    let tls = ServerTls::from_pem(&cert_pem, &key_pem, ca_pem.as_deref()).map_err(|e| {
        ConfigError::new(
            "FLOW_SERVICE_TLS_CERT",
            "tls-cert",
            cert.display().to_string(),
            format!("{e} (with FLOW_SERVICE_TLS_KEY and FLOW_SERVICE_TLS_CLIENT_CA)"),
        )
    })?;
    Ok(Some((tls, cert_pem)))
}

/// A PEM file's contents, which must be there.
fn read_pem(path: &Path, var: &str, flag: &str) -> Result<Vec<u8>, ConfigError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(var, flag, &shown, format!("cannot read the file: {e}")))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::new(var, flag, &shown, "not a PEM file"));
    }
    Ok(pem)
}

impl IssueToken {
    /// The `issue-token` subcommand's request, if that is what `args` ask for.
    pub fn from_args(args: &Args) -> Option<Result<Self, ConfigError>> {
        let Some(Command::IssueToken { flow, ttl, subject }) = &args.command else {
            return None;
        };
        Some((|| {
            let ttl = parse_duration(ttl)
                .and_then(|d| {
                    if d.as_secs() == 0 {
                        Err("a token must live at least a second".to_owned())
                    } else {
                        Ok(d)
                    }
                })
                .map_err(|reason| ConfigError::new("issue-token", "ttl", ttl, reason))?;
            Ok(IssueToken {
                secret: secret(args)?,
                flow: flow.clone(),
                ttl,
                subject: subject.clone(),
            })
        })())
    }
}

/// The token secret, which must be there and long enough. Its value is never repeated
/// in an error.
fn secret(args: &Args) -> Result<Secret, ConfigError> {
    let error = |reason: String| {
        ConfigError::new("FLOW_SERVICE_TOKEN_SECRET", "token-secret", "***", reason)
    };
    let text = args
        .token_secret
        .as_deref()
        .ok_or_else(|| error("required by the signed token policy and by issue-token".into()))?;
    Secret::new(text.as_bytes()).map_err(|e| error(e.to_string()))
}

/// Where a healthcheck on the same host reaches the service listening on `listen`:
/// that address, with an unspecified IP (`0.0.0.0`, `[::]`) replaced by loopback,
/// since a listener bound to every interface answers there too.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resilience_settings_name_their_variable() {
        let parse = |argv: &[&str]| Config::from_args(Args::try_parse_from(argv).unwrap());
        let config = parse(&[
            "flow-service",
            "--drain-delay",
            "500ms",
            "--max-in-flight",
            "8",
            "--settle-timeout",
            "30s",
        ])
        .unwrap();
        assert_eq!(
            config.serve.drain_delay,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(config.serve.max_in_flight, 8);
        assert_eq!(config.serve.settle_timeout, Duration::from_secs(30));
        let defaults = parse(&["flow-service"]).unwrap().serve;
        assert_eq!(
            defaults.settle_timeout,
            crate::server::ServeOptions::default().settle_timeout
        );
        for (argv, var) in [
            (
                &["flow-service", "--drain-delay", "soon"][..],
                "FLOW_SERVICE_DRAIN_DELAY",
            ),
            (
                &["flow-service", "--max-in-flight", "0"][..],
                "FLOW_SERVICE_MAX_IN_FLIGHT",
            ),
            (
                &["flow-service", "--settle-timeout", "later"][..],
                "FLOW_SERVICE_SETTLE_TIMEOUT",
            ),
        ] {
            assert_eq!(parse(argv).unwrap_err().var, var);
        }
    }

    #[test]
    fn listen_address() {
        let parse = |argv: &[&str]| Config::from_args(Args::try_parse_from(argv).unwrap());
        assert_eq!(
            parse(&["flow-service"]).unwrap().listen,
            "127.0.0.1:50051".parse().unwrap()
        );
        let err = parse(&["flow-service", "--listen", "50051"]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid FLOW_SERVICE_LISTEN "),
            "{err}"
        );
    }

    #[test]
    fn store_and_token_settings() {
        let parse = |argv: &[&str]| {
            let mut all = vec!["flow-service"];
            all.extend_from_slice(argv);
            Config::from_args(Args::try_parse_from(all).unwrap())
        };
        let config = parse(&[]).unwrap();
        assert_eq!(config.database_url, "sqlite://flow-service.db");
        // The help names the default by hand (clap shows only defaults it applies
        // itself): it must be the one applied.
        let help = <Args as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        let default = format!("[default:{DEFAULT_DATABASE_URL}]");
        assert!(
            help.replace(char::is_whitespace, "").contains(&default),
            "{help}"
        );
        assert!(config.serve.close_store, "the binary's store is its own");
        assert_eq!(config.store.idempotency_ttl, Duration::from_secs(86_400));
        assert_eq!(config.store.session_ttl, Duration::from_secs(86_400));
        assert_eq!(config.store.timeout, Duration::from_secs(2));
        assert_eq!(config.store.connect_timeout, Duration::from_secs(10));
        assert!(matches!(config.tokens, TokenPolicy::Open));

        let secret = "s".repeat(32);
        let config = parse(&[
            "--token-policy",
            "signed",
            "--token-secret",
            &secret,
            "--session-ttl",
            "15m",
            "--database-url",
            "postgres://u:p@127.0.0.1/db",
        ])
        .unwrap();
        assert!(matches!(config.tokens, TokenPolicy::Signed(_)));
        assert_eq!(config.store.session_ttl, Duration::from_secs(900));

        let errors = [
            (
                vec!["--token-policy", "signed"],
                "invalid FLOW_SERVICE_TOKEN_SECRET (--token-secret) \"***\": required",
            ),
            (
                vec!["--token-policy", "signed", "--token-secret", "short-secret"],
                "the secret has 12 bytes; use at least 32",
            ),
            (
                vec!["--token-policy", "closed"],
                "invalid FLOW_SERVICE_TOKEN_POLICY (--token-policy) \"closed\"",
            ),
            (
                vec!["--idempotency-ttl", "1 day"],
                "invalid FLOW_SERVICE_IDEMPOTENCY_TTL",
            ),
            (
                vec!["--database-timeout", "0s"],
                "invalid FLOW_SERVICE_DATABASE_TIMEOUT (--database-timeout) \"0s\": must be more than 0",
            ),
            (
                vec!["--database-connect-timeout", "0s"],
                "invalid FLOW_SERVICE_DATABASE_CONNECT_TIMEOUT (--database-connect-timeout) \"0s\": must be more than 0",
            ),
            (
                vec!["--database-url", "mysql://u:pw@db/x"],
                "\"mysql://u:***@db/x\": expected sqlite://",
            ),
        ];
        for (argv, expected) in errors {
            let err = parse(&argv).unwrap_err().to_string();
            assert!(err.contains(expected), "{argv:?}: {err}");
            assert!(
                !err.contains("short-secret") && !err.contains("pw@"),
                "{err}"
            );
        }
    }

    /// The URL holds the database's password, so it may come from a file (a mounted
    /// secret), and no refusal repeats it.
    #[test]
    fn the_database_url_from_a_file() {
        let parse = |argv: &[&str]| {
            let mut all = vec!["flow-service"];
            all.extend_from_slice(argv);
            Config::from_args(Args::try_parse_from(all).unwrap())
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://u:pw@127.0.0.1/db\n").unwrap();
        let file = file.to_str().unwrap();
        let config = parse(&["--database-url-file", file]).unwrap();
        assert_eq!(config.database_url, "postgres://u:pw@127.0.0.1/db");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, "mysql://u:pw@db/x").unwrap();
        let missing = dir.path().join("missing");
        let errors = [
            (
                vec![
                    "--database-url",
                    "postgres://u:pw@h/db",
                    "--database-url-file",
                    file,
                ],
                "FLOW_SERVICE_DATABASE_URL (--database-url) (value hidden): set FLOW_SERVICE_DATABASE_URL or FLOW_SERVICE_DATABASE_URL_FILE, not both",
            ),
            (
                vec!["--database-url-file", empty.to_str().unwrap()],
                "invalid FLOW_SERVICE_DATABASE_URL_FILE (--database-url-file)",
            ),
            (
                vec!["--database-url-file", missing.to_str().unwrap()],
                "cannot read the URL file",
            ),
            (
                vec!["--database-url-file", wrong.to_str().unwrap()],
                "invalid FLOW_SERVICE_DATABASE_URL_FILE (--database-url-file) \"mysql://u:***@db/x\": expected sqlite://",
            ),
        ];
        for (argv, expected) in errors {
            let err = parse(&argv).unwrap_err().to_string();
            assert!(err.contains(expected), "{argv:?}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn issue_token_arguments() {
        let args = |argv: &[&str]| {
            let mut all = vec![
                "flow-service",
                "--token-secret",
                "0123456789abcdef0123456789abcdef",
            ];
            all.extend_from_slice(argv);
            Args::try_parse_from(all).unwrap()
        };
        assert!(IssueToken::from_args(&args(&[])).is_none());
        let issue = IssueToken::from_args(&args(&[
            "issue-token",
            "--flow",
            "signup",
            "--ttl",
            "15m",
            "--subject",
            "c-1",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (issue.flow.as_str(), issue.ttl, issue.subject.as_deref()),
            ("signup", Duration::from_secs(900), Some("c-1"))
        );
        let err =
            IssueToken::from_args(&args(&["issue-token", "--flow", "signup", "--ttl", "soon"]))
                .unwrap()
                .unwrap_err();
        assert!(err.to_string().contains("--ttl"), "{err}");
    }

    /// The start-up warning: beyond loopback, with neither a token nor client
    /// certificates.
    #[test]
    fn exposure_needs_an_address_beyond_loopback_and_no_credentials() {
        let serve = |token: bool| crate::server::ServeOptions {
            auth: token.then(|| AuthToken::new("0123456789abcdef")),
            ..Default::default()
        };
        for (listen, token, exposed) in [
            ("0.0.0.0:50051", false, true),
            ("[::]:50051", false, true),
            ("10.0.0.7:50051", false, true),
            ("0.0.0.0:50051", true, false),
            ("127.0.0.1:50051", false, false),
            ("127.0.0.2:50051", false, false),
            ("[::1]:50051", false, false),
        ] {
            assert_eq!(
                super::exposed(listen.parse().unwrap(), &serve(token)),
                exposed,
                "{listen} token={token}"
            );
        }
        let parse = |argv: &[&str]| Config::from_args(Args::try_parse_from(argv).unwrap());
        assert!(
            !parse(&["flow-service"]).unwrap().exposed(),
            "the default is loopback"
        );
        assert!(
            parse(&["flow-service", "--listen", "0.0.0.0:50051"])
                .unwrap()
                .exposed()
        );
    }

    #[test]
    fn healthchecks_ask_on_loopback() {
        for (listen, expected) in [
            ("0.0.0.0:50051", "127.0.0.1:50051"),
            ("[::]:50051", "[::1]:50051"),
            ("10.0.0.7:7000", "10.0.0.7:7000"),
        ] {
            assert_eq!(
                probe_address(listen.parse().unwrap()),
                expected.parse().unwrap(),
                "{listen}"
            );
        }
    }

    #[test]
    fn a_health_probe_runs_on_one_thread_whatever_the_service_runs_on() {
        let threads = |argv: &[&str]| {
            let args = Args::try_parse_from(argv).unwrap();
            let command = args.command.clone();
            let config = Config::from_args(args).unwrap();
            WorkerThreads::for_command(command.as_ref(), &config)
        };
        for setting in ["0", "1", "3"] {
            let argv = ["flow-service", "--worker-threads", setting, "healthcheck"];
            assert_eq!(threads(&argv), WorkerThreads::One, "{setting}");
        }
        let serve = |setting| threads(&["flow-service", "--worker-threads", setting]);
        assert_eq!(serve("0"), WorkerThreads::PerCpu);
        assert_eq!(serve("3"), WorkerThreads::Pool(3));
    }
}

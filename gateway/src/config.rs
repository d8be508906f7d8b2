//! Configuration from environment variables, each with a matching command-line
//! flag (flags win). Every value is checked at start; a bad one stops the
//! gateway with one line naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The raw flags and variables, as clap reads them. Values stay strings here so
/// that [`Config::from_args`] can name the variable in every error.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flowgate-gateway",
    version,
    about = "The flowgate HTTPS edge for WhatsApp Flows endpoints."
)]
pub struct Args {
    /// Address of the public HTTPS listener.
    #[arg(long, env = "FLOWGATE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: String,
    /// Address of the admin listener (`GET /healthz`, `GET /readyz`), or `off`.
    #[arg(long, env = "FLOWGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9464")]
    pub admin_listen: String,
    /// The flow service, as `http://host:port`.
    #[arg(
        long,
        env = "FLOWGATE_BACKEND",
        default_value = "http://127.0.0.1:50051"
    )]
    pub backend: String,
    /// The path that reaches the flow service's default flow. `/flows/{name}` reaches flow `name`.
    #[arg(long, env = "FLOWGATE_PATH", default_value = "/flow-endpoint")]
    pub path: String,
    /// `plain`: the JSON-in/JSON-out endpoint of a solution provider.
    #[arg(long, env = "FLOWGATE_MODE", default_value = "plain")]
    pub mode: String,
    /// The whole budget of a request, from arrival to answer (like `10s`, `1500ms`).
    #[arg(long, env = "FLOWGATE_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: String,
    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    #[arg(long, env = "FLOWGATE_SHUTDOWN_GRACE", default_value = "15s")]
    pub shutdown_grace: String,
    /// `on`, or `off` to serve plain HTTP behind a TLS-terminating proxy.
    #[arg(long, env = "FLOWGATE_TLS", default_value = "on")]
    pub tls: String,
    /// PEM certificate chain. With neither this nor the key, a self-signed certificate is generated.
    #[arg(long, env = "FLOWGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for the certificate.
    #[arg(long, env = "FLOWGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

/// How the request and answer bodies are wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// JSON in, JSON out.
    Plain,
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
    pub backend: String,
    pub path: String,
    pub mode: Mode,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub tls: TlsSource,
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var} (--{flag}) {value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let err = |var, flag, value: &str, reason: &str| ConfigError {
            var,
            flag,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let addr = |var, flag, value: &str| {
            value
                .parse::<SocketAddr>()
                .map_err(|_| err(var, flag, value, "expected an address like 0.0.0.0:8443"))
        };
        let duration = |var, flag, value: &str| {
            parse_duration(value).map_err(|reason| err(var, flag, value, &reason))
        };

        let listen = addr("FLOWGATE_LISTEN", "listen", &args.listen)?;
        let admin_listen = match args.admin_listen.as_str() {
            "off" => None,
            value => Some(addr("FLOWGATE_ADMIN_LISTEN", "admin-listen", value)?),
        };
        crate::upstream::endpoint(&args.backend)
            .map_err(|e| err("FLOWGATE_BACKEND", "backend", &args.backend, &e.to_string()))?;
        let path = &args.path;
        if !path.starts_with('/')
            || path.len() < 2
            || path.contains(['{', '}', '*', '?', '#'])
            || path.starts_with("/flows/")
        {
            return Err(err(
                "FLOWGATE_PATH",
                "path",
                path,
                "expected a path like /flow-endpoint (not /, not under /flows/, no {, }, *, ? or #)",
            ));
        }
        let mode = match args.mode.as_str() {
            "plain" => Mode::Plain,
            "meta" => {
                return Err(err(
                    "FLOWGATE_MODE",
                    "mode",
                    "meta",
                    "meta mode is not available in this build; use plain",
                ));
            }
            other => return Err(err("FLOWGATE_MODE", "mode", other, "expected plain")),
        };
        let request_timeout = duration(
            "FLOWGATE_REQUEST_TIMEOUT",
            "request-timeout",
            &args.request_timeout,
        )?;
        if request_timeout < Duration::from_millis(100) {
            return Err(err(
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
        let tls = match (args.tls.as_str(), args.tls_cert, args.tls_key) {
            ("off", None, None) => TlsSource::Off,
            ("off", _, _) => {
                return Err(err(
                    "FLOWGATE_TLS",
                    "tls",
                    "off",
                    "FLOWGATE_TLS_CERT and FLOWGATE_TLS_KEY must not be set with TLS off",
                ));
            }
            ("on", None, None) => TlsSource::Generated,
            ("on", Some(cert), Some(key)) => TlsSource::Files { cert, key },
            ("on", Some(cert), None) => {
                return Err(err(
                    "FLOWGATE_TLS_KEY",
                    "tls-key",
                    "",
                    &format!(
                        "must be set together with FLOWGATE_TLS_CERT ({})",
                        cert.display()
                    ),
                ));
            }
            ("on", None, Some(key)) => {
                return Err(err(
                    "FLOWGATE_TLS_CERT",
                    "tls-cert",
                    "",
                    &format!(
                        "must be set together with FLOWGATE_TLS_KEY ({})",
                        key.display()
                    ),
                ));
            }
            (other, _, _) => return Err(err("FLOWGATE_TLS", "tls", other, "expected on or off")),
        };
        Ok(Config {
            listen,
            admin_listen,
            backend: args.backend,
            path: args.path,
            mode,
            request_timeout,
            shutdown_grace,
            tls,
        })
    }
}

/// Reads durations like `10s`, `1500ms`, `15m`, `2h`: a whole number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration like 10s, 1500ms or 15m";
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| EXPECTED.to_owned())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| EXPECTED.to_owned())?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(EXPECTED.to_owned()),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| "duration too long".to_owned())
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
    fn durations() {
        let cases = [
            ("10s", Ok(Duration::from_secs(10))),
            ("1500ms", Ok(Duration::from_millis(1500))),
            ("15m", Ok(Duration::from_secs(900))),
            ("2h", Ok(Duration::from_secs(7200))),
            ("0s", Ok(Duration::ZERO)),
            ("10", Err(())),
            ("s", Err(())),
            ("1.5s", Err(())),
            ("-1s", Err(())),
            ("10 s", Err(())),
            ("10d", Err(())),
            ("", Err(())),
            ("99999999999999999999h", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).map_err(|_| ()), expected, "{text}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_args(args(&[])).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(config.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.backend, "http://127.0.0.1:50051");
        assert_eq!(config.path, "/flow-endpoint");
        assert_eq!(config.mode, Mode::Plain);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.tls, TlsSource::Generated);
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
            (&["--request-timeout", "10"], "FLOWGATE_REQUEST_TIMEOUT"),
            (&["--request-timeout", "5ms"], "FLOWGATE_REQUEST_TIMEOUT"),
            (&["--shutdown-grace", "soon"], "FLOWGATE_SHUTDOWN_GRACE"),
            (&["--tls", "maybe"], "FLOWGATE_TLS"),
            (&["--tls-cert", "c.pem"], "FLOWGATE_TLS_KEY"),
            (&["--tls-key", "k.pem"], "FLOWGATE_TLS_CERT"),
            (&["--tls", "off", "--tls-key", "k.pem"], "FLOWGATE_TLS"),
        ];
        for (argv, var) in cases {
            let err = Config::from_args(args(argv)).unwrap_err();
            assert_eq!(err.var, *var, "{argv:?}");
            let line = err.to_string();
            assert!(line.starts_with(&format!("invalid {var} ")), "{line}");
            assert!(!line.contains('\n'), "{line}");
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
}

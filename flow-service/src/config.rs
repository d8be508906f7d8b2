//! Configuration from environment variables, each with a matching flag.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flow-service",
    version,
    about = "The flowgate reference flow service (gRPC, flowgate.v1)."
)]
pub struct Args {
    /// Address of the gRPC listener.
    #[arg(long, env = "FLOW_SERVICE_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: String,

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
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// See [`crate::service::Flows::strict`].
    pub strict: bool,
    pub serve: crate::server::ServeOptions,
    /// `None` when the admin listener is off.
    pub admin_listen: Option<SocketAddr>,
    pub log_format: flowgate_telemetry::LogFormat,
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
        let listen = args.listen.parse().map_err(|_| ConfigError {
            var: "FLOW_SERVICE_LISTEN",
            flag: "listen",
            value: args.listen.clone(),
            reason: "expected an address like 0.0.0.0:50051".into(),
        })?;
        let strict = match args.strict.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => true,
            "0" | "false" | "off" | "no" | "" => false,
            _ => {
                return Err(ConfigError {
                    var: "FLOW_SERVICE_STRICT",
                    flag: "strict",
                    value: args.strict.clone(),
                    reason: "expected 1/true/on/yes or 0/false/off/no".into(),
                });
            }
        };
        let drain_delay =
            flowgate_proto::parse_duration(&args.drain_delay).map_err(|reason| ConfigError {
                var: "FLOW_SERVICE_DRAIN_DELAY",
                flag: "drain-delay",
                value: args.drain_delay.clone(),
                reason,
            })?;
        let max_in_flight = match args.max_in_flight.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ConfigError {
                    var: "FLOW_SERVICE_MAX_IN_FLIGHT",
                    flag: "max-in-flight",
                    value: args.max_in_flight.clone(),
                    reason: "expected a whole number above 0".into(),
                });
            }
        };
        let admin_listen = match args.admin_listen.as_str() {
            "off" => None,
            value => Some(value.parse().map_err(|_| ConfigError {
                var: "FLOW_SERVICE_ADMIN_LISTEN",
                flag: "admin-listen",
                value: value.to_owned(),
                reason: "expected an address like 127.0.0.1:9465, or off".into(),
            })?),
        };
        let log_format = args.log_format.parse().map_err(|reason| ConfigError {
            var: "FLOW_SERVICE_LOG_FORMAT",
            flag: "log-format",
            value: args.log_format.clone(),
            reason,
        })?;
        Ok(Config {
            admin_listen,
            log_format,
            listen,
            strict,
            serve: crate::server::ServeOptions {
                drain_delay,
                max_in_flight,
            },
        })
    }
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
        ])
        .unwrap();
        assert_eq!(
            config.serve.drain_delay,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(config.serve.max_in_flight, 8);
        for (argv, var) in [
            (
                &["flow-service", "--drain-delay", "soon"][..],
                "FLOW_SERVICE_DRAIN_DELAY",
            ),
            (
                &["flow-service", "--max-in-flight", "0"][..],
                "FLOW_SERVICE_MAX_IN_FLIGHT",
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
            "0.0.0.0:50051".parse().unwrap()
        );
        let err = parse(&["flow-service", "--listen", "50051"]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid FLOW_SERVICE_LISTEN "),
            "{err}"
        );
    }
}

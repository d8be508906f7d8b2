//! Configuration from environment variables, each with a matching flag.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clap::{Parser, Subcommand};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flow-service",
    version,
    about = "The flowgate reference flow service (gRPC, flowgate.v1)."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

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
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask a flow service running on this host (FLOW_SERVICE_LISTEN) whether it is
    /// serving, over `grpc.health.v1`: exit 0 if SERVING, 1 otherwise. Made for
    /// container healthchecks, where the image has no shell and no grpcurl.
    Healthcheck {
        /// The service name to ask about; empty means the whole server.
        #[arg(long, default_value = "")]
        service: String,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// See [`crate::service::Flows::strict`].
    pub strict: bool,
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
        Ok(Config { listen, strict })
    }
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
}

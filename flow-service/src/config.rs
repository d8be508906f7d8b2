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
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
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
        Ok(Config { listen })
    }
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
}

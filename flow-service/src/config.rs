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

//! The command line: which implementation to play WhatsApp against, and how.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;

use crate::endpoint::EndpointOptions;
use crate::grpc::GrpcOptions;
use crate::scenario::Scenario;
use crate::{Options, Target};

/// Plays WhatsApp's side against a Flows endpoint (`--url`) or a `flowgate.v1` flow
/// service (`--grpc`): walks every screen of the Flow JSON and checks every answer.
/// Exits 0 only when every check passes.
#[derive(Debug, Parser)]
#[command(name = "flowgate-conform", version)]
pub struct Cli {
    /// The endpoint's URL, e.g. `https://flows.example.com/flow-endpoint`.
    #[arg(long, conflicts_with = "grpc", required_unless_present = "grpc")]
    pub url: Option<String>,
    /// A flowgate.v1 flow service, e.g. http://127.0.0.1:50051 (https:// with --ca).
    #[arg(long)]
    pub grpc: Option<String>,
    /// The flow to call (gRPC mode), as the gateway names it in the request context.
    #[arg(long, requires = "grpc")]
    pub flow: Option<String>,
    /// The Flow JSON the endpoint serves; every answer is checked against it.
    #[arg(long)]
    pub flow_json: PathBuf,
    /// PEM certificates to trust (the endpoint's or the flow service's TLS).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Accept any certificate from the endpoint (development only).
    #[arg(long, conflicts_with_all = ["ca", "grpc"])]
    pub insecure: bool,
    /// The endpoint's public key (PEM): requests are sealed with Meta's encryption.
    #[arg(long, conflicts_with = "grpc")]
    pub public_key: Option<PathBuf>,
    /// The app secret to sign requests with (X-Hub-Signature-256); used with --public-key.
    #[arg(long, env = "FLOWGATE_CONFORM_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// Form inputs by screen, and extra walks for branches (TOML, or JSON for *.json).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// The environment variable holding a bearer token for the flow service.
    #[arg(long, requires = "grpc")]
    pub token_env: Option<String>,
    /// A client certificate (PEM) for mutual TLS with the flow service.
    #[arg(long, requires = "key", conflicts_with = "url")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Print a machine-readable JSON report instead of one line per check.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// Reads the files the flags name into [`Options`].
    pub fn options(&self) -> anyhow::Result<Options> {
        let flow_json = read_text(&self.flow_json)?;
        let scenario = match &self.scenario {
            Some(path) => Scenario::load(path)?,
            None => Scenario::default(),
        };
        let ca_pem = self.ca.as_deref().map(read).transpose()?;
        let target = match (&self.url, &self.grpc) {
            (Some(url), None) => Target::Endpoint(EndpointOptions {
                url: url.clone(),
                ca_pem,
                insecure: self.insecure,
                public_key_pem: self.public_key.as_deref().map(read_text).transpose()?,
                // A signature only exists on an encrypted route.
                app_secret: self
                    .app_secret
                    .clone()
                    .filter(|_| self.public_key.is_some()),
            }),
            (None, Some(url)) => {
                let Some(flow) = &self.flow else {
                    bail!("--grpc needs --flow NAME: the flow to call");
                };
                let bearer =
                    match &self.token_env {
                        Some(var) => Some(std::env::var(var).with_context(|| {
                            format!("--token-env {var}: the variable is not set")
                        })?),
                        None => None,
                    };
                let identity = match (&self.cert, &self.key) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                };
                Target::Grpc(GrpcOptions {
                    url: url.clone(),
                    flow: flow.clone(),
                    bearer,
                    ca_pem,
                    identity,
                })
            }
            _ => bail!("give either --url or --grpc"),
        };
        Ok(Options {
            target,
            flow_json,
            scenario,
        })
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_exclude_each_other_and_grpc_needs_a_flow() {
        let parse = |args: &[&str]| Cli::try_parse_from(["flowgate-conform"].iter().chain(args));
        assert!(parse(&["--url", "https://x/", "--flow-json", "f.json"]).is_ok());
        assert!(parse(&["--url", "u", "--grpc", "g", "--flow-json", "f"]).is_err());
        assert!(parse(&["--flow-json", "f"]).is_err());
        assert!(parse(&["--grpc", "g", "--insecure", "--flow-json", "f"]).is_err());
        assert!(
            parse(&[
                "--url",
                "u",
                "--cert",
                "c",
                "--key",
                "k",
                "--flow-json",
                "f"
            ])
            .is_err()
        );
        let cli = parse(&["--grpc", "http://g", "--flow-json", "/nonexistent"]).unwrap();
        assert!(cli.options().is_err());
    }
}

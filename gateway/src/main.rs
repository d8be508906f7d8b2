//! `flowgate-gateway`: configuration → logging → TLS → routes → bind → serve until
//! SIGTERM or SIGINT. `flowgate-gateway keygen` makes a key pair for Meta's endpoint.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use flowgate_gateway::config::{Args, Command, Config, TlsSource};
use flowgate_gateway::crypto::keys;
use flowgate_gateway::tls::Tls;
use flowgate_gateway::{AppState, Listeners, run};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Keygen { out, encrypt }) = &args.command {
        return match keygen(out, *encrypt, args.private_key_passphrase.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flowgate-gateway keygen: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flowgate-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match flowgate_telemetry::init("flowgate-gateway", config.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("flowgate-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flowgate-gateway: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The last batch of spans is lost unless flushed.
    telemetry.shutdown();
    code
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let tls = match &config.tls {
        TlsSource::Off => {
            tracing::warn!(
                "TLS is off (FLOWGATE_TLS=off): serving plain HTTP; put a TLS-terminating proxy in front"
            );
            None
        }
        TlsSource::Generated => {
            tracing::warn!(
                "no FLOWGATE_TLS_CERT/FLOWGATE_TLS_KEY: serving a self-signed certificate for localhost, fit for local use only"
            );
            Some(Tls::self_signed()?)
        }
        TlsSource::Files { cert, key } => Some(Tls::from_pem_files(cert, key)?),
    };
    let state = AppState::from_config(&config)?;
    let shutdown = shutdown_signal()?;
    let public = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on FLOWGATE_LISTEN {}", config.listen))?;
    let admin = config
        .admin_listen
        .map(|addr| {
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on FLOWGATE_ADMIN_LISTEN {addr}"))
        })
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", public.local_addr()?);
    for route in &config.routes {
        tracing::info!(
            url = %format!("{base}{}", route.path),
            flow = ?route.flow,
            mode = if matches!(route.mode, flowgate_gateway::config::ModeConfig::Plain) { "plain" } else { "meta" },
            backend = %route.backend,
            "route",
        );
    }
    tracing::info!(
        url = %base,
        admin = ?admin.as_ref().map(|a| a.local_addr()).transpose()?,
        "flowgate gateway listening",
    );
    run(
        Listeners { public, admin },
        state,
        tls,
        shutdown,
        config.shutdown_grace,
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Writes a new private key to `out` (readable by its owner only) and prints the public key.
fn keygen(out: &Path, encrypt: bool, passphrase: Option<&str>) -> anyhow::Result<()> {
    let passphrase = match (encrypt, passphrase) {
        (false, _) => None,
        (true, Some(p)) if !p.is_empty() => Some(p.as_bytes()),
        (true, _) => {
            anyhow::bail!("--encrypt needs the passphrase in FLOWGATE_PRIVATE_KEY_PASSPHRASE")
        }
    };
    let generated = keys::generate(passphrase)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.write_all(generated.private_pem.as_bytes())?;
    eprintln!(
        "wrote the private key to {}{}; upload this public key to WhatsApp:",
        out.display(),
        if encrypt { " (encrypted)" } else { "" }
    );
    print!("{}", generated.public_pem);
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed now, before
/// the caller announces that it listens, so an early signal is never lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}

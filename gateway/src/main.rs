//! `flowgate-gateway`: configuration → logging → TLS → bind → serve until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use flowgate_gateway::config::{Args, Config, Mode, TlsSource};
use flowgate_gateway::envelope::Envelope;
use flowgate_gateway::tls::Tls;
use flowgate_gateway::upstream::Upstream;
use flowgate_gateway::{AppState, Listeners, run, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_args(Args::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flowgate-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flowgate-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    let public = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on FLOWGATE_LISTEN {}", config.listen))?;
    let admin = config
        .admin_listen
        .map(|addr| {
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on FLOWGATE_ADMIN_LISTEN {addr}"))
        })
        .transpose()?;
    let state = AppState {
        upstream: Upstream::new(&config.backend)?,
        envelope: match config.mode {
            Mode::Plain => Envelope::Plain,
        },
        path: config.path.clone(),
        request_timeout: config.request_timeout,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        url = %format!("{scheme}://{}{}", public.local_addr()?, config.path),
        admin = ?admin.as_ref().map(|a| a.local_addr()).transpose()?,
        backend = %config.backend,
        mode = ?config.mode,
        "flowgate gateway listening",
    );
    run(
        Listeners { public, admin },
        state,
        tls,
        shutdown_signal(),
        config.shutdown_grace,
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

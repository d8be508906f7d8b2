//! `flow-service`: configuration → logging → bind → serve the reference flows until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use flow_service::config::{Args, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_args(Args::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flow-service: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match flowgate_telemetry::init("flow-service", config.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("flow-service: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flow-service: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The last batch of spans is lost unless flushed.
    telemetry.shutdown();
    code
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Signal handlers go in before "listening" is announced: whoever waits for that
    // line may send SIGTERM at once.
    let shutdown = shutdown_signal().context("installing signal handlers")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on FLOW_SERVICE_LISTEN {}", config.listen))?;
    let flows = flow_service::flows::reference().strict(config.strict);
    if let Some(addr) = config.admin_listen {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on FLOW_SERVICE_ADMIN_LISTEN {addr}"))?;
        tracing::info!(%addr, "admin listening (GET /metrics)");
        let router = flow_service::server::admin_router(flows.clone());
        tokio::spawn(async move { axum::serve(admin, router).await });
    }
    tracing::info!(addr = %listener.local_addr()?, ?flows, "flow service listening");
    flow_service::server::run_with(listener, flows, shutdown, config.serve).await?;
    tracing::info!("stopped");
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

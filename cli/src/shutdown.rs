//! The signal that starts a graceful shutdown.

use std::future::Future;

/// Completes on the first SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so a caller that installs them before
/// announcing that it listens never loses an early signal.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
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

//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Nothing logged at info carries a flow token (only its hash), screen data,
//! keys or secrets.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, from `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

//! What the `flow-service` binary's test files share.

use std::process::Command;

/// The binary as a command with none of the caller's own settings for it, for tokio or
/// for traces: each test sets what it means to test, and nothing else leaks in.
pub fn flow_service() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flow-service"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("FLOW_SERVICE_") || key.starts_with("OTEL_") || key.starts_with("TOKIO_")
        {
            command.env_remove(&*key);
        }
    }
    command
}

//! What the two flowgate binaries (`flowgate-gateway`, `flow-service`) share on the
//! command line. The `args` feature (on by default) is for binaries only; without it,
//! `flowgate-server` takes the shutdown signal from here, with no CLI crate.
//!
//! Reading order:
//! - [`ConfigError`] — a configuration value that cannot be used, as one line naming the
//!   variable and its flag: `invalid VAR (--flag) "value": reason`.
//! - [`checked`] — a clap value parser from a plain `fn(&str) -> Result<T, String>`, whose
//!   refusals become [`ConfigError`]s; [`parse`] reads the command line and environment
//!   and hands those back as [`ArgsError::Invalid`] instead of clap's usage screen.
//! - [`parse_duration`] — durations like `10s`, `1500ms`, `15m`, `24h`, `7d` (humantime).
//! - [`HealthcheckTimeout`] — the `--timeout` flag of both `healthcheck` subcommands.
//! - [`shutdown_signal`] — completes on the first SIGTERM or SIGINT.
//! - [`bearer_token`] — the gRPC hop's shared token, from a variable or a `_FILE`.
//! - [`thread_count`] — a setting of threads, `0` for one per CPU ([`cpus`]).

#[cfg(feature = "args")]
mod args;
#[cfg(feature = "args")]
mod duration;
mod error;
#[cfg(feature = "args")]
mod secret;
mod shutdown;
#[cfg(feature = "args")]
mod threads;

#[cfg(feature = "args")]
pub use args::{
    ArgsError, Checked, HEALTHCHECK, HealthcheckTimeout, checked, parse, try_parse_from,
};
#[cfg(feature = "args")]
pub use duration::{parse_duration, positive_duration};
pub use error::{ConfigError, Shown};
#[cfg(feature = "args")]
pub use secret::{MIN_TOKEN_LEN, SecretVars, bearer_token, secret};
pub use shutdown::shutdown_signal;
#[cfg(feature = "args")]
pub use threads::{MAX_THREADS, cpus, thread_count};

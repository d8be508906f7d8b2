//! [`ConnectionLimits`]: how long a connection may take to become useful, how long it
//! may stay idle, and how many may be open at once; read from `FLOWGATE_*` variables.

use std::time::Duration;

use crate::config::Args;

/// Descriptors kept free for everything that is not a public connection: the
/// listeners, the runtime, the gRPC connections to the flow service, name
/// resolution, logs. The admin listener's own cap comes on top.
pub const RESERVED_DESCRIPTORS: usize = 64;

/// Descriptors kept free for each thread besides the first ([`super::Workers`]): its
/// runtime's epoll and waker, its own gRPC connection to each flow service replica.
pub const DESCRIPTORS_PER_THREAD: usize = 8;

/// Limits on the connections of the public and admin listeners.
///
/// Every timer ends a connection that holds a slot without using it, so that idle
/// or hostile clients cannot keep the slots (and file descriptors) that real
/// requests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The TLS handshake must end within this time after the connection is accepted.
    pub handshake_timeout: Duration,
    /// The first request's headers must have arrived within this time after the
    /// connection is ready (after the TLS handshake): it bounds a client that
    /// sends nothing, or trickles its headers.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this time (HTTP/1
    /// keep-alive, HTTP/2 with no open stream), counted from the end of its last
    /// request. Bytes of a next request that trickle in do not extend it. Behind a
    /// load balancer, keep it above the balancer's own idle timeout (60 s on AWS).
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged when the peer sends nothing, so
    /// a peer that vanished without closing is noticed while requests are open.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Requests one HTTP/2 connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Open public connections at most; `None` derives it from the open-file limit
    /// (`ulimit -n`) minus [`RESERVED_DESCRIPTORS`], [`DESCRIPTORS_PER_THREAD`] for each
    /// thread beyond the first, and the admin cap. A value
    /// above that is lowered to it, since a process out of descriptors can no
    /// longer accept anyone. Beyond the cap, new connections are closed at once.
    pub max_connections: Option<usize>,
    /// Open public connections from one IP address at most; 0 is no limit. Off by
    /// default: behind a load balancer every caller shares its address, and
    /// WhatsApp calls from few addresses.
    pub max_connections_per_address: usize,
    /// Open admin connections at most (health checks and metric scrapes), counted
    /// apart from the public ones so a flood on the public port never blinds them.
    pub max_admin_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 100,
            max_connections: None,
            max_connections_per_address: 0,
            max_admin_connections: 64,
        }
    }
}

impl ConnectionLimits {
    /// The connection settings from the command line and `FLOWGATE_*` variables
    /// (already checked and typed by clap).
    pub fn from_args(args: &Args) -> Self {
        Self {
            handshake_timeout: args.handshake_timeout,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            keepalive_interval: args.keepalive_interval,
            keepalive_timeout: args.keepalive_timeout,
            max_connections: args.max_connections.0,
            max_connections_per_address: args.max_connections_per_address,
            ..Self::default()
        }
    }

    /// The public cap in force for a gateway of `threads` threads: the configured one,
    /// kept below what the open-file limit allows (with a warning when lowered), or
    /// derived from that limit.
    pub fn public_cap(&self, threads: usize) -> usize {
        let reserved = RESERVED_DESCRIPTORS
            + DESCRIPTORS_PER_THREAD * threads.saturating_sub(1)
            + self.max_admin_connections;
        let allowed = open_file_limit()
            .map(|limit| limit.saturating_sub(reserved).max(1))
            .unwrap_or(usize::MAX);
        match self.max_connections {
            None => allowed.min(1 << 20),
            Some(n) if n > allowed => {
                tracing::warn!(
                    configured = n,
                    used = allowed,
                    "FLOWGATE_MAX_CONNECTIONS is above what the open-file limit (ulimit -n) leaves; lowered"
                );
                allowed
            }
            Some(n) => n,
        }
    }
}

/// The soft `RLIMIT_NOFILE`, or `None` when unlimited.
fn open_file_limit() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit
        .current
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use flowgate_cli::{ArgsError, ConfigError};

    use super::*;

    fn limits(extra: &[&str]) -> Result<ConnectionLimits, ConfigError> {
        let argv = std::iter::once("flowgate-gateway").chain(extra.iter().copied());
        match flowgate_cli::try_parse_from::<Args, _, _>(argv) {
            Ok(args) => Ok(ConnectionLimits::from_args(&args)),
            Err(ArgsError::Invalid { error, .. }) => Err(*error),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        assert_eq!(limits(&[]).unwrap(), ConnectionLimits::default());
    }

    #[test]
    fn values_are_read_and_checked() {
        let read = limits(&[
            "--handshake-timeout",
            "1500ms",
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "3s",
            "--max-connections",
            "100",
            "--max-connections-per-address",
            "10",
        ])
        .unwrap();
        assert_eq!(read.handshake_timeout, Duration::from_millis(1500));
        assert_eq!(read.header_timeout, Duration::from_secs(2));
        assert_eq!(read.idle_timeout, Duration::from_secs(3));
        assert_eq!(read.max_connections, Some(100));
        assert_eq!(read.max_connections_per_address, 10);
        for (flag, value, var) in [
            ("--handshake-timeout", "0s", "FLOWGATE_HANDSHAKE_TIMEOUT"),
            ("--header-timeout", "soon", "FLOWGATE_HEADER_TIMEOUT"),
            ("--idle-timeout", "0ms", "FLOWGATE_IDLE_TIMEOUT"),
            ("--max-connections", "0", "FLOWGATE_MAX_CONNECTIONS"),
            ("--max-connections", "many", "FLOWGATE_MAX_CONNECTIONS"),
            (
                "--max-connections-per-address",
                "-1",
                "FLOWGATE_MAX_CONNECTIONS_PER_ADDRESS",
            ),
        ] {
            let error = limits(&[&format!("{flag}={value}")]).unwrap_err();
            assert_eq!(error.var, var, "{flag} {value}");
        }
    }

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        let auto = ConnectionLimits::default().public_cap(1);
        if let Some(limit) = open_file_limit() {
            assert_eq!(auto, limit.saturating_sub(128).max(1));
            // Three threads: two more runtimes and their connections.
            let three = ConnectionLimits::default().public_cap(3);
            assert_eq!(three, limit.saturating_sub(128 + 16).max(1));
            let huge = ConnectionLimits {
                max_connections: Some(limit * 2),
                ..ConnectionLimits::default()
            };
            assert_eq!(huge.public_cap(1), auto);
        }
        let small = ConnectionLimits {
            max_connections: Some(10),
            ..ConnectionLimits::default()
        };
        assert_eq!(small.public_cap(3), 10);
    }
}

//! Configuration from environment variables, each with a matching command-line
//! flag (flags win), and optionally a TOML file of routes (`FLOWGATE_CONFIG`).
//! Every value is checked at start; a bad one stops the gateway with one line
//! naming the variable (or the file and route).
//!
//! - [`args`] — the flags, their variables and defaults, each read into its type by
//!   clap; the `keygen` and `healthcheck` subcommands; [`admin_probe_address`].
//! - [`load`] — [`Config::from_args`]: the checks across values, the one-route shortcut
//!   of the environment, and the route file.
//! - [`model`] — what the rest of the gateway reads: [`Config`], [`RouteConfig`] and
//!   the types they are made of.

mod args;
mod load;
mod model;

pub use args::{AdminListen, AppSecrets, Args, Command, KeyFiles, admin_probe_address};
pub use flowgate_cli::ConfigError;
pub use model::{
    Backend, Config, FlowSource, MetaConfig, Mode, ModeConfig, RouteConfig, Secret, TlsSource,
    valid_flow_name,
};

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    /// Reads `argv` the way the binary does, both steps, into one result.
    pub(super) fn load(argv: &[&str]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("flowgate-gateway").chain(argv.iter().copied());
        match flowgate_cli::try_parse_from::<Args, _, _>(argv) {
            Ok(args) => Config::from_args(args),
            Err(flowgate_cli::ArgsError::Invalid { error, .. }) => Err(*error),
            Err(other) => panic!("not a configuration error: {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(config.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.shutdown_grace, Duration::from_secs(15));
        assert_eq!(config.dns_refresh, Duration::from_secs(5));
        assert_eq!(config.max_in_flight, 1024);
        assert_eq!(config.worker_threads, flowgate_cli::cpus());
        assert_eq!(config.tls, TlsSource::Generated);
        let paths: Vec<_> = config
            .routes
            .iter()
            .map(|r| (r.path.as_str(), &r.flow, &r.mode))
            .collect();
        assert_eq!(
            paths,
            [
                ("/flow-endpoint", &FlowSource::Default, &ModeConfig::Plain),
                ("/flows/{flow}", &FlowSource::FromPath, &ModeConfig::Plain)
            ]
        );
        assert!(
            config
                .routes
                .iter()
                .all(|r| r.backend == "http://127.0.0.1:50051")
        );
    }

    #[test]
    fn values_arrive_typed() {
        let config = load(&[
            "--listen",
            "127.0.0.1:1",
            "--request-timeout",
            "1500ms",
            "--shutdown-grace",
            "0s",
            "--dns-refresh",
            "1m",
            "--max-in-flight",
            "7",
            "--worker-threads",
            "3",
            "--backend",
            "http://a:1, http://b:2",
            "--path",
            "/whatsapp",
        ])
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert_eq!(config.shutdown_grace, Duration::ZERO);
        assert_eq!(config.dns_refresh, Duration::from_secs(60));
        assert_eq!(config.max_in_flight, 7);
        assert_eq!(config.worker_threads, 3);
        assert_eq!(config.routes[0].path, "/whatsapp");
        assert_eq!(config.routes[0].backend, "http://a:1, http://b:2");
    }

    #[test]
    fn meta_mode_from_the_environment() {
        let config = load(&[
            "--mode",
            "meta",
            "--private-key",
            "a.pem, b.pem",
            "--private-key-passphrase",
            "pass",
            "--app-secret",
            "s1,,s2, ",
        ])
        .unwrap();
        let ModeConfig::Meta(meta) = &config.routes[0].mode else {
            panic!("meta expected")
        };
        assert_eq!(
            meta.private_keys,
            [PathBuf::from("a.pem"), PathBuf::from("b.pem")]
        );
        assert_eq!(meta.passphrase, Some(Secret::new("pass")));
        assert_eq!(meta.app_secrets, [Secret::new("s1"), Secret::new("s2")]);
        // Secrets never show in Debug output.
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("pass\"") && !debug.contains("s1"),
            "{debug}"
        );
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "nowhere"], "FLOWGATE_LISTEN"),
            (&["--admin-listen", "1.2.3.4"], "FLOWGATE_ADMIN_LISTEN"),
            (&["--backend", "grpc://x"], "FLOWGATE_BACKEND"),
            (&["--backend", "http://"], "FLOWGATE_BACKEND"),
            (&["--path", "flow"], "FLOWGATE_PATH"),
            (&["--path", "/flows/x"], "FLOWGATE_PATH"),
            (&["--path", "/"], "FLOWGATE_PATH"),
            (&["--path", "/wa/:flow"], "FLOWGATE_PATH"),
            (&["--mode", "json"], "FLOWGATE_MODE"),
            (&["--mode", "meta"], "FLOWGATE_PRIVATE_KEY"),
            (
                &["--mode", "meta", "--private-key", " , "],
                "FLOWGATE_PRIVATE_KEY",
            ),
            (&["--app-secret", "s"], "FLOWGATE_APP_SECRET"),
            (&["--request-timeout", "10"], "FLOWGATE_REQUEST_TIMEOUT"),
            (&["--request-timeout", "5ms"], "FLOWGATE_REQUEST_TIMEOUT"),
            (&["--request-timeout", "2d"], "FLOWGATE_REQUEST_TIMEOUT"),
            (
                &["--request-timeout", "106751991167300d"],
                "FLOWGATE_REQUEST_TIMEOUT",
            ),
            (&["--shutdown-grace", "soon"], "FLOWGATE_SHUTDOWN_GRACE"),
            (&["--dns-refresh", "1ms"], "FLOWGATE_DNS_REFRESH"),
            (&["--log-format", "xml"], "FLOWGATE_LOG_FORMAT"),
            (&["--max-in-flight", "0"], "FLOWGATE_MAX_IN_FLIGHT"),
            (&["--max-in-flight", "many"], "FLOWGATE_MAX_IN_FLIGHT"),
            (&["--worker-threads", "many"], "FLOWGATE_WORKER_THREADS"),
            (&["--worker-threads", "2.5"], "FLOWGATE_WORKER_THREADS"),
            (&["--worker-threads", "1025"], "FLOWGATE_WORKER_THREADS"),
            (&["--backend", "http://a:1,ftp://b:2"], "FLOWGATE_BACKEND"),
            (&["--tls", "maybe"], "FLOWGATE_TLS"),
            (&["--tls-cert", "c.pem"], "FLOWGATE_TLS_KEY"),
            (&["--tls-key", "k.pem"], "FLOWGATE_TLS_CERT"),
            (&["--tls", "off", "--tls-key", "k.pem"], "FLOWGATE_TLS"),
            (&["--config", "/nonexistent/routes.toml"], "FLOWGATE_CONFIG"),
            (&["--config", "r.toml", "--mode", "meta"], "FLOWGATE_MODE"),
        ];
        for (argv, var) in cases {
            let err = load(argv).unwrap_err();
            assert_eq!(err.var, *var, "{argv:?}");
            let line = err.to_string();
            assert!(line.starts_with(&format!("invalid {var} ")), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        // A secret is never echoed back.
        let err = load(&["--app-secret", "hunter2"]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    /// The typed values say what they expected, with the flag as well as the variable.
    #[test]
    fn typed_values_explain_a_refusal() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--mode", "json"],
                r#"invalid FLOWGATE_MODE (--mode) "json": expected plain or meta"#,
            ),
            (
                &["--request-timeout", "10"],
                r#"invalid FLOWGATE_REQUEST_TIMEOUT (--request-timeout) "10": 10 has no unit; expected a duration like 10s"#,
            ),
            (
                &["--shutdown-grace", "soon"],
                r#"invalid FLOWGATE_SHUTDOWN_GRACE (--shutdown-grace) "soon": "#,
            ),
            (
                &["--backend", "http://flows"],
                r#"invalid FLOWGATE_BACKEND (--backend) "http://flows": invalid backend `http://flows`: `http://flows`: the port is required"#,
            ),
            (
                &["--backend", "flows:50051"],
                "expected http://host:port or https://host:port, comma-separated",
            ),
            (
                &["--app-secret", " , "],
                "invalid FLOWGATE_APP_SECRET (--app-secret) (value hidden): no app secret in the list",
            ),
        ];
        for (argv, expected) in cases {
            let line = load(argv).unwrap_err().to_string();
            assert!(line.contains(expected), "{argv:?}: {line}");
        }
    }

    #[test]
    fn tls_choices() {
        assert_eq!(load(&["--tls", "off"]).unwrap().tls, TlsSource::Off);
        assert_eq!(
            load(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
                .unwrap()
                .tls,
            TlsSource::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
        assert_eq!(load(&["--admin-listen", "off"]).unwrap().admin_listen, None);
    }

    #[test]
    fn the_preview_is_off_unless_asked_for_and_needs_the_admin_listener() {
        assert!(!load(&[]).unwrap().preview);
        assert!(load(&["--preview", "on"]).unwrap().preview);
        let line = load(&["--preview", "yes"]).unwrap_err().to_string();
        assert!(line.contains("FLOWGATE_PREVIEW"), "{line}");
        let line = load(&["--preview", "on", "--admin-listen", "off"])
            .unwrap_err()
            .to_string();
        assert!(
            line.contains("FLOWGATE_PREVIEW") && line.contains("admin listener"),
            "{line}"
        );
    }
}

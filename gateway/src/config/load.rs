//! From [`Args`] to a checked [`Config`]: the checks that need several values, the
//! one-route shortcut of the environment (`FLOWGATE_PATH`, `FLOWGATE_MODE`, …), and the
//! TOML route file (`FLOWGATE_CONFIG`), where an error names the file and the route.

use std::path::{Path, PathBuf};

use flowgate_cli::ConfigError;
use serde::Deserialize;

use super::args::{AppSecrets, Args, KeyFiles, split_list};
use super::model::{
    Backend, Config, FlowSource, MetaConfig, Mode, ModeConfig, RouteConfig, Secret, TlsSource,
    check_path, valid_flow_name,
};
use crate::upstream::{Hop, HopTls};

impl Config {
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let routes = match &args.config {
            Some(file) => routes_from_file(file, &args)?,
            None => routes_from_env(&args)?,
        };
        let hop = hop(&args, &routes)?;
        let tls = match (args.tls, args.tls_cert, args.tls_key) {
            (false, None, None) => TlsSource::Off,
            (false, _, _) => {
                return Err(ConfigError::new(
                    "FLOWGATE_TLS",
                    "tls",
                    "off",
                    "FLOWGATE_TLS_CERT and FLOWGATE_TLS_KEY must not be set with TLS off",
                ));
            }
            (true, None, None) => TlsSource::Generated,
            (true, Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (true, Some(cert), None) => {
                let reason = format!(
                    "must be set together with FLOWGATE_TLS_CERT ({})",
                    cert.display()
                );
                return Err(ConfigError::new("FLOWGATE_TLS_KEY", "tls-key", "", reason));
            }
            (true, None, Some(key)) => {
                let reason = format!(
                    "must be set together with FLOWGATE_TLS_KEY ({})",
                    key.display()
                );
                return Err(ConfigError::new(
                    "FLOWGATE_TLS_CERT",
                    "tls-cert",
                    "",
                    reason,
                ));
            }
        };
        if args.preview && args.admin_listen.addr().is_none() {
            return Err(ConfigError::new(
                "FLOWGATE_PREVIEW",
                "preview",
                "on",
                "the preview is served on the admin listener, which FLOWGATE_ADMIN_LISTEN turns off",
            ));
        }
        Ok(Config {
            hop,
            listen: args.listen,
            admin_listen: args.admin_listen.addr(),
            preview: args.preview,
            routes,
            request_timeout: args.request_timeout,
            shutdown_grace: args.shutdown_grace,
            tls,
            dns_refresh: args.dns_refresh,
            max_in_flight: args.max_in_flight,
            worker_threads: match args.worker_threads {
                0 => flowgate_cli::cpus(),
                n => n,
            },
            log_format: args.log_format,
        })
    }
}

/// The gRPC hop's token and TLS. TLS settings without an `https://` backend, and a
/// client certificate without its key (or the reverse), are errors.
fn hop(args: &Args, routes: &[RouteConfig]) -> Result<Hop, ConfigError> {
    let token = flowgate_cli::bearer_token(
        args.backend_auth_token.as_deref(),
        args.backend_auth_token_file.as_deref(),
        flowgate_cli::SecretVars {
            var: "FLOWGATE_BACKEND_AUTH_TOKEN",
            flag: "backend-auth-token",
            file_var: "FLOWGATE_BACKEND_AUTH_TOKEN_FILE",
            file_flag: "backend-auth-token-file",
        },
    )?
    .map(Secret::new);
    let read = |path: &Path, var: &str, flag: &str| {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| {
            ConfigError::new(var, flag, &shown, format!("cannot read the file: {e}"))
        })?;
        if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(ConfigError::new(var, flag, &shown, "not a PEM file"));
        }
        Ok(pem)
    };
    let ca = args
        .backend_ca
        .as_deref()
        .map(|ca| read(ca, "FLOWGATE_BACKEND_CA", "backend-ca"))
        .transpose()?;
    let identity = match (&args.backend_client_cert, &args.backend_client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            read(cert, "FLOWGATE_BACKEND_CLIENT_CERT", "backend-client-cert")?,
            read(key, "FLOWGATE_BACKEND_CLIENT_KEY", "backend-client-key")?,
        )),
        (Some(cert), None) => {
            return Err(ConfigError::new(
                "FLOWGATE_BACKEND_CLIENT_KEY",
                "backend-client-key",
                "",
                format!(
                    "must be set together with FLOWGATE_BACKEND_CLIENT_CERT ({})",
                    cert.display()
                ),
            ));
        }
        (None, Some(key)) => {
            return Err(ConfigError::new(
                "FLOWGATE_BACKEND_CLIENT_CERT",
                "backend-client-cert",
                "",
                format!(
                    "must be set together with FLOWGATE_BACKEND_CLIENT_KEY ({})",
                    key.display()
                ),
            ));
        }
    };
    let any_tls = routes
        .iter()
        .any(|route| crate::upstream::parse_backend(&route.backend).is_ok_and(|parsed| parsed.tls));
    if !any_tls {
        for (var, flag, set) in [
            ("FLOWGATE_BACKEND_CA", "backend-ca", ca.is_some()),
            (
                "FLOWGATE_BACKEND_CLIENT_CERT",
                "backend-client-cert",
                identity.is_some(),
            ),
        ] {
            if set {
                return Err(ConfigError::hidden(
                    var,
                    flag,
                    "applies to https:// backends only, and no backend is https://",
                ));
            }
        }
    }
    Ok(Hop {
        tls: HopTls { ca, identity },
        token,
    })
}

/// The one-route shortcut: `FLOWGATE_PATH` reaches the default flow and
/// `/flows/{flow}` reaches the others, both with the same mode and backend.
fn routes_from_env(args: &Args) -> Result<Vec<RouteConfig>, ConfigError> {
    let path = args.path.clone().unwrap_or_else(|| "/flow-endpoint".into());
    let mode = match args.mode.unwrap_or_default() {
        Mode::Plain => {
            for (var, flag, set) in [
                (
                    "FLOWGATE_PRIVATE_KEY",
                    "private-key",
                    args.private_key.is_some(),
                ),
                (
                    "FLOWGATE_APP_SECRET",
                    "app-secret",
                    args.app_secret.is_some(),
                ),
            ] {
                if set {
                    return Err(ConfigError::hidden(
                        var,
                        flag,
                        "applies to FLOWGATE_MODE=meta only",
                    ));
                }
            }
            ModeConfig::Plain
        }
        Mode::Meta => {
            let private_keys = match &args.private_key {
                Some(KeyFiles(files)) if !files.is_empty() => files.clone(),
                _ => {
                    return Err(ConfigError::new(
                        "FLOWGATE_PRIVATE_KEY",
                        "private-key",
                        "",
                        "FLOWGATE_MODE=meta needs at least one private key file",
                    ));
                }
            };
            ModeConfig::Meta(MetaConfig {
                private_keys,
                passphrase: args.private_key_passphrase.clone(),
                app_secrets: args
                    .app_secret
                    .clone()
                    .map(|AppSecrets(secrets)| secrets)
                    .unwrap_or_default(),
            })
        }
    };
    // Start-up errors of this route are about its key files, when it has any.
    let origin = match mode {
        ModeConfig::Meta(_) => "FLOWGATE_PRIVATE_KEY",
        ModeConfig::Plain => "FLOWGATE_MODE",
    }
    .to_owned();
    let route = |path: String, flow| RouteConfig {
        path,
        flow,
        mode: mode.clone(),
        backend: args.backend.clone(),
        origin: origin.clone(),
    };
    Ok(vec![
        route(path, FlowSource::Default),
        route("/flows/{flow}".into(), FlowSource::FromPath),
    ])
}

/// The route file (`FLOWGATE_CONFIG`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    /// The default backend of the routes in this file.
    backend: Option<String>,
    #[serde(default, rename = "route")]
    routes: Vec<RouteEntry>,
}

/// One `[[route]]`. Values stay text here so that an error can name its route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    path: String,
    flow: Option<String>,
    mode: Option<String>,
    backend: Option<String>,
    #[serde(default)]
    private_keys: Vec<PathBuf>,
    private_key_passphrase: Option<String>,
    /// The name of an environment variable holding the passphrase.
    private_key_passphrase_env: Option<String>,
    /// Absent means no signature check; a list given must hold a secret.
    app_secrets: Option<Vec<String>>,
    /// The name of an environment variable holding comma-separated app secrets.
    app_secrets_env: Option<String>,
}

fn routes_from_file(file: &Path, args: &Args) -> Result<Vec<RouteConfig>, ConfigError> {
    let shown = file.display().to_string();
    for (var, flag, set) in [
        ("FLOWGATE_PATH", "path", args.path.is_some()),
        ("FLOWGATE_MODE", "mode", args.mode.is_some()),
        (
            "FLOWGATE_PRIVATE_KEY",
            "private-key",
            args.private_key.is_some(),
        ),
        (
            "FLOWGATE_PRIVATE_KEY_PASSPHRASE",
            "private-key-passphrase",
            args.private_key_passphrase.is_some(),
        ),
        (
            "FLOWGATE_APP_SECRET",
            "app-secret",
            args.app_secret.is_some(),
        ),
    ] {
        if set {
            return Err(ConfigError::hidden(
                var,
                flag,
                "cannot be combined with FLOWGATE_CONFIG; set it in the route file",
            ));
        }
    }
    let file_error =
        |reason: String| ConfigError::new("FLOWGATE_CONFIG", "config", shown.as_str(), reason);
    let text = std::fs::read_to_string(file)
        .map_err(|e| file_error(format!("cannot read the file: {e}")))?;
    let parsed: RouteFile = toml::from_str(&text)
        .map_err(|e| file_error(format!("not a valid route file: {}", e.message())))?;
    if parsed.routes.is_empty() {
        return Err(file_error("no [[route]] entries".to_owned()));
    }
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, entry) in parsed.routes.into_iter().enumerate() {
        let origin = format!("FLOWGATE_CONFIG route {} ({})", i + 1, entry.path);
        let fail = |reason: &str| ConfigError::in_file(origin.as_str(), shown.as_str(), reason);
        check_path(&entry.path).map_err(|r| fail(&r))?;
        if routes.iter().any(|r| r.path == entry.path) {
            return Err(fail("the path is already used by an earlier route"));
        }
        let route = route_from_entry(
            entry,
            parsed.backend.as_deref(),
            &args.backend,
            origin.clone(),
        )
        .map_err(|r| fail(&r))?;
        routes.push(route);
    }
    Ok(routes)
}

/// Checks one `[[route]]`; the error is the reason alone, the caller names the route.
/// Its backend is its own, else the file's, else `FLOWGATE_BACKEND`.
fn route_from_entry(
    entry: RouteEntry,
    file_backend: Option<&str>,
    env_backend: &Backend,
    origin: String,
) -> Result<RouteConfig, String> {
    let flow = match (entry.path.ends_with("/{flow}"), entry.flow) {
        (true, None) => FlowSource::FromPath,
        (true, Some(_)) => {
            return Err(
                "a path ending in /{flow} takes the flow from the path; remove `flow`".to_owned(),
            );
        }
        (false, None) => FlowSource::Default,
        (false, Some(name)) if valid_flow_name(&name) => FlowSource::Named(name),
        (false, Some(_)) => return Err("`flow` must be 1 to 64 letters, digits, _ or -".to_owned()),
    };
    let backend = match entry.backend.as_deref().or(file_backend) {
        Some(text) => Backend::parse(text)?,
        None => env_backend.clone(),
    };
    let mode = match entry.mode.as_deref().map(str::parse).transpose() {
        Ok(mode) => mode.unwrap_or_default(),
        Err(reason) => {
            let other = entry.mode.as_deref().unwrap_or_default();
            return Err(format!("unknown mode `{other}`; {reason}"));
        }
    };
    let mode = match mode {
        Mode::Plain => {
            if !entry.private_keys.is_empty()
                || entry.app_secrets.is_some()
                || entry.app_secrets_env.is_some()
            {
                return Err("private keys and app secrets apply to mode = \"meta\" only".to_owned());
            }
            ModeConfig::Plain
        }
        Mode::Meta => {
            if entry.private_keys.is_empty() {
                return Err("mode = \"meta\" needs private_keys".to_owned());
            }
            let passphrase = match (
                entry.private_key_passphrase,
                from_env(entry.private_key_passphrase_env.as_deref())?,
            ) {
                (Some(_), Some(_)) => {
                    return Err(
                        "set private_key_passphrase or private_key_passphrase_env, not both"
                            .to_owned(),
                    );
                }
                (a, b) => a.or(b).map(Secret::new),
            };
            // Blank entries are dropped wherever the secrets come from; a list that is
            // given but holds none is a mistake, not a wish to check no signatures.
            let mut app_secrets: Vec<Secret> = Vec::new();
            if let Some(list) = &entry.app_secrets {
                let before = app_secrets.len();
                app_secrets.extend(
                    list.iter()
                        .map(|s| s.trim())
                        .filter(|s| !s.is_empty())
                        .map(Secret::new),
                );
                if app_secrets.len() == before {
                    return Err(
                        "app_secrets holds no secret (blank entries are dropped); remove it to check no signatures"
                            .to_owned(),
                    );
                }
            }
            if let Some(value) = from_env(entry.app_secrets_env.as_deref())? {
                let before = app_secrets.len();
                app_secrets.extend(split_list(&value).map(Secret::new));
                if app_secrets.len() == before {
                    let name = entry.app_secrets_env.unwrap_or_default();
                    return Err(format!(
                        "app_secrets_env: environment variable {name} holds no secret (blank entries are dropped)"
                    ));
                }
            }
            ModeConfig::Meta(MetaConfig {
                private_keys: entry.private_keys,
                passphrase,
                app_secrets,
            })
        }
    };
    Ok(RouteConfig {
        path: entry.path,
        flow,
        mode,
        backend,
        origin,
    })
}

/// The value of the environment variable `name`, which must be set when named.
fn from_env(name: Option<&str>) -> Result<Option<String>, String> {
    match name {
        None => Ok(None),
        Some(name) => std::env::var(name)
            .map(Some)
            .map_err(|_| format!("environment variable {name} is not set")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;

    fn from_file(toml: &str) -> Result<Vec<RouteConfig>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, toml).unwrap();
        load(&["--config", path.to_str().unwrap()]).map(|c| c.routes)
    }

    #[test]
    fn route_files() {
        let routes = from_file(
            r#"
            backend = "http://flows:50051"

            [[route]]
            path = "/whatsapp"
            flow = "signup"
            mode = "meta"
            private_keys = ["/keys/new.pem", "/keys/old.pem"]
            private_key_passphrase = "pass"
            app_secrets = ["s1", "", " ", "s2"]

            [[route]]
            path = "/provider/{flow}"
            backend = "http://other:50051"
            "#,
        )
        .unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].path, "/whatsapp");
        assert_eq!(routes[0].flow, FlowSource::Named("signup".into()));
        assert_eq!(routes[0].backend, "http://flows:50051");
        let ModeConfig::Meta(meta) = &routes[0].mode else {
            panic!("meta expected")
        };
        assert_eq!(meta.private_keys.len(), 2);
        // Blank secrets are dropped, as they are from the environment.
        assert_eq!(meta.app_secrets, [Secret::new("s1"), Secret::new("s2")]);
        assert_eq!(routes[1].flow, FlowSource::FromPath);
        assert_eq!(routes[1].mode, ModeConfig::Plain);
        assert_eq!(routes[1].backend, "http://other:50051");
    }

    /// The start of a Meta route, for the cases about its secrets.
    macro_rules! meta_route {
        () => {
            "[[route]]\npath = \"/a\"\nmode = \"meta\"\nprivate_keys = [\"k\"]\n"
        };
    }

    #[test]
    fn bad_route_files_say_which_route() {
        let cases = [
            ("", "no [[route]]"),
            ("[[route]]\npath = \"/a\"\nmode = \"xml\"", "route 1 (/a)"),
            (
                "[[route]]\npath = \"/a\"\nmode = \"xml\"",
                "unknown mode `xml`; expected plain or meta",
            ),
            (
                "[[route]]\npath = \"/a\"\nmode = \"meta\"",
                "needs private_keys",
            ),
            (
                "[[route]]\npath = \"/a\"\n[[route]]\npath = \"/a\"",
                "route 2 (/a)",
            ),
            (
                "[[route]]\npath = \"/a/{flow}\"\nflow = \"x\"",
                "takes the flow from the path",
            ),
            (
                "[[route]]\npath = \"/a\"\nflow = \"no spaces\"",
                "`flow` must be",
            ),
            (
                "[[route]]\npath = \"/a\"\nbackend = \"ftp://x\"",
                "expected http://host:port",
            ),
            (
                "backend = \"http://nowhere\"\n[[route]]\npath = \"/a\"",
                "route 1 (/a)",
            ),
            (
                "[[route]]\npath = \"/a\"\nprivate_keys = [\"k.pem\"]",
                "apply to mode = \"meta\" only",
            ),
            ("[[route]]\npath = \"a\"", "expected a path"),
            (
                "[[route]]\npath = \"/a\"\ncolour = \"blue\"",
                "unknown field",
            ),
            (
                concat!(
                    meta_route!(),
                    "app_secrets_env = \"FLOWGATE_TEST_UNSET_VAR\""
                ),
                "FLOWGATE_TEST_UNSET_VAR is not set",
            ),
            // A list of app secrets that holds none is refused, naming the route.
            (
                concat!(meta_route!(), "app_secrets = [\"\", \"  \"]"),
                "invalid FLOWGATE_CONFIG route 1 (/a) in ",
            ),
            (
                concat!(meta_route!(), "app_secrets = [\"\", \"  \"]"),
                "app_secrets holds no secret",
            ),
            (
                concat!(meta_route!(), "app_secrets = []"),
                "app_secrets holds no secret",
            ),
        ];
        for (toml, expected) in cases {
            let err = from_file(toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}

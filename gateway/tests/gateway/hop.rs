//! The gRPC hop between the two spawned binaries: the bearer token (made by
//! `flowgate-gateway gen-token`), mutual TLS, and what the endpoint answers when
//! the gateway's credentials are refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{free_port, service_bin, stderr_lines, wait_ready};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate-gateway");

/// A spawned binary, killed when dropped, with its stderr lines so far.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let log = stderr_lines(&mut child);
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A flow service on 127.0.0.1 with `env`; its port.
fn service(env: &[(&str, &str)]) -> (Proc, u16) {
    let port = free_port();
    let mut command = Command::new(service_bin());
    command
        .env("FLOW_SERVICE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_DATABASE_URL", "memory:")
        .env("FLOW_SERVICE_DRAIN_DELAY", "0s");
    for (name, value) in env {
        command.env(name, value);
    }
    (Proc::spawn(&mut command), port)
}

/// A plain-HTTP gateway in front of `backend` with `env`, ready (its flow service
/// reports SERVING); its public and admin ports.
async fn gateway(backend: &str, env: &[(&str, &str)], service: &Proc) -> (Proc, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLOWGATE_") {
            command.env_remove(key);
        }
    }
    command
        .env("FLOWGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOWGATE_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("FLOWGATE_BACKEND", backend)
        .env("FLOWGATE_TLS", "off")
        .env("FLOWGATE_SHUTDOWN_GRACE", "0s");
    for (name, value) in env {
        command.env(name, value);
    }
    let gateway = Proc::spawn(&mut command);
    wait_ready(&client(), admin, || {
        format!("{}\n{}", gateway.log(), service.log())
    })
    .await;
    (gateway, port, admin)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(port: u16, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!("http://127.0.0.1:{port}/flow-endpoint"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The sign-up journey, INIT to completion, through the gateway on `port`.
async fn journey(port: u16, token: &str) {
    let init = json!({"version": "3.0", "action": "INIT", "flow_token": token});
    let (status, answer) = post(port, init).await;
    assert_eq!(
        (status, &answer["screen"]),
        (200, &json!("WELCOME_SCREEN")),
        "{answer}"
    );
    let submit = json!({"version": "3.0", "action": "data_exchange", "flow_token": token,
                        "screen": "CONFIRMATION_SCREEN", "data": {"email": "ada@example.com"}});
    let (status, answer) = post(port, submit).await;
    assert_eq!(
        (status, &answer["screen"]),
        (200, &json!("SUCCESS")),
        "{answer}"
    );
}

/// What the endpoint answers when the flow service refuses the gateway.
async fn assert_refused(port: u16, gateway: &Proc) {
    let init = json!({"version": "3.0", "action": "INIT", "flow_token": "tok-refused"});
    let (status, answer) = post(port, init).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(
        answer["error"]["code"], "backend_unauthenticated",
        "{answer}"
    );
    // Logged at error level, as a configuration problem.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gateway.log().contains("configuration problem") {
        assert!(Instant::now() < deadline, "{}", gateway.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = gateway.log();
    let line = log
        .lines()
        .find(|l| l.contains("configuration problem"))
        .unwrap();
    assert!(line.contains("ERROR"), "{line}");
}

fn gen_token(path: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("gen-token")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn gen_token_writes_once_and_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/token");
    let output = gen_token(&path);
    assert!(output.status.success(), "{output:?}");
    let token = std::fs::read_to_string(&path).unwrap();
    let token = token.strip_suffix('\n').expect("one line");
    // 32 bytes in base64url without padding.
    assert_eq!(token.len(), 43, "{token}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Run again: kept, exit 0.
    let again = gen_token(&path);
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("kept"));
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim_end(), token);
    // Another path gets another token, and no temporary file is left behind.
    let other = dir.path().join("a/b/other");
    assert!(gen_token(&other).status.success());
    assert_ne!(std::fs::read_to_string(&other).unwrap().trim_end(), token);
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["other", "token"]);
    // A path that cannot be written is an error.
    let blocked = dir.path().join("a/b/token/inside");
    assert_eq!(gen_token(&blocked).status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_token_the_journey_succeeds_and_without_it_the_endpoint_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    assert!(gen_token(&token_file).status.success());
    let token_file = token_file.to_str().unwrap();
    let (service, port) = service(&[("FLOW_SERVICE_AUTH_TOKEN_FILE", token_file)]);
    let backend = format!("http://127.0.0.1:{port}");

    let (gateway_ok, public, admin) = gateway(
        &backend,
        &[("FLOWGATE_BACKEND_AUTH_TOKEN_FILE", token_file)],
        &service,
    )
    .await;
    journey(public, "tok-hop-1").await;
    let token = std::fs::read_to_string(token_file).unwrap();
    assert!(
        !gateway_ok.log().contains(token.trim()),
        "{}",
        gateway_ok.log()
    );
    // The gateway's healthcheck still asks its admin listener, with the token set.
    let output = Command::new(BIN)
        .env("FLOWGATE_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("FLOWGATE_BACKEND_AUTH_TOKEN_FILE", token_file)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    // No token, or another one: health is open, so the gateway is ready, but the
    // calls are refused.
    let (none, public, _) = gateway(&backend, &[], &service).await;
    assert_refused(public, &none).await;
    let (wrong, public, _) = gateway(
        &backend,
        &[("FLOWGATE_BACKEND_AUTH_TOKEN", "not-the-token-0123456789")],
        &service,
    )
    .await;
    assert_refused(public, &wrong).await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
fn pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        (
            params.signed_by(&key, &ca).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["gateway".into()], ExtendedKeyUsagePurpose::ClientAuth);
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_the_journey_succeeds_and_a_gateway_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let service_env = [
        ("FLOW_SERVICE_TLS_CERT", path("server.pem")),
        ("FLOW_SERVICE_TLS_KEY", path("server.key")),
        ("FLOW_SERVICE_TLS_CLIENT_CA", path("ca.pem")),
    ];
    let service_env: Vec<(&str, &str)> =
        service_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (service, port) = service(&service_env);
    let backend = format!("https://127.0.0.1:{port}");

    let (_gateway, public, _) = gateway(
        &backend,
        &[
            ("FLOWGATE_BACKEND_CA", &path("ca.pem")),
            ("FLOWGATE_BACKEND_CLIENT_CERT", &path("client.pem")),
            ("FLOWGATE_BACKEND_CLIENT_KEY", &path("client.key")),
        ],
        &service,
    )
    .await;
    journey(public, "tok-mtls-1").await;

    // Trusting the CA but presenting no certificate: ready (health is open), refused.
    let (anonymous, public, _) = gateway(
        &backend,
        &[("FLOWGATE_BACKEND_CA", &path("ca.pem"))],
        &service,
    )
    .await;
    assert_refused(public, &anonymous).await;

    // The service's own healthcheck talks TLS to it.
    let output = Command::new(service_bin())
        .env("FLOW_SERVICE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .envs(service_env.iter().copied())
        .arg("healthcheck")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn half_given_hop_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let cases = [
        (
            vec![
                ("FLOWGATE_BACKEND", "https://127.0.0.1:1".to_owned()),
                ("FLOWGATE_BACKEND_CLIENT_CERT", path("client.pem")),
            ],
            "invalid FLOWGATE_BACKEND_CLIENT_KEY",
        ),
        (
            vec![
                ("FLOWGATE_BACKEND", "https://127.0.0.1:1".to_owned()),
                ("FLOWGATE_BACKEND_CLIENT_KEY", path("client.key")),
            ],
            "invalid FLOWGATE_BACKEND_CLIENT_CERT",
        ),
        (
            vec![("FLOWGATE_BACKEND_CA", path("ca.pem"))],
            "applies to https:// backends only",
        ),
        (
            vec![("FLOWGATE_BACKEND_AUTH_TOKEN_FILE", path("missing-token"))],
            "invalid FLOWGATE_BACKEND_AUTH_TOKEN_FILE",
        ),
        (
            vec![("FLOWGATE_BACKEND_AUTH_TOKEN", "short".to_owned())],
            "invalid FLOWGATE_BACKEND_AUTH_TOKEN (--backend-auth-token) (value hidden)",
        ),
    ];
    for (env, expected) in cases {
        let mut command = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("FLOWGATE_") {
                command.env_remove(key);
            }
        }
        command
            .env("FLOWGATE_LISTEN", "127.0.0.1:0")
            .env("FLOWGATE_ADMIN_LISTEN", "off");
        for (name, value) in &env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(!stderr.contains("short"), "{stderr}");
    }
}

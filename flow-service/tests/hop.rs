//! The gRPC hop of the spawned `flow-service` binary: the bearer token, TLS with
//! client certificates, the healthcheck subcommand with both, the start-up
//! warning and errors, and the threads that run the calls.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use flowgate_proto::v1::flow_service_client::FlowServiceClient;
use flowgate_proto::v1::{DataExchangeRequest, RequestContext, flow_response::Outcome};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "hop-test-token-0123456789abcdef";

/// A running flow service, stopped when dropped; its log lines so far.
struct Running {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on 127.0.0.1 port 0 with an in-memory store and `env`, and
/// waits for its "listening" line.
fn start(env: &[(&str, &str)]) -> Running {
    let mut command = common::flow_service();
    command
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
        .env("FLOW_SERVICE_DATABASE_URL", "memory:")
        .env("FLOW_SERVICE_DRAIN_DELAY", "0s")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let line = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("exited: {:?}", log.lock().unwrap()))
            .unwrap();
        log.lock().unwrap().push(line.clone());
        if line.contains("flow service listening") {
            break line;
        }
    };
    let shared = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            shared.lock().unwrap().push(line);
        }
    });
    let port = line
        .split_once("addr=127.0.0.1:")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"));
    Running { child, port, log }
}

/// A `data_exchange` that completes the `signup` flow for `flow_token` at once, with
/// a forged "the signature was verified".
fn forged_completion(flow_token: &str, key: &str) -> DataExchangeRequest {
    let data = serde_json::json!({"email": "mallory@example.com"});
    DataExchangeRequest {
        context: Some(RequestContext {
            flow: "signup".into(),
            idempotency_key: key.into(),
            attempt: 1,
            version: "3.0".into(),
            signature_verified: true,
            ..Default::default()
        }),
        flow_token: flow_token.into(),
        screen: "CONFIRMATION_SCREEN".into(),
        data: Some(
            flowgate_proto::json::struct_from_json(data.as_object().unwrap(), "data").unwrap(),
        ),
    }
}

/// Sends `request`, with `authorization: <header>` when given.
async fn exchange(
    endpoint: &Endpoint,
    request: DataExchangeRequest,
    header: Option<&str>,
) -> Result<Outcome, tonic::Status> {
    let mut client = FlowServiceClient::new(endpoint.connect().await.unwrap());
    let mut request = tonic::Request::new(request);
    if let Some(header) = header {
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
    }
    let answer = client.data_exchange(request).await?;
    Ok(answer.into_inner().outcome.expect("an outcome"))
}

async fn health(endpoint: &Endpoint) -> ServingStatus {
    HealthClient::new(endpoint.connect().await.unwrap())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Runs `flow-service healthcheck` with the service's environment: (exit code, stderr).
fn healthcheck(port: u16, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = common::flow_service();
    command
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_DATABASE_URL", "memory:")
        .env("FLOW_SERVICE_LISTEN", format!("127.0.0.1:{port}"))
        .args(["healthcheck", "--timeout", "5s"]);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn without_the_token_a_forged_call_is_refused_and_completes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let file = file.to_str().unwrap();
    let service = start(&[("FLOW_SERVICE_AUTH_TOKEN_FILE", file)]);
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{}", service.port)).unwrap();

    // Health is open: no token needed.
    assert_eq!(health(&endpoint).await, ServingStatus::Serving);

    for header in [None, Some("Bearer wrong-token-0123456789"), Some(TOKEN)] {
        let refused = exchange(&endpoint, forged_completion("tok-forged", "k-1"), header)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{header:?}");
        assert!(
            refused
                .message()
                .contains("requires `authorization: Bearer <token>`"),
            "{refused:?}"
        );
    }
    // With the token the call runs, and completes the flow now: so none of the
    // refused calls did.
    let bearer = format!("Bearer {TOKEN}");
    let outcome = exchange(
        &endpoint,
        forged_completion("tok-forged", "k-2"),
        Some(&bearer),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, Outcome::Complete(_)), "{outcome:?}");
    // And it is completed: another key is refused as a used token.
    let again = exchange(
        &endpoint,
        forged_completion("tok-forged", "k-3"),
        Some(&bearer),
    )
    .await
    .unwrap();
    assert!(matches!(again, Outcome::TokenInvalid(_)), "{again:?}");

    // The healthcheck subcommand works with the token set (it needs none).
    let (code, out) = healthcheck(service.port, &[("FLOW_SERVICE_AUTH_TOKEN_FILE", file)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("is SERVING"), "{out}");
    // Listening on loopback, with a token: no warning.
    let log = service.log.lock().unwrap().join("\n");
    assert!(!log.contains("beyond loopback"), "{log}");
    assert!(
        log.contains("auth=\"token\"") || log.contains("auth=token"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token is never logged: {log}");
}

#[tokio::test]
async fn the_refused_calls_are_counted_under_their_method() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap();
    drop(admin);
    let mut service = start(&[
        ("FLOW_SERVICE_AUTH_TOKEN", TOKEN),
        ("FLOW_SERVICE_ADMIN_LISTEN", &admin_addr.to_string()),
    ]);
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{}", service.port)).unwrap();
    let refused = exchange(&endpoint, forged_completion("tok-m", "k-1"), None).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let metrics = reqwest_free_get(admin_addr, "/metrics");
    assert!(
        metrics.contains(
            r#"flow_service_calls_total{method="DataExchange",code="Unauthenticated"} 1"#
        ),
        "{metrics}"
    );
    let _ = service.child.kill();
}

/// `GET path` over plain HTTP/1.1, without a client library.
fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
            KeyPair,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
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
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }
}

#[tokio::test]
async fn with_client_certificates_only_health_is_open() {
    let pki = Pki::new();
    let env = [
        ("FLOW_SERVICE_TLS_CERT", pki.path("server.pem")),
        ("FLOW_SERVICE_TLS_KEY", pki.path("server.key")),
        ("FLOW_SERVICE_TLS_CLIENT_CA", pki.path("ca.pem")),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let service = start(&env);
    let url = format!("https://127.0.0.1:{}", service.port);
    let tls = ClientTlsConfig::new()
        .domain_name("127.0.0.1")
        .ca_certificate(Certificate::from_pem(pki.read("ca.pem")));
    let anonymous = Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(tls.clone())
        .unwrap();
    let with_certificate = Endpoint::from_shared(url)
        .unwrap()
        .tls_config(tls.identity(Identity::from_pem(
            pki.read("client.pem"),
            pki.read("client.key"),
        )))
        .unwrap();

    assert_eq!(health(&anonymous).await, ServingStatus::Serving);
    let refused = exchange(&anonymous, forged_completion("tok-tls", "k-1"), None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("client certificate"),
        "{refused:?}"
    );
    let outcome = exchange(&with_certificate, forged_completion("tok-tls", "k-2"), None)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Complete(_)), "{outcome:?}");

    // Plaintext gets nowhere.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", service.port)).unwrap();
    let mut client = HealthClient::new(plain.connect().await.unwrap());
    assert!(client.check(HealthCheckRequest::default()).await.is_err());

    // The healthcheck subcommand talks TLS to the service, from the same variables.
    let (code, out) = healthcheck(service.port, &env);
    assert_eq!(code, Some(0), "{out}");
    // Without them it speaks plaintext and fails.
    let (code, out) = healthcheck(service.port, &[]);
    assert_eq!(code, Some(1), "{out}");
    let log = service.log.lock().unwrap().join("\n");
    assert!(
        log.contains("tls=\"mutual\"") || log.contains("tls=mutual"),
        "{log}"
    );
}

#[test]
fn hop_settings_that_cannot_work_stop_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("FLOW_SERVICE_AUTH_TOKEN_FILE", missing)],
            "invalid FLOW_SERVICE_AUTH_TOKEN_FILE",
        ),
        (
            &[("FLOW_SERVICE_AUTH_TOKEN_FILE", empty)],
            "invalid FLOW_SERVICE_AUTH_TOKEN_FILE",
        ),
        (
            &[("FLOW_SERVICE_AUTH_TOKEN", "short")],
            "invalid FLOW_SERVICE_AUTH_TOKEN (--auth-token) (value hidden)",
        ),
        (
            &[("FLOW_SERVICE_TLS_CERT", empty)],
            "invalid FLOW_SERVICE_TLS_KEY",
        ),
        (
            &[("FLOW_SERVICE_TLS_KEY", empty)],
            "invalid FLOW_SERVICE_TLS_CERT",
        ),
        (
            &[("FLOW_SERVICE_TLS_CLIENT_CA", empty)],
            "invalid FLOW_SERVICE_TLS_CLIENT_CA",
        ),
        (
            &[
                ("FLOW_SERVICE_TLS_CERT", empty),
                ("FLOW_SERVICE_TLS_KEY", empty),
            ],
            "not a PEM file",
        ),
        (
            &[("FLOW_SERVICE_WORKER_THREADS", "many")],
            "invalid FLOW_SERVICE_WORKER_THREADS",
        ),
        (
            &[("FLOW_SERVICE_WORKER_THREADS", "-1")],
            "invalid FLOW_SERVICE_WORKER_THREADS",
        ),
        (
            &[("FLOW_SERVICE_WORKER_THREADS", "1025")],
            "invalid FLOW_SERVICE_WORKER_THREADS",
        ),
    ];
    for (env, expected) in cases {
        let mut command = common::flow_service();
        command
            .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
            .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
            .env("FLOW_SERVICE_DATABASE_URL", "memory:");
        for (name, value) in *env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}

#[test]
fn no_warning_on_loopback_without_credentials() {
    let service = start(&[]);
    // The warning would come before the "listening" line.
    let log = service.log.lock().unwrap().join("\n");
    assert!(!log.contains("beyond loopback"), "{log}");
    assert!(
        log.contains("auth=\"none\"") || log.contains("auth=none"),
        "{log}"
    );
}

/// The `runtime=` and `threads=` fields of the "listening" line of a service started
/// with `env`.
fn runtime_when_listening(env: &[(&str, &str)]) -> (String, String) {
    let service = start(env);
    let log = service.log.lock().unwrap();
    let line = log
        .iter()
        .find(|line| line.contains("flow service listening"))
        .unwrap();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .trim_matches('"')
            .to_owned()
    };
    (field("runtime="), field("threads="))
}

#[test]
fn runs_its_calls_on_the_threads_asked_for() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    // Unlike the CPUs, more than the machine has.
    let pool = (cpus + 1).to_string();
    let tokio = (cpus + 2).to_string();
    let (cpus, one) = (cpus.to_string(), "1".to_owned());
    let (current, multi) = ("current_thread", "multi_thread");
    for (setting, runtime, threads) in [
        (&[][..], current, &one),
        (&[("FLOW_SERVICE_WORKER_THREADS", "1")][..], current, &one),
        (
            &[("FLOW_SERVICE_WORKER_THREADS", pool.as_str())][..],
            multi,
            &pool,
        ),
        (&[("FLOW_SERVICE_WORKER_THREADS", "0")][..], multi, &cpus),
        // tokio's own variable changes nothing.
        (
            &[("TOKIO_WORKER_THREADS", tokio.as_str())][..],
            current,
            &one,
        ),
        (
            &[
                ("FLOW_SERVICE_WORKER_THREADS", "0"),
                ("TOKIO_WORKER_THREADS", tokio.as_str()),
            ][..],
            multi,
            &cpus,
        ),
    ] {
        let expected = (runtime.to_owned(), threads.clone());
        assert_eq!(runtime_when_listening(setting), expected, "{setting:?}");
    }
}

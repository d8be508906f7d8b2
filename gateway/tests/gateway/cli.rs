//! The `flowgate-gateway` binary as an operator meets it: `--help`, configuration
//! errors, start-up, and shutdown on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate-gateway");

fn gateway() -> Command {
    let mut command = Command::new(BIN);
    // Start from a clean slate whatever the test runner's environment holds.
    for (key, _) in std::env::vars() {
        if key.starts_with("FLOWGATE_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "info").stdin(Stdio::null());
    command
}

#[test]
fn help_lists_every_variable() {
    let output = gateway().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for var in [
        "FLOWGATE_LISTEN",
        "FLOWGATE_ADMIN_LISTEN",
        "FLOWGATE_BACKEND",
        "FLOWGATE_PATH",
        "FLOWGATE_MODE",
        "FLOWGATE_REQUEST_TIMEOUT",
        "FLOWGATE_SHUTDOWN_GRACE",
        "FLOWGATE_TLS",
        "FLOWGATE_TLS_CERT",
        "FLOWGATE_TLS_KEY",
    ] {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
}

#[test]
fn invalid_configuration_exits_with_one_line_naming_the_variable() {
    let cases = [
        ("FLOWGATE_REQUEST_TIMEOUT", "ten seconds"),
        ("FLOWGATE_LISTEN", "localhost"),
        ("FLOWGATE_BACKEND", "grpc://flow-service"),
        ("FLOWGATE_MODE", "xml"),
        ("FLOWGATE_TLS_CERT", "/nonexistent/cert.pem"),
    ];
    for (var, value) in cases {
        let output = gateway().env(var, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}={value}: {stderr}");
        assert!(lines[0].contains(var), "{var}={value}: {stderr}");
    }
    // A certificate file that cannot be read is caught at start too.
    let output = gateway()
        .env("FLOWGATE_LISTEN", "127.0.0.1:0")
        .env("FLOWGATE_ADMIN_LISTEN", "off")
        .env("FLOWGATE_TLS_CERT", "/nonexistent/cert.pem")
        .env("FLOWGATE_TLS_KEY", "/nonexistent/key.pem")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("/nonexistent/cert.pem"),
        "{stderr}"
    );
}

/// Starts the gateway on port 0 and waits for its "listening" line.
fn start() -> Child {
    let mut child = gateway()
        .env("FLOWGATE_LISTEN", "127.0.0.1:0")
        .env("FLOWGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no listening line");
        let line = lines.next().expect("gateway exited early").unwrap();
        if line.contains("flowgate gateway listening") {
            assert!(line.contains("https://127.0.0.1:"), "{line}");
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn wait(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stops_cleanly_on_sigterm_and_sigint() {
    for signal in ["-TERM", "-INT"] {
        let mut child = start();
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(wait(&mut child), Some(0), "{signal}");
    }
}

#[test]
fn keygen_writes_a_usable_key_and_prints_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.pem");
    let output = gateway()
        .args(["keygen", "--out"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let public = String::from_utf8(output.stdout).unwrap();
    assert!(
        public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{public}"
    );
    let private = std::fs::read_to_string(&plain).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    flowgate_gateway::crypto::keys::PrivateKey::from_pem(&private, None).unwrap();

    // Never overwrites.
    let again = gateway()
        .args(["keygen", "--out"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), private);

    // Encrypted with the passphrase from the environment, never from the command line.
    let encrypted = dir.path().join("encrypted.pem");
    let output = gateway()
        .args(["keygen", "--encrypt", "--out"])
        .arg(&encrypted)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "--encrypt without a passphrase must fail"
    );
    let output = gateway()
        .env("FLOWGATE_PRIVATE_KEY_PASSPHRASE", "correct horse")
        .args(["keygen", "--encrypt", "--out"])
        .arg(&encrypted)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = std::fs::read_to_string(&encrypted).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
    flowgate_gateway::crypto::keys::PrivateKey::from_pem(&pem, Some(b"correct horse")).unwrap();
}

#[test]
fn meta_mode_refuses_unusable_keys_at_start() {
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keys");
    let cases = [
        (keys.join("missing.pem"), None, "missing.pem"),
        (
            keys.join("pkcs8-encrypted.pem"),
            Some("not the passphrase"),
            "wrong passphrase",
        ),
        (keys.join("pkcs8-encrypted.pem"), None, "no passphrase"),
        (keys.join("pkcs1.pub.pem"), None, "no PEM private key"),
    ];
    for (key, passphrase, expected) in cases {
        let mut command = gateway();
        command
            .env("FLOWGATE_LISTEN", "127.0.0.1:0")
            .env("FLOWGATE_ADMIN_LISTEN", "off")
            .env("FLOWGATE_MODE", "meta")
            .env("FLOWGATE_PRIVATE_KEY", &key);
        if let Some(passphrase) = passphrase {
            command.env("FLOWGATE_PRIVATE_KEY_PASSPHRASE", passphrase);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{key:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("flowgate-gateway: FLOWGATE_PRIVATE_KEY: private key "),
            "{stderr}"
        );
        assert!(last.contains(expected), "{stderr}");
        assert!(
            !stderr.contains("not the passphrase"),
            "the passphrase leaked: {stderr}"
        );
    }
}

/// Starts the gateway with its admin listener on port 0 and returns the admin
/// address from its "listening" line.
fn start_with_admin(backend: &str) -> (Child, String) {
    let mut child = gateway()
        .env("FLOWGATE_LISTEN", "127.0.0.1:0")
        .env("FLOWGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("FLOWGATE_BACKEND", backend)
        // Plain log lines, so the address can be read off them.
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .find(|l| {
            l.as_ref()
                .is_ok_and(|l| l.contains("flowgate gateway listening"))
        })
        .expect("gateway exited early")
        .unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    let admin = line
        .split_once("admin=Some(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(addr, _)| addr.to_owned())
        .unwrap_or_else(|| panic!("no admin address in {line}"));
    (child, admin)
}

/// Runs `flowgate-gateway healthcheck` against `admin`: (exit code, stdout, stderr).
fn healthcheck(admin: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let output = gateway()
        .arg("healthcheck")
        .args(extra)
        .env("FLOWGATE_ADMIN_LISTEN", admin)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A real `grpc.health.v1` server on 127.0.0.1:0 standing in for the flow service,
/// whose overall status the test controls.
fn health_server(
    runtime: &tokio::runtime::Runtime,
) -> (String, tonic_health::server::HealthReporter) {
    runtime.block_on(async {
        let (reporter, service) = tonic_health::server::health_reporter();
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        (format!("http://{addr}"), reporter)
    })
}

#[test]
fn healthcheck_follows_readiness() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (backend, reporter) = health_server(&runtime);
    let (mut child, admin) = start_with_admin(&backend);

    let (code, stdout, stderr) = healthcheck(&admin, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("ready"), "{stdout}");

    // The gateway reuses a health answer for up to a second; wait it out.
    runtime.block_on(reporter.set_service_status("", tonic_health::ServingStatus::NotServing));
    let deadline = Instant::now() + Duration::from_secs(10);
    let stderr = loop {
        let (code, _, stderr) = healthcheck(&admin, &[]);
        if code == Some(1) {
            break stderr;
        }
        assert_eq!(code, Some(0));
        assert!(Instant::now() < deadline, "still ready while NOT_SERVING");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(stderr.contains("503"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Alive all the same.
    let (code, stdout, stderr) = healthcheck(&admin, &["--path", "/healthz"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert_eq!(wait(&mut child), Some(0));
}

#[test]
fn healthcheck_fails_fast_when_nothing_answers() {
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let (code, _, stderr) = healthcheck(&format!("0.0.0.0:{port}"), &["--timeout", "1s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));

    for (admin, extra, expected) in [
        ("off", &[][..], "FLOWGATE_ADMIN_LISTEN"),
        ("127.0.0.1:9464", &["--timeout", "soon"][..], "--timeout"),
        ("127.0.0.1:9464", &["--path", "readyz"][..], "--path"),
    ] {
        let (code, _, stderr) = healthcheck(admin, extra);
        assert_eq!(code, Some(1), "{admin} {extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{admin} {extra:?}: {stderr}");
    }
}

/// Runs the gateway with `args` and `env`; returns (exit code, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = gateway()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Flags, variables, and the start of the line the gateway must stop with.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn typed_values_are_refused_with_one_line_naming_variable_and_flag() {
    let cases: &[Case] = &[
        (
            &["--mode", "json"],
            &[],
            r#"flowgate-gateway: invalid FLOWGATE_MODE (--mode) "json": expected plain or meta"#,
        ),
        (
            &[],
            &[("FLOWGATE_MODE", "Meta")],
            r#"flowgate-gateway: invalid FLOWGATE_MODE (--mode) "Meta": expected plain or meta"#,
        ),
        (
            &["--shutdown-grace", "15"],
            &[],
            r#"flowgate-gateway: invalid FLOWGATE_SHUTDOWN_GRACE (--shutdown-grace) "15": 15 has no unit; expected a duration like 10s, 1500ms, 15m, 24h or 7d"#,
        ),
        (
            &[],
            &[("FLOWGATE_DNS_REFRESH", "1.5s")],
            r#"flowgate-gateway: invalid FLOWGATE_DNS_REFRESH (--dns-refresh) "1.5s": expected a duration like 10s, 1500ms, 15m, 24h or 7d"#,
        ),
        (
            &["--backend", "http://flow-service"],
            &[],
            r#"flowgate-gateway: invalid FLOWGATE_BACKEND (--backend) "http://flow-service": invalid backend `http://flow-service`: `http://flow-service`: the port is required"#,
        ),
        (
            &[],
            &[("FLOWGATE_BACKEND", "flow-service:50051")],
            r#"flowgate-gateway: invalid FLOWGATE_BACKEND (--backend) "flow-service:50051": "#,
        ),
        (
            &[],
            &[
                ("FLOWGATE_MODE", "meta"),
                ("FLOWGATE_PRIVATE_KEY", "k.pem"),
                ("FLOWGATE_APP_SECRET", " , "),
            ],
            "flowgate-gateway: invalid FLOWGATE_APP_SECRET (--app-secret) (value hidden): no app secret in the list",
        ),
    ];
    for (args, env, expected) in cases {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?} {env:?}: {stderr}");
    }
}

#[test]
fn a_route_file_secret_variable_without_a_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(
        &file,
        "[[route]]\npath = \"/whatsapp\"\nmode = \"meta\"\nprivate_keys = [\"k.pem\"]\napp_secrets_env = \"ROUTE_APP_SECRETS\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, stderr) = run(
        &[],
        &[("FLOWGATE_CONFIG", file), ("ROUTE_APP_SECRETS", ",, ")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "flowgate-gateway: invalid FLOWGATE_CONFIG route 1 (/whatsapp) in {file}: app_secrets_env: environment variable ROUTE_APP_SECRETS holds no secret"
        )),
        "{stderr}"
    );
}

#[test]
fn a_healthcheck_fails_with_1_whatever_is_wrong() {
    // A variable the gateway cannot read stops a healthcheck too, with the status a
    // container runtime expects of a failed one.
    let (code, stderr) = run(&["healthcheck"], &[("FLOWGATE_ADMIN_LISTEN", "9464")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            r#"flowgate-gateway healthcheck: invalid FLOWGATE_ADMIN_LISTEN (--admin-listen) "9464": expected an address"#
        ),
        "{stderr}"
    );
    let (code, stderr) = run(&["healthcheck", "--timeout", "0s"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            r#"flowgate-gateway healthcheck: invalid --timeout "0s": must be more than 0"#
        ),
        "{stderr}"
    );
}

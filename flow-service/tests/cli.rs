//! The `flow-service` binary: configuration errors and shutdown on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn invalid_listen_address_exits_with_one_line() {
    let output = common::flow_service()
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_LISTEN", "everywhere")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("FLOW_SERVICE_LISTEN"), "{stderr}");
}

/// The service with `url` as its database, `ADDR` in it replaced by an address on
/// 127.0.0.1 where nothing listens (a port that was just free).
fn with_unreachable_database(url: &str) -> Command {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut command = common::flow_service();
    command
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
        .env(
            "FLOW_SERVICE_DATABASE_URL",
            url.replace("ADDR", &addr.to_string()),
        )
        .env("FLOW_SERVICE_DATABASE_CONNECT_TIMEOUT", "5s");
    command
}

/// A database URL parameter sqlx does not read is left out before sqlx sees it, which
/// would log its value (a client key's passphrase here) at warn.
#[test]
fn a_parameter_sqlx_does_not_read_is_named_but_its_value_never_logged() {
    // The start fails after the URL was read.
    let output = with_unreachable_database(
        "postgres://flowgate@ADDR/flowgate?sslmode=disable&sslpassword=s3cret&keepalives=1",
    )
    .env("RUST_LOG", "info")
    .output()
    .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    for parameter in ["sslpassword", "keepalives"] {
        assert!(
            stderr
                .lines()
                .any(|line| line.contains("left out") && line.contains(parameter)),
            "{stderr}"
        );
    }
    // What is left goes on to sqlx: the start fails on the connection, not the URL.
    assert!(
        stderr.contains("cannot connect to the database"),
        "{stderr}"
    );
}

#[test]
fn serves_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::flow_service()
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
        .env("FLOW_SERVICE_DRAIN_DELAY", "100ms")
        .env(
            "FLOW_SERVICE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("new.db").display()),
        )
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .find(|l| {
            l.as_ref()
                .is_ok_and(|l| l.contains("flow service listening"))
        })
        .unwrap()
        .unwrap();
    assert!(line.contains("signup"), "{line}");
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The database file was created and migrated at start.
    assert!(dir.path().join("new.db").exists());
}

#[test]
fn an_unreachable_database_stops_the_start_with_one_line() {
    let output = with_unreachable_database("postgres://flowgate:hunter2@ADDR/flowgate")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot connect to the database postgres://flowgate:***@127.0.0.1:"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn issue_token_prints_a_token_the_service_accepts() {
    let secret = "0123456789abcdef0123456789abcdef";
    let output = common::flow_service()
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .args([
            "issue-token",
            "--flow",
            "booking",
            "--ttl",
            "15m",
            "--subject",
            "c-42",
        ])
        .env("FLOW_SERVICE_TOKEN_SECRET", secret)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1);
    let claims = flow_service::tokens::verify(
        &flow_service::tokens::Secret::new(secret.as_bytes()).unwrap(),
        token,
        "booking",
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(claims.subject.as_deref(), Some("c-42"));

    for (args, secret, expected) in [
        (
            ["--flow", "nope", "--ttl", "1m"],
            secret,
            "no flow named \"nope\"",
        ),
        (
            ["--flow", "signup", "--ttl", "1m"],
            "too-short",
            "at least 32",
        ),
        (["--flow", "signup", "--ttl", "forever"], secret, "--ttl"),
    ] {
        let output = common::flow_service()
            .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
            .arg("issue-token")
            .args(args)
            .env("FLOW_SERVICE_TOKEN_SECRET", secret)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}

/// Runs `flow-service healthcheck` against `listen`: (exit code, stdout, stderr).
fn healthcheck(listen: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let output = common::flow_service()
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .arg("healthcheck")
        .args(extra)
        .env("FLOW_SERVICE_LISTEN", listen)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn healthcheck_asks_the_running_service() {
    let mut child = common::flow_service()
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        // Plain log lines, so the address can be read off them.
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .find(|l| {
            l.as_ref()
                .is_ok_and(|l| l.contains("flow service listening"))
        })
        .unwrap()
        .unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    let port = line
        .split_once("addr=127.0.0.1:")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no address in {line}"));

    // Listening on every interface is asked on loopback.
    let (code, stdout, stderr) = healthcheck(&format!("0.0.0.0:{port}"), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("SERVING"), "{stdout}");
    let (code, _, stderr) = healthcheck(
        &format!("127.0.0.1:{port}"),
        &["--service", "flowgate.v1.FlowService"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    // A service the server does not know is not healthy.
    let (code, _, stderr) = healthcheck(&format!("127.0.0.1:{port}"), &["--service", "nope"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Nothing listens any more: unhealthy, quickly.
    let started = Instant::now();
    let (code, _, stderr) = healthcheck(&format!("127.0.0.1:{port}"), &["--timeout-ms", "1000"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn healthcheck_timeout_is_a_duration() {
    // Nothing listens on a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let (code, _, stderr) = healthcheck(&listen, &["--timeout", "500ms"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The same spelling and the same refusals as the gateway's healthcheck.
    for (timeout, expected) in [
        (
            "soon",
            r#"flow-service healthcheck: invalid --timeout "soon": expected a duration"#,
        ),
        (
            "2000",
            r#"flow-service healthcheck: invalid --timeout "2000": 2000 has no unit"#,
        ),
        (
            "0s",
            r#"flow-service healthcheck: invalid --timeout "0s": must be more than 0"#,
        ),
        (
            "5000000d",
            r#"flow-service healthcheck: invalid --timeout "5000000d": duration too long"#,
        ),
    ] {
        let (code, _, stderr) = healthcheck(&listen, &["--timeout", timeout]);
        assert_eq!(code, Some(1), "{timeout}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{timeout}: {stderr}");
        assert!(stderr.starts_with(expected), "{timeout}: {stderr}");
    }
}

#[test]
fn healthcheck_fails_with_one_whatever_is_wrong() {
    let listen = "127.0.0.1:1";
    // A setting the service would refuse: still 1, never Docker's reserved 2.
    let output = common::flow_service()
        .env("FLOW_SERVICE_ADMIN_LISTEN", "off")
        .env("FLOW_SERVICE_LISTEN", listen)
        .env("FLOW_SERVICE_DRAIN_DELAY", "soon")
        .arg("healthcheck")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("flow-service healthcheck: invalid FLOW_SERVICE_DRAIN_DELAY"),
        "{stderr}"
    );
    // A wait in milliseconds out of range: refused, not a panic.
    for ms in ["0", "18446744073709551615"] {
        let (code, _, stderr) = healthcheck(listen, &["--timeout-ms", ms]);
        assert_eq!(code, Some(1), "{ms}: {stderr}");
        assert!(!stderr.contains("panicked"), "{ms}: {stderr}");
    }
}

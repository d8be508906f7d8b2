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

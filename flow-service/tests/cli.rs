//! The `flow-service` binary: configuration errors and shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flow-service");

#[test]
fn invalid_listen_address_exits_with_one_line() {
    let output = Command::new(BIN)
        .env("FLOW_SERVICE_LISTEN", "everywhere")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("FLOW_SERVICE_LISTEN"), "{stderr}");
}

#[test]
fn serves_then_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .env("FLOW_SERVICE_LISTEN", "127.0.0.1:0")
        .env("FLOW_SERVICE_DRAIN_DELAY", "100ms")
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
}

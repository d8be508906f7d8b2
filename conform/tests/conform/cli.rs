//! The binary itself: its output lines, `--json`, secrets from the environment, and
//! its exit status.

use std::process::Command;

use crate::common::*;
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service};
use serde_json::Value;

#[tokio::test]
async fn the_binary_prints_one_line_per_check_and_exits_by_the_outcome() {
    let service = Service::start(Probe::default()).await;
    let gateway = Gateway::start(GatewayOptions::new(service.url())).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, gateway.cert_pem.as_deref().unwrap()).unwrap();
    let flow_json = repo("flow-service/flows/signup.json");
    let run = |url: String, json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowgate-conform"));
        command
            .arg("--url")
            .arg(url)
            .arg("--flow-json")
            .arg(&flow_json)
            .arg("--ca")
            .arg(&ca);
        if json {
            command.arg("--json");
        }
        async move {
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };

    let ok = run(format!("{}/flow-endpoint", gateway.base), false).await;
    let text = String::from_utf8(ok.stdout).unwrap();
    assert!(ok.status.success(), "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("ok   ") || l.ends_with(" passed, 0 failed")),
        "{text}"
    );

    // The booking flow served where signup's Flow JSON is expected: INIT answers a
    // screen signup does not have.
    let wrong = run(format!("{}/flows/booking", gateway.base), true).await;
    assert_eq!(wrong.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&wrong.stdout).unwrap();
    assert!(report["failed"].as_u64().unwrap() > 0, "{report}");
    let init = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "walk 1: INIT")
        .unwrap();
    assert!(
        init["reason"].as_str().unwrap().contains("`APPOINTMENT`"),
        "{init}"
    );
}

#[test]
fn a_run_that_cannot_start_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate-conform"))
        .args([
            "--grpc",
            "http://127.0.0.1:1",
            "--flow-json",
            "/nonexistent.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}

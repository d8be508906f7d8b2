//! The project's own stack passes: the gateway (plain and Meta mode) in front of the
//! Rust flow service, the Rust service straight over gRPC, and the Python reference
//! service over gRPC — both reference flows where the implementation has them.

use crate::common::*;
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service};
use flowgate_gateway::config::{MetaConfig, ModeConfig, Secret};
use flowgate_gateway::envelope::Envelope;

async fn gateway(service: &Service, sealed: bool) -> Gateway {
    let mut options = GatewayOptions::new(service.url());
    if sealed {
        options.envelope = Envelope::load(&ModeConfig::Meta(MetaConfig {
            private_keys: vec![repo(PRIVATE_KEY)],
            passphrase: Some(Secret::new(PASSPHRASE)),
            app_secrets: vec![Secret::new(SECRET)],
        }))
        .expect("keys load");
    }
    Gateway::start(options).await
}

async fn both_flows_pass(sealed: bool) {
    let service = Service::start(Probe::default()).await;
    let gateway = gateway(&service, sealed).await;
    let ca = gateway.cert_pem.clone().unwrap();
    for (path, flow) in [("/flow-endpoint", "signup"), ("/flows/booking", "booking")] {
        let report = endpoint(format!("{}{path}", gateway.base), &ca, flow, sealed).await;
        assert_passes(&report);
        // The walk reached every screen and completed.
        assert!(report.checks.iter().any(|c| c.name == "walk 1: completed"));
    }
}

#[tokio::test]
async fn plain_gateway_passes_with_both_reference_flows() {
    both_flows_pass(false).await;
}

#[tokio::test]
async fn meta_gateway_passes_with_both_reference_flows() {
    both_flows_pass(true).await;
}

#[tokio::test]
async fn a_meta_run_checks_421_and_432() {
    let service = Service::start(Probe::default()).await;
    let gateway = gateway(&service, true).await;
    let report = endpoint(
        format!("{}/flow-endpoint", gateway.base),
        gateway.cert_pem.as_deref().unwrap(),
        "signup",
        true,
    )
    .await;
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"undecryptable body answers 421"),
        "{names:?}"
    );
    assert!(names.contains(&"bad signature answers 432"), "{names:?}");
    // The invalid email was sent and answered with error_message.
    assert!(
        names
            .iter()
            .any(|n| n.contains("answers an invalid email in `email` with error_message")),
        "{names:?}"
    );
}

#[tokio::test]
async fn rust_flow_service_passes_over_grpc() {
    let service = Service::start(Probe::default()).await;
    for flow in ["signup", "booking"] {
        let report = grpc(service.url(), flow).await;
        assert_passes(&report);
        assert!(
            report
                .checks
                .iter()
                .any(|c| c.name == "a repeated idempotency key gets the first outcome")
        );
    }
}

/// The example's own unit tests (`examples/python/test_service.py`): what the walk
/// cannot stage, such as a race for one token's completion.
#[test]
fn python_example_unit_tests_pass() {
    if !python_ready() {
        return;
    }
    let output = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s"])
        .arg(repo("examples/python"))
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("\nOK"), "{stderr}");
}

#[tokio::test]
async fn python_flow_service_passes_over_grpc() {
    let Some(python) = Python::start() else {
        return;
    };
    let report = grpc(format!("http://{}", python.addr), "signup").await;
    assert_passes(&report);
}
